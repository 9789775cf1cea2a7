"""Faults without Docker: validation, the network model (groups, cuts, rules, check paths), the
registry, role resolution, the verification that turns a fault that did nothing into an error, and
network faults held across restarts (the Docker layer is replaced by a fake that records commands,
runs the rule scripts with real `sh` over a fake `iptables`, and emits start events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from lab import faults
from lab.cluster.docker import ContainerState
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, FaultNotEffective, RuntimeFailure
from lab.core.wait import wait_for
from lab.faults import DB, LB, Cut, FaultSpec, Injector, Registry, backend, injector, make_spec, netmodel


@pytest.fixture(autouse=True)
def halab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))


T3 = make_topology(3, lab="u3")
T5 = make_topology(5, lab="u5")


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "spec,match",
    [
        (make_spec("explode", ["a1"]), r"^fault\.kind: unknown fault 'explode'"),
        (make_spec("kill", ["c9"]), r"^fault\.target: no node 'c9' in this lab \(nodes: a1, a2, b1"),
        (make_spec("kill"), r"^fault\.target: kill needs a target"),
        (make_spec("kill", ["a1", "a1"]), r"named twice"),
        (make_spec("isolate", ["db"]), r"no node 'db'"),
        (make_spec("isolate", ["a1", "a2"]), r"isolate takes one node"),
        (make_spec("kill", ["follower", "follower", "follower"]), r"has 2 follower"),
        (make_spec("split", sides=[["dc-x"]]), r"^fault\.sides\[0\]: no datacenter 'dc-x'"),
        (make_spec("split", sides=[["dc-a", "dc-b"]]), r"a cut needs two sides"),
        (make_spec("split", sides=[["dc-a"], ["dc-a"]]), r"on two sides"),
        (make_spec("partition", sides=[["db"]]), r"name at least one node"),
        (make_spec("flaky", sides=[["a1"], ["b1"]]), r"^fault\.loss: flaky needs a loss percentage"),
        (make_spec("flaky", sides=[["a1"], ["b1"]], loss=0.5), r"from 1 to 100"),
        (make_spec("flaky", sides=[["a1"]], loss=10), r"two endpoint sets"),
        (make_spec("kill", ["a1"], loss=10), r"only flaky takes a loss"),
        (make_spec("kill", ["a1"], one_way=True), r"only split, partition and flaky"),
        (make_spec("split", ["a1"]), r"takes sides, not targets"),
    ],
)
def test_validation_names_the_field(spec, match):
    with pytest.raises(BadInput, match=match) as e:
        faults.validate(spec, T3)
    assert "\n" not in str(e.value)


def test_split_needs_two_datacenters():
    with pytest.raises(BadInput, match="needs two datacenters"):
        faults.validate(make_spec("split"), make_topology(1))


@pytest.mark.parametrize(
    "spec",
    [
        make_spec("kill", ["leader"]),
        make_spec("pause", ["follower", "a1"]),
        make_spec("stop", ["db"]),
        make_spec("restart", ["lb"]),
        make_spec("isolate", ["b1"]),
        make_spec("split"),
        make_spec("split", sides=[["dc-b"]], one_way=True),
        make_spec("partition", sides=[["a1", "db"], ["b1"]]),
        make_spec("flaky", sides=[["a1"], ["b1", "db"]], loss=30),
    ],
)
def test_valid_specs(spec):
    faults.validate(spec, T3)
    assert FaultSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# ------------------------------------------------------------------------------- network model


def test_isolate_cuts_the_node_from_peers_and_database_only():
    g = faults.groups(make_spec("isolate", ["b1"]), T3)
    assert g == (frozenset({"b1"}), frozenset({"a1", "a2", DB}))
    pairs = {(c.src, c.dst) for c in faults.cuts(make_spec("isolate", ["b1"]), T3)}
    assert pairs == {("b1", "a1"), ("b1", "a2"), ("b1", DB), ("a1", "b1"), ("a2", "b1"), (DB, "b1")}


def test_split_puts_the_database_with_its_datacenter():
    assert faults.groups(make_spec("split"), T3) == (frozenset({"a1", "a2", DB}), frozenset({"b1"}))
    t = make_topology(3, db_dc="dc-b")
    assert faults.groups(make_spec("split"), t) == (frozenset({"a1", "a2"}), frozenset({"b1", DB}))
    ext = make_topology(3, db_dc="external")
    assert all(DB not in g for g in faults.groups(make_spec("split"), ext))


def test_one_way_cuts_only_packets_leaving_the_first_side():
    pairs = {(c.src, c.dst) for c in faults.cuts(make_spec("split", sides=[["dc-b"], ["dc-a"]], one_way=True), T3)}
    assert pairs == {("b1", "a1"), ("b1", "a2"), ("b1", DB)}


def test_partition_rest_forms_a_group_and_unnamed_database_stays_reachable():
    g = faults.groups(make_spec("partition", sides=[["a1"], ["b1", "b2"]]), T5)
    assert g == (frozenset({"a1"}), frozenset({"b1", "b2"}), frozenset({"a2", "a3"}))
    assert not any(DB in (c.src, c.dst) for c in faults.cuts(make_spec("partition", sides=[["a1"]]), T5))


def test_flaky_carries_its_probability():
    cs = faults.cuts(make_spec("flaky", sides=[["a1"], ["b1"]], loss=25), T3)
    assert {(c.src, c.dst, c.probability) for c in cs} == {("a1", "b1", 0.25), ("b1", "a1", 0.25)}


def test_rules_sit_at_the_source_or_at_the_node_when_the_database_sends():
    ips = {"a1": ["10.0.0.1", "10.1.0.1"], DB: ["10.9.0.9"]}
    plan = faults.rules([Cut("a1", DB), Cut(DB, "a1", 0.5)], ips, "halab:u3:f7", {"a1"})
    assert plan == {
        "a1": [
            ["-I", "OUTPUT", "-d", "10.9.0.9", "-m", "comment", "--comment", "halab:u3:f7", "-j", "DROP"],
            [
                "-I",
                "INPUT",
                "-s",
                "10.9.0.9",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.5000",
                "-m",
                "comment",
                "--comment",
                "halab:u3:f7",
                "-j",
                "DROP",
            ],
        ]
    }


def test_a_host_that_is_down_leaves_its_rules_to_its_live_peers():
    ips = {"a1": ["10.0.0.1"], "b1": ["10.0.0.3"], "a2": []}
    cut_list = faults.cuts(make_spec("isolate", ["b1"]), T3)
    plan = faults.rules(cut_list, {**ips, DB: ["10.9.0.9"]}, "t", {"a1", "b1"})  # a2 was killed
    assert set(plan) == {"a1", "b1"}
    assert ["-I", "INPUT", "-s", "10.0.0.3", "-m", "comment", "--comment", "t", "-j", "DROP"] not in plan["a1"]
    paths = faults.check_paths(cut_list, {"a1", "b1"})
    assert ("a2", "b1") not in paths and ("b1", "a2") in paths and ("b1", DB) in paths


def test_check_paths_never_start_from_the_database():
    paths = faults.check_paths([Cut(DB, "b1"), Cut("b1", DB), Cut("a1", "b1")], {"a1", "a2", "b1"})
    assert paths == [("b1", DB), ("a1", "b1")]


def test_path_ip_follows_the_network_peers_use():
    ips = {
        "a2": {"dc-a": "1.1.1.2", "interdc": "2.2.2.2", "db": "3.3.3.2"},
        DB: {"db": "3.3.3.9"},
        "b1": {"dc-b": "4.4.4.1", "interdc": "2.2.2.3"},
    }
    # Peers of one datacenter too use the interdc mesh (docs/architecture.md).
    assert faults.path_ip("a2", ips, "dc-b") == "2.2.2.2"
    assert faults.path_ip("b1", ips, "dc-a") == "2.2.2.3"
    assert faults.path_ip(DB, ips, "dc-a") == "3.3.3.9"
    # The load balancer sits on every datacenter's network; a node reaches it on its own.
    ips[LB] = {"front": "5.5.5.1", "dc-a": "1.1.1.9", "dc-b": "4.4.4.9"}
    assert faults.path_ip(LB, ips, "dc-b") == "4.4.4.9"


@pytest.mark.parametrize("p,n", [(1.0, 1), (0.5, 14), (0.3, 26), (0.01, 917)])
def test_flaky_attempts_make_a_silent_miss_unlikely(p, n):
    assert faults.attempts_for(p) == n
    assert p >= 1.0 or (1 - p) ** n <= 1e-4


def test_describe():
    assert make_spec("split", sides=[["dc-a"], ["dc-b"]], one_way=True).describe() == "split dc-a > dc-b"
    assert make_spec("flaky", sides=[["a1"], ["b1", "db"]], loss=30).describe() == "flaky a1 | b1,db (30% loss)"


# ------------------------------------------------------------------------------------ registry


def test_registry_ids_are_unique_and_survive_a_new_process_view():
    r = Registry("u3")
    a = r.add({"spec": make_spec("kill", ["a1"]).to_dict(), "targets": ["a1"], "t0": 1.0})
    b = r.add({"spec": make_spec("pause", ["a2"]).to_dict(), "targets": ["a2"], "t0": 2.0})
    assert (a, b) == ("f1", "f2")
    r.update(a, phase="active")
    assert [e["id"] for e in Registry("u3").active()] == ["f1", "f2"]
    assert Registry("u3").active()[0]["phase"] == "active"
    assert r.remove(a)["targets"] == ["a1"] and r.remove(a) is None
    assert r.add({"spec": {}, "targets": [], "t0": 0}) == "f3"


# --------------------------------------------------------------------- a fake Docker underneath

# `iptables` inside a fake container: -I inserts at the top, -D deletes the first equal rule, -S
# lists them as the real one does (comments quoted); the rules are the lines of $FAKE_RULES.
FAKE_IPTABLES = f"""#!{sys.executable}
import os, sys
path = os.environ["FAKE_RULES"]
args = [a for a in sys.argv[1:] if a != "-w"]
rules = open(path).read().splitlines() if os.path.exists(path) else []
spec = " ".join(f'"{{a}}"' if before == "--comment" else a for before, a in zip(["", *args[2:]], args[2:]))
if args == ["-S"]:
    print("\\n".join(["-P INPUT ACCEPT", "-P OUTPUT ACCEPT", *rules]))
elif args[0] == "-I":
    rules.insert(0, f"-A {{args[1]}} {{spec}}")
elif args[0] == "-D":
    rules.remove(f"-A {{args[1]}} {{spec}}")
open(path, "w").write("".join(r + "\\n" for r in rules))
"""
# `docker events` of the fake: the start and unpause events written after it began, until killed.
FAKE_EVENTS = """
import sys, time
path, pos = sys.argv[1], int(sys.argv[2])
while True:
    with open(path) as f:
        f.seek(pos)
        sys.stdout.write(f.read())
        pos = f.tell()
    sys.stdout.flush()
    time.sleep(0.02)
"""
NETWORK = {"db": "db", "lb": "front"}  # nodes are on interdc, the path peers use (faults.path_ip)


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class FakeLab:
    """Containers as dicts; records every docker command; `effective=False` makes commands no-ops.
    As Docker: a stopped container has no address and loses its rules (its network namespace), a
    start gets the address in `ip` (default 10.0.0.<n>) and is written to the events file; `docker
    exec ... sh` runs in `dir` with the fake iptables."""

    def __init__(self, t, dir: Path, effective: bool = True, modes: dict[str, str] | None = None) -> None:
        self.t = t
        self.dir = dir
        self.effective = effective
        self.modes = modes or {}
        self.commands: list[list[str]] = []
        self.state = {
            s: {"Running": True, "Paused": False, "Status": "running", "StartedAt": stamp()}
            for s in (*t.node_names, "db", "lb")
        }
        self.ip = {s: f"10.0.0.{i}" for i, s in enumerate(self.state, 1)}
        (dir / "bin").mkdir(parents=True)
        (dir / "bin" / "iptables").write_text(FAKE_IPTABLES)
        (dir / "bin" / "iptables").chmod(0o755)
        self.events = dir / "events.jsonl"
        self.events.touch()

    def containers(self, t) -> dict[str, ContainerState]:
        return {
            s: ContainerState.from_inspect(
                {
                    "State": dict(st),
                    "NetworkSettings": {
                        "Networks": {
                            f"{t.lab}_{NETWORK.get(s, 'interdc')}": {"IPAddress": self.ip[s] if st["Running"] else ""}
                        }
                    },
                }
            )
            for s, st in self.state.items()
        }

    def rules(self, service: str) -> list[str]:
        path = self.dir / f"rules-{service}"
        return path.read_text().splitlines() if path.exists() else []

    def restarted(self, service: str, ip: str | None = None) -> None:
        """What `docker restart` does underneath, without the command nor its event."""
        (self.dir / f"rules-{service}").unlink(missing_ok=True)
        self.ip[service] = ip or self.ip[service]
        self.state[service]["StartedAt"] = stamp()

    def connectivity(self, t, paths, ips) -> dict[tuple[str, str], tuple[int, int]]:
        """faults.connectivity as the fake rules decide it: a path is cut by a DROP of its packets."""

        def cut(s: str, d: str) -> bool:
            to = faults.path_ip(d, ips, t.node(s).dc if s in t.node_names else "")
            return (
                not to
                or any(f"OUTPUT -d {to} " in r for r in self.rules(s))
                or any(f"INPUT -s {ip} " in r for ip in ips.get(s, {}).values() for r in self.rules(d))
            )

        return {(s, d): (0, n) if cut(s, d) else (n, 0) for s, d, n in paths}

    def events_command(self, t, since, until, on=()) -> list[str]:
        return [sys.executable, "-c", FAKE_EVENTS, str(self.events), str(self.events.stat().st_size)]

    def run(self, args, what, timeout=None, input=None, env=None) -> str:
        self.commands.append(list(args))
        verb = args[1]
        at = [i for i, a in enumerate(args) if a.startswith(f"{self.t.lab}-")]
        names = [args[i].removeprefix(f"{self.t.lab}-").removesuffix("-1") for i in at]
        if verb == "exec":
            return self._exec(names[0], args[at[0] + 1 :], input)
        if self.effective:
            for s in names:
                st = self.state[s]
                if verb in ("kill", "stop", "restart"):
                    st.update(Running=False, Status="exited")
                    (self.dir / f"rules-{s}").unlink(missing_ok=True)
                if verb == "pause":
                    st.update(Paused=True)
                elif verb == "unpause":
                    st.update(Paused=False)
                elif verb in ("start", "restart"):
                    st.update(Running=True, Status="running", StartedAt=stamp())
                if verb in ("start", "restart", "unpause"):
                    event = {
                        "Action": "unpause" if verb == "unpause" else "start",
                        "Actor": {"Attributes": {"com.docker.compose.service": s}},
                    }
                    with self.events.open("a") as f:
                        f.write(json.dumps(event) + "\n")
        return ""

    def _exec(self, service: str, cmd: list[str], input: str | None) -> str:
        if not self.state[service]["Running"] or self.state[service]["Paused"]:
            raise RuntimeFailure(f"exec in {service}: container is not running")
        if cmd[0] != "sh":
            return ""
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=30,
            env={
                **os.environ,
                "PATH": f"{self.dir / 'bin'}:{os.environ['PATH']}",
                "FAKE_RULES": str(self.dir / f"rules-{service}"),
            },
        )
        if done.returncode:
            raise RuntimeFailure(f"exec in {service} failed: {done.stderr}")
        return done.stdout


@pytest.fixture
def fake(monkeypatch, tmp_path):
    def make(t=T3, **kw):
        lab = FakeLab(t, tmp_path / "docker", **kw)
        monkeypatch.setattr(backend, "containers", lab.containers)
        monkeypatch.setattr(backend.docker, "run", lab.run)
        monkeypatch.setattr(backend, "roles", lambda _t: dict(lab.modes))
        monkeypatch.setattr(backend, "connectivity", lab.connectivity)
        monkeypatch.setattr(backend, "events_command", lab.events_command)
        monkeypatch.setattr(backend, "SETTLE_TIMEOUT", 0.3)
        monkeypatch.setattr(injector, "ELECTION_TIMEOUT", 0.3)
        return lab

    return make


def test_kill_is_verified_recorded_and_healed(fake, tmp_path):
    lab = fake()
    history = tmp_path / "run" / "history.jsonl"
    with Injector(T3, history=history) as inj:
        f = inj.apply(make_spec("kill", ["a1"]))
        assert lab.state["a1"]["Running"] is False
        assert [e["phase"] for e in faults.active("u3")] == ["active"]
    assert lab.state["a1"]["Running"] is True
    assert faults.active("u3") == []
    lines = [json.loads(x) for x in history.read_text().splitlines()]
    assert lines[0]["kind"] == "fault" and lines[0]["id"] == f.id and lines[0]["t1"] >= lines[0]["t0"]
    assert lines[0]["targets"] == ["a1"]


def test_a_fault_that_did_nothing_is_an_error_and_leaves_nothing_registered(fake):
    fake(effective=False)
    inj = Injector(T3)
    with pytest.raises(FaultNotEffective, match=r"kill a2: a2 is still running"):
        inj.apply(make_spec("kill", ["a2"]))
    assert faults.active("u3") == [] and inj.applied == []


def test_pause_heal_unpauses(fake):
    lab = fake()
    inj = Injector(T3)
    f = inj.apply(make_spec("pause", ["b1", "db"]))
    assert lab.state["b1"]["Paused"] and lab.state["db"]["Paused"]
    rec = inj.heal(f)
    assert rec is not None and rec.fault == "pause" and not lab.state["b1"]["Paused"]
    assert ["docker", "unpause", "u3-b1-1", "u3-db-1"] in lab.commands


def test_roles_resolve_to_distinct_nodes_and_follower_is_seeded(fake):
    fake(modes={"a1": "follower", "a2": "leader", "b1": "follower"})
    picks = {Injector(T3, seed=s).resolve(make_spec("kill", ["leader", "follower"])).targets for s in range(8)}
    assert all(p[0] == "a2" and p[1] in ("a1", "b1") for p in picks)
    assert Injector(T3, seed=3).resolve(make_spec("kill", ["follower"])) == Injector(T3, seed=3).resolve(
        make_spec("kill", ["follower"])
    )


def test_no_leader_is_a_runtime_error_naming_the_modes(fake):
    fake(modes={"a1": "unknown", "a2": "unknown", "b1": "unknown"})
    with pytest.raises(RuntimeFailure, match=r"no leader to pick within .*a1=unknown"):
        Injector(T3).resolve(make_spec("kill", ["leader"]))


def test_a_role_asked_for_during_an_election_waits_for_it(fake, monkeypatch):
    # What CI once met right after a heal: one member restarting, one still looking, no leader.
    lab = fake(modes={"a1": "not running", "a2": "follower", "b1": "not serving"})
    answers = iter(
        [
            {"a1": "not running", "a2": "follower", "b1": "not serving"},
            {"a1": "follower", "a2": "leader", "b1": "leader"},  # two leaders: stale, not settled
            {"a1": "follower", "a2": "follower", "b1": "leader"},
        ]
    )
    monkeypatch.setattr(backend, "roles", lambda _t: next(answers))
    monkeypatch.setattr(injector, "ELECTION_TIMEOUT", 30.0)
    assert Injector(T3).resolve(make_spec("pause", ["leader"])).targets == ("b1",)
    assert lab.commands == []  # resolving touches nothing


def test_a_follower_target_keeps_its_seeded_choice_across_retries(fake, monkeypatch):
    fake()
    settled = {"a1": "follower", "a2": "leader", "b1": "follower"}
    answers = iter([{"a1": "not serving", "a2": "leader", "b1": "not running"}, settled])
    monkeypatch.setattr(backend, "roles", lambda _t: next(answers))
    monkeypatch.setattr(injector, "ELECTION_TIMEOUT", 30.0)
    after_retry = Injector(T3, seed=5).resolve(make_spec("kill", ["random", "follower"])).targets
    monkeypatch.setattr(backend, "roles", lambda _t: settled)
    assert Injector(T3, seed=5).resolve(make_spec("kill", ["random", "follower"])).targets == after_retry


def test_network_fault_that_cut_nothing_is_undone_and_reported(fake, monkeypatch):
    fake()
    installed: list[dict] = []
    monkeypatch.setattr(backend, "install_rules", lambda t, plan: installed.append(plan))
    monkeypatch.setattr(backend, "remove_rules", lambda t, pattern, found=None: {"a1": 0})
    monkeypatch.setattr(backend, "connectivity", lambda t, paths, ips: {(s, d): (n, 0) for s, d, n in paths})
    with pytest.raises(FaultNotEffective, match=r"isolate b1: .* still connect"):
        Injector(T3).apply(make_spec("isolate", ["b1"]))
    assert installed and faults.active("u3") == []


def test_network_fault_with_nothing_to_cut_fails_before_touching_anything(fake, monkeypatch):
    fake()
    monkeypatch.setattr(backend, "install_rules", lambda t, plan: pytest.fail("no rule may be installed"))
    monkeypatch.setattr(backend, "connectivity", lambda t, paths, ips: {(s, d): (0, n) for s, d, n in paths})
    with pytest.raises(FaultNotEffective, match="no path to cut works before the fault"):
        Injector(T3).apply(make_spec("split"))


def test_interrupt_during_apply_undoes_what_was_done(fake, monkeypatch):
    lab = fake()
    real = backend.wait_states
    calls = []

    def interrupted_once(*a, **k):  # Ctrl-C while the kill is being verified; the undo runs normally
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(backend, "wait_states", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        Injector(T3).apply(make_spec("stop", ["a1"]))
    assert faults.active("u3") == []
    assert ["docker", "start", "u3-a1-1"] in lab.commands


# --------------------------------------------------------------- network faults held across restarts


def reapplied(fault_id: str) -> list[dict[str, Any]]:
    entry = next(e for e in faults.active("u3") if e["id"] == fault_id)
    return entry["detail"].get("reapplied", [])


def cut_both_ways(lab: FakeLab, a: str, b: str) -> bool:
    ips = faults.addresses(T3, lab.containers(T3))
    return lab.connectivity(T3, [(a, b, 1), (b, a, 1)], ips) == {(a, b): (0, 1), (b, a): (0, 1)}


def test_reapply_after_an_address_change_moves_the_rules_to_the_new_address(fake):
    lab = fake()
    with Injector(T3) as inj:
        split = inj.apply(make_spec("split"))  # a1, a2, db | b1
        old = lab.ip["b1"]
        assert any(f"-d {old} " in r for r in lab.rules("a1")) and lab.rules("b1")
        lab.restarted("b1", ip="10.0.0.99")  # fresh namespace, new address, no event: only reapply sees it
        assert not lab.rules("b1") and not cut_both_ways(lab, "a1", "b1")

        assert faults.reapply(T3, "b1 started") == [split.id]
        tag = f'"{faults.rule_tag("u3", split.id)}"'
        for n in ("a1", "a2"):
            assert any(r == f"-A OUTPUT -d 10.0.0.99 -m comment --comment {tag} -j DROP" for r in lab.rules(n))
            assert not any(old in r for r in lab.rules(n))  # the old address is free for another host
            assert len(lab.rules(n)) == 1  # replaced, not added to
        assert sorted(lab.rules("b1")) == sorted(
            [
                *(f"-A OUTPUT -d {lab.ip[d]} -m comment --comment {tag} -j DROP" for d in ("a1", "a2", "db")),
                f"-A INPUT -s {lab.ip['db']} -m comment --comment {tag} -j DROP",
            ]
        )
        assert cut_both_ways(lab, "a1", "b1") and cut_both_ways(lab, "b1", "db")
        (note,) = reapplied(split.id)
        assert note["why"] == "b1 started" and note["t"] <= time.time() and 0 <= note["exposed"]["b1"] < 60
        assert faults.reapply(T3, "lb started") == []  # nothing the rules depend on changed
        record = inj.heal(split)
    assert record is not None and [n["why"] for n in record.detail["reapplied"]] == ["b1 started"]
    assert not any(lab.rules(n) for n in T3.node_names)


def test_a_reapply_that_does_not_cut_is_reported_and_noted(fake, monkeypatch):
    lab = fake()
    with Injector(T3) as inj:
        split = inj.apply(make_spec("split"))
        lab.restarted("b1")
        monkeypatch.setattr(backend, "connectivity", lambda t, paths, ips: {(s, d): (n, 0) for s, d, n in paths})
        with pytest.raises(
            FaultNotEffective,
            match=rf"could not re-establish {split.id} split .*b1->a1.* still "
            r"connect after b1 started",
        ):
            faults.reapply(T3, "b1 started")
        assert "still connect" in reapplied(split.id)[-1]["error"]


@pytest.mark.parametrize("kind", ["kill", "stop", "pause"])
def test_a_container_fault_healed_while_a_network_fault_holds_cuts_the_host_again(fake, kind):
    lab = fake()
    with Injector(T3) as inj:
        split = inj.apply(make_spec("split"))
        down = inj.apply(make_spec(kind, ["b1"]))
        if kind != "pause":
            lab.ip["b1"] = "10.0.0.77"  # Docker hands out another address at the next start
        record = inj.heal(down)
        assert record is not None and "reapply_failed" not in record.detail
        assert lab.rules("b1") and cut_both_ways(lab, "a1", "b1") and cut_both_ways(lab, "b1", "db")
        # A paused host keeps its namespace and address, so its rules: nothing to do.
        assert [n["why"] for n in reapplied(split.id)] == ([] if kind == "pause" else ["b1 started"])


def test_a_host_paused_when_the_fault_came_takes_its_own_rules_when_unpaused(fake):
    lab = fake()
    with Injector(T3) as inj:
        paused = inj.apply(make_spec("pause", ["b1"]))
        split = inj.apply(make_spec("split"))
        assert not lab.rules("b1")  # a frozen host holds no rules: b1 <-> db had none anywhere
        inj.heal(paused)
        assert cut_both_ways(lab, "b1", "db") and cut_both_ways(lab, "b1", "a2")
        assert [n["why"] for n in reapplied(split.id)] == ["b1 unpaused"]


def test_the_restart_fault_comes_back_cut(fake):
    lab = fake()
    with Injector(T3) as inj:
        split = inj.apply(make_spec("split"))
        lab.ip["b1"] = "10.0.0.55"
        inj.apply(make_spec("restart", ["b1"]))
        # Cut before apply returns, by the restart itself or by the watcher that saw the start first.
        assert cut_both_ways(lab, "a1", "b1") and cut_both_ways(lab, "b1", "db")
        assert reapplied(split.id)[-1]["why"] in ("b1 restarted", "b1 started")


def test_a_start_nobody_announced_is_seen_by_the_watcher_which_leaves_no_process(fake):
    lab = fake()
    inj = Injector(T3)
    split = inj.apply(make_spec("split"))
    assert inj.watcher is not None
    events = wait_for("the events process", lambda: inj.watcher._procs.get(""), 10.0, 0.02)
    lab.ip["b1"] = "10.0.0.66"
    lab.run(["docker", "restart", "u3-b1-1"], "a plain docker restart")
    wait_for("the watcher's reapply", lambda: reapplied(split.id), 10.0, 0.02)
    assert reapplied(split.id)[0]["why"] == "b1 started" and cut_both_ways(lab, "a1", "b1")
    inj.heal(split)
    assert inj.watcher is None and events.poll() is not None  # killed and reaped at the heal
    assert not any(lab.rules(n) for n in T3.node_names)


def test_no_reapply_and_no_watcher_without_a_network_fault(fake):
    lab = fake()
    with Injector(T3) as inj:
        inj.heal(inj.apply(make_spec("kill", ["b1"])))
        inj.apply(make_spec("restart", ["a1"]))
        assert inj.watcher is None
    assert not [c for c in lab.commands if c[1] == "exec"]  # no rules touched
    assert faults.reapply(T3, "b1 started") == []


def test_a_split_cuts_a_load_balancer_placed_in_a_datacenter_from_the_other_side():
    t = make_topology(3, lb_dc="dc-b")
    groups = netmodel.groups(make_spec("split"), t)
    assert groups == (frozenset({"a1", "a2", DB}), frozenset({"b1", LB}))
    cut_list = faults.cuts(make_spec("split"), t)
    assert Cut("a1", LB) in cut_list and Cut(LB, "a2") in cut_list and Cut("b1", LB) not in cut_list
    ips = {
        "a1": ["10.1.0.10"],
        "a2": ["10.1.0.11"],
        "b1": ["10.2.0.12"],
        DB: ["10.3.0.3"],
        LB: ["10.4.0.2", "10.1.0.2"],
    }
    plan = faults.rules(cut_list, ips, "t", {"a1", "a2", "b1"})
    # The load balancer holds no rules (no NET_ADMIN): the nodes drop its packets, both directions.
    assert LB not in plan
    a1 = [" ".join(r) for r in plan["a1"]]
    assert any("OUTPUT -d 10.1.0.2 " in r for r in a1) and any("INPUT -s 10.1.0.2 " in r for r in a1)
    assert ("a1", LB) in faults.check_paths(cut_list, {"a1", "a2", "b1"})
    # Outside every datacenter (the default), a split leaves it alone.
    assert LB not in {e for g in netmodel.groups(make_spec("split"), make_topology(3)) for e in g}


def test_a_bandwidth_fault_is_shaped_again_only_on_a_node_that_restarted_and_undone_on_heal(fake, monkeypatch):
    from lab.faults import gray

    lab = fake()
    shaped: list[dict[str, list[str]]] = []
    cleared: list[tuple[list[str], str | None]] = []
    rates = iter([{"a1": 9e8, "a2": 9e8, "b1": 9e8}, {"a1": 0.97e6, "a2": 0.96e6, "b1": 0.98e6}])
    monkeypatch.setattr(gray, "measure_rates", lambda t, chosen, ips, rate: next(rates))
    monkeypatch.setattr(gray, "shape", lambda t, addrs, fault_id, spec: shaped.append(dict(addrs)))
    monkeypatch.setattr(
        gray,
        "unshape",
        lambda t, nodes, fault_id: cleared.append((list(nodes), fault_id)) or {n: (2, 0) for n in nodes},
    )
    with Injector(T3) as inj:
        fault = inj.apply(make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6))
        assert set(shaped[0]) == {"a1", "a2", "b1"} and fault.detail["mbit_after"]["b1"] == 0.98
        assert fault.detail["probes"] == {"a1": "to b1", "a2": "to b1", "b1": "to a1"}
        lab.restarted("b1")  # a fresh namespace: its shaping went with the old one
        assert faults.reapply(T3, "b1 started") == [fault.id]
        assert set(shaped[1]) == {"b1"}  # the others keep theirs untouched
        assert [n["why"] for n in reapplied(fault.id)] == ["b1 started"]
        lab.restarted("a2", ip="10.0.0.99")  # a moved address: every filter naming it changes
        faults.reapply(T3, "a2 started")
        assert set(shaped[2]) == {"a1", "a2", "b1"} and "e:10.0.0.99" in shaped[2]["b1"]
        assert not any(lab.rules(n) for n in T3.node_names)  # no iptables rule is involved
        inj.heal(fault)
    assert cleared == [(["a1", "a2", "b1"], fault.id)]
