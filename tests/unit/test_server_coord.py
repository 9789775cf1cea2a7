"""Coordinator.revive: restart kazoo only when its connection loop gave up (kazoo 2.8)."""

from __future__ import annotations

import threading

from kazoo.client import KazooState

from lab.server.coord import Coordinator


class FakeConnection:
    def __init__(self) -> None:
        self.connection_stopped = threading.Event()


class FakeKazoo:
    def __init__(self) -> None:
        self.state = KazooState.LOST
        self._connection = FakeConnection()
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")

    def start_async(self) -> None:
        self.calls.append("start_async")

    def close(self) -> None:
        self.calls.append("close")


def coordinator() -> tuple[Coordinator, FakeKazoo]:
    coord = Coordinator("127.0.0.1:1", 4.0, "t")
    fake = FakeKazoo()
    coord.client = fake  # type: ignore[assignment]
    return coord, fake


def test_revives_a_client_whose_connection_loop_stopped() -> None:
    coord, fake = coordinator()
    fake._connection.connection_stopped.set()
    assert coord.revive() is True
    assert fake.calls == ["stop", "start_async"]


def test_leaves_a_reconnecting_or_connected_client_alone() -> None:
    coord, fake = coordinator()
    assert coord.revive() is False  # still retrying
    fake._connection.connection_stopped.set()
    fake.state = KazooState.CONNECTED
    assert coord.revive() is False
    assert fake.calls == []


def test_never_revives_after_an_intended_stop() -> None:
    coord, fake = coordinator()
    coord.stop()
    fake._connection.connection_stopped.set()
    assert coord.revive() is False
    assert fake.calls == ["stop", "close"]
