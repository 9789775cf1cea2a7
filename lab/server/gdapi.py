"""gdapi v1 shapes: apiVersion, schema, collection, resource and error bodies, and base URLs.

Links are absolute and follow the request (Host / X-Forwarded-Host, X-Forwarded-Proto,
X-Forwarded-Port), so they work through the load balancer on 80 and 443. Bodies meant for reuse
(the cache, /v1, /v1/schemas) are rendered once with `BASE` standing for the base URL and filled
per request with one bytes.replace: the hot read path does no JSON encoding.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from .resources import RESOURCE_TYPES, ResourceType

# Unguessable, so a client-chosen field value can never be mistaken for it.
BASE = f"@@halab-base-{secrets.token_hex(8)}@@"
_BASE_BYTES = BASE.encode()
_HOST_OK = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_DEFAULT_PORT = {"http": "80", "https": "443"}

# Types that are shapes rather than stored resources; listed in /v1/schemas like gdapi does.
_META_TYPES: dict[str, dict[str, Any]] = {
    "apiVersion": {},
    "collection": {},
    "error": {
        "status": {"type": "int"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "detail": {"type": "string"},
        "fieldName": {"type": "string"},
    },
    "agentRegistration": {
        "hostId": {"type": "reference[host]"},
        "agentId": {"type": "reference[agent]"},
        "accessKey": {"type": "string"},
        "secretKey": {"type": "password"},
        "checkinUrl": {"type": "string"},
        "checkinInterval": {"type": "int"},
    },
}


class ApiError(Exception):
    """An error answered to the client as a gdapi error body."""

    def __init__(
        self, status: int, code: str, message: str, detail: str | None = None, field_name: str | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.field_name = field_name

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.code,
            "type": "error",
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
        }
        if self.field_name is not None:
            out["fieldName"] = self.field_name
        return out


def base_url(headers: Mapping[str, str], scheme: str, fallback_host: str) -> str:
    """`proto://host[:port]` as the client addressed us, through any proxy."""
    proto = (headers.get("X-Forwarded-Proto") or scheme or "http").split(",")[0].strip().lower()
    if proto not in _DEFAULT_PORT:
        proto = "http"
    host = (headers.get("X-Forwarded-Host") or headers.get("Host") or "").split(",")[0].strip()
    if not _HOST_OK.match(host):
        host = fallback_host
    fwd_port = (headers.get("X-Forwarded-Port") or "").split(",")[0].strip()
    if fwd_port.isdigit():
        # The proxy's port wins over whatever port the Host header may carry.
        name = host.rsplit(":", 1)[0] if not host.endswith("]") and ":" in host else host
        host = name if fwd_port == _DEFAULT_PORT[proto] else f"{name}:{fwd_port}"
    return f"{proto}://{host}"


def fill(template: bytes, base: str) -> bytes:
    return template.replace(_BASE_BYTES, base.encode())


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def collection_url(rt: ResourceType, base: str = BASE) -> str:
    return f"{base}/v1/{rt.collection}"


def api_version(base: str = BASE) -> dict[str, Any]:
    links = {"self": f"{base}/v1", "schemas": f"{base}/v1/schemas"}
    for rt in RESOURCE_TYPES.values():
        links[rt.collection] = collection_url(rt, base)
    return {"id": "v1", "type": "apiVersion", "links": links, "actions": {}}


def schema(rt: ResourceType, base: str = BASE) -> dict[str, Any]:
    coll_methods = ["GET"] + (["POST"] if rt.creatable else [])
    res_methods = ["GET"] + (["PUT"] if rt.updatable else []) + (["DELETE"] if rt.deletable else [])
    filters = {f.name: {"modifiers": ["eq", "ne"]} for f in rt.all_fields() if f.filter}
    return {
        "id": rt.name,
        "type": "schema",
        "links": {"self": f"{base}/v1/schemas/{rt.name}", "collection": collection_url(rt, base)},
        "actions": {},
        "pluralName": rt.plural,
        "resourceMethods": res_methods,
        "resourceFields": {f.name: f.schema() for f in rt.all_fields()},
        "resourceActions": {name: {"input": a.input, "output": a.output} for name, a in rt.actions.items()},
        "collectionMethods": coll_methods,
        "collectionActions": {},
        "collectionFields": {},
        "collectionFilters": filters,
    }


def _meta_schema(name: str, fields: Mapping[str, Any], base: str) -> dict[str, Any]:
    links = {"self": f"{base}/v1/schemas/{name}"}
    methods: list[str] = []
    if name == "schema":
        links["collection"] = f"{base}/v1/schemas"
        methods = ["GET"]
    return {
        "id": name,
        "type": "schema",
        "links": links,
        "actions": {},
        "pluralName": name + "s",
        "resourceMethods": methods,
        "resourceFields": dict(fields),
        "resourceActions": {},
        "collectionMethods": methods,
        "collectionActions": {},
        "collectionFields": {},
        "collectionFilters": {},
    }


def all_schemas(base: str = BASE) -> list[dict[str, Any]]:
    out = [schema(rt, base) for rt in RESOURCE_TYPES.values()]
    out.append(_meta_schema("schema", {"id": {"type": "string"}, "pluralName": {"type": "string"}}, base))
    out.extend(_meta_schema(name, fields, base) for name, fields in _META_TYPES.items())
    return out


def schema_collection(base: str = BASE) -> dict[str, Any]:
    return collection_body(
        "schema",
        f"{base}/v1/schemas",
        all_schemas(base),
        create_types={},
        sort_links={},
        pagination=None,
        sort=None,
        filters={},
    )


def collection_body(
    resource_type: str,
    self_url: str,
    data: Sequence[Any],
    *,
    create_types: Mapping[str, str],
    sort_links: Mapping[str, str],
    pagination: Mapping[str, Any] | None,
    sort: Mapping[str, Any] | None,
    filters: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "type": "collection",
        "resourceType": resource_type,
        "links": {"self": self_url},
        "createTypes": dict(create_types),
        "actions": {},
        "data": list(data),
        "sortLinks": dict(sort_links),
        "pagination": dict(pagination) if pagination is not None else None,
        "sort": dict(sort) if sort is not None else None,
        "filters": dict(filters),
        "createDefaults": {},
    }


def resource_body(rt: ResourceType, values: Mapping[str, Any], base: str = BASE) -> dict[str, Any]:
    """A resource: id, type, links (self, children, references), actions, then its fields."""
    rid = values["id"]
    self_url = f"{base}/v1/{rt.collection}/{rid}"
    links = {"self": self_url}
    for link in rt.children:
        links[link] = f"{self_url}/{link}"
    for f in rt.all_fields():
        target = f.reference
        value = values.get(f.name)
        if target and value and f.name.endswith("Id"):
            links[f.name[:-2]] = f"{base}/v1/{RESOURCE_TYPES[target].collection}/{value}"
    actions = {name: f"{self_url}?action={name}" for name in rt.actions}
    body: dict[str, Any] = {"id": rid, "type": rt.name, "links": links, "actions": actions}
    for k, v in values.items():
        if k != "id":
            body[k] = v
    return body


def query_url(url: str, params: Iterable[tuple[str, str]]) -> str:
    q = urlencode(list(params))
    return f"{url}?{q}" if q else url
