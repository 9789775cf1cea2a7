"""A lab's Prometheus (`halab up --monitoring`), through its HTTP API on 127.0.0.1: instant and range
queries, and whether it scrapes every target. The answers' shapes are read by pure functions; the
HTTP is `probes.http_get`, the harness's one HTTP client."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from lab.cluster import probes
from lab.cluster.topology import Topology
from lab.core.errors import BadInput, RuntimeFailure

API_TIMEOUT = 10.0


def address(t: Topology) -> str:
    return f"127.0.0.1:{t.ports.prom}"


def answer_data(status: int | None, body: bytes, what: str) -> Any:
    """The `data` of an API answer; RuntimeFailure naming `what` when there is none (no answer, an
    HTTP error, a refused query: Prometheus says why in `error`)."""
    if status is None:
        raise RuntimeFailure(f"{what}: Prometheus does not answer")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else body[:200].decode("utf-8", "replace")
        raise RuntimeFailure(f"{what}: Prometheus answered HTTP {status}: {error}")
    return doc.get("data")


def api(t: Topology, path: str, params: dict[str, str], what: str) -> Any:
    if not t.monitoring:
        raise BadInput(f"lab {t.lab!r} has no Prometheus: start it with `halab up --monitoring`")
    res = probes.http_get("127.0.0.1", t.ports.prom, f"{path}?{urlencode(params)}", timeout=API_TIMEOUT)
    if res.status is None:
        raise RuntimeFailure(f"{what}: Prometheus on {address(t)} does not answer ({res.error})")
    return answer_data(res.status, res.body, what)


def query(t: Topology, expr: str) -> list[dict[str, Any]]:
    """An instant query's vector: [{"metric": {labels}, "value": [time, "value"]}, ...]."""
    data = api(t, "/api/v1/query", {"query": expr}, f"query {expr!r}")
    return list(data.get("result") or []) if isinstance(data, dict) else []


def query_range(t: Topology, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """A range query's matrix: [{"metric": {labels}, "values": [[time, "value"], ...]}, ...]."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    data = api(t, "/api/v1/query_range", params, f"query {expr!r} over {end - start:.0f} s")
    return list(data.get("result") or []) if isinstance(data, dict) else []


def targets_down(up: list[dict[str, Any]], expected: int) -> str | None:
    """None when the `up` vector shows `expected` targets all scraped, else what is missing."""
    down = [_target(s["metric"]) for s in up if s.get("value", [0, "0"])[1] != "1"]
    if down:
        return f"Prometheus does not scrape {', '.join(sorted(down))} yet"
    if len(up) < expected:
        return f"Prometheus scrapes {len(up)} of {expected} targets"
    return None


def _target(labels: dict[str, str]) -> str:
    return f"{labels.get('job', '?')} {labels.get('node') or labels.get('instance', '?')}"


def scrape_problem(t: Topology) -> str | None:
    """None when Prometheus scrapes every node, the load balancer and the database's exporter."""
    try:
        return targets_down(query(t, "up"), t.size + 2)  # compose.prometheus_config's targets
    except RuntimeFailure as exc:
        return str(exc)
