"""Declarative chaos scenarios: `halab run scenarios/NAME.yaml` (chaostoolkit's shape: steady
state before, a method, rollbacks, a JSON journal; Jepsen's: a history, then a checker).

A scenario file:

```yaml
name: kill-leader-under-load        # default: the file's name
description: what it shows
seed: 7                             # jitter and `random` targets are drawn from it
topology: {nodes: 3, layout: "dc-a:2,dc-b:1", db_dc: dc-a}   # layout and db_dc optional; also
                                    # lb_dc: a datacenter or outside (default), where the clients sit;
                                    # profile: rancher-1.0 (default) or tuned (`halab run --profile`)
load: {users: 4, spawn_rate: 4, user_classes: [ApiUser]}     # optional: Locust through the LB
duration: 40s                       # the method; default: the last heal + 10 s
faults:                             # the timed schedule, times from the method's start
  - {at: 5s, jitter: 2s, hold: 10s, kind: kill, target: leader}
  - {at: 25s, hold: 8s, kind: split, sides: [dc-a, dc-b], one_way: false}
checks:                             # the steady-state hypothesis
  before: [all-active, client-ok]
  during: [expected-active, service]
  after: [all-active, client-ok]
  settle: 6s                        # `during` judges the faults in force once they held this long
  within: 60s                       # `before`/`after` must hold within this
assert:                             # on the checker's verdicts over the recorded history
  no_lost_writes: true
  no_fenced_acks: true
  max_time_to_recover: 15s
```

Checks: `all-active` (every node /ping 200 and UP in the LB, every ZooKeeper member serving:
one leader, the others following), `client-ok` (the watch client's
reads and writes through the LB all succeed over the last second), `expected-active` (the active
nodes are those quorum arithmetic predicts for the faults in force), `service` (client requests
succeed when quorum arithmetic says the cluster survives the faults in force, fail when it says
outage). Assertions: see ASSERTIONS.

Every fault is healed on every exit path; the journal (`journal.json` in the run directory)
records the plan, the faults as executed, every check, the assertions and the verdict, and is
written even when the run is interrupted.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.chaos import claims as claims_mod
from lab.chaos.judge import judge, lab_query
from lab.chaos.watch import Snapshot, Watch, describe, snapshot
from lab.cluster import lifecycle, state
from lab.cluster.topology import Engine, Ports, Topology, make_topology
from lab.core import yamlspec as y
from lab.core.durations import parse_duration
from lab.core.errors import BadInput, CheckFailed, LabError
from lab.core.wait import poll
from lab.faults import FAULT_FIELDS, ActiveFault, FaultSpec, Injector, shielded, spec_from_yaml, validate
from lab.record import metrics
from lab.record.checker import CheckResult
from lab.record.history import HISTORY_FILE, write_json
from lab.record.load import LoadRun, LoadSpec, make_run_dir
from lab.server.profiles import DEFAULT_PROFILE

log = logging.getLogger("halab.chaos.scenario")

BEFORE_AFTER_CHECKS = ("all-active", "client-ok")
DURING_CHECKS = ("expected-active", "service", "client-ok")
# assertion -> the checker outcome it requires to pass, or the kind of bound it sets
ASSERTIONS = {
    "no_lost_writes": "acknowledged_writes_present",
    "no_duplicated_writes": "no_duplicated_writes",
    "no_fenced_acks": "no_writes_acknowledged_by_fenced_nodes",
    "no_stuck_processes": "no_stuck_processes",
    "max_time_to_detect": "seconds",
    "max_time_to_recover": "seconds",
    "min_availability": "fraction",
    "max_failed_requests": "count",
}
TAIL = 10.0  # seconds the method runs past its last heal by default


# --------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class TopologySpec:
    nodes: int
    layout: str | None = None
    db_dc: str | None = None
    lb_dc: str | None = None  # where the load balancer and its clients sit (None: outside)
    # The node profile (`halab run --profile` overrides the file's); None: a running lab's, or the
    # default for a new one.
    profile: str | None = None
    # A new lab with Prometheus (`halab up --monitoring`): the run records metrics.json for its report.
    monitoring: bool = False

    def build(self, lab_name: str = "scenario", ports: Ports | None = None, on: Engine | None = None) -> Topology:
        return make_topology(
            self.nodes,
            lab=lab_name,
            layout=self.layout,
            db_dc=self.db_dc,
            lb_dc=self.lb_dc,
            ports=ports,
            profile=self.profile or DEFAULT_PROFILE,
            monitoring=self.monitoring,
            engine=on,
        )


@dataclass(frozen=True)
class LoadProfile:
    users: int
    spawn_rate: float
    user_classes: tuple[str, ...] = ()
    processes: int = 1


@dataclass(frozen=True)
class FaultStep:
    at: float
    jitter: float
    hold: float
    fault: FaultSpec
    where: str  # e.g. "scenarios/x.yaml: faults[1]"


@dataclass(frozen=True)
class Checks:
    before: tuple[str, ...] = BEFORE_AFTER_CHECKS
    during: tuple[str, ...] = ()
    after: tuple[str, ...] = BEFORE_AFTER_CHECKS
    settle: float = 6.0
    within: float = 60.0


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    description: str
    seed: int
    topology: TopologySpec
    load: LoadProfile | None
    faults: tuple[FaultStep, ...]
    duration: float
    checks: Checks
    assertions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedFault:
    index: int
    at: float  # seconds after the method starts, jitter drawn
    hold: float
    fault: FaultSpec
    where: str


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every error names the file and the field."""
    root = y.at(path)
    doc = y.mapping(
        y.load(path),
        root,
        required=("topology", "faults"),
        optional=("name", "description", "seed", "load", "duration", "checks", "assert"),
    )
    name = y.string(doc.get("name", Path(path).stem), y.sub(root, "name"))
    topo = _topology(doc["topology"], y.sub(root, "topology"))
    t = topo.build()
    steps = tuple(
        _fault(raw, y.sub(y.sub(root, "faults"), i), t)
        for i, raw in enumerate(y.sequence(doc["faults"], y.sub(root, "faults"), allow_empty=True))
    )
    last = max((s.at + s.jitter + s.hold for s in steps), default=0.0)
    if "duration" in doc:
        duration = parse_duration(doc["duration"], y.sub(root, "duration"), minimum=1.0)
        late = [s for s in steps if s.at + s.jitter + s.hold > duration]
        if late:
            raise BadInput(
                f"{y.sub(root, 'duration')}: {duration:g} s ends before {late[0].where.split(': ')[-1]} "
                f"is healed (up to {late[0].at + late[0].jitter + late[0].hold:g} s)"
            )
    else:
        duration = last + TAIL
    return Scenario(
        path=str(path),
        name=name,
        description=y.string(doc["description"], y.sub(root, "description")) if "description" in doc else "",
        seed=y.integer(doc.get("seed", 0), y.sub(root, "seed")),
        topology=topo,
        load=_load(doc["load"], y.sub(root, "load")) if doc.get("load") is not None else None,
        faults=steps,
        duration=duration,
        checks=_checks(doc.get("checks") or {}, y.sub(root, "checks")),
        assertions=_assertions(doc.get("assert") or {}, y.sub(root, "assert")),
    )


def _topology(raw: Any, where: str) -> TopologySpec:
    d = y.mapping(raw, where, required=("nodes",), optional=("layout", "db_dc", "lb_dc", "profile", "monitoring"))
    spec = TopologySpec(
        y.integer(d["nodes"], y.sub(where, "nodes")),
        y.string(d["layout"], y.sub(where, "layout")) if "layout" in d else None,
        y.string(d["db_dc"], y.sub(where, "db_dc")) if "db_dc" in d else None,
        y.string(d["lb_dc"], y.sub(where, "lb_dc")) if "lb_dc" in d else None,
        y.string(d["profile"], y.sub(where, "profile")) if "profile" in d else None,
        y.boolean(d["monitoring"], y.sub(where, "monitoring")) if "monitoring" in d else False,
    )
    try:
        spec.build()
    except BadInput as exc:  # make_topology speaks of --nodes/--layout/...: name the field instead
        msg = str(exc)
        field_name = next(
            (
                f
                for f, flag in (
                    ("nodes", "--nodes"),
                    ("layout", "--layout"),
                    ("db_dc", "--db-dc"),
                    ("lb_dc", "--lb-dc"),
                    ("profile", "--profile"),
                )
                if msg.startswith(flag)
            ),
            "nodes",
        )
        raise BadInput(f"{y.sub(where, field_name)}: {msg.split(': ', 1)[-1]}") from None
    return spec


def _load(raw: Any, where: str) -> LoadProfile:
    d = y.mapping(raw, where, required=("users",), optional=("spawn_rate", "user_classes", "processes"))
    users = y.integer(d["users"], y.sub(where, "users"), minimum=1, maximum=1000)
    return LoadProfile(
        users,
        y.number(d.get("spawn_rate", users), y.sub(where, "spawn_rate"), minimum=0.1),
        y.strings(d["user_classes"], y.sub(where, "user_classes")) if "user_classes" in d else (),
        y.integer(d.get("processes", 1), y.sub(where, "processes"), minimum=1, maximum=16),
    )


def _fault(raw: Any, where: str, t: Topology) -> FaultStep:
    d = y.mapping(raw, where, required=("at", "kind"), optional=("jitter", "hold", *FAULT_FIELDS))
    spec = spec_from_yaml({k: v for k, v in d.items() if k in ("kind", *FAULT_FIELDS)}, where)
    validate(spec, t, where)
    return FaultStep(
        parse_duration(d["at"], y.sub(where, "at")),
        parse_duration(d.get("jitter", 0), y.sub(where, "jitter")),
        parse_duration(d.get("hold", 0), y.sub(where, "hold")),
        spec,
        where,
    )


def _checks(raw: Any, where: str) -> Checks:
    d = y.mapping(raw, where, optional=("before", "during", "after", "settle", "within"))
    default = Checks()

    def names(key: str, allowed: tuple[str, ...], fallback: tuple[str, ...]) -> tuple[str, ...]:
        if key not in d:
            return fallback
        if d[key] in (None, []):
            return ()
        out = y.strings(d[key], y.sub(where, key))
        for i, n in enumerate(out):  # one name may stand alone, without a list
            y.choice(n, y.sub(y.sub(where, key), i) if isinstance(d[key], list) else y.sub(where, key), allowed)
        return out

    return Checks(
        names("before", BEFORE_AFTER_CHECKS, default.before),
        names("during", DURING_CHECKS, default.during),
        names("after", BEFORE_AFTER_CHECKS, default.after),
        parse_duration(d.get("settle", default.settle), y.sub(where, "settle")),
        parse_duration(d.get("within", default.within), y.sub(where, "within"), minimum=1.0),
    )


def _assertions(raw: Any, where: str) -> dict[str, Any]:
    d = y.mapping(raw, where, optional=tuple(ASSERTIONS))
    out: dict[str, Any] = {}
    for key, value in d.items():
        at = y.sub(where, key)
        kind = ASSERTIONS[key]
        if kind == "seconds":
            out[key] = parse_duration(value, at)
        elif kind == "fraction":
            out[key] = y.number(value, at, minimum=0.0, maximum=1.0)
        elif kind == "count":
            out[key] = y.integer(value, at, minimum=0)
        else:
            out[key] = y.boolean(value, at)
    return out


# --------------------------------------------------------------------------------------- plan


def plan(sc: Scenario) -> list[PlannedFault]:
    """The schedule with its jitter drawn from the seed: the same file and seed, the same times."""
    rng = random.Random(sc.seed)
    return [
        PlannedFault(i, s.at + (rng.uniform(0, s.jitter) if s.jitter else 0.0), s.hold, s.fault, s.where)
        for i, s in enumerate(sc.faults)
    ]


def plan_lines(sc: Scenario, lab_name: str) -> list[str]:
    t = sc.topology.build()
    layout = ", ".join(f"{dc}:{len(t.nodes_in(dc))}" for dc in t.datacenters)
    lines = [
        f"scenario {sc.name} ({sc.path}), seed {sc.seed}" + (f": {sc.description}" if sc.description else ""),
        (
            f"topology: {t.size} node(s) over {layout}, database in {t.db_dc}, node profile {t.profile}; "
            f"lab {lab_name!r}"
        ),
    ]
    if sc.load:
        classes = ", ".join(sc.load.user_classes) or "every user class"
        lines.append(f"load: {sc.load.users} users (spawn {sc.load.spawn_rate:g}/s), {classes}, for the method")
    else:
        lines.append("load: the watch client only (a write and a read through the LB, over and over)")
    lines.append(f"steady state before: {', '.join(sc.checks.before) or 'none'} (within {sc.checks.within:g} s)")
    lines.append(f"method: {sc.duration:g} s")
    for p in plan(sc):
        lines.append(
            f"  T+{p.at:5.1f}s  faults[{p.index}] {p.fault.describe()}, healed {p.hold:g} s later; "
            f"expected {claims_mod.expected_text(t, [p.fault])}"
        )
    lines.append(
        f"during: {', '.join(sc.checks.during) or 'none'} (judged once the faults in force held {sc.checks.settle:g} s)"
    )
    lines.append(f"after: {', '.join(sc.checks.after) or 'none'} within {sc.checks.within:g} s of the last heal")
    lines.append("assert: " + (", ".join(f"{k}={v}" for k, v in sc.assertions.items()) or "nothing beyond the checks"))
    return lines


# ---------------------------------------------------------------------------------------- run


@dataclass
class Journal:
    """chaostoolkit-style record of one run, rewritten as the run goes."""

    path: Path
    data: dict[str, Any]

    def write(self) -> None:
        write_json(self.path, self.data)


@dataclass(frozen=True)
class ScenarioResult:
    run_dir: Path
    journal: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.journal.get("verdict") == "passed"

    def summary(self) -> str:
        j = self.journal
        problems = j.get("problems") or []
        return (
            f"scenario {j['scenario']['name']}: {j['status']}, {j['verdict']}"
            + (f": {'; '.join(problems)}" if problems else "")
            + f" (journal: {self.run_dir / 'journal.json'})"
        )


def lab_name_for(sc: Scenario) -> str:
    return ("sc-" + re.sub(r"[^a-z0-9_-]+", "-", sc.name.lower())).strip("-")[:41]


def run(
    sc: Scenario,
    *,
    lab_name: str | None = None,
    ports: Ports | None = None,
    runs_root: str | Path = "runs",
    keep: bool = False,
    on: Engine | None = None,
) -> ScenarioResult:
    """Run a scenario on the lab `lab_name` if it is up (its topology must match), else on a new
    lab (on the engine `on`: a swarm's, or compose) that is torn down afterwards unless `keep`."""
    name = lab_name or lab_name_for(sc)
    t, reused = _lab_for(sc, name, ports, on)
    if not reused:
        lifecycle.up(t)  # removes what it started if it fails; errors here are the user's to fix
    try:
        return _run_on(sc, t, reused, runs_root)
    finally:
        if not reused and not keep:
            lifecycle.down(t.lab)


def _run_on(sc: Scenario, t: Topology, reused: bool, runs_root: str | Path) -> ScenarioResult:
    run_dir = make_run_dir(sc.name, runs_root)
    schedule = plan(sc)
    journal = Journal(
        run_dir / "journal.json",
        {
            "scenario": {"name": sc.name, "path": sc.path, "description": sc.description, "seed": sc.seed},
            "plan": {
                "lines": plan_lines(sc, t.lab),
                "faults": [_planned_dict(p) for p in schedule],
                "duration": sc.duration,
                "checks": asdict(sc.checks),
                "assert": dict(sc.assertions),
                "load": asdict(sc.load) if sc.load else None,
            },
            "lab": {"name": t.lab, "reused": reused, "size": t.size, "db_dc": t.db_dc, "profile": t.profile},
            "run_dir": str(run_dir),
            "started": _iso(time.time()),
            "status": "running",
            "verdict": "failed",
            "steady_state": {"before": [], "during": {}, "after": []},
            "faults": [],
            "assertions": [],
            "problems": [],
        },
    )
    journal.write()
    log.info(f"run {sc.name} -> {run_dir}")
    started = time.time()
    try:
        _execute(sc, t, schedule, run_dir, journal)
        if journal.data["status"] == "completed":
            _judge(sc, t, run_dir, journal)
    except KeyboardInterrupt:
        journal.data["status"] = "interrupted"
        journal.data["problems"].append("interrupted")
        raise
    except LabError as exc:
        journal.data["status"] = "failed"
        journal.data["problems"].append(str(exc))
    finally:
        journal.data["server_restarts"] = lifecycle.server_restarts(t)  # since each node's container started
        journal.data["ended"] = _iso(time.time())
        journal.data["seconds"] = round(time.time() - started, 1)
        journal.data["verdict"] = (
            "passed" if journal.data["status"] == "completed" and not journal.data["problems"] else "failed"
        )
        journal.write()
    metrics.record(t, run_dir, started, time.time())  # with monitoring: the series the report plots
    _report(run_dir)
    return ScenarioResult(run_dir, journal.data)


def _lab_for(sc: Scenario, name: str, ports: Ports | None, on: Engine | None) -> tuple[Topology, bool]:
    if lifecycle.running_containers(name):
        t = state.load_topology(name)
        want = sc.topology.build(name, t.ports)
        if (t.node_names, tuple(n.dc for n in t.nodes), t.db_dc, t.lb_dc, sc.topology.profile or t.profile) != (
            want.node_names,
            tuple(n.dc for n in want.nodes),
            want.db_dc,
            want.lb_dc,
            t.profile,
        ):
            raise BadInput(
                f"lab {name!r} is up with another topology than {sc.path} asks for "
                f"({t.size} nodes, database in {t.db_dc}, node profile {t.profile}); use another --name "
                f"or `halab down --name {name}`"
            )
        return t, True
    return sc.topology.build(name, ports, on), False


def _execute(sc: Scenario, t: Topology, schedule: list[PlannedFault], run_dir: Path, journal: Journal) -> None:
    """Steady state before, the method (faults on their schedule, `during` checks), heal, after."""
    ss = journal.data["steady_state"]
    with Watch(t, run_dir) as w, Injector(t, history=run_dir / HISTORY_FILE, seed=sc.seed) as inj:
        ss["before"] = _hold_checks(w, sc.checks.before, sc.checks.within, time.time())
        journal.write()
        if not all(c["ok"] for c in ss["before"]):
            journal.data["status"] = "aborted"
            journal.data["problems"].append(
                "steady state did not hold before the method: "
                + "; ".join(c["detail"] for c in ss["before"] if not c["ok"])
            )
            return
        load = _start_load(sc, t, run_dir)
        try:
            _method(sc, t, schedule, w, inj, journal)
        finally:
            if load:
                load.stop()
        last_heal = max((f.get("t1") or 0.0 for f in journal.data["faults"]), default=time.time())
        ss["after"] = _hold_checks(w, sc.checks.after, sc.checks.within, max(last_heal, time.time() - 1.0))
        if not all(c["ok"] for c in ss["after"]):
            journal.data["problems"].append(
                "steady state did not come back after heal: "
                + "; ".join(c["detail"] for c in ss["after"] if not c["ok"])
            )
    if journal.data["status"] == "running":
        journal.data["status"] = "completed"


def _start_load(sc: Scenario, t: Topology, run_dir: Path) -> LoadRun | None:
    if not sc.load:
        return None
    spec = LoadSpec(
        name=sc.name,
        users=sc.load.users,
        spawn_rate=sc.load.spawn_rate,
        duration=sc.duration + 5,
        http_port=t.ports.http,
        https_port=t.ports.https,
        ca_file=str(state.ca_path(t.lab)),
        user_classes=sc.load.user_classes,
        processes=sc.load.processes,
    )
    return LoadRun(spec, run_dir).start()


def _method(sc: Scenario, t: Topology, schedule: list[PlannedFault], w: Watch, inj: Injector, journal: Journal) -> None:
    start = time.time()
    end = start + sc.duration
    events: list[tuple[float, str, int]] = sorted((start + p.at, "apply", p.index) for p in schedule)
    held: dict[int, ActiveFault] = {}
    records: dict[int, dict[str, Any]] = {}
    changed = start
    during: dict[str, dict[str, Any]] = {
        c: {"passed": 0, "failed": 0, "skipped": 0, "first_failure": None} for c in sc.checks.during
    }
    journal.data["steady_state"]["during"] = during

    def heal(i: int) -> None:
        record = inj.heal(held.pop(i))
        t1 = record.t1 if record else time.time()
        records[i].update(t1=t1, healed_at=round(t1 - start, 2))

    try:
        while events or time.time() < end:
            due = events[0][0] if events else end
            while time.time() < due:
                _during(sc, t, w, [f.spec for f in held.values()], changed, during)
                time.sleep(min(0.25, max(0.0, due - time.time())))
            if not events:
                break
            _, action, i = events.pop(0)
            p = schedule[i]
            if action == "heal":
                heal(i)
            else:
                rec = {**_planned_dict(p), "applied_at": None, "healed_at": None}
                records[i] = rec
                journal.data["faults"].append(rec)
                try:
                    fault = inj.apply(p.fault, p.where)
                except LabError as exc:
                    rec["error"] = str(exc)
                    journal.data["problems"].append(f"{p.where.split(': ')[-1]}: {exc}")
                    journal.data["status"] = "failed"
                    return
                held[i] = fault
                rec.update(
                    id=fault.id,
                    resolved=fault.spec.describe(),
                    t0=fault.t0,
                    applied_at=round(fault.t0 - start, 2),
                    detail=dict(fault.detail),
                    expected=claims_mod.expected_text(t, [f.spec for f in held.values()]),
                )
                events.append((fault.t0 + p.hold, "heal", i))
                events.sort()
            changed = time.time()
            journal.write()
    finally:  # rollbacks: whatever still holds, newest first, each recorded in the journal
        with shielded():
            for i in sorted(held, reverse=True):
                heal(i)
            journal.write()
    failed = [
        f"{name} failed {d['failed']} time(s), first: {d['first_failure']}" for name, d in during.items() if d["failed"]
    ]
    journal.data["problems"] += [f"during: {f}" for f in failed]


def _during(
    sc: Scenario, t: Topology, w: Watch, in_force: list[FaultSpec], changed: float, during: dict[str, dict[str, Any]]
) -> None:
    now = time.time()
    s = snapshot(w, changed, 1.0, now)
    for name in sc.checks.during:
        d = during[name]
        if name == "client-ok":
            ok: bool | None = s.client_ok
        elif now - changed < sc.checks.settle:
            ok = None
        else:
            try:
                e = claims_mod.expect(t, in_force)
            except BadInput:
                ok = None
            else:
                if name == "expected-active":
                    ok = s.active == e.active and s.settled
                else:
                    o = snapshot(w, changed, 2.0, now)
                    ok = s.client_ok if e.outcome == claims_mod.SURVIVES else o.client_failing
        if ok is None:
            d["skipped"] += 1
        elif ok:
            d["passed"] += 1
        else:
            d["failed"] += 1
            if d["first_failure"] is None:
                d["first_failure"] = f"{_iso(now)}: {describe(s)}"


def _hold_checks(w: Watch, names: Sequence[str], within: float, since: float) -> list[dict[str, Any]]:
    """Wait (up to `within`) until every named check holds; one result per check."""

    def results(s: Snapshot) -> dict[str, bool]:
        return {"all-active": s.steady, "client-ok": bool(s.client_ok)}

    s = poll(lambda: snapshot(w, since, 1.0), lambda s: all(results(s)[n] for n in names), within)
    return [{"name": n, "ok": results(s)[n], "t": _iso(s.t), "detail": describe(s)} for n in names]


def _judge(sc: Scenario, t: Topology, run_dir: Path, journal: Journal) -> None:
    """Snapshot the database, run the checker, evaluate the assertions."""
    result = judge(run_dir, lab_query(t)).result
    journal.data["assertions"] = [evaluate(k, v, result) for k, v in sc.assertions.items()]
    journal.data["problems"] += [
        f"assert {a['name']}: {a['detail']}" for a in journal.data["assertions"] if not a["ok"]
    ]


def evaluate(name: str, value: Any, result: CheckResult) -> dict[str, Any]:
    """One assertion against the checker's result."""
    kind = ASSERTIONS[name]
    if kind in ("seconds", "fraction", "count"):
        if name == "min_availability":
            actual = (result.requests - result.failed) / result.requests if result.requests else None
            ok = actual is not None and actual >= value
        elif name == "max_failed_requests":
            actual, ok = result.failed, result.failed <= value
        else:
            attr = "time_to_detect" if name == "max_time_to_detect" else "time_to_recover"
            figures = [getattr(f, attr) for f in result.faults]
            actual = None if not figures or None in figures else max(figures)
            ok = actual is not None and actual <= value
        shown = "not measured" if actual is None else f"{actual:.3g}"
        return {"name": name, "expected": value, "actual": actual, "ok": ok, "detail": f"{shown} against {value:g}"}
    outcome = result.outcome(kind)
    ok = outcome.status != "failed" if value else True
    first = outcome.violations[0].detail if outcome.violations else ""
    return {
        "name": name,
        "expected": value,
        "actual": outcome.status,
        "ok": ok,
        "detail": f"{outcome.status}, {len(outcome.violations)} violation(s) of {outcome.checked}"
        + (f", e.g. {first}" if first else "")
        + (f" ({outcome.note})" if outcome.note else ""),
    }


def _report(run_dir: Path) -> None:
    from lab.record.report import build_report

    try:
        build_report(run_dir)
    except (LabError, OSError, ValueError) as exc:  # the journal is the record; a report is a view of it
        write_json(run_dir / "report_error.json", {"error": str(exc)})


def _planned_dict(p: PlannedFault) -> dict[str, Any]:
    return {
        "index": p.index,
        "spec": p.fault.to_dict(),
        "describe": p.fault.describe(),
        "at": round(p.at, 2),
        "hold": p.hold,
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def require_pass(result: ScenarioResult) -> None:
    if not result.passed:
        raise CheckFailed(result.summary())
