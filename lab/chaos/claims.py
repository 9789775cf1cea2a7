"""The install guide's survivability claims as data (`scenarios/claims.yaml`) and the expected
outcome of every case, computed rather than written down.

A claim names the cluster sizes it is about and families of cases (host failures, datacenter
splits, a database outage). The expected outcome of a case follows from quorum arithmetic and the
database's placement only (`expect`): a node stays active when it is alive, can reach at least a
majority (N // 2 + 1) of the ZooKeeper members, all alive, and can reach the database. The guide's
own numbers (`tolerates`) are checked against the same arithmetic when the file is read.

A one-way cut counts as a cut: TCP needs packets both ways, so neither side can talk to the other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from lab.core import paths
from lab.core import yamlspec as y
from lab.core.errors import BadInput
from lab.faults import CONTAINER_KINDS, DB, LB, ROLES, FaultSpec, cuts, make_spec
from lab.cluster.topology import Topology, majority, tolerance

DEFAULT_CLAIMS = paths.SCENARIOS / "claims.yaml"
PICKS = ("roles", "every", "with-leader")
DIRECTIONS = ("both", "one-way")
HOST_MODES = ("kill", "stop", "pause")
SURVIVES, OUTAGE = "survives", "outage"


@dataclass(frozen=True)
class Bounds:
    """The observable definition of "survives", in seconds (see docs/survivability.md)."""

    settle: float = 4.0  # observe at least this long after the fault before deciding
    stable: float = 1.0  # writes through the LB all succeed this long: service is back
    outage: float = 2.0  # writes through the LB all fail this long (once every node is out): an outage
    fence: float = 10.0  # a failed or cut-off node is drained by the load balancer within this
    decide: float = 20.0  # what the lab shows this long after the fault is the observation
    heal: float = 60.0  # after heal, every node active and writes succeeding within this


@dataclass(frozen=True)
class Family:
    """One entry of a claim's `cases`: host failures, datacenter splits or a database outage."""

    kind: str  # hosts | split | database
    hosts: int | str = 1  # a count, "tolerance" or "past-tolerance"
    pick: str = "roles"
    modes: tuple[str, ...] = ("kill",)
    directions: tuple[str, ...] = DIRECTIONS


@dataclass(frozen=True)
class Claim:
    id: str
    says: str  # the guide's words
    sizes: tuple[int, ...]
    tolerates: int | None  # host failures the guide says the cluster survives
    families: tuple[Family, ...]


@dataclass(frozen=True)
class Claims:
    guide: str
    bounds: Bounds
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class Case:
    id: str  # e.g. kill-leader, kill-a1+b1, split-dc-a|dc-b, split-dc-a>dc-b, kill-db
    claims: tuple[str, ...]
    fault: FaultSpec  # targets may be roles (leader, follower), resolved when the case runs


@dataclass(frozen=True)
class Expectation:
    active: frozenset[str]  # nodes that keep serving
    fenced: frozenset[str]  # alive and reachable by the LB, but without quorum or database: /ping 503
    failed: frozenset[str]  # nodes that are down (killed, stopped, paused)

    @property
    def outcome(self) -> str:
        return SURVIVES if self.active else OUTAGE

    @property
    def out(self) -> frozenset[str]:
        return self.fenced | self.failed


# ------------------------------------------------------------------------------- expectation

def expect(t: Topology, faults: Sequence[FaultSpec]) -> Expectation:
    """What quorum arithmetic and the database's placement say about resolved faults held together.

    A node stays active when it is alive, the alive nodes it can reach form a group of at least a
    majority of the ensemble, and it can reach the live database."""
    down: set[str] = set()
    cut: set[frozenset[str]] = set()
    for f in faults:
        if f.kind == "flaky":
            raise BadInput(f"{f.describe()}: a flaky link has no expected outcome (packets are lost at random)")
        if f.kind in CONTAINER_KINDS:
            if f.kind != "restart":  # a restart is over before anything is observed
                down.update(x for x in f.targets if x != LB)
        else:
            cut.update(frozenset((c.src, c.dst)) for c in cuts(f, t))
    alive = [n for n in t.node_names if n not in down]
    linked = {n: {m for m in alive if m == n or frozenset((n, m)) not in cut} for n in alive}
    active = set()
    for n in alive:
        # Every fault but flaky is a partition, and partitions held together refine into one: the
        # nodes n reaches all reach each other, so they can form a quorum when they are enough.
        group = linked[n]
        if len(group) >= majority(t.size) and DB not in down and frozenset((n, DB)) not in cut:
            active.add(n)
    return Expectation(frozenset(active), frozenset(n for n in alive if n not in active),
                       frozenset(down & set(t.node_names)))


def hypothetical(t: Topology, f: FaultSpec) -> FaultSpec:
    """Roles replaced by nodes in order (leader = the first) for a plan: outcomes do not depend on
    which node holds which role, only the names of the active nodes do."""
    chosen: list[str] = []
    for x in f.targets:
        chosen.append(next(n for n in t.node_names if n not in chosen) if x in ROLES else x)
    return replace(f, targets=tuple(chosen))


def expected_text(t: Topology, faults: Sequence[FaultSpec]) -> str:
    """A line for plans and journals: the outcome and who stays active."""
    try:
        e = expect(t, [hypothetical(t, f) for f in faults])
    except BadInput:
        return "not predictable"
    if any(x in ROLES for f in faults for x in f.targets):
        return f"{e.outcome} ({len(e.active)} of {t.size} nodes active)"
    return f"{e.outcome} (active: {', '.join(sorted(e.active)) or 'none'})"


# ------------------------------------------------------------------------------------- cases

def cases(claims: Claims, t: Topology) -> list[Case]:
    """Every case the claims ask for on this topology, each once (with every claim it serves)."""
    found: dict[str, Case] = {}
    for claim in claims.claims:
        if t.size not in claim.sizes:
            continue
        for family in claim.families:
            for case_id, spec in _family_cases(family, t):
                prev = found.get(case_id)
                found[case_id] = Case(case_id, (prev.claims if prev else ()) + (claim.id,), spec)
    return list(found.values())


def host_count(hosts: int | str, size: int) -> int:
    if hosts == "tolerance":
        return tolerance(size)
    if hosts == "past-tolerance":
        return tolerance(size) + 1
    assert isinstance(hosts, int)
    return hosts


def _family_cases(f: Family, t: Topology) -> list[tuple[str, FaultSpec]]:
    out: list[tuple[str, FaultSpec]] = []
    if f.kind == "hosts":
        k = host_count(f.hosts, t.size)
        if not 1 <= k <= t.size:
            return []
        if f.pick == "roles":
            sets: list[tuple[str, ...]] = [("leader",)] + ([("follower",)] if t.size > 1 else [])
        elif f.pick == "every":
            sets = list(itertools.combinations(t.node_names, k))
        else:
            sets = [("leader",) + ("follower",) * (k - 1)]
        for mode in f.modes:
            out += [(f"{mode}-{_label(s)}", make_spec(mode, s)) for s in sets]
    elif f.kind == "database":
        out += [(f"{mode}-db", make_spec(mode, [DB])) for mode in f.modes]
    else:
        for left in _bipartitions(t.datacenters):
            right = tuple(dc for dc in t.datacenters if dc not in left)
            a, b = ",".join(left), ",".join(right)
            if "both" in f.directions:
                out.append((f"split-{a}|{b}", make_spec("split", sides=[left, right])))
            if "one-way" in f.directions:
                out.append((f"split-{a}>{b}", make_spec("split", sides=[left, right], one_way=True)))
                out.append((f"split-{b}>{a}", make_spec("split", sides=[right, left], one_way=True)))
    return out


def _label(targets: tuple[str, ...]) -> str:
    """kill-leader, kill-a1+b2, kill-leader+2-followers."""
    followers = targets.count("follower")
    named = [x for x in targets if x != "follower"]
    if followers > 1:
        named.append(f"{followers}-followers")
    elif followers:
        named.append("follower")
    return "+".join(named)


def _bipartitions(dcs: tuple[str, ...]) -> list[tuple[str, ...]]:
    """One side of every way to cut the datacenters in two (the side holding the first one)."""
    if len(dcs) < 2:
        return []
    first, rest = dcs[0], dcs[1:]
    out = []
    for r in range(len(rest)):
        for extra in itertools.combinations(rest, r):
            out.append((first, *extra))
    return out


# -------------------------------------------------------------------------------------- load

def load(path: str | Path = DEFAULT_CLAIMS) -> Claims:
    root = y.at(path)
    doc = y.mapping(y.load(path), root, required=("guide", "claims"), optional=("bounds",))
    bounds_doc = y.mapping(doc.get("bounds") or {}, y.sub(root, "bounds"), optional=Bounds.__dataclass_fields__)
    bounds = Bounds(**{k: y.number(v, y.sub(y.sub(root, "bounds"), k), minimum=0.1) for k, v in bounds_doc.items()})
    claims = []
    seen: set[str] = set()
    where_claims = y.sub(root, "claims")
    for i, raw in enumerate(y.sequence(doc["claims"], where_claims)):
        where = y.sub(where_claims, i)
        c = y.mapping(raw, where, required=("id", "says", "sizes", "cases"), optional=("tolerates",))
        cid = y.string(c["id"], y.sub(where, "id"))
        if cid in seen:
            raise BadInput(f"{y.sub(where, 'id')}: {cid!r} is used twice")
        seen.add(cid)
        sizes = tuple(y.integer(s, y.sub(y.sub(where, "sizes"), j)) for j, s in
                      enumerate(y.sequence(c["sizes"], y.sub(where, "sizes"))))
        for j, s in enumerate(sizes):
            if s not in (1, 3, 5):
                raise BadInput(f"{y.sub(y.sub(where, 'sizes'), j)}: {s} is not a supported cluster size (1, 3, 5)")
        tolerates = None
        if "tolerates" in c:
            tolerates = y.integer(c["tolerates"], y.sub(where, "tolerates"), minimum=0)
            for s in sizes:
                if tolerance(s) != tolerates:
                    raise BadInput(
                        f"{y.sub(where, 'tolerates')}: the claim says {s} nodes survive {tolerates} host "
                        f"failure(s), but a ZooKeeper quorum of {majority(s)} of {s} survives {tolerance(s)}")
        families = tuple(_family(f, y.sub(y.sub(where, "cases"), j))
                         for j, f in enumerate(y.sequence(c["cases"], y.sub(where, "cases"))))
        claims.append(Claim(cid, y.string(c["says"], y.sub(where, "says")), sizes, tolerates, families))
    return Claims(y.string(doc["guide"], y.sub(root, "guide")), bounds, tuple(claims))


def _family(raw: Any, where: str) -> Family:
    kinds = [k for k in ("hosts", "split", "database") if isinstance(raw, dict) and k in raw]
    if len(kinds) != 1:
        raise BadInput(f"{where}: a case family has exactly one of hosts, split, database")
    kind = kinds[0]
    if kind == "hosts":
        d = y.mapping(raw, where, required=("hosts",), optional=("pick", "modes"))
        hosts = d["hosts"]
        if hosts not in ("tolerance", "past-tolerance"):
            hosts = y.integer(hosts, y.sub(where, "hosts"), minimum=1, maximum=5)
        pick = y.choice(d.get("pick", "roles"), y.sub(where, "pick"), PICKS)
        if pick == "roles" and hosts != 1:
            raise BadInput(f"{y.sub(where, 'pick')}: roles (leader, then a follower) picks one host; "
                           f"use every or with-leader for {hosts}")
        modes = _modes(d.get("modes", ["kill"]), y.sub(where, "modes"), HOST_MODES)
        return Family("hosts", hosts, pick, modes)
    if kind == "database":
        d = y.mapping(raw, where, required=("database",))
        return Family("database", modes=_modes(d["database"], y.sub(where, "database"), HOST_MODES))
    d = y.mapping(raw, where, required=("split",), optional=("directions",))
    y.choice(d["split"], y.sub(where, "split"), ("every",))
    directions = _modes(d.get("directions", list(DIRECTIONS)), y.sub(where, "directions"), DIRECTIONS)
    return Family("split", directions=directions)


def _modes(value: Any, where: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    out = y.strings(value, where)
    for i, m in enumerate(out):
        y.choice(m, y.sub(where, i), allowed)
    return out
