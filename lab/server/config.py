"""Node configuration from the environment (cattle's variable names where cattle had one).

The database password never appears in `repr()`, logs or API output.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import cluster, profiles
from .profiles import DEFAULT_PROFILE, Profile, profile

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_XMX = re.compile(r"-Xmx(\d+)([kKmMgGtT]?)(?:\s|$)")


class ConfigError(ValueError):
    """A setting is present but unusable; the node refuses to start."""


def parse_size(text: str) -> int:
    """A JVM-style size (`512m`, `4g`, `1048576`) in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not m:
        raise ConfigError(f"not a size: {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_xmx(java_opts: str, default: int = 1 << 30) -> int:
    """The last `-Xmx` in CATTLE_JAVA_OPTS wins, as in the JVM."""
    found = _XMX.findall(java_opts or "")
    if not found:
        return default
    num, unit = found[-1]
    return int(num) * _SIZE_UNITS[unit.lower()]


def parse_zk_servers(text: str) -> dict[int, tuple[str, ...]]:
    """`1=a1.dc-a|a1.interdc,2=...` -> {1: ('a1.dc-a', 'a1.interdc'), ...}; empty: standalone.

    A member may have several addresses (one per network it is on), in order of preference.
    """
    servers: dict[int, tuple[str, ...]] = {}
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        sid, sep, hosts = item.partition("=")
        names = tuple(h.strip() for h in hosts.split("|"))
        if not sep or not sid.strip().isdigit() or not all(names):
            raise ConfigError(f"HALAB_ZK_SERVERS entry {item!r} is not <id>=<host>[|<host>...]")
        servers[int(sid)] = names
    return servers


@dataclass(frozen=True)
class Config:
    node_name: str
    db_host: str = "db"
    db_port: int = 3306
    db_name: str = "cattle"
    db_user: str = "cattle"
    db_password: str = field(default="cattle", repr=False)
    pool_max_total: int = 50
    pool_max_wait_ms: int = 2000
    cluster_size: int = 1
    registration_url: str = "http://localhost"
    zk_connection_string: str = "127.0.0.1:2181"
    redis_hosts: str = ""  # CATTLE_REDIS_HOSTS; empty: no Redis eventing
    zk_myid: int = 1
    zk_servers: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    zk_data_dir: str = "/var/lib/halab/zookeeper"
    zk_heap: str = "64m"
    start_zookeeper: bool = True
    heap_xmx: int = 1 << 30
    heap_scale: int = 32
    request_heap_bytes: int = 64 << 10
    process_delay_ms: int = 200
    commit_hook: str = ""  # the nemesis's pause point (processes.commit_hook); empty: off
    api_port: int = 8080
    management_port: int = 18080
    # HALAB_PROFILE's settings, each overridden by its own variable when set (profiles.py).
    profile: Profile = field(default_factory=lambda: profile(DEFAULT_PROFILE))
    # Set by the supervisor (supervisor.py) for each start of the server process.
    server_restarts: int = 0
    last_exit_status: int | None = None

    @property
    def heap_budget(self) -> int:
        """Real bytes this node may hold for its modelled heap (see heap.py)."""
        return max(1 << 20, self.heap_xmx // self.heap_scale)


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, minimum: N, kind: Callable[[str], N], what: str) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not {what}") from e
    if value < minimum:
        raise ConfigError(f"{name}={value} is below {minimum}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _number(env, name, default, minimum, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return _number(env, name, default, minimum, float, "a number")


def read_password(env: Mapping[str, str]) -> str:
    """CATTLE_DB_CATTLE_PASSWORD, else the file CATTLE_DB_CATTLE_PASSWORD_FILE, else `cattle`."""
    if "CATTLE_DB_CATTLE_PASSWORD" in env:
        return env["CATTLE_DB_CATTLE_PASSWORD"]
    path = env.get("CATTLE_DB_CATTLE_PASSWORD_FILE", "").strip()
    if not path:
        return "cattle"
    try:
        with open(path, encoding="utf-8") as f:
            # A trailing newline is an artefact of how secret files are written, not password.
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"cannot read CATTLE_DB_CATTLE_PASSWORD_FILE {path}: {e.strerror}") from None


def from_env(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    cluster_size = _int(env, "CATTLE_HA_CLUSTER_SIZE", 1, minimum=1)
    if cluster_size not in (1, 3, 5):
        raise ConfigError(f"CATTLE_HA_CLUSTER_SIZE={cluster_size}: supported sizes are 1, 3 and 5")
    servers = parse_zk_servers(env.get("HALAB_ZK_SERVERS", ""))
    myid = _int(env, "HALAB_ZK_MYID", 1, minimum=1)
    if servers and myid not in servers:
        raise ConfigError(f"HALAB_ZK_MYID={myid} is not among HALAB_ZK_SERVERS ids {sorted(servers)}")
    last_exit = env.get("HALAB_SERVER_LAST_EXIT", "").strip()
    prof = profile_from_env(env)
    return Config(
        node_name=env.get("HALAB_NODE_NAME", "").strip() or socket.gethostname(),
        db_host=env.get("CATTLE_DB_CATTLE_MYSQL_HOST", "db"),
        db_port=_int(env, "CATTLE_DB_CATTLE_MYSQL_PORT", 3306, minimum=1),
        db_name=env.get("CATTLE_DB_CATTLE_MYSQL_NAME", "cattle"),
        db_user=env.get("CATTLE_DB_CATTLE_USERNAME", "cattle"),
        db_password=read_password(env),
        pool_max_total=_int(env, "CATTLE_DB_CATTLE_MAXTOTAL", prof.db_pool_max_total, minimum=1),
        pool_max_wait_ms=_int(env, "CATTLE_DB_CATTLE_MAXWAIT", prof.db_pool_max_wait_ms),
        cluster_size=cluster_size,
        registration_url=env.get("CATTLE_HA_HOST_REGISTRATION_URL", "http://localhost").rstrip("/"),
        # cluster-manager gave cattle every slot on the loopback, whatever the lab wires.
        zk_connection_string=cluster.zk_hosts(cluster_size)
        if prof.cluster_manager
        else env.get("CATTLE_ZOOKEEPER_CONNECTION_STRING", "127.0.0.1:2181"),
        redis_hosts=cluster.redis_hosts(cluster_size) if prof.cluster_manager else "",
        zk_myid=myid,
        zk_servers=servers,
        zk_data_dir=env.get("HALAB_ZK_DATA_DIR", "/var/lib/halab/zookeeper"),
        zk_heap=env.get("HALAB_ZK_HEAP", "64m"),
        start_zookeeper=env.get("HALAB_START_ZOOKEEPER", "1") not in ("0", "false", "no"),
        heap_xmx=parse_xmx(env.get("CATTLE_JAVA_OPTS", "")),
        heap_scale=_int(env, "HALAB_HEAP_SCALE", 32, minimum=1),
        request_heap_bytes=parse_size(env.get("HALAB_REQUEST_HEAP", "64k")),
        process_delay_ms=_int(env, "HALAB_PROCESS_DELAY_MS", 200),
        commit_hook=env.get("HALAB_COMMIT_HOOK", "").strip(),
        api_port=_int(env, "HALAB_API_PORT", 8080, minimum=1),
        management_port=_int(env, "HALAB_MANAGEMENT_PORT", 18080, minimum=1),
        profile=prof,
        server_restarts=_int(env, "HALAB_SERVER_RESTARTS", 0),
        last_exit_status=int(last_exit) if last_exit.lstrip("-").isdigit() else None,
    )


def profile_from_env(env: Mapping[str, str]) -> Profile:
    try:
        return profiles.from_env(env)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def effective(cfg: Config) -> dict[str, Any]:
    """The profile and the value of each of its server settings, marking those the environment
    overrode (for /status.json; `halab status --json` computes the same from a node's environment)."""
    return profiles.effective(cfg.profile)
