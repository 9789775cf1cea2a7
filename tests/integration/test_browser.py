"""The pages users open, in a real browser (headless Chromium): the run report, the comparison of
two runs and the live page of a lab holding a split. Each fails on any console error, uncaught
exception, failed load or image that did not load, and leaves a screenshot beside the page."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from browser import open_page

from lab import faults
from lab.cli.main import main
from lab.cluster import state
from lab.faults import make_spec
from lab.record.report import PLOTS, build_report
from lab.ui import guard, server

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"
CTK_RUN = DOCS / "chaostoolkit-runs" / "2026-12-01-kill-leader-tuned"
GRAY = DOCS / "matrix-runs"


@pytest.fixture
def run_dir(request: pytest.FixtureRequest) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = request.config.rootpath / "runs" / f"{stamp}-browser-{request.node.name[:40]}"
    out.mkdir(parents=True)
    return out


def test_the_report_of_a_real_run_renders_with_every_plot(run_dir: Path) -> None:
    for f in CTK_RUN.iterdir():  # a recorded Chaos Toolkit run of kill-leader.json
        shutil.copy(f, run_dir / f.name)
    html = build_report(run_dir).html
    page = open_page(html.as_uri(), run_dir / "report.png", until="document.readyState === 'complete'")
    assert page.problems() == [], page.problems()
    assert page.images == len(PLOTS) and page.screenshot is not None and page.screenshot.stat().st_size > 10_000


def test_the_comparison_of_two_matrix_runs_renders(run_dir: Path) -> None:
    out = run_dir / "compare.html"
    tuned, v1 = GRAY / "2026-11-30-gray-n3-tuned", GRAY / "2026-11-30-gray-n3-rancher-1.0"
    assert main(["report", "--compare", str(tuned), str(v1), "--out", str(out)]) == 0
    page = open_page(out.as_uri(), run_dir / "compare.png", until="document.querySelectorAll('.diff').length")
    assert page.problems() == [], page.problems()
    assert page.value and page.images >= 1


def test_the_live_page_draws_a_held_split_and_heals_it(lab3, halab_faults, run_dir: Path) -> None:
    fault = halab_faults(lab3).apply(make_spec("split", sides=[["dc-a"], ["dc-b"]]))
    secret = guard.token(state.lab_dir(lab3.lab))
    httpd = server.serve(server.LabUi(lab3), secret)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        # The cut is drawn once the page has fetched the state: a red line between the two sides.
        drawn = (
            "document.body.dataset.ready === '1' && "
            "[...document.querySelectorAll('#picture text')].some(t => t.textContent.includes('split dc-a | dc-b')) && "
            "document.querySelectorAll('#picture line.cut').length"
        )
        page = open_page(server.address(httpd, secret), run_dir / "ui-split.png", until=drawn)
        assert page.problems() == [], page.problems()
        assert page.value == 3  # a1-b1, a2-b1 and b1-db: the load balancer is outside, not cut
        # Healed through the page's own API, as its button does.
        port = httpd.server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request(
            "POST",
            "/api/heal",
            body=json.dumps({"id": fault.id}),
            headers={"X-Halab-Token": secret, "Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json"},
        )
        res = conn.getresponse()
        assert res.status == 200, res.read()
        assert not faults.active(lab3.lab)
    finally:
        httpd.shutdown()
        httpd.server_close()
