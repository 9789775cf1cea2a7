"""Rancher's own Python client (`cattle`, on gdapi-python) drives a 3-node lab through the load
balancer, over HTTP and over TLS verified against the lab's CA, unchanged."""

from __future__ import annotations

import uuid

import cattle
import pytest
import requests

from lab.cluster import probes, state

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def api_key(base: str) -> tuple[str, str]:
    # While access control is off (Rancher's default) anyone may create an API key.
    r = requests.post(f"{base}/apikeys", json={"name": "it"}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["publicValue"], r.json()["secretValue"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_rancher_client_through_the_load_balancer(halab_lab3, scheme, monkeypatch):
    t = halab_lab3
    port = t.ports.http if scheme == "http" else t.ports.https
    base = f"{scheme}://127.0.0.1:{port}/v1"
    ca = str(state.ca_path(t.lab))
    # How a user trusts the lab CA with any requests-based tool, the Rancher client included.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    access, secret = api_key(base)
    client = cattle.Client(url=base, access_key=access, secret_key=secret)
    marker = uuid.uuid4().hex

    project = client.wait_success(client.create_project(name=f"p-{marker}", uuid=f"p-{marker}"))
    assert project.state == "active" and project.transitioning == "no"
    assert project.links.self.startswith(f"{scheme}://127.0.0.1:{port}/v1/")
    stack = client.wait_success(client.create_environment(name="stack", accountId=project.id))
    service = client.wait_success(
        client.create_service(
            name="web", environmentId=stack.id, accountId=project.id, launchConfig={"imageUuid": "docker:nginx"}
        )
    )
    assert service.state == "active"
    assert [p.id for p in client.list_project(name=f"p-{marker}")] == [project.id]
    assert client.by_id_project(project.id).uuid == f"p-{marker}"
    assert client.by_id_service(service.id).name == "web"
    assert client.wait_success(client.delete(service)).state == "removed"
    assert client.wait_success(client.delete(project)).state == "removed"

    # Every process ran to its end, on whichever nodes held the locks.
    rows = probes.db_query(t, "SELECT COUNT(*) AS n FROM process_instance WHERE end_time IS NULL")
    assert rows == [{"n": "0"}]
    servers = probes.db_query(t, "SELECT DISTINCT running_process_server_id AS s FROM process_instance")
    assert servers and all(r["s"] for r in servers)


@pytest.mark.filterwarnings("ignore:Non-string:DeprecationWarning")  # requests, about None:None
def test_rancher_client_without_keys(halab_lab3):
    # Built without keys it sends basic auth None:None; access control is off, so it is served.
    t = halab_lab3
    base = f"http://127.0.0.1:{t.ports.http}/v1"
    projects = cattle.Client(url=base).list_project()
    assert "adminProject" in [p.uuid for p in projects]
