"""The lab's database: today's one MariaDB (`single`) or a MariaDB Galera cluster (`galera:3|5`).

Pure: no Docker, no I/O. `make_database` validates `--db`, `--db-layout` and `--db-arbitrator`
once, against the lab's datacenters, so that a `Database` can be trusted downstream
(docs/galera.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.core.errors import BadInput

SINGLE = "single"
GALERA = "galera"
GALERA_SIZES = (3, 5)
ARBITRATOR = "garbd"  # the arbitrator's service name, and its name among the quorum's voters
_SITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DB_KINDS = f"{SINGLE}, {GALERA}:3 or {GALERA}:5"


@dataclass(frozen=True)
class Database:
    """`single`: one MariaDB (members 1, no layout). `galera`: members db1..dbN, `layout[i]` the
    datacenter of member i + 1, and an optional `garbd` arbitrator at the site `arbitrator` (a
    datacenter of the lab or a site of its own, beyond every datacenter)."""

    kind: str = SINGLE
    members: int = 1
    layout: tuple[str, ...] = ()
    arbitrator: str | None = None

    @property
    def galera(self) -> bool:
        return self.kind == GALERA

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(f"db{i}" for i in range(1, len(self.layout) + 1))

    def placement(self) -> tuple[tuple[str, str], ...]:
        """(voter, site) for every Galera voter: each member, then the arbitrator."""
        out = tuple(zip(self.member_names, self.layout, strict=True))
        return out + (((ARBITRATOR, self.arbitrator),) if self.arbitrator else ())

    def describe(self) -> str:
        if not self.galera:
            return SINGLE
        where = ", ".join(f"{m} in {dc}" for m, dc in zip(self.member_names, self.layout, strict=True))
        return f"galera:{self.members} ({where}{f'; garbd in {self.arbitrator}' if self.arbitrator else ''})"


def spread(members: int, node_layout: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Members over the datacenters in the nodes' proportions (largest remainder, ties to the
    earlier datacenter): 3 members over dc-a:2,dc-b:1 = dc-a,dc-a,dc-b; 5 over dc-a:2,dc-b:1 =
    dc-a x3, dc-b x2."""
    total = sum(c for _, c in node_layout)
    shares = [(dc, members * c / total) for dc, c in node_layout]
    counts = {dc: int(s) for dc, s in shares}
    left = members - sum(counts.values())
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i][1] - int(shares[i][1])), i))
    for i in by_remainder[:left]:
        counts[shares[i][0]] += 1
    return tuple(dc for dc, _ in node_layout for _ in range(counts[dc]))


def make_database(
    db: str | None,
    layout: str | Sequence[str] | None,
    arbitrator: str | None,
    node_layout: Sequence[tuple[str, int]],
) -> Database:
    """Validate --db, --db-layout and --db-arbitrator against the lab's datacenters (NODE_LAYOUT:
    (datacenter, nodes) in order). Every error names its option and what is allowed."""
    dcs = tuple(dc for dc, _ in node_layout)
    kind, _, size = (db or SINGLE).strip().partition(":")
    if kind == SINGLE and not size:
        if layout is not None or arbitrator is not None:
            given = "--db-layout" if layout is not None else "--db-arbitrator"
            raise BadInput(f"{given}: goes with --db galera:3 or galera:5, not with a single database")
        return Database()
    if kind != GALERA or size not in tuple(str(s) for s in GALERA_SIZES):
        hint = " (Galera needs an odd member count for a majority; 1 is --db single)" if kind == GALERA else ""
        raise BadInput(f"--db: {db!r} is not {DB_KINDS}{hint}")
    members = int(size)
    if layout is None:
        placed = spread(members, node_layout)
    else:
        placed = tuple(p.strip() for p in (layout.split(",") if isinstance(layout, str) else layout))
        if len(placed) != members:
            raise BadInput(
                f"--db-layout: {','.join(placed)} places {len(placed)} member(s), but --db {db} has {members}; "
                f"name one datacenter per member, e.g. {','.join(spread(members, node_layout))}"
            )
        for dc in placed:
            if dc not in dcs:
                raise BadInput(f"--db-layout: {dc!r} is not a datacenter of this lab ({', '.join(dcs)})")
    if arbitrator is not None and not _SITE_RE.match(arbitrator):
        raise BadInput(
            f"--db-arbitrator: {arbitrator!r} is not a site: a datacenter of this lab ({', '.join(dcs)}) "
            f"or a third site's name (lowercase letters, digits, '-'), e.g. dc-c"
        )
    return Database(GALERA, members, placed, arbitrator)
