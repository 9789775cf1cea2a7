"""Check a run: history + ledger + database rows in, verdicts and per-fault figures out.

Pure: nothing here does I/O except `fetch_snapshot`, which only calls the query function it is
given (the platform's `docker exec db labsql`). Everything is computed from recorded data, so a
report can be rebuilt, and the checker tested with doctored histories.

Correctness checks
------------------
- **acknowledged writes present**: every uuid in the ledger has its row in MySQL, and the row
  shows the last acknowledged effect: removed after an acknowledged delete; not removed when no
  delete was even attempted; carrying the name of the last acknowledged update unless a later
  write to it is indeterminate (sent but not acknowledged, so it may or may not have applied);
  for an agent, a `last_checkin` no earlier than the start of its last acknowledged check-in.
- **no duplicated writes**: no acknowledged uuid has more than one row.
- **no write acknowledged by a fenced node**: an ack served by node N (its `X-Rancher-Node`),
  sent at `t0` and received at `t1`, is a violation only when the probes prove N was not active
  for the whole of `[t0, t1]`: the last probe of N that ended before `t0` and the first that began
  after `t1` both saw N not active (its `/ping` answered other than 200, or N was unreachable:
  `ping` None), so did every probe of N overlapping the span between them (no observation that
  may have been active lies between), and that span is at most `max_probe_gap` long (a longer gap
  could hide a trip through `active`). Acks that cannot be judged so are counted, never guessed.
- **no stuck process**: no `process_instance` started during the run ran (or has been running
  at the snapshot) longer than `stuck_after` seconds.
- **process times consistent**: no process finished before it started, and none started after
  the snapshot was taken (beyond `CLOCK_TOLERANCE`). Every container shares this machine's clock,
  so only a clock fault breaks it: the rancher-1.0 node stamps process times with its own clock,
  as cattle did, and a skewed host writes skewed times (the stuck check then misjudges them too).

Per-second figures and fault windows
------------------------------------
Requests are bucketed by the whole second of their start (`t0`): "of what clients asked in that
second, how much succeeded and how fast". A fault's window runs from its `t0` (applied) to
`t1 + tail` (healed, plus a settling tail), cut at the next fault's start.

- **time to detect**: from the fault's `t0` to the end (`t1`) of the first probe after `t0` that
  saw a node not active whose previous observation was active; the moment the harness, and the
  load balancer health check probing the same `/ping`, could know. None when no probe saw one.
- **time to recover**: 0 when no request started in the window failed. Otherwise from the fault's
  `t0` to the start of the first successful request, after the first failure, that begins
  `stable_seconds` in which no request failed and successful requests started at most `MAX_QUIET`
  (1 s) apart (stuck clients are no recovery); searched as far as the history goes, None when
  no such span exists. `healed_to_recovered` is the part of it after the heal.
- **error budget consumed**: failed requests in the window divided by the run's budget,
  `(1 - slo)` times all requests of the run; 1.0 means this fault alone used the whole budget.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from lab.record.history import FaultRecord, History, LedgerEntry, ProbeRecord, RequestRecord
from lab.record.ops import Op
from lab.record.registers import ROWS_TABLE, RegisterReport, check_registers

# gdapi type -> the cattle table that stores it.
TYPE_TABLES: Mapping[str, str] = {
    "project": "account",
    "environment": "environment",
    "service": "service",
    "host": "host",
    "container": "instance",
    "agent": "agent",
    "registrationToken": "credential",
}
# Columns read beyond id, uuid, name, state, removed: an agent check-in sets last_checkin.
EXTRA_TIME_COLUMNS: Mapping[str, tuple[str, ...]] = {"agent": ("last_checkin",)}
PROCESS_TABLE = "process_instance"
CLOCK_SLACK = 0.5  # seconds; the database and the harness share the host's clock
MAX_QUIET = 1.0  # seconds without a successful request start that break a "stable" span
REMOVED_STATES = frozenset({"removing", "removed", "purging", "purged"})

Row = Mapping[str, Any]
Query = Callable[[str], Sequence[Row]]


@dataclass(frozen=True)
class CheckConfig:
    stuck_after: float = 60.0  # seconds a process may run before it counts as stuck
    slo: float = 0.999  # availability objective; the error budget is (1 - slo) x requests
    stable_seconds: float = 3.0  # failure-free seconds that mark a recovery
    max_probe_gap: float = 3.0  # bracketing probes further apart than this prove nothing
    tail: float = 10.0  # seconds after a heal still counted in a fault's window
    # The availability objective (scenarios/claims.yaml): from `objective_after` seconds after each
    # fault's start on, at least `objective_success` of requests succeed. None: not judged.
    objective_success: float | None = None
    objective_after: float = 5.0


@dataclass(frozen=True)
class DbSnapshot:
    """Rows of the tables the checker reads, taken after heal, and when they were taken."""

    fetched_at: float
    tables: Mapping[str, Sequence[Row]]

    def to_dict(self) -> dict[str, Any]:
        return {"fetched_at": self.fetched_at, "tables": {k: list(v) for k, v in self.tables.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DbSnapshot:
        return cls(float(d["fetched_at"]), {k: tuple(v) for k, v in d["tables"].items()})


@dataclass(frozen=True)
class Violation:
    subject: str  # the uuid, ack or process concerned
    t: float | None  # when (epoch seconds), if known
    detail: str


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # passed, failed, skipped
    checked: int = 0
    violations: tuple[Violation, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Second:
    t: int  # epoch second
    total: int
    ok: int
    p50: float | None  # latency percentiles (ms) of the requests started in this second
    p95: float | None
    p99: float | None

    @property
    def failed(self) -> int:
        return self.total - self.ok

    @property
    def availability(self) -> float | None:
        return self.ok / self.total if self.total else None


@dataclass(frozen=True)
class FaultStats:
    id: str
    fault: str
    targets: tuple[str, ...]
    t0: float
    t1: float
    window_end: float
    requests: int
    failed: int
    failed_idempotent: int
    failed_writes: int
    availability: float | None
    min_second_availability: float | None
    time_to_detect: float | None
    time_to_recover: float | None
    healed_to_recovered: float | None
    budget_consumed: float | None
    fenced_acks: int


@dataclass(frozen=True)
class CheckResult:
    outcomes: tuple[Outcome, ...]
    faults: tuple[FaultStats, ...]
    seconds: tuple[Second, ...]
    requests: int
    failed: int
    failed_idempotent: int
    acks: int
    config: CheckConfig = field(default_factory=CheckConfig)
    registers: RegisterReport | None = None

    @property
    def passed(self) -> bool:
        """Every check ran and passed: a skipped check proves nothing, so it cannot pass a run."""
        return bool(self.outcomes) and all(o.status == "passed" for o in self.outcomes)

    def outcome(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.name == name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["seconds"] = [[s.t, s.total, s.ok, s.p50, s.p95, s.p99] for s in self.seconds]
        return d


# ----------------------------------------------------------------------------- database rows


_SAFE_UUID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_CHUNK = 500


def run_uuids(history: History) -> dict[str, set[str]]:
    """Table -> uuids of the writes this run had acknowledged."""
    by_table: dict[str, set[str]] = defaultdict(set)
    for a in history.acks:
        if a.type in TYPE_TABLES:
            by_table[TYPE_TABLES[a.type]].add(a.uuid)
    return by_table


def epoch_sql(column: str) -> str:
    # The server stores UTC DATETIMEs; plain arithmetic from the epoch avoids the session time zone
    # that UNIX_TIMESTAMP() would apply.
    return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column}) / 1000000 AS {column}"


def fetch_snapshot(query: Query, history: History, now: Callable[[], float] = time.time) -> DbSnapshot:
    """Read the rows the checker needs through `query(sql) -> rows as dicts`."""
    tables: dict[str, list[Row]] = {}
    for table, uuids in sorted(run_uuids(history).items()):
        safe = sorted(u for u in uuids if _SAFE_UUID.match(u))  # ours are uuid4s; never quote others
        rows: list[Row] = []
        for i in range(0, len(safe), _CHUNK):
            in_list = ",".join(f"'{u}'" for u in safe[i : i + _CHUNK])
            times = ", ".join(epoch_sql(c) for c in ("removed", *EXTRA_TIME_COLUMNS.get(table, ())))
            rows.extend(query(f"SELECT id, uuid, name, state, {times} FROM `{table}` WHERE uuid IN ({in_list})"))
        tables[table] = rows
    span = history.span
    if span is not None:
        since = datetime.fromtimestamp(math.floor(span[0]), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        tables[PROCESS_TABLE] = list(
            query(
                f"SELECT id, process_name, resource_type, resource_id, {epoch_sql('start_time')}, "
                f"{epoch_sql('end_time')}, phase, start_process_server_id, running_process_server_id "
                f"FROM {PROCESS_TABLE} WHERE start_time >= '{since}'"
            )
        )
    return DbSnapshot(now(), tables)


def db_value(v: Any) -> Any:
    """A DB value as the platform's query may render it: NULL spellings become None."""
    if v is None or (isinstance(v, str) and v.strip() in ("", "NULL", "\\N", "None")):
        return None
    return v


def db_epoch(v: Any) -> float | None:
    v = db_value(v)
    if v is None:
        return None
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    return float(v)


# ----------------------------------------------------------------------------- write checks


def _write_checks(history: History, db: DbSnapshot) -> tuple[Outcome, Outcome]:
    rows_by_uuid: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for table_name, table_rows in db.tables.items():
        for table_row in table_rows:
            row_uuid = db_value(table_row.get("uuid"))
            if row_uuid is not None:
                rows_by_uuid[(table_name, str(row_uuid))].append(table_row)

    acks_by_uuid: dict[str, list[LedgerEntry]] = defaultdict(list)
    for a in history.acks:
        acks_by_uuid[a.uuid].append(a)
    attempts: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in history.requests:
        if r.write and r.uuid:
            attempts[r.uuid].append(r)

    lost: list[Violation] = []
    duplicated: list[Violation] = []
    checked = 0
    unchecked_types: set[str] = set()
    for uuid, acks in acks_by_uuid.items():
        table = TYPE_TABLES.get(acks[0].type)
        if table is None or table not in db.tables:
            unchecked_types.add(acks[0].type)
            continue
        checked += 1
        rows = rows_by_uuid.get((table, uuid), [])
        first, last = acks[0], acks[-1]
        if not rows:
            lost.append(Violation(uuid, first.t1, f"{first.type} acknowledged ({first.op}) by {first.node}, no row"))
            continue
        if len(rows) > 1:
            duplicated.append(Violation(uuid, first.t1, f"{len(rows)} rows in {table} for one {first.type}"))
            continue
        problem = effect_missing(rows[0], acks, attempts.get(uuid, []))
        if problem:
            lost.append(Violation(uuid, last.t1, f"{last.type}: {problem} (ack by {last.node})"))

    note = f"types without a table in the snapshot: {', '.join(sorted(unchecked_types))}" if unchecked_types else ""
    return (
        _outcome("acknowledged_writes_present", checked, lost, note),
        _outcome("no_duplicated_writes", checked, duplicated, note),
    )


def effect_missing(
    row: Row, acks: Sequence[LedgerEntry], attempts: Sequence[RequestRecord], cutoff: float = math.inf
) -> str | None:
    """Why the one row does not show the acknowledged writes `acks`, or None when it does. A later
    write not acknowledged before `cutoff` (failed, or still unanswered then: a backup taken at
    `cutoff` may or may not hold it) may have applied, so the row's name is not judged after one."""
    removed = db_value(row.get("removed")) is not None or db_value(row.get("state")) in REMOVED_STATES
    last = acks[-1]
    if last.op == "delete":
        return None if removed else f"delete acknowledged but row is {row.get('state')!r}, not removed"
    if removed and not any(r.method == "DELETE" for r in attempts):
        return "row removed although no delete was sent"
    checkins = [a for a in acks if a.op == "checkin"]
    if checkins:
        seen = db_epoch(row.get("last_checkin"))
        if seen is None or seen < checkins[-1].t0 - CLOCK_SLACK:
            return f"check-in acknowledged at {checkins[-1].t1:.3f}, last_checkin is {seen}"
    updates = [a for a in acks if a.op == "update" and a.value is not None]
    if not updates:
        return None
    latest = updates[-1]
    indeterminate = [r for r in attempts if r.t0 > latest.t0 and (not r.ok or r.t1 >= cutoff) and r.method != "DELETE"]
    if indeterminate or db_value(row.get("name")) == latest.value:
        return None
    return f"update to name {latest.value!r} acknowledged, row has {row.get('name')!r}"


# ----------------------------------------------------------------------------- fencing


class _NodeProbes:
    """One node's observations, indexed for bracketing acks."""

    def __init__(self, probes: Iterable[ProbeRecord]) -> None:
        self.by_start = sorted(probes, key=lambda p: p.t0)
        self.starts = [p.t0 for p in self.by_start]
        self.by_end = sorted(self.by_start, key=lambda p: p.t1)
        self.ends = [p.t1 for p in self.by_end]
        self.longest = max((p.t1 - p.t0 for p in self.by_start), default=0.0)

    def fenced(self, t0: float, t1: float, gap: float) -> bool | None:
        """True: the node was observably not active throughout [t0, t1]; False: an observation
        that may have been active lies between the bracketing ones; None: no bracket."""
        i = bisect.bisect_right(self.ends, t0)  # by_end[:i] ended by t0
        j = bisect.bisect_left(self.starts, t1)  # by_start[j:] began at or after t1
        if i == 0 or j == len(self.starts):
            return None
        before, after = self.by_end[i - 1], self.by_start[j]
        if after.t1 - before.t0 > gap:
            return None
        # Every observation overlapping [before.t0, after.t1]; none can start earlier than this.
        lo = bisect.bisect_left(self.starts, before.t0 - self.longest)
        hi = bisect.bisect_right(self.starts, after.t1)
        return not any(p.active for p in self.by_start[lo:hi] if p.t1 >= before.t0)


def _fencing_check(history: History, gap: float) -> tuple[Outcome, list[Violation]]:
    observed: dict[str, list[ProbeRecord]] = defaultdict(list)
    for p in history.probes:
        observed[p.node].append(p)
    nodes = {node: _NodeProbes(probes) for node, probes in observed.items()}
    violations: list[Violation] = []
    judged = unjudged = 0
    for a in history.acks:
        verdict = nodes[a.node].fenced(a.t0, a.t1, gap) if a.node in nodes else None
        if verdict is None:
            unjudged += 1
            continue
        judged += 1
        if verdict:
            violations.append(
                Violation(a.uuid, a.t1, f"{a.op} {a.type} {a.id} acknowledged by {a.node} while its /ping was not 200")
            )
    note = f"{unjudged} acks not bracketed by probes within {gap:g}s" if unjudged else ""
    outcome = _outcome("no_writes_acknowledged_by_fenced_nodes", judged, violations, note)
    if not history.probes:
        outcome = Outcome(outcome.name, "skipped", 0, (), "no probes recorded")
    return outcome, violations


# ----------------------------------------------------------------------------- processes


CLOCK_TOLERANCE = 0.5  # seconds: stamps from one shared clock never disagree by this much


def _process_clock_check(db: DbSnapshot | None) -> Outcome:
    name = "process_times_consistent"
    if db is None or PROCESS_TABLE not in db.tables:
        return Outcome(name, "skipped", note="no process_instance rows in the snapshot")
    found: list[Violation] = []
    rows = db.tables[PROCESS_TABLE]
    for row in rows:
        start, end = db_epoch(row.get("start_time")), db_epoch(row.get("end_time"))
        if start is None:
            continue
        by, to = (
            db_value(row.get("start_process_server_id")) or "?",
            db_value(row.get("running_process_server_id")) or "?",
        )
        what = f"{row.get('process_name')} on {row.get('resource_type')} {row.get('resource_id')}"
        if end is not None and end < start - CLOCK_TOLERANCE:
            detail = f"{what} finished {start - end:.1f}s before it started (started by {by}, finished by {to})"
            found.append(Violation(str(row.get("id")), start, detail))
        elif start > db.fetched_at + CLOCK_TOLERANCE:
            detail = f"{what} started {start - db.fetched_at:.1f}s after the snapshot (stamped by {by})"
            found.append(Violation(str(row.get("id")), start, detail))
    return _outcome(name, len(rows), found)


def _stuck_check(history: History, db: DbSnapshot | None, bound: float) -> Outcome:
    name = "no_stuck_processes"
    if db is None or PROCESS_TABLE not in db.tables:
        return Outcome(name, "skipped", note="no process_instance rows in the snapshot")
    span_start = history.span[0] if history.span else -math.inf
    stuck: list[Violation] = []
    checked = 0
    for row in db.tables[PROCESS_TABLE]:
        start = db_epoch(row.get("start_time"))
        if start is None or start < math.floor(span_start):
            continue
        checked += 1
        end = db_epoch(row.get("end_time"))
        ran = (end if end is not None else db.fetched_at) - start
        if ran > bound:
            what = f"{row.get('process_name')} on {row.get('resource_type')} {row.get('resource_id')}"
            state = f"finished after {ran:.1f}s" if end is not None else f"unfinished after {ran:.1f}s"
            # Where it stopped: a process that never ran again, or one run by a server that went away.
            by = db_value(row.get("running_process_server_id")) or "no server"
            last = f"phase {db_value(row.get('phase')) or '?'}, last run by {by}"
            stuck.append(Violation(str(row.get("id")), start, f"{what} {state} ({last})"))
    return _outcome(name, checked, stuck)


def _availability_check(history: History, cfg: CheckConfig) -> Outcome:
    """Requests outside each fault's first `objective_after` seconds, against `objective_success`."""
    name = "availability_objective"
    success = cfg.objective_success or 0.0
    graces = [(f.t0, f.t0 + cfg.objective_after) for f in history.faults]
    judged = [r for r in history.requests if not any(a <= r.t0 < b for a, b in graces)]
    if not judged:
        return Outcome(name, "failed", note="nothing checked: no request outside the faults' first seconds")
    ok = sum(r.ok for r in judged)
    note = f"{ok} of {len(judged)} succeeded ({ok / len(judged):.2%}), objective {success:.2%}"
    if ok >= success * len(judged):
        return Outcome(name, "passed", len(judged), note=note)
    failed = next(r for r in judged if not r.ok)
    return Outcome(name, "failed", len(judged), (Violation("requests", failed.t0, note),), note)


def _register_checks(ops: Sequence[Op], db: DbSnapshot | None) -> tuple[tuple[Outcome, ...], RegisterReport]:
    """Linearizability and session guarantees of the register workload; nothing checked fails."""
    report = check_registers(ops, db.tables.get(ROWS_TABLE) if db is not None else None)
    outcomes = []
    for name, valid, checked in (
        ("linearizable_registers", report.linearizable, report.ops_checked),
        ("session_guarantees", report.sessions, report.reads_checked),
    ):
        found = [f for f in report.findings if f.check == name]
        violations = tuple(Violation(f.key, f.t, f"{f.kind}: {f.detail}") for f in found)
        status = "passed" if valid == "ok" else "failed"
        note = f"{len(ops)} register ops recorded, {valid}" if valid != "ok" else ""
        outcomes.append(Outcome(name, status, checked, violations, note))
    return tuple(outcomes), report


def _outcome(name: str, checked: int, violations: list[Violation], note: str = "") -> Outcome:
    return Outcome(name, "failed" if violations else "passed", checked, tuple(violations), note)


# ----------------------------------------------------------------------------- timeline


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list, q a fraction (0.95); None when empty."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def per_second(requests: Iterable[RequestRecord]) -> tuple[Second, ...]:
    """Requests bucketed by start second, every second from the first to the last (gaps = 0)."""
    buckets: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in requests:
        buckets[math.floor(r.t0)].append(r)
    if not buckets:
        return ()
    out = []
    for t in range(min(buckets), max(buckets) + 1):
        rs = buckets.get(t, [])
        out.append(Second(t, len(rs), sum(r.ok for r in rs), *latency_percentiles(rs)))
    return tuple(out)


def latency_percentiles(requests: Iterable[RequestRecord]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 of the requests' latencies in ms (None without requests)."""
    lat = sorted((r.t1 - r.t0) * 1000.0 for r in requests)
    return percentile(lat, 0.5), percentile(lat, 0.95), percentile(lat, 0.99)


def _time_to_detect(fault: FaultRecord, probes: Sequence[ProbeRecord]) -> float | None:
    last_active: dict[str, bool] = {}
    for p in probes:  # sorted by t0
        if p.t0 >= fault.t0 and not p.active and last_active.get(p.node):
            return max(0.0, p.t1 - fault.t0)
        last_active[p.node] = p.active
    return None


def _recovered_at(start: float, requests: Sequence[RequestRecord], stable: float) -> float | None:
    """See the module docstring; `requests` sorted by t0. `start` itself when nothing failed."""
    fails = [r.t0 for r in requests if not r.ok and r.t0 >= start]
    if not fails:
        return start
    oks = [r.t0 for r in requests if r.ok]
    i = bisect.bisect_right(oks, fails[0])
    while i < len(oks):  # each candidate span [oks[i], oks[i] + stable)
        begin = oks[i]
        end = begin + stable
        k = bisect.bisect_left(fails, begin)
        if k < len(fails) and fails[k] < end:
            i = bisect.bisect_right(oks, fails[k])  # a failure inside: try after it
            continue
        j = i
        while oks[j] < end - MAX_QUIET:  # successes no more than MAX_QUIET apart up to the end
            if j + 1 == len(oks):
                return None  # the history ends before a stable span does
            if oks[j + 1] - oks[j] > MAX_QUIET:
                break
            j += 1
        else:
            return begin
        i = j + 1  # a quiet gap inside: try after it
    return None


def _fault_stats(
    fault: FaultRecord,
    history: History,
    seconds: Mapping[int, Second],
    fenced: Sequence[Violation],
    budget: float | None,
    cfg: CheckConfig,
) -> FaultStats:
    later = [f.t0 for f in history.faults if f.t0 >= fault.t1 and f is not fault]
    end = min([fault.t1 + cfg.tail, *later])
    inside = [r for r in history.requests if fault.t0 <= r.t0 < end]
    failed = [r for r in inside if not r.ok]
    ok = len(inside) - len(failed)
    window_seconds = [s for t, s in seconds.items() if math.floor(fault.t0) <= t < end and s.total]
    recovered = None
    if inside:
        recovered = _recovered_at(fault.t0, history.requests, cfg.stable_seconds) if failed else fault.t0
    return FaultStats(
        id=fault.id,
        fault=fault.fault,
        targets=fault.targets,
        t0=fault.t0,
        t1=fault.t1,
        window_end=end,
        requests=len(inside),
        failed=len(failed),
        failed_idempotent=sum(r.idempotent for r in failed),
        failed_writes=sum(r.write for r in failed),
        availability=ok / len(inside) if inside else None,
        min_second_availability=min(
            (s.availability for s in window_seconds if s.availability is not None), default=None
        ),
        time_to_detect=_time_to_detect(fault, history.probes),
        time_to_recover=None if recovered is None else max(0.0, recovered - fault.t0),
        healed_to_recovered=None if recovered is None else max(0.0, recovered - fault.t1),
        budget_consumed=len(failed) / budget if budget else None,
        fenced_acks=sum(1 for v in fenced if v.t is not None and fault.t0 <= v.t < end),
    )


# ----------------------------------------------------------------------------- entry point


def check(
    history: History, db: DbSnapshot | None, config: CheckConfig = CheckConfig(), ops: Sequence[Op] | None = None
) -> CheckResult:
    """Every verdict and figure for one run. `db` None skips the checks that need rows; `ops` (the
    register workload's history, even empty) adds its checks."""
    if db is None:
        present = Outcome("acknowledged_writes_present", "skipped", note="no database snapshot")
        duplicated = Outcome("no_duplicated_writes", "skipped", note="no database snapshot")
    else:
        present, duplicated = _write_checks(history, db)
    fencing, fenced = _fencing_check(history, config.max_probe_gap)
    stuck = _stuck_check(history, db, config.stuck_after)
    extra: tuple[Outcome, ...] = (_process_clock_check(db),)
    registers = None
    if ops is not None:
        found, registers = _register_checks(ops, db)
        extra += found
    if config.objective_success is not None:
        extra += (_availability_check(history, config),)

    seconds = per_second(history.requests)
    by_t = {s.t: s for s in seconds}
    failed = [r for r in history.requests if not r.ok]
    budget = (1.0 - config.slo) * len(history.requests) or None
    return CheckResult(
        outcomes=(present, duplicated, fencing, stuck, *extra),
        faults=tuple(_fault_stats(f, history, by_t, fenced, budget, config) for f in history.faults),
        seconds=seconds,
        requests=len(history.requests),
        failed=len(failed),
        failed_idempotent=sum(r.idempotent for r in failed),
        acks=len(history.acks),
        config=config,
        registers=registers,
    )
