"""CPU per request of the node's API server on its own, without Docker (issue 18).

Runs lab/server's API as a node does (`Api`, the `Database` pool and its worker threads, the heap
model, request metrics, `Listener`) in a child process on this machine's Python, and drives it
with `wrk -t1` for a bounded time per endpoint. The database is a stand-in connection that answers
every query with the rows a 1-node lab holds after bench_server.py's set-up (the Default project
and twenty fillers, as MySQLdb's DictCursor returns them). CPU per request is the child's user +
system CPU (/proc/<pid>/stat) over the requests wrk completed, so it is far less sensitive to a
busy machine than req/s. What it leaves out: the MySQL driver's work (query, row parsing) and
MariaDB's; bench_server.py measures the whole node.

Run it on Debian's python3 with the image's packages (python3-aiohttp 3.8, python3-uvloop) for
the image's figures; the venv's aiohttp is another release:

    PYTHONPATH=. /usr/bin/python3 bench/bench_node_cpu.py [--loop asyncio|uvloop|both] \
        [--duration 5] [--profile FILE]

--profile writes cProfile's summary of the server process during the list's load to FILE (the
profiler itself slows every Python call; read it for where the time goes, not for totals).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import importlib
import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.server import db, gdapi, store
from lab.server.api import Api
from lab.server.auth import Authenticator
from lab.server.cache import ResourceCache
from lab.server.config import from_env
from lab.server.heap import HeapModel, OutOfMemory
from lab.server.listener import Listener
from lab.server.metrics import RequestMetrics
from lab.server.resources import RESOURCE_TYPES
from lab.server.state import HAStateMachine, Health

_TICK = os.sysconf("SC_CLK_TCK")
_NOW = dt.datetime(2026, 12, 1, 11, 48, 31, 745389)
ROWS = [
    {
        "id": i,
        "name": "Default" if i == 1 else f"filler-{i - 2}",
        "account_id": None,
        "kind": "project",
        "uuid": "adminProject" if i == 1 else f"db196e36-2a73-45cb-98d7-4aa2e78e{i:04x}",
        "description": "Default project" if i == 1 else None,
        "state": "active",
        "created": _NOW + dt.timedelta(seconds=i),
        "removed": None,
        "remove_time": None,
        "data": "{}",
    }
    for i in range(1, 22)
]
ENDPOINTS = {
    "GET /v1/projects?limit=10 (list)": "/v1/projects?limit=10",
    "GET /v1/projects/1a1 (cache)": "/v1/projects/1a1",
    "GET /ping": "/ping",
}


class StandInCursor:
    """Every SELECT answers with the project rows (LIMIT/OFFSET applied), as dicts."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def __enter__(self) -> StandInCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: Any = ()) -> int:
        m = re.search(r"LIMIT %s OFFSET %s$", sql)
        if m:
            limit, offset = list(args)[-2:]
            self._rows = [dict(r) for r in ROWS[offset : offset + limit]]
        else:
            self._rows = [dict(ROWS[0])]
        return len(self._rows)

    def fetchall(self) -> list[dict[str, Any]]:
        return self._rows

    def fetchone(self) -> dict[str, Any] | None:
        return self._rows[0] if self._rows else None


class StandInConnection:
    def cursor(self, cls: Any = None) -> StandInCursor:
        return StandInCursor()

    def ping(self, reconnect: bool = False) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


class StandInDatabase(db.Database):
    def _open(self) -> Any:
        return StandInConnection()


class Coordinator:
    connected = False  # no ZooKeeper: the cache is filled by hand below


class RigNode:
    """What `Api` uses of a node, with the real pool, heap model, cache and metrics."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = from_env({"HALAB_NODE_NAME": "a1", "CATTLE_JAVA_OPTS": "-Xmx1g", "HALAB_PROFILE": "rancher-1.0"})
        self.heap = HeapModel(self.cfg.heap_xmx, self.cfg.heap_scale)
        self.sm = HAStateMachine()
        self.sm.observe(Health(bootstrapped=True, zk_connected=True, db_ok=True))
        self.requests = RequestMetrics()
        self.db = StandInDatabase(self.cfg, loop)
        self.auth = Authenticator(self.db)
        self.cache = ResourceCache(self.heap)
        self.coord = Coordinator()
        self.ctx = store.Context(self.cfg.registration_url)
        self.default_project_id = 1

    def die_of_oom(self, e: OutOfMemory) -> None:
        raise SystemExit(f"the rig's heap model ran out: {e}")


async def serve(port: int, profile: str | None) -> None:
    loop = asyncio.get_running_loop()
    node = RigNode(loop)
    api = Api(node)  # type: ignore[arg-type]
    key = ("project", 1)
    node.cache.set_enabled(True)
    node.cache.begin_fill(key)
    node.cache.finish_fill(key, api._render(RESOURCE_TYPES["project"], ROWS[0], gdapi.BASE))
    listener = Listener(api.app(), {"X-Rancher-Node": "a1"})
    await listener.start("127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, profiler.disable)
    print("ready", flush=True)
    await stop.wait()
    if profiler is not None and profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
        Path(profile).write_text(out.getvalue())
    await listener.stop()
    node.db.close()


def child_cpu(pid: int) -> float:
    rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def wrk(url: str, duration: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    requests = re.search(r"(\d+) requests in", out)
    assert requests, out
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: non-2xx answers:\n{out}")
    return float(requests.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(loop_name: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), "--loop", loop_name]
    if args.profile:
        cmd += ["--profile", args.profile]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", "the server did not start"
        results = {}
        for label, path in ENDPOINTS.items():
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, 1, args.connections)  # warm-up: connections, caches
            if args.profile and "list" in label:
                child.send_signal(signal.SIGUSR1)
            t0, c0 = time.monotonic(), child_cpu(child.pid)
            n = wrk(url, args.duration, args.connections)
            t1, c1 = time.monotonic(), child_cpu(child.pid)
            if args.profile and "list" in label:
                child.send_signal(signal.SIGUSR2)
            results[label] = (n / (t1 - t0), (c1 - c0) / n * 1000)
        return results
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    ap.add_argument("--duration", type=int, default=5, help="seconds of load per endpoint (default 5)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per loop, alternating (default 3)")
    ap.add_argument("--profile", help="write cProfile's summary of the list's load here (one round)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        if args.loop == "uvloop":
            asyncio.set_event_loop_policy(importlib.import_module("uvloop").EventLoopPolicy())
        asyncio.run(serve(args.serve, args.profile))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    import aiohttp

    loops = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    rounds = 1 if args.profile else args.rounds
    print(
        f"The node's API server alone ({sys.executable}, aiohttp {aiohttp.__version__}), a stand-in database;"
        f" wrk -t1 -c{args.connections} -d{args.duration}s per endpoint; CPU = the server process's user + system."
    )
    print(f"{'round':5} {'loop':8} {'endpoint':34} {'req/s':>8} {'CPU ms/req':>11}  load")
    for r in range(rounds):
        for loop_name in loops:
            for label, (rps, ms) in measure(loop_name, args).items():
                load = Path("/proc/loadavg").read_text().split()[0]
                print(f"{r + 1:5} {loop_name:8} {label:34} {rps:8.0f} {ms:11.3f}  {load}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
