"""Putting the ZooKeeper leader where a case needs it, before the fault.

Where the leader sits changes what a fault does: cutting off the datacenter that holds the leader
forces the other side to elect a new one (docs/survivability.md, "the leader-side blackout"), while
cutting off a side of followers does not. Left to chance, it depends on the cases run before, so
the matrix's outcome would depend on their order.

How: ZooKeeper's election makes the member with the newest data the leader, and among equals the
one with the highest id; so killing leaders until one lands in place fails whenever the wanted
members have the lowest ids. Instead, while the leader is not where it should be:
1. the ZooKeeper members of up to `tolerance` other nodes outside the wanted set are stopped (the
   highest ids first), so that their data stops where it is (a frozen container would not do: its
   kernel still takes in what the leader sends and the member logs it when thawed);
2. a znode is written and deleted through the leader, so the wanted members hold data the stopped
   ones lack;
3. the leader's member is stopped too; the others come back (a rancher-1.0 node's supervisor
   restarts its member, empty, as Docker did; a tuned node exits with its member and its container
   is started again) and elect one of the members with the newest data: a wanted one, or, when
   not every other member could be held back, maybe not, and the next round goes on from there;
4. then the old leader comes back, and the ensemble must settle before the case.
The quorum is lost for a few seconds in 3, before the case starts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection

from lab.cluster import docker, engine, probes
from lab.cluster.topology import Topology, tolerance
from lab.core.errors import RuntimeFailure
from lab.core.wait import WaitTimeout, wait_for
from lab.faults import backend
from lab.faults.backend import containers, roles

log = logging.getLogger("halab.placement")

SETTLE = 60.0  # seconds for an election after a member is killed, and for the ensemble to settle
WRITE_WAIT = 20.0  # seconds for that write (ZooKeeper clients connect in well under that)
ROUNDS = 3

# This host's ZooKeeper member processes, found by their main class (the image has no pgrep); a
# zombie has no command line, so a killed member that is not yet reaped is not among them.
_MEMBERS = (
    "import os\n"
    "def members():\n"
    "    for p in filter(str.isdigit, os.listdir('/proc')):\n"
    "        try: cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n"
    "        except OSError: continue\n"
    "        if b'QuorumPeerMain' in cmd: yield int(p)\n"
)
_KILL_MEMBER = _MEMBERS + "import signal\nfor p in members(): os.kill(p, signal.SIGKILL)\n"
_LIST_MEMBERS = _MEMBERS + "print(' '.join(map(str, members())))\n"


# Writes and deletes a znode with the node's own ZooKeeper settings (both profiles), each connect
# bounded so that a frozen member is skipped quickly.
_WRITE = (
    "from kazoo.client import KazooClient\n"
    "from lab.server import config\n"
    "from lab.server.coord import ConnectTimeoutHandler\n"
    "c = KazooClient(hosts=config.from_env().zk_connection_string, timeout=2.0,\n"
    "                handler=ConnectTimeoutHandler(0.5))\n"
    "c.start(timeout=15)\n"
    "c.delete(c.create('/halab-placement/mark-', b'', makepath=True, sequence=True))\n"
    "c.stop()\n"
)


def leader_of(modes: dict[str, str]) -> str | None:
    leaders = [n for n, m in modes.items() if m in ("leader", "standalone")]
    return leaders[0] if len(leaders) == 1 else None


def settled(t: Topology, what: str, timeout: float = SETTLE) -> dict[str, str]:
    """The ZooKeeper modes once one leader leads and every member serves. A running member still
    left out when a quorum serves without it is restarted, once: a rancher-1.0 member that holds a
    newer accepted epoch than the leader two members restarted empty elected is refused by that
    leader for good, and only a restart, which empties it, lets it join (docs/survivability.md,
    "Two of three hosts restarted")."""

    def serving() -> dict[str, str] | None:
        modes = roles(t)
        return modes if probes.quorum_problem(modes) is None else None

    try:
        return wait_for(what, serving, timeout, interval=0.3)
    except WaitTimeout:
        modes, found = roles(t), containers(t)
        out = [n for n, m in modes.items() if m not in probes.SERVING_MODES and (c := found.get(n)) and c.running]
        if leader_of(modes) is None or not out or len(modes) - len(out) < t.majority:
            raise
    log.warning("%s: the members of %s stay out of a serving quorum; restarting them", what, ", ".join(out))
    _stop_members(t, out, timeout)
    _restart(t, out, timeout)
    return wait_for(f"{what} (after restarting the members of {', '.join(out)})", serving, timeout, interval=0.3)


def place_leader(t: Topology, on: Collection[str], timeout: float = SETTLE) -> str:
    """Make a node of `on` the ZooKeeper leader; returns it. RuntimeFailure if it cannot be done."""
    want = set(on)
    for _ in range(ROUNDS):
        modes = settled(t, "a settled ZooKeeper ensemble before placing the leader", timeout)
        found = leader_of(modes)
        assert found is not None
        leader = found
        if leader in want or not want or t.size == 1:
            return leader
        # At most `tolerance` members stopped first, so that the leader and the rest can still write;
        # the highest ids first, since among members with the newest data the highest id wins.
        others = sorted((n for n in t.nodes if n.name not in want and n.name != leader), key=lambda n: -n.zk_id)
        behind = [n.name for n in others][: tolerance(t.size)]
        log.info(
            "placing the leader on %s: stopping the ZooKeeper members of %s, a write, then %s's",
            "/".join(sorted(want)),
            ", ".join(behind) or "nobody",
            leader,
        )
        _stop_members(t, behind, timeout)
        backend.exec_in(
            engine.place(t, leader),
            ["python3", "-c", _WRITE],
            f"write to ZooKeeper while {', '.join(behind) or 'nobody'} is stopped",
            timeout=WRITE_WAIT,
        )
        _stop_members(t, [leader], timeout)
        # The stopped members come back behind the others' data and they elect; only then the old
        # leader (a tuned node's data is intact and would win on its id).
        _restart(t, behind, timeout)
        rest = [n for n in t.node_names if n != leader]
        wait_for(
            f"a ZooKeeper leader among {', '.join(rest)}",
            functools.partial(_leader_among, t, rest),
            timeout,
            interval=0.2,
        )
        _restart(t, [leader], timeout)
    modes = settled(t, "a settled ZooKeeper ensemble after placing the leader", timeout)
    last = leader_of(modes)
    if last is not None and last in want:
        return last
    raise RuntimeFailure(
        f"could not make one of {', '.join(sorted(want))} the ZooKeeper leader in {ROUNDS} rounds "
        f"(leader {last}; modes {modes})"
    )


def _leader_among(t: Topology, nodes: list[str]) -> str | None:
    return leader_of({n: m for n, m in roles(t).items() if n in nodes})


def _stop_members(t: Topology, nodes: list[str], timeout: float) -> None:
    """Kill the ZooKeeper members of `nodes` and wait until each killed process is gone. Not "until
    the node stops serving": a rancher-1.0 node's supervisor may start a new member before a poll
    of its mode sees the old one gone."""
    before = {n: _member_pids(t, n) for n in nodes}
    for n in nodes:
        _kill_member(t, n)
    if nodes:
        wait_for(
            f"the ZooKeeper members of {', '.join(nodes)} to stop",
            lambda: all(not before[n] & _member_pids(t, n) for n in nodes),
            timeout,
            interval=0.1,
        )


def _member_pids(t: Topology, node: str) -> set[int]:
    """The node's running ZooKeeper member processes; none when its container is not running."""
    try:
        out = backend.exec_in(
            engine.place(t, node),
            ["python3", "-c", _LIST_MEMBERS],
            f"list {node}'s ZooKeeper member processes",
            timeout=20,
        )
    except RuntimeFailure:
        return set()
    return {int(p) for p in out.split()}


def _kill_member(t: Topology, node: str) -> None:
    # Detached: a tuned node's container exits with its member, taking a waiting exec with it.
    where = engine.place(t, node)
    docker.run(
        where.command("exec", "-d", where.container, "python3", "-c", _KILL_MEMBER),
        f"stop {node}'s ZooKeeper member",
        timeout=20,
    )


def _restart(t: Topology, nodes: list[str], timeout: float) -> None:
    """Wait until each node whose member was killed either runs a member again (rancher-1.0: its
    supervisor restarted it) or has exited (tuned: the host goes down with its member); start the
    exited ones."""
    if not nodes:
        return

    def decided() -> dict[str, bool] | None:
        found, modes = containers(t), roles(t)
        up = {n: bool((c := found.get(n)) and c.running) for n in nodes}
        return up if all(not up[n] or modes.get(n) not in ("not running", "unknown") for n in nodes) else None

    up = wait_for(f"{', '.join(nodes)} running a ZooKeeper member again or exited", decided, timeout, interval=0.3)
    backend.start(t, [n for n in nodes if not up[n]])
