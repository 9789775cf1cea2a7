"""Where a lab's containers are (lab/cluster/engine.py): this machine's Docker for compose, the host
running each task for swarm; and the fault backend and the gray faults acting through it, their
heal and leftovers on a swarm lab. No Docker: the engines are faked."""

import time

import pytest

from lab.cluster import docker, engine, hosts
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Engine, make_topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.faults import backend, gray, heal, make_spec, validate


def task(service, host="", *, running=True, started="2026-12-01T08:00:00Z", cid=None):
    return ContainerState(
        name=f"demo_{service}.1.x",
        service=service,
        running=running,
        paused=False,
        status="running" if running else "exited",
        exit_code=None if running else 137,
        oom_killed=False,
        restart_count=0,
        started_at=started,
        id=cid or f"{service}-{host}-{started}",
        host=host,
    )


@pytest.fixture
def swarm_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    hosts.save(hosts.make_group("swm", 3))
    return make_topology(3, lab="demo", engine=Engine("swarm", "swm"))


def test_a_swarm_task_is_known_by_its_service_without_the_stack_prefix():
    c = ContainerState.from_inspect(
        {
            "Name": "/demo_a1.1.abc",
            "Id": "abc",
            "State": {"Running": True, "Status": "running"},
            "Config": {"Labels": {"com.docker.swarm.service.name": "demo_a1", "com.docker.stack.namespace": "demo"}},
            "NetworkSettings": {"Networks": {"demo_interdc": {"IPAddress": "10.0.1.5"}}},
        }
    )
    assert c.service == "a1" and c.addresses == {"demo_interdc": "10.0.1.5"}


def test_the_current_task_is_the_running_one_else_the_newest():
    old = task("a1", "swm-h1", running=False, started="2026-12-01T08:00:00Z")
    new = task("a1", "swm-h2", started="2026-12-01T08:01:00Z")
    gone = task("b1", "swm-h3", running=False, started="2026-12-01T08:00:00Z")
    newer_gone = task("b1", "swm-h3", running=False, started="2026-12-01T08:02:00Z")
    assert engine.current([new, old, gone, newer_gone]) == {"a1": new, "b1": newer_gone}
    assert engine.current([old, new]) == {"a1": new}


def test_a_compose_container_is_found_by_its_name_alone():
    t = make_topology(3, lab="demo")
    assert engine.place(t, "a1") == engine.Place(("docker",), "demo-a1-1")
    assert engine.engines(t) == {"": ("docker",)}


def test_a_swarm_task_is_reached_through_the_docker_of_its_host(swarm_lab, monkeypatch):
    asked = []

    def states(lab, cmd=docker.LOCAL):
        asked.append(tuple(cmd))
        if cmd[3] == "swm-h3":
            raise RuntimeFailure("the host does not answer")  # killed or cut off: shows nothing
        return [task("a1")] if cmd[3] == "swm-h2" else []

    monkeypatch.setattr(docker, "container_states", states)
    found = engine.states(swarm_lab)
    assert [(c.service, c.host) for c in found] == [("a1", "swm-h2")]
    assert asked == [tuple(h.docker) for h in hosts.load("swm").hosts]
    where = engine.place(swarm_lab, "a1")
    assert where.host == "swm-h2" and where.container == found[0].id
    assert where.command("exec", where.container, "true") == [*hosts.exec_docker("swm-h2"), "exec", found[0].id, "true"]
    with pytest.raises(RuntimeFailure, match="no container of b1 runs on the hosts of lab 'demo'"):
        engine.place(swarm_lab, "b1")
    asked.clear()
    # Evidence reads whichever nodes have a container, asking the hosts once.
    assert engine.placed(swarm_lab, ["a1", "b1"]) == {"a1": where}
    assert len(asked) == 3
    compose = make_topology(3, lab="demo")
    assert engine.placed(compose, ["a1", "b1"])["b1"] == engine.Place(("docker",), "demo-b1-1")


def test_a_fault_command_runs_once_on_each_host_that_runs_a_target(swarm_lab, monkeypatch):
    found = [task("a1", "swm-h1", cid="c1"), task("a2", "swm-h2", cid="c2"), task("b1", "swm-h1", cid="c3")]
    monkeypatch.setattr(engine, "states", lambda t: found)
    ran = []
    monkeypatch.setattr(docker, "run", lambda args, what, **kw: ran.append(args) or "")
    backend.act(swarm_lab, ["docker", "pause"], ["a1", "a2", "b1"], "pause", timeout=10)
    assert sorted(ran) == sorted(
        [[*hosts.exec_docker("swm-h1"), "pause", "c1", "c3"], [*hosts.exec_docker("swm-h2"), "pause", "c2"]]
    )


# ------------------------------------------------------------------------ gray faults on a swarm lab

# Where the fake swarm runs each task: host, container id.
TASKS = {"a1": ("swm-h1", "c-a1"), "a2": ("swm-h2", "c-a2"), "b1": ("swm-h3", "c-b1"), "db": ("swm-h1", "c-db")}


class FakeHosts:
    """The hosts' Docker: each command recorded with what it was sent in, answered as the gray
    scripts print."""

    def __init__(self):
        self.ran: list[tuple[list[str], str | None]] = []

    def run(self, args, what, *, timeout=None, input=None, env=None):
        self.ran.append((list(args), input))
        if input == gray._SHAPING:
            return {"count": "2", "set": ""}.get(args[args.index("-s") + 2], "2 0")
        answers = {
            gray._SIGNAL_PROCESS: '{"41": "T"}',
            gray._READ_CLOCK: f"{time.time() + 10}",
            gray._BUSY: "1000000 200000 800000",
            gray._RTT: "0.1",
            gray._STOP_DELAYERS: "1",
            "{{.HostConfig.CpuQuota}}": "20000",
        }
        return next((out for key, out in answers.items() if key in args), "0")

    def reached(self) -> set[tuple[str, str]]:
        """(host, container) of every command: the host's docker command, the task's id where it
        goes (after `exec` and its options, or last)."""
        out = set()
        for args, _ in self.ran:
            host = args[3]
            assert args[:5] == list(hosts.exec_docker(host)), args
            rest = args[5:]
            if rest[0] == "exec":
                rest = [a for a in rest[1:] if a not in ("-u", "root", "-i")]
                out.add((host, rest[0]))
            else:
                out |= {(host, c) for c in rest if c.startswith("c-")}
        return out


@pytest.fixture
def fake_hosts(swarm_lab, monkeypatch):
    monkeypatch.setattr(engine, "states", lambda t: [task(s, h, cid=c) for s, (h, c) in TASKS.items()])
    fake = FakeHosts()
    monkeypatch.setattr(docker, "run", fake.run)
    return fake


def test_gray_commands_reach_each_task_through_its_hosts_docker_by_its_container_id(swarm_lab, fake_hosts):
    t = swarm_lab
    assert gray.signal_process(t, "b1", "zookeeper", "SIGSTOP") == {"41": "T"}
    gray.set_clock(t, "a2", 10.0)
    assert abs(gray.read_clock(t, "a2").offset - 10) < 1
    assert gray.cpu_quota(t, "db") == 20000
    gray.set_cpu_quota(t, ["db", "a1"], 20000)  # one `docker update` for both, on their host
    assert gray.busy_loop(t, "a1").throttled_s == 0.8
    assert gray.measure_rtt(t, {"b1": ("a1", "10.0.1.2", 2181)}) == {"b1": 0.1}
    gray.start_delayers(t, {"b1": [("a1", 0.5)], "a2": [("db", 1.0)]}, 3000, make_spec("delay", delay=0.1))
    assert gray.stop_delayers(t, ["a2", "b1"], 3000) == {"a2": 1, "b1": 1}
    gray.shape(t, {"a1": ["e:10.0.1.4"]}, "f1", make_spec("bandwidth", rate=10**6))
    assert gray.unshape(t, ["a1"], "f1") == {"a1": (2, 0)}
    assert fake_hosts.reached() == {
        ("swm-h3", "c-b1"),
        ("swm-h2", "c-a2"),
        ("swm-h1", "c-db"),
        ("swm-h1", "c-a1"),
    }
    update = next(args for args, _ in fake_hosts.ran if "update" in args)
    assert update[:6] == [*hosts.exec_docker("swm-h1"), "update"] and update[-2:] == ["c-db", "c-a1"]
    assert not any("demo-" in a for args, _ in fake_hosts.ran for a in args)  # never a compose name


def test_heal_sweeps_a_swarm_labs_delayers_and_shapers_and_leftovers_count_the_shapers(
    swarm_lab, fake_hosts, monkeypatch
):
    t = swarm_lab
    monkeypatch.setattr(heal.hostfaults, "sweep", lambda t: ({}, []))
    monkeypatch.setattr(heal.hostfaults, "leftovers", lambda t: ({}, []))
    monkeypatch.setattr(heal.hostfaults, "revive", lambda t: [])  # no service left scaled to none
    monkeypatch.setattr(heal.hostfaults, "down_services", lambda t: [])
    report = heal.heal_lab(t)
    assert report.shapers_removed == {"a1": 2, "a2": 2, "b1": 2} and report.rogues_removed == ()
    stopped = {args[3] for args, _ in fake_hosts.ran if gray._STOP_DELAYERS in args}
    assert stopped == {"swm-h1", "swm-h2", "swm-h3"}  # every node's, on its host
    assert not any("halab.role=rogue-client" in a for args, _ in fake_hosts.ran for a in args)
    assert heal.leftovers(t) == {
        "registered": [],
        "rules": {},
        "shapers": {"a1": 2, "a2": 2, "b1": 2},
        "paused": [],
        "stopped": [],
    }


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("io", "its throttle is written by a privileged container on the task's host, which Docker in Docker"),
        ("exhaust", "its rogue client is a container of this machine at a fixed address on the compose"),
    ],
)
def test_io_and_exhaust_are_refused_on_a_swarm_lab_saying_why(swarm_lab, kind, why):
    with pytest.raises(BadInput, match=f"^fault.kind: {kind} is not available on a swarm lab: {why}") as e:
        validate(make_spec(kind, ["db"], io_iops=1 if kind == "io" else None), swarm_lab)
    assert "\n" not in str(e.value)


def test_a_swarm_lab_takes_the_other_gray_faults(swarm_lab):
    for spec in (
        make_spec("stall", ["follower"], process="zookeeper"),
        make_spec("clock", ["a1"], offset=10.0),
        make_spec("cpu", ["db"], cpus=0.2),
        make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.1),
        make_spec("bandwidth", sides=[["dc-a"], ["dc-b"]], rate=10**6),
    ):
        validate(spec, swarm_lab)
