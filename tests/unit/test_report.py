"""The report builds from a small recorded run directory and is self-contained."""

import json
import re
import xml.etree.ElementTree as ET

from lab.chaos.judge import SNAPSHOT_FILE
from lab.record.checker import CheckConfig
from lab.record.history import (
    HISTORY_FILE,
    LEDGER_FILE,
    FaultRecord,
    JsonlWriter,
    LedgerEntry,
    ProbeRecord,
    RequestRecord,
)
from lab.record.report import BOTTLENECK_FILE, PLOTS, build_report

T = 1_700_000_000.0


def record_run(run_dir, lost: bool = False) -> None:
    with JsonlWriter(run_dir / HISTORY_FILE) as h:
        for i in range(200):  # 20 s of requests; those started in [8, 9) failed
            t0 = T + i / 10
            failed = 8 <= i / 10 < 9
            h.append(
                RequestRecord(
                    t0=t0,
                    t1=t0 + 0.005 + (i % 7) / 1000,
                    method="GET",
                    name="/v1/projects",
                    status=0 if failed else 200,
                    ok=not failed,
                    node=None if failed else "a1",
                )
            )
        for k in range(40):
            for node in ("a1", "a2", "b1"):
                down = node == "a2" and 8 <= k / 2 < 12
                h.append(
                    ProbeRecord(
                        t0=T + k / 2,
                        t1=T + k / 2 + 0.01,
                        node=node,
                        ping=None if down else 200,
                        state=None if down else "active",
                        zk_mode="leader" if node == "a1" else "follower",
                    )
                )
        h.append(FaultRecord(t0=T + 8, t1=T + 12, fault="kill", targets=("a2",), id="f1"))
    with JsonlWriter(run_dir / LEDGER_FILE) as lg:
        lg.append(LedgerEntry(t0=T + 1, t1=T + 1.05, op="create", type="project", id="1a9", uuid="u-1", node="a1"))
    rows = [] if lost else [{"id": "9", "uuid": "u-1", "name": "p", "state": "active", "removed": "NULL"}]
    (run_dir / SNAPSHOT_FILE).write_text(json.dumps({"fetched_at": T + 30, "tables": {"account": rows}}))
    (run_dir / "journal.json").write_text(json.dumps({"scenario": "kill-follower", "faults": ["f1"]}))
    (run_dir / "locust_stats.csv").write_text("Type,Name,Request Count\nGET,/v1/projects,200\n")


def test_report_builds_and_is_self_contained(tmp_path):
    record_run(tmp_path)
    files = build_report(tmp_path)

    page = files.html.read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:)(?!data:)""", page.replace('src="data:', ""))
    assert "url(" not in page and "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
    assert "time to recover" in page and "<td>f1</td>" in page and "kill-follower" in page

    for name in PLOTS:
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    suite = ET.parse(files.junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "acknowledged_writes_present" in cases and "f1 kill a2: recovered" in cases
    assert suite.get("failures") == "0"
    assert cases["no_stuck_processes"].find("skipped") is not None  # no process rows recorded

    summary = json.loads(files.summary.read_text())
    # The skipped process check proves nothing: the run does not pass.
    assert summary["passed"] is False and summary["requests"] == 200 and summary["failed"] == 10
    (fault,) = summary["faults"]
    assert fault["id"] == "f1" and fault["time_to_recover"] is not None and fault["time_to_detect"] is not None
    assert len(summary["seconds"]) == 20


def test_rebuilding_gives_the_same_verdicts_and_failures_reach_junit(tmp_path):
    record_run(tmp_path, lost=True)
    first = build_report(tmp_path, config=CheckConfig(stable_seconds=2))
    again = build_report(tmp_path)  # the config recorded by the first build is reused
    assert first.result == again.result
    assert not again.result.passed
    suite = ET.parse(again.junit).getroot().find("testsuite")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["acknowledged_writes_present"]
    assert "u-1" in again.html.read_text()


def test_report_takes_the_database_snapshot_through_the_injected_query(tmp_path):
    record_run(tmp_path)
    (tmp_path / SNAPSHOT_FILE).unlink()
    asked = []

    def query(sql):
        asked.append(sql)
        return (
            [{"id": "9", "uuid": "u-1", "name": "p", "state": "active", "removed": "NULL"}] if "account" in sql else []
        )

    files = build_report(tmp_path, query=query)
    assert asked and files.result.passed
    assert json.loads((tmp_path / SNAPSHOT_FILE).read_text())["tables"]["account"][0]["uuid"] == "u-1"


def test_an_empty_run_still_gets_a_report(tmp_path):
    files = build_report(tmp_path)
    assert files.result.requests == 0 and files.html.exists() and len(files.plots) == len(PLOTS)


def test_the_timeline_shows_faults_nodes_requests_and_ops_and_links_anomalies_to_their_ops(tmp_path):
    from lab.record.ops import Op
    from lab.record.registers import OPS_FILE

    record_run(tmp_path)
    ops = [  # a stale read: v1 was written before the read began, and the read saw nothing
        Op("p1", "k", "write", "v1", "ok", T + 1, T + 1.1, "a1"),
        Op("p2", "k", "read", None, "ok", T + 2, T + 2.1, "b1"),
        Op("p1", "k", "write", "v2", "info", T + 9, float("inf"), "a2"),
    ]
    (tmp_path / OPS_FILE).write_text("".join(op.to_json() + "\n" for op in ops))
    page = build_report(tmp_path).html.read_text()
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert ">kill a2</text>" in svg and 'fill-opacity="0.12"' in svg  # the fault's band
    assert all(f">{n}</text>" in svg for n in ("a1", "a2", "b1", "no node", "p1", "p2"))
    assert "a2: unreachable from 8.0 s" in svg and "no node, 8-9 s: 10 of 10 failed" in svg
    # The two ops behind the violation are outlined and linked from the anomaly's summary.
    marked = re.findall(r'id="op-(\d+)" stroke="#d50000"', svg)
    assert sorted(marked) == ["0", "1"]
    assert '<a href="#op-0">#0</a>' in page and '<a href="#op-1">#1</a>' in page
    assert 'id="op-2"' in svg and "#fbc02d" in svg  # the info write, drawn to the end in yellow


def test_the_report_says_what_saturated_first_and_that_a_hot_locust_bounds_the_figures(tmp_path):
    record_run(tmp_path)
    (tmp_path / BOTTLENECK_FILE).write_text(json.dumps({"text": "node CPU a1 (0.98 of 1 CPU; harness-bound)"}))
    generator = {"peak": 0.97, "mean": 0.9, "processes": 1, "warned": False}
    (tmp_path / "load.json").write_text(json.dumps({"spec": {"processes": 1}, "result": {"generator_cpu": generator}}))
    files = build_report(tmp_path)
    assert files.limits == (
        "Bottleneck (what saturated first): node CPU a1 (0.98 of 1 CPU; harness-bound)",
        "Locust's CPU: peak 97%, mean 90% of one CPU over 1 process(es); the load generator ran hot (Locust at "
        "97% of a CPU): throughput and latency are bounded by Locust, not the lab; rerun with --processes 2",
    )
    assert json.loads(files.summary.read_text())["limits"] == list(files.limits)
    assert "Bottleneck (what saturated first): node CPU a1" in files.html.read_text()
