"""What the live page shows, computed from the lab's status, its active faults and the load
balancer's counters: pure functions, so the picture can be checked without Docker.

A network or link fault becomes a cut between two sets of endpoints (nodes, `db`, `lb`), drawn
between them; a fault aimed at containers becomes a badge on each. The load's rates are the
differences of HAProxy's counters of the `api` frontend between two readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.cluster.topology import Topology
from lab.faults.spec import DB, LB, LINK_KINDS, NETWORK_KINDS, FaultSpec

OUTSIDE = "outside"  # where the database or the load balancer sits when in no datacenter


def endpoints(t: Topology) -> dict[str, str]:
    """Every endpoint of the picture and its datacenter (OUTSIDE for none)."""
    out = {n.name: n.dc for n in t.nodes}
    out[DB] = t.db_dc if t.db_dc in t.datacenters else OUTSIDE
    out[LB] = t.lb_dc if t.lb_dc in t.datacenters else OUTSIDE
    return out


def _members(t: Topology, names: Sequence[str]) -> list[str]:
    """A fault's side as endpoints: a datacenter stands for everything placed in it."""
    where = endpoints(t)
    out: list[str] = []
    for name in names:
        for e in [e for e, dc in where.items() if dc == name] if name in t.datacenters else [name]:
            if e not in out:
                out.append(e)
    return out


def cut_of(t: Topology, spec: FaultSpec) -> tuple[list[str], list[str]] | None:
    """The two sets of endpoints a network or link fault stands between; None for other kinds."""
    if spec.kind == "isolate":
        side = _members(t, spec.targets)
        return side, [e for e in endpoints(t) if e not in side]
    if spec.kind not in (*NETWORK_KINDS, *LINK_KINDS) or not spec.sides:
        return None
    first = _members(t, spec.sides[0])
    second = _members(t, spec.sides[1]) if len(spec.sides) > 1 else [e for e in endpoints(t) if e not in first]
    return first, second


def lab_view(t: Topology, status: Mapping[str, Any], faults: Sequence[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The page's model: datacenters with their endpoints, each node's state, the cuts and badges
    of the active faults."""
    where = endpoints(t)
    nodes = {n["name"]: n for n in status.get("nodes", ())}
    cuts: list[dict[str, Any]] = []
    badges: dict[str, list[str]] = {e: [] for e in where}
    shown = []
    for entry in faults:
        spec = FaultSpec.from_dict(entry["spec"])
        label = f"{entry['id']} {spec.describe()}"
        shown.append(
            {"id": entry["id"], "text": spec.describe(), "phase": entry.get("phase"), "age_s": round(now - entry["t0"])}
        )
        sides = cut_of(t, spec)
        if sides is not None:
            cuts.append(
                {
                    "id": entry["id"],
                    "kind": spec.kind,
                    "a": sides[0],
                    "b": sides[1],
                    "one_way": spec.one_way,
                    "label": label,
                }
            )
            continue
        for target in entry.get("targets") or spec.targets:
            if target in badges:
                badges[target].append(label)
    datacenters = [
        {"name": dc, "endpoints": [e for e, d in where.items() if d == dc]}
        for dc in (*t.datacenters, OUTSIDE)
        if any(d == dc for d in where.values())
    ]
    return {
        "lab": t.lab,
        "profile": t.profile,
        "size": t.size,
        "quorum": t.majority,
        "datacenters": datacenters,
        "nodes": {
            name: {
                "zk_mode": n.get("zk_mode"),
                "ha_state": n.get("ha_state"),
                "lb": n.get("lb"),
                "container": n.get("container"),
                "restarts": n.get("server_restarts"),
            }
            for name, n in nodes.items()
        },
        "db": {
            "answers": bool((status.get("db") or {}).get("answers")),
            "container": (status.get("db") or {}).get("container"),
        },
        "lb": {"container": (status.get("lb") or {}).get("container")},
        "cuts": cuts,
        "badges": {e: b for e, b in badges.items() if b},
        "faults": shown,
    }


@dataclass(frozen=True)
class LbCounters:
    at: float  # time.monotonic() of the reading
    requests: int  # requests the `api` frontend took
    errors: int  # of them answered 5xx, or refused as bad requests


def _count(row: Mapping[str, str], key: str) -> int:
    value = row.get(key) or "0"
    return int(value) if value.isdigit() else 0


def lb_counters(rows: Sequence[Mapping[str, str]], at: float) -> LbCounters | None:
    """The `api` frontend's counters from HAProxy's statistics rows; None without it."""
    for r in rows:
        if r.get("pxname") == "api" and r.get("svname") == "FRONTEND":
            return LbCounters(at, _count(r, "req_tot"), _count(r, "hrsp_5xx") + _count(r, "ereq"))
    return None


def load_rates(prev: LbCounters | None, cur: LbCounters | None) -> dict[str, float] | None:
    """Requests and errors a second between two readings; None until there are two (or after the
    load balancer restarted, when its counters began again)."""
    if prev is None or cur is None or cur.at <= prev.at or cur.requests < prev.requests:
        return None
    dt = cur.at - prev.at
    return {
        "requests_per_s": round((cur.requests - prev.requests) / dt, 1),
        "errors_per_s": round(max(0, cur.errors - prev.errors) / dt, 1),
    }
