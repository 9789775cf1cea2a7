"""The process engine: every state change of a resource is a `process_instance` row.

API writes (create / update / remove) run in one transaction that changes the resource to its
transitioning state (`requested`, `updating`, `removing`) and inserts the process row. The
transaction commits only while this node holds the resource's ZooKeeper lock (and, with the
profile's commit fence, only while its session is still live and no newer holder of the lock has
registered a higher fencing token at the database: coord.Fence), and the API answers only after
COMMIT. A lock held by another process past the lock timeout is a 409; a lock that cannot be
taken for want of a session is a 500 (rancher-1.0: cattle's IllegalStateException) or a 503
NO_QUORUM (tuned).

Execution is asynchronous, by whichever node holds the resource's lock: it runs the resource's
unfinished processes in order, each as start (`requested -> activating` for creates, marking
`running_process_server_id`), the work itself (`HALAB_PROCESS_DELAY_MS`), and finish (`active` or
`removed`, `end_time` set). Both steps are compare-and-set updates under the fence, so a process
finishes exactly once even if two nodes race for it.

Replay: a scheduled task on every node (every active node, with the profile's state gate) looks,
every `process_replay_period` seconds, for unfinished rows older than `process_replay_after`
(cattle: every 15 s, all of them) and runs them (taking the lock without waiting), so when a
node dies mid-process its ZooKeeper session expires, its lock znode vanishes, and a survivor
finishes the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import store
from .cache import ResourceCache
from .config import Config
from .coord import Coordinator, Fence, LockBusy, NoQuorum
from .db import Database
from .gdapi import ApiError
from .inputs import Changes
from .redisbus import EventBus
from .resources import RESOURCE_TYPES, ResourceType

log = logging.getLogger("halab.process")

# process action -> (state set by the API write, state while running, final state)
_FLOW = {
    "create": ("requested", "activating", "active"),
    "update": ("updating", "updating", "active"),
    "remove": ("removing", "removing", "removed"),
}
# The nemesis's pause point (HALAB_COMMIT_HOOK): a hooked write waits while this file exists.
COMMIT_HOOK_FILE = "/tmp/halab-commit-hook"
COMMIT_HOOK_MAX_WAIT = 120.0
MAX_CONCURRENT = 16
REPLAY_BATCH = 200
# cattle's event names (EngineEvents.PROCESS_EXECUTE, IaasEvents.RESOURCE_CHANGE)
PROCESS_EXECUTE = "process.execute"
RESOURCE_CHANGE = "resource.change"
EVENTS = (PROCESS_EXECUTE, RESOURCE_CHANGE)


@dataclass(frozen=True)
class Pending:
    process_id: int
    action: str


def no_session_error(status: int, detail: str) -> ApiError:
    """A lock that could not be taken without a ZooKeeper session (Profile.lock_no_session_status)."""
    if status == 503:
        return ApiError(503, "NO_QUORUM", "this node has no ZooKeeper quorum and refuses writes", detail)
    return ApiError(status, "SERVER_ERROR", "could not take the resource's lock: no ZooKeeper connection", detail)


class ProcessEngine:
    def __init__(
        self, cfg: Config, db: Database, coord: Coordinator, cache: ResourceCache, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.coord = coord
        self.cache = cache
        self.loop = loop
        self.server_id = cfg.node_name
        self.zk_executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="zk")
        self._inflight: set[tuple[str, int]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        # rancher-1.0: cattle's event bus over every node's Redis (redisbus.py, set by the node).
        self.bus: EventBus | None = None
        self.queue_depth = 0
        self.oldest_age = 0.0
        self.finished_total = 0
        self.replayed_total = 0
        self.failed_total = 0

    # -- API writes ----------------------------------------------------------------------------

    def _check_refs(self, conn: Any, changes: Changes) -> None:
        for target, row_id, field_name in changes.refs:
            if not store.exists(conn, target, row_id):
                raise ApiError(
                    422, "InvalidReference", f"{field_name} does not name a live {target.name}", field_name=field_name
                )

    def create_txn(self, conn: Any, rt: ResourceType, changes: Changes) -> dict[str, Any]:
        conn.begin()
        self._check_refs(conn, changes)
        row_id = store.insert_resource(conn, rt, changes.columns, changes.data)
        # Nobody else can see the uncommitted row, so locking it now cannot deadlock.
        with self.coord.hold(rt.name, row_id, self.cfg.profile.lock_timeout) as fence:
            store.insert_process(conn, rt, row_id, "create", self.server_id, self._now())
            fence.check()
            fence.commit(conn)
        row = store.read_row(conn, rt, row_id)
        assert row is not None
        return row

    def change_txn(
        self, conn: Any, rt: ResourceType, row_id: int, action: str, changes: Changes | None
    ) -> dict[str, Any]:
        """update or remove: lock first, then the transaction (the order processes use too)."""
        with self.coord.hold(rt.name, row_id, self.cfg.profile.lock_timeout) as fence:
            fence.register(conn)
            conn.begin()
            # A plain read, as cattle's: the ZooKeeper lock is what keeps two writers apart (and
            # the fence, when on, what refuses a holder that lost it on its way to COMMIT).
            row = store.read_row(conn, rt, row_id)
            if row is None:
                raise ApiError(404, "RESOURCE_NOT_FOUND", f"{rt.name} {rt.format_id(row_id)} not found")
            state = row["state"]
            if action == "remove" and state in ("removing", "removed"):
                conn.rollback()
                return row  # deleting twice is not an error
            if state in _TRANSITIONING or state == "removed":
                raise ApiError(
                    409,
                    "InvalidState",
                    f"{rt.name} {rt.format_id(row_id)} is {state}",
                    "wait until it is no longer transitioning",
                )
            if changes is not None:
                # The compare-and-set: checked on the row this transaction locked FOR UPDATE.
                for column, expected in changes.expect.items():
                    if row.get(column) != expected:
                        raise ApiError(
                            409, "ExpectationFailed", f"{rt.name} {rt.format_id(row_id)} {column} is not {expected!r}"
                        )
            columns: dict[str, Any] = {"state": _FLOW[action][0]}
            if changes is not None:
                self._check_refs(conn, changes)
                columns.update(changes.columns)
                if changes.data:
                    data = store.load_data(row.get("data"))
                    data.update(changes.data)
                    columns["data"] = json.dumps(data)
            store.update_resource(conn, rt, row_id, columns)
            store.insert_process(conn, rt, row_id, action, self.server_id, self._now())
            fence.check()
            commit_hook(self.cfg.commit_hook, changes)
            fence.commit(conn)
        row = store.read_row(conn, rt, row_id)
        assert row is not None
        return row

    def _now(self) -> float | None:
        """This server's clock for a process time (rancher-1.0, as cattle), or None: the database's."""
        return time.time() if self.cfg.profile.host_clock_times else None

    async def write(self, fn: Any, *args: Any) -> Any:
        """Run a locked write transaction; no session becomes a 500 or 503, contention a 409."""
        try:
            return await self.db.run(fn, *args)
        except NoQuorum as e:
            raise no_session_error(self.cfg.profile.lock_no_session_status, str(e)) from None
        except LockBusy as e:
            raise ApiError(409, "ResourceBusy", str(e), "another process holds this resource's lock") from None

    # -- execution -----------------------------------------------------------------------------

    async def dispatch(self, rtype: str, row_id: int) -> None:
        """Have the resource's unfinished processes run. Over the bus, as cattle's EventingDispatcher:
        every server gets `process.execute` and the one that takes the lock runs them; the API
        answers once the publish returned, and a dropped event waits for the replay. Without a
        bus this node runs them."""
        if self.bus is None:
            self.submit(rtype, row_id)
        else:
            await self.bus.publish(PROCESS_EXECUTE, {"resourceType": rtype, "resourceId": row_id})

    async def changed(self, rtype: str, row_id: int) -> None:
        """A committed change of the resource: every server drops it from its read cache."""
        if self.bus is not None:
            await self.bus.publish(RESOURCE_CHANGE, {"resourceType": rtype, "resourceId": row_id})

    def on_event(self, name: str, data: Mapping[str, Any]) -> None:
        rtype, row_id = data.get("resourceType"), data.get("resourceId")
        if not isinstance(rtype, str) or not isinstance(row_id, int):
            return
        if name == PROCESS_EXECUTE and rtype in RESOURCE_TYPES:
            self.submit(rtype, row_id)
        elif name == RESOURCE_CHANGE:
            self.cache.invalidate((rtype, row_id))

    def submit(self, rtype: str, row_id: int, replay: bool = False) -> None:
        key = (rtype, row_id)
        if key in self._inflight:
            return
        self._inflight.add(key)
        task = self.loop.create_task(self._run_resource(rtype, row_id, replay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_resource(self, rtype: str, row_id: int, replay: bool) -> None:
        rt = RESOURCE_TYPES[rtype]
        held = None
        try:
            async with self._slots:
                # A replay must not wait behind a live owner; a fresh submit waits briefly.
                held = await self.loop.run_in_executor(
                    self.zk_executor,
                    self.coord.acquire,
                    rtype,
                    row_id,
                    self.cfg.profile.lock_timeout,
                    not replay,
                )
                pending = await self.db.run(_pending, rt, row_id)
                for p in pending:
                    await self._execute(rt, row_id, p, held.fence)
                    if replay:
                        self.replayed_total += 1
        except (LockBusy, NoQuorum) as e:
            log.debug("process for %s %s not run here: %s", rtype, row_id, e)
        except ApiError as e:  # pool exhausted and friends: the replay retries later
            log.info("process for %s %s deferred: %s", rtype, row_id, e.message)
        except Exception as e:  # noqa: BLE001 - keep the engine alive; the replay retries
            self.failed_total += 1
            log.warning("process for %s %s failed: %s: %s", rtype, row_id, type(e).__name__, e)
        finally:
            if held is not None:
                await self.loop.run_in_executor(self.zk_executor, held.release)
            self._inflight.discard((rtype, row_id))

    async def _execute(self, rt: ResourceType, row_id: int, p: Pending, fence: Fence) -> None:
        _, running, final = _FLOW[p.action]
        if not await self.db.run(_start, rt, row_id, p, running, self.server_id, fence):
            return
        self.cache.invalidate((rt.name, row_id))
        await self.changed(rt.name, row_id)
        await asyncio.sleep(self.cfg.process_delay_ms / 1000.0)  # the process's work
        if await self.db.run(_finish, rt, row_id, p, running, final, self.server_id, fence, self._now()):
            self.finished_total += 1
            if final == "removed":
                await self.loop.run_in_executor(self.zk_executor, self.coord.forget, rt.name, row_id)

    async def replay_once(self, submit: bool) -> None:
        """Refresh the queue metrics; if `submit`, run unfinished processes older than the bound."""
        depth, oldest, due = await self.db.run_system(_scan, self.cfg.profile.process_replay_after)
        self.queue_depth, self.oldest_age = depth, oldest
        if not submit:
            return
        for rtype, row_id in due:
            if rtype not in RESOURCE_TYPES:
                continue
            if self.bus is None:
                self.submit(rtype, row_id, replay=True)
            else:  # cattle's replay task went through the dispatcher too
                await self.bus.publish(PROCESS_EXECUTE, {"resourceType": rtype, "resourceId": row_id})

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.zk_executor.shutdown(wait=False, cancel_futures=True)


_TRANSITIONING = frozenset(s for flow in _FLOW.values() for s in flow[:2])


def commit_hook(marker: str, changes: Changes | None) -> None:
    """Hold a write between the fence's session check and its COMMIT, for the nemesis that freezes
    a lock holder right there (a lab setting, HALAB_COMMIT_HOOK, empty and so off by default). A
    write that sets a value starting with MARKER creates COMMIT_HOOK_FILE and waits until it is
    removed (at most COMMIT_HOOK_MAX_WAIT s): the harness sees the file, `docker pause`s the node,
    lets its lock pass to another node, unpauses it and removes the file."""
    if not marker or changes is None:
        return
    values = [*changes.columns.values(), *changes.data.values()]
    hooked = next((v for v in values if isinstance(v, str) and v.startswith(marker)), None)
    if hooked is None:
        return
    with open(COMMIT_HOOK_FILE, "w", encoding="utf-8") as f:
        f.write(hooked)
    log.warning("commit hook: writing %r waits before COMMIT until %s is removed", hooked, COMMIT_HOOK_FILE)
    deadline = time.monotonic() + COMMIT_HOOK_MAX_WAIT
    while os.path.exists(COMMIT_HOOK_FILE) and time.monotonic() < deadline:
        time.sleep(0.05)
    log.warning("commit hook: %r goes on to COMMIT", hooked)


def _pending(conn: Any, rt: ResourceType, row_id: int) -> list[Pending]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, process_name FROM process_instance WHERE resource_type = %s AND resource_id = %s"
            " AND end_time IS NULL ORDER BY id",
            (rt.name, str(row_id)),
        )
        return [Pending(int(pid), str(name).rsplit(".", 1)[-1]) for pid, name in cur.fetchall()]


def _start(conn: Any, rt: ResourceType, row_id: int, p: Pending, running: str, server: str, fence: Fence) -> bool:
    conn.begin()
    with conn.cursor() as cur:
        n = cur.execute(
            "UPDATE process_instance SET phase = 'running', running_process_server_id = %s"
            " WHERE id = %s AND end_time IS NULL",
            (server, p.process_id),
        )
        if n == 0 and not _unfinished(cur, p.process_id):
            conn.rollback()
            return False
        first = _FLOW[p.action][0]
        if first != running:
            cur.execute(f"UPDATE `{rt.table}` SET state = %s WHERE id = %s AND state = %s", (running, row_id, first))
    fence.check()
    fence.commit(conn)
    return True


def _unfinished(cur: Any, process_id: int) -> bool:
    # A replay by the same server changes nothing in the row but must still proceed.
    cur.execute("SELECT 1 FROM process_instance WHERE id = %s AND end_time IS NULL", (process_id,))
    return cur.fetchone() is not None


def _finish(
    conn: Any,
    rt: ResourceType,
    row_id: int,
    p: Pending,
    running: str,
    final: str,
    server: str,
    fence: Fence,
    now: float | None = None,
) -> bool:
    at, args = store.stamp(now)
    conn.begin()
    with conn.cursor() as cur:
        n = cur.execute(
            f"UPDATE process_instance SET end_time = {at}, result = 'success', exit_reason = 'DONE',"
            " phase = 'done', running_process_server_id = %s WHERE id = %s AND end_time IS NULL",
            (*args, server, p.process_id),
        )
        if n == 0:
            conn.rollback()
            return False
        extra = ", removed = NOW(6), remove_time = NOW(6)" if final == "removed" else ""
        cur.execute(
            f"UPDATE `{rt.table}` SET state = %s{extra} WHERE id = %s AND state IN (%s, %s)",
            (final, row_id, running, _FLOW[p.action][0]),
        )
    fence.check()
    fence.commit(conn)
    return True


def _scan(conn: Any, older_than: float) -> tuple[int, float, list[tuple[str, int]]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(start_time), NOW(6))"
            " FROM process_instance WHERE end_time IS NULL"
        )
        depth, oldest_us = cur.fetchone()
        due: list[tuple[str, int]] = []
        if depth:
            # No age condition at 0 (cattle's): then a start stamped by a clock ahead is no reason to wait.
            young = " AND start_time < NOW(6) - INTERVAL %s MICROSECOND" if older_than > 0 else ""
            cur.execute(
                f"SELECT DISTINCT resource_type, resource_id FROM process_instance WHERE end_time IS NULL{young}"
                " LIMIT %s",
                ((int(older_than * 1e6),) if older_than > 0 else ()) + (REPLAY_BATCH,),
            )
            due = [(str(t), int(i)) for t, i in cur.fetchall() if str(i).isdigit()]
    return int(depth or 0), (oldest_us or 0) / 1e6, due
