"""`halab capacity`: where a sizing breaks, measured. A grid over node heap (`-Xmx`, the node's
container memory limit derived from it), pool size per node, the database's `max_connections`,
memory and buffer pool, cluster size and load (Locust users); one fresh lab per grid point.

Per point: throughput of successful requests, latency percentiles, errors by kind, connections in
use at the database (its own `SHOW GLOBAL STATUS` counters, sampled during the load), memory per
container (`docker stats`, sampled during the load), and what became of each node (out-of-memory
exit, kernel OOM kill, degraded by memory). Output: `capacity.json`, `capacity.md` (table,
saturation points, sizing recommendation beside the guide's rules, the heap model's scaling) and
`plots/*.png`.

Grid file (YAML; every key optional):

    settings: {duration: 15s, spawn_rate: 10, think_time: "0.1,0.5", heap_scale: 32, pool_wait_ms: 2000,
               up_timeout: 180, point_timeout: 400, max_error_rate: 0.01, target_users: 20}
    base:     {nodes: 3, heap: 1g, pool_size: 50, db_max_connections: auto, db_memory: 1024,
               db_buffer_pool: 256, users: 10}
    grid:     {db_max_connections: [60, 160], users: [10, 30]}   # every combination, over base
    points:   [{heap: 32m, users: 30}]                            # extra single points, over base

Command-line lists (`--heap 32m,1g`) replace the file's grid entry of that dimension.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from lab import history
from lab import yamlspec as y
from lab.errors import BadInput, LabError, RuntimeFailure
from lab.history import RequestRecord
from lab.server.config import Config as NodeConfig
from lab.server.heap import CACHE_SHARE, GC_THRESHOLD
from lab.topology import (DEFAULT_HEAP_SCALE, GUIDE_POOL_PER_NODE, Ports, Sizing, Topology, make_topology,
                          parse_size)

Say = Callable[[str], None]

DIMENSIONS = ("nodes", "heap", "pool_size", "db_max_connections", "db_memory", "db_buffer_pool", "users")
DIMENSION_TITLES = {
    "nodes": "cluster size (nodes)",
    "heap": "node heap -Xmx (MiB, modelled)",
    "pool_size": "pool size per node",
    "db_max_connections": "database max_connections",
    "db_memory": "database memory (MiB)",
    "db_buffer_pool": "InnoDB buffer pool (MiB)",
    "users": "load (Locust users)",
}
FLAGS = {d: "--" + d.replace("_", "-") for d in DIMENSIONS}
LOAD_DIMENSION = "users"
MAX_POINTS = 40  # each point is a fresh lab: keep sweeps small on a shared machine
# A resource series has levelled off where its throughput is within this fraction of its best.
PLATEAU = 0.10
# Load saturates where a step up in users buys less than this share of proportional throughput.
SCALING = 0.5
# Error kinds, from what the client saw. client_4xx is the workload's own business (a conflict,
# a vanished resource), not capacity, so it is shown but not counted in the error rate.
ERROR_KINDS = ("too_many_connections", "pool_wait_timeout", "server_5xx", "no_response", "other", "client_4xx")
CAPACITY_ERROR_KINDS = ERROR_KINDS[:-1]
DB_COUNTERS = ("Threads_connected", "Max_used_connections", "Connection_errors_max_connections",
               "Aborted_connects")
OOM_LOG_LINE = "java.lang.OutOfMemoryError: Java heap space"
SAMPLE_INTERVAL = 2.0  # seconds between samples of the database's counters and Docker stats
NODE_POLL_INTERVAL = 0.25  # seconds between polls of each node's heap gauges (cheap HTTP)
GUIDE_RULES = (
    "MySQL with at least 1 GB of RAM",
    f"{GUIDE_POOL_PER_NODE} database connections per Rancher server node (150 for 3 nodes)",
    "a 4 GB or 8 GB heap per node for larger deployments, on 8 GB or 16 GB of RAM",
)


# ===================================================================================== the grid

@dataclass(frozen=True)
class Point:
    """One grid point: a lab's sizing and the load put on it."""

    nodes: int = 3
    heap: str = "1g"  # the -Xmx of CATTLE_JAVA_OPTS
    pool_size: int = GUIDE_POOL_PER_NODE
    db_max_connections: int | None = None  # None: the lab's default, nodes x pool + harness
    db_memory: int = 1024
    db_buffer_pool: int = 256
    users: int = 10

    @property
    def heap_mib(self) -> float:
        return parse_size(self.heap, "heap") / 1024**2

    def label(self, dims: Iterable[str] = DIMENSIONS) -> str:
        short = {"nodes": "n", "heap": "xmx", "pool_size": "pool", "db_max_connections": "maxconn",
                 "db_memory": "dbmem", "db_buffer_pool": "bp", "users": "u"}
        return "-".join(f"{short[d]}{'auto' if getattr(self, d) is None else getattr(self, d)}" for d in dims) or "base"

    def topology(self, lab: str, ports: Ports, settings: Settings) -> Topology:
        return make_topology(self.nodes, lab=lab, ports=ports, sizing=Sizing(
            pool_size=self.pool_size, pool_wait_ms=settings.pool_wait_ms, java_opts=f"-Xmx{self.heap}",
            heap_scale=settings.heap_scale, db_max_connections=self.db_max_connections,
            db_memory_mib=self.db_memory, db_buffer_pool_mib=self.db_buffer_pool))


@dataclass(frozen=True)
class Settings:
    duration: float = 20.0  # seconds of load per point
    spawn_rate: float = 10.0
    think_time: str = "0.1,0.5"  # seconds between one API user's requests (HALAB_WAIT)
    heap_scale: int = DEFAULT_HEAP_SCALE
    pool_wait_ms: int = 2000
    up_timeout: float = 180.0
    point_timeout: float | None = None  # None: up_timeout + the load's own hard timeout + 60 s
    max_error_rate: float = 0.01
    target_users: int | None = None  # None: the largest load of the grid

    @property
    def hard_timeout(self) -> float:
        from lab.load import REPORT_GRACE, STARTUP_GRACE

        if self.point_timeout is not None:
            return self.point_timeout
        return self.up_timeout + STARTUP_GRACE + self.duration + REPORT_GRACE + 60


@dataclass(frozen=True)
class Grid:
    settings: Settings
    points: tuple[Point, ...]

    @property
    def swept(self) -> tuple[str, ...]:
        """Dimensions that take more than one value across the points, in DIMENSIONS order."""
        return tuple(d for d in DIMENSIONS if len({getattr(p, d) for p in self.points}) > 1)

    @property
    def target_users(self) -> int:
        return self.settings.target_users or max(p.users for p in self.points)


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise BadInput(f"{where}: {value!r} is not a whole number")
    n = int(value)
    if n < low:
        raise BadInput(f"{where}: {n} must be at least {low}")
    return n


def _heap(value: Any, where: str) -> str:
    text = str(value).strip().lower()
    if parse_size(text, where) < 1024**2:
        raise BadInput(f"{where}: {value!r} is not a heap size of at least 1m, like 64m or 4g")
    return text


def _nodes(value: Any, where: str) -> int:
    return make_topology(value, where=where).size  # its message lists the supported sizes


def _max_connections(value: Any, where: str) -> int | None:
    if value is None or str(value).strip().lower() == "auto":
        return None
    return _int(value, where, 1)


_FIELD_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "nodes": _nodes,
    "heap": _heap,
    "pool_size": lambda v, w: _int(v, w, 1),
    "db_max_connections": _max_connections,
    "db_memory": lambda v, w: _int(v, w, 64),  # MariaDB does not start in less
    "db_buffer_pool": lambda v, w: _int(v, w, 5),  # InnoDB's minimum
    "users": lambda v, w: _int(v, w, 1),
}


def _number(value: Any, where: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInput(f"{where}: {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise BadInput(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x) or (x <= 0 if positive else x < 0):
        raise BadInput(f"{where}: {value!r} must be a {'positive' if positive else 'non-negative'} finite number")
    return x


def _think_time(value: Any, where: str) -> str:
    parts = str(value).split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise BadInput(f"{where}: {value!r} is not MIN,MAX seconds, like 0.1,0.5") from None
    if not 0 <= low <= high or not math.isfinite(high):
        raise BadInput(f"{where}: {value!r} needs 0 <= MIN <= MAX")
    return f"{low:g},{high:g}"


def _rate(value: Any, where: str) -> float:
    x = _number(value, where, positive=False)
    if x >= 1:
        raise BadInput(f"{where}: {value!r} is a fraction of requests, like 0.01 for 1%")
    return x


def _seconds(value: Any, where: str) -> float:
    return y.duration(value, where, minimum=1.0)


_SETTING_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "duration": _seconds,
    "spawn_rate": _number,
    "think_time": _think_time,
    "heap_scale": lambda v, w: _int(v, w, 1),
    "pool_wait_ms": lambda v, w: _int(v, w, 0),
    "up_timeout": _seconds,
    "point_timeout": _seconds,
    "max_error_rate": _rate,
    "target_users": lambda v, w: _int(v, w, 1),
}


def _mapping(value: Any, where: str, known: Iterable[str]) -> dict[str, Any]:
    return {} if value is None else y.mapping(value, where, optional=known)


def _point(values: Any, base: Point, where: str) -> Point:
    return replace(base, **{k: _FIELD_PARSERS[k](v, y.sub(where, k))
                            for k, v in _mapping(values, where, DIMENSIONS).items()})


def parse_flag_list(flag: str, text: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise BadInput(f"{flag}: {text!r} is not a comma-separated list of values, like 32m,1g")
    return items


def build_grid(doc: Any = None, source: str = "grid", flags: Mapping[str, str | None] | None = None,
               flag_settings: Mapping[str, Any] | None = None) -> Grid:
    """A validated grid from a parsed grid file (`doc`, named `source` in errors) and flags.

    `flags` maps dimension -> comma list as typed (`--heap 32m,1g`), `flag_settings` setting ->
    value; both override the file. Errors name the file and field (or the flag) and the fix."""
    top = y.at(source)
    doc = _mapping(doc, top, ("settings", "base", "grid", "points"))
    where = y.sub(top, "settings")
    settings = Settings(**{k: _SETTING_PARSERS[k](v, y.sub(where, k))
                           for k, v in _mapping(doc.get("settings"), where, _SETTING_PARSERS).items() if v is not None})
    settings = settings_with(settings, flag_settings or {})
    base = _point(doc.get("base"), Point(), y.sub(top, "base"))
    where = y.sub(top, "grid")
    axes: dict[str, list[Any]] = {}
    for d, values in _mapping(doc.get("grid"), where, DIMENSIONS).items():
        axes[d] = [_FIELD_PARSERS[d](v, y.sub(y.sub(where, d), i))
                   for i, v in enumerate(y.sequence(values, y.sub(where, d)))]
    for d, text in (flags or {}).items():
        if text is not None:
            axes[d] = [_FIELD_PARSERS[d](v, FLAGS[d]) for v in parse_flag_list(FLAGS[d], text)]
    points = [replace(base, **dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]
    where = y.sub(top, "points")
    extra = y.sequence(doc.get("points") or [], where, allow_empty=True)
    points += [_point(p, base, y.sub(where, i)) for i, p in enumerate(extra)]
    points = list(dict.fromkeys(points))  # a point listed twice is measured once
    if len(points) > MAX_POINTS:
        raise BadInput(f"{source}: {len(points)} grid points, more than {MAX_POINTS}; each is a fresh lab: "
                       f"sweep fewer values per dimension or split the grid")
    grid = Grid(settings, tuple(points))
    check_target(settings, points)
    if settings.point_timeout is not None and settings.point_timeout <= settings.duration:
        raise BadInput(f"--point-timeout: {settings.point_timeout:g} s must exceed the load's "
                       f"{settings.duration:g} s (plus the lab's start)")
    return grid


def settings_with(settings: Settings, flag_settings: Mapping[str, Any]) -> Settings:
    """Settings with the flags that were given (not None) laid over, validated and named as flags."""
    given = {k: v for k, v in flag_settings.items() if v is not None}
    return replace(settings, **{k: _SETTING_PARSERS[k](v, f"--{k.replace('_', '-')}") for k, v in given.items()})


def check_target(settings: Settings, points: Iterable[Point]) -> None:
    loads = sorted({p.users for p in points})
    if settings.target_users is not None and settings.target_users not in loads:
        raise BadInput(f"--target-users: {settings.target_users} is not a load of the grid (users: "
                       f"{', '.join(map(str, loads))}); pick one of them")


# =============================================================================== measurements

@dataclass(frozen=True)
class LoadFigures:
    requests: int
    ok: int
    seconds: float
    throughput: float  # successful requests per second
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: Mapping[str, int]  # ERROR_KINDS -> count

    @property
    def capacity_errors(self) -> int:
        return sum(self.errors.get(k, 0) for k in CAPACITY_ERROR_KINDS)

    @property
    def error_rate(self) -> float:
        return self.capacity_errors / self.requests if self.requests else 1.0


@dataclass(frozen=True)
class DbFigures:
    max_connections: int | None  # as the server reports it (SHOW GLOBAL VARIABLES)
    peak_threads_connected: int | None  # highest sampled during the load
    max_used_connections: int | None  # the server's own high-water mark since the lab started
    refused_connections: int | None  # Connection_errors_max_connections: refused for max_connections
    aborted_connects: int | None
    samples: int


@dataclass(frozen=True)
class NodeOutcome:
    name: str
    outcome: str  # one of NODE_OUTCOMES
    exit_code: int | None
    peak_heap_pressure: float | None  # used / budget of the modelled heap, highest seen
    was_degraded: bool = False  # seen degraded by memory at some poll (before dying, if it died)

    @property
    def killed(self) -> bool:
        return self.outcome in ("killed: OutOfMemoryError", "killed by the kernel (OOM)")


NODE_OUTCOMES = ("ok", "degraded by memory", "killed: OutOfMemoryError", "killed by the kernel (OOM)", "exited")


@dataclass(frozen=True)
class Measurement:
    point: Point
    max_connections: int  # the value the lab asked for (the point's, or the lab's default)
    node_memory_limit_mib: int
    preflight: tuple[str, ...]  # "<check>: <message>" for what pre-flight found short of the guide
    status: str  # "measured", "did not start" or "timed out"
    detail: str = ""
    load: LoadFigures | None = None
    db: DbFigures | None = None
    nodes: tuple[NodeOutcome, ...] = ()
    memory_peak_mib: Mapping[str, float] = field(default_factory=dict)  # service -> highest sampled
    run_dir: str = ""

    @property
    def effective_max_connections(self) -> int:
        """What the database really allows: it may round the asked value (MariaDB's floor is 10)."""
        return self.db.max_connections if self.db and self.db.max_connections else self.max_connections

    @property
    def oom_kills(self) -> int:
        return sum(n.killed for n in self.nodes)

    @property
    def error_rate(self) -> float:
        return self.load.error_rate if self.load else 1.0

    @property
    def throughput(self) -> float:
        return self.load.throughput if self.load else 0.0

    def passed(self, max_error_rate: float) -> bool:
        return self.status == "measured" and self.error_rate <= max_error_rate and not self.oom_kills

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        """From to_dict's output; keys report_data adds beside the fields (label, ...) are ignored."""
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        return cls(**{**d, "point": Point(**d["point"]), "preflight": tuple(d["preflight"]),
                      "load": LoadFigures(**d["load"]) if d.get("load") else None,
                      "db": DbFigures(**d["db"]) if d.get("db") else None,
                      "nodes": tuple(NodeOutcome(**n) for n in d.get("nodes", ()))})


def error_kind(r: RequestRecord) -> str | None:
    """What kind of failure a request record is (None: it succeeded)."""
    if r.ok:
        return None
    text = r.error or ""
    if "TOO_MANY_CONNECTIONS" in text or "Too many connections" in text:
        return "too_many_connections"
    if "POOL_EXHAUSTED" in text:
        return "pool_wait_timeout"
    if r.status == 0:
        return "no_response"
    if r.status >= 500:
        return "server_5xx"
    if 400 <= r.status < 500:
        return "client_4xx"
    return "other"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def load_figures(requests: Sequence[RequestRecord]) -> LoadFigures:
    if not requests:
        return LoadFigures(0, 0, 0.0, 0.0, None, None, None, {k: 0 for k in ERROR_KINDS})
    seconds = max(r.t1 for r in requests) - min(r.t0 for r in requests)
    latencies = sorted((r.t1 - r.t0) * 1000 for r in requests)
    errors = {k: 0 for k in ERROR_KINDS}
    for r in requests:
        kind = error_kind(r)
        if kind:
            errors[kind] += 1
    ok = sum(r.ok for r in requests)
    return LoadFigures(len(requests), ok, round(seconds, 3), round(ok / seconds, 2) if seconds > 0 else 0.0,
                       *(None if (v := percentile(latencies, q)) is None else round(v, 1) for q in (50, 95, 99)),
                       errors=errors)


def node_outcome(name: str, state: Mapping[str, Any], log_text: str, degraded_seen: bool,
                 peak_pressure: float | None) -> NodeOutcome:
    """What became of a node: from `docker inspect`'s State, its log and the sampled memory state."""
    running = bool(state.get("Running"))
    code = None if running else state.get("ExitCode")
    if state.get("OOMKilled"):
        outcome = "killed by the kernel (OOM)"
    elif OOM_LOG_LINE in log_text:
        outcome = "killed: OutOfMemoryError"
    elif not running:
        outcome = "exited"
    elif degraded_seen:
        outcome = "degraded by memory"
    else:
        outcome = "ok"
    return NodeOutcome(name, outcome, code, peak_pressure, degraded_seen)


# ============================================================================ live measurement

_MEM_RE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?i?B)", re.IGNORECASE)
_MEM_UNITS = {"b": 1 / 1024**2, "kb": 1e3 / 1024**2, "kib": 1 / 1024, "mb": 1e6 / 1024**2, "mib": 1.0,
              "gb": 1e9 / 1024**2, "gib": 1024.0, "tb": 1e12 / 1024**2, "tib": 1024.0**2}


def parse_mem_usage(text: str) -> float | None:
    """`docker stats` MemUsage ("12.3MiB / 256MiB") -> MiB used."""
    m = _MEM_RE.match(text)
    return float(m.group(1)) * _MEM_UNITS[m.group(2).lower()] if m else None


_PROM_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {metric name: value summed over its label sets}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _PROM_RE.match(line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
            except ValueError:
                continue
    return out


# The node's /metrics gauges this module reads (lab/server/node.py).
METRIC_HEAP_PRESSURE = "cattle_heap_pressure"
METRIC_MEMORY_DEGRADED = "cattle_heap_memory_degraded"


class Sampler:
    """Samples taken during one point's load: database counters and container memory every
    SAMPLE_INTERVAL, each node's heap gauges every NODE_POLL_INTERVAL on a thread of its own (the
    heap's pressure moves with the requests in flight, so slow samples would miss its peaks).

    Every call is bounded by a short timeout and a failed sample is skipped, never fatal: a
    database at its connection limit or a node that just died is exactly what is being measured."""

    def __init__(self, t: Topology, path: Path) -> None:
        self.t = t
        self.path = path
        self.db: list[dict[str, int]] = []
        self.memory: dict[str, float] = {}
        self.pressure: dict[str, float] = {}
        self.degraded: set[str] = set()
        self._names = {f"{t.lab}-{s}-1": s for s in ("db", "lb", *t.node_names)}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_nodes, name="capacity-node-poller", daemon=True)

    def __enter__(self) -> Sampler:
        self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._poller.join()

    def _poll_nodes(self) -> None:
        while not self._stop.wait(NODE_POLL_INTERVAL):
            for node in self.t.node_names:
                self.node_memory(node)

    def take(self) -> None:
        sample: dict[str, Any] = {"t": time.time(), "db": self.db_status(), "memory_mib": self.container_memory(),
                                  "peak_heap_pressure": dict(self.pressure), "degraded": sorted(self.degraded)}
        if sample["db"]:
            self.db.append(sample["db"])
        for service, mib in sample["memory_mib"].items():
            self.memory[service] = max(self.memory.get(service, 0.0), mib)
        with self.path.open("a") as f:
            f.write(json.dumps(sample) + "\n")

    def db_status(self) -> dict[str, int]:
        from lab import probes

        names = ", ".join(f"'{c}'" for c in DB_COUNTERS)
        try:
            rows = probes.db_query(self.t, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})", timeout=5)
        except RuntimeFailure:
            return {}
        return {r["Variable_name"]: int(r["Value"]) for r in rows if r.get("Value", "").isdigit()}

    def db_max_connections(self) -> int | None:
        from lab import probes

        try:
            rows = probes.db_query(self.t, "SELECT @@GLOBAL.max_connections AS n", timeout=5)
        except RuntimeFailure:
            return None
        return int(rows[0]["n"]) if rows else None

    def container_memory(self) -> dict[str, float]:
        from lab import docker

        try:
            out = docker.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", *self._names],
                             "sample docker stats", timeout=15)
        except (RuntimeFailure, OSError):
            return {}
        found: dict[str, float] = {}
        for line in out.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            service, mib = self._names.get(row.get("Name", "")), parse_mem_usage(row.get("MemUsage", ""))
            if service and mib is not None:
                found[service] = round(mib, 1)
        return found

    def node_memory(self, node: str) -> None:
        from lab import probes

        res = probes.http_get("127.0.0.1", self.t.ports.mgmt, f"/node/{node}/metrics", timeout=1)
        if res.status != 200 or res.headers.get("x-rancher-node") != node:
            return
        metrics = parse_metrics(res.body.decode(errors="replace"))
        if METRIC_HEAP_PRESSURE in metrics:
            self.pressure[node] = max(self.pressure.get(node, 0.0), metrics[METRIC_HEAP_PRESSURE])
        if metrics.get(METRIC_MEMORY_DEGRADED):
            self.degraded.add(node)

    def db_figures(self, final: Mapping[str, int], max_connections: int | None) -> DbFigures:
        every = [*self.db, final] if final else self.db
        peak = max((s["Threads_connected"] for s in every if "Threads_connected" in s), default=None)
        return DbFigures(max_connections, peak, final.get("Max_used_connections"),
                         final.get("Connection_errors_max_connections"), final.get("Aborted_connects"), len(every))


def run_point(point: Point, settings: Settings, lab_name: str, point_dir: Path, say: Say) -> Measurement:
    """One grid point on a fresh lab, torn down on every path (Ctrl-C included)."""
    from lab import lab, preflight
    from lab.history import load_run
    from lab.load import LoadRun, LoadSpec

    deadline = time.monotonic() + settings.hard_timeout
    t = point.topology(lab_name, preflight.free_ports(), settings)
    short = tuple(f"{f.check}: {f.message}" for f in preflight.errors(preflight.check(t, include_ports=False)))
    made = dict(point=point, max_connections=t.db_max_connections, node_memory_limit_mib=t.node_mem_limit_mib,
                preflight=short, run_dir=str(point_dir))
    point_dir.mkdir(parents=True, exist_ok=True)

    def up_say(msg: str) -> None:
        if msg.startswith("  | "):  # the container logs `up` dumps when a start fails: kept, not shown
            with (point_dir / "lab-start.log").open("a") as f:
                f.write(msg[4:] + "\n")
        else:
            say("    " + msg.strip())

    try:
        try:
            lab.up(t, up_say, timeout=settings.up_timeout, allow_undersized=True)
        except RuntimeFailure as exc:  # an undersized lab that never got healthy is a result too
            return Measurement(**made, status="did not start", detail=f"{exc} (logs: {point_dir}/lab-start.log)")
        sampler = Sampler(t, point_dir / "samples.jsonl")
        spec = LoadSpec(name=point.label(), users=point.users, spawn_rate=settings.spawn_rate,
                        duration=settings.duration, http_port=t.ports.http, https_port=t.ports.https,
                        user_classes=("ApiUser",), env={"HALAB_WAIT": settings.think_time})
        load = LoadRun(spec, point_dir / "load", say=lambda m: say("    " + m))
        with load, sampler:
            while load.running and time.monotonic() < deadline:
                tick = time.monotonic() + SAMPLE_INTERVAL
                sampler.take()
                time.sleep(max(0.0, min(tick, deadline) - time.monotonic()))
            timed_out = load.running
        # After the load: the final counters, each node's fate.
        final = sampler.db_status()
        db = sampler.db_figures(final, sampler.db_max_connections())
        outcomes = _node_outcomes(t, sampler, point_dir)
        figures = load_figures(load_run(load.run_dir).requests)
        return Measurement(**made, status="timed out" if timed_out else "measured",
                           detail=f"point exceeded its {settings.hard_timeout:g} s timeout" if timed_out else "",
                           load=figures, db=db, nodes=outcomes, memory_peak_mib=dict(sampler.memory))
    finally:
        lab.down(t.lab)


def _node_outcomes(t: Topology, sampler: Sampler, point_dir: Path) -> tuple[NodeOutcome, ...]:
    """Each node's fate; the log tail of a node that died is kept as `<node>.log`, the evidence."""
    from lab import docker, lab

    containers = {c["Config"]["Labels"].get("com.docker.compose.service"): c
                  for c in docker.inspect(docker.labelled("container", t.lab))}
    out = []
    for node in t.node_names:
        state = containers.get(node, {}).get("State", {})
        log_text = ""
        if not state.get("Running"):
            log_text = lab.logs(t, (node,), tail=200)
            (point_dir / f"{node}.log").write_text(log_text)
        out.append(node_outcome(node, state, log_text, node in sampler.degraded, sampler.pressure.get(node)))
    return tuple(out)


def machine() -> dict[str, Any]:
    """The machine a sweep ran on, for the report."""
    from lab import docker

    try:
        with open("/proc/meminfo") as f:
            mem = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        mem_gib = round(mem / 1024**2, 1)
    except (OSError, StopIteration, ValueError):
        mem_gib = None
    try:
        engine = docker.run(["docker", "version", "--format", "{{.Server.Version}}"], "docker version",
                            timeout=20).strip()
    except LabError:
        engine = "unknown"
    return {"host": platform.node(), "cpus": os.cpu_count(), "memory_gib": mem_gib,
            "os": platform.platform(), "docker": engine, "python": platform.python_version()}


def sweep(grid: Grid, out_root: str | os.PathLike[str], name: str, say: Say) -> Path:
    """Run every point of the grid, one fresh lab at a time; write the report; return its folder.

    capacity.json is rewritten after each point, so an interrupted sweep keeps what it measured
    (`halab capacity --report DIR` renders it)."""
    from lab.load import make_run_dir

    directory = make_run_dir(f"capacity-{name}", out_root)
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    swept = grid.swept
    measurements: list[Measurement] = []
    for i, point in enumerate(grid.points, 1):
        say(f"[{i}/{len(grid.points)}] {point.label()} (hard timeout {grid.settings.hard_timeout:g} s)")
        m = run_point(point, grid.settings, f"{name}-{i}", directory / "points" / f"{i:02d}-{point.label(swept)}",
                      say)
        measurements.append(m)
        say(f"    {summary_line(m)}")
        write_json(directory, grid.settings, measurements, meta)
    write_report(directory, grid.settings, measurements, meta)
    return directory


# =================================================================================== analysis

def x_value(m: Measurement, dim: str) -> float:
    """A point's position on a dimension's axis (heap in MiB of -Xmx; max_connections as in effect)."""
    if dim == "heap":
        return m.point.heap_mib
    if dim == "db_max_connections":
        return float(m.effective_max_connections)
    return float(getattr(m.point, dim))


_X_TEXT = {
    "nodes": "{} node(s)", "heap": "-Xmx{}", "pool_size": "pool {}", "db_max_connections": "max_connections {}",
    "db_memory": "DB memory {} MiB", "db_buffer_pool": "buffer pool {} MiB", "users": "{} users",
}


def x_text(m: Measurement, dim: str) -> str:
    """A point's value on a dimension, in words: "-Xmx64m", "max_connections 100", "20 users"."""
    value = m.effective_max_connections if dim == "db_max_connections" else getattr(m.point, dim)
    return _X_TEXT[dim].format(value)


@dataclass(frozen=True)
class Saturation:
    dimension: str
    series: str  # the other swept settings of this line of points
    x: float | None  # where throughput levelled off; None when not within the sweep
    label: str  # that point's value as text
    throughput: float | None
    p95_ms: float | None
    note: str


def series_of(measurements: Sequence[Measurement], dim: str, swept: Sequence[str]) -> dict[str, list[Measurement]]:
    """Points grouped by their values on the other swept dimensions, each group sorted along dim."""
    others = [d for d in swept if d != dim]
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        key = ", ".join(x_text(m, d) for d in others) or "all points"
        groups.setdefault(key, []).append(m)
    return {k: sorted(v, key=lambda m: x_value(m, dim)) for k, v in groups.items() if len(v) > 1}


def saturation(series: Sequence[Measurement], dim: str, max_error_rate: float, name: str = "") -> Saturation:
    """Where throughput stops growing along dim (series sorted by dim).

    Load: the last number of users after which more users stopped buying throughput: the next
    step's throughput grew by less than SCALING of the load it added, or broke the error threshold
    or killed a node. Resource: the smallest value within PLATEAU of the best throughput among
    points under the error threshold, i.e. where more of it stopped helping."""
    if dim == LOAD_DIMENSION:
        return _load_saturation(series, max_error_rate, name)
    good = [m for m in series if m.passed(max_error_rate)]
    if not good:
        return Saturation(dim, name, None, "", None, None,
                          f"no point kept errors under {pct(max_error_rate)} without a node killed")
    best = max(m.throughput for m in good)
    first = next(m for m in good if m.throughput >= (1 - PLATEAU) * best)
    return _saturated_at(dim, name, first, "levels off from")


def _load_saturation(series: Sequence[Measurement], max_error_rate: float, name: str) -> Saturation:
    dim = LOAD_DIMENSION
    if not series[0].passed(max_error_rate):
        return Saturation(dim, name, None, "", None, None, f"past saturation already at {x_text(series[0], dim)}: "
                          f"errors above {pct(max_error_rate)} or a node killed")
    for prev, cur in zip(series, series[1:]):
        added = cur.point.users / prev.point.users - 1
        grew = cur.throughput / prev.throughput - 1 if prev.throughput else math.inf
        if not cur.passed(max_error_rate):
            return _saturated_at(dim, name, prev, "saturates at", f"; at {cur.point.users} users errors passed "
                                 f"{pct(max_error_rate)} or a node was killed")
        if grew < SCALING * added:
            return _saturated_at(dim, name, prev, "saturates at", f"; {cur.point.users} users added {added:.0%} "
                                 f"load for {grew:+.0%} throughput")
    return Saturation(dim, name, None, "", None, None,
                      f"not reached: throughput still grew with load up to {series[-1].point.users} users")


def _saturated_at(dim: str, name: str, m: Measurement, verb: str, why: str = "") -> Saturation:
    p95 = m.load.p95_ms if m.load else None
    return Saturation(dim, name, x_value(m, dim), x_text(m, dim), m.throughput, p95,
                      f"throughput {verb} {x_text(m, dim)} ({m.throughput:g} req/s, p95 "
                      f"{_num(p95)} ms){why}")


def saturations(measurements: Sequence[Measurement], swept: Sequence[str], max_error_rate: float) -> list[Saturation]:
    return [saturation(s, dim, max_error_rate, name) for dim in swept
            for name, s in series_of(measurements, dim, swept).items()]


def failures(m: Measurement) -> list[str]:
    """What broke at a point, in words (empty: nothing did)."""
    if m.status == "did not start":
        return [f"did not start: {m.detail}"]
    out = [f"timed out: {m.detail}"] if m.status == "timed out" else []
    e = m.load.errors if m.load else {}
    n = m.load.requests if m.load else 0
    if e.get("too_many_connections"):
        refused = m.db.refused_connections if m.db else None
        out.append(f"{e['too_many_connections']} of {n} requests failed with Too many connections (MySQL refused "
                   f"{refused if refused is not None else '?'} connections at max_connections {m.effective_max_connections})")
    if e.get("pool_wait_timeout"):
        out.append(f"{e['pool_wait_timeout']} of {n} requests timed out waiting for a pooled connection "
                   f"(pool {m.point.pool_size} per node)")
    fates: dict[str, list[str]] = {}
    for node in m.nodes:
        if node.outcome == "degraded by memory":
            seen = f", heap pressure up to {node.peak_heap_pressure:.0%}" if node.peak_heap_pressure else ""
            fates.setdefault(f"degraded by memory (-Xmx{m.point.heap}{seen})", []).append(node.name)
        elif node.outcome != "ok":  # a death is sudden: its last polled pressure says little
            first = ", degraded by memory first" if node.was_degraded else ""
            fates.setdefault(f"{node.outcome} (-Xmx{m.point.heap}, exit {node.exit_code}{first})", []).append(node.name)
    out += [f"node{'s' if len(names) > 1 else ''} {', '.join(names)} {fate}" for fate, names in fates.items()]
    rest = sum(e.get(k, 0) for k in ("server_5xx", "no_response", "other"))
    if rest:
        out.append(f"{rest} other failed requests (5xx or no response)")
    return out


@dataclass(frozen=True)
class Recommendation:
    nodes: int
    users: int
    max_error_rate: float
    max_connections: int | None  # the smallest that passed; None: none did
    max_connections_failed: int | None  # the largest smaller value that failed, all else equal; None: none tried
    heap: str | None  # the smallest -Xmx that passed
    heap_failed: str | None
    heap_scale: int  # modelled bytes per real byte
    peak_connections: int | None  # Max_used_connections where that max_connections passed
    below: tuple[str, ...]  # what failed with less (or, when nothing passed, at every point)

    def lines(self) -> list[str]:
        head = f"{self.nodes} node(s) at {self.users} users, errors at most {pct(self.max_error_rate)}, no node killed:"
        if self.max_connections is None:
            return [head, "- no measured point passed; nothing to recommend:", *(f"  - {b}" for b in self.below)]
        guide = self.nodes * GUIDE_POOL_PER_NODE
        failed = self.max_connections_failed
        if self.max_connections <= guide:
            verdict = "covers this load"
        elif failed is not None and failed >= guide:
            verdict = f"is too few for this load ({failed} failed)"
        else:
            verdict = f"was not tried, so this sweep cannot judge it (it saw {failed} fail and " \
                      f"{self.max_connections} pass)" if failed is not None else "was not tried (nothing smaller was)"
        peak = f"; the database's high-water mark there was {self.peak_connections} (Max_used_connections)" \
            if self.peak_connections is not None else ""
        return [
            head,
            f"- max_connections >= {self.max_connections} ({_failed_or_lowest(failed)}){peak}. The guide's rule, "
            f"{GUIDE_POOL_PER_NODE} per node = {guide}, {verdict}.",
            f"- heap >= -Xmx{self.heap} ({_failed_or_lowest(self.heap_failed and f'-Xmx{self.heap_failed}')}), "
            f"modelled: {parse_size(self.heap, 'heap') / self.heap_scale / 1024**2:g} MiB real at scale "
            f"1/{self.heap_scale}. The guide recommends 4 to 8 GB per node for larger deployments; the heap model "
            f"says what a lab heap means in production.",
            *(f"- with less: {b}" for b in self.below),
        ]


def _failed_or_lowest(failed: object) -> str:
    return f"{failed} failed" if failed else "the smallest tried at these settings: less may do"


def recommend(measurements: Sequence[Measurement], users: int, max_error_rate: float,
              heap_scale: int = DEFAULT_HEAP_SCALE) -> list[Recommendation]:
    """Per cluster size, at the target load: the smallest max_connections and the smallest heap
    among points that kept errors under the threshold with no node killed, each with the evidence
    that less fails: points equal to the passing one but for a smaller value of that dimension."""
    out = []
    for nodes in sorted({m.point.nodes for m in measurements}):
        at = [m for m in measurements if m.point.nodes == nodes and m.point.users == users]
        if not at:
            continue
        good = [m for m in at if m.passed(max_error_rate)]
        if not good:
            below = tuple(f"{m.point.label()}: {'; '.join(failures(m)) or 'errors above the threshold'}" for m in at)
            out.append(Recommendation(nodes, users, max_error_rate, None, None, None, None, heap_scale, None, below))
            continue
        conn = [m for m in good if m.effective_max_connections == min(g.effective_max_connections for g in good)]
        heap = [m for m in good if m.point.heap_mib == min(g.point.heap_mib for g in good)]
        fail_conn = _failed_below(at, conn, "db_max_connections", max_error_rate)
        fail_heap = _failed_below(at, heap, "heap", max_error_rate)
        below = tuple(dict.fromkeys(f"{x_text(m, d)}: {'; '.join(failures(m)) or f'{m.error_rate:.2%} errors'}"
                                    for d, ms in (("db_max_connections", fail_conn), ("heap", fail_heap)) for m in ms))
        out.append(Recommendation(
            nodes, users, max_error_rate, conn[0].effective_max_connections,
            fail_conn[-1].effective_max_connections if fail_conn else None, heap[0].point.heap,
            fail_heap[-1].point.heap if fail_heap else None, heap_scale,
            max((m.db.max_used_connections for m in conn if m.db and m.db.max_used_connections is not None),
                default=None), below))
    return out


def _failed_below(at: Sequence[Measurement], passing: Sequence[Measurement], dim: str,
                  max_error_rate: float) -> list[Measurement]:
    """Points that failed and differ from one of the passing points only by a smaller value of
    dim: the evidence that less of it fails. Ascending along dim."""
    found = {id(m): m for best in passing for m in at
             if replace(m.point, **{dim: getattr(best.point, dim)}) == best.point
             and x_value(m, dim) < x_value(best, dim) and not m.passed(max_error_rate)}
    return sorted(found.values(), key=lambda m: x_value(m, dim))


def heap_model_note(heap_scale: int) -> str:
    """The plain statement of what a lab heap is and how it scales to a production heap."""
    req = NodeConfig.request_heap_bytes
    modelled_req_mib = req * heap_scale / 1024**2
    return (
        f"The node's heap is a model, not a JVM (lab/server/heap.py). `-Xmx<X>` gives each simulated node a "
        f"budget of X / {heap_scale} real bytes (here -Xmx1g = {1024 / heap_scale:g} MiB), of which its resource "
        f"cache may take {CACHE_SHARE:.0%}; every request in flight holds {req // 1024} KiB real, i.e. "
        f"{modelled_req_mib:g} MiB of modelled heap, plus its bodies. Above {GC_THRESHOLD:.0%} of the budget "
        f"requests pay a GC-like pause and the node reports degraded-by-memory; past 100% it logs "
        f"`{OOM_LOG_LINE}` and exits. Scaling: every heap figure here is in modelled bytes = real bytes x "
        f"{heap_scale}. It carries over to production only through the model's cost of {modelled_req_mib:g} MiB "
        f"per request in flight: if your cattle JVM holds R MiB per request in flight, the production heap is "
        f"about the lab's -Xmx x R / {modelled_req_mib:g}. The lab cannot measure R. Until you have measured it "
        f"(heap histograms under load), the guide's 4 to 8 GB per node is the number to use.")


# ===================================================================================== output

def summary_line(m: Measurement) -> str:
    if m.status == "did not start" or not m.load:
        return f"{m.status}: {m.detail}"
    lf = m.load
    conns = m.db.peak_threads_connected if m.db else None
    broke = failures(m)
    return (f"{m.status}: {lf.throughput:g} req/s, p95 {lf.p95_ms} ms, errors {lf.error_rate:.2%}, "
            f"DB connections peak {conns}/{m.effective_max_connections}" + (f"; {'; '.join(broke)}" if broke else ""))


def table(measurements: Sequence[Measurement], swept: Sequence[str]) -> str:
    """Markdown: one row per point."""
    head = ["#", *(DIMENSION_TITLES[d].split(" (")[0] for d in swept or ("users",)), "status", "ok req/s",
            "p50 ms", "p95 ms", "p99 ms", "errors", "too many conn", "pool wait", "5xx/no resp",
            "DB conns peak / max used / max", "DB refused", "node mem peak / limit MiB", "DB mem MiB",
            "heap pressure max", "nodes", "pre-flight"]
    rows = []
    for i, m in enumerate(measurements, 1):
        lf, db = m.load, m.db
        e = lf.errors if lf else {}
        nodes_mem = max((v for k, v in m.memory_peak_mib.items() if k in {n.name for n in m.nodes}), default=None)
        pressures = [n.peak_heap_pressure for n in m.nodes if n.peak_heap_pressure is not None]
        outcomes = {}
        for n in m.nodes:
            outcomes.setdefault(n.outcome, []).append(n.name)
        rows.append([
            str(i), *(f"{m.point.heap}" if d == "heap" else str(int(x_value(m, d))) for d in swept or ("users",)),
            m.status,
            f"{lf.throughput:g}" if lf else "-",
            *(_num(getattr(lf, q)) if lf else "-" for q in ("p50_ms", "p95_ms", "p99_ms")),
            f"{lf.error_rate:.2%}" if lf else "-",
            str(e.get("too_many_connections", "-")), str(e.get("pool_wait_timeout", "-")),
            f"{e.get('server_5xx', 0) + e.get('other', 0)}/{e.get('no_response', 0)}" if lf else "-",
            f"{_num(db.peak_threads_connected) if db else '-'} / {_num(db.max_used_connections) if db else '-'} / "
            f"{m.effective_max_connections}"
            + (f" (asked {m.max_connections})" if m.effective_max_connections != m.max_connections else ""),
            _num(db.refused_connections) if db else "-",
            f"{_num(nodes_mem)} / {m.node_memory_limit_mib}",
            _num(m.memory_peak_mib.get("db")),
            f"{max(pressures):.0%}" if pressures else "-",
            "; ".join(f"{k}: {','.join(v)}" for k, v in outcomes.items()) or "-",
            "short: " + ", ".join(f.split(":")[0] for f in m.preflight) if m.preflight else "ok",
        ])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pct(fraction: float) -> str:
    """0.001 -> '0.1%', 0 -> '0%'."""
    return f"{fraction * 100:g}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def report_data(settings: Settings, measurements: Sequence[Measurement], meta: Mapping[str, Any]) -> dict[str, Any]:
    grid = Grid(settings, tuple(m.point for m in measurements))
    swept, target = grid.swept, grid.target_users
    return {
        "version": 1,
        **meta,
        "settings": asdict(settings),
        "swept": list(swept),
        "target_users": target,
        "points": [m.to_dict() | {"label": m.point.label(swept), "error_rate": m.error_rate,
                                  "failures": failures(m)} for m in measurements],
        "saturation": [asdict(s) for s in saturations(measurements, swept, settings.max_error_rate)],
        "recommendations": [asdict(r) | {"text": r.lines()}
                            for r in recommend(measurements, target, settings.max_error_rate, settings.heap_scale)],
        "guide": list(GUIDE_RULES),
        "heap_model": heap_model_note(settings.heap_scale),
    }


def write_json(directory: Path, settings: Settings, measurements: Sequence[Measurement],
               meta: Mapping[str, Any]) -> Path:
    path = directory / "capacity.json"
    history.write_json(path, report_data(settings, measurements, meta))
    return path


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    plots: tuple[Path, ...]


def write_report(directory: Path, settings: Settings, measurements: Sequence[Measurement],
                 meta: Mapping[str, Any]) -> ReportFiles:
    """capacity.json, capacity.md and plots/<dimension>.png for every swept dimension."""
    if not measurements:
        raise BadInput(f"{directory}: no measured points to report")
    check_target(settings, (m.point for m in measurements))
    data = report_data(settings, measurements, meta)
    json_path = write_json(directory, settings, measurements, meta)
    plots = write_plots(directory / "plots", measurements, tuple(data["swept"]), settings.max_error_rate)
    md = directory / "capacity.md"
    md.write_text(markdown(data, measurements, plots, directory))
    return ReportFiles(json_path, md, tuple(plots))


def markdown(data: Mapping[str, Any], measurements: Sequence[Measurement], plots: Sequence[Path],
             directory: Path) -> str:
    s = data["settings"]
    mach = data.get("machine", {})
    swept = data["swept"]
    fixed = [x_text(measurements[0], d) for d in DIMENSIONS if d not in swept]
    out = [
        f"# Capacity sweep ({data.get('created', 'unknown date')})",
        "",
        f"Machine: {mach.get('host', '?')}, {mach.get('cpus', '?')} CPUs, {mach.get('memory_gib', '?')} GiB, "
        f"{mach.get('os', '?')}, Docker {mach.get('docker', '?')}.",
        f"Each point: a fresh lab, {s['duration']:g} s of Locust `ApiUser` load through the load balancer "
        f"(spawn rate {s['spawn_rate']:g}/s, think time {s['think_time']} s), hard timeout "
        f"{Settings(**s).hard_timeout:g} s. Pool wait {s['pool_wait_ms']} ms, heap scale 1/{s['heap_scale']}.",
        f"Fixed: {', '.join(fixed) or 'nothing'}. Swept: {', '.join(DIMENSION_TITLES[d] for d in swept) or 'nothing'}.",
        "",
        "## Measurements",
        "",
        table(measurements, swept),
        "",
        "ok req/s: successful requests per second. errors: failed requests other than 4xx, of all requests. "
        "DB conns: Threads_connected (highest sampled; counts the harness's own sampling connection), "
        "Max_used_connections, max_connections as the database reports it; DB refused: "
        "Connection_errors_max_connections. Memory: highest `docker stats` sample. Heap pressure: the modelled "
        "heap's used / budget, highest polled on any node (a node's last poll before it died, not its fatal peak).",
        "",
        "## What broke",
        "",
    ]
    threshold = data["settings"]["max_error_rate"]
    for m, p in zip(measurements, data["points"]):
        if p["failures"]:
            within = f" (within the {pct(threshold)} threshold)" if m.passed(threshold) else ""
            out.append(f"- **{p['label']}**: " + "; ".join(p["failures"]) + within)
            if p["preflight"]:
                out.append("  - pre-flight, on this sizing: " + "; ".join(p["preflight"]))
    if not any(p["failures"] for p in data["points"]):
        out.append("- nothing: every point kept every request within its limits")
    out += ["", "## Saturation", ""]
    out += [f"- {s['dimension']} ({s['series']}): {s['note']}" for s in data["saturation"]] or \
        ["- no dimension was swept with more than one value"]
    out += ["", f"## Sizing recommendation (target {data['target_users']} users)", ""]
    for r in data["recommendations"]:
        out += r["text"] + [""]
    out += ["The guide's rules, for comparison: " + "; ".join(data["guide"]) + ".", "",
            "## The heap is a model", "", data["heap_model"], ""]
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(directory)})" for p in plots] + [""]
    return "\n".join(out)


def write_plots(plots_dir: Path, measurements: Sequence[Measurement], swept: Sequence[str],
                max_error_rate: float) -> list[Path]:
    """Per swept dimension: throughput, p95 and error rate against it, one line per series,
    the saturation point starred."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for dim in swept:
        groups = series_of(measurements, dim, swept)
        if not groups:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=90)
        fig.subplots_adjust(left=0.06, right=0.98, top=0.82, bottom=0.3, wspace=0.28)
        for name, series in groups.items():
            xs = [x_value(m, dim) for m in series]
            line, = axes[0].plot(xs, [m.throughput for m in series], marker="o", label=name)
            axes[1].plot(xs, [m.load.p95_ms if m.load and m.load.p95_ms is not None else math.nan
                              for m in series], marker="o", color=line.get_color())
            axes[2].plot(xs, [100 * m.error_rate for m in series], marker="o", color=line.get_color())
            sat = saturation(series, dim, max_error_rate, name)
            if sat.x is not None:
                axes[0].plot([sat.x], [sat.throughput], marker="*", ms=16, color=line.get_color(), mec="black")
                axes[0].annotate("saturation" if dim == LOAD_DIMENSION else "levels off", (sat.x, sat.throughput),
                                 textcoords="offset points", xytext=(0, -11), ha="center", va="top", fontsize=8)
                if sat.p95_ms is not None:
                    axes[1].plot([sat.x], [sat.p95_ms], marker="*", ms=16, color=line.get_color(), mec="black")
        killed = [m for series in groups.values() for m in series if m.oom_kills]
        if killed:
            axes[0].plot([x_value(m, dim) for m in killed], [m.throughput for m in killed], ls="none", marker="x",
                         ms=11, mew=2.5, color="#c62828", label="node killed")
        axes[2].axhline(100 * max_error_rate, color="#c62828", ls="--", lw=1, label="threshold")
        ticks = {x_value(m, dim): m.point.heap if dim == "heap" else f"{x_value(m, dim):g}"
                 for s in groups.values() for m in s}
        for ax, title in zip(axes, ("successful requests/s", "p95 latency (ms)", "errors (% of requests)")):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(DIMENSION_TITLES[dim], fontsize=9)
            ax.grid(alpha=0.3)
            if dim in ("heap", "db_memory", "db_buffer_pool"):
                ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(ticks), [ticks[x] for x in sorted(ticks)], fontsize=8)
            ax.minorticks_off()
        fig.suptitle(f"Capacity against {DIMENSION_TITLES[dim]} (star: saturation point)", fontsize=11)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
        path = plots_dir / f"{dim}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out


def load_report(directory: str | os.PathLike[str]) -> tuple[Settings, list[Measurement], dict[str, Any]]:
    """Read a sweep's capacity.json back (to render it again, e.g. with another threshold)."""
    path = Path(directory) / "capacity.json"
    try:
        data = json.loads(path.read_text())
        settings = Settings(**data["settings"])
        measurements = [Measurement.from_dict(p) for p in data["points"]]
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist: pass the folder a capacity sweep wrote") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a capacity report ({type(exc).__name__}: {exc})") from None
    return settings, measurements, {k: data[k] for k in ("created", "machine") if k in data}

