"""What became of the writes whose outcome the client never learned (`info` ops).

An info write (or cas) may have been applied or not; the database can tell. Given a snapshot of
what it committed, each info write is resolved as committed, not committed, or unknown (the
snapshot does not cover its key, or the callable cannot say). A cas is resolved by its new value.
Values are assumed unique per key (uuids, generated names): a value that another write also
carried proves nothing about this one, so those are unknown too.

The snapshot is either a mapping key -> every value ever committed to that key (e.g. from the
database's rows or its change log), or a callable (key, value) -> True / False / None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from lab.record.ops import Op, Value

Snapshot = Mapping[str, Collection[Value]] | Callable[[str, Value], bool | None]


@dataclass(frozen=True)
class IndeterminateResult:
    committed: tuple[Op, ...]
    not_committed: tuple[Op, ...]
    unknown: tuple[Op, ...]

    @property
    def total(self) -> int:
        return len(self.committed) + len(self.not_committed) + len(self.unknown)

    def counts(self) -> dict[str, int]:
        return {
            "committed": len(self.committed),
            "not committed": len(self.not_committed),
            "unknown": len(self.unknown),
        }


def resolve_info_writes(history: Iterable[Op], snapshot: Snapshot) -> IndeterminateResult:
    ops = list(history)
    # Writes that may have put a (key, value) there: ok and info ones; failed ones surely did not.
    carriers = Counter((op.key, op.written) for op in ops if op.f != "read" and op.type != "fail")
    committed: list[Op] = []
    not_committed: list[Op] = []
    unknown: list[Op] = []
    for op in ops:
        if op.type != "info" or op.f == "read":
            continue
        if carriers[(op.key, op.written)] > 1:
            unknown.append(op)
            continue
        if callable(snapshot):
            verdict = snapshot(op.key, op.written)
        else:
            values = snapshot.get(op.key)
            verdict = None if values is None else op.written in values
        (unknown if verdict is None else committed if verdict else not_committed).append(op)
    return IndeterminateResult(tuple(committed), tuple(not_committed), tuple(unknown))
