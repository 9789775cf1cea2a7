"""The survivability matrix's run time, and time to detect and to recover per case.

Usage: .venv/bin/python bench/bench_matrix.py [--sizes 1,3,5] [--runs runs]

Runs `lab.matrix.run_matrix` (one lab per size on free ports, labs started and removed inside the
measurement, images already built) and reports, from its matrix.json:
- the wall-clock time of the whole matrix and of each size (lab start included);
- per case, as lab/matrix.py measures them from the watch's records: time to detect (fault ->
  every failed or cut-off node drained by the load balancer, which checks /ping), time to
  recover (fault -> writes through the LB succeed again, 0 when none failed; for an outage,
  heal -> first successful write), and time to heal (heal -> every node active, client ok).

Targets (issue 4): the full 1/3/5 matrix in 15 minutes or less; a killed non-leader drained by
the LB within 1 s; writes resumed within 3 s after a leader kill; a minority side fenced within
the ZooKeeper session timeout (6 s or less). Prints JSON; writes bench.json next to matrix.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.chaos import matrix  # noqa: E402
from lab.cluster import images  # noqa: E402
from lab.cluster.preflight import free_ports  # noqa: E402
from lab.cluster.state import unique_lab_name  # noqa: E402

TARGETS = {
    "matrix_seconds": 900.0,
    "kill_follower_detect": 1.0,
    "kill_leader_recover": 3.0,
    "split_detect": 6.0,
}


def judge(result: matrix.MatrixResult) -> dict[str, object]:
    def worst(pred, attr: str) -> float | None:
        values = [getattr(c, attr) for c in result.cases if pred(c)]
        return None if not values or None in values else max(values)

    figures = {
        "matrix_seconds": round(result.ended - result.started, 1),
        "kill_follower_detect": worst(lambda c: c.case == "kill-follower", "detect"),
        "kill_leader_recover": worst(lambda c: c.case == "kill-leader" and c.size > 1, "recover"),
        "split_detect": worst(lambda c: c.case.startswith("split-"), "detect"),
    }
    return {k: {"measured": None if v is None else round(v, 2), "target": TARGETS[k],
                "met": v is not None and v <= TARGETS[k]} for k, v in figures.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,3,5")
    ap.add_argument("--runs", default="runs")
    args = ap.parse_args()
    images.build(print)
    result = matrix.run_matrix([int(x) for x in args.sizes.split(",")], runs_root=args.runs,
                               lab_prefix=unique_lab_name("bench"), say=print,
                               ports=free_ports)
    print(matrix.table(result))
    out = {
        "date": result.to_dict()["date"], "machine": result.machine, "passed": result.passed,
        "targets": judge(result),
        "cases": [{"nodes": c.size, "case": c.case, "fault": c.fault, "observed": c.observed, "detect_s": c.detect,
                   "recover_s": c.recover, "healed_s": c.healed, "verdict": c.verdict} for c in result.cases],
        "matrix": str(result.run_dir / "matrix.json"),
    }
    (result.run_dir / "bench.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out["targets"], indent=2))


if __name__ == "__main__":
    main()
