"""Faults and their undo (the nemesis): each verified to have taken effect, each recorded with its
start and end, all listed in a registry in the lab's state directory so that any process can heal
them, even after the one that applied them was killed.

Kinds (`FaultSpec.kind`):

- `kill` (SIGKILL: a host crash), `stop` (graceful), `pause` (cgroup freezer: a frozen host),
  `restart`: containers named by `targets`: node names, `db`, `lb`, or the roles `leader`,
  `follower`, `random` (resolved when applied, from each node's ZooKeeper mode; seeded).
- `isolate`: one node cut from its peers and the database; its load balancer path stays, so the
  node is seen fencing itself (`/ping` 503) rather than vanishing.
- `split`: datacenters cut apart (`sides`: lists of datacenters; those not named form one more
  side). The database goes with the side holding `topology.db_dc` (unless it is external).
- `partition`: named groups of nodes (and `db`) cut apart; unnamed nodes form one more group, an
  unnamed database stays reachable from every group.
- `flaky`: `loss` percent of packets dropped between two endpoint sets (`sides`).
- Gray failures (`gray`): `delay` (round trips across two sides take `delay` longer, varying by up
  to `jitter`; an NFQUEUE delayer in each node on the link, no netem), `stall` (SIGSTOP to one
  `process` of nodes: zookeeper, server or redis), `cpu` (a container's CPU quota cut to `cpus`),
  `clock` (a node's wall clock set `offset` seconds off for its server and cluster-manager), `io` (the data
  disk of the database or nodes throttled, through the cgroup's block I/O limits), `bandwidth`
  (each host's packets across two sides limited to `rate` bits a second: TBF behind IFB devices in
  the nodes on the link), `exhaust` (a rogue client in a container of its own takes the
  database's free connections, all but `leave`).
  Each is verified by a measurement before and after: handshake times, /proc states, a timed
  busy loop, a timed transfer, the database's connection count.

`one_way` (split, partition, flaky) drops only the packets leaving the first side. A network
fault is iptables DROP rules inside the node containers (they keep NET_ADMIN for this; the
database and load balancer are never touched), each commented `halab:<lab>:<fault id>` so a heal
finds them, leftovers included, with `iptables -S`. A rule for packets from A to B sits in A's
OUTPUT chain, or in B's INPUT chain when A is the database, so a loss probability applies once.

Verification: container faults by the container's state; network faults by TCP connects between
the affected containers before (the path must work) and after (it must not; for `flaky`, enough
attempts that at least one is dropped with probability 1 - 1e-4). A fault that did not take
effect is undone and raises FaultNotEffective.

A network fault holds until it is healed, whatever happens to the containers meanwhile. A node
container that starts has a fresh network namespace (its own rules gone) and maybe other
addresses (its peers' rules miss it); a node down or paused when the fault was applied holds no
rules of its own. So `reapply` computes each active network fault's rules again from the
containers as they are, replaces them on every live node (the new ones in before the old ones go)
and checks the cut paths again; the fault's record lists each time under `reapplied`. It runs
right after a `restart` fault and after the heal of a kill, stop or pause, and, while an Injector
holds a network fault, on every start or unpause of one of the lab's containers, whoever caused it
(`docker restart`, a crash), seen by a thread reading `docker events` (StartWatcher). The window
between a container's start and its rules is small but not zero: a restarted node may exchange
packets with its peers for a fraction of a second (the record notes it per node as `exposed`).

Modules, by job: `spec` (kinds, FaultSpec, validation), `netmodel` (the pure network model: cuts
and rules from containers), `backend` (everything that touches Docker; faked by the unit tests),
`gray` (the gray failures' plans, agents and measurements),
`registry` (faults.json and the per-lab locks), `hold` (reapply and the docker-events watcher),
`heal` (undo, heal_lab, signal shielding), `injector` (the Injector). This package re-exports the
public names.
"""

from lab.faults.backend import (
    CONNECT_TIMEOUT,
    DB_PORT,
    SETTLE_TIMEOUT,
    STOP_GRACE,
    ZK_PORT,
    act,
    connectivity,
    containers,
    events_command,
    install_rules,
    remove_rules,
    roles,
)
from lab.faults.heal import HealReport, heal_entry, heal_lab, leftovers, shielded
from lab.faults.hold import EVENTS_CHUNK, StartWatcher, reapply
from lab.faults.injector import ELECTION_TIMEOUT, Injector
from lab.faults.netmodel import Cut, addresses, attempts_for, check_paths, cuts, groups, path_ip, rule_tag, rules
from lab.faults.registry import LOG_FILE, REGISTRY_FILE, RULES_LOCK, Registry, active
from lab.faults.spec import (
    CONTAINER_KINDS,
    DB,
    FAULT_FIELDS,
    GRAY_KINDS,
    KINDS,
    LB,
    NETWORK_KINDS,
    ROLES,
    TARGET_KINDS,
    ActiveFault,
    FaultSpec,
    make_spec,
    parse_bytes,
    parse_drift,
    parse_rate,
    signed_duration,
    spec_from_yaml,
    validate,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "CONTAINER_KINDS",
    "DB",
    "DB_PORT",
    "ELECTION_TIMEOUT",
    "EVENTS_CHUNK",
    "FAULT_FIELDS",
    "GRAY_KINDS",
    "KINDS",
    "LB",
    "LOG_FILE",
    "NETWORK_KINDS",
    "REGISTRY_FILE",
    "ROLES",
    "RULES_LOCK",
    "SETTLE_TIMEOUT",
    "STOP_GRACE",
    "TARGET_KINDS",
    "ZK_PORT",
    "ActiveFault",
    "Cut",
    "FaultSpec",
    "HealReport",
    "Injector",
    "Registry",
    "StartWatcher",
    "act",
    "active",
    "addresses",
    "attempts_for",
    "check_paths",
    "connectivity",
    "containers",
    "cuts",
    "events_command",
    "groups",
    "heal_entry",
    "heal_lab",
    "install_rules",
    "leftovers",
    "make_spec",
    "parse_bytes",
    "parse_drift",
    "parse_rate",
    "path_ip",
    "reapply",
    "remove_rules",
    "roles",
    "rule_tag",
    "rules",
    "shielded",
    "signed_duration",
    "spec_from_yaml",
    "validate",
]
