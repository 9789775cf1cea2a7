"""Entry point of the node image: `python3 -m lab.server` (PID 1 is tini)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .config import ConfigError, from_env
from .node import Node

log = logging.getLogger("halab.main")


async def run() -> int:
    cfg = from_env()
    loop = asyncio.get_running_loop()
    node = Node(cfg, loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_exit, 0)
    await node.start()
    code = await node.exit_code
    log.info("node %s stopping (status %d)", cfg.node_name, code)
    await node.stop()
    return code


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    try:
        return asyncio.run(run())
    except ConfigError as e:
        log.error("bad configuration: %s", e)
        return 2
