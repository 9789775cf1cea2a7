"""Cluster membership in the `cluster` table, as Rancher's v1.0/v1.1 cluster-manager kept it.

Every `HALAB_CLUSTER_HEARTBEAT` seconds (5 s in Rancher; the lab uses about 1 s) each node
writes a new heartbeat value into its own row, inserting the row if it is absent (first start,
or after peers removed it). It then reads every row; a member whose heartbeat has not changed
for `STALE_POLLS` consecutive polls is deleted, with a compare-and-set on the heartbeat it was
last seen with so a member that just came back is not removed. The master is the member with
the lowest id. The row's `data` carries the member's HA state and ZooKeeper mode so that any
node can show every member in its status view. That is the `tuned` profile's membership.

The `rancher-1.0` profile runs cluster-manager v0.1.5's own decisions (`MissedPolls`,
`assign_slots`, `slots_of`; clustermgr.py applies them): members are keyed by the uuid each
manager start draws, itself included; a member is forgotten after `MAX_MISSED` polls in a row
without a new heartbeat (an unconditional delete by uuid); the member with the lowest id is the
master and gives every member without a slot one of the slots 1..N; what a node then does with
its slot and its peers' is clustermgr.py's. See docs/rancher-1.0-behaviour.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .tunnels import Spec

STALE_POLLS = 2
MAX_MISSED = 2  # cluster-manager v0.1.5: maxMissed
# Base ports of the services a slot has (cluster-manager's db.go): slot i's listens on base + i - 1
# on every node's loopback, its own member's for real and the others' through tunnels, and each
# node takes its peers' tunnels on base + PUBLIC_OFFSET (the parent container's ports).
SERVICES = {"zk-client": 2181, "zk-quorum": 2888, "zk-leader": 3888, "redis": 6379}
PUBLIC_OFFSET = 10000
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    uuid: str
    ip_address: str | None
    heartbeat: int
    data: Mapping[str, Any]
    requested_index: int = 0
    assigned_index: int = 0


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


class MissedPolls:
    """cluster-manager's memory of the members between polls, keyed by uuid, itself included.

    Every poll counts one more miss for every member it remembers, then clears the count of each
    row whose heartbeat changed; rows it has not seen before start at no miss. A member it
    remembers stays even when its row is gone (another node deleted it) until it is forgotten.
    """

    def __init__(self, max_missed: int = MAX_MISSED) -> None:
        self.max_missed = max_missed
        self._seen: dict[str, tuple[Member, int]] = {}  # uuid -> (member as last read, misses)
        self._beats: dict[str, int] = {}  # uuid -> the heartbeat value the misses count from

    def observe(self, rows: Iterable[Member]) -> list[Member]:
        """Feed one poll's rows; returns the members to delete (missed `max_missed` in a row)."""
        seen = {u: (m, n + 1) for u, (m, n) in self._seen.items()}
        for row in rows:
            if row.uuid not in seen or self._beats[row.uuid] != row.heartbeat:
                seen[row.uuid] = (row, 0)
                self._beats[row.uuid] = row.heartbeat
            else:
                seen[row.uuid] = (row, seen[row.uuid][1])
        self._seen = seen
        return [m for m, n in seen.values() if n >= self.max_missed]

    def forget(self, uuid: str) -> None:
        """After its row was deleted (a failed delete keeps it, to be tried again next poll)."""
        self._seen.pop(uuid, None)
        self._beats.pop(uuid, None)

    def members(self) -> list[Member]:
        return sorted((m for m, _ in self._seen.values()), key=lambda m: m.id)


def is_master(members: list[Member], self_uuid: str) -> bool:
    """The lowest id of the members this manager remembers is its own."""
    lowest = master(members)
    return lowest is not None and lowest.uuid == self_uuid


def assign_slots(members: list[Member], size: int) -> dict[int, Member] | None:
    """What the master saves as slot -> member, or None when no member gets a new slot.

    Members keep their slots; a member without one gets the slot it requested if that is free,
    then the free slots 1..size go to the rest. cluster-manager walked a Go map there, so which
    member got which free slot was random; the lab gives them out by ascending id.
    """
    by_slot: dict[int, Member] = {}
    waiting: list[Member] = []
    for m in sorted(members, key=lambda m: m.id):
        if m.assigned_index > 0:
            by_slot.setdefault(m.assigned_index, m)
        else:
            waiting.append(m)
    changed = False
    for m in list(waiting):
        if m.requested_index > 0 and m.requested_index not in by_slot:
            by_slot[m.requested_index] = m
            waiting.remove(m)
            changed = True
    for slot in range(1, size + 1):
        if slot not in by_slot and waiting:
            by_slot[slot] = waiting.pop(0)
            changed = True
    return by_slot if changed else None


@dataclass(frozen=True)
class Slots:
    """What one node applies: the address of the member in each slot 1..N ("" for an empty slot)
    and its own slot (0: none yet). Any change makes cluster-manager reconfigure."""

    addresses: tuple[str, ...]
    own: int

    def address(self, slot: int) -> str:
        return self.addresses[slot - 1]


def slots_of(members: list[Member], size: int, self_uuid: str) -> Slots:
    by_slot: dict[int, Member] = {}
    for m in sorted(members, key=lambda m: m.id):
        if 0 < m.assigned_index <= size:
            by_slot.setdefault(m.assigned_index, m)
    own = next((s for s, m in by_slot.items() if m.uuid == self_uuid), 0)
    return Slots(tuple((by_slot[s].ip_address or "") if s in by_slot else "" for s in range(1, size + 1)), own)


def slot_port(service: str, slot: int) -> int:
    return SERVICES[service] + slot - 1


def zk_hosts(size: int) -> str:
    """CATTLE_ZOOKEEPER_CONNECTION_STRING as cluster-manager gave it to cattle: every slot's
    client port on the loopback, slot 1 first."""
    return ",".join(f"{LOOPBACK}:{slot_port('zk-client', s)}" for s in range(1, size + 1))


def redis_hosts(size: int) -> str:
    """CATTLE_REDIS_HOSTS the same way."""
    return ",".join(f"{LOOPBACK}:{slot_port('redis', s)}" for s in range(1, size + 1))


def zk_servers(size: int) -> dict[int, tuple[str, int, int]]:
    """zoo.cfg's members as rancher/server's zk script wrote them: one per slot of the cluster
    size, whoever holds it, at its loopback quorum and election ports (none for one node)."""
    if size == 1:
        return {}
    return {s: (LOOPBACK, slot_port("zk-quorum", s), slot_port("zk-leader", s)) for s in range(1, size + 1)}


def tunnel_plan(slots: Slots, address: str) -> dict[str, Spec | None]:
    """Tunnel name -> what it must be (None: deleted) for these slots. A peer's slot is reached
    through an outgoing tunnel to its public port; a slot held by this node (its own, or an old
    row of this host) is served through an incoming one from the public port."""
    plan: dict[str, Spec | None] = {}
    for slot in range(1, len(slots.addresses) + 1):
        peer = slots.address(slot)
        for service, base in SERVICES.items():
            local = slot_port(service, slot)
            if not peer:
                spec = None
            elif slot != slots.own and peer != address:
                spec = Spec(LOOPBACK, local, peer, base + PUBLIC_OFFSET)
            else:
                spec = Spec("0.0.0.0", base + PUBLIC_OFFSET, LOOPBACK, local)
            plan[f"{service}-{slot}"] = spec
    return plan


def checkin(conn: Any, uuid: str, name: str, address: str, requested: int, beat: int) -> None:
    """cluster-manager's heartbeat: a new counter value into our row, inserting it when absent."""
    with conn.cursor() as cur:
        if cur.execute("UPDATE cluster SET heartbeat = %s WHERE uuid = %s", (beat, uuid)) == 0:
            cur.execute(
                "INSERT INTO cluster (name, heartbeat, uuid, ip_address, requested_index, assigned_index, data)"
                " VALUES (%s, %s, %s, %s, %s, 0, '{}')",
                (name, beat, uuid, address, requested),
            )


def members(conn: Any) -> list[Member]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, uuid, ip_address, heartbeat, data, requested_index, assigned_index"
            " FROM cluster ORDER BY id"
        )
        rows = cur.fetchall()
    return [
        Member(int(r[0]), r[1] or "", r[2], r[3], int(r[4] or 0), _load(r[5]), int(r[6] or 0), int(r[7] or 0))
        for r in rows
    ]


def delete(conn: Any, uuid: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM cluster WHERE uuid = %s", (uuid,))


def save_slots(conn: Any, by_slot: Mapping[int, Member]) -> None:
    with conn.cursor() as cur:
        for slot, m in by_slot.items():
            cur.execute("UPDATE cluster SET assigned_index = %s, requested_index = 0 WHERE id = %s", (slot, m.id))


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
    return [Member(int(r[0]), r[1] or "", r[2], r[3], int(r[4] or 0), _load(r[5])) for r in rows]


def remove(conn: Any, member: Member) -> bool:
    with conn.cursor() as cur:
        deleted: int = cur.execute(
            "DELETE FROM cluster WHERE id = %s AND heartbeat = %s", (member.id, member.heartbeat)
        )
        return deleted == 1


def _load(raw: str | None) -> Mapping[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
