import socket

import pytest

from lab import lab
from lab.errors import BadInput
from lab.pytest_plugin import free_port
from lab.topology import Ports, make_topology


def test_busy_port_is_named_with_its_holder():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        t = make_topology(1, ports=Ports(http=busy, https=free_port(), mgmt=free_port()))
        with pytest.raises(BadInput) as e:
            lab.check_ports(t)
    msg = str(e.value)
    assert f"--http-port {busy}" in msg and "already in use by" in msg and "python" in msg


def test_free_ports_pass():
    lab.check_ports(make_topology(1, ports=Ports(http=free_port(), https=free_port(), mgmt=free_port())))
