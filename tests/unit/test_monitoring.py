"""`halab up --monitoring` without Docker: the topology and its state file, the ports, the compose
project (Prometheus and the database's exporter), Prometheus's and HAProxy's configuration, and
the node's ZooKeeper member figures (`mntr`) in its /metrics."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
import yaml

from lab.cli.main import main
from lab.cluster import addressing, compose, images, preflight, state
from lab.cluster.topology import Ports, make_topology
from lab.core.errors import BadInput
from lab.server import zkserver

TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x", "prom": "halab/prom:x"}


def project(t):
    return yaml.safe_load(compose.dump(compose.render(t, TAGS, addressing.choose(t, []))))


# ---------------------------------------------------------------------------- topology and state


def test_monitoring_is_off_by_default_and_its_port_is_published_only_when_on():
    off = make_topology(3, lab="demo")
    on = make_topology(3, lab="demo", monitoring=True, ports=Ports(prom=19090))
    assert off.monitoring is False and "prom" not in off.published_ports
    assert on.published_ports == {"http": 80, "https": 443, "mgmt": 18080, "prom": 19090}
    assert images.needed(off) == ("db", "lb", "node") and images.needed(on) == ("db", "lb", "node", "prom")


def test_the_prometheus_port_must_differ_from_the_others_and_be_a_port():
    with pytest.raises(BadInput, match="published ports must differ"):
        make_topology(3, monitoring=True, ports=Ports(mgmt=9090))
    with pytest.raises(BadInput, match="--prom-port: 70000 is not a TCP port"):
        make_topology(3, monitoring=True, ports=Ports(prom=70000))
    make_topology(3, ports=Ports(mgmt=9090))  # without monitoring 9090 is not published


def test_halab_up_names_prometheus_only_when_the_lab_has_it():
    from lab.cluster import lifecycle

    on = lifecycle.endpoints(make_topology(3, lab="demo", monitoring=True, ports=Ports(prom=19090)))
    assert on.prometheus == "http://127.0.0.1:19090/"
    assert "Prometheus:            http://127.0.0.1:19090/" in on.lines()
    off = lifecycle.endpoints(make_topology(3, lab="demo"))
    assert off.prometheus is None and not any("Prometheus" in line for line in off.lines())


def test_preflight_counts_the_monitoring_containers_memory(monkeypatch):
    def need(t):
        return int(preflight.host_memory(t).message.split(" MiB")[0].split()[-1])

    meminfo = io.StringIO("MemAvailable: 999999999 kB\n")  # plenty: the message gives the need
    monkeypatch.setattr(preflight, "open", lambda *a, **k: io.StringIO(meminfo.getvalue()), raising=False)
    plain, monitored = make_topology(3, lab="demo"), make_topology(3, lab="demo", monitoring=True)
    assert need(monitored) - need(plain) == compose.PROM_MEMORY_MIB + compose.EXPORTER_MEMORY_MIB


def test_free_ports_hand_out_a_distinct_prometheus_port():
    p = preflight.free_ports()
    assert len({p.http, p.https, p.mgmt, p.prom}) == 4


def test_monitoring_survives_the_state_file_and_old_state_files_load_without_it():
    t = make_topology(3, lab="demo", monitoring=True, ports=Ports(prom=19090))
    assert state.topology_from_dict(json.loads(json.dumps(state.topology_to_dict(t)))) == t
    old = state.topology_to_dict(make_topology(3, lab="demo"))
    del old["monitoring"]
    del old["ports"]["prom"]
    assert state.topology_from_dict(old) == make_topology(3, lab="demo")


def test_the_state_directory_holds_prometheus_yml_only_with_monitoring(tmp_path):
    for monitoring in (False, True):
        t = make_topology(1, lab=f"m{int(monitoring)}", monitoring=monitoring)
        folder = tmp_path / t.lab
        state.materialize(t, folder, TAGS, addressing.choose(t, []))
        assert (folder / compose.PROMETHEUS_CFG).exists() is monitoring


# ------------------------------------------------------------------------------ compose project


def test_without_monitoring_the_project_has_no_monitoring_service():
    p = project(make_topology(3, lab="demo"))
    assert set(p["services"]) == {"db", "lb", "a1", "a2", "b1"}
    assert compose.services(make_topology(3, lab="demo")) == ("db", "lb", "a1", "a2", "b1")


def test_prometheus_is_on_front_and_db_with_a_fixed_address_and_publishes_on_loopback():
    t = make_topology(3, lab="demo", monitoring=True, ports=Ports(prom=19090))
    p = project(t)
    prom, exporter = p["services"]["prom"], p["services"]["dbexporter"]
    assert compose.services(t)[-2:] == ("prom", "dbexporter")
    assert prom["image"] == exporter["image"] == "halab/prom:x"
    assert prom["networks"] == {"front": {}, "db": {"ipv4_address": "10.238.1.4"}}
    assert prom["ports"] == ["127.0.0.1:19090:9090"]
    assert "./prometheus.yml:/etc/halab/prometheus.yml:ro" in prom["volumes"]
    assert exporter["networks"] == {"db": {"ipv4_address": "10.238.1.5"}}
    assert "ports" not in exporter and exporter["extra_hosts"] == ["db:10.238.1.3"]
    assert exporter["secrets"] == ["db_password"] and "environment" not in exporter  # the password is a file
    assert exporter["depends_on"] == {"db": {"condition": "service_healthy"}}
    for svc in (prom, exporter):
        assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"]
        assert svc["restart"] == "no" and svc["labels"]["halab.lab"] == "demo"
    # the addresses the monitoring takes are clear of every node and the database
    nodes = {n["networks"]["db"]["ipv4_address"] for name, n in p["services"].items() if name in t.node_names}
    assert not nodes & {"10.238.1.3", "10.238.1.4", "10.238.1.5"}


def test_prometheus_scrapes_every_node_on_db_the_load_balancer_and_the_exporter_each_second():
    t = make_topology(3, lab="demo", monitoring=True)
    plan = addressing.choose(t, [])
    config = yaml.safe_load(compose.prometheus_config(t, plan))
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"node", "haproxy", "mysqld"}
    assert jobs["node"]["honor_labels"] is True
    assert jobs["node"]["static_configs"] == [
        {"targets": [f"{plan.node(t, n, 'db')}:8080"], "labels": {"node": n}} for n in ("a1", "a2", "b1")
    ]
    assert jobs["haproxy"]["static_configs"] == [{"targets": ["lb:18080"]}]
    assert jobs["mysqld"]["static_configs"] == [{"targets": ["10.238.1.5:9104"]}]


def test_haproxy_serves_its_prometheus_exporter_on_the_management_port():
    cfg = compose.haproxy_config(make_topology(3, lab="demo"))
    mgmt = cfg.split("frontend mgmt", 1)[1].split("\nbackend", 1)[0]
    assert "http-request use-service prometheus-exporter if { path /metrics }" in mgmt


def test_halab_render_with_monitoring_prints_both_services(capsys, monkeypatch):
    monkeypatch.setattr(addressing, "used_subnets", lambda: [])  # no Docker asked
    assert main(["render", "--nodes", "1", "--name", "demo", "--monitoring", "--prom-port", "19191"]) == 0
    p = yaml.safe_load(capsys.readouterr().out)
    assert {"prom", "dbexporter"} <= set(p["services"])
    assert p["services"]["prom"]["ports"] == ["127.0.0.1:19191:9090"]


# ---------------------------------------------------------------------- ZooKeeper member (mntr)

MNTR = (
    "zk_version\t3.9.3-xyz, built on 2024-10-17 23:16 UTC\n"
    "zk_server_state\tfollower\n"
    "zk_avg_latency\t0.4321\n"
    "zk_max_latency\t17\n"
    "zk_min_latency\t0\n"
    "zk_outstanding_requests\t2\n"
    "zk_num_alive_connections\t4\n"
    "zk_znode_count\t38\n"
)


def test_mntr_gives_its_numeric_figures_and_nothing_for_a_member_not_serving():
    figures = zkserver.parse_mntr(MNTR)
    assert figures["zk_avg_latency"] == 0.4321 and figures["zk_outstanding_requests"] == 2
    assert "zk_version" not in figures and "zk_server_state" not in figures
    assert set(zkserver.MNTR_GAUGES) <= set(figures)
    assert zkserver.parse_mntr("This ZooKeeper instance is not currently serving requests\n") == {}
    assert zkserver.parse_mntr("") == {}


def test_monitor_asks_the_member_for_mntr_and_gives_up_quickly_on_a_silent_one():
    async def scenario() -> tuple[list[bytes], dict[str, float], dict[str, float]]:
        asked: list[bytes] = []

        async def member(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            asked.append(await reader.read(4))
            writer.write(MNTR.encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(member, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            answered = await zkserver.monitor(port=port)
        closed = await zkserver.monitor(port=port)  # nothing listens any more
        return asked, answered, closed

    asked, answered, closed = asyncio.run(scenario())
    assert asked == [b"mntr"] and answered["zk_znode_count"] == 38 and closed == {}


def test_the_node_shows_its_members_figures_in_metrics_and_none_it_does_not_have():
    from lab.server.config import from_env
    from lab.server.node import Node

    loop = asyncio.new_event_loop()
    node = Node(from_env({"HALAB_NODE_NAME": "a1"}), loop)
    try:
        assert "cattle_zookeeper_member_" not in node.metrics_text()  # not asked yet, or not serving
        node.zk_figures = zkserver.parse_mntr(MNTR)
        lines = node.metrics_text().splitlines()
    finally:
        node.engine.close()
        loop.close()
    assert 'cattle_zookeeper_member_outstanding_requests{node="a1"} 2' in lines
    assert 'cattle_zookeeper_member_avg_latency{node="a1"} 0.4321' in lines
    assert 'cattle_zookeeper_member_max_latency{node="a1"} 17' in lines
    assert 'cattle_zookeeper_member_num_alive_connections{node="a1"} 4' in lines
    assert 'cattle_zookeeper_member_znode_count{node="a1"} 38' in lines
    assert "# TYPE cattle_zookeeper_member_avg_latency gauge" in lines


def test_a_scenario_file_may_ask_for_a_monitored_lab(tmp_path):
    from lab.chaos import scenario

    text = "name: t\ntopology:\n  nodes: 3\n  monitoring: true\nfaults:\n  - {at: 2s, kind: kill, target: follower}\n"
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert scenario.load(path).topology.build("x").monitoring is True
    path.write_text(text.replace("monitoring: true", "monitoring: maybe"))
    with pytest.raises(BadInput, match=r"x\.yaml: topology\.monitoring must be true or false, got 'maybe'"):
        scenario.load(path)
