"""Entry points of the node image: `python3 -m lab.server` is the supervisor (supervisor.py, under
tini), which runs `python3 -m lab.server serve`, the API server."""

from __future__ import annotations

import asyncio
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
        return asyncio.run(run(cfg) if args == ["serve"] else supervise(cfg))
    except ConfigError as e:
        log.error("bad configuration: %s", e)
        return 2
