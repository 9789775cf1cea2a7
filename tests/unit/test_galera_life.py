"""A Galera lab's life with Docker faked: the start order and the bootstrap file, the bootstrap
choice from the members' volumes, status, the heal after a full outage, queries and fault rules."""

from __future__ import annotations

import pytest

from lab.cluster import compose, galera_life, images, probes
from lab.cluster.docker import ContainerState
from lab.cluster.topology import make_topology
from lab.core.errors import RuntimeFailure
from lab.faults import DB, backend, cuts, make_spec, rules
from lab.faults import heal as healing
from lab.faults.netmodel import path_ip, rule_holders

T = make_topology(3, lab="g", db="galera:3")  # db1 db2 in dc-a, db3 in dc-b
UUID = "5ee99582-bd1e-11ee-9d34-0a4b4dcd3ea7"


def container(service: str, running: bool = True, paused: bool = False) -> ContainerState:
    status = "paused" if paused else "running" if running else "exited"
    return ContainerState(f"g-{service}-1", service, running, paused, status, 0, False, 0, None)


def grastate(seqno: int, safe: int = 0) -> str:
    return f"# GALERA saved state\nversion: 2.1\nuuid: {UUID}\nseqno: {seqno}\nsafe_to_bootstrap: {safe}\n"


class FakeDocker:
    """`docker volume ls`, and the one-off containers' `grastate` and `recover` per member."""

    def __init__(self, saved: dict[str, str], recovered: dict[str, int]) -> None:
        self.saved, self.recovered, self.recovers = saved, recovered, []

    def run(self, args, what, timeout=None, **_kw):
        if args[:3] == ["docker", "volume", "ls"]:
            return "".join(f"g_{m}data\n" for m in self.saved) + "other_volume\n"
        member = next(a.split("=")[1] for a in args if a.startswith("HALAB_GALERA_NAME="))
        if args[-1] == "grastate":
            return self.saved[member]
        self.recovers.append(member)
        return f"[Note] WSREP: Recovered position: {UUID}:{self.recovered[member]}\n"


@pytest.fixture
def fake_docker(monkeypatch):
    def install(saved, recovered=None):
        fake = FakeDocker(saved, recovered or {})
        monkeypatch.setattr(galera_life.docker, "run", fake.run)
        monkeypatch.setattr(
            galera_life,
            "_compose_service",
            lambda t, m: {"image": "halab/galera:x", "environment": {"HALAB_GALERA_NAME": m}},
        )
        return fake

    return install


def test_a_new_database_bootstraps_db1(fake_docker):
    fake_docker({})
    assert galera_life.bootstrap_member(T) == "db1"


def test_after_a_crash_the_member_with_the_highest_recovered_seqno_bootstraps(fake_docker):
    fake = fake_docker(
        {"db1": grastate(-1), "db2": grastate(-1), "db3": grastate(-1)}, {"db1": 40, "db2": 42, "db3": 41}
    )
    assert galera_life.bootstrap_member(T) == "db2"
    assert fake.recovers == ["db1", "db2", "db3"]


def test_a_member_marked_safe_bootstraps_and_nobody_is_recovered(fake_docker):
    fake = fake_docker({"db1": grastate(-1), "db2": grastate(17), "db3": grastate(18, safe=1)})
    assert galera_life.bootstrap_member(T) == "db3"
    assert fake.recovers == []


def test_a_member_without_saved_state_is_left_out(fake_docker):
    fake_docker({"db1": "", "db2": grastate(9), "db3": grastate(12)})
    assert galera_life.bootstrap_member(T) == "db3"


class FakeProject:
    def __init__(self, calls: list) -> None:
        self.compose = self
        self.calls = calls

    def up(self, services, **kw):
        self.calls.append(("up", tuple(services), kw.get("dependencies", True)))


def test_start_bootstraps_makes_the_user_opens_the_front_then_joins_the_others_one_at_a_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    (tmp_path / "labs" / "g").mkdir(parents=True)
    calls: list = []
    seen_file: list[str] = []
    file = tmp_path / "labs" / "g" / "galera-bootstrap"
    monkeypatch.setattr(galera_life.docker, "client", lambda *a: FakeProject(calls))
    monkeypatch.setattr(galera_life, "bootstrap_member", lambda t: "db2")

    def ready(t, m):
        seen_file.append(file.read_text().strip())
        calls.append(("ready", m))

    monkeypatch.setattr(galera_life, "_starting", ready)
    monkeypatch.setattr(galera_life, "create_users", lambda t, m: calls.append(("users", m)))
    monkeypatch.setattr(galera_life, "front_target", lambda t: "db2")
    assert galera_life.start(T, deadline=float("inf"), while_joining=lambda: calls.append("nodes")) == "db2"
    assert calls == [
        ("up", ("db2",), False),
        ("ready", "db2"),
        ("users", "db2"),
        ("up", ("dbfront",), False),
        "nodes",
        ("up", ("db1",), False),
        ("ready", "db1"),
        ("up", ("db3",), False),
        ("ready", "db3"),
    ]
    # Only the first member's start sees itself named: the joiners start after the file is emptied.
    assert seen_file == ["db2", "", ""] and file.read_text() == ""


def test_status_shows_each_member_and_the_side_holding_the_primary_component():
    synced = {"wsrep_local_state": "4", "wsrep_local_state_comment": "Synced", "wsrep_cluster_status": "Primary"}
    views = [
        galera_life.view("db1", "dc-a", container("db1"), {**synced, "wsrep_cluster_size": "2"}),
        galera_life.view("db2", "dc-a", container("db2"), {**synced, "wsrep_cluster_size": "2"}),
        galera_life.view(
            "db3",
            "dc-b",
            container("db3"),
            {
                "wsrep_local_state": "0",
                "wsrep_local_state_comment": "Initialized",
                "wsrep_cluster_status": "non-Primary",
            },
        ),
    ]
    assert [(v.state, v.cluster_size, v.ready) for v in views] == [
        ("Synced", 2, True),
        ("Synced", 2, True),
        ("Initialized", None, False),
    ]
    assert galera_life.primary(views) == {"members": ["db1", "db2"], "datacenters": ["dc-a"], "size": 2}
    down = galera_life.view("db1", "dc-a", container("db1", running=False), {})
    assert (down.container, down.state, down.ready) == ("exited", None, False)
    assert galera_life.primary([down, views[2]]) is None


def test_a_galera_lab_runs_the_galera_image_and_lists_its_database_services():
    assert images.needed(T) == ("lb", "node", "galera")
    assert compose.services(T) == ("dbfront", "db1", "db2", "db3", "lb", "a1", "a2", "b1")


def test_queries_go_to_the_first_member_that_answers_and_wait_for_the_cluster(monkeypatch):
    asked = []

    def run(args, what, timeout=None, **_kw):
        asked.append(args[3])
        if args[3] == "g-db1-1":
            raise RuntimeFailure("container g-db1-1 is not running")
        return "n\n7\n"

    monkeypatch.setattr(probes.docker, "run", run)
    assert probes.db_query(T, "SELECT COUNT(*) AS n FROM ledger") == [{"n": "7"}]
    assert asked == ["g-db1-1", "g-db2-1"]


def test_heal_recovers_the_database_when_every_member_is_down(monkeypatch):
    started = []
    monkeypatch.setattr(healing.galera_life, "start", lambda t, deadline: started.append(t.lab) or "db2")
    found = {m: container(m, running=False) for m in ("db1", "db2", "db3")}
    assert healing._restart_database(T, ["db1", "db2", "db3", "a1"], found) == (["a1"], "db2")
    assert started == ["g"]
    found["db3"] = container("db3")  # one member still runs: the others join it
    assert healing._restart_database(T, ["db1", "db2"], found) == (["db1", "db2"], None)
    found["db3"] = container("db3", paused=True)  # a paused member still holds the cluster's state
    assert healing._restart_database(T, ["db1", "db2"], found) == (["db1", "db2"], None)
    assert started == ["g"]


def test_the_front_is_the_fault_model_s_db(monkeypatch):
    monkeypatch.setattr(
        backend.docker, "container_states", lambda lab, engine=("docker",): [container("dbfront"), container("db1")]
    )
    assert set(backend.containers(T)) == {DB, "db1"}
    ran: list[list[str]] = []
    monkeypatch.setattr(backend.docker, "run", lambda args, what, timeout=None: ran.append(list(args)) or "")
    backend.act(T, ["docker", "kill"], [DB], "kill db", timeout=5)
    backend.act(make_topology(3, lab="g"), ["docker", "kill"], [DB], "kill db", timeout=5)
    assert ran == [["docker", "kill", "g-dbfront-1"], ["docker", "kill", "g-db-1"]]


def test_a_split_puts_rules_in_the_members_on_their_own_side():
    assert rule_holders(T) == ("a1", "a2", "b1", "db1", "db2", "db3")
    split = cuts(make_spec("split", sides=[["dc-a"], ["dc-b"]]), T)
    ips = {e: [f"ip-{e}"] for e in ("a1", "a2", "b1", "db1", "db2", "db3", DB)}
    plan = rules(split, ips, "halab:g:f1", set(rule_holders(T)))
    at_db3 = [r[:4] for r in plan["db3"]]
    assert ["-I", "OUTPUT", "-d", "ip-db1"] in at_db3 and ["-I", "OUTPUT", "-d", "ip-db"] in at_db3
    # the front holds no rules: the member across the split drops what comes from it
    assert ["-I", "INPUT", "-s", "ip-db"] in at_db3
    assert not any("ip-b1" in r for r in plan["db3"])  # its own side stays open


def test_members_are_reached_on_the_db_network():
    ips = {"a1": {"interdc": "10.0.1.5", "db": "10.0.3.5", "dc-a": "10.0.2.5"}, "db2": {"db": "10.0.3.21", "dc-a": "x"}}
    assert path_ip("a1", ips, None) == "10.0.3.5"  # from a member
    assert path_ip("a1", ips, "dc-b") == "10.0.1.5"  # from a node: the peer mesh
    assert path_ip("db2", ips, "dc-b") == "10.0.3.21"  # a member from a node


def test_up_creates_the_containers_then_starts_the_rest_of_the_lab_while_the_members_join(monkeypatch, tmp_path):
    from lab.cluster import lifecycle

    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    steps: list = []
    compose_file = tmp_path / "compose.yaml"

    class Project:
        compose = property(lambda self: self)

        def create(self):
            steps.append("create")

        def up(self, services, **kw):
            steps.append(("up", tuple(services)))

    def start(t, deadline, while_joining):
        steps.append("first member and front")
        while_joining()
        steps.append("joiners")

    monkeypatch.setattr(lifecycle.docker, "require_docker", lambda: None)
    monkeypatch.setattr(lifecycle, "running_containers", lambda lab: [])
    monkeypatch.setattr(lifecycle.preflight, "enforce", lambda t, allow: None)
    monkeypatch.setattr(lifecycle.images, "build", lambda only: steps.append(("build", only)) or {})
    monkeypatch.setattr(lifecycle.addressing, "used_subnets", lambda: [])
    monkeypatch.setattr(lifecycle.state, "materialize", lambda t, d, tags, plan: compose_file)
    monkeypatch.setattr(lifecycle.docker, "client", lambda lab, f: Project())
    monkeypatch.setattr(lifecycle.galera_life, "start", start)
    monkeypatch.setattr(lifecycle, "wait_healthy", lambda t, timeout: steps.append(("healthy", timeout > 0)))
    lifecycle.up(T)
    assert steps == [
        ("build", ("lb", "node", "galera")),
        "create",
        "first member and front",
        ("up", ("dbfront", "lb", "a1", "a2", "b1")),  # never a member: galera_life starts those
        "joiners",
        ("healthy", True),
    ]


def test_a_member_that_exits_while_starting_ends_the_wait_at_once(monkeypatch):
    monkeypatch.setattr(galera_life, "member_problem", lambda t, m: f"{m}: not ready")
    monkeypatch.setattr(galera_life.docker, "run", lambda args, what, timeout=None: "false\n")
    with pytest.raises(RuntimeFailure, match="db2 exited while starting; see `halab logs --name g db2`"):
        galera_life._starting(T, "db2")
    monkeypatch.setattr(galera_life.docker, "run", lambda args, what, timeout=None: "true\n")
    assert galera_life._starting(T, "db2") == "db2: not ready"


def test_the_database_is_settled_when_every_member_counts_every_voter_and_the_front_writes_to_the_first(
    monkeypatch,
):
    synced = {"wsrep_local_state": "4", "wsrep_cluster_status": "Primary", "wsrep_cluster_size": "3"}
    status = {m: dict(synced) for m in ("db1", "db2", "db3")}
    serving = ["db2"]
    monkeypatch.setattr(galera_life, "read_status", lambda t, m: status[m])
    monkeypatch.setattr(galera_life, "front_target", lambda t: serving[0])
    assert galera_life.unsettled(T) == "the front writes to db2, not db1"
    serving[0] = "db1"
    assert galera_life.unsettled(T) is None
    # db2 thawed: it still says Synced in a Primary Component of 3, the others count 2
    status["db1"]["wsrep_cluster_size"] = status["db3"]["wsrep_cluster_size"] = "2"
    assert galera_life.unsettled(T) == "db1: in a component of 2, not 3; db3: in a component of 2, not 3"
    status["db1"] = {"wsrep_local_state": "1", "wsrep_cluster_status": "Primary"}
    assert galera_life.unsettled(T).startswith("db1: ")
