"""The survivability matrix on real Docker, measured: the tuned profile for 1, 3 and 5 nodes (every
claim holds and the lab's model predicts every case, wherever the ZooKeeper leader is put; the
rancher-1.0 profile's 3-node matrix is in test_matrix_v1_docker.py), and a database or the clients
on the minority side (the split claim does not hold, exit 3). Each size gets one lab (unique
name, free ports).

At 5 nodes the 10 pairs of killed hosts fall into three kinds by datacenter (both in dc-a, one in
each, both in dc-b, which is all of dc-b): CI runs one pair of each kind, with the leader inside and
outside it, 6 of the 20 pair cases (the other 14 took about 270 s of CI's 45 minutes); every pair is
in `bench/bench_matrix.py --sizes 5 --profiles tuned`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import by_case

from lab.chaos import claims, matrix
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.cluster.topology import make_topology

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PAIRS = ("a1+a2", "a1+b1", "b1+b2")  # one pair of each kind at 5 nodes (dc-a:3, dc-b:2)


def ci_cases() -> list[str]:
    """Every case of 1, 3 and 5 nodes, but of the 5-node pair kills only the pairs in PAIRS."""
    ids = {c.id for size in (1, 3, 5) for c in claims.cases(claims.load(), make_topology(size, lab="ci"))}
    return sorted(i for i in ids if not (i.startswith("kill-") and "@leader-" in i) or i[5:].split("@")[0] in PAIRS)


@pytest.mark.solo
@pytest.mark.timeout(2400)
def test_tuned_nodes_hold_every_claim_for_1_3_and_5_nodes_as_the_model_predicts(request):
    # Kept under runs/ (ignored by git) so that a failure can be read afterwards.
    result = matrix.run_matrix(
        [1, 3, 5],
        profile="tuned",
        runs_root=request.config.rootpath / "runs",
        lab_prefix=unique_lab_name("mx"),
        ports=free_ports,
        only=ci_cases(),
    )
    print(matrix.table(result))
    assert result.passed, matrix.table(result)
    assert {c["verdict"] for c in result.claims} == {"holds"} and len(result.claims) == 6
    cases = by_case(result)
    outages = {k for k, c in cases.items() if c.observed == "outage"}
    assert {(1, "kill-leader"), (3, "kill-leader+follower"), (5, "kill-leader+2-followers"), (5, "kill-db")} <= outages
    # The leader is put on each side before a split, and inside or outside a pair of killed hosts.
    for where in ("minority", "majority"):
        split = cases[(5, f"split-dc-a|dc-b@leader-{where}")]
        side = {"b1", "b2"} if where == "minority" else {"a1", "a2", "a3"}
        assert split.leader.endswith(f"({where})") and split.leader.split()[0] in side
        assert split.measures is not None and split.measures.recover is not None
    inside = cases[(5, "kill-a1+b1@leader-inside")]
    assert inside.leader.split()[0] in {"a1", "b1"} and "(leader)" in inside.fault
    written = json.loads((result.run_dir / "matrix.json").read_text())
    # 33 cases (47 less 14 pairs); one the observer stalled through is run once more, and both
    # attempts are written.
    assert written["passed"] and written["profile"] == "tuned"
    assert len({(c["size"], c["case"]) for c in written["cases"]}) == 33
    assert "| claim | the guide says |" in (result.run_dir / "matrix.md").read_text()
    # Every container's log outlives its lab, for whoever explains a run afterwards.
    assert (result.run_dir / "n5" / "logs" / "b2.log").stat().st_size > 0


@pytest.mark.timeout(900)
def test_a_database_on_the_minority_side_fails_the_split_claim_with_exit_3(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "lab.cli",
        "--json",
        "matrix",
        "--nodes",
        "3",
        "--profile",
        "tuned",
        "--db-dc",
        "dc-b",
        "--prefix",
        unique_lab_name("md"),
        "--runs",
        str(tmp_path),
        "--only",
        "split-dc-a|dc-b@leader-minority",
        "--only",
        "split-dc-a|dc-b@leader-majority",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=850)
    assert done.returncode == 3, done.stderr[-2000:]
    out = json.loads(done.stdout)
    (split,) = out["claims"]
    assert split["id"] == "split-majority-side-survives" and split["verdict"] == "does not hold"
    assert {c["predicted"] for c in out["cases"]} == {"outage"} == {c["observed"] for c in out["cases"]}
    assert "do not hold" in done.stderr


@pytest.mark.timeout(600)
def test_clients_with_the_load_balancer_on_the_minority_side_lose_the_split_with_exit_3(tmp_path):
    """--lb-dc dc-b: the split cuts the load balancer (and its clients) from the majority, which keeps
    its quorum and serves nobody."""
    cmd = [sys.executable, "-m", "lab.cli", "--json", "matrix", "--nodes", "3", "--profile", "tuned"]
    cmd += ["--lb-dc", "dc-b", "--prefix", unique_lab_name("ml"), "--runs", str(tmp_path)]
    cmd += ["--only", "split-dc-a|dc-b@leader-majority"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=550)
    assert done.returncode == 3, done.stderr[-2000:]
    (case,) = json.loads(done.stdout)["cases"]
    assert case["predicted"] == case["observed"] == "outage", case
    assert case["leader"].startswith("a") and "reach no node" in case["why"]
    assert not case["surprise"] and not case["safety"], case
