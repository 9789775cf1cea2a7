"""The part of the faults that touches Docker: the lab's containers, docker commands on them
(kill, stop, pause, start...), iptables inside the nodes, connection checks, ZooKeeper roles, the
events command. The rest of lab.faults calls these through this module (`backend.containers(t)`),
so the unit tests replace them with a fake lab (tests/unit/test_faults.py)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from lab.cluster import docker, engine, probes, swarm
from lab.cluster.docker import ContainerState
from lab.cluster.galera import FRONT
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure
from lab.core.wait import poll
from lab.faults.netmodel import is_up, path_ip, rule_holders, rule_tag, source_dc
from lab.faults.spec import DB, LB

ZK_PORT, DB_PORT, LB_PORT, GALERA_PORT = 2181, 3306, 80, 4567
# What a connectivity check connects to; a peer: its ZooKeeper; a Galera voter: its group port.
PORTS = {DB: DB_PORT, LB: LB_PORT}

CONNECT_TIMEOUT = 0.5  # a TCP handshake inside one Docker host takes well under a millisecond

STOP_GRACE = 5  # seconds, as the compose file's stop_grace_period

SETTLE_TIMEOUT = 15.0  # a container state change that takes longer than this did not happen
# A swarm task replaced: the old one stopped (its grace period), the new one scheduled and started.
SWARM_SETTLE_TIMEOUT = 60.0


# Connectivity check run inside a node container: [ip, port, attempts] -> [[open, cut], ...].
# A refused connection proves the path works (nothing listens there); a timeout means dropped.
_CHECK = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def attempt(i):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((targets[i][0], targets[i][1]))
        return i, True
    except ConnectionRefusedError:
        return i, True
    except OSError:
        return i, False
    finally:
        s.close()
out = [[0, 0] for _ in targets]
with ThreadPoolExecutor(64) as ex:
    for i, ok in ex.map(attempt, [i for i, t in enumerate(targets) for _ in range(t[2])]):
        out[i][0 if ok else 1] += 1
print(json.dumps(out))
"""


# With a pattern ($1, quotes included so f1 never matches f10), rewrite_rules' script notes the
# rules whose comment contains it before inserting the new ones, deletes those afterwards (a
# failed delete shows in the count), and prints how many rules carry the pattern then.
_NOTE_OLD = """old=$(iptables -w -S | grep -F -- "$1" | sed 's/^-A /-D /' || true)"""

_DELETE_OLD = r"""set +e
printf '%s\n' "$old" | while read -r rule; do [ -z "$rule" ] || eval "iptables -w $rule"; done
iptables -w -S | grep -cF -- "$1" || true
"""


def containers(t: Topology) -> dict[str, ContainerState]:
    """Lab service (node name, db, lb) -> the state of its container (a fault's own containers,
    outside compose and the stack, are not the lab's services). A Galera database's front is `db`:
    the address the nodes use, as the fault model has it."""
    return {_endpoint(t, service): c for service, c in engine.current(engine.states(t)).items()}


def _endpoint(t: Topology, service: str) -> str:
    return DB if t.db.galera and service == FRONT else service


def start(t: Topology, services: Sequence[str]) -> None:
    """Start the stopped containers of `services` (fault endpoints); on a swarm, a new task of each
    (a kill or stop left it scaled to none; restart policy `none` left a dead task dead)."""
    if not services:
        return
    if t.engine.swarm:
        swarm.run_again(t, [_service(t, s) for s in services])
    else:
        act(t, ["docker", "start"], services, f"start {' '.join(services)}", timeout=120)


def restart(t: Topology, services: Sequence[str]) -> None:
    """Restart the containers of `services` (fault endpoints); on a swarm, a new task of each: the
    swarm's restart (a new container and address), since `docker restart` of a task's container
    would be a task failure to it."""
    if t.engine.swarm:
        swarm.run_again(t, [_service(t, s) for s in services])
    else:
        command = ["docker", "restart", "--time", str(STOP_GRACE)]
        act(t, command, services, f"restart {' '.join(services)}", timeout=120)


def _service(t: Topology, endpoint: str) -> str:
    """The lab service of a fault's endpoint (`db`: a Galera database's front)."""
    return FRONT if t.db.galera and endpoint == DB else endpoint


def place(t: Topology, endpoint: str, found: Mapping[str, ContainerState] | None = None) -> engine.Place:
    """Where the container of a fault endpoint is; `found`: containers(t) as just read (else a
    swarm lab's hosts are asked now)."""
    known = None if found is None else {_service(t, e): c for e, c in found.items()}
    return engine.place(t, _service(t, endpoint), known)


def places(t: Topology, endpoints: Collection[str]) -> dict[str, engine.Place]:
    """endpoint -> where its container is, a swarm lab's hosts asked once for all of them."""
    found = containers(t) if t.engine.swarm else None
    return {e: place(t, e, found) for e in endpoints}


def exec_in(
    container: str | engine.Place,
    args: Sequence[str],
    what: str,
    *,
    root: bool = False,
    input: str | None = None,
    timeout: float = 30,
) -> str:
    """`docker exec` in a container: one of this machine's by name, or one wherever it runs."""
    where = engine.Place(docker.LOCAL, container) if isinstance(container, str) else container
    return docker.run(
        where.command("exec", *(["-u", "root"] if root else []), *(["-i"] if input else []), where.container, *args),
        what,
        input=input,
        timeout=timeout,
    )


def root_script(
    t: Topology, service: str, script: str, args: Sequence[str], what: str, tools: Mapping[str, str]
) -> str:
    """Run a shell script as root in a node or a Galera voter (`sh -s -- args`); `tools`: command
    -> the Debian package of its image that has it, named when the image lacks it."""
    try:
        return exec_in(
            engine.place(t, service), ["sh", "-s", *(["--", *args] if args else [])], what, root=True, input=script
        )
    except RuntimeFailure as exc:
        missing = [p for c, p in tools.items() if exc.stderr_has(f"{c}: not found", f"{c}: command not found")]
        if missing:
            raise RuntimeFailure(
                f"{missing[0]} is missing in {service}'s image: rebuild it with `halab build --only "
                f"{'node' if service in t.node_names else 'galera'} --force`"
            ) from exc
        raise


def connectivity(
    t: Topology,
    paths: Sequence[tuple[str, str, int]],
    ips: Mapping[str, Mapping[str, str]],
) -> dict[tuple[str, str], tuple[int, int]]:
    """(src, dst, attempts) -> {(src, dst): (open, cut)}; runs one check per source container."""
    voters = {v for v, _ in t.db.placement()}
    by_src: dict[str, list[tuple[str, str, int]]] = {}
    for p in paths:
        by_src.setdefault(p[0], []).append(p)

    def run(src: str) -> dict[tuple[str, str], tuple[int, int]]:
        todo = [(d, path_ip(d, ips, source_dc(t, src)), n) for _, d, n in by_src[src]]
        targets = [[ip, PORTS.get(d, GALERA_PORT if d in voters else ZK_PORT), n] for d, ip, n in todo if ip]
        out: list[list[int]]  # [open, cut] per target
        try:
            out = json.loads(
                exec_in(
                    engine.place(t, src),
                    ["python3", "-c", _CHECK, json.dumps(targets), str(CONNECT_TIMEOUT)],
                    f"check connectivity from {src}",
                    timeout=60,
                )
            )
        except (RuntimeFailure, ValueError):
            out = [[0, n] for _, ip, n in todo if ip]  # a source that cannot run the check reaches nothing
        found = iter(out)
        answers: dict[tuple[str, str], tuple[int, int]] = {}
        for d, ip, n in todo:
            opened, cut = next(found) if ip else (0, n)
            answers[(src, d)] = (opened, cut)
        return answers

    result: dict[tuple[str, str], tuple[int, int]] = {}
    with ThreadPoolExecutor(max(1, len(by_src))) as ex:
        for part in ex.map(run, by_src):
            result.update(part)
    return result


def rules_script(rules: Sequence[Sequence[str]], replacing: str) -> tuple[str, list[str]]:
    """A shell script (`sh -s -- ARGS`) that inserts RULES (iptables argument lists) and, with
    `replacing` (a comment pattern), then deletes the rules that carried it before and prints how
    many carry it afterwards (rules_left reads it)."""
    inserts = ["iptables -w " + shlex.join(r) for r in rules]
    script = "\n".join(
        ["set -e", *([_NOTE_OLD] if replacing else []), *inserts, *([_DELETE_OLD] if replacing else []), ""]
    )
    return script, [replacing] if replacing else []


def rules_left(out: str) -> int:
    return int((out.strip().splitlines() or ["0"])[-1])


def rewrite_rules(
    t: Topology, plan: Mapping[str, list[list[str]]], replacing: str, services: Collection[str]
) -> dict[str, int]:
    """On each of `services` (running node containers), insert its rules of `plan`; with
    `replacing` (a comment pattern), then delete the rules that carried it before, so that a path
    cut by the old rules and the new ones is never open in between. Return service -> rules
    carrying `replacing` afterwards (0 without a pattern)."""

    def one(service: str) -> tuple[str, int]:
        script, args = rules_script(plan.get(service, []), replacing)
        out = root_script(t, service, script, args, f"rewrite fault rules in {service}", {"iptables": "iptables"})
        return service, rules_left(out)

    with ThreadPoolExecutor(max(1, len(services))) as ex:
        return dict(ex.map(one, services))


def install_rules(t: Topology, plan: Mapping[str, list[list[str]]]) -> None:
    rewrite_rules(t, plan, "", list(plan))


def remove_rules(t: Topology, pattern: str, found: Mapping[str, ContainerState] | None = None) -> dict[str, int]:
    """Delete rules whose comment contains `pattern` from every running node container of the lab;
    return service -> rules left (0 when clean). Paused or stopped containers are skipped: a
    stopped one loses its rules with its network namespace, a paused one is handled by its heal."""
    found = containers(t) if found is None else found
    return rewrite_rules(t, {}, pattern, [n for n in rule_holders(t) if is_up(found.get(n))])


def count_rules(t: Topology, found: Mapping[str, ContainerState]) -> dict[str, int]:
    pattern = f'"{rule_tag(t.lab, "")}'
    live = [n for n in rule_holders(t) if is_up(found.get(n))]

    def count(service: str) -> int:
        out = exec_in(
            engine.place(t, service),
            ["sh", "-c", f"iptables -S | grep -cF -- '{pattern}' || true"],
            f"list fault rules in {service}",
            root=True,
        )
        return int((out.strip().splitlines() or ["0"])[-1])

    with ThreadPoolExecutor(max(1, len(live))) as ex:
        return dict(zip(live, ex.map(count, live), strict=True))


def roles(t: Topology) -> dict[str, str]:
    """node -> ZooKeeper mode as the node reports it (leader, follower, standalone, unknown)."""
    with ThreadPoolExecutor(t.size) as ex:
        views = ex.map(lambda n: probes.node_view(t, n), t.node_names)
        return dict(zip(t.node_names, (v.zk_mode for v in views), strict=True))


# ok(service, its container's state or None when the container is absent)
StateCheck = Callable[[str, ContainerState | None], bool]


def wait_states(
    t: Topology,
    services: Sequence[str],
    ok: StateCheck,
) -> dict[str, ContainerState]:
    """Poll the containers until `ok(service, state)` holds for each or the settle time passes
    (on a swarm, a new task's: scheduled, its old one stopped, then started); return the last states."""
    timeout = SWARM_SETTLE_TIMEOUT if t.engine.swarm else SETTLE_TIMEOUT
    return poll(lambda: containers(t), lambda found: all(ok(s, found.get(s)) for s in services), timeout, 0.1)


def events_command(t: Topology, since: float, until: float, on: Sequence[str] = docker.LOCAL) -> list[str]:
    """`docker events` (of the engine `on`: a swarm host's) for starts and unpauses of the lab's
    containers between two epoch times."""
    return [
        *on,
        "events",
        "--filter",
        f"label={docker.LAB_LABEL}={t.lab}",
        "--filter",
        "type=container",
        "--filter",
        "event=start",
        "--filter",
        "event=unpause",
        "--since",
        f"{since:.9f}",
        "--until",
        f"{until:.9f}",
        "--format",
        "{{json .}}",
    ]


def act(t: Topology, command: Sequence[str], services: Sequence[str], what: str, timeout: float) -> str:
    """Run a docker command (`docker kill --signal KILL`, `docker pause`, `docker start`...) on the
    containers of `services` (fault endpoints: `db` is a Galera database's front), once on each
    engine that runs some of them."""
    assert command[0] == "docker", command
    found = engine.current(engine.states(t)) if t.engine.swarm else None
    places = [engine.place(t, _service(t, s), found) for s in services]
    return "".join(
        docker.run([*prefix, *command[1:], *names], what, timeout=timeout)
        for prefix, names in engine.by_engine(places).items()
    )
