"""Time the history checkers on a generated 20,000-operation register history.

Usage: .venv/bin/python bench/bench_checker.py [--ops 20000] [--keys 10] [--clients 20] [--info 0.02]
                                                [--seed 1] [--repeat 3] [--max-seconds 10]

The history comes from lab.record.simulate: `--clients` clients each run one op at a time on
random keys (half reads, 40% writes, 10% cas), exponential latency (mean 5 ms, one op in twenty
ten times slower), a linearization point drawn inside each op's interval, and a share `--info` of
ops whose outcome the client never learns (half of them land, possibly after the client gave up).
Wall-clock seconds (time.perf_counter) of check_linearizable and check_sessions on that history,
the median of `--repeat` runs, nothing else running in this process; then the same history with
one op corrupted (a read of a value never written, a stale read, a refused cas reported ok), to
time finding and shrinking a violation. Target (issue 13): a decision on the 20,000-op history in
10 s or less on the 2-core machine.
"""

from __future__ import annotations

import argparse
import bisect
import os
import platform
import random
import statistics
import time
from dataclasses import replace

from lab.record.consistency import check_sessions
from lab.record.linearizability import LinearizabilityResult, check_linearizable
from lab.record.ops import Op, Payload
from lab.record.simulate import simulate_register


def in_flight(history: list[Op]) -> float:
    """Mean number of ok ops in flight when an op is invoked."""
    ok = [op for op in history if op.type == "ok"]
    starts = sorted(op.invoke for op in ok)
    ends = sorted(op.complete for op in ok)
    return statistics.mean(bisect.bisect_right(starts, op.invoke) - bisect.bisect_left(ends, op.invoke) for op in ok)


def timed_check(history: list[Op], repeat: int, max_seconds: float) -> tuple[float, LinearizabilityResult]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = check_linearizable(history, max_seconds=max_seconds)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), result


def corrupt(history: list[Op], kind: str) -> list[Op]:
    """One op from the middle of the history goes wrong: a read returns a value never written
    (`never-written`), or the value of the third-last write of its key that completed before the
    read was invoked (`stale`); or a cas the register refused is reported ok (`cas`)."""
    if kind == "cas":
        refused = [op for op in history if op.f == "cas" and op.type == "fail"]
        victim = refused[len(refused) // 2]
        return [replace(op, type="ok") if op is victim else op for op in history]
    reads = [op for op in history if op.f == "read" and op.type == "ok"]
    victim = reads[len(reads) // 2]
    value: Payload = "never-written"
    if kind == "stale":
        before = [
            op
            for op in history
            if op.key == victim.key and op.f == "write" and op.type == "ok" and op.complete < victim.invoke
        ]
        value = before[-3].value
    return [replace(op, value=value) if op is victim else op for op in history]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--info", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}")
    start = time.perf_counter()
    history = simulate_register(
        random.Random(args.seed), ops=args.ops, keys=args.keys, clients=args.clients, info_rate=args.info
    )
    types = {t: sum(op.type == t for op in history) for t in ("ok", "fail", "info")}
    print(
        f"history: {len(history)} ops over {args.keys} keys by {args.clients} clients, {types}, "
        f"{in_flight(history):.1f} ok ops in flight on average; generated in "
        f"{time.perf_counter() - start:.2f} s (seed {args.seed})"
    )

    seconds, result = timed_check(history, args.repeat, args.max_seconds)
    print(
        f"linearizability: {result.valid}, {result.ops} ok ops checked over {len(result.keys)} keys, "
        f"{result.states} states explored, {seconds:.2f} s (median of {args.repeat}; "
        f"budget {args.max_seconds:g} s)"
    )

    start = time.perf_counter()
    sessions = check_sessions(history, version_order=result.version_order(history))
    print(
        f"session checks: {sessions.valid}, {sessions.reads} reads and cas, {sessions.counts()}, "
        f"{time.perf_counter() - start:.2f} s"
    )

    for kind in ("never-written", "stale", "cas"):
        seconds, bad = timed_check(corrupt(history, kind), 1, args.max_seconds)
        detail = ""
        for key in bad.violations():
            detail = f"; witness {len(key.witness)} ops (minimal: {key.witness_minimal}): {key.explanation}"
        print(
            f"corrupted ({kind}): {bad.valid}, {bad.states} states, {seconds:.2f} s including the "
            f"witness search{detail}"
        )


if __name__ == "__main__":
    main()
