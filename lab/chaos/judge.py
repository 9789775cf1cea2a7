"""Judging a run: snapshot the database rows the run's writes touched (after heal), save them in the
run directory, and run the checker over the history and that snapshot. The matrix, scenarios,
`halab load` and `halab report` all judge through `judge`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.core.errors import BadInput
from lab.record import registers
from lab.record.checker import CheckConfig, CheckResult, DbSnapshot, Query, check, fetch_snapshot
from lab.record.history import History, load_run, write_json

if TYPE_CHECKING:
    from lab.cluster.topology import Topology

SNAPSHOT_FILE = "db_rows.json"
QUERY_TIMEOUT = 60.0  # seconds one snapshot query may take (the rows of a long run are many)


@dataclass(frozen=True)
class Judgement:
    history: History
    snapshot: DbSnapshot | None  # None: no database snapshot (the checks that need rows are skipped)
    result: CheckResult


def objective_config() -> CheckConfig:
    """The checker's settings for a run judged against the availability objective of
    scenarios/claims.yaml (`halab load`, Chaos Toolkit experiments)."""
    from lab.chaos import claims

    o = claims.load().objective
    return CheckConfig(slo=o.success, objective_success=o.success, objective_after=o.after)


def lab_query(t: Topology, timeout: float = QUERY_TIMEOUT) -> Query:
    """`query(sql) -> rows` on a running lab's database."""
    from lab.cluster import probes

    return lambda sql: probes.db_query(t, sql, timeout=timeout)


def judge(
    run_dir: str | os.PathLike[str],
    query: Query | None = None,
    config: CheckConfig | None = None,
    history: History | None = None,
) -> Judgement:
    """Check a run. With `query`, first snapshot the database and save it as `SNAPSHOT_FILE` in the run
    directory; without, use the snapshot saved there before, if any."""
    run = Path(run_dir)
    history = load_run(run) if history is None else history
    ops = registers.load_ops(run)
    if ops is None and _ran_registers(run):
        ops = []  # the register workload ran but recorded nothing: nothing checked must not pass
    snapshot: DbSnapshot | None = None
    if query is not None:
        snapshot = fetch_snapshot(query, history)
        if ops:
            rows = registers.fetch_rows(query, ops)
            snapshot = DbSnapshot(snapshot.fetched_at, {**snapshot.tables, registers.ROWS_TABLE: rows})
        write_json(run / SNAPSHOT_FILE, snapshot.to_dict())
    elif (run / SNAPSHOT_FILE).exists():
        snapshot = DbSnapshot.from_dict(_read_json(run / SNAPSHOT_FILE))
    return Judgement(history, snapshot, check(history, snapshot, config or CheckConfig(), ops))


def _ran_registers(run: Path) -> bool:
    """The run's Locust load included RegisterUser (every user class, unless it named some)."""
    if not (run / "load.json").exists():
        return False
    classes = (_read_json(run / "load.json").get("spec") or {}).get("user_classes") or ()
    return not classes or "RegisterUser" in classes


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except ValueError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from None
