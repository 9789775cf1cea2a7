"""Live measurement during one point's load: the database's counters, each container's memory
(`docker stats`) and each node's heap gauges (its `/metrics`), sampled on a clock; plus the
parsers of `docker stats` and Prometheus text those samples need."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.capacity.measurement import DbFigures
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure
from lab.server.heap import GC_THRESHOLD

DB_COUNTERS = ("Threads_connected", "Max_used_connections", "Connection_errors_max_connections", "Aborted_connects")
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


class Sampler:
    """Samples taken during one point's load: database counters and container memory every
    SAMPLE_INTERVAL, each node's heap gauges every NODE_POLL_INTERVAL on a thread of its own (the
    node's peak gauge catches spikes between polls; polling often still reads a node's last peak
    shortly before it dies of it).

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
        sample: dict[str, Any] = {
            "t": time.time(),
            "db": self.db_status(),
            "memory_mib": self.container_memory(),
            "peak_heap_pressure": dict(self.pressure),
            "degraded": sorted(self.degraded),
        }
        if sample["db"]:
            self.db.append(sample["db"])
        for service, mib in sample["memory_mib"].items():
            self.memory[service] = max(self.memory.get(service, 0.0), mib)
        with self.path.open("a") as f:
            f.write(json.dumps(sample) + "\n")

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
        from lab.cluster import docker

        try:
            out = docker.run(
                ["docker", "stats", "--no-stream", "--format", "{{json .}}", *self._names],
                "sample docker stats",
                timeout=15,
            )
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
        from lab.cluster import probes

        res = probes.http_get("127.0.0.1", self.t.ports.mgmt, f"/node/{node}/metrics", timeout=1)
        if res.status != 200 or res.headers.get("x-rancher-node") != node:
            return
        metrics = parse_metrics(res.body.decode(errors="replace"))
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
