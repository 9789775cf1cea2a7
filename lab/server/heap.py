"""A model of the cattle JVM's heap pressure. This is NOT a JVM and does not pretend to be one.

What it models, plainly:

* `CATTLE_JAVA_OPTS` `-Xmx<size>` sets the node's memory budget. The budget in real bytes is
  `Xmx / HALAB_HEAP_SCALE` (default scale 32, so `-Xmx4g` is a 128 MiB budget, `-Xmx1g` 32 MiB),
  so that several nodes fit on one small machine while keeping the ratios of the real settings.
* What lives in the budget, all real allocations of this process or counted as such:
  - with the rancher-1.0 profile, what the reports of exhausted cattle heaps say a server holds
    whatever its load: a baseline from the start and a cost per live managed resource, counted
    from the database (`HALAB_HEAP_BASELINE`, `HALAB_HEAP_PER_RESOURCE`, in modelled bytes; the
    derivation is in docs/rancher-1.0-behaviour.md);
  - the in-memory resource cache (reads by id), capped at `CACHE_SHARE` of the rest of the budget;
    it evicts least-recently-used entries rather than grow past its share;
  - per-request working memory: every request in flight holds a real `bytearray` of
    `HALAB_REQUEST_HEAP` bytes (default 64 KiB, i.e. 2 MiB of modelled JVM heap) plus the size of
    its request and response bodies.
* Pressure = used / budget. Above `GC_THRESHOLD` (90 %) each request first pays a pause that grows
  linearly to `MAX_GC_PAUSE` at 100 % (a stand-in for back-to-back full collections), and the node
  reports itself degraded-by-memory in /metrics and /status.json (the HA state is unaffected:
  a JVM in GC trouble still answered /ping).
* An allocation that would exceed the budget raises `OutOfMemory`; the node then logs
  `java.lang.OutOfMemoryError: Java heap space` and exits with status 3, as a JVM started with
  `-XX:+ExitOnOutOfMemoryError` does, so the container (the whole host) dies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

CACHE_SHARE = 0.5
GC_THRESHOLD = 0.9
MAX_GC_PAUSE = 0.5
# Real bytes of freed request blocks kept for the next requests of the same size. Almost every
# request holds the same block size (HALAB_REQUEST_HEAP, no body): reusing one saves zeroing 64 KiB
# and a malloc per request on the API server's one thread (issue 18). Freed, they are out of the
# model's use as they were; the process keeps them as glibc kept the freed heap (main.py).
SPARE_BYTES = 4 << 20


class OutOfMemory(Exception):
    """The modelled heap is exhausted; the node must exit."""

    def __init__(self, requested: int, used: int, budget: int) -> None:
        super().__init__(f"Java heap space (requested {requested} B, used {used} B of {budget} B)")
        self.requested = requested
        self.used = used
        self.budget = budget


@dataclass
class Allocation:
    size: int
    block: bytearray | None


class HeapModel:
    def __init__(self, xmx: int, scale: int, baseline: int = 0, per_resource: int = 0) -> None:
        """`baseline` and `per_resource` are modelled bytes (real bytes x scale)."""
        self.xmx = xmx
        self.scale = scale
        self.budget = max(1 << 20, xmx // scale)
        self.baseline_bytes = baseline // scale
        self.per_resource = per_resource
        self.resources = 0
        self._lock = threading.Lock()
        self._retained_bytes = 0
        self._cache_bytes = 0
        self._inflight_bytes = 0
        self._spare: dict[int, list[bytearray]] = {}
        self._spare_bytes = 0
        self.peak_bytes = self.baseline_bytes
        self.oom_count = 0

    @property
    def cache_limit(self) -> int:
        return max(0, int((self.budget - self.baseline_bytes - self._retained_bytes) * CACHE_SHARE))

    @property
    def retained_bytes(self) -> int:
        return self._retained_bytes

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    @property
    def inflight_bytes(self) -> int:
        return self._inflight_bytes

    @property
    def used(self) -> int:
        return self.baseline_bytes + self._retained_bytes + self._cache_bytes + self._inflight_bytes

    @property
    def pressure(self) -> float:
        return self.used / self.budget

    @property
    def peak_pressure(self) -> float:
        """The highest pressure since start: a capacity run reads it after the fact."""
        return self.peak_bytes / self.budget

    @property
    def memory_degraded(self) -> bool:
        return self.pressure > GC_THRESHOLD

    def gc_pause(self) -> float:
        """Seconds a request stalls at the current pressure (0 below the GC threshold)."""
        p = self.pressure
        if p <= GC_THRESHOLD:
            return 0.0
        return MAX_GC_PAUSE * min(1.0, (p - GC_THRESHOLD) / (1.0 - GC_THRESHOLD))

    def allocate(self, size: int) -> Allocation:
        """Really allocate `size` bytes of request working memory (a freed block of that size if one
        is kept), or raise OutOfMemory."""
        with self._lock:
            used = self.used
            if used + size > self.budget:
                self.oom_count += 1
                raise OutOfMemory(size, used, self.budget)
            self._inflight_bytes += size
            self.peak_bytes = max(self.peak_bytes, used + size)
            spare = self._spare.get(size)
            if spare:
                self._spare_bytes -= size
                return Allocation(size, spare.pop())
        return Allocation(size, bytearray(size))

    def free(self, alloc: Allocation) -> None:
        block = alloc.block
        if block is None:
            return
        alloc.block = None
        with self._lock:
            self._inflight_bytes -= alloc.size
            if self._spare_bytes + alloc.size <= SPARE_BYTES:
                self._spare.setdefault(alloc.size, []).append(block)
                self._spare_bytes += alloc.size

    def cache_room(self, size: int) -> int:
        """Bytes the cache must evict before it may hold `size` more (never above its share)."""
        return max(0, self._cache_bytes + size - self.cache_limit)

    def cache_changed(self, delta: int) -> None:
        with self._lock:
            self._cache_bytes += delta
            self.peak_bytes = max(self.peak_bytes, self.used)

    def resources_changed(self, count: int) -> None:
        """`count` live managed resources now hold their share; OutOfMemory past the budget."""
        with self._lock:
            self.resources = count
            self._retained_bytes = count * self.per_resource // self.scale
            used = self.used
            self.peak_bytes = max(self.peak_bytes, used)
            if used > self.budget:
                self.oom_count += 1
                raise OutOfMemory(self._retained_bytes, used, self.budget)
