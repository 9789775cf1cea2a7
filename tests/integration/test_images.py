"""The lab's images: each pins its base and the release lines of the packages it depends on, and
the built image holds versions within them; an image that cannot be built is one actionable line
(the image and the docker build command to rerun), exit 1, no traceback, and leaves no container
behind."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from lab.cli import main as cli
from lab.cluster import docker, images
from lab.cluster.state import unique_lab_name

# image -> the packages it is written and tested against, each installed as "package=${X_VERSION}"
DEPENDS_ON = {
    "db": ("mariadb-server",),
    "lb": ("haproxy",),
    "node": ("python3", "python3-aiohttp", "python3-kazoo", "python3-mysqldb", "zookeeper"),
    "prom": ("prometheus", "prometheus-mysqld-exporter"),
    "dind": ("docker.io",),
}


def pins(dockerfile: Path) -> dict[str, str]:
    """package -> version glob, from `ARG X_VERSION=glob` and `"package=${X_VERSION}"`."""
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+_VERSION)=(\S+)$", text, re.M))
    return {pkg: args[arg] for pkg, arg in re.findall(r"([a-z0-9][a-z0-9.+-]*)=\$\{(\w+_VERSION)\}", text)}


@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda s: s.name)
def test_each_image_pins_its_base_and_the_packages_it_depends_on(spec):
    assert re.findall(r"^FROM (\S+)", spec.dockerfile.read_text(), re.M) == [images.BASE_IMAGE]
    assert set(DEPENDS_ON[spec.name]) <= set(pins(spec.dockerfile)), pins(spec.dockerfile)


@pytest.mark.docker
@pytest.mark.parametrize("spec", images.IMAGES, ids=lambda s: s.name)
def test_the_built_image_holds_the_pinned_versions(spec):
    tag = images.build(only=(spec.name,))[spec.name]
    out = docker.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", tag, "-W", *DEPENDS_ON[spec.name]],
        f"list packages of {tag}",
        timeout=120,
    )
    installed = dict(line.split("\t") for line in out.splitlines())
    wanted = pins(spec.dockerfile)
    assert {p: v for p, v in installed.items() if not fnmatch(v, wanted[p])} == {}, (installed, wanted)


@pytest.mark.docker
def test_an_image_that_cannot_be_built_is_one_actionable_line(tmp_path, monkeypatch, capsys):
    marker = unique_lab_name("broken")
    context = tmp_path / "ctx"  # a context of its own, as the db and lb images have
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {images.BASE_IMAGE}\nLABEL halab.test={marker}\nRUN false\n")
    spec = images.ImageSpec(marker, context / "Dockerfile", context, (context,))
    monkeypatch.setattr(images, "ROOT", tmp_path)
    monkeypatch.setattr(images, "IMAGES", (spec,))

    try:
        assert cli.main(["build"]) == 1
    finally:  # the LABEL step is committed as an untagged layer before `RUN false` fails
        layers = docker.run(["docker", "images", "-aq", "--filter", f"label=halab.test={marker}"], "list layers")
        if layers.split():
            docker.run(["docker", "rmi", "-f", *layers.split()], "remove the test's layers")
    *progress, error = capsys.readouterr().err.splitlines()  # progress: "building halab/..."
    assert "Traceback" not in error and not any(line.startswith("halab: error:") for line in progress)
    assert error.startswith(f"halab: error: build image {marker} (see `docker build -f ctx/Dockerfile ctx`) failed")
    assert "/bin/sh -c false" in error  # the step that failed, in docker's own words
    left = docker.run(["docker", "ps", "-aq", "--filter", f"label=halab.test={marker}"], "list leftovers")
    assert left.split() == [], "the failed step's container was left behind"
    assert not images.exists(images.content_tag(spec))
