"""Images built locally and air-gapped: FROM debian:bookworm-slim, OS packages only.

Each image is tagged with a hash of what goes into it, so a warm `halab up` finds its tags and
builds nothing; editing a Dockerfile or the server code changes the tag and rebuilds just that.

The node image's Dockerfile copies `lab/server/`, `lab/agent/` and its ZooKeeper settings from one context laid
out as the repository is. A checkout is that context (its .dockerignore sends only those files); an
installed package keeps the server in the package and the Dockerfile in `lab/assets/`, so its build
copies them into a temporary folder with that layout. Either way the tag is the same for the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.cluster import docker
from lab.cluster.topology import Topology
from lab.core import paths
from lab.core.errors import DockerUnavailable, RuntimeFailure

log = logging.getLogger("halab.cluster.images")

ROOT = paths.ROOT  # compose/ and scripts/: the checkout, or an installed package's assets
BASE_IMAGE = "debian:bookworm-slim"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # compose service role: db, lb, node; prom (Prometheus and the database's exporter); dind
    dockerfile: Path
    context: Path
    inputs: tuple[Path, ...]  # files and folders whose content decides the tag
    # When set, the context is assembled: inputs[i] is copied to placed[i] in a temporary folder (and
    # the tag names files by those paths); `context` is then only where the inputs come from.
    placed: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        return f"halab/{self.name}"


NODE_PARTS = ("compose/images/node", "lab/__init__.py", "lab/server", "lab/agent")  # what its Dockerfile copies


def _node_spec() -> ImageSpec:
    inputs = (ROOT / NODE_PARTS[0], paths.PACKAGE / "__init__.py", paths.PACKAGE / "server", paths.PACKAGE / "agent")
    if paths.CHECKOUT is not None:  # the repository root is the context
        return ImageSpec("node", ROOT / "compose/images/node/Dockerfile", ROOT, inputs)
    return ImageSpec("node", ROOT / "compose/images/node/Dockerfile", ROOT, inputs, placed=NODE_PARTS)


IMAGES = (
    ImageSpec("db", ROOT / "compose/images/db/Dockerfile", ROOT / "compose/images/db", (ROOT / "compose/images/db",)),
    ImageSpec("lb", ROOT / "compose/images/lb/Dockerfile", ROOT / "compose/images/lb", (ROOT / "compose/images/lb",)),
    _node_spec(),
    ImageSpec(
        "prom", ROOT / "compose/images/prom/Dockerfile", ROOT / "compose/images/prom", (ROOT / "compose/images/prom",)
    ),
    # Not a lab's: the Docker hosts of a swarm lab made on one machine (lab/cluster/hosts.py).
    ImageSpec(
        "dind", ROOT / "compose/images/dind/Dockerfile", ROOT / "compose/images/dind", (ROOT / "compose/images/dind",)
    ),
)
# What loadtests/ imports of lab/record, itself and through each other.
LOADGEN_MODULES = ("__init__", "history", "ops", "registers", "consistency", "indeterminate", "linearizability")
# Built only when named (`halab build --only galera`), so that a lab with one database builds what
# it did before issue 15. Their contexts are assembled: galera's from the image's folder, the
# clustercheck agent and the db image's labsql.
OPTIONAL_IMAGES = (
    ImageSpec(
        "galera",
        ROOT / "compose/images/galera/Dockerfile",
        ROOT,
        (
            ROOT / "compose/images/galera",
            paths.PACKAGE / "agent" / "clustercheck.py",
            ROOT / "compose/images/db/labsql",
        ),
        placed=("compose/images/galera", "lab/agent/clustercheck.py", "compose/images/db/labsql"),
    ),
    # Not a lab's: Locust's master and workers on a swarm lab's hosts (lab/record/distributed.py),
    # with the locustfiles and the recording modules they import (LOADGEN_MODULES), only those: a
    # change elsewhere in lab/record does not change its tag, so hosts are not loaded with it again.
    ImageSpec(
        "loadgen",
        ROOT / "compose/images/loadgen/Dockerfile",
        ROOT,
        (
            ROOT / "compose/images/loadgen",
            paths.PACKAGE / "__init__.py",
            *(paths.PACKAGE / "record" / f"{m}.py" for m in LOADGEN_MODULES),
            paths.LOADTESTS,
        ),
        placed=(
            "compose/images/loadgen",
            "lab/__init__.py",
            *(f"lab/record/{m}.py" for m in LOADGEN_MODULES),
            "loadtests",
        ),
    ),
)


def needed(t: Topology) -> tuple[str, ...]:
    """The images a lab runs: the monitoring image only with monitoring; a Galera database's
    image instead of the single database's; never the hosts' image."""
    skip = {"dind", "db"} if t.db.galera else {"dind"}
    skip |= set() if t.monitoring else {"prom"}
    return tuple(s.name for s in IMAGES if s.name not in skip) + (("galera",) if t.db.galera else ())


def content_tag(spec: ImageSpec) -> str:
    h = hashlib.sha256()
    for i, top in enumerate(spec.inputs):
        if not top.exists():
            h.update(f"missing {top}".encode())
            continue
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            name = Path(spec.placed[i]) / f.relative_to(top) if spec.placed else f.relative_to(ROOT)
            h.update(str(name).encode())
            h.update(f.read_bytes())
    return f"{spec.repository}:{h.hexdigest()[:12]}"


def image_tags() -> dict[str, str]:
    """The tag each role's image has for the code in this checkout (no Docker needed)."""
    return {spec.name: content_tag(spec) for spec in IMAGES + OPTIONAL_IMAGES}


def exists(tag: str) -> bool:
    try:
        docker.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], f"inspect image {tag}", timeout=30)
        return True
    except RuntimeFailure as exc:
        if isinstance(exc, DockerUnavailable):
            raise
        return False


def ensure_base() -> None:
    """Make debian:bookworm-slim when it is absent and cannot be pulled (debootstrap + import)."""
    if exists(BASE_IMAGE):
        return
    log.info(f"{BASE_IMAGE} is absent: creating it offline with debootstrap (about 30 s)")
    proc = subprocess.run(
        ["bash", str(paths.SCRIPTS / "make-base-image.sh"), BASE_IMAGE], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeFailure(f"could not create {BASE_IMAGE}: {proc.stderr.strip().splitlines()[-1:]}")


@contextmanager
def build_context(spec: ImageSpec) -> Iterator[tuple[Path, Path]]:
    """(Dockerfile, context folder) to build `spec` from: its own, or a temporary folder assembled from
    its inputs as `placed` says (removed afterwards)."""
    if not spec.placed:
        yield spec.dockerfile, spec.context
        return
    with tempfile.TemporaryDirectory(prefix=f"halab-{spec.name}-context-") as tmp:
        context = Path(tmp)
        dockerfile = spec.dockerfile
        for src, name in zip(spec.inputs, spec.placed, strict=True):
            dst = context / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dst)
            if spec.dockerfile.is_relative_to(src):
                dockerfile = dst / spec.dockerfile.relative_to(src)
        yield dockerfile, context


def _rerun_hint(spec: ImageSpec) -> str:
    if spec.placed:
        return f"its context: {', '.join(spec.placed)} from {paths.PACKAGE.parent}"
    return f"see `docker build -f {spec.dockerfile.relative_to(ROOT)} {spec.context.relative_to(ROOT)}`"


def build(only: tuple[str, ...] = (), force: bool = False) -> dict[str, str]:
    """Build whatever image is missing for this code; return role -> tag."""
    tags = image_tags()
    specs = [s for s in IMAGES if not only or s.name in only] + [s for s in OPTIONAL_IMAGES if s.name in only]
    todo = [s for s in specs if force or not exists(tags[s.name])]
    if todo:
        ensure_base()
    for spec in todo:
        tag = tags[spec.name]
        log.info(f"building {tag}")
        # --force-rm: the legacy builder otherwise leaves the container of a failed step behind.
        with build_context(spec) as (dockerfile, context):
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
                    str(dockerfile),
                    str(context),
                ],
                f"build image {spec.name} ({_rerun_hint(spec)})",
                env={"DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")},
            )
    return tags
