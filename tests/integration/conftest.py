"""Fixtures the integration tests share on top of the shipped plugin's (lab/pytest_plugin.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab import faults
from lab.cluster.lifecycle import wait_healthy


@pytest.fixture
def lab3(halab_lab3: Any) -> Iterator[Any]:
    """The module's 3-node lab, healthy and fault-free before and after each test. Healthy includes
    a settled ZooKeeper ensemble: nodes turn active as soon as their session reaches any member,
    while a restarted member may still be rejoining, and the next test may ask for the leader."""
    wait_healthy(halab_lab3, timeout=90)
    yield halab_lab3
    faults.heal_lab(halab_lab3)
    wait_healthy(halab_lab3, timeout=90)
