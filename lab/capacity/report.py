"""A sweep's report: the table, `capacity.json` (written and read back), `capacity.md` with the
saturation points, the recommendation beside the guide's rules and the heap model's scaling."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.capacity.analysis import failures, num, pct, recommend, saturations, x_text, x_value
from lab.capacity.bottleneck import HARNESS, SATURATED
from lab.capacity.measurement import OOM_LOG_LINE, Measurement
from lab.capacity.plots import write_plots
from lab.capacity.sampler import SAMPLE_INTERVAL
from lab.capacity.spec import DIMENSION_TITLES, DIMENSIONS, Grid, Settings, check_target
from lab.cluster.topology import GUIDE_POOL_PER_NODE
from lab.core.errors import BadInput
from lab.record import history
from lab.record.load import GeneratorCpu
from lab.server.config import Config as NodeConfig
from lab.server.heap import CACHE_SHARE, GC_THRESHOLD
from lab.server.profiles import DEFAULT_PROFILE

_DB_CONTAINER = re.compile(r"db\d*")  # the database's container(s) among the sampled services

GUIDE_RULES = (
    "MySQL with at least 1 GB of RAM",
    f"{GUIDE_POOL_PER_NODE} database connections per Rancher server node (150 for 3 nodes)",
    "a 4 GB or 8 GB heap per node for larger deployments, on 8 GB or 16 GB of RAM",
)


def heap_model_note(heap_scale: int) -> str:
    """The plain statement of what a lab heap is and how it scales to a production heap."""
    req = NodeConfig.request_heap_bytes
    modelled_req_mib = req * heap_scale / 1024**2
    return (
        f"The node's heap is a model, not a JVM (lab/server/heap.py). `-Xmx<X>` gives each simulated node a "
        f"budget of X / {heap_scale} real bytes (here -Xmx1g = {1024 / heap_scale:g} MiB), of which its resource "
        f"cache may take {CACHE_SHARE:.0%}; every request in flight holds {req // 1024} KiB real, i.e. "
        f"{modelled_req_mib:g} MiB of modelled heap, plus its bodies. Above {GC_THRESHOLD:.0%} of the budget "
        f"requests pay a GC-like pause and the node reports degraded-by-memory; past 100% it logs "
        f"`{OOM_LOG_LINE}` and exits. Scaling: every heap figure here is in modelled bytes = real bytes x "
        f"{heap_scale}. It carries over to production only through the model's cost of {modelled_req_mib:g} MiB "
        f"per request in flight: if your cattle JVM holds R MiB per request in flight, the production heap is "
        f"about the lab's -Xmx x R / {modelled_req_mib:g}. The lab cannot measure R. Until you have measured it "
        f"(heap histograms under load), the guide's 4 to 8 GB per node is the number to use."
    )


def summary_line(m: Measurement) -> str:
    """A point in one line: the progress line the sweep prints after each point."""
    if m.status == "did not start" or not m.load:
        return f"{m.status}: {m.detail}"
    lf = m.load
    conns = m.db.peak_threads_connected if m.db else None
    broke = failures(m)
    return (
        f"{m.status}: {lf.throughput:g} req/s, p95 {lf.p95_ms} ms, errors {lf.error_rate:.2%}, "
        f"DB connections peak {conns}/{m.effective_max_connections}"
        + (f"; bottleneck: {m.bottleneck.text()}" if m.bottleneck else "")
        + (f"; {'; '.join(broke)}" if broke else "")
    )


def generator_note(m: Measurement) -> str | None:
    """The load generator's word on a point, when it ran hot."""
    g = m.generator
    if not g:
        return None
    cpu = GeneratorCpu(**g)
    return cpu.hint(1) if cpu.hot else None


def table(measurements: Sequence[Measurement], swept: Sequence[str]) -> str:
    """Markdown: one row per point."""
    head = [
        "#",
        *(DIMENSION_TITLES[d].split(" (")[0] for d in swept or ("users",)),
        "status",
        "ok req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "too many conn",
        "pool wait",
        "5xx/no resp",
        "DB conns peak / max used / max",
        "DB refused",
        "node mem peak / limit MiB",
        "DB mem MiB",
        "heap pressure max",
        "nodes",
        "pre-flight",
        "bottleneck",
    ]
    rows = []
    for i, m in enumerate(measurements, 1):
        lf, db = m.load, m.db
        e = lf.errors if lf else {}
        nodes_mem = max((v for k, v in m.memory_peak_mib.items() if k in {n.name for n in m.nodes}), default=None)
        # `db`, or the largest Galera member: each holds the whole database.
        db_mem = max((v for k, v in m.memory_peak_mib.items() if _DB_CONTAINER.fullmatch(k)), default=None)
        pressures = [n.peak_heap_pressure for n in m.nodes if n.peak_heap_pressure is not None]
        outcomes: dict[str, list[str]] = {}
        for n in m.nodes:
            outcomes.setdefault(n.outcome, []).append(n.name)
        rows.append(
            [
                str(i),
                *(f"{m.point.heap}" if d == "heap" else str(int(x_value(m, d))) for d in swept or ("users",)),
                m.status,
                f"{lf.throughput:g}" if lf else "-",
                *(num(getattr(lf, q)) if lf else "-" for q in ("p50_ms", "p95_ms", "p99_ms")),
                f"{lf.error_rate:.2%}" if lf else "-",
                str(e.get("too_many_connections", "-")),
                str(e.get("pool_wait_timeout", "-")),
                f"{e.get('server_5xx', 0) + e.get('other', 0)}/{e.get('no_response', 0)}" if lf else "-",
                f"{num(db.peak_threads_connected) if db else '-'} / {num(db.max_used_connections) if db else '-'} / "
                f"{m.effective_max_connections}"
                + (f" (asked {m.max_connections})" if m.effective_max_connections != m.max_connections else ""),
                num(db.refused_connections) if db else "-",
                f"{num(nodes_mem)} / {m.node_memory_limit_mib}",
                num(db_mem),
                f"{max(pressures):.0%}" if pressures else "-",
                "; ".join(f"{k}: {','.join(v)}" for k, v in outcomes.items()) or "-",
                "short: " + ", ".join(f.split(":")[0] for f in m.preflight) if m.preflight else "ok",
                m.bottleneck.text().replace("|", "/") if m.bottleneck else "-",
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


BOTTLENECK_NOTE = (
    f"What saturated first at each point: CPU of each container from its cgroup's counters (a node's "
    f"API server is one Python process, so one CPU is its limit, or its CPU quota), Locust's own CPU "
    f"(the hottest of its processes), the database's connections (Threads_connected against max_connections, "
    f"refusals), InnoDB row lock time, each node's pool (requests that waited for a connection) and modelled "
    f"heap, all sampled every {SAMPLE_INTERVAL:g} s; saturated means {SATURATED:.0%} of the limit. Within one "
    f"sample a limit that refuses work is named before a CPU. A point where {', '.join(sorted(HARNESS))} "
    f"saturated first measured the harness, not what is being sized: it is never counted toward a recommendation."
)


def report_data(settings: Settings, measurements: Sequence[Measurement], meta: Mapping[str, Any]) -> dict[str, Any]:
    grid = Grid(settings, tuple(m.point for m in measurements))
    swept, target = grid.swept, grid.target_users
    return {
        "version": 1,
        **meta,
        "settings": asdict(settings),
        "swept": list(swept),
        "target_users": target,
        "points": [
            m.to_dict()
            | {
                "label": m.point.label(swept),
                "error_rate": m.error_rate,
                "failures": failures(m),
                "counts_for_sizing": m.counts_for_sizing,
            }
            for m in measurements
        ],
        "saturation": [asdict(s) for s in saturations(measurements, swept, settings.max_error_rate)],
        "recommendations": [
            asdict(r) | {"text": r.lines()}
            for r in recommend(measurements, target, settings.max_error_rate, settings.heap_scale)
        ],
        "guide": list(GUIDE_RULES),
        "heap_model": heap_model_note(settings.heap_scale),
    }


def write_json(
    directory: Path, settings: Settings, measurements: Sequence[Measurement], meta: Mapping[str, Any]
) -> Path:
    path = directory / "capacity.json"
    history.write_json(path, report_data(settings, measurements, meta))
    return path


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    plots: tuple[Path, ...]


def write_report(
    directory: Path, settings: Settings, measurements: Sequence[Measurement], meta: Mapping[str, Any]
) -> ReportFiles:
    """capacity.json, capacity.md and plots/<dimension>.png for every swept dimension."""
    if not measurements:
        raise BadInput(f"{directory}: no measured points to report")
    check_target(settings, (m.point for m in measurements))
    data = report_data(settings, measurements, meta)
    json_path = write_json(directory, settings, measurements, meta)
    plots = write_plots(directory / "plots", measurements, tuple(data["swept"]), settings.max_error_rate)
    md = directory / "capacity.md"
    md.write_text(markdown(data, measurements, plots, directory))
    return ReportFiles(json_path, md, tuple(plots))


def engine_lines(engine: Mapping[str, Any]) -> list[str]:
    """What ran the labs, when a swarm did: where each figure was read, and what machine CPU means."""
    if engine.get("kind") != "swarm":
        return []
    shared = (
        "the hosts are containers of this machine and share its CPUs, so machine CPU is all of them"
        if engine.get("made_here")
        else "machine CPU is the harness's machine only, not the hosts'"
    )
    return [
        f"Engine: a swarm stack on host group {engine.get('hosts', '?')} ({', '.join(engine.get('members', []))}); "
        "each container's memory (`docker stats`) and CPU (its cgroup's counters) read through the Docker of "
        f"the host that runs its task; Locust on this machine through the manager's published ports; {shared}."
    ]


def markdown(
    data: Mapping[str, Any], measurements: Sequence[Measurement], plots: Sequence[Path], directory: Path
) -> str:
    s = data["settings"]
    mach = data.get("machine", {})
    swept = data["swept"]
    fixed = [x_text(measurements[0], d) for d in DIMENSIONS if d not in swept]
    out = [
        f"# Capacity sweep ({data.get('created', 'unknown date')})",
        "",
        f"Machine: {mach.get('host', '?')}, {mach.get('cpus', '?')} CPUs, {mach.get('memory_gib', '?')} GiB, "
        f"{mach.get('os', '?')}, Docker {mach.get('docker', '?')}.",
        *engine_lines(data.get("engine") or {}),
        f"Each point: a fresh lab, {s['duration']:g} s of Locust `ApiUser` load through the load balancer "
        f"(spawn rate {s['spawn_rate']:g}/s, think time {s['think_time']} s), hard timeout "
        f"{Settings(**s).hard_timeout:g} s. Pool wait {s['pool_wait_ms']} ms, heap scale 1/{s['heap_scale']}, "
        f"node profile {s.get('profile', DEFAULT_PROFILE)}"
        + (f", every node's CPU quota {s['node_cpus']:g} CPU." if s.get("node_cpus") else "."),
        f"Fixed: {', '.join(fixed) or 'nothing'}. Swept: {', '.join(DIMENSION_TITLES[d] for d in swept) or 'nothing'}.",
        "",
        "## Measurements",
        "",
        table(measurements, swept),
        "",
        "ok req/s: successful requests per second. errors: failed requests other than 4xx, of all requests. "
        "DB conns: Threads_connected (highest sampled; counts the harness's own sampling connection), "
        "Max_used_connections, max_connections as the database reports it; DB refused: "
        "Connection_errors_max_connections. Memory: highest `docker stats` sample. Heap pressure: the modelled "
        "heap's used / budget, highest polled on any node (a node's last poll before it died, not its fatal peak).",
        "",
        "## What broke",
        "",
    ]
    threshold = data["settings"]["max_error_rate"]
    for m, p in zip(measurements, data["points"], strict=True):
        if p["failures"]:
            within = f" (within the {pct(threshold)} threshold)" if m.passed(threshold) else ""
            out.append(f"- **{p['label']}**: " + "; ".join(p["failures"]) + within)
            if p["preflight"]:
                out.append("  - pre-flight, on this sizing: " + "; ".join(p["preflight"]))
    if not any(p["failures"] for p in data["points"]):
        out.append("- nothing: every point kept every request within its limits")
    out += ["", "## Bottlenecks", "", BOTTLENECK_NOTE, ""]
    for m, p in zip(measurements, data["points"], strict=True):
        if m.bottleneck is None:
            continue
        bn = m.bottleneck
        when = f" at {bn.at_s:g} s" if bn.at_s is not None else ""
        out.append(f"- **{p['label']}**: {bn.name}{when}: {bn.evidence}")
        if bn.then:
            out.append(f"  - then: {', '.join(bn.then)}")
        if note := generator_note(m):
            out.append(f"  - {note}")
        if bn.harness_bound:
            out.append("  - not counted toward the sizing recommendation: the harness saturated first")
    out += ["", "## Saturation", ""]
    out += [f"- {s['dimension']} ({s['series']}): {s['note']}" for s in data["saturation"]] or [
        "- no dimension was swept with more than one value"
    ]
    out += ["", f"## Sizing recommendation (target {data['target_users']} users)", ""]
    for r in data["recommendations"]:
        out += r["text"] + [""]
    out += [
        "The guide's rules, for comparison: " + "; ".join(data["guide"]) + ".",
        "",
        "## The heap is a model",
        "",
        data["heap_model"],
        "",
    ]
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(directory)})" for p in plots] + [""]
    return "\n".join(out)


def load_report(directory: str | os.PathLike[str]) -> tuple[Settings, list[Measurement], dict[str, Any]]:
    """Read a sweep's capacity.json back (to render it again, e.g. with another threshold)."""
    path = Path(directory) / "capacity.json"
    try:
        data = json.loads(path.read_text())
        settings = Settings(**data["settings"])
        measurements = [Measurement.from_dict(p) for p in data["points"]]
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist: pass the folder a capacity sweep wrote") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a capacity report ({type(exc).__name__}: {exc})") from None
    return settings, measurements, {k: data[k] for k in ("created", "machine", "engine") if k in data}
