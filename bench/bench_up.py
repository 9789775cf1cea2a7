"""Time from `halab up` to healthy for 1, 3 and 5 nodes (images already built), and a cold
image build (every image rebuilt with --no-cache on an existing debian:bookworm-slim).

Usage: .venv/bin/python bench/bench_up.py [--sizes 1,3,5] [--repeat 2] [--db galera:3] [--cold]
Measures wall-clock seconds of lifecycle.up(), which returns only after the database answers (a
Galera database: every member Synced in one Primary Component and the front serving), the schema
is in place, ZooKeeper has a quorum with one leader and every node is active through the load
balancer. Each lab is torn down before the next one. Issue 15's target: `--sizes 3 --db galera:3`
healthy in 30 s or less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from lab.cli.main import configure_logging
from lab.cluster import images, lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import make_topology


def time_up(nodes: int, db: str) -> float:
    t = make_topology(nodes, lab=unique_lab_name("bench"), ports=free_ports(), db=db)
    try:
        start = time.monotonic()
        lifecycle.up(t)
        return time.monotonic() - start
    finally:
        lifecycle.down(t.lab)


def time_cold_build() -> float:
    start = time.monotonic()
    for spec in images.IMAGES:
        with images.build_context(spec) as (dockerfile, context):
            subprocess.run(
                [
                    "docker",
                    "build",
                    "--no-cache",
                    "-q",
                    "-t",
                    images.content_tag(spec),
                    "-f",
                    str(dockerfile),
                    str(context),
                ],
                check=True,
                capture_output=True,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,3,5")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--db", default="single", help="single, galera:3 or galera:5 (halab up --db)")
    ap.add_argument("--cold", action="store_true", help="also time a cold build of every image")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)  # the lab's progress, as the benchmark prints its own
    images.build()
    result: dict = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "db": args.db,
        "up_to_healthy_s": {},
    }
    for n in (int(x) for x in args.sizes.split(",")):
        runs = [time_up(n, args.db) for _ in range(args.repeat)]
        result["up_to_healthy_s"][n] = {
            "runs": [round(r, 1) for r in runs],
            "median": round(statistics.median(runs), 1),
        }
        print(f"{n} node(s), database {args.db}: up to healthy {runs} s", flush=True)
    if args.cold:
        result["cold_build_s"] = round(time_cold_build(), 1)
        print(f"cold build of all images: {result['cold_build_s']} s")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
