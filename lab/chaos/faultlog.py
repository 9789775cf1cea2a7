"""Every fault applied to a lab during a run, whoever applied it: `halab load` runs beside a
`halab fault` of another shell, and its report must show that fault.

The faults package records each healed fault in the lab's `faults.jsonl` and keeps the faults
still held in `faults.json`; a run takes from both those that overlap its window and appends the
ones its history lacks, so `halab report` rebuilds the same answer later. A fault still held
when the run ends is recorded as ending then, marked `held_at_end`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lab.cluster import state
from lab.faults.registry import LOG_FILE, Registry
from lab.faults.spec import FaultSpec
from lab.record.history import HISTORY_FILE, FaultRecord, JsonlWriter, load_run, read_jsonl


def faults_during(lab: str, t0: float, t1: float) -> list[FaultRecord]:
    """The lab's faults, healed or held, that overlap `[t0, t1]`."""
    log = state.lab_dir(lab) / LOG_FILE
    healed = [r for r in read_jsonl(log)[0] if isinstance(r, FaultRecord)] if log.exists() else []
    held = [
        FaultRecord(
            t0=float(e["t0"]),
            t1=max(t1, float(e["t0"])),
            fault=str(e["spec"]["kind"]),
            targets=tuple(e.get("targets", ())),
            id=str(e["id"]),
            detail={"spec": FaultSpec.from_dict(e["spec"]).describe(), "lab": lab, "held_at_end": True},
        )
        for e in Registry(lab).active()
        if e.get("phase") == "active" and "t0" in e
    ]
    return sorted((f for f in healed + held if f.t0 <= t1 and f.t1 >= t0), key=lambda f: f.t0)


def missing_faults(run_dir: str | os.PathLike[str], lab: str, t0: float, t1: float | None = None) -> list[FaultRecord]:
    """The lab's faults of `[t0, t1]` (t1: now) that the run's history does not have yet."""
    known = {(f.id, round(f.t0, 3)) for f in load_run(run_dir).faults}
    return [f for f in faults_during(lab, t0, time.time() if t1 is None else t1) if (f.id, round(f.t0, 3)) not in known]


def record_faults(run_dir: str | os.PathLike[str], lab: str, t0: float, t1: float | None = None) -> list[FaultRecord]:
    """Append to the run's history the lab's faults of `[t0, t1]` (t1: now) it does not have yet."""
    new = missing_faults(run_dir, lab, t0, t1)
    with JsonlWriter(Path(run_dir) / HISTORY_FILE) as w:
        w.extend(new)
    return new
