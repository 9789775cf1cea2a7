"""Issue 15's groundwork, without Docker: the database spec, Galera's quorum arithmetic and the
lab's outcome with ZooKeeper's, the compose rendering, the bootstrap choice and the clustercheck."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from lab.agent import clustercheck
from lab.chaos import galera as quorum
from lab.chaos.claims import cases as claim_cases
from lab.chaos.claims import expect
from lab.chaos.claims import load as load_claims
from lab.cluster import addressing, compose, galera, grastate, images, state
from lab.cluster.database import GALERA, Database, make_database, spread
from lab.cluster.grastate import GraState, choose_bootstrap, parse_grastate, recovered_position
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.faults import groups, make_spec, validate

TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x", "galera": "halab/galera:x"}
THREE = (("dc-a", 2), ("dc-b", 1))
FIVE = (("dc-a", 3), ("dc-b", 2))


def galera_db(*layout: str, arbitrator: str | None = None) -> Database:
    """Any member count, for the arithmetic (the boundary allows 3 and 5 only)."""
    return Database(GALERA, len(layout), tuple(layout), arbitrator)


# ------------------------------------------------------------------------------------ the spec


def test_without_db_the_lab_has_its_single_database():
    t = make_topology(3)
    assert t.db == Database() and not t.db.galera and t.db.member_names == ()
    assert make_topology(3, db="single").db == Database()


@pytest.mark.parametrize(
    "members,nodes,expected",
    [
        (3, THREE, ("dc-a", "dc-a", "dc-b")),
        (5, FIVE, ("dc-a", "dc-a", "dc-a", "dc-b", "dc-b")),
        (3, FIVE, ("dc-a", "dc-a", "dc-b")),
        (5, THREE, ("dc-a", "dc-a", "dc-a", "dc-b", "dc-b")),
        (3, (("dc-a", 1), ("dc-b", 2), ("dc-c", 2)), ("dc-a", "dc-b", "dc-c")),
        (3, (("dc-a", 1),), ("dc-a", "dc-a", "dc-a")),
    ],
)
def test_members_are_spread_like_the_nodes(members, nodes, expected):
    assert spread(members, nodes) == expected
    assert make_database(f"galera:{members}", None, None, nodes).layout == expected


def test_layout_and_arbitrator_are_taken_as_given():
    db = make_topology(3, db="galera:3", db_layout="dc-b,dc-b,dc-a", db_arbitrator="dc-c").db
    assert db.layout == ("dc-b", "dc-b", "dc-a") and db.arbitrator == "dc-c"
    assert db.member_names == ("db1", "db2", "db3")
    assert db.placement() == (("db1", "dc-b"), ("db2", "dc-b"), ("db3", "dc-a"), ("garbd", "dc-c"))
    assert db.describe() == "galera:3 (db1 in dc-b, db2 in dc-b, db3 in dc-a; garbd in dc-c)"


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"db": "galera:4"}, "--db: 'galera:4' is not single, galera:3 or galera:5 (Galera needs an odd"),
        ({"db": "galera:1"}, "--db: 'galera:1' is not single"),
        ({"db": "galera"}, "--db: 'galera' is not single"),
        ({"db": "mysql"}, "--db: 'mysql' is not single, galera:3 or galera:5"),
        ({"db": "galera:3", "db_layout": "dc-a,dc-b"}, "--db-layout: dc-a,dc-b places 2 member(s), but --db galera:3"),
        ({"db": "galera:3", "db_layout": "dc-a,dc-b,dc-q"}, "--db-layout: 'dc-q' is not a datacenter of this lab"),
        ({"db_layout": "dc-a,dc-a,dc-b"}, "--db-layout: goes with --db galera:3 or galera:5"),
        ({"db_arbitrator": "dc-c"}, "--db-arbitrator: goes with --db galera:3"),
        ({"db": "galera:3", "db_arbitrator": "DC C"}, "--db-arbitrator: 'DC C' is not a site"),
        ({"db": "galera:3", "db_image": "mysql:8.0"}, "HALAB_DB_IMAGE: 'mysql:8.0' replaces the single database"),
    ],
)
def test_bad_database_input_names_the_option_and_what_is_allowed(kw, needle):
    with pytest.raises(BadInput) as e:
        make_topology(3, **kw)
    assert needle in str(e.value)


def test_the_cli_rejects_a_bad_db_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "lab.cli", "render", "--nodes", "3", "--db", "galera:4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--db: 'galera:4'" in proc.stderr and "Traceback" not in proc.stderr


def test_the_database_is_persisted_and_old_state_files_load_as_single():
    t = make_topology(5, lab="g", db="galera:5", db_arbitrator="dc-c")
    d = json.loads(json.dumps(state.topology_to_dict(t)))
    assert state.topology_from_dict(d) == t
    del d["db"]  # a state file written before issue 15
    assert state.topology_from_dict(d).db == Database()


# ------------------------------------------------------------------------- quorum arithmetic


def test_three_members_two_one_split_keeps_the_two():
    db = galera_db("dc-a", "dc-a", "dc-b")
    assert quorum.primary_after(db, [["dc-a"], ["dc-b"]]) == {"db1", "db2"}
    assert quorum.primary_after(db, crashed=["db3"]) == {"db1", "db2"}
    assert quorum.primary_after(db, crashed=["db1", "db2"]) is None  # 1 of 3


def test_a_clean_stop_leaves_the_weight_count_but_a_crash_does_not():
    db = galera_db("dc-a", "dc-a", "dc-b")
    # Two members shut down cleanly announce it: the third is the whole primary component.
    assert quorum.primary_after(db, stopped=["db1", "db2"]) == {"db3"}
    assert quorum.primary_after(db, crashed=["db1"], stopped=["db2"]) is None  # 1 of the 2 left
    db5 = galera_db("dc-a", "dc-a", "dc-a", "dc-b", "dc-b")
    assert quorum.primary_after(db5, crashed=["db1", "db2"]) == {"db3", "db4", "db5"}
    assert quorum.primary_after(db5, crashed=["db1", "db2", "db3"]) is None
    assert quorum.primary_after(db5, stopped=["db1", "db2", "db3"]) == {"db4", "db5"}


def test_two_plus_one_with_garbd_the_arbitrator_makes_four_votes_and_a_tie():
    db = galera_db("dc-a", "dc-a", "dc-b", arbitrator="dc-c")
    assert quorum.weights(db) == {"db1": 1, "db2": 1, "db3": 1, "garbd": 1}
    assert quorum.primary_after(db, [["dc-a", "dc-c"], ["dc-b"]]) == {"db1", "db2", "garbd"}
    assert quorum.primary_after(db, [["dc-a"], ["dc-b", "dc-c"]]) is None  # 2 | 2
    assert quorum.primary_after(db, [["dc-a"], ["dc-b"]]) is None  # 2 | 1 | 1: 2 is not more than 4 / 2
    # garbd crashed first: still 4 votes in the last primary component, 2 | 1 keeps nothing.
    assert quorum.primary_after(db, [["dc-a"], ["dc-b"]], crashed=["garbd"]) is None
    assert quorum.primary_after(db, crashed=["db1"]) == {"db2", "db3", "garbd"}
    assert quorum.primary_after(db, crashed=["db1", "db2"]) is None  # 2 of 4: garbd buys no second failure


def test_four_members_split_two_two_needs_the_arbitrator():
    plain = galera_db("dc-a", "dc-a", "dc-b", "dc-b")
    assert quorum.primary_after(plain, [["dc-a"], ["dc-b"]]) is None
    with_garbd = galera_db("dc-a", "dc-a", "dc-b", "dc-b", arbitrator="dc-c")
    assert quorum.primary_after(with_garbd, [["dc-a", "dc-c"], ["dc-b"]]) == {"db1", "db2", "garbd"}
    assert quorum.primary_after(with_garbd, [["dc-a"], ["dc-b", "dc-c"]]) == {"db3", "db4", "garbd"}
    assert quorum.primary_after(with_garbd, [["dc-a"], ["dc-b"]]) is None  # garbd's site cut from both
    assert quorum.primary_after(with_garbd, crashed=["db1", "db3"]) == {"db2", "db4", "garbd"}  # 3 of 5
    assert quorum.primary_after(plain, crashed=["db1", "db3"]) is None  # 2 of 4


def test_five_members_three_two_and_weights_in_general():
    db = galera_db("dc-a", "dc-a", "dc-a", "dc-b", "dc-b")
    assert quorum.primary_after(db, [["dc-b"], ["dc-a"]]) == {"db1", "db2", "db3"}
    assert quorum.primary_after(db, [["dc-a"], ["dc-b"]], crashed=["db1"]) is None  # 2 | 2 of 5
    # pc.weight: a heavier member decides a tie (weights are per voter).
    assert quorum.primary({"x": 2, "y": 1, "z": 1}, [{"x"}, {"y", "z"}]) is None
    assert quorum.primary({"x": 3, "y": 1, "z": 1}, [{"y", "z"}, {"x"}]) == {"x"}


# -------------------------------------------------------------- with ZooKeeper and placement


def lab(db="galera:3", **kw):
    return make_topology(3, lab="g", db=db, **kw)


def test_split_with_zookeeper_and_galera_on_the_same_side_survives():
    o = quorum.split_outcome(lab(), [["dc-a"], ["dc-b"]])
    assert (o.outcome, o.zk_side, o.galera_side) == ("survives", 0, 0)


def test_split_with_zookeeper_and_galera_on_different_sides_is_an_outage():
    o = quorum.split_outcome(lab(db_layout="dc-a,dc-b,dc-b", db_dc="dc-b"), [["dc-a"], ["dc-b"]])
    assert (o.outcome, o.zk_side, o.galera_side) == ("outage", 0, 1)
    assert "different sides" in o.why


def test_the_arbitrator_decides_where_galera_keeps_its_primary():
    four = replace(lab(), db=galera_db("dc-a", "dc-a", "dc-b", "dc-b", arbitrator="dc-c"))
    assert quorum.split_outcome(four, [["dc-a", "dc-c"], ["dc-b"]]).outcome == "survives"
    other = quorum.split_outcome(four, [["dc-a"], ["dc-b", "dc-c"]])
    assert (other.outcome, other.zk_side, other.galera_side) == ("outage", 0, 1)
    alone = quorum.split_outcome(four, [["dc-a"], ["dc-b"]])  # dc-c, named by no side, is a side of its own
    assert alone.outcome == "outage" and alone.galera_side is None and "no primary" in alone.why


def test_the_front_and_the_load_balancer_must_be_on_the_surviving_side():
    front_cut = quorum.split_outcome(lab(db_dc="dc-b"), [["dc-a"], ["dc-b"]])
    assert front_cut.outcome == "outage" and "database front (in dc-b)" in front_cut.why
    assert quorum.split_outcome(lab(db_dc="external"), [["dc-a"], ["dc-b"]]).outcome == "survives"
    lb_cut = quorum.split_outcome(lab(lb_dc="dc-b"), [["dc-a"], ["dc-b"]])
    assert lb_cut.outcome == "outage" and "load balancer (in dc-b)" in lb_cut.why


def test_no_zookeeper_majority_is_an_outage_whatever_galera_does():
    t = make_topology(3, lab="g", layout="dc-a:1,dc-b:1,dc-c:1", db="galera:3")
    o = quorum.split_outcome(t, [["dc-a"], ["dc-b"]])  # dc-c a side of its own: 1 | 1 | 1
    assert o.outcome == "outage" and o.zk_side is None


# ------------------------------------------------------------------------------- rendering


def rendered(t):
    plan = addressing.choose(t, [])
    return plan, yaml.safe_load(compose.dump(compose.render(t, TAGS, plan)))


def test_galera_members_front_and_arbitrator_with_fixed_addresses():
    t = make_topology(3, lab="g", db="galera:3", db_arbitrator="dc-c")
    plan, p = rendered(t)
    s = p["services"]
    assert set(s) == {"dbfront", "db1", "db2", "db3", "garbd", "lb", "a1", "a2", "b1"}
    # The nodes keep their `db`: the front answers at the single database's address.
    assert s["dbfront"]["networks"] == {"db": {"ipv4_address": plan.db()}}
    assert s["a1"]["extra_hosts"][-1] == f"db:{plan.db()}"
    assert s["a1"]["depends_on"] == {"dbfront": {"condition": "service_started"}}
    assert s["dbfront"]["image"] == TAGS["lb"] and s["db1"]["image"] == TAGS["galera"]
    for name, dc in (("db1", "dc-a"), ("db2", "dc-a"), ("db3", "dc-b")):
        nets = s[name]["networks"]
        assert set(nets) == {dc, "db"}
        assert nets["db"]["ipv4_address"] == s[name]["environment"]["HALAB_GALERA_ADDRESS"]
        assert s[name]["labels"]["halab.dc"] == dc
    peers = s["db1"]["environment"]["HALAB_GALERA_PEERS"]
    assert peers == "gcomm://" + ",".join(s[m]["networks"]["db"]["ipv4_address"] for m in ("db1", "db2", "db3"))
    # the lab orders their start: a dependency would make compose recreate a member started alone
    assert not any("depends_on" in s[x] for x in ("dbfront", "db1", "db2", "db3", "garbd"))
    assert s["garbd"]["networks"] == {"db": {"ipv4_address": plan.arbitrator("db")}}  # a third site
    assert s["garbd"]["command"][-4:] == ["--group", "halab-g", "--name", "garbd"]
    assert set(p["volumes"]) == {"db1data", "db2data", "db3data"}
    addresses = [ip for svc in s.values() for net in svc["networks"].values() for ip in [net.get("ipv4_address")] if ip]
    assert len(addresses) == len(set(addresses))


def test_an_arbitrator_in_a_datacenter_joins_its_network():
    _, p = rendered(make_topology(5, lab="g", db="galera:5", db_arbitrator="dc-b"))
    assert set(p["services"]["garbd"]["networks"]) == {"dc-b", "db"}
    assert [p["services"][f"db{i}"]["labels"]["halab.dc"] for i in range(1, 6)] == ["dc-a"] * 3 + ["dc-b"] * 2


def test_the_front_sends_writes_to_one_member_and_checks_the_clustercheck():
    t = make_topology(3, lab="g", db="galera:3")
    plan = addressing.choose(t, [])
    cfg = galera.front_config(t, plan)
    servers = [line.split() for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert [s[1] for s in servers] == ["db1", "db2", "db3"]
    assert [s[-1] == "backup" for s in servers] == [False, True, True]
    assert all(s[3:6] == ["check", "port", "9200"] for s in servers)
    assert "mode tcp" in cfg and "http-check expect status 200" in cfg and "on-marked-down shutdown-sessions" in cfg


def test_materialize_writes_the_front_and_the_bootstrap_choice(tmp_path):
    t = make_topology(3, lab="g", db="galera:3")
    plan = addressing.choose(t, [])
    state.materialize(t, tmp_path, TAGS, plan)
    assert (tmp_path / galera.FRONT_CFG).read_text() == galera.front_config(t, plan)
    assert (tmp_path / galera.BOOTSTRAP_FILE).read_text() == "db1\n"
    (tmp_path / galera.BOOTSTRAP_FILE).write_text("db3\n")  # the lab's choice after a full stop stays
    state.materialize(t, tmp_path, TAGS, plan)
    assert (tmp_path / galera.BOOTSTRAP_FILE).read_text() == "db3\n"


def test_a_single_database_lab_renders_and_builds_as_before(tmp_path):
    t = make_topology(3, lab="g")
    _, p = rendered(t)
    assert "db" in p["services"] and not {"dbfront", "db1", "garbd"} & set(p["services"])
    state.materialize(t, tmp_path, TAGS, addressing.choose(t, []))
    assert not (tmp_path / galera.FRONT_CFG).exists() and not (tmp_path / galera.BOOTSTRAP_FILE).exists()
    assert "galera" not in {spec.name for spec in images.IMAGES}  # `halab build` alone skips it
    assert images.image_tags()["galera"].startswith("halab/galera:")


def test_the_galera_image_context_holds_its_entrypoint_and_the_clustercheck():
    spec = next(s for s in images.OPTIONAL_IMAGES if s.name == "galera")
    with images.build_context(spec) as (dockerfile, context):
        assert (context / "compose/images/galera/entrypoint.sh").is_file()
        assert (context / "lab/agent/clustercheck.py").is_file()
        text = dockerfile.read_text()
    assert text.startswith("# ") and "FROM debian:bookworm-slim" in text
    for package in ("mariadb-server=", "mariadb-backup=", "galera-4=", "galera-arbitrator-4="):
        assert package in text


# ------------------------------------------------------------------------ bootstrap choice


def gs(seqno, safe=False, uuid="8b6b2e92-320c-11e7-9498-53f394e3a32a"):
    return GraState(uuid, seqno, safe)


def test_grastate_is_parsed():
    text = (
        "# GALERA saved state\nversion: 2.1\nuuid: 8b6b2e92-320c-11e7-9498-53f394e3a32a\n"
        "seqno: 17\nsafe_to_bootstrap: 1\n"
    )
    assert parse_grastate(text) == gs(17, True)
    assert parse_grastate(text.replace("safe_to_bootstrap: 1\n", "")) == gs(17, False)
    with pytest.raises(BadInput, match=r"db2 grastate\.dat: not a Galera saved state"):
        parse_grastate("version: 2.1\n", "db2 grastate.dat")


def test_the_member_marked_safe_is_bootstrapped():
    assert choose_bootstrap({"db1": gs(10), "db2": gs(12), "db3": gs(11, safe=True)}) == "db3"


def test_else_the_highest_seqno_and_ties_go_to_the_first_member():
    assert choose_bootstrap({"db1": gs(10), "db2": gs(12), "db3": gs(11)}) == "db2"
    assert choose_bootstrap({"db1": gs(12), "db2": gs(10), "db3": gs(12)}) == "db1"


def test_after_a_crash_the_recovered_position_decides():
    states = {"db1": gs(-1), "db2": gs(-1), "db3": gs(-1)}
    assert choose_bootstrap(states, {"db1": 40, "db2": 42, "db3": 41}) == "db2"
    assert choose_bootstrap({"db1": gs(41), "db2": gs(-1)}, {"db2": 42}) == "db2"


def test_the_choice_is_never_a_guess():
    with pytest.raises(RuntimeFailure, match="db2: seqno unknown"):
        choose_bootstrap({"db1": gs(5), "db2": gs(-1)})
    with pytest.raises(RuntimeFailure, match="different clusters"):
        choose_bootstrap({"db1": gs(5), "db2": gs(6, uuid="00000000-0000-0000-0000-000000000000")})
    with pytest.raises(RuntimeFailure, match="no Galera member"):
        choose_bootstrap({})


def test_the_recovered_position_is_read_from_mariadbd_output():
    log = (
        "2026-12-01  6:40:00 0 [Note] WSREP: Recovered position: 00000000-0000-0000-0000-000000000000:-1\n"
        "2026-12-01  6:40:01 0 [Note] WSREP: Recovered position: 8b6b2e92-320c-11e7-9498-53f394e3a32a:1234\n"
    )
    assert recovered_position(log) == ("8b6b2e92-320c-11e7-9498-53f394e3a32a", 1234)
    assert recovered_position("nothing here") is None
    assert grastate.UNKNOWN_SEQNO == -1


# ---------------------------------------------------------------------------- clustercheck


@pytest.mark.parametrize(
    "state_,cluster,code",
    [
        ("4", "Primary", 200),
        ("2", "Primary", 503),  # donor (a state transfer holds it)
        ("1", "Primary", 503),  # joining
        ("4", "non-Primary", 503),
        ("0", "Disconnected", 503),
    ],
)
def test_clustercheck_answers_200_only_when_synced_and_primary(state_, cluster, code):
    status = clustercheck.parse_status(f"wsrep_local_state\t{state_}\nwsrep_cluster_status\t{cluster}\n")
    assert clustercheck.verdict(status)[0] == code


def test_clustercheck_refuses_a_server_that_does_not_answer():
    code, text = clustercheck.verdict({})
    assert code == 503 and "wsrep_local_state=None" in text


# ------------------------------------------------ the same arithmetic through the fault model


def split(*sides):
    return make_spec("split", sides=[list(s) for s in sides])


def test_a_split_cuts_members_and_the_arbitrator_with_their_site():
    t = make_topology(3, lab="g", db="galera:3", db_arbitrator="dc-c")
    assert t.sites == ("dc-a", "dc-b", "dc-c")
    a, b, c = groups(split(["dc-a"], ["dc-b"]), t)
    assert a == {"a1", "a2", "db", "db1", "db2"} and b == {"b1", "db3"} and c == {"garbd"}
    validate(split(["dc-a", "dc-c"], ["dc-b"]), t)  # the third site can be named
    assert make_topology(3).sites == ("dc-a", "dc-b")


def test_expect_needs_the_front_to_reach_galera_s_primary():
    t = make_topology(3, lab="g", db="galera:3", db_layout="dc-a,dc-b,dc-b")
    e = expect(t, [split(["dc-a"], ["dc-b"])])
    assert e.outcome == "outage" and e.fenced == {"a1", "a2", "b1"}  # ZooKeeper in dc-a, primary in dc-b
    # A front every site reaches bridges them: dc-a's nodes write to dc-b's primary through it.
    bridged = replace(t, db_dc="external")
    assert expect(bridged, [split(["dc-a"], ["dc-b"])]).active == {"a1", "a2"}
    assert quorum.split_outcome(bridged, [["dc-a"], ["dc-b"]]).outcome == "survives"
    assert expect(t, [make_spec("kill", ["db1"])]).active == {"a1", "a2", "b1"}
    assert expect(t, [make_spec("kill", ["db2", "db3"])]).outcome == "outage"  # 1 of 3
    assert expect(t, [make_spec("stop", ["db2", "db3"])]).outcome == "survives"  # they left cleanly
    assert expect(make_topology(3, lab="g"), [split(["dc-a"], ["dc-b"])]).active == {"a1", "a2"}  # single: as before


@pytest.mark.parametrize(
    "kw",
    [
        {"db": "galera:3"},
        {"db": "galera:3", "db_layout": "dc-a,dc-b,dc-b"},
        {"db": "galera:3", "db_layout": "dc-a,dc-b,dc-b", "db_dc": "dc-b"},
        {"db": "galera:3", "db_arbitrator": "dc-c"},
        {"db": "galera:3", "db_arbitrator": "dc-c", "db_dc": "external", "lb_dc": "dc-b"},
        {"db": "galera:3", "db_layout": "dc-b,dc-b,dc-c", "db_dc": "external"},
        {"db": "galera:3", "db_layout": "dc-b,dc-b,dc-c", "db_dc": "dc-c", "lb_dc": "dc-a"},
        {"db": "galera:5", "db_layout": "dc-a,dc-a,dc-b,dc-b,dc-b", "db_arbitrator": "dc-c"},
    ],
)
def test_split_outcome_agrees_with_the_fault_model_on_every_split(kw):
    t = make_topology(5, lab="g", layout="dc-a:2,dc-b:2,dc-c:1", **kw)
    for left in ([["dc-a"]], [["dc-a", "dc-b"]], [["dc-a", "dc-c"]], [["dc-a"], ["dc-b"]], [["dc-a"], ["dc-c"]]):
        assert quorum.split_outcome(t, left).outcome == expect(t, [split(*left)]).outcome, left


@pytest.mark.parametrize("db_dc", ["dc-a", "dc-b", "external"])
@pytest.mark.parametrize("layout", ["dc-a,dc-a,dc-b", "dc-a,dc-b,dc-b"])
def test_split_outcome_agrees_with_the_fault_model_with_a_third_site(db_dc, layout):
    t = make_topology(3, lab="g", db="galera:3", db_layout=layout, db_arbitrator="dc-c", db_dc=db_dc)
    for sides in ([["dc-a"]], [["dc-a"], ["dc-b"]], [["dc-a", "dc-c"]], [["dc-b", "dc-c"]], [["dc-c"]]):
        assert quorum.split_outcome(t, sides).outcome == expect(t, [split(*sides)]).outcome, sides


# ----------------------------------------------------------------------------------- claims


def test_claims_for_a_galera_lab_fail_members_instead_of_the_one_database():
    claims = load_claims()
    single = {c.id for c in claim_cases(claims, make_topology(3))}
    assert "kill-db" in single and not any("db1" in c for c in single)
    t = make_topology(3, lab="g", db="galera:3", db_arbitrator="dc-c")
    found = {c.id: c for c in claim_cases(claims, t)}
    assert "kill-db" not in found
    for mode in ("kill", "stop", "pause"):
        for m in ("db1", "db2", "db3"):
            case = found[f"{mode}-{m}"]
            assert case.claims == ("replicated-database-member-can-fail",)
            validate(case.fault, t)
            assert expect(t, [case.fault]).outcome == "survives"
    # The arbitrator's third site is split off like a datacenter, on either side.
    assert {"split-dc-a|dc-b,dc-c@leader-minority", "split-dc-a,dc-c|dc-b@leader-majority"} <= set(found)
    # 2 + 1 + garbd: garbd beside the two members keeps a primary, beside the one it ties 2 | 2.
    assert expect(t, [found["split-dc-a,dc-c|dc-b@leader-majority"].fault]).outcome == "survives"
    assert expect(t, [found["split-dc-a|dc-b,dc-c@leader-minority"].fault]).outcome == "outage"


def test_members_are_no_targets_in_a_single_database_lab():
    with pytest.raises(BadInput, match="no node 'db1'"):
        validate(make_spec("kill", ["db1"]), make_topology(3))


def test_a_claim_of_members_must_be_about_galera(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("guide: g\nclaims:\n  - {id: x, says: s, outcome: survives, sizes: [3], cases: [{members: 1}]}\n")
    with pytest.raises(BadInput, match=r"claims\[0\]\.databases: cases of Galera members need databases: \[galera\]"):
        load_claims(path)


def test_the_host_memory_check_counts_every_member():
    from lab.cluster import preflight

    def need(t):
        return int(re.search(r"(?:may use|up to) (\d+) MiB", preflight.host_memory(t).message).group(1))

    single, lb = need(make_topology(3)), preflight.LB_MEMORY_MIB
    assert need(make_topology(3, db="galera:3")) == single + 2 * 1024 + lb
    assert need(make_topology(3, db="galera:5", db_arbitrator="dc-c")) == single + 4 * 1024 + 2 * lb
