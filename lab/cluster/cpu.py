"""CPU use from the kernel's own counters: a container's cgroup (v1 `cpuacct`/`cpu`, or v2
`cpu.stat`), a process group's `/proc/<pid>/stat` (the load generator) and the machine's
`/proc/stat`. This machine's are read from its files, so sampling starts nothing; a swarm host's
containers' through one command on that host per reading (`Files`, lab/cluster/engine.py). A
reading is cumulative CPU seconds; `share` turns two readings into the fraction of a limit used in
between."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuReading:
    t: float  # time.monotonic() when read
    used_s: float  # CPU seconds since the counter began
    limit: float  # CPUs it may use: its CFS quota, else every CPU of the machine
    throttled_s: float = 0.0  # seconds its CFS quota held it back, since the counter began


def machine_cpus() -> int:
    return os.cpu_count() or 1


def share(prev: CpuReading, cur: CpuReading) -> float:
    """The fraction of its limit used between two readings (1.0: all of it)."""
    dt = cur.t - prev.t
    return max(0.0, cur.used_s - prev.used_s) / (dt * cur.limit) if dt > 0 and cur.limit > 0 else 0.0


def throttled(prev: CpuReading, cur: CpuReading) -> float:
    """Seconds its quota held it back per second of the interval (summed over CPUs: may pass 1)."""
    dt = cur.t - prev.t
    return max(0.0, cur.throttled_s - prev.throttled_s) / dt if dt > 0 else 0.0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if len(line.split()) == 2)}


def _cgroup_dirs(container_id: str) -> Iterator[tuple[str, Path]]:
    """Where Docker puts a container's cgroup: cgroupfs or systemd driver, cgroup v1 or v2."""
    for v1 in ("docker", f"system.slice/docker-{container_id}.scope"):
        leaf = container_id if v1 == "docker" else ""
        yield "v1", CGROUP_ROOT / "cpu" / v1 / leaf
    yield "v2", CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope"
    yield "v2", CGROUP_ROOT / "docker" / container_id


def _cpuacct(d: Path) -> Path:
    return CGROUP_ROOT / "cpuacct" / d.relative_to(CGROUP_ROOT / "cpu") / "cpuacct.usage"


def _files(container_id: str) -> list[Path]:
    """Every file `container_cpus` may read for the container, wherever its cgroup is."""
    out: list[Path] = []
    for version, d in _cgroup_dirs(container_id):
        if version == "v1":
            out += [_cpuacct(d), *(d / f for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat"))]
        else:
            out += [d / "cpu.stat", d / "cpu.max"]
    return out


# Reads many files at once, leaving out those it cannot read: this machine's files (`local_files`),
# or a Docker host's, through one command there (engine.files).
Files = Callable[[Sequence[Path]], Mapping[Path, str]]


def local_files(paths: Sequence[Path]) -> dict[Path, str]:
    return {p: text for p in paths if (text := _read(p)) is not None}


def container_cpus(container_ids: Sequence[str], files: Files = local_files) -> dict[str, CpuReading]:
    """Running containers' CPU counters, read in one go of `files`; a container whose cgroup is not
    readable there (stopped, or Docker in a VM) is left out."""
    texts = files([p for cid in container_ids for p in _files(cid)])
    now = time.monotonic()
    out = {}
    for cid in container_ids:
        reading = _reading(cid, texts, now)
        if reading is not None:
            out[cid] = reading
    return out


def container_cpu(container_id: str, files: Files = local_files) -> CpuReading | None:
    return container_cpus([container_id], files).get(container_id)


def _reading(container_id: str, texts: Mapping[Path, str], now: float) -> CpuReading | None:
    for version, d in _cgroup_dirs(container_id):
        if version == "v1":
            usage = texts.get(_cpuacct(d))
            quota, period, stat = (texts.get(d / f) for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat"))
            if usage is None or stat is None:
                continue
            q, p = int(quota or -1), int(period or 0)
            limit = q / p if q > 0 and p > 0 else float(machine_cpus())
            return CpuReading(now, int(usage) / 1e9, limit, _stat(stat).get("throttled_time", 0) / 1e9)
        stat = texts.get(d / "cpu.stat")
        if stat is None:
            continue
        fields = _stat(stat)
        q_text, _, p_text = (texts.get(d / "cpu.max") or "max 100000").partition(" ")
        limit = int(q_text) / int(p_text) if q_text.isdigit() and p_text.strip().isdigit() else float(machine_cpus())
        return CpuReading(now, fields.get("usage_usec", 0) / 1e6, limit, fields.get("throttled_usec", 0) / 1e6)
    return None


def process_group_cpu(pgid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every live process in the group, by pid."""
    out: dict[int, float] = {}
    for stat in PROC.glob("[0-9]*/stat"):
        text = _read(stat)
        if not text:
            continue
        rest = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        if len(rest) > 12 and rest[2] == str(pgid):
            out[int(stat.parent.name)] = (int(rest[11]) + int(rest[12])) / _TICK
    return out


def process_shares(prev: Mapping[int, float], cur: Mapping[int, float], dt: float) -> dict[int, float]:
    """Each process's share of one CPU between two `process_group_cpu` readings `dt` seconds apart."""
    return {pid: max(0.0, s - prev.get(pid, s)) / dt for pid, s in cur.items()} if dt > 0 else {}


def machine_cpu() -> CpuReading | None:
    """Every CPU of the machine: busy = all but idle and iowait."""
    text = _read(PROC / "stat")
    if not text:
        return None
    ticks = [int(x) for x in text.splitlines()[0].split()[1:]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return CpuReading(time.monotonic(), busy / _TICK, float(machine_cpus()))
