"""A 3-node lab as a stack over three Docker hosts made here (`halab hosts up 3`), started once for
the module: Locust's master and two workers on the hosts, their histories merged into one run;
write/read load through the load balancer on the manager, one host cut from the others, the
majority side keeps serving, the checker finds nothing lost; the gray faults acting in the tasks
wherever they run; a killed node left without a task until healed and a restart as a new task; and
`down` + `hosts down` leave nothing anywhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import load_spec, recorded, wait_recorded

from lab import faults
from lab.chaos import evidence
from lab.chaos.watch import Watch
from lab.cluster import docker, engine, hosts, lifecycle, probes, stack, state
from lab.cluster.docker import ContainerState
from lab.cluster.preflight import free_ports
from lab.cluster.topology import Engine, make_topology
from lab.core.wait import wait_for
from lab.faults import backend, gray, make_spec
from lab.record.distributed import SwarmLoadRun, place
from lab.record.history import load_run
from lab.record.load import LoadRun, make_run_dir, run_load
from lab.record.report import build_report

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GRACE = 8.0  # seconds after the cut the objective starts to count (scenarios/claims.yaml's)


def left_on(group: hosts.HostGroup, host: hosts.Host) -> dict[str, list[str]]:
    """Everything a lab could leave on a host: containers, networks and volumes of any lab; on the
    manager also secrets and configs of any stack (swarm state: a worker refuses to list them)."""
    out = {kind: docker.labelled(kind, None, host.docker) for kind in ("container", "network", "volume")}
    for kind in ("secret", "config") if host == group.manager else ():
        out[kind] = docker.run(host.command(kind, "ls", "-q"), f"list {kind}s on {host.name}").split()
    return {k: v for k, v in out.items() if v}


@pytest.fixture(scope="module")  # one host group for the module's tests: they are slow to start
def swarm_lab() -> Iterator[tuple[Any, hosts.HostGroup]]:
    ports = free_ports()
    group = hosts.make_group(state.unique_lab_name("swm"), 3, published=(ports.http, ports.https, ports.mgmt))
    label = f"label={hosts.GROUP_LABEL}={group.name}"
    try:
        hosts.up(group)
        # tuned: the load balancer drains the cut-off node as soon as it fences itself.
        t = make_topology(
            3, lab=state.unique_lab_name("swm"), ports=ports, profile="tuned", engine=Engine("swarm", group.name)
        )
        try:
            lifecycle.up(t)
            yield t, group
        finally:
            faults.heal_lab(t)
            lifecycle.down(t.lab)
        assert {h.name: left_on(group, h) for h in group.hosts} == {h.name: {} for h in group.hosts}
    finally:
        hosts.down(group.name)
    for kind in (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]):
        assert docker.run(["docker", *kind, "--filter", label], "list leftovers").split() == [], kind


def test_locust_workers_on_two_hosts_record_one_merged_run(swarm_lab, tmp_path):
    t, group = swarm_lab
    run_dir = make_run_dir("it-swarm-workers", root=tmp_path)
    spec = load_spec(t, "it-swarm-workers", 6, 20)
    placement = place(t, 2)  # w1 beside the master on the manager, w2 on h2: two hosts get the image
    assert [w.host for w in placement.workers] == [group.hosts[0], group.hosts[1]]
    result = run_load(spec, run_dir, load=SwarmLoadRun(t, spec, placement, run_dir))
    assert result.ok and set(result.workers) == {"w1", "w2"} and all(result.workers.values()), result.workers

    r = build_report(run_dir, query=lambda sql: probes.db_query(t, sql)).result
    assert r.requests == sum(result.workers.values())  # one history: every worker's requests, once
    present = next(o for o in r.outcomes if o.name == "acknowledged_writes_present")
    assert r.acks > 0 and present.checked > 0 and present.status == "passed", present
    assert not list((run_dir / "parts").glob("*.jsonl")) and (run_dir / "locust_stats.csv").exists()
    # The master sends its users to the load balancer by its name on the swarm's network.
    command = json.loads((run_dir / "load.json").read_text())["command"]
    assert command[command.index("--host") + 1] == "http://lb:80" and not any("127.0.0.1" in a for a in command)
    for h in group.hosts:  # every container of the run removed
        assert docker.run(h.command("ps", "-aq", "--filter", "label=halab.load"), "list load containers") == ""


def test_gray_faults_act_in_the_tasks_on_their_hosts_and_heal(swarm_lab):
    """stall, clock, cpu and delay, one after another, each through the Docker of the host that
    runs its task: verified as on compose (tests/integration/test_gray_docker.py), healed, nothing
    left. Before the cut: a node that fenced itself there may still be starting again after it."""
    t, _ = swarm_lab
    with faults.Injector(t) as inj:
        stall = inj.apply(make_spec("stall", ["follower"], process="zookeeper"))
        (node,) = stall.targets
        assert stall.detail["stopped"][node] and set(stall.detail["stopped"][node].values()) == {"T"}
        inj.heal(stall)
        assert "T" not in gray.signal_process(t, node, "zookeeper", "0").values()  # signal 0: reads the state

        clock = inj.apply(make_spec("clock", ["b1"], offset=10.0))
        assert abs(clock.detail["offset_s"]["b1"] - 10.0) <= 1.0
        assert abs(gray.read_clock(t, "a1").offset) <= 1.0  # the other nodes keep the true time
        inj.heal(clock)
        wait_for("b1's clock back", lambda: abs(gray.read_clock(t, "b1").offset) <= 1.0, 5)  # re-read each second

        cpu = inj.apply(make_spec("cpu", ["a2"], cpus=0.2))
        assert cpu.detail["throttled_s"]["a2"] > 0 and cpu.detail["cpus_used"]["a2"] <= 0.25
        assert gray.cpu_quota(t, "a2") == 20_000  # microseconds of each 100 ms, on a2's host
        inj.heal(cpu)
        assert gray.cpu_quota(t, "a2") <= 0

        delay = inj.apply(make_spec("delay", sides=[["dc-a"], ["dc-b"]], delay=0.1))
        assert set(delay.detail["rtt_after_ms"]) == {"a1", "a2", "b1"}  # each within a fifth of 100 ms
        inj.heal(delay)
        ips = faults.addresses(t, backend.containers(t))
        assert gray.measure_rtt(t, gray.probe_targets(t, {"b1": [("a1", 1.0)]}, ips))["b1"] < 0.02
    assert faults.leftovers(t) == {"registered": [], "rules": {}, "shapers": {}, "paused": [], "stopped": []}
    assert not any(gray.stop_delayers(t, t.node_names, None, only_count=True).values())


def test_a_cut_host_leaves_the_majority_serving_and_loses_no_write(swarm_lab, tmp_path):
    t, group = swarm_lab
    placed = {c.service: c.host for c in engine.states(t) if c.running}
    assert placed["lb"] == group.manager.name
    assert {group.host(placed[n.name]).dc for n in t.nodes} == set(t.datacenters)
    minority = group.host(placed["b1"])  # the one node of dc-b: alone on its host
    assert [n for n, h in placed.items() if h == minority.name] == ["b1"], placed

    run_dir = make_run_dir("it-swarm-cut", root=tmp_path)
    spec = load_spec(t, "it-swarm-cut", 8, 300)
    with (
        Watch(t, run_dir, client=False),
        faults.Injector(t, history=run_dir / "history.jsonl") as nemesis,
        LoadRun(spec, run_dir) as load,
    ):
        wait_recorded(run_dir, "history", 100, load)
        with nemesis.held(faults.make_spec("cut-host", [minority.name])) as cut:
            wait_recorded(run_dir, "history", recorded(run_dir, "history") + 400, load, timeout=240)
            # The cut's window ends as its heal begins: the heal then waits for the swarm to stop
            # and restart what it shut down on the host, while b1 may serve again.
            healing = time.time()
        healed = time.time()
        wait_recorded(run_dir, "history", recorded(run_dir, "history") + 100, load)
        load.stop()

    held = [r for r in load_run(run_dir).requests if cut.t0 + GRACE <= r.t0 and r.t1 <= healing]
    writes = [r for r in held if r.write]

    def told() -> str:
        """What failed, and the nodes' and hosts' own account of the cut (CI keeps only its log):
        once in CI the majority lost its quorum 41.6 s into a cut, with no log left to say why."""
        failed = [f"+{r.t0 - cut.t0:.2f} s {r.method} {r.name} {r.node}: {r.error}" for r in held if not r.ok]
        places = engine.placed(t, t.node_names) | {
            h.name: engine.Place(docker.LOCAL, str(h.container)) for h in group.hosts
        }
        timeline = evidence.render(evidence.collect(places, cut.t0, healed), cut.t0, limit=150)
        return "\n".join([f"placed: {placed}", *failed[:20], *timeline])

    assert held and writes, "no request went out while the host was cut"
    assert sum(r.ok for r in held) / len(held) >= 0.99, f"the majority side did not keep serving\n{told()}"
    assert sum(r.ok for r in writes) / len(writes) >= 0.99, f"writes stopped while the host was cut\n{told()}"
    served_by = {r.node for r in held if r.ok}
    assert "b1" not in served_by and served_by <= {"a1", "a2"}, served_by

    r = build_report(run_dir, query=lambda sql: probes.db_query(t, sql)).result
    checks = [o for o in r.outcomes if o.name not in ("linearizable_registers", "session_guarantees")]
    assert all(o.status == "passed" for o in checks), [(o.name, o.violations[:3]) for o in checks]
    assert r.acks > 0
    assert faults.leftovers(t) == {"registered": [], "rules": {}, "shapers": {}, "paused": [], "stopped": []}


def test_a_killed_node_stays_down_until_healed_and_a_restart_is_a_new_task(swarm_lab):
    t, group = swarm_lab

    def replicas(service: str) -> str:
        name = stack.service_name(t, service)
        fmt = "{{.Spec.Mode.Replicated.Replicas}}"
        return docker.run(group.manager.command("service", "inspect", "--format", fmt, name), "replicas").strip()

    def task(service: str) -> ContainerState | None:
        return engine.current(engine.states(t)).get(service)

    def serving() -> bool:
        return all(m in probes.SERVING_MODES for m in faults.roles(t).values())

    with faults.Injector(t) as nemesis:
        fault = nemesis.apply(faults.make_spec("kill", ["follower"]))
        (node,) = fault.targets
        killed = task(node)
        assert killed is None or not killed.running
        assert replicas(node) == "0"  # scaled to none: no restart policy brings it back before the heal
        nemesis.heal(fault)
        back = task(node)
        assert back is not None and back.running and replicas(node) == "1"
        assert killed is None or back.id != killed.id
        wait_for("every ZooKeeper member serving after the kill's heal", serving, 120, interval=1)

        before = task("b1")
        assert before is not None
        nemesis.apply(faults.make_spec("restart", ["b1"]))
        after = task("b1")
        assert after is not None and after.running and after.id != before.id  # the swarm's restart: a new task
        wait_for("every ZooKeeper member serving after the restart", serving, 120, interval=1)
    assert faults.leftovers(t) == {"registered": [], "rules": {}, "shapers": {}, "paused": [], "stopped": []}
