import itertools
import json
import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.record.linearizability import check_linearizable
from lab.record.ops import Op, Value, dump_history, load_history
from lab.record.simulate import simulate_register


def w(p: str, v: Value, t0: float, t1: float = math.inf, type: str = "ok", key: str = "x") -> Op:
    return Op(p, key, "write", v, type, t0, t1)  # type: ignore[arg-type]


def r(p: str, v: Value, t0: float, t1: float = math.inf, type: str = "ok", key: str = "x") -> Op:
    return Op(p, key, "read", v, type, t0, t1)  # type: ignore[arg-type]


def cas(p: str, old: Value, new: Value, t0: float, t1: float = math.inf, type: str = "ok", key: str = "x") -> Op:
    return Op(p, key, "cas", (old, new), type, t0, t1)  # type: ignore[arg-type]


def indexed(*ops: Op) -> list[Op]:
    return [replace(op, index=i) for i, op in enumerate(ops)]


def the_violation(history: list[Op]):
    result = check_linearizable(history)
    assert result.valid == "violation"
    (key,) = result.violations()
    # The witness is itself a non-linearizable history.
    assert check_linearizable(list(key.witness)).valid == "violation"
    return key


# --- known violations, reported with their sub-history ---


def test_stale_read_after_a_completed_write():
    h = indexed(w("p1", 1, 0, 1), w("p1", 2, 2, 3), r("p2", 1, 4, 5))
    key = the_violation(h)
    assert key.witness == tuple(h) and key.witness_minimal
    assert "read of 1" in key.explanation and "after write of 2 completed at t=3 by p1" in key.explanation


def test_stale_read_witness_leaves_the_unrelated_ops_out():
    noise = [w("p3", 10 + i, 10 + 2 * i, 10.5 + 2 * i, key="x") for i in range(5)]
    noise += [r("p4", 10 + i, 11 + 2 * i, 11.5 + 2 * i, key="x") for i in range(5)]
    h = indexed(*noise, w("p1", 1, 30, 31), w("p1", 2, 32, 33), r("p2", 1, 34, 35), r("p2", 2, 36, 37))
    key = the_violation(h)
    assert {op.index for op in key.witness} == {10, 11, 12}


def test_lost_update_by_two_concurrent_cas_from_the_same_value():
    h = indexed(w("p0", 0, 0, 1), cas("p1", 0, 1, 2, 4), cas("p2", 0, 2, 2.5, 4.5), r("p3", 2, 5, 6))
    key = the_violation(h)
    assert set(key.witness) == set(h[:3]) and key.witness_minimal
    assert "lost" in key.explanation and "cas 0->1" in key.explanation and "cas 0->2" in key.explanation


def test_read_of_a_value_never_written():
    h = indexed(w("p1", 1, 0, 1), r("p2", 1, 2, 3), r("p2", 3, 4, 5))
    key = the_violation(h)
    assert key.witness == (h[2],)
    assert "3" in key.explanation and "no ok or info operation wrote" in key.explanation


def test_a_later_read_of_an_older_value_is_a_violation():
    # The write is still running, one read already saw it, a later one does not.
    h = indexed(w("p1", 1, 0, 10), r("p2", 1, 1, 2), r("p3", None, 3, 4))
    key = the_violation(h)
    assert "read of None" in key.explanation and "after read of 1 completed" in key.explanation


def test_a_read_of_a_value_written_only_later_is_a_violation():
    h = indexed(r("p2", 1, 0, 1), w("p1", 1, 2, 3, type="info"))
    assert the_violation(h).witness == tuple(h)


def test_a_stale_read_in_a_long_history_without_quiescent_points_is_found_quickly():
    """One key, twenty clients: the search alone would have to try every order of the prefix;
    the stale read is convicted by its closed sub-history instead."""
    history = simulate_register(random.Random(3), ops=3000, keys=1, clients=20)
    reads = [op for op in history if op.f == "read" and op.type == "ok"]
    victim = reads[len(reads) // 2]
    before = [op for op in history if op.f == "write" and op.type == "ok" and op.complete < victim.invoke]
    stale = replace(victim, value=before[-3].value)
    key = the_violation([stale if op is victim else op for op in history])
    assert len(key.witness) == 3 and stale in key.witness and key.witness_minimal


# --- linearizable histories pass ---


@pytest.mark.parametrize("seen", [1, 2])
def test_concurrent_writes_then_reads_in_either_order(seen: int):
    other = 3 - seen
    h = indexed(w("p1", 1, 0, 2), w("p2", 2, 0.5, 2.5), r("p3", seen, 3, 4), r("p4", seen, 5, 6))
    result = check_linearizable(h)
    assert result.valid == "ok" and result.ops == 4
    (key,) = result.keys
    order = [h[i] for i in key.linearization]
    assert order[1].value == seen and order[0].value == other
    assert result.version_order(h) == {"x": (other, seen)}


@pytest.mark.parametrize("values", [(None, 1), (1, 1), (None, None)])
def test_reads_concurrent_with_a_write_may_see_old_then_new(values: tuple[Value, Value]):
    h = indexed(w("p1", 1, 0, 10), r("p2", values[0], 1, 2), r("p3", values[1], 3, 4))
    assert check_linearizable(h).ok


def test_cas_chains_and_failed_cas():
    h = indexed(
        cas("p1", None, 1, 0, 1),
        cas("p2", 1, 2, 2, 3),
        cas("p3", 1, 9, 2.5, 3.5, type="fail"),
        cas("p3", 2, 3, 4, 6),
        cas("p4", 3, 4, 5, 7),
        r("p5", 4, 8, 9),
    )
    assert check_linearizable(h).ok


def test_initial_value_is_configurable():
    h = indexed(r("p1", 0, 0, 1), cas("p1", 0, 1, 2, 3))
    assert check_linearizable(h).valid == "violation"
    assert check_linearizable(h, initial=0).ok


def test_keys_are_checked_separately():
    h = indexed(
        w("p1", 1, 0, 1, key="a"), r("p2", 1, 2, 3, key="a"), w("p1", 1, 0, 1, key="b"), r("p2", 2, 2, 3, key="b")
    )
    result = check_linearizable(h)
    assert result.valid == "violation"
    assert [(k.key, k.valid) for k in result.keys] == [("a", "ok"), ("b", "violation")]


# --- info ops: may take effect at any time after invoke, or never ---


def test_an_info_write_that_lands_later_is_accepted():
    # The client gave up at t=1; the write lands after t=4, after another write completed.
    h = indexed(
        w("p1", 1, 0, 1, type="info"),
        r("p2", None, 2, 3),
        w("p3", 2, 2, 3),
        r("p2", 2, 3.5, 4),
        r("p2", 1, 10, 11),
        r("p3", 1, 12, 13),
    )
    assert check_linearizable(h).ok


def test_an_info_write_that_lands_after_the_history_ends_or_never_is_accepted():
    h = indexed(w("p1", 1, 0, math.inf, type="info"), r("p2", None, 2, 3), r("p2", None, 4, 5))
    result = check_linearizable(h)
    assert result.ok and result.ops == 2 and result.keys[0].info == 1


def test_an_info_write_cannot_be_read_before_it_was_invoked_nor_after_it_was_overwritten():
    h = indexed(w("p1", 1, 5, 6, type="info"), r("p2", 1, 0, 1))
    assert check_linearizable(h).valid == "violation"
    h = indexed(w("p1", 1, 0, 1, type="info"), r("p2", 1, 2, 3), w("p3", 2, 4, 5), r("p2", 1, 6, 7))
    assert check_linearizable(h).valid == "violation"


def test_an_info_cas_may_apply_or_not():
    h = indexed(w("p0", 0, 0, 1), cas("p1", 0, 1, 2, 3, type="info"), r("p2", 1, 4, 5))
    assert check_linearizable(h).ok
    h = indexed(w("p0", 0, 0, 1), cas("p1", 0, 1, 2, 3, type="info"), r("p2", 0, 4, 5))
    assert check_linearizable(h).ok


# --- budget and "nothing checked" ---


def test_budget_exhaustion_gives_unknown_never_ok():
    h = simulate_register(random.Random(1), ops=400, keys=1, clients=10)
    assert check_linearizable(h).ok
    by_states = check_linearizable(h, max_states=5)
    assert by_states.valid == "unknown" and by_states.keys[0].valid == "unknown"
    assert check_linearizable(h, max_seconds=0).valid == "unknown"


@pytest.mark.parametrize(
    "history",
    [
        [],
        [w("p1", 1, 0, 1, type="fail")],
        [w("p1", 1, 0, 1, type="info"), r("p2", None, 0, 1, type="info")],
    ],
)
def test_nothing_checked_is_not_a_pass(history: list[Op]):
    result = check_linearizable(history)
    assert result.valid == "nothing checked" and not result.ok and result.ops == 0


# --- the history model ---


def test_ops_round_trip_through_json_lines(tmp_path):
    h = indexed(
        w("p1", "a", 0.5, 1.25),
        r("p2", None, 1, 2),
        cas("p3", "a", "b", 2, 3, type="fail"),
        w("p4", 7, 3, math.inf, type="info"),
    )
    h[0] = replace(h[0], node="a1")
    assert [Op.from_json(op.to_json()) for op in h] == h
    assert json.loads(h[3].to_json())["complete"] is None and json.loads(h[2].to_json())["value"] == ["a", "b"]
    dump_history(h, tmp_path / "ops.jsonl")
    assert load_history(tmp_path / "ops.jsonl") == h


@pytest.mark.parametrize(
    "bad",
    [
        {"f": "delete"},
        {"type": "maybe"},
        {"f": "cas", "value": 1},
        {"complete": math.inf},
        {"complete": -1.0},
    ],
)
def test_ops_refuse_what_the_checker_could_not_read(bad: dict):
    good = {"process": "p", "key": "x", "f": "write", "value": 1, "type": "ok", "invoke": 0.0, "complete": 1.0}
    with pytest.raises(ValueError):
        Op(**{**good, **bad})


# --- properties ---


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    ops=st.integers(1, 300),
    keys=st.integers(1, 3),
    clients=st.integers(1, 12),
    info=st.sampled_from([0.0, 0.05, 0.3]),
    pick=st.floats(0, 1),
)
def test_simulated_atomic_registers_are_linearizable_and_a_corrupted_read_is_not(seed, ops, keys, clients, info, pick):
    history = simulate_register(random.Random(seed), ops=ops, keys=keys, clients=clients, info_rate=info)
    result = check_linearizable(history, max_seconds=60)
    checked = sum(op.type == "ok" for op in history)
    assert result.valid == ("ok" if checked else "nothing checked")
    reads = [op for op in history if op.f == "read" and op.type == "ok"]
    if reads:
        bad = reads[int(pick * (len(reads) - 1))]
        corrupted = [replace(op, value="never-written") if op is bad else op for op in history]
        result = check_linearizable(corrupted, max_seconds=60)
        assert result.valid == "violation"
        assert result.violations()[0].witness == (replace(bad, value="never-written"),)


def brute_force_linearizable(history: list[Op]) -> bool:
    """Try every order of the ok ops plus every subset of the info writes/cas."""
    ops = [op for op in history if op.type == "ok" or (op.type == "info" and op.f != "read")]
    ok = [op for op in ops if op.type == "ok"]
    info = [op for op in ops if op.type == "info"]
    for n in range(len(info) + 1):
        for chosen in itertools.combinations(info, n):
            for order in itertools.permutations(ok + list(chosen)):
                if any(b.type == "ok" and b.complete < a.invoke for i, a in enumerate(order) for b in order[i + 1 :]):
                    continue
                state: Value = None
                for op in order:
                    if op.f != "write" and state != op.observed:
                        break
                    state = op.written if op.f != "read" else state
                else:
                    return True
    return False


small_ops = st.builds(
    lambda f, v, e, t, a, d: Op(
        "p", "x", f, (e, v) if f == "cas" else v, t, a, a + d if t != "info" or d < 2 else math.inf
    ),
    st.sampled_from(["read", "read", "write", "cas"]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(["ok", "ok", "ok", "info", "fail"]),
    st.integers(0, 8).map(float),
    st.integers(0, 4).map(float),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(small_ops, max_size=6))
def test_agrees_with_brute_force_on_small_histories(history: list[Op]):
    """Values repeat and intervals touch here, unlike in the simulated histories."""
    expected = brute_force_linearizable(history)
    result = check_linearizable(history)
    if result.ops == 0:
        assert result.valid == "nothing checked" and expected
    else:
        assert result.valid == ("ok" if expected else "violation")
    for key in result.violations():
        assert not brute_force_linearizable(list(key.witness))
