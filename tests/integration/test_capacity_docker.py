"""Capacity on real Docker: pre-flight refuses an undersized topology (and `--allow-undersized`
starts it anyway, as sized), a two-point sweep writes its table, JSON and plot and names a tiny
max_connections as its bottleneck, a CPU-starved node is named as the bottleneck and not counted,
and Ctrl-C during a sweep tears the current lab down."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cluster import docker, lifecycle, probes, state
from lab.cluster.preflight import free_port
from lab.cluster.state import unique_lab_name
from lab.core.wait import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
# A guard against a hung command, never an assertion about how long anything takes.
GUARD = 900


def halab(*args: str, timeout: float = GUARD) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=timeout)


def port_args() -> list[str]:
    return ["--http-port", str(free_port()), "--https-port", str(free_port()), "--mgmt-port", str(free_port())]


def leftovers(prefix: str) -> list[str]:
    names = docker.run(["docker", "ps", "-a", "--format", '{{.Label "halab.lab"}}'], "list labs").split()
    return [n for n in names if n.startswith(prefix)]


def test_check_refuses_an_undersized_topology_and_the_flag_starts_it_anyway():
    name = unique_lab_name("capchk")
    sizing = ["--nodes", "3", "--db-max-connections", "100", *port_args()]

    check = halab("check", "--name", name, *sizing)
    assert check.returncode == 3, check.stdout + check.stderr
    assert "ERROR   max_connections: the database allows 100 connections, 60 short of 3 node(s) x 50" in check.stdout
    assert "--db-max-connections 160" in check.stdout

    refused = halab("up", "--name", name, *sizing)
    assert refused.returncode == 3
    assert "pre-flight max_connections" in refused.stderr and "--allow-undersized" in refused.stderr
    assert docker.labelled("container", name) == []  # refused before anything started

    try:
        up = halab("up", "--name", name, *sizing, "--allow-undersized")
        assert up.returncode == 0, up.stderr
        assert "undersized on purpose: ERROR   max_connections" in up.stderr
        t = state.load_topology(name)
        assert probes.db_query(t, "SELECT @@GLOBAL.max_connections AS n") == [{"n": "100"}]
        assert halab("status", "--name", name).returncode == 0
    finally:
        lifecycle.down(name)
        shutil.rmtree(state.lab_dir(name), ignore_errors=True)


def test_two_point_sweep_writes_table_json_and_plot(tmp_path):
    name = unique_lab_name("capsw")
    res = halab(
        "capacity",
        "--name",
        name,
        "--out",
        str(tmp_path),
        "--nodes",
        "1",
        "--db-max-connections",
        "12,auto",
        "--users",
        "20",
        "--duration",
        "8s",
        "--think-time",
        "0,0.05",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    [directory] = tmp_path.iterdir()
    data = json.loads((directory / "capacity.json").read_text())
    points = {p["label"]: p for p in data["points"]}
    assert list(points) == ["maxconn12", "maxconnauto"] and data["swept"] == ["db_max_connections"]
    small, auto = points["maxconn12"], points["maxconnauto"]
    assert auto["status"] == "measured" and auto["load"]["requests"] > 0 and auto["max_connections"] == 151
    assert auto["db"]["max_connections"] == 151 and auto["db"]["peak_threads_connected"] >= 1
    assert auto["memory_peak_mib"]["a1"] > 0 and auto["nodes"][0]["outcome"] == "ok"
    # 12 connections for a node that may open 1 + 50: pre-flight said so; the database agrees on 12.
    assert small["preflight"] and small["preflight"][0].startswith("max_connections:")
    assert small["status"] == "measured" and small["db"]["max_connections"] == 12
    assert (directory / "plots" / "db_max_connections.png").stat().st_size > 0
    # 12 connections for 20 busy users: the database refused connections before anything else saturated.
    assert small["bottleneck"]["resource"] == "database connections", small["bottleneck"]
    assert "of max_connections 12" in small["bottleneck"]["evidence"] and small["counts_for_sizing"]
    assert auto["bottleneck"]["resource"] != "database connections", auto["bottleneck"]
    md = (directory / "capacity.md").read_text()
    assert "| # | database max_connections | status | ok req/s |" in md and "| bottleneck |" in md
    assert "## Bottlenecks" in md and "- **maxconn12**: database connections at " in md
    assert "## Sizing recommendation (target 20 users)" in md and "## The heap is a model" in md
    assert "| # | database max_connections |" in res.stdout and "capacity.json" in res.stdout
    assert leftovers(name) == [] and not state.lab_dir(f"{name}-1").exists()


def test_a_cpu_starved_node_is_named_as_the_bottleneck_and_not_counted(tmp_path):
    from lab.capacity.spec import Point, Settings
    from lab.capacity.sweep import run_point

    name = unique_lab_name("capcpu")
    settings = Settings(duration=8, think_time="0,0.05", profile="tuned", node_cpus=0.2)
    m = run_point(Point(nodes=1, users=20), settings, name, tmp_path / "point")
    assert m.status == "measured" and m.load and m.load.requests > 0, m
    assert m.bottleneck is not None and (m.bottleneck.resource, m.bottleneck.where) == ("node CPU", "a1"), m.bottleneck
    assert "of 0.2 CPU" in m.bottleneck.evidence and not m.counts_for_sizing
    assert m.usage_peaks["node CPU a1"] >= 0.9
    assert leftovers(name) == []


def test_interrupting_a_sweep_tears_down_the_current_lab(tmp_path):
    name = unique_lab_name("capint")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "capacity",
            "--name",
            name,
            "--out",
            str(tmp_path),
            "--nodes",
            "1",
            "--users",
            "2",
            "--duration",
            "5m",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def load_started() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            return bool(list(tmp_path.glob("*/points/*/load/locust.out")))

        wait_for("the sweep to start its load", load_started, GUARD, interval=0.5)
        assert docker.labelled("container", f"{name}-1")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
        lifecycle.down(f"{name}-1")
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err
    assert leftovers(name) == []
    assert list(Path(tmp_path).glob("*/points/*/load/load.json"))  # Locust was stopped, its records kept
    assert not state.lab_dir(f"{name}-1").exists()
