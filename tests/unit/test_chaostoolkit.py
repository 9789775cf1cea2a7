"""The Chaos Toolkit extension without Docker: the example experiment against chaoslib's own
validator, the arguments each activity refuses (before touching a lab), and a session's teardown
on every path, with the lab's pieces faked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.chaostoolkit import actions, control, session
from lab.cluster import state
from lab.cluster.topology import make_topology
from lab.core import paths
from lab.core.errors import BadInput, RuntimeFailure

EXAMPLES = sorted((paths.SCENARIOS / "chaostoolkit").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_example_experiments_satisfy_chaoslib_and_name_our_functions(path: Path) -> None:
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment

    experiment = load_experiment(str(path))
    ensure_experiment_is_valid(experiment)  # imports each module and matches arguments to signatures
    activities = [
        *experiment["steady-state-hypothesis"]["probes"],
        *experiment["method"],
        *experiment.get("rollbacks", []),
    ]
    assert all(a["provider"]["module"].startswith("lab.chaostoolkit.") for a in activities)
    assert [c["provider"]["module"] for c in experiment["controls"]] == ["lab.chaostoolkit.control"]
    assert "halab_lab" in experiment["configuration"]


def test_kill_leader_kills_the_leader_and_its_rollbacks_heal_and_stop_the_load() -> None:
    experiment = json.loads((paths.SCENARIOS / "chaostoolkit" / "kill-leader.json").read_text())
    calls = [(a["provider"]["func"], a["provider"].get("arguments", {})) for a in experiment["method"]]
    assert ("fault", {"kind": "kill", "target": "leader", "hold": "10s"}) in calls
    assert [a["provider"]["func"] for a in experiment["rollbacks"]] == ["heal", "stop_load"]
    assert [p["provider"]["func"] for p in experiment["steady-state-hypothesis"]["probes"]] == ["steady_state"]


def test_the_extension_imports_without_chaostoolkit() -> None:
    code = (
        "import sys; sys.modules['chaoslib'] = None; sys.modules['chaostoolkit'] = None\n"
        "import lab.chaostoolkit.actions, lab.chaostoolkit.probes, lab.chaostoolkit.control\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=paths.PACKAGE.parent)


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        (None, "halab_lab is missing"),
        ({"halab_lab": ""}, "halab_lab"),
        ({"halab_lab": "x", "halab_seed": -1}, "halab_seed"),
    ],
)
def test_settings_name_the_configuration_key_at_fault(configuration: Any, field: str) -> None:
    with pytest.raises(BadInput, match=f"experiment configuration.*{field}"):
        session.Settings.of(configuration)


def test_settings_defaults() -> None:
    assert session.Settings.of({"halab_lab": "ct"}) == session.Settings("ct", Path("runs"), 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"duration": "1m", "users": 0}, r"start_load.users"),
        ({"duration": "1m", "users": actions.MAX_USERS + 1}, r"start_load.users"),
        ({"duration": "forever"}, r"start_load.duration"),
        ({"duration": 0}, r"start_load.duration"),
        ({"duration": "1m", "spawn_rate": 0}, r"start_load.spawn_rate"),
    ],
)
def test_start_load_is_bounded_before_it_touches_a_lab(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        actions.start_load(configuration={"halab_lab": "no-such-lab"}, **arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "kill", "targett": "leader"}, r"targett"),
        ({"kind": "kill", "target": "leader", "hold": "soon"}, r"fault.hold"),
        ({"kind": "split", "sides": "dc-a"}, r"fault.sides"),
    ],
)
def test_fault_names_the_argument_at_fault(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        actions.fault(configuration={"halab_lab": "no-such-lab"}, **arguments)


# ------------------------------------------------------------------------- sessions, faked lab


class FakeLoad:
    def __init__(self, spec: Any, run_dir: Path) -> None:
        self.spec, self.run_dir, self.stopped, self.fail = spec, run_dir, False, False

    def start(self) -> FakeLoad:
        fakes["loads"].append(self)
        return self

    @property
    def running(self) -> bool:
        return not self.stopped

    def stop(self) -> Any:
        self.stopped = True
        if self.fail:
            raise RuntimeFailure("Locust would not stop")
        return "result"


class FakeInjector:
    def __init__(self, t: Any, history: Any, seed: int) -> None:
        self.healed = 0
        fakes["injectors"].append(self)

    def heal_all(self) -> list[Any]:
        self.healed += 1
        return []


class FakeWatch:
    def __init__(self, t: Any, run_dir: Any = None) -> None:
        self.open = False
        fakes["watches"].append(self)

    def __enter__(self) -> FakeWatch:
        self.open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False


fakes: dict[str, list[Any]] = {}


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    fakes.update(loads=[], injectors=[], watches=[])
    monkeypatch.setenv("HALAB_HOME", str(tmp_path / "home"))
    t = make_topology(3, lab="ct")
    monkeypatch.setattr(session.docker, "require_docker", lambda: None)
    monkeypatch.setattr(session.state, "load_topology", lambda name: t)
    monkeypatch.setattr(session.state, "ca_path", lambda name: Path(__file__))
    monkeypatch.setattr(session, "Injector", FakeInjector)
    monkeypatch.setattr(session, "Watch", FakeWatch)
    monkeypatch.setattr(session, "LoadRun", FakeLoad)
    yield {"halab_lab": "ct", "halab_runs": str(tmp_path / "runs")}
    session.close_all()


def test_the_control_watches_from_the_start_and_tears_everything_down_after(lab: dict[str, Any], monkeypatch) -> None:
    control.before_experiment_control({"title": "kill it"}, configuration=lab)
    s = session.current(lab)
    assert s.run_dir.name.endswith("-ctk-kill-it") and fakes["watches"][0].open
    actions.start_load(duration="30s", users=2, configuration=lab)
    with pytest.raises(BadInput, match="already running"):
        actions.start_load(duration="30s", configuration=lab)
    monkeypatch.setattr(control, "finish", lambda s, journal: {"run_dir": str(s.run_dir), "verdict": "passed"})
    journal: dict[str, Any] = {"status": "completed", "deviated": False}
    control.after_experiment_control({"title": "kill it"}, state=journal, configuration=lab)
    (load,) = fakes["loads"]
    assert load.stopped and fakes["injectors"][0].healed == 1 and not fakes["watches"][0].open
    assert journal["halab"]["verdict"] == "passed"
    lines = [json.loads(x) for x in (state.lab_dir("ct") / session.EXPERIMENTS_FILE).read_text().splitlines()]
    assert [(e["event"], e["title"], e["run_dir"]) for e in lines] == [
        ("started", "kill it", str(s.run_dir)),
        ("ended", "kill it", str(s.run_dir)),
    ]
    assert (lines[-1]["status"], lines[-1]["verdict"]) == ("completed", "passed")
    assert session.end_session(lab) is None  # nothing left open


def test_a_load_that_will_not_stop_still_leaves_the_faults_healed_the_watch_stopped_and_the_run_recorded(
    lab: dict[str, Any], monkeypatch
) -> None:
    control.before_experiment_control({"title": "x"}, configuration=lab)
    actions.start_load(duration="30s", configuration=lab)
    fakes["loads"][0].fail = True
    judged = []
    monkeypatch.setattr(control, "finish", lambda s, journal: judged.append(s) or {"verdict": "passed"})
    journal: dict[str, Any] = {"status": "completed"}
    control.after_experiment_control({"title": "x"}, state=journal, configuration=lab)
    assert journal["halab"]["error"] == "tearing down: Locust would not stop" and len(judged) == 1
    assert fakes["injectors"][0].healed == 1 and not fakes["watches"][0].open
    ended = json.loads((state.lab_dir("ct") / session.EXPERIMENTS_FILE).read_text().splitlines()[-1])
    assert ended["event"] == "ended" and ended["error"] == journal["halab"]["error"]


def test_stop_load_without_a_load_says_so_and_cleanup_closes_what_nothing_ended(lab: dict[str, Any]) -> None:
    assert actions.stop_load(configuration=lab) == {"stopped": False, "why": "no load was running"}
    actions.start_load(duration="10s", configuration=lab)  # no control: a session without a watch
    assert fakes["watches"] == []
    control.cleanup_control()
    assert fakes["loads"][0].stopped and fakes["injectors"][0].healed == 1


def test_a_lab_that_cannot_be_watched_interrupts_the_experiment(lab: dict[str, Any], monkeypatch) -> None:
    from chaoslib.exceptions import InterruptExecution

    def missing(name: str) -> Any:
        raise BadInput(f"no lab named {name!r} here")

    monkeypatch.setattr(session.state, "load_topology", missing)
    with pytest.raises(InterruptExecution, match="no lab named 'ct'"):
        control.before_experiment_control({"title": "x"}, configuration=lab)


def test_a_load_that_ended_by_itself_is_collected_before_the_next_starts(lab: dict[str, Any]) -> None:
    actions.start_load(duration="5s", configuration=lab)
    first = fakes["loads"][0]
    first.stopped = True  # its --run-time passed
    actions.start_load(duration="5s", configuration=lab)
    assert session.current(lab).loads == ["result"] and len(fakes["loads"]) == 2


def test_checker_verdict_judges_a_fault_still_held_as_ending_now_without_recording_it(lab, monkeypatch) -> None:
    from lab.chaostoolkit import probes
    from lab.faults import Registry, make_spec
    from lab.record.history import load_run

    s = session.current(lab)
    spec = make_spec("kill", ["a1"])
    Registry("ct").add({"spec": spec.to_dict(), "targets": ["a1"], "t0": time.time(), "phase": "active"})
    monkeypatch.setattr(probes, "lab_query", lambda t: lambda sql: [])  # an empty database
    v = probes.checker_verdict(configuration=lab)
    assert [(f["fault"], f["targets"]) for f in v["faults"]] == [("kill", ["a1"])]
    assert v["verdict"] == "failed" and v["requests"] == 0  # nothing checked passes nothing
    assert load_run(s.run_dir).faults == ()  # its heal records it, with its real end
