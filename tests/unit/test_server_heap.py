"""Heap model arithmetic and the cache's share of it."""

from __future__ import annotations

import asyncio

import pytest

from lab.server.cache import ResourceCache
from lab.server.config import from_env
from lab.server.heap import CACHE_SHARE, MAX_GC_PAUSE, SPARE_BYTES, HeapModel, OutOfMemory
from lab.server.node import Node

MiB = 1 << 20


def test_budget_is_xmx_over_scale() -> None:
    assert HeapModel(4 << 30, 32).budget == 128 * MiB
    assert HeapModel(1 << 30, 32).budget == 32 * MiB
    assert HeapModel(8 << 30, 64).budget == 128 * MiB
    assert HeapModel(1 << 20, 32).budget == MiB  # floor of 1 MiB
    h = HeapModel(1 << 30, 32)
    assert h.cache_limit == int(32 * MiB * CACHE_SHARE)


def test_allocations_are_real_and_freed() -> None:
    h = HeapModel(1 << 30, 32)
    a = h.allocate(4 * MiB)
    assert a.block is not None and len(a.block) == 4 * MiB
    assert h.inflight_bytes == 4 * MiB and h.pressure == pytest.approx(4 / 32)
    h.free(a)
    h.free(a)  # idempotent
    assert h.inflight_bytes == 0 and a.block is None


def test_a_freed_block_serves_the_next_allocation_of_its_size_up_to_the_spare_bound() -> None:
    h = HeapModel(1 << 30, 32)
    first = h.allocate(64 * 1024)
    block = first.block
    h.free(first)
    again = h.allocate(64 * 1024)
    assert again.block is block and h.inflight_bytes == 64 * 1024  # reused, and counted again
    other = h.allocate(1000)
    assert other.block is not None and other.block is not block and len(other.block) == 1000
    h.free(again)
    h.free(other)
    assert h.inflight_bytes == 0
    size = SPARE_BYTES // 2 + 1  # two of these do not fit under the bound
    big = [h.allocate(size) for _ in range(2)]
    freed = [a.block for a in big]
    for a in big:
        h.free(a)
    # the first freed block is kept, the second went back to the allocator
    assert [h.allocate(size).block is b for b in freed] == [True, False]
    assert h.inflight_bytes == 2 * size


def test_gc_pause_grows_above_ninety_percent() -> None:
    h = HeapModel(1 << 30, 32)  # 32 MiB
    held = h.allocate(int(28.8 * MiB))  # 90 %
    assert h.gc_pause() == 0.0 and not h.memory_degraded
    more = h.allocate(int(1.6 * MiB))  # 95 %
    assert h.memory_degraded
    assert h.gc_pause() == pytest.approx(MAX_GC_PAUSE / 2, rel=0.01)
    h.free(more)
    h.free(held)
    assert h.gc_pause() == 0.0


def test_exceeding_the_budget_is_an_out_of_memory_error() -> None:
    h = HeapModel(1 << 30, 32)
    a = h.allocate(30 * MiB)
    with pytest.raises(OutOfMemory, match="Java heap space") as e:
        h.allocate(3 * MiB)
    assert e.value.budget == 32 * MiB and h.oom_count == 1
    assert h.inflight_bytes == 30 * MiB  # the failed allocation took nothing
    h.free(a)


def test_peak_pressure_is_the_highest_use_since_start() -> None:
    h = HeapModel(1 << 30, 32)  # 32 MiB
    a, b = h.allocate(8 * MiB), h.allocate(8 * MiB)
    h.free(a)
    h.free(b)
    assert h.pressure == 0 and h.peak_pressure == pytest.approx(0.5)
    h.cache_changed(4 * MiB)
    h.free(h.allocate(10 * MiB))  # 14 MiB: below the peak
    with pytest.raises(OutOfMemory):
        h.allocate(30 * MiB)  # refused, so never held
    assert h.peak_pressure == pytest.approx(0.5)
    h.cache_changed(16 * MiB)  # the cache alone sets a new peak
    h.cache_changed(-20 * MiB)
    assert h.pressure == 0 and h.peak_pressure == pytest.approx(20 / 32)


def test_node_metrics_report_the_peak_ratio() -> None:
    async def main() -> str:
        env = {"HALAB_NODE_NAME": "a1", "CATTLE_JAVA_OPTS": "-Xmx1g", "HALAB_HEAP_BASELINE": "0"}
        node = Node(from_env(env), asyncio.get_running_loop())
        node.heap.free(node.heap.allocate(8 * MiB))
        return node.metrics_text()  # nothing was started: no thread, socket or task to stop

    text = asyncio.run(main())
    assert 'cattle_heap_peak_ratio{node="a1"} 0.25' in text and 'cattle_heap_pressure{node="a1"} 0' in text


def test_cache_never_exceeds_its_share_and_evicts_lru() -> None:
    h = HeapModel(64 * MiB, 32)  # 2 MiB budget, 1 MiB cache share
    c = ResourceCache(h)
    c.set_enabled(True)
    entry = b"x" * (100 * 1024)
    for i in range(30):
        c.begin_fill(("project", i))
        c.finish_fill(("project", i), entry)
        assert h.cache_bytes <= h.cache_limit
    assert c.evictions > 0 and len(c) < 30
    assert c.get(("project", 29)) == entry and c.get(("project", 0)) is None


def test_cache_drops_fills_that_raced_with_an_invalidation() -> None:
    c = ResourceCache(HeapModel(1 << 30, 32))
    c.set_enabled(True)
    key = ("service", 7)
    c.begin_fill(key)
    c.invalidate(key)  # a writer touched the resource while we read it
    c.finish_fill(key, b"stale")
    assert c.get(key) is None
    c.begin_fill(key)
    c.finish_fill(key, b"fresh")
    assert c.get(key) == b"fresh"
    c.invalidate(key)
    assert c.get(key) is None


def test_cache_is_emptied_and_off_without_a_zookeeper_session() -> None:
    h = HeapModel(1 << 30, 32)
    c = ResourceCache(h)
    c.set_enabled(True)
    c.begin_fill(("project", 1))
    c.finish_fill(("project", 1), b"a" * 100)
    c.begin_fill(("project", 2))
    c.set_enabled(False)
    c.finish_fill(("project", 2), b"b")
    assert len(c) == 0 and h.cache_bytes == 0
