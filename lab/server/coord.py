"""ZooKeeper coordination through kazoo: session state, per-resource locks, fencing, watches.

Locks live at `/cattle/locks/<type>/<id>` (kazoo's Lock recipe, the equivalent of cattle's
Curator mutex). Taking one creates a sequential ephemeral znode, a quorum write, so holding a
lock proves this node had a live session with a quorum when it got it. With the profile's
`commit_fence` (tuned), `Fence.check()` re-checks right before a COMMIT that the session is still
connected and is the one that took the lock, and the COMMIT itself is fenced at the database: the
lock's token (its znode's creation zxid, which grows with every lock taken on the ensemble) is
registered for the resource before the write reads anything (`Fence.register`), and the commit's
last statement refuses to go on when a newer holder registered a higher token (`Fence.commit`).
The session check alone leaves a window: a holder frozen between it and its COMMIT commits late,
after its lock passed to another node. Cattle had neither (rancher-1.0).

`LossClock` decides when the session counts as lost, on which a rancher-1.0 node exits.

Everything here blocks and is called from worker threads, except `state` and the listeners.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, LockTimeout, NoNodeError, NotEmptyError
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.recipe.lock import Lock
from kazoo.retry import KazooRetry

from .changesets import FENCE_TABLE
from .profiles import Profile

log = logging.getLogger("halab.zk")

LOCK_ROOT = "/cattle/locks"


class NoQuorum(Exception):
    """This node has no live ZooKeeper session with a quorum."""


class LockBusy(Exception):
    """Another holder kept the resource's lock past our bounded wait."""


def lock_path(rtype: str, rid: int) -> str:
    return f"{LOCK_ROOT}/{rtype}/{rid}"


class Fenced(NoQuorum):
    """A newer holder of the resource's lock registered its token: this holder's lock is gone."""


class Fence:
    def __init__(self, coord: Coordinator, session_id: int, enforced: bool, resource: str = "", token: int = 0) -> None:
        self._coord = coord
        self.session_id = session_id
        self.enforced = enforced
        self.resource = resource  # "<type>/<id>"
        self.token = token  # the lock znode's czxid

    def check(self) -> None:
        """Raise NoQuorum unless the session that took the lock is still connected (if enforced)."""
        if self.enforced and self._coord.session_id() != self.session_id:
            raise NoQuorum("lost the ZooKeeper session (no quorum) before commit")

    def register(self, conn: Any) -> None:
        """Before the write reads what it will change, record this holder's token for the resource
        (a transaction of its own), so that an older holder still on its way to COMMIT is refused."""
        if not self.enforced:
            return
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {FENCE_TABLE} (resource, token) VALUES (%s, %s)"
                " ON DUPLICATE KEY UPDATE token = GREATEST(token, VALUES(token))",
                (self.resource, self.token),
            )
        conn.commit()

    def commit(self, conn: Any) -> None:
        """COMMIT, fenced (if enforced): the transaction's last statement reads the resource's newest
        token FOR UPDATE, so no newer holder can register between it and the COMMIT."""
        if self.enforced:
            with conn.cursor() as cur:
                cur.execute(f"SELECT token FROM {FENCE_TABLE} WHERE resource = %s FOR UPDATE", (self.resource,))
                row = cur.fetchone()
            newest = int(row[0]) if row else 0
            if newest > self.token:
                conn.rollback()
                raise Fenced(f"{self.resource}: lock token {self.token} is older than {newest}, a newer holder's")
        conn.commit()


class LossClock:
    """When the ZooKeeper session counts as lost, the way cattle's Curator 2.10 client saw it.

    Curator posts LOST, on which cattle exits, when the session expired (kazoo reports LOST after
    a session existed) or when a connection has been missing for longer than its retry policy
    tolerates: on SUSPENDED it runs a background sync that waits up to the connection timeout
    and then retries RetryNTimes times, so LOST comes `Profile.session_loss_after` seconds
    (30 + 3 x 1) after the connection went. A server that never had a connection since it
    started counts from its start: its first ZooKeeper operations fail the same way, which is
    what makes a node cut from the quorum restart in a loop. Pure: fed states and times.
    """

    def __init__(self, after: float, now: float) -> None:
        self.after = after
        self._down_since: float | None = now
        self._had_session = False
        self._expired = False

    def observe(self, state: str, now: float, expired: bool) -> None:
        """`expired`: a LOST that is a real session expiry (not kazoo giving up reconnecting)."""
        if state == KazooState.CONNECTED:
            self._down_since = None
            self._had_session = True
            return
        if state == KazooState.LOST and expired and self._had_session:
            self._expired = True
        if self._down_since is None:
            self._down_since = now

    def down_for(self, now: float) -> float:
        return 0.0 if self._down_since is None else now - self._down_since

    def lost(self, now: float) -> str | None:
        """Why the session counts as lost at `now`, or None."""
        if self._expired:
            return "the session expired"
        down = self.down_for(now)
        if self._down_since is not None and down >= self.after:
            return f"no connection for {down:.0f} s"
        return None


class Held:
    """A held lock and the fence of the session that took it."""

    def __init__(self, lock: Lock, fence: Fence, release: Callable[[Lock], None]) -> None:
        self._lock = lock
        self.fence = fence
        self._release = release

    def release(self) -> None:
        self._release(self._lock)


class ConnectTimeoutHandler(SequentialThreadingHandler):  # type: ignore[misc]  # kazoo ships no type hints
    """kazoo's handler with a bound on each TCP connect. kazoo gives a connect the whole session
    timeout, so a reconnect that draws a member cut off behind a DROP rule hangs that long while the
    reachable members already serve again (docs/survivability.md, the leader-side blackout)."""

    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = min(kwargs.get("timeout") or self.connect_timeout, self.connect_timeout)
        return super().create_connection(*args, **kwargs)


class Coordinator:
    def __init__(
        self, hosts: str, profile: Profile, identity: str, client_factory: Callable[[], KazooClient] | None = None
    ) -> None:
        self.identity = identity
        self.fenced = profile.commit_fence
        self.connection_timeout = profile.zk_connection_timeout  # how long a request may go unanswered
        # Curator's RetryNTimes (rancher-1.0) or a short exponential backoff (tuned); kazoo's
        # default jitter only where the profile keeps it.
        jitter = {} if profile.zk_retry_jitter else {"max_jitter": 0.0}
        connect = profile.zk_client_connect_timeout or profile.zk_session_timeout / max(1, len(hosts.split(",")))
        self._factory = client_factory or (
            lambda: KazooClient(
                hosts=hosts,
                timeout=profile.zk_session_timeout,
                handler=ConnectTimeoutHandler(connect),
                # Like ZooKeeper's own client under Curator: reconnect for ever.
                connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
                command_retry=KazooRetry(
                    max_tries=profile.zk_retry_tries,
                    delay=profile.zk_retry_delay,
                    backoff=profile.zk_retry_backoff,
                    **jitter,
                ),
            )
        )
        self.loss = LossClock(profile.session_loss_after, time.monotonic())
        self._listeners: list[Callable[[str], None]] = []
        self._listeners_lock = threading.Lock()
        self._stopping = False
        # Lock znodes whose delete failed, deleted again in the background (release_lock).
        self._undeleted: set[str] = set()
        self._undeleted_lock = threading.Lock()
        self._deleter: threading.Thread | None = None
        self._reconnected = threading.Event()
        self.retry_delay = max(profile.zk_retry_delay, 0.1)
        self.client = self._factory()
        self.client.add_listener(self._on_state)

    # -- session -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; kazoo retries forever and re-creates lost sessions."""
        self.client.start_async()

    def revive(self) -> bool:
        """Restart kazoo if it gave up reconnecting; returns whether it did.

        kazoo 2.8 (Debian bookworm's) stops its connection loop for good when no host of the
        connection string resolves, which is what a host cut from the network that carries the
        ZooKeeper names sees; later kazoo releases keep retrying. Called by the health check."""
        if self._stopping or self.connected:
            return False
        if not self.connection_stopped():
            return False
        log.warning("kazoo stopped reconnecting (no ZooKeeper host resolved); starting a new client")
        # A fresh client: stop()/start_async() on the old one would replay the close request that
        # stop() queues and end the new session at once.
        old, self.client = self.client, self._factory()
        self.client.add_listener(self._on_state)
        self.client.start_async()
        old.remove_listener(self._on_state)
        with suppress(KazooException):
            old.close()
        return True

    def connection_stopped(self) -> bool:
        """kazoo's connection loop ended (a LOST that is not a session expiry)."""
        stopped = getattr(getattr(self.client, "_connection", None), "connection_stopped", None)
        return stopped is not None and bool(stopped.is_set())

    def stop(self) -> None:
        self._stopping = True
        try:
            self.client.stop()
            self.client.close()
        except KazooException:
            pass

    @property
    def state(self) -> str:
        return str(self.client.state)

    @property
    def connected(self) -> bool:
        return bool(self.client.state == KazooState.CONNECTED)

    def session_id(self) -> int | None:
        if self.client.state != KazooState.CONNECTED:
            return None
        cid = self.client.client_id
        return cid[0] if cid else None

    def add_listener(self, fn: Callable[[str], None]) -> None:
        """`fn(state)` on every session state change, called from kazoo's thread."""
        with self._listeners_lock:
            self._listeners.append(fn)

    def listen_on_loop(self, loop: asyncio.AbstractEventLoop, fn: Callable[[str], None]) -> None:
        def relay(state: str) -> None:
            loop.call_soon_threadsafe(fn, state)

        self.add_listener(relay)

    def _on_state(self, state: str) -> None:
        log.warning("ZooKeeper session %s", state)
        # Here, on kazoo's thread: by the time a listener on the event loop runs, kazoo may
        # already be reconnecting.
        expired = not (self._stopping or self.connection_stopped())
        self.loss.observe(str(state), time.monotonic(), expired)
        if state == KazooState.CONNECTED:
            self._reconnected.set()
        with self._listeners_lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(str(state))

    # -- locks ---------------------------------------------------------------------------------

    def acquire(self, rtype: str, rid: int, timeout: float, blocking: bool = True) -> Held:
        """Take `/cattle/locks/<rtype>/<rid>`; raises NoQuorum or LockBusy if it cannot."""
        if not self.connected:
            raise NoQuorum("no ZooKeeper session")
        lock = self.client.Lock(lock_path(rtype, rid), identifier=self.identity)
        try:
            got = self._bounded(lock, blocking, timeout)
        except LockTimeout:
            raise LockBusy(f"{rtype} {rid} is locked by another process") from None
        except KazooException as e:
            raise NoQuorum(f"ZooKeeper lock failed: {type(e).__name__}") from None
        if not got:
            if not self.connected:
                raise NoQuorum("lost the ZooKeeper session while locking")
            raise LockBusy(f"{rtype} {rid} is locked by another process")
        session = self.session_id() or -1
        token = self._token(lock) if self.fenced and session != -1 else 0
        held = Held(lock, Fence(self, session, self.fenced, f"{rtype}/{rid}", token), self.release_lock)
        if session == -1 or token < 0:
            held.release()
            raise NoQuorum("lost the ZooKeeper session right after locking")
        return held

    def _bounded(self, lock: Lock, blocking: bool, timeout: float) -> bool:
        """`lock.acquire`, given up after the lock timeout plus the connection timeout. kazoo queues a
        request made while its connection is down until it reconnects, and the lock's own timeout
        bounds only its waits and retries: a write whose lock request was in flight when the node was
        cut off hung until the cut healed. Curator, which cattle used, fails such a request with a
        ConnectionLoss after its connection timeout; so does this (NoQuorum: a 500 or a 503). A lock
        granted after we gave up is released at once."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["got"] = lock.acquire(blocking=blocking, timeout=timeout)
            except KazooException as e:  # LockTimeout too: handed to the caller
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="lock-acquire", daemon=True).start()
        if done.wait(timeout + self.connection_timeout):
            if "error" in outcome:
                raise outcome["error"]
            return bool(outcome.get("got"))
        lock.cancel()

        def let_go() -> None:
            done.wait()
            if outcome.get("got"):
                self.release_lock(lock)

        threading.Thread(target=let_go, name="lock-abandoned", daemon=True).start()
        raise NoQuorum(f"no answer to the lock request within {timeout + self.connection_timeout:g} s (no quorum)")

    def release_lock(self, lock: Lock) -> None:
        """Release `lock`; if its znode cannot be deleted now, delete it in the background until it
        is gone, as Curator's mutex does (LockInternals.deleteOurPath: `delete().guaranteed()`).
        The znode is ephemeral, but the session outlives a lost connection: a node that reconnects
        in time keeps it, and with it the lock, for as long as it lives. Found by the matrix: a
        write committed as the ZooKeeper leader froze left its lock behind; every later write of
        the resource waited out the lock timeout and its process never ran (docs/survivability.md)."""
        node = lock.node
        try:
            lock.release()
        except KazooException as e:
            if not node:
                return
            path = f"{lock.path}/{node}"
            log.warning("could not delete lock %s (%s); deleting it once ZooKeeper answers", path, type(e).__name__)
            with self._undeleted_lock:
                self._undeleted.add(path)
                if self._deleter is None:
                    self._deleter = threading.Thread(target=self._delete_until_gone, name="lock-delete", daemon=True)
                    self._deleter.start()

    def undeleted(self) -> list[str]:
        """Lock znodes still waiting for their guaranteed delete."""
        with self._undeleted_lock:
            return sorted(self._undeleted)

    def _delete_until_gone(self) -> None:
        while not self._stopping:
            with self._undeleted_lock:
                paths = list(self._undeleted)
                if not paths:
                    self._deleter = None
                    return
            for path in paths:
                try:
                    self.client.delete(path)
                except NoNodeError:
                    pass  # gone already: its session ended
                except KazooException:
                    continue
                with self._undeleted_lock:
                    self._undeleted.discard(path)
                log.warning("deleted lock %s after an earlier failure", path)
            # The next try at the next reconnect, or after the retry policy's delay.
            self._reconnected.clear()
            self._reconnected.wait(self.retry_delay)

    def _token(self, lock: Lock) -> int:
        """The fencing token of a lock just taken: its znode's creation zxid (-1: cannot tell)."""
        try:
            stat = self.client.exists(f"{lock.path}/{lock.node}")
        except KazooException:
            return -1
        return int(stat.czxid) if stat is not None else -1

    @contextmanager
    def hold(self, rtype: str, rid: int, timeout: float, blocking: bool = True) -> Iterator[Fence]:
        held = self.acquire(rtype, rid, timeout, blocking)
        try:
            yield held.fence
        finally:
            held.release()

    def forget(self, rtype: str, rid: int) -> None:
        """Drop a removed resource's lock directory (wakes any cache watch on it)."""
        try:
            self.client.delete(lock_path(rtype, rid))
        except (NoNodeError, NotEmptyError):
            pass
        except KazooException as e:
            log.info("could not remove %s: %s", lock_path(rtype, rid), type(e).__name__)

    def ensure(self, rtype: str, rid: int) -> None:
        """Create the resource's lock directory so that it can be watched."""
        with suppress(KazooException):
            self.client.ensure_path(lock_path(rtype, rid))

    def watch(self, rtype: str, rid: int, on_change: Callable[[], None]) -> bool:
        """One-shot watch on the resource's lock directory: any writer of the resource creates
        and deletes a child there. False when it cannot be watched (no node, no session)."""
        if not self.connected:
            return False
        try:
            self.client.get_children(lock_path(rtype, rid), watch=lambda _event: on_change())
            return True
        except NoNodeError:
            return False
        except KazooException:
            return False
