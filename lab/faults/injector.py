"""The Injector: applies faults to one lab, verifies each took effect, and heals them on every exit
path."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lab.cluster import swarm
from lab.cluster.topology import Topology
from lab.core.errors import FaultNotEffective, RuntimeFailure
from lab.core.wait import poll
from lab.faults import backend, gray, hostfaults
from lab.faults.heal import heal_entry, shielded, undo
from lab.faults.hold import StartWatcher, reapply
from lab.faults.netmodel import (
    addresses,
    attempts_for,
    check_paths,
    cuts,
    is_up,
    rule_basis,
    rule_holders,
    rule_tag,
    rules,
    state_word,
)
from lab.faults.registry import Registry, rules_lock
from lab.faults.spec import (
    CONTAINER_KINDS,
    DB,
    HELD_KINDS,
    HOST_KINDS,
    LINK_KINDS,
    ROLES,
    ActiveFault,
    FaultSpec,
    validate,
)
from lab.record.history import FaultRecord

log = logging.getLogger("halab.faults.injector")

# A role target asked for just after a fault or heal may meet an election in progress; elections
# here take about a second, so a role still missing after this long is really missing.
ELECTION_TIMEOUT = 20.0


class Injector:
    """Applies faults to one lab and heals them. As a context manager it heals everything it
    applied on every exit path, Ctrl-C and exceptions included.

    While it holds a network fault, a StartWatcher re-establishes the lab's network faults
    (`reapply`) on every start or unpause of one of the lab's containers.

    `history`: a run's history file; each healed fault is appended to it as a FaultRecord (as well
    as to the lab's own faults.jsonl), by whichever process heals it."""

    def __init__(self, t: Topology, *, history: str | os.PathLike[str] | None = None, seed: int = 0) -> None:
        self.t = t
        self.history = str(history) if history else None
        self.rng = random.Random(seed)
        self.registry = Registry(t.lab)
        self.applied: list[ActiveFault] = []
        self.watcher: StartWatcher | None = None

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal_all()

    # --------------------------------------------------------------------------------- resolve

    def resolve(self, spec: FaultSpec, where: str = "fault") -> FaultSpec:
        """The spec with roles replaced by node names (asks the nodes for their ZooKeeper mode,
        waiting up to ELECTION_TIMEOUT for an ensemble that has the asked roles)."""
        validate(spec, self.t, where)
        if not any(x in ROLES for x in spec.targets):
            return spec
        asks_modes = any(x in ("leader", "follower") for x in spec.targets)

        def pick() -> tuple[dict[str, str], tuple[tuple[str, ...], str | None]]:
            modes = backend.roles(self.t) if asks_modes else {}
            return modes, self._pick(spec.targets, modes)

        modes, (picked, missing) = poll(pick, lambda found: not found[1][1], ELECTION_TIMEOUT)
        if missing:
            raise RuntimeFailure(
                f"{where}.target: no {missing} to pick within {ELECTION_TIMEOUT:g} s "
                f"(ZooKeeper modes: {', '.join(f'{n}={m}' for n, m in modes.items())})"
            )
        return dataclasses.replace(spec, targets=picked)

    def _pick(self, targets: Sequence[str], modes: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
        """(node names for the targets, the first role nobody has now, or None)."""
        leaders = [n for n, m in modes.items() if m in ("leader", "standalone")]
        if any(x in ("leader", "follower") for x in targets) and len(leaders) != 1:
            return (), "leader" if not leaders else "single leader"  # an election not yet sorted out
        chosen: list[str] = [x for x in targets if x not in ROLES]
        state = self.rng.getstate()  # a retry must not consume the seeded choices
        for x in targets:
            if x not in ROLES:
                continue
            if x == "leader":
                pool = leaders
            elif x == "follower":
                pool = [n for n, m in modes.items() if m == "follower"]
            else:
                pool = list(self.t.node_names)
            pool = [n for n in pool if n not in chosen]
            if not pool:
                self.rng.setstate(state)
                return (), x
            chosen.append(pool[0] if x == "leader" else self.rng.choice(sorted(pool)))
        return tuple(chosen), None

    # ----------------------------------------------------------------------------------- apply

    def apply(self, spec: FaultSpec, where: str = "fault") -> ActiveFault:
        spec = self.resolve(spec, where)
        if spec.kind in HOST_KINDS:
            return self._apply_host(spec, where)
        if spec.kind in CONTAINER_KINDS:
            return self._apply_containers(spec)
        if spec.kind in ("stall", "cpu", "clock", "io", "exhaust"):
            return self._apply_gray(spec)
        return self._apply_network(spec)

    def _register(self, spec: FaultSpec, targets: Sequence[str], detail: Mapping[str, Any]) -> str:
        # Registered before anything is done, so an interruption half-way still leaves a trace to heal.
        return self.registry.add(
            {
                "spec": spec.to_dict(),
                "targets": list(targets),
                "t0": time.time(),
                "phase": "applying",
                "history": self.history,
                "detail": dict(detail),
            }
        )

    def _activate(
        self, fault_id: str, spec: FaultSpec, targets: Sequence[str], t0: float, detail: Mapping[str, Any], **entry: Any
    ) -> ActiveFault:
        self.registry.update(fault_id, phase="active", t0=t0, detail=dict(detail), **entry)
        fault = ActiveFault(fault_id, spec, tuple(targets), t0, detail)
        self.applied.append(fault)
        log.info(f"fault {fault.describe()}: applied and verified")
        return fault

    def _undo_failed_apply(self, fault_id: str) -> None:
        with shielded():
            entry = next((e for e in self.registry.active() if e["id"] == fault_id), None)
            if entry:
                undo(self.t, entry)
                self.registry.remove(fault_id)

    def _apply_containers(self, spec: FaultSpec) -> ActiveFault:
        t = self.t
        services = list(spec.targets)
        before = backend.containers(t)
        self._require_up(spec, services, before)
        started = {s: before[s].started_at for s in services}
        # Kept for the record: a stopped container loses its addresses and may not get them back (_start).
        fault_id = self._register(spec, services, {"addresses": addresses(t, {s: before[s] for s in services})})
        try:
            t0 = time.time()
            action = {
                "kill": ["docker", "kill", "--signal", "KILL"],
                "stop": ["docker", "stop", "--time", str(backend.STOP_GRACE)],
                "pause": ["docker", "pause"],
                "restart": ["docker", "restart", "--time", str(backend.STOP_GRACE)],
            }[spec.kind]
            if spec.kind == "restart":
                backend.restart(t, services)
            else:
                backend.act(t, action, services, f"{spec.kind} {' '.join(services)}", timeout=60)
            if t.engine.swarm and spec.kind in ("kill", "stop"):  # down until healed, as on compose
                swarm.scale_to_none(t, services)
            effects: dict[str, backend.StateCheck] = {
                # A swarm may already have removed a dead task's container.
                "kill": lambda s, c: not (c and c.running),
                "stop": lambda s, c: not (c and c.running),
                "pause": lambda s, c: bool(c and c.paused),
                "restart": lambda s, c: is_up(c) and c.started_at != started[s],
            }
            effect = effects[spec.kind]
            after = backend.wait_states(t, services, effect)
            failed = [s for s in services if not effect(s, after.get(s))]
            if failed:
                raise FaultNotEffective(
                    f"{spec.describe()}: {', '.join(failed)} is still "
                    f"{state_word(after.get(failed[0]))} after `{' '.join(action)}`"
                )
            if spec.kind == "restart":  # back with a fresh network namespace: cut it again at once
                reapply(t, f"{' '.join(services)} restarted")
            return self._activate(
                fault_id, spec, services, t0, {"addresses": addresses(t, {s: before[s] for s in services})}
            )
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    def _apply_host(self, spec: FaultSpec, where: str) -> ActiveFault:
        hostfaults.targets(self.t, spec, where)  # names hosts of the lab's group, made here
        fault_id = self._register(spec, spec.targets, {})
        try:
            t0 = time.time()
            detail = hostfaults.apply(self.t, spec, fault_id)
            return self._activate(fault_id, spec, spec.targets, t0, detail)
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    def _require_up(self, spec: FaultSpec, services: Sequence[str], found: Mapping[str, Any]) -> None:
        missing = [s for s in services if s not in found]
        if missing:
            raise RuntimeFailure(f"{spec.describe()}: no container for {', '.join(missing)} in lab {self.t.lab!r}")
        not_up = [s for s in services if not is_up(found[s])]
        if not_up:
            raise RuntimeFailure(
                f"{spec.describe()}: {', '.join(not_up)} is not running "
                f"(an active fault? `halab heal --name {self.t.lab}`)"
            )

    def _apply_gray(self, spec: FaultSpec) -> ActiveFault:
        """stall, cpu, clock, io, exhaust: a process, the CPU quota, the clock, the disk or the
        connections of each target (lab/faults/gray.py)."""
        t = self.t
        services = list(spec.targets)
        found = backend.containers(t)
        self._require_up(spec, services, found)
        previous = {s: gray.cpu_quota(t, s) for s in services} if spec.kind == "cpu" else {}
        devices = {s: gray.data_device(t, s) for s in services} if spec.kind == "io" else {}
        kept = {"cpu_quota": previous} if spec.kind == "cpu" else {"devices": devices} if devices else {}
        fault_id = self._register(spec, services, kept)
        try:
            if spec.kind == "stall":
                t0 = time.time()
                states = {n: gray.signal_process(t, n, spec.process or "", "SIGSTOP") for n in services}
                running = [f"{n} pid {p} ({s})" for n, st in states.items() for p, s in st.items() if s != "T"]
                if running:
                    raise FaultNotEffective(f"{spec.describe()}: not stopped: {', '.join(running)}")
                return self._activate(fault_id, spec, services, t0, {"stopped": states})
            if spec.kind == "clock":
                before = {n: round(gray.read_clock(t, n, found).offset, 3) for n in services}
                t0 = time.time()
                for n in services:
                    gray.set_clock(t, n, spec.offset or 0.0, spec.drift or 0.0, since=t0)

                def read() -> dict[str, gray.ClockReading]:
                    return {n: gray.read_clock(t, n, found) for n in services}

                # A server reads the file at most once a second: it may take that long to show.
                first = poll(read, lambda m: gray.clock_set(spec, t0, m), 3 * gray.CLOCK_REREAD)
                later = None
                if spec.drift:  # read again once the drift has had time to show
                    window = gray.drift_window(spec)
                    start = min(r.at for r in first.values())
                    later = poll(read, lambda m: min(r.at for r in m.values()) - start >= window, window + 10, 1.0)
                detail = {"offset_before_s": before, **gray.check_clock(spec, t0, first, later)}
                return self._activate(fault_id, spec, services, t0, detail)
            if spec.kind == "exhaust":
                return self._exhaust(fault_id, spec, addresses(t, found)[DB]["db"])
            if spec.kind == "io":
                size, count = gray.io_probe(spec)
                before = {s: gray.write_time(t, s, size, count, keep=True) for s in services}
                t0 = time.time()
                for s in services:
                    gray.throttle(t, s, devices[s], spec.io_bps or 0, spec.io_iops or 0)
                after = {s: gray.write_time(t, s, size, count) for s in services}
                detail = {"devices": devices, **gray.check_io(spec, size, count, before, after)}
                return self._activate(fault_id, spec, services, t0, detail)
            t0 = time.time()
            gray.set_cpu_quota(t, services, round((spec.cpus or 1.0) * gray.CPU_PERIOD))
            loops = {s: gray.busy_loop(t, s) for s in services}
            detail = {"cpu_quota": previous, **gray.check_cpu(spec, loops)}
            return self._activate(fault_id, spec, services, t0, detail)
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    def _exhaust(self, fault_id: str, spec: FaultSpec, db_ip: str) -> ActiveFault:
        t = self.t
        leave = spec.leave or 0
        used, most = gray.db_connections(t)
        free = most - (used - 1)  # `used` counts the reading's own connection
        if free <= leave:
            raise RuntimeFailure(f"{spec.describe()}: only {free} of {most} connections are free")
        t0 = time.time()
        gray.start_rogue(t, fault_id, leave, db_ip)
        after, most = poll(lambda: gray.db_connections(t), lambda m: m[0] - 1 >= m[1] - leave, gray.ROGUE_SETTLE)
        detail: dict[str, Any] = {"connections_before": used - 1, "db_ip": db_ip}
        detail.update(gray.check_exhaust(spec, after, most, gray.rogue_probe(t, fault_id, db_ip)))
        return self._activate(fault_id, spec, [DB], t0, detail)

    def _apply_network(self, spec: FaultSpec) -> ActiveFault:
        if self.watcher is None:  # started before the snapshot: a start from here on is reapplied
            self.watcher = StartWatcher(self.t, self._started, since=time.time())
        try:
            # A reapply waits until the fault is active with the basis its rules were made on.
            with rules_lock(self.t.lab):
                return self._install_link(spec) if spec.kind in LINK_KINDS else self._install_network(spec)
        except BaseException:
            if not self._holds_network():
                self._unwatch()
            raise

    def _install_network(self, spec: FaultSpec) -> ActiveFault:
        t = self.t
        found = backend.containers(t)
        ips = addresses(t, found)
        cut_list = cuts(spec, t)
        endpoints = sorted({e for c in cut_list for e in (c.src, c.dst)})
        absent = [e for e in endpoints if e not in found]
        if absent:
            raise RuntimeFailure(f"{spec.describe()}: no container for {', '.join(absent)} in lab {t.lab!r}")
        probability = cut_list[0].probability if cut_list else 1.0
        # A host that is down or frozen cannot take rules nor run checks: its peers hold them (a
        # down one has no addresses either: it is cut when it starts, by reapply).
        live = {n for n in rule_holders(t) if is_up(found.get(n))}
        paths = check_paths(cut_list, live)
        before = backend.connectivity(t, [(s, d, 1) for s, d in paths], ips)
        open_paths = [p for p in paths if before[p][0] > 0]
        if not open_paths:
            raise FaultNotEffective(
                f"{spec.describe()}: no path to cut works before the fault "
                f"({', '.join(f'{s}->{d}' for s, d in paths)} all fail already); "
                f"heal the lab first (`halab heal --name {t.lab}`)"
            )
        detail: dict[str, Any] = {"cuts": len(cut_list), "checked": [f"{s}->{d}" for s, d in open_paths]}
        already = [f"{s}->{d}" for s, d in paths if before[(s, d)][0] == 0]
        if already:
            detail["already_cut"] = already
        fault_id = self._register(spec, endpoints, detail)
        try:
            plan = rules(cut_list, {e: list(ips[e].values()) for e in endpoints}, rule_tag(t.lab, fault_id), live)
            t0 = time.time()
            backend.install_rules(t, plan)
            n = attempts_for(probability)
            per_path = max(1, math.ceil(n / len(open_paths))) if probability < 1.0 else 1
            after = backend.connectivity(t, [(s, d, per_path) for s, d in open_paths], ips)
            dropped = sum(after[p][1] for p in open_paths)
            if probability >= 1.0:
                still = [f"{s}->{d}" for s, d in open_paths if after[(s, d)][0] > 0]
                if still:
                    raise FaultNotEffective(
                        f"{spec.describe()}: {', '.join(still)} still connect after the rules were installed"
                    )
            elif dropped == 0:
                raise FaultNotEffective(f"{spec.describe()}: none of {per_path * len(open_paths)} connects was dropped")
            detail["dropped"] = f"{dropped}/{per_path * len(open_paths)}"
            return self._activate(fault_id, spec, endpoints, t0, detail, basis=rule_basis(found, ips, endpoints))
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    def _install_link(self, spec: FaultSpec) -> ActiveFault:
        """delay, bandwidth: measured across the link before and after the nodes on it slow
        (delayers and queueing rules) or narrow it (shapers)."""
        t = self.t
        found = backend.containers(t)
        ips = addresses(t, found)
        links = cuts(spec, t)
        endpoints = sorted({e for c in links for e in (c.src, c.dst)})
        self._require_up(spec, endpoints, found)
        nodes = set(t.node_names)
        fault_id = self._register(spec, endpoints, {})
        try:
            if spec.kind == "delay":
                carriers = gray.carriers(links, nodes)
                targets = gray.probe_targets(t, carriers, ips)
                queue = gray.queue_of(fault_id)
                before = gray.measure_rtt(t, targets)
                t0 = time.time()
                gray.start_delayers(t, carriers, queue, spec)
                backend.install_rules(t, gray.delay_rules(carriers, ips, rule_tag(t.lab, fault_id), queue))
                after = gray.measure_rtt(t, targets)
                detail = {"queue": queue, "carriers": sorted(carriers), **gray.check_delay(spec, before, after)}
            else:
                shapers = gray.shapers(links, nodes)
                chosen = gray.transfer_probes(t, shapers, ips)
                before = gray.measure_rates(t, chosen, ips, spec.rate or 0)
                t0 = time.time()
                gray.shape(t, gray.shaped_addresses(shapers, ips), fault_id, spec)
                after = gray.measure_rates(t, chosen, ips, spec.rate or 0)
                probes = {n: f"{'to' if d == 'e' else 'from'} {peer}" for n, (d, peer) in chosen.items()}
                detail = {"shapers": sorted(shapers), "probes": probes, **gray.check_rate(spec, before, after)}
            return self._activate(fault_id, spec, endpoints, t0, detail, basis=rule_basis(found, ips, endpoints))
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    # ------------------------------------------------------------------------------------ heal

    def heal(self, fault: ActiveFault) -> FaultRecord | None:
        """Undo one fault; return its record (None when another process healed it first)."""
        with shielded():
            if not self._holds_network(but=fault.id):
                self._unwatch()
            record = heal_entry(self.t, fault.id)
            self.applied = [f for f in self.applied if f.id != fault.id]
        if record:
            log.info(f"fault {fault.id} healed after {record.t1 - record.t0:.1f} s")
        return record

    @contextlib.contextmanager
    def held(self, spec: FaultSpec, where: str = "fault") -> Iterator[ActiveFault]:
        fault = self.apply(spec, where)
        try:
            yield fault
        finally:
            self.heal(fault)

    def heal_all(self) -> list[FaultRecord]:
        """Heal what this injector applied, newest first."""
        out = []
        with shielded():
            self._unwatch()
            for fault in reversed(list(self.applied)):
                record = heal_entry(self.t, fault.id)
                if record:
                    out.append(record)
            self.applied.clear()
        return out

    # ------------------------------------------------------------------------------- watching

    def _holds_network(self, but: str = "") -> bool:
        return any(f.spec.kind in HELD_KINDS and f.id != but for f in self.applied)

    def _started(self, service: str, action: str) -> None:
        reapply(self.t, f"{service} {'unpaused' if action == 'unpause' else 'started'}")

    def _unwatch(self) -> None:
        """Stop the watcher (never while holding the rules lock: its reapply may wait for it)."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
