"""The node's HA state machine: `starting -> active <-> degraded`.

Pure: it is fed observations and says which state follows; the node acts on transitions.
A node is active only with a bootstrapped schema, a live ZooKeeper session (which implies a
quorum: a ZooKeeper server without one closes its client connections) and a healthy database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class HAState(str, enum.Enum):
    STARTING = "starting"
    ACTIVE = "active"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class Health:
    bootstrapped: bool
    zk_connected: bool
    db_ok: bool

    def reasons(self) -> list[str]:
        out = []
        if not self.bootstrapped:
            out.append("schema not bootstrapped")
        if not self.zk_connected:
            out.append("no ZooKeeper session with quorum")
        if not self.db_ok:
            out.append("database health check failing")
        return out


@dataclass(frozen=True)
class Transition:
    before: HAState
    after: HAState
    reasons: tuple[str, ...]


class HAStateMachine:
    def __init__(self) -> None:
        self._state = HAState.STARTING
        self._reasons: tuple[str, ...] = ("starting",)

    @property
    def state(self) -> HAState:
        return self._state

    @property
    def reasons(self) -> tuple[str, ...]:
        return self._reasons

    @property
    def active(self) -> bool:
        return self._state is HAState.ACTIVE

    def observe(self, health: Health) -> Transition | None:
        """Feed one observation; returns the transition it caused, if any."""
        reasons = tuple(health.reasons())
        before = self._state
        if not reasons:
            after = HAState.ACTIVE
        elif before is HAState.STARTING:
            # A node never served yet stays `starting` until it first becomes healthy.
            after = HAState.STARTING
        else:
            after = HAState.DEGRADED
        self._reasons = reasons
        if after is before:
            return None
        self._state = after
        return Transition(before, after, reasons)
