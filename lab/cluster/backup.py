"""`halab backup` and `halab restore`: a consistent backup of a running lab's database, taken while
load runs, and its load into a new lab before that lab's nodes start (docs/galera.md, "Backups").

The method is a logical dump, `mariadb-dump --single-transaction`, read from a member that is
Synced in the Primary Component and, when another is, not the front's writer (a single database:
from `db`). Why a dump and not mariabackup: the lab's database is megabytes, so a dump takes well
under a second; it works the same for a single MariaDB and for Galera; it takes no global lock
(no --master-data), so writers never wait, and it does not desync the member; its restore is SQL
through the ordinary path, so one load into one member reaches every member by replication, where
mariabackup's files would have to be prepared and copied into each member's volume before the
cluster starts. What a dump costs at scale (a logical re-insert, time linear in the rows) does not
matter at this size.

Consistency: InnoDB's snapshot, taken when the dump's transaction starts. Before it, the member
answers a causal read (`wsrep_sync_wait = 1`), which returns only once it has applied every write
set the cluster committed before the read began. The harness's clock is read before that read, so
every write acknowledged before `started_at` is in the snapshot, even on a member that applies the
writer's write sets a moment after the writer acknowledged them.

Not in the backup: the rows of `cluster` (its structure is): they are the servers' own
registrations (heartbeats, ZooKeeper slots) of the source lab; a restored lab has other servers,
which register themselves when they start.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lab.cluster import docker, engine, galera_life, probes
from lab.cluster.compose import DB_NAME
from lab.cluster.topology import Topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.record.checker import db_value
from lab.record.load import make_run_dir

log = logging.getLogger("halab.cluster.backup")

MANIFEST = "manifest.json"
DUMP = "dump.sql"
METHOD = "mariadb-dump --single-transaction"
DUMP_TIMEOUT = 600.0  # seconds: the dump of the lab's database takes well under one
RUNTIME_TABLES = ("cluster",)  # structure only: the source lab's servers' registrations
_DUMP = (
    "mariadb-dump",
    "--protocol=socket",
    "--single-transaction",  # InnoDB's consistent snapshot, no FLUSH TABLES WITH READ LOCK
    "--quick",
    "--skip-lock-tables",
    "--skip-add-locks",  # LOCK TABLES is not replicated by Galera; the restore needs none
    *(f"--ignore-table-data={DB_NAME}.{t}" for t in RUNTIME_TABLES),
    DB_NAME,
)
# The database's clock and position at the moment the dump begins; seqno is NULL without wsrep.
_MARK = (
    "SELECT UNIX_TIMESTAMP(NOW(6)) AS db_epoch, UTC_TIMESTAMP(6) AS db_utc, @@gtid_current_pos AS gtid, "
    "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LAST_COMMITTED') "
    "AS seqno"
)


@dataclass(frozen=True)
class Manifest:
    """What `halab backup` wrote and when it began, by the harness's clock and the database's."""

    lab: str
    db: str  # the source lab's database kind: single or galera
    members: int
    member: str  # where the dump was read: `db`, or a Galera member
    writer: str | None  # the member the front served writes from (Galera), for the record
    method: str
    started_at: float  # time.time() of the harness, read before the snapshot began
    db_started_at: float  # the database's clock (epoch seconds) just before the snapshot began
    db_started_utc: str
    gtid: str  # @@gtid_current_pos ('' without a binary log)
    seqno: int | None  # wsrep_last_committed of the member then: every write set up to it is in
    finished_at: float
    size: int  # bytes of the dump

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Manifest:
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise BadInput(f"--from: {where} is not a backup manifest (no {', '.join(missing)})")
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def source(t: Topology) -> tuple[str, str | None]:
    """(member to dump, the front's writer): `db` for a single database; for Galera a member Synced
    in the Primary Component, one that is not the writer when there is one."""
    if not t.db.galera:
        return "db", None
    writer = galera_life.front_target(t)
    ready = [m for m in t.db.member_names if galera_life.member_problem(t, m) is None]
    if not ready:
        raise RuntimeFailure(
            f"no member of {t.lab}'s database is Synced in the Primary Component; see `halab status --name {t.lab}`"
        )
    return next((m for m in ready if m != writer), ready[0]), writer


def _exec(t: Topology, service: str, *command: str) -> list[str]:
    where = engine.place(t, service)
    return where.command("exec", "-i", where.container, *command)


def take(t: Topology, out: Path | None = None) -> tuple[Manifest, Path]:
    """Back the lab's database up into `out`; return the manifest and the folder. The default is a
    new run directory, runs/<time>-backup-<lab>, not the lab's state directory: `halab down`
    removes that, and a backup must outlive its lab."""
    if t.db_image:
        raise BadInput(f"halab backup: lab {t.lab!r} runs HALAB_DB_IMAGE={t.db_image}; only the lab's own images dump")
    member, writer = source(t)
    if out is not None and out.exists() and any(out.iterdir()):
        raise BadInput(f"--out: {out} is not empty; name a new folder")
    folder = out or make_run_dir(f"backup-{t.lab}")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    causal = "SET SESSION wsrep_sync_wait = 1; " if t.db.galera else ""
    mark = probes.query_in(t, member, causal + _MARK, timeout=30)[0]
    log.info(f"backup of {t.lab}: dumping from {member}" + (f" (the front writes to {writer})" if writer else ""))
    text = docker.run(_exec(t, member, *_DUMP), f"dump {t.lab}'s database from {member}", timeout=DUMP_TIMEOUT)
    (folder / DUMP).write_text(text)
    seqno = db_value(mark.get("seqno"))
    manifest = Manifest(
        lab=t.lab,
        db=t.db.kind,
        members=t.db.members,
        member=member,
        writer=writer,
        method=METHOD,
        started_at=started,
        db_started_at=float(mark["db_epoch"]),
        db_started_utc=mark["db_utc"],
        gtid=db_value(mark.get("gtid")) or "",
        seqno=int(seqno) if seqno else None,
        finished_at=time.time(),
        size=(folder / DUMP).stat().st_size,
    )
    (folder / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest, folder


def read(folder: Path) -> Manifest:
    """The manifest of a backup folder; BadInput naming --from when it is not one."""
    path = folder / MANIFEST
    if not path.is_file() or not (folder / DUMP).is_file():
        raise BadInput(f"--from: {folder} holds no backup ({MANIFEST} and {DUMP}); make one with `halab backup`")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"--from: {path} is not valid JSON: {exc}") from None
    return Manifest.from_dict(data, str(path))


def check_target(t: Topology, m: Manifest) -> None:
    """A backup restores into a lab of the same database kind, on this machine's Docker."""
    if t.db.kind != m.db:
        raise BadInput(
            f"--db: the backup is of a {m.db} database (lab {m.lab}); restore it into a lab started with "
            f"--db {m.db if m.db != 'galera' else f'galera:{m.members}'}"
        )
    if t.engine.swarm:
        raise BadInput("--engine: halab restore runs on the compose engine only")
    if t.db_image:
        raise BadInput(f"halab restore: HALAB_DB_IMAGE={t.db_image} is set; restore into the lab's own images")


def load(t: Topology, folder: Path) -> None:
    """Load the dump into the lab's database (its nodes not started yet): in `db`, or in the first
    Galera member, from which replication carries it to the others."""
    target = t.db.member_names[0] if t.db.galera else "db"
    started = time.monotonic()
    docker.run(
        _exec(t, target, "labsql", DB_NAME),
        f"load {folder / DUMP} into {t.lab}'s {target}",
        input=(folder / DUMP).read_text(),
        timeout=DUMP_TIMEOUT,
    )
    log.info(f"  restored {folder / DUMP} into {target} in {time.monotonic() - started:.1f} s")
