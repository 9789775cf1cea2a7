"""Which Galera member the lab bootstraps after every member stopped: found, never guessed.

Each member's data directory keeps `grastate.dat` (the cluster's uuid, the last committed seqno and
`safe_to_bootstrap`). A clean shutdown writes the seqno; the last member to leave a primary
component cleanly also gets `safe_to_bootstrap: 1`. After a crash the seqno is -1 and the position
comes from `mariadbd --wsrep-recover` ("WSREP: Recovered position: <uuid>:<seqno>"). The member to
start with `--wsrep-new-cluster` is the one marked safe, else the one with the highest position
(MariaDB, "Recovering a Primary Component after a full cluster outage"). Bootstrapping any other
would throw away transactions the others committed, so the choice refuses to guess: members of
different clusters, or a member whose position is unknown, raise instead.

Pure: parsing and the choice; the entrypoint and lifecycle read the files and run the recovery.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lab.core.errors import BadInput, RuntimeFailure

UNKNOWN_SEQNO = -1
_RECOVERED_RE = re.compile(r"WSREP: Recovered position:\s*([0-9a-f-]{36}):(-?\d+)")


@dataclass(frozen=True)
class GraState:
    uuid: str
    seqno: int
    safe_to_bootstrap: bool


def parse_grastate(text: str, where: str = "grastate.dat") -> GraState:
    """The fields of a grastate.dat (`key: value` lines, `#` comments)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            fields[key.strip()] = value.strip()
    try:
        return GraState(fields["uuid"], int(fields["seqno"]), fields.get("safe_to_bootstrap", "0") == "1")
    except (KeyError, ValueError):
        raise BadInput(f"{where}: not a Galera saved state (needs uuid and a numeric seqno)") from None


def recovered_position(log: str) -> tuple[str, int] | None:
    """(uuid, seqno) from the output of `mariadbd --wsrep-recover`, the last one it logged."""
    found = _RECOVERED_RE.findall(log)
    return (found[-1][0], int(found[-1][1])) if found else None


def choose_bootstrap(states: Mapping[str, GraState], recovered: Mapping[str, int] | None = None) -> str:
    """The member to bootstrap from every member's saved state (STATES, member -> GraState) and,
    for members whose seqno is -1, the seqno `--wsrep-recover` found (RECOVERED). Ties go to the
    member first in order (db1 before db2): any of them holds every committed transaction."""
    if not states:
        raise RuntimeFailure("no Galera member has a saved state: nothing to bootstrap from")
    uuids = {s.uuid for s in states.values()}
    if len(uuids) != 1:
        raise RuntimeFailure(
            "Galera members belong to different clusters ("
            + ", ".join(f"{m}: {s.uuid}" for m, s in sorted(states.items()))
            + "): the lab will not pick one; remove the stray member's data"
        )
    safe = sorted(m for m, s in states.items() if s.safe_to_bootstrap)
    if safe:
        return safe[0]
    recovered = recovered or {}
    positions: dict[str, int] = {}
    for member, s in sorted(states.items()):
        seqno = s.seqno if s.seqno != UNKNOWN_SEQNO else recovered.get(member, UNKNOWN_SEQNO)
        if seqno == UNKNOWN_SEQNO:
            raise RuntimeFailure(
                f"{member}: seqno unknown (-1 in grastate.dat and no --wsrep-recover position): "
                "the most advanced member cannot be found"
            )
        positions[member] = seqno
    best = max(positions.values())
    return min(m for m, p in positions.items() if p == best)
