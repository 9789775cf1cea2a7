"""Holding network faults across restarts: `reapply` re-establishes the rules of every active
network fault on the containers as they are now; `StartWatcher` reads `docker events` and calls it
on every start or unpause of one of the lab's containers."""

from __future__ import annotations

import atexit
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from lab.cluster import engine
from lab.cluster.topology import Topology
from lab.core.errors import FaultNotEffective
from lab.faults import backend, gray
from lab.faults.netmodel import addresses, check_paths, cuts, is_up, rule_basis, rule_holders, rule_tag, rules
from lab.faults.registry import Registry, rules_lock
from lab.faults.spec import HELD_KINDS, LINK_KINDS, FaultSpec

log = logging.getLogger("halab.faults.hold")

# One `docker events` process of a StartWatcher streams this long, the next resumes where it ended:
# a process orphaned by a SIGKILLed harness then ends by itself soon after.
EVENTS_CHUNK = 60.0

WATCH_STOP_TIMEOUT = 120.0  # a stop lets a reapply in progress finish (its docker execs are bounded)


def _epoch(stamp: str) -> float:
    """Docker's UTC RFC 3339 time with nanoseconds (2024-05-01T12:34:56.123456789Z) as epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() + float(
        f"0.{fraction or 0}"
    )


def reapply(t: Topology, why: str) -> list[str]:
    """Re-establish the lab's active network faults on its containers as they are now; return the
    ids of those whose rules were rewritten.

    A fault whose endpoints changed since its rules went in (see rule_basis) gets its plan computed
    again from the current addresses; each live node's rules of the fault are replaced, the new
    ones in before the old ones go (rewrite_rules); the cut paths among live hosts are checked
    (not for flaky, whose drops are random and would need hundreds of connects, nor for a slow
    link, which connects). A bandwidth fault's shaping is set again on the nodes whose namespace
    is new (all of them when an address moved); the others keep theirs untouched. The fault's
    registry detail notes each time under `reapplied`: what triggered it (`why`), when the rules
    were in (`t`), and how long each node that started meanwhile ran before them (`exposed`,
    seconds). Raises FaultNotEffective, once every fault was handled and the failure noted, when a
    cut path still connects."""
    with rules_lock(t.lab):
        registry = Registry(t.lab)
        held = [e for e in registry.active() if e.get("phase") == "active" and e["spec"]["kind"] in HELD_KINDS]
        if not held:
            return []
        found = backend.containers(t)
        ips = addresses(t, found)
        live = sorted(n for n in rule_holders(t) if is_up(found.get(n)))
        done, failures = [], []
        for entry in held:
            basis = rule_basis(found, ips, entry["targets"])
            before = entry.get("basis") or {}
            if basis == before:
                continue
            spec = FaultSpec.from_dict(entry["spec"])
            tag = rule_tag(t.lab, entry["id"])
            cut_list = cuts(spec, t)
            if spec.kind == "bandwidth":  # a node that started since has a fresh namespace, unshaped
                shapers = {n: e for n, e in gray.shapers(cut_list, set(t.node_names)).items() if n in live}
                moved = any(b[2] != (before.get(e) or [None] * 3)[2] for e, b in basis.items())
                changed = {n for n in shapers if moved or basis[n] != before.get(n)}
                gray.shape(t, gray.shaped_addresses({n: shapers[n] for n in changed}, ips), entry["id"], spec)
            else:
                if spec.kind == "delay":  # a node that started since has no delayer yet
                    carriers = {n: e for n, e in gray.carriers(cut_list, set(t.node_names)).items() if n in live}
                    queue = gray.queue_of(entry["id"])
                    fresh = {n: e for n, e in carriers.items() if (before.get(n) or [None])[0] != basis[n][0]}
                    gray.start_delayers(t, fresh, queue, spec)
                    plan = gray.delay_rules(carriers, ips, tag, queue)
                else:
                    plan = rules(cut_list, {e: list(ips.get(e, {}).values()) for e in entry["targets"]}, tag, live)
                backend.rewrite_rules(t, plan, f'"{tag}"', [n for n in live if n in entry["targets"]])
            now = time.time()
            note: dict[str, Any] = {"t": round(now, 3), "why": why}
            exposed = {
                e: round(now - _epoch(b[0]), 3)
                for e, b in basis.items()
                if e in live and e in before and b[0] != before[e][0]
            }
            if exposed:
                note["exposed"] = exposed
            paths = [] if spec.kind in ("flaky", *LINK_KINDS) else check_paths(cut_list, live)
            after = backend.connectivity(t, [(s, d, 1) for s, d in paths], ips)
            still = [f"{s}->{d}" for s, d in paths if after[(s, d)][0] > 0]
            if still:
                note["error"] = f"{', '.join(still)} still connect"
                failures.append(f"{entry['id']} {spec.describe()}: {note['error']} after {why}")
            detail = dict(entry.get("detail") or {})
            detail["reapplied"] = [*detail.get("reapplied", []), note]
            registry.update(entry["id"], basis=basis, detail=detail)
            done.append(entry["id"])
        if failures:
            raise FaultNotEffective("could not re-establish " + "; ".join(failures))
        return done


class StartWatcher:
    """Threads that call `handle(service, action)` for each start or unpause ("start", "unpause")
    of one of the lab's containers from `since` (epoch seconds) on, until stopped: one for each
    engine that runs them (each host of a swarm lab, where a rancher-1.0 node that exits comes
    back as a new task, without the rules of the faults that hold).

    Each reads `docker events` processes of EVENTS_CHUNK seconds, one after the other, and kills
    the current one on stop and at interpreter exit, so none outlives the harness for long.
    `handle` runs in a watcher thread, one event at a time across engines; what it raises is
    said, not raised."""

    def __init__(self, t: Topology, handle: Callable[[str, str], None], since: float) -> None:
        self.t = t
        self.handle = handle
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a stop never misses a process being started
        self._handling = threading.Lock()  # one event handled at a time
        self._procs: dict[str, subprocess.Popen[str]] = {}  # host ("" on compose) -> its current process
        self._threads = [
            threading.Thread(target=self._run, args=(host, on, since), name=f"halab-faults-{t.lab}{host}", daemon=True)
            for host, on in engine.engines(t).items()
        ]
        for thread in self._threads:
            thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        atexit.unregister(self.stop)
        with self._lock:
            self._stopping.set()
            for proc in self._procs.values():
                proc.kill()
        deadline = time.monotonic() + WATCH_STOP_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            log.info(f"fault watcher of {self.t.lab}: still busy after {WATCH_STOP_TIMEOUT:g} s; left to end alone")

    def _run(self, host: str, on: tuple[str, ...], since: float) -> None:
        while True:
            until = since + EVENTS_CHUNK
            with self._lock:
                if self._stopping.is_set():
                    return
                # A new session: a Ctrl-C meant for the harness does not end it while faults still hold.
                proc = self._procs[host] = subprocess.Popen(
                    backend.events_command(self.t, since, until, on),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            try:
                for line in proc.stdout or ():
                    self._dispatch(line)
            finally:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode == 0:
                since = until
            elif not self._stopping.is_set():  # docker failed (a killed host): retry the span, without spinning
                log.info(
                    f"fault watcher of {self.t.lab}{' on ' + host if host else ''}: `docker events` exited "
                    f"{proc.returncode}: {err.strip()}"
                )
                self._stopping.wait(1.0)

    def _dispatch(self, line: str) -> None:
        try:
            event = json.loads(line)
            labels = event["Actor"]["Attributes"]
            # A swarm task's service is `<stack>_<service>` (lab/cluster/docker.py).
            swarm = str(labels.get("com.docker.swarm.service.name", "")).removeprefix(f"{self.t.lab}_")
            with self._handling:
                self.handle(labels.get("com.docker.compose.service") or swarm, event["Action"])
        except Exception as exc:  # noqa: BLE001 - one odd event line must not end the watcher
            log.info(f"fault watcher of {self.t.lab}: {type(exc).__name__}: {exc}")
