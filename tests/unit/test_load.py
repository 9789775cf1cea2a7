"""lab/load.py and the locustfiles, against a tiny stand-in of the v1 API on 127.0.0.1.

Locust runs only in subprocesses (importing it here would monkey-patch this test process). Every
run is bounded by its --run-time, by LoadRun's hard deadline and by pytest's timeout; the tests
assert on what was recorded, never on how long anything took.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab.cluster import tls
from lab.core import paths
from lab.core.durations import parse_duration
from lab.core.errors import BadInput, LabError
from lab.record.checker import TYPE_TABLES, DbSnapshot, check
from lab.record.history import RequestRecord, load_run, read_jsonl
from lab.record.load import DEFAULT_LOCUSTFILE, LoadResult, LoadRun, LoadSpec, make_run_dir, run_load

PLURALS = {
    "projects": "project",
    "environments": "environment",
    "services": "service",
    "registrationtokens": "registrationToken",
    "hosts": "host",
    "agents": "agent",
}


class StandIn:
    """Resources in memory, like the server's tables: one row per uuid, removed rows kept."""

    def __init__(self, fail_every_nth_write: int = 0) -> None:
        self.rows: dict[str, dict[str, Any]] = {}  # api id -> row
        self.ids = itertools.count(1)
        self.writes = itertools.count(1)
        self.fail_every = fail_every_nth_write
        self.lock = threading.Lock()

    def new(self, type_: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        rid = f"1{type_[0]}{next(self.ids)}"
        row = {
            "id": rid,
            "type": type_,
            "uuid": body.get("uuid") or f"srv-{rid}",
            "name": body.get("name"),
            "state": "active",
            "transitioning": "no",
            "removed": None,
            "links": {"self": f"http://127.0.0.1/v1/{type_}s/{rid}"},
            **extra,
        }
        self.rows[rid] = row
        return row

    def fenced(self) -> bool:
        return bool(self.fail_every) and next(self.writes) % self.fail_every == 0

    def snapshot(self) -> DbSnapshot:
        tables: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows.values():
            tables.setdefault(TYPE_TABLES[row["type"]], []).append(
                {k: row.get(k) for k in ("id", "uuid", "name", "state", "removed", "last_checkin")}
            )
        return DbSnapshot(time.time(), tables)


def handler_for(store: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Locust's client expects

        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Rancher-Node", "s1")
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def route(self) -> None:
            method, parts = self.command, urlsplit(self.path)
            segs = parts.path.strip("/").split("/")[1:]  # after "v1"
            body = self.body() if method in ("POST", "PUT") else {}
            with store.lock:
                if method != "GET" and store.fenced():
                    return self.answer(
                        503,
                        {
                            "type": "error",
                            "status": 503,
                            "code": "NOT_ACTIVE",
                            "message": "node is degraded",
                            "detail": None,
                        },
                    )
                if segs[0] == "scripts" and method == "POST":
                    agent = store.new("agent", {}, last_checkin=None)
                    host = store.new("host", body)
                    return self.answer(
                        201,
                        {
                            "type": "agentRegistration",
                            "hostId": host["id"],
                            "agentId": agent["id"],
                            "accessKey": "A" + agent["id"],
                            "secretKey": "S",
                        },
                    )
                if len(segs) == 1 and method == "GET":
                    kind = PLURALS[segs[0]]
                    data = [r for r in store.rows.values() if r["type"] == kind]
                    return self.answer(200, {"type": "collection", "data": data})
                if len(segs) == 1 and method == "POST":
                    kind = PLURALS[segs[0]]
                    extra = {"token": f"tok{next(store.ids)}"} if kind == "registrationToken" else {}
                    # Like the server: a new resource is transitioning until its process ran.
                    return self.answer(201, store.new(kind, body, **extra) | {"transitioning": "yes"})
                row = store.rows.get(segs[1])
                if row is None:
                    return self.answer(404, {"type": "error", "status": 404, "code": "RESOURCE_NOT_FOUND"})
                if parts.query == "action=checkin":
                    expected = "Basic " + base64.b64encode(f"A{row['id']}:S".encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        return self.answer(401, {"type": "error", "status": 401, "code": "Unauthorized"})
                    row["last_checkin"] = time.time()
                elif method == "PUT":
                    row["name"] = body.get("name", row["name"])
                elif method == "DELETE":
                    row["state"], row["removed"] = "removed", time.time()
                return self.answer(200, row)

        do_GET = do_POST = do_PUT = do_DELETE = route

    return Handler


@pytest.fixture
def ca_and_cert(tmp_path: Path) -> tuple[Path, Path]:
    ca, _, cert, key = tls.generate("unit")
    (tmp_path / "ca.crt").write_bytes(ca)
    (tmp_path / "server.pem").write_bytes(cert + key)
    return tmp_path / "ca.crt", tmp_path / "server.pem"


def serve(store: StandIn, pem: Path | None = None) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(store))
    server.daemon_threads = True
    if pem is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def stand_in(ca_and_cert: tuple[Path, Path]) -> Iterator[tuple[StandIn, int, int, Path]]:
    store = StandIn(fail_every_nth_write=5)
    http, http_port = serve(store)
    https, https_port = serve(store, ca_and_cert[1])
    yield store, http_port, https_port, ca_and_cert[0]
    for s in (http, https):
        s.shutdown()
        s.server_close()


# Fast users so a few seconds give enough requests; agents check in every 0.3 s.
FAST = {"HALAB_WAIT": "0.02,0.05", "HALAB_CHECKIN": "0.3", "HALAB_OWNED": "2"}


def spec(stand_in: tuple[StandIn, int, int, Path], **kw: Any) -> LoadSpec:
    _, http_port, https_port, ca = stand_in
    base = dict(
        name="unit",
        users=4,
        spawn_rate=4,
        duration=3,
        http_port=http_port,
        https_port=https_port,
        ca_file=str(ca),
        stop_timeout=1,
        env=FAST,
    )
    return LoadSpec(**(base | kw))


def run_until(load_spec: LoadSpec, runs_root: Path, seen: Callable[[list[RequestRecord]], bool]) -> LoadResult:
    """Run (long --run-time) until the recorded requests satisfy `seen`, then stop: the test
    depends on what happened, not on how much happens in a given time. Bounded either way."""
    load = LoadRun(load_spec, runs_root=runs_root).start()
    try:
        for _ in range(600):
            records = [r for p in (load.run_dir / "parts").glob("history-*.jsonl") for r in read_jsonl(p)[0]]
            if seen([r for r in records if isinstance(r, RequestRecord)]) or not load.running:
                break
            time.sleep(0.1)
    finally:
        result = load.stop()
    return result


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("20s", 20),
        ("2m", 120),
        ("1h30m", 5400),
        ("90", 90),
        ("1.5s", 1.5),
        (7, 7),
        ("500ms", 0.5),
        (" 3 s ", 3),
        ("1m30", 90),
        ("20S", 20),
        ("1.5m", 90),
    ],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text, "--duration", positive=True) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "forever",
        "0s",
        "-5",
        "1d",
        0,
        float("inf"),
        float("nan"),
        True,
        "1s30",
        "30m1h",
        "1 30",
        "9" * 400,
        "9" * 400 + "x",
    ],
)
def test_parse_duration_refuses_unbounded_or_unclear(bad: Any) -> None:
    with pytest.raises(BadInput, match="--duration"):
        parse_duration(bad, "--duration", positive=True)


def test_run_dirs_are_utc_stamped_and_never_reused(tmp_path: Path) -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    a = make_run_dir("Kill Follower!", tmp_path, now)
    b = make_run_dir("Kill Follower!", tmp_path, now)
    assert a.name == "20250102T030405Z-kill-follower"
    assert b.name == "20250102T030405Z-kill-follower-2" and b.is_dir()


def test_spec_is_validated_and_always_bounded(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--users"):
        LoadSpec(users=0)
    with pytest.raises(BadInput, match="--ca-file"):
        LoadSpec(ca_file=str(tmp_path / "missing.crt"))
    cmd = LoadSpec(duration=2.5, processes=3, web_port=8099).command(tmp_path)
    assert cmd[cmd.index("--run-time") + 1] == "3s"
    assert cmd[cmd.index("--processes") + 1] == "3"
    assert "--autostart" in cmd and "--autoquit" in cmd and "--headless" not in cmd
    assert cmd[cmd.index("--web-host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--host") + 1] == "http://127.0.0.1:80"  # agents keep their TLS URL regardless
    headless = LoadSpec().command(tmp_path)
    assert "--headless" in headless and "--processes" not in headless
    assert LoadSpec(duration=20).hard_timeout > 20


# ----------------------------------------------------------------------------- with Locust


def locust_list(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(DEFAULT_LOCUSTFILE), "--list"],
        env={**os.environ, **env, "PYTHONPATH": str(paths.ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_locustfile_imports_and_agents_need_the_ca(ca_and_cert: tuple[Path, Path]) -> None:
    assert "AgentUser" in locust_list({"HALAB_CA_FILE": str(ca_and_cert[0])})
    without = locust_list({"HALAB_CA_FILE": ""})
    assert "ApiUser" in without and "AgentUser" not in without


WANTED = {
    ("GET", "/v1/projects"),
    ("POST", "/v1/projects"),
    ("POST", "/v1/registrationtokens"),
    ("POST", "/v1/scripts/[token]"),
    ("POST", "/v1/agents/[id]?action=checkin"),
}


def test_a_run_records_every_request_and_exactly_the_acknowledged_writes(stand_in, tmp_path: Path) -> None:
    store = stand_in[0]

    def enough(requests: list[RequestRecord]) -> bool:
        # The register users' PUTs are not the API users' updates the ledger records.
        methods = {r.method for r in requests if r.ok and "[register]" not in r.name}
        acked = {(r.method, r.name) for r in requests if r.ok}
        # Every kind of write the ledger is checked for below must have been acknowledged at least
        # once: a check-in the stand-in refused leaves no ledger entry.
        return (
            {(r.method, r.name) for r in requests} >= WANTED
            and {"PUT", "DELETE"} <= methods
            and {("POST", "/v1/projects"), ("POST", "/v1/agents/[id]?action=checkin")} <= acked
            and any(r.write and not r.ok for r in requests)
        )

    result = run_until(spec(stand_in, duration=120), tmp_path, enough)

    run = result.run_dir
    for name in (
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
        "locust.html",
        "load.json",
        "history.jsonl",
        "ledger.jsonl",
    ):
        assert (run / name).exists(), name
    assert not list((run / "parts").glob("*.jsonl"))  # merged
    h = load_run(run)
    assert h.skipped_lines == 0
    assert enough(list(h.requests))  # check-ins among them: over TLS, verified against the CA
    assert all(r.node == "s1" for r in h.requests if r.status)
    assert all(r.t0 <= r.t1 for r in h.requests)

    # The API users' failed writes are the stand-in's refusals; a register compare-and-set may also
    # lose its race (409), which the register checks judge.
    failed_writes = [r for r in h.requests if r.write and not r.ok and "[register]" not in r.name]
    assert failed_writes and all(r.status == 503 and "NOT_ACTIVE" in (r.error or "") for r in failed_writes)
    acked = [r for r in h.requests if r.write and r.ok]
    assert len(h.acks) == len(acked)  # one ledger entry per acknowledged write, none for failures
    assert {(a.t0, a.uuid) for a in h.acks} == {(r.t0, r.uuid) for r in acked}
    assert {a.op for a in h.acks} >= {"create", "update", "delete", "checkin"} and all(a.node == "s1" for a in h.acks)
    assert all(a.id for a in h.acks if a.op == "create")

    # The stand-in's memory is its database: nothing acknowledged is missing or duplicated.
    verdict = check(h, store.snapshot())
    assert verdict.outcome("acknowledged_writes_present").status == "passed"
    assert verdict.outcome("no_duplicated_writes").status == "passed"

    stats = (run / "locust_stats.csv").read_text()
    assert "/v1/projects" in stats


def test_run_load_ends_at_its_run_time_with_locusts_reports(stand_in, tmp_path: Path) -> None:
    seen: list[str] = []

    @contextlib.contextmanager
    def observe(load: LoadRun) -> Iterator[None]:
        seen.append(f"running {load.running}")
        yield
        seen.append(f"ended {load.result is not None}")

    result = run_load(spec(stand_in, duration=2, users=1, ca_file=None), runs_root=tmp_path, observe=observe)
    assert result.ok and not result.stopped_early
    assert seen == ["running True", "ended True"]  # beside the load, from its start to its end
    for name in ("locust_stats.csv", "locust.html", "load.json", "history.jsonl"):
        assert (result.run_dir / name).exists(), name
    recorded = json.loads((result.run_dir / "load.json").read_text())
    assert recorded["spec"]["duration"] == 2
    # Locust's own CPU, read from its process group while it ran.
    assert result.generator_cpu is not None and result.generator_cpu.processes >= 1
    assert recorded["result"]["generator_cpu"]["peak"] == result.generator_cpu.peak


def test_stop_ends_a_run_early_and_keeps_what_was_recorded(stand_in, tmp_path: Path) -> None:
    load = LoadRun(spec(stand_in, duration=120, users=2), runs_root=tmp_path).start()
    try:
        parts = load.run_dir / "parts"
        for _ in range(300):  # until some requests were recorded (bounded)
            if any(p.stat().st_size for p in parts.glob("history-*.jsonl")) or not load.running:
                break
            time.sleep(0.1)
    finally:
        result = load.stop()
    assert result.stopped_early and not result.killed and result.returncode == 0
    assert result.records > 0 and (result.run_dir / "locust.html").exists()
    assert load.stop() is result  # idempotent


def test_processes_write_one_history_part_each(stand_in, tmp_path: Path) -> None:
    result = run_until(
        spec(stand_in, processes=2, users=4, ca_file=None, duration=120),
        tmp_path,
        lambda requests: len({r.worker for r in requests}) == 2,
    )
    h = load_run(result.run_dir)
    assert len({r.worker for r in h.requests}) == 2
    assert (result.run_dir / "locust_stats.csv").exists()


def test_agents_refuse_a_certificate_the_lab_ca_did_not_sign(stand_in, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(tls.generate("other")[0])
    result = run_until(
        spec(stand_in, ca_file=str(other_ca), users=1, duration=120, user_classes=("AgentUser",)),
        tmp_path,
        lambda requests: any(r.name == "/v1/registrationtokens" for r in requests),
    )
    h = load_run(result.run_dir)
    agent = [r for r in h.requests if r.name == "/v1/registrationtokens"]
    assert agent and all(not r.ok and r.status == 0 and "SSL" in (r.error or "") for r in agent)
    assert not [a for a in h.acks if a.type == "registrationToken"]


def test_the_hard_deadline_kills_a_run_nobody_waits_for(stand_in, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(LoadSpec, "hard_timeout", property(lambda self: 3.0))
    load = LoadRun(spec(stand_in, duration=120, users=1, ca_file=None), runs_root=tmp_path).start()
    for _ in range(300):  # bounded: the watchdog acts on its own
        if not load.running:
            break
        time.sleep(0.1)
    result = load.wait()
    assert result.killed and result.returncode is None and not result.ok
    with pytest.raises(LabError, match="killed"):
        run_load(spec(stand_in, duration=120, users=1, ca_file=None), runs_root=tmp_path)


def test_a_named_worker_counts_what_it_recorded_and_agents_take_the_ca_as_text(stand_in, tmp_path: Path) -> None:
    """As a Locust worker on a swarm host records (lab/record/distributed.py): named by
    HALAB_WORKER, the lab CA given as text, and its own count of requests and acks."""
    from lab.record.distributed import check_counts, merged_requests, take_counts

    ca = stand_in[3].read_text()
    result = run_until(
        spec(stand_in, ca_file=None, duration=120, env={**FAST, "HALAB_WORKER": "w1", "HALAB_CA_PEM": ca}),
        tmp_path,
        lambda requests: any(r.name.startswith("/v1/agents") and r.ok for r in requests),
    )
    counted, merged = take_counts(result.run_dir, ["w1"]), merged_requests(result.run_dir, ["w1"])
    h = load_run(result.run_dir)
    assert {r.worker.split("-")[0] for r in h.requests} == {"w1"} and merged["w1"] == len(h.requests) > 0
    assert any(r.name.startswith("/v1/agents") and r.ok for r in h.requests)  # TLS verified against the text
    assert counted["w1"] == {"requests": len(h.requests), "acks": len(h.acks)}
    check_counts(counted, merged)
