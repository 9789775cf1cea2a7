"""The node container's main process (under tini): this host's ZooKeeper member and the API server
as two children, standing in for Rancher's separate `zk` and `cattle` containers.

With the profile's `restart_server` (rancher-1.0) an API server that exits, on a lost ZooKeeper
session (status 3) or anything else, is started again after Docker's restart-policy delay while
the ZooKeeper member keeps running, as Docker restarted the cattle container and left the zk
container alone. Without it (tuned) the supervisor stops ZooKeeper and exits with the server's
status, so the container exits. If ZooKeeper exits the container exits (status 1) in both.

The supervisor writes its restart count to `STATE_FILE`, which the harness reads even while the
server is down (the server also reports it in /status.json and /metrics).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from . import zkserver
from .clustermgr import ClusterManager
from .config import Config

log = logging.getLogger("halab.supervisor")

STATE_FILE = "/tmp/halab-supervisor.json"
# Docker's restart policy: 100 ms before the first restart, doubled each time up to a minute,
# back to 100 ms once the container ran for 10 s.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 60.0
RESTART_RESET_AFTER = 10.0
STOP_TIMEOUT = 5.0


def next_delay(previous: float | None, ran_for: float) -> float:
    """The wait before the next restart, given the last wait and how long the server ran."""
    if previous is None or ran_for >= RESTART_RESET_AFTER:
        return RESTART_DELAY
    return min(RESTART_DELAY_MAX, previous * 2)


def write_state(restarts: int, last_exit: int | None, path: str = STATE_FILE) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"serverRestarts": restarts, "lastExitStatus": last_exit, "at": time.time()}, f)
    os.replace(tmp, path)


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def _start_server(restarts: int, last_exit: int | None) -> asyncio.subprocess.Process:
    env = dict(os.environ, HALAB_SERVER_RESTARTS=str(restarts))
    if last_exit is not None:
        env["HALAB_SERVER_LAST_EXIT"] = str(last_exit)
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "lab.server", "serve", env=env)


async def supervise(cfg: Config) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # rancher-1.0: cluster-manager starts this host's ZooKeeper member (and Redis) in its slot and
    # restarts them itself, as Docker did the zk and redis containers.
    manager = ClusterManager(cfg, next_delay) if cfg.start_zookeeper and cfg.profile.cluster_manager else None
    managing = asyncio.ensure_future(manager.run()) if manager is not None else None
    zk = await zkserver.start(cfg) if cfg.start_zookeeper and manager is None else None
    restarts, last_exit, delay = 0, None, None
    write_state(restarts, last_exit)
    server: asyncio.subprocess.Process | None = None
    try:
        while True:
            server = await _start_server(restarts, last_exit)
            started = time.monotonic()
            waits: set[asyncio.Future[Any]] = {
                asyncio.ensure_future(server.wait()),
                asyncio.ensure_future(stopping.wait()),
            }
            if zk is not None:
                waits.add(asyncio.ensure_future(zk.wait()))
            if managing is not None:
                waits.add(managing)
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                if w is not managing:  # the manager outlives every server process
                    w.cancel()
            if stopping.is_set():
                return 0
            if zk is not None and zk.returncode is not None:
                log.error("ZooKeeper exited with status %s: this host goes down", zk.returncode)
                return 1
            if managing is not None and managing.done():
                log.error("cluster-manager failed: %r: this host goes down", managing.exception())
                return 1
            code = server.returncode
            assert code is not None
            if not cfg.profile.restart_server:
                log.info("server exited with status %d: this host goes down", code)
                return code
            restarts, last_exit = restarts + 1, code
            delay = next_delay(delay, time.monotonic() - started)
            write_state(restarts, last_exit)
            log.warning(
                "server exited with status %d; restart %d in %.1f s (ZooKeeper keeps running)", code, restarts, delay
            )
            try:
                await asyncio.wait_for(stopping.wait(), delay)
                return 0
            except asyncio.TimeoutError:
                pass
    finally:
        await _stop(server)
        await _stop(zk)
        if manager is not None and managing is not None:
            managing.cancel()
            await manager.close()
