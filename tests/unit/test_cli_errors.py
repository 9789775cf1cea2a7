"""Bad input and a missing Docker give one actionable line and a non-zero exit, no traceback
unless --verbose; nothing is started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.cluster import docker
from lab.core.errors import DockerUnavailable, RuntimeFailure, mask, register_secret


def halab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["render", "--nodes", "0"], "--nodes:"),
        (["render", "--nodes", "2"], "adds no fault tolerance"),
        (["render", "--nodes", "4"], "adds no fault tolerance"),
        (["render", "--nodes", "6"], "adds no fault tolerance"),
        (["render", "--nodes", "-1"], "--nodes:"),
        (["render", "--nodes", "three"], "--nodes:"),
        (["render", "--nodes", "3", "--layout", "dc-a:1,dc-b:1"], "places 2 nodes"),
        (["render", "--nodes", "3", "--layout", "nonsense"], "DATACENTER:COUNT"),
        (["render", "--nodes", "3", "--db-dc", "dc-q"], "--db-dc"),
        (["render", "--nodes", "3", "--http-port", "70000"], "--http-port"),
        (["render", "--nodes", "3", "--http-port", "8080", "--https-port", "8080"], "must differ"),
        (["render", "--nodes", "3", "--java-opts=-Xmxlots"], "--java-opts"),
        (["render", "--nodes", "3", "--pool-size", "many"], "--pool-size"),
        (["up", "--bogus"], "unrecognized arguments"),
        (
            ["render", "--nodes", "1", "--server-env", "HALAB_LOCK_TIMEOUT"],
            "--server-env: 'HALAB_LOCK_TIMEOUT' is not KEY=VALUE",
        ),
        (["up", "--nodes", "1", "--server-env", "CATTLE_JAVA_OPTS=-Xmx2g"], "use --java-opts instead"),
        (
            ["render", "--nodes", "1", "--server-env", "HALAB_A=1", "--server-env", "HALAB_A=2"],
            "HALAB_A is given twice",
        ),
        (["render", "--nodes", "3", "--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key"),
        (
            [
                "check",
                "--nodes",
                "3",
                "--db-max-connections",
                "100",
                "--http-port",
                "1",
                "--https-port",
                "2",
                "--mgmt-port",
                "3",
            ],
            "max_connections",
        ),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, needle):
    r = halab(*args)
    assert r.returncode in (2, 3), r
    out = r.stdout + r.stderr if args[0] == "check" else r.stderr
    assert needle in out
    assert "Traceback" not in r.stderr
    if args[0] != "check":
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_verbose_shows_the_traceback():
    r = halab("--verbose", "render", "--nodes", "2")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_docker_not_running_is_one_actionable_line():
    r = halab("status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Docker is not running" in r.stderr and "make setup" in r.stderr


def test_docker_cli_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DockerUnavailable, match="not installed"):
        docker.require_docker()


def test_failed_command_shows_command_exit_code_and_masked_stderr(monkeypatch):
    register_secret("s3cr3t-value")
    with pytest.raises(RuntimeFailure) as e:
        docker.run(
            [sys.executable, "-c", "import sys; sys.stderr.write('boom password=hunter2 s3cr3t-value'); sys.exit(7)"],
            "demo step",
        )
    msg = str(e.value)
    assert "demo step failed (exit 7)" in msg and "boom" in msg
    assert "hunter2" not in msg and "s3cr3t-value" not in msg


def test_mask_hides_registered_secrets_and_assignments():
    register_secret("topsecretpw")
    assert mask("x topsecretpw y MYSQL_PASSWORD=abc") == "x ****** y MYSQL_PASSWORD=******"
