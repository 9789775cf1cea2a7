"""The survivability matrix for 1, 3 and 5 nodes on real Docker: every claim of the install guide
confirmed, the expected outages included. Each size gets one lab (unique name, free ports)."""

from __future__ import annotations

import json

import pytest

from lab.chaos import matrix
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.timeout(1800)
def test_the_matrix_confirms_every_claim_for_1_3_and_5_nodes(request):
    # Kept under runs/ (ignored by git) so that a failure can be read afterwards.
    result = matrix.run_matrix([1, 3, 5], runs_root=request.config.rootpath / "runs",
                               lab_prefix=unique_lab_name("mx"), say=print,
                               ports=free_ports)
    print(matrix.table(result))
    assert result.passed, matrix.table(result)
    assert {c["verdict"] for c in result.claims} == {"confirmed"} and len(result.claims) == 6
    outages = {(c.size, c.case) for c in result.cases if c.observed == "outage"}
    assert {(1, "kill-leader"), (3, "kill-leader+follower"), (5, "kill-leader+2-followers"), (5, "kill-db")} <= outages
    written = json.loads((result.run_dir / "matrix.json").read_text())
    assert written["passed"] and len(written["cases"]) == 31
    assert "| nodes | case |" in (result.run_dir / "matrix.md").read_text()
