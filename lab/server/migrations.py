"""Schema bootstrap under a Liquibase-style change-log lock.

The first node to start takes the lock (`DATABASECHANGELOGLOCK`, one row, `LOCKED=1`), runs the
change sets not yet in `DATABASECHANGELOG`, and releases it. Other nodes wait, polling, and log
who holds the lock; their wait is bounded (`HALAB_MIGRATION_MAX_WAIT`).

The owner refreshes a `HEARTBEAT` column between change sets. With the profile's
`changelog_lock_stale` (tuned: 15 s), a lock whose heartbeat (or, without one, whose grant time)
is older than that by the database's clock is taken over with one compare-and-set UPDATE that
matches the exact owner and heartbeat the waiter saw, so of several waiters exactly one wins, and
a heartbeat that arrives in the meantime makes the take-over fail. With 0 (rancher-1.0) nothing
is taken over, as with Liquibase: a lock left behind by a killed node hangs every later start
until an operator clears it, each start giving up after `migration_max_wait` (Liquibase's 5
minutes) and exiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .changesets import CHANGESETS, FILENAME, ChangeSet

log = logging.getLogger("halab.migrations")

POLL_INTERVAL = 0.5
LOG_EVERY = 5.0


class MigrationLockTimeout(Exception):
    pass


@dataclass(frozen=True)
class LockRow:
    locked: bool
    locked_by: str | None
    granted: Any  # the raw column values: compared as they were read, in the take-over CAS
    heartbeat: Any
    granted_age: float | None  # seconds, by the database's clock
    heartbeat_age: float | None

    @property
    def age(self) -> float | None:
        """Seconds since the owner last showed life."""
        return self.heartbeat_age if self.heartbeat_age is not None else self.granted_age


class LockStore(Protocol):
    def ensure_tables(self) -> None: ...
    def read(self) -> LockRow: ...
    def try_acquire(self, owner: str) -> bool: ...
    def take_over(self, owner: str, seen: LockRow) -> bool: ...
    def heartbeat(self, owner: str) -> bool: ...
    def release(self, owner: str) -> None: ...
    def applied(self) -> set[str]: ...
    def apply(self, changeset: ChangeSet, order: int) -> None: ...


def acquire_lock(
    store: LockStore,
    owner: str,
    stale_after: float,
    max_wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take the change-log lock, waiting (bounded) for a live owner and taking over a stale one."""
    start = clock()
    last_log = start - LOG_EVERY
    while True:
        if store.try_acquire(owner):
            return
        row = store.read()
        if not row.locked:
            continue  # released between our attempt and the read: try again at once
        age = row.age
        if stale_after > 0 and age is not None and age > stale_after:
            log.warning(
                "change-log lock held by %s shows no heartbeat for %.1f s (bound %.1f s): taking it over",
                row.locked_by,
                age,
                stale_after,
            )
            if store.take_over(owner, row):
                log.warning("took over the stale change-log lock from %s", row.locked_by)
                return
            log.info("another node changed the change-log lock first; re-reading it")
            continue
        now = clock()
        waited = now - start
        if waited >= max_wait:
            raise MigrationLockTimeout(
                f"could not acquire the change-log lock held by {row.locked_by} within {max_wait:.0f} s"
            )
        if now - last_log >= LOG_EVERY:
            log.info(
                "waiting for the change-log lock held by %s (last sign of life %.1f s ago; waited %.0f of %.0f s)",
                row.locked_by,
                age if age is not None else -1.0,
                waited,
                max_wait,
            )
            last_log = now
        sleep(min(POLL_INTERVAL, max(0.0, max_wait - waited)))


def migrate(
    store: LockStore,
    owner: str,
    stale_after: float,
    max_wait: float,
    changesets: Sequence[ChangeSet] = CHANGESETS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Bring the schema up to date; returns the ids of the change sets this node applied."""
    store.ensure_tables()
    wanted = [c.id for c in changesets]
    if set(wanted) <= store.applied():
        log.info("schema up to date (%d change sets)", len(wanted))
        return []
    acquire_lock(store, owner, stale_after, max_wait, clock, sleep)
    ran: list[str] = []
    try:
        done = store.applied()  # re-read under the lock: a previous owner may have finished
        for order, cs in enumerate(changesets, start=1):
            if cs.id in done:
                continue
            if not store.heartbeat(owner):
                raise MigrationLockTimeout("lost the change-log lock to a take-over while migrating")
            log.info("applying change set %s (%s)", cs.id, cs.description)
            store.apply(cs, order)
            ran.append(cs.id)
    finally:
        store.release(owner)
    log.info("schema migrated: applied %s", ", ".join(ran) if ran else "nothing")
    return ran


class MySQLLockStore:
    """LockStore on a PyMySQL connection in autocommit mode."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            return int(cur.execute(sql, args))

    def ensure_tables(self) -> None:
        self._exec(
            "CREATE TABLE IF NOT EXISTS DATABASECHANGELOGLOCK ("
            " ID INT NOT NULL PRIMARY KEY, LOCKED TINYINT(1) NOT NULL, LOCKGRANTED DATETIME(6) NULL,"
            " LOCKEDBY VARCHAR(255) NULL, HEARTBEAT DATETIME(6) NULL) ENGINE=InnoDB"
        )
        self._exec("INSERT IGNORE INTO DATABASECHANGELOGLOCK (ID, LOCKED) VALUES (1, 0)")
        self._exec(
            "CREATE TABLE IF NOT EXISTS DATABASECHANGELOG ("
            " ID VARCHAR(255) NOT NULL, AUTHOR VARCHAR(255) NOT NULL, FILENAME VARCHAR(255) NOT NULL,"
            " DATEEXECUTED DATETIME(6) NOT NULL, ORDEREXECUTED INT NOT NULL, EXECTYPE VARCHAR(10) NOT NULL,"
            " MD5SUM VARCHAR(35) NULL, DESCRIPTION VARCHAR(255) NULL, LOCKEDBY VARCHAR(255) NULL,"
            " PRIMARY KEY (ID, AUTHOR, FILENAME)) ENGINE=InnoDB"
        )

    def read(self) -> LockRow:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT LOCKED, LOCKEDBY, LOCKGRANTED, HEARTBEAT,"
                " TIMESTAMPDIFF(MICROSECOND, LOCKGRANTED, NOW(6)),"
                " TIMESTAMPDIFF(MICROSECOND, HEARTBEAT, NOW(6))"
                " FROM DATABASECHANGELOGLOCK WHERE ID = 1"
            )
            row = cur.fetchone()
        if row is None:
            return LockRow(False, None, None, None, None, None)
        locked, by, granted, hb, granted_us, hb_us = row
        return LockRow(
            bool(locked),
            by,
            granted,
            hb,
            None if granted_us is None else granted_us / 1e6,
            None if hb_us is None else hb_us / 1e6,
        )

    def try_acquire(self, owner: str) -> bool:
        return (
            self._exec(
                "UPDATE DATABASECHANGELOGLOCK SET LOCKED = 1, LOCKEDBY = %s, LOCKGRANTED = NOW(6),"
                " HEARTBEAT = NOW(6) WHERE ID = 1 AND LOCKED = 0",
                (owner,),
            )
            == 1
        )

    def take_over(self, owner: str, seen: LockRow) -> bool:
        return (
            self._exec(
                "UPDATE DATABASECHANGELOGLOCK SET LOCKEDBY = %s, LOCKGRANTED = NOW(6), HEARTBEAT = NOW(6)"
                " WHERE ID = 1 AND LOCKED = 1 AND LOCKEDBY <=> %s AND LOCKGRANTED <=> %s AND HEARTBEAT <=> %s",
                (owner, seen.locked_by, seen.granted, seen.heartbeat),
            )
            == 1
        )

    def heartbeat(self, owner: str) -> bool:
        # PyMySQL reports changed rows, not matched ones; a fresh NOW(6) always changes the row.
        return (
            self._exec(
                "UPDATE DATABASECHANGELOGLOCK SET HEARTBEAT = NOW(6) WHERE ID = 1 AND LOCKED = 1 AND LOCKEDBY = %s",
                (owner,),
            )
            == 1
        )

    def release(self, owner: str) -> None:
        self._exec(
            "UPDATE DATABASECHANGELOGLOCK SET LOCKED = 0, LOCKEDBY = NULL, LOCKGRANTED = NULL, HEARTBEAT = NULL"
            " WHERE ID = 1 AND LOCKEDBY = %s",
            (owner,),
        )

    def applied(self) -> set[str]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT ID FROM DATABASECHANGELOG")
            return {r[0] for r in cur.fetchall()}

    def apply(self, changeset: ChangeSet, order: int) -> None:
        for sql in changeset.statements:
            self._exec(sql)
        self._exec(
            "INSERT IGNORE INTO DATABASECHANGELOG (ID, AUTHOR, FILENAME, DATEEXECUTED, ORDEREXECUTED,"
            " EXECTYPE, MD5SUM, DESCRIPTION) VALUES (%s, %s, %s, NOW(6), %s, 'EXECUTED', %s, %s)",
            (changeset.id, changeset.author, FILENAME, order, changeset.md5, changeset.description),
        )
