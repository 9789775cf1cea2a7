"""This host's ZooKeeper member: its configuration, its process, its `srvr` mode, its `mntr`
figures and `ruok`.

The node's supervisor runs Debian's ZooKeeper as a child (`zkServer.sh start-foreground`). Its
timing comes from the node profile: followers must connect and sync within `initLimit` ticks, and
a follower that hears nothing from the leader for `syncLimit` ticks drops out and an election
starts (rancher-1.0: tickTime 2000, 20 s and 10 s; tuned: tickTime 500, 5 s and 2 s).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from .config import Config
from .profiles import Profile

ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"
CLIENT_PORT = 2181


def render_config(
    data_dir: str, p: Profile, servers: Mapping[int, tuple[str, ...]], client_port: int = CLIENT_PORT
) -> str:
    lines = [
        f"tickTime={p.zk_tick_ms}",
        f"initLimit={p.zk_init_limit}",
        f"syncLimit={p.zk_sync_limit}",
        # 0: a follower's connect to its leader may take initLimit ticks (ZooKeeper's default).
        *([f"connectToLearnerMasterLimit={p.zk_connect_to_leader_limit}"] if p.zk_connect_to_leader_limit else []),
        f"dataDir={data_dir}",
        f"clientPort={client_port}",
        "maxClientCnxns=0",
        # The admin server would take 8080, the API's port.
        "admin.enableServer=false",
        "4lw.commands.whitelist=srvr,mntr,ruok,stat",
        # Bind quorum/election ports on every interface: a node's own name resolves to one of
        # its several networks only.
        "quorumListenOnAllIPs=true",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
    ]
    for sid in sorted(servers):
        lines.append(f"server.{sid}=" + "|".join(f"{h}:2888:3888" for h in servers[sid]))
    return "\n".join(lines) + "\n"


def write_config(cfg: Config) -> str:
    """Write zoo.cfg and myid into the data directory; returns the zoo.cfg path."""
    os.makedirs(cfg.zk_data_dir, exist_ok=True)
    path = os.path.join(cfg.zk_data_dir, "zoo.cfg")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_config(cfg.zk_data_dir, cfg.profile, cfg.zk_servers))
    if cfg.zk_servers:
        with open(os.path.join(cfg.zk_data_dir, "myid"), "w", encoding="utf-8") as f:
            f.write(f"{cfg.zk_myid}\n")
    return path


def multi_address(servers: Mapping[int, tuple[str, ...]]) -> bool:
    return any(len(hosts) > 1 for hosts in servers.values())


def jvm_flags(heap: str, servers: Mapping[int, tuple[str, ...]], p: Profile) -> str:
    # A small, quiet JVM: serial GC and C1 only keep RSS near the heap size.
    flags = (
        f"-Xmx{heap} -Xms16m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k "
        f"-XX:MaxMetaspaceSize=64m -XX:ReservedCodeCacheSize=32m -XX:+ExitOnOutOfMemoryError "
        # how long an election connection to an unreachable peer may hang
        f"-Dzookeeper.cnxTimeout={p.zk_election_connect_timeout_ms} "
        # The election's timing (docs/survivability.md, "the leader-side blackout"): how far the
        # notification back-off grows, how long a voter keeps trying its elected leader, and how
        # long that leader waits for voters that went back to looking (-1: initLimit ticks).
        f"-Dzookeeper.fastleader.maxNotificationInterval={p.zk_max_notification_interval_ms} "
        f"-Dzookeeper.leaderConnectDelayDuringRetryMs={p.zk_leader_connect_delay_ms} "
        f"-Dzookeeper.leader.maxTimeToWaitForEpoch={p.zk_max_wait_for_epoch_ms} "
        # No name cache: a setup whose peers change address on restart (plain `docker compose` with
        # other networks) must not keep electing towards an old address for the JVM's default 30 s.
        f"-Dsun.net.inetaddr.ttl=0 -Dsun.net.inetaddr.negative.ttl=0"
    )
    if multi_address(servers):
        # Members on several networks list every address; a peer uses one it can reach. This
        # matters because a follower adopts the leader's member list when the leader establishes
        # itself, so every member's list must hold addresses that work from every member.
        flags += " -Dzookeeper.multiAddress.enabled=true -Dzookeeper.multiAddress.reachabilityCheckTimeoutMs=500"
    return flags


async def start(cfg: Config) -> asyncio.subprocess.Process:
    """The member's process. Its peers' names are in /etc/hosts with fixed addresses
    (lab/cluster/addressing.py), so no lookup depends on Docker's DNS."""
    path = write_config(cfg)
    env = dict(os.environ)
    env.update({"JMXDISABLE": "true", "JVMFLAGS": jvm_flags(cfg.zk_heap, cfg.zk_servers, cfg.profile)})
    return await asyncio.create_subprocess_exec(ZK_SERVER, "start-foreground", path, env=env)


def parse_mode(srvr_output: str) -> str:
    """leader | follower | standalone | observer | not serving"""
    for line in srvr_output.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip() or "unknown"
    return "not serving"


async def four_letter_word(
    word: bytes, host: str = "127.0.0.1", port: int = CLIENT_PORT, timeout: float = 1.0
) -> str | None:
    """The member's answer to a four-letter word; None when it does not answer (not running)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(word)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)  # the server closes after answering
        return data.decode("utf-8", "replace")
    except (OSError, asyncio.TimeoutError):
        return ""
    finally:
        writer.close()


async def mode(host: str = "127.0.0.1", port: int = CLIENT_PORT, timeout: float = 1.0) -> str:
    """This host's ZooKeeper mode from the `srvr` four-letter word."""
    answer = await four_letter_word(b"srvr", host, port, timeout)
    return "not running" if answer is None else parse_mode(answer) if answer else "not serving"


# The `mntr` figures the node's /metrics shows as cattle_zookeeper_member_<key without zk_>.
# Latencies are ZooKeeper's own: milliseconds, over every request since the member started.
MNTR_GAUGES = {
    "zk_outstanding_requests": "Requests queued at this host's ZooKeeper member (mntr).",
    "zk_avg_latency": "Average request latency of this host's member since it started, ms (mntr).",
    "zk_max_latency": "Longest request latency of this host's member since it started, ms (mntr).",
    "zk_num_alive_connections": "Client connections to this host's member (mntr).",
    "zk_znode_count": "Znodes in this host's member's data tree (mntr).",
}


def parse_mntr(text: str) -> dict[str, float]:
    """`mntr`'s `zk_<key><TAB><value>` lines -> the numeric ones. A member that is not serving
    answers one sentence instead: {}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep and key.startswith("zk_"):
            try:
                out[key] = float(value)
            except ValueError:  # zk_version, zk_server_state
                continue
    return out


async def monitor(host: str = "127.0.0.1", port: int = CLIENT_PORT, timeout: float = 0.5) -> dict[str, float]:
    """This host's member's `mntr` figures; {} when it does not answer or is not serving."""
    return parse_mntr(await four_letter_word(b"mntr", host, port, timeout) or "")


def first_host(connection_string: str) -> tuple[str, int]:
    """The first `host[:port]` of a ZooKeeper connection string (a chroot suffix is ignored)."""
    first = connection_string.split("/", 1)[0].split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        return first, CLIENT_PORT
    return host, int(port)


async def wait_ruok(connection_string: str, tries: int, interval: float) -> bool:
    """What rancher/server's launcher does before it starts cattle: ask the first host of the
    connection string for `ruok` until it answers `imok`, at most `tries` times `interval` apart.
    A member without a quorum still answers imok, so this only waits for the process."""
    host, port = first_host(connection_string)
    for attempt in range(tries):
        if await four_letter_word(b"ruok", host, port) == "imok":
            return True
        if attempt + 1 < tries:
            await asyncio.sleep(interval)
    return tries == 0
