"""Leader placement's settling: a member left out of a serving quorum is restarted once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.chaos import placement
from lab.cluster.topology import make_topology
from lab.core.wait import WaitTimeout

T3 = make_topology(3)
OUT_FOR_GOOD = {"a1": "leader", "a2": "follower", "b1": "not serving"}
SETTLED = {"a1": "leader", "a2": "follower", "b1": "follower"}


def _fake(monkeypatch, modes_before, restart_fixes=True):
    state = {"modes": dict(modes_before), "restarted": []}

    def restart(_t, nodes, _timeout):
        state["restarted"].append(list(nodes))
        if restart_fixes:
            state["modes"] = dict(SETTLED)

    monkeypatch.setattr(placement, "roles", lambda _t: dict(state["modes"]))
    monkeypatch.setattr(placement, "containers", lambda _t: {n: SimpleNamespace(running=True) for n in T3.node_names})
    monkeypatch.setattr(placement, "_stop_members", lambda _t, nodes, _timeout: None)
    monkeypatch.setattr(placement, "_restart", restart)
    return state


def test_a_member_refused_by_a_serving_quorum_is_restarted_once(monkeypatch):
    state = _fake(monkeypatch, OUT_FOR_GOOD)
    assert placement.settled(T3, "a settled ensemble", timeout=0.05) == SETTLED
    assert state["restarted"] == [["b1"]]


def test_a_member_that_stays_out_after_its_restart_fails_the_wait(monkeypatch):
    state = _fake(monkeypatch, OUT_FOR_GOOD, restart_fixes=False)
    with pytest.raises(WaitTimeout, match=r"after restarting the members of b1"):
        placement.settled(T3, "a settled ensemble", timeout=0.05)
    assert state["restarted"] == [["b1"]]


def test_without_a_serving_quorum_nothing_is_restarted(monkeypatch):
    state = _fake(monkeypatch, {"a1": "not serving", "a2": "not serving", "b1": "follower"})
    with pytest.raises(WaitTimeout, match=r"a settled ensemble"):
        placement.settled(T3, "a settled ensemble", timeout=0.05)
    assert state["restarted"] == []
