"""Histories of a simulated atomic register, for the checkers' tests and benchmark.

Clients run one op at a time against a set of keys; each op gets an interval (invoke, complete)
with a long-tailed latency, and a linearization point drawn inside it. Applying the ops in the
order of those points to one register per key gives every read its value and every cas its
outcome, so the history is linearizable by construction. An `info` op is one the client gave up
on at `complete`: half of them never reach the register, the others take effect at a point that
may fall after the client gave up (up to three latencies after invoke).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from lab.record.ops import Fn, Op, OpType, Payload, Value


@dataclass(frozen=True)
class _Planned:
    process: str
    key: str
    f: Fn
    expected: Value  # cas only
    new: Value  # writes and cas
    invoke: float
    complete: float
    point: float | None  # linearization point; None: never takes effect
    info: bool


def simulate_register(
    rng: random.Random,
    *,
    ops: int,
    keys: int = 10,
    clients: int = 20,
    info_rate: float = 0.02,
    read_share: float = 0.5,
    cas_share: float = 0.1,
    latency: float = 0.005,
    think: float = 0.002,
    start: float = 0.0,
) -> list[Op]:
    """`ops` operations, sorted by invoke and indexed. Latency is exponential with mean
    `latency` plus, one op in twenty, a slow tail ten times longer; values written are unique."""
    names = [f"k{i}" for i in range(keys)]
    clock = [(start + rng.uniform(0, latency), c) for c in range(clients)]
    heapq.heapify(clock)
    last_written: dict[str, Value] = {}
    counter = 0
    planned: list[_Planned] = []
    for _ in range(ops):
        t, c = heapq.heappop(clock)
        key = rng.choice(names)
        roll = rng.random()
        f: Fn = "read"
        expected: Value = None
        if roll >= read_share:
            counter += 1
            if roll < read_share + cas_share:
                # Expect the last value written to the key, or often a stale one, so cas both
                # succeed and fail.
                expected = last_written.get(key) if rng.random() < 0.7 else rng.randrange(counter)
                f = "cas"
            else:
                f = "write"
            last_written[key] = counter
        duration = rng.expovariate(1 / latency) * (10 if rng.random() < 0.05 else 1) + 1e-6
        info = rng.random() < info_rate
        if info:
            point = t + rng.uniform(0, 3 * duration) if rng.random() < 0.5 else None
        else:
            point = rng.uniform(t, t + duration)
        planned.append(_Planned(f"p{c}", key, f, expected, counter, t, t + duration, point, info))
        heapq.heappush(clock, (t + duration + rng.uniform(0, think), c))

    register: dict[str, Value] = {}
    outcome: dict[int, tuple[OpType, Value]] = {}  # type and, for reads, the value read
    for i in sorted((i for i, p in enumerate(planned) if p.point is not None), key=lambda i: planned[i].point or 0.0):
        p = planned[i]
        current = register.get(p.key)
        if p.f == "read":
            outcome[i] = ("ok", current)
        elif p.f == "write" or current == p.expected:
            register[p.key] = p.new
            outcome[i] = ("ok", None)
        else:
            outcome[i] = ("fail", None)
    history: list[Op] = []
    for i in sorted(range(len(planned)), key=lambda i: planned[i].invoke):
        p = planned[i]
        # An info op's client never learned the outcome, so the value of an info read is unknown.
        type_, read = ("info", None) if p.info else outcome[i]
        value: Payload = read if p.f == "read" else (p.expected, p.new) if p.f == "cas" else p.new
        history.append(Op(p.process, p.key, p.f, value, type_, p.invoke, p.complete, index=len(history)))
    return history
