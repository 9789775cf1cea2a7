"""Fault specs: the kinds, `FaultSpec` and its validation against a topology, `ActiveFault`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.cluster.topology import Topology
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.core.errors import BadInput

CONTAINER_KINDS = ("kill", "stop", "pause", "restart")

NETWORK_KINDS = ("isolate", "split", "partition", "flaky")

# Gray failures (lab/faults/gray.py): a slow or narrow link between two sides, one process of a
# node stopped while the rest of it runs, a container's CPU quota cut, a node's clock set off, a disk
# throttled, the database's connections taken by a rogue client.
LINK_KINDS = ("delay", "bandwidth")
GRAY_KINDS = (*LINK_KINDS, "stall", "cpu", "clock", "io", "exhaust")

# A whole Docker host of a swarm lab (lab/faults/hostfaults.py): cut from the other hosts, or killed.
HOST_KINDS = ("cut-host", "kill-host")

KINDS = CONTAINER_KINDS + NETWORK_KINDS + GRAY_KINDS + HOST_KINDS

# Kinds aimed at containers or hosts (`targets`), not at the sides of a link.
TARGET_KINDS = (*CONTAINER_KINDS, "isolate", "stall", "cpu", "clock", "io", "exhaust", *HOST_KINDS)

# What a swarm lab takes so far (docs/swarm.md): its nodes' network faults, its container kinds and
# its gray faults act on the tasks wherever they run (a killed or stopped service is left scaled to
# none until healed).
SWARM_KINDS = (*CONTAINER_KINDS, *NETWORK_KINDS, *HOST_KINDS, *LINK_KINDS, "stall", "cpu", "clock")
# Kinds a swarm lab will not take, and why.
SWARM_REFUSED = {
    "io": "its throttle is written by a privileged container on the task's host, which Docker in Docker refuses",
    "exhaust": "its rogue client is a container of this machine at a fixed address on the compose project's db network",
}

# Held across restarts: their rules are re-established on every start (lab/faults/hold.py).
HELD_KINDS = (*NETWORK_KINDS, *LINK_KINDS)

PROCESSES = ("zookeeper", "server", "redis")  # what `stall` can stop in a node

ROLES = ("leader", "follower", "random")

DB, LB = "db", "lb"


# FaultSpec's optional fields
_OPTIONAL = ("loss", "delay", "jitter", "process", "cpus", "offset", "drift", "io_bps", "io_iops", "rate", "leave")


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    targets: tuple[str, ...] = ()  # container kinds and isolate
    sides: tuple[tuple[str, ...], ...] = ()  # split: datacenters; partition: nodes/db; flaky: two sets
    one_way: bool = False
    loss: float | None = None  # flaky: percent of packets dropped
    delay: float | None = None  # delay: seconds added to a round trip across the link
    jitter: float | None = None  # delay: each round trip varies by up to this, seconds
    process: str | None = None  # stall: one of PROCESSES
    cpus: float | None = None  # cpu: the CPUs the target keeps (Docker's --cpus)
    offset: float | None = None  # clock: seconds the node's wall clock is set ahead (negative: behind)
    drift: float | None = None  # clock: seconds it gains each second from then on (negative: loses)
    io_bps: int | None = None  # io: bytes per second the data disk reads, and writes
    io_iops: int | None = None  # io: operations per second it reads, and writes (1: stalled)
    rate: int | None = None  # bandwidth: bits per second each host sends across the link
    leave: int | None = None  # exhaust: database connections left free (None: none)

    def describe(self) -> str:
        if self.kind == "stall":
            return f"stall {self.process} of {' '.join(self.targets)}"
        if self.kind == "cpu":
            return f"cpu {' '.join(self.targets)} ({self.cpus:g} CPUs)"
        if self.kind == "clock":
            drift = f", drifting {self.drift * 1000:+g}ms/s" if self.drift else ""
            return f"clock {' '.join(self.targets)} ({self.offset or 0:+g}s{drift})"
        if self.kind == "io":
            limits = [
                f"{format_bytes(self.io_bps)}/s" if self.io_bps else "",
                f"{self.io_iops} iops" if self.io_iops else "",
            ]
            return f"io {' '.join(self.targets)} ({', '.join(x for x in limits if x)})"
        if self.kind == "exhaust":
            left = f"{self.leave} left free" if self.leave else "every connection"
            return f"exhaust {' '.join(self.targets)} ({left})"
        if self.kind in CONTAINER_KINDS or self.kind in HOST_KINDS or self.kind == "isolate":
            return f"{self.kind} {' '.join(self.targets)}"
        sep = " > " if self.one_way else " | "
        text = f"{self.kind} {sep.join(','.join(s) for s in self.sides)}"
        if self.kind == "delay":
            return text + f" ({self.delay or 0:g}s ± {self.jitter or 0:g}s)"
        if self.kind == "bandwidth":
            return text + f" ({format_rate(self.rate)})"
        return text + (f" ({self.loss:g}% loss)" if self.kind == "flaky" else "")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FaultSpec:
        return make_spec(
            d["kind"],
            d.get("targets", ()),
            d.get("sides", ()),
            one_way=bool(d.get("one_way", False)),
            **{k: d[k] for k in _OPTIONAL if d.get(k) is not None},
        )


def make_spec(
    kind: str,
    targets: Iterable[str] = (),
    sides: Iterable[Iterable[str]] = (),
    *,
    one_way: bool = False,
    loss: float | None = None,
    delay: float | None = None,
    jitter: float | None = None,
    process: str | None = None,
    cpus: float | None = None,
    offset: float | None = None,
    drift: float | None = None,
    io_bps: int | None = None,
    io_iops: int | None = None,
    rate: int | None = None,
    leave: int | None = None,
) -> FaultSpec:
    return FaultSpec(
        kind,
        tuple(targets),
        tuple(tuple(s) for s in sides),
        one_way,
        loss,
        delay,
        jitter,
        process,
        cpus,
        offset,
        drift,
        io_bps,
        io_iops,
        rate,
        leave,
    )


_BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}  # Docker's
_RATE_UNITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}  # tc's
MIN_RATE, MAX_RATE = 100_000, 100 * 1000**2  # bits/s: beyond, TBF's burst is a large share of a probe


def _quantity(value: Any, where: str, units: Mapping[str, int], example: str) -> int:
    """A number with one of `units` (a bare number: the first), in the first."""
    m = re.fullmatch(rf"\s*(\d+(?:\.\d+)?)\s*({'|'.join(units)})?\s*", value, re.I) if isinstance(value, str) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(value)
    if m is None:
        raise BadInput(f"{where}: {value!r} is not {example}")
    return round(float(m.group(1)) * units[(m.group(2) or next(iter(units))).lower()])


def _format(n: int | None, units: Mapping[str, int]) -> str:
    names = list(units)
    unit = next((u for u in reversed(names) if (n or 0) >= units[u]), names[0])
    return f"{(n or 0) / units[unit]:g}{unit}"


def parse_bytes(value: Any, where: str) -> int:
    """Bytes from `512kb`, `1mb`, `1.5mb` (Docker's 1024-based units) or a number of bytes."""
    n = _quantity(value, where, _BYTE_UNITS, "a size like 512kb or 1mb")
    if n < 4096:
        raise BadInput(f"{where}: {value!r} is below 4kb, one page a second")
    return n


def format_bytes(n: int | None) -> str:
    return _format(n, _BYTE_UNITS)


def parse_rate(value: Any, where: str) -> int:
    """Bits per second from `1mbit`, `500kbit`, `1.5mbit` (tc's 1000-based units) or a number."""
    n = _quantity(value, where, _RATE_UNITS, "a rate like 1mbit or 500kbit")
    if not MIN_RATE <= n <= MAX_RATE:
        raise BadInput(f"{where}: {value!r} is outside {format_rate(MIN_RATE)} to {format_rate(MAX_RATE)}")
    return n


def format_rate(n: int | None) -> str:
    return _format(n, _RATE_UNITS)


MAX_OFFSET = 86400.0  # seconds: a day, past every expiry the node has
# seconds a second: from 10 ms/s (verified within a 10 s window) to a clock running half again as fast
MIN_DRIFT, MAX_DRIFT = 0.01, 0.5
MAX_DELAY = 10.0  # seconds: beyond every timeout the lab has, so nothing longer tells more


# A fault's fields in scenario and claims files, besides `kind` (`jitter` there is the time's).
FAULT_FIELDS = (
    *("target", "sides", "one_way", "loss", "delay", "delay_jitter", "process", "cpus", "offset", "drift"),
    *("io_rate", "io_iops", "rate", "leave"),
)


def spec_from_yaml(d: Mapping[str, Any], where: str) -> FaultSpec:
    """A FaultSpec from a file's mapping (`kind` and FAULT_FIELDS), each field checked for its type;
    `validate` checks it against a topology."""
    d = y.mapping(d, where, required=("kind",), optional=FAULT_FIELDS)

    def get(key: str, read: Any) -> Any:
        return read(d[key], y.sub(where, key)) if key in d else None

    sides = d.get("sides")
    return make_spec(
        y.string(d["kind"], y.sub(where, "kind")),
        get("target", y.strings) or (),
        ()
        if sides is None
        else [
            y.strings(s, y.sub(y.sub(where, "sides"), i))
            for i, s in enumerate(y.sequence(sides, y.sub(where, "sides")))
        ],
        one_way=bool(get("one_way", y.boolean)),
        loss=get("loss", y.number),
        delay=get("delay", parse_duration),
        jitter=get("delay_jitter", parse_duration),
        process=get("process", y.string),
        cpus=get("cpus", y.number),
        offset=get("offset", signed_duration),
        drift=get("drift", parse_drift),
        io_bps=get("io_rate", parse_bytes),
        io_iops=get("io_iops", lambda v, w: y.integer(v, w, minimum=1)),
        rate=get("rate", parse_rate),
        leave=get("leave", lambda v, w: y.integer(v, w, minimum=0)),
    )


def parse_drift(value: Any, where: str) -> float:
    """`50ms/s`, `-20ms/s`, `0.05s/s` or a number (seconds a second): how fast a clock runs off."""
    if isinstance(value, str) and value.strip().endswith("/s"):
        return signed_duration(value.strip()[:-2], where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise BadInput(f"{where}: a drift such as 50ms/s or -20ms/s (time gained or lost each second), got {value!r}")


def signed_duration(value: Any, where: str) -> float:
    """`-10s`, `+1m`, `10s` or a number of seconds: a duration with a sign."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text[:1] in ("+", "-"):
        return (-1.0 if text[0] == "-" else 1.0) * parse_duration(text[1:], where)
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text < 0:
        return -parse_duration(-text, where)
    return parse_duration(text, where)


def validate(spec: FaultSpec, t: Topology, where: str = "fault") -> None:
    """Raise BadInput naming `where` and the field when the spec cannot apply to this topology."""
    if spec.kind not in KINDS:
        raise BadInput(f"{where}.kind: unknown fault {spec.kind!r}; choose one of {', '.join(KINDS)}")
    if t.engine.swarm and spec.kind in SWARM_REFUSED:
        raise BadInput(f"{where}.kind: {spec.kind} is not available on a swarm lab: {SWARM_REFUSED[spec.kind]}")
    if t.engine.swarm and spec.kind not in SWARM_KINDS:
        raise BadInput(f"{where}.kind: {spec.kind} is not available on a swarm lab yet; use {', '.join(SWARM_KINDS)}")
    if spec.kind in HOST_KINDS:
        _validate_host(spec, t, where)
        return
    nodes = ", ".join(t.node_names)
    _validate_gray(spec, t, where)
    if spec.kind in TARGET_KINDS:
        if not spec.targets:
            raise BadInput(
                f"{where}.target: {spec.kind} needs a target: a node ({nodes}), "
                f"{'db, lb, ' if spec.kind != 'isolate' else ''}{', '.join(ROLES)}"
            )
        with_db_lb = spec.kind in CONTAINER_KINDS or spec.kind in ("cpu", "io", "exhaust")
        # A Galera database's members and arbitrator are containers too (docs/galera.md).
        voters = {v for v, _ in t.db.placement()} if spec.kind in CONTAINER_KINDS else set()
        allowed = set(t.node_names) | set(ROLES) | ({DB, LB} if with_db_lb else set()) | voters
        for i, target in enumerate(spec.targets):
            if target not in allowed:
                raise BadInput(
                    f"{where}.target: no node {target!r} in this lab (nodes: {nodes}"
                    f"{'; or db, lb' if with_db_lb else ''}; or {', '.join(ROLES)})"
                )
            if target in spec.targets[:i] and target not in ("follower", "random"):
                raise BadInput(f"{where}.target: {target!r} is named twice")
        if spec.kind == "isolate" and len(spec.targets) != 1:
            raise BadInput(f"{where}.target: isolate takes one node (use partition for groups)")
        if spec.targets.count("follower") > t.size - 1:
            raise BadInput(f"{where}.target: a {t.size}-node lab has {t.size - 1} follower(s)")
        if len(spec.targets) > t.size + 2 + len(voters):
            raise BadInput(f"{where}.target: more targets than containers")
    elif spec.targets:
        raise BadInput(f"{where}.target: {spec.kind} takes sides, not targets")
    if spec.kind not in ("split", "partition", "flaky", *LINK_KINDS) and spec.sides:
        raise BadInput(f"{where}.sides: only split, partition, flaky, delay and bandwidth take sides")
    if spec.kind not in ("split", "partition", "flaky") and spec.one_way:
        raise BadInput(f"{where}.one_way: only split, partition and flaky take it")
    if spec.kind == "split":
        if len(t.datacenters) < 2:
            raise BadInput(f"{where}.kind: a split needs two datacenters; this lab has one ({t.datacenters[0]})")
        if spec.sides:
            _check_sides(spec.sides, t.sites, "datacenter", f"{where}.sides", allow_one=True)
    elif spec.kind == "partition":
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=True)
        if not any(n in s for s in spec.sides for n in t.node_names):
            raise BadInput(f"{where}.sides: name at least one node")
    elif spec.kind == "flaky":
        if len(spec.sides) != 2:
            raise BadInput(f"{where}.sides: flaky takes two endpoint sets, e.g. [a1] and [b1, db]")
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=False)
    if spec.kind == "flaky":
        if not isinstance(spec.loss, (int, float)) or isinstance(spec.loss, bool) or not 1 <= spec.loss <= 100:
            raise BadInput(
                f"{where}.loss: flaky needs a loss percentage from 1 to 100 (below 1 % a drop "
                f"cannot be verified in a bounded number of attempts), got {spec.loss!r}"
            )
    elif spec.loss is not None:
        raise BadInput(f"{where}.loss: only flaky takes a loss percentage")


def _validate_host(spec: FaultSpec, t: Topology, where: str) -> None:
    """A host fault names hosts of the lab's group (checked against the group when applied)."""
    if not t.engine.swarm:
        raise BadInput(f"{where}.kind: {spec.kind} acts on the hosts of a swarm lab; this lab runs on compose")
    if not spec.targets:
        raise BadInput(f"{where}.target: {spec.kind} needs the hosts it acts on (`halab hosts ls`)")
    if len(set(spec.targets)) != len(spec.targets):
        raise BadInput(f"{where}.target: a host is named twice")
    if spec.sides or spec.one_way or any(getattr(spec, name) is not None for name in _OPTIONAL):
        raise BadInput(f"{where}: {spec.kind} takes hosts only")


def _validate_gray(spec: FaultSpec, t: Topology, where: str) -> None:
    """The gray kinds' own fields: each kind takes its own and refuses the others'."""
    own = {
        "delay": ("delay", "jitter"),
        "stall": ("process",),
        "cpu": ("cpus",),
        "clock": ("offset", "drift"),
        "io": ("io_bps", "io_iops"),
        "bandwidth": ("rate",),
        "exhaust": ("leave",),
    }
    mine = own.get(spec.kind, ())
    for name in _OPTIONAL[1:]:  # loss is flaky's, checked with it
        if name not in mine and getattr(spec, name) is not None:
            raise BadInput(f"{where}.{name}: only {next(k for k, v in own.items() if name in v)} takes it")
    if spec.kind in LINK_KINDS:
        if not spec.sides:
            raise BadInput(f"{where}.sides: {spec.kind} takes two sides: datacenters (dc-a dc-b) or endpoints (a1 db)")
        names = [n for side in spec.sides for n in side]
        if any(n in t.datacenters for n in names):  # datacenters, then all must be
            _check_sides(spec.sides, t.datacenters, "datacenter", f"{where}.sides", allow_one=True)
        else:
            _check_sides(spec.sides, (*t.node_names, DB, LB), "node, db or lb", f"{where}.sides", allow_one=True)
    if spec.kind == "delay":
        if spec.delay is None or not 0 < spec.delay <= MAX_DELAY:
            raise BadInput(f"{where}.delay: delay needs a delay from 1ms to {MAX_DELAY:g}s, got {spec.delay!r}")
        if spec.jitter is not None and not 0 <= spec.jitter <= spec.delay:
            raise BadInput(f"{where}.jitter: from 0 to the delay ({spec.delay:g}s), got {spec.jitter!r}")
    if spec.kind == "bandwidth" and spec.rate is None:
        raise BadInput(f"{where}.rate: bandwidth needs a rate such as 1mbit")
    if spec.kind in ("cpu", "io", "exhaust") and DB in spec.targets and t.db.galera:
        raise BadInput(f"{where}.target: {spec.kind} on a Galera database is not built yet (docs/galera.md)")
    if spec.kind == "exhaust" and spec.targets != (DB,):
        raise BadInput(f"{where}.target: exhaust takes the database: db")
    if spec.kind == "stall" and spec.process not in PROCESSES:
        raise BadInput(f"{where}.process: stall needs a process: {', '.join(PROCESSES)}; got {spec.process!r}")
    if spec.kind == "clock":
        if spec.offset is None and spec.drift is None:
            raise BadInput(f"{where}.offset: clock needs an offset (10s, -10s), a drift (50ms/s) or both")
        if spec.offset is not None and not 0 < abs(spec.offset) <= MAX_OFFSET:
            raise BadInput(f"{where}.offset: an offset such as 10s or -10s, up to a day; got {spec.offset!r}")
        if spec.drift is not None and not MIN_DRIFT <= abs(spec.drift) <= MAX_DRIFT:
            raise BadInput(
                f"{where}.drift: a drift from {MIN_DRIFT * 1000:g}ms/s to {MAX_DRIFT * 1000:g}ms/s either way "
                f"(-20ms/s: losing time), got {spec.drift!r}"
            )
    if spec.kind == "io":
        if spec.io_bps is None and spec.io_iops is None:
            raise BadInput(f"{where}.io_rate: io needs a rate (1mb), an iops limit (10; 1: a stalled disk) or both")
        if LB in spec.targets:
            raise BadInput(f"{where}.target: the load balancer has no data disk; io takes nodes and db")
    if spec.kind == "cpu" and (spec.cpus is None or not 0.01 <= spec.cpus < 1):
        raise BadInput(f"{where}.cpus: cpu needs the CPUs left to the target, from 0.01 to below 1, got {spec.cpus!r}")


def _check_sides(
    sides: Sequence[Sequence[str]], known: Sequence[str], what: str, where: str, *, allow_one: bool
) -> None:
    seen: set[str] = set()
    for i, side in enumerate(sides):
        if not side:
            raise BadInput(f"{where}[{i}]: empty side")
        for name in side:
            if name not in known:
                raise BadInput(f"{where}[{i}]: no {what} {name!r} in this lab ({', '.join(known)})")
            if name in seen:
                raise BadInput(f"{where}[{i}]: {name!r} is on two sides")
            seen.add(name)
    rest = [k for k in known if k not in seen and k != DB]
    if len(sides) + (1 if rest and allow_one else 0) < 2:
        raise BadInput(f"{where}: a cut needs two sides; every {what} is on one side")


@dataclass(frozen=True)
class ActiveFault:
    id: str
    spec: FaultSpec
    targets: tuple[str, ...]  # resolved: services for container faults, every endpoint cut for network ones
    t0: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.id} {self.spec.describe()}"
