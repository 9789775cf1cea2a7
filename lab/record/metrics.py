"""A run's metric series from the lab's Prometheus (`halab up --monitoring`): `metrics.json`.

At the end of `halab load` and of a scenario run, `record` asks Prometheus (range queries over the
run's window, one point a second) for each family of FAMILIES and writes what it answered into the
run directory, so that `halab report` plots it offline on the run's own time axis. Everything but
`record` is pure: the queries, the shaping of Prometheus's answers and the reading of the file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cluster import prometheus
from lab.cluster.topology import Topology
from lab.core.errors import LabError
from lab.core.wait import wait_for
from lab.record.history import write_json

log = logging.getLogger("halab.record.metrics")

METRICS_FILE = "metrics.json"
FORMAT = 1
STEP = 1.0  # seconds between points, the scrape interval (lab/cluster/compose.py)
MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points a series
RATE_WINDOW = "5s"  # counters become rates over this window: five scrapes
LB_BACKEND = "nodes"  # the load balancer's backend of the API (compose/haproxy.cfg.tmpl)
SCRAPED_TIMEOUT = 15.0  # how long Prometheus may take to scrape past the run's end


@dataclass(frozen=True)
class Query:
    expr: str  # PromQL
    legend: str  # each series' name: str.format over its labels, e.g. "{node}"


@dataclass(frozen=True)
class Family:
    """One plot of the report: series of one unit."""

    key: str
    title: str
    unit: str
    queries: tuple[Query, ...]


def _rate(counter: str) -> str:
    return f"rate({counter}[{RATE_WINDOW}])"


FAMILIES = (
    Family(
        "connections",
        "Database connections in use",
        "connections",
        (
            Query("mysql_global_status_threads_connected", "database (Threads_connected)"),
            Query("cattle_db_pool_in_use", "{node} pool in use"),
        ),
    ),
    Family("heap", "Modelled heap in use per node", "MiB", (Query("cattle_heap_used_bytes / 1048576", "{node}"),)),
    Family(
        "pool_waits",
        "Requests waiting for a pooled database connection",
        "requests",
        (
            Query("cattle_db_pool_waiting", "{node} now"),
            # Seconds waited per second: the mean number of waiting requests over the window.
            Query(_rate("cattle_db_pool_wait_seconds_total"), f"{{node}} mean over {RATE_WINDOW}"),
        ),
    ),
    Family(
        "zk_outstanding",
        "ZooKeeper outstanding requests per member (mntr)",
        "requests",
        (Query("cattle_zookeeper_member_outstanding_requests", "{node}"),),
    ),
    Family(
        "zk_latency",
        "ZooKeeper average request latency per member since it started (mntr)",
        "ms",
        (Query("cattle_zookeeper_member_avg_latency", "{node}"),),
    ),
    Family(
        "lb_queue",
        "Requests queued at the load balancer for a node",
        "requests",
        (Query(f'haproxy_backend_current_queue{{proxy="{LB_BACKEND}"}}', "backend queue"),),
    ),
    Family(
        "lb_retries",
        "Load balancer retries and redispatches",
        "per second",
        (
            Query(_rate(f'haproxy_backend_retry_warnings_total{{proxy="{LB_BACKEND}"}}'), "retries"),
            Query(_rate(f'haproxy_backend_redispatch_warnings_total{{proxy="{LB_BACKEND}"}}'), "redispatches"),
        ),
    ),
)


# ------------------------------------------------------------------------------------------ pure


def step_for(seconds: float) -> float:
    """One point a second, fewer for a run too long for one range query."""
    return max(STEP, float(math.ceil(seconds / MAX_POINTS)))


def value(text: object) -> float | None:
    """A sample's value as Prometheus writes it ("12", "NaN", "+Inf"); None for no number."""
    try:
        v = float(str(text))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def shape(query: Query, matrix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A range query's matrix -> [{"name", "node" (its node label or None), "points": [[time, value
    or None], ...]}], sorted by name."""
    out = []
    for series in matrix:
        labels = _Labels({str(k): str(v) for k, v in (series.get("metric") or {}).items()})
        points = [[float(t), value(v)] for t, v in series.get("values") or ()]
        out.append({"name": query.legend.format_map(labels), "node": labels.get("node"), "points": points})
    return sorted(out, key=lambda s: str(s["name"]))


def collect(fetch: Callable[[str], list[dict[str, Any]]], start: float, end: float, step: float) -> dict[str, Any]:
    """metrics.json's content: every family's series, each query asked through `fetch(expr)`."""
    families = [
        {
            "key": f.key,
            "title": f.title,
            "unit": f.unit,
            "queries": [q.expr for q in f.queries],
            # "query": which of the family's queries gave the series (the plots' line style)
            "series": [{**s, "query": i} for i, q in enumerate(f.queries) for s in shape(q, fetch(q.expr))],
        }
        for f in FAMILIES
    ]
    return {"format": FORMAT, "start": start, "end": end, "step": step, "families": families}


def counts(doc: Mapping[str, Any]) -> dict[str, int]:
    """Family -> points with a value, over its series (what the log line and the tests show)."""
    return {
        f["key"]: sum(1 for s in f["series"] for _, v in s["points"] if v is not None) for f in doc.get("families", [])
    }


def load(run_dir: Path) -> dict[str, Any] | None:
    """A run's recorded metrics, or None when it has none (or a file this code cannot read)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


# ---------------------------------------------------------------------------------------- record


def record(t: Topology, run_dir: Path, start: float, end: float) -> Path | None:
    """Write the run's series into RUN_DIR/metrics.json when the lab has monitoring. A Prometheus
    that cannot answer costs the run its plots, not its verdict: logged, and None."""
    if not t.monitoring:
        return None
    step = step_for(end - start)
    try:
        # The last scrape must be past the run's end, or its last second would be missing.
        wait_for(
            "Prometheus to scrape past the run's end",
            lambda: _scraped_until(t) >= end,
            SCRAPED_TIMEOUT,
            interval=0.5,
        )
        doc = collect(lambda expr: prometheus.query_range(t, expr, start, end, step), start, end, step)
    except LabError as exc:
        log.warning(f"metrics: not recorded ({exc})")
        return None
    path = run_dir / METRICS_FILE
    write_json(path, doc, indent=None)
    log.info(f"metrics: {', '.join(f'{k} {n}' for k, n in counts(doc).items())} points from Prometheus -> {path}")
    return path


def _scraped_until(t: Topology) -> float:
    """The time of Prometheus's newest scrape of any target."""
    newest = prometheus.query(t, "max(timestamp(up))")
    return (value(newest[0]["value"][1]) or 0.0) if newest else 0.0
