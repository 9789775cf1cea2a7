import pytest
import yaml

from lab.cluster import addressing, compose
from lab.cluster.topology import (
    HARNESS_CONNECTIONS,
    RESERVED_SERVER_ENV,
    Ports,
    Sizing,
    make_topology,
)
from lab.core.errors import BadInput, RuntimeFailure

TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x"}


def render(t):
    return compose.render(t, TAGS, addressing.choose(t, []))


def rendered(n=3, **kw):
    return yaml.safe_load(compose.dump(render(make_topology(n, lab="demo", **kw))))


def test_services_and_networks():
    p = rendered(3)
    assert p["name"] == "demo"
    assert set(p["services"]) == {"db", "lb", "a1", "a2", "b1"}
    assert set(p["networks"]) == {"front", "interdc", "db", "dc-a", "dc-b"}
    for name in ("interdc", "db", "dc-a", "dc-b"):
        assert p["networks"][name]["internal"] is True
    assert p["networks"]["front"].get("internal") is not True


def test_nodes_join_their_dc_interdc_and_db_only():
    p = rendered(5)
    for node, dc in [("a1", "dc-a"), ("a3", "dc-a"), ("b2", "dc-b")]:
        nets = p["services"][node]["networks"]
        assert set(nets) == {dc, "interdc", "db"}
        assert nets[dc]["aliases"] == [f"{node}.{dc}"]
        assert nets["interdc"]["aliases"] == [f"{node}.interdc"]
        assert "ports" not in p["services"][node]


def test_only_the_load_balancer_publishes_on_loopback():
    p = rendered(3, ports=Ports(http=8081, https=8443, mgmt=18081))
    published = {name: svc.get("ports", []) for name, svc in p["services"].items()}
    assert published["lb"] == ["127.0.0.1:8081:80", "127.0.0.1:8443:443", "127.0.0.1:18081:18080"]
    assert all(not v for k, v in published.items() if k != "lb")
    assert p["services"]["db"]["networks"] == {"db": {"ipv4_address": "10.238.1.3"}}


def test_no_secret_values_and_no_docker_socket():
    text = compose.dump(render(make_topology(3, lab="demo")))
    assert "docker.sock" not in text
    env = rendered(3)["services"]["a1"]["environment"]
    assert "CATTLE_DB_CATTLE_PASSWORD" not in env
    assert env["CATTLE_DB_CATTLE_PASSWORD_FILE"] == "/run/secrets/db_password"


def test_node_environment_carries_sizing_and_zookeeper():
    t = make_topology(3, lab="demo")
    env = compose.node_environment(t, "b1")
    assert env["CATTLE_HA_CLUSTER_SIZE"] == "3"
    assert env["HALAB_ZK_MYID"] == "3"
    assert env["HALAB_ZK_SERVERS"] == "1=a1.interdc,2=a2.interdc,3=b1.interdc"
    # The pool is the node profile's own unless sized; the database is sized for the guide's 50.
    assert "CATTLE_DB_CATTLE_MAXTOTAL" not in env and t.db_max_connections == 3 * 50 + HARNESS_CONNECTIONS
    sized = make_topology(3, lab="demo", sizing=Sizing(pool_size=20))
    assert compose.node_environment(sized, "b1")["CATTLE_DB_CATTLE_MAXTOTAL"] == "20"
    assert rendered(3)["services"]["db"]["command"][0] == f"--max-connections={t.db_max_connections}"


def test_haproxy_config_checks_ping_and_routes_each_node():
    cfg = compose.haproxy_config(make_topology(5, lab="demo"))
    assert "http-check send meth GET uri /ping" in cfg
    assert "option redispatch" in cfg and "retry-on" in cfg
    assert "disable-l7-retry if !METH_GET" in cfg
    for n in ("a1", "a2", "a3", "b1", "b2"):
        assert f"use_backend direct_{n} if {{ path_beg /node/{n}/ }}" in cfg
        assert f"server {n} {n}.dc-{n[0]}:8080 check" in cfg
        # The harness's route to one node never retries: a PUT answered 503 must not run twice.
        assert f"backend direct_{n}\n    retries 0\n" in cfg
    assert "$" not in cfg.replace("$lab", "")


def test_direct_port_publishes_only_the_first_node_for_benchmarks():
    p = rendered(3, ports=Ports(http=8081, https=8443, mgmt=18081, direct=18090))
    assert p["services"]["a1"]["ports"] == ["127.0.0.1:18090:8080"]
    assert "front" in p["services"]["a1"]["networks"] and "front" not in p["services"]["a2"]["networks"]
    assert "ports" not in p["services"]["a2"] and "ports" not in p["services"]["b1"]


def test_server_env_reaches_every_node_after_what_the_lab_wires():
    env = {"HALAB_PROCESS_DELAY_MS": "4000", "HALAB_CHANGELOG_LOCK_STALE": "5"}
    p = rendered(3, server_env=env)
    for node in ("a1", "a2", "b1"):
        got = p["services"][node]["environment"]
        assert {k: got[k] for k in env} == env
        assert list(got)[-2:] == list(env)  # after the lab's own, in the order given
        assert got["HALAB_NODE_NAME"] == node
    assert "environment" not in p["services"]["lb"]
    assert "HALAB_PROCESS_DELAY_MS" not in p["services"]["db"]["environment"]
    assert rendered(3)["services"]["a1"]["environment"].keys().isdisjoint(env)


def test_every_variable_the_lab_wires_is_reserved_from_server_env():
    t = make_topology(5, lab="demo")
    for node in t.node_names:
        assert set(compose.node_environment(t, node)) <= set(RESERVED_SERVER_ENV)


def test_private_networks_get_fixed_subnets_and_every_peer_a_fixed_address_by_name():
    p = rendered(5)
    subnets = {n: p["networks"][n]["ipam"]["config"][0]["subnet"] for n in ("interdc", "db", "dc-a", "dc-b")}
    assert subnets == {
        "interdc": "10.238.0.0/24",
        "db": "10.238.1.0/24",
        "dc-a": "10.238.2.0/24",
        "dc-b": "10.238.3.0/24",
    }
    assert "ipam" not in p["networks"]["front"]
    b2 = p["services"]["b2"]
    assert b2["networks"]["interdc"]["ipv4_address"] == "10.238.0.14"
    assert b2["networks"]["dc-b"]["ipv4_address"] == "10.238.3.14"
    # Every node names every peer (itself too) and the database in its /etc/hosts: no peer lookup
    # goes to Docker's DNS, which stalls while dead containers' endpoints are removed.
    hosts = dict(h.split(":") for h in p["services"]["a1"]["extra_hosts"])
    assert hosts == {
        **{f"{n}.interdc": f"10.238.0.{10 + i}" for i, n in enumerate(["a1", "a2", "a3", "b1", "b2"])},
        "db": "10.238.1.3",
    }
    lb = dict(h.split(":") for h in p["services"]["lb"]["extra_hosts"])
    assert lb["b2.dc-b"] == "10.238.3.14" and lb["a1.dc-a"] == "10.238.2.10"


def test_subnets_in_use_are_skipped_and_a_full_pool_is_an_actionable_error():
    t = make_topology(3, lab="demo")
    plan = addressing.choose(t, ["10.238.0.0/23", "10.238.3.128/25", "172.17.0.0/16"])
    assert list(plan.subnets.values()) == ["10.238.2.0/24", "10.238.4.0/24", "10.238.5.0/24", "10.238.6.0/24"]
    with pytest.raises(RuntimeFailure, match=r"no free /24 left in 10\.238\.0\.0/23"):
        addressing.choose(t, [], pool="10.238.0.0/23")
    with pytest.raises(BadInput, match="HALAB_SUBNET_POOL"):
        addressing.choose(t, [], pool="not-a-net")
