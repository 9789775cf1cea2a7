"""`chaos run scenarios/chaostoolkit/kill-leader.json`, the real `chaos` command of the venv, against
a running 3-node lab: it exits 0 with the steady state held before and after, the kill hit the
ZooKeeper leader, the rollbacks ran, and the experiment is in the lab's history (its run directory,
judged and reported, and the lab's experiments.jsonl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.chaostoolkit.session import EXPERIMENTS_FILE
from lab.cluster import state
from lab.core import paths
from lab.record.history import load_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXPERIMENT = paths.SCENARIOS / "chaostoolkit" / "kill-leader.json"


@pytest.fixture(scope="module")
def halab_profile() -> str:
    """One lab per module, the tuned node: the fastest to settle after the kill."""
    return "tuned"


def test_chaos_run_kill_leader_holds_the_steady_state_and_is_recorded(lab3, tmp_path):
    t = lab3
    journal_path = tmp_path / "journal.json"
    chaos = Path(sys.executable).with_name("chaos")
    proc = subprocess.run(
        [
            str(chaos),
            "--no-version-check",  # nothing leaves this machine
            "--no-log-file",
            "--settings",
            str(tmp_path / "settings.yaml"),  # none: the user's notifications stay out of the test
            "run",
            "--journal-path",
            str(journal_path),
            str(EXPERIMENT),
        ],
        env={**os.environ, "HALAB_NAME": t.lab, "HALAB_RUNS": str(tmp_path / "runs")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "completed" and journal["deviated"] is False
    assert [journal["steady_states"][w]["steady_state_met"] for w in ("before", "after")] == [True, True]
    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert all(r["status"] == "succeeded" for r in runs.values()), runs
    kill = runs["kill-the-zookeeper-leaders-node"]["output"]
    (leader,) = kill["targets"]
    assert runs["zookeeper-modes"]["output"][leader] == "leader" and kill["healed"] is True
    assert runs["checker-verdict-so-far"]["output"]["faults"][0]["targets"] == [leader]
    rollbacks = {r["activity"]["name"]: r for r in journal["rollbacks"]}
    assert rollbacks["stop-load"]["output"]["stopped"] is True and rollbacks["heal-the-lab"]["status"] == "succeeded"

    # The run directory: the kill, the probes, the load's and the watch's requests; judged and reported.
    halab = journal["halab"]
    run_dir = Path(halab["run_dir"])
    history = load_run(run_dir)
    assert [(f.fault, f.targets) for f in history.faults] == [("kill", (leader,))]
    assert {p.node for p in history.probes} == set(t.node_names)
    assert {r.worker == "watch" for r in history.requests} == {True, False}
    recorded = json.loads((run_dir / "journal.json").read_text())
    assert recorded["chaostoolkit"]["status"] == "completed" and recorded["lab"]["profile"] == "tuned"
    checks = recorded["checks"]["checks"]
    assert all(c["status"] != "skipped" and c["checked"] > 0 for c in checks.values()), checks
    assert halab["checks"] == "passed", checks
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()

    # The lab's own record of what ran on it.
    lines = [json.loads(x) for x in (state.lab_dir(t.lab) / EXPERIMENTS_FILE).read_text().splitlines()]
    assert [(e["event"], e["run_dir"]) for e in lines] == [("started", str(run_dir)), ("ended", str(run_dir))]
    assert lines[-1]["status"] == "completed" and lines[-1]["verdict"] == halab["verdict"] == "passed"
