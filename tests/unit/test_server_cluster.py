"""Cluster membership staleness, master choice, and ZooKeeper configuration."""

from __future__ import annotations

import asyncio

import pytest

from lab.server import zkserver
from lab.server.cluster import Member, StaleTracker, master
from lab.server.profiles import RANCHER_1_0, TUNED


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
    cfg = zkserver.render_config("/data", TUNED, {})
    assert "tickTime=500" in cfg and "clientPort=2181" in cfg
    assert "admin.enableServer=false" in cfg and "quorumListenOnAllIPs=true" in cfg
    assert "4lw.commands.whitelist=srvr,mntr,ruok,stat" in cfg
    assert "server." not in cfg


def test_ensemble_config_and_fast_failure_detection_when_tuned() -> None:
    cfg = zkserver.render_config("/data", TUNED, {3: ("b1.interdc",), 1: ("a1.dc-a",), 2: ("a2.dc-a",)})
    lines = cfg.splitlines()
    assert [line for line in lines if line.startswith("server.")] == [
        "server.1=a1.dc-a:2888:3888",
        "server.2=a2.dc-a:2888:3888",
        "server.3=b1.interdc:2888:3888",
    ]
    assert "multiAddress" not in zkserver.jvm_flags("64m", {1: ("a1.dc-a",)}, TUNED)
    # A follower cut from its leader drops out within syncLimit ticks (2 s at tickTime 500).
    assert {"tickTime=500", "syncLimit=4", "initLimit=10"} <= set(lines)


def test_rancher_1_0_runs_zookeeper_as_its_zk_container_did() -> None:
    lines = zkserver.render_config("/data", RANCHER_1_0, {1: ("a1.interdc",)}).splitlines()
    assert {"tickTime=2000", "initLimit=10", "syncLimit=5"} <= set(lines)
    assert "-Dzookeeper.cnxTimeout=5000 " in zkserver.jvm_flags("64m", {}, RANCHER_1_0)


@pytest.mark.parametrize(
    "connection, first",
    [
        ("127.0.0.1:2181,a2.interdc:2181,b1.interdc:2181", ("127.0.0.1", 2181)),
        ("zk1:2182/chroot", ("zk1", 2182)),
        ("zk1", ("zk1", 2181)),
    ],
)
def test_the_start_wait_asks_the_first_host_only(connection: str, first: tuple[str, int]) -> None:
    assert zkserver.first_host(connection) == first


def test_the_start_wait_gives_up_after_its_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[bytes, str, int]] = []
    answers = iter([None, "", "imok"])

    async def fake(word: bytes, host: str = "", port: int = 0, timeout: float = 1.0) -> str | None:
        asked.append((word, host, port))
        return next(answers, None)

    monkeypatch.setattr(zkserver, "four_letter_word", fake)
    assert asyncio.run(zkserver.wait_ruok("a1:2181,a2:2181", 5, 0.0)) is True
    assert asked == [(b"ruok", "a1", 2181)] * 3
    asked.clear()
    assert asyncio.run(zkserver.wait_ruok("a1:2181", 2, 0.0)) is False and len(asked) == 2


def test_srvr_mode_parsing() -> None:
    assert zkserver.parse_mode("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\n") == "follower"
    assert zkserver.parse_mode("This ZooKeeper instance is not currently serving requests\n") == "not serving"


def test_members_with_several_addresses() -> None:
    servers = {1: ("a1.dc-a", "a1.interdc"), 2: ("b1.dc-b", "b1.interdc")}
    cfg = zkserver.render_config("/data", TUNED, servers)
    assert "-Dzookeeper.multiAddress.enabled=true" in zkserver.jvm_flags("64m", servers, TUNED)
    assert "server.1=a1.dc-a:2888:3888|a1.interdc:2888:3888" in cfg.splitlines()


def test_election_timing_flags_follow_the_profile() -> None:
    real = zkserver.jvm_flags("64m", {}, RANCHER_1_0)
    assert "-Dzookeeper.fastleader.maxNotificationInterval=60000 " in real
    assert "-Dzookeeper.leaderConnectDelayDuringRetryMs=1000 " in real
    assert "-Dzookeeper.leader.maxTimeToWaitForEpoch=-1 " in real
    tuned = zkserver.jvm_flags("64m", {}, TUNED)
    assert "-Dzookeeper.fastleader.maxNotificationInterval=1000 " in tuned
    assert "-Dzookeeper.leader.maxTimeToWaitForEpoch=1000 " in tuned
