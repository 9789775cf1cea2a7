"""gdapi shapes (apiVersion, schema, collection, resource, error), base URLs, input validation,
and that Rancher's own Python client binds its methods from our schemas."""

from __future__ import annotations

import json
from typing import Any

import cattle
import pytest

from lab.server import gdapi, inputs, store
from lab.server.gdapi import ApiError
from lab.server.resources import PROJECT, RESOURCE_TYPES, SERVICE

BASE = "http://lb.example:8080"

SCHEMA_KEYS = {
    "id",
    "type",
    "links",
    "pluralName",
    "resourceMethods",
    "resourceFields",
    "resourceActions",
    "collectionMethods",
    "collectionActions",
    "collectionFields",
    "collectionFilters",
}
COLLECTION_KEYS = {
    "type",
    "resourceType",
    "links",
    "data",
    "createTypes",
    "actions",
    "sortLinks",
    "pagination",
    "sort",
    "filters",
    "createDefaults",
}


def test_api_version_links_every_collection() -> None:
    body = gdapi.api_version(BASE)
    assert body["type"] == "apiVersion" and body["id"] == "v1"
    assert body["links"]["self"] == f"{BASE}/v1"
    assert body["links"]["schemas"] == f"{BASE}/v1/schemas"
    for rt in RESOURCE_TYPES.values():
        assert body["links"][rt.collection] == f"{BASE}/v1/{rt.collection}"


def test_schema_collection_shape() -> None:
    body = gdapi.schema_collection(BASE)
    assert body.keys() >= COLLECTION_KEYS
    assert body["type"] == "collection" and body["resourceType"] == "schema"
    ids = {s["id"] for s in body["data"]}
    assert {
        "project",
        "host",
        "registrationToken",
        "environment",
        "service",
        "container",
        "apiKey",
        "agent",
        "schema",
        "error",
        "apiVersion",
        "collection",
    } <= ids
    for s in body["data"]:
        assert s.keys() >= SCHEMA_KEYS and s["type"] == "schema"


def test_project_schema_methods_and_fields() -> None:
    s = gdapi.schema(PROJECT, BASE)
    assert s["links"] == {"self": f"{BASE}/v1/schemas/project", "collection": f"{BASE}/v1/projects"}
    assert s["collectionMethods"] == ["GET", "POST"]
    assert s["resourceMethods"] == ["GET", "PUT", "DELETE"]
    assert s["resourceFields"]["name"]["create"] is True
    assert s["resourceFields"]["transitioning"]["options"] == ["yes", "no", "error"]
    assert s["collectionFilters"]["name"] == {"modifiers": ["eq", "ne"]}
    agent = gdapi.schema(RESOURCE_TYPES["agent"], BASE)
    assert agent["resourceActions"] == {"checkin": {"input": None, "output": "agent"}}
    assert "POST" not in agent["collectionMethods"]


def test_resource_shape_links_and_actions() -> None:
    values = {
        "id": "1s4",
        "name": "web",
        "state": "active",
        "transitioning": "no",
        "transitioningMessage": None,
        "environmentId": "1e2",
        "accountId": "1a5",
    }
    body = gdapi.resource_body(SERVICE, values, BASE)
    assert body["id"] == "1s4" and body["type"] == "service"
    assert body["links"]["self"] == f"{BASE}/v1/services/1s4"
    assert body["links"]["environment"] == f"{BASE}/v1/environments/1e2"
    assert body["links"]["account"] == f"{BASE}/v1/projects/1a5"
    assert body["actions"] == {}
    assert body["state"] == "active" and body["transitioning"] == "no"
    agent = gdapi.resource_body(RESOURCE_TYPES["agent"], {"id": "1ag3"}, BASE)
    assert agent["actions"]["checkin"] == f"{BASE}/v1/agents/1ag3?action=checkin"


def test_error_shape() -> None:
    e = ApiError(404, "RESOURCE_NOT_FOUND", "project 1a9 not found")
    body = e.body()
    assert body["type"] == "error" and body["status"] == 404
    assert body["code"] == "RESOURCE_NOT_FOUND" and body["message"] == "project 1a9 not found"
    assert "detail" in body and "fieldName" not in body
    assert ApiError(422, "MissingRequired", "x", field_name="name").body()["fieldName"] == "name"


@pytest.mark.parametrize(
    "headers, scheme, expected",
    [
        ({"Host": "127.0.0.1:8080"}, "http", "http://127.0.0.1:8080"),
        ({"Host": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}, "http", "https://127.0.0.1"),
        (
            {"Host": "127.0.0.1:8443", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"},
            "http",
            "https://127.0.0.1:8443",
        ),
        ({"Host": "lb", "X-Forwarded-Port": "18000"}, "http", "http://lb:18000"),
        ({"Host": "lb:80", "X-Forwarded-Port": "80"}, "http", "http://lb"),
        ({"Host": "[::1]:8080"}, "http", "http://[::1]:8080"),
        ({"Host": 'evil"host'}, "http", "http://fallback:8080"),
        ({}, "http", "http://fallback:8080"),
    ],
)
def test_base_url_follows_the_request(headers: dict[str, str], scheme: str, expected: str) -> None:
    assert gdapi.base_url(headers, scheme, "fallback:8080") == expected


def test_templates_fill_only_the_base_token() -> None:
    tpl = gdapi.dumps(gdapi.resource_body(PROJECT, {"id": "1a5", "name": "@@halab-base-guess@@"}))
    body = json.loads(gdapi.fill(tpl, BASE))
    assert body["links"]["self"] == f"{BASE}/v1/projects/1a5"
    assert body["name"] == "@@halab-base-guess@@"


def test_ids_round_trip_and_reject_other_types() -> None:
    assert PROJECT.parse_id(PROJECT.format_id(42)) == 42
    assert PROJECT.parse_id("1s42") is None
    assert PROJECT.parse_id("1ag42") is None
    assert RESOURCE_TYPES["agent"].parse_id("1ag42") == 42
    assert PROJECT.parse_id("1a") is None


def test_create_validation() -> None:
    ch = inputs.for_create(
        SERVICE,
        {"name": "web", "environmentId": "1e3", "launchConfig": {"imageUuid": "x"}, "bogus": 1},
        default_account=7,
    )
    assert ch.columns["name"] == "web" and ch.columns["environment_id"] == 3 and ch.columns["account_id"] == 7
    assert ch.columns["scale"] == 1 and ch.data == {"launchConfig": {"imageUuid": "x"}}
    assert [(t.name, i) for t, i, _ in ch.refs] == [("environment", 3)]
    assert ch.columns["uuid"]  # generated
    assert inputs.for_create(PROJECT, {"uuid": "client-1"}, None).columns["uuid"] == "client-1"


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"environmentId": "1e3"}, "MissingRequired", "name"),
        ({"name": "web"}, "MissingRequired", "environmentId"),
        ({"name": 5, "environmentId": "1e3"}, "InvalidFormat", "name"),
        ({"name": "x" * 256, "environmentId": "1e3"}, "MaxLengthExceeded", "name"),
        ({"name": "web", "environmentId": "1a3"}, "InvalidReference", "environmentId"),
        ({"name": "web", "environmentId": "1e3", "scale": -1}, "MinLimitExceeded", "scale"),
        ({"name": "web", "environmentId": "1e3", "scale": True}, "InvalidFormat", "scale"),
    ],
)
def test_create_validation_errors(body: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(ApiError) as e:
        inputs.for_create(SERVICE, body, default_account=1)
    assert (e.value.status, e.value.code, e.value.field_name) == (422, code, field)


def test_list_query_parsing() -> None:
    q = store.parse_list_query(
        PROJECT,
        [
            ("name", "a"),
            ("state_ne", "removed"),
            ("limit", "5000"),
            ("marker", "m10"),
            ("sort", "name"),
            ("order", "desc"),
            ("junk", "x"),
        ],
    )
    assert [(c.field.name, c.modifier, c.value) for c in q.conditions] == [
        ("name", "eq", "a"),
        ("state", "ne", "removed"),
    ]
    assert (q.limit, q.offset, q.sort, q.order) == (store.MAX_LIMIT, 10, "name", "desc")
    with pytest.raises(ApiError):
        store.parse_list_query(PROJECT, [("sort", "data")])


class _OfflineClient(cattle.Client):
    """cattle.Client reading /v1 and /v1/schemas from our renderers instead of the network."""

    class _Resp:
        def __init__(self, text: str) -> None:
            self.text = text
            self.headers = {"X-API-Schemas": f"{BASE}/v1/schemas"}

    def _get_response(self, url: str, data: Any = None) -> Any:
        if url == f"{BASE}/v1":
            return self._Resp(json.dumps(gdapi.api_version(BASE)))
        assert url == f"{BASE}/v1/schemas"
        return self._Resp(json.dumps(gdapi.schema_collection(BASE)))


def test_rancher_client_binds_its_methods_from_our_schemas() -> None:
    c = _OfflineClient(url=f"{BASE}/v1", access_key="a", secret_key="s")
    for name in (
        "create_project",
        "list_project",
        "by_id_project",
        "update_by_id_project",
        "create_service",
        "list_service",
        "create_environment",
        "create_container",
        "create_registration_token",
        "create_api_key",
        "list_host",
        "list_agent",
        "list_process_instance",
    ):
        assert callable(getattr(c, name)), name
    assert not hasattr(c, "create_host") and not hasattr(c, "create_agent")
    assert c.schema.types["project"].links.collection == f"{BASE}/v1/projects"
