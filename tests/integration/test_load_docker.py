"""Load through a 3-node lab while a follower is killed and healed: the checker confirms that no
acknowledged write was lost and the report is produced. Asserts on the recorded figures only."""

from __future__ import annotations

import json

import pytest

from helpers import recorded, wait_recorded
from lab import faults
from lab.cluster import probes, state
from lab.record.load import LoadRun, LoadSpec, make_run_dir
from lab.record.report import build_report
from lab.chaos.watch import Watch

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_killing_a_follower_under_load_loses_no_write(halab_lab_factory, tmp_path):
    t = halab_lab_factory(3)
    run_dir = make_run_dir("it-kill-follower", root=tmp_path)
    spec = LoadSpec(name="it-kill-follower", users=12, spawn_rate=12, duration=300, http_port=t.ports.http,
                    https_port=t.ports.https, ca_file=str(state.ca_path(t.lab)))
    with Watch(t, run_dir, client=False), faults.Injector(t, history=run_dir / "history.jsonl") as nemesis:
        with LoadRun(spec, run_dir) as load:
            wait_recorded(run_dir, "history", 150, load)
            with nemesis.held(faults.make_spec("kill", ["follower"])):
                wait_recorded(run_dir, "history", recorded(run_dir, "history") + 300, load)
            wait_recorded(run_dir, "history", recorded(run_dir, "history") + 150, load)
            load.stop()
    files = build_report(run_dir, query=lambda sql: probes.db_query(t, sql))
    r = files.result
    assert r.passed, [(o.name, o.violations[:3]) for o in r.outcomes if o.status != "pass"]
    assert r.acks > 50 and r.requests >= 600
    (fault,) = r.faults
    assert fault.fault == "kill" and fault.time_to_detect is not None
    summary = json.loads(files.summary.read_text())
    assert summary["passed"] is True and summary["outcomes"] and files.html.exists() and files.junit.exists()
    assert list((run_dir / "plots").glob("*.png"))
    html = files.html.read_text()
    assert not any(ref in html for ref in ('src="http', "src='http", 'href="http', "url(http", "<link ")), \
        "report.html must be self-contained"
