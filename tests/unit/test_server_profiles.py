"""Node profiles: rancher-1.0 (the default) as the released v1.0 code behaved, tuned as the lab's
earlier node; the session-loss decision and the supervisor's restart delay."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.server import supervisor
from lab.server.coord import LossClock
from lab.server.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    RANCHER_1_0,
    TUNED,
    Profile,
    profile,
    server_settings,
    settings,
)


def test_lookup_and_default() -> None:
    assert DEFAULT_PROFILE == "rancher-1.0" and profile("rancher-1.0") is RANCHER_1_0 and profile("tuned") is TUNED
    with pytest.raises(ValueError, match=r"rancher-1\.0, tuned"):
        profile("fast")


@pytest.mark.parametrize("p", PROFILES.values(), ids=list(PROFILES))
def test_every_setting_has_a_reason_and_every_server_setting_a_variable(p: Profile) -> None:
    prof = profile(p.name)
    assert all(prof.why[f.name] for f in settings())
    envs = [f.metadata["env"] for f in server_settings()]
    assert len(set(envs)) == len(envs) and all(e.startswith("HALAB_") for e in envs)
    with pytest.raises(ValueError, match="no 'why' for ping_gate"):
        replace(prof, why={k: v for k, v in prof.why.items() if k != "ping_gate"})


def test_the_profiles_differ_where_rancher_1_0_really_did() -> None:
    r, t = RANCHER_1_0, TUNED
    assert (r.ping_gate, r.state_gate, r.commit_fence) == (False, False, False)
    assert (t.ping_gate, t.state_gate, t.commit_fence) == (True, True, True)
    assert (r.zk_tick_ms, r.zk_init_limit, r.zk_sync_limit) == (2000, 10, 5)
    assert (r.zk_session_timeout, r.zk_connection_timeout, r.zk_retry_tries, r.zk_retry_delay) == (30, 30, 3, 1.0)
    assert (r.zk_wait_tries, r.zk_wait_interval) == (31, 2.0)
    assert (r.lock_timeout, r.lock_no_session_status, r.cluster_heartbeat) == (10.0, 500, 5.0)
    assert r.exit_on_session_loss and r.restart_server and not (t.exit_on_session_loss or t.restart_server)
    assert r.lb_check() == "inter 1000ms fastinter 1000ms downinter 1000ms fall 2 rise 1"
    assert t.lb_check() == (
        "inter 250ms fastinter 150ms downinter 500ms fall 2 rise 2 observe layer4 error-limit 1 on-error fastinter"
    )
    # Curator: the connection timeout, then RetryNTimes(3, 1000 ms)
    assert r.session_loss_after == 33.0


def clock() -> LossClock:
    return LossClock(RANCHER_1_0.session_loss_after, now=0.0)


def test_a_connected_session_is_never_lost() -> None:
    c = clock()
    c.observe("CONNECTED", 1.0, expired=False)
    assert c.lost(1000.0) is None and c.down_for(1000.0) == 0.0


def test_suspended_for_longer_than_curator_tolerates_is_lost() -> None:
    c = clock()
    c.observe("CONNECTED", 1.0, expired=False)
    c.observe("SUSPENDED", 10.0, expired=False)
    assert c.lost(42.9) is None
    assert c.lost(43.0) == "no connection for 33 s"
    c.observe("CONNECTED", 44.0, expired=False)  # back in time only if it reconnects first
    assert c.lost(100.0) is None


def test_an_expired_session_is_lost_at_once_even_after_reconnecting() -> None:
    c = clock()
    c.observe("CONNECTED", 1.0, expired=False)
    c.observe("SUSPENDED", 2.0, expired=False)
    c.observe("LOST", 5.0, expired=True)
    c.observe("CONNECTED", 5.5, expired=False)  # kazoo opens a new session by itself
    assert c.lost(6.0) == "the session expired"


def test_a_server_that_never_connects_counts_from_its_start() -> None:
    c = clock()
    c.observe("LOST", 3.0, expired=True)  # no session yet: not an expiry
    assert c.lost(32.0) is None and c.lost(33.0) == "no connection for 33 s"


def test_kazoo_giving_up_reconnecting_is_no_expiry() -> None:
    c = clock()
    c.observe("CONNECTED", 1.0, expired=False)
    c.observe("SUSPENDED", 2.0, expired=False)
    c.observe("LOST", 3.0, expired=False)  # the connection loop stopped (kazoo 2.8)
    assert c.lost(34.0) is None and c.lost(35.0) == "no connection for 33 s"


def test_restart_delay_doubles_like_dockers_and_resets_after_a_good_run() -> None:
    d = supervisor.next_delay(None, 0.0)
    assert d == 0.1
    for expected in (0.2, 0.4, 0.8):
        d = supervisor.next_delay(d, 1.0)
        assert d == pytest.approx(expected)
    assert supervisor.next_delay(d, 35.0) == 0.1
    assert supervisor.next_delay(50.0, 1.0) == 60.0
