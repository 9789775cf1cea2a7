"""The typed history of register operations that the history checkers read.

One `Op` is one client operation on one key of a read/write/compare-and-set register, as the
client saw it: when it was invoked, when it completed and how (`ok`, `fail`, `info`). `info`
means the outcome is unknown (a timeout, a reset connection, a 5xx after the request was sent):
the operation may have taken effect at any moment after its invocation, even after the history
ends, or never. Its `complete` is when the client gave up, or `math.inf` when it never did; the
checkers never use it as a bound.

Histories are stored one JSON object a line (`dump_history` / `load_history`); an infinite
`complete` is written as null, since JSON has no infinity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

# A register value: JSON scalars only, so that values are hashable model states.
Value = str | int | float | bool | None
# What an op carries: a value, or (expected, new) for a compare-and-set.
Payload = Value | tuple[Value, Value]
Fn = Literal["read", "write", "cas"]
OpType = Literal["ok", "fail", "info"]

_FNS: frozenset[str] = frozenset(get_args(Fn))


def outcome_of_status(status: int) -> OpType:
    """A register operation's type from its HTTP status: 2xx `ok`; 4xx `fail` (the server refused
    before writing: 409 busy, changing or expectation failed, 404, 422); anything else `info` (5xx,
    no answer, a timeout): it may have applied."""
    if 200 <= status < 300:
        return "ok"
    return "fail" if 400 <= status < 500 else "info"


_TYPES: frozenset[str] = frozenset(get_args(OpType))


@dataclass(frozen=True)
class Op:
    """One operation. `value`: for a read the value read (None: absent/unknown), for a write the
    value written, for a cas the pair (expected, new)."""

    process: str
    key: str
    f: Fn
    value: Payload
    type: OpType
    invoke: float
    complete: float = math.inf
    node: str | None = None
    index: int = -1

    def __post_init__(self) -> None:
        if self.f not in _FNS:
            raise ValueError(f"op f must be one of {sorted(_FNS)}, not {self.f!r}")
        if self.type not in _TYPES:
            raise ValueError(f"op type must be one of {sorted(_TYPES)}, not {self.type!r}")
        if self.f == "cas" and not (isinstance(self.value, tuple) and len(self.value) == 2):
            raise ValueError(f"a cas value is a pair (expected, new), not {self.value!r}")
        if self.type == "ok" and not self.invoke <= self.complete < math.inf:
            # An ok op without a finite completion would be unbounded: the checker could not
            # tell it from an info op.
            raise ValueError(f"ok op #{self.index} needs invoke <= complete < inf, got {self.invoke}..{self.complete}")

    @property
    def written(self) -> Value:
        """The value this op leaves in the register if it takes effect (writes and cas)."""
        if self.f == "cas":
            return cast("tuple[Value, Value]", self.value)[1]
        return cast(Value, self.value)

    @property
    def observed(self) -> Value:
        """The value this op requires the register to hold (reads and cas)."""
        if self.f == "cas":
            return cast("tuple[Value, Value]", self.value)[0]
        return cast(Value, self.value)

    def describe(self) -> str:
        """Plain words for reports, e.g. `read of 3 by p2 at t=4-4.1 on a1`."""
        if self.f == "cas":
            expected, new = cast("tuple[Value, Value]", self.value)
            what = f"cas {expected!r}->{new!r}"
        else:
            what = f"{self.f} of {self.value!r}"
        where = f" on {self.node}" if self.node else ""
        status = "" if self.type == "ok" else f" ({self.type})"
        return f"{what} by {self.process} at t={fmt_time(self.invoke)}-{fmt_time(self.complete)}{where}{status}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.f == "cas":
            d["value"] = list(cast("tuple[Value, Value]", self.value))
        if self.complete == math.inf:
            d["complete"] = None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Op:
        value = d.get("value")
        if d["f"] == "cas" and isinstance(value, list):
            value = tuple(value)
        complete = d.get("complete")
        return cls(
            process=str(d["process"]),
            key=str(d["key"]),
            f=d["f"],
            value=value,
            type=d["type"],
            invoke=float(d["invoke"]),
            complete=math.inf if complete is None else float(complete),
            node=d.get("node"),
            index=int(d.get("index", -1)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> Op:
        return cls.from_dict(json.loads(line))


def fmt_time(t: float) -> str:
    """Seconds to the microsecond, trailing zeros cut: ops a millisecond apart stay apart."""
    return "?" if t == math.inf else f"{t:.6f}".rstrip("0").rstrip(".")


def dump_history(ops: Iterable[Op], path: Path) -> None:
    path.write_text("".join(op.to_json() + "\n" for op in ops))


def load_history(path: Path) -> list[Op]:
    """Ops in file order; an op stored without an index gets its line position."""
    ops: list[Op] = []
    for line in path.read_text().splitlines():
        if line.strip():
            op = Op.from_json(line)
            ops.append(op if op.index >= 0 else replace(op, index=len(ops)))
    return ops
