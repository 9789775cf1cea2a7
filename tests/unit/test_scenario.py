"""Scenario files without Docker: validation errors name the file and the field, unknown keys are
rejected, the plan is seeded, `halab run --dry-run` prints it, assertions judge checker results."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.chaos import scenario
from lab.cli import main as cli
from lab.core import paths
from lab.core.errors import BadInput
from lab.record.checker import CheckResult, FaultStats, Outcome, Violation

SCENARIOS = paths.SCENARIOS
SHIPPED = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "claims.yaml")

GOOD = """name: t
seed: 1
topology:
  nodes: 3
faults:
  - at: 2s
    kind: kill
    target: follower
    hold: 5s
  - at: 10s
    jitter: 4s
    kind: split
    sides: [dc-a, dc-b]
    hold: 3s
"""


def write(tmp_path, text: str, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenarios_are_valid(path):
    sc = scenario.load(path)
    assert sc.faults and sc.duration >= max(f.at + f.jitter + f.hold for f in sc.faults)


def test_a_good_file_loads_with_defaults(tmp_path):
    sc = scenario.load(write(tmp_path, GOOD))
    assert sc.topology.nodes == 3 and sc.load is None
    assert sc.duration == 10 + 4 + 3 + scenario.TAIL
    assert sc.checks.before == ("all-active", "client-ok") and sc.checks.during == ()
    assert [f.fault.kind for f in sc.faults] == ["kill", "split"]
    assert sc.faults[1].fault.sides == (("dc-a",), ("dc-b",))


@pytest.mark.parametrize(
    "old,new,match",
    [
        ("    target: follower", "    target: c9", r"x\.yaml: faults\[0\]\.target: no node 'c9' in this lab"),
        ("    kind: kill", "    kind: nuke", r"x\.yaml: faults\[0\]\.kind: unknown fault 'nuke'"),
        ("    hold: 5s", "    hold: 5s\n    colour: red", r"x\.yaml: faults\[0\]\.colour: unknown key"),
        ("seed: 1", "seed: 1\nextra: 1", r"x\.yaml: extra: unknown key \(allowed here: topology, faults"),
        ("    hold: 5s", "    hold: soon", r"x\.yaml: faults\[0\]\.hold: 'soon' is not a duration"),
        ("  - at: 2s", "  - at: -2s", r"x\.yaml: faults\[0\]\.at: '-2s' is not a duration"),
        (
            "    sides: [dc-a, dc-b]",
            "    sides: [dc-a, dc-q]",
            r"x\.yaml: faults\[1\]\.sides\[1\]: no datacenter 'dc-q'",
        ),
        ("  nodes: 3", "  nodes: 4", r"x\.yaml: topology\.nodes: 4 nodes adds no fault tolerance"),
        ("  nodes: 3", "  nodes: 3\n  db_dc: dc-z", r"x\.yaml: topology\.db_dc: the database is placed in 'dc-z'"),
        ("  nodes: 3", "  nodes: 3\n  lb_dc: dc-z", r"x\.yaml: topology\.lb_dc: the load balancer is placed in 'dc-z'"),
        ("  nodes: 3", "  nodes: 3\n  layout: dc-a:2", r"x\.yaml: topology\.layout: dc-a:2 places 2 nodes"),
        ("seed: 1", "seed: 1\nduration: 12s", r"x\.yaml: duration: 12 s ends before faults\[1\] is healed"),
        ("seed: 1", "seed: 1\nchecks: {during: [vibes]}", r"x\.yaml: checks\.during\[0\]: 'vibes' is not one of"),
        (
            "seed: 1",
            "seed: 1\nassert: {no_lost_writes: maybe}",
            r"x\.yaml: assert\.no_lost_writes must be true or false",
        ),
        ("seed: 1", "seed: 1\nassert: {max_latency: 1s}", r"x\.yaml: assert\.max_latency: unknown key"),
        ("seed: 1", "seed: 1\nload: {users: 0}", r"x\.yaml: load\.users: 0 is below the minimum 1"),
        ("topology:\n  nodes: 3\n", "", r"x\.yaml: topology: missing"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, old, new, match):
    assert old in GOOD
    p = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(BadInput, match=match) as e:
        scenario.load(p)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(BadInput, match=r"nope\.yaml: no such file"):
        scenario.load(tmp_path / "nope.yaml")
    with pytest.raises(BadInput, match=r"x\.yaml: line \d+: not valid YAML"):
        scenario.load(write(tmp_path, "topology:\n  nodes: [3\n"))
    with pytest.raises(BadInput, match=r"x\.yaml: must be a mapping"):
        scenario.load(write(tmp_path, "- 1\n"))


def test_the_plan_is_seeded(tmp_path):
    sc = scenario.load(write(tmp_path, GOOD))
    a, b = scenario.plan(sc), scenario.plan(sc)
    assert [p.at for p in a] == [p.at for p in b]
    assert a[0].at == 2.0 and 10.0 <= a[1].at <= 14.0
    other = scenario.load(write(tmp_path, GOOD.replace("seed: 1", "seed: 2"), "y.yaml"))
    assert scenario.plan(other)[1].at != a[1].at


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scenario, "run", lambda *a, **k: pytest.fail("a dry run runs nothing"))
    assert cli.main(["run", "--dry-run", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "faults[0] kill follower, healed 5 s later; expected survives (2 of 3 nodes active)" in out
    assert "faults[1] split dc-a | dc-b" in out and "expected survives (active: a1, a2)" in out
    assert "lab 'sc-t'" in out


def test_cli_reports_a_bad_file_in_one_line_with_exit_2(tmp_path, capsys):
    assert cli.main(["run", "--dry-run", str(write(tmp_path, GOOD.replace("target: follower", "target: c9")))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("halab: error: ") and "faults[0].target: no node 'c9'" in err and "\n" not in err


# ------------------------------------------------------------------------------- assertions


def result(**kw) -> CheckResult:
    lost = Outcome("acknowledged_writes_present", "failed", 10, (Violation("u1", 5.0, "project acknowledged, no row"),))
    outcomes = (
        lost,
        Outcome("no_duplicated_writes", "passed", 10),
        Outcome("no_writes_acknowledged_by_fenced_nodes", "passed", 10),
        Outcome("no_stuck_processes", "skipped", note="no rows"),
    )
    fault = FaultStats(
        id="f1",
        fault="kill",
        targets=("a1",),
        t0=1.0,
        t1=5.0,
        window_end=15.0,
        requests=100,
        failed=3,
        failed_idempotent=0,
        failed_writes=3,
        availability=0.97,
        min_second_availability=0.5,
        time_to_detect=0.6,
        time_to_recover=kw.get("recover", 2.5),
        healed_to_recovered=None,
        budget_consumed=None,
        fenced_acks=0,
    )
    return CheckResult(
        outcomes=outcomes, faults=(fault,), seconds=(), requests=200, failed=3, failed_idempotent=0, acks=50
    )


def test_assertions_judge_the_checker_result():
    r = result()
    lost = scenario.evaluate("no_lost_writes", True, r)
    assert not lost["ok"] and "1 violation(s) of 10" in lost["detail"] and "no row" in lost["detail"]
    assert scenario.evaluate("no_fenced_acks", True, r)["ok"]
    assert scenario.evaluate("no_stuck_processes", True, r)["ok"]  # skipped is not a failure
    assert scenario.evaluate("max_time_to_recover", 3.0, r)["ok"]
    assert not scenario.evaluate("max_time_to_recover", 2.0, r)["ok"]
    assert not scenario.evaluate("max_time_to_recover", 9.0, result(recover=None))["ok"]  # never recovered
    assert scenario.evaluate("min_availability", 0.98, r)["ok"]
    assert not scenario.evaluate("min_availability", 0.99, r)["ok"]
    assert scenario.evaluate("max_failed_requests", 3, r)["ok"]
    assert not scenario.evaluate("max_failed_requests", 2, r)["ok"]


def test_pytest_collects_scenario_files_given_to_it_as_docker_tests():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(SCENARIOS)],
        capture_output=True,
        text=True,
        cwd=SCENARIOS.parent,
        timeout=120,
    ).stdout
    collected = sorted(line for line in out.splitlines() if ".yaml::" in line)
    assert collected == sorted(f"scenarios/{p.name}::{p.stem}" for p in SHIPPED)


@pytest.mark.parametrize(
    "text,seconds", [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), (3, 3.0), ("1.5s", 1.5), ("0s", 0.0)]
)
def test_durations(text, seconds):
    from lab.core.durations import parse_duration

    assert parse_duration(text, "f: x") == seconds
