"""pytest plugin shipped with ha-lab (entry point `halab`): fixtures over the same functions the
CLI uses, so a user's own CI can run chaos checks with pytest.

- marker `docker`: the test needs a Docker engine. Without one it is skipped, except when `CI` is
  set or `--halab-require-docker` is given: then it fails, so a CI run can never pass by skipping.
- fixture `halab_lab_factory`: `make(nodes=3, **topology options)` starts a uniquely named lab on
  free loopback ports and tears it down after the test on every path, dumping its logs when the
  test failed.
- fixture `halab_lab3`: one 3-node lab shared by a test module.
- fixture `halab_profile`: the node profile these labs run (`--halab-profile`, default
  rancher-1.0); a module overrides it with its own `halab_profile` fixture (scope "module" or
  wider), `make(profile=...)` for one lab.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from lab.cluster.preflight import free_ports
from lab.cluster.state import unique_lab_name

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr
    from pluggy import Result


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("halab")
    group.addoption(
        "--halab-require-docker",
        action="store_true",
        help="fail (never skip) docker-marked tests when Docker is unavailable (default when CI is set)",
    )
    group.addoption("--halab-keep", action="store_true", help="keep labs of failed tests for debugging")
    group.addoption(
        "--halab-profile",
        default="rancher-1.0",
        choices=["rancher-1.0", "tuned"],
        help="node profile of the labs the fixtures start (default rancher-1.0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a real Docker engine")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    # The lab's progress messages (lab start, faults, load) are INFO records of the `halab` loggers:
    # let them reach pytest's log capture (shown with a failure, or live with --log-cli-level=INFO).
    halab = logging.getLogger("halab")
    if halab.level == logging.NOTSET:
        halab.setLevel(logging.INFO)


def _docker_problem() -> str | None:
    from lab.cluster import docker
    from lab.core.errors import LabError

    try:
        docker.require_docker()
    except LabError as exc:
        return str(exc)
    return None


_DOCKER_PROBLEM = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("docker") for item in items):
        return
    problem = _docker_problem()
    if problem is None:
        return
    if config.getoption("--halab-require-docker") or os.environ.get("CI"):
        config.stash[_DOCKER_PROBLEM] = problem  # each docker test fails in its setup
        return
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.skip(reason=f"Docker unavailable: {problem}"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = item.config.stash.get(_DOCKER_PROBLEM, None)
    if problem and item.get_closest_marker("docker"):
        pytest.fail(f"Docker is required here (CI or --halab-require-docker) but unavailable: {problem}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"halab_rep_{rep.when}", rep)


def _failed(request: pytest.FixtureRequest) -> bool:
    rep = getattr(request.node, "halab_rep_call", None)
    return rep is None or rep.failed


@pytest.fixture(scope="session")
def halab_profile(request: pytest.FixtureRequest) -> str:
    """The node profile of the labs halab_lab_factory and halab_lab3 start."""
    return str(request.config.getoption("--halab-profile"))


@pytest.fixture
def halab_lab_factory(request: pytest.FixtureRequest, halab_profile: str) -> Iterator[Callable[..., Any]]:
    """make(nodes=3, **make_topology kwargs) -> Topology of a running, healthy lab."""
    from lab.cluster import lifecycle
    from lab.cluster.topology import make_topology

    started: list[Any] = []

    def make(nodes: int = 3, **kwargs: Any) -> Any:
        kwargs.setdefault("lab", unique_lab_name())
        kwargs.setdefault("ports", free_ports())
        kwargs.setdefault("profile", halab_profile)
        t = make_topology(nodes, **kwargs)
        started.append(t)
        lifecycle.up(t)
        return t

    try:
        yield make
    finally:
        for t in started:
            if _failed(request):
                lifecycle.dump_logs(t, tail=80)
                if request.config.getoption("--halab-keep"):
                    continue
            lifecycle.down(t.lab)


@pytest.fixture(scope="module")
def halab_lab3(request: pytest.FixtureRequest, halab_profile: str) -> Iterator[Any]:
    """A healthy 3-node lab shared by the tests of one module (torn down after the module)."""
    from lab.cluster import lifecycle
    from lab.cluster.topology import make_topology

    t = make_topology(3, lab=unique_lab_name("m"), ports=free_ports(), profile=halab_profile)
    try:
        lifecycle.up(t)
        yield t
    finally:
        if request.session.testsfailed:
            lifecycle.dump_logs(t, tail=80)
        lifecycle.down(t.lab)


# =============================================================================================
# Faults and scenarios (lab.faults, lab.scenario; owned with them)
#
# - fixture `halab_faults`: `bind(topology, seed=0)` -> a lab.faults.Injector for a running lab;
#   every fault it applied is healed at teardown, whatever the test did.
# - fixture `halab_scenario`: `run(path, lab=None)` -> lab.scenario.ScenarioResult; runs a scenario
#   file on a new lab (unique name, free ports, removed afterwards) or on `lab`, a running lab's
#   Topology whose shape matches the file. Assert on `result.passed` / `result.journal`.
# - collector: scenario files given to pytest (`pytest scenarios/` or `pytest scenarios/x.yaml`;
#   YAML files in a folder named `scenarios`, except claims.yaml) run as docker+slow tests that
#   fail when the scenario's verdict is not "passed". The default testpaths never include them.
# =============================================================================================


@pytest.fixture
def halab_faults() -> Iterator[Callable[..., Any]]:
    from lab.faults import Injector

    made: list[Any] = []

    def bind(t: Any, seed: int = 0) -> Any:
        inj = Injector(t, seed=seed)
        made.append(inj)
        return inj

    try:
        yield bind
    finally:
        for inj in made:
            inj.heal_all()


def _run_scenario(path: Any, rootpath: Any, lab_topology: Any = None) -> Any:
    from lab.chaos import scenario

    sc = scenario.load(path)
    if lab_topology is not None:
        return scenario.run(sc, lab_name=lab_topology.lab, runs_root=rootpath / "runs")
    return scenario.run(sc, lab_name=unique_lab_name("sc"), runs_root=rootpath / "runs", ports=free_ports())


@pytest.fixture
def halab_scenario(request: pytest.FixtureRequest) -> Callable[..., Any]:
    def run(path: Any, lab: Any = None) -> Any:
        return _run_scenario(path, request.config.rootpath, lab)

    return run


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    if (
        file_path.suffix in (".yaml", ".yml")
        and file_path.parent.name == "scenarios"
        and file_path.name != "claims.yaml"
    ):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        item = ScenarioItem.from_parent(self, name=self.path.stem)
        item.add_marker(pytest.mark.docker)
        item.add_marker(pytest.mark.slow)
        yield item


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        result = _run_scenario(self.path, self.config.rootpath)
        if not result.passed:
            raise ScenarioFailed(result.summary())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        from lab.core.errors import LabError

        if isinstance(excinfo.value, LabError):
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"scenario {self.name}"
