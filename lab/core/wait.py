"""Bounded waits on a condition, never a fixed sleep: `wait_for` polls until a function returns
something truthy and, when time runs out, says what it waited for and the last thing it saw (as
testcontainers' wait strategies do)."""

from __future__ import annotations

import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Any, TypeVar

from lab.core.errors import RuntimeFailure

T = TypeVar("T")
# "Not yet" rather than a failure: the thing polled is still starting (connection refused or
# reset, an HTTP answer cut short).
NOT_YET: tuple[type[BaseException], ...] = (OSError, HTTPException)


class WaitTimeout(RuntimeFailure):
    """A bounded wait ran out: the message names what was awaited and the last value seen."""

    def __init__(self, what: str, timeout: float, last: Any) -> None:
        self.what, self.timeout, self.last = what, timeout, last
        super().__init__(f"timed out after {timeout:g} s waiting for {what} (last: {_shown(last)})")


def poll(fn: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.2) -> T:
    """Call `fn` every `interval` seconds until `done` holds for what it returned or `timeout`
    seconds passed; return the last value either way, for waits whose caller judges a timeout
    itself (a case observed until decided, a state reported as it was)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(
    what: str,
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    *,
    not_yet: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """Call `fn` every `interval` seconds until it returns something truthy, and return that; after
    `timeout` seconds raise WaitTimeout naming `what` and the last value (or exception) seen. An
    exception of `not_yet` (connection errors by default) counts as "not yet"; any other one, an
    assertion included, ends the wait at once."""
    deadline = time.monotonic() + timeout
    last: T | BaseException | None = None
    while True:
        try:
            value = fn()
        except not_yet as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, timeout, last)
        time.sleep(interval)


def wait_until(what: str, problem: Callable[[], str | None], deadline: float, interval: float = 0.2) -> float:
    """Call `problem` (None: ready; else what is still off, in a few words) until it returns None
    or the `time.monotonic()` DEADLINE passes; return the seconds it took. On timeout raise
    WaitTimeout naming `what` and the last problem: the steps of a start share one deadline."""
    started = time.monotonic()
    reason = poll(lambda: problem() or "", lambda r: not r, deadline - started, interval)
    if reason:
        raise WaitTimeout(what, deadline - started, reason)
    return time.monotonic() - started


def _shown(value: Any, limit: int = 300) -> str:
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
