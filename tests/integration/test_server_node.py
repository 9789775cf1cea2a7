"""One simulated Rancher server node in a real 1-node lab (the compose lab users run), reached
through its load balancer: it comes up active, answers /ping, and Rancher's own Python client
(`cattle`) drives it unchanged; agents register and check in; a stale change-log lock left by a
dead node hangs every start of the v1.0 node until an operator clears it, as Liquibase's did, and
is taken over when the stale bound is set; the host goes down when its ZooKeeper dies."""

from __future__ import annotations

import re

import cattle
import pytest
from helpers import api, http, node_status, on_node

from lab.cluster import docker, lifecycle, probes
from lab.cluster.compose import container_name, registration_url
from lab.core.wait import wait_for
from lab.faults import make_spec
from lab.server.changesets import CHANGESETS

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def one_value(t, sql: str) -> str:
    (row,) = probes.db_query(t, sql)
    (value,) = row.values()
    return value


def test_single_node_serves_the_rancher_client_and_agents(halab_lab_factory):
    # Processes slow enough that a fresh create is still in progress when the client gets it.
    t = halab_lab_factory(1, server_env={"HALAB_PROCESS_DELAY_MS": "100"})
    for url in (on_node(t, "a1", "/ping"), f"http://127.0.0.1:{t.ports.http}/ping"):
        status, headers, body = http("GET", url)
        assert (status, body) == (200, "pong") and headers["x-rancher-node"] == "a1"

    v1 = api(t)
    status, headers, body = http("GET", v1)
    assert status == 200 and body["type"] == "apiVersion"
    assert headers["x-api-schemas"] == v1 + "/schemas"

    # Anonymous clients may create an API key while access control is off (Rancher's default).
    status, _, key = http("POST", v1 + "/apikeys", {"name": "it"})
    assert status == 201 and key["secretValue"]
    client = cattle.Client(url=v1, access_key=key["publicValue"], secret_key=key["secretValue"])

    project = client.create_project(name="it-project", uuid="it-client-uuid-1")
    assert project.state == "requested" and project.transitioning == "yes"
    project = client.wait_success(project)
    assert project.state == "active" and project.transitioning == "no"
    stack = client.wait_success(client.create_environment(name="it-stack", accountId=project.id))
    service = client.wait_success(
        client.create_service(
            name="web", environmentId=stack.id, accountId=project.id, launchConfig={"imageUuid": "docker:nginx"}
        )
    )
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
    assert status == 201 and token["registrationUrl"].startswith(f"{registration_url(t)}/v1/scripts/")
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

    status, _, body = http("GET", on_node(t, "a1", "/metrics"))
    assert status == 200
    assert re.search(r'cattle_http_requests_total\{node="a1",method="POST",code="201"\} \d+', body)
    st = node_status(t, "a1")
    assert st["state"] == "active" and st["zookeeper"]["mode"] == "standalone"
    assert [m["name"] for m in st["members"]] == ["a1"] and st["master"] == "a1"
    assert one_value(t, "SELECT COUNT(*) FROM process_instance WHERE end_time IS NULL") == "0"


# What a node killed during the schema's first migration leaves: an empty database but for the
# change-log lock it held, with its last heartbeat an hour ago.
STALE_LOCK = (
    "DROP DATABASE cattle; CREATE DATABASE cattle CHARACTER SET utf8mb4; USE cattle;"
    " CREATE TABLE DATABASECHANGELOGLOCK (ID INT NOT NULL PRIMARY KEY, LOCKED TINYINT(1) NOT NULL,"
    " LOCKGRANTED DATETIME(6) NULL, LOCKEDBY VARCHAR(255) NULL, HEARTBEAT DATETIME(6) NULL);"
    " INSERT INTO DATABASECHANGELOGLOCK VALUES (1, 1, NOW(6) - INTERVAL 1 HOUR, 'killed-node',"
    " NOW(6) - INTERVAL 1 HOUR)"
)


def test_a_v1_node_waits_on_a_dead_nodes_changelog_lock_and_restarts_until_it_is_cleared(
    halab_lab_factory, halab_faults
):
    # rancher-1.0 takes nothing over (Liquibase); a short wait instead of its 5 minutes.
    t = halab_lab_factory(1, profile="rancher-1.0", server_env={"HALAB_MIGRATION_MAX_WAIT": "4"})
    inj = halab_faults(t)
    with inj.held(make_spec("stop", ["a1"])):
        probes.db_query(t, STALE_LOCK)
    restarts = wait_for(
        "a1's server to give up on the lock and be restarted",
        lambda: (n := probes.supervisor_state(t, "a1").get("serverRestarts", 0)) >= 2 and n,
        90,
        interval=1.0,
    )
    assert not probes.node_view(t, "a1").active
    logs = lifecycle.logs(t, ("a1",))
    assert "could not acquire the change-log lock held by killed-node within 4 s; giving up" in logs
    assert "took over" not in logs
    assert one_value(t, "SELECT LOCKEDBY FROM DATABASECHANGELOGLOCK WHERE LOCKED = 1") == "killed-node"
    # What users did (rancher/rancher #4072): release the lock by hand; the next start migrates.
    probes.db_query(t, "UPDATE DATABASECHANGELOGLOCK SET LOCKED = 0, LOCKEDBY = NULL")
    wait_for("a1 active once the lock is cleared", lambda: probes.node_view(t, "a1").active, 60)
    assert one_value(t, "SELECT COUNT(*) FROM DATABASECHANGELOG") == str(len(CHANGESETS))
    print(f"a1's server restarted {restarts} times on the stale lock before it was cleared")


def test_stale_changelog_lock_of_a_dead_node_is_taken_over(halab_lab_factory, halab_faults):
    t = halab_lab_factory(1, server_env={"HALAB_CHANGELOG_LOCK_STALE": "5"})
    inj = halab_faults(t)
    # A node takes the lock only while change sets are missing (lab/server/migrations.py), so the
    # database goes back to the state the dead node left while a1 is down.
    with inj.held(make_spec("stop", ["a1"])):
        probes.db_query(t, STALE_LOCK)
        assert one_value(t, "SELECT LOCKEDBY FROM DATABASECHANGELOGLOCK WHERE LOCKED = 1") == "killed-node"
    wait_for("a1 active again", lambda: probes.node_view(t, "a1").active, 60)
    logs = lifecycle.logs(t, ("a1",))
    assert "took over the stale change-log lock from killed-node" in logs
    assert "(bound 5.0 s)" in logs  # the lab's --server-env setting reached the node
    assert one_value(t, "SELECT LOCKED FROM DATABASECHANGELOGLOCK") == "0"
    assert one_value(t, "SELECT COUNT(*) FROM DATABASECHANGELOG") == str(len(CHANGESETS))


KILL_JAVA = (
    "import glob, os\n"
    "for p in glob.glob('/proc/[0-9]*/comm'):\n"
    "    if open(p).read().strip() == 'java':\n"
    "        os.kill(int(p.split('/')[2]), 9)\n"
)


def test_the_host_goes_down_when_its_zookeeper_dies(halab_lab_factory):
    # tuned: no restart policy, so the exit stays visible (a rancher-1.0 host comes back)
    t = halab_lab_factory(1, profile="tuned")
    container = container_name(t, "a1")
    # Detached: the exec must not race the container it brings down.
    docker.run(["docker", "exec", "-d", container, "python3", "-c", KILL_JAVA], "kill a1's ZooKeeper JVM", timeout=30)

    def exited() -> str | None:
        (c,) = docker.inspect([container])
        return None if c["State"]["Running"] else f"{c['State']['Status']} {c['State']['ExitCode']}"

    assert wait_for("the container to exit", exited, 30) == "exited 1"
    assert "ZooKeeper exited" in lifecycle.logs(t, ("a1",))
