"""What the harness observes, all through the load balancer on 127.0.0.1 (docs/architecture.md):
HAProxy's stats, each node's /ping and /status.json via `/node/<name>/...`, and the database via
`docker exec db labsql` (a Galera database: in a member). Every probe is bounded by a short
timeout and never raises for a down target: a down target is an observation."""

from __future__ import annotations

import csv
import http.client
import io
import json
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from lab.cluster import docker, engine
from lab.cluster.topology import Topology
from lab.core.errors import LabError, RuntimeFailure

PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class HttpResult:
    status: int | None  # None: no answer (refused, reset, timed out)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    elapsed: float = 0.0


def http_get(host: str, port: int, path: str, timeout: float = PROBE_TIMEOUT) -> HttpResult:
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return HttpResult(
            resp.status, body, {k.lower(): v for k, v in resp.getheaders()}, elapsed=time.monotonic() - start
        )
    except (OSError, http.client.HTTPException) as exc:
        return HttpResult(None, error=f"{type(exc).__name__}: {exc}", elapsed=time.monotonic() - start)
    finally:
        conn.close()


@dataclass(frozen=True)
class NodeView:
    name: str
    ping: int | None  # HTTP status of /ping, None when unreachable
    state: str  # HA state the node reports, or "unreachable"
    zk_mode: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """The node reports itself active (schema, ZooKeeper session, database). Not `/ping`: a
        rancher-1.0 node answers pong whatever its state."""
        return self.ping == 200 and self.state == "active"


def node_view(t: Topology, name: str, timeout: float = PROBE_TIMEOUT) -> NodeView:
    host, port = "127.0.0.1", t.ports.mgmt
    ping = http_get(host, port, f"/node/{name}/ping", timeout)
    # HAProxy answers 503 itself when the node cannot be reached at all: tell that apart.
    reached = ping.status is not None and ping.headers.get("x-rancher-node") == name
    if not reached:
        return NodeView(name, None, "unreachable", "unknown")
    status = http_get(host, port, f"/node/{name}/status.json", timeout)
    detail: dict[str, Any] = {}
    if status.status == 200:
        try:
            detail = json.loads(status.body)
        except ValueError:
            detail = {}
    zk = detail.get("zookeeper") or {}
    return NodeView(name, ping.status, str(detail.get("state", "unknown")), str(zk.get("mode") or "unknown"), detail)


# Where a node's supervisor reports its API server's restarts (lab/server/supervisor.py STATE_FILE).
SUPERVISOR_STATE = "/tmp/halab-supervisor.json"


def supervisor_state(t: Topology, name: str) -> dict[str, Any]:
    """What the node's supervisor reports (serverRestarts, lastExitStatus), read inside its
    container, so it is there while the API server is down; {} when it cannot be read."""
    try:
        where = engine.place(t, name)
        out = docker.run(
            where.command("exec", where.container, "cat", SUPERVISOR_STATE),
            f"read {name}'s supervisor state",
            timeout=10,
        )
        state = json.loads(out)
    except (LabError, subprocess.TimeoutExpired, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


SERVING_MODES = ("leader", "follower", "standalone")


def quorum_problem(modes: dict[str, str]) -> str | None:
    """None when the ensemble has settled (one leader, every member serving), else what is off."""
    leaders = [n for n, m in modes.items() if m in ("leader", "standalone")]
    if len(leaders) == 1 and all(m in SERVING_MODES for m in modes.values()):
        return None
    return "ZooKeeper modes " + ", ".join(f"{n}={m}" for n, m in modes.items())


def lb_stats(t: Topology, timeout: float = PROBE_TIMEOUT) -> list[dict[str, str]]:
    """HAProxy's statistics, one row per frontend, backend and server; [] if unreachable."""
    res = http_get("127.0.0.1", t.ports.mgmt, "/lb/stats;csv", timeout)
    if res.status != 200:
        return []
    return list(csv.DictReader(io.StringIO(res.body.decode().lstrip("# "))))


def lb_servers(t: Topology, timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """Server name -> HAProxy status (UP, DOWN, MAINT, ...) in the `nodes` backend; {} if unreachable."""
    return {
        r["svname"]: r["status"]
        for r in lb_stats(t, timeout)
        if r.get("pxname") == "nodes" and r["svname"] not in ("FRONTEND", "BACKEND")
    }


def db_query(t: Topology, sql: str, timeout: float = 10) -> list[dict[str, str]]:
    """Run SQL in the database container as its local admin (no password anywhere). A Galera
    database: in the first member that answers, waiting until it has applied every write the
    cluster committed before (wsrep_sync_wait), so that it reads what the writer acknowledged."""
    if not t.db.galera:
        return query_in(t, "db", sql, timeout)
    failure: RuntimeFailure | None = None
    for member in t.db.member_names:
        try:
            return query_in(t, member, f"SET SESSION wsrep_sync_wait = 1; {sql}", timeout)
        except RuntimeFailure as exc:  # down, paused, or outside the Primary Component
            failure = exc
    assert failure is not None  # a Galera database has members
    raise failure


def query_in(t: Topology, service: str, sql: str, timeout: float) -> list[dict[str, str]]:
    """Run SQL in one database container (`db`, or a Galera member) as its local admin."""
    where = engine.place(t, service)
    out = docker.run(
        [
            *where.command("exec", "-i", where.container),
            "sh",
            "-c",
            'if command -v labsql >/dev/null; then exec labsql "$@"; fi; '
            'MYSQL_PWD="$(cat /run/secrets/db_root_password)" exec mysql -uroot --batch --raw "$@"',
            "labsql",
            "cattle",
            "-e",
            sql,
        ],
        "query the database",
        timeout=timeout,
    )
    lines = out.splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]


def db_alive(t: Topology) -> bool:
    try:
        db_query(t, "SELECT 1 AS ok", timeout=5)
        return True
    except RuntimeFailure:
        return False
