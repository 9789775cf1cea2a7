"""Where a lab's containers are (lab/cluster/engine.py): this machine's Docker for compose, the host
running each task for swarm; and the fault backend acting through it. No Docker: the engines are faked."""

import pytest

from lab.cluster import docker, engine, hosts
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Engine, make_topology
from lab.core.errors import RuntimeFailure
from lab.faults import backend


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
