"""`halab load` and `halab report`: Locust through the load balancer, then the checker and report."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from lab.cli.common import AddCommand, add_lab_name, emit
from lab.core.errors import BadInput

log = logging.getLogger("halab.cli.record")

if TYPE_CHECKING:
    from lab.record.report import ReportFiles


def cmd_load(args: argparse.Namespace) -> int:
    from lab.capacity.sampler import Sampler
    from lab.chaos.faultlog import record_faults
    from lab.chaos.judge import lab_query, objective_config
    from lab.chaos.watch import Watch
    from lab.cluster import docker, state
    from lab.core.durations import parse_duration
    from lab.record import metrics
    from lab.record.distributed import SwarmLoadRun, check_spec, place
    from lab.record.load import Load, LoadSpec, make_run_dir, run_load
    from lab.record.report import BOTTLENECK_FILE, build_report

    docker.require_docker()
    t = state.load_topology(args.name)
    spec = LoadSpec(
        name=args.run_name or f"load-{t.lab}",
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=parse_duration(args.duration, "--duration", positive=True),
        http_port=t.ports.http,
        https_port=t.ports.https,
        ca_file=str(state.ca_path(t.lab)),
        user_classes=tuple(args.user_class or ()),
        processes=args.processes,
        web_port=args.web,
    )
    swarm_load = None
    if args.workers is not None:  # Locust's master and workers on the swarm's hosts
        placement = place(t, args.workers, _hosts_list(args.worker_hosts))
        check_spec(spec)
    elif args.worker_hosts:
        raise BadInput("--worker-hosts: say how many workers with --workers N")
    run_dir = make_run_dir(spec.name)
    if args.workers is not None:
        swarm_load = SwarmLoadRun(t, spec, placement, run_dir)
    samplers: list[Sampler] = []

    def sample(load: Load) -> Sampler:  # each container's CPU, Locust's, the database's and pools' counters
        samplers.append(
            Sampler(t, run_dir / "samples.jsonl", lambda: load.generator.latest if load.generator else None)
        )
        return samplers[0]

    # The nodes are probed all along (fencing and detection need it) and faults applied from another
    # shell are taken from the lab's fault log: the run judges everything that happened to the lab.
    with Watch(t, run_dir, client=False):
        result = run_load(spec, run_dir, observe=sample, load=swarm_load)
    found = samplers[0].write_bottleneck(run_dir / BOTTLENECK_FILE)
    log.info(f"bottleneck: {found.text()}")
    for f in record_faults(run_dir, t.lab, result.started, result.ended):
        log.info(f"fault {f.id} ({f.fault} {' '.join(f.targets)}) happened during the run")
    metrics.record(t, run_dir, result.started, result.ended)  # with monitoring: the series the report plots
    files = build_report(result.run_dir, query=lab_query(t), config=objective_config())
    return _finish(args, files)


def _hosts_list(text: str | None) -> list[str]:
    return [h.strip() for h in (text or "").split(",") if h.strip()]


def cmd_report(args: argparse.Namespace) -> int:
    from lab.record.report import build_report

    if args.compare:
        if args.run_dir:
            raise BadInput("halab report: give a run directory or --compare RUN_A RUN_B ..., not both")
        return _compare(args)
    if not args.run_dir:
        raise BadInput("halab report: name a run directory (or --compare RUN_A RUN_B ...)")
    return _finish(args, build_report(args.run_dir))


def _compare(args: argparse.Namespace) -> int:
    from lab.record.compare import compare, write_comparison

    c = compare(args.compare)
    page = write_comparison(c, args.out)
    lines = [f"{d.text}" for d in c.differences] or ["no differences beyond noise"]
    emit(args, c.to_dict() | {"html": str(page)}, "\n".join([*lines, f"comparison: {page}"]))
    return 0


def _finish(args: argparse.Namespace, files: ReportFiles) -> int:
    r = files.result
    emit(
        args,
        r.to_dict() | {"report": str(files.html)},
        "\n".join(
            [f"{o.name}: {o.status} ({len(o.violations)} violations of {o.checked})" for o in r.outcomes]
            + [f"requests {r.requests}, failed {r.failed}, acknowledged writes {r.acks}", *files.limits]
            + [f"report: {files.html}"]
        ),
    )
    return 0 if r.passed else 3


def add_commands(command: AddCommand) -> None:
    sp = command("load", cmd_load, "drive bounded Locust load through a lab's load balancer, then check and report")
    add_lab_name(sp)
    sp.add_argument("--users", type=int, default=10)
    sp.add_argument("--spawn-rate", type=float, default=5)
    sp.add_argument("--duration", default="20s", help="always bounded, e.g. 20s, 2m")
    sp.add_argument("--processes", type=int, default=1, help="Locust worker processes (distributed mode if > 1)")
    sp.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="a swarm lab: Locust's master and N workers in containers on its hosts, reaching the load balancer "
        "over the swarm's network; their histories merged into one run",
    )
    sp.add_argument("--worker-hosts", metavar="H1,H2", help="with --workers: the hosts the workers run on, in turn")
    sp.add_argument("--web", type=int, metavar="PORT", help="also serve Locust's web UI on 127.0.0.1:PORT")
    sp.add_argument("--user-class", action="append", help="ApiUser, AgentUser and/or RegisterUser (default: all)")
    sp.add_argument("--run-name", help="name of the run directory under runs/")

    sp = command(
        "report",
        cmd_report,
        "rebuild a run's report (HTML, PNG, JSON, JUnit) from its recorded files, or compare runs side by side",
    )
    sp.add_argument("run_dir", nargs="?")
    sp.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="compare these runs instead: run directories (with summary.json) or matrix runs (matrix.json)",
    )
    sp.add_argument("--out", default="compare.html", help="the comparison's page (default compare.html)")
