"""Time from `halab hosts up 3` to a healthy 3-node swarm lab on those hosts (images already built
on this machine): the hosts (containers started, dockerd up, images loaded, swarm formed and
labelled), then the lab (stack deployed, database, schema, quorum, every node active through the
load balancer on the manager). Everything is removed after each run.

Usage: .venv/bin/python bench/bench_swarm_up.py [--repeat 1] [--storage-driver overlay2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lab.cli.main import configure_logging
from lab.cluster import hosts, images, lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import Engine, Topology, make_topology


@contextmanager
def swarm_lab(storage_driver: str = "overlay2") -> Iterator[tuple[Topology, hosts.HostGroup, dict[str, float]]]:
    """`hosts up 3` and a 3-node lab on them, timed (seconds: hosts, lab, total); removed on exit."""
    ports = free_ports()
    group = hosts.make_group(
        unique_lab_name("swm"), 3, published=(ports.http, ports.https, ports.mgmt), storage_driver=storage_driver
    )
    t = make_topology(3, lab=unique_lab_name("swm"), ports=ports, engine=Engine("swarm", group.name))
    try:
        start = time.monotonic()
        hosts.up(group)
        formed = time.monotonic()
        try:
            lifecycle.up(t)
            healthy = time.monotonic()
            yield t, group, {"hosts_s": formed - start, "lab_s": healthy - formed, "total_s": healthy - start}
        finally:
            lifecycle.down(t.lab)
    finally:
        hosts.down(group.name)


def time_swarm_up(storage_driver: str) -> dict[str, float]:
    with swarm_lab(storage_driver) as (_, _, timings):
        return timings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--storage-driver", default="overlay2", choices=hosts.STORAGE_DRIVERS)
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)
    images.build(only=(*hosts.LAB_IMAGES, hosts.HOST_IMAGE))
    runs = [time_swarm_up(args.storage_driver) for _ in range(args.repeat)]
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "storage_driver": args.storage_driver,
        "runs": [{k: round(v, 1) for k, v in r.items()} for r in runs],
        "median_total_s": round(statistics.median(r["total_s"] for r in runs), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
