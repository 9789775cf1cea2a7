"""Linearizability of a read/write/compare-and-set register, key by key.

The search is Wing & Gong's with Lowe's memoization, as Porcupine implements it: the history is a
doubly linked list of call and return entries in time order; the search linearizes any op whose
call precedes the first pending return, backtracks when it meets the return of an op it has not
linearized, and never revisits a (linearized set, register value) pair it has seen. Keys are
checked separately (P-compositionality: a history of independent registers is linearizable iff
each key's is). Two register-specific rules cut the search without losing a linearization: a
pending read of the current value is linearized at once, never as a choice; and the register
never moves off a value that an unplaced op still needs once nothing left can write it again.

What each kind of op means here (Knossos' reading of Jepsen histories):

- `fail` ops surely did not happen and are dropped;
- `ok` ops took effect once, between their invoke and complete;
- `info` ops may have taken effect at any moment after their invoke, or never. An `info` read
  constrains nothing and is dropped. An `info` write or cas gets a deadline: the latest
  completion of an op that may observe the value it writes (a read of it or a cas expecting it).
  Taking effect after that deadline is indistinguishable from never taking effect, since nothing
  later reads the value before it is overwritten, so the search may place it before the deadline
  or skip it, and an `info` op nobody observes is dropped. That bound keeps partitions short.

A key's history is also cut at quiescent points (every op before the cut ended before any op after
it was invoked). The search runs segment by segment and carries the register value across a cut;
it asks a segment for another end value only when the next segment cannot go on from the first.

Before the search, the session anomalies that real time alone proves (lab.record.consistency:
stale and never-written reads, reads going back in time) are tried as certificates: a small
closed sub-history around one that the search finds non-linearizable convicts the key at once.

On a violation the failing prefix (or the certificate) is shrunk by delta debugging to a small
sub-history that is itself not linearizable, and explained in plain words. A budget of time and
memo entries bounds the search: when it runs out the key is `unknown`, never `ok`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from lab.record.consistency import check_sessions
from lab.record.ops import Op, Value, fmt_time

Verdict = Literal["ok", "violation", "unknown"]
Overall = Literal["ok", "violation", "unknown", "nothing checked"]

_READ, _WRITE, _CAS = 0, 1, 2
_APPLIED, _SKIPPED, _FORCED = 0, 1, 2
# Session anomalies tried as certificates of a violation, and the largest sub-history checked.
_CERTIFICATE_TRIES = 8
_CERTIFICATE_SIZE = 200
_KIND = {"read": _READ, "write": _WRITE, "cas": _CAS}


@dataclass(frozen=True)
class KeyResult:
    key: str
    valid: Verdict
    ops: int  # ok ops checked
    info: int  # info writes and cas that may have taken effect
    states: int  # memo entries the search created for this key
    # On a violation: a small non-linearizable sub-history, whether shrinking finished (every op
    # in it is needed), and plain words about it.
    witness: tuple[Op, ...] = ()
    witness_minimal: bool = False
    explanation: str = ""
    # When ok: the `index` of every op that took effect, in a valid linearization order.
    linearization: tuple[int, ...] = ()


@dataclass(frozen=True)
class LinearizabilityResult:
    valid: Overall
    keys: tuple[KeyResult, ...]
    ops: int
    states: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.valid == "ok"

    def violations(self) -> tuple[KeyResult, ...]:
        return tuple(k for k in self.keys if k.valid == "violation")

    def version_order(self, history: Iterable[Op]) -> dict[str, tuple[Value, ...]]:
        """Per linearizable key, the values written in linearization order (for the session
        checks of `lab.record.consistency`); `history` is the one checked, indices included."""
        by_index = {op.index: op for op in history}
        return {
            k.key: tuple(by_index[i].written for i in k.linearization if by_index[i].f != "read")
            for k in self.keys
            if k.valid == "ok"
        }


class _Exhausted(Exception):
    pass


class _Budget:
    """Memo entries and wall-clock time left; raises _Exhausted when either runs out."""

    def __init__(self, max_states: int, deadline: float) -> None:
        self.max_states = max_states
        self.deadline = deadline
        self.states = 0
        self.exhausted = False

    def spend(self) -> None:
        self.states += 1
        # monotonic() costs about as much as a few search steps, so look at the clock now and then
        # (first at the first state, so that a budget already spent is never ignored).
        if self.states > self.max_states or (self.states & 1023 == 1 and time.monotonic() > self.deadline):
            self.exhausted = True
            raise _Exhausted


class _Eff(NamedTuple):
    """An op as the search sees it: it must be placed between op.invoke and end; an optional
    (info) op may also be skipped."""

    op: Op
    end: float
    optional: bool


def _effective(ops: Sequence[Op]) -> list[_Eff]:
    """ok ops as they are, info writes/cas bounded by their deadline (see the module doc), the
    rest dropped; sorted by invoke."""
    ok = [op for op in ops if op.type == "ok"]
    info = [op for op in ops if op.type == "info" and op.f != "read"]
    seen_by: defaultdict[Value, list[float]] = defaultdict(list)  # value -> completions of ok observers
    for op in ok:
        if op.f != "write":
            seen_by[op.observed].append(op.complete)
    info_cas_by_expected: defaultdict[Value, list[int]] = defaultdict(list)
    for i, op in enumerate(info):
        if op.f == "cas":
            info_cas_by_expected[op.observed].append(i)
    # An info cas observing an info write's value extends that write's deadline to its own, so
    # iterate to a fixed point (deadlines only grow).
    deadline = [-math.inf] * len(info)
    changed = True
    while changed:
        changed = False
        for i, op in enumerate(info):
            d = max((c for c in seen_by.get(op.written, ()) if c >= op.invoke), default=-math.inf)
            for j in info_cas_by_expected.get(op.written, ()):
                if j != i and deadline[j] >= op.invoke:
                    d = max(d, deadline[j])
            if d > deadline[i]:
                deadline[i] = d
                changed = True
    effs = [_Eff(op, op.complete, False) for op in ok]
    effs += [_Eff(op, d, True) for op, d in zip(info, deadline, strict=True) if d > -math.inf]
    effs.sort(key=lambda e: (e.op.invoke, e.end))
    return effs


def _segments(effs: list[_Eff]) -> list[list[_Eff]]:
    """Cut where every op so far ended strictly before the next one was invoked."""
    segs: list[list[_Eff]] = []
    horizon = -math.inf
    for e in effs:
        if not segs or e.op.invoke > horizon:
            segs.append([])
        segs[-1].append(e)
        horizon = max(horizon, e.end)
    return segs


def _search(seg: Sequence[_Eff], start: Value, budget: _Budget) -> Iterator[tuple[Value, tuple[int, ...]]]:
    """Wing & Gong over one segment from register value `start`: yields each distinct end value
    reachable by a complete linearization, with the positions (in `seg`) of the ops that took
    effect, in order. Lazy: the caller asks for another end value only if it needs one."""
    n = len(seg)
    events = sorted([(e.op.invoke, 0, i) for i, e in enumerate(seg)] + [(e.end, 1, i) for i, e in enumerate(seg)])
    # Entry 0 is the list head; entries 1..2n are calls and returns in time order, calls first on
    # equal times (an op returning when another is invoked may be concurrent with it).
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_ret = [False] * size
    opi = [0] * size
    match = [0] * size  # call entry -> its return entry
    ret_of = [0] * n
    for pos, (_, is_return, i) in enumerate(events, start=1):
        opi[pos] = i
        if is_return:
            is_ret[pos] = True
            ret_of[i] = pos
    for pos in range(1, size):
        if not is_ret[pos]:
            match[pos] = ret_of[opi[pos]]
    kind = [_KIND[e.op.f] for e in seg]
    observed = [e.op.observed for e in seg]
    written = [e.op.written for e in seg]
    optional = [e.optional for e in seg]

    # Unplaced ops that need each value (ok reads and cas) and that may still write it. Values are
    # usually unique, so once a value's writers are all placed, moving the register off it while
    # someone still needs it is a dead end found at once, not at the next return.
    needs: defaultdict[Value, int] = defaultdict(int)
    sources: defaultdict[Value, int] = defaultdict(int)
    for i in range(n):
        if kind[i] != _WRITE and not optional[i]:
            needs[observed[i]] += 1
        if kind[i] != _READ:
            sources[written[i]] += 1

    if any(needs[v] and not sources[v] for v in needs if v != start):
        return  # someone reads a value that nothing here writes and the register does not hold

    def place(e: int) -> None:
        """Take call entry e and its return out of the list (e keeps its own links)."""
        nxt[prv[e]] = nxt[e]
        prv[nxt[e]] = prv[e]
        r = match[e]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]
        i = opi[e]
        if kind[i] != _WRITE and not optional[i]:
            needs[observed[i]] -= 1
        if kind[i] != _READ:
            sources[written[i]] -= 1

    def unplace(e: int) -> None:
        r = match[e]
        nxt[prv[r]] = r
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[e]] = e
        prv[nxt[e]] = e
        i = opi[e]
        if kind[i] != _WRITE and not optional[i]:
            needs[observed[i]] += 1
        if kind[i] != _READ:
            sources[written[i]] += 1

    # The linearized set is kept as (low, window): every op below position `low` (ops are in
    # invoke order) is linearized, and bit j of `window` says whether op low + j is. That is
    # Porcupine's bitset with its all-ones prefix cut off: the memo keys stay a few words long
    # however long the segment, where a plain bitset costs time in proportion to it at each step.
    cache: set[tuple[int, int, Value]] = set()
    # (call entry, value before it, how: _APPLIED, _SKIPPED (info op) or _FORCED (see below),
    # low and window before it)
    stack: list[tuple[int, Value, int, int, int]] = []
    low = 0
    window = 0
    state = start
    option = _APPLIED
    moved = True
    dead = False
    entry = 0
    while True:
        if moved:
            # A pending read of the current value is linearized at once, without a choice point:
            # any valid continuation that places it later stays valid with it moved here (it
            # changes nothing, and every op that had to precede it already has). Without this,
            # pending reads multiply the memo by the subsets of them linearized so far.
            moved = False
            e = nxt[0]
            while e != -1 and not is_ret[e]:
                i = opi[e]
                if kind[i] == _READ and observed[i] == state:
                    w = window | (1 << (i - low))
                    ones = (~w & (w + 1)).bit_length() - 1  # trailing ones join the prefix
                    key = (low + ones, w >> ones, state)
                    if key in cache:
                        dead = True
                        break
                    cache.add(key)
                    budget.spend()
                    stack.append((e, state, _FORCED, low, window))
                    low, window = key[0], key[1]
                    place(e)
                    # e keeps its links when taken out, and so does its return if it came next
                    e = nxt[e]
                    if e == match[stack[-1][0]]:
                        e = nxt[e]
                else:
                    e = nxt[e]
            entry = nxt[0]
            option = _APPLIED
        if not dead and entry != -1 and not is_ret[entry]:
            i = opi[entry]
            k = kind[i]
            if k != _WRITE and state != observed[i] and not optional[i]:
                entry = nxt[entry]  # the common dead end, decided before any bit arithmetic
                option = _APPLIED
                continue
            w = window | (1 << (i - low))
            ones = (~w & (w + 1)).bit_length() - 1
            new_low, new_window = low + ones, w >> ones
            taken = -1
            new_state = state
            if option == _APPLIED and (k == _WRITE or state == observed[i]):
                new_state = state if k == _READ else written[i]
                strands = (
                    new_state != state and not sources[state] and needs[state] - (k == _CAS and not optional[i]) > 0
                )
                if not strands and (new_low, new_window, new_state) not in cache:
                    taken = _APPLIED
            if taken < 0 and optional[i] and option <= _SKIPPED:
                new_state = state
                u = written[i]
                strands = u != state and sources[u] == 1 and needs[u] > 0
                if not strands and (new_low, new_window, state) not in cache:
                    taken = _SKIPPED
            if taken < 0:
                entry = nxt[entry]
                option = _APPLIED
                continue
            cache.add((new_low, new_window, new_state))
            budget.spend()
            stack.append((entry, state, taken, low, window))
            low, window, state = new_low, new_window, new_state
            place(entry)
            moved = True
            continue
        if entry == -1 and not dead:
            yield state, tuple(opi[c] for c, _, how, _, _ in stack if how != _SKIPPED)
        # A pending op's return was reached, a forced read led to a known state, or all ops were
        # placed and the caller wants another end value: undo back to the last real choice and
        # try its next option.
        dead = False
        while True:
            if not stack:
                return
            entry, state, taken, low, window = stack.pop()
            unplace(entry)
            if taken != _FORCED:
                break
        option = taken + 1


class _KeyOutcome(NamedTuple):
    linearizable: bool
    order: tuple[int, ...]  # op indices, when linearizable
    failing_prefix: tuple[Op, ...]  # the ops of the segments up to the one no path got through


def _check_ops(ops: Sequence[Op], initial: Value, budget: _Budget) -> _KeyOutcome:
    segs = _segments(_effective(ops))
    if not segs:
        return _KeyOutcome(True, (), ())
    # Depth-first over segments: gens[i] enumerates segment i's end values from starts[i]; a
    # start value that failed a segment is never tried there again.
    failed: list[set[Value]] = [set() for _ in segs]
    gens = [_search(segs[0], initial, budget)]
    starts = [initial]
    path: list[tuple[int, ...]] = []  # orders of the segments that led to the top generator
    deepest = 0
    while gens:
        i = len(gens) - 1
        item = next(gens[-1], None)
        if item is None:
            gens.pop()
            failed[i].add(starts.pop())
            del path[len(gens) - 1 if gens else 0 :]
            continue
        end, order = item
        if i + 1 == len(segs):
            order_ix = [segs[j][p].op.index for j, o in enumerate([*path, order]) for p in o]
            return _KeyOutcome(True, tuple(order_ix), ())
        if end in failed[i + 1]:
            continue
        path.append(order)
        gens.append(_search(segs[i + 1], end, budget))
        starts.append(end)
        deepest = max(deepest, i + 1)
    return _KeyOutcome(False, (), tuple(e.op for seg in segs[: deepest + 1] for e in seg))


def _certificate(ops: Sequence[Op], initial: Value, budget: _Budget) -> tuple[Op, ...] | None:
    """A small non-linearizable sub-history found from the session anomalies of real-time
    reasoning (stale and never-written reads, reads going back in time), or None.

    The sub-history is an anomaly's ops plus every writer of every value that one of its reads or
    cas needs, transitively. Restricting a linearization of the whole history to such a closed
    subset keeps each op's view of the register (the write it reads from is in it, and only
    writes of the same value can come between), so if the subset has no linearization, neither
    has the whole. It costs O(n log n) where the full search of a violation may have to try every
    order of a long non-quiescent prefix."""
    writers: defaultdict[Value, list[Op]] = defaultdict(list)
    for op in ops:
        if op.f != "read":
            writers[op.written].append(op)
    for anomaly in check_sessions(ops, initial=initial).anomalies[:_CERTIFICATE_TRIES]:
        sub = set(anomaly.ops)
        todo = list(sub)
        while todo and len(sub) <= _CERTIFICATE_SIZE:
            op = todo.pop()
            if op.f == "cas" or (op.f == "read" and op.type == "ok"):
                for src in writers[op.observed]:
                    if src not in sub:
                        sub.add(src)
                        todo.append(src)
        if len(sub) <= _CERTIFICATE_SIZE and not _check_ops(list(sub), initial, budget).linearizable:
            return tuple(sorted(sub, key=lambda op: (op.invoke, op.index)))
    return None


def _close(ops: list[Op], written_anywhere: set[Value], initial: Value) -> list[Op]:
    """Drop ok observers of values that some op of the key wrote but none in `ops` does, so a
    shrunk history never turns a stale read into a read of a value never written."""
    while True:
        present = {op.written for op in ops if op.f != "read"}
        keep = [
            op
            for op in ops
            if op.type != "ok"
            or op.f == "write"
            or op.observed == initial
            or op.observed in present
            or op.observed not in written_anywhere
        ]
        if len(keep) == len(ops):
            return keep
        ops = keep


def _shrink(
    prefix: Sequence[Op], written_anywhere: set[Value], initial: Value, seconds: float, max_states: int
) -> tuple[tuple[Op, ...], bool]:
    """Delta debugging (ddmin): drop chunks, halving their size, while what is left stays
    non-linearizable. Returns the sub-history and whether it is 1-minimal (no single op can go)."""
    deadline = time.monotonic() + seconds
    current = list(prefix)
    conclusive = True

    def violates(cand: list[Op]) -> bool:
        nonlocal conclusive
        try:
            return not _check_ops(cand, initial, _Budget(max_states, deadline)).linearizable
        except _Exhausted:
            conclusive = False
            return False

    # The failure usually sits at the end of the failing prefix: try short suffixes first, so that
    # delta debugging starts from tens of ops rather than thousands.
    tail = 16
    while tail < len(current):
        cand = _close(current[-tail:], written_anywhere, initial)
        if cand and violates(cand):
            current = cand
            break
        tail *= 4
    chunks = 2
    while len(current) > 1:
        size = math.ceil(len(current) / chunks)
        for start in range(0, len(current), size):
            if time.monotonic() > deadline:
                return tuple(current), False
            cand = _close(current[:start] + current[start + size :], written_anywhere, initial)
            if cand and violates(cand):
                current = cand
                chunks = max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(chunks * 2, len(current))
    return tuple(current), conclusive


def _explain(witness: Sequence[Op], written_anywhere: set[Value], initial: Value) -> str:
    """Plain words for the common shapes of a violation; a generic sentence otherwise."""

    def what(op: Op) -> str:
        if op.f == "read":
            return f"read of {op.value!r}"
        return f"cas {op.observed!r}->{op.written!r}" if op.f == "cas" else f"write of {op.value!r}"

    def end(op: Op) -> float:
        return op.complete if op.type == "ok" else math.inf

    observers = [op for op in witness if op.type == "ok" and op.f != "write"]
    for o in observers:
        v = o.observed
        if v != initial and v not in written_anywhere:
            return f"{what(o)} by {o.process} at t={fmt_time(o.invoke)}: no ok or info operation wrote {v!r}"
    for o in observers:
        v = o.observed
        sources = [w for w in witness if w.f != "read" and w.written == v]
        if sources and all(s.invoke > o.complete for s in sources):
            return (
                f"{what(o)} by {o.process} completed at t={fmt_time(o.complete)}, before any write of "
                f"{v!r} began ({'; '.join(s.describe() for s in sources)})"
            )
        for w in witness:
            if (
                w.type == "ok"
                and w.f != "read"
                and w.written != v
                and w.complete < o.invoke
                and all(end(s) < w.invoke for s in sources)
            ):
                if sources:
                    s = max(sources, key=end)
                    why = f"; the {what(s)} by {s.process} had completed at t={fmt_time(s.complete)}, before it began"
                else:
                    why = f"; {v!r} is the initial value"
                return (
                    f"{what(o)} at t={fmt_time(o.invoke)} by {o.process} after {what(w)} completed at "
                    f"t={fmt_time(w.complete)} by {w.process}{why}"
                )
    for o in observers:
        v = o.observed
        sources = [w for w in witness if w.f != "read" and w.written == v]
        for c in observers:
            if (
                c.f == "cas"
                and c is not o
                and c.observed == v
                and c.written != v
                and c.complete < o.invoke
                and len(sources) + (v == initial) == 1
            ):
                return (
                    f"{what(o)} at t={fmt_time(o.invoke)} by {o.process} after {what(c)} completed at "
                    f"t={fmt_time(c.complete)} by {c.process}, which had replaced {v!r}, written only once"
                )
    for o2 in observers:
        v2 = o2.observed
        late = [s for s in witness if s.f != "read" and s.written == v2]
        for o1 in observers:
            v1 = o1.observed
            sources = [s for s in witness if s.f != "read" and s.written == v1]
            if (
                v1 != v2
                and o1.complete < o2.invoke
                and sources
                and all(end(s) < w.invoke for s in late for w in sources)
            ):
                older = (
                    f"every write of {v2!r} had completed before"
                    if late
                    else f"{v2!r} is the initial value, older than"
                )
                return (
                    f"{what(o2)} at t={fmt_time(o2.invoke)} by {o2.process} after {what(o1)} completed at "
                    f"t={fmt_time(o1.complete)} by {o1.process}: {older} any write of {v1!r} began"
                )
    cas_from: defaultdict[Value, list[Op]] = defaultdict(list)
    for o in observers:
        if o.f == "cas":
            cas_from[o.observed].append(o)
    for v, group in cas_from.items():
        sources = [w for w in witness if w.f != "read" and w.written == v]
        if len(group) > len(sources) + (v == initial):
            names = " and ".join(
                f"{what(c)} by {c.process} (t={fmt_time(c.invoke)}-{fmt_time(c.complete)})" for c in group
            )
            return (
                f"{names} all succeeded from {v!r}, which was written {len(sources)} time(s)"
                f"{' besides being the initial value' if v == initial else ''}: an update was lost"
            )
    shown = "; ".join(op.describe() for op in witness[:8])
    more = f"; and {len(witness) - 8} more" if len(witness) > 8 else ""
    return (
        f"no order of these {len(witness)} ops, each taking effect between its invoke and complete "
        f"(info ops at any time after invoke, or never), gives every read its value: {shown}{more}"
    )


def check_linearizable(
    history: Iterable[Op],
    *,
    initial: Value = None,
    max_seconds: float = 10.0,
    max_states: int = 1_000_000,
    shrink_seconds: float = 5.0,
) -> LinearizabilityResult:
    """Check every key's register history. `max_seconds` and `max_states` (memo entries) bound
    the whole search; shrinking a violation's witness has its own `shrink_seconds`. Ops without
    an `index` (-1) get their position in `history`."""
    started = time.monotonic()
    budget = _Budget(max_states, started + max_seconds)
    by_key: dict[str, list[Op]] = defaultdict(list)
    for pos, op in enumerate(history):
        if op.index < 0:
            op = replace(op, index=pos)
        if op.type != "fail":
            by_key[op.key].append(op)
    results: list[KeyResult] = []
    for key in sorted(by_key):
        ops = by_key[key]
        n_ok = sum(op.type == "ok" for op in ops)
        n_info = sum(op.type == "info" and op.f != "read" for op in ops)
        before = budget.states
        if budget.exhausted:
            results.append(KeyResult(key, "unknown", n_ok, n_info, 0))
            continue
        try:
            cert = _certificate(ops, initial, budget)
            outcome = _check_ops(ops, initial, budget) if cert is None else _KeyOutcome(False, (), cert)
        except _Exhausted:
            results.append(KeyResult(key, "unknown", n_ok, n_info, budget.states - before))
            continue
        states = budget.states - before
        if outcome.linearizable:
            results.append(KeyResult(key, "ok", n_ok, n_info, states, linearization=outcome.order))
            continue
        written = {op.written for op in ops if op.f != "read"}
        # The failing prefix lacks writers that its reads' values have elsewhere (e.g. a write
        # invoked after the read completed): add them, so the witness shows where they came from.
        prefix = list(outcome.failing_prefix)
        missing = {op.observed for op in prefix if op.type == "ok" and op.f != "write"} - {
            op.written for op in prefix if op.f != "read"
        }
        prefix += [op for op in ops if op.f != "read" and op.written in missing and op not in prefix]
        prefix.sort(key=lambda op: (op.invoke, op.index))
        witness, minimal = _shrink(prefix, written, initial, shrink_seconds, max_states)
        results.append(
            KeyResult(
                key,
                "violation",
                n_ok,
                n_info,
                states,
                witness=witness,
                witness_minimal=minimal,
                explanation=_explain(witness, written, initial),
            )
        )
    checked = sum(k.ops for k in results)
    valid: Overall
    if any(k.valid == "violation" for k in results):
        valid = "violation"
    elif any(k.valid == "unknown" for k in results):
        valid = "unknown"
    else:
        valid = "ok" if checked else "nothing checked"
    return LinearizabilityResult(valid, tuple(results), checked, budget.states, time.monotonic() - started)
