"""Faults and their undo (the nemesis): each verified to have taken effect, each recorded with its
start and end, all listed in a registry in the lab's state directory so that any process can heal
them, even after the one that applied them was killed.

Kinds (`FaultSpec.kind`):

- `kill` (SIGKILL: a host crash), `stop` (graceful), `pause` (cgroup freezer: a frozen host),
  `restart`: containers named by `targets`: node names, `db`, `lb`, or the roles `leader`,
  `follower`, `random` (resolved when applied, from each node's ZooKeeper mode; seeded).
- `isolate`: one node cut from its peers and the database; its load balancer path stays, so the
  node is seen fencing itself (`/ping` 503) rather than vanishing.
- `split`: datacenters cut apart (`sides`: lists of datacenters; those not named form one more
  side). The database goes with the side holding `topology.db_dc` (unless it is external).
- `partition`: named groups of nodes (and `db`) cut apart; unnamed nodes form one more group, an
  unnamed database stays reachable from every group.
- `flaky`: `loss` percent of packets dropped between two endpoint sets (`sides`).

`one_way` (split, partition, flaky) drops only the packets leaving the first side. A network
fault is iptables DROP rules inside the node containers (they keep NET_ADMIN for this; the
database and load balancer are never touched), each commented `halab:<lab>:<fault id>` so a heal
finds them, leftovers included, with `iptables -S`. A rule for packets from A to B sits in A's
OUTPUT chain, or in B's INPUT chain when A is the database, so a loss probability applies once.

Verification: container faults by the container's state; network faults by TCP connects between
the affected containers before (the path must work) and after (it must not; for `flaky`, enough
attempts that at least one is dropped with probability 1 - 1e-4). A fault that did not take
effect is undone and raises FaultNotEffective.

A network fault holds until it is healed, whatever happens to the containers meanwhile. A node
container that starts has a fresh network namespace (its own rules gone) and maybe other
addresses (its peers' rules miss it); a node down or paused when the fault was applied holds no
rules of its own. So `reapply` computes each active network fault's rules again from the
containers as they are, replaces them on every live node (the new ones in before the old ones go)
and checks the cut paths again; the fault's record lists each time under `reapplied`. It runs
right after a `restart` fault and after the heal of a kill, stop or pause, and, while an Injector
holds a network fault, on every start or unpause of one of the lab's containers, whoever caused it
(`docker restart`, a crash), seen by a thread reading `docker events` (StartWatcher). The window
between a container's start and its rules is small but not zero: a restarted node may exchange
packets with its peers for a fraction of a second (the record notes it per node as `exposed`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import math
import os
import random
import shlex
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence

from lab import docker, probes, state
from lab.compose import container_name
from lab.errors import BadInput, FaultNotEffective, RuntimeFailure
from lab.history import FaultRecord, JsonlWriter
from lab.topology import EXTERNAL_DB, Topology

CONTAINER_KINDS = ("kill", "stop", "pause", "restart")
NETWORK_KINDS = ("isolate", "split", "partition", "flaky")
KINDS = CONTAINER_KINDS + NETWORK_KINDS
ROLES = ("leader", "follower", "random")
DB, LB = "db", "lb"
ZK_PORT, DB_PORT = 2181, 3306
REGISTRY_FILE = "faults.json"
# Held while rules of a fault change (apply, reapply, heal), so that a reapply never puts back the
# rules of a fault being healed; a file lock, as `halab heal` may run in another process.
RULES_LOCK = "rules.lock"
LOG_FILE = "faults.jsonl"  # every healed fault of the lab, whoever applied it
CONNECT_TIMEOUT = 0.5  # a TCP handshake inside one Docker host takes well under a millisecond
STOP_GRACE = 5  # seconds, as the compose file's stop_grace_period
SETTLE_TIMEOUT = 15.0  # a container state change that takes longer than this did not happen
# A role target asked for just after a fault or heal may meet an election in progress; elections
# here take about a second, so a role still missing after this long is really missing.
ELECTION_TIMEOUT = 20.0
# One `docker events` process of a StartWatcher streams this long, the next resumes where it ended:
# a process orphaned by a SIGKILLed harness then ends by itself soon after.
EVENTS_CHUNK = 60.0
WATCH_STOP_TIMEOUT = 120.0  # a stop lets a reapply in progress finish (its docker execs are bounded)
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
# With a pattern ($1, quotes included so f1 never matches f10), _rewrite_rules' script notes the
# rules whose comment contains it before inserting the new ones, deletes those afterwards (a
# failed delete shows in the count), and prints how many rules carry the pattern then.
_NOTE_OLD = """old=$(iptables -w -S | grep -F -- "$1" | sed 's/^-A /-D /' || true)"""
_DELETE_OLD = r"""set +e
printf '%s\n' "$old" | while read -r rule; do [ -z "$rule" ] || eval "iptables -w $rule"; done
iptables -w -S | grep -cF -- "$1" || true
"""


# ------------------------------------------------------------------------------------ the spec

@dataclass(frozen=True)
class FaultSpec:
    kind: str
    targets: tuple[str, ...] = ()  # container kinds and isolate
    sides: tuple[tuple[str, ...], ...] = ()  # split: datacenters; partition: nodes/db; flaky: two sets
    one_way: bool = False
    loss: float | None = None  # flaky: percent of packets dropped

    def describe(self) -> str:
        if self.kind in CONTAINER_KINDS or self.kind == "isolate":
            return f"{self.kind} {' '.join(self.targets)}"
        sep = " > " if self.one_way else " | "
        text = f"{self.kind} {sep.join(','.join(s) for s in self.sides)}"
        return text + (f" ({self.loss:g}% loss)" if self.kind == "flaky" else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FaultSpec":
        return cls(d["kind"], tuple(d.get("targets", ())), tuple(tuple(s) for s in d.get("sides", ())),
                   bool(d.get("one_way", False)), d.get("loss"))


def make_spec(kind: str, targets: Iterable[str] = (), sides: Iterable[Iterable[str]] = (), *,
              one_way: bool = False, loss: float | None = None) -> FaultSpec:
    return FaultSpec(kind, tuple(targets), tuple(tuple(s) for s in sides), one_way, loss)


def validate(spec: FaultSpec, t: Topology, where: str = "fault") -> None:
    """Raise BadInput naming `where` and the field when the spec cannot apply to this topology."""
    if spec.kind not in KINDS:
        raise BadInput(f"{where}.kind: unknown fault {spec.kind!r}; choose one of {', '.join(KINDS)}")
    nodes = ", ".join(t.node_names)
    if spec.kind in CONTAINER_KINDS or spec.kind == "isolate":
        if not spec.targets:
            raise BadInput(f"{where}.target: {spec.kind} needs a target: a node ({nodes}), "
                           f"{'db, lb, ' if spec.kind != 'isolate' else ''}{', '.join(ROLES)}")
        allowed = set(t.node_names) | set(ROLES) | ({DB, LB} if spec.kind in CONTAINER_KINDS else set())
        for i, target in enumerate(spec.targets):
            if target not in allowed:
                raise BadInput(f"{where}.target: no node {target!r} in this lab (nodes: {nodes}"
                               f"{'; or db, lb' if spec.kind in CONTAINER_KINDS else ''}; or {', '.join(ROLES)})")
            if target in spec.targets[:i] and target not in ("follower", "random"):
                raise BadInput(f"{where}.target: {target!r} is named twice")
        if spec.kind == "isolate" and len(spec.targets) != 1:
            raise BadInput(f"{where}.target: isolate takes one node (use partition for groups)")
        if spec.targets.count("follower") > t.size - 1:
            raise BadInput(f"{where}.target: a {t.size}-node lab has {t.size - 1} follower(s)")
        if len(spec.targets) > t.size + 2:
            raise BadInput(f"{where}.target: more targets than containers")
    elif spec.targets:
        raise BadInput(f"{where}.target: {spec.kind} takes sides, not targets")
    if spec.kind not in ("split", "partition", "flaky") and (spec.sides or spec.one_way):
        raise BadInput(f"{where}.{'sides' if spec.sides else 'one_way'}: only split, partition and flaky take it")
    if spec.kind == "split":
        if len(t.datacenters) < 2:
            raise BadInput(f"{where}.kind: a split needs two datacenters; this lab has one ({t.datacenters[0]})")
        if spec.sides:
            _check_sides(spec.sides, t.datacenters, "datacenter", f"{where}.sides", allow_one=True)
    elif spec.kind == "partition":
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=True)
        if not any(n in s for s in spec.sides for n in t.node_names):
            raise BadInput(f"{where}.sides: name at least one node")
    elif spec.kind == "flaky":
        if len(spec.sides) != 2:
            raise BadInput(f"{where}.sides: flaky takes two endpoint sets, e.g. [a1] and [b1, db]")
        _check_sides(spec.sides, (*t.node_names, DB), "node", f"{where}.sides", allow_one=False)
    if spec.kind == "flaky":
        if not isinstance(spec.loss, (int, float)) or isinstance(spec.loss, bool) or not 1 <= spec.loss <= 100:
            raise BadInput(f"{where}.loss: flaky needs a loss percentage from 1 to 100 (below 1 % a drop "
                           f"cannot be verified in a bounded number of attempts), got {spec.loss!r}")
    elif spec.loss is not None:
        raise BadInput(f"{where}.loss: only flaky takes a loss percentage")


def _check_sides(sides: Sequence[Sequence[str]], known: Sequence[str], what: str, where: str, *,
                 allow_one: bool) -> None:
    seen: set[str] = set()
    for i, side in enumerate(sides):
        if not side:
            raise BadInput(f"{where}[{i}]: empty side")
        for name in side:
            if name not in known:
                raise BadInput(f"{where}[{i}]: no {what} {name!r} in this lab ({', '.join(known)})")
            if name in seen:
                raise BadInput(f"{where}[{i}]: {name!r} is on two sides")
            seen.add(name)
    rest = [k for k in known if k not in seen and k != DB]
    if len(sides) + (1 if rest and allow_one else 0) < 2:
        raise BadInput(f"{where}: a cut needs two sides; every {what} is on one side")


# ------------------------------------------------------------------------- the network model

@dataclass(frozen=True)
class Cut:
    """Packets from `src` to `dst` (node names or `db`) dropped with `probability`."""

    src: str
    dst: str
    probability: float = 1.0


def groups(spec: FaultSpec, t: Topology) -> tuple[frozenset[str], ...]:
    """The sides of a network fault as sets of endpoints (nodes and maybe `db`). An endpoint in no
    group is cut from nobody (the database when it is external or not named)."""
    if spec.kind == "isolate":
        (node,) = spec.targets
        return frozenset({node}), frozenset(n for n in (*t.node_names, DB) if n != node)
    if spec.kind == "split":
        named = [set(s) for s in spec.sides] or [{dc} for dc in t.datacenters]
        rest = [dc for dc in t.datacenters if not any(dc in s for s in named)]
        sides = named + ([set(rest)] if rest else [])
        out = []
        for dcs in sides:
            members = {n.name for n in t.nodes if n.dc in dcs}
            if t.db_dc != EXTERNAL_DB and t.db_dc in dcs:
                members.add(DB)
            out.append(frozenset(members))
        return tuple(out)
    if spec.kind in ("partition", "flaky"):
        named = [frozenset(s) for s in spec.sides]
        rest = frozenset(n for n in t.node_names if not any(n in s for s in named))
        return tuple(named + ([rest] if rest and spec.kind == "partition" else []))
    raise ValueError(f"{spec.kind} is not a network fault")


def cuts(spec: FaultSpec, t: Topology) -> tuple[Cut, ...]:
    """Every directed (src, dst) pair whose packets the fault drops."""
    probability = (spec.loss or 100.0) / 100.0 if spec.kind == "flaky" else 1.0
    gs = groups(spec, t)
    out = []
    for i, a in enumerate(gs):
        for j, b in enumerate(gs):
            if i == j or (spec.one_way and i != 0):
                continue
            out.extend(Cut(s, d, probability) for s in sorted(a) for d in sorted(b))
    return tuple(out)


def rule_tag(lab: str, fault_id: str) -> str:
    return f"halab:{lab}:{fault_id}"


def rules(cut_list: Iterable[Cut], ips: Mapping[str, Sequence[str]], tag: str,
          live: Collection[str]) -> dict[str, list[list[str]]]:
    """node -> iptables argument lists. A cut's rule sits in its source's OUTPUT chain, or in its
    destination's INPUT chain when the source cannot hold one: the database (no NET_ADMIN) or a
    node that is down or frozen. `live`: the nodes that can take rules now."""
    out: dict[str, list[list[str]]] = {}
    for c in cut_list:
        if c.src in live:
            at, chain, flag, peer = c.src, "OUTPUT", "-d", c.dst
        elif c.dst in live:
            at, chain, flag, peer = c.dst, "INPUT", "-s", c.src
        else:
            continue
        chance = [] if c.probability >= 1.0 else ["-m", "statistic", "--mode", "random",
                                                  "--probability", f"{c.probability:.4f}"]
        for ip in ips[peer]:
            out.setdefault(at, []).append(["-I", chain, flag, ip, *chance, "-m", "comment", "--comment", tag,
                                           "-j", "DROP"])
    return out


def check_paths(cut_list: Iterable[Cut], live: Collection[str]) -> list[tuple[str, str]]:
    """(from node, to endpoint) connections that show each cut, from the end that holds its rule:
    from the source, or from the destination towards the source (a dropped SYN-ACK fails the
    handshake just the same)."""
    out = []
    for c in cut_list:
        pair = (c.src, c.dst) if c.src in live else (c.dst, c.src) if c.dst in live else None
        if pair and pair not in out:
            out.append(pair)
    return out


def attempts_for(probability: float) -> int:
    """Connects needed so that at least one is dropped with probability 1 - 1e-4."""
    if probability >= 1.0:
        return 1
    return min(1000, math.ceil(math.log(1e-4) / math.log(1.0 - probability)))


# --------------------------------------------------------------------------- the lab's docker

def containers(t: Topology) -> dict[str, dict[str, Any]]:
    """Compose service (node name, db, lb) -> `docker inspect` of its container."""
    found = docker.inspect(docker.labelled("container", t.lab))
    return {c["Config"]["Labels"].get("com.docker.compose.service", ""): c for c in found}


def addresses(t: Topology, found: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """service -> {network (without the project prefix): IP}."""
    prefix = f"{t.lab}_"
    out: dict[str, dict[str, str]] = {}
    for service, c in found.items():
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        out[service] = {name.removeprefix(prefix): n["IPAddress"] for name, n in nets.items() if n.get("IPAddress")}
    return out


def path_ip(dst: str, ips: Mapping[str, Mapping[str, str]]) -> str | None:
    """The address a node uses for `dst`: the database on `db`, a peer on the `interdc` mesh."""
    return ips.get(dst, {}).get("db" if dst == DB else "interdc")


def _is_up(c: Mapping[str, Any] | None) -> bool:
    return bool(c and c["State"]["Running"] and not c["State"].get("Paused"))


def _exec(container: str, args: Sequence[str], what: str, *, root: bool = False, input: str | None = None,
          timeout: float = 30) -> str:
    return docker.run(["docker", "exec", *(["-u", "root"] if root else []), *(["-i"] if input else []),
                       container, *args], what, input=input, timeout=timeout)


def connectivity(t: Topology, paths: Sequence[tuple[str, str, int]], ips: Mapping[str, Mapping[str, str]],
                 ) -> dict[tuple[str, str], tuple[int, int]]:
    """(src, dst, attempts) -> {(src, dst): (open, cut)}; runs one check per source container."""
    by_src: dict[str, list[tuple[str, str, int]]] = {}
    for p in paths:
        by_src.setdefault(p[0], []).append(p)

    def run(src: str) -> dict[tuple[str, str], tuple[int, int]]:
        todo = [(d, path_ip(d, ips), n) for _, d, n in by_src[src]]
        targets = [[ip, DB_PORT if d == DB else ZK_PORT, n] for d, ip, n in todo if ip]
        try:
            out = json.loads(_exec(container_name(t, src), ["python3", "-c", _CHECK, json.dumps(targets),
                                                            str(CONNECT_TIMEOUT)],
                                   f"check connectivity from {src}", timeout=60))
        except (RuntimeFailure, ValueError):
            out = [[0, n] for _, _, n in targets]  # a source that cannot run the check reaches nothing
        found = iter(out)
        return {(src, d): (tuple(next(found)) if ip else (0, n)) for d, ip, n in todo}  # type: ignore[misc]

    result: dict[tuple[str, str], tuple[int, int]] = {}
    with ThreadPoolExecutor(max(1, len(by_src))) as ex:
        for part in ex.map(run, by_src):
            result.update(part)
    return result


def _rewrite_rules(t: Topology, plan: Mapping[str, list[list[str]]], replacing: str,
                   services: Collection[str]) -> dict[str, int]:
    """On each of `services` (running node containers), insert its rules of `plan`; with
    `replacing` (a comment pattern), then delete the rules that carried it before, so that a path
    cut by the old rules and the new ones is never open in between. Return service -> rules
    carrying `replacing` afterwards (0 without a pattern)."""
    def one(service: str) -> tuple[str, int]:
        inserts = ["iptables -w " + shlex.join(r) for r in plan.get(service, [])]
        script = "\n".join(["set -e", *([_NOTE_OLD] if replacing else []), *inserts,
                            *([_DELETE_OLD] if replacing else []), ""])
        try:
            out = _exec(container_name(t, service), ["sh", "-s", *(["--", replacing] if replacing else [])],
                        f"rewrite fault rules in {service}", root=True, input=script)
        except RuntimeFailure as exc:
            if "iptables: not found" in str(exc) or "iptables: command not found" in str(exc):
                raise RuntimeFailure(f"iptables is missing in {service}'s image: rebuild it with "
                                     f"`halab build --only node --force`") from exc
            raise
        return service, int((out.strip().splitlines() or ["0"])[-1])

    with ThreadPoolExecutor(max(1, len(services))) as ex:
        return dict(ex.map(one, services))


def install_rules(t: Topology, plan: Mapping[str, list[list[str]]]) -> None:
    _rewrite_rules(t, plan, "", list(plan))


def remove_rules(t: Topology, pattern: str, found: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, int]:
    """Delete rules whose comment contains `pattern` from every running node container of the lab;
    return service -> rules left (0 when clean). Paused or stopped containers are skipped: a
    stopped one loses its rules with its network namespace, a paused one is handled by its heal."""
    found = containers(t) if found is None else found
    return _rewrite_rules(t, {}, pattern, [n for n in t.node_names if _is_up(found.get(n))])


def roles(t: Topology) -> dict[str, str]:
    """node -> ZooKeeper mode as the node reports it (leader, follower, standalone, unknown)."""
    with ThreadPoolExecutor(t.size) as ex:
        return dict(zip(t.node_names, (v.zk_mode for v in ex.map(lambda n: probes.node_view(t, n), t.node_names))))


def _wait_states(t: Topology, services: Sequence[str], ok: Callable[[str, Mapping[str, Any] | None], bool],
                 ) -> dict[str, dict[str, Any]]:
    """Poll the containers until `ok(service, state)` holds for each or SETTLE_TIMEOUT passes;
    return the last states."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        found = containers(t)
        if all(ok(s, found.get(s)) for s in services) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -------------------------------------------------------------------------------- the registry

@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`. Each call opens the file anew, so threads of one process
    exclude each other as other processes do; it is not reentrant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _rules_lock(lab: str) -> contextlib.AbstractContextManager[None]:
    return _flock(state.lab_dir(lab) / RULES_LOCK)


class Registry:
    """The lab's active faults in `<lab dir>/faults.json`, read and written under an flock so that
    `halab heal` in another process sees what a run applied."""

    def __init__(self, lab: str) -> None:
        self.dir = state.lab_dir(lab)
        self.path = self.dir / REGISTRY_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with _flock(self.dir / "faults.lock"):
            try:
                data = json.loads(self.path.read_text())
            except (FileNotFoundError, ValueError):
                data = {"next": 1, "active": {}}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=2))
                os.replace(tmp, self.path)

    def add(self, entry: dict[str, Any]) -> str:
        with self._locked() as data:
            fault_id = f"f{data['next']}"
            data["next"] += 1
            data["active"][fault_id] = {**entry, "id": fault_id}
        return fault_id

    def update(self, fault_id: str, **changes: Any) -> None:
        with self._locked() as data:
            if fault_id in data["active"]:
                data["active"][fault_id].update(changes)

    def remove(self, fault_id: str) -> dict[str, Any] | None:
        with self._locked() as data:
            return data["active"].pop(fault_id, None)

    def active(self) -> list[dict[str, Any]]:
        with self._locked() as data:
            return sorted(data["active"].values(), key=lambda e: int(e["id"][1:]))


@dataclass(frozen=True)
class ActiveFault:
    id: str
    spec: FaultSpec
    targets: tuple[str, ...]  # resolved: services for container faults, every endpoint cut for network ones
    t0: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.id} {self.spec.describe()}"


# ---------------------------------------------------------------------------- signal shielding

_shield_depth = 0


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while undos run, so a second Ctrl-C cannot leave half a heal behind;
    the deferred signal is raised as KeyboardInterrupt when the outermost shield ends."""
    global _shield_depth
    if threading.current_thread() is not threading.main_thread() or _shield_depth:
        yield
        return
    _shield_depth += 1
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _shield_depth -= 1
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            raise KeyboardInterrupt


# ------------------------------------------------------------------ holding network faults

def _basis(found: Mapping[str, Mapping[str, Any]], ips: Mapping[str, Mapping[str, str]],
           endpoints: Iterable[str]) -> dict[str, list[Any]]:
    """What a fault's rules depend on, per endpoint: when its container started (each start brings
    a fresh network namespace), whether it can hold rules, its addresses. Lists: it is compared
    with the copy kept in the registry's JSON."""
    return {e: [((found.get(e) or {}).get("State") or {}).get("StartedAt"), _is_up(found.get(e)),
                sorted(ips.get(e, {}).values())] for e in endpoints}


def _epoch(stamp: str) -> float:
    """Docker's UTC RFC 3339 time with nanoseconds (2024-05-01T12:34:56.123456789Z) as epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return (datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            + float(f"0.{fraction or 0}"))


def reapply(t: Topology, why: str) -> list[str]:
    """Re-establish the lab's active network faults on its containers as they are now; return the
    ids of those whose rules were rewritten.

    A fault whose endpoints changed since its rules went in (see _basis) gets its plan computed
    again from the current addresses; each live node's rules of the fault are replaced, the new
    ones in before the old ones go (_rewrite_rules); the cut paths among live hosts are checked
    (not for flaky, whose drops are random and would need hundreds of connects). The fault's
    registry detail notes each time under `reapplied`: what triggered it (`why`), when the rules
    were in (`t`), and how long each node that started meanwhile ran before them (`exposed`,
    seconds). Raises FaultNotEffective, once every fault was handled and the failure noted, when a
    cut path still connects."""
    with _rules_lock(t.lab):
        registry = Registry(t.lab)
        held = [e for e in registry.active() if e.get("phase") == "active" and e["spec"]["kind"] in NETWORK_KINDS]
        if not held:
            return []
        found = containers(t)
        ips = addresses(t, found)
        live = sorted(n for n in t.node_names if _is_up(found.get(n)))
        done, failures = [], []
        for entry in held:
            basis = _basis(found, ips, entry["targets"])
            before = entry.get("basis") or {}
            if basis == before:
                continue
            spec = FaultSpec.from_dict(entry["spec"])
            tag = rule_tag(t.lab, entry["id"])
            cut_list = cuts(spec, t)
            plan = rules(cut_list, {e: list(ips.get(e, {}).values()) for e in entry["targets"]}, tag, live)
            _rewrite_rules(t, plan, f'"{tag}"', [n for n in live if n in entry["targets"]])
            now = time.time()
            note: dict[str, Any] = {"t": round(now, 3), "why": why}
            exposed = {e: round(now - _epoch(b[0]), 3) for e, b in basis.items()
                       if e in live and e in before and b[0] != before[e][0]}
            if exposed:
                note["exposed"] = exposed
            paths = [] if spec.kind == "flaky" else check_paths(cut_list, live)
            after = connectivity(t, [(s, d, 1) for s, d in paths], ips)
            still = [f"{s}->{d}" for s, d in paths if after[(s, d)][0] > 0]
            if still:
                note["error"] = f"{', '.join(still)} still connect"
                failures.append(f"{entry['id']} {spec.describe()}: {note['error']} after {why}")
            detail = dict(entry.get("detail") or {})
            detail["reapplied"] = [*detail.get("reapplied", []), note]
            registry.update(entry["id"], basis=basis, detail=detail)
            done.append(entry["id"])
        if failures:
            raise FaultNotEffective("could not re-establish " + "; ".join(failures))
        return done


def events_command(t: Topology, since: float, until: float) -> list[str]:
    """`docker events` for starts and unpauses of the lab's containers between two epoch times."""
    return ["docker", "events", "--filter", f"label={docker.LAB_LABEL}={t.lab}", "--filter", "type=container",
            "--filter", "event=start", "--filter", "event=unpause", "--since", f"{since:.9f}",
            "--until", f"{until:.9f}", "--format", "{{json .}}"]


class StartWatcher:
    """A thread that calls `handle(service, action)` for each start or unpause ("start",
    "unpause") of one of the lab's containers from `since` (epoch seconds) on, until stopped.

    It reads `docker events` processes of EVENTS_CHUNK seconds each, one after the other, and kills
    the current one on stop and at interpreter exit, so none outlives the harness for long.
    `handle` runs in the thread, one event at a time; what it raises is said, not raised."""

    def __init__(self, t: Topology, handle: Callable[[str, str], None], say: Say, since: float) -> None:
        self.t = t
        self.handle = handle
        self.say = say
        self._since = since
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a stop never misses a process being started
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"halab-faults-{t.lab}", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        atexit.unregister(self.stop)
        with self._lock:
            self._stopping.set()
            if self._proc is not None:
                self._proc.kill()
        self._thread.join(WATCH_STOP_TIMEOUT)
        if self._thread.is_alive():
            self.say(f"fault watcher of {self.t.lab}: still busy after {WATCH_STOP_TIMEOUT:g} s; left to end alone")

    def _run(self) -> None:
        since = self._since
        while True:
            until = since + EVENTS_CHUNK
            with self._lock:
                if self._stopping.is_set():
                    return
                # A new session: a Ctrl-C meant for the harness does not end it while faults still hold.
                proc = self._proc = subprocess.Popen(events_command(self.t, since, until), stdin=subprocess.DEVNULL,
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                     start_new_session=True)
            try:
                for line in proc.stdout or ():
                    self._dispatch(line)
            finally:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode == 0:
                since = until
            elif not self._stopping.is_set():  # docker failed: retry the same span, without spinning
                self.say(f"fault watcher of {self.t.lab}: `docker events` exited {proc.returncode}: {err.strip()}")
                self._stopping.wait(1.0)

    def _dispatch(self, line: str) -> None:
        try:
            event = json.loads(line)
            self.handle(event["Actor"]["Attributes"].get("com.docker.compose.service", ""), event["Action"])
        except Exception as exc:  # noqa: BLE001 - a watcher that died would stop re-establishing faults unseen
            self.say(f"fault watcher of {self.t.lab}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------- injecting

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Injector:
    """Applies faults to one lab and heals them. As a context manager it heals everything it
    applied on every exit path, Ctrl-C and exceptions included.

    While it holds a network fault, a StartWatcher re-establishes the lab's network faults
    (`reapply`) on every start or unpause of one of the lab's containers.

    `history`: a run's history file; each healed fault is appended to it as a FaultRecord (as well
    as to the lab's own faults.jsonl), by whichever process heals it."""

    def __init__(self, t: Topology, *, history: str | os.PathLike[str] | None = None, seed: int = 0,
                 say: Say = _quiet) -> None:
        self.t = t
        self.history = str(history) if history else None
        self.rng = random.Random(seed)
        self.say = say
        self.registry = Registry(t.lab)
        self.applied: list[ActiveFault] = []
        self.watcher: StartWatcher | None = None

    def __enter__(self) -> "Injector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal_all()

    # --------------------------------------------------------------------------------- resolve

    def resolve(self, spec: FaultSpec, where: str = "fault") -> FaultSpec:
        """The spec with roles replaced by node names (asks the nodes for their ZooKeeper mode,
        waiting up to ELECTION_TIMEOUT for an ensemble that has the asked roles)."""
        validate(spec, self.t, where)
        if not any(x in ROLES for x in spec.targets):
            return spec
        asks_modes = any(x in ("leader", "follower") for x in spec.targets)
        deadline = time.monotonic() + ELECTION_TIMEOUT
        while True:
            modes = roles(self.t) if asks_modes else {}
            picked, missing = self._pick(spec.targets, modes)
            if not missing:
                return FaultSpec(spec.kind, picked, spec.sides, spec.one_way, spec.loss)
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"{where}.target: no {missing} to pick within {ELECTION_TIMEOUT:g} s "
                                     f"(ZooKeeper modes: {', '.join(f'{n}={m}' for n, m in modes.items())})")
            time.sleep(0.2)

    def _pick(self, targets: Sequence[str], modes: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
        """(node names for the targets, the first role nobody has now, or None)."""
        leaders = [n for n, m in modes.items() if m in ("leader", "standalone")]
        if any(x in ("leader", "follower") for x in targets) and len(leaders) != 1:
            return (), "leader" if not leaders else "single leader"  # an election not yet sorted out
        chosen: list[str] = [x for x in targets if x not in ROLES]
        state = self.rng.getstate()  # a retry must not consume the seeded choices
        for x in targets:
            if x not in ROLES:
                continue
            if x == "leader":
                pool = leaders
            elif x == "follower":
                pool = [n for n, m in modes.items() if m == "follower"]
            else:
                pool = list(self.t.node_names)
            pool = [n for n in pool if n not in chosen]
            if not pool:
                self.rng.setstate(state)
                return (), x
            chosen.append(pool[0] if x == "leader" else self.rng.choice(sorted(pool)))
        return tuple(chosen), None

    # ----------------------------------------------------------------------------------- apply

    def apply(self, spec: FaultSpec, where: str = "fault") -> ActiveFault:
        spec = self.resolve(spec, where)
        if spec.kind in CONTAINER_KINDS:
            return self._apply_containers(spec)
        return self._apply_network(spec)

    def _register(self, spec: FaultSpec, targets: Sequence[str], detail: Mapping[str, Any]) -> str:
        # Registered before anything is done, so an interruption half-way still leaves a trace to heal.
        return self.registry.add({"spec": spec.to_dict(), "targets": list(targets), "t0": time.time(),
                                  "phase": "applying", "history": self.history, "detail": dict(detail)})

    def _activate(self, fault_id: str, spec: FaultSpec, targets: Sequence[str], t0: float,
                  detail: Mapping[str, Any], **entry: Any) -> ActiveFault:
        self.registry.update(fault_id, phase="active", t0=t0, detail=dict(detail), **entry)
        fault = ActiveFault(fault_id, spec, tuple(targets), t0, detail)
        self.applied.append(fault)
        self.say(f"fault {fault.describe()}: applied and verified")
        return fault

    def _undo_failed_apply(self, fault_id: str) -> None:
        with shielded():
            entry = next((e for e in self.registry.active() if e["id"] == fault_id), None)
            if entry:
                _undo(self.t, entry)
                self.registry.remove(fault_id)

    def _apply_containers(self, spec: FaultSpec) -> ActiveFault:
        t = self.t
        services = list(spec.targets)
        names = [container_name(t, s) for s in services]
        before = containers(t)
        missing = [s for s in services if s not in before]
        if missing:
            raise RuntimeFailure(f"{spec.describe()}: no container for {', '.join(missing)} in lab {t.lab!r}")
        not_up = [s for s in services if not _is_up(before[s])]
        if not_up:
            raise RuntimeFailure(f"{spec.describe()}: {', '.join(not_up)} is not running (an active fault? "
                                 f"`halab heal --name {t.lab}`)")
        started = {s: before[s]["State"]["StartedAt"] for s in services}
        # Kept for the record: a stopped container loses its addresses and may not get them back (_start).
        fault_id = self._register(spec, services, {"addresses": addresses(t, {s: before[s] for s in services})})
        try:
            t0 = time.time()
            action = {
                "kill": ["docker", "kill", "--signal", "KILL"],
                "stop": ["docker", "stop", "--time", str(STOP_GRACE)],
                "pause": ["docker", "pause"],
                "restart": ["docker", "restart", "--time", str(STOP_GRACE)],
            }[spec.kind]
            docker.run([*action, *names], f"{spec.kind} {' '.join(services)}", timeout=60)
            effect = {
                "kill": lambda s, c: bool(c) and not c["State"]["Running"],
                "stop": lambda s, c: bool(c) and not c["State"]["Running"],
                "pause": lambda s, c: bool(c) and bool(c["State"].get("Paused")),
                "restart": lambda s, c: _is_up(c) and c["State"]["StartedAt"] != started[s],
            }[spec.kind]
            after = _wait_states(t, services, effect)
            failed = [s for s in services if not effect(s, after.get(s))]
            if failed:
                raise FaultNotEffective(f"{spec.describe()}: {', '.join(failed)} is still "
                                        f"{_state_word(after.get(failed[0]))} after `{' '.join(action)}`")
            if spec.kind == "restart":  # back with a fresh network namespace: cut it again at once
                reapply(t, f"{' '.join(services)} restarted")
            return self._activate(fault_id, spec, services, t0,
                                  {"addresses": addresses(t, {s: before[s] for s in services})})
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    def _apply_network(self, spec: FaultSpec) -> ActiveFault:
        if self.watcher is None:  # started before the snapshot: a start from here on is reapplied
            self.watcher = StartWatcher(self.t, self._started, self.say, since=time.time())
        try:
            # A reapply waits until the fault is active with the basis its rules were made on.
            with _rules_lock(self.t.lab):
                return self._install_network(spec)
        except BaseException:
            if not self._holds_network():
                self._unwatch()
            raise

    def _install_network(self, spec: FaultSpec) -> ActiveFault:
        t = self.t
        found = containers(t)
        ips = addresses(t, found)
        cut_list = cuts(spec, t)
        endpoints = sorted({e for c in cut_list for e in (c.src, c.dst)})
        absent = [e for e in endpoints if e not in found]
        if absent:
            raise RuntimeFailure(f"{spec.describe()}: no container for {', '.join(absent)} in lab {t.lab!r}")
        probability = cut_list[0].probability if cut_list else 1.0
        # A host that is down or frozen cannot take rules nor run checks: its peers hold them (a
        # down one has no addresses either: it is cut when it starts, by reapply).
        live = {n for n in t.node_names if _is_up(found.get(n))}
        paths = check_paths(cut_list, live)
        before = connectivity(t, [(s, d, 1) for s, d in paths], ips)
        open_paths = [p for p in paths if before[p][0] > 0]
        if not open_paths:
            raise FaultNotEffective(f"{spec.describe()}: no path to cut works before the fault "
                                    f"({', '.join(f'{s}->{d}' for s, d in paths)} all fail already); "
                                    f"heal the lab first (`halab heal --name {t.lab}`)")
        detail: dict[str, Any] = {"cuts": len(cut_list), "checked": [f"{s}->{d}" for s, d in open_paths]}
        already = [f"{s}->{d}" for s, d in paths if before[(s, d)][0] == 0]
        if already:
            detail["already_cut"] = already
        fault_id = self._register(spec, endpoints, detail)
        try:
            plan = rules(cut_list, {e: list(ips[e].values()) for e in endpoints}, rule_tag(t.lab, fault_id), live)
            t0 = time.time()
            install_rules(t, plan)
            n = attempts_for(probability)
            per_path = max(1, math.ceil(n / len(open_paths))) if probability < 1.0 else 1
            after = connectivity(t, [(s, d, per_path) for s, d in open_paths], ips)
            dropped = sum(after[p][1] for p in open_paths)
            if probability >= 1.0:
                still = [f"{s}->{d}" for s, d in open_paths if after[(s, d)][0] > 0]
                if still:
                    raise FaultNotEffective(f"{spec.describe()}: {', '.join(still)} still connect after the "
                                            f"rules were installed")
            elif dropped == 0:
                raise FaultNotEffective(f"{spec.describe()}: none of {per_path * len(open_paths)} connects was "
                                        f"dropped")
            detail["dropped"] = f"{dropped}/{per_path * len(open_paths)}"
            return self._activate(fault_id, spec, endpoints, t0, detail, basis=_basis(found, ips, endpoints))
        except BaseException:
            self._undo_failed_apply(fault_id)
            raise

    # ------------------------------------------------------------------------------------ heal

    def heal(self, fault: ActiveFault) -> FaultRecord | None:
        """Undo one fault; return its record (None when another process healed it first)."""
        with shielded():
            if not self._holds_network(but=fault.id):
                self._unwatch()
            record = heal_entry(self.t, fault.id)
            self.applied = [f for f in self.applied if f.id != fault.id]
        if record:
            self.say(f"fault {fault.id} healed after {record.t1 - record.t0:.1f} s")
        return record

    @contextlib.contextmanager
    def held(self, spec: FaultSpec, where: str = "fault") -> Iterator[ActiveFault]:
        fault = self.apply(spec, where)
        try:
            yield fault
        finally:
            self.heal(fault)

    def heal_all(self) -> list[FaultRecord]:
        """Heal what this injector applied, newest first."""
        out = []
        with shielded():
            self._unwatch()
            for fault in reversed(list(self.applied)):
                record = heal_entry(self.t, fault.id)
                if record:
                    out.append(record)
            self.applied.clear()
        return out

    # ------------------------------------------------------------------------------- watching

    def _holds_network(self, but: str = "") -> bool:
        return any(f.spec.kind in NETWORK_KINDS and f.id != but for f in self.applied)

    def _started(self, service: str, action: str) -> None:
        reapply(self.t, f"{service} {'unpaused' if action == 'unpause' else 'started'}")

    def _unwatch(self) -> None:
        """Stop the watcher (never while holding the rules lock: its reapply may wait for it)."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None


def _state_word(c: Mapping[str, Any] | None) -> str:
    if not c:
        return "absent"
    return "paused" if c["State"].get("Paused") else c["State"]["Status"]


def _start(t: Topology, services: Sequence[str], previous: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Start stopped containers; return the addresses they came back without (service -> "network
    old->new"). Docker gives a starting container the lowest free address of each network, so hosts
    stopped together often swap addresses, unlike rebooted machines; peers that cache names (the
    nodes' ZooKeeper JVMs) then reach the wrong host for a while. The record says when it happened."""
    if not services:
        return {}
    docker.run(["docker", "start", *(container_name(t, s) for s in services)], f"start {' '.join(services)}",
               timeout=120)
    now = addresses(t, containers(t))
    moved = {s: ", ".join(f"{net} {old}->{now.get(s, {}).get(net)}" for net, old in sorted(previous.get(s, {}).items())
                          if now.get(s, {}).get(net) != old) for s in services}
    return {s: m for s, m in moved.items() if m}


def _undo(t: Topology, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Idempotent undo of one registry entry; returns what the record should add to its detail;
    raises RuntimeFailure when it could not be undone."""
    spec = FaultSpec.from_dict(entry["spec"])
    services = list(entry["targets"])
    if spec.kind in NETWORK_KINDS:
        left = remove_rules(t, f'"{rule_tag(t.lab, entry["id"])}"')
        dirty = [s for s, n in left.items() if n]
        if dirty:
            raise RuntimeFailure(f"could not remove the rules of fault {entry['id']} from {', '.join(dirty)}")
        return {}
    found = containers(t)
    extra: dict[str, Any] = {}
    if spec.kind == "pause":
        todo = [s for s in services if found.get(s) and found[s]["State"].get("Paused")]
        if todo:
            docker.run(["docker", "unpause", *(container_name(t, s) for s in todo)], f"unpause {' '.join(todo)}",
                       timeout=60)
    else:
        todo = [s for s in services if found.get(s) and not found[s]["State"]["Running"]]
        moved = _start(t, todo, entry.get("detail", {}).get("addresses", {}))
        if moved:
            extra["readdressed"] = moved
    after = _wait_states(t, todo, lambda _s, c: _is_up(c))
    bad = [s for s in todo if not _is_up(after.get(s))]
    if bad:
        raise RuntimeFailure(f"could not undo fault {entry['id']}: {', '.join(bad)} is "
                             f"{_state_word(after.get(bad[0]))}")
    if todo:
        try:  # a network fault still held must cut the hosts back at once
            reapply(t, f"{' '.join(todo)} {'unpaused' if spec.kind == 'pause' else 'started'}")
        except RuntimeFailure as exc:  # this heal is done; the failure is noted with the network fault too
            extra["reapply_failed"] = str(exc)
    return extra


def _record(t: Topology, entry: Mapping[str, Any], t1: float, extra: Mapping[str, Any] | None = None) -> FaultRecord:
    spec = FaultSpec.from_dict(entry["spec"])
    record = FaultRecord(t0=entry["t0"], t1=t1, fault=spec.kind, targets=tuple(entry["targets"]), id=entry["id"],
                         detail={"spec": spec.describe(), "lab": t.lab, **entry.get("detail", {}), **(extra or {})})
    paths = [state.lab_dir(t.lab) / LOG_FILE] + ([Path(entry["history"])] if entry.get("history") else [])
    for path in paths:
        with JsonlWriter(path) as w:
            w.append(record)
    return record


def heal_entry(t: Topology, fault_id: str) -> FaultRecord | None:
    registry = Registry(t.lab)
    entry = next((e for e in registry.active() if e["id"] == fault_id), None)
    if entry is None:
        return None
    # Rules and registry entry go together, so that a reapply cannot put the rules back between.
    with _rules_lock(t.lab) if entry["spec"]["kind"] in NETWORK_KINDS else contextlib.nullcontext():
        extra = _undo(t, entry)
        t1 = time.time()
        latest = registry.remove(fault_id)  # with what reapply noted since `entry` was read
    if latest is None:  # healed meanwhile by another process, which recorded it
        return None
    return _record(t, latest, t1, extra)


@dataclass(frozen=True)
class HealReport:
    healed: tuple[FaultRecord, ...]
    rules_removed: Mapping[str, int]  # leftover rules swept, per container
    unpaused: tuple[str, ...]
    started: tuple[str, ...]

    def lines(self) -> list[str]:
        out = [f"healed {r.id} {r.detail.get('spec', r.fault)} (held {r.t1 - r.t0:.1f} s)" for r in self.healed]
        swept = {s: n for s, n in self.rules_removed.items() if n}
        if swept:
            out.append("removed leftover rules: " + ", ".join(f"{s} ({n})" for s, n in swept.items()))
        if self.unpaused:
            out.append("unpaused: " + ", ".join(self.unpaused))
        if self.started:
            out.append("started: " + ", ".join(self.started))
        return out or ["nothing to heal"]


def heal_lab(t: Topology, say: Say = _quiet) -> HealReport:
    """Undo every registered fault of the lab, then sweep what may be left without a registry entry
    (a process killed between acting and registering, a registry file removed): every rule labelled
    with the lab, every paused container, every stopped container (database first)."""
    with shielded():
        healed = []
        for entry in Registry(t.lab).active():
            try:
                record = heal_entry(t, entry["id"])
            except RuntimeFailure as exc:
                say(f"heal {entry['id']}: {exc}; sweeping instead")
                Registry(t.lab).remove(entry["id"])
                record = _record(t, entry, time.time())
            if record:
                healed.append(record)
        found = containers(t)
        paused = [s for s, c in found.items() if c["State"].get("Paused")]
        if paused:
            docker.run(["docker", "unpause", *(container_name(t, s) for s in paused)], "unpause leftovers", timeout=60)
            found = containers(t)
        counts = _sweep_rules(t, found)
        order = {DB: 0, LB: 2}
        stopped = sorted((s for s, c in found.items() if not c["State"]["Running"]), key=lambda s: order.get(s, 1))
        if stopped:
            docker.run(["docker", "start", *(container_name(t, s) for s in stopped)], "start stopped containers",
                       timeout=120)
            after = _wait_states(t, stopped, lambda _s, c: _is_up(c))
            bad = [s for s in stopped if not _is_up(after.get(s))]
            if bad:
                raise RuntimeFailure(f"heal: {', '.join(bad)} would not start; see `halab logs --name {t.lab} "
                                     f"{' '.join(bad)}`")
    report = HealReport(tuple(healed), counts, tuple(paused), tuple(stopped))
    for line in report.lines():
        say(line)
    return report


def _sweep_rules(t: Topology, found: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Remove every rule of the lab; return service -> rules removed."""
    before = _count_rules(t, found)
    if any(before.values()):
        left = remove_rules(t, f'"{rule_tag(t.lab, "")}', found)
        dirty = [s for s, n in left.items() if n]
        if dirty:
            raise RuntimeFailure(f"heal: rules of lab {t.lab} remain in {', '.join(dirty)}")
    return before


def leftovers(t: Topology) -> dict[str, Any]:
    """What a heal would still find: registry entries, labelled rules, paused and stopped containers."""
    found = containers(t)
    return {
        "registered": [e["id"] for e in Registry(t.lab).active()],
        "rules": {s: n for s, n in _count_rules(t, found).items() if n},
        "paused": [s for s, c in found.items() if c["State"].get("Paused")],
        "stopped": [s for s, c in found.items() if not c["State"]["Running"]],
    }


def _count_rules(t: Topology, found: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    pattern = f'"{rule_tag(t.lab, "")}'
    live = [n for n in t.node_names if _is_up(found.get(n))]

    def count(service: str) -> int:
        out = _exec(container_name(t, service), ["sh", "-c", f"iptables -S | grep -cF -- '{pattern}' || true"],
                    f"list fault rules in {service}", root=True)
        return int((out.strip().splitlines() or ["0"])[-1])

    with ThreadPoolExecutor(max(1, len(live))) as ex:
        return dict(zip(live, ex.map(count, live)))


def active(lab: str) -> list[dict[str, Any]]:
    return Registry(lab).active()
