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

from lab.cluster.database import Database
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


@dataclass(frozen=True)
class SplitOutcome:
    """What a split of the lab's sites does to the service, and why."""

    outcome: str
    why: str
    zk_side: int | None  # index into the split's sides (one more for the sites no side names)
    galera_side: int | None


def split_outcome(t: Topology, sides: Sequence[Collection[str]]) -> SplitOutcome:
    """A split of sites (datacenters, the arbitrator's third site) with a Galera database: the
    service survives only on the side that holds both the ZooKeeper majority and Galera's primary
    component, with the database front there (or reachable from everywhere, `external`) and the
    load balancer there (or outside every datacenter). ZooKeeper's majority and Galera's primary
    on different sides: nodes with a quorum have no writable database and the nodes beside the
    database have no quorum, an outage."""
    sites = {dc for dc in t.datacenters} | {site for _, site in t.db.placement()}
    named = [set(s) for s in sides]
    rest = sites - set().union(*named) if named else set()
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
    if zk_side is None:
        return SplitOutcome(OUTAGE, "no side holds a ZooKeeper majority", zk_side, galera_side)
    if galera_side is None:
        return SplitOutcome(OUTAGE, "no side holds more than half of Galera's weight: no primary", zk_side, None)
    if galera_side != zk_side:
        return SplitOutcome(
            OUTAGE,
            f"ZooKeeper's majority ({', '.join(sorted(groups[zk_side]))}) and Galera's primary component "
            f"({', '.join(sorted(comp or ()))}) are on different sides",
            zk_side,
            galera_side,
        )
    if front not in (None, zk_side):
        return SplitOutcome(OUTAGE, f"the database front (in {t.db_dc}) is cut from the primary", zk_side, galera_side)
    if lb not in (None, zk_side):
        return SplitOutcome(OUTAGE, f"the load balancer (in {t.lb_dc}) is cut from the majority", zk_side, galera_side)
    return SplitOutcome(
        SURVIVES,
        f"{', '.join(sorted(groups[zk_side]))} hold ZooKeeper's majority and Galera's primary "
        f"({', '.join(sorted(comp or ()))})",
        zk_side,
        galera_side,
    )


def tolerated_member_failures(db: Database) -> int:
    """How many members can crash at once with a primary left: the arbitrator alive."""
    members = db.member_names
    for k in range(len(members) + 1):
        if primary_after(db, crashed=members[:k]) is None:
            return k - 1
    return len(members)
