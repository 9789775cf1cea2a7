"""The default node profile (rancher-1.0) fails the way Rancher v1.0 did, on a real 3-node lab cut
in two both ways (a1, a2 and the database in dc-a; b1 alone in dc-b): b1's own /ping, asked inside
its container, keeps answering `200 pong` while it has no quorum; then its API server logs "Lost
Connection to ZooKeeper!", exits with status 3 and is restarted by the node's supervisor, which
`halab status` shows; after the heal b1 becomes active again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from helpers import REPO

from lab.cluster import docker, lifecycle, probes
from lab.cluster.compose import container_name
from lab.cluster.topology import Topology
from lab.core.wait import wait_for
from lab.faults import Injector, make_spec
from lab.server.profiles import DEFAULT_PROFILE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PING = (
    "import urllib.request\n"
    "try:\n"
    "    r = urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=2)\n"
    "    print(r.status, r.read().decode())\n"
    "except Exception as e:\n"
    "    print(type(e).__name__)\n"
)
SAMPLED = 20.0  # seconds of /ping answers sampled after the cut
RESTART_BOUND = 90.0  # seconds after the cut by which the server must have restarted


def ping_inside(t: Topology, node: str) -> str:
    """The node's own /ping as a process of its container sees it: no load balancer in between."""
    return docker.run(
        ["docker", "exec", container_name(t, node), "python3", "-c", PING], f"{node}'s /ping from inside", timeout=15
    ).strip()


def halab_status(t: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args, "status", "--name", t.lab],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_minority_node_answers_pong_then_restarts_its_server(
    halab_lab_factory: Callable[..., Topology], halab_faults: Callable[..., Injector]
) -> None:
    assert DEFAULT_PROFILE == "rancher-1.0"
    t = halab_lab_factory(3, profile=DEFAULT_PROFILE)
    inj = halab_faults(t)
    assert ping_inside(t, "b1") == "200 pong"
    assert probes.supervisor_state(t, "b1")["serverRestarts"] == 0
    with inj.held(make_spec("split")):  # dc-a | dc-b, both ways
        cut = time.monotonic()
        samples: list[tuple[float, str]] = []

        def sample() -> bool:
            samples.append((time.monotonic() - cut, ping_inside(t, "b1")))
            return samples[-1][0] >= SAMPLED

        wait_for(f"{SAMPLED:g} s of b1's /ping answers", sample, SAMPLED + 30, interval=0.5)
        pongs = [s for s in samples if s[1] == "200 pong"]
        assert len(pongs) > len(samples) / 2, samples
        restarts = wait_for(
            "b1's server to exit and be restarted",
            lambda: probes.supervisor_state(t, "b1").get("serverRestarts"),
            RESTART_BOUND - (time.monotonic() - cut),
            interval=1.0,
        )
        restarted_after = time.monotonic() - cut
        assert restarts >= 1 and probes.supervisor_state(t, "b1")["lastExitStatus"] == 3
        assert "Lost Connection to ZooKeeper!" in lifecycle.logs(t, ("b1",))
        # ZooKeeper kept running: only the API server restarted, the container did not.
        (c,) = docker.inspect([container_name(t, "b1")])
        assert c["State"]["Running"] and c["RestartCount"] == 0

        shown = halab_status(t, "--json")
        assert shown.returncode == 3, shown.stderr  # not healthy while cut
        st = json.loads(shown.stdout)
        b1 = next(n for n in st["nodes"] if n["name"] == "b1")
        assert b1["server_restarts"] >= 1 and b1["last_exit_status"] == 3, b1
        assert st["profile"]["profile"] == "rancher-1.0" and st["profile"]["settings"]["exit_on_session_loss"]
        row = next(line for line in halab_status(t).stdout.splitlines() if line.startswith("b1 "))
        assert "(last exit 3)" in row, row
    wait_for("b1 active again after the heal", lambda: probes.node_view(t, "b1").active, 150, interval=1.0)
    first_fail = next((round(s[0], 1) for s in samples if s[1] != "200 pong"), None)
    print(
        f"b1 /ping inside: {len(pongs)} of {len(samples)} answers pong in the first {SAMPLED:g} s "
        f"(first other answer at {first_fail} s); restart #{restarts} seen {restarted_after:.1f} s after the cut"
    )
