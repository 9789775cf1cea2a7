"""The lab's compare-and-set (`halabExpect` on an update): validated with the body, compared on the
row the transaction read under the resource's ZooKeeper lock (a plain read, as cattle's), fenced at
COMMIT, and refused with 409 before anything is written. A fake connection records the SQL;
nothing reaches MySQL or ZooKeeper."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from lab.server import inputs
from lab.server.gdapi import ApiError
from lab.server.processes import ProcessEngine
from lab.server.resources import PROJECT


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn
        self.lastrowid = 7

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: Any = ()) -> None:
        self.conn.log.append(sql)
        if sql.startswith("UPDATE"):
            self.conn.row.update(
                dict(zip([c.split("`")[1] for c in sql.split(" SET ")[1].split(", ")], args[:-1], strict=True))
            )

    def fetchone(self) -> dict[str, Any]:
        return dict(self.conn.row)


class FakeConn:
    def __init__(self, description: str | None) -> None:
        self.row: dict[str, Any] = {"id": 5, "state": "active", "description": description, "data": None}
        self.log: list[str] = []

    def begin(self) -> None:
        self.log.append("BEGIN")

    def commit(self) -> None:
        self.log.append("COMMIT")

    def rollback(self) -> None:
        self.log.append("ROLLBACK")

    def cursor(self, *_: Any) -> FakeCursor:
        return FakeCursor(self)


class FakeCoord:
    @contextlib.contextmanager
    def hold(self, rtype: str, rid: int, timeout: float) -> Iterator[Any]:
        yield SimpleNamespace(
            check=lambda: None, register=lambda conn: conn.log.append("REGISTER"), commit=lambda conn: conn.commit()
        )


def change(conn: FakeConn, body: dict[str, Any]) -> dict[str, Any]:
    engine = SimpleNamespace(
        coord=FakeCoord(),
        cfg=SimpleNamespace(profile=SimpleNamespace(lock_timeout=1.0), commit_hook=""),
        server_id="a1",
        _check_refs=lambda conn, changes: None,
        _now=lambda: None,
    )
    row: dict[str, Any] = ProcessEngine.change_txn(
        engine,  # type: ignore[arg-type]
        conn,
        PROJECT,
        5,
        "update",
        inputs.for_update(PROJECT, body),
    )
    return row


def test_a_cas_from_the_stored_value_is_written_in_the_same_transaction() -> None:
    conn = FakeConn("p1-1")
    row = change(conn, {"description": "p2-1", inputs.EXPECT: {"description": "p1-1"}})
    assert row["description"] == "p2-1"
    select = next(s for s in conn.log if s.startswith("SELECT"))
    # The lock's token is registered before anything is read; the read takes no row lock.
    assert conn.log.index("REGISTER") < conn.log.index(select) and not select.endswith("FOR UPDATE")
    assert conn.log.index(select) < next(i for i, s in enumerate(conn.log) if s.startswith("UPDATE"))
    assert conn.log.index("COMMIT") > next(i for i, s in enumerate(conn.log) if s.startswith("UPDATE"))


def test_a_cas_from_another_value_is_409_and_writes_nothing() -> None:
    conn = FakeConn("p1-2")
    with pytest.raises(ApiError) as err:
        change(conn, {"description": "p2-1", inputs.EXPECT: {"description": "p1-1"}})
    assert err.value.status == 409 and err.value.code == "ExpectationFailed"
    assert not any(s.startswith(("UPDATE", "INSERT")) for s in conn.log) and "COMMIT" not in conn.log
    assert conn.row["description"] == "p1-2"


def test_a_cas_expecting_null_matches_an_unset_field() -> None:
    assert change(FakeConn(None), {"description": "v", inputs.EXPECT: {"description": None}})["description"] == "v"


@pytest.mark.parametrize("expect", [["description"], {"uuid": "x"}, {"nosuch": 1}, {"description": 3}])
def test_a_cas_on_what_it_cannot_compare_is_refused_with_the_body(expect: Any) -> None:
    with pytest.raises(ApiError) as err:
        inputs.for_update(PROJECT, {"description": "v", inputs.EXPECT: expect})
    assert err.value.status == 422


def test_a_plain_update_expects_nothing() -> None:
    assert inputs.for_update(PROJECT, {"description": "v"}).expect == {}
