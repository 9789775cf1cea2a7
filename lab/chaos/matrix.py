"""`halab matrix`: every case of the install guide's claims, on real labs, one lab per size,
measured.

For each case: wait for steady state, put the ZooKeeper leader where the case says
(lab/chaos/placement.py), resolve the fault's roles, ask the lab's model for its prediction
(lab.chaos.claims.predict: quorum arithmetic, the database's placement, the node profile), apply
the fault (verified), observe through the load balancer, heal, and wait for steady state again. A
Watch records probes and a client's requests for the whole size into one history; after the last
case the checker proves from it and the database that no acknowledged write was lost and that no
fenced node acknowledged one, and its violations are charged to the case they fell in.

What is measured per case, all through the load balancer (docs/survivability.md):
- the share of the client's requests that succeeded from the objective's `after` seconds on (and
  of its writes), and per second from the fault on;
- errors by kind while the fault held (409, 500, 503, timeout, refused, ...);
- drain: fault -> the load balancer stopped sending to every node that failed or lost its quorum
  (None: it never did, e.g. rancher-1.0 nodes answer /ping with pong whatever happens);
- recover: fault -> writes succeed again for good (0: none failed);
- restarts: API server restarts per node (the rancher-1.0 restart loop);
- healed: heal -> every node active and the client succeeding.

The observed outcome is the objective's: survives, degraded or outage. The case compares it with
the guide's outcome (`Claim.outcome`) and with the model's prediction, and keeps the three apart: a
claim *holds* when every case observed what the guide says; an observation the model did not
predict is a *surprise*, reported with its numbers, never retried away. One thing is not a
measurement of the lab: a case during which the observer itself stood still (the watch's metronome,
lab/chaos/watch.py, beat OBSERVER_STALL seconds late: the harness, or the machine under it, was
paused); it is reported as "not measured", with the stall, and run once more.

When to stop observing: a tuned node fences itself, so as soon as the lab shows exactly what the
model expects (after `after` + `window` seconds) the case is decided; otherwise, and always for
profiles whose nodes do not fence themselves, at `decide` seconds, so that slow effects (a session
lost after 30 s, a restart loop) are seen.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from lab.chaos import claims as claims_mod
from lab.chaos import evidence
from lab.chaos.claims import DEGRADED, OUTAGE, SURVIVES, Bounds, Case, Claims, Expectation, Objective
from lab.chaos.judge import judge, lab_query
from lab.chaos.placement import place_leader
from lab.chaos.watch import Watch, snapshot, wait_steady
from lab.cluster import engine, galera_life, hosts, lifecycle, probes
from lab.cluster.database import SINGLE
from lab.cluster.topology import OUTSIDE_LB, Engine, Ports, Topology, make_topology
from lab.core.errors import BadInput, CheckFailed, LabError
from lab.core.wait import wait_until
from lab.faults import Injector, backend, roles
from lab.faults.spec import SWARM_KINDS
from lab.record.checker import CheckResult
from lab.record.history import HISTORY_FILE, RequestRecord, write_json
from lab.record.load import make_run_dir
from lab.server.profiles import DEFAULT_PROFILE, Profile

log = logging.getLogger("halab.chaos.matrix")

ERROR = "error"
# Not a measurement of the lab: the observer itself (this harness, and the machine under it) stood
# still for OBSERVER_STALL seconds or more while the fault held. Such a case is run once more; both
# attempts are reported.
NOT_MEASURED = "not measured"
OBSERVER_STALL = 2.0
GRAY = "none"  # a gray case's guide and model columns: the guide says nothing, the model predicts nothing
EXIT_CLAIM_FAILS = 3  # a claim of the guide does not hold on this lab (CheckFailed's status)
EXIT_SURPRISE = 4  # every claim holds, but the lab did something its model did not predict


@dataclass(frozen=True)
class Measures:
    # Requests that succeeded from `after` on; None: none started then. The watch is one closed-loop
    # client: while a request hangs it sends no other, so hangs weigh less than they would for many
    # users (coordinated omission; docs/survivability.md).
    share: float | None
    write_share: float | None
    requests: int  # client requests during the fault
    per_second: tuple[float | None, ...]  # success share of each second from the fault on
    errors: dict[str, int]  # kind -> count during the fault
    drain: float | None  # fault -> every node that should be out was drained by the LB; None: never
    recover: float | None  # fault -> writes succeed again for good
    restarts: dict[str, int]  # node -> API server restarts during the case

    def summary(self, outcome: str, after: float) -> str:
        """ "degraded: 64 % success (writes 30 %) from 10 s on; writes back after 31.2 s; 2 restarts"."""
        if self.share is None:
            return f"{outcome}: no request measured from {after:g} s on"
        text = f"{outcome}: {_pct(self.share)} success (writes {_pct(self.write_share)}) from {after:g} s on"
        text += "; writes never back" if self.recover is None else f"; writes back after {self.recover:.1f} s"
        n = sum(self.restarts.values())
        return text + (f"; {n} server restart(s)" if n else "")


@dataclass(frozen=True)
class CaseResult:
    size: int
    case: str
    claims: tuple[str, ...]
    fault: str  # resolved, e.g. "kill a1 (leader)"
    leader: str  # where the leader was before the fault, e.g. "b1 (minority)"
    guide: str  # what the guide says: survives | outage
    predicted: str  # the lab's model: survives | degraded | outage
    why: str  # the model's reason
    observed: str  # survives | degraded | outage | error
    measures: Measures | None
    expected_active: tuple[str, ...]
    observed_active: tuple[str, ...]
    healed: float | None
    t0: float | None
    t_heal: float | None
    t_end: float
    problems: tuple[str, ...] = ()  # where the lab differed from the model's details (tuned: fencing)
    safety: tuple[str, ...] = ()  # the checker's violations charged to this case
    evidence: tuple[str, ...] = ()  # a surprising or failing case: its nodes' timeline from their logs

    @property
    def gray(self) -> bool:
        """A case of no claim (a gray failure): measured against the objective only."""
        return not self.claims

    @property
    def measured(self) -> bool:
        """False when the observer stalled during the fault: the figures describe the machine."""
        return self.observed != NOT_MEASURED

    @property
    def holds(self) -> bool:
        """The guide's words held for this case (a gray case: it met the objective)."""
        return self.observed == (SURVIVES if self.gray else self.guide) and not self.safety

    @property
    def surprise(self) -> bool:
        """The lab did what its model did not predict (a gray case has no prediction: only a
        safety violation or a lab that did not come back is one)."""
        if not self.measured:
            return bool(self.safety)
        mispredicted = not self.gray and self.observed != self.predicted
        return mispredicted or bool(self.problems) or bool(self.safety)

    @property
    def verdict(self) -> str:
        if not self.measured:
            return "not measured" + (", surprise" if self.surprise else "")
        if self.gray:
            text = "meets the objective" if self.holds else "misses the objective"
        else:
            text = "holds" if self.holds else "does not hold"
        return text + (", surprise" if self.surprise else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds, "surprise": self.surprise, "verdict": self.verdict}


@dataclass(frozen=True)
class MatrixResult:
    run_dir: Path
    started: float
    ended: float
    sizes: tuple[int, ...]
    profile: str
    bounds: Bounds
    objective: Objective
    cases: tuple[CaseResult, ...]
    claims: tuple[dict[str, Any], ...]
    checks: dict[str, Any] = field(default_factory=dict)  # size -> checker outcomes
    machine: dict[str, Any] = field(default_factory=dict)
    # Where the database and the load balancer were ("db_dc", "lb_dc"): they change the answers.
    placement: dict[str, str] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return all(c["holds"] for c in self.claims)

    @property
    def as_predicted(self) -> bool:
        return not any(c.surprise for c in self.cases)

    @property
    def unmeasured(self) -> list[str]:
        """Cases with no attempt the observer saw through."""
        seen = {(c.size, c.case) for c in self.cases if c.measured}
        return sorted({f"n{c.size} {c.case}" for c in self.cases if (c.size, c.case) not in seen})

    @property
    def passed(self) -> bool:
        return self.holds and self.as_predicted and not self.unmeasured

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "machine": self.machine,
            "profile": self.profile,
            "placement": self.placement,
            "sizes": list(self.sizes),
            "seconds": round(self.ended - self.started, 1),
            "holds": self.holds,
            "as_predicted": self.as_predicted,
            "passed": self.passed,
            "objective": asdict(self.objective),
            "bounds": asdict(self.bounds),
            "claims": list(self.claims),
            "cases": [c.to_dict() for c in self.cases],
            "checks": self.checks,
        }


# --------------------------------------------------------------------------------- measuring


def error_kind(r: RequestRecord) -> str | None:
    """409, 500, 503, ... for an HTTP answer; timeout, refused, reset or connection without one."""
    if r.ok:
        return None
    if r.status:
        return str(r.status)
    text = (r.error or "").lower()
    for kind, words in (("timeout", ("timed out", "timeout")), ("refused", ("refused",)), ("reset", ("reset",))):
        if any(w in text for w in words):
            return kind
    return "connection"


def _share(reqs: Sequence[RequestRecord]) -> float | None:
    return sum(r.ok for r in reqs) / len(reqs) if reqs else None


def measure(
    reqs: Sequence[RequestRecord],
    t0: float,
    t_end: float,
    after: float,
    drain: float | None,
    recover: float | None,
    restarts: dict[str, int],
) -> Measures:
    """Figures of one case from the client's requests that started and ended in [t0, t_end] (the
    decision, just before the heal). A request still in flight then ends in the healed lab: in
    rancher-1.0's database splits one write per case waited on the cut database for about 1 s
    before the decision and succeeded 0.1-0.3 s after the heal, which read as 5 % of writes
    succeeding, "degraded" instead of the outage the fault caused."""
    during = [r for r in reqs if t0 <= r.t0 and r.t1 <= t_end]
    late = [r for r in during if r.t0 >= t0 + after]
    seconds = max(1, math.ceil(t_end - t0))
    per_second = tuple(_share([r for r in during if t0 + i <= r.t0 < t0 + i + 1]) for i in range(seconds))
    errors = Counter(k for k in map(error_kind, during) if k)
    return Measures(
        _share(late),
        _share([r for r in late if r.write]),
        len(during),
        per_second,
        dict(sorted(errors.items())),
        drain,
        recover,
        restarts,
    )


def outcome_of(m: Measures, objective: Objective) -> str:
    """The objective's verdict on what was measured."""
    if m.write_share is not None and m.write_share <= 1 - objective.success:
        return OUTAGE
    if m.share is not None and m.share >= objective.success:
        return SURVIVES
    return DEGRADED if m.share is not None else ERROR


# --------------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class Observation:
    t: float
    active: frozenset[str]
    pings: dict[str, int | None]


def observe(
    w: Watch, exp: Expectation, predicted: str, t0: float, b: Bounds, objective: Objective, fences: bool
) -> Observation:
    """Watch the lab after a fault until the case is decided (see the module docstring)."""
    earliest = max(b.settle, objective.after + objective.window)
    while True:
        now = time.time()
        s = snapshot(w, t0, b.stable, now)
        elapsed = now - t0
        if fences and elapsed >= earliest:
            o = snapshot(w, t0, b.outage, now)
            fenced_ok = all(s.pings.get(n) == 503 for n in exp.fenced)
            shows = (s.client_ok and bool(s.active)) if predicted == SURVIVES else (o.client_failing and not s.active)
            if s.settled and s.active == exp.active and fenced_ok and shows:
                return Observation(now, s.active, s.pings)
        if elapsed >= b.decide:
            return Observation(now, s.active, s.pings)
        time.sleep(0.1)


def run_case(
    t: Topology, p: Profile, case: Case, w: Watch, inj: Injector, b: Bounds, objective: Objective, guide: str
) -> CaseResult:
    if t.db.galera:  # a member the last case took down rejoins first, so this case does not measure it
        wait_until("the Galera database whole again", partial(galera_life.unsettled, t), time.monotonic() + b.heal)
    if wait_steady(w, b.heal, b.stable) is None:
        raise LabError(f"the lab was not steady within {b.heal:g} s before the case")
    leader = place_leader(t, case.leader_on, timeout=b.heal) if case.leader_on else ""
    if case.leader_on and wait_steady(w, b.heal, b.stable) is None:
        raise LabError(f"the lab was not steady within {b.heal:g} s after placing the leader")
    modes = roles(t)
    leader = leader or next((n for n, m in modes.items() if m in ("leader", "standalone")), "?")
    where = f"{leader} ({case.leader_where})" if case.leader_where else leader
    spec = inj.resolve(case.fault, where=case.id)
    if case.gray:  # nothing predicted; the targeted nodes are watched for the load balancer's drain
        targeted = frozenset(n for n in spec.targets if n in t.node_names)
        watched = Expectation(active=frozenset(), fenced=targeted, failed=frozenset())
        pred = claims_mod.Prediction(GRAY, f"no claim: measured while held {case.hold:g} s", watched)
        exp = watched
        b = replace(b, decide=case.hold)
    else:
        pred = claims_mod.predict(t, [spec], p, objective, leader_lost=_loses(t, spec, leader))
        exp = pred.expectation
    tags = [f"{n} (leader)" if n == leader else n for n in spec.targets]
    fault_text = f"{spec.kind} {' '.join(tags)}" if spec.targets else spec.describe()
    log.info(
        f"n{t.size} {case.id}: {fault_text}, leader {where}; the guide says {guide}, the model predicts "
        f"{pred.outcome} ({pred.why})"
    )
    restarts_before = _restarts(t)
    fault = inj.apply(spec, where=case.id)
    try:
        obs = observe(w, exp, pred.outcome, fault.t0, b, objective, fences=p.ping_gate and not case.gray)
    finally:
        record = inj.heal(fault)
    t_heal = record.t1 if record else time.time()
    back = wait_steady(w, b.heal, b.stable, since=t_heal)
    outs = [w.first_drained(n, fault.t0) for n in sorted(exp.out)]
    drain = None if None in outs else max((x - fault.t0 for x in outs if x is not None), default=0.0)
    restarts = _restarts_between(restarts_before, _restarts(t))
    m = measure(
        w.client_window(fault.t0, obs.t),
        fault.t0,
        obs.t,
        objective.after,
        drain,
        w.writes_resumed(fault.t0, obs.t),
        restarts,
    )
    observed = outcome_of(m, objective)
    problems = _model_details(p, exp, obs, drain, b) if observed == pred.outcome and not case.gray else []
    stall = w.longest_stall(fault.t0, obs.t)
    if stall is not None and stall[1] >= OBSERVER_STALL:
        observed, problems = (
            NOT_MEASURED,
            [
                f"the observer stalled {stall[1]:.1f} s from +{stall[0]:.1f} s (this harness and the machine "
                f"under it stood still: the lab's timers all fired at once when it went on); not a measurement"
            ],
        )
    if back is None:
        stuck = _repair(t, w, b)
        problems.append(
            f"not every node active (with writes succeeding) within {b.heal:g} s after heal"
            + (f"; {', '.join(stuck)} restarted so that the next case starts from a steady lab" if stuck else "")
        )
    unexpected = (observed != SURVIVES) if case.gray else (observed != pred.outcome or observed != guide)
    unexpected = (unexpected or bool(problems)) and observed != NOT_MEASURED
    told = _evidence(t, fault.t0, t_heal) if unexpected else ()
    result = CaseResult(
        t.size,
        case.id,
        case.claims,
        guide=guide,
        fault=fault_text,
        leader=where,
        predicted=pred.outcome,
        why=pred.why,
        observed=observed,
        measures=m,
        expected_active=tuple(sorted(exp.active)),
        observed_active=tuple(sorted(obs.active)),
        healed=None if back is None else back - t_heal,
        t0=fault.t0,
        t_heal=t_heal,
        t_end=time.time(),
        problems=tuple(problems),
        evidence=tuple(told),
    )
    log.info(
        f"n{t.size} {case.id}: {m.summary(observed, objective.after)}; drain {_s(drain)}, healed "
        f"{_s(result.healed)} -> {result.verdict}" + (f" ({'; '.join(problems)})" if problems else "")
    )
    return result


def _evidence(t: Topology, t0: float, t_heal: float) -> list[str]:
    """What the nodes' ZooKeeper members, clients and HA states did while the fault held, so that
    the surprise can be explained from the report alone."""
    events = evidence.collect(engine.placed(t, t.node_names), t0 - 0.5, t_heal)
    return evidence.render(events, t0, limit=80)


def _repair(t: Topology, w: Watch, b: Bounds) -> list[str]:
    """Restart the nodes whose ZooKeeper member does not serve after a case's heal, so that one
    case that left the ensemble broken (e.g. rancher-1.0's empty members after a restart) does not
    fail every case after it; the broken case keeps its problem. Returns who was restarted."""
    stuck = sorted(n for n, m in roles(t).items() if m not in probes.SERVING_MODES)
    if stuck:
        log.warning("n%d: restarting %s: ZooKeeper member not serving after the heal", t.size, ", ".join(stuck))
        backend.restart(t, stuck)
        wait_steady(w, b.heal, b.stable)
    return stuck


def _loses(t: Topology, spec: Any, leader: str) -> bool:
    """Whether the fault takes the leader away from the nodes that keep a quorum."""
    if leader in spec.targets:
        return True
    e = claims_mod.expect(t, [spec])
    return bool(e.active) and leader not in e.active


def _model_details(p: Profile, exp: Expectation, obs: Observation, drain: float | None, b: Bounds) -> list[str]:
    """For a node that fences itself (tuned), what the model says of each node, checked too."""
    if not p.ping_gate:
        return []
    out = []
    if obs.active != exp.active:
        out.append(f"active {sorted(obs.active) or 'none'}, quorum arithmetic says {sorted(exp.active) or 'none'}")
    wrong = [f"{n} /ping {obs.pings.get(n)}" for n in sorted(exp.fenced) if obs.pings.get(n) != 503]
    if wrong:
        out.append(f"cut-off nodes should fence themselves with 503: {', '.join(wrong)}")
    if drain is None or drain > b.fence:
        out.append(f"not every failed or cut-off node was drained by the load balancer within {b.fence:g} s")
    return out


def _restarts_between(before: dict[str, int | None], after: dict[str, int | None]) -> dict[str, int]:
    out = {}
    for n, a in after.items():
        b = before.get(n)
        if a is not None and b is not None and a != b:
            # A container that came back (killed, then started) counts its restarts from zero.
            out[n] = a - b if a > b else a
    return {n: k for n, k in out.items() if k}


def _restarts(t: Topology) -> dict[str, int | None]:
    try:
        return lifecycle.server_restarts(t)
    except LabError:
        return {n: None for n in t.node_names}


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


# --------------------------------------------------------------------------------- one size


def run_size(
    t: Topology, cases: Sequence[Case], run_dir: Path, claims: Claims, seed: int = 0
) -> tuple[list[CaseResult], CheckResult]:
    """Every case on one running lab; then the checker over the whole history and the database."""
    p = t.node_profile
    b = claims.bounds_for(p.name)
    guide = {c.id: c.outcome for c in claims.claims}
    results: list[CaseResult] = []
    with Watch(t, run_dir) as w, Injector(t, history=run_dir / HISTORY_FILE, seed=seed) as inj:
        for case in cases:
            says = guide[case.claims[0]] if case.claims else GRAY
            try:
                results.append(run_case(t, p, case, w, inj, b, claims.objective, says))
                if not results[-1].measured:
                    log.info(f"n{t.size} {case.id}: {results[-1].problems[0]}; running it once more")
                    results.append(run_case(t, p, case, w, inj, b, claims.objective, says))
            except LabError as exc:  # a fault or placement that could not be done: this case failed
                log.info(f"n{t.size} {case.id}: error: {exc}")
                stuck = _repair(t, w, b)  # so that one broken case does not fail every case after it
                if stuck:
                    exc = LabError(f"{exc}; {', '.join(stuck)} restarted so that the next case starts steady")
                results.append(
                    CaseResult(
                        t.size,
                        case.id,
                        case.claims,
                        case.fault.describe(),
                        "?",
                        says,
                        "?",
                        "",
                        ERROR,
                        None,
                        (),
                        (),
                        None,
                        None,
                        None,
                        time.time(),
                        (str(exc),),
                    )
                )
    verdicts = judge(run_dir, lab_query(t)).result
    return _charge(results, verdicts), verdicts


def _charge(results: list[CaseResult], verdicts: CheckResult) -> list[CaseResult]:
    """Add each lost write or fenced acknowledgement to the case whose window it fell in."""
    out = []
    for i, r in enumerate(results):
        lo = 0.0 if i == 0 else results[i - 1].t_end
        hi = r.t_end
        extra = []
        for o in verdicts.outcomes:
            if o.name == "no_stuck_processes":  # a stuck process is not this case's doing by time alone
                continue
            hits = [v for v in o.violations if v.t is not None and lo < v.t <= hi]
            if hits:
                extra.append(f"{o.name}: {len(hits)} violation(s), e.g. {hits[0].detail}")
        out.append(r if not extra else replace(r, safety=r.safety + tuple(extra)))
    return out


# ---------------------------------------------------------------------------------- matrix


def listed(claims: Claims, t: Topology, gray: bool) -> list[Case]:
    """The claims' cases (or gray cases) for the lab's size and placement, each checked as for a
    compose lab: `takes` then says which its engine runs."""
    twin = replace(t, engine=Engine())
    return claims_mod.gray_cases(claims, twin) if gray else claims_mod.cases(claims, twin)


def takes(t: Topology, case: Case) -> bool:
    """Whether the lab's engine takes the case's fault (a swarm lab not every kind yet)."""
    return not t.engine.swarm or case.fault.kind in SWARM_KINDS


def run_matrix(
    sizes: Sequence[int],
    *,
    claims_path: str | Path = claims_mod.DEFAULT_CLAIMS,
    runs_root: str | Path = "runs",
    lab_prefix: str = "matrix",
    db_dc: str | None = None,
    lb_dc: str | None = None,
    db: str | None = None,
    db_layout: str | None = None,
    db_arbitrator: str | None = None,
    profile: str | None = None,
    only: Sequence[str] = (),
    ports: Callable[[], Ports] | None = None,
    seed: int = 0,
    gray: bool = False,
    on: Engine | None = None,
) -> MatrixResult:
    """Run the matrix (with `gray`, the gray cases instead of the claims'; `on`: a swarm to run its
    labs on, one after another, on the ports its manager publishes); write matrix.json and
    matrix.md into a fresh run directory; return the result."""
    from lab.capacity.sweep import machine

    claims = claims_mod.load(claims_path)
    if on is not None and on.swarm:
        group = hosts.load(on.hosts or "", "--hosts")
        ports = partial(hosts.lab_ports, group)
    plans = []
    left_out: list[str] = []  # cases whose fault this engine does not take yet
    for size in sizes:
        t = make_topology(
            size,
            lab=f"{lab_prefix}-n{size}",
            db_dc=db_dc,
            lb_dc=lb_dc,
            db=db,
            db_layout=db_layout,
            db_arbitrator=db_arbitrator,
            ports=ports() if ports else None,
            profile=profile or DEFAULT_PROFILE,
            engine=on,
        )
        cases = [c for c in listed(claims, t, gray) if not only or c.id in only]
        left_out += [f"n{size} {c.id} ({c.fault.kind})" for c in cases if not takes(t, c)]
        cases = [c for c in cases if takes(t, c)]
        plans.append((t, cases))
    unknown = sorted(set(only) - {c.id for _, cs in plans for c in cs})
    if unknown:
        raise BadInput(f"--only: no case {', '.join(unknown)} for these sizes{' on a swarm' if left_out else ''}")
    if left_out:
        log.warning(f"not run on a swarm lab yet (their fault kind): {', '.join(left_out)}")
    p = plans[0][0].profile if plans else (profile or "")
    first = plans[0][0] if plans else None
    placement = (
        {
            "db_dc": first.db_dc,
            "lb_dc": first.lb_dc,
            "db": first.db.describe(),
            **({"engine": f"swarm of host group {first.engine.hosts}"} if first.engine.swarm else {}),
            **({"not_run": ", ".join(left_out)} if left_out else {}),
        }
        if first
        else {}
    )
    run_dir = make_run_dir("matrix", runs_root)
    host = machine()
    started = time.time()
    results: list[CaseResult] = []
    checks: dict[str, Any] = {}
    log.info(f"matrix ({p} profile): {sum(len(c) for _, c in plans)} cases over {len(plans)} lab(s) -> {run_dir}")
    for t, cases in plans:
        if not cases:
            continue
        sub = run_dir / f"n{t.size}"
        sub.mkdir()
        lifecycle.up(t)
        try:
            done, verdicts = run_size(t, cases, sub, claims, seed)
        finally:
            lifecycle.save_logs(t, sub / "logs")  # a surprise's evidence outlives the lab
            try:
                lifecycle.down(t.lab)
            except LabError as e:
                # The size is measured; a leftover (e.g. a network Docker keeps an endpoint of after
                # its container is gone) must not throw its results away.
                log.warning(f"lab {t.lab} not fully removed ({e}); `halab down --name {t.lab}` later")
        results += done
        checks[f"n{t.size}"] = {
            o.name: {
                "status": o.status,
                "checked": o.checked,
                "violations": len(o.violations),
                **({"first": o.violations[0].detail} if o.violations else {}),
            }
            for o in verdicts.outcomes
        }
        r = verdicts.registers
        if r is not None:  # the watch's register client: what its history showed
            checks[f"n{t.size}"]["registers"] = {
                "ops": r.ops,
                "reads_checked": r.reads_checked,
                "anomalies": dict(r.anomalies),
                "indeterminate": dict(r.indeterminate),
            }
        _write(run_dir, _result(run_dir, started, sizes, p, claims, results, checks, host, placement))
    result = _result(run_dir, started, sizes, p, claims, results, checks, host, placement)
    _write(run_dir, result)
    return result


def claim_verdicts(claims: Claims, results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """Per claim, the three things kept apart: what the guide says, what the model predicted and
    what was observed, with the numbers of its worst case."""
    out = []
    for c in claims.claims:
        mine = [r for r in results if c.id in r.claims and r.measured]
        if not mine:
            continue
        holds = all(r.holds for r in mine)
        worst = min(
            mine, key=lambda r: (r.holds, r.measures.share if r.measures and r.measures.share is not None else -1.0)
        )
        numbers = (
            f"n{worst.size} {worst.case}: " + worst.measures.summary(worst.observed, claims.objective.after)
            if worst.measures
            else f"n{worst.size} {worst.case}: {worst.observed}"
        )
        out.append(
            {
                "id": c.id,
                "says": c.says,
                "guide": c.outcome,
                "cases": len(mine),
                "predicted": dict(Counter(r.predicted for r in mine)),
                "observed": dict(Counter(r.observed for r in mine)),
                "surprises": sum(r.surprise for r in mine),
                "holds": holds,
                "verdict": "holds" if holds else "does not hold",
                "worst": numbers,
            }
        )
    return out


def _result(
    run_dir: Path,
    started: float,
    sizes: Sequence[int],
    profile: str,
    claims: Claims,
    results: list[CaseResult],
    checks: dict[str, Any],
    machine: dict[str, Any],
    placement: dict[str, str],
) -> MatrixResult:
    return MatrixResult(
        run_dir,
        started,
        time.time(),
        tuple(sizes),
        profile,
        claims.bounds_for(profile),
        claims.objective,
        tuple(results),
        tuple(claim_verdicts(claims, results)),
        checks,
        machine,
        placement,
    )


def _write(run_dir: Path, result: MatrixResult) -> None:
    write_json(run_dir / "matrix.json", result.to_dict())
    (run_dir / "matrix.md").write_text(markdown(result))


# ---------------------------------------------------------------------------------- output

HEADERS = (
    "nodes",
    "case",
    "fault",
    "leader",
    "guide",
    "model",
    "observed",
    "success",
    "writes",
    "errors",
    "drain",
    "recover",
    "restarts",
    "healed",
    "verdict",
)


def rows(result: MatrixResult) -> list[list[str]]:
    out = []
    for c in result.cases:
        m = c.measures
        errors = ", ".join(f"{k}x{v}" for k, v in m.errors.items()) if m and m.errors else "-"
        out.append(
            [
                str(c.size),
                c.case,
                c.fault,
                c.leader,
                c.guide,
                c.predicted,
                c.observed,
                _pct(m.share if m else None),
                _pct(m.write_share if m else None),
                errors,
                _s(m.drain) if m and m.drain is not None else ("never" if m else "-"),
                _s(m.recover if m else None),
                str(sum(m.restarts.values())) if m else "-",
                _s(c.healed),
                c.verdict,
            ]
        )
    return out


def table(result: MatrixResult) -> str:
    data = [list(HEADERS), *rows(result)]
    widths = [max(len(r[i]) for r in data) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"n{c.size} {c.case}: {'; '.join(c.problems + c.safety)}" for c in result.cases if c.problems or c.safety]
    for c in result.cases:
        if c.evidence:
            lines += [f"n{c.size} {c.case}: what the nodes did (from their logs, relative to the fault):"]
            lines += [f"    {e}" for e in c.evidence]
    lines += [
        f"claim {c['id']}: the guide says {c['guide']}; model {_counts(c['predicted'])}; observed "
        f"{_counts(c['observed'])} -> {c['verdict']} (worst {c['worst']})"
        for c in result.claims
    ]
    lines += [f"checks {size}: {_checks_text(found)}" for size, found in result.checks.items()]
    lines += _gray_summary(result)
    held = sum(c["holds"] for c in result.claims)
    surprises = sum(c.surprise for c in result.cases)
    lines.append(
        f"{held}/{len(result.claims)} claims hold, {surprises} surprise(s) in {len(result.cases)} cases, "
        f"{result.profile} profile, {result.ended - result.started:.0f} s"
    )
    return "\n".join(lines)


def _gray_summary(result: MatrixResult) -> list[str]:
    gray = [c for c in result.cases if c.gray]
    if not gray:
        return []
    return [f"gray failures: {sum(c.holds for c in gray)} of {len(gray)} case(s) meet the objective"]


def _checks_text(found: dict[str, Any]) -> str:
    """`linearizable ok (2310 checked), ...`: each checker's verdict over the size's whole history."""
    text = ", ".join(
        f"{name} {c['status']} ({c['checked']} checked"
        + (f", {c['violations']} violations, e.g. {c.get('first', '?')})" if c["violations"] else ")")
        for name, c in found.items()
        if name != "registers"
    )
    r = found.get("registers")
    if r:
        anomalies = ", ".join(f"{k} {n}" for k, n in r["anomalies"].items()) or "none"
        unknown = ", ".join(f"{k} {n}" for k, n in r["indeterminate"].items()) or "none"
        text += (
            f"; registers: {r['ops']} ops, {r['reads_checked']} reads checked, anomalies: {anomalies}, "
            f"indeterminate writes: {unknown}"
        )
    return text


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))


def placement_text(placement: dict[str, str]) -> str:
    """`database in dc-a, load balancer outside the datacenters`."""
    if not placement:
        return "placement not recorded"
    lb = placement.get("lb_dc", "")
    where = "outside the datacenters" if lb in ("", OUTSIDE_LB) else f"in {lb}"
    db = placement.get("db", SINGLE)
    what = "database" if db == SINGLE else f"database {db}, its front"
    text = f"{what} in {placement.get('db_dc')}, load balancer {where}"
    if placement.get("engine"):
        text += f"; on the {placement['engine']}"
    if placement.get("not_run"):
        text += f"; not run there yet (their fault kind): {placement['not_run']}"
    return text


def markdown(result: MatrixResult) -> str:
    d = result.to_dict()
    m = result.machine
    o = result.objective
    out = [
        f"# Survivability matrix ({d['date']}, {result.profile} profile)",
        "",
        f"Machine: {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, {m.get('os')}, Docker {m.get('docker')}. "
        f"Sizes {', '.join(map(str, result.sizes))}; {placement_text(result.placement)}; "
        f"{d['seconds']:.0f} s in all. Objective: from {o.after:g} s "
        f"after the fault on, at least {100 * o.success:g} % of the client's requests succeed (survives); at "
        f"most {100 * (1 - o.success):g} % of its writes: outage; between: degraded.",
        "",
        "| claim | the guide says | guide | model | observed | verdict | worst case |",
        "|---|---|---|---|---|---|---|",
    ]
    out += [
        "| "
        + " | ".join(
            cell.replace("|", "\\|")
            for cell in (
                c["id"],
                c["says"],
                c["guide"],
                _counts(c["predicted"]),
                _counts(c["observed"]),
                c["verdict"],
                c["worst"],
            )
        )
        + " |"
        for c in result.claims
    ]  # a worst case's id may hold a | (split-dc-a|dc-b)
    out += [*(["", *_gray_summary(result)] if _gray_summary(result) else [])]
    out += ["", "Checks over each size's whole history (the watch's writes, reads and register operations):", ""]
    out += [f"- n{size.removeprefix('n')}: {_checks_text(found)}" for size, found in result.checks.items()]
    out += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows(result)]
    notes = [
        f"- n{c.size} {c.case}: {'; '.join(c.problems + c.safety)}" for c in result.cases if c.problems or c.safety
    ]
    if notes:
        out += ["", "Where the lab differed from its model's details, or the checker found a violation:", *notes]
    for c in result.cases:
        if c.evidence:
            out += ["", f"n{c.size} {c.case}: what the nodes did (from their logs, relative to the fault):", ""]
            out += ["```", *c.evidence, "```"]
    out += [
        "",
        "success, writes: share of the client's requests (writes) through the load balancer that succeeded "
        f"from {o.after:g} s after the fault on; errors: failed requests by kind while the fault held; drain: "
        "fault -> every failed or cut-off node out of the load balancer (never: it kept sending to one); "
        "recover: fault -> writes succeed again for good; restarts: API server restarts; healed: heal -> "
        "every node active and the client succeeding. model: what quorum arithmetic, the database's "
        "placement and the node profile predict; a case whose observation differs is a surprise.",
    ]
    return "\n".join(out) + "\n"


def require_pass(result: MatrixResult) -> None:
    """Exit 3 when a claim does not hold; exit 4 when every claim holds but the lab surprised its model,
    or a case could not be measured in either attempt."""
    bad = [c["id"] for c in result.claims if not c["holds"]]
    if bad:
        raise CheckFailed(
            f"{len(bad)} claim(s) of the guide do not hold on this lab: {', '.join(bad)}; "
            f"see {result.run_dir / 'matrix.md'}"
        )
    surprises = [f"n{c.size} {c.case}" for c in result.cases if c.surprise]
    if result.unmeasured:
        raise Surprise(
            f"{len(result.unmeasured)} case(s) could not be measured: the observer stalled in each attempt "
            f"({', '.join(result.unmeasured)}); see {result.run_dir / 'matrix.md'}"
        )
    if surprises:
        raise Surprise(
            f"every claim holds, but {len(surprises)} case(s) did what the lab's model did not predict: "
            f"{', '.join(surprises)}; see {result.run_dir / 'matrix.md'}"
        )


class Surprise(CheckFailed):
    """The lab did something its model did not predict (exit 4)."""

    exit_code = EXIT_SURPRISE
