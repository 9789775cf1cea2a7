"""Capacity sweeps without Docker: grid parsing and validation, figures from request records,
saturation detection and the sizing recommendation on synthetic measurements, the report files."""

from __future__ import annotations

import json

import pytest

from lab.capacity import analysis, measurement, report, sampler
from lab.capacity.analysis import recommend, saturation
from lab.capacity.measurement import (
    DbFigures,
    LoadFigures,
    Measurement,
    NodeOutcome,
    error_kind,
    load_figures,
    node_outcome,
)
from lab.capacity.spec import Point, Settings, build_grid
from lab.cluster.docker import ContainerState
from lab.core import paths, yamlspec
from lab.core.errors import BadInput
from lab.record.history import RequestRecord

# ------------------------------------------------------------------------------------ the grid


def test_grid_is_the_product_of_its_lists_over_base_plus_extra_points():
    doc = {
        "settings": {"duration": "15s", "target_users": 30},
        "base": {"nodes": 3, "heap": "1G"},
        "grid": {"db_max_connections": [60, "auto"], "users": [10, 30]},
        "points": [{"heap": "32m", "users": 30}, {"db_max_connections": 60, "users": 10}],
    }
    g = build_grid(doc, "capacity/x.yaml")
    assert g.settings.duration == 15 and g.target_users == 30
    assert [(p.db_max_connections, p.users, p.heap) for p in g.points] == [
        (60, 10, "1g"),
        (60, 30, "1g"),
        (None, 10, "1g"),
        (None, 30, "1g"),
        (None, 30, "32m"),
    ]  # duplicate dropped
    assert g.swept == ("heap", "db_max_connections", "users")


def test_flags_replace_the_files_dimension_and_settings():
    doc = {"grid": {"users": [5, 10, 20]}, "settings": {"duration": 30}}
    g = build_grid(doc, "f.yaml", {"users": "7", "heap": "32m,64m", "nodes": None}, {"duration": "10s"})
    assert [(p.users, p.heap) for p in g.points] == [(7, "32m"), (7, "64m")]
    assert g.settings.duration == 10 and g.swept == ("heap",)


def test_no_file_no_flags_is_one_base_point():
    g = build_grid()
    assert g.points == (Point(),) and g.swept == () and g.target_users == Point().users


@pytest.mark.parametrize(
    "doc, flags, message",
    [
        ({"grid": {"heap": ["64m", "12q"]}}, None, r"^capacity/x.yaml: grid.heap\[1\]: '12q' is not a size"),
        ({"grid": {"heap": ["512k"]}}, None, r"grid.heap\[0\]: '512k' is not a heap size of at least 1m"),
        ({"grid": {"heapp": [1]}}, None, r"^capacity/x.yaml: grid.heapp: unknown key \(allowed here: nodes, heap"),
        ({"grd": {}}, None, r"^capacity/x.yaml: grd: unknown key \(allowed here: settings, base, grid, points\)"),
        ({"grid": {"users": 10}}, None, r"^capacity/x.yaml: grid.users must be a list, got 10"),
        ({"grid": {"nodes": [3, 4]}}, None, r"grid.nodes\[1\]: 4 nodes adds no fault tolerance"),
        ({"grid": {"pool_size": [0]}}, None, r"grid.pool_size\[0\]: 0 must be at least 1"),
        ({"grid": {"db_max_connections": [True]}}, None, r"grid.db_max_connections\[0\]: True is not a whole number"),
        ({"base": {"db_memory": 32}}, None, r"base.db_memory: 32 must be at least 64"),
        ({"points": [{"users": "many"}]}, None, r"points\[0\].users: 'many' is not a whole number"),
        ({"points": {"users": 3}}, None, r"^capacity/x.yaml: points must be a list, got a mapping"),
        ({"settings": {"duration": "soon"}}, None, r"settings.duration: 'soon' is not a duration"),
        ({"settings": {"duration": 0.5}}, None, r"settings.duration: 0.5 is shorter than 1 s"),
        ({"grid": {"users": []}}, None, r"^capacity/x.yaml: grid.users must not be empty"),
        ({"settings": {"max_error_rate": 5}}, None, r"settings.max_error_rate: 5 is a fraction"),
        ({"settings": {"think_time": "1"}}, None, r"settings.think_time: '1' is not MIN,MAX seconds"),
        ({"settings": {"db": "galera:4"}}, None, r"settings.db: 'galera:4' is not single, galera:3 or galera:5"),
        (
            {"settings": {"target_users": 15}, "grid": {"users": [10, 20]}},
            None,
            r"--target-users: 15 is not a load of the grid \(users: 10, 20\)",
        ),
        ({"settings": {"duration": 60, "point_timeout": 30}}, None, r"--point-timeout: 30 s must exceed"),
        ({}, {"heap": "32m,,1g"}, r"^--heap: '32m,,1g' is not a comma-separated list"),
        ({}, {"db_max_connections": "100,lots"}, r"^--db-max-connections: 'lots' is not a whole number"),
        (
            {"grid": {"users": list(range(1, 8)), "heap": ["32m", "64m", "1g", "2g", "4g", "8g"]}},
            None,
            r"42 grid points, more than 40",
        ),
        (["heap"], None, r"^capacity/x.yaml: must be a mapping with settings, base, grid, points, got a list"),
    ],
)
def test_grid_errors_name_the_file_and_field(doc, flags, message):
    with pytest.raises(BadInput, match=message):
        build_grid(doc, "capacity/x.yaml", flags)


def test_setting_flags_are_named_as_flags():
    with pytest.raises(BadInput, match=r"^--spawn-rate: '-1' must be a positive"):
        build_grid(None, "grid", None, {"spawn_rate": "-1"})


def test_every_point_of_a_galera_sweep_runs_on_galera_and_its_preflight_counts_per_member():
    from lab.cluster import preflight
    from lab.cluster.topology import Ports

    g = build_grid(None, "grid", {"users": "10,20"}, {"db": "galera:3"})
    ts = [p.topology("cap", Ports(), g.settings) for p in g.points]
    assert [t.db.describe().split(" ")[0] for t in ts] == ["galera:3", "galera:3"]
    assert preflight.connections(ts[0]).message.startswith("160 per member >= 3 node(s) x 50 pooled connections")
    assert build_grid().settings.db == "single"


def test_shipped_grid_files_parse():
    files = sorted((paths.ROOT / "capacity").glob("*.yaml"))
    assert files
    for f in files:
        assert build_grid(yamlspec.load(f), str(f)).points


def test_point_topology_derives_node_memory_from_the_heap():
    from lab.cluster.topology import Ports

    t = Point(nodes=3, heap="4g", pool_size=20).topology("x", Ports(), Settings(heap_scale=32))
    assert t.sizing.java_opts == "-Xmx4g" and t.db_max_connections == 151  # the lab's default floor
    assert t.node_mem_limit_mib == 256 + 192  # 128 MiB budget x 1.5


# -------------------------------------------------------------------------- figures and outcomes


def req(t0: float, ms: float, status: int = 200, error: str | None = None) -> RequestRecord:
    return RequestRecord(
        t0=t0, t1=t0 + ms / 1000, method="GET", name="/v1/projects", status=status, ok=error is None, error=error
    )


def test_error_kinds():
    assert error_kind(req(0, 1)) is None
    assert error_kind(req(0, 1, 503, "503 TOO_MANY_CONNECTIONS: MySQL refused")) == "too_many_connections"
    assert error_kind(req(0, 1, 503, "503 POOL_EXHAUSTED: all 50 ...")) == "pool_wait_timeout"
    assert error_kind(req(0, 1, 0, "ConnectionResetError")) == "no_response"
    assert error_kind(req(0, 1, 503, "HTTPError 503")) == "server_5xx"
    assert error_kind(req(0, 1, 409, "409 CONFLICT")) == "client_4xx"
    assert error_kind(req(0, 1, 200, "2xx answer without a JSON body")) == "other"


def test_load_figures_counts_successes_per_second_and_nearest_rank_percentiles():
    records = [req(i * 0.1, 10 * (i + 1)) for i in range(18)]
    records += [req(1.0, 5, 503, "503 TOO_MANY_CONNECTIONS: x"), req(1.5, 5, 409, "409 CONFLICT: y")]
    f = load_figures(records)
    assert f.requests == 20 and f.ok == 18
    assert f.errors["too_many_connections"] == 1 and f.errors["client_4xx"] == 1
    assert f.capacity_errors == 1 and f.error_rate == pytest.approx(0.05)  # 4xx is not capacity
    assert f.seconds == pytest.approx(1.7 + 0.18, abs=1e-3)
    assert f.throughput == pytest.approx(18 / f.seconds, abs=0.01)
    assert (f.p50_ms, f.p95_ms, f.p99_ms) == (80, 170, 180)  # two 5 ms failures rank first
    empty = load_figures([])
    assert empty.requests == 0 and empty.error_rate == 1.0 and empty.p95_ms is None


def _state(running: bool, code: int | None, oom: bool = False) -> ContainerState:
    status = "running" if running else "exited"
    return ContainerState("c", "a1", running, False, status, code, oom, 0, None)


def test_node_outcome_tells_which_memory_failure():
    assert node_outcome("a1", _state(False, 137, oom=True), "", False, 0.5).outcome == "killed by the kernel (OOM)"
    o = node_outcome("a1", _state(False, 3), f"... {measurement.OOM_LOG_LINE}\n", True, 0.99)
    assert (o.outcome, o.exit_code, o.killed, o.was_degraded) == ("killed: OutOfMemoryError", 3, True, True)
    assert node_outcome("a1", _state(False, 1), "boom", False, None).outcome == "exited"
    deg = node_outcome("a1", _state(True, 0), "", True, 0.95)
    assert (deg.outcome, deg.exit_code, deg.killed) == ("degraded by memory", None, False)
    assert node_outcome("a1", _state(True, None), "", False, 0.3).outcome == "ok"


def test_failures_group_nodes_that_met_the_same_fate():
    nodes = (
        NodeOutcome("a1", "killed: OutOfMemoryError", 3, 0.7),
        NodeOutcome("a2", "killed: OutOfMemoryError", 3, 0.6),
        NodeOutcome("a3", "killed: OutOfMemoryError", 3, 0.9, was_degraded=True),
        NodeOutcome("b1", "degraded by memory", None, 0.95, was_degraded=True),
    )
    m = Measurement(**{**measured(50, heap="40m").__dict__, "nodes": nodes})
    assert analysis.failures(m) == [
        "nodes a1, a2 killed: OutOfMemoryError (-Xmx40m, exit 3)",
        "node a3 killed: OutOfMemoryError (-Xmx40m, exit 3, degraded by memory first)",
        "node b1 degraded by memory (-Xmx40m, heap pressure up to 95%)",
    ]


def test_docker_stats_memory_and_prometheus_parsing():
    assert sampler.parse_mem_usage("12.5MiB / 258MiB") == 12.5
    assert sampler.parse_mem_usage("1.5GiB / 2GiB") == 1536
    assert sampler.parse_mem_usage("512KiB / 1GiB") == 0.5
    assert sampler.parse_mem_usage("--") is None
    text = (
        '# HELP x y\n# TYPE cattle_heap_pressure gauge\ncattle_heap_pressure{node="a1"} 0.93\n'
        'cattle_http_requests_total{node="a1",code="503"} 12\ncattle_http_requests_total{code="200"} 30\n'
        "bad line\nnan_metric NaNx\n"
    )
    assert sampler.parse_metrics(text) == {"cattle_heap_pressure": 0.93, "cattle_http_requests_total": 42}


@pytest.mark.parametrize("peak, degraded_now, seen", [(0.93, 0, True), (0.5, 1, True), (0.5, 0, False)])
def test_a_memory_spike_between_polls_counts_through_the_nodes_own_peak(
    tmp_path, monkeypatch, peak, degraded_now, seen
):
    from lab.cluster import probes
    from lab.cluster.topology import make_topology

    text = (
        f'cattle_heap_pressure{{node="a1"}} 0.2\ncattle_heap_peak_ratio{{node="a1"}} {peak}\n'
        f'cattle_heap_memory_degraded{{node="a1"}} {degraded_now}\n'
    )
    monkeypatch.setattr(
        probes, "http_get", lambda *a, **k: probes.HttpResult(200, text.encode(), {"x-rancher-node": "a1"})
    )
    s = sampler.Sampler(make_topology(1, lab="cap"), tmp_path / "samples.jsonl")
    s.node_memory("a1")
    assert s.pressure == {"a1": peak} and ("a1" in s.degraded) is seen


# ------------------------------------------------------------------- saturation, recommendation


def measured(
    throughput: float,
    error_rate: float = 0.0,
    *,
    p95: float = 20.0,
    killed: str | None = None,
    too_many: int | None = None,
    status: str = "measured",
    **point: object,
) -> Measurement:
    p = Point(**point)  # type: ignore[arg-type]
    n = 1000
    bad = round(error_rate * n)
    errors = {k: 0 for k in measurement.ERROR_KINDS}
    errors["too_many_connections" if too_many is None or too_many else "server_5xx"] = bad
    load = LoadFigures(n, n - bad, 10.0, throughput, 5.0, p95, p95 * 2, errors)
    nodes = tuple(
        NodeOutcome(
            f"a{i}", killed if killed and i == 1 else "ok", 3 if killed and i == 1 else None, 0.99 if killed else 0.4
        )
        for i in range(1, p.nodes + 1)
    )
    max_conn = p.db_max_connections or p.nodes * p.pool_size + 10
    return Measurement(
        p,
        max_conn,
        300,
        (),
        status,
        load=load if status != "did not start" else None,
        db=DbFigures(max_conn, 40, 45, 12 if bad else 0, 0, 8),
        nodes=nodes,
        memory_peak_mib={"a1": 120.0, "db": 200.0},
    )


def test_load_saturation_is_where_more_users_stop_buying_throughput():
    knee = [measured(50, users=5), measured(98, users=10), measured(104, users=20), measured(101, users=40)]
    s = saturation(knee, "users", 0.01)
    assert (s.x, s.throughput) == (10, 98)
    assert (
        s.note == "throughput saturates at 10 users (98 req/s, p95 20 ms); 20 users added 100% load for +6% throughput"
    )
    # A noisy rise after the knee does not hide it.
    noisy = [measured(130, users=20), measured(146, users=40), measured(185, users=80)]
    assert saturation(noisy, "users", 0.01).x == 20
    rising = [measured(50, users=5), measured(100, users=10), measured(160, users=20)]
    s = saturation(rising, "users", 0.01)
    assert s.x is None and s.note == "not reached: throughput still grew with load up to 20 users"
    failing = [measured(50, users=5), measured(95, users=10), measured(150, 0.2, users=20)]
    s = saturation(failing, "users", 0.01)
    assert s.x == 10 and "at 20 users errors passed 1%" in s.note
    already = [measured(10, 0.5, users=5), measured(12, 0.6, users=10)]
    s = saturation(already, "users", 0.01)
    assert s.x is None and s.note.startswith("past saturation already at 5 users")


def test_resource_levels_off_at_the_smallest_sufficient_value():
    series = [
        measured(60, 0.3, db_max_connections=60),
        measured(97, db_max_connections=100),
        measured(100, db_max_connections=160),
    ]
    s = saturation(series, "db_max_connections", 0.01)
    assert s.x == 100 and "levels off from max_connections 100" in s.note
    killed = [measured(90, heap="32m", killed="killed: OutOfMemoryError"), measured(100, heap="1g")]
    assert saturation(killed, "heap", 0.01).x == 1024
    nothing = [measured(10, 0.5, heap="32m"), measured(12, 0.6, heap="64m")]
    s = saturation(nothing, "heap", 0.01)
    assert s.x is None and "no point kept errors under 1%" in s.note


def test_saturations_group_series_by_the_other_swept_dimensions():
    ms = [
        measured(t, users=u, heap=h)
        for h, ts in (("32m", (40, 41)), ("1g", (50, 99)))
        for u, t in zip((5, 10), ts, strict=True)
    ]
    sats = analysis.saturations(ms, ("heap", "users"), 0.01)
    by = {(s.dimension, s.series): s for s in sats}
    assert by[("users", "-Xmx32m")].x == 5
    assert by[("users", "-Xmx1g")].x is None
    assert by[("heap", "10 users")].x == 1024


def test_recommendation_is_the_smallest_passing_max_connections_and_heap_at_the_target_load():
    ms = [
        measured(40, 0.25, db_max_connections=60, users=30),
        measured(100, 0.0, db_max_connections=100, users=30),
        measured(101, 0.0, db_max_connections=160, users=30),
        measured(100, 0.0, db_max_connections=60, users=10),  # passes, but not at the target load
        measured(70, 0.0, heap="32m", killed="killed: OutOfMemoryError", db_max_connections=160, users=30),
        measured(99, 0.0, heap="64m", db_max_connections=160, users=30),
    ]
    [r] = recommend(ms, 30, 0.01)
    assert (r.nodes, r.max_connections, r.heap) == (3, 100, "64m")
    assert (r.max_connections_failed, r.heap_failed, r.peak_connections) == (60, "32m", 45)
    text = "\n".join(r.lines())
    assert "max_connections >= 100 (60 failed); the database's high-water mark there was 45" in text
    assert "The guide's rule, 50 per node = 150, covers this load" in text
    assert "heap >= -Xmx64m (-Xmx32m failed), modelled: 2 MiB real at scale 1/32" in text
    assert "with less: max_connections 60: 250 of 1000 requests failed with Too many connections" in text
    assert "with less: -Xmx32m: node a1 killed: OutOfMemoryError (-Xmx32m, exit 3)" in text
    assert "1 MiB real at scale 1/64" in recommend(ms, 30, 0.01, heap_scale=64)[0].lines()[2]


def test_only_points_differing_in_that_one_dimension_are_evidence_that_less_fails():
    ms = [
        measured(100, db_max_connections=100, users=30),
        measured(40, 0.5, db_max_connections=60, heap="32m", users=30),
    ]  # failed, but with a smaller heap too
    [r] = recommend(ms, 30, 0.01)
    assert r.max_connections == 100 and r.max_connections_failed is None and r.below == ()
    assert "max_connections >= 100 (the smallest tried at these settings: less may do)" in r.lines()[1]


def test_evidence_that_less_fails_is_gathered_over_every_passing_point_at_the_minimum():
    # At threshold 0 two points pass at max_connections 150; only the -Xmx1g one has smaller neighbours.
    ms = [
        measured(100, 0.004, db_max_connections=100, users=80),
        measured(100, db_max_connections=150, users=80),
        measured(100, db_max_connections=150, heap="128m", users=80),
    ]
    [r] = recommend(ms, 80, 0.0)
    assert (r.max_connections, r.max_connections_failed, r.heap) == (150, 100, "128m")
    assert r.lines()[0] == "3 node(s) at 80 users, errors at most 0%, no node killed:"


@pytest.mark.parametrize(
    "points, verdict",
    [
        ([(40, 0.0)], "= 150, covers this load"),
        ([(200, 0.0)], "= 150, was not tried (nothing smaller was)"),
        ([(150, 0.1), (200, 0.0)], "= 150, is too few for this load (150 failed)"),
        ([(60, 0.1), (200, 0.0)], "= 150, was not tried, so this sweep cannot judge it (it saw 60 fail and 200 pass)"),
    ],
)
def test_the_guides_connection_rule_is_judged_only_on_what_was_tried(points, verdict):
    [r] = recommend([measured(100, err, db_max_connections=c, users=10) for c, err in points], 10, 0.01)
    assert verdict in r.lines()[1]


def test_when_nothing_passed_every_point_says_why():
    [r] = recommend(
        [
            measured(0, status="did not start", db_max_connections=3, users=10),
            measured(5, 0.4, db_max_connections=20, users=10),
        ],
        10,
        0.01,
    )
    assert r.max_connections is None
    text = "\n".join(r.lines())
    assert "no measured point passed" in text and "maxconn3-dbmem1024-bp256-u10: did not start" in text
    assert "400 of 1000 requests failed with Too many connections" in text


def test_the_databases_own_max_connections_is_the_one_analysed():
    m = measured(50, db_max_connections=4, users=5)
    m = Measurement(**{**m.__dict__, "db": DbFigures(10, 9, 9, 0, 0, 3)})  # MariaDB's floor is 10
    assert m.max_connections == 4 and m.effective_max_connections == 10
    assert (
        analysis.x_value(m, "db_max_connections") == 10
        and analysis.x_text(m, "db_max_connections") == "max_connections 10"
    )
    assert "| 9 / 9 / 10 (asked 4) |" in report.table([m], ("db_max_connections",))
    [r] = recommend([m], 5, 0.01)
    assert r.max_connections == 10


def test_heap_model_note_states_the_scale():
    note = report.heap_model_note(32)
    assert "-Xmx1g = 32 MiB" in note and "64 KiB real, i.e. 2 MiB of modelled heap" in note
    assert "lab's -Xmx x R / 2" in note and "4 to 8 GB" in note


# ------------------------------------------------------------------------------------- output


def test_report_files_and_json_round_trip(tmp_path):
    ms = [
        measured(40, 0.25, db_max_connections=60, users=20),
        measured(100, db_max_connections=160, users=20),
        measured(60, 0.0, heap="32m", killed="killed: OutOfMemoryError", db_max_connections=160, users=20),
    ]
    meta = {"created": "2024-01-01T00:00:00+00:00", "machine": {"host": "box", "cpus": 2}}
    files = report.write_report(tmp_path, Settings(duration=15), ms, meta)
    assert [p.name for p in files.plots] == ["heap.png", "db_max_connections.png"]
    assert all(p.stat().st_size > 1000 for p in files.plots)
    data = json.loads(files.json.read_text())
    assert data["swept"] == ["heap", "db_max_connections"] and data["target_users"] == 20
    assert data["recommendations"][0]["max_connections"] == 160
    assert data["points"][2]["failures"][0] == "node a1 killed: OutOfMemoryError (-Xmx32m, exit 3)"
    md = files.markdown.read_text()
    assert "| 1 | 1g | 60 | measured | 40 |" in md and "## The heap is a model" in md
    assert "![heap](plots/heap.png)" in md and "box, 2 CPUs" in md
    settings, back, meta2 = report.load_report(tmp_path)
    assert back == ms and settings.duration == 15 and meta2 == meta


def test_report_refuses_a_target_load_the_sweep_did_not_measure(tmp_path):
    with pytest.raises(BadInput, match="--target-users: 7 is not a load of the grid"):
        report.write_report(tmp_path, Settings(target_users=7), [measured(10, users=5)], {})
    with pytest.raises(BadInput, match=r"capacity\.json does not exist"):
        report.load_report(tmp_path / "nowhere")


def test_cli_dry_run_lists_points_with_preflight_and_bad_files_name_the_field(tmp_path, capsys):
    from lab.cli.main import main

    f = tmp_path / "g.yaml"
    f.write_text("grid:\n  heap: [32m, 12q]\n")
    assert main(["capacity", str(f), "--dry-run"]) == 2
    assert f"{f}: grid.heap[1]: '12q' is not a size" in capsys.readouterr().err
    f.write_text("base: {nodes: 3, db_max_connections: 100}\n")
    assert main(["capacity", str(f), "--dry-run", "--users", "5,10"]) == 0
    out = capsys.readouterr().out
    assert "2 point(s), each a fresh lab with 20 s of load" in out and "swept: users" in out
    assert "pre-flight short: max_connections: the database allows 100 connections, 60 short" in out
