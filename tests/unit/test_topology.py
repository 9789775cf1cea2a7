import json

import pytest

from lab.cluster.state import topology_from_dict, topology_to_dict
from lab.cluster.topology import EXTERNAL_DB, majority, make_topology, parse_layout, parse_server_env, tolerance
from lab.core.errors import BadInput


@pytest.mark.parametrize("n,maj,tol", [(1, 1, 0), (3, 2, 1), (5, 3, 2), (4, 3, 1), (2, 2, 0)])
def test_quorum_arithmetic(n, maj, tol):
    assert majority(n) == maj and tolerance(n) == tol


@pytest.mark.parametrize("n,layout", [(1, {"dc-a": 1}), (3, {"dc-a": 2, "dc-b": 1}), (5, {"dc-a": 3, "dc-b": 2})])
def test_default_layouts(n, layout):
    t = make_topology(n)
    assert {dc: len(t.nodes_in(dc)) for dc in t.datacenters} == layout
    assert [x.zk_id for x in t.nodes] == list(range(1, n + 1))
    assert len(set(t.node_names)) == n


@pytest.mark.parametrize("bad", [0, 2, 4, 6, -1, "three", "3.0", None, True])
def test_bad_sizes_are_one_line_errors(bad):
    with pytest.raises(BadInput) as e:
        make_topology(bad)
    msg = str(e.value)
    assert msg.startswith("--nodes:") and "\n" not in msg


@pytest.mark.parametrize("even", [2, 4, 6])
def test_even_sizes_explain_why(even):
    with pytest.raises(BadInput, match="adds no fault tolerance"):
        make_topology(even)


def test_string_sizes_are_accepted():
    assert make_topology("5").size == 5


@pytest.mark.parametrize(
    "layout,match",
    [
        ("dc-a:2,dc-b:2", "places 4 nodes"),
        ("dc-a:3,dc-a:0", "at least one"),
        ("dc-a:1,dc-a:2", "named twice"),
        ("dc-a=3", "DATACENTER:COUNT"),
        ("DC-A:3", "DATACENTER:COUNT"),
    ],
)
def test_bad_layouts(layout, match):
    with pytest.raises(BadInput, match=match):
        make_topology(3, layout=layout)


def test_database_in_unknown_datacenter():
    with pytest.raises(BadInput, match=r"--db-dc: .*dc-z"):
        make_topology(3, db_dc="dc-z")


def test_custom_layout_and_external_db():
    t = make_topology(5, layout="dc-a:1,dc-b:2,dc-c:2", db_dc=EXTERNAL_DB)
    assert t.node_names == ("a1", "b1", "b2", "c1", "c2")
    assert t.db_dc == "external"
    assert parse_layout("x:1") == (("x", 1),)


def test_zookeeper_members_share_one_name_each():
    t = make_topology(3)
    _a1, _a2, b1 = t.nodes
    assert t.zk_servers() == "1=a1.interdc,2=a2.interdc,3=b1.interdc"
    assert t.zk_connect(b1) == "127.0.0.1:2181,a1.interdc:2181,a2.interdc:2181"
    assert make_topology(1).zk_servers() == ""


def test_sizing_defaults_follow_the_guide():
    t3, t5 = make_topology(3), make_topology(5)
    assert t3.sizing.pool_size is None and t3.sizing.guide_pool == 50  # the profile's pool; MySQL by the guide
    assert t3.db_max_connections >= 150 and t5.db_max_connections >= 250
    assert t3.node_mem_limit_mib > t3.sizing.modelled_heap_mib


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"lab": "Bad Name"}, "--name"),
    ],
)
def test_bad_lab_name(kw, match):
    with pytest.raises(BadInput, match=match):
        make_topology(3, **kw)


def test_server_env_is_kept_in_order_as_pairs():
    t = make_topology(1, server_env={"HALAB_PROCESS_DELAY_MS": "100", "CATTLE_SOMETHING": "a=b c"})
    assert t.server_env == (("HALAB_PROCESS_DELAY_MS", "100"), ("CATTLE_SOMETHING", "a=b c"))
    assert make_topology(1).server_env == ()
    assert parse_server_env(["HALAB_LOCK_TIMEOUT=5", "HALAB_REQUEST_HEAP=", "CATTLE_X=a=b"]) == (
        ("HALAB_LOCK_TIMEOUT", "5"),
        ("HALAB_REQUEST_HEAP", ""),
        ("CATTLE_X", "a=b"),
    )


def test_server_env_survives_the_state_file():
    t = make_topology(3, lab="demo", server_env=[("HALAB_PROCESS_DELAY_MS", "100")])
    assert topology_from_dict(json.loads(json.dumps(topology_to_dict(t)))) == t


@pytest.mark.parametrize(
    "env,match",
    [
        ({"PATH": "/bin"}, r"'PATH' is not a server setting: names are CATTLE_\* or HALAB_\*"),
        ({"halab_process_delay_ms": "1"}, "is not a server setting"),
        ({"HALAB_": "1"}, "is not a server setting"),
        ({"HALAB_X-Y": "1"}, "is not a server setting"),
        (
            {"CATTLE_JAVA_OPTS": "-Xmx2g"},
            "CATTLE_JAVA_OPTS is set by the lab from --java-opts; use --java-opts instead",
        ),
        ({"CATTLE_DB_CATTLE_MAXTOTAL": "9"}, "from --pool-size; use --pool-size instead"),
        ({"HALAB_ZK_SERVERS": ""}, "from --nodes and --layout"),
        ({"CATTLE_DB_CATTLE_MYSQL_HOST": "elsewhere"}, "from the lab's database service; it cannot be overridden"),
        ({"CATTLE_DB_CATTLE_PASSWORD": "x"}, "secret file"),
        ({"HALAB_API_PORT": "9000"}, "routes to port 8080"),
        ({"HALAB_PROCESS_DELAY_MS": 100}, "the value must be a string"),
        ({"HALAB_PROCESS_DELAY_MS": "1\n2"}, "control characters"),
        ([("HALAB_LOCK_TIMEOUT", "1"), ("HALAB_LOCK_TIMEOUT", "2")], "HALAB_LOCK_TIMEOUT is given twice"),
        ([("HALAB_LOCK_TIMEOUT",)], "is not a .KEY, VALUE. pair"),
        ("HALAB_LOCK_TIMEOUT=1", "give KEY=VALUE pairs"),
    ],
)
def test_bad_server_env_is_one_line_naming_the_option(env, match):
    with pytest.raises(BadInput, match=match) as e:
        make_topology(1, server_env=env)
    assert str(e.value).startswith("--server-env: ") and "\n" not in str(e.value)


def test_server_env_items_must_be_key_value():
    with pytest.raises(BadInput, match=r"--server-env: 'HALAB_LOCK_TIMEOUT' is not KEY=VALUE"):
        parse_server_env(["HALAB_LOCK_TIMEOUT"])
