"""A scenario file run to its end on a real lab through the pytest fixture users get: the journal
records the plan, the faults as executed, the checks and a passing verdict; the report is built."""

from __future__ import annotations

import json

import pytest
from helpers import NOTHING_LEFT

from lab import faults
from lab.core import paths

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def halab_profile() -> str:
    """The scenario's `during` checks expect the isolated follower fenced: the tuned node
    (docs/architecture.md, Node profiles)."""
    return "tuned"


SCENARIO = paths.SCENARIOS / "isolate-follower.yaml"


def test_isolate_follower_scenario_passes_and_journals_everything(halab_lab3, halab_scenario):
    result = halab_scenario(SCENARIO, lab=halab_lab3)
    j = result.journal
    assert result.passed, result.summary()
    assert j["status"] == "completed" and j["lab"]["reused"] is True
    assert j["plan"]["faults"][0]["describe"] == "isolate follower"
    (fault,) = j["faults"]
    assert fault["resolved"].startswith("isolate ") and fault["t1"] > fault["t0"]
    assert fault["expected"].startswith("survives")
    assert [c["ok"] for c in j["steady_state"]["before"] + j["steady_state"]["after"]] == [True] * 4
    during = j["steady_state"]["during"]
    assert during["expected-active"]["passed"] > 0 and during["expected-active"]["failed"] == 0
    assert {a["name"]: a["ok"] for a in j["assertions"]} == {"no_lost_writes": True, "no_fenced_acks": True}
    assert json.loads((result.run_dir / "journal.json").read_text())["verdict"] == "passed"
    assert (result.run_dir / "report.html").exists() and (result.run_dir / "history.jsonl").exists()
    assert faults.leftovers(halab_lab3) == NOTHING_LEFT
