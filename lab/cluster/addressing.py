"""Fixed addresses for a lab's private networks, and the names that map to them.

Why: Docker gives a restarted container whatever address is free and answers for its name through
an embedded DNS that stops answering for a network's names while it removes dead containers'
endpoints. A ZooKeeper member started in that window could not resolve the peer it later elected
("LeaderConnector-b2.interdc/<unresolved>:2888", docs/survivability.md, mechanism E) and the
survivors spent seconds electing again; two restarted peers could even swap addresses. Real hosts
have fixed addresses and name them in /etc/hosts or a DNS that does not depend on which hosts are
alive. So each private network (the peer mesh, the database's, one per datacenter) gets its own
/24, every container a fixed address in it, and every container that names another gets the name
in its /etc/hosts (compose `extra_hosts`): nothing in the lab resolves a peer through Docker's DNS.

Subnets are picked from a pool (HALAB_SUBNET_POOL, default 10.238.0.0/16) clear of every Docker
network and host route; `reserving()` holds a host-wide lock from the choice until the networks
exist, so that labs started at once do not pick the same subnets.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.cluster.topology import Topology
from lab.core.errors import BadInput, RuntimeFailure

DEFAULT_POOL = "10.238.0.0/16"
LOCK_FILE = Path(tempfile.gettempdir()) / "halab-addressing.lock"
LB_HOST = 2  # host numbers inside each /24 (.1 is the bridge's gateway)
DB_HOST = 3
# On the database's network, with monitoring (lab/cluster/compose.py): Prometheus, which scrapes the
# nodes there, and the database's exporter.
PROM_HOST = 4
EXPORTER_HOST = 5
FIRST_NODE_HOST = 10
FIRST_DB_MEMBER_HOST = 20  # Galera members db1..db5 (DB_HOST is then the database front's)
ARBITRATOR_HOST = 30  # Galera's garbd
ROGUE_HOST = 250  # on the database's network: an exhaust fault's rogue client (lab/faults/gray.py)


def private_networks(t: Topology) -> tuple[str, ...]:
    """The lab's networks that get fixed addresses: everything but `front` (the published side)."""
    return ("interdc", "db", *t.datacenters)


@dataclass(frozen=True)
class Plan:
    """Network name -> its /24; with the host numbers above, every container's address."""

    subnets: Mapping[str, str]

    def address(self, network: str, host: int) -> str:
        return str(ipaddress.ip_network(self.subnets[network])[host])

    def node(self, t: Topology, name: str, network: str) -> str:
        return self.address(network, FIRST_NODE_HOST + t.node_names.index(name))

    def db(self) -> str:
        """The address the nodes use for `db`: the one database, or the Galera front."""
        return self.address("db", DB_HOST)

    def db_member(self, t: Topology, name: str, network: str) -> str:
        return self.address(network, FIRST_DB_MEMBER_HOST + t.db.member_names.index(name))

    def arbitrator(self, network: str) -> str:
        return self.address(network, ARBITRATOR_HOST)

    def node_hosts(self, t: Topology) -> dict[str, str]:
        """/etc/hosts entries of a node: every peer on the peer mesh, and the database."""
        return {**{t.peer_address(p): self.node(t, p.name, "interdc") for p in t.nodes}, "db": self.db()}

    def lb_hosts(self, t: Topology) -> dict[str, str]:
        """/etc/hosts entries of the load balancer: every node by its name in its datacenter."""
        return {n.alias(n.dc): self.node(t, n.name, n.dc) for n in t.nodes}


def choose(t: Topology, used: Iterable[str], pool: str | None = None) -> Plan:
    """The first /24s of the pool that overlap nothing in USED (CIDRs), one per private network."""
    text = pool or os.environ.get("HALAB_SUBNET_POOL") or DEFAULT_POOL
    try:
        net = ipaddress.ip_network(text)
    except ValueError as exc:
        raise BadInput(f"HALAB_SUBNET_POOL: {text!r} is not a network, e.g. 10.238.0.0/16 ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 24:
        raise BadInput(f"HALAB_SUBNET_POOL: {text!r} must be an IPv4 network of /24 or larger")
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    names = private_networks(t)
    free = (s for s in net.subnets(new_prefix=24) if not any(s.overlaps(u) for u in taken))
    chosen = [str(s) for _, s in zip(names, free, strict=False)]
    if len(chosen) < len(names):
        raise RuntimeFailure(
            f"no free /24 left in {text} for lab {t.lab!r} ({len(names)} needed); remove unused Docker networks "
            "(`docker network prune`) or set HALAB_SUBNET_POOL to another private range"
        )
    return Plan(dict(zip(names, chosen, strict=True)))


def used_subnets() -> list[str]:
    """Every subnet of every Docker network, and every IPv4 route of the host."""
    out = _host_routes()
    try:
        ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:  # no Docker here (`halab render` for another machine)
        return out
    if ids:
        proc = subprocess.run(
            ["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
            capture_output=True,
            text=True,
        )
        out += [s for s in proc.stdout.split() if "." in s]  # IPv4 only
    return out


def _host_routes() -> list[str]:
    """IPv4 routes from /proc/net/route (destination and mask are little-endian hex); not the default route."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            f = line.split()
            dest, mask = (ipaddress.IPv4Address(int(x, 16).to_bytes(4, "little")) for x in (f[1], f[7]))
            if int(mask):
                out.append(str(ipaddress.ip_network(f"{dest}/{mask}", strict=False)))
    return out


@contextlib.contextmanager
def reserving() -> Iterator[None]:
    """A host-wide lock from choosing subnets until the lab's networks exist."""
    # Read-only: a lock file made by root still serves a user in the docker group (and vice versa).
    fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
