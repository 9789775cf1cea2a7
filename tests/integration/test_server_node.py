"""One simulated Rancher server node on real Docker: comes up active, answers /ping, and
Rancher's own Python client (`cattle`) drives it unchanged; agents register and check in; a
stale change-log lock left by a dead node does not hang the start."""

from __future__ import annotations

import re
from typing import Iterator

import cattle
import pytest

from _server_rig import Rig, build_images, docker, http, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def images() -> None:
    build_images()


@pytest.fixture
def rig(images: None, request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig()
    failed = request.session.testsfailed
    try:
        yield r
    finally:
        r.close(dump_logs=request.session.testsfailed > failed)


def test_single_node_serves_the_rancher_client_and_agents(rig: Rig) -> None:
    rig.start_db()
    rig.start_nodes(["n1"], {"HALAB_PROCESS_DELAY_MS": "100"})
    rig.wait_active()
    status, headers, body = http("GET", rig.url("n1", "/ping"))
    assert (status, body) == (200, "pong") and headers["X-Rancher-Node"] == "n1"

    v1 = rig.url("n1", "/v1")
    status, headers, body = http("GET", v1)
    assert status == 200 and body["type"] == "apiVersion"
    assert headers["X-API-Schemas"] == v1 + "/schemas"

    # Anonymous clients may create an API key while access control is off (Rancher's default).
    status, _, key = http("POST", v1 + "/apikeys", {"name": "it"})
    assert status == 201 and key["secretValue"]
    client = cattle.Client(url=v1, access_key=key["publicValue"], secret_key=key["secretValue"])

    project = client.create_project(name="it-project", uuid="it-client-uuid-1")
    assert project.state == "requested" and project.transitioning == "yes"
    project = client.wait_success(project)
    assert project.state == "active" and project.transitioning == "no"
    stack = client.wait_success(client.create_environment(name="it-stack", accountId=project.id))
    service = client.wait_success(client.create_service(
        name="web", environmentId=stack.id, accountId=project.id, launchConfig={"imageUuid": "docker:nginx"}))
    assert service.state == "active" and service.scale == 1
    assert project.id in [p.id for p in client.list_project()]
    assert [p.id for p in client.list_project(name="it-project")] == [project.id]
    assert client.by_id_project(project.id).uuid == "it-client-uuid-1"
    assert [s.id for s in project.services()] == [service.id]
    service = client.wait_success(client.update(service, scale=3))
    assert service.scale == 3 and service.state == "active"
    removed = client.wait_success(client.delete(service))
    assert removed.state == "removed" and removed.removed
    assert client.wait_success(client.delete(project)).state == "removed"

    # A client uuid is unique: a retried create cannot silently duplicate.
    with pytest.raises(cattle.ApiError) as e:
        client.create_project(name="again", uuid="it-client-uuid-1")
    assert (e.value.error.status, e.value.error.code) == (422, "NotUnique")
    with pytest.raises(cattle.ApiError) as e:
        cattle.Client(url=v1, access_key=key["publicValue"], secret_key="wrong")
    assert e.value.error.status == 401

    # Agents: token -> script -> register -> check in with the agent's own key.
    status, _, token = http("POST", v1 + "/registrationtokens", {})
    assert status == 201 and token["registrationUrl"].startswith("http://lb.example/v1/scripts/")
    status, _, script = http("GET", v1 + f"/scripts/{token['token']}")
    assert status == 200 and token["registrationUrl"] in script
    status, _, reg = http("POST", v1 + f"/scripts/{token['token']}", {"hostname": "h1", "uuid": "host-uuid-1"})
    assert status == 201 and reg["type"] == "agentRegistration"
    creds = (reg["accessKey"], reg["secretKey"])
    status, _, agent = http("POST", reg["checkinUrl"], {}, auth=creds)
    assert status == 200 and agent["type"] == "agent" and agent["lastCheckin"]
    assert http("POST", reg["checkinUrl"], {})[0] == 401
    assert http("POST", reg["checkinUrl"], {}, auth=(reg["accessKey"], "nope"))[0] == 401
    status, _, again = http("POST", v1 + f"/scripts/{token['token']}", {"hostname": "h1", "uuid": "host-uuid-1"})
    assert status == 200 and again["hostId"] == reg["hostId"] and again["accessKey"] != reg["accessKey"]
    wait_for("the host to be active", lambda: http("GET", v1 + f"/hosts/{reg['hostId']}")[2]["state"] == "active", 10)

    status, _, body = http("GET", rig.url("n1", "/metrics"))
    assert re.search(r'cattle_http_requests_total\{node="n1",method="POST",code="201"\} \d+', body)
    st = rig.status("n1")
    assert st["state"] == "active" and st["zookeeper"]["mode"] == "standalone"
    assert [m["name"] for m in st["members"]] == ["n1"] and st["master"] == "n1"
    assert rig.sql("SELECT COUNT(*) FROM process_instance WHERE end_time IS NULL") == "0"


def test_stale_changelog_lock_of_a_dead_node_is_taken_over(rig: Rig) -> None:
    rig.start_db()
    rig.sql(
        "CREATE TABLE DATABASECHANGELOGLOCK (ID INT NOT NULL PRIMARY KEY, LOCKED TINYINT(1) NOT NULL,"
        " LOCKGRANTED DATETIME(6) NULL, LOCKEDBY VARCHAR(255) NULL, HEARTBEAT DATETIME(6) NULL);"
        " INSERT INTO DATABASECHANGELOGLOCK VALUES (1, 1, NOW(6) - INTERVAL 1 HOUR, 'killed-node',"
        " NOW(6) - INTERVAL 1 HOUR)"
    )
    rig.start_nodes(["n1"], {"HALAB_CHANGELOG_LOCK_STALE": "5"})
    rig.wait_active(timeout=60)
    logs = rig.logs(rig.nodes["n1"])
    assert "took over the stale change-log lock from killed-node" in logs
    assert rig.sql("SELECT LOCKED FROM DATABASECHANGELOGLOCK") == "0"
    assert rig.sql("SELECT COUNT(*) FROM DATABASECHANGELOG") == "3"


def test_the_host_goes_down_when_its_zookeeper_dies(rig: Rig) -> None:
    rig.start_db()
    rig.start_nodes(["n1"])
    rig.wait_active()
    container = rig.nodes["n1"]
    docker("exec", container, "python3", "-c",
           "import glob, os\n"
           "for p in glob.glob('/proc/[0-9]*/comm'):\n"
           "    if open(p).read().strip() == 'java':\n"
           "        os.kill(int(p.split('/')[2]), 9)\n")
    state = wait_for("the container to exit",
                     lambda: (lambda s: s if s.startswith("exited") else None)(
                         docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container)), 30)
    assert state == "exited 1"
    assert "ZooKeeper exited" in rig.logs(container)
