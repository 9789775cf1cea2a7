"""`halab capacity`: the capacity sweep's command line (the lab/capacity/ package does the work)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lab.capacity import report, spec, sweep
from lab.cli.common import AddCommand, add_profile_option, emit
from lab.core import yamlspec

SETTING_FLAGS = (
    "duration",
    "spawn_rate",
    "think_time",
    "heap_scale",
    "pool_wait_ms",
    "up_timeout",
    "point_timeout",
    "max_error_rate",
    "target_users",
    "profile",
    "node_cpus",
    "db",
    "engine",
    "hosts",
)


def grid_from_args(args: argparse.Namespace) -> spec.Grid:
    doc = yamlspec.load(args.grid) if args.grid else None
    return spec.build_grid(
        doc,
        args.grid or "grid",
        {d: getattr(args, d) for d in spec.DIMENSIONS},
        {k: getattr(args, k) for k in SETTING_FLAGS},
    )


def cmd_capacity(args: argparse.Namespace) -> int:
    if args.report:
        settings, measurements, meta = report.load_report(args.report)
        settings = spec.settings_with(settings, {k: getattr(args, k) for k in ("max_error_rate", "target_users")})
        report.write_report(Path(args.report), settings, measurements, meta)
        return _show(args, Path(args.report))
    grid = grid_from_args(args)
    if args.dry_run:
        return _dry_run(args, grid)
    from lab.cluster import docker

    docker.require_docker()
    return _show(args, sweep.sweep(grid, args.out, args.name))


def _show(args: argparse.Namespace, directory: Path) -> int:
    """The table and the recommendation (or, with --json, capacity.json), and where the files are."""
    _, measurements, _ = report.load_report(directory)
    data = json.loads((directory / "capacity.json").read_text())
    text = "\n".join(
        [
            report.table(measurements, data["swept"]),
            "",
            *(line for r in data["recommendations"] for line in r["text"]),
            "",
            f"report: {directory / 'capacity.md'}",
            f"json:   {directory / 'capacity.json'}",
            *(f"plot:   {p}" for p in sorted((directory / "plots").glob("*.png"))),
        ]
    )
    emit(args, data, text)
    return 0


def _dry_run(args: argparse.Namespace, grid: spec.Grid) -> int:
    from lab.cluster import preflight
    from lab.cluster.topology import Ports

    ports = sweep.swarm_ports(grid)
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(grid.points, 1):
        t = p.topology(f"{args.name}-{i}", ports or Ports(), grid.settings)
        short = [f"{f.check}: {f.message}" for f in preflight.errors(preflight.check(t, include_ports=False))]
        rows.append(
            {
                "point": p.label(),
                "max_connections": t.db_max_connections,
                "node_memory_mib": t.node_mem_limit_mib,
                "preflight": short,
            }
        )
    text = "\n".join(
        [
            f"{len(grid.points)} point(s), each a fresh lab with {grid.settings.duration:g} s of load, hard timeout "
            f"{grid.settings.hard_timeout:g} s; swept: {', '.join(grid.swept) or 'nothing'}"
        ]
        + (
            [
                f"on host group {grid.settings.hosts!r} (swarm), one point after another on the ports it "
                f"publishes: http {ports.http}, https {ports.https}, mgmt {ports.mgmt}"
            ]
            if ports
            else []
        )
        + [
            f"{i:2}. {r['point']}  max_connections {r['max_connections']}, node memory {r['node_memory_mib']} MiB"
            + "".join(f"\n      pre-flight short: {s}" for s in r["preflight"])
            for i, r in enumerate(rows, 1)
        ]
    )
    emit(args, rows, text)
    return 0


def add_commands(command: AddCommand) -> None:
    sp = command(
        "capacity",
        cmd_capacity,
        "sweep node heap, pool size, max_connections, database memory, "
        "cluster size and load; measure where it breaks and recommend a sizing",
    )
    sp.add_argument("grid", nargs="?", help="YAML grid file (see capacity/*.yaml); flags override it")
    sp.add_argument("--name", default="cap", help="lab name prefix: point i runs as lab <name>-<i> (default cap)")
    sp.add_argument("--out", default="runs", help="folder for the sweep's run folder (default runs)")
    g = sp.add_argument_group("dimensions (comma-separated values; every combination is a grid point)")
    g.add_argument("--nodes", help="cluster sizes, e.g. 1,3")
    g.add_argument("--heap", help="node -Xmx values (modelled heap), e.g. 32m,1g")
    g.add_argument("--pool-size", dest="pool_size", help="database connections per node, e.g. 10,50")
    g.add_argument(
        "--db-max-connections",
        dest="db_max_connections",
        help="MySQL max_connections values, or auto (nodes x pool + 10), e.g. 100,auto",
    )
    g.add_argument("--db-memory", dest="db_memory", help="database container memory, MiB, e.g. 1024")
    g.add_argument("--db-buffer-pool", dest="db_buffer_pool", help="InnoDB buffer pool, MiB, e.g. 256")
    g.add_argument("--users", help="Locust users, e.g. 5,20")
    s = sp.add_argument_group("settings")
    s.add_argument("--duration", help="load per point, e.g. 20s (default 20s)")
    s.add_argument("--spawn-rate", dest="spawn_rate", help="users started per second (default 10)")
    s.add_argument(
        "--think-time", dest="think_time", help="MIN,MAX seconds between a user's requests (default 0.1,0.5)"
    )
    s.add_argument("--heap-scale", dest="heap_scale", help="modelled heap bytes per real byte (default 32)")
    s.add_argument(
        "--pool-wait-ms", dest="pool_wait_ms", help="ms a request waits for a pooled connection (default 2000)"
    )
    s.add_argument("--up-timeout", dest="up_timeout", help="seconds a lab may take to get healthy (default 180)")
    s.add_argument(
        "--point-timeout",
        dest="point_timeout",
        help="hard timeout of one point, seconds (default: up timeout + load + 120)",
    )
    s.add_argument(
        "--max-error-rate",
        dest="max_error_rate",
        help="error threshold for the recommendation, a fraction (default 0.01)",
    )
    s.add_argument("--target-users", dest="target_users", help="the load to size for (default: the largest swept)")
    s.add_argument(
        "--node-cpus",
        dest="node_cpus",
        help="a CPU quota on every node, in CPUs, e.g. 0.2 (default none): a node-CPU-bound sweep, named as such",
    )
    add_profile_option(s, default=None)  # None: the grid file's settings.profile, else rancher-1.0
    s.add_argument(
        "--db",
        help="every point's database: single (the default) or galera:3 / galera:5; a Galera database's members "
        "are sampled too (CPU each, the writer's connections, flow control)",
    )
    s.add_argument(
        "--engine",
        help="what runs every point's lab: compose (this machine's Docker, the default) or swarm, a stack on "
        "the host group of --hosts, one point after another on the ports it publishes (docs/swarm.md)",
    )
    s.add_argument("--hosts", help="with --engine swarm: the host group (`halab hosts up`; default 'swm')")
    sp.add_argument("--dry-run", action="store_true", help="list the points and pre-flight findings; start nothing")
    sp.add_argument(
        "--report",
        metavar="DIR",
        help="render an earlier sweep's capacity.json again (table, plots, "
        "recommendation; --max-error-rate/--target-users may change)",
    )
