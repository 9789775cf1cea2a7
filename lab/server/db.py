"""MySQL access: the driver, connections, error classification and where blocking work runs.

The driver is Debian's C one, `MySQLdb` (python3-mysqldb, in the node image): it parses rows in C
and releases the GIL while it waits on the server. With PyMySQL, pure Python, a list of ten
projects cost the node more CPU than MariaDB spent answering it (issue 18). A checkout's venv has
no C driver (mysqlclient needs the client library's headers to build), so there, and in unit tests,
the same code runs on PyMySQL: both are DB-API 2.0 with the same error classes, `(code, message)`
arguments, `format` parameters, `DictCursor` and defaults (autocommit as asked, no FOUND_ROWS).

Request and process work use the bounded pool (`CATTLE_DB_CATTLE_MAXTOTAL`). Bootstrap
(migrations), the cluster heartbeat, the health check and the process-replay scan use one
extra "system" connection on its own thread, like cattle's separate liquibase pool
(`db.liquibase.maxtotal=1`): a saturated request pool must not make a healthy node look dead.
So a node opens at most MAXTOTAL + 1 connections.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import importlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

from .config import Config
from .pool import BoundedPool, PoolStats

log = logging.getLogger("halab.db")

T = TypeVar("T")


def _load_driver() -> Any:
    try:
        return importlib.import_module("MySQLdb")
    except ImportError:
        return importlib.import_module("pymysql")


driver: Any = _load_driver()
DRIVER = driver.__name__  # shown in /status.json: which driver a node's figures were taken with
# By module path: MySQLdb imports its `cursors` only on its first connect.
DictCursor: Any = importlib.import_module(f"{driver.__name__}.cursors").DictCursor
IntegrityError: type[Exception] = driver.IntegrityError
Conn = Any  # a driver connection: used by one worker thread at a time

# MySQL server errors that mean "the server refused a new connection for lack of slots".
_TOO_MANY = {1040, 1203}
# Idle connections older than this are pinged before use (the server may have dropped them).
_VALIDATE_AFTER_IDLE = 10.0


class DatabaseError(Exception):
    """The database could not serve this unit of work."""


class TooManyConnections(DatabaseError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


def is_connection_error(exc: BaseException) -> bool:
    """Errors after which the connection must not be reused."""
    return isinstance(exc, (driver.OperationalError, driver.InterfaceError, OSError))


# The lengths of DATETIME and TIMESTAMP values as MySQL sends them: 'YYYY-MM-DD HH:MM:SS' and
# up to six digits of fraction after a '.'.
_DATETIME_LENGTHS = frozenset({19, 21, 22, 23, 24, 25, 26})


def parse_datetime(text: str, slow: Callable[[str], Any]) -> Any:
    """`slow(text)` (MySQLdb's DateTime_or_None), computed by datetime.fromisoformat, in C, when
    `text` has the shape MySQL sends. Where fromisoformat takes such a text, every field is digits
    and the two give the same datetime; anything else (a zero date, another shape) goes to `slow`.
    MySQLdb parses these in Python, a tenth of its CPU for a page of rows (issue 18)."""
    if len(text) in _DATETIME_LENGTHS and text[10] == " ":
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    return slow(text)


def _conversions() -> dict[str, Any]:
    """MySQLdb's own conversions, with parse_datetime for DATETIME and TIMESTAMP; PyMySQL's are its own."""
    if DRIVER != "MySQLdb":
        return {}
    conversions = dict(importlib.import_module("MySQLdb.converters").conversions)
    types = importlib.import_module("MySQLdb.constants.FIELD_TYPE")
    slow = importlib.import_module("MySQLdb.times").DateTime_or_None
    fast = functools.partial(parse_datetime, slow=slow)
    for field_type in (types.DATETIME, types.TIMESTAMP):
        if conversions.get(field_type) is slow:  # another MySQLdb release's own: left as it is
            conversions[field_type] = fast
    return {"conv": conversions}


_CONVERSIONS = _conversions()


def connect(cfg: Config, connect_timeout: int = 3, read_timeout: int | None = 10) -> Conn:
    """A connection; timeouts in whole seconds (MySQLdb takes no fractions), `read_timeout` None: none."""
    timeouts = {"connect_timeout": connect_timeout}
    if read_timeout is not None:  # MySQLdb refuses None: leaving it out means no timeout to both drivers
        timeouts.update(read_timeout=read_timeout, write_timeout=read_timeout)
    try:
        conn = driver.connect(
            host=cfg.db_host,
            port=cfg.db_port,
            user=cfg.db_user,
            password=cfg.db_password,
            database=cfg.db_name,
            charset="utf8mb4",
            autocommit=True,
            **timeouts,
            **_CONVERSIONS,
        )
    except driver.OperationalError as e:
        code = e.args[0] if e.args else None
        if code in _TOO_MANY:
            raise TooManyConnections(f"MySQL refused the connection: ({code}) Too many connections") from None
        raise DatabaseUnavailable(f"cannot connect to MySQL at {cfg.db_host}:{cfg.db_port}: {_describe(e)}") from None
    with conn.cursor() as cur:
        # UTC timestamps everywhere; READ COMMITTED avoids gap locks between concurrent creates.
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


def _describe(e: BaseException) -> str:
    # Driver errors are (code, message); never include connection parameters.
    if isinstance(e, driver.MySQLError) and len(e.args) >= 2:
        return f"({e.args[0]}) {e.args[1]}"
    return type(e).__name__


def close(conn: Conn) -> None:
    conn.close()


def ping(conn: Conn) -> None:
    """A round trip that never reconnects (PyMySQL's ping would by default; positional for MySQLdb's C method)."""
    conn.ping(False)


class Workers(Executor):
    """The pool's worker threads, started as jobs need them, up to `size`, all taking jobs from one
    queue. `post` is the request path: a bare callable, no Future, and no Python-level semaphore
    and condition variable per job as ThreadPoolExecutor's submit takes (with run_in_executor's
    chained Futures, the hop cost the loop's thread more than the rest of a 10-row list's
    handler; issue 18). `submit` (an Executor's) serves the pool's opening and closing."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs not taken yet
        self._closed = False

    def post(self, job: Callable[[], None]) -> None:
        """Run `job()` on a worker thread: an idle one, else a new one while fewer than `size` run.
        `job` must not raise."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the database's workers are shut down")
            self._queued += 1
            start = self._queued > self._idle and self._threads < self._size
            if start:
                self._threads += 1
                name = f"{self._name}_{self._threads}"
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the future's owner
                future.set_exception(e)

        self.post(job)
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is None or self._closed:
                    return  # as ThreadPoolExecutor.shutdown(cancel_futures=True): queued jobs are dropped
                self._queued -= 1
            job()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Threads finish the job they run and take no other (never waits: `wait` is ignored)."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)


class Database:
    """Runs blocking driver work off the event loop with pooled or system connections."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        # One worker per pooled connection (plus slack for opening/closing) so a holder of a
        # connection never waits for a thread.
        self.executor = Workers(cfg.pool_max_total + 4, "db")
        self.pool: BoundedPool[Conn] = BoundedPool(
            self._open, close, cfg.pool_max_total, cfg.pool_max_wait_ms / 1000.0, self.executor, loop
        )
        self.too_many_total = 0
        self._system_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-system")
        self._system_conn: Conn | None = None
        self._count_lock = threading.Lock()

    def _open(self) -> Conn:
        try:
            return connect(self.cfg)
        except TooManyConnections:
            with self._count_lock:
                self.too_many_total += 1
            raise

    def pool_stats(self) -> PoolStats:
        return self.pool.stats()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` in a worker thread with a pooled connection.

        Raises PoolExhausted, TooManyConnections, DatabaseUnavailable or what `fn` raises.
        The connection goes back when the worker is done with it, whatever became of the request,
        so a cancelled request can never return a connection that is still in use.

        One hop each way (issue 18): the job goes to a worker as a bare callable (Workers.post),
        and the worker hands the connection and the outcome back to the loop in one callback.
        `run_in_executor` cost a concurrent.futures Future, an asyncio Future chained to it and a
        second wake-up of the loop for the pool's release.
        """
        conn, idle_for = await self.pool.acquire()
        done: asyncio.Future[T] = self.loop.create_future()
        try:
            self.executor.post(functools.partial(self._job, done, conn, idle_for, fn, args))
        except BaseException:  # shut down: the connection was never used
            self.pool.give_back(conn)
            raise
        return await done

    def _job(
        self, done: asyncio.Future[T], conn: Conn, idle_for: float, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> None:
        broken = False
        result: T | None = None
        error: BaseException | None = None
        try:
            if idle_for > _VALIDATE_AFTER_IDLE:
                conn = self._validated(conn)
            result = fn(conn, *args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
            broken = is_connection_error(e)
            if not broken:
                _rollback_quietly(conn)
            error = e
            if broken and not isinstance(e, DatabaseError):
                error = DatabaseUnavailable(f"database connection failed: {_describe(e)}")
        with suppress(RuntimeError):  # the loop is closed: the node is gone, and its pool with it
            self.loop.call_soon_threadsafe(self._done, done, conn, broken, result, error)

    def _done(
        self, done: asyncio.Future[T], conn: Conn, broken: bool, result: T | None, error: BaseException | None
    ) -> None:
        self.pool.give_back(conn, broken)
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def _validated(self, conn: Conn) -> Conn:
        try:
            ping(conn)
            return conn
        except Exception:  # noqa: BLE001 - any failure means: replace it
            with suppress(Exception):
                conn.close()
            return self._open()

    async def run_system(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` on the single system connection (reconnected when broken)."""
        return await self.loop.run_in_executor(self._system_executor, self._system_job, fn, args)

    def _system_job(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._system_conn is None:
            self._system_conn = connect(self.cfg, read_timeout=5)
        conn = self._system_conn
        try:
            return fn(conn, *args)
        except BaseException as e:
            if is_connection_error(e):
                self._system_conn = None
                with suppress(Exception):
                    conn.close()
                if not isinstance(e, DatabaseError):
                    raise DatabaseUnavailable(f"database connection failed: {_describe(e)}") from None
            else:
                _rollback_quietly(conn)
            raise

    def close(self) -> None:
        self.pool.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._system_executor.shutdown(wait=False, cancel_futures=True)


def _rollback_quietly(conn: Conn) -> None:
    with suppress(Exception):  # the original error matters, not this one
        conn.rollback()
