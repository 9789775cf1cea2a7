"""The restored-backup check on hand-built histories: what the backup had to hold, what it may hold,
what it must not."""

from lab.record.checker import DbSnapshot
from lab.record.history import History, LedgerEntry, RequestRecord
from lab.record.restored import check_restored, fetch_restored

T = 1000.0
BACKUP = T + 10.0  # the backup began 10 s into the run


def write(t0: float, uuid: str, method: str = "POST", ok: bool = True, took: float = 0.1) -> RequestRecord:
    return RequestRecord(
        t0=T + t0, t1=T + t0 + took, method=method, name="/v1/projects", status=201 if ok else 0, ok=ok, write=True,
        uuid=uuid,
    )  # fmt: skip


def ack(t0: float, uuid: str, op: str = "create", value: str | None = None, took: float = 0.1) -> LedgerEntry:
    return LedgerEntry(
        t0=T + t0, t1=T + t0 + took, op=op, type="project", id=None, uuid=uuid, node="a1", value=value
    )  # fmt: skip


def row(uuid: str, id_: int, name: str = "p", created: float = 1.0, removed: object = "NULL", kind: str = "project"):
    return {
        "id": str(id_), "uuid": uuid, "name": name, "state": "active", "kind": kind, "removed": removed,
        "created": str(T + created),
    }  # fmt: skip


def history(*pairs: tuple[RequestRecord, LedgerEntry | None]) -> History:
    return History.of([r for pair in pairs for r in pair if r is not None])


def created(t0: float, uuid: str, acked: bool = True, took: float = 0.1):
    return write(t0, uuid, ok=acked, took=took), ack(t0, uuid, took=took) if acked else None


def restored(*rows: dict, table: str = "account") -> DbSnapshot:
    return DbSnapshot(T + 60, {table: list(rows)})


def subjects(found, name: str) -> list[str]:
    return [v.subject for o in found.outcomes if o.name == name for v in o.violations]


def test_every_write_acknowledged_before_the_backup_present_passes():
    h = history(created(1, "u1"), created(2, "u2"), created(12, "u3"))
    found = check_restored(h, restored(row("u1", 1), row("u2", 2), row("u3", 3, created=12)), BACKUP)
    assert found.passed, found.lines()
    assert (found.acks_before, found.acks_after, found.outcomes[0].checked) == (2, 1, 2)


def test_a_lost_acknowledged_write_fails():
    h = history(created(1, "u1"), created(2, "u2"))
    found = check_restored(h, restored(row("u1", 1)), BACKUP)
    assert not found.passed and subjects(found, "acknowledged_before_backup_present") == ["u2"]


def test_a_write_acknowledged_after_the_backup_began_may_be_missing():
    # u2 was sent before the backup began but acknowledged after it: it may or may not be there.
    h = history(created(1, "u1"), created(9.5, "u2", took=1.0), created(15, "u3"))
    found = check_restored(h, restored(row("u1", 1)), BACKUP)
    assert found.passed, found.lines()
    assert found.outcomes[0].checked == 1 and found.acks_after == 2


def test_a_phantom_row_fails():
    h = history(created(1, "u1"))
    found = check_restored(h, restored(row("u1", 1), row("never-sent", 2, created=5)), BACKUP)
    assert not found.passed and subjects(found, "no_phantom_rows") == ["never-sent"]


def test_a_write_sent_but_never_acknowledged_may_be_there():
    h = history(created(1, "u1"), created(3, "u2", acked=False))
    assert check_restored(h, restored(row("u1", 1), row("u2", 2, created=3)), BACKUP).passed


def test_rows_older_than_the_run_and_the_servers_own_rows_are_no_phantoms():
    h = history(created(1, "u1"))
    snap = DbSnapshot(
        T + 60,
        {
            "account": [row("u1", 1), row("seed-admin", 2, created=-3600), row("register-project", 7, created=2)],
            "agent": [row("agent-uuid", 3, created=4, kind="agent")],
            "credential": [row("key-uuid", 4, created=4, kind="agentApiKey")],
        },
    )
    assert check_restored(h, snap, BACKUP, register_keys=["1a7"]).passed
    assert subjects(check_restored(h, snap, BACKUP), "no_phantom_rows") == ["register-project"]


def test_nothing_acknowledged_before_the_backup_is_no_pass():
    h = history(created(12, "u1"))
    found = check_restored(h, restored(row("u1", 1, created=12)), BACKUP)
    assert not found.passed
    assert "nothing checked" in found.outcomes[0].note


def test_an_update_acknowledged_before_must_show_unless_a_later_write_may_have_applied():
    base = [created(1, "u1"), (write(2, "u1", "PUT"), ack(2, "u1", "update", value="before"))]
    assert check_restored(history(*base), restored(row("u1", 1, name="before")), BACKUP).passed
    lost = check_restored(history(*base), restored(row("u1", 1, name="p")), BACKUP)
    assert subjects(lost, "acknowledged_before_backup_present") == ["u1"]
    # A rename acknowledged after the backup began may be in it: either name is right.
    later = (write(11, "u1", "PUT"), ack(11, "u1", "update", value="after"))
    assert check_restored(history(*base, later), restored(row("u1", 1, name="after")), BACKUP).passed


def test_a_delete_acknowledged_before_must_show_a_later_one_may():
    made = created(1, "u1")
    gone = (write(3, "u1", "DELETE"), ack(3, "u1", "delete"))
    kept = restored(row("u1", 1))
    assert subjects(check_restored(history(made, gone), kept, BACKUP), "acknowledged_before_backup_present") == ["u1"]
    late = (write(12, "u1", "DELETE"), ack(12, "u1", "delete"))
    assert check_restored(history(made, late), kept, BACKUP).passed
    assert check_restored(history(made, gone), restored(row("u1", 1, removed=str(T + 3))), BACKUP).passed


def test_two_rows_for_one_acknowledged_create_fail():
    found = check_restored(history(created(1, "u1")), restored(row("u1", 1), row("u1", 2)), BACKUP)
    assert subjects(found, "no_duplicated_writes") == ["u1"]


def test_fetch_restored_reads_the_acknowledged_uuids_and_every_row_created_since_the_run():
    asked: list[str] = []

    def query(sql: str):
        asked.append(sql)
        if "created >=" in sql and "`account`" in sql:
            return [row("u1", 1), row("x", 9, created=5)]
        if "uuid IN" in sql:
            return [{"id": "1", "uuid": "u1", "name": "p", "state": "active", "removed": "NULL"}]
        return []

    snap = fetch_restored(query, history(created(1, "u1")), now=lambda: T + 60)
    assert [r["id"] for r in snap.tables["account"]] == ["1", "9"]  # u1 once, with its creation time
    assert snap.tables["account"][0]["created"] == str(T + 1)
    assert any("FROM `agent` WHERE created >= '1970-01-01 00:16:40'" in s for s in asked), asked
