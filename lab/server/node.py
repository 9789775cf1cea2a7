"""One simulated Rancher server host: wires ZooKeeper, the database, the HA state machine, the
process engine and the two HTTP servers, and runs the scheduled tasks.

Start-up: the management view answers at once; the kazoo session comes up in the background (the
host's ZooKeeper member is the supervisor's child, supervisor.py); the database is awaited with
bounded, logged retries and migrated under the change-log lock; then the cluster heartbeat, the
health check and the process replay run on their schedules. The API port opens at once with the
profile's ping gate (`/ping` is 503 while `starting`), else once the schema is in place, as
cattle's Jetty opened its connectors only after the application had started.

The server exits with status 3 on a modelled OutOfMemoryError and, with the profile's
`exit_on_session_loss` (rancher-1.0), when its ZooKeeper session counts as lost (coord.LossClock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from . import cluster, clustermgr, db, management, store, zkserver
from .api import Api
from .auth import Authenticator
from .cache import ResourceCache
from .config import Config, effective
from .coord import Coordinator
from .db import Database, DatabaseError
from .heap import HeapModel, OutOfMemory
from .listener import Listener
from .metrics import Gauge, RequestMetrics, render_gauges
from .migrations import MigrationLockTimeout, MySQLLockStore, migrate
from .processes import EVENTS, ProcessEngine
from .redisbus import EventBus, parse_hosts
from .state import HAStateMachine, Health

log = logging.getLogger("halab.node")

HEALTH_INTERVAL = 1.0
ZK_MONITOR_INTERVAL = 1.0  # how old the ZooKeeper member's `mntr` figures in /metrics may be
RESOURCE_COUNT_INTERVAL = 5.0
REPLAY_SCAN_INTERVAL = 1.0  # the process queue's metrics; replays go at the profile's period
DB_RETRY_MAX = 5.0
SESSION_CHECK_INTERVAL = 0.5
EXIT_SESSION_LOST = 3  # cattle's System.exit(3)


class Node:
    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.uuid = f"{cfg.node_name}-{uuidlib.uuid4().hex[:12]}"
        self.started = time.time()
        self.heap = HeapModel(cfg.heap_xmx, cfg.heap_scale, cfg.profile.heap_baseline, cfg.profile.heap_per_resource)
        self.sm = HAStateMachine()
        self.db = Database(cfg, loop)
        self.coord = Coordinator(cfg.zk_connection_string, cfg.profile, cfg.node_name)
        self.cache = ResourceCache(self.heap)
        self.engine = ProcessEngine(cfg, self.db, self.coord, self.cache, loop)
        if cfg.redis_hosts:
            self.engine.bus = EventBus(parse_hosts(cfg.redis_hosts), self.engine.on_event)
        self.auth = Authenticator(self.db)
        self.requests = RequestMetrics()
        self.ctx = store.Context(cfg.registration_url)
        self.bootstrapped = False
        self._last_replay = float("-inf")
        self.db_ok = False
        self.db_error: str | None = "not checked yet"
        self.zk_mode = "unknown"
        self.zk_figures: dict[str, float] = {}  # the member's `mntr`, refreshed on its own schedule
        self.members: list[cluster.Member] = []
        self.default_project_id: int | None = None
        self.exit_code: asyncio.Future[int] = loop.create_future()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ip = _own_ip()
        self._stale = cluster.StaleTracker()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        log.info(
            "node %s starting: cluster size %d, ZooKeeper %s, database %s:%d/%s, heap budget %d MiB "
            "(-Xmx%d MiB / %d), pool %d",
            self.cfg.node_name,
            self.cfg.cluster_size,
            self.cfg.zk_connection_string,
            self.cfg.db_host,
            self.cfg.db_port,
            self.cfg.db_name,
            self.heap.budget >> 20,
            self.cfg.heap_xmx >> 20,
            self.cfg.heap_scale,
            self.cfg.pool_max_total,
        )
        self.coord.listen_on_loop(self.loop, self._on_zk_state)
        self.coord.start()
        if self.cfg.profile.exit_on_session_loss:
            self._spawn(self._every(SESSION_CHECK_INTERVAL, self._check_session))
        await self._serve(management.app(self), self.cfg.management_port)
        if self.cfg.profile.ping_gate:
            await self._serve(Api(self).app(), self.cfg.api_port)
        self._spawn(self._bootstrap())

    async def _serve(self, app: web.Application, port: int) -> None:
        listener = Listener(app, {"X-Rancher-Node": self.cfg.node_name})
        await listener.start("0.0.0.0", port)
        self._listeners.append(listener)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(self.loop.create_task(coro))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.engine.close()
        if self.engine.bus is not None:
            await self.engine.bus.close()
        for listener in self._listeners:
            await listener.stop()
        await self.loop.run_in_executor(None, self.coord.stop)
        self.db.close()

    def request_exit(self, code: int) -> None:
        if not self.exit_code.done():
            self.exit_code.set_result(code)

    def die_of_oom(self, e: OutOfMemory) -> None:
        """What a JVM with -XX:+ExitOnOutOfMemoryError does; see heap.py."""
        log.error("modelled heap exhausted: %s", e)
        sys.stderr.write('Exception in thread "qtp-api" java.lang.OutOfMemoryError: Java heap space\n')
        sys.stderr.write("Terminating due to java.lang.OutOfMemoryError: Java heap space\n")
        _exit_now(3)

    async def _check_session(self) -> None:
        reason = self.coord.loss.lost(time.monotonic())
        if reason is not None:
            # cattle's connection-state listener: log and System.exit(3), no orderly shutdown (the
            # kazoo client could take its connection timeout to close).
            log.error("Lost Connection to ZooKeeper! (%s)", reason)
            _exit_now(EXIT_SESSION_LOST)

    # -- state ---------------------------------------------------------------------------------

    def _on_zk_state(self, state: str) -> None:
        self.cache.set_enabled(self.coord.connected)
        self._evaluate()

    def _evaluate(self) -> None:
        t = self.sm.observe(Health(self.bootstrapped, self.coord.connected, self.db_ok))
        if t is not None:
            log.warning(
                "HA state %s -> %s%s", t.before.value, t.after.value, f" ({'; '.join(t.reasons)})" if t.reasons else ""
            )

    # -- scheduled tasks -----------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.db.run_system(_ping)
                break
            except DatabaseError as e:
                self._db_failed(str(e))
                log.warning("waiting for the database: %s (retry in %.1f s)", e, delay)
                await asyncio.sleep(delay)
                delay = min(DB_RETRY_MAX, delay * 2)
        self._db_healthy()
        try:
            await self.db.run_system(self._migrate)
            self.default_project_id = await self.db.run_system(store.default_project_id)
        except MigrationLockTimeout as e:
            log.error("%s; giving up", e)
            self.request_exit(1)
            return
        self.bootstrapped = True
        self._evaluate()
        if not self.cfg.profile.ping_gate:
            await self._serve(Api(self).app(), self.cfg.api_port)
        if self.engine.bus is not None:
            self.engine.bus.start(EVENTS)
        self._spawn(self._every(HEALTH_INTERVAL, self._health))
        if self.cfg.start_zookeeper:
            # Apart from the health check: a member slow to answer must not delay the HA state.
            self._spawn(self._every(ZK_MONITOR_INTERVAL, self._zk_monitor))
        self._spawn(self._every(self.cfg.profile.cluster_heartbeat, self._heartbeat))
        self._spawn(self._every(REPLAY_SCAN_INTERVAL, self._replay))
        if self.heap.per_resource:
            self._spawn(self._every(RESOURCE_COUNT_INTERVAL, self._count_resources))

    def _migrate(self, conn: Any) -> list[str]:
        prof = self.cfg.profile
        return migrate(MySQLLockStore(conn), self.uuid, prof.changelog_lock_stale, prof.migration_max_wait)

    async def _every(self, interval: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            started = time.monotonic()
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a scheduled task must outlive one bad round
                log.warning("%s failed: %s: %s", getattr(fn, "__name__", fn), type(e).__name__, e)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _health(self) -> None:
        try:
            await asyncio.wait_for(self.db.run_system(_ping), timeout=3.0)
            self._db_healthy()
        except (DatabaseError, asyncio.TimeoutError) as e:
            self._db_failed(str(e) or "health check timed out")
        self.zk_mode = await self._zk_mode() if self.cfg.start_zookeeper else "external"
        await self.loop.run_in_executor(self.engine.zk_executor, self.coord.revive)
        self._evaluate()

    def _db_healthy(self) -> None:
        if not self.db_ok:
            log.info("database health check ok")
        self.db_ok, self.db_error = True, None
        self._evaluate()

    def _db_failed(self, error: str) -> None:
        if self.db_ok:
            log.warning("database health check failing: %s", error)
        self.db_ok, self.db_error = False, error
        self._evaluate()

    def _zk_client_port(self) -> int | None:
        """This host's member's client port; None while cluster-manager has given it no slot."""
        if not self.cfg.profile.cluster_manager:
            return zkserver.CLIENT_PORT
        # This host's member listens on its slot's client port; the others' are tunnels.
        slot = int(clustermgr.read_state().get("zookeeper", {}).get("slot") or 0)
        return cluster.slot_port("zk-client", slot) if slot else None

    async def _zk_mode(self) -> str:
        port = self._zk_client_port()
        return await zkserver.mode(port=port) if port else "no slot"

    async def _zk_monitor(self) -> None:
        port = self._zk_client_port()
        self.zk_figures = await zkserver.monitor(port=port) if port else {}

    async def _heartbeat(self) -> None:
        if self.cfg.profile.cluster_manager:
            # cluster-manager keeps the table (clustermgr.py); the server only shows it.
            self.members = await self.db.run_system(cluster.members)
            return
        data = {
            "state": self.sm.state.value,
            "reasons": list(self.sm.reasons),
            "zkMode": self.zk_mode,
            "zkSession": self.coord.state,
            "memoryDegraded": self.heap.memory_degraded,
            "pid": os.getpid(),
        }
        members = await self.db.run_system(cluster.heartbeat, self.uuid, self.cfg.node_name, self._ip, data)
        for m in self._stale.observe(members, self.uuid):
            if await self.db.run_system(cluster.remove, m):
                log.warning(
                    "removed cluster member %s (id %d): heartbeat unchanged for %d polls",
                    m.name,
                    m.id,
                    cluster.STALE_POLLS,
                )
                members = [x for x in members if x.id != m.id]
        self.members = members

    async def _count_resources(self) -> None:
        count = await self.db.run_system(store.count_managed)
        try:
            self.heap.resources_changed(count)
        except OutOfMemory as e:
            self.die_of_oom(e)

    async def _replay(self) -> None:
        # The queue's metrics every scan; a replay every profile period. With the state gate only
        # an active node (quorum and database) takes over other nodes' processes; without it every
        # node tries, and the lock decides.
        now = time.monotonic()
        due = now - self._last_replay >= self.cfg.profile.process_replay_period
        submit = due and (self.sm.active or not self.cfg.profile.state_gate)
        if submit:
            self._last_replay = now
        await self.engine.replay_once(submit=submit)

    # -- views ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        master = cluster.master(self.members)
        manager = clustermgr.read_state() if self.cfg.profile.cluster_manager else {}
        members = [
            {
                "id": m.id,
                "name": m.name,
                "uuid": m.uuid,
                "ipAddress": m.ip_address,
                "heartbeat": m.heartbeat,
                "state": m.data.get("state"),
                "zkMode": m.data.get("zkMode"),
                "memoryDegraded": m.data.get("memoryDegraded"),
                "master": master is not None and m.id == master.id,
                "self": m.uuid in (self.uuid, manager.get("uuid")),
                "slot": m.assigned_index,
            }
            for m in self.members
        ]
        pool = self.db.pool_stats()
        return {
            "node": self.cfg.node_name,
            "clock": time.time(),  # this host's wall clock (lab/server/hostclock.py)
            "uuid": self.uuid,
            "state": self.sm.state.value,
            "reasons": list(self.sm.reasons),
            "bootstrapped": self.bootstrapped,
            "clusterSize": self.cfg.cluster_size,
            "master": master.name if master else None,
            "isMaster": master is not None and master.uuid in (self.uuid, manager.get("uuid")),
            "members": members,
            "clusterManager": manager or None,
            "zookeeper": {
                "session": self.coord.state,
                "mode": self.zk_mode,
                "connectionString": self.cfg.zk_connection_string,
                "disconnectedSeconds": round(self.coord.loss.down_for(time.monotonic()), 1),
            },
            "server": {"restarts": self.cfg.server_restarts, "lastExitStatus": self.cfg.last_exit_status},
            "profile": effective(self.cfg),
            "database": {"ok": self.db_ok, "error": self.db_error, "host": self.cfg.db_host, "driver": db.DRIVER},
            "pool": {
                "max": pool.max_size,
                "size": pool.size,
                "inUse": pool.in_use,
                "waiting": pool.waiting,
                "exhaustedTotal": pool.exhausted_total,
                "waitedTotal": pool.waited_total,
                "waitSecondsTotal": round(pool.wait_seconds_total, 3),
                "peakInUse": pool.peak_in_use,
                "tooManyConnectionsTotal": self.db.too_many_total,
            },
            "processes": {"queueDepth": self.engine.queue_depth, "oldestAgeSeconds": self.engine.oldest_age},
            "events": self.engine.bus.status() if self.engine.bus is not None else None,
            "memory": {
                "budgetBytes": self.heap.budget,
                "xmxBytes": self.heap.xmx,
                "usedBytes": self.heap.used,
                "cacheBytes": self.heap.cache_bytes,
                "cacheLimitBytes": self.heap.cache_limit,
                "baselineBytes": self.heap.baseline_bytes,
                "retainedBytes": self.heap.retained_bytes,
                "resources": self.heap.resources,
                "pressure": round(self.heap.pressure, 4),
                "degraded": self.heap.memory_degraded,
            },
            "uptimeSeconds": round(time.time() - self.started, 1),
        }

    def metrics_text(self) -> str:
        pool = self.db.pool_stats()
        state = self.sm.state.value
        g = [
            Gauge("cattle_ha_state", "1 for the node's current HA state.", 1, (("state", state),)),
            Gauge("cattle_ha_active", "1 when the node is active (serves /ping and writes).", int(self.sm.active)),
            Gauge("cattle_db_pool_max", "Connection pool size limit (CATTLE_DB_CATTLE_MAXTOTAL).", pool.max_size),
            Gauge("cattle_db_pool_size", "Open pooled connections, including ones being opened.", pool.size),
            Gauge("cattle_db_pool_in_use", "Pooled connections in use.", pool.in_use),
            Gauge("cattle_db_pool_waiting", "Requests waiting for a pooled connection.", pool.waiting),
            Gauge("cattle_db_pool_exhausted_total", "Waits that ended in POOL_EXHAUSTED.", pool.exhausted_total),
            Gauge("cattle_db_pool_acquired_total", "Pooled connections handed out.", pool.acquired_total),
            Gauge("cattle_db_pool_waited_total", "Requests that waited for a pooled connection.", pool.waited_total),
            Gauge(
                "cattle_db_pool_wait_seconds_total",
                "Seconds requests spent waiting for a pooled connection.",
                round(pool.wait_seconds_total, 6),
            ),
            Gauge("cattle_db_pool_peak_in_use", "Most pooled connections in use at once.", pool.peak_in_use),
            Gauge(
                "cattle_db_too_many_connections_total",
                "Connections MySQL refused with error 1040.",
                self.db.too_many_total,
            ),
            Gauge("cattle_db_up", "1 when the database health check passes.", int(self.db_ok)),
            Gauge(
                "cattle_process_queue_depth", "Unfinished process_instance rows (all nodes).", self.engine.queue_depth
            ),
            Gauge("cattle_process_oldest_age_seconds", "Age of the oldest unfinished process.", self.engine.oldest_age),
            Gauge("cattle_process_finished_total", "Processes this node finished.", self.engine.finished_total),
            Gauge(
                "cattle_process_replayed_total", "Processes this node finished by replay.", self.engine.replayed_total
            ),
            Gauge("cattle_zookeeper_connected", "1 while the kazoo session is connected.", int(self.coord.connected)),
            Gauge(
                "cattle_zookeeper_session_state", "1 for the kazoo session state.", 1, (("state", self.coord.state),)
            ),
            Gauge("cattle_zookeeper_mode", "1 for this host's ZooKeeper mode (srvr).", 1, (("mode", self.zk_mode),)),
            *(
                Gauge(f"cattle_zookeeper_member_{key.removeprefix('zk_')}", text, self.zk_figures[key])
                for key, text in zkserver.MNTR_GAUGES.items()
                if key in self.zk_figures
            ),
            Gauge(
                "cattle_process_failed_total",
                "Process runs that failed with an error (retried by replay).",
                self.engine.failed_total,
            ),
            Gauge("cattle_cache_entries", "Resources in the read cache.", len(self.cache)),
            Gauge("cattle_cache_hits_total", "Reads by id served from the cache.", self.cache.hits),
            Gauge("cattle_cache_misses_total", "Reads by id that went to MySQL.", self.cache.misses),
            Gauge(
                "cattle_cache_evictions_total",
                "Entries evicted to stay within the cache's heap share.",
                self.cache.evictions,
            ),
            Gauge("cattle_cache_bytes", "Bytes held by the read cache.", self.heap.cache_bytes),
            Gauge("cattle_cache_limit_bytes", "The cache's share of the heap budget.", self.heap.cache_limit),
            Gauge("cattle_heap_budget_bytes", "Modelled heap budget in real bytes (Xmx / scale).", self.heap.budget),
            Gauge("cattle_heap_used_bytes", "Baseline, resources, cache and in-flight request memory.", self.heap.used),
            Gauge("cattle_heap_retained_bytes", "What the live managed resources hold.", self.heap.retained_bytes),
            Gauge("cattle_heap_pressure", "Used / budget.", round(self.heap.pressure, 4)),
            Gauge("cattle_heap_peak_bytes", "Highest modelled heap use so far.", self.heap.peak_bytes),
            Gauge("cattle_heap_peak_ratio", "Highest used / budget since start.", round(self.heap.peak_pressure, 4)),
            Gauge(
                "cattle_heap_memory_degraded",
                "1 above the GC threshold (requests stall).",
                int(self.heap.memory_degraded),
            ),
            Gauge("cattle_cluster_members", "Rows in the cluster table.", len(self.members)),
            Gauge(
                "cattle_server_restarts_total",
                "Times the supervisor restarted this host's API server.",
                self.cfg.server_restarts,
            ),
        ]
        lines = self.requests.render(self.cfg.node_name) + render_gauges(self.cfg.node_name, g)
        return "\n".join(lines) + "\n"


def _exit_now(code: int) -> None:
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _ping(conn: Any) -> None:
    db.ping(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def _own_ip() -> str | None:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
