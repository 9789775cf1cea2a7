"""`halab down` without Docker: what it removes, and Docker 20.10's stale network endpoints."""

from __future__ import annotations

import pytest

from lab.cluster import docker, lifecycle
from lab.core.errors import RuntimeFailure
from lab.core.wait import wait_for


@pytest.fixture
def fake_docker(monkeypatch, tmp_path):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    world = {"container": ["c1", "c2"], "network": ["n1", "n2"], "volume": ["v1"], "stale": {"n2": ["x-db-1"]}}
    calls: list[list[str]] = []

    def run(args, what, **kw):
        calls.append(list(args))
        if args[1:3] == ["network", "rm"]:
            busy = [n for n in args[3:] if world["stale"].get(n)]
            world["network"] = [n for n in world["network"] if n not in args[3:] or n in busy]
            if busy:
                err = (
                    f"Error response from daemon: error while removing network: network {busy[0]} has active endpoints"
                )
                raise RuntimeFailure(
                    f"{what} failed (exit 1): {err}", command=list(args), return_code=1, stderr=err + "\n"
                )
        if args[1:3] == ["network", "disconnect"]:
            world["stale"][args[4]].remove(args[5])
        return ""

    monkeypatch.setattr(docker, "run", run)
    monkeypatch.setattr(docker, "labelled", lambda kind, name=None: list(world[kind]))
    monkeypatch.setattr(
        docker,
        "inspect",
        lambda ids, kind="container": [
            {
                "Id": n,
                "Name": f"net-{n}",
                "Containers": {f"ep{i}": {"Name": c} for i, c in enumerate(world["stale"][n])},
            }
            for n in ids
        ],
    )
    return world, calls


def test_a_stale_endpoint_is_disconnected_and_its_network_removed_again(fake_docker):
    world, calls = fake_docker
    assert lifecycle.down("x") == {"containers": 2, "networks": 2, "volumes": 1}
    assert ["docker", "network", "disconnect", "-f", "n2", "x-db-1"] in calls
    assert calls.count(["docker", "network", "rm", "n2"]) == 1 and world["network"] == []


@pytest.fixture
def ghost(fake_docker, monkeypatch):
    """Docker's phantom endpoint: `network rm n2` answers "active endpoints" while n2 lists no
    container. `ghost(k)` makes the next k removals refused; by default, every one is."""
    world, _calls = fake_docker
    world["stale"]["n2"] = []
    refusals: dict[str, int | None] = {"left": None}
    real = docker.run

    def run(args, what, **kw):
        left = refusals["left"]
        if args[1:3] == ["network", "rm"] and "n2" in args[3:] and left != 0:
            refusals["left"] = None if left is None else left - 1
            world["stale"]["n2"] = ["ghost"]
            try:
                return real(args, what)
            finally:
                world["stale"]["n2"] = []
        return real(args, what)

    monkeypatch.setattr(docker, "run", run)
    monkeypatch.setattr(
        lifecycle, "wait_for", lambda what, fn, timeout, **kw: wait_for(what, fn, timeout, **(kw | {"interval": 0.01}))
    )

    def refuse(times: int | None = None) -> None:
        refusals["left"] = times

    return refuse


def test_an_endpoint_docker_releases_late_is_waited_for(fake_docker, ghost):
    # Docker 28 under load: "has active endpoints" while the network lists no container, for a while.
    world, calls = fake_docker
    ghost(2)
    assert lifecycle.down("x")["networks"] == 2 and world["network"] == []
    assert calls.count(["docker", "network", "rm", "n2"]) == 2  # the first retry still refused, the second went


def test_an_endpoint_docker_never_releases_leaves_the_empty_network_with_a_warning(
    fake_docker, ghost, monkeypatch, caplog
):
    # Docker 20.10: the network lists no container, yet every `network rm` says "active endpoints".
    world, _calls = fake_docker
    ghost()
    monkeypatch.setattr(lifecycle, "NETWORK_RELEASE", 0.05)
    with caplog.at_level("WARNING", logger="halab.cluster.lifecycle"):
        assert lifecycle.down("x") == {"containers": 2, "networks": 1, "volumes": 1}
    assert world["network"] == ["n2"]
    assert "net-n2" in caplog.text and "none attached" in caplog.text


def test_a_network_with_a_container_still_attached_fails_the_teardown(fake_docker, monkeypatch):
    world, _calls = fake_docker
    real = docker.run
    # The endpoint's container cannot be disconnected: it stays listed on the network.
    monkeypatch.setattr(
        docker, "run", lambda args, what, **kw: "" if args[1:3] == ["network", "disconnect"] else real(args, what)
    )
    monkeypatch.setattr(lifecycle, "NETWORK_RELEASE", 0.05)
    monkeypatch.setattr(
        lifecycle, "wait_for", lambda what, fn, timeout, **kw: wait_for(what, fn, timeout, **(kw | {"interval": 0.01}))
    )
    with pytest.raises(RuntimeFailure, match="networks of lab x to be removable"):
        lifecycle.down("x")
    assert world["network"] == ["n2"]


def test_any_other_network_failure_is_raised(fake_docker, monkeypatch):
    _world, _calls = fake_docker
    real = docker.run
    monkeypatch.setattr(
        docker,
        "run",
        lambda args, what, **kw: (
            (_ for _ in ()).throw(RuntimeFailure(f"{what} failed: permission denied"))
            if args[1:3] == ["network", "rm"]
            else real(args, what)
        ),
    )
    with pytest.raises(RuntimeFailure, match="permission denied"):
        lifecycle.down("x")


def test_a_failed_command_carries_its_command_exit_code_and_stderr():
    """translate keeps what ran and how it ended as fields; the message stays one masked line."""
    import subprocess

    from lab.core.errors import register_secret

    register_secret("s3cr3t-value")
    stderr = "Error response from daemon: No such container: x-a1-1\nmore s3cr3t-value\n"
    exc = docker.translate(
        subprocess.CalledProcessError(1, ["docker", "exec", "x-a1-1", "echo", "s3cr3t-value"], "", stderr), "exec"
    )
    assert isinstance(exc, RuntimeFailure)
    assert exc.command == ["docker", "exec", "x-a1-1", "echo", "s3cr3t-value"]
    assert exc.return_code == 1 and exc.exit_code == 1  # exit_code stays the CLI's exit status
    assert exc.stderr == stderr and exc.stderr_has("No such container")
    assert "\n" not in str(exc) and "s3cr3t-value" not in str(exc) and "No such container" in str(exc)
    assert RuntimeFailure("plain").stderr is None and not RuntimeFailure("plain").stderr_has("x")


def test_docker_run_failure_has_the_fields(monkeypatch):
    """docker.run on a real (non-docker) failing process: the same fields, from subprocess."""
    import sys

    with pytest.raises(RuntimeFailure) as e:
        docker.run([sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], "a command")
    assert e.value.return_code == 3 and e.value.stderr == "boom\n" and e.value.command[0] == sys.executable


def test_container_state_is_built_once_from_docker_inspect():
    raw = {
        "Name": "/x-a1-1",
        "Config": {"Labels": {"com.docker.compose.service": "a1"}},
        "RestartCount": 2,
        "State": {
            "Status": "exited",
            "Running": False,
            "Paused": False,
            "OOMKilled": True,
            "ExitCode": 137,
            "StartedAt": "2026-11-30T17:00:00Z",
        },
        "NetworkSettings": {"Networks": {"x_interdc": {"IPAddress": "10.1.0.2"}, "x_db": {"IPAddress": ""}}},
    }
    c = docker.ContainerState.from_inspect(raw)
    assert (c.name, c.service, c.running, c.paused, c.status) == ("x-a1-1", "a1", False, False, "exited")
    assert (c.exit_code, c.oom_killed, c.restart_count) == (137, True, 2)
    assert c.started_at == "2026-11-30T17:00:00Z" and dict(c.addresses) == {"x_interdc": "10.1.0.2"}
    assert c.word == "exited (OOM-killed)" and not c.up
    paused = docker.ContainerState.from_inspect({"State": {"Status": "paused", "Running": True, "Paused": True}})
    assert paused.word == "paused" and not paused.up and paused.service == ""
