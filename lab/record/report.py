"""A run directory's report: `summary.json`, `junit.xml`, `report.html` and `plots/*.png`.

`build_report(run_dir)` rebuilds everything from what the run recorded (history, ledger, the
database snapshot `db_rows.json`, `journal.json`, `load.json`, `metrics.json` from a lab with
monitoring), so `halab report runs/...` gives the same answer every time. Given a `query`, it
first takes the snapshot (after heal) and saves it.
The HTML embeds its plots as base64 PNG and uses no script, font or stylesheet from anywhere:
it opens offline and can be mailed around as one file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.chaos.judge import judge
from lab.core.errors import BadInput
from lab.record import metrics, registers
from lab.record.checker import CheckConfig, CheckResult, FaultStats, Query
from lab.record.history import FaultRecord, History, ProbeRecord, write_json
from lab.record.load import GeneratorCpu
from lab.record.timeline import timeline_svg

CONFIG_FILE = "check_config.json"
PLOTS = ("requests", "failures", "latency", "nodes")
NODE_COLORS = {"active": "#2e7d32", "starting": "#1565c0", "degraded": "#ef6c00", "unreachable": "#c62828"}
OTHER_COLOR = "#9e9e9e"
FAILURE_COLORS = {"no response": "#b71c1c", "5xx": "#ef6c00", "4xx": "#6a1b9a"}
FAULT_COLOR = "#d32f2f"
NODE_SERIES_COLORS = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f")  # a node's colour in the metric plots
OTHER_SERIES_COLORS = ("#455a64", "#8e24aa")  # the database's and the load balancer's series


@dataclass(frozen=True)
class ReportFiles:
    summary: Path
    junit: Path
    html: Path
    plots: tuple[Path, ...]
    result: CheckResult
    limits: tuple[str, ...] = ()  # what bounded the figures (`limits`)


def build_report(
    run_dir: str | os.PathLike[str], query: Query | None = None, config: CheckConfig | None = None
) -> ReportFiles:
    """Check the run and write its report files; see the module docstring."""
    run = Path(run_dir)
    if not run.is_dir():
        raise BadInput(f"{run} is not a run directory")
    if config is not None:
        write_json(run / CONFIG_FILE, asdict(config))
    elif (run / CONFIG_FILE).exists():
        config = CheckConfig(**_read_json(run / CONFIG_FILE))
    judged = judge(run, query, config)
    history, result = judged.history, judged.result

    plots = write_plots(run / "plots", history, result)
    series = metrics.load(run)
    metric_plots = write_metric_plots(run / "plots", history, series) if series else {}
    ops = registers.load_ops(run) or []
    marked = [i for f in (result.registers.findings if result.registers else ()) for i in f.ops]
    svg = timeline_svg(history, ops, marked)
    journal = _read_json(run / "journal.json") if (run / "journal.json").exists() else None
    load = _read_json(run / "load.json") if (run / "load.json").exists() else None
    summary, junit, page = run / "summary.json", run / "junit.xml", run / "report.html"
    files = sorted({p.name for p in run.iterdir() if p.is_file()} | {summary.name, junit.name, page.name})
    bounds = limits(run, load)
    recorded = metrics.counts(series) if series else None
    write_json(summary, summary_data(run, history, result, load, files) | {"limits": bounds, "metrics": recorded})
    junit.write_bytes(junit_xml(run.name, result))
    section = metrics_html(metric_plots, series is not None)
    page.write_text(
        report_html(run.name, history, result, plots, journal, load, files, svg, bounds, section), encoding="utf-8"
    )
    return ReportFiles(summary, junit, page, (*plots.values(), *metric_plots.values()), result, tuple(bounds))


BOTTLENECK_FILE = "bottleneck.json"  # what saturated first, from `halab load`'s sampler (lab/capacity/sampler.py)


def limits(run: Path, load: Any) -> list[str]:
    """What bounded the run's figures, in words: the bottleneck and the load generator's CPU."""
    out = []
    if (run / BOTTLENECK_FILE).exists():
        out.append(f"Bottleneck (what saturated first): {_read_json(run / BOTTLENECK_FILE).get('text', '?')}")
    found = ((load or {}).get("result") or {}).get("generator_cpu") if isinstance(load, dict) else None
    if found:
        g = GeneratorCpu(**found)
        out.append(g.figures_line() + (f"; {g.hint(int(load['spec'].get('processes', 1)))}" if g.hot else ""))
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from None


# ----------------------------------------------------------------------------- summary and JUnit


def _nodes_html(journal: Any) -> str:
    """The node profile and each node's API server restarts, from a scenario's journal."""
    if not isinstance(journal, dict) or not isinstance(journal.get("server_restarts"), dict):
        return ""
    restarts = ", ".join(
        f"{html.escape(str(n))}: {'?' if c is None else c}" for n, c in journal["server_restarts"].items()
    )
    profile = html.escape(str((journal.get("lab") or {}).get("profile", "?")))
    return (
        f"<p>Node profile {profile}. API server restarts since each node's container started, at the end "
        f"of the run (a rancher-1.0 server exits on a lost ZooKeeper session): {restarts}.</p>\n"
    )


def summary_data(run: Path, history: History, result: CheckResult, load: Any, files: Sequence[str]) -> dict[str, Any]:
    span = history.span
    d = result.to_dict()
    d.update(
        {
            "run": run.name,
            "span": {"t0": span[0], "t1": span[1], "seconds": span[1] - span[0]} if span else None,
            "probes": len(history.probes),
            "skipped_history_lines": history.skipped_lines,
            "load": load.get("result") if isinstance(load, dict) else None,
            "files": list(files),
        }
    )
    return d


def junit_xml(run_name: str, result: CheckResult) -> bytes:
    """One test case per check and one per fault ("recovered"), for CI test reports."""
    suite = ET.Element("testsuite", name=f"halab.{run_name}")
    cases = 0
    failures = 0
    skipped = 0
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", classname="halab.checks", name=o.name)
        cases += 1
        if o.status == "skipped":
            ET.SubElement(case, "skipped", message=o.note)
            skipped += 1
        elif o.status == "failed":
            failure = ET.SubElement(case, "failure", message=f"{len(o.violations)} violation(s) of {o.checked} checked")
            failure.text = "\n".join(f"{v.subject}: {v.detail}" for v in o.violations)
            failures += 1
        if o.note and o.status != "skipped":
            ET.SubElement(case, "system-out").text = o.note
    for f in result.faults:
        case = ET.SubElement(
            suite, "testcase", classname="halab.faults", name=f"{f.id} {f.fault} {','.join(f.targets)}: recovered"
        )
        cases += 1
        ET.SubElement(case, "system-out").text = json.dumps(asdict(f), default=str)
        if f.time_to_recover is None:
            ET.SubElement(case, "failure", message=f"clients did not recover after {f.fault} of {','.join(f.targets)}")
            failures += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites")
    root.append(suite)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


# ----------------------------------------------------------------------------- plots


def node_state(p: ProbeRecord) -> str:
    if p.active:
        return "active"
    if p.ping is None:
        return "unreachable"
    return p.state if p.state in NODE_COLORS and p.state != "active" else "not active"


def _status_class(status: int) -> str:
    return "no response" if status == 0 else f"{status // 100}xx"


@dataclass(frozen=True)
class TimeAxis:
    """The time axis every plot of a run shares: seconds since its first record, faults shaded."""

    t_ref: float
    xlim: tuple[float, float]
    faults: tuple[FaultRecord, ...]

    @classmethod
    def of(cls, history: History) -> TimeAxis:
        span = history.span or (0.0, 1.0)
        t_ref = math.floor(span[0])
        return cls(t_ref, (0, max(1.0, span[1] - t_ref)), tuple(history.faults))

    def figure(self, plt: Any, title: str, ylabel: str) -> tuple[Any, Any]:
        fig, ax = plt.subplots(figsize=(11, 2.8), dpi=90)
        fig.subplots_adjust(left=0.07, right=0.84, top=0.86, bottom=0.2)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("seconds since the run began", fontsize=9)
        ax.set_xlim(*self.xlim)
        ax.grid(alpha=0.3)
        for f in self.faults:
            ax.axvspan(f.t0 - self.t_ref, f.t1 - self.t_ref, color=FAULT_COLOR, alpha=0.12, lw=0)
            ax.text(
                f.t0 - self.t_ref,
                1.0,
                f" {f.id}: {f.fault} {','.join(f.targets)}",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                va="top",
                color=FAULT_COLOR,
            )
        return fig, ax


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, ax: Any, path: Path, empty: bool) -> Path:
    if empty:
        ax.text(0.5, 0.5, "nothing recorded", transform=ax.transAxes, ha="center", color=OTHER_COLOR)
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(plots_dir: Path, history: History, result: CheckResult) -> dict[str, Path]:
    """The four timeline PNGs, on one time axis (seconds since the run began)."""
    import matplotlib.ticker

    plt = _pyplot()
    plots_dir.mkdir(parents=True, exist_ok=True)
    axis = TimeAxis.of(history)
    t_ref = axis.t_ref
    secs = result.seconds
    xs = [s.t - t_ref for s in secs]

    def figure(title: str, ylabel: str) -> tuple[Any, Any]:
        return axis.figure(plt, title, ylabel)

    out: dict[str, Path] = {}

    def save(name: str, fig: Any, ax: Any, empty: bool) -> None:
        out[name] = _save(plt, fig, ax, plots_dir / f"{name}.png", empty)

    def steps(ax: Any, values: Sequence[float | None], **style: Any) -> None:
        """One horizontal step per second, the last one included; None leaves a gap."""
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pts:
            pts.append((pts[-1][0] + 1, pts[-1][1]))
            ax.plot([x for x, _ in pts], [v for _, v in pts], drawstyle="steps-post", lw=1, **style)

    fig, ax = figure("Requests per second (by start time)", "requests/s")
    steps(ax, [s.total for s in secs], color="#455a64", label="started")
    steps(ax, [s.ok for s in secs], color="#2e7d32", label="succeeded")
    ax.set_ylim(bottom=0)
    save("requests", fig, ax, not history.requests)

    fig, ax = figure("Failed requests per second", "failures/s")
    by_class: dict[str, dict[int, int]] = {}
    for r in history.requests:
        if not r.ok:
            counts = by_class.setdefault(_status_class(r.status), {})
            counts[math.floor(r.t0)] = counts.get(math.floor(r.t0), 0) + 1
    bottom = [0] * len(secs)
    for name in sorted(by_class):
        heights = [by_class[name].get(s.t, 0) for s in secs]
        ax.bar(
            xs,
            heights,
            width=1.0,
            bottom=bottom,
            align="edge",
            label=name,
            lw=0,
            color=FAILURE_COLORS.get(name, OTHER_COLOR),
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    save("failures", fig, ax, not history.requests)

    fig, ax = figure("Latency per second (requests started that second)", "ms")
    for q, color in (("p50", "#1565c0"), ("p95", "#ef6c00"), ("p99", "#c62828")):
        steps(ax, [getattr(s, q) for s in secs], color=color, label=q)
    if any(s.total for s in secs):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    save("latency", fig, ax, not history.requests)

    fig, ax = figure("Node state as probed (/ping through the load balancer)", "")
    nodes = sorted({p.node for p in history.probes})
    for row, node in enumerate(nodes):
        probes = [p for p in history.probes if p.node == node]
        for p, nxt in zip(probes, [*probes[1:], None], strict=True):
            end = nxt.t0 if nxt is not None else p.t1
            state = node_state(p)
            ax.broken_barh(
                [(p.t0 - t_ref, max(end - p.t0, 0.05))],
                (row - 0.35, 0.7),
                color=NODE_COLORS.get(state, OTHER_COLOR),
                lw=0,
            )
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, max(len(nodes), 1) - 0.4)
    if nodes:
        for state, color in [*NODE_COLORS.items(), ("not active", OTHER_COLOR)]:
            ax.bar([0], [0], color=color, label=state)  # legend entries only
    save("nodes", fig, ax, not history.probes)
    return out


def write_metric_plots(plots_dir: Path, history: History, series: Mapping[str, Any]) -> dict[str, Path]:
    """One PNG per family of metrics.json (lab/record/metrics.py), on the run's time axis. A node
    has one colour in every plot; a family's second query is drawn dashed."""
    plt = _pyplot()
    plots_dir.mkdir(parents=True, exist_ok=True)
    axis = TimeAxis.of(history)
    families = series.get("families", [])
    nodes = sorted({s["node"] for f in families for s in f["series"] if s.get("node")})
    colors = {n: NODE_SERIES_COLORS[i % len(NODE_SERIES_COLORS)] for i, n in enumerate(nodes)}
    out: dict[str, Path] = {}
    for family in families:
        fig, ax = axis.figure(plt, f"{family['title']} (Prometheus)", family["unit"])
        drawn = False
        for s in family["series"]:
            points = s["points"]
            if any(v is not None for _, v in points):
                ax.plot(
                    [t - axis.t_ref for t, _ in points],
                    [math.nan if v is None else v for _, v in points],  # NaN: a gap where nothing was scraped
                    lw=1,
                    ls="--" if s.get("query") else "-",
                    color=colors.get(s.get("node") or "", OTHER_SERIES_COLORS[s.get("query", 0) % 2]),
                    label=s["name"],
                )
                drawn = True
        ax.set_ylim(bottom=0)
        name = f"metric-{family['key']}"
        out[name] = _save(plt, fig, ax, plots_dir / f"{name}.png", not drawn)
    return out


# ----------------------------------------------------------------------------- HTML


def _fmt(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _status(status: str) -> str:
    return f'<span class="{status}">{html.escape(status)}</span>'


def fault_rows(faults: Sequence[FaultStats], t_ref: float) -> list[list[str]]:
    return [
        [
            html.escape(f.id),
            html.escape(f.fault),
            html.escape(", ".join(f.targets)),
            _fmt(f.t0 - t_ref, 1),
            _fmt(f.t1 - f.t0, 1),
            str(f.requests),
            str(f.failed),
            str(f.failed_idempotent),
            _pct(f.availability),
            _pct(f.min_second_availability),
            _fmt(f.time_to_detect, 2, " s"),
            _fmt(f.time_to_recover, 2, " s"),
            _fmt(f.healed_to_recovered, 2, " s"),
            _pct(f.budget_consumed),
            str(f.fenced_acks),
        ]
        for f in faults
    ]


FAULT_HEADERS = (
    "fault",
    "kind",
    "targets",
    "at (s)",
    "held (s)",
    "requests",
    "failed",
    "failed idempotent",
    "availability",
    "worst second",
    "time to detect",
    "time to recover",
    "after heal",
    "error budget used",
    "fenced acks",
)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212121;max-width:1100px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.passed{color:#2e7d32;font-weight:600} .failed{color:#c62828;font-weight:600} .skipped{color:#757575}
.verdict{font-size:18px} img{display:block;max-width:100%;margin:4px 0}
pre{background:#fafafa;border:1px solid #eee;padding:8px;overflow:auto;font-size:11px;max-height:400px}
small{color:#757575}
"""


def _registers_html(result: CheckResult) -> str:
    """The register workload: what was checked, anomalies by kind, indeterminate writes, witnesses."""
    r = result.registers
    if r is None:
        return ""
    by_type = ", ".join(f"{n} {t}" for t, n in sorted(r.by_type.items())) or "none"
    anomalies = ", ".join(f"{k} {n}" for k, n in r.anomalies.items())
    resolved = ", ".join(f"{k} {n}" for k, n in r.indeterminate.items())
    witnesses = "".join(
        f"<details><summary>{html.escape(f.check)}: {html.escape(f.kind)} on {html.escape(f.key)}"
        + "".join(f' <a href="#op-{i}">#{i}</a>' for i in f.ops[:8])
        + "</summary>"
        f"<p>{html.escape(f.detail)}</p><pre>{html.escape(chr(10).join(f.witness))}</pre></details>"
        for f in r.findings[:50]
    )
    return (
        f"<h2>Registers</h2><p>{r.ops} register operations ({html.escape(by_type)}). Linearizability: "
        f"{html.escape(r.linearizable)}, {r.ops_checked} operations checked. Session guarantees: "
        f"{html.escape(r.sessions)}, {r.reads_checked} reads checked; anomalies: {html.escape(anomalies)}. "
        f"Indeterminate writes: {html.escape(resolved)}.</p>{witnesses}\n"
    )


def _img(name: str, path: Path) -> str:
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def metrics_html(plots: Mapping[str, Path], recorded: bool) -> str:
    """The metrics section: the plots of metrics.json, or what they would have shown."""
    if recorded:
        return (
            "<h2>Metrics</h2><p><small>From the lab's Prometheus, scraped every second (metrics.json); "
            "the same time axis and fault windows as the plots above. A gap: the target did not answer "
            "(a killed node, a member not serving).</small></p>\n" + "".join(_img(n, p) for n, p in plots.items())
        )
    shown = "; ".join(f.title.lower() for f in metrics.FAMILIES)
    return (
        "<h2>Metrics</h2><p>Not recorded: this run's lab had no monitoring. On a lab started with "
        "<code>halab up --monitoring</code>, this section plots, from Prometheus and on the time axis "
        f"above with the fault windows shaded: {html.escape(shown)}.</p>\n"
    )


def report_html(
    run_name: str,
    history: History,
    result: CheckResult,
    plots: Mapping[str, Path],
    journal: Any,
    load: Any,
    files: Sequence[str],
    timeline: str = "",
    bounds: Sequence[str] = (),
    metrics_section: str = "",
) -> str:
    span = history.span
    t_ref = math.floor(span[0]) if span else 0.0
    verdict = "passed" if result.passed else "failed"
    unproven = [o.name for o in result.outcomes if o.status == "skipped"]
    why = f" ({', '.join(unproven)} skipped: a check that did not run proves nothing)" if unproven else ""
    checks = _table(
        ("check", "status", "checked", "violations", "note"),
        [
            [html.escape(o.name), _status(o.status), str(o.checked), str(len(o.violations)), html.escape(o.note)]
            for o in result.outcomes
        ],
    )
    violations = [
        f"<li><b>{html.escape(o.name)}</b> {html.escape(v.subject)} "
        f"{'' if v.t is None else f'at {v.t - t_ref:.2f} s'}: {html.escape(v.detail)}</li>"
        for o in result.outcomes
        for v in o.violations[:50]
    ]
    images = "".join(_img(name, path) for name, path in plots.items())
    totals = (
        f"{result.requests} requests, {result.failed} failed ({result.failed_idempotent} idempotent), "
        f"{result.acks} acknowledged writes, {len(history.probes)} probes, {len(history.faults)} faults"
        + (f", over {span[1] - span[0]:.1f} s" if span else "")
    )
    extra = "".join(
        f"<details><summary>{title}</summary>"
        f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre></details>"
        for title, data in (("journal.json", journal), ("load.json", load))
        if data is not None
    )
    files_html = ", ".join(
        f'<a href="{html.escape(n)}">{html.escape(n)}</a>' if n.endswith(".html") else html.escape(n) for n in files
    )
    faults = (
        _table(FAULT_HEADERS, fault_rows(result.faults, t_ref), "faults")
        if result.faults
        else "<p>No faults in this run.</p>"
    )
    nodes = _nodes_html(journal)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ha-lab run {html.escape(run_name)}</title>
<style>{_CSS}</style></head><body>
<h1>ha-lab run {html.escape(run_name)}</h1>
<p class="verdict">Verdict: {_status(verdict)}{html.escape(why)}</p>
<p>{html.escape(totals)}</p>
{"".join(f"<p>{html.escape(line)}</p>" for line in bounds)}
<h2>Checks</h2>{checks}
{"<ul>" + "".join(violations) + "</ul>" if violations else ""}
{_registers_html(result)}{nodes}<h2>Faults</h2>{faults}
<p><small>Times in seconds from the run's first record. Time to detect: fault start to the first probe
that saw a node leave <i>active</i>. Time to recover: fault start to the first success after which
clients saw no failure for {result.config.stable_seconds:g} s. Error budget: failed requests in the window
over (1 &minus; {result.config.slo:g}) &times; all requests of the run. See lab/checker.py.</small></p>
<h2>Timeline</h2>
<p><small>Faults shaded; nodes' HA state (green active, blue starting, orange degraded, red unreachable);
requests per answering node and second (green none failed, red all); register operations from invoke
to completion (green ok, grey fail, yellow info), those behind an anomaly outlined in red (the links
above jump to them). Hover for details.</small></p>
{timeline}
{images}
{metrics_section}
<h2>Recorded files</h2><p>{files_html}, plots/*.png</p>
{extra}
</body></html>
"""
