"""A bounded database connection pool (cattle's `db.cattle.maxtotal` / `maxwait`).

Never more than `max_size` connections exist, counting those being opened. A caller that finds
none free waits at most `max_wait` seconds and then gets `PoolExhausted` (the API answers
`503 POOL_EXHAUSTED`). Acquisition runs on the event loop; connections are used in worker threads
and may be released from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")


class PoolExhausted(Exception):
    def __init__(self, max_size: int, waited: float) -> None:
        super().__init__(f"all {max_size} database connections of this node are in use; waited {waited * 1000:.0f} ms")


@dataclass(frozen=True)
class PoolStats:
    max_size: int
    size: int
    in_use: int
    idle: int
    waiting: int
    exhausted_total: int
    # Where a capacity run sees a pool that bounds throughput: how often and how long requests
    # waited for a connection, and the most connections ever in use at once.
    acquired_total: int = 0
    waited_total: int = 0
    wait_seconds_total: float = 0.0
    peak_in_use: int = 0


@dataclass
class _Idle(Generic[C]):
    conn: C
    since: float


class BoundedPool(Generic[C]):
    def __init__(
        self,
        factory: Callable[[], C],
        close: Callable[[C], None],
        max_size: int,
        max_wait: float,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._factory = factory
        self._close = close
        self.max_size = max_size
        self.max_wait = max_wait
        self._executor = executor
        self._loop = loop
        self._idle: list[_Idle[C]] = []
        self._size = 0  # open connections plus those being opened
        # A waiter's future gets a connection, or None meaning "a slot is yours: open one".
        self._waiters: collections.deque[asyncio.Future[C | None]] = collections.deque()
        self._exhausted = 0
        self._acquired = 0
        self._waited = 0
        self._wait_seconds = 0.0
        self._peak_in_use = 0
        self._closed = False

    def stats(self) -> PoolStats:
        return PoolStats(
            max_size=self.max_size,
            size=self._size,
            in_use=self._size - len(self._idle),
            idle=len(self._idle),
            waiting=sum(1 for w in self._waiters if not w.done()),
            exhausted_total=self._exhausted,
            acquired_total=self._acquired,
            waited_total=self._waited,
            wait_seconds_total=self._wait_seconds,
            peak_in_use=self._peak_in_use,
        )

    def _taken(self) -> None:
        self._acquired += 1
        self._peak_in_use = max(self._peak_in_use, self._size - len(self._idle))

    async def acquire(self) -> tuple[C, float]:
        """A connection and how long it sat idle (seconds; 0 for a new one)."""
        if self._closed:
            raise RuntimeError("pool closed")
        if self._idle:
            item = self._idle.pop()
            self._taken()
            return item.conn, time.monotonic() - item.since
        if self._size < self.max_size:
            self._size += 1
            self._taken()
            return await self._open(), 0.0
        got = await self._wait()
        self._taken()
        if got is None:
            return await self._open(), 0.0
        return got, 0.0

    async def _wait(self) -> C | None:
        """Wait for a released connection (or None: a freed slot to open one in), at most max_wait."""
        start = time.monotonic()
        self._waited += 1
        fut: asyncio.Future[C | None] = self._loop.create_future()
        self._waiters.append(fut)
        timer = self._loop.call_later(self.max_wait, self._expire, fut)
        try:
            return await fut
        except PoolExhausted:
            self._exhausted += 1
            raise PoolExhausted(self.max_size, time.monotonic() - start) from None
        except asyncio.CancelledError:
            # The hand-over may have happened just before the cancellation landed.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                got = fut.result()
                if got is None:
                    self._slot_freed()  # we were handed a slot to open a connection in
                else:
                    self.give_back(got)
            raise
        finally:
            timer.cancel()
            self._wait_seconds += time.monotonic() - start

    def _expire(self, fut: asyncio.Future[C | None]) -> None:
        if not fut.done():
            fut.set_exception(PoolExhausted(self.max_size, self.max_wait))

    async def _open(self) -> C:
        """Open a connection in a worker thread; the caller already holds its slot."""
        try:
            return await self._loop.run_in_executor(self._executor, self._factory)
        except BaseException:
            self._slot_freed()
            raise

    def _slot_freed(self) -> None:
        self._size -= 1
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                self._size += 1
                w.set_result(None)
                return

    def release(self, conn: C, broken: bool = False) -> None:
        """Return a connection; safe from any thread."""
        self._loop.call_soon_threadsafe(self.give_back, conn, broken)

    def give_back(self, conn: C, broken: bool = False) -> None:
        """Return a connection, on the event loop's thread."""
        if broken or self._closed:
            self._executor.submit(self._close_quietly, conn)
            self._slot_freed()
            return
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self._idle.append(_Idle(conn, time.monotonic()))

    def _close_quietly(self, conn: C) -> None:
        with suppress(Exception):  # a broken connection may fail to close; it is gone either way
            self._close(conn)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            item = self._idle.pop()
            self._size -= 1
            self._executor.submit(self._close_quietly, item.conn)
        for w in self._waiters:
            if not w.done():
                w.set_exception(RuntimeError("pool closed"))
        self._waiters.clear()
