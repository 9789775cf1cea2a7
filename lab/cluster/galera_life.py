"""A Galera database's life on Docker (`--db galera:N`, docs/galera.md): start, recovery, status.

Start: the member to bootstrap first (`--wsrep-new-cluster`: the entrypoint does it when the lab's
`galera-bootstrap` file names the member), waited on until Synced in the Primary Component; then the
file is emptied, so that a member started later joins; the lab's user is made on that member and
the front starts; then the caller's `while_joining` (the nodes), the other members one at a time,
each joining by state transfer (IST from the image's seeded state) and waited on the same way, and
garbd. The member to bootstrap is db1 for a
new database; when the members already have data (every member went down, or `halab down
--keep-data`) it is found from their grastate.dat, and for members whose seqno is -1 (a crash) from
`mariadbd --wsrep-recover`, in one-off containers on their volumes (lab/cluster/grastate.py decides).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import yaml

from lab.agent.clustercheck import parse_status, verdict
from lab.cluster import docker, engine, grastate, state
from lab.cluster.compose import DB_USER, container_name
from lab.cluster.database import ARBITRATOR
from lab.cluster.galera import BOOTSTRAP_FILE, FIRST_BOOTSTRAP, FRONT
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure
from lab.core.wait import wait_until

log = logging.getLogger("halab.cluster.galera")

STATUS_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_local_state_comment', "
    "'wsrep_cluster_status', 'wsrep_cluster_size')"
)
STATUS_TIMEOUT = 5.0  # seconds: a member frozen by a pause fault must not hold `halab status`
RECOVER_TIMEOUT = 180.0  # seconds: `mariadbd --wsrep-recover` runs InnoDB's crash recovery
DATADIR = "/var/lib/mysql"


@dataclass(frozen=True)
class MemberView:
    """One member as `halab status` shows it; the wsrep fields are None when it does not answer."""

    name: str
    datacenter: str
    container: str  # Docker's word for its container: running, exited, paused, absent
    state: str | None  # wsrep_local_state_comment: Synced, Donor/Desynced, Joining, Joined, Initialized
    cluster_status: str | None  # wsrep_cluster_status: Primary, non-Primary, Disconnected
    cluster_size: int | None  # wsrep_cluster_size: members in its component
    ready: bool  # what the front checks: Synced in the Primary Component

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_status(t: Topology, member: str) -> dict[str, str]:
    """A member's wsrep status variables (lowercase names); {} when it does not answer in time."""
    try:
        where = engine.place(t, member)
        out = docker.run(
            where.command("exec", where.container, "labsql", "-N", "-e", STATUS_QUERY),
            f"read {member}'s wsrep status",
            timeout=STATUS_TIMEOUT,
        )
    except (RuntimeFailure, subprocess.TimeoutExpired):
        return {}
    return parse_status(out)


def view(
    member: str, datacenter: str, container: docker.ContainerState | None, status: Mapping[str, str]
) -> MemberView:
    size = status.get("wsrep_cluster_size")
    return MemberView(
        member,
        datacenter,
        "absent" if container is None else container.word,
        status.get("wsrep_local_state_comment"),
        status.get("wsrep_cluster_status"),
        int(size) if size and size.isdigit() else None,
        verdict(status)[0] == 200,
    )


def members(t: Topology, containers: Mapping[str, docker.ContainerState]) -> list[MemberView]:
    """Every member's view, read in parallel (only running members are asked)."""

    def one(placed: tuple[str, str]) -> MemberView:
        name, dc = placed
        c = containers.get(name)
        return view(name, dc, c, read_status(t, name) if c and c.up else {})

    with ThreadPoolExecutor(len(t.db.layout)) as ex:
        return list(ex.map(one, zip(t.db.member_names, t.db.layout, strict=True)))


def primary(views: list[MemberView]) -> dict[str, Any] | None:
    """Which side holds the Primary Component: its members and their datacenters (None: no member
    says it is in one, so nothing can be written)."""
    inside = [v for v in views if v.cluster_status == "Primary"]
    if not inside:
        return None
    return {
        "members": [v.name for v in inside],
        "datacenters": sorted({v.datacenter for v in inside}),
        "size": max(v.cluster_size or 0 for v in inside),
    }


def member_problem(t: Topology, member: str) -> str | None:
    """None when the member is Synced in the Primary Component, else what it is."""
    code, text = verdict(read_status(t, member))
    return None if code == 200 else f"{member}: {text}"


def unsettled(t: Topology) -> str | None:
    """None once every member is Synced in one Primary Component of every voter and the front
    writes to the first (as after a start); else what is still off. Each member's own word is not
    enough: a member thawed after a pause reports its state from before (Synced, Primary, the old
    size) until it takes in the view that excluded it, while the others still count it out
    (docs/galera.md, "The matrix"). And the front moves the sessions back to the first member once
    it is Synced, cutting them."""
    voters = len(t.db.placement())
    off = []
    for m in t.db.member_names:
        status = read_status(t, m)
        code, text = verdict(status)
        size = status.get("wsrep_cluster_size")
        if code != 200:
            off.append(f"{m}: {text}")
        elif size != str(voters):
            off.append(f"{m}: in a component of {size}, not {voters}")
    if off:
        return "; ".join(off)
    serving, first = front_target(t), t.db.member_names[0]
    return None if serving == first else f"the front writes to {serving or 'no member'}, not {first}"


def _starting(t: Topology, member: str) -> str | None:
    """member_problem, but a member whose server exited (a failed state transfer aborts it) ends
    the wait at once instead of at the deadline."""
    problem = member_problem(t, member)
    if problem:
        running = docker.run(
            ["docker", "inspect", "--format", "{{.State.Running}}", container_name(t, member)],
            f"inspect {member}",
            timeout=STATUS_TIMEOUT,
        )
        if running.strip() != "true":
            raise RuntimeFailure(f"{member} exited while starting; see `halab logs --name {t.lab} {member}`")
    return problem


def front_target(t: Topology) -> str | None:
    """The member the front sends a new connection to, asked through the front itself as the nodes
    reach it (the lab's user, `db` in the member's /etc/hosts), from each running member in turn;
    None when no connection through the front answers."""
    ask = (
        'MYSQL_PWD="$(cat /run/secrets/db_password)" exec mariadb --connect-timeout=2 -h db -u "$1" -N -B '
        "-e 'SELECT @@wsrep_node_name'"
    )
    for m in t.db.member_names:
        try:
            where = engine.place(t, m)
            out = docker.run(
                where.command("exec", where.container, "sh", "-c", ask, "sh", DB_USER),
                "ask the database front which member serves it",
                timeout=STATUS_TIMEOUT,
            )
        except (RuntimeFailure, subprocess.TimeoutExpired):
            continue
        if out.strip():
            return out.strip()
    return None


# ------------------------------------------------------------------------------------ start


def _compose_service(t: Topology, member: str) -> dict[str, Any]:
    """The member's service as the lab's compose file has it (image and environment)."""
    project = yaml.safe_load((state.lab_dir(t.lab) / "compose.yaml").read_text())
    service: dict[str, Any] = project["services"][member]
    return service


def _one_off(t: Topology, member: str, mode: str, what: str, timeout: float) -> str:
    """`entrypoint.sh MODE` in a throwaway container on the member's volume, without a network
    (labelled with the lab, so that `halab down` finds one a killed harness left behind)."""
    svc = _compose_service(t, member)
    env = [x for k, v in svc["environment"].items() for x in ("-e", f"{k}={v}")]
    where = ["--network", "none", "--label", f"{docker.LAB_LABEL}={t.lab}", "-v", f"{t.lab}_{member}data:{DATADIR}"]
    return docker.run(
        ["docker", "run", "--rm", *where, *env, svc["image"], mode],
        what,
        timeout=timeout,
    )


def saved_states(t: Topology) -> dict[str, grastate.GraState]:
    """member -> its grastate.dat, for the members whose volume holds one (a member that never
    joined, or whose volume is gone, holds nothing to bootstrap from)."""
    volumes = set(docker.run(["docker", "volume", "ls", "-q"], "list volumes").split())
    out = {}
    for m in t.db.member_names:
        if f"{t.lab}_{m}data" not in volumes:
            continue
        text = _one_off(t, m, "grastate", f"read {m}'s grastate.dat", 60)
        if text.strip():
            out[m] = grastate.parse_grastate(text, f"{m}'s grastate.dat")
    return out


def recovered_seqno(t: Topology, member: str) -> int:
    """The last committed seqno InnoDB holds for a member that crashed (`mariadbd --wsrep-recover`)."""
    out = _one_off(t, member, "recover", f"recover {member}'s position", RECOVER_TIMEOUT)
    found = grastate.recovered_position(out)
    if found is None:
        raise RuntimeFailure(f"{member}: `mariadbd --wsrep-recover` logged no position: {out.strip()[-300:]}")
    return found[1]


def bootstrap_member(t: Topology) -> str:
    """db1 for a new database; else the member grastate.py chooses from the saved states."""
    states = saved_states(t)
    if not states:
        return FIRST_BOOTSTRAP
    unknown = [m for m, s in states.items() if s.seqno == grastate.UNKNOWN_SEQNO]
    # A member marked safe is chosen without the others' positions; else every -1 needs its own.
    recovered = {} if any(s.safe_to_bootstrap for s in states.values()) else {m: recovered_seqno(t, m) for m in unknown}
    chosen = grastate.choose_bootstrap(states, recovered)
    seen = ", ".join(
        f"{m} seqno {recovered.get(m, s.seqno)}{' (recovered)' if m in recovered else ''}"
        f"{' safe_to_bootstrap' if s.safe_to_bootstrap else ''}"
        for m, s in states.items()
    )
    log.info(f"  database: bootstrapping {chosen} ({seen})")
    return chosen


def write_bootstrap(t: Topology, member: str) -> None:
    """Name the member the entrypoints bootstrap ('' for none). Written in place: the members
    mount the file itself."""
    (state.lab_dir(t.lab) / BOOTSTRAP_FILE).write_text(f"{member}\n" if member else "")


def create_users(t: Topology, member: str) -> None:
    """The lab's database and user, made (or their password set again) through a client session on
    MEMBER, primary, so that Galera replicates them to every member, those joining after included.
    The SQL comes from the member's entrypoint, which reads the password from its secret file; it
    goes through a pipe inside the container, never on a command line."""
    where = engine.place(t, member)
    docker.run(
        where.command("exec", where.container, "sh", "-c", "/usr/local/bin/entrypoint.sh users | labsql"),
        f"create the lab's database and user on {member}",
        timeout=30,
    )


def start(t: Topology, deadline: float, while_joining: Callable[[], None] | None = None) -> str:
    """Start the database (every member down) and return the member bootstrapped: that member, the
    lab's user on it, the front; then WHILE_JOINING, if given (a lab's start brings up its nodes
    there, which need only the front); then the other members, one at a time, and garbd.
    `deadline`: time.monotonic() by which it must be ready."""
    project = docker.client(t.lab, state.lab_dir(t.lab) / "compose.yaml")
    first = bootstrap_member(t)
    write_bootstrap(t, first)
    try:
        _start_member(t, project, first, deadline)
    finally:
        write_bootstrap(t, "")  # from now on a member that starts joins, never forms a second cluster
    create_users(t, first)
    with docker.docker_errors("start the database front"):
        project.compose.up([FRONT], detach=True, dependencies=False)
    took = wait_until(
        "the database front", lambda: None if front_target(t) else "no member answers through it", deadline
    )
    log.info(f"  database front: serving through {front_target(t)} after {took:.1f} s")
    if while_joining:
        while_joining()
    for m in t.db.member_names:
        if m != first:
            # One at a time: a joiner's state transfer holds its donor, which then refuses others.
            _start_member(t, project, m, deadline)
    if t.db.arbitrator:
        with docker.docker_errors("start the arbitrator"):
            # Recreated: after a full stop it would stay in the old cluster's component.
            project.compose.up([ARBITRATOR], detach=True, dependencies=False, force_recreate=True)
    return first


def _start_member(t: Topology, project: Any, member: str, deadline: float) -> None:
    with docker.docker_errors(f"start {member}"):
        project.compose.up([member], detach=True, dependencies=False)
    took = wait_until(f"{member} Synced in the Primary Component", partial(_starting, t, member), deadline)
    log.info(f"  {member}: Synced in the Primary Component after {took:.1f} s")
