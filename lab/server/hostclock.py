"""This host's wall clock, as the clock fault sets it (lab/faults/gray.py, `clock`).

`install()` makes `time.time()` and `time.time_ns()` of this process read the true time plus the
offset written in CLOCK_FILE (re-read at most once a second), so that a clock stepped or drifting
on one host is what its server and cluster-manager see: in their logs, Date headers, status and
heartbeats. The file holds `OFFSET` (`+10`, `-2.5`: seconds, a step) or `OFFSET DRIFT SINCE`: the
offset was OFFSET at true time SINCE (epoch seconds) and grows by DRIFT seconds a second from
there (`+0 +0.05 1764566400`: a clock that gains 50 ms a second), as a clock without NTP drifts,
only faster. The monotonic clocks are left alone, as an NTP step leaves them.

Only this node's Python processes see it. The ZooKeeper JVM and Redis keep the true time:
ZooKeeper measures sessions, ticks and election timeouts with the monotonic clock, and the event
bus keeps no expiring keys in Redis, so a step of their clocks would change nothing the lab
relies on. (A preloaded libfaketime would reach them too, but Debian's 0.9.10 breaks Python's
time.sleep with EINVAL when the monotonic clock is left alone, and hangs it when it is not.)
"""

from __future__ import annotations

import time

CLOCK_FILE = "/tmp/halab-clock"
REREAD = 1.0  # seconds between reads of CLOCK_FILE

_true_time = time.time
_true_time_ns = time.time_ns
_cached = (-REREAD, (0.0, 0.0, 0.0))  # (monotonic time of the read, (offset, drift, since))


def parse(text: str) -> tuple[float, float, float]:
    """(offset, drift, since) from CLOCK_FILE's text; all 0 for an empty or unreadable one."""
    try:
        fields = [float(x) for x in text.split()]
    except ValueError:
        return (0.0, 0.0, 0.0)
    if len(fields) == 1:
        return (fields[0], 0.0, 0.0)
    return (fields[0], fields[1], fields[2]) if len(fields) == 3 else (0.0, 0.0, 0.0)


def offset(true_now: float | None = None) -> float:
    """Seconds this host's clock is off at the true time `true_now` (now by default)."""
    global _cached
    now = time.monotonic()
    if now - _cached[0] >= REREAD:
        try:
            with open(CLOCK_FILE) as f:
                value = parse(f.read())
        except OSError:
            value = (0.0, 0.0, 0.0)
        _cached = (now, value)
    base, drift, since = _cached[1]
    if not drift:
        return base
    return base + drift * ((_true_time() if true_now is None else true_now) - since)


def _time() -> float:
    now = _true_time()
    return now + offset(now)


def _time_ns() -> int:
    now = _true_time_ns()
    return now + round(offset(now / 1e9) * 1e9)


def install() -> None:
    time.time = _time
    time.time_ns = _time_ns
