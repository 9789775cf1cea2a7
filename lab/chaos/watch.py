"""Watching a lab while faults come and go: what the matrix and scenarios decide on.

Background threads, all through the load balancer on 127.0.0.1 and all bounded by short timeouts:

- one per node: `/node/<n>/ping` and `status.json` (probes.node_view), recorded as ProbeRecords;
- one on HAProxy's stats: each node's backend status (UP, DOWN, ...);
- one client: a write (POST /v1/projects with a client-chosen uuid) then a read (GET of the last
  project created), over and over, recorded as RequestRecords, each acknowledged write also as a
  LedgerEntry, so that the checker can later prove no acknowledged write was lost;
- with a run directory, one register client: reads, writes and compare-and-sets of the
  `description` of a few projects of its own, one at a time, recorded as `Op`s in `ops.jsonl` for
  the linearizability, session and indeterminate-write checks (lab/record/registers.py).

Everything is kept in memory for decisions and appended to the run's history as it happens.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cluster import probes
from lab.cluster.topology import Topology
from lab.core.wait import poll
from lab.record.history import HISTORY_FILE, LEDGER_FILE, JsonlWriter, LedgerEntry, ProbeRecord, RequestRecord
from lab.record.ops import Fn, Op, Payload, Value, outcome_of_status
from lab.record.registers import OPS_FILE

CLIENT_TIMEOUT = 2.0  # a request the LB cannot place within this counts as failed
PROBE_EVERY = 0.2
LB_EVERY = 0.1
CLIENT_PAUSE = 0.05
REGISTER_KEYS = 3
REGISTER_PAUSE = 0.1
# The metronome: a thread that only reads the clock every TICK seconds. A beat later than TICK +
# STALL_NOTED means this harness, or the whole machine under it, stood still meanwhile (a host that
# is paused or starved stops the lab and its observer alike), and is noted with when and how long.
TICK, STALL_NOTED = 0.1, 0.5


@dataclass(frozen=True)
class LbSample:
    t: float
    servers: dict[str, str]  # node -> HAProxy status; {} when the stats could not be read


class Watch:
    """Observe a lab until stopped; a context manager (the threads stop and join on exit)."""

    def __init__(self, t: Topology, run_dir: Path | None = None, *, client: bool = True) -> None:
        self.t = t
        self.history = JsonlWriter(run_dir / HISTORY_FILE) if run_dir else None
        self.ledger = JsonlWriter(run_dir / LEDGER_FILE) if run_dir else None
        self.ops = JsonlWriter(run_dir / OPS_FILE) if run_dir else None
        self.register_keys: list[str] = []
        self._register_rng = random.Random(0)
        self._register_writes = itertools.count(1)
        self._register_read: dict[str, Value] = {}
        self.client_enabled = client
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.probes: dict[str, list[ProbeRecord]] = {n: [] for n in t.node_names}
        self.lb: list[LbSample] = []
        self.requests: list[RequestRecord] = []
        self.stalls: list[tuple[float, float]] = []  # (wall time the stall began, seconds)

    # ---------------------------------------------------------------------------------- threads

    def __enter__(self) -> Watch:
        loops: list[tuple[str, Callable[[], None], float]] = [
            (f"probe-{n}", functools.partial(self._probe, n), PROBE_EVERY) for n in self.t.node_names
        ]
        loops.append(("lb", self._lb_stats, LB_EVERY))
        loops.append(("metronome", self._beat, 0.0))
        if self.client_enabled:
            loops.append(("client", self._client_round, CLIENT_PAUSE))
        if self.client_enabled and self.ops:
            loops.append(("register", self._register_round, REGISTER_PAUSE))
        for name, step, every in loops:
            th = threading.Thread(target=self._loop, args=(step, every), name=f"watch-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=CLIENT_TIMEOUT * 3)
        for w in (self.history, self.ledger, self.ops):
            if w:
                w.close()

    def _loop(self, step: Callable[[], None], every: float) -> None:
        while not self._stop.is_set():
            step()
            self._stop.wait(every)

    def _beat(self) -> None:
        before = time.monotonic()
        self._stop.wait(TICK)
        late = time.monotonic() - before - TICK
        if late > STALL_NOTED:
            with self._lock:
                self.stalls.append((time.time() - late - TICK, late))

    def _probe(self, node: str) -> None:
        t0 = time.time()
        v = probes.node_view(self.t, node)
        rec = ProbeRecord(t0, time.time(), node, v.ping, v.state, v.zk_mode if v.zk_mode != "unknown" else None)
        with self._lock:
            self.probes[node].append(rec)
        if self.history:
            self.history.append(rec)

    def _lb_stats(self) -> None:
        servers = probes.lb_servers(self.t)
        with self._lock:
            self.lb.append(LbSample(time.time(), servers))

    def _client_round(self) -> None:
        uid = str(uuid.uuid4())
        write = self._request("POST", "/v1/projects", {"name": f"watch-{uid[:8]}", "uuid": uid}, uid)
        last = next((r for r in reversed(self.requests) if r.write and r.ok and r.resource_id), None)
        if last and not self._stop.is_set():
            self._request("GET", f"/v1/projects/{last.resource_id}", None, None)
        if write.ok and self.ledger:
            self.ledger.append(
                LedgerEntry(write.t0, write.t1, "create", "project", write.resource_id, uid, write.node, worker="watch")
            )

    def _register_round(self) -> None:
        """One register operation on one of the watch's keys (made first, through the LB)."""
        if len(self.register_keys) < REGISTER_KEYS:
            status, answer, _, _ = self._call(
                "POST", "/v1/projects", {"name": f"watch-register-{len(self.register_keys)}"}
            )
            if status == 201 and isinstance(answer, dict):
                self.register_keys.append(str(answer["id"]))
            return
        key = self._register_rng.choice(self.register_keys)
        f: Fn = self._register_rng.choice(("read", "read", "write", "cas"))
        new = f"watch-{next(self._register_writes)}"
        expected = self._register_read.get(key)
        body = (
            None
            if f == "read"
            else {"description": new, **({"halabExpect": {"description": expected}} if f == "cas" else {})}
        )
        value: Payload = None if f == "read" else new if f == "write" else (expected, new)
        invoke = time.time()
        status, answer, node, _ = self._call("GET" if f == "read" else "PUT", f"/v1/projects/{key}", body)
        kind = outcome_of_status(status)
        if f == "read" and kind == "ok":
            value = self._register_read[key] = answer.get("description") if isinstance(answer, dict) else None
        op = Op("watch", key, f, value, kind, invoke, time.time(), node)
        assert self.ops is not None
        self.ops.write_lines([op.to_json()])

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, object, str | None, str | None]:
        """(status, JSON answer or None, the node that answered, error) of one request through the
        LB; status 0 and the error when no answer came."""
        conn = http.client.HTTPConnection("127.0.0.1", self.t.ports.http, timeout=CLIENT_TIMEOUT)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if body else {})
            resp = conn.getresponse()
            data, node = resp.read(), resp.getheader("X-Rancher-Node")
            try:
                return resp.status, json.loads(data), node, None
            except ValueError as exc:
                return resp.status, None, node, f"{type(exc).__name__}: {exc}"
        except (OSError, http.client.HTTPException) as exc:
            return 0, None, None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None, uid: str | None) -> RequestRecord:
        t0 = time.time()
        status, answer, node, error = self._call(method, path, body)
        rid = answer.get("id") if method == "POST" and status in (200, 201, 202) and isinstance(answer, dict) else None
        ok = status in (200, 201, 202) and (method != "POST" or rid is not None)
        rec = RequestRecord(
            t0,
            time.time(),
            method,
            "/v1/projects" if method == "POST" else "/v1/projects/[id]",
            status,
            ok,
            node,
            error if status == 0 or (method == "POST" and not ok and status in (200, 201, 202)) else None,
            write=method == "POST",
            idempotent=method == "GET",
            resource_id=rid,
            uuid=uid,
            worker="watch",
        )
        with self._lock:
            self.requests.append(rec)
        if self.history:
            self.history.append(rec)
        return rec

    # ---------------------------------------------------------------------------------- queries

    def latest(self, since: float = 0.0) -> dict[str, ProbeRecord | None]:
        """Each node's last probe that started at or after `since`."""
        with self._lock:
            return {n: (ps[-1] if ps and ps[-1].t0 >= since else None) for n, ps in self.probes.items()}

    def lb_latest(self, since: float = 0.0) -> dict[str, str] | None:
        with self._lock:
            last = self.lb[-1] if self.lb else None
        return last.servers if last and last.t >= since and last.servers else None

    def client_window(self, start: float, end: float) -> list[RequestRecord]:
        """Client requests that ended within [start, end]."""
        with self._lock:
            return [r for r in self.requests if start <= r.t1 <= end]

    def longest_stall(self, since: float, until: float) -> tuple[float, float] | None:
        """(seconds after `since` it began, seconds) of the observer's longest stall that overlapped
        [since, until]; None without one."""
        with self._lock:
            found = [
                (start - since, length) for start, length in self.stalls if start < until and start + length > since
            ]
        return max(found, key=lambda s: s[1], default=None)

    def first_drained(self, node: str, since: float) -> float | None:
        """When the load balancer was first seen not sending to `node` (status other than UP)
        after `since`, or None."""
        with self._lock:
            return next((s.t for s in self.lb if s.t >= since and s.servers and s.servers.get(node) != "UP"), None)

    def writes_resumed(self, since: float, until: float) -> float | None:
        """Seconds from `since` until writes succeeded again for good (by `until`): when the first
        successful write after the last failed one (or, none failing, after `since`) completed. Its
        completion, not its start, because a write may hang through an election and then succeed:
        the client waited all that time (1.5 s for a leader kill that failed no write). Only writes
        completed by `until` count: one that completed after the heal says nothing of the fault."""
        with self._lock:
            writes = [r for r in self.requests if r.write and since <= r.t0 and r.t1 <= until]
        failed = [r.t0 for r in writes if not r.ok]
        back = next((r.t1 for r in writes if r.ok and (not failed or r.t0 > failed[-1])), None)
        return None if back is None else back - since

    def first_write_ok(self, since: float) -> float | None:
        with self._lock:
            return next((r.t0 for r in self.requests if r.write and r.ok and r.t0 >= since), None)


# ------------------------------------------------------------------------- steady-state checks


@dataclass(frozen=True)
class Snapshot:
    """The lab at one moment, as the watch last saw it."""

    t: float
    active: frozenset[str]  # /ping 200 and UP in the load balancer
    out: frozenset[str]  # /ping not 200 and not UP in the load balancer
    pings: dict[str, int | None]
    client_ok: bool | None  # every client request of the window succeeded (None: too few requests)
    client_failing: bool | None  # every client request of the window failed (None: too few)
    zk_modes: dict[str, str | None]

    @property
    def settled(self) -> bool:
        return len(self.active) + len(self.out) == len(self.pings)

    @property
    def ensemble_whole(self) -> bool:
        """Every ZooKeeper member serving: one leader and followers (or one standalone). A node can
        be active through another member while its own still syncs; a fault then would take out
        more members than it names."""
        modes = sorted(m or "unknown" for m in self.zk_modes.values())
        return modes == ["standalone"] or modes == sorted(["leader"] + ["follower"] * (len(modes) - 1))

    @property
    def steady(self) -> bool:
        return len(self.active) == len(self.pings) and self.ensemble_whole


def snapshot(w: Watch, since: float, window: float, now: float | None = None, min_requests: int = 2) -> Snapshot:
    """Each node active or out (by probes and LB status newer than `since`) and the client's
    requests that ended in the last `window` seconds."""
    now = time.time() if now is None else now
    latest = w.latest(since)
    lb = w.lb_latest(since) or {}
    active = frozenset(n for n, p in latest.items() if p and p.active and lb.get(n) == "UP")
    out = frozenset(n for n, p in latest.items() if p and not p.active and lb and lb.get(n) != "UP")
    reqs = w.client_window(now - window, now)
    enough = len(reqs) >= min_requests
    return Snapshot(
        now,
        active,
        out,
        {n: (p.ping if p else None) for n, p in latest.items()},
        all(r.ok for r in reqs) if enough else None,
        not any(r.ok for r in reqs) if enough else None,
        {n: (p.zk_mode if p else None) for n, p in latest.items()},
    )


def wait_steady(w: Watch, timeout: float, window: float = 1.0, since: float | None = None) -> float | None:
    """Wait until every node is active, every ZooKeeper member serving and the client's requests
    all succeed over `window`; return when (epoch seconds), or None when the timeout passed first."""
    start = time.time() if since is None else since

    def steady(s: Snapshot) -> bool:
        return s.steady and bool(s.client_ok or not w.client_enabled)

    s = poll(lambda: snapshot(w, start, window), steady, timeout, interval=0.1)
    return s.t if steady(s) else None


def describe(s: Snapshot) -> str:
    nodes = ", ".join(
        f"{n}={'active' if n in s.active else 'out' if n in s.out else s.pings.get(n)}/{s.zk_modes.get(n) or 'unknown'}"
        for n in s.pings
    )
    client = (
        "too few client requests"
        if s.client_ok is None
        else "client ok"
        if s.client_ok
        else "client failing"
        if s.client_failing
        else "client partly failing"
    )
    return f"{nodes}; {client}"
