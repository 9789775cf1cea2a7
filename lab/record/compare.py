"""`halab report --compare RUN_A RUN_B [...]`: runs side by side, their differences flagged.

A run is either
- a run directory with `summary.json` (`halab load`, `halab run`, a Chaos Toolkit experiment; what
  `halab report` writes): one row for the whole run and one per fault, in the order they happened;
- a matrix run (a directory with `matrix.json`, or that file): one row per case (`n3 kill-leader`).
  Its latency comes from the size's `n<size>/history.jsonl` when the directory still has it.
Runs of the two kinds are not compared with each other: their rows mean different things.

For each row: the outcome observed (matrix), the verdict, availability (and of writes), time to
detect (the checker's: the first probe that saw a node leave active; a matrix case's: the load
balancer's drain), time to recover, heal to steady, latency p50/p95/p99, server restarts. For each
run: its verdict, profile and anomalies (checks that failed or were skipped, register anomalies,
the matrix's surprises and problems). A value is flagged when the runs differ by more than noise
(thresholds below); `compare_html` writes one self-contained page (inline CSS and PNG, no script).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import BadInput
from lab.record.checker import latency_percentiles
from lab.record.history import HISTORY_FILE, RequestRecord, load_run
from lab.record.report import _CSS, _fmt, _pct, _table

MATRIX_FILE = "matrix.json"
SUMMARY_FILE = "summary.json"
WHOLE_RUN = "whole run"

# Differences smaller than these are noise between two runs of the same lab, not findings.
FRACTION_STEP = 0.01  # availability: one point of the 99 % objective
SECONDS_STEP = 1.0  # detect/recover: a probe round and a client round trip or two...
SECONDS_RATIO = 1.5  # ...and half as long again as the shorter
LATENCY_RATIO = 1.5  # latency: half as slow again...
LATENCY_STEP = 5.0  # ...and at least 5 ms apart


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    kind: str  # category, fraction, seconds, ms, count (flagged when they differ); info (never)


METRICS = (
    Metric("outcome", "observed", "category"),
    Metric("verdict", "verdict", "category"),
    Metric("availability", "availability", "fraction"),
    Metric("write_availability", "writes ok", "fraction"),
    Metric("detect", "detect (s)", "seconds"),
    Metric("recover", "recover (s)", "seconds"),
    Metric("healed", "heal → steady (s)", "seconds"),
    Metric("p50", "p50 (ms)", "ms"),
    Metric("p95", "p95 (ms)", "ms"),
    Metric("p99", "p99 (ms)", "ms"),
    Metric("restarts", "server restarts", "count"),
    Metric("requests", "requests", "info"),
)
BY_NAME = {m.name: m for m in METRICS}


@dataclass(frozen=True)
class RunView:
    """One run as the comparison sees it."""

    path: Path
    kind: str  # "run" or "matrix"
    profile: str | None
    verdict: str
    facts: Mapping[str, str]  # shown per run: date, sizes, span, ...
    anomalies: tuple[str, ...]
    rows: Mapping[str, Mapping[str, Any]]  # row key -> metric name -> value (None: not measured)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Difference:
    key: str  # the row, or "run" for the runs' own verdict, profile and anomalies
    metric: str
    values: tuple[Any, ...]  # one per run, in order
    text: str


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunView, ...]
    keys: tuple[str, ...]  # every row key, in the first run's order, then the others'
    differences: tuple[Difference, ...]

    def values(self, key: str, metric: str) -> tuple[Any, ...]:
        return tuple((r.rows.get(key) or {}).get(metric) for r in self.runs)

    def measured(self, key: str, metric: str) -> tuple[bool, ...]:
        """Whether each run's row has the metric at all (a whole run has no time to recover; a value
        of None there means "never")."""
        return tuple(metric in (r.rows.get(key) or {}) for r in self.runs)

    def differs(self, key: str, metric: str) -> bool:
        return any(d.key == key and d.metric == metric for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [
                {
                    "label": label(i),
                    "name": r.name,
                    "path": str(r.path),
                    "kind": r.kind,
                    "profile": r.profile,
                    "verdict": r.verdict,
                    "facts": dict(r.facts),
                    "anomalies": list(r.anomalies),
                }
                for i, r in enumerate(self.runs)
            ],
            "rows": [
                {
                    "key": k,
                    "values": {m.name: list(self.values(k, m.name)) for m in METRICS},
                    "differs": [m.name for m in METRICS if self.differs(k, m.name)],
                }
                for k in self.keys
            ],
            "differences": [
                {"key": d.key, "metric": d.metric, "values": list(d.values), "text": d.text} for d in self.differences
            ],
        }


def label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


# ----------------------------------------------------------------------------------- reading


def load_view(path: str | Path) -> RunView:
    """A run directory (with summary.json), a matrix run directory, or its matrix.json."""
    p = Path(path)
    if p.is_file() and p.name == MATRIX_FILE:
        p = p.parent
    if (p / MATRIX_FILE).is_file():
        return _matrix_view(p, _read(p / MATRIX_FILE))
    if (p / SUMMARY_FILE).is_file():
        return _run_view(p, _read(p / SUMMARY_FILE))
    if p.is_dir() and (p / HISTORY_FILE).is_file():
        raise BadInput(f"{p}: no {SUMMARY_FILE} yet; build it with `halab report {p}`, then compare")
    raise BadInput(f"{p}: neither a run directory (with {SUMMARY_FILE}) nor a matrix run (with {MATRIX_FILE})")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: not readable as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a JSON object")
    return data


def _run_view(run: Path, s: Mapping[str, Any]) -> RunView:
    try:
        requests = load_run(run).requests
        rows: dict[str, dict[str, Any]] = {
            WHOLE_RUN: {
                "verdict": "passed" if s["passed"] else "failed",
                "availability": (s["requests"] - s["failed"]) / s["requests"] if s["requests"] else None,
                "write_availability": _write_share(requests),
                "requests": s["requests"],
                **_latency(requests),
            }
        }
        for i, f in enumerate(s["faults"], 1):
            rows[f"fault {i}: {f['fault']}"] = {
                "verdict": "recovered" if f["time_to_recover"] is not None else "not recovered",
                "availability": f["availability"],
                "detect": f["time_to_detect"],
                "recover": f["time_to_recover"],
                "healed": f["healed_to_recovered"],
                "requests": f["requests"],
                **_latency(requests, f["t0"], f["window_end"]),
            }
        anomalies = _check_anomalies("", s["outcomes"], s.get("registers"))
    except (KeyError, TypeError) as exc:
        raise BadInput(f"{run / SUMMARY_FILE}: not a summary `halab report` wrote (missing {exc})") from None
    journal = _read(run / "journal.json") if (run / "journal.json").is_file() else {}
    span = s.get("span") or {}
    return RunView(
        run,
        "run",
        (journal.get("lab") or {}).get("profile"),
        rows[WHOLE_RUN]["verdict"],
        {
            "requests": str(s["requests"]),
            "faults": str(len(s["faults"])),
            **({"seconds": f"{span['seconds']:.0f}"} if span.get("seconds") else {}),
        },
        tuple(anomalies),
        rows,
    )


def _matrix_view(run: Path, m: Mapping[str, Any]) -> RunView:
    try:
        histories: dict[int, Sequence[RequestRecord]] = {}
        rows: dict[str, dict[str, Any]] = {}
        anomalies: list[str] = []
        for c in m["cases"]:
            size, ms = c["size"], c["measures"]
            if size not in histories:
                sub = run / f"n{size}"
                histories[size] = load_run(sub).requests if (sub / HISTORY_FILE).is_file() else ()
            key = f"n{size} {c['case']}"
            restarts = ms.get("restarts") or {}
            rows[key] = {
                "outcome": c["observed"],
                "verdict": c["verdict"],
                "availability": ms["share"],
                "write_availability": ms["write_share"],
                "detect": ms["drain"],
                "recover": ms["recover"],
                "healed": c["healed"],
                "restarts": sum(v for v in restarts.values() if v) if isinstance(restarts, dict) else None,
                "requests": ms["requests"],
                **(_latency(histories[size], c["t0"], c["t_end"]) if histories[size] else {}),
            }
            if c.get("surprise"):
                anomalies.append(f"{key}: surprise, the model predicted {c['predicted']}, observed {c['observed']}")
            anomalies += [f"{key}: {p}" for p in [*(c.get("problems") or ()), *(c.get("safety") or ())]]
        for size, checks in (m.get("checks") or {}).items():
            outcomes = [{"name": k, **v} for k, v in checks.items() if k != "registers"]
            anomalies += _check_anomalies(f"{size}: ", outcomes, checks.get("registers"))
        verdict = "holds" if m["holds"] else "does not hold"
        verdict += "" if m["as_predicted"] else ", surprises"
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"{run / MATRIX_FILE}: not a matrix `halab matrix` wrote (missing {exc})") from None
    return RunView(
        run,
        "matrix",
        m.get("profile"),
        verdict,
        {
            "date": str(m.get("date", "?")),
            "sizes": ",".join(str(n) for n in m.get("sizes", ())),
            "cases": str(len(m["cases"])),
            "machine": _machine(m.get("machine")),
        },
        tuple(anomalies),
        rows,
    )


def _machine(machine: Any) -> str:
    if not isinstance(machine, dict):
        return "?"
    return f"{machine.get('cpus', '?')} CPUs, Docker {machine.get('docker', '?')}"


def _latency(requests: Sequence[RequestRecord], t0: float = float("-inf"), t1: float = float("inf")) -> dict[str, Any]:
    p50, p95, p99 = latency_percentiles(r for r in requests if t0 <= r.t0 <= t1)
    return {"p50": p50, "p95": p95, "p99": p99}


def _write_share(requests: Sequence[RequestRecord]) -> float | None:
    writes = [r for r in requests if r.write]
    return sum(r.ok for r in writes) / len(writes) if writes else None


def _check_anomalies(prefix: str, outcomes: Sequence[Mapping[str, Any]], registers: Any) -> list[str]:
    """Checks that failed or did not run, and the register checker's anomalies, one line each."""
    out = []
    for o in outcomes:
        violations = o["violations"]
        count = violations if isinstance(violations, int) else len(violations)
        if o["status"] == "failed":
            out.append(f"{prefix}{o['name']} failed: {count} violation(s) of {o['checked']}")
        elif o["status"] == "skipped":
            out.append(f"{prefix}{o['name']} skipped")
    if isinstance(registers, dict):
        out += [f"{prefix}registers: {kind} {n}" for kind, n in (registers.get("anomalies") or {}).items() if n]
    return out


# ----------------------------------------------------------------------------------- compare


def compare(paths: Sequence[str | Path]) -> Comparison:
    if len(paths) < 2:
        raise BadInput("--compare: name at least two runs")
    runs = tuple(load_view(p) for p in paths)
    kinds = {r.kind for r in runs}
    if len(kinds) > 1:
        raise BadInput(
            "--compare: matrix runs and load runs do not compare ("
            + ", ".join(f"{r.path} is a {'matrix run' if r.kind == 'matrix' else 'run'}" for r in runs)
            + ")"
        )
    keys = tuple(dict.fromkeys(k for r in runs for k in r.rows))
    diffs: list[Difference] = []
    for field, values in (
        ("verdict", tuple(r.verdict for r in runs)),
        ("profile", tuple(r.profile for r in runs)),
        ("anomalies", tuple(len(r.anomalies) for r in runs)),
    ):
        if len(set(values)) > 1:
            diffs.append(Difference("run", field, values, f"{field}: {_listing(values, str)}"))
    for key in keys:
        absent = [r for r in runs if key not in r.rows]
        if absent:
            names = ", ".join(f"{label(runs.index(r))} {r.name}" for r in absent)
            diffs.append(Difference(key, "present", tuple(key in r.rows for r in runs), f"{key}: not in {names}"))
            continue
        for m in METRICS:
            values = tuple(r.rows[key].get(m.name) for r in runs)
            if _differ(m.kind, values):
                diffs.append(Difference(key, m.name, values, f"{key}: {m.label} {_listing(values, _shower(m))}"))
    return Comparison(runs, keys, tuple(diffs))


def _listing(values: Sequence[Any], show: Callable[[Any], str]) -> str:
    return ", ".join(f"{show(v)} ({label(i)})" for i, v in enumerate(values))


def _differ(kind: str, values: Sequence[Any]) -> bool:
    known = [v for v in values if v is not None]
    if kind == "info" or not known:
        return False
    if kind in ("category", "count"):
        return len(set(values)) > 1
    if len(known) < len(values):  # measured in one run, never in another (never drained, never recovered)
        return kind != "ms"  # latency missing is a run that recorded no requests there, not a finding
    low, high = min(known), max(known)
    if kind == "fraction":
        return bool(high - low >= FRACTION_STEP)
    if kind == "seconds":
        return bool(high - low >= SECONDS_STEP and high >= SECONDS_RATIO * low)
    return bool(high - low >= LATENCY_STEP and high >= LATENCY_RATIO * low)


def _shower(m: Metric) -> Callable[[Any], str]:
    def show(v: Any) -> str:
        if v is None:
            return "never" if m.kind == "seconds" else "–"
        if m.kind == "fraction":
            return _pct(v)
        if m.kind == "seconds":
            return _fmt(v, 1)
        if m.kind == "ms":
            return _fmt(v, 0)
        return str(v)

    return show


# ----------------------------------------------------------------------------------- page

_COMPARE_CSS = """
td.diff{background:#fff3e0;font-weight:600} .scroll{overflow-x:auto} th.run{font-weight:400;color:#616161}
"""


def compare_html(c: Comparison) -> str:
    runs = _table(
        ("run", "name", "kind", "profile", "verdict", "facts", "anomalies"),
        [
            [
                label(i),
                html.escape(r.name),
                r.kind,
                html.escape(r.profile or "?"),
                html.escape(r.verdict),
                html.escape("; ".join(f"{k} {v}" for k, v in r.facts.items())),
                str(len(r.anomalies)),
            ]
            for i, r in enumerate(c.runs)
        ],
    )
    anomalies = "".join(
        f"<h3>{label(i)} {html.escape(r.name)}</h3>"
        + (
            "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in r.anomalies) + "</ul>"
            if r.anomalies
            else "<p>none</p>"
        )
        for i, r in enumerate(c.runs)
    )
    diffs = (
        "<ul>" + "".join(f"<li>{html.escape(d.text)}</li>" for d in c.differences) + "</ul>"
        if c.differences
        else "<p>None beyond noise.</p>"
    )
    chart = _chart(c)
    image = f'<img alt="availability and recovery" src="data:image/png;base64,{chart}">' if chart else ""
    title = " vs ".join(r.name for r in c.runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ha-lab: {html.escape(title)}</title>
<style>{_CSS}{_COMPARE_CSS}</style></head><body>
<h1>ha-lab runs compared</h1>
{runs}
<h2>Differences</h2>{diffs}
<p><small>Flagged: another outcome or verdict; availability {100 * FRACTION_STEP:g} % or more apart;
times {SECONDS_STEP:g} s and {SECONDS_RATIO:g}&times; or more apart, or measured in one run and never in
another; latency {LATENCY_STEP:g} ms and {LATENCY_RATIO:g}&times; or more apart; other server restarts.
Detect: a load run's first probe that saw a node leave active; a matrix case's load balancer drain.</small></p>
<h2>Side by side</h2><div class="scroll">{_side_by_side(c)}</div>
{image}
<h2>Anomalies</h2>{anomalies}
</body></html>
"""


def _side_by_side(c: Comparison) -> str:
    shown = [m for m in METRICS if any(v is not None for k in c.keys for v in c.values(k, m.name))]
    n = len(c.runs)
    head = "<tr><th rowspan=2>row</th>" + "".join(f"<th colspan={n}>{html.escape(m.label)}</th>" for m in shown)
    head += "</tr><tr>" + "".join(f'<th class="run">{label(i)}</th>' for _ in shown for i in range(n)) + "</tr>"
    body = ""
    for k in c.keys:
        cells = ""
        for m in shown:
            show = _shower(m)
            cls = ' class="diff"' if c.differs(k, m.name) else ""
            cells += "".join(
                f"<td{cls}>{html.escape(show(v)) if has else ''}</td>"
                for v, has in zip(c.values(k, m.name), c.measured(k, m.name), strict=True)
            )
        body += f"<tr><td>{html.escape(k)}</td>{cells}</tr>"
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _chart(c: Comparison) -> str:
    """Availability and time to recover per row, one bar per run, as a base64 PNG ("" without data)."""
    keys = [k for k in c.keys if any(v is not None for v in c.values(k, "availability"))]
    if not keys:
        return ""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    n = len(c.runs)
    height = 0.8 / n
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.28 * len(keys) * max(1, n / 2)), dpi=90, sharey=True)
    for ax, metric, xlabel in (
        (axes[0], "availability", "availability (%)"),
        (axes[1], "recover", "time to recover (s)"),
    ):
        for i in range(n):
            values = [c.values(k, metric)[i] for k in keys]
            measured = [c.measured(k, metric)[i] for k in keys]
            ys = [row + (i - (n - 1) / 2) * height for row in range(len(keys))]
            xs = [0.0 if v is None else (100 * v if metric == "availability" else v) for v in values]
            ax.barh(ys, xs, height=height, label=f"{label(i)} {c.runs[i].name}")
            for y, v, has in zip(ys, values, measured, strict=True):
                if v is None and has:  # a bar of nothing would read as "at once"
                    ax.text(0, y, " never" if metric == "recover" else " –", va="center", fontsize=7)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(keys)), keys, fontsize=8)
    axes[0].invert_yaxis()
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_comparison(c: Comparison, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compare_html(c), encoding="utf-8")
    return path
