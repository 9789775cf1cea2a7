"""The checker on hand-built histories: a clean run passes, doctored ones are caught."""

from dataclasses import replace

import pytest

from lab.record.checker import CheckConfig, DbSnapshot, check, fetch_snapshot, per_second
from lab.record.history import FaultRecord, History, LedgerEntry, ProbeRecord, RequestRecord

T = 1000.0
FAULT = FaultRecord(t0=T + 10, t1=T + 15, fault="kill", targets=("a2",), id="f1")
NODES = ("a1", "a2", "b1")


def requests(fail_from: float = 10.0, fail_until: float = 11.5) -> list[RequestRecord]:
    """One GET every 0.1 s for 30 s; those started in [fail_from, fail_until) failed."""
    out = []
    for i in range(300):
        t0 = T + i / 10
        failed = fail_from <= i / 10 < fail_until
        out.append(
            RequestRecord(
                t0=t0,
                t1=t0 + 0.02,
                method="GET",
                name="/v1/projects",
                status=503 if failed else 200,
                ok=not failed,
                node="a1",
            )
        )
    return out


def probes(a2_down_from: float = 10.5, a2_up_from: float = 15.5) -> list[ProbeRecord]:
    """Every node probed every 0.5 s; a2 unreachable in [a2_down_from, a2_up_from)."""
    out = []
    for k in range(60):
        t0 = T + k / 2
        for node in NODES:
            down = node == "a2" and a2_down_from <= k / 2 < a2_up_from
            out.append(
                ProbeRecord(
                    t0=t0,
                    t1=t0 + 0.05,
                    node=node,
                    ping=None if down else 200,
                    state=None if down else "active",
                    zk_mode="follower",
                )
            )
    return out


def ack(t0: float, uuid: str, op: str = "create", node: str = "a1", value: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        t0=T + t0, t1=T + t0 + 0.1, op=op, type="project", id=f"1a-{uuid}", uuid=uuid, node=node, value=value
    )


ACKS = [
    ack(2.0, "u1"),
    ack(3.0, "u1", "update", value="renamed"),
    ack(4.0, "u2", node="b1"),
    ack(9.0, "u3", node="a2"),  # a2 still active then
    ack(16.0, "u4"),
    ack(17.0, "u4", "delete"),
]


def row(uuid: str, name: str = "p", removed: object = "NULL", state: str = "active") -> dict:
    return {"id": "5", "uuid": uuid, "name": name, "state": state, "removed": removed}


def snapshot(rows: list[dict] | None = None, processes: list[dict] | None = None) -> DbSnapshot:
    rows = (
        rows
        if rows is not None
        else [row("u1", "renamed"), row("u2"), row("u3"), row("u4", removed=str(T + 17.5), state="removed")]
    )
    return DbSnapshot(fetched_at=T + 40, tables={"account": rows, "process_instance": processes or []})


def history(**kw) -> History:
    parts = {"requests": requests(), "probes": probes(), "faults": [FAULT], "acks": ACKS} | kw
    return History.of([*parts["requests"], *parts["probes"], *parts["faults"], *parts["acks"]])


def violations(result, name):
    return [v.subject for v in result.outcome(name).violations]


def test_a_clean_history_passes_every_check():
    result = check(history(), snapshot())
    assert result.passed
    assert {o.name: o.status for o in result.outcomes} == {
        "acknowledged_writes_present": "passed",
        "no_duplicated_writes": "passed",
        "no_writes_acknowledged_by_fenced_nodes": "passed",
        "no_stuck_processes": "passed",
        "process_times_consistent": "passed",
    }
    assert result.outcome("acknowledged_writes_present").checked == 4
    assert result.outcome("no_writes_acknowledged_by_fenced_nodes").checked == len(ACKS)


def test_a_lost_write_is_caught():
    result = check(history(), snapshot([row("u1", "renamed"), row("u3"), row("u4", removed=str(T + 18))]))
    assert not result.passed
    assert violations(result, "acknowledged_writes_present") == ["u2"]


def test_a_duplicated_write_is_caught():
    rows = [row("u1", "renamed"), row("u2"), row("u2"), row("u3"), row("u4", removed=str(T + 18))]
    result = check(history(), snapshot(rows))
    assert violations(result, "no_duplicated_writes") == ["u2"]
    assert result.outcome("acknowledged_writes_present").status == "passed"


def test_a_lost_update_and_a_lost_delete_are_caught():
    rows = [row("u1", "p"), row("u2"), row("u3"), row("u4")]
    result = check(history(), snapshot(rows))
    assert sorted(violations(result, "acknowledged_writes_present")) == ["u1", "u4"]


def test_an_update_followed_by_an_indeterminate_one_is_not_judged_by_its_value():
    timed_out = RequestRecord(
        t0=T + 5,
        t1=T + 65,
        method="PUT",
        name="/v1/projects/[id]",
        status=0,
        ok=False,
        write=True,
        uuid="u1",
        error="timeout",
    )
    rows = [row("u1", "whatever the timed-out PUT set"), row("u2"), row("u3"), row("u4", removed=str(T + 18))]
    result = check(history(requests=[*requests(), timed_out]), snapshot(rows))
    assert result.outcome("acknowledged_writes_present").status == "passed"


def test_a_row_removed_without_any_delete_is_a_lost_write():
    rows = [row("u1", "renamed"), row("u2", removed=str(T + 20)), row("u3"), row("u4", removed=str(T + 18))]
    assert violations(check(history(), snapshot(rows)), "acknowledged_writes_present") == ["u2"]


def test_a_write_acknowledged_by_a_fenced_node_is_caught():
    fenced = ack(12.0, "u5", node="a2")  # a2 unreachable from 10.5 to 15.5
    rows = snapshot().tables["account"] + [row("u5")]
    result = check(history(acks=[*ACKS, fenced]), snapshot(rows))
    assert violations(result, "no_writes_acknowledged_by_fenced_nodes") == ["u5"]
    assert result.faults[0].fenced_acks == 1
    assert not result.passed


def test_fencing_is_only_claimed_when_the_probes_prove_it():
    fenced = ack(12.0, "u5", node="a2")
    # One probe saw a2 active during the ack: it may have been active at that moment.
    seen_active = ProbeRecord(t0=T + 12.05, t1=T + 12.06, node="a2", ping=200, state="active")
    result = check(history(acks=[fenced], probes=[*probes(), seen_active]), None)
    assert result.outcome("no_writes_acknowledged_by_fenced_nodes").status == "passed"
    # Bracketing probes too far apart: not judged either way.
    sparse = [p for p in probes() if p.node != "a2" or p.t0 in (T + 11.0, T + 14.0)]
    result = check(history(acks=[fenced], probes=sparse), None, CheckConfig(max_probe_gap=2.0))
    outcome = result.outcome("no_writes_acknowledged_by_fenced_nodes")
    assert outcome.status == "passed" and outcome.checked == 0 and "1 acks not bracketed" in outcome.note
    # A 503 from the node itself (degraded) is as good as unreachable.
    degraded = [replace(p, ping=503, state="degraded") if p.ping is None else p for p in probes()]
    result = check(history(acks=[fenced], probes=degraded), None)
    assert violations(result, "no_writes_acknowledged_by_fenced_nodes") == ["u5"]


def test_an_ack_during_the_transition_is_not_a_violation():
    # Sent while a2 was last seen active (10.0), answered before it was seen down (10.5).
    result = check(history(acks=[ack(10.1, "u6", node="a2")]), None)
    assert result.outcome("no_writes_acknowledged_by_fenced_nodes").violations == ()


def test_stuck_processes_are_caught_and_old_ones_ignored():
    processes = [
        {
            "id": "1",
            "process_name": "project.create",
            "resource_type": "project",
            "resource_id": "5",
            "start_time": str(T + 1),
            "end_time": str(T + 1.3),
        },
        {
            "id": "2",
            "process_name": "project.remove",
            "resource_type": "project",
            "resource_id": "7",
            "start_time": str(T + 5),
            "end_time": "NULL",
            "phase": "running",
            "running_process_server_id": "b1",
        },  # still running 35 s later
        {
            "id": "3",
            "process_name": "project.create",
            "resource_type": "project",
            "resource_id": "1",
            "start_time": str(T - 500),
            "end_time": "NULL",
        },  # before this run
    ]
    result = check(history(), snapshot(processes=processes), CheckConfig(stuck_after=30))
    assert violations(result, "no_stuck_processes") == ["2"]
    (v,) = result.outcome("no_stuck_processes").violations
    assert v.detail.endswith("unfinished after 35.0s (phase running, last run by b1)")  # where it stopped
    assert result.outcome("no_stuck_processes").checked == 2
    assert check(history(), snapshot(processes=processes), CheckConfig(stuck_after=60)).passed


def test_process_times_written_by_a_skewed_clock_are_caught():
    def proc(pid: str, start: float, end: float | None, by: str, to: str | None) -> dict:
        return {
            "id": pid,
            "process_name": "project.update",
            "resource_type": "project",
            "resource_id": "5",
            "start_time": str(start),
            "end_time": "NULL" if end is None else str(end),
            "start_process_server_id": by,
            "running_process_server_id": to or "NULL",
        }

    processes = [
        proc("1", T + 1, T + 1.3, "a1", "a1"),  # one clock: fine
        proc("2", T + 12, T + 2.4, "a2", "a1"),  # a2's clock 10 s ahead, finished by a1
        proc("3", T + 48, None, "a2", None),  # stamped 8 s after the snapshot (T + 40)
        proc("4", T + 3, T + 2.8, "a1", "b1"),  # 0.2 s apart: within the tolerance
    ]
    result = check(history(), snapshot(processes=processes))
    outcome = result.outcome("process_times_consistent")
    assert (
        outcome.status == "failed"
        and outcome.checked == 4
        and violations(result, "process_times_consistent")
        == [
            "2",
            "3",
        ]
    )
    assert [v.detail for v in outcome.violations] == [
        "project.update on project 5 finished 9.6s before it started (started by a2, finished by a1)",
        "project.update on project 5 started 8.0s after the snapshot (stamped by a2)",
    ]


def test_checks_needing_rows_are_skipped_without_a_snapshot():
    result = check(history(), None)
    assert not result.passed  # a skipped check proves nothing, so the run does not pass
    assert result.outcome("acknowledged_writes_present").status == "skipped"
    assert result.outcome("no_stuck_processes").status == "skipped"
    assert result.outcome("process_times_consistent").status == "skipped"


def test_availability_detect_recover_and_budget_of_a_fault_window():
    result = check(history(), snapshot())
    (f,) = result.faults
    assert f.requests == 150  # started in [10, 15 + 10 s tail)
    assert f.failed == 15 and f.failed_idempotent == 15 and f.failed_writes == 0
    assert f.availability == pytest.approx(135 / 150)
    assert f.min_second_availability == 0.0  # second 10: all ten failed
    assert f.time_to_detect == pytest.approx(0.55)  # the probe at 10.5 ended at 10.55
    assert f.time_to_recover == pytest.approx(1.5)  # first success at 11.5, then none failed
    assert f.healed_to_recovered == 0.0
    assert f.budget_consumed == pytest.approx(15 / (0.001 * 300))
    seconds = {s.t: s for s in result.seconds}
    assert seconds[int(T) + 10].availability == 0.0
    assert seconds[int(T) + 11].availability == 0.5
    assert seconds[int(T) + 12].availability == 1.0


def test_recovery_needs_a_stable_failure_free_span():
    # A relapse at 13.0-13.2 after a first recovery at 11.5: recovered only after the relapse.
    reqs = [r if not (13.0 <= r.t0 - T < 13.2) else replace(r, ok=False, status=503) for r in requests()]
    (f,) = check(history(requests=reqs), None).faults
    assert f.time_to_recover == pytest.approx(3.2)
    # No failure at all: recovery is immediate.
    (f,) = check(history(requests=requests(fail_from=99)), None).faults
    assert f.time_to_recover == 0.0 and f.failed == 0
    # Failures until the load ended: never recovered.
    (f,) = check(history(requests=requests(fail_from=10, fail_until=99)), None).faults
    assert f.time_to_recover is None


def test_a_gap_in_traffic_is_not_a_recovery():
    # After the failures, nothing was started for 5 s (clients stuck), then success.
    reqs = [r for r in requests() if not (11.6 <= r.t0 - T < 16.6)]
    (f,) = check(history(requests=reqs), None).faults
    assert f.time_to_recover == pytest.approx(6.6)


def test_no_probes_no_detection():
    (f,) = check(history(probes=[]), None).faults
    assert f.time_to_detect is None
    assert check(history(probes=[]), None).outcome("no_writes_acknowledged_by_fenced_nodes").status == "skipped"


def test_per_second_buckets_by_start_and_fills_gaps():
    reqs = [
        RequestRecord(t0=T + x, t1=T + x + lat, method="GET", name="/", status=200, ok=True)
        for x, lat in ((0.1, 0.010), (0.2, 0.020), (0.9, 0.030), (2.5, 0.5))
    ]
    s = per_second(reqs)
    assert [x.total for x in s] == [3, 0, 1]
    assert s[0].p50 == pytest.approx(20.0) and s[0].p99 == pytest.approx(30.0)
    assert s[1].availability is None and s[1].p50 is None


def test_fetch_snapshot_asks_for_exactly_the_acknowledged_uuids():
    asked: list[str] = []

    def query(sql: str) -> list[dict]:
        asked.append(sql)
        return [row("u1", "renamed")] if "FROM `account`" in sql else []

    snap = fetch_snapshot(query, history(), now=lambda: T + 40)
    account_sql = next(q for q in asked if "FROM `account`" in q)
    assert all(f"'{u}'" in account_sql for u in ("u1", "u2", "u3", "u4"))
    assert any("FROM process_instance" in q for q in asked)
    assert snap.fetched_at == T + 40 and snap.tables["account"] == [row("u1", "renamed")]
    assert DbSnapshot.from_dict(snap.to_dict()) == DbSnapshot(
        snap.fetched_at, {k: tuple(v) for k, v in snap.tables.items()}
    )
