"""This host's wall clock, as the clock fault sets it (lab/faults/gray.py, `clock`).

`install()` makes `time.time()` and `time.time_ns()` of this process read the true time plus the
offset written in CLOCK_FILE (`+10`, `-2.5`: seconds; re-read at most once a second), so that
a clock stepped on one host is what its server and cluster-manager see: in their logs, Date
headers, status and heartbeats. The monotonic clocks are left alone, as an NTP step leaves them.

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
_cached = (-REREAD, 0.0)  # (monotonic time of the read, offset in seconds)


def offset() -> float:
    """The offset in CLOCK_FILE, seconds; 0 without a file or with one that says nothing else."""
    global _cached
    now = time.monotonic()
    if now - _cached[0] >= REREAD:
        try:
            with open(CLOCK_FILE) as f:
                value = float(f.read().strip() or 0)
        except (OSError, ValueError):
            value = 0.0
        _cached = (now, value)
    return _cached[1]


def _time() -> float:
    return _true_time() + offset()


def _time_ns() -> int:
    return _true_time_ns() + round(offset() * 1e9)


def install() -> None:
    time.time = _time
    time.time_ns = _time_ns
