"""The swarm stack file (lab/cluster/stack.py): the compose project's services, placed by datacenter
label, on overlays, with swarm secrets and configs; no Docker."""

import pytest
import yaml

from lab.cluster import addressing, compose, stack, state
from lab.cluster.topology import Engine, Ports, make_topology
from lab.core.errors import BadInput

TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x"}
SWARM = Engine("swarm", "swm")


def swarm(n=3, **kw):
    return make_topology(n, lab="demo", engine=SWARM, **kw)


def rendered(n=3, **kw):
    return yaml.safe_load(compose.dump(stack.render(swarm(n, **kw), TAGS)))


def test_the_same_services_as_the_compose_project():
    t = swarm(5)
    plain = compose.render(make_topology(5, lab="demo"), TAGS, addressing.choose(t, []))
    s = rendered(5)
    assert set(s["services"]) == set(plain["services"]) == set(compose.services(t))
    for name, svc in s["services"].items():
        for key in ("image", "hostname", "labels", "environment", "command"):
            assert svc.get(key) == plain["services"][name].get(key), (name, key)
    assert s["version"] == stack.SCHEMA_VERSION and "name" not in s  # the swarm's CLI refuses `name`


# Every key of a service the swarm's compose schema 3.9 knows (docker/cli
# cli/compose/schema/data/config_schema_v3.9.json); `docker stack deploy` refuses any other.
SCHEMA_3_9_SERVICE_KEYS = {
    *("deploy", "build", "cap_add", "cap_drop", "cgroupns_mode", "cgroup_parent", "command", "configs"),
    *("container_name", "credential_spec", "depends_on", "devices", "dns", "dns_search", "domainname"),
    *("entrypoint", "env_file", "environment", "expose", "external_links", "extra_hosts", "healthcheck"),
    *("hostname", "image", "init", "ipc", "isolation", "labels", "links", "logging", "mac_address"),
    *("network_mode", "networks", "pid", "ports", "privileged", "profiles", "read_only", "restart"),
    *("security_opt", "shm_size", "secrets", "sysctls", "stdin_open", "stop_grace_period", "stop_signal"),
    *("tmpfs", "tty", "ulimits", "user", "userns_mode", "volumes", "working_dir"),
}


def test_every_service_key_is_one_the_swarm_schema_knows():
    for name, svc in rendered(5)["services"].items():
        assert set(svc) <= SCHEMA_3_9_SERVICE_KEYS, (name, set(svc) - SCHEMA_3_9_SERVICE_KEYS)
    assert set(rendered(3)) <= {"version", "services", "networks", "volumes", "secrets", "configs"}


def test_overlays_internal_where_compose_networks_are_and_attachable():
    s = rendered(3)
    assert set(s["networks"]) == {"front", "interdc", "db", "dc-a", "dc-b"}
    for name, net in s["networks"].items():
        assert net["driver"] == "overlay" and net["attachable"] is True
        assert net["internal"] is (name != "front")
        assert net["labels"]["halab.lab"] == "demo"


def test_no_fixed_addresses_but_the_same_aliases():
    s = rendered(3)
    assert s["services"]["a2"]["networks"] == {
        "dc-a": {"aliases": ["a2.dc-a"]},
        "interdc": {"aliases": ["a2.interdc"]},
        "db": {},
    }
    text = compose.dump(stack.render(swarm(3), TAGS))
    assert "ipv4_address" not in text and "extra_hosts" not in text
    # Names are the tasks' own addresses, which a fault's rules match.
    assert {svc["deploy"]["endpoint_mode"] for svc in s["services"].values()} == {"dnsrr"}


def test_placement_by_datacenter_label_and_load_balancer_on_the_manager():
    s = rendered(5, db_dc="dc-b")
    placed = {name: svc["deploy"]["placement"]["constraints"] for name, svc in s["services"].items()}
    assert placed["a3"] == ["node.labels.halab.dc == dc-a"]
    assert placed["b2"] == ["node.labels.halab.dc == dc-b"]
    assert placed["db"] == ["node.labels.halab.dc == dc-b"]
    assert placed["lb"] == ["node.role == manager"]
    assert rendered(3, db_dc="external")["services"]["db"]["deploy"]["placement"]["constraints"] == []
    assert rendered(3, lb_dc="dc-b")["services"]["lb"]["deploy"]["placement"]["constraints"] == [
        "node.role == manager",
        "node.labels.halab.dc == dc-b",
    ]


def test_load_balancer_publishes_in_host_mode():
    s = rendered(3, ports=Ports(http=8081, https=8443, mgmt=18081))
    assert s["services"]["lb"]["ports"] == [
        {"target": 80, "published": 8081, "protocol": "tcp", "mode": "host"},
        {"target": 443, "published": 8443, "protocol": "tcp", "mode": "host"},
        {"target": 18080, "published": 18081, "protocol": "tcp", "mode": "host"},
    ]
    assert [n for n, svc in s["services"].items() if "ports" in svc] == ["lb"]


def test_secrets_are_swarm_secrets_for_the_containers_uid_and_haproxy_cfg_a_config():
    s = rendered(3)
    assert s["secrets"] == {name: {"file": f"./{path}"} for name, path in compose.SECRET_FILES.items()}
    (pem,) = s["services"]["lb"]["secrets"]
    assert pem == {"source": "lb_pem", "target": "lb_pem", "uid": "10001", "gid": "10001", "mode": 0o400}
    assert [x["source"] for x in s["services"]["db"]["secrets"]] == ["db_password", "db_root_password"]
    assert s["configs"] == {"haproxy_cfg": {"file": "./haproxy.cfg"}}
    assert s["services"]["lb"]["configs"] == [
        {"source": "haproxy_cfg", "target": "/usr/local/etc/haproxy/haproxy.cfg", "mode": 0o444}
    ]
    assert "volumes" not in s["services"]["lb"]  # nothing bound from the harness's disk


@pytest.mark.parametrize(("profile", "condition"), [("rancher-1.0", "any"), ("tuned", "none")])
def test_restart_policy_and_limits_follow_the_profile_and_sizing(profile, condition):
    t = swarm(3, profile=profile)
    s = yaml.safe_load(compose.dump(stack.render(t, TAGS)))
    policies = {n: svc["deploy"]["restart_policy"]["condition"] for n, svc in s["services"].items()}
    assert policies == {"db": "none", "lb": "none", "a1": condition, "a2": condition, "b1": condition}
    assert s["services"]["a1"]["deploy"]["resources"]["limits"]["memory"] == f"{t.node_mem_limit_mib}M"
    assert s["services"]["db"]["deploy"]["resources"]["limits"]["memory"] == "1024M"
    assert "resources" not in s["services"]["lb"]["deploy"]


def test_haproxy_resolves_swarm_tasks_at_run_time_and_compose_nodes_by_hosts_file():
    on_swarm = compose.haproxy_config(swarm(3))
    assert "nameserver docker 127.0.0.11:53" in on_swarm
    assert "default-server init-addr none resolvers docker" in on_swarm
    plain = compose.haproxy_config(make_topology(3, lab="demo"))
    assert "resolvers" not in plain and "default-server init-addr libc " in plain


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"monitoring": True}, "--monitoring"),
        ({"db": "galera:3"}, "--db"),
        ({"ports": Ports(direct=9000)}, "--direct-port"),
        ({"ports": Ports(bind="0.0.0.0")}, "--bind"),
        ({"engine": Engine("swarm", "Bad Name")}, "--hosts"),
        ({"engine": Engine("kubernetes")}, "--engine"),
        ({"engine": Engine("compose", "swm")}, "--hosts"),
    ],
)
def test_what_a_swarm_lab_refuses_names_its_option(kw, field):
    kw = {"engine": SWARM, **kw}
    with pytest.raises(BadInput, match=f"^{field}:"):
        make_topology(3, lab="demo", **kw)


def test_state_directory_holds_the_stack_and_topology_keeps_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    t = swarm(3)
    path = state.materialize(t, state.lab_dir(t.lab), TAGS, None)
    assert path.name == stack.STACK_FILE and not (path.parent / "compose.yaml").exists()
    assert yaml.safe_load(path.read_text())["services"]["b1"]["deploy"]["placement"]["constraints"]
    assert (path.parent / compose.HAPROXY_CFG).is_file()
    assert state.load_topology("demo").engine == SWARM
    d = state.topology_to_dict(make_topology(3, lab="old"))
    del d["engine"]  # a lab started before swarm existed
    assert state.topology_from_dict(d).engine == Engine()


def test_remove_waits_for_the_swarm_to_remove_the_overlays_and_sweeps_on_the_manager_only(tmp_path, monkeypatch):
    """`docker stack rm` removes the overlays itself a moment later, and a worker its own copy later
    still: `remove` waits for both (no sweep races them: no "network not found"; no copy left on a
    worker), and no worker is asked to remove a swarm network ("not a swarm manager")."""
    from lab.cluster import engine, hosts
    from lab.cluster import swarm as swarm_engine

    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    hosts.save(hosts.make_group("swm", 3))
    t = swarm(3)
    listed = {
        ("network", "swm-h1"): iter([["n1", "n2"], ["n1"], []]),
        ("network", "swm-h2"): iter([["n1"], ["n1"], ["n1"]]),  # the worker's copy outlives the manager's
        ("volume", "swm-h1"): iter([["v1"]]),
    }
    asked: list[tuple[str, str]] = []
    removed: list[list[str]] = []

    def labelled(kind, lab, cmd):
        host = cmd[3]
        asked.append((kind, host))
        return next(listed.get((kind, host), iter([])), [])

    def run(args, what, **_):
        removed.append(list(args[5:]))
        return ""

    monkeypatch.setattr(swarm_engine.docker, "labelled", labelled)
    monkeypatch.setattr(swarm_engine.docker, "run", run)
    monkeypatch.setattr(engine, "states", lambda t: [])
    swarm_engine.remove(t)
    assert asked.count(("network", "swm-h2")) > 3  # waited on until the worker's copy was gone
    assert [a for a in removed if a[:2] == ["network", "rm"]] == []  # the swarm removed them all
    assert ["volume", "rm", "v1"] in removed and ("volume", "swm-h3") in asked


def test_a_scenario_starts_a_new_lab_on_the_engine_asked():
    from lab.chaos import scenario

    sc = scenario.load("scenarios/kill-leader-under-load.yaml")
    assert sc.topology.build("x", on=Engine("swarm", "swm")).engine == Engine("swarm", "swm")
    assert not sc.topology.build("x").engine.swarm
