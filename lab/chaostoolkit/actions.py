"""Chaos Toolkit actions on a lab (`"provider": {"type": "python", "module": "lab.chaostoolkit.actions",
"func": ..., "arguments": {...}}`). Each returns what it did, as JSON, for the experiment's journal.

- `fault(kind, hold=None, **fields)`: apply one verified fault. The fields are a scenario file's
  (`target`, `sides`, `one_way`, `loss`, `delay`, `delay_jitter`, `process`, `cpus`, `offset`, `drift`,
  `io_rate`, `io_iops`; lab/chaos/scenario.py). With `hold` (e.g. "10s") it is healed after that
  long, before the action returns; without, it holds until `heal` (or the end of the experiment).
- `heal()`: heal this experiment's faults, then everything else of the lab (`halab heal`).
- `start_load(duration, users=10, spawn_rate=None, user_classes=None)`: Locust through the load
  balancer in the background, for at most `duration` (required) and `users` (1 to MAX_USERS).
- `stop_load()`: stop it now and collect what it recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lab.chaostoolkit import session
from lab.cluster import state
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.faults import heal_lab, spec_from_yaml
from lab.record.load import LoadSpec

MAX_USERS = 1000  # as a scenario file's load


def fault(kind: str, hold: Any = None, configuration: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    where = "fault"
    spec = spec_from_yaml({"kind": kind, **fields}, where)
    held = parse_duration(hold, y.sub(where, "hold"), positive=True) if hold is not None else None
    s = session.current(configuration)
    applied = s.injector.apply(spec, where)
    out: dict[str, Any] = {
        "id": applied.id,
        "fault": applied.describe(),
        "targets": list(applied.targets),
        "t0": applied.t0,
        "detail": dict(applied.detail),
    }
    if held is None:
        return out
    try:
        time.sleep(held)  # the fault's time in force, as `halab fault --hold`: not a wait on a condition
    finally:
        record = s.injector.heal(applied)
    return out | {"t1": record.t1 if record else time.time(), "healed": record is not None}


def heal(configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    s = session.current(configuration)
    mine = s.injector.heal_all()  # recorded in the run's history, and the injector stops watching
    report = heal_lab(s.t)  # what anyone else left, and leftovers
    return {"experiment_faults": [r.to_dict() for r in mine], **report.to_dict()}


def start_load(
    duration: Any,
    users: int = 10,
    spawn_rate: float | None = None,
    user_classes: Any = None,
    configuration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    where = "start_load"
    seconds = parse_duration(duration, y.sub(where, "duration"), positive=True)
    users = y.integer(users, y.sub(where, "users"), minimum=1, maximum=MAX_USERS)
    rate = users if spawn_rate is None else y.number(spawn_rate, y.sub(where, "spawn_rate"), minimum=0.1)
    classes = y.strings(user_classes, y.sub(where, "user_classes")) if user_classes is not None else ()
    s = session.current(configuration)
    spec = LoadSpec(
        name=s.title,
        users=users,
        spawn_rate=rate,
        duration=seconds,
        http_port=s.t.ports.http,
        https_port=s.t.ports.https,
        ca_file=str(state.ca_path(s.t.lab)),
        user_classes=classes,
    )
    load = s.start_load(spec)
    return {"users": users, "spawn_rate": rate, "duration": seconds, "run_dir": str(load.run_dir)}


def stop_load(configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    result = session.current(configuration).stop_load()
    if result is None:
        return {"stopped": False, "why": "no load was running"}
    return {"stopped": True, **session.load_dict(result)}
