"""Three simulated Rancher server nodes on real Docker: a ZooKeeper ensemble across them, the
cluster table, fencing when a node is cut from the quorum, recovery after heal, cache coherence
across nodes, and a process of a killed node finished by a survivor."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from _server_rig import Rig, build_images, http, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = ["n1", "n2", "n3"]


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


def members(rig: Rig, name: str) -> list[str]:
    return sorted(m["name"] for m in rig.status(name)["members"])


def test_node_cut_from_the_quorum_is_fenced_and_recovers(rig: Rig) -> None:
    rig.start_db()
    rig.start_nodes(NODES)
    rig.wait_active()
    wait_for("three members in every view", lambda: all(members(rig, n) == NODES for n in NODES), 30)
    wait_for("one ZooKeeper leader and two followers",
             lambda: sorted(rig.status(n)["zookeeper"]["mode"] for n in NODES) == ["follower", "follower", "leader"], 20)
    masters = {rig.status(n)["master"] for n in NODES}
    assert len(masters) == 1

    # Cross-node cache coherence: n2 caches a settled project, n1 changes it, n2 sees it.
    status, _, p = http("POST", rig.url("n1", "/v1/projects"), {"name": "before"})
    assert status == 201
    wait_for("project active on n2", lambda: http("GET", rig.url("n2", f"/v1/projects/{p['id']}"))[2]["state"] == "active", 10)
    assert http("PUT", rig.url("n1", f"/v1/projects/{p['id']}"), {"name": "after"})[0] == 200
    assert http("GET", rig.url("n2", f"/v1/projects/{p['id']}"))[2]["name"] == "after"

    rig.cut_zk("n3")
    cut_at = time.monotonic()
    wait_for("n3 to leave active", lambda: rig.ping("n3") == 503, 20)
    detected = time.monotonic() - cut_at
    status, _, err = http("POST", rig.url("n3", "/v1/projects"), {"name": "must-not-be-acked", "uuid": "fenced-1"})
    assert status == 503 and err["type"] == "error" and err["code"] in ("NOT_ACTIVE", "NO_QUORUM")
    assert rig.status("n3")["state"] == "degraded"
    # The majority side keeps serving writes (after a re-election if n3 led).
    wait_for("n1 and n2 active", lambda: rig.ping("n1") == 200 and rig.ping("n2") == 200, 20)
    status, _, ok = http("POST", rig.url("n1", "/v1/projects"), {"name": "majority", "uuid": "majority-1"})
    assert status == 201
    assert rig.sql("SELECT COUNT(*) FROM account WHERE uuid = 'fenced-1'") == "0"

    # Stay cut until n3's session has expired, so the heal needs a new session.
    wait_for("n3's ZooKeeper session to be lost", lambda: rig.status("n3")["zookeeper"]["session"] == "LOST", 30)
    rig.connect_zk("n3")
    wait_for("n3 active again after heal", lambda: rig.ping("n3") == 200, 60)
    status, _, body = http("POST", rig.url("n3", "/v1/projects"), {"name": "healed"})
    assert status == 201, body
    assert rig.status("n3")["state"] == "active"
    print(f"n3 left active {detected:.1f} s after the cut")


def test_process_of_a_killed_node_is_finished_by_a_survivor(rig: Rig) -> None:
    rig.start_db()
    # Long processes, so the kill lands mid-process.
    rig.start_nodes(NODES, {"HALAB_PROCESS_DELAY_MS": "4000", "HALAB_PROCESS_REPLAY_AFTER": "2"})
    rig.wait_active()
    status, _, c = http("POST", rig.url("n1", "/v1/containers"), {"name": "orphan", "imageUuid": "docker:busybox"})
    assert status == 201 and c["state"] == "requested"
    wait_for("the create to be running on n1",
             lambda: http("GET", rig.url("n2", f"/v1/containers/{c['id']}"))[2]["state"] == "activating", 10)
    rig.kill("n1")
    final = wait_for(
        "a survivor to finish the process",
        lambda: (lambda b: b if b["state"] == "active" else None)(http("GET", rig.url("n2", f"/v1/containers/{c['id']}"))[2]),
        40,
    )
    assert final["transitioning"] == "no"
    status, _, procs = http("GET", rig.url("n2", f"/v1/processinstances?resourceType=container&resourceId={c['id']}"))
    assert status == 200 and len(procs["data"]) == 1
    proc = procs["data"][0]
    assert proc["startProcessServerId"] == "n1"
    assert proc["runningProcessServerId"] in ("n2", "n3") and proc["endTime"] and proc["result"] == "success"
    wait_for("n1 to leave the cluster table", lambda: members(rig, "n2") == ["n2", "n3"], 20)
