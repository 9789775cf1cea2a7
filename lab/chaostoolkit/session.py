"""What one experiment holds on one lab between its activities, in the `chaos` process: the run
directory, the watch recording probes and client requests into its history, the Injector of its
faults and its Locust process.

One session per lab and process. The control opens it before the experiment (`open_session`) and
ends it after (`end_session`); an activity run without the control opens one on first use,
without a watch. However the process ends, `close` runs (the control's hooks, then `atexit`): the
load is stopped, the faults this session applied are healed, the watch stops. Locust's own
`--run-time` and LoadRun's hard deadline bound the load even if the process is killed outright.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.chaos.watch import Watch
from lab.cluster import docker, state
from lab.cluster.topology import Topology
from lab.core import yamlspec as y
from lab.core.errors import BadInput, LabError
from lab.faults import Injector, shielded
from lab.record.history import HISTORY_FILE, JsonlWriter
from lab.record.load import LoadResult, LoadRun, LoadSpec, make_run_dir

log = logging.getLogger("halab.chaostoolkit.session")

CONFIG_LAB = "halab_lab"
CONFIG_RUNS = "halab_runs"
CONFIG_SEED = "halab_seed"
EXPERIMENTS_FILE = "experiments.jsonl"  # in the lab's state directory: every experiment run on it
WHERE = "experiment configuration"


@dataclass(frozen=True)
class Settings:
    """The experiment's `configuration` keys this extension reads, validated once."""

    lab: str
    runs: Path
    seed: int = 0

    @classmethod
    def of(cls, configuration: Mapping[str, Any] | None) -> Settings:
        c = configuration or {}
        if CONFIG_LAB not in c:
            raise BadInput(
                f"{WHERE}: {CONFIG_LAB} is missing: name the lab, e.g. "
                f'"configuration": {{"{CONFIG_LAB}": "halab"}} (or `chaos run --var {CONFIG_LAB}=NAME`)'
            )
        return cls(
            y.string(c[CONFIG_LAB], y.sub(WHERE, CONFIG_LAB)),
            Path(y.string(c.get(CONFIG_RUNS, "runs"), y.sub(WHERE, CONFIG_RUNS))),
            y.integer(c.get(CONFIG_SEED, 0), y.sub(WHERE, CONFIG_SEED), minimum=0),
        )


class Session:
    """One experiment on one lab; see the module docstring."""

    def __init__(self, settings: Settings, title: str) -> None:
        self.t: Topology = state.load_topology(settings.lab)  # a lab that is not there: said before Docker is asked
        docker.require_docker()
        self.settings = settings
        self.title = title
        self.run_dir = make_run_dir(f"ctk-{title}", settings.runs)
        self.started = time.time()
        self.injector = Injector(self.t, history=self.run_dir / HISTORY_FILE, seed=settings.seed)
        self.watch: Watch | None = None
        self.load: LoadRun | None = None
        self.loads: list[LoadResult] = []
        log.info(f"experiment {title!r} on lab {self.t.lab!r} -> {self.run_dir}")

    def start_watch(self) -> None:
        """Probe every node and write and read through the load balancer from now on, into the run's
        history: what `steady_state` and the checker judge."""
        if self.watch is None:
            self.watch = Watch(self.t, self.run_dir).__enter__()

    def start_load(self, spec: LoadSpec) -> LoadRun:
        if self.load is not None and self.load.running:
            raise BadInput(f"start_load: a load is already running in {self.run_dir}; stop_load first")
        self.stop_load()  # collect one that ended by itself: its records merged, its result kept
        self.load = LoadRun(spec, self.run_dir).start()
        return self.load

    def stop_load(self) -> LoadResult | None:
        """Stop the load now (None: none was started); a load that already ended is just collected."""
        load, self.load = self.load, None
        if load is None:
            return None
        result = load.stop()
        self.loads.append(result)
        return result

    def close(self) -> None:
        """Stop the load, heal what this session applied, stop the watch: each whatever the others do."""
        with shielded():
            try:
                self.stop_load()
            finally:
                try:
                    self.injector.heal_all()
                finally:
                    if self.watch is not None:
                        self.watch.__exit__(None, None, None)
                        self.watch = None

    def log_experiment(self, event: str, **fields: Any) -> None:
        """One line in the lab's experiments.jsonl: the lab's own record of what ran on it."""
        line = {"event": event, "t": time.time(), "title": self.title, "run_dir": str(self.run_dir), **fields}
        with JsonlWriter(state.lab_dir(self.t.lab) / EXPERIMENTS_FILE) as w:
            w.write_lines([json.dumps(line, default=str)])


def load_dict(r: LoadResult) -> dict[str, Any]:
    return {**asdict(r), "run_dir": str(r.run_dir)}


_sessions: dict[str, Session] = {}
_lock = threading.Lock()


def open_session(configuration: Mapping[str, Any] | None, title: str) -> Session:
    """A new session (with its watch) for the experiment; one left open on the lab is closed first."""
    settings = Settings.of(configuration)
    with _lock:
        stale = _sessions.pop(settings.lab, None)
    if stale is not None:
        stale.close()
    s = Session(settings, title)
    try:
        s.start_watch()
    except BaseException:
        s.close()
        raise
    with _lock:
        _sessions[settings.lab] = s
    return s


def current(configuration: Mapping[str, Any] | None) -> Session:
    """The lab's open session, or a new one without a watch for an experiment run without the control."""
    settings = Settings.of(configuration)
    with _lock:
        s = _sessions.get(settings.lab)
        if s is None:
            s = _sessions[settings.lab] = Session(settings, "chaostoolkit")
        return s


def end_session(configuration: Mapping[str, Any] | None) -> Session | None:
    """Take the lab's session out of the registry (the caller closes it)."""
    with _lock:
        return _sessions.pop(Settings.of(configuration).lab, None)


def close_all() -> None:
    """Close every session still open (the control's cleanup, and at exit)."""
    with _lock:
        left = list(_sessions.values())
        _sessions.clear()
    for s in left:
        log.info(f"closing the session of {s.title!r} on lab {s.t.lab!r}: no control ended it")
        try:
            s.close()
        except LabError as exc:  # the next session must still be closed
            log.error(f"closing the session of {s.title!r}: {exc}")


atexit.register(close_all)
