"""cluster-manager v0.1.5 inside the node (rancher-1.0 profile): membership in the `cluster`
table, slots, tunnels, and this host's ZooKeeper member and Redis server.

What Rancher v1.0.2 to v1.1.4 ran as the `rancher-ha` container, in one asyncio task of the node's
supervisor (which stands in for the host, so this keeps running while the API server restarts):

* A heartbeat every `cluster_heartbeat` seconds writes a counter into this manager's row,
  inserting the row when it is missing. Each start of the manager draws a new uuid, so a restart
  is a new member. A failed heartbeat or poll ends the manager (`log.Fatal`); Docker restarted it.
* A poll every `cluster_heartbeat` seconds forgets members that missed `MAX_MISSED` heartbeats;
  the master (lowest id) gives slots to members without one; then, when the slots changed, the
  node reconfigures: tunnels to its peers' slots (cluster.tunnel_plan), and when it has a slot,
  the ZooKeeper member and Redis server of that slot, (re)started when its slot changed.
* The ZooKeeper configuration never lists anything but the slots 1..N on the loopback
  (cluster.zk_servers): what changes with membership is where the tunnels lead, and which slot,
  hence which `myid` and ports, this host's member has. Its data lived on a tmpfs, so every
  start of the member begins empty.
* cluster-manager v0.1.5 meant to wait for a majority of members before reconfiguring, but its
  count included the empty slots, so it never waited; the lab does not wait either.

The manager publishes what it applied in `STATE_FILE` for the API server (its ZooKeeper client
port, the status view) and the harness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import cluster, zkserver
from .changesets import CLUSTER_TABLE
from .config import Config
from .db import Conn, close, connect, is_connection_error
from .tunnels import Tunnels

log = logging.getLogger("halab.clustermgr")

T = TypeVar("T")
STATE_FILE = "/tmp/halab-cluster.json"
REDIS_SERVER = "redis-server"


class ManagerExit(Exception):
    """What made cluster-manager log.Fatal and exit."""


def cluster_address(cfg: Config) -> str:
    """CATTLE_HA_CLUSTER_IP's role: this node's own name on the peer network (its own entry of
    HALAB_ZK_SERVERS), or the loopback for one node, as cluster-manager defaulted it."""
    own = cfg.zk_servers.get(cfg.zk_myid)
    return own[-1] if own else cluster.LOOPBACK


def render_zk_config(cfg: Config, slot: int) -> str:
    """zoo.cfg as rancher/server's `zk` script wrote it for INDEX=slot and CLUSTER_SIZE."""
    text = zkserver.render_config(cfg.zk_data_dir, cfg.profile, {}, client_port=cluster.slot_port("zk-client", slot))
    return text + "".join(f"server.{s}={h}:{q}:{e}\n" for s, (h, q, e) in cluster.zk_servers(cfg.cluster_size).items())


def write_zk_config(cfg: Config, slot: int) -> str:
    """A new zk container's files: an empty data folder (its tmpfs), zoo.cfg and myid."""
    shutil.rmtree(cfg.zk_data_dir, ignore_errors=True)
    os.makedirs(cfg.zk_data_dir)
    path = os.path.join(cfg.zk_data_dir, "zoo.cfg")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_zk_config(cfg, slot))
    with open(os.path.join(cfg.zk_data_dir, "myid"), "w", encoding="utf-8") as f:
        f.write(f"{slot}\n")
    return path


async def start_zookeeper(cfg: Config, slot: int) -> asyncio.subprocess.Process:
    path = write_zk_config(cfg, slot)
    env = dict(os.environ, JMXDISABLE="true", JVMFLAGS=zkserver.jvm_flags(cfg.zk_heap, {}, cfg.profile))
    return await asyncio.create_subprocess_exec(zkserver.ZK_SERVER, "start-foreground", path, env=env)


async def start_redis(cfg: Config, slot: int) -> asyncio.subprocess.Process:
    # rancher/server's `redis` script: redis-server --port $((INDEX + 6379 - 1)), nothing saved.
    return await asyncio.create_subprocess_exec(
        REDIS_SERVER,
        "--port",
        str(cluster.slot_port("redis", slot)),
        "--bind",
        cluster.LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        "/tmp",
        stdout=asyncio.subprocess.DEVNULL,
    )


class Child:
    """One of the slot's containers (zk, redis): (re)created when the slot changes, restarted
    with the same slot after Docker's restart-policy delay when it exits or cannot start."""

    def __init__(
        self,
        name: str,
        start: Callable[[int], Awaitable[asyncio.subprocess.Process]],
        restart_delay: Callable[[float | None, float], float],
    ) -> None:
        self.name = name
        self._start = start
        self._delay = restart_delay
        self.slot = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._keeper: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def state(self) -> dict[str, Any]:
        pid = self.proc.pid if self.proc is not None and self.running else None
        return {"slot": self.slot, "pid": pid, "restarts": self.restarts}

    async def ensure(self, slot: int) -> None:
        if self.slot == slot and self._keeper is not None:
            return
        await self.stop()
        log.info("starting %s for slot %d", self.name, slot)
        self.slot = slot
        self._keeper = asyncio.ensure_future(self._keep(slot))

    async def _keep(self, slot: int) -> None:
        delay: float | None = None
        while True:
            started = time.monotonic()
            try:
                self.proc = await self._start(slot)
                outcome = f"exited with status {await self.proc.wait()}"
            except OSError as e:
                outcome = f"could not start: {e}"
            delay = self._delay(delay, time.monotonic() - started)
            log.warning("%s (slot %d) %s; restarting in %.1f s", self.name, slot, outcome, delay)
            await asyncio.sleep(delay)
            self.restarts += 1

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()  # `docker rm -f`
            await proc.wait()


class ClusterManager:
    def __init__(
        self, cfg: Config, restart_delay: Callable[[float | None, float], float], state_file: str = STATE_FILE
    ) -> None:
        self.cfg = cfg
        self.size = cfg.cluster_size
        self.interval = cfg.profile.cluster_heartbeat
        self.address = cluster_address(cfg)
        self.state_file = state_file
        self.tunnels = Tunnels()
        self.zk = Child("zookeeper", lambda slot: start_zookeeper(cfg, slot), restart_delay)
        self.redis = Child("redis", lambda slot: start_redis(cfg, slot), restart_delay)
        self._restart_delay = restart_delay
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clustermgr")
        self._conn: Conn | None = None
        self.starts = 0
        self._fresh()

    def _fresh(self) -> None:
        """What a new cluster-manager process starts from (the containers it made keep running)."""
        self.uuid = str(uuidlib.uuid4())
        self.tracker = cluster.MissedPolls()
        self.master = False
        self.applied: cluster.Slots | None = None
        self.starts += 1

    # -- the manager's database connection (its own, without timeouts, as Go's database/sql) ----

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._db_job, fn, args)

    def _db_job(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return self._call(fn, args)
        except Exception as e:  # noqa: BLE001 - any failure ends the manager, named
            if not is_connection_error(e):
                raise ManagerExit(f"{type(e).__name__}: {e}") from None
        # database/sql retries a statement once on a new connection when the pooled one is dead.
        self._conn = None
        try:
            return self._call(fn, args)
        except Exception as e:  # noqa: BLE001 - any failure ends the manager, named
            raise ManagerExit(f"{type(e).__name__}: {e}") from None

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = connect(self.cfg, connect_timeout=10, read_timeout=None)
        return fn(self._conn, *args)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: one manager process after another, as Docker restarted the exited container."""
        delay: float | None = None
        while True:
            started = time.monotonic()
            try:
                await self._run_once()
            except ManagerExit as e:
                log.error("cluster-manager: %s; exiting (manager start %d)", e, self.starts)
            self._executor_reset()
            delay = self._restart_delay(delay, time.monotonic() - started)
            await asyncio.sleep(delay)
            self._fresh()

    def _executor_reset(self) -> None:
        # A statement still blocked on a dead database keeps its thread and connection: the next
        # manager gets its own, as a new process would.
        old, conn = self._executor, self._conn
        if conn is not None:
            old.submit(close, conn)
        old.shutdown(wait=False)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clustermgr")
        self._conn = None

    async def close(self) -> None:
        await self.zk.stop()
        await self.redis.stop()
        await self.tunnels.close()
        self._executor.shutdown(wait=False)

    async def _run_once(self) -> None:
        await self._db(_create_table)
        await self._db(cluster.checkin, self.uuid, self.cfg.node_name, self.address, 0, 0)
        log.info("cluster-manager %s started as %s (%s)", self.starts, self.uuid, self.address)
        beats = asyncio.ensure_future(self._heartbeats())
        try:
            while True:
                poll = asyncio.ensure_future(self.poll())
                done, _ = await asyncio.wait({beats, poll}, return_when=asyncio.FIRST_COMPLETED)
                if beats in done:
                    poll.cancel()
                    beats.result()
                poll.result()
                await self.tunnels.retry()
                self._write_state()
                await asyncio.sleep(self.interval)
        finally:
            beats.cancel()

    async def _heartbeats(self) -> None:
        beat = 0
        while True:
            await asyncio.sleep(self.interval)
            beat += 1
            await self._db(cluster.checkin, self.uuid, self.cfg.node_name, self.address, 0, beat)

    async def poll(self) -> None:
        """One turn of cluster-manager's loop."""
        rows = await self._db(cluster.members)
        for m in self.tracker.observe(rows):
            log.info("forgetting cluster member %s (id %d, %s, slot %d)", m.uuid, m.id, m.ip_address, m.assigned_index)
            try:
                await self._db(cluster.delete, m.uuid)
            except ManagerExit as e:
                log.error("failed to delete member %s: %s", m.uuid, e)
                continue
            self.tracker.forget(m.uuid)
        known = self.tracker.members()
        master = cluster.is_master(known, self.uuid)
        if master != self.master:
            log.info("currently master: %s", master)
        self.master = master
        if master:
            by_slot = cluster.assign_slots(known, self.size)
            if by_slot is not None:
                for slot, m in sorted(by_slot.items()):
                    if m.assigned_index != slot:
                        log.info("assigning %s %s to slot %d", m.uuid, m.ip_address, slot)
                await self._db(cluster.save_slots, by_slot)
                return  # cluster-manager applies the new slots on its next turn
        slots = cluster.slots_of(known, self.size, self.uuid)
        if slots != self.applied:
            log.info("cluster changed, slot=%d, members=[%s]", slots.own, ", ".join(slots.addresses))
            await self.configure(slots)
            self.applied = slots

    async def configure(self, slots: cluster.Slots) -> None:
        for name, spec in cluster.tunnel_plan(slots, self.address).items():
            if spec is None:
                await self.tunnels.remove(name)
            else:
                await self.tunnels.ensure(name, spec)
        if slots.own > 0:
            await self.zk.ensure(slots.own)
            await self.redis.ensure(slots.own)

    def state(self) -> dict[str, Any]:
        slots = self.applied
        return {
            "uuid": self.uuid,
            "address": self.address,
            "managerStarts": self.starts,
            "master": self.master,
            "slot": slots.own if slots else 0,
            "slots": list(slots.addresses) if slots else [],
            "zookeeper": self.zk.state(),
            "redis": self.redis.state(),
            "tunnels": {name: str(spec) for name, spec in sorted(self.tunnels.specs().items())},
            "at": time.time(),
        }

    def _write_state(self) -> None:
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state(), f)
        os.replace(tmp, self.state_file)


def read_state(path: str = STATE_FILE) -> dict[str, Any]:
    """The manager's last written state; empty before its first turn."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _create_table(conn: Conn) -> None:
    """cluster-manager created its own table (the schema may not be there yet)."""
    with conn.cursor() as cur:
        cur.execute(CLUSTER_TABLE)
