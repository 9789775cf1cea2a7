"""`halab backup`, `halab restore`: a consistent backup of a running lab's database and its load
into a new lab, checked against the history of the load that ran meanwhile (lab.cluster.backup,
lab.record.restored)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli.common import AddCommand, add_lab_name, add_topology_options, emit, topology_from_args
from lab.core.errors import BadInput

if TYPE_CHECKING:
    from lab.cluster.backup import Manifest
    from lab.cluster.topology import Topology
    from lab.record.restored import RestoreCheck

log = logging.getLogger("halab.cli.backup")


def cmd_backup(args: argparse.Namespace) -> int:
    from lab.cluster import backup, docker, state

    docker.require_docker()
    t = state.load_topology(args.name)
    m, folder = backup.take(t, Path(args.out) if args.out else None)
    emit(
        args,
        m.to_dict() | {"dir": str(folder)},
        f"backup of {m.lab} ({m.method} from {m.member}, {m.size} bytes"
        + (f", seqno {m.seqno}" if m.seqno is not None else "")
        + f", began {m.db_started_utc} UTC by the database's clock) in {folder}\n"
        f"restore it with: halab restore --name NEWLAB --from {folder}",
    )
    return 0


def run_dir_of(path: str, option: str) -> Path:
    if not Path(path).is_dir():
        raise BadInput(f"{option}: {path} is not a run directory (halab load writes one under runs/)")
    return Path(path)


def verify(t: Topology, m: Manifest, run_dir: Path) -> RestoreCheck:
    """Check the lab's restored rows against a run's history (the load during the backup)."""
    from lab.chaos.judge import lab_query
    from lab.record.history import load_run
    from lab.record.registers import load_keys
    from lab.record.restored import check_restored, fetch_restored

    history = load_run(run_dir)
    return check_restored(history, fetch_restored(lab_query(t), history), m.started_at, load_keys(run_dir))


def cmd_restore(args: argparse.Namespace) -> int:
    from functools import partial

    from lab.cluster import backup, lifecycle

    folder = Path(getattr(args, "from"))
    m = backup.read(folder)
    t = topology_from_args(args)
    backup.check_target(t, m)
    run_dir = run_dir_of(args.check, "--check") if args.check else None  # refused before a lab starts
    ep = lifecycle.up(t, timeout=args.timeout, before_nodes=partial(backup.load, folder=folder))
    lines = [f"lab {t.lab!r} is up on the backup of {m.lab} taken at {m.db_started_utc} UTC", *ep.lines()]
    if run_dir is None:
        emit(args, {"lab": t.lab, "backup": m.to_dict()}, "\n".join(lines))
        return 0
    found = verify(t, m, run_dir)
    emit(args, {"lab": t.lab, "backup": m.to_dict(), "check": found.to_dict()}, "\n".join(lines + found.lines()))
    return 0 if found.passed else 3


def cmd_check_backup(args: argparse.Namespace) -> int:
    from lab.cluster import backup, docker, state

    docker.require_docker()
    m = backup.read(Path(getattr(args, "from")))
    found = verify(state.load_topology(args.name), m, run_dir_of(args.run, "--run"))
    emit(args, found.to_dict(), "\n".join(found.lines()))
    return 0 if found.passed else 3


def add_commands(command: AddCommand) -> None:
    sp = command(
        "backup",
        cmd_backup,
        "take a consistent backup of a running lab's database (mariadb-dump --single-transaction), load may run",
    )
    add_lab_name(sp)
    sp.add_argument("--out", help="folder for dump.sql and manifest.json (default: a new runs/<time>-backup-<lab>/)")

    sp = command(
        "restore",
        cmd_restore,
        "start a new lab (same database kind) on a backup; with --check, check it against the load's history "
        "(exit 3: a write acknowledged before the backup is missing, or a row was never written)",
    )
    add_topology_options(sp)
    sp.add_argument("--from", required=True, metavar="DIR", help="a folder written by halab backup")
    sp.add_argument("--check", metavar="RUN_DIR", help="the run directory of the load that ran during the backup")
    sp.add_argument("--timeout", type=float, help="seconds to wait for health (as halab up)")

    sp = command(
        "check-backup",
        cmd_check_backup,
        "check a lab restored with halab restore against the load's history (exit 3 when the check fails)",
    )
    add_lab_name(sp)
    sp.add_argument("--from", required=True, metavar="DIR", help="the backup the lab was restored from")
    sp.add_argument("--run", required=True, metavar="RUN_DIR", help="the run directory of the load during the backup")
