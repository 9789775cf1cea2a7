"""The install guide's survivability claims as data (`scenarios/claims.yaml`) and the expected
outcome of every case, computed rather than written down.

A claim names the cluster sizes it is about and families of cases (host failures, datacenter
splits, a database outage). The expected outcome of a case follows from quorum arithmetic and the
database's placement only (`expect`): a node stays active when it is alive, can reach at least a
majority (N // 2 + 1) of the ZooKeeper members, all alive, and can reach the database. The guide's
own numbers (`tolerates`) are checked against the same arithmetic when the file is read.

A one-way cut counts as a cut: TCP needs packets both ways, so neither side can talk to the other.

Three things are kept apart for every case: what the guide says (`Claim.outcome`: its words turned
into survives or outage), what the lab's model predicts (`predict`: quorum arithmetic, the
database's placement and the node profile's timeouts, e.g. that a rancher-1.0 node cut off from the
quorum still answers `/ping` with pong and stays in the load balancer), and what is observed
(lab/chaos/matrix.py, against the declared `Objective`).

Gray failures (`gray:` in the file: a slow link, a stalled process, a starved CPU) are cases of no
claim: the guide says nothing of them and quorum arithmetic predicts nothing, so each is only
measured against the objective while its fault is held for its `hold`, and checked for safety.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.chaos import galera
from lab.cluster.database import GALERA, SINGLE
from lab.cluster.topology import Topology, majority, tolerance
from lab.core import paths
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.core.errors import BadInput
from lab.faults import CONTAINER_KINDS, DB, LB, ROLES, FaultSpec, cuts, make_spec, spec_from_yaml, validate
from lab.server.profiles import PROFILES, Profile

DEFAULT_CLAIMS = paths.SCENARIOS / "claims.yaml"
PICKS = ("roles", "every", "with-leader")
DIRECTIONS = ("both", "one-way")
HOST_MODES = ("kill", "stop", "pause")
SPLIT_LEADER = ("minority", "majority")  # where the ZooKeeper leader is put before a split
HOSTS_LEADER = ("inside", "outside")  # ... before a set of hosts fails: among them or not
SURVIVES, DEGRADED, OUTAGE = "survives", "degraded", "outage"
OUTCOMES = (SURVIVES, OUTAGE)  # what the guide can say of a case
DATABASES = (SINGLE, GALERA)


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
class Objective:
    """The declared service-level objective a case is measured against: from `after` seconds after
    the fault until the observation ends, at least `success` of the client's requests through the
    load balancer succeed ("survives"); when at most 1 - `success` of its writes do, it is an outage;
    anything between is "degraded"."""

    after: float = 8.0
    success: float = 0.99
    window: float = 2.0  # at least this much of the fault is measured after `after`


@dataclass(frozen=True)
class Family:
    """One entry of a claim's `cases`: host failures, datacenter splits or a database outage."""

    kind: str  # hosts | split | database | members
    hosts: int | str = 1  # a count, "tolerance" or "past-tolerance"; members: how many Galera members
    pick: str = "roles"
    modes: tuple[str, ...] = ("kill",)
    directions: tuple[str, ...] = DIRECTIONS
    leader: tuple[str, ...] = ()  # SPLIT_LEADER or HOSTS_LEADER placements; (): wherever it is


@dataclass(frozen=True)
class Claim:
    id: str
    says: str  # the guide's words
    sizes: tuple[int, ...]
    tolerates: int | None  # host failures the guide says the cluster survives
    families: tuple[Family, ...]
    outcome: str = SURVIVES  # what the guide's words say of every case of the claim
    databases: tuple[str, ...] = DATABASES  # the kinds of database (--db) the claim is about


@dataclass(frozen=True)
class Claims:
    guide: str
    bounds: Bounds
    claims: tuple[Claim, ...]
    objective: Objective = Objective()
    profile_bounds: tuple[tuple[str, Bounds], ...] = ()  # bounds that differ for a node profile
    gray: tuple[Case, ...] = ()  # cases of no claim, each held for its `hold`
    gray_sizes: tuple[int, ...] = ()

    def bounds_for(self, profile: str) -> Bounds:
        return dict(self.profile_bounds).get(profile, self.bounds)


@dataclass(frozen=True)
class Case:
    id: str  # e.g. kill-leader, kill-a1+b1, split-dc-a|dc-b, split-dc-a>dc-b, kill-db
    claims: tuple[str, ...]
    fault: FaultSpec  # targets may be roles (leader, follower), resolved when the case runs
    leader_on: frozenset[str] = frozenset()  # the leader is put on one of these first; empty: anywhere
    leader_where: str = ""  # e.g. "minority", "inside"
    hold: float = 0.0  # a gray case: seconds its fault is held (claims' cases: until decided)

    @property
    def gray(self) -> bool:
        return not self.claims


@dataclass(frozen=True)
class Expectation:
    active: frozenset[str]  # nodes that keep serving the load balancer's clients
    fenced: frozenset[str]  # alive and reachable by the LB, but without quorum or database: /ping 503
    failed: frozenset[str]  # nodes that are down (killed, stopped, paused)
    # alive, but a split cut them from the load balancer's datacenter (--lb-dc): their checks fail
    unreached: frozenset[str] = frozenset()

    @property
    def outcome(self) -> str:
        return SURVIVES if self.active else OUTAGE

    @property
    def out(self) -> frozenset[str]:
        return self.fenced | self.failed | self.unreached


# ------------------------------------------------------------------------------- expectation


def expect(t: Topology, faults: Sequence[FaultSpec]) -> Expectation:
    """What quorum arithmetic and the database's placement say about resolved faults held together.

    A node stays active when it is alive, the alive nodes it can reach form a group of at least a
    majority of the ensemble, it can reach the live database, and the load balancer (with its
    clients) can reach it."""
    down: set[str] = set()
    stopped: set[str] = set()  # down cleanly: a Galera member that stops says so (lab/chaos/galera.py)
    cut: set[frozenset[str]] = set()
    for f in faults:
        if f.kind == "flaky":
            raise BadInput(f"{f.describe()}: a flaky link has no expected outcome (packets are lost at random)")
        if f.kind in CONTAINER_KINDS:
            if f.kind != "restart":  # a restart is over before anything is observed
                down.update(x for x in f.targets if x != LB)
            if f.kind == "stop":
                stopped.update(f.targets)
        else:
            cut.update(frozenset((c.src, c.dst)) for c in cuts(f, t))
    # A Galera database takes writes when its front reaches a member of the primary component.
    writable = not t.db.galera or galera.front_reaches_primary(t.db, down - stopped, stopped & down, cut, DB)
    alive = [n for n in t.node_names if n not in down]
    linked = {n: {m for m in alive if m == n or frozenset((n, m)) not in cut} for n in alive}
    unreached = {n for n in alive if frozenset((n, LB)) in cut}
    active = set()
    for n in alive:
        # Every fault but flaky is a partition, and partitions held together refine into one: the
        # nodes n reaches all reach each other, so they can form a quorum when they are enough.
        group = linked[n]
        if len(group) >= majority(t.size) and writable and DB not in down and frozenset((n, DB)) not in cut:
            active.add(n)
    return Expectation(
        frozenset(active - unreached),
        frozenset(n for n in alive if n not in active and n not in unreached),
        frozenset(down & set(t.node_names)),
        frozenset(unreached),
    )


@dataclass(frozen=True)
class Prediction:
    """What the lab's model says a case does to the service, and why."""

    outcome: str  # survives | degraded | outage
    why: str
    expectation: Expectation


def predict(
    t: Topology, faults: Sequence[FaultSpec], profile: Profile, objective: Objective, leader_lost: bool
) -> Prediction:
    """Quorum arithmetic and the database (`expect`), then the profile's behaviour: whether nodes
    without quorum leave the load balancer (tuned: /ping 503) or stay in it (rancher-1.0: pong,
    writes fail with 500 or 409 until the lost session makes the server exit and restart, over
    and over), and how long losing the ZooKeeper leader blacks writes out (followers notice after
    syncLimit ticks, then elect) compared with the objective's `after`."""
    e = expect(t, faults)
    if not e.active and e.unreached:
        return Prediction(
            OUTAGE,
            f"the load balancer and its clients (in {t.lb_dc}) reach no node with a quorum and the database "
            f"({', '.join(sorted(e.unreached))} cut from them)",
            e,
        )
    if not e.active:
        return Prediction(OUTAGE, "no node has a quorum and the database: writes fail everywhere", e)
    if e.fenced and not profile.ping_gate:
        return Prediction(
            DEGRADED,
            f"{', '.join(sorted(e.fenced))} without quorum or database still "
            f"answer /ping with pong and stay in the load balancer",
            e,
        )
    if leader_lost:
        blackout = profile.zk_sync_limit * profile.zk_tick_ms / 1000
        if blackout >= objective.after:
            return Prediction(
                DEGRADED,
                f"the leader is lost: followers notice after syncLimit {profile.zk_sync_limit}"
                f" x tickTime {profile.zk_tick_ms} ms = {blackout:g} s, past the objective's "
                f"{objective.after:g} s",
                e,
            )
    return Prediction(SURVIVES, f"{', '.join(sorted(e.active))} keep a quorum and the database", e)


def hypothetical(t: Topology, f: FaultSpec) -> FaultSpec:
    """Roles replaced by nodes in order (leader = the first) for a plan: outcomes do not depend on
    which node holds which role, only the names of the active nodes do."""
    chosen: list[str] = []
    for x in f.targets:
        if x in ROLES:
            free = [n for n in t.node_names if n not in chosen]
            if not free:
                raise BadInput(f"{f.describe()}: more targets than the {t.size} node(s)")
            x = free[0]
        chosen.append(x)
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


def predicted_text(t: Topology, case: Case, objective: Objective) -> str:
    """The model's prediction for a plan (`halab matrix --dry-run`): roles stand for nodes in
    order, and the leader is where the case puts it (a case that does not place it: anywhere but
    among the failing hosts)."""
    try:
        spec = hypothetical(t, case.fault)
        e = expect(t, [spec])
    except BadInput:
        return "not predictable"
    leader = min(case.leader_on) if case.leader_on else spec.targets[0] if "leader" in case.fault.targets else None
    lost = leader is not None and (leader in spec.targets or leader not in e.active)
    p = predict(t, [spec], t.node_profile, objective, lost)
    return f"{p.outcome} ({p.why})"


# ------------------------------------------------------------------------------------- cases


def cases(claims: Claims, t: Topology) -> list[Case]:
    """Every case the claims ask for on this topology, each once (with every claim it serves)."""
    found: dict[str, Case] = {}
    for claim in claims.claims:
        if t.size not in claim.sizes or t.db.kind not in claim.databases:
            continue
        for family in claim.families:
            for case in _family_cases(family, t):
                prev = found.get(case.id)
                found[case.id] = replace(case, claims=(prev.claims if prev else ()) + (claim.id,))
    return list(found.values())


def gray_cases(claims: Claims, t: Topology) -> list[Case]:
    """The gray cases for this topology; BadInput naming the case when its fault does not fit it
    (e.g. datacenters by other names)."""
    if t.size not in claims.gray_sizes:
        return []
    for case in claims.gray:
        validate(case.fault, t, f"claims gray case {case.id}")
    return list(claims.gray)


def host_count(hosts: int | str, size: int) -> int:
    if hosts == "tolerance":
        return tolerance(size)
    if hosts == "past-tolerance":
        return tolerance(size) + 1
    assert isinstance(hosts, int)
    return hosts


def _family_cases(f: Family, t: Topology) -> list[Case]:
    out: list[Case] = []
    if f.kind == "hosts":
        k = host_count(f.hosts, t.size)
        if not 1 <= k <= t.size:
            return []
        if f.pick == "roles":
            sets: list[tuple[str, ...]] = [("leader",), *([("follower",)] if t.size > 1 else [])]
        elif f.pick == "every":
            sets = list(itertools.combinations(t.node_names, k))
        else:
            sets = [("leader",) + ("follower",) * (k - 1)]
        for mode in f.modes:
            for s in sets:
                case = Case(f"{mode}-{_label(s)}", (), make_spec(mode, s))
                if not f.leader or any(x in ROLES for x in s):
                    out.append(case)
                    continue
                for where in f.leader:
                    on = set(s) if where == "inside" else set(t.node_names) - set(s)
                    if on:
                        out.append(
                            replace(case, id=f"{case.id}@leader-{where}", leader_on=frozenset(on), leader_where=where)
                        )
    elif f.kind == "database":
        out += [Case(f"{mode}-db", (), make_spec(mode, [DB])) for mode in f.modes]
    elif f.kind == "members":
        assert isinstance(f.hosts, int)
        for mode in f.modes:
            for members in itertools.combinations(t.db.member_names, f.hosts):
                out.append(Case(f"{mode}-{'+'.join(members)}", (), make_spec(mode, members)))
    else:
        # Sites: with a Galera arbitrator at a third site, the splits that put it on each side too.
        for left in _bipartitions(t.sites):
            right = tuple(dc for dc in t.sites if dc not in left)
            a, b = ",".join(left), ",".join(right)
            variants = []
            if "both" in f.directions:
                variants.append((f"split-{a}|{b}", make_spec("split", sides=[left, right])))
            if "one-way" in f.directions:
                variants.append((f"split-{a}>{b}", make_spec("split", sides=[left, right], one_way=True)))
                variants.append((f"split-{b}>{a}", make_spec("split", sides=[right, left], one_way=True)))
            sides = {
                "left": {n.name for n in t.nodes if n.dc in left},
                "right": {n.name for n in t.nodes if n.dc not in left},
            }
            major = "left" if len(sides["left"]) > len(sides["right"]) else "right"
            places = {"majority": sides[major], "minority": sides["right" if major == "left" else "left"]}
            for case_id, spec in variants:
                if not f.leader:
                    out.append(Case(case_id, (), spec))
                for where in f.leader:
                    if places[where]:
                        out.append(Case(f"{case_id}@leader-{where}", (), spec, frozenset(places[where]), where))
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
    doc = y.mapping(
        y.load(path), root, required=("guide", "claims"), optional=("bounds", "objective", "profiles", "gray")
    )
    bounds = _bounds(doc.get("bounds") or {}, y.sub(root, "bounds"), Bounds())
    where_obj = y.sub(root, "objective")
    obj_doc = y.mapping(doc.get("objective") or {}, where_obj, optional=Objective.__dataclass_fields__)
    objective = Objective(**{k: y.number(v, y.sub(where_obj, k), minimum=0.0) for k, v in obj_doc.items()})
    if not 0.5 <= objective.success < 1:
        raise BadInput(
            f"{y.sub(where_obj, 'success')}: {objective.success:g} is not a share between 0.5 and 1 (e.g. 0.99)"
        )
    where_prof = y.sub(root, "profiles")
    prof_doc = y.mapping(doc.get("profiles") or {}, where_prof, optional=PROFILES)
    profile_bounds = tuple(
        (
            name,
            _bounds(
                y.mapping(v, y.sub(where_prof, name), optional=("bounds",)).get("bounds") or {},
                y.sub(y.sub(where_prof, name), "bounds"),
                bounds,
            ),
        )
        for name, v in prof_doc.items()
    )
    claims = []
    seen: set[str] = set()
    where_claims = y.sub(root, "claims")
    for i, raw in enumerate(y.sequence(doc["claims"], where_claims)):
        where = y.sub(where_claims, i)
        c = y.mapping(
            raw, where, required=("id", "says", "outcome", "sizes", "cases"), optional=("tolerates", "databases")
        )
        cid = y.string(c["id"], y.sub(where, "id"))
        if cid in seen:
            raise BadInput(f"{y.sub(where, 'id')}: {cid!r} is used twice")
        seen.add(cid)
        sizes = _sizes(c["sizes"], y.sub(where, "sizes"))
        tolerates = None
        if "tolerates" in c:
            tolerates = y.integer(c["tolerates"], y.sub(where, "tolerates"), minimum=0)
            for s in sizes:
                if tolerance(s) != tolerates:
                    raise BadInput(
                        f"{y.sub(where, 'tolerates')}: the claim says {s} nodes survive {tolerates} host "
                        f"failure(s), but a ZooKeeper quorum of {majority(s)} of {s} survives {tolerance(s)}"
                    )
        families = tuple(
            _family(f, y.sub(y.sub(where, "cases"), j))
            for j, f in enumerate(y.sequence(c["cases"], y.sub(where, "cases")))
        )
        outcome = y.choice(c["outcome"], y.sub(where, "outcome"), OUTCOMES)
        databases = _modes(c["databases"], y.sub(where, "databases"), DATABASES) if "databases" in c else DATABASES
        if any(f.kind == "members" for f in families) and SINGLE in databases:
            raise BadInput(f"{y.sub(where, 'databases')}: cases of Galera members need databases: [{GALERA}]")
        claims.append(
            Claim(cid, y.string(c["says"], y.sub(where, "says")), sizes, tolerates, families, outcome, databases)
        )
    gray_sizes, gray = _gray(doc["gray"], y.sub(root, "gray")) if "gray" in doc else ((), ())
    return Claims(
        y.string(doc["guide"], y.sub(root, "guide")),
        bounds,
        tuple(claims),
        objective,
        profile_bounds,
        gray,
        gray_sizes,
    )


def _sizes(raw: Any, where: str) -> tuple[int, ...]:
    sizes = tuple(y.integer(s, y.sub(where, j)) for j, s in enumerate(y.sequence(raw, where)))
    for j, s in enumerate(sizes):
        if s not in (1, 3, 5):
            raise BadInput(f"{y.sub(where, j)}: {s} is not a supported cluster size (1, 3, 5)")
    return sizes


def _gray(raw: Any, where: str) -> tuple[tuple[int, ...], tuple[Case, ...]]:
    d = y.mapping(raw, where, required=("sizes", "cases"))
    out: list[Case] = []
    for j, c in enumerate(y.sequence(d["cases"], y.sub(where, "cases"))):
        at = y.sub(y.sub(where, "cases"), j)
        cd = y.mapping(c, at, required=("id", "fault", "hold"))
        cid = y.string(cd["id"], y.sub(at, "id"))
        if any(x.id == cid for x in out):
            raise BadInput(f"{y.sub(at, 'id')}: {cid!r} is used twice")
        spec = spec_from_yaml(cd["fault"], y.sub(at, "fault"))
        out.append(Case(cid, (), spec, hold=parse_duration(cd["hold"], y.sub(at, "hold"), positive=True)))
    return _sizes(d["sizes"], y.sub(where, "sizes")), tuple(out)


def _bounds(raw: Any, where: str, base: Bounds) -> Bounds:
    d = y.mapping(raw, where, optional=Bounds.__dataclass_fields__)
    return replace(base, **{k: y.number(v, y.sub(where, k), minimum=0.1) for k, v in d.items()})


def _family(raw: Any, where: str) -> Family:
    kinds = [k for k in ("hosts", "split", "database", "members") if isinstance(raw, dict) and k in raw]
    if len(kinds) != 1:
        raise BadInput(f"{where}: a case family has exactly one of hosts, split, database, members")
    kind = kinds[0]
    if kind == "hosts":
        d = y.mapping(raw, where, required=("hosts",), optional=("pick", "modes", "leader"))
        hosts = d["hosts"]
        if hosts not in ("tolerance", "past-tolerance"):
            hosts = y.integer(hosts, y.sub(where, "hosts"), minimum=1, maximum=5)
        pick = y.choice(d.get("pick", "roles"), y.sub(where, "pick"), PICKS)
        if pick == "roles" and hosts != 1:
            raise BadInput(
                f"{y.sub(where, 'pick')}: roles (leader, then a follower) picks one host; "
                f"use every or with-leader for {hosts}"
            )
        modes = _modes(d.get("modes", ["kill"]), y.sub(where, "modes"), HOST_MODES)
        leader = _modes(d["leader"], y.sub(where, "leader"), HOSTS_LEADER) if "leader" in d else ()
        if leader and pick != "every":
            raise BadInput(
                f"{y.sub(where, 'leader')}: leader placement goes with pick: every (roles and "
                f"with-leader name the leader already)"
            )
        return Family("hosts", hosts, pick, modes, leader=leader)
    if kind == "members":
        d = y.mapping(raw, where, required=("members",), optional=("modes",))
        members = y.integer(d["members"], y.sub(where, "members"), minimum=1, maximum=5)
        return Family("members", members, "every", _modes(d.get("modes", ["kill"]), y.sub(where, "modes"), HOST_MODES))
    if kind == "database":
        d = y.mapping(raw, where, required=("database",))
        return Family("database", modes=_modes(d["database"], y.sub(where, "database"), HOST_MODES))
    d = y.mapping(raw, where, required=("split",), optional=("directions", "leader"))
    y.choice(d["split"], y.sub(where, "split"), ("every",))
    directions = _modes(d.get("directions", list(DIRECTIONS)), y.sub(where, "directions"), DIRECTIONS)
    leader = _modes(d["leader"], y.sub(where, "leader"), SPLIT_LEADER) if "leader" in d else ()
    return Family("split", directions=directions, leader=leader)


def _modes(value: Any, where: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    out = y.strings(value, where)
    for i, m in enumerate(out):
        y.choice(m, y.sub(where, i), allowed)
    return out
