"""Images built locally and air-gapped: FROM debian:bookworm-slim, OS packages only.

Each image is tagged with a hash of what goes into it, so a warm `halab up` finds its tags and
builds nothing; editing a Dockerfile or the server code changes the tag and rebuilds just that.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.cluster import docker
from lab.core import paths
from lab.core.errors import DockerUnavailable, RuntimeFailure

ROOT = paths.ROOT
BASE_IMAGE = "debian:bookworm-slim"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # compose service role: db, lb, node
    dockerfile: Path
    context: Path
    inputs: tuple[Path, ...]  # files and folders whose content decides the tag

    @property
    def repository(self) -> str:
        return f"halab/{self.name}"


IMAGES = (
    ImageSpec("db", ROOT / "compose/images/db/Dockerfile", ROOT / "compose/images/db", (ROOT / "compose/images/db",)),
    ImageSpec("lb", ROOT / "compose/images/lb/Dockerfile", ROOT / "compose/images/lb", (ROOT / "compose/images/lb",)),
    ImageSpec(
        "node",
        ROOT / "compose/images/node/Dockerfile",
        ROOT,
        (ROOT / "compose/images/node", ROOT / "lab/__init__.py", ROOT / "lab/server"),
    ),
)


def content_tag(spec: ImageSpec) -> str:
    h = hashlib.sha256()
    for top in spec.inputs:
        if not top.exists():
            h.update(f"missing {top}".encode())
            continue
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return f"{spec.repository}:{h.hexdigest()[:12]}"


def image_tags() -> dict[str, str]:
    """The tag each role's image has for the code in this checkout (no Docker needed)."""
    return {spec.name: content_tag(spec) for spec in IMAGES}


def exists(tag: str) -> bool:
    try:
        docker.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], f"inspect image {tag}", timeout=30)
        return True
    except RuntimeFailure as exc:
        if isinstance(exc, DockerUnavailable):
            raise
        return False


def ensure_base(say: Callable[[str], None]) -> None:
    """Make debian:bookworm-slim when it is absent and cannot be pulled (debootstrap + import)."""
    if exists(BASE_IMAGE):
        return
    say(f"{BASE_IMAGE} is absent: creating it offline with debootstrap (about 30 s)")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/make-base-image.sh"), BASE_IMAGE], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeFailure(f"could not create {BASE_IMAGE}: {proc.stderr.strip().splitlines()[-1:]}")


def build(say: Callable[[str], None], only: tuple[str, ...] = (), force: bool = False) -> dict[str, str]:
    """Build whatever image is missing for this checkout; return role -> tag."""
    tags = image_tags()
    todo = [s for s in IMAGES if (not only or s.name in only) and (force or not exists(tags[s.name]))]
    if todo:
        ensure_base(say)
    for spec in todo:
        tag = tags[spec.name]
        say(f"building {tag}")
        # --force-rm: the legacy builder otherwise leaves the container of a failed step behind.
        docker.run(
            [
                "docker",
                "build",
                "--force-rm",
                "--label",
                "halab.image=" + spec.name,
                "-t",
                tag,
                "-t",
                f"{spec.repository}:latest",
                "-f",
                str(spec.dockerfile),
                str(spec.context),
            ],
            f"build image {spec.name} (see `docker build -f {spec.dockerfile.relative_to(ROOT)} "
            f"{spec.context.relative_to(ROOT)}`)",
            env={"DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")},
        )
    return tags
