"""The register workload's history and its checks as a run judges them: ops parts merged into
`ops.jsonl`, indeterminate writes resolved from the database rows, "nothing checked" and skipped
checks never passing, the availability objective, and faults picked up from the lab's fault log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lab.chaos.faultlog import faults_during, record_faults
from lab.chaos.judge import judge
from lab.faults.registry import LOG_FILE, Registry
from lab.record.checker import CheckConfig, DbSnapshot, check
from lab.record.history import HISTORY_FILE, FaultRecord, History, JsonlWriter, ProbeRecord, RequestRecord, load_run
from lab.record.ops import Op
from lab.record.registers import (
    OPS_FILE,
    ROWS_TABLE,
    check_registers,
    key_states,
    load_ops,
    merge_ops,
    part_path,
    resolver,
)

T = 1000.0


def op(process: str, f: str, value: object, t: float, kind: str = "ok", key: str = "1a5") -> Op:
    return Op(process, key, f, value, kind, T + t, T + t + 0.1)  # type: ignore[arg-type]


HISTORY = [
    op("p1", "write", "p1-1", 0),
    op("p2", "read", "p1-1", 1),
    op("p2", "cas", ("p1-1", "p2-1"), 2),
    op("p1", "read", "p2-1", 3),
    op("p1", "write", "p1-2", 4, "info"),  # a timeout: it may or may not have applied
    op("p2", "cas", ("p2-1", "p2-2"), 5, "fail"),  # refused with a 409
]


def test_ops_parts_merge_into_ops_jsonl_ordered_and_indexed(tmp_path: Path) -> None:
    for worker, ops in (("p1", HISTORY[::2]), ("p2", HISTORY[1::2])):
        with JsonlWriter(part_path(tmp_path / "parts", worker)) as w:
            w.write_lines(o.to_json() for o in ops)
    with open(part_path(tmp_path / "parts", "p2"), "a") as f:
        f.write('{"process": "p2", "torn')  # a killed process's last line
    assert load_ops(tmp_path) == [o.__class__(**{**o.__dict__, "index": i}) for i, o in enumerate(HISTORY)]
    assert merge_ops(tmp_path) == len(HISTORY)
    assert (tmp_path / OPS_FILE).exists() and not list((tmp_path / "parts" / "ops").glob("*.jsonl"))
    loaded = load_ops(tmp_path)
    assert loaded is not None and [o.value for o in loaded] == [o.value for o in HISTORY]
    assert load_ops(tmp_path / "nothing") is None


def test_an_info_write_seen_or_final_is_committed() -> None:
    ops = [*HISTORY, op("p2", "read", "p1-2", 7)]
    report = check_registers(ops, [{"id": 5, "description": "p1-2", "updates": 3}])
    assert report.indeterminate == {"committed": 1, "not committed": 0, "unknown": 0}
    assert report.linearizable == "ok" and report.sessions == "ok" and report.reads_checked == 4


def test_an_info_write_is_not_committed_when_the_updates_number_the_ok_writes() -> None:
    states = key_states([{"id": 5, "description": "p2-1", "updates": 2}])
    assert resolver(HISTORY, states)("1a5", "p1-2") is False
    # One more committed update than ok writes: one info write applied, overwritten unseen.
    states = key_states([{"id": 5, "description": "p2-1", "updates": 3}])
    assert resolver(HISTORY, states)("1a5", "p1-2") is None
    assert resolver(HISTORY, {})("1a5", "p1-2") is None  # no snapshot: unknown
    assert key_states([{"id": 5, "description": "NULL", "updates": None}])["1a5"].final is None


def test_a_stale_read_is_a_violation_with_its_witness() -> None:
    ops = [*HISTORY, op("p3", "read", "p1-1", 8)]
    report = check_registers(ops, None)
    assert report.linearizable == "violation" and report.anomalies["stale-read"] == 1
    lin = next(f for f in report.findings if f.check == "linearizable_registers")
    assert lin.key == "1a5" and any("p1-1" in w for w in lin.witness)


def probes(t0: float, t1: float) -> list[ProbeRecord]:
    return [ProbeRecord(T + t, T + t + 0.01, "a1", 200, "active") for t in range(int(t0), int(t1))]


def requests(n: int = 20, failed_at: tuple[int, ...] = ()) -> list[RequestRecord]:
    return [
        RequestRecord(T + i, T + i + 0.05, "GET", "/v1/projects", 500 if i in failed_at else 200, i not in failed_at)
        for i in range(n)
    ]


SNAPSHOT = DbSnapshot(T + 30, {"process_instance": ()})


def test_nothing_checked_fails_the_register_checks() -> None:
    history = History.of([*requests(), *probes(0, 20)])
    result = check(history, SNAPSHOT, CheckConfig(), ops=[])
    assert not result.passed
    lin, sessions = result.outcome("linearizable_registers"), result.outcome("session_guarantees")
    assert lin.status == sessions.status == "failed" and "nothing checked" in lin.note
    assert check(history, SNAPSHOT, CheckConfig(), ops=HISTORY).outcome("session_guarantees").status == "passed"
    rows = DbSnapshot(T + 30, {"process_instance": (), ROWS_TABLE: ({"id": 5, "description": "p2-1", "updates": 2},)})
    registers = check(history, rows, CheckConfig(), ops=HISTORY).registers
    assert registers is not None and registers.indeterminate["not committed"] == 1


def test_a_skipped_check_fails_the_verdict() -> None:
    history = History.of(requests())  # no probes: the fenced-acknowledgement check is skipped
    result = check(history, SNAPSHOT, CheckConfig(), ops=HISTORY)
    assert result.outcome("no_writes_acknowledged_by_fenced_nodes").status == "skipped"
    assert not result.passed and not result.to_dict()["passed"]
    full = check(History.of([*requests(), *probes(0, 20)]), SNAPSHOT, CheckConfig(), ops=HISTORY)
    assert full.passed
    # The register checks come on top of the others, never instead of them.
    assert {"no_stuck_processes", "process_times_consistent", "linearizable_registers"} <= {
        o.name for o in full.outcomes
    }


def test_availability_is_judged_against_the_objective_after_each_fault() -> None:
    fault = FaultRecord(T + 5, T + 8, "kill", ("a1",), "f1")
    cfg = CheckConfig(objective_success=0.99, objective_after=5)
    inside = History.of([*requests(failed_at=(5, 6, 9)), *probes(0, 20), fault])
    outcome = check(inside, SNAPSHOT, cfg).outcome("availability_objective")
    assert outcome.status == "passed" and outcome.checked == 15  # failures within 5 s of the fault
    late = History.of([*requests(failed_at=(5, 10)), *probes(0, 20), fault])
    assert check(late, SNAPSHOT, cfg).outcome("availability_objective").status == "failed"
    empty = check(History.of(probes(0, 20)), SNAPSHOT, cfg).outcome("availability_objective")
    assert empty.status == "failed" and "nothing checked" in empty.note


def test_a_load_run_of_the_register_workload_without_ops_does_not_pass(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / HISTORY_FILE) as w:
        w.extend([*requests(), *probes(0, 20)])
    (tmp_path / "load.json").write_text(json.dumps({"spec": {"user_classes": []}}))
    assert judge(tmp_path).result.outcome("linearizable_registers").status == "failed"
    (tmp_path / "load.json").write_text(json.dumps({"spec": {"user_classes": ["ApiUser"]}}))
    assert [o.name for o in judge(tmp_path).result.outcomes if o.name.endswith("registers")] == []


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HALAB_HOME", str(tmp_path / "home"))
    return "faulty"


def test_a_run_picks_up_faults_applied_from_another_shell(lab: str, tmp_path: Path) -> None:
    from lab.cluster import state

    log = state.lab_dir(lab) / LOG_FILE
    with JsonlWriter(log) as w:
        w.append(FaultRecord(T - 50, T - 40, "pause", ("a2",), "f1"))  # before the run
        w.append(FaultRecord(T + 10, T + 20, "kill", ("a1",), "f2"))
    held = Registry(lab).add({"spec": {"kind": "stop", "targets": ["b1"]}, "targets": ["b1"], "t0": T + 25})
    Registry(lab).update(held, phase="active")
    run = tmp_path / "run"
    run.mkdir()
    assert [f.id for f in faults_during(lab, T, T + 30)] == ["f2", held]
    new = record_faults(run, lab, T, T + 30)
    assert [(f.id, f.t1) for f in new] == [("f2", T + 20), (held, T + 30)] and new[1].detail["held_at_end"]
    assert record_faults(run, lab, T, T + 30) == []  # already in the history
    assert [f.fault for f in load_run(run).faults] == ["kill", "stop"]
    assert faults_during("no-such-lab", 0, time.time()) == []
