"""Chaos Toolkit probes of a lab (`"module": "lab.chaostoolkit.probes"`), all through the load
balancer on 127.0.0.1 (and `docker exec` for the database and the supervisors' counters).

- `steady_state(within=60, window=1)`: true once every node is active and UP in the load balancer,
  every ZooKeeper member serving, and every write and read of the watch client through the load
  balancer succeeded over the last `window` seconds; false when that did not happen within `within`
  seconds. The tolerance is `true`. With the control, the experiment's watch records those requests
  in the run's history (and the checker proves none of their writes was lost); without it, a watch
  runs for the probe alone.
- `writes_succeed(within=30, window=1)`: the same for the service alone: every write and read of
  the watch client through the load balancer succeeded over the last `window` seconds, whatever
  the nodes' states (a hypothesis that may hold while a fault does).
- `cluster_status()`: `halab status --json`, plus `healthy` (every node active and UP, the database
  answering).
- `zookeeper_modes()`: node -> leader, follower, standalone or unknown.
- `lb_stats()`: node -> HAProxy's status for it (UP, DOWN, ...).
- `checker_verdict()`: the checker over the run so far (history, the database now); `verdict` is
  "passed" or "failed", so a tolerance can be `{"type": "regex", "target": "verdict", "pattern": "^passed$"}`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from lab.chaos.faultlog import missing_faults
from lab.chaos.judge import judge, lab_query, objective_config
from lab.chaos.watch import Watch, snapshot, wait_steady
from lab.chaostoolkit import session
from lab.cluster import lifecycle, probes
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.core.wait import poll
from lab.faults import roles
from lab.record.checker import CheckResult
from lab.record.history import History, load_run


def steady_state(within: Any = 60, window: Any = 1.0, configuration: Mapping[str, Any] | None = None) -> bool:
    timeout = parse_duration(within, y.sub("steady_state", "within"))
    span = parse_duration(window, y.sub("steady_state", "window"), positive=True)
    s = session.current(configuration)
    with _watch(s) as w:
        return wait_steady(w, timeout, span) is not None


def writes_succeed(within: Any = 30, window: Any = 1.0, configuration: Mapping[str, Any] | None = None) -> bool:
    timeout = parse_duration(within, y.sub("writes_succeed", "within"))
    span = parse_duration(window, y.sub("writes_succeed", "window"), positive=True)
    s = session.current(configuration)
    with _watch(s) as w:
        start = time.time()
        return bool(poll(lambda: snapshot(w, start, span), lambda x: bool(x.client_ok), timeout, 0.1).client_ok)


@contextlib.contextmanager
def _watch(s: session.Session) -> Iterator[Watch]:
    """The experiment's watch, or one for this probe alone (writing nowhere)."""
    if s.watch is not None:
        yield s.watch
        return
    with Watch(s.t) as w:
        yield w


def cluster_status(configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    st = lifecycle.status(session.current(configuration).t)
    return st | {"healthy": lifecycle.healthy(st)}


def zookeeper_modes(configuration: Mapping[str, Any] | None = None) -> dict[str, str]:
    return roles(session.current(configuration).t)


def lb_stats(configuration: Mapping[str, Any] | None = None) -> dict[str, str]:
    return probes.lb_servers(session.current(configuration).t)


def checker_verdict(configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    s = session.current(configuration)
    recorded = load_run(s.run_dir)
    # Faults still in force are judged as ending now, without writing them: their heal records them.
    held = missing_faults(s.run_dir, s.t.lab, s.started)
    history = History.of(
        [*recorded.requests, *recorded.probes, *recorded.faults, *held, *recorded.acks], recorded.skipped_lines
    )
    return verdict_dict(judge(s.run_dir, lab_query(s.t), objective_config(), history=history).result)


def verdict_dict(r: CheckResult) -> dict[str, Any]:
    """The checker's verdict in short, for a journal."""
    return {
        "verdict": "passed" if r.passed else "failed",
        "at": time.time(),
        "requests": r.requests,
        "failed": r.failed,
        "acknowledged_writes": r.acks,
        "checks": {
            o.name: {"status": o.status, "checked": o.checked, "violations": len(o.violations)} for o in r.outcomes
        },
        "faults": [
            {
                "id": f.id,
                "fault": f.fault,
                "targets": list(f.targets),
                "availability": f.availability,
                "time_to_detect": f.time_to_detect,
                "time_to_recover": f.time_to_recover,
            }
            for f in r.faults
        ],
    }
