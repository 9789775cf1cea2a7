"""The capacity grid: its dimensions, the frozen `Point`, `Settings` and `Grid`, and the
validation of a grid file and of the command line's lists and settings. Nothing here runs a lab.

Grid file (YAML; every key optional):

    settings: {duration: 15s, spawn_rate: 10, think_time: "0.1,0.5", heap_scale: 32, pool_wait_ms: 2000,
               up_timeout: 180, point_timeout: 400, max_error_rate: 0.01, target_users: 20, node_cpus: 0.5,
               engine: swarm, hosts: swc1}
    base:     {nodes: 3, heap: 1g, pool_size: 50, db_max_connections: auto, db_memory: 1024,
               db_buffer_pool: 256, users: 10}
    grid:     {db_max_connections: [60, 160], users: [10, 30]}   # every combination, over base
    points:   [{heap: 32m, users: 30}]                            # extra single points, over base

Command-line lists (`--heap 32m,1g`) replace the file's grid entry of that dimension.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lab.cluster.database import DB_KINDS, SINGLE, make_database
from lab.cluster.topology import (
    COMPOSE,
    DEFAULT_HEAP_SCALE,
    DEFAULT_HOST_GROUP,
    ENGINES,
    GUIDE_POOL_PER_NODE,
    SWARM,
    Engine,
    Ports,
    Sizing,
    Topology,
    check_profile,
    make_topology,
    parse_size,
)
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.core.errors import BadInput
from lab.server.profiles import DEFAULT_PROFILE

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
        short = {
            "nodes": "n",
            "heap": "xmx",
            "pool_size": "pool",
            "db_max_connections": "maxconn",
            "db_memory": "dbmem",
            "db_buffer_pool": "bp",
            "users": "u",
        }
        return "-".join(f"{short[d]}{'auto' if getattr(self, d) is None else getattr(self, d)}" for d in dims) or "base"

    def topology(self, lab: str, ports: Ports, settings: Settings) -> Topology:
        return make_topology(
            self.nodes,
            lab=lab,
            ports=ports,
            sizing=Sizing(
                pool_size=self.pool_size,
                pool_wait_ms=settings.pool_wait_ms,
                java_opts=f"-Xmx{self.heap}",
                heap_scale=settings.heap_scale,
                db_max_connections=self.db_max_connections,
                db_memory_mib=self.db_memory,
                db_buffer_pool_mib=self.db_buffer_pool,
            ),
            profile=settings.profile,
            db=settings.db,
            engine=Engine(settings.engine, settings.hosts),
        )


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
    profile: str = DEFAULT_PROFILE  # the node profile of every point's lab
    # A CFS quota on every node, in CPUs (the `cpu` gray fault's); None: none. A starved node shows
    # what a point bounded by the node's CPU looks like (its bottleneck is named, not counted).
    node_cpus: float | None = None
    # The database of every point's lab: single, or galera:3 / galera:5 (its members sampled too:
    # each one's CPU, the writer's connections and flow control).
    db: str = SINGLE
    # What runs every point's lab: compose (this machine's Docker) or swarm, a stack on the host
    # group `hosts` (made here: the load and the sampler reach its manager on 127.0.0.1).
    engine: str = COMPOSE
    hosts: str | None = None  # a swarm sweep's host group (build_grid: DEFAULT_HOST_GROUP when none)

    @property
    def hard_timeout(self) -> float:
        from lab.record.load import REPORT_GRACE, STARTUP_GRACE

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


def _db(value: Any, where: str) -> str:
    text = str(value).strip()
    try:
        make_database(text, None, None, (("dc-a", 1),))
    except BadInput:
        raise BadInput(f"{where}: {value!r} is not {DB_KINDS}") from None
    return text


def _engine(value: Any, where: str) -> str:
    if value not in ENGINES:
        raise BadInput(f"{where}: {value!r} is not an engine; use {' or '.join(ENGINES)}")
    return str(value)


def _hosts(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _GROUP_RE.match(value):
        raise BadInput(f"{where}: {value!r} is not a host group name (lowercase letters, digits or '-')")
    return value


def _seconds(value: Any, where: str) -> float:
    return parse_duration(value, where, minimum=1.0)


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
    "profile": check_profile,
    "node_cpus": _number,
    "db": _db,
    "engine": _engine,
    "hosts": _hosts,
}
_GROUP_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # hosts.make_group's names


def _mapping(value: Any, where: str, known: Iterable[str]) -> dict[str, Any]:
    return {} if value is None else y.mapping(value, where, optional=known)


def _point(values: Any, base: Point, where: str) -> Point:
    return replace(
        base, **{k: _FIELD_PARSERS[k](v, y.sub(where, k)) for k, v in _mapping(values, where, DIMENSIONS).items()}
    )


def parse_flag_list(flag: str, text: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise BadInput(f"{flag}: {text!r} is not a comma-separated list of values, like 32m,1g")
    return items


def build_grid(
    doc: Any = None,
    source: str = "grid",
    flags: Mapping[str, str | None] | None = None,
    flag_settings: Mapping[str, Any] | None = None,
) -> Grid:
    """A validated grid from a parsed grid file (`doc`, named `source` in errors) and flags.

    `flags` maps dimension -> comma list as typed (`--heap 32m,1g`), `flag_settings` setting ->
    value; both override the file. Errors name the file and field (or the flag) and the fix."""
    top = y.at(source)
    doc = _mapping(doc, top, ("settings", "base", "grid", "points"))
    where = y.sub(top, "settings")
    settings = Settings(
        **{
            k: _SETTING_PARSERS[k](v, y.sub(where, k))
            for k, v in _mapping(doc.get("settings"), where, _SETTING_PARSERS).items()
            if v is not None
        }
    )
    settings = _check_engine(settings_with(settings, flag_settings or {}), top, flag_settings or {})
    base = _point(doc.get("base"), Point(), y.sub(top, "base"))
    where = y.sub(top, "grid")
    axes: dict[str, list[Any]] = {}
    for d, values in _mapping(doc.get("grid"), where, DIMENSIONS).items():
        axes[d] = [
            _FIELD_PARSERS[d](v, y.sub(y.sub(where, d), i)) for i, v in enumerate(y.sequence(values, y.sub(where, d)))
        ]
    for d, text in (flags or {}).items():
        if text is not None:
            axes[d] = [_FIELD_PARSERS[d](v, FLAGS[d]) for v in parse_flag_list(FLAGS[d], text)]
    points = [replace(base, **dict(zip(axes, combo, strict=True))) for combo in itertools.product(*axes.values())]
    where = y.sub(top, "points")
    extra = y.sequence(doc.get("points") or [], where, allow_empty=True)
    points += [_point(p, base, y.sub(where, i)) for i, p in enumerate(extra)]
    points = list(dict.fromkeys(points))  # a point listed twice is measured once
    if len(points) > MAX_POINTS:
        raise BadInput(
            f"{source}: {len(points)} grid points, more than {MAX_POINTS}; each is a fresh lab: "
            f"sweep fewer values per dimension or split the grid"
        )
    grid = Grid(settings, tuple(points))
    check_target(settings, points)
    if settings.point_timeout is not None and settings.point_timeout <= settings.duration:
        raise BadInput(
            f"--point-timeout: {settings.point_timeout:g} s must exceed the load's "
            f"{settings.duration:g} s (plus the lab's start)"
        )
    return grid


def settings_with(settings: Settings, flag_settings: Mapping[str, Any]) -> Settings:
    """Settings with the flags that were given (not None) laid over, validated and named as flags."""
    given = {k: v for k, v in flag_settings.items() if v is not None}
    return replace(settings, **{k: _SETTING_PARSERS[k](v, f"--{k.replace('_', '-')}") for k, v in given.items()})


def _check_engine(settings: Settings, top: str, flag_settings: Mapping[str, Any]) -> Settings:
    """The engine with the settings it cannot take refused, each error naming the flag or the file's
    field that set it; a swarm sweep without a host group runs on DEFAULT_HOST_GROUP, as `halab up`."""

    def named(key: str) -> str:
        flag = f"--{key.replace('_', '-')}"
        return flag if flag_settings.get(key) is not None else y.sub(y.sub(top, "settings"), key)

    if settings.engine == COMPOSE:
        if settings.hosts is not None:
            raise BadInput(f"{named('hosts')}: a host group runs swarm labs only; set the engine to swarm")
        return settings
    assert settings.engine == SWARM
    if make_database(settings.db, None, None, (("dc-a", 1),)).galera:
        raise BadInput(
            f"{named('db')}: {settings.db} is not available on a swarm yet (its members start one by one at "
            "fixed addresses; docs/galera.md); use single, or the compose engine"
        )
    return settings if settings.hosts is not None else replace(settings, hosts=DEFAULT_HOST_GROUP)


def check_target(settings: Settings, points: Iterable[Point]) -> None:
    loads = sorted({p.users for p in points})
    if settings.target_users is not None and settings.target_users not in loads:
        raise BadInput(
            f"--target-users: {settings.target_users} is not a load of the grid (users: "
            f"{', '.join(map(str, loads))}); pick one of them"
        )
