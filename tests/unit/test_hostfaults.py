"""Host-level faults of a swarm lab (lab/faults/hostfaults.py) and what a swarm lab takes: the
hosts' Docker faked by a small model of their iptables rules and states."""

import pytest

from lab.cluster import hosts
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Engine, make_topology
from lab.core.errors import BadInput, FaultNotEffective
from lab.faults import hostfaults, make_spec, validate
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
    return make_topology(3, lab="demo", engine=Engine("swarm", "swm")), fake


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
    assert updated == [["service", "update", "--force", "--detach", "demo_b1"]]
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
        ("kill", ["a1"], True, r"^fault.kind: kill is not available on a swarm lab yet"),
        ("io", ["db"], True, r"^fault.kind: io is not available on a swarm lab: .*privileged container"),
        ("exhaust", ["db"], True, r"^fault.kind: exhaust is not available on a swarm lab: .*db network$"),
    ],
)
def test_what_a_swarm_lab_takes(kind, targets, swarm, message):
    t = make_topology(3, lab="demo", engine=Engine("swarm", "swm") if swarm else None)
    with pytest.raises(BadInput, match=message):
        validate(make_spec(kind, targets), t)


def test_a_swarm_lab_takes_its_nodes_network_faults_and_pauses():
    t = make_topology(3, lab="demo", engine=Engine("swarm", "swm"))
    for spec in (
        make_spec("split", (), [["dc-a"], ["dc-b"]]),
        make_spec("pause", ["a1"]),
        make_spec("isolate", ["b1"]),
    ):
        validate(spec, t)
    assert make_spec("cut-host", ["swm-h3"]).describe() == "cut-host swm-h3"
