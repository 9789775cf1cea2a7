"""Host-level faults of a swarm lab (lab/faults/hostfaults.py) and what a swarm lab takes: the
hosts' Docker faked by a small model of their iptables rules and states."""

import json
import sys

import pytest

from lab.cluster import compose, hosts
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Engine, make_topology
from lab.core.errors import BadInput, FaultNotEffective
from lab.core.wait import wait_for
from lab.faults import Injector, StartWatcher, backend, gray, heal_lab, hostfaults, leftovers, make_spec, validate
from lab.faults.netmodel import rule_tag

IPS = {"swm-h1": "172.30.0.2", "swm-h2": "172.30.0.3", "swm-h3": "172.30.0.4"}


class FakeHosts:
    """Each host's rules (iptables argument lists with their comment) and whether it runs; a
    peer is reached unless a rule on either end drops the pair."""

    def __init__(self, drop_works=True):
        self.rules = {h: [] for h in IPS}
        self.running = dict.fromkeys(IPS, True)
        self.drop_works = drop_works

    def reachable(self, host, ips):
        mine = self.rules[host.name] if self.drop_works else []
        return {ip: not any(ip in r for r in mine) for ip in ips}

    def rewrite(self, host, rules, replacing):
        kept = [r for r in self.rules[host.name] if not (replacing and replacing.strip('"') in " ".join(r))]
        self.rules[host.name] = kept + [list(r) for r in rules]
        return sum(1 for r in self.rules[host.name] if replacing and replacing.strip('"') in " ".join(r))


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    hosts.save(hosts.make_group("swm", 3))
    fake = FakeHosts()
    monkeypatch.setattr(hostfaults, "addresses", lambda group: dict(IPS))
    monkeypatch.setattr(hostfaults, "reachable", fake.reachable)
    monkeypatch.setattr(hostfaults, "rewrite", fake.rewrite)
    monkeypatch.setattr(hostfaults, "running", lambda h: fake.running[h.name])
    monkeypatch.setattr(hostfaults, "rule_counts", lambda t, up: {h.name: len(fake.rules[h.name]) for h in up})
    # The swarm as a cut's heal finds it: every host Ready, no task told to stop, every service running.
    monkeypatch.setattr(hostfaults.hosts, "not_ready", lambda group: [])
    monkeypatch.setattr(hostfaults.swarm, "told_to_stop", lambda t: [])
    monkeypatch.setattr(hostfaults.engine, "states", lambda t: [running(s) for s in compose.services(t)])
    return make_topology(3, lab="demo", engine=Engine("swarm", "swm")), fake


def running(service, up=True):
    return ContainerState(service, service, up, False, "running" if up else "exited", 0, False, 0, None)


def test_a_cut_host_drops_every_packet_to_and_from_each_other_host(lab):
    t, fake = lab
    spec = make_spec("cut-host", ["swm-h3"])
    hostfaults.apply(t, spec, "f1")
    tag = rule_tag("demo", "f1")
    assert sorted(" ".join(r) for r in fake.rules["swm-h3"]) == sorted(
        [f"-I INPUT -s {ip} -m comment --comment {tag} -j DROP" for ip in (IPS["swm-h1"], IPS["swm-h2"])]
        + [f"-I OUTPUT -d {ip} -m comment --comment {tag} -j DROP" for ip in (IPS["swm-h1"], IPS["swm-h2"])]
    )
    assert fake.rules["swm-h1"] == fake.rules["swm-h2"] == []
    hostfaults.undo(t, spec, "f1")
    assert fake.rules["swm-h3"] == []


def test_a_cut_that_does_not_take_is_not_effective(lab, monkeypatch):
    t, fake = lab
    fake.drop_works = False
    with pytest.raises(FaultNotEffective, match=r"swm-h2 still reaches 172\.30\.0\.2"):
        hostfaults.apply(t, make_spec("cut-host", ["swm-h2"]), "f1")


def test_a_host_is_killed_and_started_again(lab, monkeypatch):
    t, fake = lab
    ran = []

    def run(args, what, **kw):
        ran.append(args)
        if args[:2] == ["docker", "kill"]:
            fake.running["swm-h2"] = False
        if args[:2] == ["docker", "start"]:
            fake.running["swm-h2"] = True
        return ""

    monkeypatch.setattr(hostfaults.docker, "run", run)
    monkeypatch.setattr(hostfaults.hosts, "dockerd_answers", lambda h: True)
    monkeypatch.setattr(hostfaults.hosts, "not_ready", lambda g: [])
    monkeypatch.setattr(hostfaults, "down_services", lambda t: [])
    spec = make_spec("kill-host", ["swm-h2"])
    hostfaults.apply(t, spec, "f2")
    assert ran == [["docker", "kill", "--signal", "KILL", "swm-h2"]] and not fake.running["swm-h2"]
    assert hostfaults.leftovers(t) == ({}, ["swm-h2"])
    hostfaults.undo(t, spec, "f2")
    assert ran[-1] == ["docker", "start", "swm-h2"] and fake.running["swm-h2"]


def test_the_tasks_that_died_with_a_host_run_again(lab, monkeypatch):
    """A swarm never replaces a task with restart policy none: heal gives it a new one."""
    t, _ = lab
    updated = []
    running = {"a1": True, "a2": True, "b1": False, "db": True, "lb": True}

    def states(t):
        return [
            ContainerState(s, s, up, False, "running" if up else "exited", 0, False, 0, None)
            for s, up in running.items()
        ]

    def run(args, what, **kw):
        updated.append(args[5:])
        running["b1"] = True
        return ""

    monkeypatch.setattr(hostfaults.engine, "states", states)
    monkeypatch.setattr(hostfaults.docker, "run", run)
    assert hostfaults.revive(t) == ["b1"]
    assert updated == [["service", "update", "--force", "--replicas", "1", "--detach", "demo_b1"]]
    assert hostfaults.revive(t) == [] and len(updated) == 1


def test_the_sweep_finds_rules_and_stopped_hosts_without_an_entry(lab, monkeypatch):
    t, fake = lab
    revived = []
    monkeypatch.setattr(hostfaults, "revive", revived.append)
    monkeypatch.setattr(
        hostfaults, "start", lambda stopped, group: [fake.running.update({h.name: True}) for h in stopped]
    )
    fake.rules["swm-h1"] = [
        ["-I", "INPUT", "-s", "x", "-m", "comment", "--comment", rule_tag("demo", "f9"), "-j", "DROP"]
    ]
    fake.running["swm-h3"] = False
    assert hostfaults.sweep(t) == ({"swm-h1": 1}, ["swm-h3"])
    assert fake.rules["swm-h1"] == [] and fake.running["swm-h3"] and revived == [t]


def test_a_cut_hosts_heal_runs_again_what_the_swarm_stopped_when_it_came_back(lab, monkeypatch):
    """Cut past the swarm's heartbeat, the host was marked down and its tasks told to shut down;
    back, it stops them: the heal waits for that, runs the stopped ones again and says which."""
    t, _ = lab
    told = [["b1"], ["b1"], []]  # the manager still sees b1 running, then its agent has stopped it
    up = {"b1": True}
    again = []

    def told_to_stop(t):
        if len(told) == 1:
            up["b1"] = False
        return told.pop(0) if len(told) > 1 else told[0]

    monkeypatch.setattr(hostfaults.swarm, "told_to_stop", told_to_stop)
    monkeypatch.setattr(
        hostfaults.engine, "states", lambda t: [running(s, up.get(s, True)) for s in compose.services(t)]
    )
    monkeypatch.setattr(hostfaults.swarm, "run_again", lambda t, services: again.extend(services) or up.update(b1=True))
    spec = make_spec("cut-host", ["swm-h3"])
    hostfaults.apply(t, spec, "f1")
    assert hostfaults.undo(t, spec, "f1") == {"stopped_by_swarm": ["b1"]}
    assert again == ["b1"]


def test_host_faults_name_hosts_of_the_lab_group(lab):
    t, _ = lab
    with pytest.raises(BadInput, match=r"^fault.target: no host 'swm-h7'"):
        hostfaults.targets(t, make_spec("cut-host", ["swm-h7"]))


@pytest.mark.parametrize(
    ("kind", "targets", "swarm", "message"),
    [
        ("cut-host", ["swm-h1"], False, r"^fault.kind: cut-host acts on the hosts of a swarm lab"),
        ("kill-host", [], True, r"^fault.target: kill-host needs the hosts"),
        ("kill-host", ["swm-h1", "swm-h1"], True, r"^fault.target: a host is named twice"),
        ("io", ["db"], True, r"^fault.kind: io is not available on a swarm lab: .*privileged container"),
        ("exhaust", ["db"], True, r"^fault.kind: exhaust is not available on a swarm lab: .*db network$"),
    ],
)
def test_what_a_swarm_lab_takes(kind, targets, swarm, message):
    t = make_topology(3, lab="demo", engine=Engine("swarm", "swm") if swarm else None)
    with pytest.raises(BadInput, match=message):
        validate(make_spec(kind, targets), t)


def test_a_swarm_lab_takes_its_nodes_network_faults_and_container_kinds():
    t = make_topology(3, lab="demo", engine=Engine("swarm", "swm"))
    for spec in (
        make_spec("split", (), [["dc-a"], ["dc-b"]]),
        make_spec("pause", ["a1"]),
        make_spec("kill", ["a1", "db"]),
        make_spec("stop", ["lb"]),
        make_spec("restart", ["b1"]),
        make_spec("isolate", ["b1"]),
    ):
        validate(spec, t)
    assert make_spec("cut-host", ["swm-h3"]).describe() == "cut-host swm-h3"


class FakeTasks:
    """The lab's tasks on the hosts, as their engines and the manager's `docker service` take
    commands: a killed or stopped container stays (exited) beside the new task a service update
    makes, as a swarm keeps a replaced task's container for a while."""

    def __init__(self):
        where = {"a1": "swm-h2", "a2": "swm-h1", "b1": "swm-h3", "db": "swm-h1", "lb": "swm-h1"}
        self.tasks = [self._task(s, h, 0) for s, h in where.items()]
        self.replicas = dict.fromkeys(where, 1)
        self.commands = []  # (host, the docker command's arguments)

    @staticmethod
    def _task(service, host, n):
        name, cid = f"demo_{service}.1.{n}", f"{service}-{n}"
        return ContainerState(name, service, True, False, "running", None, False, 0, f"t{n}", {}, cid, host)

    def states(self, t):
        return list(self.tasks)

    def run(self, args, what, **kw):
        host, cmd = args[3], args[5:]  # docker exec -i <host> docker ...
        self.commands.append((host, cmd))
        if cmd[0] in ("kill", "stop"):
            self.tasks = [
                ContainerState(c.name, c.service, False, False, "exited", 137, False, 0, c.started_at, {}, c.id, c.host)
                if c.id in cmd and c.host == host
                else c
                for c in self.tasks
            ]
        elif cmd[:2] == ["service", "scale"]:
            for arg in cmd[3:]:
                name, n = arg.split("=")
                self.replicas[name.removeprefix("demo_")] = int(n)
        elif cmd[:2] == ["service", "update"]:
            service = cmd[-1].removeprefix("demo_")
            old = [c for c in self.tasks if c.service == service]
            self.tasks = [c for c in self.tasks if c.service != service or not c.running] + [
                self._task(service, old[0].host, len(old))
            ]
            self.replicas[service] = 1
        if cmd[0] != "exec":
            return ""
        shaping = kw.get("input") == gray._SHAPING and cmd[cmd.index("--") + 1] != "count"
        return "0 0" if shaping else "0"  # no fault rules, no shaping devices (removed, left)


@pytest.fixture
def tasks(lab, monkeypatch):
    fake = FakeTasks()
    monkeypatch.setattr(hostfaults.engine, "states", fake.states)
    monkeypatch.setattr(hostfaults.docker, "run", fake.run)
    return lab[0], fake


def test_a_killed_task_is_killed_where_it_runs_and_its_service_stays_down_until_healed(tasks):
    t, fake = tasks
    with Injector(t) as inj:
        fault = inj.apply(make_spec("kill", ["a1"]))
        assert ("swm-h2", ["kill", "--signal", "KILL", "a1-0"]) in fake.commands
        # scaled to none, so that the swarm does not replace it (rancher-1.0's restart policy `any`)
        assert ("swm-h1", ["service", "scale", "--detach", "demo_a1=0"]) in fake.commands
        assert fake.replicas["a1"] == 0 and not any(c.running for c in fake.tasks if c.service == "a1")
        inj.heal(fault)
    assert ("swm-h1", ["service", "update", "--force", "--replicas", "1", "--detach", "demo_a1"]) in fake.commands
    assert [c.id for c in fake.tasks if c.service == "a1" and c.running] == ["a1-1"]


def test_a_restarted_task_is_a_new_task_of_its_service(tasks):
    t, fake = tasks
    Injector(t).apply(make_spec("restart", ["b1"]))
    assert fake.commands[0] == ("swm-h1", ["service", "update", "--force", "--replicas", "1", "--detach", "demo_b1"])
    assert not any(cmd[0] == "restart" for _, cmd in fake.commands)
    assert [c.id for c in fake.tasks if c.service == "b1" and c.running] == ["b1-1"]


def test_heal_finds_a_service_left_scaled_to_none_without_an_entry(tasks):
    t, fake = tasks
    fake.run(["docker", "exec", "-i", "swm-h1", "docker", "stop", "--time", "5", "db-0"], "")
    fake.run(["docker", "exec", "-i", "swm-h1", "docker", "service", "scale", "--detach", "demo_db=0"], "")
    assert leftovers(t)["stopped"] == ["db"]
    report = heal_lab(t)
    assert report.started == ("db",) and fake.replicas["db"] == 1
    assert leftovers(t)["stopped"] == []


def test_the_start_watcher_reads_the_events_of_every_host_and_names_a_task_by_its_service(lab, monkeypatch):
    """A rancher-1.0 node that exits comes back as a new task on its host: the watcher must see
    that start there, not on this machine's Docker, to cut the node again."""
    t, _ = lab
    asked = []
    event = {"Action": "start", "Actor": {"Attributes": {"com.docker.swarm.service.name": "demo_b1"}}}

    def events_command(t, since, until, on):
        asked.append(on[3])  # docker exec -i <host> docker
        return [sys.executable, "-c", f"print({json.dumps(json.dumps(event))})"] if on[3] == "swm-h3" else ["true"]

    monkeypatch.setattr(backend, "events_command", events_command)
    seen = []
    watcher = StartWatcher(t, lambda service, action: seen.append((service, action)), since=0.0)
    try:
        wait_for("the start on swm-h3", lambda: seen, 10.0, 0.02)
        wait_for("every host asked", lambda: {"swm-h1", "swm-h2", "swm-h3"} <= set(asked), 10.0, 0.02)
    finally:
        watcher.stop()
    assert seen[0] == ("b1", "start")


def test_leader_placement_reaches_a_swarm_task_on_its_host(tasks):
    """The matrix puts the ZooKeeper leader where a case wants it by killing members: in the task's
    container on its host, by id (a compose name does not exist there)."""
    from lab.chaos import placement

    t, fake = tasks
    placement._kill_member(t, "a1")
    assert fake.commands[-1][0] == "swm-h2" and fake.commands[-1][1][:3] == ["exec", "-d", "a1-0"]
    placement._member_pids(t, "b1")
    assert fake.commands[-1][0] == "swm-h3" and fake.commands[-1][1][:2] == ["exec", "b1-0"]
