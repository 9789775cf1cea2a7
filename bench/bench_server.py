"""Benchmark of one simulated Rancher server node: API reads per second and memory (RSS).

Starts a 1-node lab on free ports (the compose lab users run), with its node's API also published
straight on 127.0.0.1 (`halab up --direct-port`), and drives that port with `wrk` (Debian package
`wrk`) for a bounded time per endpoint, so the figures are the node's own, not the load
balancer's. Memory is the sum of VmRSS of every process in the container (the Python API server
and ZooKeeper's JVM), read from /proc inside it, idle and right after the load, next to
`docker stats`' cgroup figure. The lab is removed at the end. During each endpoint's load the
node's and the database's CPU are read from their cgroups' counters (CPUs used on average), and
the node's MySQL driver is taken from its /status.json (issue 18: the C driver, MySQLdb).

    .venv/bin/python bench/bench_server.py [--duration 10] [--connections 32] [--xmx 1g] [--lab-prefix bench]

The node image is the one of the `lab` package imported (PYTHONPATH): its content tag, built if
missing. The node's event loop (uvloop or asyncio's) is read from its log.

Targets (issue 3): >= 1,000 simple reads/s on the 2-core machine; server + ZooKeeper <= 300 MB RSS.
Target (issue 18): the MySQL-backed list >= 2,000 req/s, cached reads no lower than before.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from helpers import http, wait_for

from lab.cli.main import configure_logging
from lab.cluster import cpu, docker, lifecycle
from lab.cluster.compose import container_name
from lab.cluster.preflight import free_port, free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import Sizing, make_topology

_RSS = r"""
import glob, json
out = {}
for st in glob.glob('/proc/[0-9]*/status'):
    try:
        f = dict(l.split(':', 1) for l in open(st) if ':' in l)
        name = f['Name'].strip()
        kb = int(f.get('VmRSS', '0 kB').split()[0])
    except (OSError, ValueError, KeyError):
        continue
    out[name] = out.get(name, 0) + kb
print(json.dumps(out))
"""


def rss(container: str) -> dict[str, int]:
    """KiB of RSS per process name inside the container."""
    return json.loads(docker.run(["docker", "exec", container, "python3", "-c", _RSS], "read RSS", timeout=60))


def cgroup_mem(container: str) -> str:
    return docker.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container], "docker stats", timeout=60
    ).strip()


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "rps": rps,
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "p50": _ms(lat.get("50", "0ms")),
        "p99": _ms(lat.get("99", "0ms")),
    }


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint (default 10)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent wrk connections (default 32)")
    ap.add_argument("--xmx", default="1g", help="the node's -Xmx (heap model budget = Xmx/32; default 1g)")
    ap.add_argument("--lab-prefix", default="bench", help="the lab's name starts with this (default bench)")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)  # the lab's progress, as the benchmark prints its own
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    t = make_topology(
        1,
        lab=unique_lab_name(args.lab_prefix),
        ports=replace(free_ports(), direct=free_port()),
        sizing=Sizing(java_opts=f"-Xmx{args.xmx}"),
    )
    direct = f"http://127.0.0.1:{t.ports.direct}"
    try:
        lifecycle.up(t)
        container = container_name(t, "a1")
        status, _, project = http("POST", f"{direct}/v1/projects", {"name": "bench"})
        assert status == 201, project
        wait_for(
            "the bench project to be active",
            lambda: http("GET", f"{direct}/v1/projects/{project['id']}")[2]["state"] == "active",
            15,
        )
        for i in range(20):
            http("POST", f"{direct}/v1/projects", {"name": f"filler-{i}"})
        wait_for(
            "the fillers to be active",
            lambda: all(p["state"] == "active" for p in http("GET", f"{direct}/v1/projects?limit=100")[2]["data"]),
            15,
        )
        idle = rss(container)
        endpoints = {
            "GET /v1/projects/<id> (cache)": f"/v1/projects/{project['id']}",
            "GET /v1": "/v1",
            "GET /ping": "/ping",
            "GET /v1/projects?limit=10 (MySQL)": "/v1/projects?limit=10",
        }
        ids = {c.service: c.id for c in docker.container_states(t.lab)}
        driver = (http("GET", f"{direct}/status.json")[2].get("database") or {}).get("driver", "?")
        loop = re.search(r"event loop: (\w+)", lifecycle.logs(t, ("a1",)))
        results = {}
        for label, path in endpoints.items():
            before = {s: cpu.container_cpu(ids[s]) for s in ("a1", "db")}
            results[label] = wrk(direct + path, args.duration, args.connections)
            for s, prev in before.items():
                cur = cpu.container_cpu(ids[s])
                results[label][f"{s}_cpu"] = cpu.share(prev, cur) * cur.limit if prev and cur else float("nan")
        loaded = rss(container)
        cgroup = cgroup_mem(container)
        metrics = http("GET", f"{direct}/metrics")[2]
    finally:
        lifecycle.down(t.lab)

    print(
        f"\nOne node (-Xmx{args.xmx}), wrk -t2 -c{args.connections} -d{args.duration}s per endpoint, "
        "API published on 127.0.0.1 (no load balancer); wrk, the node and MariaDB share this machine's cores."
    )
    print(
        f"The node's MySQL driver: {driver}; its event loop: {loop.group(1) if loop else 'asyncio (not logged)'}."
        " CPU: CPUs used on average during the endpoint's load (cgroup counters)."
    )
    print(f"{'endpoint':38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'node CPU':>9} {'DB CPU':>7}")
    for label, r in results.items():
        print(
            f"{label:38} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['non2xx']:8.0f}"
            f" {r['a1_cpu']:9.2f} {r['db_cpu']:7.2f}"
        )

    def mib(d: dict[str, int], *names: str) -> float:
        return sum(v for k, v in d.items() if k in names) / 1024

    print("\nRSS (sum of VmRSS from /proc in the container):")
    for label, snap in (("idle", idle), ("after load", loaded)):
        print(
            f"  {label:11} python3 {mib(snap, 'python3'):6.1f} MiB + ZooKeeper java {mib(snap, 'java'):6.1f} MiB"
            f" = {mib(snap, 'python3', 'java'):6.1f} MiB (all processes {sum(snap.values()) / 1024:.1f} MiB)"
        )
    print(f"  docker stats (cgroup, includes page cache): {cgroup}")
    heap = re.search(r'cattle_heap_pressure\{node="a1"\} ([\d.]+)', metrics)
    print(f"  heap model pressure at the end: {heap.group(1) if heap else '?'}")
    worst = min(r["rps"] for label, r in results.items() if "MySQL" not in label)
    total = mib(loaded, "python3", "java")
    print(
        f"\nsimple reads: min {worst:.0f} req/s (target >= 1000): {'OK' if worst >= 1000 else 'BELOW TARGET'}; "
        f"RSS {total:.0f} MiB (target <= 300 MB): {'OK' if total * 1.048576 <= 300 else 'ABOVE TARGET'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
