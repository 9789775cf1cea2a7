"""Metrics over the run: a 3-node lab started with monitoring, `halab load` through it while a
follower is killed and healed from the test, then the run's metrics.json holds every family's
series from Prometheus and report.html plots them with the fault window shaded, a page that opens
in headless Chromium without a problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import open_page
from helpers import recorded

from lab import faults
from lab.cli.main import main
from lab.cluster import lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import make_topology
from lab.core.paths import ROOT as REPO
from lab.core.wait import wait_for
from lab.record import metrics
from lab.record.report import PLOTS

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_monitored_load_run_plots_prometheus_series_with_the_fault_window_shaded(tmp_path, capsys):
    t = make_topology(3, lab=unique_lab_name("mon"), ports=free_ports(), monitoring=True)
    ok = False
    try:
        lifecycle.up(t)  # waits until Prometheus scrapes every target
        assert main(["status", "--name", t.lab]) == 0
        assert f"prometheus: http://127.0.0.1:{t.ports.prom}/ (prom running, dbexporter running)" in (
            capsys.readouterr().out
        )
        load = subprocess.Popen(
            [
                *(sys.executable, "-m", "lab.cli", "load", "--name", t.lab, "--duration", "30s"),
                *("--users", "4", "--spawn-rate", "4", "--run-name", "it-monitoring"),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run_dir = wait_for("the run's directory", lambda: _run_dir(tmp_path), 60)
            _wait_records(run_dir, 15, load)
            with faults.Injector(t) as nemesis, nemesis.held(faults.make_spec("kill", ["follower"])) as fault:
                _wait_records(run_dir, recorded(run_dir, "history") + 15, load)
            _, err = load.communicate(timeout=180)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        assert load.returncode in (0, 3), err  # 3: a check failed; the run itself went through
        (killed,) = fault.targets

        doc = metrics.load(run_dir)
        assert doc is not None, err
        counts = metrics.counts(doc)
        print("\n".join(line for line in err.splitlines() if line.startswith("metrics:")))
        assert set(counts) == {f.key for f in metrics.FAMILIES}
        assert all(n > 0 for n in counts.values()), counts
        families = {f["key"]: f for f in doc["families"]}
        connections = {s["name"]: s for s in families["connections"]["series"]}
        assert any(v for _, v in connections["database (Threads_connected)"]["points"])  # the exporter's
        members = {s["node"]: s for s in families["zk_outstanding"]["series"]}
        assert set(members) == set(t.node_names)  # every ZooKeeper member, through its node
        heap = {s["node"]: len(s["points"]) for s in families["heap"]["series"]}
        survivor = next(n for n in t.node_names if n != killed)
        assert heap[killed] < heap[survivor], heap  # nothing scraped from the killed node while it was down

        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["metrics"] == counts and [f["fault"] for f in summary["faults"]] == ["kill"]
        html = (run_dir / "report.html").read_text()
        for f in metrics.FAMILIES:
            assert f'alt="metric-{f.key}"' in html
        assert "Not recorded" not in html and "<script" not in html
        page = open_page(
            (run_dir / "report.html").as_uri(), run_dir / "report.png", until="document.readyState === 'complete'"
        )
        assert page.problems() == []
        assert page.images == len(PLOTS) + len(metrics.FAMILIES)
        ok = True
    finally:
        if not ok:
            lifecycle.dump_logs(t, tail=60)
        lifecycle.down(t.lab)


def _run_dir(root: Path) -> Path | None:
    found = list((root / "runs").glob("*it-monitoring")) if (root / "runs").exists() else []
    return found[0] if found else None


def _wait_records(run_dir: Path, at_least: int, load: subprocess.Popen[str]) -> None:
    """Wait on the load's own recorded progress (bounded), never a fixed time."""

    def enough() -> bool:
        assert load.poll() is None, f"halab load ended early: {load.communicate()[1][-2000:]}"
        return recorded(run_dir, "history") >= at_least

    wait_for(f"{at_least} requests recorded", enough, 60)
