"""Locust's aggregate rate on a 3-node swarm lab with 1, then 2 workers on the swarm's hosts
(`halab load --workers N`): the same users and duration each time; and the time from `hosts up 3`
to the healthy lab (bench_swarm_up.py's measure) that the runs start from.

How it is measured: a run's rate is Locust's own, the master's "Aggregated" requests per second of
locust_stats.csv (what its workers reported, over its run time), printed beside the merged
history's requests over the span from the first request sent to the last answered, and the
requests each worker counted. The workload is loadtests/endpoint.py by default (GET /v1/projects,
each user sending as soon as it has its answer: the rate Locust's workers can drive), or any
locustfile of loadtests/ (`--locustfile rancher.py`). The master runs on the manager beside the
load balancer; the workers on the other hosts, in turn. Whether a worker ran hot is Locust's own
word: the master logs "exceeded cpu threshold" for a worker above 90 % of a CPU. On one machine all
hosts share its CPUs: the figures say what the workers get there, not what separate machines
would give. The machine's load average is printed before each run (other work on it counts).

Usage: .venv/bin/python bench/bench_swarm_load.py [--users 16] [--duration 30] [--workers 1,2]
       [--locustfile endpoint.py]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_swarm_up import swarm_lab

from lab.cli.main import configure_logging
from lab.cluster import hosts, images, state
from lab.cluster.topology import Topology
from lab.core import paths
from lab.record import history
from lab.record.distributed import IMAGE, SwarmLoadRun, place
from lab.record.load import LoadSpec, make_run_dir, run_load


def locust_rate(run_dir: Path) -> tuple[int, float]:
    """The master's aggregated request count and requests per second."""
    with open(run_dir / "locust_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return int(row["Request Count"]), float(row["Requests/s"])


def history_rate(run_dir: Path) -> tuple[int, float]:
    """Requests in the merged history and their span (first sent to last answered), seconds."""
    requests = history.load_run(run_dir).requests
    span = max(r.t1 for r in requests) - min(r.t0 for r in requests) if requests else 0.0
    return len(requests), span


def one_run(t: Topology, group: hosts.HostGroup, workers: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    spec = LoadSpec(
        name=f"bench-swarm-w{workers}",
        users=args.users,
        spawn_rate=args.users,
        duration=args.duration,
        http_port=t.ports.http,
        https_port=t.ports.https,
        ca_file=str(state.ca_path(t.lab)),
        locustfile=str(paths.LOADTESTS / args.locustfile),
    )
    placement = place(t, workers, group.names[1:])
    run_dir = make_run_dir(spec.name, root=root)
    load_before = os.getloadavg()[0]
    result = run_load(spec, run_dir, load=SwarmLoadRun(t, spec, placement, run_dir))
    count, rate = locust_rate(run_dir)
    merged, span = history_rate(run_dir)
    return {
        "workers": workers,
        "hosts": [w.host.name for w in placement.workers],
        "locust_requests": count,
        "locust_rps": round(rate, 1),
        "merged_requests": merged,
        "history_rps": round(merged / span, 1) if span else None,
        "span_s": round(span, 1),
        "per_worker": dict(result.workers),
        "hot_worker": "exceeded cpu threshold" in (run_dir / "locust.log").read_text(errors="replace"),
        "loadavg_before": round(load_before, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--workers", default="1,2", help="worker counts, one run each, in this order")
    ap.add_argument("--locustfile", default="endpoint.py", help="a locustfile of loadtests/")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)
    images.build(only=(*hosts.LAB_IMAGES, hosts.HOST_IMAGE, IMAGE))
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-swarm-load-") as tmp, swarm_lab() as (t, group, up):
        for n in (int(w) for w in args.workers.split(",")):
            runs.append(one_run(t, group, n, args, Path(tmp)))
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "users": args.users,
        "duration_s": args.duration,
        "locustfile": args.locustfile,
        "hosts_up_to_healthy_lab": {k: round(v, 1) for k, v in up.items()},
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
