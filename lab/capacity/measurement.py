"""What one grid point measured (`Measurement` and its figures) and how those figures are derived
from the raw evidence: request records, a node's `docker inspect` state and its log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lab.capacity.bottleneck import Bottleneck
from lab.capacity.spec import Point
from lab.cluster.docker import ContainerState
from lab.record.checker import percentile
from lab.record.history import RequestRecord

# Error kinds, from what the client saw. client_4xx is the workload's own business (a conflict,
# a vanished resource), not capacity, so it is shown but not counted in the error rate.
ERROR_KINDS = ("too_many_connections", "pool_wait_timeout", "server_5xx", "no_response", "other", "client_4xx")
CAPACITY_ERROR_KINDS = ERROR_KINDS[:-1]
OOM_LOG_LINE = "java.lang.OutOfMemoryError: Java heap space"


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
    bottleneck: Bottleneck | None = None  # None: not measured (the lab did not start)
    usage_peaks: Mapping[str, float] = field(default_factory=dict)  # resource -> highest share of its limit
    generator: Mapping[str, Any] | None = None  # Locust's CPU (record/load.py GeneratorCpu), as recorded

    @property
    def counts_for_sizing(self) -> bool:
        """False when the harness (Locust, the node's CPU, the machine) saturated first: the point
        measured the harness's cost, not the resource being sized."""
        return not (self.bottleneck and self.bottleneck.harness_bound)

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
        return cls(
            **{
                **d,
                "point": Point(**d["point"]),
                "preflight": tuple(d["preflight"]),
                "load": LoadFigures(**d["load"]) if d.get("load") else None,
                "db": DbFigures(**d["db"]) if d.get("db") else None,
                "nodes": tuple(NodeOutcome(**n) for n in d.get("nodes", ())),
                "bottleneck": Bottleneck(**{**d["bottleneck"], "then": tuple(d["bottleneck"]["then"])})
                if d.get("bottleneck")
                else None,
            }
        )


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
    p50, p95, p99 = (None if (v := percentile(latencies, q)) is None else round(v, 1) for q in (0.5, 0.95, 0.99))
    return LoadFigures(
        len(requests), ok, round(seconds, 3), round(ok / seconds, 2) if seconds > 0 else 0.0, p50, p95, p99, errors
    )


def node_outcome(
    name: str, state: ContainerState | None, log_text: str, degraded_seen: bool, peak_pressure: float | None
) -> NodeOutcome:
    """What became of a node: from its container's state, its log and the sampled memory state."""
    running = bool(state and state.running)
    code = None if running or state is None else state.exit_code
    if state and state.oom_killed:
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
