"""Cluster membership staleness, master choice, and ZooKeeper configuration."""

from __future__ import annotations

from lab.server import zkserver
from lab.server.cluster import Member, StaleTracker, master


def m(id_: int, hb: int, uuid: str | None = None) -> Member:
    return Member(id_, f"n{id_}", uuid or f"u{id_}", None, hb, {})


def test_member_removed_after_two_unchanged_polls() -> None:
    t = StaleTracker()
    assert t.observe([m(1, 10), m(2, 20)], "u1") == []
    assert t.observe([m(1, 11), m(2, 20)], "u1") == []  # unchanged once
    stale = t.observe([m(1, 12), m(2, 20)], "u1")  # unchanged twice
    assert [s.id for s in stale] == [2]


def test_a_beat_resets_the_count_and_self_is_never_stale() -> None:
    t = StaleTracker()
    t.observe([m(1, 1), m(2, 5)], "u1")
    t.observe([m(1, 1), m(2, 5)], "u1")
    assert t.observe([m(1, 1), m(2, 6)], "u1") == []
    assert t.observe([m(1, 1), m(2, 6)], "u1") == []
    assert [s.id for s in t.observe([m(1, 1), m(2, 6)], "u1")] == [2]


def test_master_is_lowest_id() -> None:
    assert master([m(5, 0), m(3, 0), m(9, 0)]).id == 3  # type: ignore[union-attr]
    assert master([]) is None


def test_standalone_config() -> None:
    cfg = zkserver.render_config("/data", 500, {})
    assert "tickTime=500" in cfg and "clientPort=2181" in cfg
    assert "admin.enableServer=false" in cfg and "quorumListenOnAllIPs=true" in cfg
    assert "4lw.commands.whitelist=srvr,mntr,ruok,stat" in cfg
    assert "server." not in cfg


def test_ensemble_config_and_fast_failure_detection() -> None:
    cfg = zkserver.render_config("/data", 500, {3: ("b1.interdc",), 1: ("a1.dc-a",), 2: ("a2.dc-a",)})
    lines = cfg.splitlines()
    assert [l for l in lines if l.startswith("server.")] == [
        "server.1=a1.dc-a:2888:3888", "server.2=a2.dc-a:2888:3888", "server.3=b1.interdc:2888:3888",
    ]
    assert "multiAddress" not in zkserver.jvm_flags("64m", {1: ("a1.dc-a",)})
    # A follower cut from its leader drops out within syncLimit ticks (2 s at tickTime 500).
    assert zkserver.SYNC_LIMIT * 500 <= 2000 and zkserver.INIT_LIMIT * 500 <= 5000


def test_srvr_mode_parsing() -> None:
    assert zkserver.parse_mode("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\n") == "follower"
    assert zkserver.parse_mode("This ZooKeeper instance is not currently serving requests\n") == "not serving"


def test_members_with_several_addresses() -> None:
    servers = {1: ("a1.dc-a", "a1.interdc"), 2: ("b1.dc-b", "b1.interdc")}
    cfg = zkserver.render_config("/data", 500, servers)
    assert "-Dzookeeper.multiAddress.enabled=true" in zkserver.jvm_flags("64m", servers)
    assert "server.1=a1.dc-a:2888:3888|a1.interdc:2888:3888" in cfg.splitlines()
