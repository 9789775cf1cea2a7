"""A case's evidence: what each node's ZooKeeper member, ZooKeeper client and HA state did during
the case, read from the containers' own logs, as one timeline relative to the fault.

Why: when a case surprises the lab's model (writes back after 8.5 s where the arithmetic says a
quorum survives), the mechanism is in those logs (an election that went round twice, a follower
that could not reach the leader it elected, a name that did not resolve). The matrix keeps that
evidence with the case, so a surprise seen once in CI can be explained from its report alone.

The parsing is pure (tests feed it lines); `collect` is the one function that reads Docker.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lab.cluster.engine import Place

# What is worth a line in a timeline, with how to say it. The first pattern that matches a log
# line wins; everything else (stack traces, per-connection warnings) is left out.
_MARKERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), say)
    for p, say in (
        (r"Peer state changed: (\w+(?: - \w+)?)", "zk {0}"),
        (r"LEADER ELECTION TOOK - (\d+) MS", "zk election took {0} ms"),
        (r"Timeout while waiting for epoch", "zk leader gave up waiting for its voters' epochs"),
        (r"Quit leading due to voter changed mind", "zk leader quit: a voter changed its mind"),
        (r"connectToLeader exceeded.*connecting to (\S+?)(?:/|:|$)", "zk gave up connecting to leader {0}"),
        (r"UnknownHostException: (\S+)", "zk cannot resolve {0}"),
        (
            r"Unexpected exception, tries=(\d+).*connecting to (\S+?)(?:/|:|$)",
            "zk connect to leader {1} failed (try {0})",
        ),
        (r"Exception when following the leader", "zk lost its leader"),
        (r"Have quorum of supporters", "zk leader has a quorum of supporters"),
        (r"halab\.zk: ZooKeeper session (\w+)", "client session {0}"),
        (r"HA state (\S+) -> (\S+)", "node {0} -> {1}"),
        (r"Lost Connection to ZooKeeper", "server exits: ZooKeeper session lost"),
        (r"publish \S+ to Redis (\S+) failed after (\S+ s) \((\w+)\)", "event publish to Redis {0} lost {1} ({2})"),
        (r"forgetting cluster member \S+ \(id \d+, (\S+),", "cluster-manager forgets member {0}"),
        (r"server exited with status (\d+); restart (\d+)", "supervisor restarts the server (exit {0}, restart {1})"),
        # A swarm host's dockerd (lab/cluster/hosts.py): its gossip's view of the other hosts.
        (r"memberlist: Marking (\S+) as failed", "swarm gossip marks host {0} failed"),
        (r"Node (\S+?)/\S+, joined gossip cluster", "swarm gossip: host {0} joined"),
    )
)
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z ")


@dataclass(frozen=True)
class Event:
    t: float  # epoch seconds (Docker's timestamp of the line)
    node: str
    what: str


def stamp(line: str) -> float | None:
    """Epoch seconds of a `docker logs --timestamps` line (nanoseconds cut to microseconds)."""
    m = _STAMP.match(line)
    if not m:
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{frac}+00:00").timestamp()


def classify(text: str) -> str | None:
    for pattern, say in _MARKERS:
        m = pattern.search(text)
        if m:
            return say.format(*m.groups())
    return None


def events(node: str, lines: Iterable[str], start: float, end: float) -> list[Event]:
    """The notable events of one node's log between START and END; a repeat of the node's previous
    event is dropped (a client retrying every 50 ms says the same thing twenty times)."""
    found = []
    for line in lines:
        t = stamp(line)
        what = classify(line) if t is not None and start <= t <= end else None
        if t is not None and what:
            found.append((t, what))
    out: list[Event] = []
    for t, what in sorted(found):  # stdout and stderr come apart from Docker
        if not out or out[-1].what != what:
            out.append(Event(t, node, what))
    return out


def timeline(per_node: dict[str, list[Event]]) -> list[Event]:
    return sorted((e for evs in per_node.values() for e in evs), key=lambda e: (e.t, e.node))


def render(evs: Sequence[Event], t0: float, limit: int = 60) -> list[str]:
    """`+1.03 s a3: zk gave up connecting to leader b2.interdc`, at most LIMIT lines (the rest counted)."""
    lines = [f"{e.t - t0:+.2f} s {e.node}: {e.what}" for e in evs[:limit]]
    if len(evs) > limit:
        lines.append(f"... {len(evs) - limit} more event(s)")
    return lines


def collect(places: Mapping[str, Place], start: float, end: float) -> list[Event]:
    """Read each container's log for [START, END] through the engine that runs it (Docker filters
    by time; we filter again to the second's fraction) and return the merged timeline. A container
    that cannot be read is left out rather than failing the case: evidence is an aid, not a verdict."""
    per_node = {}
    for node, place in places.items():
        since, until = f"{start - 1:.0f}", f"{end + 1:.0f}"
        proc = subprocess.run(
            [*place.command("logs", "--timestamps", "--since", since, "--until", until), place.container],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            per_node[node] = events(node, (proc.stdout + proc.stderr).splitlines(), start, end)
    return timeline(per_node)
