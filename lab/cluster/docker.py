"""The one place that talks to Docker. Errors become the lab's own, with secrets masked.

python-on-whales does the work; it is imported lazily so that `import lab.docker` never touches
Docker (nor needs the library) at import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.core.errors import BadInput, DockerUnavailable, RuntimeFailure, mask

if TYPE_CHECKING:
    from python_on_whales import DockerClient

INSTALL_HINT = "run `make setup` (or `sudo scripts/install-prereqs.sh`) to install and start Docker"
LAB_LABEL = "halab.lab"


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def translate(exc: Exception, what: str) -> Exception:
    """Map a python-on-whales/subprocess failure onto DockerUnavailable / BadInput / RuntimeFailure."""
    cmd = getattr(exc, "docker_command", None) or getattr(exc, "cmd", None) or []
    code = getattr(exc, "return_code", None) or getattr(exc, "returncode", None)
    stderr = getattr(exc, "stderr", None) or ""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    text = f"{stderr} {exc}"
    fields: dict[str, Any] = {
        "command": [str(c) for c in cmd] if isinstance(cmd, (list, tuple)) else ([str(cmd)] if cmd else None),
        "return_code": code if isinstance(code, int) else None,
        "stderr": stderr,
    }
    if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
        return DockerUnavailable(f"{what}: Docker is not running; {INSTALL_HINT}", **fields)
    if "permission denied" in text.lower() and "docker.sock" in text:
        return DockerUnavailable(
            f"{what}: not permitted to use Docker (add yourself to the docker group or use sudo)", **fields
        )
    if isinstance(exc, FileNotFoundError) or ("executable" in text and "not found" in text):
        return DockerUnavailable(f"{what}: the docker CLI is not installed; {INSTALL_HINT}", **fields)
    if "port is already allocated" in text or "address already in use" in text:
        return BadInput(f"{what}: a published port is already in use: {mask(_tail(text, 2))}")
    shown = " ".join(str(c) for c in cmd) if isinstance(cmd, (list, tuple)) else str(cmd)
    return RuntimeFailure(f"{what} failed (exit {code}): {mask(shown)}: {mask(_tail(text))}", **fields)


@contextlib.contextmanager
def docker_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (BadInput, RuntimeFailure):
        raise
    except Exception as exc:  # python-on-whales, subprocess and OS errors alike
        if exc.__class__.__name__ in {
            "DockerException",
            "NoSuchContainer",
            "NoSuchImage",
            "NoSuchNetwork",
            "CalledProcessError",
            "FileNotFoundError",
            "NotADockerCommand",
        }:
            raise translate(exc, what) from exc
        raise


def require_docker() -> None:
    """Fail fast with one actionable line when the engine or compose v2 is missing."""
    if shutil.which("docker") is None:
        raise DockerUnavailable(f"the docker CLI is not installed; {INSTALL_HINT}")
    run(["docker", "info", "--format", "{{.ServerVersion}}"], "docker info", timeout=20)
    try:
        run(["docker", "compose", "version"], "docker compose version", timeout=20)
    except RuntimeFailure as exc:
        raise DockerUnavailable(f"Compose v2 (`docker compose`) is missing; {INSTALL_HINT}") from exc


def run(
    args: Sequence[str],
    what: str,
    *,
    timeout: float | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a docker CLI command; return stdout; raise a translated error on failure."""
    with docker_errors(what):
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, input=input, env={**os.environ, **(env or {})}
        )
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, list(args), proc.stdout, proc.stderr)
        return proc.stdout


def client(project: str | None = None, compose_file: Path | None = None) -> DockerClient:
    from python_on_whales import DockerClient

    if compose_file is None:
        return DockerClient()
    return DockerClient(
        compose_files=[compose_file], compose_project_name=project, compose_project_directory=compose_file.parent
    )


# The docker command of this machine's engine; a swarm host's is another (lab/cluster/hosts.py).
LOCAL: tuple[str, ...] = ("docker",)


def labelled(kind: str, lab: str | None = None, engine: Sequence[str] = LOCAL) -> list[str]:
    """IDs of containers/networks/volumes carrying the lab label (any lab when lab is None)."""
    label = LAB_LABEL if lab is None else f"{LAB_LABEL}={lab}"
    args = {
        "container": ["ps", "-aq", "--filter", f"label={label}"],
        "network": ["network", "ls", "-q", "--filter", f"label={label}"],
        "volume": ["volume", "ls", "-q", "--filter", f"label={label}"],
    }[kind]
    return run([*engine, *args], f"list {kind}s of lab {lab}").split()


def inspect(ids: Sequence[str], kind: str = "container", engine: Sequence[str] = LOCAL) -> list[dict[str, Any]]:
    import json

    if not ids:
        return []
    found: list[dict[str, Any]] = json.loads(run([*engine, kind, "inspect", *ids], f"inspect {kind}s"))
    return found


@dataclass(frozen=True)
class ContainerState:
    """A typed view of one container's `docker inspect`, built once (`from_inspect`)."""

    name: str
    service: str  # the lab's service (node name, db, lb) of a compose or swarm container; "" otherwise
    running: bool
    paused: bool
    status: str  # Docker's word: created, running, paused, restarting, exited, dead
    exit_code: int | None
    oom_killed: bool
    restart_count: int
    started_at: str | None
    addresses: Mapping[str, str] = field(default_factory=dict)  # network name -> IPv4 address
    id: str = ""  # the full container id (its cgroup's name: lab/cluster/cpu.py)
    host: str = ""  # a swarm lab's: the host that runs it (lab/cluster/engine.py)

    @property
    def up(self) -> bool:
        return self.running and not self.paused

    @property
    def word(self) -> str:
        """What `halab status` shows: paused, or Docker's status (OOM-killed said)."""
        if self.paused:
            return "paused"
        return self.status + (" (OOM-killed)" if self.oom_killed else "")

    @classmethod
    def from_inspect(cls, c: Mapping[str, Any]) -> ContainerState:
        s = c.get("State") or {}
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        code = s.get("ExitCode")
        labels = (c.get("Config") or {}).get("Labels") or {}
        # A swarm task's service is `<stack>_<service>`.
        swarm = str(labels.get("com.docker.swarm.service.name", ""))
        stack = str(labels.get("com.docker.stack.namespace", ""))
        return cls(
            name=str(c.get("Name", "")).lstrip("/"),
            service=str(labels.get("com.docker.compose.service") or swarm.removeprefix(f"{stack}_")),
            running=bool(s.get("Running")),
            paused=bool(s.get("Paused")),
            status=str(s.get("Status", "")),
            exit_code=code if isinstance(code, int) else None,
            oom_killed=bool(s.get("OOMKilled")),
            restart_count=int(c.get("RestartCount") or 0),
            started_at=s.get("StartedAt"),
            addresses={name: n["IPAddress"] for name, n in nets.items() if n and n.get("IPAddress")},
            id=str(c.get("Id", "")),
        )


def container_states(lab: str, engine: Sequence[str] = LOCAL) -> list[ContainerState]:
    """Every container of the lab on one engine, typed."""
    return [ContainerState.from_inspect(c) for c in inspect(labelled("container", lab, engine), engine=engine)]
