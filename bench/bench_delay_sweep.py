"""The guide's advice on datacenters as numbers: "The nodes can be split between data centers
connected with high speed low latency links within a region, but should not be attempted across
larger geographic regions."

Usage: .venv/bin/python bench/bench_delay_sweep.py [--profiles tuned,rancher-1.0] [--nodes 3]
           [--delays 1,5,20,50,100,200] [--hold 40] [--runs runs]

Per profile, one lab (the default layout: dc-a holds the database and the majority of the nodes,
dc-b the rest; the load balancer outside both). Then, for no delay and for each delay D between
dc-a and dc-b (the `delay` fault, jitter D/4, verified by handshake times when applied), held
`--hold` seconds while the matrix's watch runs: a client writing (POST /v1/projects) and reading
through the load balancer one request at a time (2 s client timeout), probes of every node every
0.2 s, HAProxy's view every 0.1 s. From `SETTLE` seconds after the fault on, per point:
- success share of all requests and of writes, errors by kind;
- write latency (p50, p95) of successful writes, apart for the nodes of each datacenter that
  served them (X-Rancher-Node): a node across the link from the database and ZooKeeper's majority
  pays the round trips;
- whether the ensemble stayed stable: leaders seen (more than one: an election happened), probes
  that found a member not serving, API server restarts;
- nodes the load balancer took out of rotation.
Each point heals and waits for a steady lab before the next. Writes sweep.json, sweep.md and
delay.png into a run directory; prints the table. Loads go only to 127.0.0.1 (the lab's load
balancer); every loop is bounded by `--hold` per point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.capacity.sweep import machine
from lab.chaos.matrix import error_kind
from lab.chaos.watch import Watch, wait_steady
from lab.cli.main import configure_logging
from lab.cluster import images, lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import Topology, make_topology
from lab.core.errors import FaultNotEffective
from lab.faults import FaultSpec, Injector, make_spec
from lab.record.load import make_run_dir

SETTLE = 5.0  # seconds after the fault before measuring: the first requests straddle the change
STEADY_TIMEOUT = 180.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def held(t: Topology, w: Watch, inj: Injector, spec: FaultSpec | None, hold: float) -> dict[str, Any]:
    """The fault (None: nothing) held `hold` seconds under the watch's load, then healed: what the
    client and the probes saw from SETTLE seconds after it on, and what its verification measured
    (`fault`). A fault the check could not verify is reported (`not_verified`), not measured."""
    fault = None
    if spec:
        try:
            fault = inj.apply(spec)
        except FaultNotEffective as exc:
            return {"not_verified": str(exc)}
    t0 = fault.t0 if fault else time.time()
    time.sleep(hold)
    t1 = time.time()
    with w._lock:
        probes = {n: [p for p in ps if t0 + SETTLE <= p.t0 <= t1] for n, ps in w.probes.items()}
        lb = [s for s in w.lb if t0 + SETTLE <= s.t <= t1]
    if fault:
        inj.heal(fault)
    reqs = w.client_window(t0 + SETTLE, t1)
    writes = [r for r in reqs if r.write]
    dc_of = {n.name: n.dc for n in t.nodes}
    latency = {dc: [r.t1 - r.t0 for r in writes if r.ok and dc_of.get(r.node or "") == dc] for dc in t.datacenters}
    every = [r.t1 - r.t0 for r in writes if r.ok]
    errors: dict[str, int] = {}
    for r in reqs:
        kind = error_kind(r)
        if kind:
            errors[kind] = errors.get(kind, 0) + 1
    leaders = sorted({p.node for ps in probes.values() for p in ps if p.zk_mode in ("leader", "standalone")})
    not_serving = sum(1 for ps in probes.values() for p in ps if p.zk_mode not in ("leader", "follower", "standalone"))
    drained = sorted({n for s in lb for n, st in s.servers.items() if st != "UP"})
    return {
        "fault": dict(fault.detail) if fault else {},
        "requests": len(reqs),
        "success": round(sum(r.ok for r in reqs) / len(reqs), 4) if reqs else None,
        "write_success": round(sum(r.ok for r in writes) / len(writes), 4) if writes else None,
        "errors": errors,
        "write_p50_ms": {"all": _ms(pct(every, 0.5)), **{dc: _ms(pct(v, 0.5)) for dc, v in latency.items()}},
        "write_p95_ms": {"all": _ms(pct(every, 0.95)), **{dc: _ms(pct(v, 0.95)) for dc, v in latency.items()}},
        "writes_by_dc": {dc: len(v) for dc, v in latency.items()},
        "leaders_seen": leaders,
        "probes_not_serving": not_serving,
        "drained": drained,
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def sweep(
    profile: str, nodes: int, points: list[tuple[dict[str, Any], FaultSpec | None]], hold: float, out: Path
) -> list[dict[str, Any]]:
    """One lab of the profile; each point (its label, its fault) held in turn from a steady lab."""
    t = make_topology(nodes, lab=unique_lab_name("bd"), ports=free_ports(), profile=profile)
    lifecycle.up(t)
    measured = []
    try:
        sub = out / profile
        sub.mkdir()
        with Watch(t, sub) as w, Injector(t) as inj:
            for label, spec in points:
                if wait_steady(w, STEADY_TIMEOUT, 1.0) is None:
                    raise SystemExit(f"{profile}: the lab was not steady within {STEADY_TIMEOUT:g} s before {label}")
                before = lifecycle.server_restarts(t)
                p = {**label, **held(t, w, inj, spec, hold)}
                after = lifecycle.server_restarts(t)
                p["restarts"] = {n: (k or 0) - (before.get(n) or 0) for n, k in after.items() if k != before.get(n)}
                print(json.dumps({"profile": profile, **p}), flush=True)
                measured.append(p)
    finally:
        lifecycle.save_logs(t, out / profile / "logs")
        lifecycle.down(t.lab)
    return measured


def table(results: dict[str, list[dict[str, Any]]], t: Topology) -> str:
    a, b = t.datacenters[0], t.datacenters[1]
    head = (
        f"| profile | delay (ms) | measured RTT (ms) | success | writes | write p50 {a} / {b} (ms) | "
        f"write p95 {a} / {b} (ms) | errors | leaders seen | not serving | drained | restarts |"
    )
    lines = [head, "|" + "---|" * 12]
    for profile, points in results.items():
        for p in points:
            if "not_verified" in p:
                lines.append(f"| {profile} | {p['delay_ms']:g} | not verified: {p['not_verified']} |" + " |" * 9)
                continue
            rtt = p["fault"].get("rtt_after_ms", {})
            lines.append(
                f"| {profile} | {p['delay_ms']:g} | {statistics.median(rtt.values()) if rtt else '-'} | "
                f"{share(p['success'])} | {share(p['write_success'])} | "
                f"{p['write_p50_ms'][a]} / {p['write_p50_ms'][b]} | {p['write_p95_ms'][a]} / {p['write_p95_ms'][b]} | "
                f"{', '.join(f'{k}x{v}' for k, v in sorted(p['errors'].items())) or '-'} | "
                f"{', '.join(p['leaders_seen'])} | {p['probes_not_serving']} | {', '.join(p['drained']) or '-'} | "
                f"{sum(p['restarts'].values())} |"
            )
    return "\n".join(lines)


def share(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def plot(results: dict[str, list[dict[str, Any]]], t: Topology, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for profile, measured in results.items():
        points = [p for p in measured if "not_verified" not in p]
        xs = [max(p["delay_ms"], 0.5) for p in points]  # log axis: no delay drawn at 0.5 ms
        for dc, style in zip(t.datacenters, ("-", "--"), strict=False):
            ys = [p["write_p95_ms"][dc] for p in points]
            ax1.plot(xs, ys, style, marker="o", label=f"{profile}, nodes in {dc}")
        ax2.plot(xs, [100 * (p["write_success"] or 0) for p in points], marker="o", label=profile)
    ax1.set(xscale="log", yscale="log", xlabel="delay between datacenters (ms)", ylabel="write p95 (ms)")
    ax2.set(xscale="log", xlabel="delay between datacenters (ms)", ylabel="writes that succeeded (%)", ylim=(0, 101))
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


Results = dict[str, list[dict[str, Any]]]  # profile -> its measured points


def sweep_main(
    name: str,
    title: str,
    ap: argparse.ArgumentParser,
    hold: float,
    points: Callable[[argparse.Namespace], list[tuple[dict[str, Any], FaultSpec | None]]],
    table: Callable[[Results, argparse.Namespace], str],
    plot: Callable[[Results, argparse.Namespace, Path], None],
) -> int:
    """A sweep's command: the options every sweep has (besides the sweep's own in `ap`), one lab per
    profile through the points, then sweep.json, sweep.md and <name>.png in a run directory."""
    ap.add_argument("--profiles", default="tuned,rancher-1.0")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--hold", type=float, default=hold, help="seconds each point is held")
    ap.add_argument("--runs", default="runs")
    args = ap.parse_args()
    configure_logging(stream=sys.stdout)
    images.build()
    out = make_run_dir(f"{name}-sweep", args.runs)
    started = time.time()
    results = {p: sweep(p, args.nodes, points(args), args.hold, out) for p in args.profiles.split(",")}
    meta = {"machine": machine(), "nodes": args.nodes, "hold_s": args.hold, "settle_s": SETTLE}
    (out / "sweep.json").write_text(json.dumps({**meta, "seconds": round(time.time() - started), "results": results}))
    text = table(results, args)
    (out / "sweep.md").write_text(f"# {title} ({args.nodes} nodes)\n\n{text}\n")
    plot(results, args, out / f"{name}.png")
    print(text)
    print(f"wrote {out}/sweep.json, sweep.md and {name}.png ({time.time() - started:.0f} s)")
    return 0


def delay_points(args: argparse.Namespace) -> list[tuple[dict[str, Any], FaultSpec | None]]:
    points: list[tuple[dict[str, Any], FaultSpec | None]] = [({"delay_ms": 0.0}, None)]
    for d in (float(x) for x in args.delays.split(",")):
        spec = make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=d / 1000, jitter=d / 4000)
        points.append(({"delay_ms": d, "jitter_ms": d / 4}, spec))
    return points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delays", default="1,5,20,50,100,200", help="milliseconds")
    return sweep_main(
        "delay",
        "Delay between datacenters",
        ap,
        40.0,
        delay_points,
        lambda results, args: table(results, make_topology(args.nodes)),
        lambda results, args, path: plot(results, make_topology(args.nodes), path),
    )


if __name__ == "__main__":
    raise SystemExit(main())
