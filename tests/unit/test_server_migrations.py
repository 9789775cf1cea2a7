"""Change-log lock logic: first node migrates, others wait (bounded, logged), a stale lock is
taken over by exactly one waiter with a compare-and-set.

`FakeLockStore` implements the same conditions as the SQL of MySQLLockStore (each UPDATE's WHERE
clause) on one row under a mutex, with a database clock the test controls.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

import pytest

from lab.server import migrations
from lab.server.changesets import CHANGESETS, ChangeSet
from lab.server.migrations import LockRow, MigrationLockTimeout, acquire_lock, migrate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeLockStore:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mutex = threading.Lock()
        self.locked = False
        self.by: str | None = None
        self.granted: float | None = None
        self.hb: float | None = None
        self.log: list[tuple[str, int]] = []
        self.tables = False

    def ensure_tables(self) -> None:
        self.tables = True

    def read(self) -> LockRow:
        with self.mutex:
            now = self.clock()
            return LockRow(
                self.locked,
                self.by,
                self.granted,
                self.hb,
                None if self.granted is None else now - self.granted,
                None if self.hb is None else now - self.hb,
            )

    def try_acquire(self, owner: str) -> bool:  # WHERE LOCKED = 0
        with self.mutex:
            if self.locked:
                return False
            self.locked, self.by, self.granted, self.hb = True, owner, self.clock(), self.clock()
            return True

    def take_over(
        self, owner: str, seen: LockRow
    ) -> bool:  # WHERE LOCKED=1 AND LOCKEDBY/LOCKGRANTED/HEARTBEAT <=> seen
        with self.mutex:
            if not (
                self.locked and self.by == seen.locked_by and self.granted == seen.granted and self.hb == seen.heartbeat
            ):
                return False
            self.by, self.granted, self.hb = owner, self.clock(), self.clock()
            return True

    def heartbeat(self, owner: str) -> bool:  # WHERE LOCKED = 1 AND LOCKEDBY = owner
        with self.mutex:
            if not (self.locked and self.by == owner):
                return False
            self.hb = self.clock()
            return True

    def release(self, owner: str) -> None:
        with self.mutex:
            if self.by == owner:
                self.locked, self.by, self.granted, self.hb = False, None, None, None

    def applied(self) -> set[str]:
        return {cid for cid, _ in self.log}

    def apply(self, changeset: ChangeSet, order: int) -> None:
        self.log.append((changeset.id, order))


def test_first_node_migrates_everything_then_others_find_it_done() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    ran = migrate(store, "a1", 15, 60, clock=clock, sleep=clock.sleep)
    assert ran == [c.id for c in CHANGESETS]
    assert [o for _, o in store.log] == list(range(1, len(CHANGESETS) + 1))
    assert not store.locked
    assert migrate(store, "a2", 15, 60, clock=clock, sleep=clock.sleep) == []


def test_waits_for_a_live_owner_with_bounded_logged_waits(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("a1")
    real_sleep = clock.sleep

    def owner_alive_sleep(s: float) -> None:
        real_sleep(s)
        store.heartbeat("a1")  # the owner keeps migrating

    caplog.set_level(logging.INFO, "halab.migrations")
    with pytest.raises(MigrationLockTimeout, match="held by a1 within 30 s"):
        acquire_lock(store, "a2", stale_after=15, max_wait=30, clock=clock, sleep=owner_alive_sleep)
    assert 30 <= clock.now - 1000 <= 31
    waits = [r for r in caplog.records if "waiting for the change-log lock held by a1" in r.getMessage()]
    assert 5 <= len(waits) <= 8  # every LOG_EVERY seconds, not every poll
    assert store.by == "a1"


def test_waiter_gets_the_lock_when_the_owner_releases() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("a1")
    real_sleep = clock.sleep

    def release_after(s: float) -> None:
        real_sleep(s)
        if clock.now - 1000 >= 3:
            store.release("a1")

    acquire_lock(store, "a2", 15, 60, clock=clock, sleep=release_after)
    assert store.by == "a2" and clock.now - 1000 < 4


def test_stale_lock_of_a_dead_node_is_taken_over() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("dead-node")
    clock.now += 16  # no heartbeat since: the owner died mid-migration
    ran = migrate(store, "a2", stale_after=15, max_wait=60, clock=clock, sleep=clock.sleep)
    assert ran == [c.id for c in CHANGESETS] and not store.locked


def test_without_a_stale_bound_a_dead_nodes_lock_is_never_taken_over_as_liquibase() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("dead-node")
    clock.now += 3600
    with pytest.raises(MigrationLockTimeout, match="held by dead-node within 300 s"):
        migrate(store, "a2", stale_after=0, max_wait=300, clock=clock, sleep=clock.sleep)
    assert store.by == "dead-node"


def test_lock_without_heartbeat_ages_by_grant_time() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("legacy")
    store.hb = None  # e.g. left by a tool that has no heartbeat column
    clock.now += 20
    acquire_lock(store, "a2", 15, 60, clock=clock, sleep=clock.sleep)
    assert store.by == "a2"


def test_takeover_fails_when_the_owner_heartbeats_in_between() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("slow-owner")
    clock.now += 20
    seen = store.read()
    store.heartbeat("slow-owner")  # it was alive after all
    assert not store.take_over("a2", seen)
    assert store.by == "slow-owner"


def test_exactly_one_of_many_waiters_takes_over_a_stale_lock() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.try_acquire("dead")
    clock.now += 100
    seen = store.read()
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def contender(name: str) -> None:
        barrier.wait()
        if store.take_over(name, seen):
            wins.append(name)

    threads = [threading.Thread(target=contender, args=(f"n{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.by == wins[0]


def test_a_migrator_that_lost_its_lock_stops() -> None:
    clock = Clock()
    calls: list[str] = []

    class Stolen(FakeLockStore):
        def apply(self, changeset: ChangeSet, order: int) -> None:
            calls.append(changeset.id)
            super().apply(changeset, order)
            with self.mutex:
                self.by = "thief"  # a take-over happened while we were slow

    store = Stolen(clock)
    with pytest.raises(MigrationLockTimeout, match="lost the change-log lock"):
        migrate(store, "a1", 15, 60, clock=clock, sleep=clock.sleep)
    assert calls == [CHANGESETS[0].id]


def test_resumes_after_a_partially_applied_migration() -> None:
    clock = Clock()
    store = FakeLockStore(clock)
    store.apply(CHANGESETS[0], 1)
    ran = migrate(store, "a1", 15, 60, clock=clock, sleep=clock.sleep)
    assert ran == [c.id for c in CHANGESETS[1:]]


def test_changesets_are_rerunnable_and_have_stable_checksums() -> None:
    for cs in CHANGESETS:
        for sql in cs.statements:
            head = sql.lstrip().upper()
            assert head.startswith("CREATE TABLE IF NOT EXISTS") or head.startswith("INSERT IGNORE"), sql[:60]
        assert cs.md5 == replace(cs).md5 and cs.md5.startswith("8:")


def test_lock_row_age_prefers_heartbeat() -> None:
    row: Any = LockRow(True, "x", None, None, granted_age=50.0, heartbeat_age=2.0)
    assert row.age == 2.0
    assert replace(row, heartbeat_age=None).age == 50.0
    assert migrations.POLL_INTERVAL < migrations.LOG_EVERY
