import logging
import socket

import pytest

from lab.cluster import preflight
from lab.cluster.preflight import free_port, free_ports
from lab.cluster.topology import Engine, Ports, Sizing, make_topology
from lab.core.errors import BadInput, CheckFailed


def test_busy_port_is_named_with_its_holder():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        t = make_topology(1, ports=Ports(http=busy, https=free_port(), mgmt=free_port()))
        with pytest.raises(BadInput) as e:
            preflight.enforce(t, allow_undersized=True)
    msg = str(e.value)
    assert f"127.0.0.1:{busy} is already in use by python" in msg and "--http-port" in msg


def test_a_swarm_labs_ports_busy_here_are_its_managers_and_pass():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        ports = Ports(http=busy, https=free_port(), mgmt=free_port())
        on_swarm = make_topology(1, ports=ports, engine=Engine("swarm", "swm"))
        assert preflight.ports(make_topology(1, ports=ports))[0].level == "error"
        assert [f.level for f in preflight.ports(on_swarm)] == ["ok"]


def test_free_ports_pass():
    t = make_topology(1, ports=free_ports())
    assert not [f for f in preflight.ports(t) if f.level != "ok"]


def test_on_galera_every_member_must_hold_every_connection_since_any_may_become_the_writer():
    short = preflight.connections(make_topology(3, db="galera:3", sizing=Sizing(db_max_connections=100)))
    assert short.level == "error" and short.message.startswith("each Galera member (the writer takes every connection)")
    enough = preflight.connections(make_topology(3, db="galera:3", sizing=Sizing(db_max_connections=200)))
    assert enough.level == "ok" and enough.message.startswith("200 per member >= ")


def test_undersized_max_connections_is_named_with_the_shortfall(caplog):
    t = make_topology(3, ports=free_ports(), sizing=Sizing(db_max_connections=100))
    f = preflight.connections(t)
    assert f.level == "error" and f.check == "max_connections"
    assert "60 short" in f.message and "--db-max-connections 160" in f.fix
    with pytest.raises(CheckFailed, match=r"max_connections.*--allow-undersized"):
        preflight.enforce(t, allow_undersized=False)
    with caplog.at_level(logging.INFO, logger="halab"):
        preflight.enforce(t, allow_undersized=True)  # an experiment may start it anyway
    said = [r.getMessage() for r in caplog.records if r.name == "halab.cluster.preflight"]
    assert any(m.startswith("undersized on purpose: ") and "max_connections" in m for m in said)


def test_guide_sized_lab_passes():
    for n in (1, 3, 5):
        assert preflight.errors(preflight.check(make_topology(n, ports=free_ports()))) == []


def test_small_database_memory_and_node_memory():
    t = make_topology(
        3, ports=free_ports(), sizing=Sizing(db_memory_mib=512, node_mem_limit_mib=200, java_opts="-Xmx8g")
    )
    checks = {f.check: f for f in preflight.errors(preflight.check(t))}
    assert "512 MiB below" in checks["database memory"].message
    assert "--node-memory" in checks["node memory"].fix
