"""Faults of whole Docker hosts of a swarm lab made on this machine (lab/cluster/hosts.py).

- `cut-host`: every packet between the host and the other hosts of its group dropped, by iptables
  rules in the host container's own network namespace, where its dockerd's swarm traffic (2377),
  gossip (7946) and overlay packets (VXLAN, 4789) leave and arrive. The harness's `docker exec`
  into the host is no network traffic and keeps working, so the cut-off side is still observed.
- `kill-host`: the host's container killed (SIGKILL: a machine losing power) with its dockerd and
  every task on it.

Verified: a cut by TCP connects from the host to each other host's gossip port, open before and
dropped after; a kill by the container's state. Healed: the rules deleted by their comment (the
lab's fault tag, as the nodes' own rules), a killed host started again, its dockerd answering and
the manager seeing it Ready, and the lab's tasks that died with it running again (`revive`).
`sweep` finds both kinds' leftovers without a registry entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from lab.cluster import compose, docker, engine, hosts, swarm
from lab.cluster.topology import Topology
from lab.core.errors import BadInput, FaultNotEffective, RuntimeFailure
from lab.core.wait import wait_for
from lab.faults.backend import rules_left, rules_script
from lab.faults.netmodel import rule_tag
from lab.faults.spec import FaultSpec

log = logging.getLogger("halab.faults.hostfaults")

GOSSIP_PORT = 7946  # every swarm host listens on it: a connect there shows the path
CONNECT_TIMEOUT = 1  # seconds (`timeout` takes whole ones); the hosts share one bridge
TASKS_TIMEOUT = 120.0  # the lab's tasks that died with a host run again within this of its start

# [port, timeout, ip...] -> "ip open|cut" a line: bash's /dev/tcp, as the dind image has no nc.
_CHECK = r"""port=$1; wait=$2; shift 2
for ip; do
  if timeout "$wait" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$ip" "$port" 2>/dev/null
  then echo "$ip open"; else echo "$ip cut"; fi
done
"""


def targets(t: Topology, spec: FaultSpec, where: str = "fault") -> list[hosts.Host]:
    group = engine.group(t)
    if not group.made_here:
        raise BadInput(
            f"{where}.kind: {spec.kind} acts on hosts made by `halab hosts up`; {group.name!r} names machines"
        )
    return [group.host(name, f"{where}.target") for name in spec.targets]


def addresses(group: hosts.HostGroup) -> dict[str, str]:
    """host -> its address on the group's network."""
    found = docker.inspect([h.container for h in group.hosts if h.container], "container")
    out = {}
    for c in found:
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(group.network) or {}).get("IPAddress")
        if ip:
            out[str(c.get("Config", {}).get("Hostname", ""))] = str(ip)
    return out


def cut_rules(peers: Sequence[str], tag: str) -> list[list[str]]:
    """iptables argument lists dropping every packet from and to each of PEERS."""
    out = []
    for ip in peers:
        out.append(["-I", "INPUT", "-s", ip, "-m", "comment", "--comment", tag, "-j", "DROP"])
        out.append(["-I", "OUTPUT", "-d", ip, "-m", "comment", "--comment", tag, "-j", "DROP"])
    return out


def in_host(host: hosts.Host, args: Sequence[str], what: str, input: str | None = None) -> str:
    """A command in the host's own container (not in its Docker)."""
    assert host.container is not None
    return docker.run(
        ["docker", "exec", *(["-i"] if input else []), host.container, *args], what, input=input, timeout=60
    )


def reachable(host: hosts.Host, ips: Sequence[str]) -> dict[str, bool]:
    """ip -> whether the host reaches that peer's gossip port now."""
    if not ips:
        return {}
    out = in_host(
        host, ["sh", "-c", _CHECK, "check", str(GOSSIP_PORT), str(CONNECT_TIMEOUT), *ips], f"check {host.name}'s paths"
    )
    seen = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    return {ip: seen.get(ip) == "open" for ip in ips}


def rewrite(host: hosts.Host, rules: Sequence[Sequence[str]], replacing: str) -> int:
    """Insert RULES in the host's namespace, delete those carrying `replacing` before; return
    how many carry it afterwards."""
    script, args = rules_script(rules, replacing)
    return rules_left(in_host(host, ["sh", "-s", *(["--", *args] if args else [])], f"rules in {host.name}", script))


def running(host: hosts.Host) -> bool:
    assert host.container is not None
    out = docker.run(["docker", "inspect", "--format", "{{json .State.Running}}", host.container], "host state")
    return bool(json.loads(out))


def apply(t: Topology, spec: FaultSpec, fault_id: str) -> dict[str, Any]:
    """Apply and verify a host fault; return its record's detail. The caller undoes it on failure."""
    group = engine.group(t)
    chosen = targets(t, spec)
    if spec.kind == "kill-host":
        down = [h.name for h in chosen if not running(h)]
        if down:
            raise RuntimeFailure(f"{spec.describe()}: {', '.join(down)} is not running (`halab heal --name {t.lab}`)")
        docker.run(["docker", "kill", "--signal", "KILL", *(str(h.container) for h in chosen)], spec.describe())
        alive = [h.name for h in chosen if running(h)]
        if alive:
            raise FaultNotEffective(f"{spec.describe()}: {', '.join(alive)} still runs after `docker kill`")
        return {}
    ips = addresses(group)
    tag = rule_tag(t.lab, fault_id)
    detail: dict[str, Any] = {"addresses": ips}
    for host in chosen:
        peers = [ip for name, ip in ips.items() if name != host.name]
        before = reachable(host, peers)
        if not all(before.values()):
            raise RuntimeFailure(
                f"{spec.describe()}: {host.name} does not reach {', '.join(ip for ip, ok in before.items() if not ok)} "
                "before the cut"
            )
        rewrite(host, cut_rules(peers, tag), "")
        after = reachable(host, peers)
        still = [ip for ip, ok in after.items() if ok]
        if still:
            raise FaultNotEffective(f"{spec.describe()}: {host.name} still reaches {', '.join(still)}")
    return detail


def undo(t: Topology, spec: FaultSpec, fault_id: str) -> dict[str, Any]:
    """Idempotent undo of one host fault; raises RuntimeFailure when it could not be undone."""
    chosen = targets(t, spec)
    if spec.kind == "kill-host":
        start([h for h in chosen if not running(h)], engine.group(t))
        revive(t)
        return {}
    left = {h.name: rewrite(h, [], f'"{rule_tag(t.lab, fault_id)}"') for h in chosen if running(h)}
    dirty = [name for name, n in left.items() if n]
    if dirty:
        raise RuntimeFailure(f"could not remove the rules of fault {fault_id} from {', '.join(dirty)}")
    # A host cut off past the swarm's heartbeat was marked down and its tasks told to shut down:
    # back, it stops them (the swarm replaces those of restart policy `any`, the others stay down).
    # The heal waits for that and runs the stopped ones again, and the record names them.
    group = engine.group(t)
    wait_for(f"every host of {group.name} Ready", lambda: not hosts.not_ready(group), hosts.READY_TIMEOUT, interval=1)
    wait_for(
        f"the tasks of lab {t.lab} the swarm shuts down stopped",
        lambda: not swarm.told_to_stop(t),
        TASKS_TIMEOUT,
        interval=1,
    )
    revived = revive(t)
    return {"stopped_by_swarm": revived} if revived else {}


def start(stopped: Sequence[hosts.Host], group: hosts.HostGroup) -> None:
    """Start killed hosts and wait until their dockerd answers and the swarm sees them Ready."""
    if not stopped:
        return
    docker.run(["docker", "start", *(str(h.container) for h in stopped)], "start hosts", timeout=120)
    for h in stopped:
        wait_for(f"{h.name}'s dockerd", partial(hosts.dockerd_answers, h), hosts.DOCKERD_TIMEOUT, interval=0.5)
    wait_for(f"every host of {group.name} Ready", lambda: not hosts.not_ready(group), hosts.READY_TIMEOUT, interval=1)


def down_services(t: Topology) -> list[str]:
    """The lab's services without a running task."""
    found = engine.current(engine.states(t))
    return [s for s in compose.services(t) if s not in found or not found[s].running]


def revive(t: Topology) -> list[str]:
    """Run again the lab's services without a running task, and return them: those whose task died
    with a killed host (the swarm never replaces a task whose restart policy is `none`, every
    service but rancher-1.0's nodes) and those a kill or stop left scaled to none, as the compose
    lab's heal starts a killed container."""
    down = down_services(t)
    swarm.run_again(t, down)
    if down:
        wait_for(f"{', '.join(down)} of lab {t.lab} running again", lambda: not down_services(t), TASKS_TIMEOUT, 1.0)
    return down


def rule_counts(t: Topology, running_hosts: Sequence[hosts.Host]) -> dict[str, int]:
    """host -> rules of the lab's faults in it."""
    pattern = f'"{rule_tag(t.lab, "")}'
    script = f"iptables -S | grep -cF -- '{pattern}' || true"
    return {h.name: rules_left(in_host(h, ["sh", "-c", script], f"count rules in {h.name}")) for h in running_hosts}


def leftovers(t: Topology) -> tuple[dict[str, int], list[str]]:
    """What `sweep` would find: rules per running host (where some are), hosts not running."""
    group = engine.group(t)
    if not group.made_here:
        return {}, []
    up = [h for h in group.hosts if running(h)]
    return {n: c for n, c in rule_counts(t, up).items() if c}, [h.name for h in group.hosts if h not in up]


def sweep(t: Topology) -> tuple[dict[str, int], list[str]]:
    """Leftovers of host faults without a registry entry: every host that is not running (started)
    and every rule of the lab in a host (host -> removed)."""
    group = engine.group(t)
    if not group.made_here:
        return {}, []
    stopped = [h for h in group.hosts if not running(h)]
    start(stopped, group)
    if stopped:
        revive(t)
    removed = {name: n for name, n in rule_counts(t, group.hosts).items() if n}
    dirty = [name for name in removed if rewrite(group.host(name), [], f'"{rule_tag(t.lab, "")}')]
    if dirty:
        raise RuntimeFailure(f"heal: rules of lab {t.lab} remain in host {', '.join(dirty)}")
    return removed, [h.name for h in stopped]
