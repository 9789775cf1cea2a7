"""The bounded connection pool, with a fake connection factory (no database)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lab.server.pool import BoundedPool, PoolExhausted


class FakeDB:
    """Counts live connections; can be told to fail or be slow when opening."""

    def __init__(self, open_delay: float = 0.0) -> None:
        self.open_delay = open_delay
        self.fail_next = False
        self.live = 0
        self.peak = 0
        self.closed = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def open(self) -> int:
        time.sleep(self.open_delay)
        with self._lock:
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("refused")
            self.live += 1
            self.peak = max(self.peak, self.live)
            return next(self._ids)

    def close(self, conn: int) -> None:
        with self._lock:
            self.live -= 1
            self.closed += 1


def run(
    test: Callable[[BoundedPool[int], FakeDB], Awaitable[Any]],
    max_size: int = 3,
    max_wait: float = 0.2,
    open_delay: float = 0.0,
) -> Any:
    async def main() -> Any:
        db = FakeDB(open_delay)
        with ThreadPoolExecutor(max_workers=max_size + 4) as ex:
            pool: BoundedPool[int] = BoundedPool(db.open, db.close, max_size, max_wait, ex, asyncio.get_running_loop())
            try:
                return await test(pool, db)
            finally:
                pool.close()

    return asyncio.run(main())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_reuses_idle_connections() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        c1, idle = await pool.acquire()
        assert idle == 0.0
        pool.give_back(c1)
        await settle()
        c2, _ = await pool.acquire()
        assert c2 == c1 and db.peak == 1

    run(t)


def test_never_exceeds_max_under_concurrency_and_times_out_bounded() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        async def worker() -> str:
            try:
                conn, _ = await pool.acquire()
            except PoolExhausted:
                return "exhausted"
            await asyncio.sleep(0.05)
            pool.give_back(conn)
            return "ok"

        start = time.monotonic()
        results = await asyncio.gather(*(worker() for _ in range(40)))
        assert db.peak <= 3 and pool.stats().size <= 3
        assert "ok" in results
        assert time.monotonic() - start < 2.0

    run(t, open_delay=0.01)


def test_exhausted_after_max_wait_and_counted() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        start = time.monotonic()
        with pytest.raises(PoolExhausted, match="all 3 database connections"):
            await pool.acquire()
        waited = time.monotonic() - start
        assert 0.15 <= waited < 1.0
        s = pool.stats()
        assert (s.size, s.in_use, s.waiting, s.exhausted_total) == (3, 3, 0, 1)
        for c in held:
            pool.give_back(c)

    run(t)


def test_waiter_gets_the_released_connection() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        await settle()
        assert pool.stats().waiting == 1
        # A worker thread hands it back through the loop, as db.Workers does.
        loop = asyncio.get_running_loop()
        threading.Thread(target=loop.call_soon_threadsafe, args=(pool.give_back, held[0])).start()
        conn, _ = await asyncio.wait_for(waiter, 1)
        assert conn == held[0] and db.peak == 3

    run(t, max_wait=5)


def test_broken_connection_frees_its_slot_for_a_waiter() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        await settle()
        pool.give_back(held[1], broken=True)
        conn, _ = await asyncio.wait_for(waiter, 1)
        assert conn not in held  # a fresh one was opened in the freed slot
        await settle()
        assert db.closed == 1 and db.peak == 3 and pool.stats().size == 3

    run(t, max_wait=5)


def test_failed_open_frees_the_slot() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        db.fail_next = True
        with pytest.raises(ConnectionError):
            await pool.acquire()
        assert pool.stats().size == 0
        conns = [(await pool.acquire())[0] for _ in range(3)]
        assert len(set(conns)) == 3

    run(t)


def test_cancelled_waiter_does_not_leak_a_handed_over_connection() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        await settle()
        asyncio.get_running_loop().call_soon(pool.give_back, held[0])  # as db.Workers' callback
        await asyncio.sleep(0)  # the hand-over callback runs, the waiter has not resumed yet
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await settle()
        s = pool.stats()
        assert s.idle == 1 and s.in_use == 2  # the connection went back, not lost

    run(t, max_wait=5)


def test_cancelled_waiter_does_not_leak_a_handed_over_slot() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        waiter = asyncio.ensure_future(pool.acquire())
        await settle()
        # Frees a slot and hands it to the waiter, from a callback as db.Workers' is.
        asyncio.get_running_loop().call_soon(pool.give_back, held[0], True)
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await settle()
        assert pool.stats().size == 2  # the slot is free again, not counted forever
        _conn, _ = await pool.acquire()
        assert pool.stats().size == 3

    run(t, max_wait=5)


def test_counts_acquisitions_waits_and_the_peak_in_use() -> None:
    async def t(pool: BoundedPool[int], db: FakeDB) -> None:
        held = [(await pool.acquire())[0] for _ in range(3)]
        s = pool.stats()
        assert (s.acquired_total, s.waited_total, s.wait_seconds_total, s.peak_in_use) == (3, 0, 0.0, 3)
        waiter = asyncio.ensure_future(pool.acquire())
        await settle()
        pool.give_back(held[0])
        await asyncio.wait_for(waiter, 1)
        with pytest.raises(PoolExhausted):
            await pool.acquire()  # waits max_wait, then gives up: a wait too
        s = pool.stats()
        assert (s.acquired_total, s.waited_total, s.exhausted_total, s.peak_in_use) == (4, 2, 1, 3)
        assert s.wait_seconds_total > 0

    run(t, max_wait=0.1)
