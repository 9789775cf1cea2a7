"""A run's timeline as one inline SVG, in the spirit of Jepsen's: every row shares one time axis.

- faults: a shaded band across every row from apply to heal, labelled;
- nodes: one row per node, its HA state as the probes saw it (active, starting, degraded, unreachable);
- requests: one row per node that answered (and one for requests no node answered), each second a
  cell coloured by the share of that node's requests that failed in it;
- register clients: one row per client process, each operation a bar from invoke to completion
  (ok, fail; `info` to where the client gave up, in yellow); an operation behind an anomaly has a
  red outline and an id (`op-<index>`) the report's anomaly list links to.

Pure: fed the recorded history, ops and findings; the SVG needs no script nor stylesheet.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from lab.record.history import History, ProbeRecord
from lab.record.ops import Op

WIDTH = 1100  # the plot area, px
LABEL = 110  # the row labels' column
ROW = 14
GAP = 10  # between sections
STATE_COLORS = {"active": "#2e7d32", "starting": "#1565c0", "degraded": "#ef6c00", "unreachable": "#c62828"}
OP_COLORS = {"ok": "#43a047", "fail": "#9e9e9e", "info": "#fbc02d"}
ANOMALY = "#d50000"


def _state(p: ProbeRecord) -> str:
    if p.ping is None:
        return "unreachable"
    return p.state or ("active" if p.ping == 200 else "degraded")


def _failed_share_color(share: float) -> str:
    """Green (none failed) through orange to red (all failed)."""
    r = int(67 + (213 - 67) * share)
    g = int(160 - (160 - 0) * share)
    return f"#{r:02x}{g:02x}{int(71 * (1 - share)):02x}"


class _Canvas:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, max(end, start + 1.0)
        self.y = 24.0
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return LABEL + (min(max(t, self.start), self.end) - self.start) / (self.end - self.start) * WIDTH

    def label(self, text: str) -> None:
        self.parts.append(
            f'<text x="{LABEL - 4}" y="{self.y + ROW - 3:.1f}" text-anchor="end">{html.escape(text[:18])}</text>'
        )

    def bar(self, t0: float, t1: float, color: str, title: str, extra: str = "") -> None:
        x0, x1 = self.x(t0), self.x(t1)
        self.parts.append(
            f'<rect x="{x0:.2f}" y="{self.y + 1:.1f}" width="{max(x1 - x0, 0.8):.2f}" height="{ROW - 2}" '
            f'fill="{color}"{extra}><title>{html.escape(title)}</title></rect>'
        )

    def heading(self, text: str) -> None:
        self.y += GAP
        self.parts.append(f'<text x="2" y="{self.y + 9:.1f}" font-weight="bold">{html.escape(text)}</text>')
        self.y += 12


def timeline_svg(history: History, ops: Sequence[Op] = (), marked: Iterable[int] = ()) -> str:
    """The SVG (an empty string for an empty run); `marked`: indices of the ops behind anomalies."""
    span = history.span
    op_times = [t for op in ops for t in (op.invoke, op.complete) if math.isfinite(t)]
    if not span and not op_times:
        return ""
    start = min([*(span or ()), *op_times])
    end = max([*(span or ()), *op_times])
    c = _Canvas(start, end)
    marked_set = set(marked)

    nodes = sorted({p.node for p in history.probes})
    if nodes:
        c.heading("nodes (HA state as probed)")
        by_node: dict[str, list[ProbeRecord]] = defaultdict(list)
        for p in history.probes:
            by_node[p.node].append(p)
        for n in nodes:
            c.label(n)
            probes = by_node[n]
            for p, nxt in zip(probes, [*probes[1:], None], strict=True):
                state = _state(p)
                until = nxt.t0 if nxt else p.t1
                c.bar(p.t0, until, STATE_COLORS.get(state, "#9e9e9e"), f"{n}: {state} from {p.t0 - start:.1f} s")
            c.y += ROW

    if history.requests:
        c.heading("requests by the node that answered (share failed per second)")
        cells: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for r in history.requests:
            cell = cells[r.node or "no node"][int(r.t0 - start)]
            cell[0] += 1
            cell[1] += 0 if r.ok else 1
        for n in sorted(cells, key=lambda k: (k == "no node", k)):
            c.label(n)
            for second, (total, failed) in sorted(cells[n].items()):
                share = failed / total
                c.bar(
                    start + second,
                    start + second + 1,
                    _failed_share_color(share),
                    f"{n}, {second}-{second + 1} s: {failed} of {total} failed",
                )
            c.y += ROW

    if ops:
        c.heading("register clients (bars: invoke to completion)")
        by_process: dict[str, list[Op]] = defaultdict(list)
        for op in ops:
            by_process[op.process].append(op)
        for process in sorted(by_process):
            c.label(process)
            for op in by_process[process]:
                end_t = op.complete if math.isfinite(op.complete) else end
                extra = f' id="op-{op.index}"'
                if op.index in marked_set:
                    extra += f' stroke="{ANOMALY}" stroke-width="2"'
                c.bar(op.invoke, end_t, OP_COLORS[op.type], f"#{op.index} {op.describe()}", extra)
            c.y += ROW

    top, bottom = 20.0, c.y + 4
    bands = []
    for f in history.faults:
        x0, x1 = c.x(f.t0), c.x(f.t1)
        what = f"{f.fault} {' '.join(f.targets)}".strip()
        bands.append(
            f'<rect x="{x0:.2f}" y="{top}" width="{max(x1 - x0, 1):.2f}" height="{bottom - top:.1f}" '
            f'fill="#d32f2f" fill-opacity="0.12"><title>{html.escape(what)}: {f.t0 - start:.1f}-{f.t1 - start:.1f} s'
            f"</title></rect>"
            f'<text x="{x0 + 2:.2f}" y="{top - 4}" fill="#b71c1c">{html.escape(what[:30])}</text>'
        )
    ticks = []
    step = _tick_step(end - start)
    t = 0.0
    while t <= end - start:
        x = c.x(start + t)
        ticks.append(
            f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 4}" stroke="#555"/>'
            f'<text x="{x:.2f}" y="{bottom + 14}" text-anchor="middle">{t:g} s</text>'
        )
        t += step
    height = bottom + 20
    return (
        f'<svg width="{LABEL + WIDTH + 10}" height="{height:.0f}" '
        f'font-family="sans-serif" font-size="10">' + "".join(bands) + "".join(c.parts) + "".join(ticks) + "</svg>"
    )


def _tick_step(seconds: float) -> float:
    """About ten ticks: 1, 2, 5, 10, 20, 30, 60, ... seconds apart."""
    for step in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600):
        if seconds / step <= 12:
            return float(step)
    return 7200.0
