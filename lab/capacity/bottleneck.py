"""What saturated first at a grid point, from the sampler's timeline: the resource, where, when,
and the evidence. A point whose load generator, node CPU or machine CPU saturated first measured
the harness, not the sized resource, and never counts toward a sizing recommendation.

Each sample lists `Usage`s: one resource's share of its limit over the last interval (1.0: all of
it). A resource is saturated from SATURATED; the first sample with any saturated resource names
the bottleneck. Within one sample, a limit that refuses work (database connections, the pool, the
heap) comes before a CPU, since its errors are direct evidence. The machine's CPU is named only
when nothing more specific saturated: on a small machine shared with other work it is often busy
from the start, which says nothing about what limited this point (it is listed with the others
that saturated, with its time)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SATURATED = 0.9  # Locust's own warning threshold, and a CPU quota's "pegged"

DB_CONNECTIONS = "database connections"
POOL = "connection pool"
HEAP = "node heap"
DB_LOCKS = "database row locks"
# Galera: the writer held by flow control, while a member's queue of write sets to apply is full.
DB_FLOW_CONTROL = "database flow control"
DB_CPU = "database CPU"
GENERATOR = "load generator"
NODE_CPU = "node CPU"
LB_CPU = "load balancer CPU"
MACHINE_CPU = "machine CPU"
# The order in which resources saturated in the same sample are named.
PRECEDENCE = (
    DB_CONNECTIONS,
    POOL,
    HEAP,
    DB_LOCKS,
    DB_FLOW_CONTROL,
    DB_CPU,
    GENERATOR,
    NODE_CPU,
    LB_CPU,
    MACHINE_CPU,
)
# Saturated first, these bound the figures by the harness's cost, not by what a sweep sizes.
HARNESS = frozenset({GENERATOR, NODE_CPU, MACHINE_CPU})


@dataclass(frozen=True)
class Usage:
    resource: str  # one of PRECEDENCE
    where: str  # the container or node; "" for the machine or the database as a whole
    share: float  # of its limit, over the sample's interval
    evidence: str  # the figures behind the share, in words

    @property
    def name(self) -> str:
        return f"{self.resource} {self.where}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "where": self.where,
            "share": round(self.share, 3),
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Bottleneck:
    resource: str  # one of PRECEDENCE, or NONE
    where: str
    at_s: float | None  # seconds into the load when it was first seen saturated
    evidence: str
    then: tuple[str, ...] = ()  # what else saturated later, "node CPU a1 at 6 s"

    @property
    def harness_bound(self) -> bool:
        return self.resource in HARNESS

    @property
    def name(self) -> str:
        return f"{self.resource} {self.where}".strip()

    def text(self) -> str:
        """The table's cell: the resource and its evidence."""
        if self.resource == NONE:
            return NONE
        bound = "; harness-bound, not counted" if self.harness_bound else ""
        return f"{self.name} ({self.evidence}{bound})"


NONE = "none saturated"


def usages(sample: Mapping[str, Any]) -> list[Usage]:
    return [Usage(**u) for u in sample.get("usage", ())]


def attribute(samples: Sequence[Mapping[str, Any]], start: float) -> Bottleneck:
    """The first saturated resource of a point's samples (`{"t": epoch, "usage": [...]}`), `start`
    being when the load began."""
    hot = [
        (max(0.0, float(sample["t"]) - start), u) for sample in samples for u in usages(sample) if u.share >= SATURATED
    ]
    specific = [(at, u) for at, u in hot if u.resource != MACHINE_CPU]
    first = min(specific or hot, key=lambda h: (h[0], PRECEDENCE.index(h[1].resource), -h[1].share), default=None)
    later: dict[str, float] = {}
    for at, u in hot:
        if first is not None and u.name != first[1].name:
            later.setdefault(u.name, at)
    if first is None:
        peak = max((u for s in samples for u in usages(s)), key=lambda u: u.share, default=None)
        busiest = f"busiest: {peak.name} at {peak.share:.0%} ({peak.evidence})" if peak else "nothing was sampled"
        return Bottleneck(NONE, "", None, f"no resource reached {SATURATED:.0%} of its limit; {busiest}")
    at, u = first
    return Bottleneck(
        u.resource, u.where, round(at, 1), u.evidence, tuple(f"{name} at {t:.0f} s" for name, t in later.items())
    )


def peaks(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each resource's highest share over the point, by name."""
    out: dict[str, float] = {}
    for s in samples:
        for u in usages(s):
            out[u.name] = round(max(out.get(u.name, 0.0), u.share), 3)
    return out
