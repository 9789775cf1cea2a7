"""The rancher-1.0 heap constants reproduce the reports they were derived from
(docs/rancher-1.0-behaviour.md, section 4)."""

from __future__ import annotations

import pytest

from lab.server.heap import HeapModel, OutOfMemory
from lab.server.profiles import RANCHER_1_0, TUNED

MiB = 1 << 20


def heap(xmx_mib: int) -> HeapModel:
    return HeapModel(xmx_mib * MiB, 32, RANCHER_1_0.heap_baseline, RANCHER_1_0.heap_per_resource)


def test_an_idle_server_holds_its_baseline() -> None:
    h = heap(1024)
    assert h.used == 128 * MiB // 32 and h.pressure == pytest.approx(0.125)
    assert h.cache_limit == (32 * MiB - 4 * MiB) // 2


def test_one_gib_runs_out_near_three_hundred_resources_as_in_2339() -> None:
    h = heap(1024)
    h.resources_changed(300)  # 7 hosts and agents, 16 services, a stack and ~270 containers
    with pytest.raises(OutOfMemory):
        h.resources_changed(315)


def test_bigger_heaps_held_what_users_ran_on_them() -> None:
    heap(2048).resources_changed(7 + 7 + 16 + 1 + 320)  # #2339's workaround, -Xmx2048m
    heap(4096).resources_changed(7 + 7 + 16 + 1 + 400)  # "with 400 containers, 4GB is enough"


def test_resources_crowd_out_the_cache_and_requests() -> None:
    h = heap(1024)
    h.resources_changed(200)
    assert h.cache_limit < (32 * MiB - 4 * MiB) // 2
    with pytest.raises(OutOfMemory):
        h.allocate(h.budget - h.used + 1)


def test_tuned_keeps_the_earlier_model() -> None:
    h = HeapModel(1 << 30, 32, TUNED.heap_baseline, TUNED.heap_per_resource)
    h.resources_changed(10_000)
    assert h.used == 0
