"""Galera's quorum arithmetic, next to ZooKeeper's (lab/cluster/topology.py majority), and the
lab's outcome when the two are combined with where the database front and the load balancer sit.

Galera (MariaDB, "Quorum Control with Weighted Votes"; Codership, "Weighted Quorum"): after a
membership change, a component stays (or becomes) the Primary Component when the weight of its
members is strictly more than half of the weight of the last primary component, less the weight
of members that left it gracefully (a clean shutdown announces itself; a crash or a freeze does
not). Every member weighs `pc.weight` = 1 by default, and so does `garbd`, which votes but holds no
data. A 50/50 split leaves no primary anywhere. Members outside the primary component refuse
queries (`wsrep_cluster_status` non-Primary), so the front sends writes only to a primary member.

Faults held together happen at once: the last primary component is the whole cluster. Pure: no
Docker, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lab.cluster.database import ARBITRATOR, Database
from lab.cluster.topology import EXTERNAL_DB, OUTSIDE_LB, Topology, majority

SURVIVES, OUTAGE = "survives", "outage"


def weights(db: Database) -> dict[str, int]:
    """Voter -> pc.weight: every member and the arbitrator weigh 1 (the lab sets no pc.weight)."""
    return {voter: 1 for voter, _ in db.placement()}


def primary(
    last_primary: Mapping[str, int], components: Iterable[Collection[str]], left: Collection[str] = ()
) -> frozenset[str] | None:
    """The component that is primary after a change, or None: its weight is strictly more than
    half of the last primary component's, less the weight of the members in LEFT (gone cleanly)."""
    total = sum(w for v, w in last_primary.items() if v not in left)
    for comp in components:
        weight = sum(last_primary.get(v, 0) for v in comp if v not in left)
        if 2 * weight > total:
            return frozenset(comp)
    return None


def site_components(db: Database, sides: Sequence[Collection[str]], lost: Collection[str] = ()) -> list[frozenset[str]]:
    """The voters still running, grouped by the sides (sets of sites) of a split; voters at sites
    no side names form one more side together, as the datacenters a split does not name do
    (lab/faults/netmodel.py). No side: one component."""
    named = [set(s) for s in sides] or [{site for _, site in db.placement()}]
    rest = {site for _, site in db.placement() if not any(site in s for s in named)}
    out = []
    for group in named + ([rest] if rest else []):
        comp = frozenset(v for v, site in db.placement() if site in group and v not in lost)
        if comp:
            out.append(comp)
    return out


def primary_after(
    db: Database, sides: Sequence[Collection[str]] = (), crashed: Collection[str] = (), stopped: Collection[str] = ()
) -> frozenset[str] | None:
    """The primary component once CRASHED voters (kill, pause: they never say goodbye) and
    STOPPED ones (a clean shutdown) are gone and the SIDES of a split are cut apart, all at once
    from a healthy cluster."""
    return primary(weights(db), site_components(db, sides, {*crashed, *stopped}), stopped)


def front_reaches_primary(
    db: Database, crashed: Collection[str], stopped: Collection[str], cut: Collection[frozenset[str]], front: str
) -> bool:
    """Whether the database FRONT reaches a member of the primary component, with CRASHED and
    STOPPED voters gone and the pairs in CUT unable to talk (every held fault but flaky is a
    partition, so the voters a voter reaches all reach each other: cliques, as for ZooKeeper)."""
    alive = [v for v, _ in db.placement() if v not in crashed and v not in stopped]
    components = {frozenset(m for m in alive if m == v or frozenset((v, m)) not in cut) for v in alive}
    comp = primary(weights(db), sorted(components, key=sorted), stopped)
    return comp is not None and any(m != ARBITRATOR and frozenset((front, m)) not in cut for m in comp)


@dataclass(frozen=True)
class SplitOutcome:
    """What a split of the lab's sites does to the service, and why."""

    outcome: str
    why: str
    zk_side: int | None  # index into the split's sides (one more for the sites no side names)
    galera_side: int | None


def split_outcome(t: Topology, sides: Sequence[Collection[str]]) -> SplitOutcome:
    """A split of sites (datacenters, the arbitrator's third site) with a Galera database, as
    `claims.expect` decides it, with the reason: the service survives when a side holds the
    ZooKeeper majority, the nodes there reach the database front, the front reaches Galera's primary
    component and the load balancer reaches that side. A front in a datacenter goes with it, so
    ZooKeeper's majority and Galera's primary on different sides are an outage: the nodes with a
    quorum have no writable database, the nodes beside it no quorum. Only a front reachable from
    every site (`external`) bridges the two."""
    named = [set(s) for s in sides]
    rest = set(t.sites) - set().union(*named) if named else set()
    groups = named + ([rest] if rest else [])

    def side_of(site: str) -> int | None:
        return next((i for i, g in enumerate(groups) if site in g), None)

    zk_side = next(
        (i for i, g in enumerate(groups) if len([n for n in t.nodes if n.dc in g]) >= majority(t.size)), None
    )
    comp = primary_after(t.db, sides)
    galera_side = None if comp is None else side_of(dict(t.db.placement())[min(comp)])
    front = None if t.db_dc == EXTERNAL_DB else side_of(t.db_dc)
    lb = None if t.lb_dc == OUTSIDE_LB else side_of(t.lb_dc)

    def outcome(result: str, why: str) -> SplitOutcome:
        return SplitOutcome(result, why, zk_side, galera_side)

    if zk_side is None:
        return outcome(OUTAGE, "no side holds a ZooKeeper majority")
    majority_sites = ", ".join(sorted(groups[zk_side]))
    if galera_side is None:
        return outcome(OUTAGE, "no side holds more than half of Galera's weight: no primary component")
    primary_members = ", ".join(sorted(comp or ()))
    if front is not None and galera_side != zk_side:
        return outcome(
            OUTAGE,
            f"ZooKeeper's majority ({majority_sites}) and Galera's primary component ({primary_members}) "
            f"are on different sides",
        )
    if front not in (None, zk_side):
        return outcome(OUTAGE, f"the database front (in {t.db_dc}) is cut from the majority and the primary")
    if lb not in (None, zk_side):
        return outcome(OUTAGE, f"the load balancer (in {t.lb_dc}) is cut from the majority")
    return outcome(
        SURVIVES,
        f"{majority_sites} hold ZooKeeper's majority, whose nodes write through the front to Galera's "
        f"primary component ({primary_members})",
    )
