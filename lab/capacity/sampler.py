"""Live measurement during one point's load: the database's counters, each container's memory
(`docker stats`) and CPU (its cgroup's counters), both read on the engine that runs it (this
machine's Docker, or a swarm host's: lab/cluster/engine.py), the load generator's CPU, each node's heap and
pool gauges (its `/metrics`), sampled on a clock; each sample also says what share of its limit
every resource used since the last (`usage`, which bottleneck.py attributes); plus the parsers of
`docker stats` and Prometheus text those samples need."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab.capacity import bottleneck as b
from lab.capacity.measurement import DbFigures
from lab.cluster import cpu, engine
from lab.cluster.compose import database_services
from lab.cluster.galera import FRONT
from lab.cluster.topology import Topology
from lab.core.errors import LabError, RuntimeFailure
from lab.server.heap import GC_THRESHOLD

DB_COUNTERS = (
    "Threads_connected",
    "Max_used_connections",
    "Connection_errors_max_connections",
    "Aborted_connects",
    "Threads_running",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",  # milliseconds, summed over waits
    "Slow_queries",
    "Questions",
    # A Galera member's (none on a single database): nanoseconds its replication was paused by
    # flow control, and the pause requests it sent and received.
    "wsrep_flow_control_paused_ns",
    "wsrep_flow_control_sent",
    "wsrep_flow_control_recv",
)
# The API server is one Python process: the GIL holds it to about one CPU, whatever the
# container may use (ZooKeeper's few percent in the same container are counted with it).
NODE_PROCESS_CPUS = 1.0
SAMPLE_INTERVAL = 2.0  # seconds between samples of the database's counters and Docker stats
NODE_POLL_INTERVAL = 0.25  # seconds between polls of each node's heap gauges (cheap HTTP)

_MEM_RE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?i?B)", re.IGNORECASE)
_MEM_UNITS = {
    "b": 1 / 1024**2,
    "kb": 1e3 / 1024**2,
    "kib": 1 / 1024,
    "mb": 1e6 / 1024**2,
    "mib": 1.0,
    "gb": 1e9 / 1024**2,
    "gib": 1024.0,
    "tb": 1e12 / 1024**2,
    "tib": 1024.0**2,
}


def _stats(command: tuple[str, ...], containers: list[str]) -> str:
    """`docker stats` of containers on one engine; "" when it does not answer (a skipped sample)."""
    from lab.cluster import docker

    try:
        return docker.run(
            [*command, "stats", "--no-stream", "--format", "{{json .}}", *containers], "sample docker stats", timeout=15
        )
    except (RuntimeFailure, OSError):
        return ""


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


# The node's /metrics gauges this module reads (lab/server/node.py). The node keeps its own peak,
# so a spike between two polls still counts; each point runs on a fresh lab, so "since start" is
# "during this point".
METRIC_HEAP_PEAK = "cattle_heap_peak_ratio"
METRIC_MEMORY_DEGRADED = "cattle_heap_memory_degraded"
METRIC_HEAP = "cattle_heap_pressure"
METRIC_POOL = {
    "max": "cattle_db_pool_max",
    "in_use": "cattle_db_pool_in_use",
    "waited": "cattle_db_pool_waited_total",
    "wait_s": "cattle_db_pool_wait_seconds_total",
    "exhausted": "cattle_db_pool_exhausted_total",
}


class Sampler:
    """Samples taken while a load runs (`with Sampler(...)`): database counters, container memory
    and CPU every SAMPLE_INTERVAL, each node's heap and pool gauges every NODE_POLL_INTERVAL, each
    on a thread of its own (the node's peak gauge catches spikes between polls; polling often still
    reads a node's last peak shortly before it dies of it).

    Every call is bounded by a short timeout and a failed sample is skipped, never fatal: a
    database at its connection limit or a node that just died is exactly what is being measured."""

    def __init__(self, t: Topology, path: Path, generator: Callable[[], float | None] = lambda: None) -> None:
        self.t = t
        self.path = path
        self.generator = generator  # the load generator's latest CPU share (record/load.py GeneratorMeter)
        self.db: list[dict[str, int]] = []
        self.memory: dict[str, float] = {}
        self.pressure: dict[str, float] = {}
        self.degraded: set[str] = set()
        self.samples: list[dict[str, Any]] = []
        self.started = time.time()
        # The database's containers (a Galera database's members and front), the load balancer, the
        # nodes: not the monitoring containers nor a fault's rogue client, which are no resource of
        # the system under test.
        self.services = (*database_services(t), "lb", *t.node_names)
        self._places: dict[str, engine.Place] = {}  # service -> its container (by id) and engine
        self._cpu: dict[str, cpu.CpuReading] = {}  # the previous reading of each container and "machine"
        self._last_db: dict[str, int] = {}
        self._last_db_t = time.monotonic()
        self._node_metrics: dict[str, dict[str, float]] = {}  # the latest poll of each node
        self._last_pool: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_nodes, name="capacity-node-poller", daemon=True)
        self._sampler = threading.Thread(target=self._sample, name="capacity-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        try:
            # Once: a point's containers are not replaced while it runs (a node that dies stays dead
            # or restarts in its own container on compose; a swarm's replaced task loses its figures).
            self._places = engine.by_id(self.t, self.services)
        except LabError:
            self._places = {}  # no CPU or memory figures for this point; the rest is still measured
        self.started = time.time()
        self._cpu_readings()
        self._last_db, self._last_db_t = self.db_status(), time.monotonic()
        self._poller.start()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._poller.join()
        self._sampler.join()

    def bottleneck(self) -> b.Bottleneck:
        """What saturated first while this sampler ran."""
        return b.attribute(self.samples, self.started)

    def write_bottleneck(self, path: Path) -> b.Bottleneck:
        """The bottleneck and each resource's peak share, as `bottleneck.json` of a load run."""
        found = self.bottleneck()
        path.write_text(
            json.dumps(
                {"bottleneck": asdict(found), "text": found.text(), "usage_peaks": b.peaks(self.samples)}, indent=2
            )
        )
        return found

    def _sample(self) -> None:
        due = time.monotonic() + SAMPLE_INTERVAL  # on a clock: a slow sample (docker stats) delays only itself
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.take()
            due = max(due + SAMPLE_INTERVAL, time.monotonic())

    def _poll_nodes(self) -> None:
        while not self._stop.wait(NODE_POLL_INTERVAL):
            for node in self.t.node_names:
                self.node_memory(node)

    def take(self) -> None:
        db = self.db_status()
        sample: dict[str, Any] = {
            "t": time.time(),
            "db": db,
            "memory_mib": self.container_memory(),
            "peak_heap_pressure": dict(self.pressure),
            "degraded": sorted(self.degraded),
        }
        sample["usage"] = [u.to_dict() for u in self.usage(db)]
        self.samples.append(sample)
        if sample["db"]:
            self.db.append(sample["db"])
        for service, mib in sample["memory_mib"].items():
            self.memory[service] = max(self.memory.get(service, 0.0), mib)
        with self.path.open("a") as f:
            f.write(json.dumps(sample) + "\n")

    def _cpu_readings(self) -> dict[str, tuple[cpu.CpuReading, cpu.CpuReading]]:
        """(previous, current) reading of each container and the machine; the current becomes the previous."""
        now: dict[str, cpu.CpuReading | None] = {}
        for host, places in self._by_host().items():
            try:
                # The cgroup's own counters, not `docker stats` CPU %: they are cumulative, so nothing
                # between two samples is missed (stats' figure covers the second or so it waits), and
                # they give the CFS quota and the time it held the container back. Read on the
                # container's machine: this one's files, or one `grep` in a swarm host's container.
                read = cpu.container_cpus([p.container for p in places.values()], engine.files(self.t, host))
            except LabError:
                continue  # a host that does not answer gives no figure this time
            now.update((service, read.get(p.container)) for service, p in places.items())
        # Every host made here shares this machine's CPUs (hosts.py): the machine's figure is theirs.
        now["machine"] = cpu.machine_cpu()
        pairs = {k: (self._cpu[k], r) for k, r in now.items() if r is not None and k in self._cpu}
        self._cpu = {k: r for k, r in now.items() if r is not None}
        return pairs

    def _by_host(self) -> dict[str, dict[str, engine.Place]]:
        out: dict[str, dict[str, engine.Place]] = {}
        for service, p in self._places.items():
            out.setdefault(p.host, {})[service] = p
        return out

    def usage(self, db: Mapping[str, int]) -> list[b.Usage]:
        """Every resource's share of its limit since the last sample."""
        out = []
        for key, (prev, cur) in self._cpu_readings().items():
            limit = min(cur.limit, NODE_PROCESS_CPUS) if key in self.t.node_names else cur.limit
            used = cur.used_s - prev.used_s
            dt = cur.t - prev.t
            held = cpu.throttled(prev, cur)
            evidence = f"{used / dt:.2f} of {limit:g} CPU" + (
                f", its quota held it back {held:.2f} s per s" if held else ""
            )
            resource = self._cpu_resource(key)
            if resource == b.DB_CPU and db and key == self._counted:
                evidence += f", {db.get('Threads_running', '?')} threads running"
            out.append(b.Usage(resource, "" if key in ("db", "machine") else key, used / dt / limit, evidence))
        generator = self.generator()
        if generator is not None:
            out.append(b.Usage(b.GENERATOR, "", generator, f"Locust's hottest process at {generator:.0%} of one CPU"))
        out += self._db_usage(db)
        for node, m in list(self._node_metrics.items()):  # the poller thread may add a node meanwhile
            out += self._node_usage(node, m)
        if db:
            self._last_db, self._last_db_t = dict(db), time.monotonic()
        return out

    @property
    def _counted(self) -> str:
        """The database container whose counters db_status reads: `db`, or the first Galera member,
        which the front makes the writer while it is Synced (probes.db_query)."""
        return (self.t.db.member_names or ("db",))[0]

    def _cpu_resource(self, key: str) -> str:
        if key in ("db", *self.t.db.member_names):
            return b.DB_CPU
        fixed = {"lb": b.LB_CPU, FRONT: b.LB_CPU, "machine": b.MACHINE_CPU}
        return fixed.get(key, b.NODE_CPU)

    def _db_usage(self, db: Mapping[str, int]) -> list[b.Usage]:
        if not db:
            return []
        last = self._last_db
        dt = max(0.001, time.monotonic() - self._last_db_t)

        def delta(k: str) -> int:
            return max(0, db.get(k, 0) - last.get(k, db.get(k, 0)))

        refused, cap = delta("Connection_errors_max_connections"), self.max_connections
        connected = db.get("Threads_connected", 0)
        share = connected / cap if cap else 0.0
        evidence = f"Threads_connected {connected} of max_connections {cap or '?'}"
        if refused:
            share = max(share, 1.0)
            evidence += f", {refused} connections refused since the last sample"
        lock_s = delta("Innodb_row_lock_time") / 1000
        locks = (
            f"{delta('Innodb_row_lock_waits')} row lock waits, {lock_s:.1f} s waited; "
            f"{delta('Slow_queries')} slow queries"
        )
        out = [b.Usage(b.DB_CONNECTIONS, "", share, evidence), b.Usage(b.DB_LOCKS, "", lock_s / dt, locks)]
        if "wsrep_flow_control_paused_ns" in db:
            # Flow control pauses replication for the whole cluster, so one member's figure is everyone's.
            paused = delta("wsrep_flow_control_paused_ns") / 1e9 / dt
            fc = (
                f"replication paused {paused:.0%} of the time by flow control; {self._counted} received "
                f"{delta('wsrep_flow_control_recv')} pause requests, sent {delta('wsrep_flow_control_sent')}"
            )
            out.append(b.Usage(b.DB_FLOW_CONTROL, "", paused, fc))
        return out

    def _node_usage(self, node: str, m: Mapping[str, float]) -> list[b.Usage]:
        pool = {k: m.get(v, 0.0) for k, v in METRIC_POOL.items()}
        last = self._last_pool.get(node, pool)
        self._last_pool[node] = pool
        waited, exhausted = pool["waited"] - last["waited"], pool["exhausted"] - last["exhausted"]
        share = 1.0 if waited > 0 else pool["in_use"] / pool["max"] if pool["max"] else 0.0
        evidence = f"{pool['in_use']:g} of {pool['max']:g} connections in use"
        if waited > 0:
            evidence = (
                f"{waited:g} requests waited {pool['wait_s'] - last['wait_s']:.1f} s for one of {pool['max']:g} "
                f"connections, {exhausted:g} gave up (503 POOL_EXHAUSTED)"
            )
        heap = m.get(METRIC_HEAP, 0.0)
        return [
            b.Usage(b.POOL, node, share, evidence),
            b.Usage(
                b.HEAP, node, heap, f"modelled heap at {heap:.0%} of its budget (GC pauses from {GC_THRESHOLD:.0%})"
            ),
        ]

    @property
    def max_connections(self) -> int:
        return self.t.db_max_connections

    def db_status(self) -> dict[str, int]:
        from lab.cluster import probes

        names = ", ".join(f"'{c}'" for c in DB_COUNTERS)
        try:
            rows = probes.db_query(self.t, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})", timeout=5)
        except RuntimeFailure:
            return {}
        return {r["Variable_name"]: int(r["Value"]) for r in rows if r.get("Value", "").isdigit()}

    def db_max_connections(self) -> int | None:
        from lab.cluster import probes

        try:
            rows = probes.db_query(self.t, "SELECT @@GLOBAL.max_connections AS n", timeout=5)
        except RuntimeFailure:
            return None
        return int(rows[0]["n"]) if rows else None

    def container_memory(self) -> dict[str, float]:
        """Each container's memory, by `docker stats` on the engine that runs it, the engines at once
        (a nested `docker stats --no-stream` takes a second or two)."""
        service_of = {p.container: s for s, p in self._places.items()}
        groups = engine.by_engine(list(self._places.values()))
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            outs = list(pool.map(lambda g: _stats(*g), groups.items()))
        found: dict[str, float] = {}
        for line in "".join(outs).splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            short, mib = row.get("ID", ""), parse_mem_usage(row.get("MemUsage", ""))
            service = next((s for cid, s in service_of.items() if short and cid.startswith(short)), None)
            if service and mib is not None:
                found[service] = round(mib, 1)
        return found

    def node_memory(self, node: str) -> None:
        from lab.cluster import probes

        res = probes.http_get("127.0.0.1", self.t.ports.mgmt, f"/node/{node}/metrics", timeout=1)
        if res.status != 200 or res.headers.get("x-rancher-node") != node:
            return
        metrics = parse_metrics(res.body.decode(errors="replace"))
        self._node_metrics[node] = metrics
        if METRIC_HEAP_PEAK in metrics:
            self.pressure[node] = max(self.pressure.get(node, 0.0), metrics[METRIC_HEAP_PEAK])
        if metrics.get(METRIC_MEMORY_DEGRADED) or self.pressure.get(node, 0.0) > GC_THRESHOLD:
            self.degraded.add(node)

    def db_figures(self, final: Mapping[str, int], max_connections: int | None) -> DbFigures:
        every = [*self.db, final] if final else self.db
        peak = max((s["Threads_connected"] for s in every if "Threads_connected" in s), default=None)
        return DbFigures(
            max_connections,
            peak,
            final.get("Max_used_connections"),
            final.get("Connection_errors_max_connections"),
            final.get("Aborted_connects"),
            len(every),
        )
