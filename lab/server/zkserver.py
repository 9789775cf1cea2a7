"""This host's ZooKeeper member: its configuration, its process, and its `srvr` mode.

The node runs Debian's ZooKeeper as a child (`zkServer.sh start-foreground`). Timing is tuned for
fast failure detection with tickTime 500 ms: followers must connect and sync within
`initLimit` ticks (5 s) and a follower that hears nothing from the leader for `syncLimit` ticks
(2 s) drops out and an election starts; elections themselves take well under a second.
"""

from __future__ import annotations

import asyncio
import os
from typing import Mapping

from .config import Config

ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"
CLIENT_PORT = 2181
INIT_LIMIT = 10
SYNC_LIMIT = 4
# ms: how long an election connection to an unreachable peer may hang (default 5000)
ELECTION_CONNECT_TIMEOUT_MS = 1000


def render_config(data_dir: str, tick_ms: int, servers: Mapping[int, tuple[str, ...]]) -> str:
    lines = [
        f"tickTime={tick_ms}",
        f"initLimit={INIT_LIMIT}",
        f"syncLimit={SYNC_LIMIT}",
        f"dataDir={data_dir}",
        f"clientPort={CLIENT_PORT}",
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
        f.write(render_config(cfg.zk_data_dir, cfg.zk_tick_ms, cfg.zk_servers))
    if cfg.zk_servers:
        with open(os.path.join(cfg.zk_data_dir, "myid"), "w", encoding="utf-8") as f:
            f.write(f"{cfg.zk_myid}\n")
    return path


def multi_address(servers: Mapping[int, tuple[str, ...]]) -> bool:
    return any(len(hosts) > 1 for hosts in servers.values())


def jvm_flags(heap: str, servers: Mapping[int, tuple[str, ...]]) -> str:
    # A small, quiet JVM: serial GC and C1 only keep RSS near the heap size.
    flags = (
        f"-Xmx{heap} -Xms16m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k "
        f"-XX:MaxMetaspaceSize=64m -XX:ReservedCodeCacheSize=32m -XX:+ExitOnOutOfMemoryError "
        f"-Dzookeeper.cnxTimeout={ELECTION_CONNECT_TIMEOUT_MS} "
        # A restarted peer may come back with another address (Docker reassigns them); the JVM's
        # default 30 s name cache would keep electing towards the old one and stall the quorum.
        f"-Dsun.net.inetaddr.ttl=0 -Dsun.net.inetaddr.negative.ttl=0"
    )
    if multi_address(servers):
        # Members on several networks list every address; a peer uses one it can reach. This
        # matters because a follower adopts the leader's member list when the leader establishes
        # itself, so every member's list must hold addresses that work from every member.
        flags += " -Dzookeeper.multiAddress.enabled=true -Dzookeeper.multiAddress.reachabilityCheckTimeoutMs=500"
    return flags


async def start(cfg: Config) -> asyncio.subprocess.Process:
    path = write_config(cfg)
    env = dict(os.environ)
    env.update({"JMXDISABLE": "true", "JVMFLAGS": jvm_flags(cfg.zk_heap, cfg.zk_servers)})
    return await asyncio.create_subprocess_exec(ZK_SERVER, "start-foreground", path, env=env)


def parse_mode(srvr_output: str) -> str:
    """leader | follower | standalone | observer | not serving"""
    for line in srvr_output.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip() or "unknown"
    return "not serving"


async def mode(host: str = "127.0.0.1", port: int = CLIENT_PORT, timeout: float = 1.0) -> str:
    """This host's ZooKeeper mode from the `srvr` four-letter word."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return "not running"
    try:
        writer.write(b"srvr")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)  # the server closes after answering
        return parse_mode(data.decode("utf-8", "replace"))
    except (OSError, asyncio.TimeoutError):
        return "not serving"
    finally:
        writer.close()
