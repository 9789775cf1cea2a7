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
        self.listeners: list[object] = []

    def add_listener(self, fn: object) -> None:
        self.listeners.append(fn)

    def remove_listener(self, fn: object) -> None:
        self.listeners.remove(fn)

    def stop(self) -> None:
        self.calls.append("stop")

    def start_async(self) -> None:
        self.calls.append("start_async")

    def close(self) -> None:
        self.calls.append("close")


def coordinator() -> tuple[Coordinator, list[FakeKazoo]]:
    made: list[FakeKazoo] = []

    def factory() -> FakeKazoo:
        made.append(FakeKazoo())
        return made[-1]

    return Coordinator("127.0.0.1:1", 4.0, "t", client_factory=factory), made  # type: ignore[arg-type]


def test_revive_replaces_a_client_whose_connection_loop_stopped() -> None:
    coord, made = coordinator()
    old = made[0]
    old._connection.connection_stopped.set()
    assert coord.revive() is True
    assert len(made) == 2 and coord.client is made[1]  # type: ignore[comparison-overlap]
    assert made[1].calls == ["start_async"] and len(made[1].listeners) == 1
    assert old.calls == ["close"] and old.listeners == []


def test_leaves_a_reconnecting_or_connected_client_alone() -> None:
    coord, made = coordinator()
    fake = made[0]
    assert coord.revive() is False  # still retrying
    fake._connection.connection_stopped.set()
    fake.state = KazooState.CONNECTED
    assert coord.revive() is False
    assert fake.calls == []


def test_never_revives_after_an_intended_stop() -> None:
    coord, made = coordinator()
    fake = made[0]
    coord.stop()
    fake._connection.connection_stopped.set()
    assert coord.revive() is False
    assert fake.calls == ["stop", "close"]
