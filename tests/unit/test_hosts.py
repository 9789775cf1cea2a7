"""Host groups for swarm labs (lab/cluster/hosts.py): validation, bookkeeping, the docker commands
that make and join them; no Docker."""

import json

import pytest

from lab.cluster import hosts, stack
from lab.core.errors import BadInput


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    return tmp_path


def test_three_hosts_take_the_three_node_layout_and_the_first_manages():
    g = hosts.make_group("swm", 3)
    assert [(h.name, h.dc) for h in g.hosts] == [("swm-h1", "dc-a"), ("swm-h2", "dc-a"), ("swm-h3", "dc-b")]
    assert g.manager.name == "swm-h1" and g.made_here and g.datacenters == ("dc-a", "dc-b")
    assert g.host("swm-h2").docker == ("docker", "exec", "-i", "swm-h2", "docker")
    assert g.published == hosts.DEFAULT_PUBLISHED
    with pytest.raises(BadInput, match="no host 'swm-h9'"):
        g.host("swm-h9")


@pytest.mark.parametrize(
    ("args", "kw", "message"),
    [
        (("Swm", 3), {}, "^--name:"),
        (("swm", 0), {}, "^hosts: 0 is not a number of hosts"),
        (("swm", "ten"), {}, "^hosts:"),
        (("swm", 4), {}, "^--layout: say which datacenter"),
        (("swm", 4), {"layout": "dc-a:2,dc-b:1"}, "^--layout: .* places 3 hosts, not 4"),
        (("swm", 3), {"storage_driver": "btrfs"}, "^--storage-driver:"),
        (("swm", 3), {"published": (8080, 8080)}, "^--publish:"),
        (("swm", 3), {"published": (70000,)}, "^--publish:"),
    ],
)
def test_bad_groups_name_the_option(args, kw, message):
    with pytest.raises(BadInput, match=message):
        hosts.make_group(*args, **kw)


def test_a_group_is_kept_and_read_back(home):
    g = hosts.make_group("swm", "4", layout="dc-a:2,dc-b:2", published=(8081, 8443, 18081))
    path = hosts.save(g)
    assert path == home / "hosts" / "swm.json"
    assert hosts.load("swm") == g
    with pytest.raises(BadInput, match=r"^--hosts: no host group 'other'.*halab hosts up"):
        hosts.load("other")


def test_a_hand_written_group_of_real_machines_is_checked(home):
    (home / "hosts").mkdir()
    path = home / "hosts" / "rack.json"
    path.write_text(
        json.dumps(
            {
                "name": "rack",
                "hosts": [
                    {"name": "r1", "dc": "dc-a", "docker": ["docker", "--host", "ssh://admin@r1"]},
                    {"name": "r2", "dc": "dc-b", "docker": ["docker", "--host", "ssh://admin@r2"]},
                ],
            }
        )
    )
    g = hosts.load("rack")
    assert not g.made_here and g.manager.command("node", "ls") == ["docker", "--host", "ssh://admin@r1", "node", "ls"]
    path.write_text(json.dumps({"name": "rack", "hosts": [{"name": "r1", "dc": "dc-a", "docker": []}]}))
    with pytest.raises(BadInput, match=r"hosts\[\]\.docker"):
        hosts.load("rack")
    path.write_text(json.dumps({"name": "rack", "hosts": [{"name": "r1"}]}))
    with pytest.raises(BadInput, match="not a host group"):
        hosts.load("rack")


def test_a_lab_fits_a_group_with_its_datacenters_and_published_ports():
    g = hosts.make_group("swm", 3, published=(8081, 8443, 18081))
    hosts.check_lab_fits(g, ("dc-a", "dc-b"), {"http": 8081, "https": 8443, "mgmt": 18081})
    with pytest.raises(BadInput, match=r"^--layout: host group 'swm' has no host in dc-c"):
        hosts.check_lab_fits(g, ("dc-a", "dc-c"), {})
    with pytest.raises(BadInput, match=r"^--http-port: 80 is not published by host group 'swm'"):
        hosts.check_lab_fits(g, ("dc-a",), {"http": 80})


def test_the_manager_alone_publishes_on_loopback_and_each_host_keeps_its_docker_on_a_volume():
    g = hosts.make_group("swm", 3, published=(8081, 18081), storage_driver="vfs")
    first = hosts.run_command(g, g.hosts[0], "halab/dind:x")
    second = hosts.run_command(g, g.hosts[1], "halab/dind:x")
    assert first[:2] == ["docker", "run"] and "--privileged" not in first and "--init" in first
    assert first[first.index("--cap-drop") + 1] == "SYS_RESOURCE" and "systempaths=unconfined" in first
    assert [first[i + 1] for i, a in enumerate(first) if a == "-p"] == ["127.0.0.1:8081:8081", "127.0.0.1:18081:18081"]
    assert "-p" not in second
    assert second[second.index("-v") + 1] == "swm-h2-docker:/var/lib/docker"
    assert second[second.index("--network") + 1] == "swm-net"
    assert "halab.hosts=swm" in second and "halab.host=swm-h2" in second
    assert second[-3:] == ["halab/dind:x", "--storage-driver", "vfs"]


def test_workers_join_the_manager_by_name_and_get_their_datacenter_label():
    g = hosts.make_group("swm", 3)
    assert hosts.join_command(g, g.hosts[2], "TOKEN") == [
        *g.hosts[2].docker,
        "swarm",
        "join",
        "--token",
        "TOKEN",
        "swm-h1:2377",
    ]
    assert hosts.label_command(g, g.hosts[2]) == [
        *g.manager.docker,
        "node",
        "update",
        "--label-add",
        f"{stack.DC_LABEL}=dc-b",
        "swm-h3",
    ]


def test_up_refuses_a_group_of_real_machines(monkeypatch):
    monkeypatch.setattr(hosts.docker, "require_docker", lambda: None)
    g = hosts.HostGroup("rack", (hosts.Host("r1", "dc-a", ("docker", "--host", "ssh://r1")),))
    with pytest.raises(BadInput, match="names real machines"):
        hosts.up(g)
