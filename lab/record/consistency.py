"""Session guarantees, client by client: what each process's ok reads returned, against what it
and everyone else had already been told was committed. A successful cas read the value it
expected, so ok cas are checked as reads of it too (a cas that succeeded from a superseded value
is a lost update).

Anomalies (each read is reported at most once against writes, most specific kind first, and at
most once against the same process's earlier reads):

- **never-written**: a read returned a value no ok or info write (or cas) of that key carried,
  and not the initial value;
- **read-your-writes**: a read returned a value older than one its own process had written
  (ok) before it invoked the read;
- **stale-read**: a read returned a value older than one some process's ok write had committed
  before the read was invoked;
- **monotonic-reads**: a read returned a value older than one its process had already read.

"Older" needs an order of versions. Given a key's linearization (`version_order`, e.g. from
`LinearizabilityResult.version_order`), value v is older than u when v's last position comes
before u's first. Without one, it is real time, where it is unambiguous: v is older than the value
of write w when every write of v completed before w was invoked (an info write of v never
completed, so it makes v never older); for an earlier read's value u, before every write of u
was invoked. The initial value is older than every written value, unless it is written too.
Values are assumed unique per key (as uuids and generated names are); a value written twice only
counts as older once its last write is.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from lab.record.ops import Op, Value, fmt_time

AnomalyKind = Literal["never-written", "read-your-writes", "stale-read", "monotonic-reads"]
KINDS: tuple[AnomalyKind, ...] = ("never-written", "read-your-writes", "stale-read", "monotonic-reads")


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    key: str
    process: str
    ops: tuple[Op, ...]  # the read first, then the ops that prove it
    explanation: str


@dataclass(frozen=True)
class ConsistencyResult:
    valid: Literal["ok", "anomalies", "nothing checked"]
    reads: int  # ok reads and cas checked
    processes: int
    anomalies: tuple[Anomaly, ...]

    @property
    def ok(self) -> bool:
        return self.valid == "ok"

    def of_kind(self, kind: AnomalyKind) -> tuple[Anomaly, ...]:
        return tuple(a for a in self.anomalies if a.kind == kind)

    def counts(self) -> dict[str, int]:
        return {k: len(self.of_kind(k)) for k in KINDS}


class _Versions:
    """One key's version order, as ranks: v is older than u when high(v) < low(u)."""

    def __init__(self, writes: Sequence[Op], initial: Value, order: Sequence[Value] | None) -> None:
        self.initial = initial
        self.written = {w.written for w in writes}
        self._high: dict[Value, float] = {}
        self._low: dict[Value, float] = {}
        if order is not None:
            for pos, v in enumerate(order):
                self._low.setdefault(v, pos)
                self._high[v] = pos
        else:
            for w in writes:
                end = w.complete if w.type == "ok" else math.inf
                self._high[w.written] = max(self._high.get(w.written, -math.inf), end)
                self._low[w.written] = min(self._low.get(w.written, math.inf), w.invoke)
        self.by_order = order is not None

    def high(self, v: Value) -> float:
        """When v was last written (its last position or write's end); -inf for an unwritten
        initial value; +inf when v cannot be placed (it is then never older)."""
        if v in self._high:
            return self._high[v]
        return -math.inf if v == self.initial else math.inf

    def low(self, v: Value) -> float:
        """When v was first written; -inf for an unwritten initial value (so nothing is older)."""
        if v in self._low:
            return self._low[v]
        return -math.inf

    def write_rank(self, w: Op) -> float:
        """The rank of a specific ok write: its own invoke in real time, its value's first
        position in a given order."""
        return self.low(w.written) if self.by_order else w.invoke


class _Latest:
    """Ops sorted by completion; `best(t)` is the one of highest rank among those completed
    before t (a prefix maximum, so each question is a bisection)."""

    def __init__(self, ops: Iterable[Op], rank: dict[int, float]) -> None:
        ordered = sorted(ops, key=lambda o: o.complete)
        self.completes = [o.complete for o in ordered]
        self.best_ops: list[Op] = []
        self.best_ranks: list[float] = []
        for o in ordered:
            r = rank[o.index]
            if self.best_ranks and self.best_ranks[-1] >= r:
                self.best_ops.append(self.best_ops[-1])
                self.best_ranks.append(self.best_ranks[-1])
            else:
                self.best_ops.append(o)
                self.best_ranks.append(r)

    def best(self, before: float) -> tuple[Op, float] | None:
        i = bisect.bisect_left(self.completes, before)
        return (self.best_ops[i - 1], self.best_ranks[i - 1]) if i else None


def check_sessions(
    history: Iterable[Op], *, initial: Value = None, version_order: Mapping[str, Sequence[Value]] | None = None
) -> ConsistencyResult:
    """Session checks of every ok read. Ops without an `index` (-1) get their position in
    `history`, since anomalies refer to ops by it internally."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for pos, op in enumerate(history):
        if op.index < 0:
            op = replace(op, index=pos)
        if op.type != "fail":
            by_key[op.key].append(op)
    anomalies: list[Anomaly] = []
    reads = 0
    processes: set[str] = set()
    for key in sorted(by_key):
        ops = by_key[key]
        writes = [o for o in ops if o.f != "read"]
        ok_writes = [o for o in writes if o.type == "ok"]
        ok_reads = sorted((o for o in ops if o.f != "write" and o.type == "ok"), key=lambda o: o.invoke)
        reads += len(ok_reads)
        processes.update(o.process for o in ok_reads)
        versions = _Versions(writes, initial, None if version_order is None else version_order.get(key))
        write_rank = {w.index: versions.write_rank(w) for w in ok_writes}
        everyone = _Latest(ok_writes, write_rank)
        own = {p: _Latest([w for w in ok_writes if w.process == p], write_rank) for p in {r.process for r in ok_reads}}
        read_rank = {r.index: versions.low(r.observed) for r in ok_reads}
        seen = {p: _Latest([r for r in ok_reads if r.process == p], read_rank) for p in own}
        sources: dict[Value, list[Op]] = defaultdict(list)
        for w in writes:
            sources[w.written].append(w)

        for r in ok_reads:
            v = r.observed
            if v != initial and v not in versions.written:
                anomalies.append(
                    Anomaly(
                        "never-written", key, r.process, (r,), f"{_what(r)}: no ok or info write of {key} carried {v!r}"
                    )
                )
                continue
            age = versions.high(v)
            against: tuple[tuple[AnomalyKind, _Latest], ...] = (
                ("read-your-writes", own[r.process]),
                ("stale-read", everyone),
            )
            for kind, latest in against:
                hit = latest.best(r.invoke)
                if hit and hit[1] > age:
                    w = hit[0]
                    mine = "its own " if w.process == r.process else ""
                    anomalies.append(
                        Anomaly(
                            kind,
                            key,
                            r.process,
                            (r, w, *sources[v]),
                            f"{_what(r)} after {mine}{_what(w, 'completed')}, "
                            f"which superseded {_origin(v, sources[v], initial)}",
                        )
                    )
                    break
            hit = seen[r.process].best(r.invoke)
            if hit and hit[1] > age:
                prev = hit[0]
                anomalies.append(
                    Anomaly(
                        "monotonic-reads",
                        key,
                        r.process,
                        (r, prev, *sources[v]),
                        f"{_what(r)} after the same process's {_what(prev, 'completed')}, "
                        f"a newer value than {_origin(v, sources[v], initial)}",
                    )
                )
    valid: Literal["ok", "anomalies", "nothing checked"]
    valid = "nothing checked" if not reads else "anomalies" if anomalies else "ok"
    return ConsistencyResult(valid, reads, len(processes), tuple(anomalies))


def _what(op: Op, done: str = "") -> str:
    if op.f == "read":
        head = f"read of {op.value!r}"
    elif op.f == "cas":
        head = f"cas {op.observed!r}->{op.written!r}"
    else:
        head = f"write of {op.value!r}"
    at = f"{done} at t={fmt_time(op.complete)}" if done else f"at t={fmt_time(op.invoke)}"
    return f"{head} by {op.process} {at}"


def _origin(v: Value, writers: Sequence[Op], initial: Value) -> str:
    if not writers and v == initial:
        return f"the initial value {v!r}"
    return " and ".join(_what(w, "completed" if w.type == "ok" else "") for w in writers)
