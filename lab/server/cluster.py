"""Cluster membership in the `cluster` table, as Rancher's v1.0/v1.1 cluster-manager kept it.

Every `HALAB_CLUSTER_HEARTBEAT` seconds (5 s in Rancher; the lab uses about 1 s) each node
writes a new heartbeat value into its own row, inserting the row if it is absent (first start,
or after peers removed it). It then reads every row; a member whose heartbeat has not changed
for `STALE_POLLS` consecutive polls is deleted, with a compare-and-set on the heartbeat it was
last seen with so a member that just came back is not removed. The master is the member with
the lowest id. The row's `data` carries the member's HA state and ZooKeeper mode so that any
node can show every member in its status view.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

STALE_POLLS = 2


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    uuid: str
    ip_address: str | None
    heartbeat: int
    data: Mapping[str, Any]


class StaleTracker:
    """Counts, per member, the consecutive polls its heartbeat did not change."""

    def __init__(self, stale_polls: int = STALE_POLLS) -> None:
        self.stale_polls = stale_polls
        self._seen: dict[int, tuple[int, int]] = {}  # id -> (heartbeat, unchanged polls)

    def observe(self, members: list[Member], self_uuid: str) -> list[Member]:
        """Feed one poll; returns the members to delete."""
        stale: list[Member] = []
        current: dict[int, tuple[int, int]] = {}
        for m in members:
            if m.uuid == self_uuid:
                continue
            last = self._seen.get(m.id)
            unchanged = last[1] + 1 if last is not None and last[0] == m.heartbeat else 0
            current[m.id] = (m.heartbeat, unchanged)
            if unchanged >= self.stale_polls:
                stale.append(m)
        self._seen = current
        return stale


def master(members: list[Member]) -> Member | None:
    return min(members, key=lambda m: m.id) if members else None


def heartbeat(conn: Any, uuid: str, name: str, ip: str | None, data: Mapping[str, Any]) -> list[Member]:
    """Write our heartbeat (inserting our row if needed) and read all members."""
    beat = time.time_ns() // 1000  # strictly increasing per node: the row always changes
    payload = json.dumps(dict(data))
    with conn.cursor() as cur:
        n = cur.execute(
            "UPDATE cluster SET heartbeat = %s, name = %s, ip_address = %s, data = %s WHERE uuid = %s",
            (beat, name, ip, payload, uuid),
        )
        if n == 0:
            cur.execute(
                "INSERT INTO cluster (name, heartbeat, uuid, ip_address, ports, data) VALUES (%s, %s, %s, %s, %s, %s)",
                (name, beat, uuid, ip, json.dumps({"api": 8080, "zookeeper": [2181, 2888, 3888]}), payload),
            )
        cur.execute("SELECT id, name, uuid, ip_address, heartbeat, data FROM cluster ORDER BY id")
        rows = cur.fetchall()
    return [
        Member(int(r[0]), r[1] or "", r[2], r[3], int(r[4] or 0), _load(r[5]))
        for r in rows
    ]


def remove(conn: Any, member: Member) -> bool:
    with conn.cursor() as cur:
        return cur.execute("DELETE FROM cluster WHERE id = %s AND heartbeat = %s", (member.id, member.heartbeat)) == 1


def _load(raw: str | None) -> Mapping[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
