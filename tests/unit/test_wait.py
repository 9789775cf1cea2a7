"""The one wait helper's two forms: wait_for raises naming what it waited for; poll hands the last
value back for the caller to judge."""

from __future__ import annotations

import itertools

import pytest

from lab.core import wait
from lab.core.wait import WaitTimeout, poll, wait_for


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    clock = itertools.count()
    monkeypatch.setattr(wait.time, "sleep", lambda s: None)
    monkeypatch.setattr(wait.time, "monotonic", lambda: float(next(clock)))


def test_poll_returns_the_first_value_that_is_done():
    values = iter([1, 2, 3, 4])
    assert poll(lambda: next(values), lambda v: v >= 3, timeout=100) == 3


def test_poll_returns_the_last_value_when_time_runs_out():
    values = itertools.count()
    last = poll(lambda: next(values), lambda v: False, timeout=5)
    assert 3 <= last <= 6  # judged by the caller, not raised


def test_wait_for_names_what_it_waited_for_and_what_it_saw_last():
    with pytest.raises(WaitTimeout, match=r"timed out after 5 s waiting for the quorum \(last: ConnectionRefusedError"):
        wait_for("the quorum", _refused, timeout=5)


def _refused() -> None:
    raise ConnectionRefusedError("not yet")


def test_wait_until_names_the_last_problem_seen():
    problems = iter(["db1: Joining", "db1: Joined", "db1: Donor"] * 10)
    with pytest.raises(WaitTimeout, match=r"waiting for db1 synced \(last: 'db1: (Joining|Joined|Donor)'\)"):
        wait.wait_until("db1 synced", lambda: next(problems), deadline=4.0)


def test_wait_until_returns_once_nothing_is_off():
    problems = iter(["not yet", "not yet", None])
    assert wait.wait_until("the front", lambda: next(problems), deadline=100.0) > 0
