"""Entry points of the node image: `python3 -m lab.server` is the supervisor (supervisor.py, under
tini), which runs `python3 -m lab.server serve`, the API server."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import logging
import signal
import sys

from aiohttp.http_exceptions import HttpProcessingError

from . import hostclock, zkserver
from .config import Config, ConfigError, from_env
from .node import Node
from .supervisor import supervise

log = logging.getLogger("halab.main")


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp 3.8 logs every request its HTTP parser refuses (answered 400: an unknown method, a
    malformed head) with a traceback. It is the client's mistake: one line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = (
                "refused a malformed HTTP request (%s): %s",
                (exc.code, " ".join(str(exc.message).split())),
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


async def run(cfg: Config) -> int:
    p = cfg.profile
    if p.zk_wait_tries and not await zkserver.wait_ruok(cfg.zk_connection_string, p.zk_wait_tries, p.zk_wait_interval):
        log.error(
            "ZooKeeper at %s did not answer ruok after %d tries; giving up",
            zkserver.first_host(cfg.zk_connection_string)[0],
            p.zk_wait_tries,
        )
        return 1
    loop = asyncio.get_running_loop()
    node = Node(cfg, loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_exit, 0)
    await node.start()
    code = await node.exit_code
    log.info("node %s stopping (status %d)", cfg.node_name, code)
    await node.stop()
    return code


def use_uvloop() -> str:
    """Run on uvloop where it is installed (the node image: python3-uvloop), else on asyncio's own
    loop (a checkout's venv, unit tests); returns the loop's name for the start-up log.

    The API server's one event loop thread is the node's CPU limit on database-backed lists
    (issue 18): uvloop's transports, timers and wake-ups from the database's worker threads cost
    less per request than the selector loop's Python code. Nothing in the server depends on which.
    """
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# glibc's mallopt parameter, and how many freed bytes the API server's heap keeps mapped (below).
M_TRIM_THRESHOLD = -1
TRIM_THRESHOLD = 32 << 20


def keep_freed_memory() -> bool:
    """Let glibc keep up to TRIM_THRESHOLD freed bytes at the top of the heap (default 128 KiB).

    Every request in flight holds real working memory (heap.py: a 64 KiB bytearray, plus its body
    past 4 KiB). With the default threshold, glibc handed the heap's top back to the kernel as
    soon as a few requests had finished, and the next ones page-faulted it in again: about 30 µs
    of CPU per request, on the one thread that limits the node (issue 18). What stays mapped is
    memory the process had in use at its peak, at most TRIM_THRESHOLD of it (RSS after bench_server's
    load: about 4 MiB more); the heap model's accounting is unchanged. False where the C library
    has no mallopt (not glibc).
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    hostclock.install()  # before anything reads the wall clock
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(ClientErrorsInOneLine())
    try:
        cfg = from_env()
        if args == ["serve"]:
            # The supervisor's loop and heap are not on any request's path.
            log.info("event loop: %s; freed memory kept: %s", use_uvloop(), keep_freed_memory())
            return asyncio.run(run(cfg))
        return asyncio.run(supervise(cfg))
    except ConfigError as e:
        log.error("bad configuration: %s", e)
        return 2
