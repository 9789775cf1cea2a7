"""`halab fault`, `halab heal`, `halab run`, `halab matrix`: thin commands over lab.faults,
lab.chaos.scenario and lab.chaos.matrix (registered by lab.cli.main)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Any

from lab.cli.common import AddCommand, add_engine_options, add_lab_name, add_profile_option, emit, engine_from_args
from lab.core.errors import BadInput

log = logging.getLogger("halab.cli.chaos")

FAULT_HELP = """kinds and their arguments:
  kill|stop|pause|restart TARGET...   nodes, db, lb, or leader / follower / random
  isolate NODE                        cut one node from its peers and the database (LB path kept)
  split [DCS...]                      cut datacenters apart; each argument is one side (dc-a,dc-c);
                                      unnamed datacenters form one more side (default: each its own)
  partition GROUP...                  groups of nodes (and db), comma-separated; the rest form one more
  flaky ENDPOINTS ENDPOINTS --loss N  drop N % of packets between two sets (a1 b1,db)
  delay SIDE [SIDE] --delay D [--jitter J]
                                      round trips across two sides (datacenters, or endpoints: a1 db,lb)
                                      take D longer, each varying by up to J; one side: against the rest
  stall TARGET... --process P         SIGSTOP one process of nodes: zookeeper, server or redis
  cpu TARGET... --cpus C              cut a container's CPU quota to C CPUs (below 1)
  clock TARGET... [--offset S] [--drift R]
                                      set nodes' wall clocks S off (--offset=-10s: behind) and/or
                                      let them drift R a second (50ms/s; --drift=-20ms/s: losing)
  io TARGET... [--io-rate R] [--iops N]
                                      throttle the data disk of db or nodes (--iops 1: stalled)
  bandwidth SIDE [SIDE] --rate R      each host's packets across two sides limited to R (1mbit, 500kbit)
  exhaust db [--leave N]              a rogue client takes the database's free connections (all but N)
  cut-host|kill-host HOST...          a swarm lab's hosts (`halab hosts ls`): cut from the other hosts, or killed
  list                                the lab's active faults
examples: halab fault kill leader --hold 10s;  halab fault split dc-a dc-b --one-way;  halab heal
          halab fault delay dc-a dc-b --delay 200ms --jitter 50ms --hold 30s
          halab fault stall leader --process zookeeper --hold 20s
          halab fault bandwidth dc-a dc-b --rate 1mbit --hold 30s;  halab fault exhaust db --hold 20s"""


def add_commands(command: AddCommand) -> None:
    sp = command("fault", cmd_fault, "apply a verified fault to a lab (it stays until `halab heal` or --hold ends)")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = FAULT_HELP
    add_lab_name(sp)
    sp.add_argument(
        "kind",
        help="kill, stop, pause, restart, isolate, split, partition, flaky, delay, bandwidth, stall, cpu, clock, io, "
        "exhaust, cut-host, kill-host or list",
    )
    sp.add_argument("args", nargs="*", help="targets or sides (see below)")
    sp.add_argument("--one-way", action="store_true", help="drop only the packets leaving the first side")
    sp.add_argument("--loss", type=float, help="flaky: percent of packets dropped (1-100)")
    sp.add_argument("--delay", help="delay: time added to each round trip (e.g. 200ms)")
    sp.add_argument("--jitter", help="delay: each round trip varies by up to this (e.g. 50ms)")
    sp.add_argument("--process", help="stall: zookeeper, server or redis")
    sp.add_argument("--cpus", type=float, help="cpu: the CPUs left to the target (e.g. 0.2)")
    sp.add_argument("--io-rate", help="io: bytes a second the disk reads, and writes (e.g. 1mb)")
    sp.add_argument("--iops", type=int, help="io: operations a second it reads, and writes (1: a stalled disk)")
    sp.add_argument("--offset", help="clock: how far off the clock is set (10s ahead; --offset=-10s behind)")
    sp.add_argument("--drift", help="clock: time the clock gains each second (50ms/s; --drift=-20ms/s loses)")
    sp.add_argument("--rate", help="bandwidth: bits a second each host sends across the link (e.g. 1mbit)")
    sp.add_argument("--leave", type=int, help="exhaust: database connections left free (default none)")
    sp.add_argument("--hold", help="heal after this long (e.g. 10s); Ctrl-C heals early")
    sp.add_argument("--seed", type=int, default=0, help="seed for `follower` and `random` targets")

    sp = command("heal", cmd_heal, "undo every fault of a lab and sweep leftover rules, pauses and stops")
    add_lab_name(sp)

    sp = command("run", cmd_run, "run a scenario file: steady state, timed faults, checks, journal")
    sp.add_argument("file", help="scenarios/NAME.yaml")
    sp.add_argument("--dry-run", action="store_true", help="validate and print the plan; touch nothing")
    sp.add_argument("--name", help="lab to run on: reused when up (topology must match), else started and removed")
    sp.add_argument("--keep", action="store_true", help="keep a lab this run started")
    sp.add_argument("--runs", default="runs", help="folder for run directories (default runs/)")
    sp.add_argument("--http-port", type=int, default=80)
    sp.add_argument("--https-port", type=int, default=443)
    sp.add_argument("--mgmt-port", type=int, default=18080)
    add_profile_option(sp, default=None)  # None: the scenario file's topology.profile, else rancher-1.0
    add_engine_options(sp)  # a new lab's; a running lab keeps its own

    sp = command(
        "matrix",
        cmd_matrix,
        "measure every survivability claim of the install guide on real labs "
        "(exit 3: a claim does not hold; 4: every claim holds but a case surprised the lab's model)",
    )
    sp.add_argument("--nodes", default="1,3,5", help="cluster sizes, e.g. 1,3,5 (one lab per size)")
    sp.add_argument("--claims", help="claims file (default scenarios/claims.yaml)")
    sp.add_argument("--only", action="append", help="run only this case id (repeatable), e.g. kill-leader")
    sp.add_argument("--db-dc", help="datacenter of the database, or 'external' (default: the first)")
    sp.add_argument("--db", help="the database: single (the default) or galera:3 / galera:5 (docs/galera.md)")
    sp.add_argument("--db-layout", help="galera: the datacenter of each member (default: spread like the nodes)")
    sp.add_argument("--db-arbitrator", metavar="SITE", help="galera: a garbd arbitrator at SITE (e.g. dc-c)")
    sp.add_argument(
        "--lb-dc", help="datacenter of the load balancer and its clients, or 'outside' (default: outside all)"
    )
    sp.add_argument("--prefix", default="matrix", help="lab name prefix (labs are <prefix>-n<size>)")
    sp.add_argument("--profile", help="node profile: rancher-1.0 (default, the real v1.0 node) or tuned")
    sp.add_argument("--runs", default="runs", help="folder for the run directory (default runs/)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument(
        "--gray", action="store_true", help="run the gray failures of the claims file (no claim: measured only)"
    )
    add_engine_options(sp)
    sp.add_argument("--dry-run", action="store_true", help="list the cases and their expected outcomes")


# ------------------------------------------------------------------------------------- fault


def fault_spec(args: argparse.Namespace) -> Any:
    from lab.core.durations import parse_duration
    from lab.faults import TARGET_KINDS, make_spec, parse_bytes, parse_drift, parse_rate, signed_duration

    with_targets = args.kind in TARGET_KINDS
    return make_spec(
        args.kind,
        args.args if with_targets else (),
        () if with_targets else [a.split(",") for a in args.args],
        one_way=args.one_way,
        loss=args.loss,
        delay=parse_duration(args.delay, "--delay") if args.delay else None,
        jitter=parse_duration(args.jitter, "--jitter") if args.jitter else None,
        process=args.process,
        cpus=args.cpus,
        offset=signed_duration(args.offset, "--offset") if args.offset else None,
        drift=parse_drift(args.drift, "--drift") if args.drift else None,
        io_bps=parse_bytes(args.io_rate, "--io-rate") if args.io_rate else None,
        io_iops=args.iops,
        rate=parse_rate(args.rate, "--rate") if args.rate else None,
        leave=args.leave,
    )


def cmd_fault(args: argparse.Namespace) -> int:
    from lab import faults
    from lab.cluster import docker, state
    from lab.core.durations import parse_duration

    docker.require_docker()
    t = state.load_topology(args.name)
    if args.kind == "list":
        found = faults.active(t.lab)
        lines = [
            f"{e['id']} {faults.FaultSpec.from_dict(e['spec']).describe()} ({e['phase']}, "
            f"{time.time() - e['t0']:.0f} s)"
            for e in found
        ]
        emit(args, found, "\n".join(lines) or "no active faults")
        return 0
    hold = parse_duration(args.hold, "--hold") if args.hold else None
    spec = fault_spec(args)
    inj = faults.Injector(t, seed=args.seed)
    fault = inj.apply(spec, where="fault")
    if hold is None:
        emit(
            args,
            {"id": fault.id, "spec": fault.spec.to_dict(), "t0": fault.t0, "detail": dict(fault.detail)},
            f"{fault.describe()} is active; undo it with: halab heal --name {t.lab}",
        )
        return 0
    with inj:  # heals on the way out, Ctrl-C included
        log.info(f"holding {fault.describe()} for {hold:g} s (Ctrl-C heals now)")
        time.sleep(hold)
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    from lab import faults
    from lab.cluster import docker, state

    docker.require_docker()
    report = faults.heal_lab(state.load_topology(args.name))
    emit(args, report.to_dict(), "\n".join(report.lines()))
    return 0


# --------------------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from lab.chaos import scenario
    from lab.cluster import docker
    from lab.cluster.topology import Ports

    sc = scenario.load(args.file)
    if args.profile:
        sc = dataclasses.replace(sc, topology=dataclasses.replace(sc.topology, profile=args.profile))
    name = args.name or scenario.lab_name_for(sc)
    if args.dry_run:
        print("\n".join(scenario.plan_lines(sc, name)))
        return 0
    docker.require_docker()
    result = scenario.run(
        sc,
        lab_name=name,
        ports=Ports(http=args.http_port, https=args.https_port, mgmt=args.mgmt_port),
        runs_root=args.runs,
        keep=args.keep,
        on=engine_from_args(args),
    )
    emit(args, result.journal, result.summary())
    scenario.require_pass(result)
    return 0


# ------------------------------------------------------------------------------------ matrix


NOT_TAKEN = "not run: a swarm lab does not take this fault kind yet"


def cmd_matrix(args: argparse.Namespace) -> int:
    from lab.chaos import claims, matrix
    from lab.cluster import docker
    from lab.cluster.preflight import free_ports
    from lab.cluster.topology import make_topology

    try:
        sizes = [int(x) for x in args.nodes.split(",")]
    except ValueError:
        raise BadInput(f"--nodes: {args.nodes!r} is not a list of sizes like 1,3,5") from None
    path = args.claims or claims.DEFAULT_CLAIMS
    if args.dry_run:
        c = claims.load(path)
        for n in sizes:
            t = make_topology(
                n,
                db_dc=args.db_dc,
                lb_dc=args.lb_dc,
                db=args.db,
                db_layout=args.db_layout,
                db_arbitrator=args.db_arbitrator,
                engine=engine_from_args(args),
                **({"profile": args.profile} if args.profile else {}),
            )
            guide = {x.id: x.outcome for x in c.claims}
            for case in matrix.listed(c, t, args.gray) if args.gray else []:
                print(
                    f"n{n} {case.id:36} {case.fault.describe():32} "
                    + (f"held {case.hold:g} s; no claim, measured only" if matrix.takes(t, case) else NOT_TAKEN)
                )
            for case in [] if args.gray else matrix.listed(c, t, args.gray):
                print(
                    f"n{n} {case.id:36} {case.fault.describe():32} the guide says {guide[case.claims[0]]}; "
                    + (
                        f"model ({t.profile}): {claims.predicted_text(t, case, c.objective)}  "
                        f"[{', '.join(case.claims)}]"
                        if matrix.takes(t, case)
                        else NOT_TAKEN
                    )
                )
        return 0
    docker.require_docker()
    result = matrix.run_matrix(
        sizes,
        claims_path=path,
        runs_root=args.runs,
        lab_prefix=args.prefix,
        db_dc=args.db_dc,
        lb_dc=args.lb_dc,
        db=args.db,
        db_layout=args.db_layout,
        db_arbitrator=args.db_arbitrator,
        profile=args.profile,
        only=tuple(args.only or ()),
        seed=args.seed,
        ports=free_ports,
        gray=args.gray,
        on=engine_from_args(args),
    )
    emit(args, result.to_dict(), matrix.table(result))
    print(f"wrote {result.run_dir / 'matrix.md'} and matrix.json", file=sys.stderr)
    matrix.require_pass(result)
    return 0
