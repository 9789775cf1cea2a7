"""Bottleneck attribution without Docker: CPU counters from fake cgroup and /proc trees, the
sampler's shares from database and node counters, what saturated first, and how a point bounded
by the harness is shown and kept out of the sizing recommendation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.capacity import bottleneck as b
from lab.capacity import report
from lab.capacity.analysis import recommend
from lab.capacity.sampler import Sampler
from lab.cluster import cpu
from lab.cluster.topology import make_topology
from lab.record.load import GeneratorCpu, GeneratorMeter
from tests.unit.test_capacity import measured

# ----------------------------------------------------------------------------- CPU counters


def test_a_v1_cgroup_gives_usage_quota_and_throttling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = "c0ffee"
    acct, cg = tmp_path / "cpuacct/docker" / cid, tmp_path / "cpu/docker" / cid
    acct.mkdir(parents=True)
    cg.mkdir(parents=True)
    (acct / "cpuacct.usage").write_text("2500000000\n")
    (cg / "cpu.cfs_quota_us").write_text("20000\n")
    (cg / "cpu.cfs_period_us").write_text("100000\n")
    (cg / "cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 1500000000\n")
    monkeypatch.setattr(cpu, "CGROUP_ROOT", tmp_path)
    r = cpu.container_cpu(cid)
    assert r is not None and (r.used_s, r.limit, r.throttled_s) == (2.5, 0.2, 1.5)
    assert cpu.container_cpu("gone") is None


def test_a_v2_cgroup_without_a_quota_may_use_every_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "system.slice/docker-abc.scope"
    d.mkdir(parents=True)
    (d / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 2000000\nthrottled_usec 0\n")
    (d / "cpu.max").write_text("max 100000\n")
    monkeypatch.setattr(cpu, "CGROUP_ROOT", tmp_path)
    r = cpu.container_cpu("abc")
    assert r is not None and (r.used_s, r.limit) == (3.0, float(cpu.machine_cpus()))


def test_share_is_cpu_seconds_over_the_interval_and_the_limit() -> None:
    prev, cur = cpu.CpuReading(10.0, 1.0, 0.5, 0.0), cpu.CpuReading(12.0, 1.9, 0.5, 1.0)
    assert cpu.share(prev, cur) == pytest.approx(0.9)
    assert cpu.throttled(prev, cur) == pytest.approx(0.5)
    assert cpu.share(cur, cur) == 0.0


def test_a_process_groups_cpu_is_read_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stat(pid: int, comm: str, pgrp: int, utime: int, stime: int) -> None:
        (tmp_path / str(pid)).mkdir()
        rest = ["S", "1", str(pgrp), *["0"] * 8, str(utime), str(stime), "0"]
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")

    stat(100, "locust", 100, 250, 50)
    stat(101, "locust worker (x)", 100, 100, 0)  # a comm with spaces and a parenthesis
    stat(200, "other", 200, 999, 0)
    monkeypatch.setattr(cpu, "PROC", tmp_path)
    got = cpu.process_group_cpu(100)
    assert got == {100: 300 / cpu._TICK, 101: 100 / cpu._TICK}
    shares = cpu.process_shares({100: 0.0, 101: got[101]}, got, 3 / cpu._TICK * 100)
    assert shares[101] == 0.0 and shares[100] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the load generator


def test_a_hot_generator_says_the_figures_are_locusts_and_what_to_do() -> None:
    meter = GeneratorMeter(1)
    meter.shares = [(1.0, 0.5), (2.0, 0.97)]
    g = meter.figures("... CPU usage above 90%! This may constrain your throughput ...")
    assert g is not None and g.hot and g.warned and g.peak == 0.97 and g.mean == pytest.approx(0.735)
    assert "bounded by Locust" in g.hint(2) and "--processes 4" in g.hint(2)
    assert not GeneratorCpu(0.6, 0.5, 1).hot
    assert GeneratorMeter(1).figures("") is None


# ----------------------------------------------------------------------------- the sampler's shares


def sampler(tmp_path: Path) -> Sampler:
    t = make_topology(1, lab="bn", sizing=replace(make_topology(1).sizing, db_max_connections=12))
    return Sampler(t, tmp_path / "samples.jsonl")


def test_refused_connections_saturate_the_database_connections(tmp_path: Path) -> None:
    s = sampler(tmp_path)
    s._last_db = {"Threads_connected": 5, "Connection_errors_max_connections": 0, "Innodb_row_lock_time": 0}
    db = {"Threads_connected": 9, "Connection_errors_max_connections": 40, "Innodb_row_lock_time": 0}
    conns, locks = s._db_usage(db)
    assert conns.resource == b.DB_CONNECTIONS and conns.share == 1.0
    assert "9 of max_connections 12" in conns.evidence and "40 connections refused" in conns.evidence
    assert locks.resource == b.DB_LOCKS and locks.share == 0.0


def test_a_request_that_waited_for_a_pooled_connection_saturates_the_pool(tmp_path: Path) -> None:
    s = sampler(tmp_path)
    base = {"cattle_db_pool_max": 10, "cattle_db_pool_in_use": 4, "cattle_heap_pressure": 0.3}
    pool, heap = s._node_usage("a1", base)
    assert pool.share == 0.4 and heap.share == 0.3 and pool.where == "a1"
    busy = base | {"cattle_db_pool_waited_total": 7, "cattle_db_pool_wait_seconds_total": 2.5}
    pool, _ = s._node_usage("a1", busy)
    assert pool.share == 1.0 and "7 requests waited 2.5 s for one of 10 connections" in pool.evidence
    pool, _ = s._node_usage("a1", busy)  # no new waits since
    assert pool.share == 0.4


def test_a_galera_writer_held_by_flow_control_saturates_the_database_flow_control(tmp_path: Path) -> None:
    t = make_topology(3, lab="gf", db="galera:3")
    s = Sampler(t, tmp_path / "samples.jsonl")
    s._last_db = {"Threads_connected": 5, "wsrep_flow_control_paused_ns": 0, "wsrep_flow_control_recv": 3}
    s._last_db_t -= 2.0  # two seconds since the last sample
    db = {"Threads_connected": 5, "wsrep_flow_control_paused_ns": 1_900_000_000, "wsrep_flow_control_recv": 40}
    *_, fc = s._db_usage(db)
    assert fc.resource == b.DB_FLOW_CONTROL and 0.9 < fc.share <= 0.95
    assert "paused 9" in fc.evidence and "db1 received 37 pause requests" in fc.evidence
    s._last_db = db  # as usage() leaves it after a sample: no pause since
    assert s._db_usage(dict(db))[2].share == 0.0
    # A single database has no wsrep counters and no flow control to report.
    assert [u.resource for u in sampler(tmp_path)._db_usage({"Threads_connected": 1})] == [b.DB_CONNECTIONS, b.DB_LOCKS]


def test_a_galera_labs_members_are_database_cpu_and_its_front_a_load_balancer(tmp_path: Path) -> None:
    s = Sampler(make_topology(3, lab="gf", db="galera:3"), tmp_path / "samples.jsonl")
    assert set(s.services) == {"dbfront", "db1", "db2", "db3", "lb", "a1", "a2", "b1"}
    assert [s._cpu_resource(k) for k in ("db1", "db3", "dbfront", "lb", "a1", "machine")] == [
        b.DB_CPU,
        b.DB_CPU,
        b.LB_CPU,
        b.LB_CPU,
        b.NODE_CPU,
        b.MACHINE_CPU,
    ]
    assert sampler(tmp_path)._cpu_resource("db") == b.DB_CPU


# ----------------------------------------------------------------------------- attribution


def sample(t: float, *usages: tuple[str, str, float]) -> dict[str, object]:
    return {"t": t, "usage": [b.Usage(r, w, sh, f"{r} evidence").to_dict() for r, w, sh in usages]}


def test_the_first_saturated_resource_is_named_with_its_evidence_and_what_followed() -> None:
    samples = [
        sample(102, (b.NODE_CPU, "a1", 0.5), (b.DB_CONNECTIONS, "", 0.3)),
        sample(104, (b.NODE_CPU, "a1", 0.95), (b.DB_CPU, "", 0.2)),
        sample(106, (b.NODE_CPU, "a1", 0.99), (b.MACHINE_CPU, "", 0.92)),
    ]
    found = b.attribute(samples, start=100)
    assert (found.resource, found.where, found.at_s) == (b.NODE_CPU, "a1", 4.0)
    assert found.harness_bound and found.then == ("machine CPU at 6 s",)
    assert found.text() == "node CPU a1 (node CPU evidence; harness-bound, not counted)"
    assert b.peaks(samples) == {
        "node CPU a1": 0.99,
        "database connections": 0.3,
        "database CPU": 0.2,
        "machine CPU": 0.92,
    }


def test_in_one_sample_a_limit_that_refuses_work_comes_before_a_cpu() -> None:
    found = b.attribute([sample(5, (b.NODE_CPU, "a1", 1.0), (b.DB_CONNECTIONS, "", 1.0))], start=0)
    assert found.resource == b.DB_CONNECTIONS and not found.harness_bound


def test_nothing_saturated_names_the_busiest_resource() -> None:
    found = b.attribute([sample(1, (b.GENERATOR, "", 0.4), (b.NODE_CPU, "a1", 0.7))], start=0)
    assert found.resource == b.NONE and found.at_s is None and not found.harness_bound
    assert "busiest: node CPU a1 at 70%" in found.evidence


# ----------------------------------------------------------------------------- the report


def test_a_harness_bound_point_is_shown_and_never_counted_toward_the_recommendation() -> None:
    cpu_bound = b.Bottleneck(b.NODE_CPU, "a1", 2.0, "0.98 of 1 CPU")
    conns = b.Bottleneck(b.DB_CONNECTIONS, "", 1.0, "12 of max_connections 12, 40 refused")
    small = replace(measured(100, 0.0, db_max_connections=20, users=10), bottleneck=cpu_bound)
    big = replace(measured(100, 0.0, db_max_connections=60, users=10), bottleneck=b.Bottleneck(b.NONE, "", None, ""))
    tiny = replace(measured(50, 0.4, db_max_connections=12, users=10), bottleneck=conns)
    [r] = recommend([tiny, small, big], 10, 0.01)
    assert r.max_connections == 60  # the 20 passed, but its node's CPU saturated first
    text = "\n".join(r.lines())
    assert "not counted, the harness saturated first: " in text and "node CPU a1 (0.98 of 1 CPU" in text
    table = report.table([tiny, small, big], ["db_max_connections"])
    assert table.splitlines()[0].endswith("| bottleneck |")
    rows = table.splitlines()[2:]
    assert rows[0].endswith("| database connections (12 of max_connections 12, 40 refused) |")
    assert rows[1].endswith("| node CPU a1 (0.98 of 1 CPU; harness-bound, not counted) |")
    assert rows[2].endswith(f"| {b.NONE} |")


def test_the_bottleneck_survives_capacity_json(tmp_path: Path) -> None:
    m = replace(
        measured(100, 0.0, users=10),
        bottleneck=b.Bottleneck(b.GENERATOR, "", 3.0, "Locust at 97%", ("node CPU a1 at 5 s",)),
        usage_peaks={"load generator": 0.97},
        generator={"peak": 0.97, "mean": 0.8, "processes": 1, "warned": True},
    )
    report.write_json(tmp_path, report.Settings(), [m], {})
    _, [back], _ = report.load_report(tmp_path)
    assert back == m and not back.counts_for_sizing
    assert "bounded by Locust" in (report.generator_note(back) or "")


def test_a_busy_machine_is_named_only_when_nothing_more_specific_saturated() -> None:
    samples = [
        sample(2, (b.MACHINE_CPU, "", 0.99), (b.DB_CONNECTIONS, "", 0.5)),
        sample(4, (b.MACHINE_CPU, "", 0.99), (b.DB_CONNECTIONS, "", 1.0)),
    ]
    found = b.attribute(samples, start=0)
    assert (found.resource, found.at_s, found.then) == (b.DB_CONNECTIONS, 4.0, ("machine CPU at 2 s",))
    assert not found.harness_bound
    only = b.attribute(samples[:1], start=0)
    assert only.resource == b.MACHINE_CPU and only.harness_bound
