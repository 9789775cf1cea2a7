"""The claims file and the expected outcomes computed from quorum arithmetic and DB placement."""

from __future__ import annotations

import itertools

import pytest

from lab.chaos import claims
from lab.chaos.claims import OUTAGE, SURVIVES, expect
from lab.core.errors import BadInput
from lab.faults import make_spec
from lab.cluster.topology import majority, make_topology


def test_the_shipped_claims_load_and_quote_the_guide():
    c = claims.load()
    assert {x.id for x in c.claims} >= {"one-node-not-ha", "three-nodes-any-one-host", "five-nodes-any-two-hosts",
                                        "split-majority-side-survives", "database-single-point-of-failure"}
    # shared/ lies beside the work tree (and beside CI's clone)
    guide = claims.DEFAULT_CLAIMS.parent.parent.parent / "shared/seed/rancher-ha-v1.0-install-doc.md"
    if guide.exists():
        text = guide.read_text().replace("**", "")
        assert [x.id for x in c.claims if x.says not in text] == [], "every claim quotes the guide word for word"


@pytest.mark.parametrize("size,count", [(1, 3), (3, 9), (5, 19)])
def test_the_matrix_cases_per_size(size, count):
    cs = claims.cases(claims.load(), make_topology(size))
    assert len(cs) == count and len({c.id for c in cs}) == count


def test_cases_tell_leader_and_follower_apart_and_five_nodes_get_every_pair():
    ids = [c.id for c in claims.cases(claims.load(), make_topology(5))]
    assert {"kill-leader", "kill-follower", "pause-leader", "pause-follower"} <= set(ids)
    pairs = [i for i in ids if i.startswith("kill-") and i.count("+") == 1 and "leader" not in i]
    assert len(pairs) == 10
    assert "kill-leader+2-followers" in ids
    assert {"split-dc-a|dc-b", "split-dc-a>dc-b", "split-dc-b>dc-a", "kill-db"} <= set(ids)


def test_one_node_has_no_follower_and_no_split_and_shares_its_past_tolerance_case():
    cs = {c.id: c for c in claims.cases(claims.load(), make_topology(1))}
    assert set(cs) == {"kill-leader", "pause-leader", "kill-db"}
    assert cs["kill-leader"].claims == ("one-node-not-ha", "quorum-lost-past-tolerance")


@pytest.mark.parametrize("size", [1, 3, 5])
def test_any_set_of_host_failures_survives_exactly_up_to_the_tolerance(size):
    t = make_topology(size)
    for k in range(1, size + 1):
        for down in itertools.combinations(t.node_names, k):
            e = expect(t, [make_spec("kill", down)])
            assert e.outcome == (SURVIVES if size - k >= majority(size) else OUTAGE)
            assert e.failed == frozenset(down)
            assert e.active == (frozenset(t.node_names) - e.failed if e.outcome == SURVIVES else frozenset())


@pytest.mark.parametrize("size,db_dc,active", [
    (3, "dc-a", {"a1", "a2"}), (5, "dc-a", {"a1", "a2", "a3"}),
    (3, "dc-b", set()), (5, "dc-b", set()),  # the database on the minority side: nobody serves
    (3, "external", {"a1", "a2"}), (5, "external", {"a1", "a2", "a3"}),
])
def test_split_keeps_the_majority_side_only_when_it_has_the_database(size, db_dc, active):
    t = make_topology(size, db_dc=db_dc)
    for spec in (make_spec("split"), make_spec("split", sides=[["dc-b"], ["dc-a"]], one_way=True),
                 make_spec("split", sides=[["dc-a"], ["dc-b"]], one_way=True)):
        e = expect(t, [spec])
        assert e.active == frozenset(active)
        assert e.fenced == frozenset(t.node_names) - e.active and not e.failed


def test_layout_decides_which_side_is_the_majority():
    t = make_topology(5, layout="dc-a:2,dc-b:3", db_dc="dc-b")
    assert expect(t, [make_spec("split")]).active == {"b1", "b2", "b3"}


def test_isolated_node_fences_the_rest_serve():
    e = expect(make_topology(3), [make_spec("isolate", ["a1"])])
    assert (e.active, e.fenced) == ({"a2", "b1"}, {"a1"})


def test_database_outage_fences_everyone():
    for size in (1, 3, 5):
        t = make_topology(size)
        e = expect(t, [make_spec("kill", ["db"])])
        assert e.outcome == OUTAGE and e.fenced == frozenset(t.node_names)


def test_faults_held_together_combine():
    t = make_topology(5)
    e = expect(t, [make_spec("kill", ["a1"]), make_spec("isolate", ["a2"])])
    assert e.active == {"a3", "b1", "b2"} and e.failed == {"a1"} and e.fenced == {"a2"}
    e = expect(t, [make_spec("kill", ["a1"]), make_spec("split")])
    assert e.outcome == OUTAGE  # two of dc-a left: no majority of five anywhere


def test_restart_and_lb_faults_do_not_change_the_expectation():
    t = make_topology(3)
    assert expect(t, [make_spec("restart", ["a1"])]).active == frozenset(t.node_names)
    assert expect(t, [make_spec("kill", ["lb"])]).active == frozenset(t.node_names)


def test_a_flaky_link_is_not_predictable():
    t = make_topology(3)
    with pytest.raises(BadInput, match="no expected outcome"):
        expect(t, [make_spec("flaky", sides=[["a1"], ["b1"]], loss=20)])
    assert claims.expected_text(t, [make_spec("flaky", sides=[["a1"], ["b1"]], loss=20)]) == "not predictable"


def test_expected_text_hides_names_when_roles_decide_them():
    t = make_topology(3)
    assert claims.expected_text(t, [make_spec("kill", ["leader"])]) == "survives (2 of 3 nodes active)"
    assert claims.expected_text(t, [make_spec("kill", ["b1"])]) == "survives (active: a1, a2)"


# ------------------------------------------------------------------------------- file errors

def write(tmp_path, text: str):
    p = tmp_path / "claims.yaml"
    p.write_text(text)
    return p


GOOD = """guide: g.md
claims:
  - id: c
    says: "3 Nodes: Any one host can fail"
    sizes: [3]
    tolerates: 1
    cases:
      - hosts: 1
"""


def test_a_minimal_file_loads(tmp_path):
    c = claims.load(write(tmp_path, GOOD))
    assert c.claims[0].families[0].modes == ("kill",) and c.bounds == claims.Bounds()


@pytest.mark.parametrize("old,new,match", [
    ("tolerates: 1", "tolerates: 2", r"claims\[0\]\.tolerates: the claim says 3 nodes survive 2 host failure\(s\), "
                                      r"but a ZooKeeper quorum of 2 of 3 survives 1"),
    ("sizes: [3]", "sizes: [4]", r"claims\[0\]\.sizes\[0\]: 4 is not a supported cluster size"),
    ("      - hosts: 1", "      - hosts: 1\n        colour: red", r"claims\[0\]\.cases\[0\]\.colour: unknown key"),
    ("      - hosts: 1", "      - hosts: 2", r"claims\[0\]\.cases\[0\]\.pick: roles .* picks one host"),
    ("      - hosts: 1", "      - hosts: 1\n        modes: [melt]",
     r"claims\[0\]\.cases\[0\]\.modes\[0\]: 'melt' is not one of"),
    ("      - hosts: 1", "      - split: some", r"claims\[0\]\.cases\[0\]\.split: 'some' is not one of every"),
    ("      - hosts: 1", "      - hosts: 1\n        database: [kill]", r"exactly one of hosts, split, database"),
    ("guide: g.md", "guide: g.md\nbounds: {fence: fast}", r"claims.yaml: bounds\.fence must be a number"),
    ("    says:", "    sayz:", r"claims\[0\]\.sayz: unknown key"),
])
def test_file_errors_name_the_file_and_field(tmp_path, old, new, match):
    p = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(BadInput, match=match) as e:
        claims.load(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_not_yaml_names_the_line(tmp_path):
    with pytest.raises(BadInput, match=r"claims.yaml: line \d+: not valid YAML"):
        claims.load(write(tmp_path, "guide: [unclosed\n"))
