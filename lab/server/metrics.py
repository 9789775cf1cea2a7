"""Prometheus text exposition, written by hand (no client library in Debian's Python set)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    items = [f'{k}="{_escape(v)}"' for k, v in pairs]
    return "{" + ",".join(items) + "}" if items else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


class RequestMetrics:
    """Requests by method and status code, and one latency histogram (seconds)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self, node: str) -> list[str]:
        out = [
            "# HELP cattle_http_requests_total API requests by method and status code.",
            "# TYPE cattle_http_requests_total counter",
        ]
        for (method, status), n in sorted(self.counts.items()):
            out.append(
                f"cattle_http_requests_total{_labels([('node', node), ('method', method), ('code', str(status))])} {n}"
            )
        out += [
            "# HELP cattle_http_request_duration_seconds API request latency.",
            "# TYPE cattle_http_request_duration_seconds histogram",
        ]
        running = 0
        for bound, n in zip(BUCKETS, self.bucket_counts, strict=False):  # the last count is +Inf's
            running += n
            out.append(
                f"cattle_http_request_duration_seconds_bucket{_labels([('node', node), ('le', repr(bound))])} {running}"
            )
        running += self.bucket_counts[-1]
        out.append(f"cattle_http_request_duration_seconds_bucket{_labels([('node', node), ('le', '+Inf')])} {running}")
        out.append(f"cattle_http_request_duration_seconds_sum{_labels([('node', node)])} {self.latency_sum!r}")
        out.append(f"cattle_http_request_duration_seconds_count{_labels([('node', node)])} {self.latency_count}")
        return out


def render_gauges(node: str, gauges: Iterable[Gauge]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for g in gauges:
        if g.name not in seen:
            kind = "counter" if g.name.endswith("_total") else "gauge"
            out += [f"# HELP {g.name} {g.help}", f"# TYPE {g.name} {kind}"]
            seen.add(g.name)
        out.append(f"{g.name}{_labels([('node', node), *g.labels])} {_num(g.value)}")
    return out
