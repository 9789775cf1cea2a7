"""What the integration tests share: HTTP on 127.0.0.1 (the lab's load balancer, its management
port's `/node/<name>/...` routes, a bench's direct port), bounded waits on conditions (never a
fixed sleep), what a good answer to bad input looks like, and waits on a load's recorded progress
or a `halab` subprocess's faults.

pytest puts this folder on sys.path (it has no __init__.py: rootdir-relative "prepend" imports),
so tests import it as `helpers`, as the benchmarks do after adding the folder themselves.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab import faults
from lab.cluster import lifecycle, state
from lab.cluster.topology import Topology
from lab.core import paths
from lab.core.wait import wait_for
from lab.record.history import PARTS_DIR
from lab.record.load import LoadSpec

REPO = paths.ROOT
JSON = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def data(self) -> Any:
        """The body as JSON, else as text."""
        text = self.body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def error(self) -> dict[str, Any] | None:
        """The gdapi error body, or None when the body is not one."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return None
        return body if isinstance(body, dict) and body.get("type") == "error" else None


def exchange(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    """One request to 127.0.0.1:`port` on a fresh connection, `target` sent as it is."""
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def send(
    t: Topology,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    """One request through the lab's load balancer (HTTP), on a fresh connection."""
    return exchange(t.ports.http, method, path, body, headers, timeout)


def send_raw(t: Topology, head: bytes, body: bytes, timeout: float = 30) -> Answer:
    """A request whose head says what it likes (e.g. a Content-Length it never sends)."""
    with socket.create_connection(("127.0.0.1", t.ports.http), timeout=timeout) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        r = HTTPResponse(s)
        r.begin()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read() if r.length is not None else b"")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(
    method: str, url: str, body: Any = None, auth: tuple[str, str] | None = None, timeout: float = 10
) -> tuple[int, Mapping[str, str], Any]:
    """(status, headers with lower-case names, JSON or text) of a JSON request to an
    http://127.0.0.1:PORT/... URL; HTTP errors are answers, not exceptions."""
    u = urlsplit(url)
    assert u.scheme == "http" and u.hostname == "127.0.0.1" and u.port, f"not a loopback URL with a port: {url}"
    headers = {**JSON, **({"Authorization": basic(*auth)} if auth else {})}
    payload = json.dumps(body).encode() if body is not None else None
    a = exchange(u.port, method, (u.path or "/") + (f"?{u.query}" if u.query else ""), payload, headers, timeout)
    return a.status, a.headers, a.data()


def api(t: Topology, path: str = "") -> str:
    """URL of the lab's client API (the load balancer, balanced over active nodes)."""
    return f"http://127.0.0.1:{t.ports.http}/v1{path}"


def on_node(t: Topology, node: str, path: str) -> str:
    """URL of `path` on one node's API, whatever its health (the management port's route)."""
    return f"http://127.0.0.1:{t.ports.mgmt}/node/{node}{path}"


def node_status(t: Topology, node: str) -> dict[str, Any]:
    """The node's /status.json (HA state, ZooKeeper mode and session, members, master)."""
    status, _, body = http("GET", on_node(t, node, "/status.json"))
    assert status == 200 and isinstance(body, dict), (status, body)
    return body


# ----------------------------------------------------------------------- answers to bad input


def problems_with(answer: Answer, method: str = "GET") -> list[str]:
    """What is wrong with an answer to bad or odd input: it must come from the node, be below 500
    (503 only when the node itself says it is not active) and, when an error, a gdapi error body."""
    out = []
    if "x-rancher-node" not in answer.headers:
        out.append(f"not answered by a node (status {answer.status}): {answer.body[:120]!r}")
    if answer.status >= 500 and not (answer.status == 503 and (answer.error() or {}).get("code") == "NOT_ACTIVE"):
        out.append(f"server error {answer.status}: {answer.body[:200]!r}")
    if answer.status >= 400 and method != "HEAD":
        e = answer.error()
        if e is None:
            out.append(f"{answer.status} without a gdapi error body: {answer.body[:120]!r}")
        elif not (
            e.get("status") == answer.status
            and isinstance(e.get("code"), str)
            and e["code"]
            and isinstance(e.get("message"), str)
        ):
            out.append(f"malformed gdapi error: {e}")
    return out


def tracebacks(t: Topology, node: str) -> int:
    return lifecycle.logs(t, (node,)).count("Traceback")


# -------------------------------------------------------------- a load's progress, a halab run


def load_spec(t: Topology, name: str, users: int, duration: int, **more: Any) -> LoadSpec:
    """A Locust run through the lab's load balancer, every user started at once."""
    return LoadSpec(
        name=name,
        users=users,
        spawn_rate=users,
        duration=duration,
        http_port=t.ports.http,
        https_port=t.ports.https,
        ca_file=str(state.ca_path(t.lab)),
        **more,
    )


def recorded(run_dir: Path, kind: str) -> int:
    """Lines the load has recorded so far: `history` (requests) or `ledger` (acknowledged writes)."""
    return sum(sum(1 for _ in p.open()) for p in (run_dir / PARTS_DIR).glob(f"{kind}-*.jsonl"))


def wait_recorded(run_dir: Path, kind: str, at_least: int, load: Any, timeout: float = 180) -> None:
    """Wait on a running lab.load.LoadRun's own recorded progress (bounded), never a fixed time."""

    def enough() -> bool:
        assert load.running, "the load ended early"
        return recorded(run_dir, kind) >= at_least

    wait_for(f"{at_least} {kind} records", enough, timeout)


# faults.leftovers of a lab with nothing left to heal
NOTHING_LEFT = {"registered": [], "rules": {}, "shapers": {}, "rogues": [], "paused": [], "stopped": []}


def wait_active_faults(lab_name: str, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until a `halab` subprocess has `n` faults active on the lab; it must not end first."""

    def active() -> bool:
        assert proc.poll() is None, f"the halab process ended (exit {proc.returncode}): {proc.communicate()[0]}"
        return sum(e.get("phase") == "active" for e in faults.active(lab_name)) >= n

    wait_for(f"{n} active fault(s)", active, timeout)


def kill_fault_holder(lab_name: str, *fault: str) -> None:
    """`halab fault --name LAB FAULT... --hold 300s`, SIGKILLed once its fault is active: none of its
    cleanup runs, the fault stays for another process to heal."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "fault", "--name", lab_name, *fault, "--hold", "300s"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_active_faults(lab_name, 1, holder)
        holder.kill()
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()


def heal_from_another_process(lab_name: str) -> None:
    """`halab heal` as a user would run it; it must succeed and say it healed a fault."""
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "heal", "--name", lab_name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "healed f" in done.stdout


def by_case(result: Any) -> dict[tuple[int, str], Any]:
    """A matrix result's cases by (size, case name): the last attempt of a case run twice (the
    observer stalled through the first)."""
    return {(c.size, c.case): c for c in result.cases}
