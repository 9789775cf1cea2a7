"""The claims file, the cases it asks for (with leader placements), the expected outcomes computed
from quorum arithmetic and DB placement, and the model's prediction per node profile."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from lab.chaos import claims
from lab.chaos.claims import DEGRADED, OUTAGE, SURVIVES, Objective, expect, predict
from lab.chaos.placement import leader_of
from lab.cluster.topology import majority, make_topology
from lab.core.errors import BadInput
from lab.faults import make_spec
from lab.server.profiles import RANCHER_1_0, TUNED


def test_the_shipped_claims_load_and_quote_the_guide():
    c = claims.load()
    assert {x.id for x in c.claims} >= {
        "one-node-not-ha",
        "three-nodes-any-one-host",
        "five-nodes-any-two-hosts",
        "split-majority-side-survives",
        "database-single-point-of-failure",
    }
    # shared/ lies beside the work tree (and beside CI's clone)
    guide = claims.DEFAULT_CLAIMS.parent.parent.parent / "shared/seed/rancher-ha-v1.0-install-doc.md"
    if guide.exists():
        text = guide.read_text().replace("**", "")
        assert [x.id for x in c.claims if x.says not in text] == [], "every claim quotes the guide word for word"


def test_the_shipped_claims_state_the_guides_outcome_objective_and_profile_bounds():
    c = claims.load()
    outcome = {x.id: x.outcome for x in c.claims}
    assert outcome["one-node-not-ha"] == OUTAGE and outcome["three-nodes-any-one-host"] == SURVIVES
    assert outcome["quorum-lost-past-tolerance"] == OUTAGE and outcome["database-single-point-of-failure"] == OUTAGE
    assert outcome["split-majority-side-survives"] == SURVIVES
    assert c.objective == Objective() and c.objective.success == 0.99  # the file and the code's defaults agree
    assert c.bounds_for("rancher-1.0") == replace(c.bounds, settle=10, decide=50, heal=150)
    assert c.bounds_for("tuned") == c.bounds  # no profile section: the top-level bounds


@pytest.mark.parametrize("size,count", [(1, 3), (3, 12), (5, 32)])
def test_the_matrix_cases_per_size(size, count):
    cs = claims.cases(claims.load(), make_topology(size))
    assert len(cs) == count and len({c.id for c in cs}) == count


def test_cases_tell_leader_and_follower_apart_and_five_nodes_get_every_pair_with_the_leader_in_and_out():
    cs = {c.id: c for c in claims.cases(claims.load(), make_topology(5))}
    ids = set(cs)
    assert {"kill-leader", "kill-follower", "pause-leader", "pause-follower"} <= ids
    pairs = [i for i in ids if i.startswith("kill-") and i.count("+") == 1 and "leader+" not in i]
    assert len(pairs) == 20  # 10 pairs, each with the leader inside and outside
    assert {i.split("@")[0] for i in pairs} == {
        f"kill-{a}+{b}" for a, b in itertools.combinations(make_topology(5).node_names, 2)
    }
    assert all(i.endswith(("@leader-inside", "@leader-outside")) for i in pairs)
    assert "kill-leader+2-followers" in ids and cs["kill-leader+2-followers"].leader_on == frozenset()
    for split in ("split-dc-a|dc-b", "split-dc-a>dc-b", "split-dc-b>dc-a"):
        assert split not in ids  # every split places the leader
        assert {f"{split}@leader-minority", f"{split}@leader-majority"} <= ids
    assert "kill-db" in ids


def test_a_pair_places_the_leader_among_the_pair_or_among_the_rest():
    t = make_topology(5)
    cs = {c.id: c for c in claims.cases(claims.load(), t)}
    inside, outside = cs["kill-a1+b2@leader-inside"], cs["kill-a1+b2@leader-outside"]
    assert inside.fault == outside.fault == make_spec("kill", ["a1", "b2"])
    assert (inside.leader_on, inside.leader_where) == ({"a1", "b2"}, "inside")
    assert (outside.leader_on, outside.leader_where) == ({"a2", "a3", "b1"}, "outside")
    assert inside.claims == outside.claims == ("five-nodes-any-two-hosts",)


@pytest.mark.parametrize(
    "size,layout,minority,majority_side",
    [
        (3, None, {"b1"}, {"a1", "a2"}),
        (5, None, {"b1", "b2"}, {"a1", "a2", "a3"}),
        (5, "dc-a:2,dc-b:3", {"a1", "a2"}, {"b1", "b2", "b3"}),  # the first datacenter is the smaller side
    ],
)
def test_a_split_places_the_leader_on_the_smaller_or_the_larger_side(size, layout, minority, majority_side):
    t = make_topology(size, layout=layout, db_dc="dc-b" if layout else None)
    cs = {c.id: c for c in claims.cases(claims.load(), t)}
    for split in ("split-dc-a|dc-b", "split-dc-a>dc-b", "split-dc-b>dc-a"):
        lo, hi = cs[f"{split}@leader-minority"], cs[f"{split}@leader-majority"]
        assert (lo.leader_on, lo.leader_where) == (minority, "minority")
        assert (hi.leader_on, hi.leader_where) == (majority_side, "majority")
        assert lo.fault == hi.fault and lo.claims == ("split-majority-side-survives",)
    assert cs["split-dc-b>dc-a@leader-minority"].fault == make_spec("split", sides=[["dc-b"], ["dc-a"]], one_way=True)


def test_cases_that_name_the_leader_place_nothing():
    for size in (1, 3, 5):
        for c in claims.cases(claims.load(), make_topology(size)):
            assert ("@leader-" in c.id) == bool(c.leader_on) == bool(c.leader_where)
            if "leader" in c.fault.targets or c.fault.targets == ("db",):
                assert not c.leader_on


def test_one_node_has_no_follower_and_no_split_and_shares_its_past_tolerance_case():
    cs = {c.id: c for c in claims.cases(claims.load(), make_topology(1))}
    assert set(cs) == {"kill-leader", "pause-leader", "kill-db"}
    assert cs["kill-leader"].claims == ("one-node-not-ha", "quorum-lost-past-tolerance")


def test_three_nodes_cases_by_name():
    ids = {c.id for c in claims.cases(claims.load(), make_topology(3))}
    assert ids == {
        "kill-leader",
        "kill-follower",
        "pause-leader",
        "pause-follower",
        "kill-leader+follower",
        "kill-db",
        *(
            f"{s}@leader-{w}"
            for s in ("split-dc-a|dc-b", "split-dc-a>dc-b", "split-dc-b>dc-a")
            for w in ("minority", "majority")
        ),
    }


# ------------------------------------------------------------------------------- the model

SPLIT = make_spec("split")


@pytest.mark.parametrize("profile,outcome", [(RANCHER_1_0, DEGRADED), (TUNED, SURVIVES)])
def test_a_three_node_split_degrades_rancher_1_0_whose_minority_keeps_pong(profile, outcome):
    p = predict(make_topology(3), [SPLIT], profile, Objective(), leader_lost=False)
    assert p.outcome == outcome
    assert (p.expectation.active, p.expectation.fenced) == ({"a1", "a2"}, {"b1"})
    if outcome == DEGRADED:
        assert "b1" in p.why and "pong" in p.why
    else:
        assert "a1, a2 keep a quorum" in p.why


def test_a_split_that_loses_the_leader_still_survives_on_tuned_nodes():
    # tuned: syncLimit 4 x tickTime 500 ms = 2 s of blackout, well within the objective's 10 s
    assert predict(make_topology(3), [SPLIT], TUNED, Objective(), leader_lost=True).outcome == SURVIVES


@pytest.mark.parametrize(
    "profile,objective,outcome",
    [
        (RANCHER_1_0, Objective(), DEGRADED),
        (RANCHER_1_0, Objective(after=10), DEGRADED),  # syncLimit 5 x 2000 ms = 10 s: not before the objective's 10 s
        (RANCHER_1_0, Objective(after=10.5), SURVIVES),
        (TUNED, Objective(), SURVIVES),  # 4 x 500 ms = 2 s
        (TUNED, Objective(after=2), DEGRADED),
    ],
)
def test_losing_the_leader_degrades_when_followers_notice_too_late_for_the_objective(profile, objective, outcome):
    t = make_topology(3)
    p = predict(t, [make_spec("kill", ["a1"])], profile, objective, leader_lost=True)
    assert p.outcome == outcome and p.expectation.active == {"a2", "b1"}
    if outcome == DEGRADED:
        assert f"syncLimit {profile.zk_sync_limit} x tickTime {profile.zk_tick_ms} ms" in p.why
    # a follower's loss never blacks writes out
    assert predict(t, [make_spec("kill", ["a1"])], profile, objective, leader_lost=False).outcome == SURVIVES


@pytest.mark.parametrize("profile", [RANCHER_1_0, TUNED])
def test_the_database_on_the_minority_side_is_an_outage_on_every_profile(profile):
    t = make_topology(3, db_dc="dc-b")
    for leader_lost in (False, True):
        p = predict(t, [SPLIT], profile, Objective(), leader_lost)
        assert p.outcome == OUTAGE and not p.expectation.active and "writes fail everywhere" in p.why


@pytest.mark.parametrize("profile", [RANCHER_1_0, TUNED])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_killing_past_the_tolerance_is_an_outage_on_every_profile(profile, size):
    t = make_topology(size)
    down = t.node_names[: size // 2 + 1]
    p = predict(t, [make_spec("kill", down)], profile, Objective(), leader_lost=True)
    assert p.outcome == OUTAGE and p.expectation.failed == frozenset(down)
    assert predict(t, [make_spec("kill", ["db"])], profile, Objective(), leader_lost=False).outcome == OUTAGE


def test_predicted_text_puts_the_leader_where_the_case_does():
    cs3 = {c.id: c for c in claims.cases(claims.load(), make_topology(3))}
    old, tuned = make_topology(3), make_topology(3, profile="tuned")
    assert (
        claims.predicted_text(old, cs3["kill-follower"], Objective())
        == "survives (a2, b1 keep a quorum and the database)"
    )
    assert claims.predicted_text(old, cs3["kill-leader"], Objective()).startswith("degraded (the leader is lost")
    assert claims.predicted_text(tuned, cs3["kill-leader"], Objective()).startswith("survives")
    assert claims.predicted_text(old, cs3["split-dc-a|dc-b@leader-majority"], Objective()).startswith("degraded (b1 ")
    assert claims.predicted_text(tuned, cs3["split-dc-a|dc-b@leader-minority"], Objective()).startswith("survives")
    assert claims.predicted_text(tuned, cs3["kill-leader+follower"], Objective()).startswith("outage")
    assert claims.predicted_text(tuned, cs3["kill-db"], Objective()).startswith("outage")
    cs5 = {c.id: c for c in claims.cases(claims.load(), make_topology(5))}
    old5 = make_topology(5)
    # a follower pair keeps the leader among the three left; a pair with the leader loses it
    assert claims.predicted_text(old5, cs5["kill-a1+b2@leader-outside"], Objective()).startswith("survives")
    assert claims.predicted_text(old5, cs5["kill-a1+b2@leader-inside"], Objective()).startswith("degraded")


@pytest.mark.parametrize(
    "modes,leader",
    [
        ({"a1": "follower", "a2": "leader", "b1": "follower"}, "a2"),
        ({"a1": "standalone"}, "a1"),
        ({"a1": "leader", "a2": "leader", "b1": "follower"}, None),  # two leaders: not settled
        ({"a1": "follower", "a2": "follower", "b1": "looking"}, None),
        ({"a1": "follower", "a2": None, "b1": "leader"}, "b1"),
        ({}, None),
    ],
)
def test_leader_of_names_the_one_leader(modes, leader):
    assert leader_of(modes) == leader


@pytest.mark.parametrize("size", [1, 3, 5])
def test_any_set_of_host_failures_survives_exactly_up_to_the_tolerance(size):
    t = make_topology(size)
    for k in range(1, size + 1):
        for down in itertools.combinations(t.node_names, k):
            e = expect(t, [make_spec("kill", down)])
            assert e.outcome == (SURVIVES if size - k >= majority(size) else OUTAGE)
            assert e.failed == frozenset(down)
            assert e.active == (frozenset(t.node_names) - e.failed if e.outcome == SURVIVES else frozenset())


@pytest.mark.parametrize(
    "size,db_dc,active",
    [
        (3, "dc-a", {"a1", "a2"}),
        (5, "dc-a", {"a1", "a2", "a3"}),
        (3, "dc-b", set()),
        (5, "dc-b", set()),  # the database on the minority side: nobody serves
        (3, "external", {"a1", "a2"}),
        (5, "external", {"a1", "a2", "a3"}),
    ],
)
def test_split_keeps_the_majority_side_only_when_it_has_the_database(size, db_dc, active):
    t = make_topology(size, db_dc=db_dc)
    for spec in (
        make_spec("split"),
        make_spec("split", sides=[["dc-b"], ["dc-a"]], one_way=True),
        make_spec("split", sides=[["dc-a"], ["dc-b"]], one_way=True),
    ):
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
    outcome: survives
    sizes: [3]
    tolerates: 1
    cases:
      - hosts: 1
"""


def test_a_minimal_file_loads(tmp_path):
    c = claims.load(write(tmp_path, GOOD))
    assert c.claims[0].families[0].modes == ("kill",) and c.bounds == claims.Bounds()
    assert c.claims[0].outcome == SURVIVES and c.claims[0].families[0].leader == ()
    assert c.objective == Objective() and c.profile_bounds == () and c.bounds_for("rancher-1.0") == claims.Bounds()


def test_objective_leader_placements_and_profile_bounds_load(tmp_path):
    text = (
        GOOD.replace(
            "guide: g.md",
            """guide: g.md
objective: {after: 5, success: 0.95}
bounds: {settle: 3, decide: 30}
profiles:
  tuned: {bounds: {decide: 12}}
  rancher-1.0: {}""",
        )
        .replace(
            "      - hosts: 1",
            """      - hosts: 1
        pick: every
        leader: [outside]
      - split: every
        leader: minority""",
        )
        .replace("outcome: survives", "outcome: outage")
    )
    c = claims.load(write(tmp_path, text))
    assert c.objective == Objective(after=5, success=0.95, window=Objective().window)
    assert c.claims[0].outcome == OUTAGE
    assert [f.leader for f in c.claims[0].families] == [("outside",), ("minority",)]
    # a profile's bounds start from the file's own, not from the defaults
    assert c.bounds_for("tuned") == claims.Bounds(settle=3, decide=12)
    assert c.bounds_for("rancher-1.0") == c.bounds == claims.Bounds(settle=3, decide=30)
    ids = {x.id for x in claims.cases(c, make_topology(3))}
    assert ids == {
        "kill-a1@leader-outside",
        "kill-a2@leader-outside",
        "kill-b1@leader-outside",
        "split-dc-a|dc-b@leader-minority",
        "split-dc-a>dc-b@leader-minority",
        "split-dc-b>dc-a@leader-minority",
    }


def test_leader_inside_a_whole_cluster_has_no_outside(tmp_path):
    text = GOOD.replace("sizes: [3]\n    tolerates: 1", "sizes: [1]").replace(
        "      - hosts: 1", "      - hosts: 1\n        pick: every\n        leader: [inside, outside]"
    )
    cs = claims.cases(claims.load(write(tmp_path, text)), make_topology(1))
    assert [(c.id, c.leader_on) for c in cs] == [("kill-a1@leader-inside", {"a1"})]


@pytest.mark.parametrize(
    "old,new,match",
    [
        (
            "tolerates: 1",
            "tolerates: 2",
            r"claims\[0\]\.tolerates: the claim says 3 nodes survive 2 host failure\(s\), "
            r"but a ZooKeeper quorum of 2 of 3 survives 1",
        ),
        ("sizes: [3]", "sizes: [4]", r"claims\[0\]\.sizes\[0\]: 4 is not a supported cluster size"),
        ("      - hosts: 1", "      - hosts: 1\n        colour: red", r"claims\[0\]\.cases\[0\]\.colour: unknown key"),
        ("      - hosts: 1", "      - hosts: 2", r"claims\[0\]\.cases\[0\]\.pick: roles .* picks one host"),
        (
            "      - hosts: 1",
            "      - hosts: 1\n        modes: [melt]",
            r"claims\[0\]\.cases\[0\]\.modes\[0\]: 'melt' is not one of",
        ),
        ("      - hosts: 1", "      - split: some", r"claims\[0\]\.cases\[0\]\.split: 'some' is not one of every"),
        ("      - hosts: 1", "      - hosts: 1\n        database: [kill]", r"exactly one of hosts, split, database"),
        ("guide: g.md", "guide: g.md\nbounds: {fence: fast}", r"claims.yaml: bounds\.fence must be a number"),
        ("    says:", "    sayz:", r"claims\[0\]\.sayz: unknown key"),
        ("    outcome: survives\n", "", r"claims\[0\]\.outcome: missing"),
        ("outcome: survives", "outcome: degraded", r"claims\[0\]\.outcome: 'degraded' is not one of survives, outage"),
        ("outcome: survives", "outcome: [survives]", r"claims\[0\]\.outcome: \['survives'\] is not one of"),
        (
            "      - hosts: 1",
            "      - hosts: 1\n        leader: [inside]",
            r"claims\[0\]\.cases\[0\]\.leader: leader placement goes with pick: every",
        ),
        (
            "      - hosts: 1",
            "      - hosts: 2\n        pick: with-leader\n        leader: [outside]",
            r"claims\[0\]\.cases\[0\]\.leader: leader placement goes with pick: every",
        ),
        (
            "      - hosts: 1",
            "      - hosts: 1\n        pick: every\n        leader: [minority]",
            r"claims\[0\]\.cases\[0\]\.leader\[0\]: 'minority' is not one of inside, outside",
        ),
        (
            "      - hosts: 1",
            "      - split: every\n        leader: [inside]",
            r"claims\[0\]\.cases\[0\]\.leader\[0\]: 'inside' is not one of minority, majority",
        ),
        (
            "guide: g.md",
            "guide: g.md\nobjective: {success: 1}",
            r"claims.yaml: objective\.success: 1 is not a share between 0\.5 and 1",
        ),
        (
            "guide: g.md",
            "guide: g.md\nobjective: {success: 0.3}",
            r"claims.yaml: objective\.success: 0\.3 is not a share between 0\.5 and 1",
        ),
        ("guide: g.md", "guide: g.md\nobjective: {success: 99}", r"claims.yaml: objective\.success: 99 is not a share"),
        (
            "guide: g.md",
            "guide: g.md\nobjective: {after: -1}",
            r"claims.yaml: objective\.after: -1 is below the minimum",
        ),
        ("guide: g.md", "guide: g.md\nobjective: {after: soon}", r"claims.yaml: objective\.after must be a number"),
        ("guide: g.md", "guide: g.md\nobjective: {patience: 3}", r"claims.yaml: objective\.patience: unknown key"),
        (
            "guide: g.md",
            "guide: g.md\nprofiles: {rancher-2.0: {bounds: {decide: 9}}}",
            r"claims.yaml: profiles\.rancher-2\.0: unknown key \(allowed here: rancher-1\.0, tuned\)",
        ),
        (
            "guide: g.md",
            "guide: g.md\nprofiles: {tuned: {decide: 9}}",
            r"claims.yaml: profiles\.tuned\.decide: unknown key",
        ),
        (
            "guide: g.md",
            "guide: g.md\nprofiles: {tuned: {bounds: {decide: 0}}}",
            r"claims.yaml: profiles\.tuned\.bounds\.decide: 0 is below the minimum",
        ),
    ],
)
def test_file_errors_name_the_file_and_field(tmp_path, old, new, match):
    p = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(BadInput, match=match) as e:
        claims.load(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


GRAY = """gray:
  sizes: [3]
  cases:
    - id: slow
      fault: {kind: delay, sides: [[dc-a], [dc-b]], delay: 200ms, delay_jitter: 50ms}
      hold: 30s
    - id: stall
      fault: {kind: stall, target: [leader], process: zookeeper}
      hold: 20s
"""


def test_gray_cases_load_as_cases_of_no_claim(tmp_path):
    c = claims.load(write(tmp_path, GOOD + GRAY))
    cases = claims.gray_cases(c, make_topology(3))
    assert [(x.id, x.claims, x.hold, x.gray) for x in cases] == [("slow", (), 30.0, True), ("stall", (), 20.0, True)]
    assert cases[0].fault.delay == 0.2 and cases[0].fault.jitter == 0.05 and cases[1].fault.process == "zookeeper"
    assert claims.gray_cases(c, make_topology(5)) == []  # not a size of the family


@pytest.mark.parametrize(
    "old,new,match,size",
    [
        ("hold: 30s", "hold: 0s", r"gray\.cases\[0\]\.hold: '0s' must be a positive", 3),
        ("id: stall", "id: slow", r"gray\.cases\[1\]\.id: 'slow' is used twice", 3),
        ("process: zookeeper", "proces: zookeeper", r"gray\.cases\[1\]\.fault\.proces: unknown key", 3),
        (
            "sides: [[dc-a], [dc-b]]",
            "sides: [[dc-a], [dc-x]]",
            r"claims gray case slow\.sides\[1\]: no datacenter 'dc-x'",
            3,
        ),
    ],
)
def test_gray_errors_name_the_file_and_field(tmp_path, old, new, match, size):
    with pytest.raises(BadInput, match=match):
        claims.gray_cases(claims.load(write(tmp_path, GOOD + GRAY.replace(old, new))), make_topology(size))


def test_not_yaml_names_the_line(tmp_path):
    with pytest.raises(BadInput, match=r"claims.yaml: line \d+: not valid YAML"):
        claims.load(write(tmp_path, "guide: [unclosed\n"))


def test_a_load_balancer_placed_in_a_datacenter_is_cut_with_it_by_a_split():
    outside = expect(make_topology(3), [SPLIT])
    assert (outside.active, outside.unreached) == ({"a1", "a2"}, frozenset())
    # With the clients on the minority side, the majority keeps its quorum but nobody can use it.
    t = make_topology(3, lb_dc="dc-b")
    e = expect(t, [SPLIT])
    assert (e.active, e.fenced, e.unreached) == (frozenset(), {"b1"}, {"a1", "a2"})
    assert e.out == {"a1", "a2", "b1"}
    p = predict(t, [SPLIT], TUNED, Objective(), leader_lost=False)
    assert p.outcome == OUTAGE and "reach no node with a quorum" in p.why and "(in dc-b)" in p.why
    # With the clients on the majority side, the cut-off minority is simply out of reach.
    e = expect(make_topology(3, lb_dc="dc-a"), [SPLIT])
    assert (e.active, e.fenced, e.unreached) == ({"a1", "a2"}, frozenset(), {"b1"})
    # Kills do not move the load balancer's reach.
    assert expect(t, [make_spec("kill", ["a1"])]).unreached == frozenset()


def test_the_load_balancer_must_be_placed_in_one_of_the_labs_datacenters():
    with pytest.raises(BadInput, match="--lb-dc: the load balancer is placed in 'dc-z'"):
        make_topology(3, lb_dc="dc-z")
    assert make_topology(3).lb_dc == "outside" == make_topology(3, lb_dc="outside").lb_dc
