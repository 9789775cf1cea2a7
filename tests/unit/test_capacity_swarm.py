"""`halab capacity` on a swarm, without Docker: the engine settings of a grid file and the flags,
the load balancer ports taken from the host group, and the sampler reading each container's memory
and CPU through the Docker of the host that runs its task (the docker calls are faked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.capacity import report, sampler, sweep
from lab.capacity.measurement import Measurement
from lab.capacity.spec import Point, build_grid
from lab.cluster import cpu, docker, engine, hosts, preflight
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Engine, Ports, make_topology
from lab.core.errors import BadInput, RuntimeFailure


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> hosts.HostGroup:
    monkeypatch.setenv("HALAB_HOME", str(tmp_path / "home"))
    g = hosts.make_group("swc1", 3, published=(29080, 29443, 29081))
    hosts.save(g)
    return g


# ------------------------------------------------------------------------------------ settings


def test_a_swarm_sweep_runs_every_point_on_its_host_group() -> None:
    grid = build_grid({"settings": {"engine": "swarm", "hosts": "swc1"}}, "g.yaml", {"users": "5,20"})
    assert {p.topology("x", Ports(), grid.settings).engine for p in grid.points} == {Engine("swarm", "swc1")}
    # Flags override the file; a swarm sweep that names no group runs on halab up's default one.
    grid = build_grid({"settings": {"engine": "swarm", "hosts": "swc1"}}, "g.yaml", None, {"hosts": "swc2"})
    assert grid.settings.hosts == "swc2"
    assert build_grid(None, "grid", None, {"engine": "swarm"}).settings.hosts == "swm"
    assert build_grid(None, "grid").settings.engine == "compose"


@pytest.mark.parametrize(
    "doc, flags, message",
    [
        (
            {"settings": {"engine": "k8s"}},
            {},
            r"^capacity/x.yaml: settings.engine: 'k8s' is not an engine; use compose",
        ),
        ({}, {"engine": "k8s"}, r"^--engine: 'k8s' is not an engine"),
        ({"settings": {"engine": "swarm", "hosts": "Bad_Group"}}, {}, r"^capacity/x.yaml: settings.hosts: 'Bad_Group'"),
        ({"settings": {"hosts": "swc1"}}, {}, r"^capacity/x.yaml: settings.hosts: a host group runs swarm labs only"),
        ({}, {"hosts": "swc1"}, r"^--hosts: a host group runs swarm labs only"),
        (
            {"settings": {"engine": "swarm", "db": "galera:3"}},
            {},
            r"^capacity/x.yaml: settings.db: galera:3 is not available on a swarm yet",
        ),
        ({"settings": {"db": "galera:3"}}, {"engine": "swarm"}, r"^capacity/x.yaml: settings.db: galera:3"),
        ({"settings": {"engine": "swarm"}}, {"db": "galera:5"}, r"^--db: galera:5 is not available on a swarm"),
    ],
)
def test_engine_errors_name_the_file_and_field_or_the_flag(doc, flags, message) -> None:
    with pytest.raises(BadInput, match=message):
        build_grid(doc, "capacity/x.yaml", None, flags)


# --------------------------------------------------------------------------------------- ports


def test_a_swarm_sweep_uses_the_ports_its_group_publishes(group: hosts.HostGroup) -> None:
    grid = build_grid(None, "grid", {"nodes": "1,3,5"}, {"engine": "swarm", "hosts": "swc1"})
    assert sweep.swarm_ports(grid) == Ports(http=29080, https=29443, mgmt=29081)
    assert sweep.swarm_ports(build_grid(None, "grid")) is None  # compose: free ports, point by point


def test_swarm_ports_are_refused_before_any_lab_when_the_group_cannot_take_the_points(
    group: hosts.HostGroup,
) -> None:
    settings = {"engine": "swarm", "hosts": "swc1"}
    hosts.save(hosts.make_group("swc1", 3, published=(29080, 29443)))
    with pytest.raises(BadInput, match=r"^--hosts: host group 'swc1' publishes 2 port\(s\); a lab needs three"):
        sweep.swarm_ports(build_grid(None, "grid", None, settings))
    hosts.save(hosts.make_group("swc1", 1, published=(29080, 29443, 29081)))  # dc-a only
    with pytest.raises(BadInput, match=r"^--layout: host group 'swc1' has no host in dc-b"):
        sweep.swarm_ports(build_grid(None, "grid", {"nodes": "3"}, settings))
    real = hosts.HostGroup(
        "swc1", (hosts.Host("rack1", "dc-a", ("docker", "--host", "ssh://rack1")),), (80, 443, 18080)
    )
    hosts.save(real)
    with pytest.raises(BadInput, match=r"^--hosts: host group 'swc1' names real machines"):
        sweep.swarm_ports(build_grid(None, "grid", {"nodes": "1"}, settings))
    with pytest.raises(BadInput, match=r"^--hosts: no host group 'swc9'"):
        sweep.swarm_ports(build_grid(None, "grid", None, {"engine": "swarm", "hosts": "swc9"}))


def test_a_swarm_point_takes_the_given_ports_and_binds_nothing_here(
    group: hosts.HostGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_binding() -> Ports:
        raise AssertionError("a swarm point must not look for free ports here")

    seen = []
    monkeypatch.setattr(preflight, "free_ports", no_binding)
    monkeypatch.setattr(sweep, "_measure", lambda t, point, settings, d, made, deadline: seen.append(t) or made)
    grid = build_grid(None, "grid", None, {"engine": "swarm", "hosts": "swc1"})
    ports = sweep.swarm_ports(grid)
    sweep.run_point(grid.points[0], grid.settings, "swccap-1", tmp_path / "p1", ports)
    (t,) = seen
    assert t.engine == Engine("swarm", "swc1") and t.ports == ports
    assert [f.message for f in preflight.ports(t)] == ["published by the manager of host group 'swc1'"]


def test_the_cli_dry_run_shows_the_groups_ports(group: hosts.HostGroup, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli.main import main

    assert main(["capacity", "--dry-run", "--engine", "swarm", "--hosts", "swc1", "--users", "5,20"]) == 0
    assert "on host group 'swc1' (swarm), one point after another on the ports it publishes: http 29080" in (
        capsys.readouterr().out
    )
    assert main(["capacity", "--dry-run", "--engine", "swarm", "--hosts", "swc1", "--db", "galera:3"]) == 2
    assert "--db: galera:3 is not available on a swarm yet" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- sampler


def task(service: str, host: str, cid: str) -> ContainerState:
    return ContainerState(
        name=f"swccap-1_{service}.1.x",
        service=service,
        running=True,
        paused=False,
        status="running",
        exit_code=None,
        oom_killed=False,
        restart_count=0,
        started_at="2026-12-01T08:00:00Z",
        id=cid,
        host=host,
    )


def test_the_sampler_reads_each_task_through_the_docker_of_its_host(
    group: hosts.HostGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_topology(3, lab="swccap-1", engine=Engine("swarm", "swc1"))
    where = {"db": "swc1-h1", "lb": "swc1-h1", "a1": "swc1-h2", "a2": "swc1-h1", "b1": "swc1-h3"}
    # Container ids as Docker makes them (64 hex digits); `docker stats` shows the first 12.
    ids = {s: f"{i:x}" * 64 for i, s in enumerate(where, 10)}
    monkeypatch.setattr(engine, "states", lambda _: [task(s, h, ids[s]) for s, h in where.items()])
    used_s = {s: 1.5 + i for i, s in enumerate(where)}
    ran: list[list[str]] = []

    def run(args, what, **kw):
        ran.append(list(args))
        if "stats" in args:
            host = args[3]  # docker exec -i <host> docker stats ...
            return "".join(
                json.dumps({"ID": cid[:12], "Name": f"swccap-1_{s}.1.x", "MemUsage": f"{10 + len(s)}MiB / 1GiB"}) + "\n"
                for s, cid in ids.items()
                if cid in args and where[s] == host
            )
        # docker exec <host> sh -c 'grep -H "" ...' sh <paths>: the nested cgroup v1 files of its tasks
        host, paths = args[2], args[args.index("sh", 4) + 1 :]
        lines = []
        for s, cid in ids.items():
            if where[s] == host:
                acct = f"{cpu.CGROUP_ROOT}/cpuacct/docker/{cid}/cpuacct.usage"
                stat = f"{cpu.CGROUP_ROOT}/cpu/docker/{cid}/cpu.stat"
                assert acct in paths and stat in paths
                lines += [f"{acct}:{int(used_s[s] * 1e9)}", f"{stat}:nr_periods 0", f"{stat}:throttled_time 0"]
        return "\n".join(lines) + "\n"

    monkeypatch.setattr(docker, "run", run)
    s = sampler.Sampler(t, tmp_path / "samples.jsonl")
    s._places = engine.by_id(t, s.services)
    assert {k: (p.host, p.container) for k, p in s._places.items()} == {k: (where[k], ids[k]) for k in where}

    assert s.container_memory() == {k: 10.0 + len(k) for k in where}
    stats = sorted(a[:6] for a in ran)
    assert stats == sorted([*hosts.exec_docker(h), "stats"] for h in ("swc1-h1", "swc1-h2", "swc1-h3"))

    ran.clear()
    s._cpu_readings()
    # One read per host, in the host's container (its cgroup tree), none of this machine's files.
    assert sorted(a[:5] for a in ran) == sorted(["docker", "exec", h, "sh", "-c"] for h in group.names)
    assert {k: r.used_s for k, r in s._cpu.items() if k != "machine"} == used_s
    assert s._cpu["a1"].limit == cpu.machine_cpus()

    # A host that does not answer gives no figure for its tasks; the others still count.
    def silent_h3(args, what, **kw):
        if "swc1-h3" in args:
            raise RuntimeFailure("swc1-h3 does not answer")
        return run(args, what, **kw)

    monkeypatch.setattr(docker, "run", silent_h3)
    for k in used_s:
        used_s[k] += 1.0
    pairs = s._cpu_readings()
    assert "b1" not in pairs and {"db", "lb", "a1", "a2", "machine"} <= set(pairs)
    assert s.container_memory().keys() == {"db", "lb", "a1", "a2"}


def test_a_compose_lab_is_read_on_this_machine_by_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_topology(1, lab="cap")
    ids = {"db": "d" * 64, "lb": "e" * 64, "a1": "f" * 64}
    monkeypatch.setattr(
        docker, "container_states", lambda lab, cmd=docker.LOCAL: [task(s, "", c) for s, c in ids.items()]
    )
    for cid in ids.values():
        (tmp_path / "cpuacct/docker" / cid).mkdir(parents=True)
        (tmp_path / "cpuacct/docker" / cid / "cpuacct.usage").write_text("2000000000\n")
        (tmp_path / "cpu/docker" / cid).mkdir(parents=True)
        (tmp_path / "cpu/docker" / cid / "cpu.stat").write_text("throttled_time 0\n")
    monkeypatch.setattr(cpu, "CGROUP_ROOT", tmp_path)
    ran: list[list[str]] = []

    def run(args, what, **kw):
        ran.append(list(args))
        return "".join(json.dumps({"ID": c[:12], "MemUsage": "5MiB / 1GiB"}) + "\n" for c in ids.values())

    monkeypatch.setattr(docker, "run", run)
    s = sampler.Sampler(t, tmp_path / "samples.jsonl")
    s._places = engine.by_id(t, s.services)
    assert s.container_memory() == {"db": 5.0, "lb": 5.0, "a1": 5.0}
    assert [a[:2] for a in ran] == [["docker", "stats"]]
    s._cpu_readings()
    assert {k: r.used_s for k, r in s._cpu.items() if k != "machine"} == {"db": 2.0, "lb": 2.0, "a1": 2.0}
    assert len(ran) == 1  # this machine's cgroup files are read directly, no docker exec


# -------------------------------------------------------------------------------------- report


def test_the_report_says_the_swarm_ran_it_and_what_machine_cpu_means(group: hosts.HostGroup, tmp_path: Path) -> None:
    grid = build_grid(None, "grid", None, {"engine": "swarm", "hosts": "swc1"})
    meta = {"engine": sweep.engine_meta(grid.settings)}
    m = Measurement(Point(), max_connections=160, node_memory_limit_mib=1200, preflight=(), status="did not start")
    report.write_report(tmp_path, grid.settings, [m], meta)
    text = (tmp_path / "capacity.md").read_text()
    assert "Engine: a swarm stack on host group swc1 (swc1-h1 (dc-a), swc1-h2 (dc-a), swc1-h3 (dc-b))" in text
    assert "share its CPUs, so machine CPU is all of them" in text
    settings, _, loaded = report.load_report(tmp_path)
    assert settings.engine == "swarm" and loaded["engine"]["hosts"] == "swc1"
    assert report.engine_lines({"kind": "compose"}) == []
