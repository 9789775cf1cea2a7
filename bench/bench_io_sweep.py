"""The guide's "MySQL database should have fast disks" as numbers: the database's disk throttled
step by step (the `io` fault, operations a second, reads and writes each) while the matrix's watch
writes and reads through the load balancer.

Usage: .venv/bin/python bench/bench_io_sweep.py [--profiles tuned,rancher-1.0] [--nodes 3]
           [--iops 2000,500,100,20,5] [--hold 30] [--runs runs]

Per profile, one lab; for no limit and for each limit, held `--hold` seconds (verified when applied
by timed direct writes in the data directory): success share of all requests and of writes, write
latency (p50, p95) of the successful writes, errors by kind, members not serving, nodes drained,
server restarts, measured as bench/bench_delay_sweep.py measures a delay (its `held` and `sweep`).
Writes sweep.json, sweep.md and io.png into a run directory; prints the table. Loads go only to
127.0.0.1 (the lab's load balancer); every loop is bounded by `--hold` per point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_delay_sweep import share, sweep_main

from lab.faults import DB, FaultSpec, make_spec


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    head = (
        "| profile | database disk (iops) | probe writes took (s) | success | writes | write p50 / p95 (ms) | "
        "errors | not serving | drained | restarts |"
    )
    lines = [head, "|" + "---|" * 10]
    for profile, points in results.items():
        for p in points:
            limit = p["iops"] or "none"
            if "not_verified" in p:
                lines.append(f"| {profile} | {limit} | not verified: {p['not_verified']} |" + " |" * 7)
                continue
            took = p["fault"].get("write_s_after", {}).get(DB, "-")
            lines.append(
                f"| {profile} | {limit} | {took} | {share(p['success'])} | {share(p['write_success'])} | "
                f"{p['write_p50_ms']['all']} / {p['write_p95_ms']['all']} | "
                f"{', '.join(f'{k}x{v}' for k, v in sorted(p['errors'].items())) or '-'} | "
                f"{p['probes_not_serving']} | {', '.join(p['drained']) or '-'} | {sum(p['restarts'].values())} |"
            )
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for profile, measured in results.items():
        points = [p for p in measured if "not_verified" not in p and p["iops"]]
        xs = [p["iops"] for p in points]
        ax1.plot(xs, [p["write_p95_ms"]["all"] for p in points], marker="o", label=profile)
        ax2.plot(xs, [100 * (p["write_success"] or 0) for p in points], marker="o", label=profile)
    x = "database disk (operations a second)"
    ax1.set(xscale="log", yscale="log", xlabel=x, ylabel="write p95 (ms)")
    ax2.set(xscale="log", xlabel=x, ylabel="writes that succeeded (%)", ylim=(0, 101))
    for ax in (ax1, ax2):
        ax.invert_xaxis()  # slower to the right
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def io_points(args: argparse.Namespace) -> list[tuple[dict[str, Any], FaultSpec | None]]:
    points: list[tuple[dict[str, Any], FaultSpec | None]] = [({"iops": None}, None)]
    return points + [({"iops": int(x)}, make_spec("io", [DB], io_iops=int(x))) for x in args.iops.split(",")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iops", default="2000,500,100,20,5", help="operations a second the database's disk allows")
    return sweep_main(
        "io",
        "The database's disk, throttled",
        ap,
        30.0,
        io_points,
        lambda results, _args: table(results),
        lambda results, _args, path: plot(results, path),
    )


if __name__ == "__main__":
    raise SystemExit(main())
