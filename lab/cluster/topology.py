"""The typed lab spec: cluster size, datacenters, database placement, ports and sizing.

Pure: no Docker, no I/O. Input is validated once here (`make_topology`), with messages that name
where the value came from, so everything downstream can trust a `Topology`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.cluster.database import Database, make_database
from lab.core.errors import BadInput
from lab.server.profiles import DEFAULT_PROFILE, PROFILES, Profile, profile

SUPPORTED_SIZES = (1, 3, 5)
DEFAULT_LAYOUTS = {1: (("dc-a", 1),), 3: (("dc-a", 2), ("dc-b", 1)), 5: (("dc-a", 3), ("dc-b", 2))}
EXTERNAL_DB = "external"
OUTSIDE_LB = "outside"  # the load balancer beyond every datacenter, as the clients are
COMPOSE, SWARM = "compose", "swarm"
ENGINES = (COMPOSE, SWARM)
DEFAULT_HOST_GROUP = "swm"  # the host group of a swarm lab that names none
# The guide: 50 database connections per Rancher server node.
GUIDE_POOL_PER_NODE = 50
# Connections the harness itself and the database's own tools may need on top of the nodes' pools.
HARNESS_CONNECTIONS = 10
# Real bytes of the modelled heap = -Xmx / HEAP_SCALE (see lab/server/heap.py).
DEFAULT_HEAP_SCALE = 32
# Besides the modelled heap a node runs ZooKeeper (-Xmx64m, ~60 MiB RSS) and Python (~60 MiB).
NODE_BASE_MEMORY_MIB = 256

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_LAB_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_SIZE_RE = re.compile(r"^(\d+)([kmgt]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_ENV_KEY_RE = re.compile(r"^(CATTLE|HALAB)_[A-Z0-9_]+$")
# Server variables (docs/architecture.md) that `--server-env` may not set, and what sets them
# instead: everything lab/compose.py node_environment wires (a unit test keeps the two in step),
# plus what would break the lab around the node (its secret, the ports the load balancer routes
# to, the node's own ZooKeeper member).
RESERVED_SERVER_ENV: dict[str, str] = {
    "CATTLE_DB_CATTLE_MYSQL_HOST": "the lab's database service",
    "CATTLE_DB_CATTLE_MYSQL_PORT": "the lab's database service",
    "CATTLE_DB_CATTLE_MYSQL_NAME": "the lab's database service",
    "CATTLE_DB_CATTLE_USERNAME": "the lab's database service",
    "CATTLE_DB_CATTLE_PASSWORD": "the lab's per-lab secret file (never an environment value)",
    "CATTLE_DB_CATTLE_PASSWORD_FILE": "the lab's per-lab secret file",
    "CATTLE_DB_CATTLE_MAXTOTAL": "--pool-size",
    "CATTLE_DB_CATTLE_MAXWAIT": "--pool-wait-ms",
    "CATTLE_HA_CLUSTER_SIZE": "--nodes",
    "CATTLE_HA_HOST_REGISTRATION_URL": "--https-port (the load balancer's address)",
    "CATTLE_ZOOKEEPER_CONNECTION_STRING": "--nodes and --layout",
    "CATTLE_JAVA_OPTS": "--java-opts",
    "HALAB_NODE_NAME": "--layout",
    "HALAB_ZK_MYID": "--nodes and --layout",
    "HALAB_ZK_SERVERS": "--nodes and --layout",
    "HALAB_HEAP_SCALE": "--heap-scale",
    "HALAB_PROFILE": "--profile",
    "HALAB_START_ZOOKEEPER": "the lab itself (every node runs its ZooKeeper member)",
    "HALAB_API_PORT": "the lab itself (the load balancer routes to port 8080)",
    "HALAB_MANAGEMENT_PORT": "the lab itself (the load balancer routes to port 18080)",
}


def majority(n: int) -> int:
    """Members a ZooKeeper ensemble of n needs to keep quorum."""
    return n // 2 + 1


def tolerance(n: int) -> int:
    """How many members an ensemble of n can lose and keep quorum."""
    return n - majority(n)


def parse_size(text: str, where: str) -> int:
    """'4g', '512m', '1024' (bytes) -> bytes, JVM-style."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise BadInput(f"{where}: {text!r} is not a size like 512m or 4g")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def heap_from_java_opts(java_opts: str, where: str = "CATTLE_JAVA_OPTS") -> int:
    """The -Xmx of a CATTLE_JAVA_OPTS string, in bytes (cattle's own default when absent: 1g)."""
    found = re.findall(r"-Xmx(\S+)", java_opts)
    return parse_size(found[-1], where) if found else 1024**3


@dataclass(frozen=True)
class Node:
    name: str
    dc: str
    zk_id: int

    def alias(self, network: str) -> str:
        return f"{self.name}.{network}"


@dataclass(frozen=True)
class Ports:
    bind: str = "127.0.0.1"
    http: int = 80
    https: int = 443
    mgmt: int = 18080
    # Prometheus's web UI and HTTP API: published only when the lab has monitoring.
    prom: int = 9090
    # Benchmarks only: publish the first node's API too, to compare against the LB path.
    direct: int | None = None

    def published(self) -> dict[str, int]:
        ports = {"http": self.http, "https": self.https, "mgmt": self.mgmt}
        return ports if self.direct is None else {**ports, "direct": self.direct}


@dataclass(frozen=True)
class Sizing:
    # None: the node profile's own pool (rancher-1.0: cattle's 1000 connections, 1000 ms wait)
    pool_size: int | None = None
    pool_wait_ms: int | None = None
    java_opts: str = "-Xmx1g"
    heap_scale: int = DEFAULT_HEAP_SCALE
    db_max_connections: int | None = None  # None: nodes x pool + harness headroom
    db_memory_mib: int = 1024  # the guide: MySQL with at least 1 GB RAM
    db_buffer_pool_mib: int = 256
    node_mem_limit_mib: int | None = None  # None: derived from the heap

    @property
    def heap_bytes(self) -> int:
        return heap_from_java_opts(self.java_opts)

    @property
    def guide_pool(self) -> int:
        """Connections per node the database is sized for: the pool when set, else the guide's 50
        (cattle's own pool was not bounded by the guide's figure)."""
        return GUIDE_POOL_PER_NODE if self.pool_size is None else self.pool_size

    @property
    def modelled_heap_mib(self) -> float:
        return self.heap_bytes / self.heap_scale / 1024**2


@dataclass(frozen=True)
class Tls:
    """The install guide's certificate choice: generated per lab, or the user's own."""

    cert: str | None = None
    key: str | None = None

    @property
    def provided(self) -> bool:
        return self.cert is not None


@dataclass(frozen=True)
class Engine:
    """What runs the lab: a compose project on this machine's Docker (`compose`), or a stack on a
    Docker swarm (`swarm`) whose hosts are the host group `hosts` (lab/cluster/hosts.py)."""

    kind: str = COMPOSE
    hosts: str | None = None

    @property
    def swarm(self) -> bool:
        return self.kind == SWARM


@dataclass(frozen=True)
class Topology:
    lab: str
    nodes: tuple[Node, ...]
    datacenters: tuple[str, ...]
    db_dc: str
    ports: Ports = field(default_factory=Ports)
    sizing: Sizing = field(default_factory=Sizing)
    tls: Tls = field(default_factory=Tls)
    db_image: str | None = None  # None: the lab's own MariaDB image
    # Extra server settings for every node (`--server-env KEY=VALUE`), in the order given.
    server_env: tuple[tuple[str, str], ...] = ()
    # How the nodes fail (lab/server/profiles.py): its name, checked by make_topology.
    profile: str = DEFAULT_PROFILE
    # Where the load balancer (and the clients with it) sits: a datacenter, so that a split cuts it
    # from the other side's nodes, or OUTSIDE_LB: beyond every datacenter, reaching all of them.
    lb_dc: str = OUTSIDE_LB
    # single (one MariaDB at db_dc) or a Galera cluster, whose front then sits at db_dc (lab/cluster/database.py)
    db: Database = field(default_factory=Database)
    # `halab up --monitoring`: Prometheus and the database's exporter join the lab.
    monitoring: bool = False
    engine: Engine = field(default_factory=Engine)

    @property
    def sites(self) -> tuple[str, ...]:
        """Where things can be cut apart: the datacenters, then a Galera arbitrator's third site."""
        third = self.db.arbitrator if self.db.arbitrator not in (None, *self.datacenters) else None
        return self.datacenters + ((third,) if third else ())

    @property
    def published_ports(self) -> dict[str, int]:
        """Every port the lab publishes on `ports.bind`, by the name of its option (`--<name>-port`)."""
        ports = self.ports.published()
        return {**ports, "prom": self.ports.prom} if self.monitoring else ports

    @property
    def node_profile(self) -> Profile:
        return profile(self.profile)

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def majority(self) -> int:
        return majority(self.size)

    @property
    def tolerance(self) -> int:
        return tolerance(self.size)

    @property
    def db_max_connections(self) -> int:
        s = self.sizing
        if s.db_max_connections is not None:
            return s.db_max_connections
        return max(151, self.size * s.guide_pool + HARNESS_CONNECTIONS)

    @property
    def node_mem_limit_mib(self) -> int:
        s = self.sizing
        if s.node_mem_limit_mib is not None:
            return s.node_mem_limit_mib
        return NODE_BASE_MEMORY_MIB + int(s.modelled_heap_mib * 1.5 + 0.999)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise BadInput(f"no node named {name!r} in lab {self.lab!r} (nodes: {', '.join(self.node_names)})")

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def nodes_in(self, dc: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.dc == dc)

    @staticmethod
    def peer_address(peer: Node) -> str:
        """The name every node uses for a peer: its alias on `interdc`, the peer mesh.

        One name per member for everyone, because ZooKeeper (3.5+) connects back to the election
        address a peer announces for itself; a name valid only inside one datacenter would leave
        members of other datacenters unable to join. Datacenter splits are cut by address on it."""
        return peer.alias("interdc")

    def zk_servers(self) -> str:
        """HALAB_ZK_SERVERS (the same for every node); empty for one node (standalone ZooKeeper)."""
        if self.size == 1:
            return ""
        return ",".join(f"{p.zk_id}={self.peer_address(p)}" for p in self.nodes)

    def zk_connect(self, seen_from: Node) -> str:
        """CATTLE_ZOOKEEPER_CONNECTION_STRING for one node, its own member first."""
        if self.size == 1:
            return "127.0.0.1:2181"
        peers = sorted(self.nodes, key=lambda p: (p != seen_from, p.zk_id))
        return ",".join("127.0.0.1:2181" if p == seen_from else f"{self.peer_address(p)}:2181" for p in peers)


def parse_layout(text: str, where: str = "--layout") -> tuple[tuple[str, int], ...]:
    """'dc-a:2,dc-b:1' -> (('dc-a', 2), ('dc-b', 1))."""
    out: list[tuple[str, int]] = []
    for part in text.split(","):
        name, sep, count = part.strip().partition(":")
        if not sep or not _NAME_RE.match(name) or not (count.isascii() and count.isdigit()):  # int() refuses '²'
            raise BadInput(f"{where}: {part.strip()!r} is not DATACENTER:COUNT, e.g. dc-a:2,dc-b:1")
        if int(count) < 1:
            raise BadInput(f"{where}: datacenter {name!r} has {count} nodes; every datacenter needs at least one")
        if any(name == n for n, _ in out):
            raise BadInput(f"{where}: datacenter {name!r} is named twice")
        out.append((name, int(count)))
    return tuple(out)


def parse_server_env(items: Iterable[str], where: str = "--server-env") -> tuple[tuple[str, str], ...]:
    """['HALAB_PROCESS_DELAY_MS=100', ...] -> (('HALAB_PROCESS_DELAY_MS', '100'), ...); checked by
    make_topology."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"{where}: {item!r} is not KEY=VALUE, e.g. HALAB_PROCESS_DELAY_MS=1000")
        out.append((key.strip(), value))
    return tuple(out)


def check_server_env(env: object, where: str = "--server-env") -> tuple[tuple[str, str], ...]:
    """Validate extra server settings (a mapping, (KEY, VALUE) pairs or None, as a caller or a file
    gives them): CATTLE_*/HALAB_* names, string values without control characters, each name once,
    none the lab sets itself (the message says what sets it)."""
    if env is None:
        return ()
    if isinstance(env, (str, bytes)):
        raise BadInput(f"{where}: give KEY=VALUE pairs, not the string {env!r}")
    if isinstance(env, Mapping):
        pairs: list[object] = list(env.items())
    elif isinstance(env, Iterable):
        pairs = list(env)
    else:
        raise BadInput(f"{where}: give KEY=VALUE pairs, not {env!r}")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise BadInput(f"{where}: {pair!r} is not a (KEY, VALUE) pair")
        key, value = pair
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise BadInput(
                f"{where}: {key!r} is not a server setting: names are CATTLE_* or HALAB_* in capitals, "
                f"digits and '_' (see docs/architecture.md)"
            )
        if key in RESERVED_SERVER_ENV:
            source = RESERVED_SERVER_ENV[key]
            how = f"use {source} instead" if source.startswith("--") else "it cannot be overridden"
            raise BadInput(f"{where}: {key} is set by the lab from {source}; {how}")
        if not isinstance(value, str):
            raise BadInput(f"{where}: {key}={value!r}: the value must be a string")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise BadInput(f"{where}: {key}={value!r}: control characters (newlines, NUL) are not allowed")
        if key in seen:
            raise BadInput(f"{where}: {key} is given twice")
        seen.add(key)
        out.append((key, value))
    return tuple(out)


def check_profile(name: object, where: str = "--profile") -> str:
    if isinstance(name, str) and name in PROFILES:
        return name
    raise BadInput(
        f"{where}: {name!r} is not a node profile; use {' or '.join(PROFILES)} (docs/architecture.md, Node profiles)"
    )


def _size_error(nodes: object, where: str) -> BadInput:
    hint = "1 (not HA), 3 (survives any one failure) or 5 (survives any two)"
    if isinstance(nodes, int) and nodes > 0 and nodes % 2 == 0:
        return BadInput(
            f"{where}: {nodes} nodes adds no fault tolerance: a ZooKeeper quorum of {nodes} needs "
            f"{majority(nodes)} members, so it survives {tolerance(nodes)} failure(s), the same as {nodes - 1} "
            f"nodes; use {hint}"
        )
    return BadInput(f"{where}: cluster size must be {hint}, got {nodes!r}")


def make_topology(
    nodes: object = 3,
    *,
    lab: str = "halab",
    layout: str | Iterable[tuple[str, int]] | None = None,
    db_dc: str | None = None,
    ports: Ports | None = None,
    sizing: Sizing | None = None,
    tls: Tls | None = None,
    db_image: str | None = None,
    server_env: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    profile: str = DEFAULT_PROFILE,
    lb_dc: str | None = None,
    db: str | None = None,
    db_layout: str | None = None,
    db_arbitrator: str | None = None,
    monitoring: bool = False,
    engine: Engine | None = None,
    where: str = "--nodes",
) -> Topology:
    """Validate user input and build a Topology. Every error is a BadInput naming its source."""
    # not isdigit(): int() refuses '³'; not \s: int() refuses the separators \x1c-\x1f that \s matches
    if isinstance(nodes, str) and re.fullmatch(r"[ \t]*-?[0-9]+[ \t]*", nodes):
        nodes = int(nodes)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes not in SUPPORTED_SIZES:
        raise _size_error(nodes, where)
    if not isinstance(lab, str) or not _LAB_RE.match(lab):
        raise BadInput(f"--name: lab name {lab!r} must be lowercase letters, digits, '-' or '_' (at most 41)")
    if layout is None:
        dcs = DEFAULT_LAYOUTS[nodes]
    elif isinstance(layout, str):
        dcs = parse_layout(layout)
    else:
        dcs = tuple(layout)
    total = sum(c for _, c in dcs)
    if total != nodes:
        raise BadInput(
            f"--layout: {', '.join(f'{d}:{c}' for d, c in dcs)} places {total} nodes, but the cluster has {nodes}"
        )
    dc_names = tuple(d for d, _ in dcs)
    prefixes = [d.removeprefix("dc-") for d in dc_names]
    if len(set(prefixes)) != len(prefixes):
        raise BadInput(f"--layout: datacenter names {dc_names} give clashing node names")
    db_dc = db_dc or dc_names[0]
    if db_dc != EXTERNAL_DB and db_dc not in dc_names:
        raise BadInput(
            f"--db-dc: the database is placed in {db_dc!r}, which is not a datacenter of this lab "
            f"({', '.join(dc_names)}) nor {EXTERNAL_DB!r}"
        )
    lb_dc = lb_dc or OUTSIDE_LB
    if lb_dc != OUTSIDE_LB and lb_dc not in dc_names:
        raise BadInput(
            f"--lb-dc: the load balancer is placed in {lb_dc!r}, which is not a datacenter of this lab "
            f"({', '.join(dc_names)}) nor {OUTSIDE_LB!r}"
        )
    database = make_database(db, db_layout, db_arbitrator, dcs)
    if database.galera and db_image:
        raise BadInput(f"HALAB_DB_IMAGE: {db_image!r} replaces the single database only; unset it for --db {db}")
    members: list[Node] = []
    for (dc, count), prefix in zip(dcs, prefixes, strict=True):
        for i in range(1, count + 1):
            members.append(Node(f"{prefix}{i}", dc, len(members) + 1))
    topo = Topology(
        lab=lab,
        nodes=tuple(members),
        datacenters=dc_names,
        db_dc=db_dc,
        ports=ports or Ports(),
        sizing=sizing or Sizing(),
        tls=tls or Tls(),
        db_image=db_image,
        server_env=check_server_env(server_env),
        profile=check_profile(profile),
        lb_dc=lb_dc,
        db=database,
        monitoring=monitoring,
        engine=engine or Engine(),
    )
    _validate_numbers(topo)
    _validate_engine(topo)
    return topo


def _validate_engine(t: Topology) -> None:
    e = t.engine
    if e.kind not in ENGINES:
        raise BadInput(f"--engine: {e.kind!r} is not an engine; use {' or '.join(ENGINES)}")
    if not e.swarm:
        if e.hosts is not None:
            raise BadInput("--hosts: a host group runs swarm labs only; add --engine swarm")
        return
    if e.hosts is not None and not _LAB_RE.match(e.hosts):
        raise BadInput(f"--hosts: host group name {e.hosts!r} must be lowercase letters, digits, '-' or '_'")
    # What the swarm slice does not do yet (docs/swarm.md): each needs fixed addresses or a host
    # address the stack cannot give.
    if t.monitoring:
        raise BadInput("--monitoring: not available with --engine swarm yet (docs/swarm.md)")
    if t.db.galera:
        raise BadInput(
            f"--db: galera:{t.db.members} is not available with --engine swarm yet (its members start one by "
            "one at fixed addresses; docs/galera.md); use --engine compose, or --db single on a swarm"
        )
    if t.ports.direct is not None:
        raise BadInput("--direct-port: not available with --engine swarm (the load balancer is the only way in)")
    if t.ports.bind != Ports.bind:
        raise BadInput("--bind: a swarm publishes on its manager's addresses; the host group decides where")


def _validate_numbers(t: Topology) -> None:
    s = t.sizing
    published = t.published_ports
    for name, port in published.items():
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadInput(f"--{name}-port: {port!r} is not a TCP port (1-65535)")
    if len(set(published.values())) != len(published):
        raise BadInput(f"ports: the published ports must differ, got {published}")
    if s.pool_size is not None and s.pool_size < 1:
        raise BadInput(f"--pool-size: {s.pool_size} must be at least 1 (the guide asks for 50 per node)")
    if s.pool_wait_ms is not None and s.pool_wait_ms < 0:
        raise BadInput(f"--pool-wait-ms: {s.pool_wait_ms} must not be negative")
    if s.heap_scale < 1:
        raise BadInput(f"--heap-scale: {s.heap_scale} must be at least 1")
    heap_from_java_opts(s.java_opts, "--java-opts")
    if s.db_max_connections is not None and s.db_max_connections < 10:
        # MariaDB silently raises anything lower to 10; say so rather than measure a lie.
        raise BadInput(f"--db-max-connections: {s.db_max_connections} is below MySQL's minimum of 10")
    if s.db_memory_mib < 64:
        raise BadInput(f"--db-memory: {s.db_memory_mib} MiB is below what MariaDB starts with (64 MiB)")
