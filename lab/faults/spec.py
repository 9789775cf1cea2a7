"""Fault specs: the kinds, `FaultSpec` and its validation against a topology, `ActiveFault`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.cluster.topology import Topology
from lab.core.errors import BadInput

CONTAINER_KINDS = ("kill", "stop", "pause", "restart")

NETWORK_KINDS = ("isolate", "split", "partition", "flaky")

KINDS = CONTAINER_KINDS + NETWORK_KINDS

ROLES = ("leader", "follower", "random")

DB, LB = "db", "lb"


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    targets: tuple[str, ...] = ()  # container kinds and isolate
    sides: tuple[tuple[str, ...], ...] = ()  # split: datacenters; partition: nodes/db; flaky: two sets
    one_way: bool = False
    loss: float | None = None  # flaky: percent of packets dropped

    def describe(self) -> str:
        if self.kind in CONTAINER_KINDS or self.kind == "isolate":
            return f"{self.kind} {' '.join(self.targets)}"
        sep = " > " if self.one_way else " | "
        text = f"{self.kind} {sep.join(','.join(s) for s in self.sides)}"
        return text + (f" ({self.loss:g}% loss)" if self.kind == "flaky" else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FaultSpec:
        return cls(
            d["kind"],
            tuple(d.get("targets", ())),
            tuple(tuple(s) for s in d.get("sides", ())),
            bool(d.get("one_way", False)),
            d.get("loss"),
        )


def make_spec(
    kind: str,
    targets: Iterable[str] = (),
    sides: Iterable[Iterable[str]] = (),
    *,
    one_way: bool = False,
    loss: float | None = None,
) -> FaultSpec:
    return FaultSpec(kind, tuple(targets), tuple(tuple(s) for s in sides), one_way, loss)


def validate(spec: FaultSpec, t: Topology, where: str = "fault") -> None:
    """Raise BadInput naming `where` and the field when the spec cannot apply to this topology."""
    if spec.kind not in KINDS:
        raise BadInput(f"{where}.kind: unknown fault {spec.kind!r}; choose one of {', '.join(KINDS)}")
    nodes = ", ".join(t.node_names)
    if spec.kind in CONTAINER_KINDS or spec.kind == "isolate":
        if not spec.targets:
            raise BadInput(
                f"{where}.target: {spec.kind} needs a target: a node ({nodes}), "
                f"{'db, lb, ' if spec.kind != 'isolate' else ''}{', '.join(ROLES)}"
            )
        allowed = set(t.node_names) | set(ROLES) | ({DB, LB} if spec.kind in CONTAINER_KINDS else set())
        for i, target in enumerate(spec.targets):
            if target not in allowed:
                raise BadInput(
                    f"{where}.target: no node {target!r} in this lab (nodes: {nodes}"
                    f"{'; or db, lb' if spec.kind in CONTAINER_KINDS else ''}; or {', '.join(ROLES)})"
                )
            if target in spec.targets[:i] and target not in ("follower", "random"):
                raise BadInput(f"{where}.target: {target!r} is named twice")
        if spec.kind == "isolate" and len(spec.targets) != 1:
            raise BadInput(f"{where}.target: isolate takes one node (use partition for groups)")
        if spec.targets.count("follower") > t.size - 1:
            raise BadInput(f"{where}.target: a {t.size}-node lab has {t.size - 1} follower(s)")
        if len(spec.targets) > t.size + 2:
            raise BadInput(f"{where}.target: more targets than containers")
    elif spec.targets:
        raise BadInput(f"{where}.target: {spec.kind} takes sides, not targets")
    if spec.kind not in ("split", "partition", "flaky") and (spec.sides or spec.one_way):
        raise BadInput(f"{where}.{'sides' if spec.sides else 'one_way'}: only split, partition and flaky take it")
    if spec.kind == "split":
        if len(t.datacenters) < 2:
            raise BadInput(f"{where}.kind: a split needs two datacenters; this lab has one ({t.datacenters[0]})")
        if spec.sides:
            _check_sides(spec.sides, t.datacenters, "datacenter", f"{where}.sides", allow_one=True)
    elif spec.kind == "partition":
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=True)
        if not any(n in s for s in spec.sides for n in t.node_names):
            raise BadInput(f"{where}.sides: name at least one node")
    elif spec.kind == "flaky":
        if len(spec.sides) != 2:
            raise BadInput(f"{where}.sides: flaky takes two endpoint sets, e.g. [a1] and [b1, db]")
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=False)
    if spec.kind == "flaky":
        if not isinstance(spec.loss, (int, float)) or isinstance(spec.loss, bool) or not 1 <= spec.loss <= 100:
            raise BadInput(
                f"{where}.loss: flaky needs a loss percentage from 1 to 100 (below 1 % a drop "
                f"cannot be verified in a bounded number of attempts), got {spec.loss!r}"
            )
    elif spec.loss is not None:
        raise BadInput(f"{where}.loss: only flaky takes a loss percentage")


def _check_sides(
    sides: Sequence[Sequence[str]], known: Sequence[str], what: str, where: str, *, allow_one: bool
) -> None:
    seen: set[str] = set()
    for i, side in enumerate(sides):
        if not side:
            raise BadInput(f"{where}[{i}]: empty side")
        for name in side:
            if name not in known:
                raise BadInput(f"{where}[{i}]: no {what} {name!r} in this lab ({', '.join(known)})")
            if name in seen:
                raise BadInput(f"{where}[{i}]: {name!r} is on two sides")
            seen.add(name)
    rest = [k for k in known if k not in seen and k != DB]
    if len(sides) + (1 if rest and allow_one else 0) < 2:
        raise BadInput(f"{where}: a cut needs two sides; every {what} is on one side")


@dataclass(frozen=True)
class ActiveFault:
    id: str
    spec: FaultSpec
    targets: tuple[str, ...]  # resolved: services for container faults, every endpoint cut for network ones
    t0: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.id} {self.spec.describe()}"
