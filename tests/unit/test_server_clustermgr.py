"""cluster-manager v0.1.5's decisions as the rancher-1.0 node makes them (lab/server/cluster.py):
who is forgotten, who is master, which slots members get, what the tunnels and zoo.cfg become."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lab.server import cluster, clustermgr
from lab.server.cluster import (
    Member,
    MissedPolls,
    Slots,
    assign_slots,
    is_master,
    slots_of,
    tunnel_plan,
)
from lab.server.config import from_env
from lab.server.tunnels import Spec, Tunnels


def m(id_: int, hb: int = 0, slot: int = 0, addr: str | None = None, requested: int = 0) -> Member:
    return Member(id_, f"n{id_}", f"u{id_}", addr or f"n{id_}.interdc", hb, {}, requested, slot)


def test_a_member_is_forgotten_after_two_polls_without_a_new_heartbeat() -> None:
    t = MissedPolls()
    assert t.observe([m(1, 0), m(2, 0), m(3, 0)]) == []
    assert t.observe([m(1, 1), m(2, 1), m(3, 0)]) == []  # 3 missed once
    assert [x.id for x in t.observe([m(1, 2), m(2, 2), m(3, 0)])] == [3]  # twice: delete


def test_itself_is_forgotten_too_when_its_own_heartbeat_stalls() -> None:
    t = MissedPolls()
    t.observe([m(1, 5)])
    t.observe([m(1, 5)])
    assert [x.uuid for x in t.observe([m(1, 5)])] == ["u1"]


def test_a_member_deleted_by_a_peer_is_remembered_until_this_node_forgets_it() -> None:
    t = MissedPolls()
    t.observe([m(1, 0), m(2, 0, slot=2)])
    assert t.observe([m(1, 1)]) == []  # row gone, member and its slot still known
    assert [x.assigned_index for x in t.members() if x.id == 2] == [2]
    stale = t.observe([m(1, 2)])
    assert [x.id for x in stale] == [2]
    t.forget("u2")
    assert [x.id for x in t.members()] == [1]


def test_a_failed_delete_is_tried_again_on_the_next_poll() -> None:
    t = MissedPolls()
    t.observe([m(1, 0), m(2, 0)])
    t.observe([m(1, 1), m(2, 0)])
    assert [x.id for x in t.observe([m(1, 2), m(2, 0)])] == [2]
    assert [x.id for x in t.observe([m(1, 3), m(2, 0)])] == [2]  # not forgotten: still stale


def test_a_beat_clears_the_misses() -> None:
    t = MissedPolls()
    t.observe([m(1, 0), m(2, 0)])
    t.observe([m(1, 1), m(2, 0)])
    assert t.observe([m(1, 2), m(2, 1)]) == []
    assert t.observe([m(1, 3), m(2, 1)]) == []


def test_master_is_the_lowest_id_and_only_if_it_is_this_manager() -> None:
    members = [m(7), m(3), m(9)]
    assert is_master(members, "u3")
    assert not is_master(members, "u7")
    assert not is_master([], "u1")


def test_slots_go_first_to_requests_then_in_id_order() -> None:
    saved = assign_slots([m(4), m(2), m(9, requested=1)], 3)
    assert saved is not None
    assert {s: x.id for s, x in saved.items()} == {1: 9, 2: 2, 3: 4}


def test_members_keep_their_slots_and_extra_members_wait() -> None:
    assert assign_slots([m(1, slot=1), m(2, slot=2), m(3, slot=3)], 3) is None
    saved = assign_slots([m(1, slot=1), m(5), m(3, slot=3), m(6)], 3)
    assert saved is not None and {s: x.id for s, x in saved.items()} == {1: 1, 2: 5, 3: 3}


def test_a_lost_members_slot_goes_to_the_next_newcomer() -> None:
    # b1 (slot 3) was forgotten; it came back as a new manager, so a new row with a higher id.
    saved = assign_slots([m(1, slot=1), m(2, slot=2), m(8)], 3)
    assert saved is not None and saved[3].id == 8


def test_slots_of_a_node() -> None:
    members = [m(1, slot=1, addr="a1.interdc"), m(2, slot=3, addr="b1.interdc"), m(3, addr="a2.interdc")]
    assert slots_of(members, 3, "u2") == Slots(("a1.interdc", "", "b1.interdc"), 3)
    assert slots_of(members, 3, "u3") == Slots(("a1.interdc", "", "b1.interdc"), 0)


def test_tunnels_lead_to_peers_slots_and_a_lost_slot_loses_its_tunnels() -> None:
    plan = tunnel_plan(Slots(("a1.interdc", "", "b1.interdc"), 3), "b1.interdc")
    assert plan["zk-client-1"] == Spec("127.0.0.1", 2181, "a1.interdc", 12181)
    assert plan["zk-quorum-1"] == Spec("127.0.0.1", 2888, "a1.interdc", 12888)
    assert plan["zk-leader-1"] == Spec("127.0.0.1", 3888, "a1.interdc", 13888)
    assert plan["redis-1"] == Spec("127.0.0.1", 6379, "a1.interdc", 16379)
    assert all(plan[f"{s}-2"] is None for s in cluster.SERVICES)
    # its own slot is served from the public ports
    assert plan["zk-client-3"] == Spec("0.0.0.0", 12181, "127.0.0.1", 2183)
    assert plan["redis-3"] == Spec("0.0.0.0", 16379, "127.0.0.1", 6381)


def test_an_old_row_of_this_host_is_served_locally_while_it_has_no_slot() -> None:
    plan = tunnel_plan(Slots(("a1.interdc", "a2.interdc", ""), 0), "a2.interdc")
    assert plan["zk-client-2"] == Spec("0.0.0.0", 12181, "127.0.0.1", 2182)
    assert plan["zk-client-1"] == Spec("127.0.0.1", 2181, "a1.interdc", 12181)


def test_zookeeper_and_redis_hosts_are_every_slot_on_the_loopback() -> None:
    assert cluster.zk_hosts(3) == "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
    assert cluster.redis_hosts(1) == "127.0.0.1:6379"
    assert cluster.zk_servers(3) == {
        1: ("127.0.0.1", 2888, 3888),
        2: ("127.0.0.1", 2889, 3889),
        3: ("127.0.0.1", 2890, 3890),
    }
    assert cluster.zk_servers(1) == {}


def test_a_tunnel_pipes_both_ways_and_deleting_it_cuts_its_connections() -> None:
    async def scenario() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(100):
                w.write(data)
                await w.drain()
            w.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        tport = target.sockets[0].getsockname()[1]
        tunnels = Tunnels()
        listen = _free_port()
        await tunnels.ensure("t", Spec("127.0.0.1", listen, "127.0.0.1", tport))
        r, w = await asyncio.open_connection("127.0.0.1", listen)
        w.write(b"ping")
        assert await asyncio.wait_for(r.read(4), 5) == b"ping"
        await tunnels.remove("t")
        assert await asyncio.wait_for(r.read(4), 5) == b""  # cut
        w.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", listen)  # nothing listens any more
        target.close()

    asyncio.run(scenario())


def test_a_tunnel_whose_port_is_taken_is_retried() -> None:
    async def scenario() -> None:
        holder = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = holder.sockets[0].getsockname()[1]
        tunnels = Tunnels()
        await tunnels.ensure("t", Spec("127.0.0.1", port, "127.0.0.1", 9))
        assert tunnels.specs() == {}
        holder.close()
        await holder.wait_closed()
        await tunnels.retry()
        assert list(tunnels.specs()) == ["t"]
        await tunnels.close()

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_zoo_cfg_of_a_slot_lists_every_slot_and_listens_on_the_slots_client_port() -> None:
    cfg = from_env(
        {
            "HALAB_NODE_NAME": "b1",
            "CATTLE_HA_CLUSTER_SIZE": "3",
            "HALAB_ZK_MYID": "3",
            "HALAB_ZK_SERVERS": "1=a1.interdc,2=a2.interdc,3=b1.interdc",
        }
    )
    assert clustermgr.cluster_address(cfg) == "b1.interdc"
    lines = clustermgr.render_zk_config(cfg, 2).splitlines()
    assert "clientPort=2182" in lines and "tickTime=2000" in lines
    assert [x for x in lines if x.startswith("server.")] == [
        "server.1=127.0.0.1:2888:3888",
        "server.2=127.0.0.1:2889:3889",
        "server.3=127.0.0.1:2890:3890",
    ]


def test_one_node_is_standalone_on_the_loopback() -> None:
    cfg = from_env({"HALAB_NODE_NAME": "a1"})
    assert clustermgr.cluster_address(cfg) == "127.0.0.1"
    text = clustermgr.render_zk_config(cfg, 1)
    assert "clientPort=2181" in text and "server." not in text


def test_a_slot_container_that_exits_or_cannot_start_is_started_again_in_its_slot() -> None:
    async def scenario() -> None:
        calls: list[int] = []

        async def start(slot: int) -> asyncio.subprocess.Process:
            calls.append(slot)
            if len(calls) == 1:
                raise FileNotFoundError("redis-server")
            return await asyncio.create_subprocess_exec("true")  # exits at once

        child = clustermgr.Child("redis", start, lambda previous, ran_for: 0.01)
        await child.ensure(2)
        await child.ensure(2)  # same slot: left alone
        for _ in range(500):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        await child.stop()
        assert calls[:3] == [2, 2, 2] and child.restarts >= 2

    asyncio.run(scenario())
