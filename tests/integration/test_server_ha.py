"""Three simulated Rancher server nodes in a real 3-node lab (a1, a2 in dc-a, b1 in dc-b), each
reached through the load balancer's `/node/<name>/...` route: a ZooKeeper ensemble across them,
the cluster table, cache coherence across nodes, fencing when a node is cut from the quorum,
recovery after heal, and a process of a killed node finished by a survivor."""

from __future__ import annotations

import time

import pytest
from helpers import http, node_status, on_node

from lab.cluster import docker, lifecycle, probes
from lab.cluster.compose import container_name
from lab.core.wait import wait_for
from lab.faults import make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = ["a1", "a2", "b1"]


@pytest.fixture(scope="module")
def halab_profile() -> str:
    """These check the tuned node: fenced within seconds (/ping 503, writes refused), 4 s
    sessions, a 1 s membership heartbeat (docs/architecture.md, Node profiles)."""
    return "tuned"


def members(t, name: str) -> list[str]:
    return sorted(m["name"] for m in node_status(t, name)["members"])


def state_on(t, node: str, path: str) -> str:
    return http("GET", on_node(t, node, path))[2]["state"]


MNTR = (
    "import socket\n"
    "s = socket.create_connection(('127.0.0.1', 2181), timeout=5)\n"
    "s.sendall(b'mntr')\n"
    "print(s.makefile().read())\n"
)


def global_sessions(t, node: str) -> int | None:
    """ZooKeeper sessions the ensemble knows, as `node`'s member reports them (`mntr`); None while
    the member is not serving (an election)."""
    out = docker.run(["docker", "exec", container_name(t, node), "python3", "-c", MNTR], f"mntr on {node}", timeout=30)
    found = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line).get("zk_global_sessions")
    return None if found is None else int(found)


def sessions_lost(t, node: str) -> int:
    """How often the node's kazoo client has reported its session LOST (expired by the ensemble)."""
    return lifecycle.logs(t, (node,)).count("ZooKeeper session LOST")


def test_members_master_and_cache_coherence_across_nodes(lab3):
    t = lab3
    wait_for("three members in every view", lambda: all(members(t, n) == NODES for n in NODES), 30)
    wait_for(
        "one ZooKeeper leader and two followers",
        lambda: sorted(node_status(t, n)["zookeeper"]["mode"] for n in NODES) == ["follower", "follower", "leader"],
        20,
    )
    assert len({node_status(t, n)["master"] for n in NODES}) == 1

    # a2 caches a settled project, a1 changes it, a2 serves the change at once.
    status, _, p = http("POST", on_node(t, "a1", "/v1/projects"), {"name": "before"})
    assert status == 201, p
    wait_for("the project active on a2", lambda: state_on(t, "a2", f"/v1/projects/{p['id']}") == "active", 10)
    assert http("PUT", on_node(t, "a1", f"/v1/projects/{p['id']}"), {"name": "after"})[0] == 200
    assert http("GET", on_node(t, "a2", f"/v1/projects/{p['id']}"))[2]["name"] == "after"


def test_node_cut_from_the_quorum_is_fenced_and_recovers(lab3, halab_faults):
    t = lab3
    inj = halab_faults(t)
    sessions, lost = wait_for("a1's count of sessions", lambda: global_sessions(t, "a1"), 20), sessions_lost(t, "b1")
    # b1 cut from its peers only: the database stays reachable from every node (a partition that
    # does not name it), so a write b1 committed would show; `isolate` would cut the database too.
    with inj.held(make_spec("partition", sides=[["b1"], ["a1", "a2"]])):
        cut_at = time.monotonic()
        wait_for("b1 to leave active", lambda: probes.node_view(t, "b1").ping == 503, 20)
        detected = time.monotonic() - cut_at
        status, _, err = http(
            "POST", on_node(t, "b1", "/v1/projects"), {"name": "must-not-be-acked", "uuid": "fenced-1"}
        )
        assert status == 503 and err["type"] == "error" and err["code"] in ("NOT_ACTIVE", "NO_QUORUM"), err
        assert node_status(t, "b1")["state"] == "degraded"
        # The majority side keeps serving writes (after a re-election if b1 led).
        wait_for("a1 and a2 active", lambda: all(probes.node_view(t, n).active for n in ("a1", "a2")), 20)
        status, _, ok = http("POST", on_node(t, "a1", "/v1/projects"), {"name": "majority", "uuid": "majority-1"})
        assert status == 201, ok
        assert probes.db_query(t, "SELECT COUNT(*) AS n FROM account WHERE uuid = 'fenced-1'") == [{"n": "0"}]
        # Stay cut until the majority has expired b1's session, so the heal needs a new session. b1
        # itself cannot tell while cut: its client keeps trying its own member (first in its
        # connection string, out of quorum) and stays SUSPENDED.
        wait_for("the ensemble to expire b1's session", lambda: (global_sessions(t, "a1") or sessions) < sessions, 30)
        assert node_status(t, "b1")["zookeeper"]["session"] != "CONNECTED"
    wait_for("b1 active again after heal", lambda: probes.node_view(t, "b1").active, 60)
    status, _, body = http("POST", on_node(t, "b1", "/v1/projects"), {"name": "healed"})
    assert status == 201, body
    st = node_status(t, "b1")
    assert st["state"] == "active" and st["zookeeper"]["session"] == "CONNECTED"
    assert sessions_lost(t, "b1") > lost, "b1 came back on its old session, not a new one"
    print(f"b1 left active {detected:.1f} s after the cut")


def test_process_of_a_killed_node_is_finished_by_a_survivor(halab_lab_factory, halab_faults):
    # Long processes, so the kill lands mid-process; replayed 2 s after they stop progressing.
    t = halab_lab_factory(3, server_env={"HALAB_PROCESS_DELAY_MS": "4000", "HALAB_PROCESS_REPLAY_AFTER": "2"})
    inj = halab_faults(t)
    status, _, c = http("POST", on_node(t, "a1", "/v1/containers"), {"name": "orphan", "imageUuid": "docker:busybox"})
    assert status == 201 and c["state"] == "requested", c
    wait_for(
        "the create to be running on a1", lambda: state_on(t, "a2", f"/v1/containers/{c['id']}") == "activating", 10
    )
    with inj.held(make_spec("kill", ["a1"])):
        final = wait_for(
            "a survivor to finish the process",
            lambda: (lambda b: b if b["state"] == "active" else None)(
                http("GET", on_node(t, "a2", f"/v1/containers/{c['id']}"))[2]
            ),
            40,
        )
        assert final["transitioning"] == "no"
        status, _, procs = http(
            "GET", on_node(t, "a2", f"/v1/processinstances?resourceType=container&resourceId={c['id']}")
        )
        assert status == 200 and len(procs["data"]) == 1, procs
        proc = procs["data"][0]
        assert proc["startProcessServerId"] == "a1"
        assert proc["runningProcessServerId"] in ("a2", "b1") and proc["endTime"] and proc["result"] == "success"
        wait_for("a1 to leave the cluster table", lambda: members(t, "a2") == ["a2", "b1"], 20)
