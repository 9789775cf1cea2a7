"""How the node profile reaches a lab: the topology, the compose file (HALAB_PROFILE, restart
policy), HAProxy's checks, scenario files, capacity settings and what `halab status` shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capacity import spec
from lab.chaos import scenario
from lab.cluster import addressing, compose, lifecycle, probes
from lab.cluster.topology import make_topology
from lab.core.errors import BadInput
from lab.server import supervisor
from lab.server.profiles import RANCHER_1_0, TUNED

TAGS = {"db": "halab/db:x", "lb": "halab/lb:x", "node": "halab/node:x"}


def test_the_default_profile_is_rancher_1_0_and_a_bad_one_is_refused() -> None:
    assert make_topology(3).profile == "rancher-1.0" and make_topology(3).node_profile is RANCHER_1_0
    assert make_topology(3, profile="tuned").node_profile is TUNED
    with pytest.raises(BadInput, match=r"--profile: 'fast' is not a node profile; use rancher-1\.0 or tuned"):
        make_topology(3, profile="fast")


def test_the_profile_is_wired_and_reserved_and_its_settings_stay_overridable() -> None:
    with pytest.raises(BadInput, match="HALAB_PROFILE is set by the lab from --profile"):
        make_topology(3, server_env={"HALAB_PROFILE": "tuned"})
    t = make_topology(3, profile="tuned", server_env={"HALAB_LOCK_TIMEOUT": "10", "HALAB_CLUSTER_HEARTBEAT": "5"})
    env = compose.node_environment(t, "b1")
    assert env["HALAB_PROFILE"] == "tuned" and env["HALAB_LOCK_TIMEOUT"] == "10"
    shown = lifecycle.profile_settings(t)
    assert shown["profile"] == "tuned" and shown["overridden"] == ["cluster_heartbeat", "lock_timeout"]
    assert shown["harness"]["lb_check_inter_ms"] == 250 and shown["settings"]["ping_gate"] is True


@pytest.mark.parametrize(
    "name, restart, check, timeout, retry_on",
    [
        (
            "rancher-1.0",
            "unless-stopped",
            "inter 1000ms fastinter 1000ms downinter 1000ms fall 2 rise 1\n",
            "timeout check 1000ms",
            "retry-on conn-failure\n",
        ),
        (
            "tuned",
            "no",
            "inter 250ms fastinter 150ms downinter 500ms fall 2 rise 2 observe layer4 error-limit 1",
            "timeout check 400ms",
            "retry-on conn-failure empty-response response-timeout 503\n",
        ),
    ],
)
def test_compose_and_haproxy_follow_the_profile(
    name: str, restart: str, check: str, timeout: str, retry_on: str
) -> None:
    t = make_topology(3, lab="demo", profile=name)
    services = compose.render(t, TAGS, addressing.choose(t, []))["services"]
    assert {services[n]["restart"] for n in t.node_names} == {restart}
    assert services["a1"]["labels"]["halab.profile"] == name
    assert services["lb"]["restart"] == services["db"]["restart"] == "no"
    cfg = compose.haproxy_config(t)
    assert f"init-addr libc {check}" in cfg and timeout in cfg and retry_on in cfg
    assert "$" not in cfg.replace("$lab", "")


def test_the_harness_reads_the_supervisors_file() -> None:
    assert probes.SUPERVISOR_STATE == supervisor.STATE_FILE


def test_a_running_node_that_restarted_is_active_only_by_its_own_state() -> None:
    assert not probes.NodeView("b1", 200, "starting", "not serving").active  # rancher-1.0: pong while starting
    assert probes.NodeView("b1", 200, "active", "follower").active


def test_scenario_files_may_name_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("topology: {nodes: 3, profile: tuned}\nfaults: []\n")
    sc = scenario.load(path)
    assert sc.topology.profile == "tuned" and sc.topology.build().profile == "tuned"
    path.write_text("topology: {nodes: 3}\nfaults: []\n")
    assert scenario.load(path).topology.build().profile == "rancher-1.0"
    path.write_text("topology: {nodes: 3, profile: fast}\nfaults: []\n")
    with pytest.raises(BadInput, match=r"topology\.profile: 'fast' is not a node profile"):
        scenario.load(path)


def test_capacity_points_run_the_settings_profile() -> None:
    grid = spec.build_grid({"settings": {"profile": "tuned"}}, "grid")
    assert grid.points[0].topology("cap-1", make_topology(1).ports, grid.settings).profile == "tuned"
    assert spec.build_grid(None).settings.profile == "rancher-1.0"
    with pytest.raises(BadInput, match="--profile: 'fast'"):
        spec.settings_with(grid.settings, {"profile": "fast"})
