"""Hardening of the platform on real Docker: isolation, secrets, interruption, labs side by side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from lab.cluster import docker, lifecycle, probes, state
from lab.cluster.preflight import free_port
from lab.cluster.state import unique_lab_name
from lab.core.wait import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def lab_objects(name: str) -> dict[str, list[str]]:
    return {kind: docker.labelled(kind, name) for kind in ("container", "network", "volume")}


def test_database_is_not_reachable_from_the_host_and_only_the_lb_publishes(halab_lab_factory):
    t = halab_lab_factory(1)
    containers = docker.inspect(docker.labelled("container", t.lab))
    published = {
        c["Config"]["Labels"]["halab.role"]: [
            p for ps in (c["NetworkSettings"]["Ports"] or {}).values() for p in (ps or [])
        ]
        for c in containers
    }
    assert published["db"] == [] and published["node"] == []
    assert {p["HostIp"] for p in published["lb"]} == {"127.0.0.1"}
    db = next(c for c in containers if c["Config"]["Labels"]["halab.role"] == "db")
    # The host has no address on the database's bridge, so it has no route to it but its default
    # route off the machine (checked with `ip route get`: no packet is sent).
    for net in db["NetworkSettings"]["Networks"].values():
        route = subprocess.run(["ip", "route", "get", net["IPAddress"]], capture_output=True, text=True).stdout
        assert "br-" not in route and "docker0" not in route, route
    assert not any(m.get("Source") == "/var/run/docker.sock" for c in containers for m in c["Mounts"])


def test_no_password_in_logs_inspect_or_files(halab_lab_factory):
    t = halab_lab_factory(1)
    secret_dir = state.lab_dir(t.lab) / "secrets"
    passwords = [p.read_text().strip() for p in secret_dir.iterdir()]
    assert passwords and all(len(p) >= 20 for p in passwords)
    for p in secret_dir.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    assert state.ca_path(t.lab).stat().st_mode & 0o777 == 0o400
    ids = docker.labelled("container", t.lab)
    seen = docker.run(["docker", "inspect", *ids], "inspect") + lifecycle.logs(t)
    seen += subprocess.run(
        [sys.executable, "-m", "lab.cli", "--json", "status", "--name", t.lab], capture_output=True, text=True
    ).stdout
    for pw in passwords:
        assert pw not in seen
    # The server reads its password from the file secret; the plain variable is never set.
    env = [e for c in docker.inspect(ids) for e in c["Config"]["Env"]]
    assert not any(e.startswith(("CATTLE_DB_CATTLE_PASSWORD=", "MYSQL_PASSWORD=", "MYSQL_ROOT_PASSWORD=")) for e in env)


def test_a_harness_without_root_still_hands_the_containers_their_secrets(halab_lab_factory, monkeypatch):
    # What a user in the docker group gets: files it cannot chown to the containers' uid.
    monkeypatch.setattr(state, "can_chown", lambda: False)
    t = halab_lab_factory(1)  # healthy: the database, node and load balancer all read their files
    for p in [*(state.lab_dir(t.lab) / "secrets").iterdir(), state.lab_dir(t.lab) / "tls" / "server.pem"]:
        assert p.stat().st_uid == os.geteuid() and p.stat().st_mode & 0o777 == 0o644
    assert state.lab_dir(t.lab).stat().st_mode & 0o777 == 0o700
    assert probes.http_get("127.0.0.1", t.ports.http, "/v1/projects").status == 200


def test_two_labs_side_by_side(halab_lab_factory):
    first = halab_lab_factory(1)
    second = halab_lab_factory(1)
    assert probes.node_view(first, "a1").active and probes.node_view(second, "a1").active
    lifecycle.down(first.lab)
    assert lab_objects(first.lab) == {"container": [], "network": [], "volume": []}
    assert probes.node_view(second, "a1").active
    assert len(lifecycle.running_containers(second.lab)) == 3


def _start_up(name: str) -> subprocess.Popen:
    ports = [str(free_port()) for _ in range(3)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "up",
            "--nodes",
            "1",
            "--name",
            name,
            "--http-port",
            ports[0],
            "--https-port",
            ports[1],
            "--mgmt-port",
            ports[2],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_containers(name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    def created() -> bool:
        assert proc.poll() is None, f"`halab up` exited {proc.returncode} before creating containers for {name}"
        return bool(docker.labelled("container", name))

    wait_for(f"`halab up` to create containers for {name}", created, timeout)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_up_removes_what_it_started(sig):
    name = unique_lab_name("int")
    proc = _start_up(name)
    try:
        _wait_for_containers(name, proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, out
        assert "removing what was started" in out
        assert lab_objects(name) == {"container": [], "network": [], "volume": []}
    finally:
        proc.kill()
        lifecycle.down(name)


def test_killed_harness_leaves_what_down_removes():
    name = unique_lab_name("kill")
    proc = _start_up(name)
    try:
        _wait_for_containers(name, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert lab_objects(name)["container"], "SIGKILL cannot clean up: containers must be left"
        done = subprocess.run(
            [sys.executable, "-m", "lab.cli", "--json", "down", "--name", name],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["containers"] >= 1
        assert lab_objects(name) == {"container": [], "network": [], "volume": []}
    finally:
        proc.kill()
        lifecycle.down(name)


def test_database_volume_survives_down_keep_data(halab_lab_factory):
    t = halab_lab_factory(1)
    probes.db_query(t, "CREATE TABLE IF NOT EXISTS keepme (v INT); INSERT INTO keepme VALUES (42)")
    lifecycle.down(t.lab, keep_data=True)
    lifecycle.up(t)
    assert probes.db_query(t, "SELECT v FROM keepme") == [{"v": "42"}]
    assert os.path.exists(state.lab_dir(t.lab) / "secrets" / "db_password")
