"""Putting the ZooKeeper leader where a case needs it, before the fault.

Where the leader sits changes what a fault does: cutting off the datacenter that holds the leader
forces the other side to elect a new one (docs/survivability.md, "the leader-side blackout"), while
cutting off a side of followers does not. Left to chance, it depends on the cases run before, so
the matrix's outcome would depend on their order.

How: ZooKeeper's election makes the member with the newest data, then the highest id, the leader.
So while the leader is not where it should be, its member process is killed (the host and its API
server stay up; its connections reset, so the others elect at once, not after syncLimit ticks), and
when the next leader is still not in place it is killed too, as long as a quorum of members keeps
running. The killed members are then brought back (the rancher-1.0 node's supervisor restarts its
member itself; a tuned node exits with its member and its container is started again) and the
ensemble must settle with one leader before the case starts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from lab.cluster import docker, probes
from lab.cluster.compose import container_name
from lab.cluster.topology import Topology, tolerance
from lab.core.errors import RuntimeFailure
from lab.core.wait import wait_for
from lab.faults.backend import containers, roles

log = logging.getLogger("halab.placement")

SETTLE = 60.0  # seconds for an election after a member is killed, and for the ensemble to settle
ROUNDS = 3

# Kills this host's ZooKeeper member (and only it) by its main class; the image has no pkill.
_KILL_MEMBER = ("import os, signal\n"
                "for p in filter(str.isdigit, os.listdir('/proc')):\n"
                "    try: cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n"
                "    except OSError: continue\n"
                "    if b'QuorumPeerMain' in cmd: os.kill(int(p), signal.SIGKILL)\n")


def leader_of(modes: dict[str, str]) -> str | None:
    leaders = [n for n, m in modes.items() if m in ("leader", "standalone")]
    return leaders[0] if len(leaders) == 1 else None


def settled(t: Topology, what: str, timeout: float = SETTLE) -> dict[str, str]:
    """The ZooKeeper modes once one leader leads and every member serves."""
    def serving() -> dict[str, str] | None:
        modes = roles(t)
        return modes if probes.quorum_problem(modes) is None else None

    return wait_for(what, serving, timeout, interval=0.3)


def place_leader(t: Topology, on: Collection[str], timeout: float = SETTLE) -> str:
    """Make a node of `on` the ZooKeeper leader; returns it. RuntimeFailure if it cannot be done."""
    want = set(on)
    if not want or t.size == 1:
        return leader_of(settled(t, "a settled ZooKeeper ensemble", timeout)) or ""
    for _ in range(ROUNDS):
        modes = settled(t, "a settled ZooKeeper ensemble before placing the leader", timeout)
        leader = leader_of(modes)
        assert leader is not None
        if leader in want:
            return leader
        killed: list[str] = []
        while leader is not None and leader not in want and len(killed) < tolerance(t.size):
            log.info("placing the leader on %s: stopping %s's ZooKeeper member", "/".join(sorted(want)), leader)
            _kill_member(t, leader)
            killed.append(leader)
            rest = [n for n in t.node_names if n not in killed]
            leader = wait_for(f"a new ZooKeeper leader among {', '.join(rest)}",
                              lambda: leader_of({n: m for n, m in roles(t).items() if n in rest}), timeout,
                              interval=0.2)
        _bring_back(t, killed, timeout)
    modes = settled(t, "a settled ZooKeeper ensemble after placing the leader", timeout)
    leader = leader_of(modes)
    if leader in want:
        return leader
    raise RuntimeFailure(f"could not make one of {', '.join(sorted(want))} the ZooKeeper leader in {ROUNDS} rounds "
                         f"(leader {leader}; modes {modes})")


def _kill_member(t: Topology, node: str) -> None:
    # Detached: a tuned node's container exits with its member, taking a waiting exec with it.
    docker.run(["exec", "-d", container_name(t, node), "python3", "-c", _KILL_MEMBER],
               f"stop {node}'s ZooKeeper member", timeout=20)


def _bring_back(t: Topology, nodes: list[str], timeout: float) -> None:
    """Wait until each node whose member was killed either runs a serving member again (rancher-1.0:
    its supervisor restarted it) or has exited (tuned: the host goes down with its member), start
    the exited ones, and wait for the ensemble to settle."""
    if not nodes:
        return

    def running() -> dict[str, bool]:
        found = containers(t)
        return {n: bool((found.get(n) or {}).get("State", {}).get("Running")) for n in nodes}

    def decided() -> dict[str, bool] | None:
        up, modes = running(), roles(t)
        return up if all(not up[n] or modes.get(n) in probes.SERVING_MODES for n in nodes) else None

    up = wait_for(f"{', '.join(nodes)} back in the ensemble or exited", decided, timeout, interval=0.3)
    stopped = [n for n in nodes if not up[n]]
    if stopped:
        docker.run(["start", *(container_name(t, n) for n in stopped)], f"start {', '.join(stopped)} again",
                   timeout=60)
    settled(t, f"{', '.join(nodes)} serving again after the leader was placed", timeout)
