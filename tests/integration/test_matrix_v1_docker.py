"""The 3-node matrix with the default node profile, rancher-1.0: one case of every claim of the
guide, the split claim with the leader on either side and one way (issue 12: CI runs the 3-node
matrix in both profiles; the tuned one, every case, is in test_matrix_docker.py). All twelve cases
take about 16 minutes, more than CI's budget leaves beside the rest (CI10: the parallel stage took
28 min with them): `bench/bench_matrix.py --sizes 3 --profiles rancher-1.0` runs them all."""

from __future__ import annotations

import pytest
from helpers import by_case

from lab.chaos import matrix
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


V1_CASES = (
    "kill-leader",
    "kill-leader+follower",
    "split-dc-a|dc-b@leader-minority",
    "split-dc-a|dc-b@leader-majority",
    "split-dc-b>dc-a@leader-majority",
    "kill-db",
)


@pytest.mark.timeout(1800)
def test_the_real_v1_node_does_not_hold_the_split_claim(request):
    result = matrix.run_matrix(
        [3],
        runs_root=request.config.rootpath / "runs",
        lab_prefix=unique_lab_name("mr"),
        ports=free_ports,
        only=V1_CASES,
    )
    print(matrix.table(result))
    assert result.profile == "rancher-1.0"
    claims = {c["id"]: c for c in result.claims}
    split = claims["split-majority-side-survives"]
    assert split["verdict"] == "does not hold" and split["observed"].get("degraded"), split
    cases = by_case(result)
    assert all(c.measures is not None for c in result.cases), matrix.table(result)
    splits = [c for (_, name), c in cases.items() if name.startswith("split-")]
    for c in splits:
        # b1, cut off, kept answering pong, so the load balancer kept sending it requests that failed
        # until its lost session made its server exit (about 45 s after the cut)...
        assert c.measures is not None and (c.measures.drain is None or c.measures.drain > 10), matrix.table(result)
    # ... and the supervisor started it again. (Not in every split: a b1 restarted shortly before a
    # split may still be inside the 50 s held when its session is lost.)
    assert any(c.measures is not None and c.measures.restarts.get("b1", 0) >= 1 for c in splits), matrix.table(result)
    # Each split that failed the guide carries its evidence: the cut node's own account, from its logs.
    for c in splits:
        if not c.holds:
            assert any(line.split()[2] == "b1:" for line in c.evidence), (c.case, c.evidence)
    # Nothing acknowledged was lost or duplicated, whatever the availability...
    checks = result.checks["n3"]
    for name in ("acknowledged_writes_present", "no_duplicated_writes"):
        assert checks[name]["status"] == "passed" and checks[name]["checked"] > 0, matrix.table(result)
    # ... but reads were checked too, and what they found is charged to the cases it fell in: the
    # cut node, still in the load balancer, answers reads from a cache no other node's change
    # events reach (stale reads; seen in most runs, not asserted, since it needs a read of a key
    # the majority changed to land on the cut node).
    assert checks["linearizable_registers"]["checked"] > 0 and checks["registers"]["reads_checked"] > 0
    assert all(s.startswith(("linearizable_registers", "session_guarantees")) for c in result.cases for s in c.safety)
