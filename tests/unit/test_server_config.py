"""Config parsing: password env vs file, -Xmx, ZooKeeper servers, the node profile and its
per-setting overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.server.config import ConfigError, effective, from_env, parse_size, parse_xmx, parse_zk_servers
from lab.server.profiles import RANCHER_1_0, TUNED


def test_defaults_follow_the_architecture_table() -> None:
    cfg = from_env({"HALAB_NODE_NAME": "a1"})
    assert (cfg.db_host, cfg.db_port, cfg.db_name, cfg.db_user) == ("db", 3306, "cattle", "cattle")
    assert cfg.db_password == "cattle"
    # cattle v0.159.8's own pool (db.maxtotal, global.pool.maxwait); tuned keeps the guide's 50.
    assert cfg.pool_max_total == 1000 and cfg.pool_max_wait_ms == 1000
    tuned = from_env({"HALAB_NODE_NAME": "a1", "HALAB_PROFILE": "tuned"})
    assert tuned.pool_max_total == 50 and tuned.pool_max_wait_ms == 2000
    assert cfg.cluster_size == 1 and cfg.zk_servers == {}
    assert cfg.zk_connection_string == "127.0.0.1:2181"
    assert cfg.profile == RANCHER_1_0 and cfg.server_restarts == 0 and cfg.last_exit_status is None
    assert cfg.heap_xmx == 1 << 30 and cfg.heap_budget == 32 << 20
    assert cfg.registration_url == "http://localhost"


def test_plain_password_wins_over_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    env = {"CATTLE_DB_CATTLE_PASSWORD": "plain", "CATTLE_DB_CATTLE_PASSWORD_FILE": str(f)}
    assert from_env(env).db_password == "plain"


def test_password_file_is_read_without_trailing_newline(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cr3t with spaces \n")
    cfg = from_env({"CATTLE_DB_CATTLE_PASSWORD_FILE": str(f)})
    assert cfg.db_password == "s3cr3t with spaces "


def test_empty_plain_password_is_a_password(tmp_path: Path) -> None:
    assert from_env({"CATTLE_DB_CATTLE_PASSWORD": ""}).db_password == ""


def test_unreadable_password_file_fails_without_leaking(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        from_env({"CATTLE_DB_CATTLE_PASSWORD_FILE": str(tmp_path / "missing")})
    assert "missing" in str(e.value)


def test_password_never_in_repr() -> None:
    cfg = from_env({"CATTLE_DB_CATTLE_PASSWORD": "hunter2-very-secret"})
    assert "hunter2" not in repr(cfg)


@pytest.mark.parametrize(
    "opts, expected",
    [
        ("", 1 << 30),
        ("-Xmx4g", 4 << 30),
        ("-Xms1g -Xmx512m -XX:+UseG1GC", 512 << 20),
        ("-Xmx2g -Xmx8G", 8 << 30),
        ("-Xmx1048576", 1 << 20),
        ("-Xmx64k", 64 << 10),
    ],
)
def test_parse_xmx(opts: str, expected: int) -> None:
    assert parse_xmx(opts) == expected


def test_heap_budget_is_xmx_over_scale() -> None:
    cfg = from_env({"CATTLE_JAVA_OPTS": "-Xmx4g", "HALAB_HEAP_SCALE": "32"})
    assert cfg.heap_budget == 128 << 20


def test_parse_size() -> None:
    assert parse_size("64k") == 65536 and parse_size("2M") == 2 << 20 and parse_size("10") == 10
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_zk_servers() -> None:
    assert parse_zk_servers("1=a1.dc-a,2=a2.dc-a, 3=b1.interdc") == {
        1: ("a1.dc-a",),
        2: ("a2.dc-a",),
        3: ("b1.interdc",),
    }
    assert parse_zk_servers("1=a1.dc-a|a1.interdc,3=b1.dc-b|b1.interdc") == {
        1: ("a1.dc-a", "a1.interdc"),
        3: ("b1.dc-b", "b1.interdc"),
    }
    assert parse_zk_servers("") == {}
    for bad in ("a1.dc-a", "1=", "1=a|", "x=a"):
        with pytest.raises(ConfigError):
            parse_zk_servers(bad)


def test_myid_must_be_in_the_ensemble() -> None:
    with pytest.raises(ConfigError):
        from_env({"HALAB_ZK_SERVERS": "1=a,2=b,3=c", "HALAB_ZK_MYID": "4"})
    cfg = from_env({"HALAB_ZK_SERVERS": "1=a,2=b,3=c", "HALAB_ZK_MYID": "2", "CATTLE_HA_CLUSTER_SIZE": "3"})
    assert cfg.zk_myid == 2 and cfg.cluster_size == 3


def test_the_profile_gives_every_default() -> None:
    assert from_env({"HALAB_PROFILE": "tuned"}).profile == TUNED
    assert from_env({"HALAB_PROFILE": "rancher-1.0"}).profile == RANCHER_1_0
    assert effective(from_env({"HALAB_PROFILE": "tuned"}))["overridden"] == []


def test_a_variable_overrides_its_one_setting_of_the_profile() -> None:
    cfg = from_env(
        {"HALAB_PROFILE": "tuned", "HALAB_LOCK_TIMEOUT": "10", "HALAB_PING_GATE": "false", "HALAB_ZK_TICK_MS": "2000"}
    )
    assert (cfg.profile.lock_timeout, cfg.profile.ping_gate, cfg.profile.zk_tick_ms) == (10.0, False, 2000)
    assert cfg.profile.name == "tuned" and cfg.profile.zk_session_timeout == TUNED.zk_session_timeout
    eff = effective(cfg)
    assert eff["profile"] == "tuned" and eff["overridden"] == ["lock_timeout", "ping_gate", "zk_tick_ms"]
    assert eff["settings"]["lock_timeout"] == 10.0 and eff["settings"]["commit_fence"] is True
    # the cluster heartbeat is the profile's unless set: 5 s for rancher-1.0
    assert from_env({}).profile.cluster_heartbeat == 5.0
    assert from_env({"HALAB_CLUSTER_HEARTBEAT": "1"}).profile.cluster_heartbeat == 1.0


def test_restart_count_from_the_supervisor() -> None:
    cfg = from_env({"HALAB_SERVER_RESTARTS": "4", "HALAB_SERVER_LAST_EXIT": "3"})
    assert (cfg.server_restarts, cfg.last_exit_status) == (4, 3)


@pytest.mark.parametrize(
    "name, value",
    [
        ("HALAB_PROFILE", "rancher-2.0"),
        ("HALAB_PING_GATE", "maybe"),
        ("HALAB_ZK_TICK_MS", "10"),
        ("HALAB_LOCK_NO_SESSION_STATUS", "502"),
        ("CATTLE_HA_CLUSTER_SIZE", "2"),
        ("CATTLE_DB_CATTLE_MAXTOTAL", "0"),
        ("CATTLE_DB_CATTLE_MAXTOTAL", "fifty"),
        ("HALAB_ZK_SESSION_TIMEOUT", "-1"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        from_env({name: value})
