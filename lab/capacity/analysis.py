"""Turning measurements into findings: where throughput saturates along each swept dimension,
what broke at a point, and the sizing recommendation with the evidence that less fails."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lab.capacity.measurement import Measurement
from lab.capacity.spec import LOAD_DIMENSION
from lab.cluster.topology import DEFAULT_HEAP_SCALE, GUIDE_POOL_PER_NODE, parse_size

# A resource series has levelled off where its throughput is within this fraction of its best.
PLATEAU = 0.10
# Load saturates where a step up in users buys less than this share of proportional throughput.
SCALING = 0.5


def pct(fraction: float) -> str:
    """0.001 -> '0.1%', 0 -> '0%'."""
    return f"{fraction * 100:g}%"


def num(v: float | None) -> str:
    """A figure for a table or a note: '-' when it was not measured."""
    return "-" if v is None else f"{v:g}"


def x_value(m: Measurement, dim: str) -> float:
    """A point's position on a dimension's axis (heap in MiB of -Xmx; max_connections as in effect)."""
    if dim == "heap":
        return m.point.heap_mib
    if dim == "db_max_connections":
        return float(m.effective_max_connections)
    return float(getattr(m.point, dim))


_X_TEXT = {
    "nodes": "{} node(s)",
    "heap": "-Xmx{}",
    "pool_size": "pool {}",
    "db_max_connections": "max_connections {}",
    "db_memory": "DB memory {} MiB",
    "db_buffer_pool": "buffer pool {} MiB",
    "users": "{} users",
}


def x_text(m: Measurement, dim: str) -> str:
    """A point's value on a dimension, in words: "-Xmx64m", "max_connections 100", "20 users"."""
    value = m.effective_max_connections if dim == "db_max_connections" else getattr(m.point, dim)
    return _X_TEXT[dim].format(value)


@dataclass(frozen=True)
class Saturation:
    dimension: str
    series: str  # the other swept settings of this line of points
    x: float | None  # where throughput levelled off; None when not within the sweep
    label: str  # that point's value as text
    throughput: float | None
    p95_ms: float | None
    note: str


def series_of(measurements: Sequence[Measurement], dim: str, swept: Sequence[str]) -> dict[str, list[Measurement]]:
    """Points grouped by their values on the other swept dimensions, each group sorted along dim."""
    others = [d for d in swept if d != dim]
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        key = ", ".join(x_text(m, d) for d in others) or "all points"
        groups.setdefault(key, []).append(m)
    return {k: sorted(v, key=lambda m: x_value(m, dim)) for k, v in groups.items() if len(v) > 1}


def saturation(series: Sequence[Measurement], dim: str, max_error_rate: float, name: str = "") -> Saturation:
    """Where throughput stops growing along dim (series sorted by dim).

    Load: the last number of users after which more users stopped buying throughput: the next
    step's throughput grew by less than SCALING of the load it added, or broke the error threshold
    or killed a node. Resource: the smallest value within PLATEAU of the best throughput among
    points under the error threshold, i.e. where more of it stopped helping."""
    if dim == LOAD_DIMENSION:
        return _load_saturation(series, max_error_rate, name)
    good = [m for m in series if m.passed(max_error_rate)]
    if not good:
        return Saturation(
            dim, name, None, "", None, None, f"no point kept errors under {pct(max_error_rate)} without a node killed"
        )
    best = max(m.throughput for m in good)
    first = next(m for m in good if m.throughput >= (1 - PLATEAU) * best)
    return _saturated_at(dim, name, first, "levels off from")


def _load_saturation(series: Sequence[Measurement], max_error_rate: float, name: str) -> Saturation:
    dim = LOAD_DIMENSION
    if not series[0].passed(max_error_rate):
        return Saturation(
            dim,
            name,
            None,
            "",
            None,
            None,
            f"past saturation already at {x_text(series[0], dim)}: errors above {pct(max_error_rate)} or a node killed",
        )
    for prev, cur in itertools.pairwise(series):
        added = cur.point.users / prev.point.users - 1
        grew = cur.throughput / prev.throughput - 1 if prev.throughput else math.inf
        if not cur.passed(max_error_rate):
            return _saturated_at(
                dim,
                name,
                prev,
                "saturates at",
                f"; at {cur.point.users} users errors passed {pct(max_error_rate)} or a node was killed",
            )
        if grew < SCALING * added:
            return _saturated_at(
                dim,
                name,
                prev,
                "saturates at",
                f"; {cur.point.users} users added {added:.0%} load for {grew:+.0%} throughput",
            )
    return Saturation(
        dim,
        name,
        None,
        "",
        None,
        None,
        f"not reached: throughput still grew with load up to {series[-1].point.users} users",
    )


def _saturated_at(dim: str, name: str, m: Measurement, verb: str, why: str = "") -> Saturation:
    p95 = m.load.p95_ms if m.load else None
    if m.bottleneck is not None:
        why += f"; bottleneck there: {m.bottleneck.text()}"
    return Saturation(
        dim,
        name,
        x_value(m, dim),
        x_text(m, dim),
        m.throughput,
        p95,
        f"throughput {verb} {x_text(m, dim)} ({m.throughput:g} req/s, p95 {num(p95)} ms){why}",
    )


def saturations(measurements: Sequence[Measurement], swept: Sequence[str], max_error_rate: float) -> list[Saturation]:
    return [
        saturation(s, dim, max_error_rate, name)
        for dim in swept
        for name, s in series_of(measurements, dim, swept).items()
    ]


def failures(m: Measurement) -> list[str]:
    """What broke at a point, in words (empty: nothing did)."""
    if m.status == "did not start":
        return [f"did not start: {m.detail}"]
    out = [f"timed out: {m.detail}"] if m.status == "timed out" else []
    e = m.load.errors if m.load else {}
    n = m.load.requests if m.load else 0
    if e.get("too_many_connections"):
        refused = m.db.refused_connections if m.db else None
        out.append(
            f"{e['too_many_connections']} of {n} requests failed with Too many connections (MySQL refused "
            f"{refused if refused is not None else '?'} connections at max_connections {m.effective_max_connections})"
        )
    if e.get("pool_wait_timeout"):
        out.append(
            f"{e['pool_wait_timeout']} of {n} requests timed out waiting for a pooled connection "
            f"(pool {m.point.pool_size} per node)"
        )
    fates: dict[str, list[str]] = {}
    for node in m.nodes:
        if node.outcome == "degraded by memory":
            seen = f", heap pressure up to {node.peak_heap_pressure:.0%}" if node.peak_heap_pressure else ""
            fates.setdefault(f"degraded by memory (-Xmx{m.point.heap}{seen})", []).append(node.name)
        elif node.outcome != "ok":  # a death is sudden: its last polled pressure says little
            first = ", degraded by memory first" if node.was_degraded else ""
            fates.setdefault(f"{node.outcome} (-Xmx{m.point.heap}, exit {node.exit_code}{first})", []).append(node.name)
    out += [f"node{'s' if len(names) > 1 else ''} {', '.join(names)} {fate}" for fate, names in fates.items()]
    rest = sum(e.get(k, 0) for k in ("server_5xx", "no_response", "other"))
    if rest:
        out.append(f"{rest} other failed requests (5xx or no response)")
    return out


@dataclass(frozen=True)
class Recommendation:
    nodes: int
    users: int
    max_error_rate: float
    max_connections: int | None  # the smallest that passed; None: none did
    max_connections_failed: int | None  # the largest smaller value that failed, all else equal; None: none tried
    heap: str | None  # the smallest -Xmx that passed
    heap_failed: str | None
    heap_scale: int  # modelled bytes per real byte
    peak_connections: int | None  # Max_used_connections where that max_connections passed
    below: tuple[str, ...]  # what failed with less (or, when nothing passed, at every point)
    excluded: tuple[str, ...] = ()  # points not counted: the harness saturated first

    def lines(self) -> list[str]:
        head = f"{self.nodes} node(s) at {self.users} users, errors at most {pct(self.max_error_rate)}, no node killed:"
        left_out = [f"- not counted, the harness saturated first: {e}" for e in self.excluded]
        if self.max_connections is None or self.heap is None:  # both None together: nothing passed
            return [
                head,
                "- no measured point passed; nothing to recommend:",
                *(f"  - {b}" for b in self.below),
                *left_out,
            ]
        guide = self.nodes * GUIDE_POOL_PER_NODE
        failed = self.max_connections_failed
        if self.max_connections <= guide:
            verdict = "covers this load"
        elif failed is not None and failed >= guide:
            verdict = f"is too few for this load ({failed} failed)"
        else:
            verdict = (
                f"was not tried, so this sweep cannot judge it (it saw {failed} fail and {self.max_connections} pass)"
                if failed is not None
                else "was not tried (nothing smaller was)"
            )
        peak = (
            f"; the database's high-water mark there was {self.peak_connections} (Max_used_connections)"
            if self.peak_connections is not None
            else ""
        )
        return [
            head,
            f"- max_connections >= {self.max_connections} ({_failed_or_lowest(failed)}){peak}. The guide's rule, "
            f"{GUIDE_POOL_PER_NODE} per node = {guide}, {verdict}.",
            f"- heap >= -Xmx{self.heap} ({_failed_or_lowest(self.heap_failed and f'-Xmx{self.heap_failed}')}), "
            f"modelled: {parse_size(self.heap, 'heap') / self.heap_scale / 1024**2:g} MiB real at scale "
            f"1/{self.heap_scale}. The guide recommends 4 to 8 GB per node for larger deployments; the heap model "
            f"says what a lab heap means in production.",
            *(f"- with less: {b}" for b in self.below),
            *left_out,
        ]


def _failed_or_lowest(failed: object) -> str:
    return f"{failed} failed" if failed else "the smallest tried at these settings: less may do"


def recommend(
    measurements: Sequence[Measurement], users: int, max_error_rate: float, heap_scale: int = DEFAULT_HEAP_SCALE
) -> list[Recommendation]:
    """Per cluster size, at the target load: the smallest max_connections and the smallest heap
    among points that kept errors under the threshold with no node killed, each with the evidence
    that less fails: points equal to the passing one but for a smaller value of that dimension.
    Points where the harness saturated first count neither way; the recommendation lists them."""
    out = []
    for nodes in sorted({m.point.nodes for m in measurements}):
        every = [m for m in measurements if m.point.nodes == nodes and m.point.users == users]
        if not every:
            continue
        at = [m for m in every if m.counts_for_sizing]
        excluded = tuple(
            f"{m.point.label()} ({m.bottleneck.text()})" for m in every if m.bottleneck and not m.counts_for_sizing
        )
        good = [m for m in at if m.passed(max_error_rate)]
        if not good:
            below = tuple(f"{m.point.label()}: {'; '.join(failures(m)) or 'errors above the threshold'}" for m in at)
            out.append(
                Recommendation(nodes, users, max_error_rate, None, None, None, None, heap_scale, None, below, excluded)
            )
            continue
        conn = [m for m in good if m.effective_max_connections == min(g.effective_max_connections for g in good)]
        heap = [m for m in good if m.point.heap_mib == min(g.point.heap_mib for g in good)]
        fail_conn = _failed_below(at, conn, "db_max_connections", max_error_rate)
        fail_heap = _failed_below(at, heap, "heap", max_error_rate)
        below = tuple(
            dict.fromkeys(
                f"{x_text(m, d)}: {'; '.join(failures(m)) or f'{m.error_rate:.2%} errors'}"
                for d, ms in (("db_max_connections", fail_conn), ("heap", fail_heap))
                for m in ms
            )
        )
        out.append(
            Recommendation(
                nodes,
                users,
                max_error_rate,
                conn[0].effective_max_connections,
                fail_conn[-1].effective_max_connections if fail_conn else None,
                heap[0].point.heap,
                fail_heap[-1].point.heap if fail_heap else None,
                heap_scale,
                max(
                    (m.db.max_used_connections for m in conn if m.db and m.db.max_used_connections is not None),
                    default=None,
                ),
                below,
                excluded,
            )
        )
    return out


def _failed_below(
    at: Sequence[Measurement], passing: Sequence[Measurement], dim: str, max_error_rate: float
) -> list[Measurement]:
    """Points that failed and differ from one of the passing points only by a smaller value of
    dim: the evidence that less of it fails. Ascending along dim."""
    found = {
        id(m): m
        for best in passing
        for m in at
        if replace(m.point, **{dim: getattr(best.point, dim)}) == best.point
        and x_value(m, dim) < x_value(best, dim)
        and not m.passed(max_error_rate)
    }
    return sorted(found.values(), key=lambda m: x_value(m, dim))
