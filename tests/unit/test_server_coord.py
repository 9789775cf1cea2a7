"""Coordinator: restart kazoo only when its connection loop gave up (kazoo 2.8); the client each
profile builds; lock errors (busy past the timeout, no session at once) and the commit fence."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kazoo.client import KazooState
from kazoo.exceptions import ConnectionLoss, LockTimeout, NoNodeError

from lab.core.wait import wait_for
from lab.server.coord import Coordinator, Fenced, LockBusy, NoQuorum
from lab.server.profiles import RANCHER_1_0, TUNED, Profile


class FakeConnection:
    def __init__(self) -> None:
        self.connection_stopped = threading.Event()


class FakeKazoo:
    def __init__(self) -> None:
        self.state = KazooState.LOST
        self._connection = FakeConnection()
        self.calls: list[str] = []
        self.listeners: list[object] = []

    def add_listener(self, fn: object) -> None:
        self.listeners.append(fn)

    def remove_listener(self, fn: object) -> None:
        self.listeners.remove(fn)

    def stop(self) -> None:
        self.calls.append("stop")

    def start_async(self) -> None:
        self.calls.append("start_async")

    def close(self) -> None:
        self.calls.append("close")


def coordinator() -> tuple[Coordinator, list[FakeKazoo]]:
    made: list[FakeKazoo] = []

    def factory() -> FakeKazoo:
        made.append(FakeKazoo())
        return made[-1]

    return Coordinator("127.0.0.1:1", TUNED, "t", client_factory=factory), made  # type: ignore[arg-type]


def test_revive_replaces_a_client_whose_connection_loop_stopped() -> None:
    coord, made = coordinator()
    old = made[0]
    old._connection.connection_stopped.set()
    assert coord.revive() is True
    assert len(made) == 2 and coord.client is made[1]  # type: ignore[comparison-overlap]
    assert made[1].calls == ["start_async"] and len(made[1].listeners) == 1
    assert old.calls == ["close"] and old.listeners == []


def test_leaves_a_reconnecting_or_connected_client_alone() -> None:
    coord, made = coordinator()
    fake = made[0]
    assert coord.revive() is False  # still retrying
    fake._connection.connection_stopped.set()
    fake.state = KazooState.CONNECTED
    assert coord.revive() is False
    assert fake.calls == []


def test_never_revives_after_an_intended_stop() -> None:
    coord, made = coordinator()
    fake = made[0]
    coord.stop()
    fake._connection.connection_stopped.set()
    assert coord.revive() is False
    assert fake.calls == ["stop", "close"]


def test_rancher_1_0_client_is_curators() -> None:
    client = Coordinator("127.0.0.1:1", RANCHER_1_0, "t").client
    assert client._session_timeout == 30000
    retry = client._retry  # RetryNTimes(3, 1000 ms): same delay each time, no jitter
    assert (retry.max_tries, retry.delay, retry.backoff, retry.max_jitter) == (3, 1.0, 1, 0.0)
    assert client._conn_retry.max_tries == -1  # ZooKeeper's own client reconnects for ever


class FakeLock:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.timeouts: list[float] = []
        self.path = "/cattle/locks/project/1"
        self.node = "t__lock__0000000003"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout or 0)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return bool(self.outcome)

    def release(self) -> None:
        pass


class LockingKazoo(FakeKazoo):
    def __init__(self, lock: FakeLock) -> None:
        super().__init__()
        self.state = KazooState.CONNECTED
        self.client_id = (42, b"")
        self.lock = lock

    def Lock(self, path: str, identifier: str) -> FakeLock:  # kazoo's name
        return self.lock

    def exists(self, path: str) -> Any:
        assert path == f"{self.lock.path}/{self.lock.node}"
        return SimpleNamespace(czxid=0x500000007)


def locking(profile: Profile, outcome: Any) -> tuple[Coordinator, LockingKazoo]:
    fake = LockingKazoo(FakeLock(outcome))
    return Coordinator("127.0.0.1:1", profile, "t", client_factory=lambda: fake), fake  # type: ignore[arg-type, return-value]


def test_a_lock_busy_past_the_profiles_timeout_is_lock_busy() -> None:
    coord, fake = locking(RANCHER_1_0, LockTimeout())
    with pytest.raises(LockBusy):
        coord.acquire("project", 1, RANCHER_1_0.lock_timeout)
    assert fake.lock.timeouts == [10.0]  # one wait, no retry at the lock level


def test_no_session_fails_at_once_without_trying_the_lock() -> None:
    coord, fake = locking(RANCHER_1_0, True)
    fake.state = KazooState.SUSPENDED
    with pytest.raises(NoQuorum):
        coord.acquire("project", 1, RANCHER_1_0.lock_timeout)
    assert fake.lock.timeouts == []


@pytest.mark.parametrize("profile, refused", [(TUNED, True), (RANCHER_1_0, False)], ids=["tuned", "rancher-1.0"])
def test_only_tuned_fences_the_commit(profile: Profile, refused: bool) -> None:
    coord, fake = locking(profile, True)
    with coord.hold("project", 1, profile.lock_timeout) as fence:
        fake.state = KazooState.SUSPENDED  # the session went while the lock was held
        if refused:
            with pytest.raises(NoQuorum):
                fence.check()
        else:
            fence.check()


class FenceConn:
    """The fence table of one resource, as MariaDB would answer the fence's two statements."""

    def __init__(self, newest: int | None) -> None:
        self.newest = newest
        self.log: list[str] = []

    def cursor(self) -> Any:
        conn = self

        class Cur:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def execute(self, sql: str, args: Any = ()) -> None:
                conn.log.append(sql.split()[0])
                if sql.startswith("INSERT"):
                    conn.newest = max(conn.newest or 0, args[1])

            def fetchone(self) -> Any:
                return None if conn.newest is None else (conn.newest,)

        return Cur()

    def commit(self) -> None:
        self.log.append("COMMIT")

    def rollback(self) -> None:
        self.log.append("ROLLBACK")


def test_a_tuned_lock_carries_its_znodes_zxid_as_token_and_registers_it() -> None:
    coord, _ = locking(TUNED, True)
    with coord.hold("project", 1, TUNED.lock_timeout) as fence:
        assert (fence.resource, fence.token) == ("project/1", 0x500000007)
        conn = FenceConn(0x400000001)
        fence.register(conn)
        assert conn.newest == 0x500000007 and conn.log == ["INSERT", "COMMIT"]
        fence.commit(conn)  # nobody newer: the commit goes through
        assert conn.log[-2:] == ["SELECT", "COMMIT"]


def test_a_commit_under_an_older_token_than_the_newest_registered_is_refused() -> None:
    coord, _ = locking(TUNED, True)
    with coord.hold("project", 1, TUNED.lock_timeout) as fence:
        conn = FenceConn(0x600000002)  # a newer holder registered while this one was frozen
        with pytest.raises(Fenced, match="older than"):
            fence.commit(conn)
        assert conn.log == ["SELECT", "ROLLBACK"]


def test_rancher_1_0_has_no_token_and_commits_whatever_was_registered() -> None:
    coord, _ = locking(RANCHER_1_0, True)
    with coord.hold("project", 1, RANCHER_1_0.lock_timeout) as fence:
        conn = FenceConn(0x600000002)
        fence.register(conn)
        fence.commit(conn)
        assert fence.token == 0 and conn.log == ["COMMIT"]


class HangingLock(FakeLock):
    """A lock request made just before the connection went: kazoo holds it until a reconnect."""

    def __init__(self) -> None:
        super().__init__(True)
        self.answer = threading.Event()
        self.cancelled = threading.Event()
        self.released = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.answer.wait(10)
        return True

    def cancel(self) -> None:
        self.cancelled.set()

    def release(self) -> None:
        self.released.set()


def test_a_lock_request_left_unanswered_is_given_up_and_released_if_granted_later() -> None:
    profile = dataclasses.replace(TUNED, zk_connection_timeout=0.2)
    fake = LockingKazoo(HangingLock())
    coord = Coordinator("127.0.0.1:1", profile, "t", client_factory=lambda: fake)  # type: ignore[arg-type, return-value]
    with pytest.raises(NoQuorum, match=r"no answer to the lock request within 0\.3 s"):
        coord.acquire("project", 1, 0.1)
    lock = fake.lock
    assert isinstance(lock, HangingLock) and lock.cancelled.is_set() and not lock.released.is_set()
    lock.answer.set()  # the cut heals and the request is granted after all: nobody may keep it
    assert lock.released.wait(5)


class UnreleasableLock(FakeLock):
    """kazoo's Lock whose delete fails: the connection went while releasing (retries exhausted)."""

    def release(self) -> None:
        raise ConnectionLoss()


class DeletingKazoo(LockingKazoo):
    """Deletes fail until the session is connected again; then the path is gone."""

    def __init__(self, lock: FakeLock) -> None:
        super().__init__(lock)
        self.answering = False
        self.gone = False  # the znode went with its session
        self.deleted: list[str] = []
        self.tried = threading.Event()

    def delete(self, path: str) -> None:
        self.tried.set()
        if self.gone:
            raise NoNodeError()
        if not self.answering:
            raise ConnectionLoss()
        self.deleted.append(path)


def test_a_lock_whose_delete_failed_is_deleted_once_zookeeper_answers_as_curators_guaranteed_delete() -> None:
    fake = DeletingKazoo(UnreleasableLock(True))
    coord = Coordinator("127.0.0.1:1", RANCHER_1_0, "t", client_factory=lambda: fake)  # type: ignore[arg-type, return-value]
    with coord.hold("project", 1, 1.0):
        pass
    path = "/cattle/locks/project/1/t__lock__0000000003"
    assert fake.tried.wait(5) and coord.undeleted() == [path]  # still there: the session outlives the cut
    fake.answering = True
    coord._on_state(KazooState.CONNECTED)  # the reconnect wakes the deleter
    wait_for("the lock znode deleted", lambda: not coord.undeleted() or None, timeout=5)
    assert fake.deleted == [path]


def test_a_lock_znode_that_is_already_gone_needs_no_further_delete() -> None:
    fake = DeletingKazoo(UnreleasableLock(True))
    fake.gone = True
    coord = Coordinator("127.0.0.1:1", TUNED, "t", client_factory=lambda: fake)  # type: ignore[arg-type, return-value]
    coord.release_lock(fake.lock)  # type: ignore[arg-type]
    # No look at undeleted() in between: the deleter may already have found the znode gone.
    wait_for("the guaranteed delete to give up on a gone znode", lambda: not coord.undeleted() or None, timeout=5)
    assert fake.tried.is_set() and fake.deleted == []
