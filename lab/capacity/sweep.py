"""Running a sweep: every grid point on a fresh lab of its own, torn down on every path, with
its load, samples and node outcomes gathered into a `Measurement`; the report is rewritten
after each point."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.capacity.bottleneck import GENERATOR, NONE, Bottleneck, peaks
from lab.capacity.measurement import Measurement, NodeOutcome, load_figures, node_outcome
from lab.capacity.report import summary_line, write_json, write_report
from lab.capacity.sampler import Sampler
from lab.capacity.spec import Grid, Point, Settings
from lab.cluster import hosts
from lab.cluster.topology import SWARM, Ports, Topology
from lab.core.errors import BadInput, LabError, RuntimeFailure
from lab.core.wait import poll

log = logging.getLogger("halab.capacity.sweep")


def swarm_ports(grid: Grid) -> Ports | None:
    """A swarm sweep's load balancer ports, those its host group's manager publishes (the points run
    one after another, so each reuses them), checked against every point before any lab starts;
    None on compose, where each point takes ports free here."""
    if grid.settings.engine != SWARM:
        return None
    assert grid.settings.hosts is not None  # spec.build_grid names the default group
    group = hosts.load(grid.settings.hosts)
    if not group.made_here:
        # Locust and the sampler reach the load balancer and the nodes' metrics on 127.0.0.1.
        raise BadInput(
            f"--hosts: host group {group.name!r} names real machines; a capacity sweep runs on a group made "
            "here (`halab hosts up`) for now"
        )
    ports = hosts.lab_ports(group)
    for point in grid.points:
        t = point.topology("check", ports, grid.settings)
        hosts.check_lab_fits(group, t.datacenters, t.published_ports)
    return ports


def run_point(
    point: Point, settings: Settings, lab_name: str, point_dir: Path, ports: Ports | None = None
) -> Measurement:
    """One grid point on a fresh lab, torn down on every path (Ctrl-C included); `ports`: a swarm
    sweep's (swarm_ports), else ports free here now."""
    from lab.cluster import preflight

    deadline = time.monotonic() + settings.hard_timeout
    t = point.topology(lab_name, ports or preflight.free_ports(), settings)
    short = tuple(f"{f.check}: {f.message}" for f in preflight.errors(preflight.check(t, include_ports=False)))
    made = Measurement(
        point=point,
        max_connections=t.db_max_connections,
        node_memory_limit_mib=t.node_mem_limit_mib,
        preflight=short,
        status="starting",
        run_dir=str(point_dir),
    )
    point_dir.mkdir(parents=True, exist_ok=True)

    with _point_output(point_dir):
        return _measure(t, point, settings, point_dir, made, deadline)


# The loggers whose messages a point shows indented under its own line.
POINT_LOGGERS = ("halab.cluster.lifecycle", "halab.cluster.images", "halab.cluster.preflight", "halab.record.load")


class _PointFilter(logging.Filter):
    """A point's lab start and load messages, indented; the container logs `up` dumps when a start
    fails are kept in lab-start.log, not shown."""

    def __init__(self, point_dir: Path) -> None:
        super().__init__()
        self.point_dir = point_dir

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("  | "):
            with (self.point_dir / "lab-start.log").open("a") as f:
                f.write(msg[4:] + "\n")
            return False
        record.msg, record.args = "    " + msg.strip(), None
        return True


@contextmanager
def _point_output(point_dir: Path) -> Iterator[None]:
    f = _PointFilter(point_dir)
    loggers = [logging.getLogger(name) for name in POINT_LOGGERS]
    for lg in loggers:
        lg.addFilter(f)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(f)


def _measure(
    t: Topology, point: Point, settings: Settings, point_dir: Path, made: Measurement, deadline: float
) -> Measurement:
    from lab.cluster import lifecycle
    from lab.record.history import load_run
    from lab.record.load import LoadRun, LoadSpec

    try:
        try:
            lifecycle.up(t, timeout=settings.up_timeout, allow_undersized=True)
        except RuntimeFailure as exc:  # an undersized lab that never got healthy is a result too
            return replace(made, status="did not start", detail=f"{exc} (logs: {point_dir}/lab-start.log)")
        if settings.node_cpus is not None:
            from lab.faults.gray import CPU_PERIOD, set_cpu_quota

            set_cpu_quota(t, t.node_names, round(settings.node_cpus * CPU_PERIOD))
        spec = LoadSpec(
            name=point.label(),
            users=point.users,
            spawn_rate=settings.spawn_rate,
            duration=settings.duration,
            http_port=t.ports.http,
            https_port=t.ports.https,
            user_classes=("ApiUser",),
            env={"HALAB_WAIT": settings.think_time},
        )
        load = LoadRun(spec, point_dir / "load")
        sampler = Sampler(t, point_dir / "samples.jsonl", lambda: load.generator.latest if load.generator else None)
        with load, sampler:
            poll(lambda: load.running, lambda running: not running, max(0.0, deadline - time.monotonic()), 0.5)
            timed_out = load.running
        # After the load: the final counters, each node's fate.
        final = sampler.db_status()
        db = sampler.db_figures(final, sampler.db_max_connections())
        outcomes = _node_outcomes(t, sampler, point_dir)
        figures = load_figures(load_run(load.run_dir).requests)
        generator = load.result.generator_cpu if load.result else None
        found = sampler.bottleneck()
        if generator is not None and generator.warned and found.resource == NONE:
            # Locust saw itself hot between two of our readings: its word is evidence enough.
            found = Bottleneck(GENERATOR, "", None, "Locust warned its CPU passed 90%")
        return replace(
            made,
            status="timed out" if timed_out else "measured",
            detail=f"point exceeded its {settings.hard_timeout:g} s timeout" if timed_out else "",
            load=figures,
            db=db,
            nodes=outcomes,
            memory_peak_mib=dict(sampler.memory),
            bottleneck=found,
            usage_peaks=peaks(sampler.samples),
            generator=asdict(generator) if generator else None,
        )
    finally:
        lifecycle.down(t.lab)


def _node_outcomes(t: Topology, sampler: Sampler, point_dir: Path) -> tuple[NodeOutcome, ...]:
    """Each node's fate; the log tail of a node that died is kept as `<node>.log`, the evidence."""
    from lab.cluster import engine, lifecycle

    containers = engine.current(engine.states(t))
    out = []
    for node in t.node_names:
        state = containers.get(node)
        log_text = ""
        if not (state and state.running):
            log_text = lifecycle.logs(t, (node,), tail=200)
            (point_dir / f"{node}.log").write_text(log_text)
        out.append(node_outcome(node, state, log_text, node in sampler.degraded, sampler.pressure.get(node)))
    return tuple(out)


def machine() -> dict[str, Any]:
    """The machine a sweep ran on, for the report."""
    from lab.cluster import docker

    try:
        with open("/proc/meminfo") as f:
            mem = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        mem_gib = round(mem / 1024**2, 1)
    except (OSError, StopIteration, ValueError):
        mem_gib = None
    try:
        engine = docker.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], "docker version", timeout=20
        ).strip()
    except LabError:
        engine = "unknown"
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "docker": engine,
        "python": platform.python_version(),
    }


def engine_meta(settings: Settings) -> dict[str, Any]:
    """What ran the labs, for the report: a swarm's hosts, each with its datacenter."""
    if settings.engine != SWARM:
        return {"kind": settings.engine}
    assert settings.hosts is not None
    group = hosts.load(settings.hosts)
    return {
        "kind": SWARM,
        "hosts": settings.hosts,
        "made_here": group.made_here,
        "members": [f"{h.name} ({h.dc})" for h in group.hosts],
    }


def sweep(grid: Grid, out_root: str | os.PathLike[str], name: str) -> Path:
    """Run every point of the grid, one fresh lab at a time; write the report; return its folder.

    capacity.json is rewritten after each point, so an interrupted sweep keeps what it measured
    (`halab capacity --report DIR` renders it)."""
    from lab.record.load import make_run_dir

    ports = swarm_ports(grid)
    directory = make_run_dir(f"capacity-{name}", out_root)
    meta = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "engine": engine_meta(grid.settings),
    }
    swept = grid.swept
    measurements: list[Measurement] = []
    for i, point in enumerate(grid.points, 1):
        log.info(f"[{i}/{len(grid.points)}] {point.label()} (hard timeout {grid.settings.hard_timeout:g} s)")
        m = run_point(
            point, grid.settings, f"{name}-{i}", directory / "points" / f"{i:02d}-{point.label(swept)}", ports
        )
        measurements.append(m)
        log.info(f"    {summary_line(m)}")
        write_json(directory, grid.settings, measurements, meta)
    write_report(directory, grid.settings, measurements, meta)
    return directory
