"""A capacity sweep on a swarm (`halab capacity --engine swarm`): every point's lab a stack on a host
group, Locust on this machine through the manager's published ports, each container's memory
(`docker stats`) and CPU (its cgroup's counters) read through the Docker of the host that runs its
task. Prints, per point: successful requests/s, each service's peak memory and CPU share, the
bottleneck; and this machine's load average before and after (the hosts are containers here and
share its CPUs). Makes a 3-host group of its own unless --hosts names one, and removes it after.

Usage: .venv/bin/python bench/bench_swarm_capacity.py [--hosts GROUP] [--users 5,20] [--duration 20s]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.capacity import spec, sweep
from lab.cli.main import configure_logging
from lab.cluster import hosts
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name


def figures(directory: Path) -> list[dict[str, Any]]:
    """Each point's throughput, peak memory and CPU by service, and bottleneck, from capacity.json."""
    data = json.loads((directory / "capacity.json").read_text())
    out = []
    for p in data["points"]:
        load, bn = p.get("load") or {}, p.get("bottleneck") or {}
        # "database CPU", "node CPU a1", "load balancer CPU lb", "machine CPU" -> "database", "node a1", ...
        cpu = {k.replace(" CPU", ""): v for k, v in (p.get("usage_peaks") or {}).items() if "CPU" in k}
        out.append(
            {
                "point": p["label"],
                "status": p["status"],
                "ok_req_s": load.get("throughput"),
                "memory_peak_mib": p.get("memory_peak_mib"),
                "cpu_peak_share": cpu,
                "bottleneck": f"{bn.get('resource', '?')} {bn.get('where', '')}".strip(),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", help="an existing host group (default: make one of 3 hosts, removed after)")
    ap.add_argument("--users", default="5,20")
    ap.add_argument("--duration", default="20s")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)
    group, made = args.hosts, None
    if group is None:
        ports = free_ports()
        made = hosts.up(hosts.make_group(unique_lab_name("swc"), 3, published=(ports.http, ports.https, ports.mgmt)))
        group = made.name
    try:
        grid = spec.build_grid(
            None,
            "bench",
            {"nodes": "3", "users": args.users},
            {"duration": args.duration, "engine": "swarm", "hosts": group},
        )
        before = os.getloadavg()
        start = time.monotonic()
        directory = sweep.sweep(grid, tempfile.mkdtemp(prefix="bench-swarm-capacity-"), unique_lab_name("swccap"))
        result = {
            "machine": f"{platform.node()} {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "hosts": group,
            "load_average_before": [round(x, 2) for x in before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "sweep_s": round(time.monotonic() - start, 1),
            "report": str(directory / "capacity.md"),
            "how": "memory: docker stats on the task's host; CPU: the task's cgroup counters read in its host "
            "container, as a share of its limit (a node's: 1 CPU, the GIL); machine CPU: this machine's /proc/stat",
            "points": figures(directory),
        }
        print(json.dumps(result, indent=2))
    finally:
        if made is not None:
            hosts.down(made.name)


if __name__ == "__main__":
    main()
