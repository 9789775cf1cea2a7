"""What the live page shows, computed from the lab's status, its active faults and the load
balancer's counters: pure functions, so the picture can be checked without Docker.

A network or link fault becomes the links it cuts or slows (between nodes, `db`, `lb`), drawn on
the lab's links; a fault aimed at containers becomes a badge on each. The load's rates are the
differences of HAProxy's counters of the `api` frontend between two readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.cluster.topology import Topology
from lab.faults.netmodel import cuts
from lab.faults.spec import DB, HELD_KINDS, LB, FaultSpec

OUTSIDE = "outside"  # where the database or the load balancer sits when in no datacenter


def endpoints(t: Topology) -> dict[str, str]:
    """Every endpoint of the picture and its datacenter (OUTSIDE for none)."""
    out = {n.name: n.dc for n in t.nodes}
    out[DB] = t.db_dc if t.db_dc in t.datacenters else OUTSIDE
    out[LB] = t.lb_dc if t.lb_dc in t.datacenters else OUTSIDE
    return out


def cut_links(t: Topology, spec: FaultSpec) -> list[dict[str, Any]] | None:
    """The links a network fault cuts or a link fault slows, each once: `netmodel.cuts`, the pairs
    the injector itself drops or shapes, with `one_way` when only the packets from `a` to `b` are
    dropped. None for the kinds aimed at containers."""
    if spec.kind not in HELD_KINDS:
        return None
    directed = [(c.src, c.dst) for c in cuts(spec, t)]
    pairs = set(directed)
    return [{"a": a, "b": b, "one_way": (b, a) not in pairs} for a, b in directed if (b, a) not in pairs or a < b]


def lab_view(t: Topology, status: Mapping[str, Any], faults: Sequence[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The page's model: datacenters with their endpoints, each node's state, the cuts and badges
    of the active faults."""
    where = endpoints(t)
    nodes = {n["name"]: n for n in status.get("nodes", ())}
    cut_list: list[dict[str, Any]] = []
    badges: dict[str, list[str]] = {e: [] for e in where}
    shown = []
    for entry in faults:
        spec = FaultSpec.from_dict(entry["spec"])
        label = f"{entry['id']} {spec.describe()}"
        shown.append(
            {"id": entry["id"], "text": spec.describe(), "phase": entry.get("phase"), "age_s": round(now - entry["t0"])}
        )
        links = cut_links(t, spec)
        if links is not None:
            cut_list.append({"id": entry["id"], "kind": spec.kind, "links": links, "label": label})
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
        "cuts": cut_list,
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
