"""The HA state machine: starting -> active <-> degraded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lab.server.state import HAState, HAStateMachine, Health

OK = Health(bootstrapped=True, zk_connected=True, db_ok=True)
NO_ZK = Health(bootstrapped=True, zk_connected=False, db_ok=True)
NO_DB = Health(bootstrapped=True, zk_connected=True, db_ok=False)


def test_starts_starting_and_stays_until_healthy() -> None:
    sm = HAStateMachine()
    assert sm.state is HAState.STARTING and not sm.active
    assert sm.observe(Health(False, True, True)) is None
    assert sm.observe(NO_ZK) is None
    assert sm.state is HAState.STARTING
    t = sm.observe(OK)
    assert t is not None and (t.before, t.after) == (HAState.STARTING, HAState.ACTIVE)
    assert sm.active and sm.reasons == ()


def test_degrades_without_quorum_or_database_and_recovers() -> None:
    sm = HAStateMachine()
    sm.observe(OK)
    t = sm.observe(NO_ZK)
    assert t is not None and t.after is HAState.DEGRADED
    assert t.reasons == ("no ZooKeeper session with quorum",)
    assert sm.observe(NO_DB) is None  # still degraded, for another reason
    assert sm.reasons == ("database health check failing",)
    t = sm.observe(OK)
    assert t is not None and (t.before, t.after) == (HAState.DEGRADED, HAState.ACTIVE)


def test_repeated_observations_cause_no_transition() -> None:
    sm = HAStateMachine()
    sm.observe(OK)
    assert sm.observe(OK) is None


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=40))
def test_active_exactly_when_healthy_and_never_back_to_starting(obs: list[tuple[bool, bool, bool]]) -> None:
    sm = HAStateMachine()
    seen_active = False
    for b, z, d in obs:
        sm.observe(Health(b, z, d))
        healthy = b and z and d
        assert sm.active == healthy
        seen_active = seen_active or healthy
        if seen_active:
            assert sm.state is not HAState.STARTING
        else:
            assert sm.state is HAState.STARTING
