"""The register workload's history (`ops.jsonl`) and its checks: linearizability, session
guarantees and what became of the writes whose outcome the client never learned.

The keys are projects the load created for the run; the register is each one's `description`
(loadtests/rancher.py `RegisterUser`). Locust processes append `Op` lines (lab.record.ops) under
`parts/ops/`, which `merge_ops` moves into the run directory's `ops.jsonl` after the run.

Indeterminate (`info`) writes are resolved against the database after the run (`fetch_rows`): each
key's final value, and how many updates of it were committed since the run began (every committed
update inserts its `project.update` process row in the same transaction). An info write is
**committed** when the final value is its value or an ok read or cas observed it (values are unique
per write); **not committed** when the key's committed updates number exactly its ok writes and
cas, so no info write of the key took effect; **unknown** otherwise (one took effect and was
overwritten before anyone read it, but which one cannot be told).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.record.consistency import check_sessions
from lab.record.history import JsonlWriter
from lab.record.indeterminate import resolve_info_writes
from lab.record.linearizability import check_linearizable
from lab.record.ops import Op, Value

OPS_FILE = "ops.jsonl"
KEYS_FILE = "registers.json"  # the register projects, written by loadtests/registers.py
OPS_PARTS = Path("parts") / "ops"
ROWS_TABLE = "registers"  # the snapshot's table of final values and committed update counts
WITNESS_OPS = 20  # ops of a violation's witness kept in the summary

Row = Mapping[str, Any]


def part_path(parts_dir: str | os.PathLike[str], worker: str) -> Path:
    """The ops file one load process writes (a folder of its own: history parts are merged apart)."""
    return Path(parts_dir) / "ops" / f"ops-{worker}.jsonl"


def _read(path: Path) -> list[Op]:
    ops = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            ops.append(Op.from_json(line))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of a killed process
    return ops


def load_ops(run_dir: str | os.PathLike[str]) -> list[Op] | None:
    """The run's ops ordered by invocation and indexed, or None when it never ran the workload."""
    run = Path(run_dir)
    files = [p for p in [run / OPS_FILE, *sorted((run / OPS_PARTS).glob("*.jsonl"))] if p.exists()]
    if not files:
        return None
    ops = sorted((op for p in files for op in _read(p)), key=lambda op: (op.invoke, op.process))
    return [replace(op, index=i) for i, op in enumerate(ops)]


def merge_ops(run_dir: str | os.PathLike[str]) -> int:
    """Append every ops part to `ops.jsonl` and remove it; returns the ops moved."""
    run = Path(run_dir)
    moved = 0
    with JsonlWriter(run / OPS_FILE) as out:
        for part in sorted((run / OPS_PARTS).glob("*.jsonl")):
            ops = _read(part)
            out.write_lines(op.to_json() for op in ops)
            moved += len(ops)
            part.unlink()
    return moved


def project_ids(keys: Iterable[str]) -> list[int]:
    """The `account` row ids of register keys (project API ids such as 1a4)."""
    return sorted({int(k[2:]) for k in keys if k.startswith("1a") and k[2:].isdigit()})


def load_keys(run_dir: str | os.PathLike[str]) -> list[str]:
    """Every register project the run's workload created (its API ids), ops or not."""
    path = Path(run_dir) / KEYS_FILE
    return [str(k) for k in json.loads(path.read_text())] if path.exists() else []


def fetch_rows(query: Callable[[str], Sequence[Row]], ops: Sequence[Op]) -> list[Row]:
    """Each key's final description and the updates committed to it since the first op."""
    ids = project_ids(op.key for op in ops)
    if not ids:
        return []
    since = datetime.fromtimestamp(min(op.invoke for op in ops) - 1, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    in_list = ",".join(str(i) for i in ids)
    return list(
        query(
            "SELECT a.id, a.description, (SELECT COUNT(*) FROM process_instance p WHERE "
            "p.process_name = 'project.update' AND p.resource_id = CAST(a.id AS CHAR) "
            f"AND p.start_time >= '{since}') AS updates FROM account a WHERE a.id IN ({in_list})"
        )
    )


@dataclass(frozen=True)
class KeyState:
    final: Value
    updates: int  # committed since the run began


def key_states(rows: Iterable[Row]) -> dict[str, KeyState]:
    out = {}
    for row in rows:
        final = row.get("description")
        if isinstance(final, str) and final.strip() in ("", "NULL", "\\N", "None"):
            final = None  # the platform's query may spell NULL
        out[f"1a{row['id']}"] = KeyState(final, int(row.get("updates") or 0))
    return out


def resolver(ops: Sequence[Op], states: Mapping[str, KeyState]) -> Callable[[str, Value], bool | None]:
    """The module docstring's rule, as `resolve_info_writes` takes it."""
    observed = {(op.key, op.observed) for op in ops if op.type == "ok" and op.f != "write"}
    ok_writes = Counter(op.key for op in ops if op.type == "ok" and op.f != "read")

    def committed(key: str, value: Value) -> bool | None:
        state = states.get(key)
        if (key, value) in observed or (state is not None and state.final == value):
            return True
        if state is not None and state.updates == ok_writes[key]:
            return False
        return None

    return committed


@dataclass(frozen=True)
class Finding:
    """One violation or anomaly, for the checker's outcomes and the report."""

    check: str  # linearizable_registers, session_guarantees
    kind: str  # violation, unknown, or a session anomaly kind
    key: str
    t: float | None
    detail: str
    witness: tuple[str, ...]  # the ops that prove it, described
    ops: tuple[int, ...] = ()  # their indices (the timeline marks them)


@dataclass(frozen=True)
class RegisterReport:
    ops: int  # every op recorded
    linearizable: str  # ok, violation, unknown, nothing checked
    ops_checked: int  # ok ops the linearizability search placed
    sessions: str  # ok, anomalies, nothing checked
    reads_checked: int
    anomalies: Mapping[str, int]  # by kind
    indeterminate: Mapping[str, int]  # committed, not committed, unknown
    findings: tuple[Finding, ...]
    by_type: Mapping[str, int]  # ok, fail, info


def check_registers(ops: Sequence[Op], rows: Iterable[Row] | None, max_seconds: float = 20.0) -> RegisterReport:
    ops = [op if op.index >= 0 else replace(op, index=i) for i, op in enumerate(ops)]  # as version_order needs
    lin = check_linearizable(ops, max_seconds=max_seconds)
    sessions = check_sessions(ops, version_order=lin.version_order(ops))
    findings = [
        Finding(
            "linearizable_registers",
            k.valid,
            k.key,
            min((op.invoke for op in k.witness), default=None),
            k.explanation or "the search ran out of its budget: not shown linearizable",
            tuple(op.describe() for op in k.witness[:WITNESS_OPS]),
            tuple(op.index for op in k.witness[:WITNESS_OPS]),
        )
        for k in lin.keys
        if k.valid != "ok"
    ]
    findings += [
        Finding(
            "session_guarantees",
            a.kind,
            a.key,
            a.ops[0].invoke,
            a.explanation,
            tuple(op.describe() for op in a.ops[:WITNESS_OPS]),
            tuple(op.index for op in a.ops[:WITNESS_OPS]),
        )
        for a in sessions.anomalies
    ]
    states = key_states(rows) if rows is not None else {}
    resolved = resolve_info_writes(ops, resolver(ops, states))
    return RegisterReport(
        ops=len(ops),
        linearizable=lin.valid,
        ops_checked=lin.ops,
        sessions=sessions.valid,
        reads_checked=sessions.reads,
        anomalies=sessions.counts(),
        indeterminate=resolved.counts(),
        findings=tuple(findings),
        by_type=dict(Counter(op.type for op in ops)),
    )
