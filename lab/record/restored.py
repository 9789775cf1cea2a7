"""Check a restored backup against the history of the load that ran while it was taken.

A backup that began at `started` (the harness's clock) must hold every write acknowledged before
then; writes acknowledged later, or never, may or may not be in it; and it must hold no row that
no client ever asked for. So, over the restored database's rows:

- **acknowledged before the backup, present**: every uuid with an acknowledgement received before
  `started` has exactly one row showing those acknowledged effects (checker.effect_missing with
  `started` as its cutoff: a later write, acknowledged after `started` or never, may have applied,
  so the row's name is not judged after one; an acknowledged delete must show as removed; a row
  removed although no delete was ever sent is a lost write). Nothing checked fails: an empty
  history proves nothing.
- **no duplicated writes**: no checked uuid has two rows.
- **no phantom rows**: every row created since the run began, in a table the load writes with its
  own uuids, carries the uuid of a write some request of the history sent. Rows the server names
  with its own uuids are told apart otherwise: the register workload's projects (their API ids in
  the run's registers.json) are the load's; the rows the server makes when an agent registers
  (its `agent` row and its `agentApiKey` credential) are left out.

Pure: `fetch_restored` only calls the query function it is given.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from lab.record.checker import (
    CLOCK_SLACK,
    EXTRA_TIME_COLUMNS,
    TYPE_TABLES,
    DbSnapshot,
    Outcome,
    Query,
    Row,
    Violation,
    db_epoch,
    db_value,
    effect_missing,
    epoch_sql,
    fetch_snapshot,
)
from lab.record.history import History, LedgerEntry, RequestRecord
from lab.record.registers import project_ids

# Rows the server creates on its own, with its own uuids: not the load's, never phantoms.
SERVER_MADE: Mapping[str, frozenset[str] | None] = {"agent": None, "credential": frozenset({"agentApiKey"})}


@dataclass(frozen=True)
class RestoreCheck:
    started: float  # when the backup began, by the harness's clock
    acks_before: int  # acknowledgements received before it
    acks_after: int
    outcomes: tuple[Outcome, ...]

    @property
    def passed(self) -> bool:
        return all(o.status == "passed" for o in self.outcomes) and self.outcomes[0].checked > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    def lines(self) -> list[str]:
        out = [
            f"backup began {datetime.fromtimestamp(self.started, timezone.utc):%H:%M:%S.%f} UTC: "
            f"{self.acks_before} acknowledgements before it, {self.acks_after} after"
        ]
        for o in self.outcomes:
            out.append(f"{o.name}: {o.status} ({len(o.violations)} violations of {o.checked})")
            out += [f"  {v.subject}: {v.detail}" for v in o.violations[:5]]
            out += [f"  {o.note}"] if o.note else []
        return out


def _since(history: History) -> float:
    span = history.span
    return (span[0] if span else math.inf) - CLOCK_SLACK


def fetch_restored(query: Query, history: History, now: Callable[[], float] = time.time) -> DbSnapshot:
    """The restored rows of every uuid the history acknowledged, and every row of the load's tables
    created since the run began (with its kind and creation time: the phantom candidates)."""
    acked = fetch_snapshot(query, history, now)
    since = _since(history)
    if math.isinf(since):
        return acked
    stamp = datetime.fromtimestamp(math.floor(since), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    tables: dict[str, list[Row]] = {k: list(v) for k, v in acked.tables.items()}
    for table in sorted(set(TYPE_TABLES.values())):
        times = ", ".join(epoch_sql(c) for c in ("removed", "created", *EXTRA_TIME_COLUMNS.get(table, ())))
        created = query(f"SELECT id, uuid, name, state, kind, {times} FROM `{table}` WHERE created >= '{stamp}'")
        seen = {str(r.get("id")) for r in created}  # these rows carry their creation time too
        tables[table] = list(created) + [r for r in tables.get(table, []) if str(r.get("id")) not in seen]
    return DbSnapshot(acked.fetched_at, tables)


def check_restored(
    history: History, db: DbSnapshot, started: float, register_keys: Collection[str] = ()
) -> RestoreCheck:
    """See the module docstring. `started`: when the backup began (epoch seconds, harness clock);
    `register_keys`: the register workload's projects (registers.load_keys)."""
    tables = set(TYPE_TABLES.values())
    rows_by_uuid: dict[str, list[tuple[str, Row]]] = defaultdict(list)
    for table, rows in db.tables.items():
        if table in tables:
            for row in rows:
                if (u := db_value(row.get("uuid"))) is not None:
                    rows_by_uuid[str(u)].append((table, row))
    attempts: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in history.requests:
        if r.write and r.uuid:
            attempts[r.uuid].append(r)
    before: dict[str, list[LedgerEntry]] = defaultdict(list)
    for a in history.acks:
        if a.t1 < started:
            before[a.uuid].append(a)

    lost: list[Violation] = []
    duplicated: list[Violation] = []
    checked = 0
    for uuid, acks in before.items():
        its = TYPE_TABLES.get(acks[0].type)
        if its is None:
            continue
        checked += 1
        found = [row for t, row in rows_by_uuid.get(uuid, []) if t == its]
        first, last = acks[0], acks[-1]
        if not found:
            lost.append(Violation(uuid, first.t1, f"{first.type} {first.op} acknowledged before the backup, no row"))
        elif len(found) > 1:
            duplicated.append(Violation(uuid, first.t1, f"{len(found)} rows in {its} for one {first.type}"))
        elif problem := effect_missing(found[0], acks, attempts.get(uuid, []), cutoff=started):
            lost.append(Violation(uuid, last.t1, f"{last.type}: {problem} (acknowledged before the backup)"))

    sent = set(attempts) | {a.uuid for a in history.acks}
    registers = {str(i) for i in project_ids(register_keys)}
    since = _since(history)
    phantoms: list[Violation] = []
    candidates = 0
    for uuid, placed in rows_by_uuid.items():
        for table, row in placed:
            made = db_epoch(row.get("created"))
            kinds = SERVER_MADE.get(table, frozenset())
            if made is None or made < since or kinds is None or db_value(row.get("kind")) in kinds:
                continue
            candidates += 1
            if uuid not in sent and not (table == "account" and str(row.get("id")) in registers):
                phantoms.append(Violation(uuid, made, f"{table} row {row.get('id')} ({row.get('name')!r}) never sent"))

    nothing = "" if checked else "nothing checked: no write was acknowledged before the backup began"
    present = Outcome(
        "acknowledged_before_backup_present",
        "failed" if lost or not checked else "passed",
        checked,
        tuple(lost),
        nothing,
    )
    return RestoreCheck(
        started,
        sum(len(v) for v in before.values()),
        sum(1 for a in history.acks if a.t1 >= started),
        (
            present,
            Outcome("no_duplicated_writes", "failed" if duplicated else "passed", checked, tuple(duplicated)),
            Outcome("no_phantom_rows", "failed" if phantoms else "passed", candidates, tuple(phantoms)),
        ),
    )
