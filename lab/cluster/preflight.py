"""`halab check`: a topology against the install guide's requirements, before anything starts.

The guide: MySQL with at least 1 GB of RAM and 50 connections per server node (150 for 3 nodes);
the load balancer on 80 and 443 (18080 optional, the management view); a 4 to 8 GB heap per node
for larger deployments, with 8 or 16 GB of RAM. Each finding says what is short, by how much, and
which setting fixes it.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from dataclasses import dataclass

from lab.cluster import docker
from lab.cluster.compose import EXPORTER_MEMORY_MIB, PROM_MEMORY_MIB
from lab.cluster.topology import HARNESS_CONNECTIONS, NODE_BASE_MEMORY_MIB, Ports, Topology
from lab.core.errors import BadInput, CheckFailed, RuntimeFailure

log = logging.getLogger("halab.cluster.preflight")

GUIDE_DB_MEMORY_MIB = 1024
LB_MEMORY_MIB = 64
# Real bytes the node needs per modelled heap byte: cache + in-flight working memory + slack.
HEAP_HEADROOM = 1.25


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (start refused without --allow-undersized), "warning" or "ok"
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level.upper():7} {self.check}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")


def _ok(check: str, message: str) -> Finding:
    return Finding("ok", check, message)


def connections(t: Topology) -> Finding:
    need = t.size * t.sizing.guide_pool + HARNESS_CONNECTIONS
    have = t.db_max_connections
    what = (
        f"{t.size} node(s) x {t.sizing.guide_pool} pooled connections + {HARNESS_CONNECTIONS} for the harness = {need}"
    )
    # Galera: the front sends every connection to the one writer, and any member may become it.
    who = "each Galera member (the writer takes every connection)" if t.db.galera else "the database"
    if have < need:
        return Finding(
            "error",
            "max_connections",
            f"{who} allows {have} connections, {need - have} short of {what}",
            f"--db-max-connections {need} (MySQL max_connections) or a smaller --pool-size",
        )
    return _ok("max_connections", f"{have}{' per member' if t.db.galera else ''} >= {what}")


def db_memory(t: Topology) -> list[Finding]:
    s = t.sizing
    out = []
    if s.db_memory_mib < GUIDE_DB_MEMORY_MIB:
        out.append(
            Finding(
                "error",
                "database memory",
                f"{s.db_memory_mib} MiB is {GUIDE_DB_MEMORY_MIB - s.db_memory_mib} MiB below the guide's 1 GB",
                f"--db-memory {GUIDE_DB_MEMORY_MIB}",
            )
        )
    else:
        out.append(_ok("database memory", f"{s.db_memory_mib} MiB >= the guide's 1 GB"))
    # InnoDB's buffer pool plus per-connection buffers must fit in the container or it is OOM-killed.
    per_conn_mib = 1
    need = s.db_buffer_pool_mib + t.db_max_connections * per_conn_mib + 128
    if need > s.db_memory_mib:
        out.append(
            Finding(
                "error",
                "innodb_buffer_pool_size",
                f"buffer pool {s.db_buffer_pool_mib} MiB + ~{per_conn_mib} MiB x {t.db_max_connections} "
                f"connections + 128 MiB server = {need} MiB exceeds the database's {s.db_memory_mib} MiB "
                f"by {need - s.db_memory_mib} MiB",
                f"--db-memory {need} or a smaller --db-buffer-pool",
            )
        )
    return out


def node_memory(t: Topology) -> list[Finding]:
    s = t.sizing
    need = NODE_BASE_MEMORY_MIB + int(s.modelled_heap_mib * HEAP_HEADROOM + 0.999)
    have = t.node_mem_limit_mib
    heap = f"{s.java_opts} (modelled as {s.modelled_heap_mib:.0f} MiB at scale 1/{s.heap_scale})"
    out = []
    if have < need:
        out.append(
            Finding(
                "error",
                "node memory",
                f"{have} MiB per node is {need - have} MiB short of {NODE_BASE_MEMORY_MIB} MiB base + heap {heap}",
                f"--node-memory {need} or a smaller -Xmx in --java-opts",
            )
        )
    else:
        out.append(_ok("node memory", f"{have} MiB per node fits heap {heap}"))
    if s.heap_bytes < 4 * 1024**3:
        out.append(
            Finding(
                "warning",
                "heap",
                f"{s.java_opts}: the guide recommends a 4 or 8 GB heap per node for larger deployments",
                "--java-opts -Xmx4g",
            )
        )
    return out


def ports(t: Topology) -> list[Finding]:
    if t.engine.swarm:  # the host group's manager publishes them (hosts.check_lab_fits), not this machine
        return [_ok("ports", f"published by the manager of host group {t.engine.hosts!r}")]
    out = []
    for name, port in t.published_ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((t.ports.bind, port))
                out.append(_ok(f"port {port}", f"{name} on {t.ports.bind}:{port} is free"))
            except PermissionError:
                out.append(
                    Finding(
                        "error",
                        f"port {port}",
                        f"binding {t.ports.bind}:{port} is not permitted for this user",
                        f"--{name}-port {port + 8000}",
                    )
                )
            except OSError:
                out.append(
                    Finding(
                        "error",
                        f"port {port}",
                        f"{name} port {t.ports.bind}:{port} is already in use by {port_holder(port)}",
                        f"stop it or choose another: --{name}-port {port + 8000}",
                    )
                )
    return out


def free_port(bind: str = "127.0.0.1") -> int:
    """A TCP port free right now on `bind` (tests and sweeps run labs side by side)."""
    with socket.socket() as s:
        s.bind((bind, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(bind: str = "127.0.0.1") -> Ports:
    """Distinct free ports for every port a lab may publish (Prometheus's too, used only with
    monitoring): `free_port` closes its socket before it returns, so two calls can be handed the
    same port (a CI run got http = https)."""
    picked: list[int] = []
    for _ in range(100):
        port = free_port(bind)
        if port not in picked:
            picked.append(port)
        if len(picked) == 4:
            return Ports(bind=bind, http=picked[0], https=picked[1], mgmt=picked[2], prom=picked[3])
    raise RuntimeFailure(f"could not find four distinct free ports on {bind}")


def port_holder(port: int) -> str:
    """Who listens on a TCP port, as `ss` tells it (best effort), naming a container if Docker does."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "another process"
    procs = sorted({part.split('"')[1] for part in out.split("((")[1:] if '"' in part})
    if "docker-proxy" in procs:
        try:
            names = docker.run(
                ["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"],
                "find the container that publishes the port",
            ).split()
            if names:
                return f"container {', '.join(names)}"
        except RuntimeFailure:
            pass
    return ", ".join(procs) or "another process"


def host_memory(t: Topology) -> Finding:
    # A Galera database: every member has the database's memory; its front and garbd are about a
    # load balancer's each.
    small = 1 + (1 + bool(t.db.arbitrator) if t.db.galera else 0)
    need = t.size * t.node_mem_limit_mib + t.db.members * t.sizing.db_memory_mib + small * LB_MEMORY_MIB
    if t.monitoring:
        need += PROM_MEMORY_MIB + EXPORTER_MEMORY_MIB
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in f}
        have = info["MemAvailable"]
    except (OSError, KeyError, ValueError):
        return Finding("warning", "host memory", "could not read /proc/meminfo")
    if have < need:
        return Finding(
            "error",
            "host memory",
            f"the lab may use {need} MiB, {need - have} MiB more than the {have} MiB available",
            "fewer nodes or smaller --node-memory/--db-memory",
        )
    return _ok("host memory", f"up to {need} MiB of {have} MiB available")


def check(t: Topology, include_ports: bool = True) -> list[Finding]:
    findings = [connections(t), *db_memory(t), *node_memory(t), host_memory(t)]
    if include_ports:
        findings += ports(t)
    return findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def enforce(t: Topology, allow_undersized: bool) -> None:
    """Run before `up`: a taken port always stops the start; sizing short of the guide stops it
    unless the user asked for an undersized lab on purpose (experiments)."""
    findings = check(t)
    for f in findings:
        if f.level == "warning":
            log.info(f.line())
    bad = errors(findings)
    ports_bad = [f for f in bad if f.check.startswith("port ")]
    if ports_bad:
        raise BadInput(f"{ports_bad[0].message}; {ports_bad[0].fix}")
    if bad and not allow_undersized:
        first = bad[0]
        more = f" (and {len(bad) - 1} more: run `halab check`)" if len(bad) > 1 else ""
        raise CheckFailed(
            f"pre-flight {first.check}: {first.message}; fix: {first.fix}{more}; or start it "
            f"undersized on purpose with --allow-undersized"
        )
    for f in bad:
        log.info(f"undersized on purpose: {f.line()}")
