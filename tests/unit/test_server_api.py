"""The HTTP layer on this venv's aiohttp (the image runs Debian's 3.8): health per node profile,
gdapi shapes and headers through forwarded requests, error bodies, fencing of writes (tuned), lock
errors (409 and 500 in rancher-1.0), and the OOM exit path. A fake node stands in for the database
and ZooKeeper; nothing here reaches either."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import platform
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lab.cluster.preflight import free_port
from lab.server import store
from lab.server.api import Api
from lab.server.auth import ANONYMOUS, Authenticator
from lab.server.cache import ResourceCache
from lab.server.config import from_env
from lab.server.coord import LockBusy, NoQuorum
from lab.server.gdapi import ApiError
from lab.server.heap import HeapModel, OutOfMemory
from lab.server.listener import Listener
from lab.server.metrics import RequestMetrics
from lab.server.processes import ProcessEngine
from lab.server.state import HAStateMachine, Health

HEALTHY = Health(bootstrapped=True, zk_connected=True, db_ok=True)


class FakeDB:
    def __init__(self) -> None:
        self.calls = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        raise AssertionError("this test must not reach the database")


class LockFails:
    """A database whose write transactions fail the way the resource's lock does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise self.error


class FakeNode:
    def __init__(self, request_heap: str = "64k", xmx: str = "1g", profile: str = "rancher-1.0") -> None:
        self.cfg = from_env(
            {
                "HALAB_NODE_NAME": "a1",
                "HALAB_REQUEST_HEAP": request_heap,
                "CATTLE_JAVA_OPTS": f"-Xmx{xmx}",
                "HALAB_PROFILE": profile,
            }
        )
        self.heap = HeapModel(self.cfg.heap_xmx, self.cfg.heap_scale)
        self.sm = HAStateMachine()
        self.requests = RequestMetrics()
        self.db = FakeDB()
        self.auth = Authenticator(self.db)  # type: ignore[arg-type]
        self.cache = ResourceCache(self.heap)
        self.ctx = store.Context(self.cfg.registration_url)
        self.default_project_id = 1
        self.oom: list[OutOfMemory] = []

    def status(self) -> dict[str, Any]:
        return {"node": self.cfg.node_name, "state": self.sm.state.value}

    def metrics_text(self) -> str:
        return "\n".join(self.requests.render(self.cfg.node_name)) + "\n"

    def die_of_oom(self, e: OutOfMemory) -> None:
        self.oom.append(e)


def with_client(node: FakeNode, test: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(Api(node).app())) as client:  # type: ignore[arg-type]
            await test(client)

    asyncio.run(main())


def test_rancher_1_0_ping_is_always_pong() -> None:
    node = FakeNode(profile="rancher-1.0")

    async def t(c: TestClient) -> None:
        for health in (None, HEALTHY, Health(True, False, True), Health(True, True, False)):
            if health is not None:
                node.sm.observe(health)
            r = await c.get("/ping")
            assert (r.status, await r.text()) == (200, "pong"), node.sm.state
            assert r.headers["X-Rancher-Node"] == "a1"

    with_client(node, t)


def test_tuned_ping_follows_the_ha_state_and_every_response_names_the_node() -> None:
    node = FakeNode(profile="tuned")

    async def t(c: TestClient) -> None:
        r = await c.get("/ping")
        assert r.status == 503 and await r.text() == "starting"
        assert r.headers["X-Rancher-Node"] == "a1"
        node.sm.observe(HEALTHY)
        r = await c.get("/ping")
        assert r.status == 200 and await r.text() == "pong"
        node.sm.observe(Health(True, False, True))
        r = await c.get("/ping")
        assert r.status == 503 and await r.text() == "degraded"

    with_client(node, t)


def test_links_and_schema_header_follow_the_load_balancer() -> None:
    async def t(c: TestClient) -> None:
        r = await c.get("/v1", headers={"Host": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"})
        body = await r.json()
        assert r.status == 200 and body["type"] == "apiVersion"
        assert body["links"]["projects"] == "https://127.0.0.1/v1/projects"
        assert r.headers["X-API-Schemas"] == "https://127.0.0.1/v1/schemas"
        r = await c.get("/v1/schemas", headers={"Host": "lb:8080"})
        body = await r.json()
        assert body["type"] == "collection" and body["resourceType"] == "schema"
        project = next(s for s in body["data"] if s["id"] == "project")
        assert project["links"]["collection"] == "http://lb:8080/v1/projects"
        r = await c.get("/v1/schemas/service")
        assert (await r.json())["pluralName"] == "services"

    with_client(FakeNode(), t)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_error_bodies() -> None:
    node = FakeNode()
    node.sm.observe(HEALTHY)

    async def t(c: TestClient) -> None:
        async def err(method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
            r = await c.request(method, path, **kw)
            body = await r.json()
            assert body["type"] == "error" and body["status"] == r.status
            assert {"code", "message", "detail"} <= body.keys()
            assert r.headers["X-Rancher-Node"] == "a1"
            return r.status, body

        assert (await err("GET", "/v1/nonsense"))[1]["code"] == "NOT_FOUND"
        assert (await err("GET", "/v1/projects/1s5"))[1]["code"] == "RESOURCE_NOT_FOUND"
        assert (await err("PATCH", "/v1/projects"))[0] == 405
        # what no route takes is answered as aiohttp's router answered it, in the gdapi shape
        status, body = await err("GET", "/nowhere/at/all")
        assert (status, body["code"], body["message"]) == (404, "NOT_FOUND", "Not Found")
        for method, path in (("POST", "/ping"), ("DELETE", "/v1/schemas"), ("PUT", "/v1/projects/1a5/x")):
            status, body = await err(method, path)
            assert (status, body["code"], body["message"]) == (405, "MethodNotAllowed", "Method Not Allowed")
        assert (await err("POST", "/v1/projects", data=b"{not json"))[1]["code"] == "InvalidBodyContent"
        status, body = await err("POST", "/v1/projects", data=b"x" * (1 << 20 + 1))
        assert status == 413
        status, body = await err("POST", "/v1/hosts", json={})
        assert status == 405  # hosts come from registration only
        status, body = await err("GET", "/v1", headers={"Authorization": "Basic !!!"})
        assert (status, body["code"]) == (401, "Unauthorized")
        status, body = await err("GET", "/v1", headers={"Authorization": "Bearer abc"})
        assert status == 401
        status, body = await err("POST", "/v1/services", json={"name": 3})
        assert (status, body["code"], body["fieldName"]) == (422, "InvalidFormat", "name")
        status, body = await err("POST", "/v1/agents/1ag1?action=checkin")
        assert status == 401
        assert (
            await err("POST", "/v1/agents/1ag1?action=explode", headers={"Authorization": basic("AGENTKEY", "secret")})
        )[0] == 404

    with_client(node, t)
    assert node.db.calls == 0


class NoKeys:
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return None  # no credential row has this public value


def test_a_rancher_client_without_keys_is_anonymous_and_other_unknown_keys_are_refused() -> None:
    async def t(c: TestClient) -> None:
        r = await c.get("/v1", headers={"Authorization": basic("None", "None")})  # cattle.Client(url=...)
        assert r.status == 200 and (await r.json())["type"] == "apiVersion"

    node = FakeNode()
    with_client(node, t)
    assert node.db.calls == 0

    auth = Authenticator(NoKeys())  # type: ignore[arg-type]
    for user, password in (("None", "x"), ("x", "None"), ("none", "none"), ("None", "")):
        with pytest.raises(ApiError) as e:
            asyncio.run(auth.authenticate(basic(user, password)))
        assert e.value.status == 401, (user, password)
    assert asyncio.run(auth.authenticate(basic("None", "None"))) is ANONYMOUS


def test_a_tuned_node_that_is_not_active_refuses_writes() -> None:
    node = FakeNode(profile="tuned")
    node.sm.observe(HEALTHY)
    node.sm.observe(Health(True, False, True))

    async def t(c: TestClient) -> None:
        for method, path in (
            ("POST", "/v1/projects"),
            ("PUT", "/v1/projects/1a1"),
            ("DELETE", "/v1/projects/1a1"),
            ("POST", "/v1/scripts/token"),
        ):
            r = await c.request(method, path, json={"name": "x", "hostname": "h"})
            body = await r.json()
            assert r.status == 503 and body["code"] == "NOT_ACTIVE", (method, path)
            assert "no ZooKeeper session with quorum" in body["detail"]

    with_client(node, t)
    assert node.db.calls == 0


def with_engine(node: FakeNode, db: Any) -> FakeNode:
    node.engine = ProcessEngine(node.cfg, db, None, node.cache, None)  # type: ignore[attr-defined, arg-type]
    return node


@pytest.mark.parametrize(
    "error, status, code",
    [
        (LockBusy("project 1 is locked by another process"), 409, "ResourceBusy"),
        (NoQuorum("no ZooKeeper session"), 500, "SERVER_ERROR"),
    ],
    ids=["lock-timeout", "no-session"],
)
def test_rancher_1_0_tries_writes_whatever_its_state_and_lock_errors_are_409_or_500(
    error: Exception, status: int, code: str
) -> None:
    node = with_engine(FakeNode(profile="rancher-1.0"), LockFails(error))
    node.sm.observe(HEALTHY)
    node.sm.observe(Health(True, False, True))  # degraded: no NOT_ACTIVE gate in rancher-1.0

    async def t(c: TestClient) -> None:
        for method, path in (("POST", "/v1/projects"), ("PUT", "/v1/projects/1a1"), ("DELETE", "/v1/projects/1a1")):
            r = await c.request(method, path, json={"name": "x"})
            body = await r.json()
            assert (r.status, body["type"], body["code"]) == (status, "error", code), (method, path, body)

    with_client(node, t)


def test_tuned_no_session_at_lock_time_is_503_no_quorum() -> None:
    node = with_engine(FakeNode(profile="tuned"), LockFails(NoQuorum("lost the session before commit")))
    node.sm.observe(HEALTHY)

    async def t(c: TestClient) -> None:
        r = await c.post("/v1/projects", json={"name": "x"})
        assert (r.status, (await r.json())["code"]) == (503, "NO_QUORUM")

    with_client(node, t)


def test_requests_count_in_metrics() -> None:
    async def t(c: TestClient) -> None:
        await c.get("/ping")
        await c.get("/v1")
        text = await (await c.get("/metrics")).text()
        assert 'cattle_http_requests_total{node="a1",method="GET",code="503"} 1' in text
        assert 'cattle_http_requests_total{node="a1",method="GET",code="200"} 1' in text
        assert 'cattle_http_request_duration_seconds_count{node="a1"} 2' in text

    with_client(FakeNode(profile="tuned"), t)  # a starting tuned node answers /ping 503


def test_request_memory_beyond_the_budget_is_a_modelled_oom() -> None:
    node = FakeNode(request_heap="3m", xmx="64m")  # 2 MiB budget, 3 MiB per request

    async def t(c: TestClient) -> None:
        await c.get("/v1")

    with contextlib.suppress(Exception):  # the fake does not exit, so the request errors out
        with_client(node, t)
    assert node.oom and "Java heap space" in str(node.oom[0])
    assert node.heap.inflight_bytes == 0


def test_management_view_lists_members_and_master() -> None:
    from lab.server import management

    status = {
        "node": "a1",
        "state": "degraded",
        "reasons": ["no ZooKeeper session with quorum"],
        "clusterSize": 3,
        "master": "a1",
        "zookeeper": {"session": "SUSPENDED", "mode": "not serving"},
        "database": {"ok": True, "error": None},
        "memory": {"pressure": 0.5, "budgetBytes": 32 << 20, "degraded": False},
        "members": [
            {
                "id": 1,
                "name": "a1",
                "self": True,
                "master": True,
                "state": "degraded",
                "zkMode": "not serving",
                "ipAddress": "10.0.0.2",
            },
            {
                "id": 2,
                "name": "<b1>",
                "self": False,
                "master": False,
                "state": "active",
                "zkMode": "leader",
                "ipAddress": None,
            },
        ],
    }
    node = FakeNode()
    node.status = lambda: status  # type: ignore[method-assign]

    async def main() -> None:
        async with TestClient(TestServer(management.app(node))) as c:  # type: ignore[arg-type]
            r = await c.get("/")
            page = await r.text()
            assert r.status == 200 and r.headers["X-Rancher-Node"] == "a1"
            assert "a1 (this node)" in page and "master" in page and "&lt;b1&gt;" in page and "leader" in page
            r = await c.get("/status.json")
            assert (await r.json())["members"][1]["zkMode"] == "leader"

    asyncio.run(main())


def with_listener(node: FakeNode, test: Callable[[int], Awaitable[None]]) -> None:
    """Serve the API as the node does (lab.server.listener) on a free port; run test(port)."""

    async def main() -> None:
        listener = Listener(Api(node).app(), {"X-Rancher-Node": "a1"})  # type: ignore[arg-type]
        port = free_port()
        await listener.start("127.0.0.1", port)
        try:
            await test(port)
        finally:
            await listener.stop()

    asyncio.run(main())


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    answer = await reader.read()  # both sides close: aiohttp after an error, the client asked for it
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def gdapi_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The answer's gdapi error body, after checking the shape every error answer shares."""
    assert (headers["content-type"].split(";")[0], headers["x-rancher-node"]) == ("application/json", "a1")
    error = json.loads(body)
    assert error["type"] == "error" and error["status"] == status and error["message"]
    return error


@pytest.mark.parametrize(
    "raw",
    [
        b"G<E>T /v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GE T /v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1 HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /v1 HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /v1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    ],
    ids=["method-with-brackets", "method-with-space", "request-line", "header-line", "oversized-header"],
)
def test_requests_the_http_parser_refuses_get_a_gdapi_error(raw: bytes) -> None:
    async def t(port: int) -> None:
        status, headers, body = await exchange(port, raw)
        assert status == 400
        error = gdapi_error(status, headers, body)
        assert error["code"] == "BadRequest" and error["detail"]
        status, _, body = await exchange(port, b"GET /v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200 and json.loads(body)["type"] == "apiVersion"

    with_listener(FakeNode(), t)


def test_a_failure_past_the_api_guard_is_a_gdapi_error() -> None:
    async def t(port: int) -> None:
        status, headers, body = await exchange(port, b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 500 and gdapi_error(status, headers, body)["code"] == "SERVER_ERROR"

    with_listener(FakeNode(request_heap="3m", xmx="64m"), t)  # the fake's modelled OOM does not exit


class ProjectRows:
    """A database whose every list query answers with the same project rows (its LIMIT applied)."""

    ROWS: ClassVar[list[dict[str, Any]]] = [
        {
            "id": i,
            "name": f"p{i}" if i > 1 else "Default",
            "account_id": None,
            "kind": "project",
            "uuid": f"uuid-{i}",
            "description": None if i > 1 else "Default project",
            "state": "active" if i != 3 else "activating",
            "created": dt.datetime(2026, 12, 1, 11, 48, 31, 745389 - i),
            "removed": None,
            "remove_time": None,
            "data": "{}" if i != 2 else '{"transitioningMessage": "é \\"quoted\\" \\u2028"}',
        }
        for i in range(1, 6)
    ]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self, *args)

    def cursor(self, cls: Any = None) -> Any:
        rows = self.ROWS

        class Cursor:
            """As the drivers' cursors: rows as dicts with a DictCursor, else as tuples."""

            description = tuple((name, None, None, None, None, None, None) for name in rows[0])

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def execute(self, sql: str, args: Any) -> None:
                limit, offset = args[-2:]
                page = rows[offset : offset + limit]
                self.rows = [dict(r) if cls is not None else tuple(r.values()) for r in page]

            def fetchall(self) -> list[Any]:
                return self.rows

        return Cursor()


def test_a_list_is_its_document_encoded_whole_and_its_rows_as_a_read_renders_them() -> None:
    """Byte for byte: a list's body is what encoding its whole document at once gives, its rows are
    rendered as a read of each renders them, and a second answer (cached row bodies) is the same."""
    from lab.server import gdapi
    from lab.server.resources import RESOURCE_TYPES

    paths = ("/v1/projects?limit=3", "/v1/projects?limit=3", "/v1/projects?limit=2&marker=m2&sort=name")
    rt = RESOURCE_TYPES["project"]
    node = FakeNode()
    node.db = ProjectRows()  # type: ignore[assignment]
    answers: list[bytes] = []

    async def t(port: int) -> None:
        for path in paths:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: h:8080\r\nConnection: close\r\n\r\n".encode())
            answers.append(await reader.read())
            writer.close()

    with_listener(node, t)
    heads, bodies = zip(*(a.partition(b"\r\n\r\n")[::2] for a in answers), strict=True)
    assert bodies[0] == bodies[1]
    for body, offset in zip(bodies, (0, 0, 2), strict=True):
        doc = json.loads(body)
        assert gdapi.dumps(doc) == body
        expected = [
            json.loads(gdapi.dumps(gdapi.resource_body(rt, store.values(rt, row, node.ctx), "http://h:8080")))
            for row in ProjectRows.ROWS[offset : offset + len(doc["data"])]
        ]
        assert doc["data"] == expected and doc["pagination"]["partial"] is True
    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert {line.partition(b": ")[0] for line in lines[1:]} == {
        b"Content-Type",
        b"Content-Length",
        b"X-Rancher-Node",
        b"X-API-Schemas",
        b"Server",
        b"Date",
        b"Connection",
    }
    assert b"X-API-Schemas: http://h:8080/v1/schemas" in lines and b"Content-Type: application/json" in lines


def test_a_list_target_answered_again_gets_the_envelope_of_the_rows_it_gets_now() -> None:
    """A target's parsed query and envelopes are kept (api._ListShape): the same target answered
    with a page that has more after it, then with a last page, then again with more."""
    from lab.server import gdapi

    node = FakeNode()
    db = ProjectRows()
    node.db = db  # type: ignore[assignment]
    docs: list[dict[str, Any]] = []

    async def t(c: TestClient) -> None:
        for rows in (ProjectRows.ROWS, ProjectRows.ROWS[:2], ProjectRows.ROWS):
            db.ROWS = rows  # type: ignore[misc]
            r = await c.get("/v1/projects?limit=3", headers={"Host": "h:8080"})
            body = await r.read()
            assert r.status == 200 and gdapi.dumps(json.loads(body)) == body
            docs.append(json.loads(body))

    with_client(node, t)
    assert [len(d["data"]) for d in docs] == [3, 2, 3]
    assert [d["pagination"]["partial"] for d in docs] == [True, False, True]
    assert docs[0]["pagination"]["next"] == "http://h:8080/v1/projects?limit=3&sort=id&order=asc&marker=m3"
    assert docs[1]["pagination"]["next"] is None and docs[2] == docs[0]


def test_the_api_server_runs_on_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.server import main

    policies: list[Any] = []
    monkeypatch.setattr(asyncio, "set_event_loop_policy", policies.append)

    class FakeUvloop:
        EventLoopPolicy = object

    def import_module(name: str) -> Any:
        assert name == "uvloop"
        if not policies and getattr(import_module, "missing", False):
            raise ImportError(name)
        return FakeUvloop

    monkeypatch.setattr(main.importlib, "import_module", import_module)
    assert main.use_uvloop() == "uvloop" and len(policies) == 1
    import_module.missing = True  # type: ignore[attr-defined]
    policies.clear()
    assert main.use_uvloop() == "asyncio" and policies == []


def test_freed_memory_is_kept_where_the_c_library_has_mallopt() -> None:
    from lab.server import main

    assert main.keep_freed_memory() is (sys.platform == "linux" and platform.libc_ver()[0] == "glibc")


def test_an_exhausted_pool_still_answers_503_pool_exhausted() -> None:
    """Through the node's Database (its worker threads and pool) with a one-connection pool: while a
    list holds the connection, the next waits MAXWAIT and gets 503 POOL_EXHAUSTED."""
    import threading

    from lab.server import db

    class Blocking(db.Database):
        def _open(self) -> Any:
            return BlockingRows()

    class BlockingRows(ProjectRows):
        entered = threading.Event()
        release = threading.Event()

        def cursor(self, cls: Any = None) -> Any:
            self.entered.set()
            self.release.wait(5)
            return super().cursor(cls)

    node = FakeNode()
    cfg = from_env({"CATTLE_DB_CATTLE_MAXTOTAL": "1", "CATTLE_DB_CATTLE_MAXWAIT": "100"})

    async def t(c: TestClient) -> None:
        node.db = Blocking(cfg, asyncio.get_running_loop())  # type: ignore[assignment]
        try:
            first = asyncio.ensure_future(c.get("/v1/projects?limit=2"))
            while not BlockingRows.entered.is_set():
                await asyncio.sleep(0.005)
            r = await c.get("/v1/projects?limit=2")
            error = await r.json()
            assert (r.status, error["code"]) == (503, "POOL_EXHAUSTED")
            assert "all 1 database connections" in error["message"]
            BlockingRows.release.set()
            r = await first
            assert r.status == 200 and len((await r.json())["data"]) == 2
            assert node.db.pool_stats().exhausted_total == 1  # type: ignore[attr-defined]
        finally:
            BlockingRows.release.set()
            node.db.close()  # type: ignore[attr-defined]

    with_client(node, t)


@pytest.mark.parametrize(
    ("error", "code"),
    [("DatabaseUnavailable", "DATABASE_UNAVAILABLE"), ("TooManyConnections", "TOO_MANY_CONNECTIONS")],
)
def test_a_database_failure_on_a_list_is_a_503_and_its_working_memory_is_freed(error: str, code: str) -> None:
    from lab.server import db

    class Failing:
        async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
            raise getattr(db, error)("(2013) Lost connection to server during query")

    node = FakeNode()
    node.db = Failing()  # type: ignore[assignment]

    async def t(c: TestClient) -> None:
        r = await c.get("/v1/projects?limit=2")
        body = await r.json()
        assert (r.status, body["code"], body["message"]) == (503, code, "(2013) Lost connection to server during query")
        assert r.headers["X-Rancher-Node"] == "a1"

    with_client(node, t)
    assert node.heap.inflight_bytes == 0 and node.requests.counts == {("GET", 503): 1}
