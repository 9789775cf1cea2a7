import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.record.consistency import check_sessions
from lab.record.linearizability import check_linearizable
from lab.record.ops import Op, Value
from lab.record.simulate import simulate_register


def w(p: str, v: Value, t0: float, t1: float = math.inf, type: str = "ok", key: str = "x") -> Op:
    return Op(p, key, "write", v, type, t0, t1)  # type: ignore[arg-type]


def r(p: str, v: Value, t0: float, t1: float, key: str = "x") -> Op:
    return Op(p, key, "read", v, "ok", t0, t1)


def indexed(*ops: Op) -> list[Op]:
    return [replace(op, index=i) for i, op in enumerate(ops)]


def test_stale_read_after_another_clients_committed_write():
    h = indexed(w("p1", 1, 0, 1), w("p1", 2, 2, 3), r("p2", 1, 4, 5))
    result = check_sessions(h)
    assert result.valid == "anomalies" and result.counts()["stale-read"] == 1
    (a,) = result.anomalies
    assert (a.kind, a.key, a.process) == ("stale-read", "x", "p2")
    assert a.ops == (h[2], h[1], h[0])
    assert "read of 1 by p2" in a.explanation and "after write of 2 by p1 completed at t=3" in a.explanation


def test_reading_the_initial_value_after_a_committed_write_is_stale():
    h = indexed(w("p1", 1, 0, 1), r("p2", None, 2, 3))
    (a,) = check_sessions(h).anomalies
    assert a.kind == "stale-read" and "initial value None" in a.explanation


def test_read_your_writes_is_reported_as_such_not_twice():
    h = indexed(w("p3", 1, 0, 1), w("p1", 2, 2, 3), r("p1", 1, 4, 5))
    (a,) = check_sessions(h).anomalies
    assert a.kind == "read-your-writes" and a.ops[:2] == (h[2], h[1]) and "its own write of 2" in a.explanation


def test_monotonic_reads():
    # The write of 2 is still running (so no read is stale), but p2 saw it and then saw 1 again.
    h = indexed(w("p1", 1, 0, 1), w("p1", 2, 2, 10), r("p2", 2, 3, 4), r("p2", 1, 5, 6), r("p3", 1, 5, 6))
    result = check_sessions(h)
    (a,) = result.anomalies
    assert (a.kind, a.process) == ("monotonic-reads", "p2") and a.ops[:2] == (h[3], h[2])


def test_a_cas_that_succeeds_from_a_superseded_value_is_a_stale_read():
    h = indexed(w("p0", 0, 0, 1), Op("p1", "x", "cas", (0, 1), "ok", 2, 3), Op("p2", "x", "cas", (0, 2), "ok", 4, 5))
    (a,) = check_sessions(h).anomalies
    assert (a.kind, a.ops[:2]) == ("stale-read", (h[2], h[1])) and a.explanation.startswith("cas 0->2 by p2")


def test_read_of_a_value_never_written():
    h = indexed(w("p1", 1, 0, 1), r("p2", 7, 2, 3), w("p3", 7, 0, 1, type="fail"))
    (a,) = check_sessions(h).anomalies
    assert a.kind == "never-written" and a.ops == (h[1],)


def test_values_of_info_writes_may_be_read_and_never_make_a_read_stale():
    h = indexed(w("p1", 1, 0, 1, type="info"), w("p2", 2, 2, 3), r("p3", 1, 4, 5), r("p3", 2, 6, 7))
    assert check_sessions(h).valid == "ok"


def test_concurrent_writes_are_ambiguous_in_real_time_but_not_with_a_version_order():
    h = indexed(w("p1", 1, 0, 5), w("p2", 2, 0, 5), r("p3", 2, 6, 7), r("p3", 1, 8, 9))
    assert check_sessions(h).valid == "ok"
    result = check_sessions(h, version_order={"x": (1, 2)})
    assert [a.kind for a in result.anomalies] == ["stale-read", "monotonic-reads"]
    (a,) = check_sessions(h, version_order={"x": (2, 1)}).anomalies
    assert (a.kind, a.ops[0]) == ("stale-read", h[2])


def test_version_order_from_the_linearizability_checker():
    h = indexed(w("p1", 1, 0, 5), w("p2", 2, 0, 5), r("p3", 2, 6, 7), r("p4", 2, 6, 7))
    order = check_linearizable(h).version_order(h)
    assert order == {"x": (1, 2)}
    assert check_sessions(h, version_order=order).valid == "ok"


@pytest.mark.parametrize("history", [[], [w("p1", 1, 0, 1)], [Op("p", "x", "read", None, "info", 0, 1)]])
def test_nothing_checked_is_not_a_pass(history: list[Op]):
    result = check_sessions(history)
    assert result.valid == "nothing checked" and not result.ok and result.reads == 0


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), keys=st.integers(1, 3), clients=st.integers(1, 10), info=st.sampled_from([0.0, 0.1])
)
def test_simulated_atomic_registers_have_no_anomalies(seed, keys, clients, info):
    history = simulate_register(random.Random(seed), ops=300, keys=keys, clients=clients, info_rate=info)
    result = check_sessions(history)
    assert result.valid == "ok" and result.reads > 0
    order = check_linearizable(history).version_order(history)
    assert check_sessions(history, version_order=order).valid == "ok"
