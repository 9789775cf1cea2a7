"""The HTTP API on port 8080: /ping, /v1 (gdapi), /v1/scripts, /metrics, /status.json.

Every response carries `X-Rancher-Node` and `X-API-Schemas`. Writes are acknowledged only after
their COMMIT under the resource's lock (processes.py). With the profile's state gate (tuned) a
node that is not active answers `/ping` with 503 and refuses writes with 503; without it
(rancher-1.0, like dropwizard's PingServlet) `/ping` is always `200 pong` and writes are tried.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import agents, gdapi, inputs, store
from .auth import Principal, hash_secret, new_key_pair
from .coord import NoQuorum
from .db import DatabaseUnavailable, TooManyConnections
from .gdapi import ApiError
from .heap import Allocation, OutOfMemory
from .pool import PoolExhausted
from .processes import no_session_error
from .resources import AGENT, BY_COLLECTION, RESOURCE_TYPES, ResourceType, is_transitioning
from .responses import error_response, json_response

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("halab.api")

MAX_BODY = 1 << 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The request's working-memory allocations (heap.py); _guarded and the handler share one task.
_ALLOCATIONS: contextvars.ContextVar[list[Allocation]] = contextvars.ContextVar("allocations")


_HTTP_CODES = {
    400: "InvalidBodyContent",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NOT_FOUND",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
}


class Api:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._bases: dict[tuple[str, str, str, str], str] = {}
        self._v1 = gdapi.dumps(gdapi.api_version())
        self._schemas = gdapi.dumps(gdapi.schema_collection())
        self._schema_by_id = {s["id"]: gdapi.dumps(s) for s in gdapi.all_schemas()}
        # A row's body is a function of its columns, the base URL and the node's context alone, and
        # most rows of a list are the same from one request to the next: each is rendered once (a
        # few MB at most). The cache is this node's, so that its context stays out of every key.
        self._row_body = functools.lru_cache(maxsize=4096)(self._render_row)
        # A list request's parsed query and envelopes, by what determines them: the base URL and the
        # request target as sent (its query, and for a child list its parent's id). Parsing them
        # (yarl's query, parse_list_query) cost the one API thread as much as rendering a page.
        self._list_shapes: dict[tuple[str, str], _ListShape] = {}
        self._unrouted_resource: web.AbstractResource | None = None  # app()'s last route

    # -- plumbing ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """No aiohttp middleware: every route's handler is wrapped in `_guarded` instead, and a last
        route takes what no other does. aiohttp 3.8 rebuilds an app's middleware chain on every
        request (a partial and functools.update_wrapper per middleware, its own current-app one
        included) and tries the routes in order: with the list ninth, the two cost a sixth of the
        API thread's Python time on a list (cProfile; issue 18)."""
        app = web.Application(client_max_size=MAX_BODY)
        app.on_response_prepare.append(self._headers)
        r = app.router
        guard = self._guard
        # aiohttp 3.8 tries an app's routes in order: the hot ones early, a route before any it shadows.
        r.add_get("/ping", guard(self.ping))
        r.add_get("/v1/schemas", guard(self.schemas))
        r.add_get("/v1/schemas/{id}", guard(self.schema))
        r.add_get("/v1/scripts/{token}", guard(self.get_script))
        r.add_post("/v1/scripts/{token}", guard(self.register))
        r.add_get("/v1/{coll}", guard(self.list))
        r.add_post("/v1/{coll}", guard(self.create))
        r.add_get("/v1/{coll}/{id}", guard(self.get))
        r.add_put("/v1/{coll}/{id}", guard(self.update))
        r.add_delete("/v1/{coll}/{id}", guard(self.delete))
        r.add_post("/v1/{coll}/{id}", guard(self.action))
        r.add_get("/v1/{coll}/{id}/{link}", guard(self.children))
        r.add_get("/v1", guard(self.root))
        r.add_get("/v1/", guard(self.root))
        r.add_get("/metrics", guard(self.metrics))
        r.add_get("/status.json", guard(self.status))
        self._unrouted_resource = r.add_route("*", "/{path:.*}", guard(self._unrouted)).resource
        return app

    def _guard(self, handler: Handler) -> Handler:
        return functools.partial(self._guarded, handler=handler)

    async def _unrouted(self, request: web.Request) -> web.StreamResponse:
        """What aiohttp's router answers where no route takes a request: 405 if a route takes its
        path with another method, else 404; raised for `_guarded` to answer as any other error."""
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not self._unrouted_resource:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    def base(self, request: web.Request) -> str:
        h = request.headers
        key = (
            h.get("Host", ""),
            h.get("X-Forwarded-Host", ""),
            h.get("X-Forwarded-Proto", ""),
            h.get("X-Forwarded-Port", ""),
        )
        base = self._bases.get(key)
        if base is None:
            base = gdapi.base_url(h, request.scheme, f"127.0.0.1:{self.node.cfg.api_port}")
            if len(self._bases) > 1000:
                self._bases.clear()
            self._bases[key] = base
        return base

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Rancher-Node"] = self.node.cfg.node_name
        response.headers["X-API-Schemas"] = self.base(request) + "/v1/schemas"

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """`handler`'s answer, its errors as gdapi errors; the request's modelled working memory
        (heap.py) held meanwhile, and its metrics."""
        start = time.perf_counter()
        heap = self.node.heap
        allocs: list[Allocation] = []
        try:
            pause = heap.gc_pause()
            if pause:
                await asyncio.sleep(pause)
            if (request.content_length or 0) > MAX_BODY:  # refused unread, not allocated: not an OOM
                raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length or 0)
            allocs.append(heap.allocate(self.node.cfg.request_heap_bytes + (request.content_length or 0)))
            _ALLOCATIONS.set(allocs)
            response = await handler(request)
        except OutOfMemory as e:
            self.node.die_of_oom(e)
            raise
        except ApiError as e:
            response = error_response(e)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = _HTTP_CODES.get(e.status, "HTTP_ERROR")
            response = error_response(ApiError(e.status, code, e.reason))
        except PoolExhausted as e:
            response = error_response(ApiError(503, "POOL_EXHAUSTED", str(e)))
        except TooManyConnections as e:
            response = error_response(ApiError(503, "TOO_MANY_CONNECTIONS", str(e)))
        except DatabaseUnavailable as e:
            response = error_response(ApiError(503, "DATABASE_UNAVAILABLE", str(e)))
        except NoQuorum as e:
            response = error_response(no_session_error(self.node.cfg.profile.lock_no_session_status, str(e)))
        except Exception:  # answer 500 and keep serving (logged with its traceback)
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(ApiError(500, "SERVER_ERROR", "internal error"))
        finally:
            for a in allocs:
                heap.free(a)
        if not request.content.at_eof():
            # Answered without reading the whole body (413, 405, 404...): close the connection. Kept
            # alive, aiohttp 3.8 leaves reading paused once an unread body fills its buffer, and the
            # next request the load balancer sends on this connection hangs (a 504 after 30 s).
            response.force_close()
        self.node.requests.observe(request.method, response.status, time.perf_counter() - start)
        return response

    def _account(self, body: bytes) -> bytes:
        """Response bodies are working memory while the request is in flight."""
        if len(body) > 4096:
            _ALLOCATIONS.get().append(self.node.heap.allocate(len(body)))
        return body

    async def _principal(self, request: web.Request) -> Principal:
        return await self.node.auth.authenticate(request.headers.get("Authorization"))

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()  # raises 413 above client_max_size
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
            # Escapes like \ud800 decode to lone surrogates, which no encoder (nor MySQL) takes.
            json.dumps(body, ensure_ascii=False).encode()
        except (ValueError, RecursionError):  # Unicode errors are ValueErrors; RecursionError: nesting
            raise ApiError(400, "InvalidBodyContent", "the request body is not valid JSON") from None
        return body

    def _type(self, request: web.Request) -> ResourceType:
        rt = BY_COLLECTION.get(request.match_info["coll"].lower())
        if rt is None:
            raise ApiError(404, "NOT_FOUND", f"no collection {request.match_info['coll']!r}")
        return rt

    def _id(self, rt: ResourceType, text: str) -> int:
        rid = rt.parse_id(text)
        if rid is None:
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"{rt.name} {text} not found")
        return rid

    @staticmethod
    def _only_users(principal: Principal) -> None:
        if principal.kind == "agent":
            raise ApiError(403, "Forbidden", "agent credentials may only check in")

    # -- health, metrics, status ---------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        if self.node.sm.active or not self.node.cfg.profile.ping_gate:
            return web.Response(text="pong", content_type="text/plain")
        return web.Response(text=self.node.sm.state.value, status=503, content_type="text/plain")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.node.metrics_text().encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def status(self, request: web.Request) -> web.Response:
        return json_response(gdapi.dumps(self.node.status()))

    # -- gdapi ---------------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        await self._principal(request)
        return json_response(gdapi.fill(self._v1, self.base(request)))

    async def schemas(self, request: web.Request) -> web.Response:
        await self._principal(request)
        return json_response(gdapi.fill(self._schemas, self.base(request)))

    async def schema(self, request: web.Request) -> web.Response:
        await self._principal(request)
        tpl = self._schema_by_id.get(request.match_info["id"])
        if tpl is None:
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"schema {request.match_info['id']} not found")
        return json_response(gdapi.fill(tpl, self.base(request)))

    def _render(self, rt: ResourceType, row: dict[str, Any], base: str, **extra: Any) -> bytes:
        values = store.values(rt, row, self.node.ctx)
        values.update(extra)
        return gdapi.dumps(gdapi.resource_body(rt, values, base))

    def _render_row(self, type_name: str, base: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> bytes:
        """A listed row's body, cached under a key of two tuples (its column names, the same for
        every row of a table, and its values) rather than one pair per column, naming the type
        rather than holding it (a ResourceType holds dicts: it cannot be a key)."""
        return self._render(RESOURCE_TYPES[type_name], dict(zip(columns, values, strict=True)), base)

    async def get(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        rid = self._id(rt, request.match_info["id"])
        principal = await self._principal(request)
        if principal.kind == "agent" and not (rt is AGENT and principal.agent_id == rid):
            raise ApiError(403, "Forbidden", "agent credentials may only read their own agent")
        base = self.base(request)
        if rt.cacheable and self.node.cfg.profile.cache_reads:
            tpl = self.node.cache.get((rt.name, rid))
            if tpl is not None:
                return json_response(gdapi.fill(tpl, base))
        tpl = await self.node.db.run(self._read_template, rt, rid)
        if tpl is None:
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"{rt.name} {rt.format_id(rid)} not found")
        return json_response(gdapi.fill(tpl, base))

    def _read_template(self, conn: Any, rt: ResourceType, rid: int) -> bytes | None:
        """Read one resource; fill the cache if it is settled (see cache.py for the protocol)."""
        node = self.node
        key = (rt.name, rid)
        fill = rt.cacheable and node.cfg.profile.cache_reads and node.coord.connected
        watched = False
        if fill:
            node.cache.begin_fill(key)
            # Over Redis, resource.change events invalidate (processes.py); else a ZooKeeper watch.
            watched = node.engine.bus is not None or node.coord.watch(rt.name, rid, lambda: node.cache.invalidate(key))
        template = None
        settled = False
        try:
            row = store.read_row(conn, rt, rid)
            if row is not None:
                template = self._render(rt, row, gdapi.BASE)
                # only cacheable types have a state to settle (process instances have none)
                settled = fill and is_transitioning(row["state"]) == "no" and row["state"] != "removed"
        finally:
            if fill:
                node.cache.finish_fill(key, template if watched and settled else None)
        if fill and settled and not watched:
            node.coord.ensure(rt.name, rid)  # watchable, hence cacheable, next time
        return template

    async def list(self, request: web.Request, parent: tuple[str, str] | None = None) -> web.Response:
        rt = self._type(request) if parent is None else RESOURCE_TYPES[parent[0]]
        self._only_users(await self._principal(request))
        base = self.base(request)
        key = (base, request.raw_path)
        shape = self._list_shapes.get(key)
        if shape is None:
            shape = self._list_shape(request, rt, base, parent)
            if len(self._list_shapes) >= 256:
                self._list_shapes.clear()
            self._list_shapes[key] = shape
        columns, rows, more = await self.node.db.run(store.list_rows, rt, shape.query)
        head, tail = shape.envelope(more)
        row_body = self._row_body
        name = rt.name
        data = b",".join([row_body(name, base, columns, row) for row in rows])
        return json_response(self._account(head + data + tail))

    @staticmethod
    def _list_shape(request: web.Request, rt: ResourceType, base: str, parent: tuple[str, str] | None) -> _ListShape:
        params = tuple(request.query.items())
        q = store.parse_list_query(rt, params)
        if parent is not None:
            f = rt.field(parent[1])
            assert f is not None
            q = store.ListQuery(
                (*q.conditions, store.Condition(f, "eq", request.match_info["id"])), q.sort, q.order, q.limit, q.offset
            )
        return _ListShape(rt.name, f"{base}{request.path}", base, params, q)

    async def children(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        link = request.match_info["link"]
        if link not in rt.children:
            raise ApiError(404, "NOT_FOUND", f"{rt.name} has no link {link!r}")
        self._id(rt, request.match_info["id"])
        return await self.list(request, parent=rt.children[link])

    # -- writes --------------------------------------------------------------------------------

    def _require_active(self) -> None:
        sm = self.node.sm
        if self.node.cfg.profile.state_gate and not sm.active:
            raise ApiError(
                503, "NOT_ACTIVE", f"this node is {sm.state.value} and refuses writes", "; ".join(sm.reasons)
            )

    async def create(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        self._only_users(await self._principal(request))
        if not rt.creatable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} cannot be created through the API")
        body = await self._body(request)
        self._require_active()
        changes = inputs.for_create(rt, body, self.node.default_project_id if rt.account_scoped else None)
        extra: dict[str, Any] = {}
        if rt.name == "registrationToken":
            changes.columns["public_value"] = agents.new_token()
        elif rt.name == "apiKey":
            public, secret = new_key_pair()
            changes.columns["public_value"] = public
            changes.columns["secret_value"] = hash_secret(secret)
            extra["secretValue"] = secret
        engine = self.node.engine
        row = await engine.write(engine.create_txn, rt, changes)
        await engine.dispatch(rt.name, int(row["id"]))
        return json_response(self._render(rt, row, self.base(request), **extra), 201)

    async def update(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        rid = self._id(rt, request.match_info["id"])
        self._only_users(await self._principal(request))
        if not rt.updatable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} cannot be updated")
        body = await self._body(request)
        self._require_active()
        return await self._change(request, rt, rid, "update", inputs.for_update(rt, body))

    async def delete(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        rid = self._id(rt, request.match_info["id"])
        self._only_users(await self._principal(request))
        if not rt.deletable:
            raise ApiError(405, "MethodNotAllowed", f"{rt.plural} cannot be deleted")
        self._require_active()
        return await self._change(request, rt, rid, "remove", None)

    async def _change(
        self, request: web.Request, rt: ResourceType, rid: int, action: str, changes: inputs.Changes | None
    ) -> web.Response:
        engine = self.node.engine
        row = await engine.write(engine.change_txn, rt, rid, action, changes)
        self.node.cache.invalidate((rt.name, rid))
        await engine.changed(rt.name, rid)
        if row["state"] != "removed":
            await engine.dispatch(rt.name, rid)
        return json_response(self._render(rt, row, self.base(request)))

    async def action(self, request: web.Request) -> web.Response:
        rt = self._type(request)
        rid = self._id(rt, request.match_info["id"])
        name = request.query.get("action", "")
        if name not in rt.actions:
            raise ApiError(404, "InvalidAction", f"{rt.name} has no action {name!r}")
        principal = await self._principal(request)
        if principal.kind == "anonymous":
            raise ApiError(401, "Unauthorized", "check-ins need the agent's credentials")
        if principal.kind != "agent" or principal.agent_id != rid:
            raise ApiError(403, "Forbidden", "only the agent itself may check in")
        await self._body(request)
        self._require_active()
        row = await self.node.engine.write(agents.checkin_txn, self.node.engine, rid)
        return json_response(self._render(rt, row, self.base(request)))

    # -- agent registration --------------------------------------------------------------------

    async def get_script(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        await self.node.db.run(agents.find_token, token)
        return web.Response(text=agents.script(token, self.node.cfg.registration_url), content_type="text/plain")

    async def register(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(422, "InvalidFormat", "the request body must be a JSON object")
        hostname = body.get("hostname")
        host_uuid = body.get("uuid")
        if not isinstance(hostname, str) or not hostname or len(hostname) > 255:
            raise ApiError(422, "MissingRequired", "hostname is required", field_name="hostname")
        if host_uuid is not None and (not isinstance(host_uuid, str) or not 0 < len(host_uuid) <= 128):
            raise ApiError(422, "InvalidFormat", "uuid must be a string of at most 128 characters", field_name="uuid")
        self._require_active()
        engine = self.node.engine
        reg, created = await engine.write(agents.register_txn, engine, request.match_info["token"], hostname, host_uuid)
        if created:
            await engine.dispatch("agent", AGENT.parse_id(reg["agentId"]) or 0)
            await engine.dispatch("host", RESOURCE_TYPES["host"].parse_id(reg["hostId"]) or 0)
        base = self.base(request)
        reg["checkinUrl"] = f"{base}/v1/agents/{reg['agentId']}?action=checkin"
        reg["links"] = {
            "host": f"{base}/v1/hosts/{reg['hostId']}",
            "agent": f"{base}/v1/agents/{reg['agentId']}",
        }
        return json_response(gdapi.dumps(reg), 201 if created else 200)


# A list's body is its envelope with its rows' bodies spliced in where this token stands
# (unguessable, so no client value can be mistaken for it): the same bytes as encoding it whole.
_ROWS = gdapi.dumps(f"@@halab-rows-{secrets.token_hex(8)}@@")


class _ListShape:
    """What a list request's target and base URL determine: its query and, encoded once for a page
    that has more after it and once for a last page, its envelope (links, pagination, sort,
    filters): the JSON before and after its rows. Its URL encoding cost as much as rendering ten
    rows."""

    __slots__ = ("_envelopes", "base", "params", "query", "type_name", "url")

    def __init__(
        self, type_name: str, url: str, base: str, params: tuple[tuple[str, str], ...], query: store.ListQuery
    ) -> None:
        self.type_name = type_name
        self.url = url
        self.base = base
        self.params = params
        self.query = query
        self._envelopes: dict[bool, tuple[bytes, bytes]] = {}

    def envelope(self, more: bool) -> tuple[bytes, bytes]:
        envelope = self._envelopes.get(more)
        if envelope is None:
            envelope = _collection(self.type_name, self.url, self.base, self.params, self.query, more)
            self._envelopes[more] = envelope
        return envelope


def _collection(
    type_name: str, url: str, base: str, params: tuple[tuple[str, str], ...], q: store.ListQuery, more: bool
) -> tuple[bytes, bytes]:
    rt = RESOURCE_TYPES[type_name]  # by name: a ResourceType holds dicts, so it cannot be a cache key
    keep = [(k, v) for k, v in params if k not in ("marker", "sort", "order")]
    pagination = {
        "first": gdapi.query_url(url, [*keep, ("sort", q.sort), ("order", q.order)]) if q.offset else None,
        "previous": None,
        "next": gdapi.query_url(
            url, [*keep, ("sort", q.sort), ("order", q.order), ("marker", f"m{q.offset + q.limit}")]
        )
        if more
        else None,
        "limit": q.limit,
        "total": None,
        "partial": more,
    }
    if q.offset:
        prev = max(0, q.offset - q.limit)
        pagination["previous"] = gdapi.query_url(
            url, [*keep, ("sort", q.sort), ("order", q.order), ("marker", f"m{prev}")]
        )
    reverse = "desc" if q.order == "asc" else "asc"
    filters: dict[str, Any] = {f.name: None for f in rt.all_fields() if f.filter}
    for c in q.conditions:
        filters.setdefault(c.field.name, None)
        filters[c.field.name] = (filters[c.field.name] or []) + [{"modifier": c.modifier, "value": c.value}]
    body = gdapi.collection_body(
        rt.name,
        gdapi.query_url(url, params),
        [json.loads(_ROWS)],
        create_types={rt.name: gdapi.collection_url(rt, base)} if rt.creatable else {},
        sort_links={s: gdapi.query_url(url, [("sort", s)]) for s in store.SORTABLE},
        pagination=pagination,
        sort={
            "name": q.sort,
            "order": q.order,
            "reverse": gdapi.query_url(url, [*keep, ("sort", q.sort), ("order", reverse)]),
        },
        filters=filters,
    )
    head, _, tail = gdapi.dumps(body).partition(_ROWS)
    return head, tail
