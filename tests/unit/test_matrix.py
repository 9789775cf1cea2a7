"""The matrix's measures, decisions and outputs without Docker: a Watch filled by hand stands for the
lab, hand-made RequestRecords for the client and hand-made CaseResults for a run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.chaos import matrix
from lab.chaos.claims import Bounds, Claim, Claims, Expectation, Objective
from lab.chaos.watch import LbSample, Watch
from lab.cluster.topology import make_topology
from lab.core.errors import CheckFailed
from lab.record.checker import CheckResult, Outcome, Violation
from lab.record.history import ProbeRecord, RequestRecord

T3 = make_topology(3)
BOUNDS = Bounds(settle=4, stable=1, outage=2, fence=10, decide=20, heal=60)
OBJ = Objective(after=10, success=0.99, window=5)
SURVIVE = Expectation(frozenset({"a1", "a2"}), frozenset({"b1"}), frozenset())  # b1 cut off
DB_DOWN = Expectation(frozenset(), frozenset({"a1", "a2", "b1"}), frozenset())
FENCED = {"a1": 200, "a2": 200, "b1": 503}, {"a1": "UP", "a2": "UP", "b1": "DOWN"}


# ------------------------------------------------------------------------------- measuring


def req(
    t0: float, ok: bool = True, write: bool = False, status: int | None = None, error: str | None = None
) -> RequestRecord:
    status = (201 if write else 200) if ok else (503 if status is None and error is None else status or 0)
    return RequestRecord(
        t0,
        t0 + 0.05,
        "POST" if write else "GET",
        "/v1/projects" if write else "/v1/projects/[id]",
        status,
        ok,
        error=error,
        write=write,
    )


@pytest.mark.parametrize(
    "record,kind",
    [
        (req(0.0), None),
        (req(0.0, write=True), None),
        (req(0.0, False, status=409), "409"),
        (req(0.0, False, True, status=500), "500"),
        (req(0.0, False, status=503), "503"),
        (req(0.0, False, error="TimeoutError: timed out"), "timeout"),
        (req(0.0, False, error="socket.timeout: read timeout"), "timeout"),
        (req(0.0, False, error="ConnectionRefusedError: [Errno 111] Connection refused"), "refused"),
        (req(0.0, False, error="ConnectionResetError: [Errno 104] Connection reset by peer"), "reset"),
        (req(0.0, False, error="RemoteDisconnected: Remote end closed connection without response"), "connection"),
        (req(0.0, False, error=None, status=0), "connection"),
    ],
)
def test_error_kind(record, kind):
    assert matrix.error_kind(record) == kind


def late_requests(n: int, failed_reads: int = 0, failed_writes: int = 0, writes: int = 0) -> list[RequestRecord]:
    """`n` requests 0.1 s apart from 10 s after a fault at 1000 on (the objective's window), the
    first `writes` of them writes."""
    out = []
    for i in range(n):
        write = i < writes
        ok = not (i < failed_writes if write else i - writes < failed_reads)
        out.append(req(1010.0 + 0.1 * i, ok, write))
    return out


def outcome(reqs: list[RequestRecord], t_end: float = 1025.0) -> tuple[str, matrix.Measures]:
    m = matrix.measure(reqs, 1000.0, t_end, OBJ.after, None, None, {})
    return matrix.outcome_of(m, OBJ), m


def test_99_percent_of_requests_is_survival():
    o, m = outcome(late_requests(100, failed_reads=1, writes=50))
    assert (o, m.share, m.write_share, m.requests) == ("survives", 0.99, 1.0, 100)
    o, m = outcome(late_requests(100, failed_writes=1, writes=50))
    assert (o, m.share, m.write_share) == ("survives", 0.99, 0.98)


def test_between_the_objective_and_an_outage_is_degraded():
    o, m = outcome(late_requests(100, failed_reads=2, writes=50))
    assert (o, m.share) == ("degraded", 0.98)
    o, m = outcome(late_requests(100, failed_reads=30, failed_writes=30, writes=50))
    assert (o, m.share, m.write_share) == ("degraded", 0.4, 0.4)


def test_writes_failing_is_an_outage_even_when_reads_succeed():
    o, m = outcome(late_requests(100, failed_writes=50, writes=50))
    assert (o, m.share, m.write_share) == ("outage", 0.5, 0.0)
    o, m = outcome(late_requests(200, failed_writes=99, writes=100))  # 1 % of the writes: still an outage
    assert (o, m.write_share) == ("outage", 0.01)
    o, m = outcome(late_requests(200, failed_writes=98, writes=100))
    assert (o, m.write_share) == ("degraded", 0.02)


def test_reads_alone_are_judged_by_their_share():
    o, m = outcome(late_requests(10))
    assert (o, m.write_share) == ("survives", None)
    o, m = outcome(late_requests(10, failed_reads=10))
    assert (o, m.write_share) == ("degraded", None)  # no write measured: not an outage by the writes' rule


def test_nothing_measured_from_after_on_is_an_error():
    o, m = outcome([req(1001.0), req(1002.0, False)])
    assert (o, m.share, m.write_share, m.requests) == ("error", None, None, 2)


def test_only_requests_from_after_on_decide_but_every_one_during_the_fault_is_counted():
    early = [req(1000.0 + 0.1 * i, False, i % 2 == 0, status=500) for i in range(50)]  # the first 5 s fail
    outside = [req(999.0, False, status=409), req(1030.0, False, status=409)]
    o, m = outcome(early + late_requests(20, writes=10) + outside)
    assert (o, m.share, m.write_share, m.requests) == ("survives", 1.0, 1.0, 70)
    assert m.errors == {"500": 50}


def test_a_write_in_flight_at_the_decision_is_not_counted():
    """rancher-1.0, database split: every write failed for 50 s but one, started 1 s before the
    decision, which waited on the cut database and succeeded just after the heal."""
    failed = [req(1010.0 + i, False, True, status=500) for i in range(20)]
    straddling = RequestRecord(1049.3, 1050.4, "POST", "/v1/projects", 201, True, write=True)
    o, m = outcome([*failed, straddling], t_end=1050.0)
    assert (o, m.write_share, m.requests) == ("outage", 0.0, 20)
    w = Watch(T3)
    w.requests = [*failed, straddling]
    assert w.writes_resumed(1000.0, 1050.0) is None


def test_errors_by_kind_and_per_second_shares():
    reqs = [
        req(0.1),
        req(0.2, False, status=409),
        req(0.3, False, True, status=500),
        req(0.4, write=True),
        req(2.0, False, error="timed out"),
        req(2.5, False, error="Connection refused"),
        req(2.6, False, status=503),
        req(2.7),
        req(2.8),
    ]
    m = matrix.measure(reqs, 0.0, 3.5, 1.0, 2.5, 3.0, {"a1": 2})
    assert m.per_second == (0.5, None, 0.4, None)  # seconds 0, 1 (no request), 2 and the part of 3
    assert m.errors == {"409": 1, "500": 1, "503": 1, "refused": 1, "timeout": 1}
    assert list(m.errors) == sorted(m.errors)
    assert (m.share, m.write_share, m.requests) == (0.4, None, 9)
    assert (m.drain, m.recover, m.restarts) == (2.5, 3.0, {"a1": 2})
    assert matrix.measure([], 0.0, 0.3, 1.0, None, None, {}).per_second == (None,)  # at least one second


def test_measures_summary():
    m = matrix.Measures(0.64, 0.3, 80, (1.0, 0.5), {"500": 3}, None, 31.24, {"a1": 1, "b1": 1})
    assert m.summary("degraded", 10) == (
        "degraded: 64 % success (writes 30 %) from 10 s on; writes back after 31.2 s; 2 server restart(s)"
    )
    m = matrix.Measures(0.0, 0.0, 80, (0.0,), {"503": 80}, 3.0, None, {})
    assert m.summary("outage", 5) == "outage: 0 % success (writes 0 %) from 5 s on; writes never back"
    m = matrix.Measures(None, None, 0, (None,), {}, None, 0.0, {})
    assert m.summary("error", 10) == "error: no request measured from 10 s on"


# ------------------------------------------------------------------------------- observing


def watch(pings: dict[str, int | None], lb: dict[str, str], client_ok: bool, now: float) -> Watch:
    """A watch whose recent records show `pings`, `lb` and a client succeeding or failing."""
    w = Watch(T3)
    for n, ping in pings.items():
        w.probes[n] = [ProbeRecord(now - 0.5, now - 0.45, n, ping, "active" if ping == 200 else "degraded")]
    w.lb = [LbSample(now - 0.1, dict(lb))]
    w.requests = [
        RequestRecord(
            now - 2.5 + 0.25 * i,
            now - 2.4 + 0.25 * i,
            "POST",
            "/v1/projects",
            201 if client_ok else 503,
            client_ok,
            write=True,
        )
        for i in range(10)
    ]
    return w


def lab(pings: dict[str, int | None], lb: dict[str, str], client_ok: bool | None, t0: float) -> Watch:
    """A watch that shows the same lab from 0.5 s after a fault at `t0` on, with a client request
    every 0.25 s for a minute (None: every other one fails)."""
    w = Watch(T3)
    for n, ping in pings.items():
        w.probes[n] = [ProbeRecord(t0 + 0.5, t0 + 0.55, n, ping, "active" if ping == 200 else "degraded")]
    w.lb = [LbSample(t0 + 0.5, dict(lb))]
    w.requests = [
        RequestRecord(t0 + 0.25 * i, t0 + 0.25 * i + 0.1, "POST", "/v1/projects", 201 if ok else 503, ok, write=True)
        for i in range(240)
        for ok in [client_ok if client_ok is not None else i % 2 == 0]
    ]
    return w


class Clock:
    """time.time and time.sleep for observe: sleeping moves the clock, nothing waits."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(1000.0)
    monkeypatch.setattr(matrix, "time", SimpleNamespace(time=c.time, sleep=c.sleep))
    return c


T0 = 1000.0


def observed_at(
    clock: Clock,
    w: Watch,
    exp: Expectation,
    predicted: str,
    fences: bool,
    b: Bounds = BOUNDS,
    objective: Objective = OBJ,
) -> tuple[float, matrix.Observation]:
    """Seconds after the fault (at T0, the clock starting there too) when the case was decided."""
    clock.now = T0
    obs = matrix.observe(w, exp, predicted, T0, b, objective, fences)
    return obs.t - T0, obs


def test_a_fencing_profile_decides_once_the_lab_shows_the_expectation_after_the_objective_window(clock):
    at, obs = observed_at(clock, lab(*FENCED, True, T0), SURVIVE, "survives", fences=True)
    assert at == pytest.approx(15, abs=0.11)  # max(settle 4, after 10 + window 5)
    assert obs.active == {"a1", "a2"} and obs.pings == {"a1": 200, "a2": 200, "b1": 503}


def test_a_long_settle_delays_the_early_decision(clock):
    at, _ = observed_at(clock, lab(*FENCED, True, T0), SURVIVE, "survives", True, b=Bounds(settle=18, decide=20))
    assert at == pytest.approx(18, abs=0.11)
    at, _ = observed_at(
        clock, lab(*FENCED, True, T0), SURVIVE, "survives", True, objective=Objective(after=1, success=0.99, window=1)
    )
    assert at == pytest.approx(4, abs=0.11)  # settle


def test_a_non_fencing_profile_waits_until_decide(clock):
    at, obs = observed_at(clock, lab(*FENCED, True, T0), SURVIVE, "survives", fences=False)
    assert at == pytest.approx(20, abs=0.11) and obs.active == {"a1", "a2"}


def test_a_profile_that_fences_waits_until_decide_when_the_lab_does_not_show_the_expectation(clock):
    # b1 cut off but still pong and UP: not what the model expects of a fencing node
    at, obs = observed_at(
        clock,
        lab({"a1": 200, "a2": 200, "b1": 200}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True, T0),
        SURVIVE,
        "survives",
        fences=True,
    )
    assert at == pytest.approx(20, abs=0.11) and obs.active == {"a1", "a2", "b1"}


@pytest.mark.parametrize(
    "pings,lb,client_ok",
    [
        ({"a1": 200, "a2": 200, "b1": 503}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True),  # b1 not drained: unsettled
        ({"a1": 200, "a2": 200, "b1": None}, {"a1": "UP", "a2": "UP", "b1": "DOWN"}, True),  # no 503 from b1
        ({"a1": 200, "a2": 200, "b1": 503}, {"a1": "UP", "a2": "UP", "b1": "DOWN"}, None),  # client partly failing
        ({"a1": 200, "a2": 503, "b1": 503}, {"a1": "UP", "a2": "DOWN", "b1": "DOWN"}, True),  # fewer active
    ],
)
def test_anything_short_of_the_expectation_is_decided_at_decide(clock, pings, lb, client_ok):
    at, _ = observed_at(clock, lab(pings, lb, client_ok, T0), SURVIVE, "survives", fences=True)
    assert at == pytest.approx(20, abs=0.11)


def test_an_expected_outage_is_decided_early_when_every_node_is_out_and_the_client_fails(clock):
    out = {n: 503 for n in T3.node_names}, {n: "DOWN" for n in T3.node_names}
    at, obs = observed_at(clock, lab(*out, False, T0), DB_DOWN, "outage", fences=True)
    assert at == pytest.approx(15, abs=0.11) and obs.active == frozenset()
    # survival was predicted: the same lab is only observed at decide
    at, _ = observed_at(clock, lab(*out, False, T0), SURVIVE, "survives", fences=True)
    assert at == pytest.approx(20, abs=0.11)
    # an outage was predicted but the client still succeeds: at decide too
    at, _ = observed_at(clock, lab(*out, True, T0), DB_DOWN, "outage", fences=True)
    assert at == pytest.approx(20, abs=0.11)


def test_a_degraded_prediction_is_observed_at_decide(clock):
    at, _ = observed_at(clock, lab(*FENCED, True, T0), SURVIVE, "degraded", fences=True)
    assert at == pytest.approx(20, abs=0.11)


def test_on_the_real_clock_a_past_fault_is_decided_at_once():
    now = time.time()
    obs = matrix.observe(watch(*FENCED, True, now), SURVIVE, "survives", now - 16, BOUNDS, OBJ, fences=True)
    assert obs.active == {"a1", "a2"} and obs.t - now < 1
    w = watch({"a1": 200, "a2": 200, "b1": 200}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True, now)
    obs = matrix.observe(w, SURVIVE, "degraded", now - 21, BOUNDS, OBJ, fences=False)
    assert obs.active == {"a1", "a2", "b1"} and obs.pings["b1"] == 200 and obs.t - now < 1


@pytest.mark.parametrize(
    "modes,whole",
    [
        (("leader", "follower", "follower"), True),
        (("follower", "leader", "not serving"), False),  # active through another member, its own still syncing
        (("leader", "leader", "follower"), False),
        (("follower", "follower", None), False),
    ],
)
def test_steady_state_needs_the_whole_ensemble(modes, whole):
    from lab.chaos.watch import snapshot

    now = time.time()
    w = watch({"a1": 200, "a2": 200, "b1": 200}, {"a1": "UP", "a2": "UP", "b1": "UP"}, True, now)
    for (n, recs), mode in zip(w.probes.items(), modes, strict=True):
        recs[0] = ProbeRecord(recs[0].t0, recs[0].t1, n, 200, "active", mode)
    assert snapshot(w, now - 1, 1.0, now - 0.3).steady is whole


# ------------------------------------------------------------------------------- verdicts


def measures(
    share: float | None = 1.0,
    write_share: float | None = None,
    restarts: dict[str, int] | None = None,
    errors: dict[str, int] | None = None,
    drain: float | None = 1.5,
    recover: float | None = 0.0,
) -> matrix.Measures:
    return matrix.Measures(
        share,
        share if write_share is None else write_share,
        100,
        (share,),
        errors or {},
        drain,
        recover,
        restarts or {},
    )


def case(
    name: str,
    *,
    guide: str = "survives",
    predicted: str = "survives",
    observed: str = "survives",
    share: float | None = 1.0,
    claims: tuple[str, ...] = ("c",),
    problems: tuple[str, ...] = (),
    safety: tuple[str, ...] = (),
    t0: float = 1.0,
    t_end: float = 2.0,
    m: matrix.Measures | str | None = "by share",
    size: int = 3,
) -> matrix.CaseResult:
    return matrix.CaseResult(
        size,
        name,
        claims,
        f"kill {name}",
        "a1",
        guide,
        predicted,
        "because",
        observed,
        measures(share) if isinstance(m, str) else m,
        ("a2", "b1"),
        ("a2", "b1"),
        0.5,
        t0,
        t0 + 5,
        t_end,
        problems,
        safety,
    )


@pytest.mark.parametrize(
    "guide,predicted,observed,problems,safety,verdict",
    [
        ("survives", "survives", "survives", (), (), "holds"),
        ("outage", "outage", "outage", (), (), "holds"),
        ("survives", "degraded", "degraded", (), (), "does not hold"),  # the model knew: not a surprise
        ("survives", "degraded", "survives", (), (), "holds, surprise"),
        ("survives", "survives", "degraded", (), (), "does not hold, surprise"),
        ("survives", "survives", "survives", ("b1 /ping 200",), (), "holds, surprise"),
        ("survives", "survives", "survives", (), ("acknowledged_writes_present: 1",), "does not hold, surprise"),
        ("survives", "?", "error", ("placement failed",), (), "does not hold, surprise"),
    ],
)
def test_a_case_keeps_guide_model_and_observation_apart(guide, predicted, observed, problems, safety, verdict):
    r = case("x", guide=guide, predicted=predicted, observed=observed, problems=problems, safety=safety)
    assert r.verdict == verdict
    assert r.holds == verdict.startswith("holds") and r.surprise == verdict.endswith("surprise")
    d = r.to_dict()
    assert (d["holds"], d["surprise"], d["verdict"]) == (r.holds, r.surprise, verdict)
    assert d["measures"]["share"] == 1.0 and json.loads(json.dumps(d))["verdict"] == verdict


@pytest.mark.parametrize(
    "observed,problems,safety,verdict",
    [
        ("survives", (), (), "meets the objective"),
        ("degraded", (), (), "misses the objective"),  # nothing was predicted: no surprise
        ("outage", (), (), "misses the objective"),
        ("survives", (), ("acknowledged_writes_present: 1",), "misses the objective, surprise"),
        ("degraded", ("not every node active within 150 s after heal",), (), "misses the objective, surprise"),
    ],
)
def test_a_gray_case_is_measured_against_the_objective_only(observed, problems, safety, verdict):
    r = case("delay", guide="none", predicted="none", observed=observed, claims=(), problems=problems, safety=safety)
    assert r.gray and r.verdict == verdict
    result = matrix.MatrixResult(
        Path("/tmp/x"), 0.0, 10.0, (3,), "tuned", Bounds(), Objective(), (r,), tuple(matrix.claim_verdicts(CLAIMS, [r]))
    )
    assert result.claims == () and result.holds  # no claim is judged by a gray case
    assert f"gray failures: {int(r.holds)} of 1 case(s) meet the objective" in matrix.table(result)


def test_violations_are_charged_to_the_case_they_fell_in_as_safety():
    results = [case("one", t_end=120.0), case("two", t_end=140.0), case("three", t_end=160.0)]
    verdicts = CheckResult(
        outcomes=(
            Outcome(
                "acknowledged_writes_present",
                "failed",
                5,
                (
                    Violation("u", 130.0, "project acknowledged, no row"),
                    Violation("v", 131.0, "another"),
                    Violation("w", None, "when unknown"),
                ),
            ),
            Outcome("no_writes_acknowledged_by_fenced_nodes", "failed", 5, (Violation("x", 120.0, "by b1"),)),
            Outcome("no_stuck_processes", "failed", 5, (Violation("p", 110.0, "stuck"),)),
        ),
        faults=(),
        seconds=(),
        requests=0,
        failed=0,
        failed_idempotent=0,
        acks=0,
    )
    out = matrix._charge(results, verdicts)
    assert out[0].safety == ("no_writes_acknowledged_by_fenced_nodes: 1 violation(s), e.g. by b1",)  # t <= t_end
    assert out[1].safety == ("acknowledged_writes_present: 2 violation(s), e.g. project acknowledged, no row",)
    assert out[2] == results[2]  # neither the stuck process nor the untimed violation is charged
    assert [r.verdict for r in out] == ["does not hold, surprise", "does not hold, surprise", "holds"]
    assert out[1].problems == () and out[1].observed == "survives"


CLAIMS = Claims(
    "g.md",
    BOUNDS,
    (
        Claim("c", "3 Nodes: Any one host can fail", (3,), 1, (), "survives"),
        Claim(
            "d",
            "For true HA, a replicated MySQL database with proper backups is recommended.",
            (3,),
            None,
            (),
            "outage",
        ),
        Claim("e", "unused here", (5,), 2, (), "survives"),
    ),
    OBJ,
)


def run(tmp_path: Path, cases: tuple[matrix.CaseResult, ...], profile: str = "rancher-1.0") -> matrix.MatrixResult:
    return matrix.MatrixResult(
        tmp_path,
        0.0,
        42.0,
        (3,),
        profile,
        BOUNDS,
        OBJ,
        cases,
        tuple(matrix.claim_verdicts(CLAIMS, cases)),
        {"n3": {}},
        machine={"cpus": 2, "memory_gib": 4, "os": "Linux", "docker": "27.0"},
        placement={"db_dc": "dc-b", "lb_dc": "outside"},
    )


def mixed() -> tuple[matrix.CaseResult, ...]:
    return (
        case("kill-follower"),
        case(
            "split-dc-a|dc-b@leader-minority",
            predicted="degraded",
            observed="degraded",
            m=measures(0.64, 0.3, {"b1": 2}, {"409": 1, "500": 7}, drain=None, recover=31.2),
        ),
        case(
            "kill-db",
            claims=("d",),
            guide="outage",
            predicted="outage",
            observed="outage",
            m=measures(0.0, errors={"503": 90}, drain=2.0, recover=None),
        ),
    )


def test_claim_verdicts_keep_the_three_apart_and_name_the_worst_case():
    v = {c["id"]: c for c in matrix.claim_verdicts(CLAIMS, mixed())}
    assert set(v) == {"c", "d"}  # a claim without cases on these sizes is left out
    c = v["c"]
    assert (c["guide"], c["cases"], c["holds"], c["verdict"], c["surprises"]) == (
        "survives",
        2,
        False,
        "does not hold",
        0,
    )
    assert c["predicted"] == {"survives": 1, "degraded": 1} and c["observed"] == {"survives": 1, "degraded": 1}
    assert c["worst"] == (
        "n3 split-dc-a|dc-b@leader-minority: degraded: 64 % success (writes 30 %) from 10 s "
        "on; writes back after 31.2 s; 2 server restart(s)"
    )
    d = v["d"]
    assert (d["guide"], d["holds"], d["verdict"], d["observed"]) == ("outage", True, "holds", {"outage": 1})
    assert d["says"].startswith("For true HA")


def test_the_worst_case_is_one_that_does_not_hold_even_with_a_better_share():
    cases = (
        case("a", share=0.5, observed="degraded", guide="degraded", predicted="degraded"),
        case("b", share=0.9, observed="degraded"),
        case("c", m=None, observed="error", predicted="?"),
    )
    v = matrix.claim_verdicts(CLAIMS, cases)[0]
    assert v["worst"] == "n3 c: error" and v["surprises"] == 2 and not v["holds"]


def test_table_shows_every_case_and_claim(tmp_path: Path):
    result = run(tmp_path, (*mixed(), case("kill-leader", problems=("b1 /ping 200",), safety=("lost 1 write",))))
    text = matrix.table(result)
    lines = text.splitlines()
    assert lines[0].split() == list(matrix.HEADERS) and set(lines[1]) <= {"-", " "}
    row = next(line for line in lines if "split-dc-a|dc-b@leader-minority" in line).split()
    assert row == [
        "3",
        "split-dc-a|dc-b@leader-minority",
        "kill",
        "split-dc-a|dc-b@leader-minority",
        "a1",
        "survives",
        "degraded",
        "degraded",
        "64",
        "%",
        "30",
        "%",
        "409x1,",
        "500x7",
        "never",
        "31.2s",
        "2",
        "0.5s",
        "does",
        "not",
        "hold",
    ]
    assert "n3 kill-leader: b1 /ping 200; lost 1 write" in lines
    assert (
        "claim c: the guide says survives; model degraded 1, survives 2; observed degraded 1, survives 2 -> "
        "does not hold (worst n3 split-dc-a|dc-b@leader-minority: degraded: 64 %"
    ) in text
    assert "claim d: the guide says outage; model outage 1; observed outage 1 -> holds" in text
    assert lines[-1] == "1/2 claims hold, 1 surprise(s) in 4 cases, rancher-1.0 profile, 42 s"


def test_markdown_report(tmp_path: Path):
    result = run(tmp_path, (*mixed(), case("kill-leader", problems=("b1 /ping 200",))), profile="tuned")
    md = matrix.markdown(result)
    assert result.to_dict()["placement"] == {"db_dc": "dc-b", "lb_dc": "outside"}  # kept in matrix.json
    assert md.startswith("# Survivability matrix (1970-01-01T00:00:00+00:00, tuned profile)\n")
    assert (
        "Machine: 2 CPUs, 4 GiB, Linux, Docker 27.0. Sizes 3; database in dc-b, load balancer outside the"
        " datacenters; 42 s in all." in md
    )
    assert (
        "Objective: from 10 s after the fault on, at least 99 % of the client's requests succeed (survives); "
        "at most 1 % of its writes: outage; between: degraded."
    ) in md
    assert "| claim | the guide says | guide | model | observed | verdict | worst case |" in md
    assert (
        "| d | For true HA, a replicated MySQL database with proper backups is recommended. | outage | outage 1 | "
        "outage 1 | holds | n3 kill-db: outage: 0 % success (writes 0 %) from 10 s on; writes never back |"
    ) in md
    assert "| " + " | ".join(matrix.HEADERS) + " |" in md
    assert (
        "| 3 | kill-db | kill kill-db | a1 | outage | outage | outage | 0 % | 0 % | 503x90 | 2.0s | - | 0 | 0.5s "
        "| holds |" in md
    )
    assert "| 3 | split-dc-a\\|dc-b@leader-minority | kill split-dc-a\\|dc-b@leader-minority |" in md
    assert "- n3 kill-leader: b1 /ping 200" in md
    # every table row has as many cells as its header: a case id's | is escaped everywhere
    for line in md.splitlines():
        if line.startswith("| c |"):
            assert line.replace("\\|", "").count("|") == 8
        elif line.startswith("| 3 |"):
            assert line.replace("\\|", "").count("|") == len(matrix.HEADERS) + 1


def test_markdown_without_differences_has_no_notes(tmp_path: Path):
    md = matrix.markdown(run(tmp_path, (case("kill-follower"),)))
    assert "Where the lab differed" not in md and md.endswith("surprise.\n")


def test_to_dict(tmp_path: Path):
    d = run(tmp_path, mixed()).to_dict()
    assert (d["profile"], d["holds"], d["as_predicted"], d["passed"]) == ("rancher-1.0", False, True, False)
    assert d["objective"] == {"after": 10, "success": 0.99, "window": 5} and d["sizes"] == [3]
    assert [c["verdict"] for c in d["cases"]] == ["holds", "does not hold", "holds"]
    assert json.loads(json.dumps(d))["cases"][1]["measures"]["errors"] == {"409": 1, "500": 7}


def test_require_pass_passes_when_every_claim_holds_as_predicted(tmp_path: Path):
    result = run(
        tmp_path,
        (
            case("kill-follower"),
            case("kill-db", claims=("d",), guide="outage", predicted="outage", observed="outage", share=0.0),
        ),
    )
    assert result.holds and result.as_predicted and result.passed
    matrix.require_pass(result)


def test_require_pass_exits_3_when_a_claim_does_not_hold(tmp_path: Path):
    result = run(tmp_path, mixed())
    assert not result.holds and result.as_predicted and not result.passed
    with pytest.raises(
        CheckFailed, match=r"1 claim\(s\) of the guide do not hold on this lab: c; see .*matrix\.md"
    ) as e:
        matrix.require_pass(result)
    assert e.value.exit_code == matrix.EXIT_CLAIM_FAILS == 3 and not isinstance(e.value, matrix.Surprise)


def test_a_claim_that_does_not_hold_wins_over_a_surprise(tmp_path: Path):
    result = run(tmp_path, (*mixed(), case("kill-leader", predicted="degraded")))
    with pytest.raises(CheckFailed) as e:
        matrix.require_pass(result)
    assert e.value.exit_code == 3


def test_require_pass_exits_4_when_every_claim_holds_but_the_model_was_surprised(tmp_path: Path):
    result = run(
        tmp_path,
        (case("kill-leader", predicted="degraded"), case("kill-follower"), case("kill-a2", problems=("b1 /ping 200",))),
    )
    assert result.holds and not result.as_predicted and not result.passed
    with pytest.raises(
        matrix.Surprise,
        match=r"every claim holds, but 2 case\(s\) did what the lab's model did not "
        r"predict: n3 kill-leader, n3 kill-a2; see .*matrix\.md",
    ) as e:
        matrix.require_pass(result)
    assert e.value.exit_code == matrix.EXIT_SURPRISE == 4 and isinstance(e.value, CheckFailed)


def test_writes_are_back_when_a_write_after_the_last_failure_completes():
    w = Watch(T3)
    hung = RequestRecord(100.05, 101.53, "POST", "/v1/projects", 201, True, write=True)  # through an election
    w.requests = [req(99.9, write=True), hung, req(101.6, write=True)]
    # No write failed, but the client waited 1.5 s for one: writes were back when it completed.
    assert w.writes_resumed(100.0, 110.0) == pytest.approx(1.53)
    w.requests = [req(100.1, write=True), req(100.2, ok=False, write=True), req(102.0, ok=False, write=True)]
    w.requests += [req(102.5, write=True), req(103.0, ok=True)]
    assert w.writes_resumed(100.0, 110.0) == pytest.approx(2.55)  # the first good write after 102.0, done
    w.requests = [req(100.2, ok=False, write=True)]
    assert w.writes_resumed(100.0, 110.0) is None


def test_restarts_count_from_zero_again_in_a_container_that_came_back():
    before = {"a1": 2, "a2": 0, "b1": None}
    after = {"a1": 3, "a2": 0, "b1": 1}
    assert matrix._restarts_between(before, after) == {"a1": 1}  # b1 unknown before
    assert matrix._restarts_between({"a1": 3}, {"a1": 1}) == {"a1": 1}  # killed, started, restarted once
    assert matrix._restarts_between({"a1": 3}, {"a1": 0}) == {}


STALLED = ("the observer stalled 11.5 s from +1.7 s (this harness and the machine under it stood still)",)


def test_a_case_the_observer_stalled_through_is_not_measured_and_counts_for_no_claim(tmp_path: Path):
    stalled = case("split", observed=matrix.NOT_MEASURED, share=0.26, problems=STALLED)
    assert not stalled.measured and not stalled.surprise and stalled.verdict == "not measured"
    again = case("split")  # the same case run once more, seen through
    result = run(tmp_path, (stalled, again))
    v = matrix.claim_verdicts(CLAIMS, result.cases)[0]
    assert v["cases"] == 1 and v["holds"] and result.passed
    matrix.require_pass(result)


def test_a_case_never_seen_through_fails_the_matrix_and_says_why(tmp_path: Path):
    stalled = case("split", observed=matrix.NOT_MEASURED, problems=STALLED)
    result = run(tmp_path, (stalled, stalled, case("kill-follower")))
    assert result.holds and result.as_predicted and not result.passed and result.unmeasured == ["n3 split"]
    with pytest.raises(matrix.Surprise, match=r"1 case\(s\) could not be measured: the observer stalled"):
        matrix.require_pass(result)


def test_the_watch_notes_when_its_own_clock_stood_still():
    from lab.chaos.watch import Watch

    w = Watch(T3, client=False)
    w.stalls = [(100.0, 0.7), (110.0, 11.5), (200.0, 3.0)]
    assert w.longest_stall(105.0, 130.0) == (5.0, 11.5)
    assert w.longest_stall(100.5, 101.0) == (-0.5, 0.7)  # began before, still going at `since`
    assert w.longest_stall(150.0, 190.0) is None


def test_a_late_beat_of_the_metronome_is_noted_as_a_stall(monkeypatch):
    from lab.chaos import watch

    w = watch.Watch(T3, client=False)
    w._stop.set()  # the beat's wait returns at once; the clock below says how long it really took
    ticks = iter([50.0, 50.1, 60.0, 72.0])
    monkeypatch.setattr(watch.time, "monotonic", lambda: next(ticks))
    monkeypatch.setattr(watch.time, "time", lambda: 1000.0)
    w._beat()  # on time
    w._beat()  # 12 s for a 0.1 s tick
    assert w.stalls == [(1000.0 - 11.9 - watch.TICK, pytest.approx(11.9))]


def test_the_matrix_takes_a_galera_database_and_says_so(capsys, monkeypatch):
    from lab.cli.main import main

    assert main(["matrix", "--nodes", "3", "--db", "galera:3", "--profile", "tuned", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "kill-db2" in out and "stop-db3" in out and "split-dc-a|dc-b@leader-minority" in out
    assert main(["matrix", "--nodes", "3", "--db", "galera:4", "--dry-run"]) == 2
    assert "--db: 'galera:4' is not" in capsys.readouterr().err
    got: dict = {}
    monkeypatch.setattr(matrix.claims_mod, "cases", lambda c, t: got.setdefault("db", t.db.describe()) and [])
    monkeypatch.setattr(matrix, "make_run_dir", lambda name, root: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        matrix.run_matrix([3], db="galera:3", db_layout="dc-a,dc-b,dc-b")
    assert got["db"] == "galera:3 (db1 in dc-a, db2 in dc-b, db3 in dc-b)"
    assert matrix.placement_text({"db_dc": "dc-a", "lb_dc": "outside", "db": got["db"]}).startswith(
        "database galera:3 (db1 in dc-a, db2 in dc-b, db3 in dc-b), its front in dc-a"
    )


def test_a_matrix_on_a_swarm_runs_the_kinds_it_takes_on_the_ports_its_manager_publishes(tmp_path, monkeypatch):
    from lab.chaos import claims
    from lab.cluster import hosts
    from lab.cluster.topology import Engine, Ports
    from lab.core.errors import BadInput

    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    t, c = make_topology(3, lab="m", engine=Engine("swarm", "swm")), claims.load(claims.DEFAULT_CLAIMS)
    kinds = {case.fault.kind: matrix.takes(t, case) for case in matrix.listed(c, t, gray=True)}
    assert kinds["io"] is kinds["exhaust"] is False  # not on a swarm yet
    assert all(matrix.takes(t, case) for case in matrix.listed(c, t, gray=False))
    assert all(matrix.takes(make_topology(3), case) for case in matrix.listed(c, t, gray=True))
    group = hosts.make_group("swm", 3, published=(28080, 28443, 28081))
    assert hosts.lab_ports(group) == Ports(http=28080, https=28443, mgmt=28081)
    with pytest.raises(BadInput, match=r"^--hosts: host group 'swm' publishes 2 port\(s\); a lab needs three"):
        hosts.lab_ports(hosts.make_group("swm", 3, published=(28080, 28443)))
    text = matrix.placement_text(
        {"db_dc": "dc-a", "lb_dc": "", "db": "single", "engine": "swarm of host group swm", "not_run": "n3 io-db (io)"}
    )
    assert text.endswith("; on the swarm of host group swm; not run there yet (their fault kind): n3 io-db (io)")
