"""Undoing faults: one registry entry (`heal_entry`), or everything of a lab including leftovers
without an entry (`heal_lab`); signal shielding so that a second Ctrl-C cannot cut a heal short."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import galera_life, state
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure
from lab.faults import backend, gray, hostfaults
from lab.faults.hold import reapply
from lab.faults.netmodel import addresses, is_up, rule_tag, state_word
from lab.faults.registry import LOG_FILE, Registry, rules_lock
from lab.faults.spec import DB, HELD_KINDS, HOST_KINDS, LB, FaultSpec
from lab.record.history import FaultRecord, JsonlWriter

log = logging.getLogger("halab.faults.heal")

_shield_depth = 0

GALERA_RESTART_TIMEOUT = 60.0  # seconds per member: each joins by a state transfer


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while undos run, so a second Ctrl-C cannot leave half a heal behind;
    the deferred signal is raised as KeyboardInterrupt when the outermost shield ends."""
    global _shield_depth
    if threading.current_thread() is not threading.main_thread() or _shield_depth:
        yield
        return
    _shield_depth += 1
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _shield_depth -= 1
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            raise KeyboardInterrupt


def _down(t: Topology, c: ContainerState | None) -> bool:
    """Whether a killed or stopped service is to be started: its container is not running (on a
    swarm also when the swarm has removed the dead task's container)."""
    return not c.running if c else t.engine.swarm


def _moved(
    t: Topology, services: Sequence[str], previous: Mapping[str, Mapping[str, str]], found: Mapping[str, ContainerState]
) -> dict[str, str]:
    """The addresses started containers came back without (service -> "network old->new"). Docker
    gives a starting container the lowest free address of each network, so hosts stopped together
    often swap addresses, unlike rebooted machines; peers that cache names (the nodes' ZooKeeper
    JVMs) then reach the wrong host for a while. The record says when it happened. (A swarm task
    run again is a new container: its addresses are new ones.)"""
    now = addresses(t, found)
    moved = {
        s: ", ".join(
            f"{net} {old}->{now.get(s, {}).get(net)}"
            for net, old in sorted(previous.get(s, {}).items())
            if now.get(s, {}).get(net) != old
        )
        for s in services
    }
    return {s: m for s, m in moved.items() if m}


def _restart_database(
    t: Topology, stopped: Sequence[str], found: Mapping[str, ContainerState]
) -> tuple[list[str], str | None]:
    """(those of the STOPPED services `docker start` can take, the Galera member bootstrapped or
    None). A Galera member started while no member runs would wait for a cluster to join forever,
    so when every member is down the database is started as after a full outage
    (lab/cluster/galera_life.py: from the most advanced member, the others joining it) and its
    members are left out."""
    members = set(t.db.member_names)
    if not members & set(stopped) or any((c := found.get(m)) and c.running for m in members):
        return list(stopped), None
    first = galera_life.start(t, time.monotonic() + GALERA_RESTART_TIMEOUT * len(members))
    return [s for s in stopped if s not in members], first


def undo(t: Topology, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Idempotent undo of one registry entry; returns what the record should add to its detail;
    raises RuntimeFailure when it could not be undone."""
    spec = FaultSpec.from_dict(entry["spec"])
    services = list(entry["targets"])
    if spec.kind in HOST_KINDS:
        return hostfaults.undo(t, spec, entry["id"])
    if spec.kind in HELD_KINDS:
        found = backend.containers(t)
        live = [n for n in t.node_names if is_up(found.get(n))]
        if spec.kind == "bandwidth":
            left = {n: kept for n, (_, kept) in gray.unshape(t, live, entry["id"]).items()}
        else:
            left = backend.remove_rules(t, f'"{rule_tag(t.lab, entry["id"])}"', found)
        if spec.kind == "delay":  # after the rules: what the delayers still hold goes at once
            gray.stop_delayers(t, live, gray.queue_of(entry["id"]))
        dirty = [s for s, n in left.items() if n]
        if dirty:
            raise RuntimeFailure(f"could not remove the rules of fault {entry['id']} from {', '.join(dirty)}")
        return {}
    found = backend.containers(t)
    if spec.kind == "exhaust":  # its connections close with its container
        gray.stop_rogues(t, entry["id"])
        return {}
    if spec.kind == "stall":  # a node down or restarted since runs its process afresh
        for n in services:
            if is_up(found.get(n)):
                try:
                    gray.signal_process(t, n, spec.process or "", "SIGCONT")
                except RuntimeFailure as exc:  # none left to resume
                    log.debug(f"heal {entry['id']}: {exc}")
        return {}
    if spec.kind == "clock":  # the offset file outlives restarts: back to the true time even then
        for n in services:
            if (c := found.get(n)) and c.running:
                gray.set_clock(t, n, 0.0)
        return {}
    if spec.kind == "io":  # a restarted container left its cgroup, and its limits, behind
        devices = (entry.get("detail") or {}).get("devices") or {}
        for s, device in devices.items():
            if (c := found.get(s)) and c.running:
                gray.throttle(t, s, device, 0, 0)
        return {}
    if spec.kind == "cpu":
        previous = (entry.get("detail") or {}).get("cpu_quota") or {}
        for s in services:
            if s in found:
                gray.set_cpu_quota(t, [s], int(previous.get(s, 0)))
        return {}
    extra: dict[str, Any] = {}
    started: list[str] = []
    if spec.kind == "pause":
        todo = [s for s in services if (c := found.get(s)) and c.paused]
        if todo:
            backend.act(t, ["docker", "unpause"], todo, f"unpause {' '.join(todo)}", timeout=60)
    else:
        todo = [s for s in services if _down(t, found.get(s))]
        started, bootstrapped = _restart_database(t, todo, found)
        if bootstrapped:
            extra["galera_bootstrap"] = bootstrapped
        backend.start(t, started)
    after = backend.wait_states(t, todo, lambda _s, c: is_up(c))
    bad = [s for s in todo if not is_up(after.get(s))]
    if bad:
        raise RuntimeFailure(f"could not undo fault {entry['id']}: {', '.join(bad)} is {state_word(after.get(bad[0]))}")
    moved = _moved(t, started, entry.get("detail", {}).get("addresses", {}), after)
    if moved:
        extra["readdressed"] = moved
    if todo:
        try:  # a network fault still held must cut the hosts back at once
            reapply(t, f"{' '.join(todo)} {'unpaused' if spec.kind == 'pause' else 'started'}")
        except RuntimeFailure as exc:  # this heal is done; the failure is noted with the network fault too
            extra["reapply_failed"] = str(exc)
    return extra


def _record(t: Topology, entry: Mapping[str, Any], t1: float, extra: Mapping[str, Any] | None = None) -> FaultRecord:
    spec = FaultSpec.from_dict(entry["spec"])
    record = FaultRecord(
        t0=entry["t0"],
        t1=t1,
        fault=spec.kind,
        targets=tuple(entry["targets"]),
        id=entry["id"],
        detail={"spec": spec.describe(), "lab": t.lab, **entry.get("detail", {}), **(extra or {})},
    )
    paths = [state.lab_dir(t.lab) / LOG_FILE] + ([Path(entry["history"])] if entry.get("history") else [])
    for path in paths:
        with JsonlWriter(path) as w:
            w.append(record)
    return record


def heal_entry(t: Topology, fault_id: str) -> FaultRecord | None:
    registry = Registry(t.lab)
    entry = next((e for e in registry.active() if e["id"] == fault_id), None)
    if entry is None:
        return None
    # Rules and registry entry go together, so that a reapply cannot put the rules back between.
    with rules_lock(t.lab) if entry["spec"]["kind"] in HELD_KINDS else contextlib.nullcontext():
        extra = undo(t, entry)
        t1 = time.time()
        latest = registry.remove(fault_id)  # with what reapply noted since `entry` was read
    if latest is None:  # healed meanwhile by another process, which recorded it
        return None
    return _record(t, latest, t1, extra)


@dataclass(frozen=True)
class HealReport:
    healed: tuple[FaultRecord, ...]
    rules_removed: Mapping[str, int]  # leftover rules swept, per container
    unpaused: tuple[str, ...]
    started: tuple[str, ...]
    shapers_removed: Mapping[str, int] = field(default_factory=dict)  # leftover shaping devices, per node
    rogues_removed: tuple[str, ...] = ()  # leftover rogue database clients

    def lines(self) -> list[str]:
        out = [f"healed {r.id} {r.detail.get('spec', r.fault)} (held {r.t1 - r.t0:.1f} s)" for r in self.healed]
        for what, counts in (("rules", self.rules_removed), ("shaping devices", self.shapers_removed)):
            swept = {s: n for s, n in counts.items() if n}
            if swept:
                out.append(f"removed leftover {what}: " + ", ".join(f"{s} ({n})" for s, n in swept.items()))
        if self.rogues_removed:
            out.append("removed rogue database clients: " + ", ".join(self.rogues_removed))
        if self.unpaused:
            out.append("unpaused: " + ", ".join(self.unpaused))
        if self.started:
            out.append("started: " + ", ".join(self.started))
        return out or ["nothing to heal"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "healed": [r.to_dict() for r in self.healed],
            "rules_removed": dict(self.rules_removed),
            "unpaused": list(self.unpaused),
            "started": list(self.started),
            "shapers_removed": dict(self.shapers_removed),
            "rogues_removed": list(self.rogues_removed),
        }


def heal_lab(t: Topology) -> HealReport:
    """Undo every registered fault of the lab, then sweep what may be left without a registry entry
    (a process killed between acting and registering, a registry file removed): every rule labelled
    with the lab, delayers, shaping devices, rogue clients, every paused container, every stopped
    container (database first); on a swarm lab no rogue client, the stopped hosts instead of
    containers, and the lab's rules in the hosts too."""
    with shielded():
        healed = []
        for entry in Registry(t.lab).active():
            try:
                record = heal_entry(t, entry["id"])
            except RuntimeFailure as exc:
                log.debug(f"heal {entry['id']}: {exc}; sweeping instead")
                Registry(t.lab).remove(entry["id"])
                record = _record(t, entry, time.time())
            if record:
                healed.append(record)
        found = backend.containers(t)
        paused = [s for s, c in found.items() if c.paused]
        if paused:
            backend.act(t, ["docker", "unpause"], paused, "unpause leftovers", timeout=60)
            found = backend.containers(t)
        if t.engine.swarm:  # no rogue client there
            host_rules, started_hosts = hostfaults.sweep(t)
            revived = hostfaults.revive(t)  # services a kill or stop left scaled to none
            found = backend.containers(t)
            counts = {**_sweep_rules(t, found), **host_rules}
            shapers = _sweep_links(t, found)
            report = HealReport(tuple(healed), counts, tuple(paused), (*started_hosts, *revived), shapers)
        else:
            report = _sweep_compose(t, tuple(healed), tuple(paused), found)
    for line in report.lines():
        log.debug(line)
    return report


def _sweep_compose(
    t: Topology, healed: tuple[FaultRecord, ...], paused: tuple[str, ...], found: Mapping[str, ContainerState]
) -> HealReport:
    """A compose lab's leftovers: rules, delayers, shaping devices, rogue clients, stopped containers."""
    counts = _sweep_rules(t, found)
    shapers = _sweep_links(t, found)
    rogues = gray.stop_rogues(t, None)
    order = {DB: 0, LB: 2}
    stopped = sorted((s for s, c in found.items() if not c.running), key=lambda s: order.get(s, 1))
    if stopped and (plain := _restart_database(t, stopped, found)[0]):
        backend.act(t, ["docker", "start"], plain, "start stopped containers", timeout=120)
        after = backend.wait_states(t, stopped, lambda _s, c: is_up(c))
        bad = [s for s in stopped if not is_up(after.get(s))]
        if bad:
            raise RuntimeFailure(
                f"heal: {', '.join(bad)} would not start; see `halab logs --name {t.lab} {' '.join(bad)}`"
            )
    return HealReport(healed, counts, paused, tuple(stopped), shapers, tuple(rogues))


def _sweep_links(t: Topology, found: Mapping[str, ContainerState]) -> dict[str, int]:
    """Stop every delayer and remove every shaping device in the running nodes; return node ->
    devices removed."""
    live = [n for n in t.node_names if is_up(found.get(n))]
    gray.stop_delayers(t, live, None)
    return {n: removed for n, (removed, _) in gray.unshape(t, live, None).items()}


def _sweep_rules(t: Topology, found: Mapping[str, ContainerState]) -> dict[str, int]:
    """Remove every rule of the lab; return service -> rules removed."""
    before = backend.count_rules(t, found)
    if any(before.values()):
        left = backend.remove_rules(t, f'"{rule_tag(t.lab, "")}', found)
        dirty = [s for s, n in left.items() if n]
        if dirty:
            raise RuntimeFailure(f"heal: rules of lab {t.lab} remain in {', '.join(dirty)}")
    return before


def leftovers(t: Topology) -> dict[str, Any]:
    """What a heal would still find: registry entries, labelled rules, shaping devices, rogue
    database clients (a compose lab's), paused and stopped containers (a swarm lab's: hosts)."""
    found = backend.containers(t)
    live = [n for n in t.node_names if is_up(found.get(n))]
    if t.engine.swarm:
        host_rules, stopped_hosts = hostfaults.leftovers(t)
        return {
            "registered": [e["id"] for e in Registry(t.lab).active()],
            "rules": {**{s: n for s, n in backend.count_rules(t, found).items() if n}, **host_rules},
            "shapers": {s: n for s, n in gray.count_shapers(t, live).items() if n},
            "paused": [s for s, c in found.items() if c.paused],
            "stopped": [*stopped_hosts, *hostfaults.down_services(t)],
        }
    return {
        "registered": [e["id"] for e in Registry(t.lab).active()],
        "rules": {s: n for s, n in backend.count_rules(t, found).items() if n},
        "shapers": {s: n for s, n in gray.count_shapers(t, live).items() if n},
        "rogues": gray.stop_rogues(t, None, only_list=True),
        "paused": [s for s, c in found.items() if c.paused],
        "stopped": [s for s, c in found.items() if not c.running],
    }
