"""Process times and the replay's scan per profile: rancher-1.0 stamps a process with the server's
own clock (cattle's `new Date()`) and replays every unfinished process however young; tuned uses
the database's clock and replays only processes unfinished for a while."""

from __future__ import annotations

from typing import Any

from lab.server import store
from lab.server.processes import _scan
from lab.server.resources import PROJECT


class Cursor:
    def __init__(self, rows: list[Any]) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.rows = rows
        self.lastrowid = 11

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        self.calls.append((sql, tuple(args)))
        return 1

    def fetchone(self) -> Any:
        return self.rows.pop(0)

    def fetchall(self) -> Any:
        return self.rows.pop(0)


class Conn:
    def __init__(self, *rows: Any) -> None:
        self.cur = Cursor(list(rows))

    def cursor(self) -> Cursor:
        return self.cur


def test_a_process_is_stamped_with_the_servers_clock_when_given_else_the_databases() -> None:
    conn = Conn()
    assert store.insert_process(conn, PROJECT, 5, "update", "a2", now=1796082392.1234567) == 11
    sql, args = conn.cur.calls[-1]
    assert "VALUES (FROM_UNIXTIME(%s), '{}', 0, %s, %s, %s, 'requested', %s)" in sql
    assert args == (1796082392.123457, "project.update", "project", "5", "a2")
    store.insert_process(conn, PROJECT, 5, "update", "a2")
    sql, args = conn.cur.calls[-1]
    assert "VALUES (NOW(6), '{}'" in sql and args == ("project.update", "project", "5", "a2")


def test_cattles_replay_takes_every_unfinished_process_however_young() -> None:
    conn = Conn((2, 1500), [("project", "5"), ("project", "x")])
    depth, oldest, due = _scan(conn, 0.0)
    assert (depth, oldest, due) == (2, 0.0015, [("project", 5)])
    sql, args = conn.cur.calls[-1]
    assert "start_time" not in sql and args == (200,)  # only the batch limit


def test_the_tuned_replay_takes_only_processes_unfinished_for_a_while() -> None:
    conn = Conn((1, 3_000_000), [("project", "5")])
    assert _scan(conn, 2.0)[2] == [("project", 5)]
    sql, args = conn.cur.calls[-1]
    assert "start_time < NOW(6) - INTERVAL %s MICROSECOND" in sql and args == (2_000_000, 200)
