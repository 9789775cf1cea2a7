"""The run history: what clients, probes and the nemesis observed, one JSON object a line.

Four record kinds, all with `t0`/`t1` in epoch seconds (`time.time()` of the host, whose clock
the containers share):

- `request`: one client request as Locust saw it (`t0` sent, `t1` answered or failed);
- `probe`: one observation of one node by the harness (`/ping` status, HA state, ZooKeeper mode);
- `fault`: one fault, from the moment it was applied (`t0`) to the moment it was healed (`t1`);
- `ack`: a ledger entry, one acknowledged write (kept in `ledger.jsonl`, see below).

A run directory holds `history.jsonl` (requests, probes, faults) and `ledger.jsonl` (acks).
Load generators write per-process files under `parts/` (no contention between Locust workers)
which `merge_parts` appends to the two main files after the run; `load_run` reads all of them, so
a run that died before the merge is still readable.

Files are append-only. Every record is one `write(2)` of one line on an `O_APPEND` descriptor
under an exclusive `flock`, so lines of concurrent threads and processes never interleave and a
crash leaves at most one torn line, which readers skip and count.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

HISTORY_FILE = "history.jsonl"
LEDGER_FILE = "ledger.jsonl"
PARTS_DIR = "parts"


_R = TypeVar("_R", bound="_Record")


class _Record:
    """to_dict/from_dict shared by the record dataclasses; `kind` is a class constant."""

    kind: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass
    t0: float  # every record has these (declared by each dataclass)
    t1: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls: type[_R], d: Mapping[str, Any]) -> _R:
        """Unknown keys are ignored, so older readers accept records with fields added later."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class RequestRecord(_Record):
    kind: ClassVar[str] = "request"
    t0: float
    t1: float
    method: str
    name: str  # Locust's request name, e.g. "/v1/projects/[id]"
    status: int  # HTTP status; 0 when no response came back (refused, reset, timeout)
    ok: bool  # what the client counted as a success
    node: str | None = None  # X-Rancher-Node of the response, None without one
    error: str | None = None
    write: bool = False
    idempotent: bool = True
    resource_id: str | None = None
    uuid: str | None = None
    worker: str = ""


@dataclass(frozen=True)
class ProbeRecord(_Record):
    kind: ClassVar[str] = "probe"
    t0: float
    t1: float
    node: str
    ping: int | None  # HTTP status of the node's own /ping answer; None when the node was unreachable
    state: str | None = None  # HA state from status.json: starting, active, degraded
    zk_mode: str | None = None  # leader, follower, standalone; None when unknown

    @property
    def active(self) -> bool:
        """The node said it is active: the only observation that it may acknowledge writes."""
        return self.ping == 200


@dataclass(frozen=True)
class FaultRecord(_Record):
    kind: ClassVar[str] = "fault"
    t0: float  # applied
    t1: float  # healed
    fault: str  # e.g. "kill", "pause", "split"
    targets: tuple[str, ...]
    id: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON gives lists; keep the record immutable and comparable either way.
        object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class LedgerEntry(_Record):
    """An acknowledged write: the client got a 2xx for it."""

    kind: ClassVar[str] = "ack"
    t0: float  # request sent
    t1: float  # acknowledgement received
    op: str  # create, update, delete
    type: str  # gdapi type: project, environment, service, host, ...
    id: str | None  # the API id (None if the response carried none)
    uuid: str  # client-chosen for creates, the resource's for updates/deletes
    node: str | None  # X-Rancher-Node of the acknowledgement
    value: str | None = None  # the name an update set, so the checker can see it applied
    worker: str = ""


Record = RequestRecord | ProbeRecord | FaultRecord | LedgerEntry
_KINDS: dict[str, type[Record]] = {c.kind: c for c in (RequestRecord, ProbeRecord, FaultRecord, LedgerEntry)}


def record_from_dict(d: Mapping[str, Any]) -> Record:
    try:
        cls = _KINDS[d["kind"]]
    except KeyError:
        raise ValueError(f"not a history record (kind={d.get('kind')!r})") from None
    return cls.from_dict(d)


class JsonlWriter:
    """Append records to one JSONL file; safe across threads, processes and forks.

    The descriptor is opened lazily per process id, so a writer created before Locust forks its
    workers never shares a descriptor with them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def append(self, record: Record) -> None:
        self.write_lines([json.dumps(record.to_dict(), separators=(",", ":"))])

    def extend(self, records: Iterable[Record]) -> None:
        self.write_lines(json.dumps(r.to_dict(), separators=(",", ":")) for r in records)

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append already-encoded lines (without newlines) under one lock."""
        data = "".join(line + "\n" for line in lines).encode()
        if not data:
            return
        with self._lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it all at once; loop for correctness anyway
                    view = view[os.write(fd, view) :]
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[Record], int]:
    """The records of one file and the number of lines skipped as torn or foreign."""
    records: list[Record] = []
    skipped = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(record_from_dict(json.loads(line)))
            except (ValueError, TypeError):
                skipped += 1
    return records, skipped


@dataclass(frozen=True)
class History:
    """Everything recorded in one run directory, each kind sorted by t0."""

    requests: tuple[RequestRecord, ...] = ()
    probes: tuple[ProbeRecord, ...] = ()
    faults: tuple[FaultRecord, ...] = ()
    acks: tuple[LedgerEntry, ...] = ()
    skipped_lines: int = 0

    @classmethod
    def of(cls, records: Iterable[Record], skipped_lines: int = 0) -> History:
        by_kind: dict[type, list[Any]] = {c: [] for c in _KINDS.values()}
        for r in records:
            by_kind[type(r)].append(r)
        key = lambda r: (r.t0, r.t1)  # noqa: E731
        return cls(
            requests=tuple(sorted(by_kind[RequestRecord], key=key)),
            probes=tuple(sorted(by_kind[ProbeRecord], key=key)),
            faults=tuple(sorted(by_kind[FaultRecord], key=key)),
            acks=tuple(sorted(by_kind[LedgerEntry], key=key)),
            skipped_lines=skipped_lines,
        )

    @property
    def span(self) -> tuple[float, float] | None:
        """First t0 and last t1 over every record, None for an empty history."""
        every = [*self.requests, *self.probes, *self.faults, *self.acks]
        if not every:
            return None
        return min(r.t0 for r in every), max(r.t1 for r in every)


def write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> None:
    """Replace a run directory's JSON file (summary, snapshot, ...) atomically; `indent=None` for
    long series."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str))
    tmp.replace(path)


def _parts(run_dir: Path) -> list[Path]:
    return sorted((run_dir / PARTS_DIR).glob("*.jsonl"))


def load_run(run_dir: str | os.PathLike[str]) -> History:
    """Read history, ledger and any unmerged per-process parts of a run directory."""
    records: list[Record] = []
    skipped = 0
    run = Path(run_dir)
    for path in [p for p in (run / HISTORY_FILE, run / LEDGER_FILE) if p.exists()] + _parts(run):
        got, bad = read_jsonl(path)
        records.extend(got)
        skipped += bad
    return History.of(records, skipped)


def part_paths(parts_dir: str | os.PathLike[str], worker: str) -> tuple[Path, Path]:
    """The (history, ledger) files one load process writes."""
    d = Path(parts_dir)
    return d / f"history-{worker}.jsonl", d / f"ledger-{worker}.jsonl"


def count_path(parts_dir: str | os.PathLike[str], worker: str) -> Path:
    """What a Locust worker on a swarm host says it recorded (loadtests/recording.py), beside its parts."""
    return Path(parts_dir) / f"count-{worker}.json"


def merge_parts(run_dir: str | os.PathLike[str]) -> int:
    """Append every part file to history.jsonl / ledger.jsonl and remove it; returns records moved.

    Appending (under the same lock the writers take) keeps other writers of history.jsonl, such
    as a probe loop still running, safe. Readers sort, so order in the file does not matter.
    """
    run = Path(run_dir)
    moved = 0
    history, ledger = JsonlWriter(run / HISTORY_FILE), JsonlWriter(run / LEDGER_FILE)
    with history, ledger:
        for part in _parts(run):
            records, _ = read_jsonl(part)
            acks = [r for r in records if isinstance(r, LedgerEntry)]
            history.extend(r for r in records if not isinstance(r, LedgerEntry))
            ledger.extend(acks)
            moved += len(records)
            part.unlink()
    return moved
