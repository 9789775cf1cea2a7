"""Load benchmarks (issue 5): load balancer overhead, Locust against wrk, a follower killed.

Usage: .venv/bin/python bench/bench_load.py [--lab NAME | --nodes 3] [--direct URL]
                                             [--duration 20s] [--only overhead,wrk,kill]

- `overhead`: the same offered load (`--rate-users` users x `--rate` req/s each, Locust pacing)
  on `GET /v1/projects` through the load balancer and straight to one node (`--direct`, a node's
  API published on 127.0.0.1; skipped without it); median and p95 latency compared.
  Target: the load balancer adds 15% or less.
- `wrk`: peak rate on the same endpoint through the load balancer, wrk (`-t2 -c<conns>`) against
  Locust (`EndpointUser`, `--processes 2`, the same connection count, history recorded as in
  every run). Target: Locust reaches at least half of wrk's rate.
- `kill`: the Rancher users of loadtests/rancher.py through the load balancer, nodes probed by
  lab.watch; a ZooKeeper follower is killed after a third of the run and restarted a third later;
  then the checker and the report. Targets: no failed idempotent request, failures 0.1% or less
  of all requests, no lost write.

Without `--lab` a fresh lab (`--nodes`, default 3) is started on free ports and removed
afterwards. Each measurement is a bounded Locust run with its own run directory under `runs/`;
figures come from the recorded history (per-second medians skip the first and last 2 seconds:
ramp-up and stop).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import faults  # noqa: E402
from lab.chaos.watch import Watch  # noqa: E402
from lab.cli.main import configure_logging  # noqa: E402
from lab.cluster import lifecycle, probes, state  # noqa: E402
from lab.cluster.preflight import free_ports  # noqa: E402
from lab.cluster.state import unique_lab_name  # noqa: E402
from lab.cluster.topology import Topology, make_topology  # noqa: E402
from lab.core.durations import parse_duration  # noqa: E402
from lab.record.checker import per_second  # noqa: E402
from lab.record.history import HISTORY_FILE, load_run  # noqa: E402
from lab.record.load import LoadRun, LoadSpec, make_run_dir, run_load  # noqa: E402
from lab.record.report import build_report  # noqa: E402

ENDPOINT = "/v1/projects"
ENDPOINT_LOCUSTFILE = str(REPO / "loadtests" / "endpoint.py")


def steady(run_dir: Path) -> dict[str, float]:
    """Median requests/s and latency of the steady seconds of a recorded run."""
    seconds = [s for s in per_second(load_run(run_dir).requests)][2:-2]
    if not seconds:
        raise SystemExit(f"{run_dir}: too few recorded seconds to measure")
    return {
        "rps": statistics.median(s.total for s in seconds),
        "p50_ms": statistics.median(s.p50 for s in seconds if s.p50 is not None),
        "p95_ms": statistics.median(s.p95 for s in seconds if s.p95 is not None),
        "failed": sum(s.failed for s in seconds),
    }


def endpoint_run(
    name: str, base_url: str, users: int, duration: float, env: dict[str, str], processes: int = 1
) -> dict[str, float]:
    port = int(base_url.rsplit(":", 1)[1])
    spec = LoadSpec(
        name=name,
        users=users,
        spawn_rate=users,
        duration=duration,
        http_port=port,
        locustfile=ENDPOINT_LOCUSTFILE,
        processes=processes,
        env={"HALAB_ENDPOINT": ENDPOINT, **env},
    )
    return steady(run_load(spec).run_dir)


def bench_overhead(t: Topology, direct: str | None, users: int, rate: float, duration: float) -> dict[str, Any]:
    if not direct:
        return {"skipped": "no --direct URL of a node's API on 127.0.0.1"}
    if not re.match(r"^http://127\.0\.0\.1:\d+$", direct):
        raise SystemExit("--direct: give http://127.0.0.1:<port> (load goes to this machine only)")
    paced = {"HALAB_RATE": str(rate)}
    via_lb = endpoint_run("bench-overhead-lb", f"http://127.0.0.1:{t.ports.http}", users, duration, paced)
    straight = endpoint_run("bench-overhead-direct", direct, users, duration, paced)
    if via_lb["failed"] or straight["failed"]:
        raise SystemExit(f"requests failed (LB {via_lb['failed']}, direct {straight['failed']}): no comparison")
    return {
        "offered_rps": users * rate,
        "lb": via_lb,
        "direct": straight,
        "p50_overhead_pct": round(100 * (via_lb["p50_ms"] / straight["p50_ms"] - 1), 1),
        "p95_overhead_pct": round(100 * (via_lb["p95_ms"] / straight["p95_ms"] - 1), 1),
    }


def bench_wrk(t: Topology, conns: int, duration: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{t.ports.http}{ENDPOINT}"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{int(duration)}s", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot read wrk's rate from:\n{out}")
    wrk_rps = float(m.group(1))
    locust = endpoint_run("bench-wrk-locust", f"http://127.0.0.1:{t.ports.http}", conns, duration, {}, processes=2)
    return {
        "connections": conns,
        "wrk_rps": wrk_rps,
        "locust": locust,
        "locust_over_wrk": round(locust["rps"] / wrk_rps, 2),
    }


def bench_kill(t: Topology, users: int, think: str, duration: float) -> dict[str, Any]:
    run_dir = make_run_dir("bench-kill-follower")
    ca = state.ca_path(t.lab)
    spec = LoadSpec(
        name="bench-kill-follower",
        users=users,
        spawn_rate=users,
        duration=duration,
        http_port=t.ports.http,
        https_port=t.ports.https,
        ca_file=str(ca) if ca.exists() else None,
        env={"HALAB_WAIT": think},
    )
    third = duration / 3
    # Watch probes every node into the run's history; the injector records the fault there.
    with Watch(t, run_dir, client=False), faults.Injector(t, history=run_dir / HISTORY_FILE) as nemesis:
        load = LoadRun(spec, run_dir).start()
        try:
            time.sleep(third)
            with nemesis.held(faults.make_spec("kill", ["follower"])):
                time.sleep(third)
            load.wait()
        finally:
            load.stop()
    report = build_report(run_dir, query=lambda sql: probes.db_query(t, sql))
    r = report.result
    (f,) = r.faults
    return {
        "run_dir": str(run_dir),
        "requests": r.requests,
        "failed": r.failed,
        "failed_pct": round(100 * r.failed / r.requests, 3) if r.requests else None,
        "failed_idempotent": r.failed_idempotent,
        "acknowledged_writes": r.acks,
        "checks": {o.name: f"{o.status} ({len(o.violations)} violations of {o.checked})" for o in r.outcomes},
        "killed": f.targets,
        "time_to_detect_s": f.time_to_detect,
        "time_to_recover_s": f.time_to_recover,
        "fault_window_failed": f.failed,
        "report": str(report.html),
    }


def with_lab(name: str | None, nodes: int, work: Callable[[Topology], dict[str, Any]]) -> dict[str, Any]:
    if name:
        return work(state.load_topology(name))
    t = make_topology(nodes, lab=unique_lab_name("benchload"), ports=free_ports())
    lifecycle.up(t)
    try:
        return work(t)
    finally:
        lifecycle.down(t.lab)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", help="use this running lab instead of starting one")
    ap.add_argument("--nodes", type=int, default=3, help="size of the lab started without --lab (default 3)")
    ap.add_argument("--direct", help="http://127.0.0.1:<port>: one node's API, for the overhead comparison")
    ap.add_argument("--duration", default="20s", help="each measurement run (default 20s; kill: x3)")
    ap.add_argument("--only", default="overhead,wrk,kill")
    ap.add_argument("--rate-users", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="requests/s per user in the overhead runs")
    ap.add_argument("--conns", type=int, default=32, help="connections (wrk) = users (Locust) in the peak runs")
    ap.add_argument("--users", type=int, default=30, help="Rancher users in the kill run")
    ap.add_argument("--think", default="0.1,0.5", help="MIN,MAX seconds between an API user's requests (kill run)")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)  # the lab's progress, as the benchmark prints its own
    duration = parse_duration(args.duration, "--duration", positive=True)
    only = set(args.only.split(","))

    def work(t: Topology) -> dict[str, Any]:
        out: dict[str, Any] = {
            "machine": f"{platform.node()} {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "lab": t.lab,
            "nodes": t.size,
        }
        if "overhead" in only:
            out["overhead"] = bench_overhead(t, args.direct, args.rate_users, args.rate, duration)
        if "wrk" in only:
            out["wrk"] = bench_wrk(t, args.conns, duration)
        if "kill" in only:
            out["kill_follower"] = bench_kill(t, args.users, args.think, 3 * duration)
        return out

    print(json.dumps(with_lab(args.lab, args.nodes, work), indent=2, default=str))


if __name__ == "__main__":
    main()
