"""`Database.run`, the request path's hop to a worker thread and back (issue 18: one callback
carries the connection and the outcome), with stand-in driver connections: results and errors
reach the request, the connection goes back to the pool when the worker is done with it (also when
the request was cancelled meanwhile), a broken one is closed, and the pool's bound still answers
PoolExhausted. No database."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lab.server import db
from lab.server.config import from_env
from lab.server.pool import PoolExhausted


class Conn:
    def __init__(self) -> None:
        self.rollbacks = 0
        self.closed = False

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


class StandIn(db.Database):
    def __init__(self, cfg: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(cfg, loop)
        self.opened: list[Conn] = []

    def _open(self) -> Any:
        conn = Conn()
        self.opened.append(conn)
        return conn


def run(test: Callable[[StandIn], Awaitable[None]], pool: int = 2, wait_ms: int = 2000) -> None:
    async def main() -> None:
        cfg = from_env({"CATTLE_DB_CATTLE_MAXTOTAL": str(pool), "CATTLE_DB_CATTLE_MAXWAIT": str(wait_ms)})
        database = StandIn(cfg, asyncio.get_running_loop())
        try:
            await test(database)
        finally:
            database.close()

    asyncio.run(main())


async def settled(database: StandIn) -> None:
    """Until no connection is in use: the workers' callbacks have run."""
    for _ in range(200):
        if database.pool_stats().in_use == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"a connection is still in use: {database.pool_stats()}")


def test_the_result_comes_back_and_the_connection_is_reused() -> None:
    async def t(database: StandIn) -> None:
        threads: list[str] = []

        def job(conn: Conn, x: int) -> tuple[Conn, int]:
            threads.append(threading.current_thread().name)
            return conn, x * 2

        first, doubled = await database.run(job, 21)
        second, _ = await database.run(job, 1)
        assert doubled == 42 and first is second and database.opened == [first]
        assert all(name.startswith("db") for name in threads)  # never the loop's thread
        stats = database.pool_stats()
        assert (stats.in_use, stats.idle, stats.acquired_total) == (0, 1, 2)

    run(t)


def test_an_error_reaches_the_request_and_the_connection_is_rolled_back_and_kept() -> None:
    async def t(database: StandIn) -> None:
        def fails(conn: Conn) -> None:
            raise ValueError("no such row")

        with pytest.raises(ValueError, match="no such row"):
            await database.run(fails)
        [conn] = database.opened
        assert conn.rollbacks == 1 and not conn.closed
        assert database.pool_stats().idle == 1

    run(t)


def test_a_broken_connection_is_closed_and_its_slot_freed() -> None:
    async def t(database: StandIn) -> None:
        def breaks(conn: Conn) -> None:
            raise db.driver.OperationalError(2013, "Lost connection to MySQL server during query")

        with pytest.raises(db.DatabaseUnavailable, match=r"\(2013\) Lost connection"):
            await database.run(breaks)
        [conn] = database.opened
        for _ in range(200):  # closed by a worker
            if conn.closed:
                break
            await asyncio.sleep(0.005)
        assert conn.closed and conn.rollbacks == 0
        assert database.pool_stats().size == 0

    run(t)


def test_a_cancelled_request_gives_the_connection_back_only_when_its_worker_is_done() -> None:
    async def t(database: StandIn) -> None:
        started, finish = threading.Event(), threading.Event()

        def slow(conn: Conn) -> str:
            started.set()
            finish.wait(5)
            return "late"

        request = asyncio.ensure_future(database.run(slow))
        while not started.is_set():
            await asyncio.sleep(0.005)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.sleep(0.05)
        assert database.pool_stats().in_use == 1  # the worker still uses it
        finish.set()
        await settled(database)
        assert database.pool_stats().idle == 1
        assert await database.run(lambda conn: "next") == "next"

    run(t)


def test_the_pool_still_bounds_connections_and_answers_exhausted() -> None:
    async def t(database: StandIn) -> None:
        release = threading.Event()

        def hold(conn: Conn) -> None:
            release.wait(5)

        holders = [asyncio.ensure_future(database.run(hold)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(PoolExhausted, match="all 2 database connections"):
            await database.run(hold)
        release.set()
        await asyncio.gather(*holders)
        stats = database.pool_stats()
        assert len(database.opened) == 2 and stats.exhausted_total == 1 and stats.peak_in_use == 2

    run(t, pool=2, wait_ms=100)


def test_workers_start_threads_as_jobs_need_them_up_to_their_size() -> None:
    workers = db.Workers(3, "t")
    release = threading.Event()
    running: list[int] = []
    done: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            running.append(i)
        release.wait(5)
        with lock:
            done.append(i)

    for i in range(5):
        workers.post(lambda i=i: job(i))  # type: ignore[misc]
    deadline = time.monotonic() + 5
    while len(running) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert len(running) == 3  # two wait for a thread: no fourth one is started
    release.set()
    while len(done) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert len([t for t in threading.enumerate() if t.name.startswith("t_")]) == 3
    for i in range(3):  # idle threads take new jobs: none is started
        workers.post(lambda i=i: done.append(10 + i))  # type: ignore[misc]
    while len(done) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len([t for t in threading.enumerate() if t.name.startswith("t_")]) == 3
    workers.shutdown()


def test_workers_are_an_executor_for_the_pool_and_shut_down_dropping_queued_jobs() -> None:
    workers = db.Workers(1, "u")
    assert workers.submit(lambda x: x + 1, 41).result(5) == 42
    with pytest.raises(ZeroDivisionError):
        workers.submit(lambda: 1 // 0).result(5)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(5)
        ran.append("first")

    workers.post(first)
    workers.post(lambda: ran.append("queued"))
    assert started.wait(5)
    workers.shutdown()
    release.set()
    with pytest.raises(RuntimeError, match="shut down"):
        workers.post(lambda: None)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("u_") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran == ["first"]


TEXTS = [
    "2026-12-01 11:48:31.745389",
    "2026-12-01 11:48:31",
    "2026-12-01 11:48:31.7",
    "2026-12-01 11:48:31.745",
    "1970-01-01 00:00:00.000001",
    "9999-12-31 23:59:59.999999",
    "0000-00-00 00:00:00",
    "2026-02-30 00:00:00",
    "2026-12-01",
    "2026-12-01 11:48",
    "2026-12-01 11:48:31.1234567",
    "",
]


def test_datetimes_are_read_in_c_only_where_that_gives_the_drivers_value() -> None:
    slow_calls: list[str] = []

    def slow(text: str) -> Any:
        slow_calls.append(text)
        return "slow"

    for text in TEXTS:
        value = db.parse_datetime(text, slow)
        if value != "slow":
            assert value == dt.datetime.fromisoformat(text)
    assert slow_calls == TEXTS[6:]  # zero and impossible dates, other shapes


def test_datetimes_read_in_c_equal_mysqldbs_own() -> None:
    times = pytest.importorskip("MySQLdb.times")  # the image's driver (python3-mysqldb)
    stamps = [dt.datetime(2026, 12, 1, 11, 48, 31, 745389) + dt.timedelta(microseconds=7919 * i) for i in range(500)]
    texts = TEXTS + [str(s) for s in stamps] + [s.isoformat(" ", "milliseconds") for s in stamps]
    for text in texts:
        assert db.parse_datetime(text, times.DateTime_or_None) == times.DateTime_or_None(text), text
