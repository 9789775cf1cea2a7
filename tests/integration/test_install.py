"""`pip install .` (not editable) gives a working `halab` and pytest plugin outside the repository.

The wheel is built from a copy of the working tree (`pip wheel . -w <tmp> --no-deps`, so no build
folder is left in the repository), installed with its dependencies into a fresh virtual environment
in a temporary folder (the machine's pip configuration, as `make venv` uses), and every command runs
from a folder outside the repository: the package finds its compose templates, image contexts,
claims, scenarios and locustfiles in `lab/assets/`, and builds the node image from a context it
assembles itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.cluster import lifecycle
from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name
from lab.core import paths

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = paths.ROOT
# Not part of the package's source: environments, caches, build output, run directories.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".hypothesis"
)


class Venv:
    def __init__(self, root: Path, source: Path, outside: Path) -> None:
        self.bin = root / "bin"
        self.source = source  # the copy of the working tree the wheel was built from
        self.outside = outside  # the working folder of every command: not the repository
        # Nothing of the repository's environment leaks in: no PYTHONPATH, no activated venv.
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"

    def run(self, *args: str, timeout: float = 300, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.outside,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode in ok, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    work = tmp_path_factory.mktemp("install")
    assert not work.resolve().is_relative_to(REPO.resolve())
    source, wheels, outside = work / "source", work / "wheels", work / "outside"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    outside.mkdir()
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", ".", "-w", str(wheels), "--no-deps", "-q"], cwd=source, check=True, timeout=600)
    (wheel,) = wheels.glob("ha_lab-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=120)
    venv = Venv(work / "venv", source, outside)
    # pytest besides, for the plugin; every other dependency comes from the wheel's metadata.
    venv.run("pip", "install", "-q", str(wheel), "pytest", timeout=1200)
    return venv


def test_the_installed_package_is_not_the_checkout(installed: Venv) -> None:
    code = "from lab.core import paths; print(paths.PACKAGE); print(paths.CHECKOUT); print(paths.ASSETS)"
    package, checkout, assets = installed.run("python", "-c", code).stdout.split()
    assert Path(package).is_relative_to(installed.bin.parent) and checkout == "None"
    for asset in (
        "compose/haproxy.cfg.tmpl",
        "compose/images/node/Dockerfile",
        "scenarios/claims.yaml",
        "loadtests/rancher.py",
        "scripts/make-base-image.sh",
    ):
        assert (Path(assets) / asset).is_file(), asset
    # the same files give the same image tags as a checkout of them (the copy the wheel was built from)
    code = "import json; from lab.cluster import images; print(json.dumps(images.image_tags()))"
    env = {**installed.env, "PYTHONPATH": str(installed.source)}
    checkout = subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed.source,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(installed.run("python", "-c", code).stdout) == json.loads(checkout)


def test_render_matrix_and_capacity_read_the_packaged_files(installed: Venv) -> None:
    compose = yaml.safe_load(installed.run("halab", "render", "--nodes", "3").stdout)
    assert {"db", "lb", "a1", "a2", "b1"} <= set(compose["services"])
    cases = installed.run("halab", "matrix", "--nodes", "3", "--dry-run").stdout  # the packaged claims.yaml
    assert re.search(r"^n3 kill-leader", cases, re.M), cases
    sweep = installed.run("halab", "capacity", "--dry-run", "--nodes", "1", "--users", "5").stdout
    assert "1 point(s)" in sweep


def test_the_pytest_plugin_is_registered(installed: Venv) -> None:
    (installed.outside / "test_plugin.py").write_text(
        "def test_profile(halab_profile):\n    assert halab_profile == 'tuned'\n"
    )
    out = installed.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--halab-profile", "tuned", "test_plugin.py"
    ).stdout
    assert "1 passed" in out


@pytest.fixture
def lab_name(installed: Venv) -> Iterator[str]:
    name = unique_lab_name("install")
    try:
        yield name
    finally:  # the installed halab first, the checkout's own teardown when that cannot run
        try:
            installed.run("halab", "down", "--name", name, timeout=300)
        finally:
            lifecycle.down(name)


def test_build_up_load_status_down_from_the_installed_package(installed: Venv, lab_name: str) -> None:
    # The node image from the context the package assembles (lab/server + its assets); cached layers.
    installed.run("halab", "build", "--only", "node", "--force", timeout=1200)
    ports = free_ports()
    up = installed.run(
        "halab",
        "up",
        "--nodes",
        "1",
        "--name",
        lab_name,
        "--http-port",
        str(ports.http),
        "--https-port",
        str(ports.https),
        "--mgmt-port",
        str(ports.mgmt),
        "--profile",
        "tuned",
        timeout=600,
    )
    assert f"lab '{lab_name}' is up" in up.stdout + up.stderr
    status = json.loads(installed.run("halab", "--json", "status", "--name", lab_name).stdout)
    assert [n["ha_state"] for n in status["nodes"]] == ["active"], status
    # Locust from the venv, with the packaged locustfile; the verdict is the checker's business here.
    load = installed.run(
        "halab",
        "load",
        "--name",
        lab_name,
        "--users",
        "2",
        "--duration",
        "5s",
        "--user-class",
        "ApiUser",
        timeout=300,
        ok=(0, 3),
    )
    requests = re.search(r"requests (\d+), failed", load.stdout)
    assert requests and int(requests.group(1)) > 0, load.stdout + load.stderr
    assert list((installed.outside / "runs").glob(f"*-load-{lab_name}*/history.jsonl")), "no run directory here"
    installed.run("halab", "down", "--name", lab_name, timeout=300)
