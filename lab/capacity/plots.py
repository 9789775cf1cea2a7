"""The sweep's plots: per swept dimension, throughput, p95 latency and error rate against it,
one line per series, saturation starred and killed nodes crossed (matplotlib, no display)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lab.capacity.analysis import saturation, series_of, x_value
from lab.capacity.measurement import Measurement
from lab.capacity.spec import DIMENSION_TITLES, LOAD_DIMENSION


def write_plots(
    plots_dir: Path, measurements: Sequence[Measurement], swept: Sequence[str], max_error_rate: float
) -> list[Path]:
    """Per swept dimension: throughput, p95 and error rate against it, one line per series,
    the saturation point starred."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for dim in swept:
        groups = series_of(measurements, dim, swept)
        if not groups:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=90)
        fig.subplots_adjust(left=0.06, right=0.98, top=0.82, bottom=0.3, wspace=0.28)
        for name, series in groups.items():
            xs = [x_value(m, dim) for m in series]
            (line,) = axes[0].plot(xs, [m.throughput for m in series], marker="o", label=name)
            axes[1].plot(
                xs,
                [m.load.p95_ms if m.load and m.load.p95_ms is not None else math.nan for m in series],
                marker="o",
                color=line.get_color(),
            )
            axes[2].plot(xs, [100 * m.error_rate for m in series], marker="o", color=line.get_color())
            sat = saturation(series, dim, max_error_rate, name)
            if sat.x is not None:
                axes[0].plot([sat.x], [sat.throughput], marker="*", ms=16, color=line.get_color(), mec="black")
                axes[0].annotate(
                    "saturation" if dim == LOAD_DIMENSION else "levels off",
                    (sat.x, sat.throughput),
                    textcoords="offset points",
                    xytext=(0, -11),
                    ha="center",
                    va="top",
                    fontsize=8,
                )
                if sat.p95_ms is not None:
                    axes[1].plot([sat.x], [sat.p95_ms], marker="*", ms=16, color=line.get_color(), mec="black")
        killed = [m for series in groups.values() for m in series if m.oom_kills]
        if killed:
            axes[0].plot(
                [x_value(m, dim) for m in killed],
                [m.throughput for m in killed],
                ls="none",
                marker="x",
                ms=11,
                mew=2.5,
                color="#c62828",
                label="node killed",
            )
        axes[2].axhline(100 * max_error_rate, color="#c62828", ls="--", lw=1, label="threshold")
        ticks = {
            x_value(m, dim): m.point.heap if dim == "heap" else f"{x_value(m, dim):g}"
            for s in groups.values()
            for m in s
        }
        for ax, title in zip(
            axes, ("successful requests/s", "p95 latency (ms)", "errors (% of requests)"), strict=True
        ):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(DIMENSION_TITLES[dim], fontsize=9)
            ax.grid(alpha=0.3)
            if dim in ("heap", "db_memory", "db_buffer_pool"):
                ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(ticks), [ticks[x] for x in sorted(ticks)], fontsize=8)
            ax.minorticks_off()
        fig.suptitle(f"Capacity against {DIMENSION_TITLES[dim]} (star: saturation point)", fontsize=11)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
        path = plots_dir / f"{dim}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out
