"""The matrix's decisions and outputs without Docker: a Watch filled by hand stands for the lab."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.chaos import matrix
from lab.record.checker import CheckResult, Outcome, Violation
from lab.chaos.claims import Bounds, Expectation
from lab.core.errors import CheckFailed
from lab.record.history import ProbeRecord, RequestRecord
from lab.cluster.topology import make_topology
from lab.chaos.watch import LbSample, Watch

T3 = make_topology(3)
BOUNDS = Bounds(settle=4, stable=1, outage=2, fence=10, decide=20, heal=60)
SURVIVE = Expectation(frozenset({"a1", "a2"}), frozenset({"b1"}), frozenset())


def watch(pings: dict[str, int | None], lb: dict[str, str], client_ok: bool, now: float) -> Watch:
    """A watch whose recent records show `pings`, `lb` and a client succeeding or failing."""
    w = Watch(T3)
    for n, ping in pings.items():
        w.probes[n] = [ProbeRecord(now - 0.5, now - 0.45, n, ping, "active" if ping == 200 else "degraded")]
    w.lb = [LbSample(now - 0.1, dict(lb))]
    w.requests = [RequestRecord(now - 2.5 + 0.25 * i, now - 2.4 + 0.25 * i, "POST", "/v1/projects",
                                201 if client_ok else 503, client_ok, write=True) for i in range(10)]
    return w


def test_decides_at_once_when_the_lab_shows_the_expectation():
    now = time.time()
    w = watch({"a1": 200, "a2": 200, "b1": 503}, {"a1": "UP", "a2": "UP", "b1": "DOWN"}, True, now)
    obs = matrix.observe(w, SURVIVE, now - 5, BOUNDS)
    assert obs.outcome == "survives" and obs.active == {"a1", "a2"} and obs.t - now < 1


def test_a_minority_node_that_does_not_fence_itself_is_observed_at_the_bound():
    now = time.time()
    w = watch({"a1": 200, "a2": 200, "b1": 200}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True, now)
    obs = matrix.observe(w, SURVIVE, now - 21, BOUNDS)
    assert obs.outcome == "survives" and obs.active == {"a1", "a2", "b1"}


def test_an_outage_where_survival_was_expected_is_observed_as_such():
    now = time.time()
    w = watch({"a1": 503, "a2": 503, "b1": 503}, {"a1": "DOWN", "a2": "DOWN", "b1": "DOWN"}, False, now)
    assert matrix.observe(w, SURVIVE, now - 21, BOUNDS).outcome == "outage"


def test_nothing_settled_by_the_bound_is_unsettled():
    now = time.time()
    w = watch({"a1": 503, "a2": 200, "b1": 503}, {"a1": "UP", "a2": "UP", "b1": "DOWN"}, False, now)
    w.requests[-1] = RequestRecord(now - 0.2, now - 0.1, "GET", "/v1/projects/[id]", 200, True)
    assert matrix.observe(w, SURVIVE, now - 21, BOUNDS).outcome == "unsettled"


def case(name: str, t0: float, t_end: float, problems: tuple[str, ...] = (), observed: str = "survives"):
    return matrix.CaseResult(3, name, ("c",), f"kill {name}", "survives", observed, ("a1",), ("a1",), 0.5, 1.0, 2.0,
                             t0, t0 + 5, t_end, problems)


def test_violations_are_charged_to_the_case_they_fell_in():
    results = [case("one", 100.0, 120.0), case("two", 125.0, 140.0)]
    verdicts = CheckResult(outcomes=(
        Outcome("acknowledged_writes_present", "failed", 5, (Violation("u", 130.0, "project acknowledged, no row"),)),
        Outcome("no_writes_acknowledged_by_fenced_nodes", "passed", 5),
        Outcome("no_stuck_processes", "failed", 5, (Violation("p", 110.0, "stuck"),)),
    ), faults=(), seconds=(), requests=0, failed=0, failed_idempotent=0, acks=0)
    out = matrix._charge(results, verdicts)
    assert out[0].verdict == "confirmed"
    assert out[1].verdict == "contradicted" and "acknowledged_writes_present: 1 violation(s)" in out[1].problems[0]


def test_outputs_and_exit(tmp_path: Path):
    result = matrix.MatrixResult(tmp_path, 0.0, 42.0, (3,), BOUNDS,
                                 (case("kill-leader", 1, 2),
                                  case("kill-db", 3, 4, ("expected outage, observed survives",))),
                                 ({"id": "c", "says": "3 Nodes: Any one host can fail", "cases": 2,
                                   "verdict": "contradicted"},), machine={"cpus": 2})
    text = matrix.table(result)
    assert "kill-leader" in text and "1/2 cases confirmed in 42 s" in text
    md = matrix.markdown(result)
    assert "| nodes | case | fault | expected | observed | detect | recover | healed | verdict |" in md
    assert "| c | 3 Nodes: Any one host can fail | 2 | contradicted |" in md and "Contradictions:" in md
    assert result.to_dict()["passed"] is False
    with pytest.raises(CheckFailed, match=r"contradicts the claims in 1 case\(s\): n3 kill-db"):
        matrix.require_pass(result)


@pytest.mark.parametrize("modes,whole", [
    (("leader", "follower", "follower"), True),
    (("follower", "leader", "not serving"), False),  # active through another member, its own still syncing
    (("leader", "leader", "follower"), False),
    (("follower", "follower", None), False),
])
def test_steady_state_needs_the_whole_ensemble(modes, whole):
    from lab.chaos.watch import snapshot

    now = time.time()
    w = watch({"a1": 200, "a2": 200, "b1": 200}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True, now)
    for (n, recs), mode in zip(w.probes.items(), modes):
        recs[0] = ProbeRecord(recs[0].t0, recs[0].t1, n, 200, "active", mode)
    assert snapshot(w, now - 1, 1.0, now - 0.3).steady is whole
