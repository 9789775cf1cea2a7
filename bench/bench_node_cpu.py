"""CPU per request of the node's API server on its own, without Docker (issue 18).

Runs lab/server's API as a node does (`Api`, the `Database` pool and its worker threads, the heap
model, request metrics, `Listener`) in a child process on this machine's Python, and drives it
with `wrk -t1` for a bounded time per endpoint. The database is a stand-in connection that answers
every query with the rows a 1-node lab holds after bench_server.py's set-up (the Default project
and twenty fillers, as the drivers' cursors return them), or with --mysql a real one (the driver's
work included; MariaDB's is in another process). CPU per request is the child's user +
system CPU (/proc/<pid>/stat) over the requests wrk completed, so it is far less sensitive to a
busy machine than req/s. What the stand-in leaves out: the MySQL driver's work (query, row parsing)
and the database's worker threads waiting for it; bench_server.py measures the whole node.

Run it on Debian's python3 with the image's packages for the image's figures (`apt-get install
python3-aiohttp python3-uvloop python3-kazoo python3-mysqldb wrk`; aiohttp 3.8 as in the image, the
venv's is another release). Each checkout (--trees, default this
one) runs its own lab/server, set up as its `python3 -m lab.server serve` is (event loop, malloc),
alternating round by round, so that a before/after pair shares the machine's conditions:

    /usr/bin/python3 bench/bench_node_cpu.py [--trees BEFORE AFTER] [--duration 5] [--rounds 3] \\
        [--profile FILE] [--mysql HOST:PORT]

--profile writes cProfile's summary of the server process during the list's load to FILE (one
round, the first tree; the profiler slows every Python call: read it for where the time goes, not
for totals, and it sees nothing of uvloop's C code).
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
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
_MYSQL_ENV = "HALAB_BENCH_MYSQL"  # --mysql, handed to the child
_CREATED = dt.datetime(2026, 12, 1, 11, 48, 31, 745389)
ROWS = [
    {
        "id": i,
        "name": "Default" if i == 1 else f"filler-{i - 2}",
        "account_id": None,
        "kind": "project",
        "uuid": "adminProject" if i == 1 else f"db196e36-2a73-45cb-98d7-4aa2e78e{i:04x}",
        "description": "Default project" if i == 1 else None,
        "state": "active",
        "created": _CREATED + dt.timedelta(seconds=i),
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
    """Every SELECT answers with the project rows (its LIMIT and OFFSET applied): as dicts from a
    DictCursor (`dicts`), else as tuples, as the drivers do."""

    description = tuple((name, None, None, None, None, None, None) for name in ROWS[0])

    def __init__(self, dicts: bool) -> None:
        self._dicts = dicts
        self._rows: list[Any] = []

    def __enter__(self) -> StandInCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: Any = ()) -> int:
        if sql.endswith("LIMIT %s OFFSET %s"):
            limit, offset = list(args)[-2:]
            rows = ROWS[offset : offset + limit]
        else:
            rows = ROWS[:1]
        self._rows = [dict(r) if self._dicts else tuple(r.values()) for r in rows]
        return len(self._rows)

    def fetchall(self) -> list[Any]:
        return self._rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


class StandInConnection:
    def cursor(self, cls: Any = None) -> StandInCursor:
        return StandInCursor(dicts=cls is not None)

    def ping(self, reconnect: bool = False) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


async def serve(port: int, profile: str | None) -> None:
    """The child: the API of a node whose database is the stand-in (lab.server from PYTHONPATH)."""
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

    class StandInDatabase(db.Database):
        def _open(self) -> Any:
            return StandInConnection()

    mysql = os.environ.get(_MYSQL_ENV)

    class Coordinator:
        connected = False  # no ZooKeeper: the cache is filled by hand below

    class RigNode:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            env = {"HALAB_NODE_NAME": "a1", "CATTLE_JAVA_OPTS": "-Xmx1g", "HALAB_PROFILE": "rancher-1.0"}
            if mysql:
                host, _, port = mysql.rpartition(":")
                env.update(CATTLE_DB_CATTLE_MYSQL_HOST=host, CATTLE_DB_CATTLE_MYSQL_PORT=port)
                env.update({k: v for k, v in os.environ.items() if k.startswith("CATTLE_DB_CATTLE_")})
            self.cfg = from_env(env)
            self.heap = HeapModel(self.cfg.heap_xmx, self.cfg.heap_scale)
            self.sm = HAStateMachine()
            self.sm.observe(Health(bootstrapped=True, zk_connected=True, db_ok=True))
            self.requests = RequestMetrics()
            self.db = (db.Database if mysql else StandInDatabase)(self.cfg, loop)
            self.auth = Authenticator(self.db)
            self.cache = ResourceCache(self.heap)
            self.coord = Coordinator()
            self.ctx = store.Context(self.cfg.registration_url)
            self.default_project_id = 1

        def die_of_oom(self, e: OutOfMemory) -> None:
            raise SystemExit(f"the rig's heap model ran out: {e}")

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
    print(f"ready {type(loop).__module__}", flush=True)
    await stop.wait()
    if profiler is not None and profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
        Path(profile).write_text(out.getvalue())
    await listener.stop()
    node.db.close()


def serve_as_the_node_does(port: int, profile: str | None) -> None:
    """What this tree's `python3 -m lab.server serve` sets up before its loop, where it has it."""
    main = importlib.import_module("lab.server.main")
    for setup in ("use_uvloop", "keep_freed_memory"):
        if hasattr(main, setup):
            getattr(main, setup)()
    asyncio.run(serve(port, profile))


def child_cpu(pid: int) -> float:
    rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def wrk(url: str, duration: int, connections: int) -> int:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: non-2xx answers:\n{out}")
    requests = re.search(r"(\d+) requests in", out)
    if requests is None:
        raise SystemExit(f"{url}: no request count in wrk's output:\n{out}")
    return int(requests.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(tree: str, args: argparse.Namespace) -> tuple[str, dict[str, tuple[float, float]]]:
    """(the child's event loop module, {endpoint: (req/s, CPU ms per request)})."""
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port)] + (["--profile", args.profile] if args.profile else [])
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    if args.mysql:
        env[_MYSQL_ENV] = args.mysql
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise SystemExit(f"the server of {tree} did not start")
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
        return ready[1], results
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", default=[str(Path(__file__).resolve().parents[1])], help="checkouts")
    ap.add_argument("--duration", type=int, default=5, help="seconds of load per endpoint (default 5)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each tree once a round (default 3)")
    ap.add_argument("--profile", help="write cProfile's summary of the list's load here")
    ap.add_argument(
        "--mysql",
        metavar="HOST:PORT",
        help="a real database instead of the stand-in: its `cattle` schema with the bench's projects"
        " (CATTLE_DB_CATTLE_USERNAME, _PASSWORD and _NAME as a node reads them)",
    )
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_as_the_node_does(args.serve, args.profile)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    import aiohttp

    trees, rounds = (args.trees[:1], 1) if args.profile else (args.trees, args.rounds)
    print(
        f"The node's API server alone ({sys.executable}, aiohttp {aiohttp.__version__}),"
        f" {f'the database at {args.mysql}' if args.mysql else 'a stand-in database'};"
        f" wrk -t1 -c{args.connections} -d{args.duration}s per endpoint; CPU: the server process's user + system."
    )
    print(f"{'round':5} {'tree':24} {'loop':8} {'endpoint':34} {'req/s':>8} {'CPU ms/req':>11}  load")
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for tree in trees:
            loop, results = measure(tree, args)
            loop = loop.split(".")[0]
            load = Path("/proc/loadavg").read_text().split()[0]
            for label, (rps, ms) in results.items():
                cpu.setdefault((tree, label), []).append(ms)
                print(f"{r + 1:5} {tree[-24:]:24} {loop[:8]:8} {label:34} {rps:8.0f} {ms:11.3f}  {load}", flush=True)
    # Other work on the machine only adds to a request's CPU (shared caches, frequency): the least
    # of the rounds is the steadiest figure, the median the typical one.
    print(f"\n{'tree':24} {'endpoint':34} {'CPU ms/req: min':>16} {'median':>7}")
    for (tree, label), values in cpu.items():
        print(f"{tree[-24:]:24} {label:34} {min(values):16.3f} {statistics.median(values):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
