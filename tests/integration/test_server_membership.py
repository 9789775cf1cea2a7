"""cluster-manager's membership on a real 3-node rancher-1.0 lab (docs/rancher-1.0-behaviour.md,
section 1): what killing one node does to the others' cluster table, slots, tunnels, ZooKeeper
configuration and processes, and what its return does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import http, node_status, on_node

from lab.cluster import docker
from lab.cluster.compose import container_name
from lab.core.wait import wait_for
from lab.faults import make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = ("a1", "a2", "b1")


@pytest.fixture(scope="module")
def halab_profile() -> str:
    return "rancher-1.0"


def manager(t: Any, node: str) -> dict[str, Any]:
    """The node's cluster-manager view; empty while its server is not answering (restarting)."""
    status, _, body = http("GET", on_node(t, node, "/status.json"))
    return (body.get("clusterManager") or {}) if status == 200 and isinstance(body, dict) else {}


def zoo_cfg(t: Any, node: str) -> list[str]:
    out = docker.run(
        ["docker", "exec", container_name(t, node), "cat", "/var/lib/halab/zookeeper/zoo.cfg"],
        f"zoo.cfg of {node}",
        timeout=30,
    )
    return sorted(line for line in out.splitlines() if line.startswith(("server.", "clientPort=")))


def settled(t: Any, nodes: tuple[str, ...], size: int = 3) -> dict[str, dict[str, Any]] | None:
    """Every node's manager once each has its slot, a running member and sees `len(nodes)` slots."""
    views = {n: manager(t, n) for n in nodes}
    ok = all(
        v.get("slot") and v["zookeeper"]["pid"] and sum(1 for a in v["slots"] if a) == len(nodes)
        for v in views.values()
    )
    slots = {v.get("slot") for v in views.values()}
    return views if ok and len(slots) == len(nodes) and all(len(v["slots"]) == size for v in views.values()) else None


def write_ok(t: Any, node: str, name: str) -> bool:
    return http("POST", on_node(t, node, "/v1/environments"), {"name": name})[0] == 201


def test_a_killed_node_is_forgotten_and_the_survivors_only_lose_their_tunnels_to_it(halab_lab_factory, halab_faults):
    t = halab_lab_factory(3)
    before = wait_for("every node's cluster-manager to hold a slot", lambda: settled(t, NODES), 90)
    cfg_before = {n: zoo_cfg(t, n) for n in NODES}
    for n in NODES:  # the configuration lists every slot on the loopback, whoever holds it
        assert [x for x in cfg_before[n] if x.startswith("server.")] == [
            "server.1=127.0.0.1:2888:3888",
            "server.2=127.0.0.1:2889:3889",
            "server.3=127.0.0.1:2890:3890",
        ]
        assert f"clientPort={2180 + before[n]['slot']}" in cfg_before[n]
    victim = next(n for n in NODES if before[n]["slot"] == 1)  # slot 1: what cattle's ruok waits on
    survivors = tuple(n for n in NODES if n != victim)
    inj = halab_faults(t)
    killed = time.monotonic()
    with inj.held(make_spec("kill", [victim])):

        def forgotten() -> dict[str, dict[str, Any]] | None:
            views = {n: manager(t, n) for n in survivors}
            return views if all(v["slots"][0] == "" for v in views.values()) else None

        after = wait_for(f"the survivors to forget {victim}", forgotten, 40)
        took = time.monotonic() - killed
        print(f"{victim} (slot 1) forgotten by {', '.join(survivors)} {took:.1f} s after the kill")
        # Two polls 5 s apart without a new heartbeat: 10 to 15 s after its last one, which came
        # 0 to 5 s before the kill.
        assert 5 <= took <= 25, took
        for n in survivors:
            b, a = before[n], after[n]
            # Same manager, same slot; the ZooKeeper member and Redis were not restarted.
            assert (a["uuid"], a["slot"]) == (b["uuid"], b["slot"])
            assert a["zookeeper"]["pid"] == b["zookeeper"]["pid"] and a["zookeeper"]["restarts"] == 0
            assert a["redis"]["pid"] == b["redis"]["pid"]
            # Only the tunnels to the lost slot are gone.
            assert not any(name.endswith("-1") for name in a["tunnels"]), a["tunnels"]
            assert set(a["tunnels"]) == {x for x in b["tunnels"] if not x.endswith("-1")}
            assert zoo_cfg(t, n) == cfg_before[n]
            wait_for(
                f"{n} to show two rows in the cluster table",
                lambda n=n: sorted(m["name"] for m in node_status(t, n)["members"]) == sorted(survivors),
                10,
            )
        # Two of three members still have a quorum: writes go on.
        modes = sorted(node_status(t, n)["zookeeper"]["mode"] for n in survivors)
        assert modes == ["follower", "leader"], modes
        assert all(write_ok(t, n, f"while-{victim}-is-down-{n}") for n in survivors)
    # Healed: the victim's container started again, a new cluster-manager (new uuid, new row) that
    # gets the free slot, 1, on the master's next poll; the survivors tunnel to it again.
    back = wait_for(f"{victim} to hold a slot again", lambda: settled(t, NODES), 90)
    assert back[victim]["uuid"] != before[victim]["uuid"] and back[victim]["slot"] == 1
    for n in survivors:
        assert back[n]["uuid"] == before[n]["uuid"] and back[n]["zookeeper"]["pid"] == before[n]["zookeeper"]["pid"]
        assert set(back[n]["tunnels"]) == set(before[n]["tunnels"])
    wait_for(
        "a quorum of three again",
        lambda: sorted(node_status(t, n)["zookeeper"]["mode"] for n in NODES) == ["follower", "follower", "leader"],
        60,
    )
