"""`halab matrix`: every case of the install guide's claims, on real labs, one lab per size.

For each case: wait for steady state, resolve the fault's roles (leader, follower), compute the
expected outcome (lab.claims.expect), apply the fault (verified), observe through the load
balancer until the outcome is decided, heal, and wait for steady state again. A Watch (lab/watch.py)
records probes and client requests for the whole size into one history; after the last case the
checker (lab/checker.py) proves from it and the database that no acknowledged write was lost and
that no fenced node acknowledged one, and its violations are charged to the case they fell in.

Deciding a case (the bounds come from claims.yaml; docs/survivability.md has the definition):
- no decision before `settle` seconds: every consequence of a lost member shows within the
  ZooKeeper session timeout;
- from then on, decided as soon as the lab shows exactly what was expected: the expected nodes
  active, the others out (LB drained and /ping not 200, cut-off nodes answering 503), and the
  client's requests all succeeding for `stable` seconds (survives) or all failing for `outage`
  seconds (outage);
- otherwise decided at `decide` seconds on what the lab shows then: client requests all
  succeeding (survives), all failing with every node out (outage), or neither (unsettled); any
  difference from the expectation is a contradiction. Slow convergence costs time, never a
  false contradiction, and a real contradiction is never decided before the bound.

Figures per case: time to detect (fault -> the load balancer has drained every node that should be
out; it drains on /ping, so for a node cut off this includes the node fencing itself); time to
recover (survives: fault -> writes succeed again for good, 0 when none failed; outage: heal ->
first successful write); time to heal (heal -> every node active and the client succeeding).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from lab.chaos import claims as claims_mod
from lab.cluster import lifecycle
from lab.chaos.judge import judge, lab_query
from lab.record.checker import CheckResult
from lab.chaos.claims import OUTAGE, SURVIVES, Bounds, Case, Claims, Expectation
from lab.core.errors import BadInput, CheckFailed, LabError
from lab.faults import Injector, roles
from lab.record.history import HISTORY_FILE, write_json
from lab.record.load import make_run_dir
from lab.cluster.topology import Ports, Topology, make_topology
from lab.chaos.watch import Watch, snapshot, wait_steady

UNSETTLED = "unsettled"
Say = Callable[[str], None]


@dataclass(frozen=True)
class CaseResult:
    size: int
    case: str
    claims: tuple[str, ...]
    fault: str  # resolved, e.g. "kill a1 (leader)"
    expected: str
    observed: str  # survives, outage, unsettled, error
    expected_active: tuple[str, ...]
    observed_active: tuple[str, ...]
    detect: float | None
    recover: float | None
    healed: float | None
    t0: float | None
    t_heal: float | None
    t_end: float
    problems: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return "confirmed" if not self.problems else "contradicted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class MatrixResult:
    run_dir: Path
    started: float
    ended: float
    sizes: tuple[int, ...]
    bounds: Bounds
    cases: tuple[CaseResult, ...]
    claims: tuple[dict[str, Any], ...]
    checks: dict[str, Any] = field(default_factory=dict)  # size -> checker outcomes
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.verdict == "confirmed" for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "machine": self.machine,
            "sizes": list(self.sizes),
            "seconds": round(self.ended - self.started, 1),
            "passed": self.passed,
            "bounds": asdict(self.bounds),
            "claims": list(self.claims),
            "cases": [c.to_dict() for c in self.cases],
            "checks": self.checks,
        }


# --------------------------------------------------------------------------------- one case

@dataclass(frozen=True)
class Observation:
    outcome: str
    t: float
    active: frozenset[str]
    pings: dict[str, int | None]


def observe(w: Watch, exp: Expectation, t0: float, b: Bounds) -> Observation:
    """Watch the lab after a fault until its outcome is decided (see the module docstring)."""
    while True:
        now = time.time()
        s = snapshot(w, t0, b.stable, now)
        o = snapshot(w, t0, b.outage, now)
        elapsed = now - t0
        fenced_ok = all(s.pings.get(n) == 503 for n in exp.fenced)
        serving = s.client_ok and bool(s.active)
        down = o.client_failing and not s.active
        as_expected = (s.settled and s.active == exp.active and fenced_ok
                       and (serving if exp.outcome == SURVIVES else down))
        if elapsed >= b.settle and as_expected:
            return Observation(exp.outcome, now, s.active, s.pings)
        if elapsed >= b.decide:
            return Observation(SURVIVES if serving else OUTAGE if down else UNSETTLED, now, s.active, s.pings)
        time.sleep(0.1)


def run_case(t: Topology, case: Case, w: Watch, inj: Injector, b: Bounds, say: Say) -> CaseResult:
    base = dict(size=t.size, case=case.id, claims=case.claims)
    if wait_steady(w, b.heal, b.stable) is None:
        return CaseResult(**base, fault=case.fault.describe(), expected="?", observed="error", expected_active=(),
                          observed_active=(), detect=None, recover=None, healed=None, t0=None, t_heal=None,
                          t_end=time.time(), problems=(f"the lab was not steady within {b.heal:g} s before the case",))
    modes = roles(t)
    spec = inj.resolve(case.fault, where=case.id)
    exp = claims_mod.expect(t, [spec])
    tags = [f"{n} ({modes[n]})" if modes.get(n) in ("leader", "standalone") else n for n in spec.targets]
    fault_text = f"{spec.kind} {' '.join(tags)}" if spec.targets else spec.describe()
    say(f"n{t.size} {case.id}: {fault_text}; expected {exp.outcome}, active {sorted(exp.active) or 'none'}")
    fault = inj.apply(spec, where=case.id)
    try:
        obs = observe(w, exp, fault.t0, b)
    finally:
        record = inj.heal(fault)
    t_heal = record.t1 if record else time.time()
    back = wait_steady(w, b.heal, b.stable, since=t_heal)
    outs = [w.first_drained(n, fault.t0) for n in sorted(exp.out)]
    detect = None if None in outs else max((x - fault.t0 for x in outs if x is not None), default=0.0)
    if obs.outcome == SURVIVES:
        recover = w.writes_resumed(fault.t0, obs.t)
    else:
        first = w.first_write_ok(t_heal)
        recover = None if first is None else max(0.0, first - t_heal)
    problems = []
    if obs.outcome != exp.outcome:
        problems.append(f"expected {exp.outcome}, observed {obs.outcome}")
    if obs.active != exp.active:
        problems.append(f"active {sorted(obs.active) or 'none'}, quorum arithmetic says {sorted(exp.active) or 'none'}")
    wrong_fence = [f"{n} /ping {obs.pings.get(n)}" for n in sorted(exp.fenced) if obs.pings.get(n) != 503]
    if wrong_fence:
        problems.append(f"cut-off nodes should fence themselves with 503: {', '.join(wrong_fence)}")
    if detect is None or detect > b.fence:
        problems.append(f"not every failed or cut-off node was drained by the load balancer within {b.fence:g} s")
    if back is None:
        problems.append(f"not every node active (with writes succeeding) within {b.heal:g} s after heal")
    result = CaseResult(**base, fault=fault_text, expected=exp.outcome, observed=obs.outcome,
                        expected_active=tuple(sorted(exp.active)), observed_active=tuple(sorted(obs.active)),
                        detect=detect, recover=recover, healed=None if back is None else back - t_heal,
                        t0=fault.t0, t_heal=t_heal, t_end=time.time(), problems=tuple(problems))
    say(f"n{t.size} {case.id}: observed {obs.outcome}; detect {_s(detect)}, recover {_s(recover)}, "
        f"healed {_s(result.healed)} -> {result.verdict}" + (f" ({'; '.join(problems)})" if problems else ""))
    return result


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


# --------------------------------------------------------------------------------- one size

def run_size(t: Topology, cases: Sequence[Case], run_dir: Path, b: Bounds, say: Say, seed: int = 0
             ) -> tuple[list[CaseResult], CheckResult]:
    """Every case on one running lab; then the checker over the whole history and the database."""
    results: list[CaseResult] = []
    with Watch(t, run_dir) as w, Injector(t, history=run_dir / HISTORY_FILE, seed=seed, say=say) as inj:
        for case in cases:
            try:
                results.append(run_case(t, case, w, inj, b, say))
            except LabError as exc:  # a fault that could not be applied or verified: this case failed
                say(f"n{t.size} {case.id}: error: {exc}")
                results.append(CaseResult(t.size, case.id, case.claims, case.fault.describe(), "?", "error", (), (),
                                          None, None, None, None, None, time.time(), (str(exc),)))
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
        out.append(r if not extra else CaseResult(**{**asdict(r), "problems": r.problems + tuple(extra)}))
    return out


# ---------------------------------------------------------------------------------- matrix

def run_matrix(sizes: Sequence[int], *, claims_path: str | Path = claims_mod.DEFAULT_CLAIMS,
               runs_root: str | Path = "runs", lab_prefix: str = "matrix", db_dc: str | None = None,
               only: Sequence[str] = (), ports: Callable[[], Ports] | None = None, seed: int = 0,
               say: Say = lifecycle.quiet) -> MatrixResult:
    """Run the matrix; write matrix.json and matrix.md into a fresh run directory; return the result."""
    from lab.capacity.sweep import machine

    claims = claims_mod.load(claims_path)
    plans = []
    for size in sizes:
        t = make_topology(size, lab=f"{lab_prefix}-n{size}", db_dc=db_dc, ports=ports() if ports else None)
        cases = [c for c in claims_mod.cases(claims, t) if not only or c.id in only]
        plans.append((t, cases))
    unknown = sorted(set(only) - {c.id for _, cs in plans for c in cs})
    if unknown:
        raise BadInput(f"--only: no case {', '.join(unknown)} for these sizes")
    run_dir = make_run_dir("matrix", runs_root)
    host = machine()
    started = time.time()
    results: list[CaseResult] = []
    checks: dict[str, Any] = {}
    say(f"matrix: {sum(len(c) for _, c in plans)} cases over {len(plans)} lab(s) -> {run_dir}")
    for t, cases in plans:
        if not cases:
            continue
        sub = run_dir / f"n{t.size}"
        sub.mkdir()
        lifecycle.up(t, say)
        try:
            done, verdicts = run_size(t, cases, sub, claims.bounds, say, seed)
        finally:
            lifecycle.down(t.lab)
        results += done
        checks[f"n{t.size}"] = {o.name: {"status": o.status, "checked": o.checked, "violations": len(o.violations)}
                                for o in verdicts.outcomes}
        _write(run_dir, _result(run_dir, started, sizes, claims, results, checks, host))
    result = _result(run_dir, started, sizes, claims, results, checks, host)
    _write(run_dir, result)
    return result


def _result(run_dir: Path, started: float, sizes: Sequence[int], claims: Claims, results: list[CaseResult],
            checks: dict[str, Any], machine: dict[str, Any]) -> MatrixResult:
    per_claim = []
    for c in claims.claims:
        mine = [r for r in results if c.id in r.claims]
        if mine:
            ok = all(r.verdict == "confirmed" for r in mine)
            per_claim.append({"id": c.id, "says": c.says, "cases": len(mine),
                              "verdict": "confirmed" if ok else "contradicted"})
    return MatrixResult(run_dir, started, time.time(), tuple(sizes), claims.bounds, tuple(results), tuple(per_claim),
                        checks, machine)


def _write(run_dir: Path, result: MatrixResult) -> None:
    write_json(run_dir / "matrix.json", result.to_dict())
    (run_dir / "matrix.md").write_text(markdown(result))


# ---------------------------------------------------------------------------------- output

HEADERS = ("nodes", "case", "fault", "expected", "observed", "detect", "recover", "healed", "verdict")


def rows(result: MatrixResult) -> list[list[str]]:
    return [[str(c.size), c.case, c.fault, c.expected, c.observed, _s(c.detect),
             _s(c.recover) + (" after heal" if c.observed == OUTAGE and c.recover is not None else ""),
             _s(c.healed), c.verdict] for c in result.cases]


def table(result: MatrixResult) -> str:
    data = [list(HEADERS)] + rows(result)
    widths = [max(len(r[i]) for r in data) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    bad = [c for c in result.cases if c.problems]
    lines += [f"n{c.size} {c.case}: {'; '.join(c.problems)}" for c in bad]
    lines.append(f"{len(result.cases) - len(bad)}/{len(result.cases)} cases confirmed in "
                 f"{result.ended - result.started:.0f} s")
    return "\n".join(lines)


def markdown(result: MatrixResult) -> str:
    d = result.to_dict()
    m = result.machine
    out = [f"# Survivability matrix ({d['date']})", "",
           f"Machine: {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, {m.get('os')}, Docker {m.get('docker')}. "
           f"Sizes {', '.join(map(str, result.sizes))}; {d['seconds']:.0f} s in all.", "",
           "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows(result)]
    out += ["", "| claim | the guide says | cases | verdict |", "|---|---|---|---|"]
    out += [f"| {c['id']} | {c['says']} | {c['cases']} | {c['verdict']} |" for c in result.claims]
    problems = [f"- n{c.size} {c.case}: {'; '.join(c.problems)}" for c in result.cases if c.problems]
    if problems:
        out += ["", "Contradictions:", *problems]
    out += ["", "detect: fault -> every failed or cut-off node drained by the load balancer (which checks /ping); "
            "recover: fault -> writes through the load balancer succeed again (0 = never interrupted), or heal -> "
            "first successful write for an outage; healed: heal -> every node active and the client succeeding."]
    return "\n".join(out) + "\n"


def require_pass(result: MatrixResult) -> None:
    bad = [f"n{c.size} {c.case}" for c in result.cases if c.verdict != "confirmed"]
    if bad:
        raise CheckFailed(f"the matrix contradicts the claims in {len(bad)} case(s): {', '.join(bad)}; "
                          f"see {result.run_dir / 'matrix.md'}")
