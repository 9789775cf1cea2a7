"""A run's metric series without Docker: Prometheus's answers read and shaped into metrics.json,
`record` against a faked API, and the report's metric plots (or its note when there are none)."""

from __future__ import annotations

import json
import logging
import re

import pytest
from test_report import T, record_run

from lab.cluster import prometheus
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.record import metrics
from lab.record.report import PLOTS, build_report

# ---------------------------------------------------------------------------- Prometheus's answers


def test_an_answer_gives_its_data_or_one_line_saying_why_not():
    ok = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
    assert prometheus.answer_data(200, ok, "query up") == {"resultType": "vector", "result": []}
    refused = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}).encode()
    with pytest.raises(RuntimeFailure, match=r"query x\(: Prometheus answered HTTP 400: parse error at char 3"):
        prometheus.answer_data(400, refused, "query x(")
    with pytest.raises(RuntimeFailure, match="HTTP 502: <html>bad gateway"):
        prometheus.answer_data(502, b"<html>bad gateway</html>", "query up")
    with pytest.raises(RuntimeFailure, match="does not answer"):
        prometheus.answer_data(None, b"", "query up")


def test_targets_down_names_each_target_not_scraped_and_counts_the_missing_ones():
    def up(job, value, **labels):
        return {"metric": {"__name__": "up", "job": job, **labels}, "value": [T, value]}

    every = [up("node", "1", node=n, instance=f"10.0.0.{i}:8080") for i, n in enumerate(("a1", "a2", "b1"))]
    every += [up("haproxy", "1", instance="lb:18080"), up("mysqld", "1", instance="10.0.0.5:9104")]
    assert prometheus.targets_down(every, 5) is None
    every[1] = up("node", "0", node="a2", instance="10.0.0.1:8080")
    assert prometheus.targets_down(every, 5) == "Prometheus does not scrape node a2 yet"
    assert prometheus.targets_down(every[2:3], 5) == "Prometheus scrapes 1 of 5 targets"


def test_a_lab_without_monitoring_has_no_prometheus_to_ask():
    with pytest.raises(BadInput, match="has no Prometheus: start it with `halab up --monitoring`"):
        prometheus.query(make_topology(1, lab="plain"), "up")


# ------------------------------------------------------------------------------------- shaping


def test_values_gaps_and_legends():
    assert metrics.value("12") == 12.0 and metrics.value("0.25") == 0.25
    assert metrics.value("NaN") is None and metrics.value("+Inf") is None and metrics.value("x") is None
    matrix = [
        {"metric": {"node": "b1"}, "values": [[T, "1"], [T + 1, "NaN"]]},
        {"metric": {"node": "a1"}, "values": [[T, "3"]]},
        {"metric": {}, "values": [[T, "5"]]},
    ]
    shaped = metrics.shape(metrics.Query("x", "{node} pool"), matrix)
    assert shaped == [
        {"name": "? pool", "node": None, "points": [[T, 5.0]]},
        {"name": "a1 pool", "node": "a1", "points": [[T, 3.0]]},
        {"name": "b1 pool", "node": "b1", "points": [[T, 1.0], [T + 1, None]]},
    ]


def test_one_point_a_second_unless_the_run_is_too_long_for_one_range_query():
    assert metrics.step_for(30) == 1.0 and metrics.step_for(10_000) == 1.0
    assert metrics.step_for(3 * 3600) == 2.0 and metrics.step_for(30 * 3600) == 11.0


def fake_prometheus(per_node: float = 2.0):
    """expr -> a matrix like Prometheus's: one series per node for the nodes' metrics, one for the
    database's and the load balancer's; 20 s of points, the last 5 without a value."""

    def fetch(expr: str):
        nodes = ("a1", "a2", "b1") if "cattle_" in expr else ("",)
        return [
            {
                "metric": {"node": n} if n else {"instance": "x"},
                "values": [[T + i, str(per_node) if i < 15 else "NaN"] for i in range(20)],
            }
            for n in nodes
        ]

    return fetch


def test_every_family_is_asked_and_written_with_its_title_unit_and_queries():
    asked: list[str] = []
    fetch = fake_prometheus()

    def spy(expr: str):
        asked.append(expr)
        return fetch(expr)

    doc = metrics.collect(spy, T, T + 20, 1.0)
    assert asked == [q.expr for f in metrics.FAMILIES for q in f.queries]
    assert [f["key"] for f in doc["families"]] == [
        "connections",
        "heap",
        "pool_waits",
        "zk_outstanding",
        "zk_latency",
        "lb_queue",
        "lb_retries",
    ]
    assert (doc["format"], doc["start"], doc["end"], doc["step"]) == (metrics.FORMAT, T, T + 20, 1.0)
    connections = doc["families"][0]
    assert [s["query"] for s in connections["series"]] == [0, 1, 1, 1]
    assert [s["name"] for s in connections["series"]] == [
        "database (Threads_connected)",
        "a1 pool in use",
        "a2 pool in use",
        "b1 pool in use",
    ]
    assert metrics.counts(doc) == {
        "connections": 15 * 4,
        "heap": 15 * 3,
        "pool_waits": 15 * 6,
        "zk_outstanding": 15 * 3,
        "zk_latency": 15 * 3,
        "lb_queue": 15,
        "lb_retries": 15 * 2,
    }
    # what the brief names: the counters as rates, the load balancer's API backend only
    exprs = " ".join(asked)
    assert "rate(cattle_db_pool_wait_seconds_total[5s])" in exprs
    assert 'rate(haproxy_backend_retry_warnings_total{proxy="nodes"}[5s])' in exprs
    assert 'rate(haproxy_backend_redispatch_warnings_total{proxy="nodes"}[5s])' in exprs
    assert 'haproxy_backend_current_queue{proxy="nodes"}' in exprs
    assert "cattle_zookeeper_member_outstanding_requests" in exprs and "cattle_zookeeper_member_avg_latency" in exprs


# -------------------------------------------------------------------------------------- record


def test_record_writes_metrics_json_over_the_run_window(tmp_path, monkeypatch):
    t = make_topology(3, lab="mon", monitoring=True)
    ranges: list[tuple[str, float, float, float]] = []
    fetch = fake_prometheus()

    def query_range(topo, expr, start, end, step):
        ranges.append((expr, start, end, step))
        return fetch(expr)

    monkeypatch.setattr(prometheus, "query_range", query_range)
    monkeypatch.setattr(prometheus, "query", lambda topo, expr: [{"metric": {}, "value": [T + 30, str(T + 21)]}])
    path = metrics.record(t, tmp_path, T, T + 20)
    assert path == tmp_path / metrics.METRICS_FILE
    assert {(s, e, st) for _, s, e, st in ranges} == {(T, T + 20, 1.0)}
    doc = metrics.load(tmp_path)
    assert doc is not None and metrics.counts(doc)["heap"] == 45
    assert "\n" not in path.read_text()  # series stay compact


def test_record_does_nothing_without_monitoring_and_logs_why_when_prometheus_fails(tmp_path, monkeypatch, caplog):
    assert metrics.record(make_topology(1, lab="plain"), tmp_path, T, T + 20) is None

    def broken(*args):
        raise RuntimeFailure("query 'up': Prometheus on 127.0.0.1:9 does not answer (ConnectionRefusedError)")

    monkeypatch.setattr(prometheus, "query", broken)
    monkeypatch.setattr(metrics, "SCRAPED_TIMEOUT", 0.0)
    with caplog.at_level(logging.WARNING, logger="halab.record.metrics"):
        assert metrics.record(make_topology(1, lab="mon", monitoring=True), tmp_path, T, T + 20) is None
    assert "metrics: not recorded" in caplog.text and "does not answer" in caplog.text
    assert not (tmp_path / metrics.METRICS_FILE).exists()


def test_a_metrics_file_of_another_format_or_broken_is_not_plotted(tmp_path):
    assert metrics.load(tmp_path) is None
    (tmp_path / metrics.METRICS_FILE).write_text('{"format": 99, "families": []}')
    assert metrics.load(tmp_path) is None
    (tmp_path / metrics.METRICS_FILE).write_text("{")
    assert metrics.load(tmp_path) is None


# -------------------------------------------------------------------------------------- report


def test_the_report_plots_the_recorded_series_on_the_runs_time_axis(tmp_path):
    record_run(tmp_path)
    doc = metrics.collect(fake_prometheus(), T, T + 20, 1.0)
    (tmp_path / metrics.METRICS_FILE).write_text(json.dumps(doc))
    files = build_report(tmp_path)

    page = files.html.read_text()
    assert page.count('src="data:image/png;base64,') == len(PLOTS) + len(metrics.FAMILIES)
    for f in metrics.FAMILIES:
        png = tmp_path / "plots" / f"metric-{f.key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'alt="metric-{f.key}"' in page
    assert "Not recorded" not in page and "From the lab's Prometheus" in page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:)(?!data:)""", page.replace('src="data:', ""))
    assert len(files.plots) == len(PLOTS) + len(metrics.FAMILIES)
    summary = json.loads(files.summary.read_text())
    assert summary["metrics"]["lb_queue"] == 15 and "metrics.json" in summary["files"]


def test_without_metrics_the_report_says_what_the_plots_would_show(tmp_path):
    record_run(tmp_path)
    files = build_report(tmp_path)
    page = files.html.read_text()
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
    assert "Not recorded: this run's lab had no monitoring" in page
    assert "<code>halab up --monitoring</code>" in page
    for f in metrics.FAMILIES:
        assert f.title.lower() in page
    assert json.loads(files.summary.read_text())["metrics"] is None
