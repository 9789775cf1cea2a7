"""`halab report --compare` on the matrix runs kept in docs/matrix-runs and on load runs built as
`halab report` builds them: the rows line up, real differences are flagged and noise is not, the
page is self-contained and `--json` carries the same comparison."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_report import T, record_run

from lab.cli.main import main
from lab.core.errors import BadInput
from lab.record.compare import WHOLE_RUN, compare
from lab.record.history import HISTORY_FILE, JsonlWriter, RequestRecord
from lab.record.report import build_report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "matrix-runs"
TUNED, V1 = DOCS / "2026-11-30-gray-n3-tuned", DOCS / "2026-11-30-gray-n3-rancher-1.0"
CTK = DOCS.parent / "chaostoolkit-runs"


def texts(c) -> list[str]:
    return [d.text for d in c.differences]


def test_the_two_profiles_on_the_gray_matrix() -> None:
    c = compare([TUNED, V1 / "matrix.json"])  # a directory or its matrix.json
    assert [r.profile for r in c.runs] == ["tuned", "rancher-1.0"]
    assert c.keys[0] == "n3 delay-dc-a|dc-b-200ms" and len(c.keys) == 6
    assert "n3 stall-leader-zookeeper-20s: observed survives (A), outage (B)" in texts(c)
    assert "n3 stall-leader-zookeeper-20s: recover (s) 3.4 (A), never (B)" in texts(c)
    assert "n3 io-db-stalled-10s: observed outage (A), degraded (B)" in texts(c)
    assert c.differs("n3 stall-follower-server-20s", "recover")  # 2.2 s against 4.3 s
    # Identical outcomes within noise are not flagged: 100 % both, recovered at once both.
    assert not [d for d in c.differences if d.key in ("n3 cpu-db-0.2-30s", "n3 clock-follower+10s-30s")]
    assert c.values("n3 cpu-db-0.2-30s", "p50") == (None, None)  # no n3/history.jsonl kept in docs/
    assert c.runs[1].anomalies == ("n3: no_stuck_processes failed: 1 violation(s) of 1303",)


def test_the_two_profiles_under_the_kill_leader_experiment() -> None:
    """Two real Chaos Toolkit runs of scenarios/chaostoolkit/kill-leader.json (docs/chaostoolkit-runs)."""
    c = compare([CTK / "2026-12-01-kill-leader-tuned", CTK / "2026-12-01-kill-leader-rancher-1.0"])
    assert [(r.profile, r.verdict) for r in c.runs] == [("tuned", "passed"), ("rancher-1.0", "failed")]
    assert c.keys == (WHOLE_RUN, "fault 1: kill")
    assert c.runs[1].anomalies == ("availability_objective failed: 1 violation(s) of 142",)
    assert [round(v, 1) for v in c.values("fault 1: kill", "recover")] == [1.5, 11.3]
    assert c.differs("fault 1: kill", "recover") and c.differs(WHOLE_RUN, "p99")
    assert not c.differs("fault 1: kill", "detect")  # 0.08 s against 0.22 s: both within a probe round
    assert c.measured(WHOLE_RUN, "recover") == (False, False)  # a whole run has none: blank, not "never"


def test_a_run_against_itself_differs_in_nothing() -> None:
    c = compare([DOCS / "2026-11-30-tuned-n1-3-5", DOCS / "2026-11-30-tuned-n1-3-5"])
    assert c.differences == () and len(c.keys) == 47


def test_cases_of_one_run_only_are_named() -> None:
    c = compare([TUNED, DOCS / "2026-11-30-gray-n3-tuned-io"])
    missing = [d for d in c.differences if d.metric == "present"]
    assert len(missing) == 5 and missing[0].text == "n3 delay-dc-a|dc-b-200ms: not in B 2026-11-30-gray-n3-tuned-io"


def test_a_matrix_run_with_its_history_shows_latency_per_case(tmp_path: Path) -> None:
    run = tmp_path / "matrix"
    shutil.copytree(TUNED, run)
    case = json.loads((run / "matrix.json").read_text())["cases"][3]  # cpu-db-0.2-30s
    with JsonlWriter(run / "n3" / HISTORY_FILE) as h:
        for i, ms in enumerate((10, 20, 30, 40)):
            t0 = case["t0"] + i
            h.append(RequestRecord(t0, t0 + ms / 1000, "GET", "/v1/projects/[id]", 200, True, "a1"))
        h.append(RequestRecord(case["t0"] - 5, case["t0"] - 4, "GET", "/v1/projects/[id]", 200, True, "a1"))
    c = compare([run, TUNED])
    p50, p95 = c.values(f"n3 {case['case']}", "p50")[0], c.values(f"n3 {case['case']}", "p95")[0]
    assert (round(p50), round(p95)) == (20, 40)  # the request before the case is not counted


def load_run_dir(root: Path, name: str, slow: bool) -> Path:
    """A run as `halab load` + `halab report` leave it; `slow`: clients fail 3 s longer after the kill."""
    run = root / name
    run.mkdir()
    record_run(run)
    if slow:
        with JsonlWriter(run / HISTORY_FILE) as h:
            for i in range(30):
                t0 = T + 9 + i / 10
                h.append(RequestRecord(t0, t0 + 0.4, "POST", "/v1/projects", 503, False, "a1", write=True))
    build_report(run)
    return run


def test_two_load_runs_side_by_side(tmp_path: Path) -> None:
    fast, slow = load_run_dir(tmp_path, "fast", False), load_run_dir(tmp_path, "slow", True)
    c = compare([fast, slow])
    assert c.keys == (WHOLE_RUN, "fault 1: kill")
    assert c.values(WHOLE_RUN, "requests") == (200, 230)
    assert c.values(WHOLE_RUN, "write_availability") == (None, 0.0)
    detect = c.values("fault 1: kill", "detect")
    assert detect[0] == detect[1] is not None  # the same probes: detected alike, not flagged
    assert not c.differs("fault 1: kill", "detect")
    assert c.values("fault 1: kill", "recover") == (1.0, 4.0) and c.differs("fault 1: kill", "recover")
    assert c.differs(WHOLE_RUN, "p99")  # 400 ms writes against requests of 5 to 11 ms


def test_halab_report_compare_writes_a_self_contained_page_and_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp" / "page.html"
    assert main(["--json", "report", "--compare", str(TUNED), str(V1), "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in data["runs"]] == ["A", "B"] and data["html"] == str(out)
    row = next(r for r in data["rows"] if r["key"] == "n3 stall-leader-zookeeper-20s")
    assert row["values"]["outcome"] == ["survives", "outage"] and "outcome" in row["differs"]
    page = out.read_text()
    assert "data:image/png;base64," in page and 'class="diff"' in page
    assert not any(ref in page for ref in ('src="http', 'href="http', "url(", "<script", "<link "))


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([TUNED], "at least two runs"),
        ([TUNED, "nowhere"], "neither a run directory"),
    ],
)
def test_what_cannot_be_compared_is_refused(runs: list, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        compare(runs)


def test_a_matrix_and_a_load_run_are_not_compared_and_a_run_without_summary_is_sent_to_report(tmp_path) -> None:
    run = load_run_dir(tmp_path, "load", False)
    with pytest.raises(BadInput, match="do not compare"):
        compare([TUNED, run])
    (run / "summary.json").unlink()
    with pytest.raises(BadInput, match=f"halab report {run}"):
        compare([run, run])
    assert main(["report", "--compare", str(TUNED)]) == 2
