"""The pure network model: which packets a fault drops (`cuts`), the iptables rules that drop them
computed from the containers' addresses, and the connections that show it. No Docker here."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from lab.cluster.docker import ContainerState
from lab.cluster.topology import EXTERNAL_DB, OUTSIDE_LB, Topology
from lab.faults.spec import DB, LB, LINK_KINDS, FaultSpec


@dataclass(frozen=True)
class Cut:
    """Packets from `src` to `dst` (node names or `db`) dropped with `probability`."""

    src: str
    dst: str
    probability: float = 1.0


def groups(spec: FaultSpec, t: Topology) -> tuple[frozenset[str], ...]:
    """The sides of a network fault as sets of endpoints (nodes, maybe `db` and `lb`). An endpoint in
    no group is cut from nobody: the database when it is external or not named, the load balancer
    unless a split cuts the datacenter it was placed in from the others."""
    if spec.kind == "isolate":
        (node,) = spec.targets
        return frozenset({node}), frozenset(n for n in (*t.node_names, DB) if n != node)
    if spec.kind in LINK_KINDS:  # two sides named, or one and the rest
        names = {n for side in spec.sides for n in side}
        if names <= set(t.datacenters):
            return _datacenter_groups(t, spec.sides, rest=len(spec.sides) == 1)
        named = [frozenset(side) for side in spec.sides]
        rest = frozenset(n for n in t.node_names if n not in names)
        return tuple(named + ([rest] if rest and len(named) == 1 else []))
    if spec.kind == "split":
        return _datacenter_groups(t, spec.sides, rest=True)
    if spec.kind in ("partition", "flaky"):
        named = [frozenset(s) for s in spec.sides]
        rest = frozenset(n for n in t.node_names if not any(n in s for s in named))
        return tuple(named + ([rest] if rest and spec.kind == "partition" else []))
    raise ValueError(f"{spec.kind} is not a fault between sides")


def _datacenter_groups(t: Topology, sides: Sequence[Sequence[str]], *, rest: bool) -> tuple[frozenset[str], ...]:
    """Each side's nodes, with the database (a Galera database: its front, members and arbitrator)
    and the load balancer where they were placed; the sites (datacenters, an arbitrator's third
    site) not named form one more side when `rest` (no side named: each its own)."""
    named_dcs = [set(s) for s in sides] or [{dc} for dc in t.sites]
    other_dcs = {dc for dc in t.sites if not any(dc in s for s in named_dcs)}
    out: list[frozenset[str]] = []
    for dcs in named_dcs + ([other_dcs] if other_dcs and rest else []):
        members = {n.name for n in t.nodes if n.dc in dcs}
        members.update(voter for voter, site in t.db.placement() if site in dcs)
        if t.db_dc != EXTERNAL_DB and t.db_dc in dcs:
            members.add(DB)
        if t.lb_dc != OUTSIDE_LB and t.lb_dc in dcs:
            members.add(LB)
        out.append(frozenset(members))
    return tuple(out)


def cuts(spec: FaultSpec, t: Topology) -> tuple[Cut, ...]:
    """Every directed (src, dst) pair whose packets the fault drops."""
    probability = (spec.loss or 100.0) / 100.0 if spec.kind == "flaky" else 1.0
    gs = groups(spec, t)
    out: list[Cut] = []
    for i, a in enumerate(gs):
        for j, b in enumerate(gs):
            if i == j or (spec.one_way and i != 0):
                continue
            out.extend(Cut(s, d, probability) for s in sorted(a) for d in sorted(b))
    return tuple(out)


def rule_tag(lab: str, fault_id: str) -> str:
    return f"halab:{lab}:{fault_id}"


def rules(
    cut_list: Iterable[Cut], ips: Mapping[str, Sequence[str]], tag: str, live: Collection[str]
) -> dict[str, list[list[str]]]:
    """node -> iptables argument lists. A cut's rule sits in its source's OUTPUT chain, or in its
    destination's INPUT chain when the source cannot hold one: the database (no NET_ADMIN) or a
    node that is down or frozen. `live`: the nodes that can take rules now."""
    out: dict[str, list[list[str]]] = {}
    for c in cut_list:
        if c.src in live:
            at, chain, flag, peer = c.src, "OUTPUT", "-d", c.dst
        elif c.dst in live:
            at, chain, flag, peer = c.dst, "INPUT", "-s", c.src
        else:
            continue
        chance = (
            []
            if c.probability >= 1.0
            else ["-m", "statistic", "--mode", "random", "--probability", f"{c.probability:.4f}"]
        )
        for ip in ips[peer]:
            out.setdefault(at, []).append(
                ["-I", chain, flag, ip, *chance, "-m", "comment", "--comment", tag, "-j", "DROP"]
            )
    return out


def check_paths(cut_list: Iterable[Cut], live: Collection[str]) -> list[tuple[str, str]]:
    """(from node, to endpoint) connections that show each cut, from the end that holds its rule:
    from the source, or from the destination towards the source (a dropped SYN-ACK fails the
    handshake just the same)."""
    out = []
    for c in cut_list:
        pair = (c.src, c.dst) if c.src in live else (c.dst, c.src) if c.dst in live else None
        if pair and pair not in out:
            out.append(pair)
    return out


def attempts_for(probability: float) -> int:
    """Connects needed so that at least one is dropped with probability 1 - 1e-4."""
    if probability >= 1.0:
        return 1
    return min(1000, math.ceil(math.log(1e-4) / math.log(1.0 - probability)))


def addresses(t: Topology, found: Mapping[str, ContainerState]) -> dict[str, dict[str, str]]:
    """service -> {network (without the project prefix): IP}."""
    prefix = f"{t.lab}_"
    return {s: {net.removeprefix(prefix): ip for net, ip in c.addresses.items()} for s, c in found.items()}


def path_ip(dst: str, ips: Mapping[str, Mapping[str, str]], src_dc: str | None) -> str | None:
    """The address a node (in datacenter `src_dc`) uses for `dst`: the database (and a Galera
    database's members, which are on no peer mesh) on `db`, the load balancer on the node's
    datacenter network, a peer on the `interdc` mesh. A Galera member or arbitrator (`src_dc`
    None) reaches whatever it reaches on `db`."""
    theirs = ips.get(dst, {})
    if src_dc is None or dst == DB or ("interdc" not in theirs and dst != LB):
        return theirs.get("db")
    return theirs.get(src_dc if dst == LB else "interdc")


def rule_holders(t: Topology) -> tuple[str, ...]:
    """The containers that take a network fault's rules in their own namespace: the nodes, and a
    Galera database's members and arbitrator (NET_ADMIN in their bounding set, iptables in their
    image), so that a split cuts the members apart with their sites."""
    return (*t.node_names, *(voter for voter, _ in t.db.placement()))


def source_dc(t: Topology, holder: str) -> str | None:
    """What path_ip needs of a rule holder: a node's datacenter, None for a Galera voter."""
    return t.node(holder).dc if holder in t.node_names else None


def is_up(c: ContainerState | None) -> TypeGuard[ContainerState]:
    return c is not None and c.up


def state_word(c: ContainerState | None) -> str:
    return c.word if c else "absent"


def rule_basis(
    found: Mapping[str, ContainerState], ips: Mapping[str, Mapping[str, str]], endpoints: Iterable[str]
) -> dict[str, list[Any]]:
    """What a fault's rules depend on, per endpoint: when its container started (each start brings
    a fresh network namespace), whether it can hold rules, its addresses. Lists: it is compared
    with the copy kept in the registry's JSON."""
    states = {e: found.get(e) for e in endpoints}
    return {e: [c.started_at if c else None, is_up(c), sorted(ips.get(e, {}).values())] for e, c in states.items()}
