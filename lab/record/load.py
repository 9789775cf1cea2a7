"""Locust load through the lab's load balancer, as a bounded subprocess.

`LoadRun` is the start/stop object a scenario runs beside its fault schedule; `run_load` is the
blocking call behind `halab load`. Either way Locust runs headless (or with its web UI on
127.0.0.1 and `--autostart`/`--autoquit`), always with `--run-time` and under a hard deadline
after which its process group is killed, so no load outlives its bound.

What a run leaves in its directory `runs/<UTC timestamp>-<name>/` (see docs/architecture.md):
`history.jsonl`, `ledger.jsonl` and `ops.jsonl` (merged from the per-process files the
locustfile writes under `parts/`), Locust's `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv`,
`locust_exceptions.csv` and `locust.html`, its log `locust.log` (and console `locust.out`), and
`load.json` (the spec, the command and how it ended). A run of Locust's master and workers on a
swarm lab's hosts (lab/record/distributed.py) leaves the same, and each worker's `locust-<w>.log`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from lab.cluster import cpu
from lab.core import paths
from lab.core.errors import BadInput, RuntimeFailure
from lab.record import history, registers

log = logging.getLogger("halab.record.load")

PACKAGE_PARENT = paths.PACKAGE.parent  # on the Locust process's PYTHONPATH: the locustfiles import `lab`
DEFAULT_LOCUSTFILE = paths.LOADTESTS / "rancher.py"
LOAD_HOST = "127.0.0.1"  # load goes to the lab's load balancer on this machine, nowhere else
# Time Locust may take to start (and, with --processes, for its workers to connect) and to write
# its reports, on top of --run-time and --stop-timeout, before the hard deadline kills it.
STARTUP_GRACE = 30.0
REPORT_GRACE = 30.0
AUTOQUIT = 20  # seconds the web UI (when asked for) outlives the run; within REPORT_GRACE

_NAME = re.compile(r"[^a-z0-9_-]+")
# Locust's own warning threshold: above it, its figures say how fast Locust is, not the lab.
GENERATOR_HOT = 0.9
GENERATOR_INTERVAL = 1.0  # seconds between readings of Locust's CPU
# What Locust logs when it runs hot (locust/runners.py), kept as evidence beside our own reading.
LOCUST_CPU_WARNING = "CPU usage above"


def make_run_dir(name: str, root: str | os.PathLike[str] = "runs", now: datetime | None = None) -> Path:
    """Create `root/<UTC timestamp>-<name>/`, a fresh directory even for two runs in one second."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    slug = _NAME.sub("-", name.lower()).strip("-") or "run"
    base = Path(root) / f"{stamp}-{slug}"
    for i in range(1, 100):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeFailure(f"cannot create a fresh run directory under {root}")


@dataclass(frozen=True)
class LoadSpec:
    name: str = "load"
    users: int = 10
    spawn_rate: float = 5.0
    duration: float = 20.0  # seconds; lab.core.durations.parse_duration turns "20s"/"2m" into this
    http_port: int = 80
    https_port: int = 443
    ca_file: str | None = None  # the lab CA; without it agents (TLS) are not run
    user_classes: tuple[str, ...] = ()  # () = every user class the locustfile has
    processes: int = 1  # >1: Locust's --processes (a master and that many forked workers)
    web_port: int | None = None  # serve Locust's web UI on 127.0.0.1:<port> during the run
    stop_timeout: float = 5.0  # seconds users get to finish their task at the end
    locustfile: str = str(DEFAULT_LOCUSTFILE)
    env: Mapping[str, str] = field(default_factory=dict)  # extra HALAB_* knobs for the locustfile

    def __post_init__(self) -> None:
        for what, value, low in (("--users", self.users, 1), ("--processes", self.processes, 1)):
            if value < low:
                raise BadInput(f"{what}: {value} must be at least {low}")
        if not self.spawn_rate > 0:
            raise BadInput(f"--spawn-rate: {self.spawn_rate} must be positive")
        if not 0 < self.duration < math.inf:
            raise BadInput(f"--duration: {self.duration} must be a positive, finite number of seconds")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise BadInput(f"--ca-file: {self.ca_file} does not exist (the lab's CA is tls/ca.crt in its state dir)")
        if not Path(self.locustfile).is_file():
            raise BadInput(f"--locustfile: {self.locustfile} does not exist")

    @property
    def hard_timeout(self) -> float:
        """Seconds after which the Locust process group is killed whatever it is doing."""
        return STARTUP_GRACE + self.duration + self.stop_timeout + REPORT_GRACE

    def command(self, run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "locust", *self.locust_args(str(run_dir), f"http://{LOAD_HOST}:{self.http_port}")]

    def locust_args(
        self, out_dir: str, host_url: str, locustfile: str | None = None, extra: Sequence[str] = ()
    ) -> list[str]:
        """Locust's arguments: its reports under `out_dir`, its users' requests to `host_url`
        (this run's, or those of a master on a swarm host: lab/record/distributed.py), `extra`
        before the user classes."""
        cmd = [
            "-f",
            locustfile or self.locustfile,
            "--host",
            host_url,
            "--users",
            str(self.users),
            "--spawn-rate",
            f"{self.spawn_rate:g}",
            "--run-time",
            f"{math.ceil(self.duration)}s",
            "--stop-timeout",
            f"{self.stop_timeout:g}",
            "--csv",
            f"{out_dir}/locust",
            "--csv-full-history",
            "--html",
            f"{out_dir}/locust.html",
            "--logfile",
            f"{out_dir}/locust.log",
            "--only-summary",
            # Failed requests are data here, not a failed run: a non-zero exit means Locust broke.
            "--exit-code-on-error",
            "0",
        ]
        if self.web_port is None:
            cmd.append("--headless")
        else:
            # The UI stays up AUTOQUIT seconds after the run to be looked at, then Locust exits.
            cmd += [
                "--autostart",
                "--autoquit",
                str(AUTOQUIT),
                "--web-host",
                LOAD_HOST,
                "--web-port",
                str(self.web_port),
            ]
        if self.processes > 1:
            cmd += ["--processes", str(self.processes)]
        return cmd + list(extra) + list(self.user_classes)

    def environment(self, run_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p)
        env.update(self.halab_env(str(run_dir / history.PARTS_DIR), f"https://{LOAD_HOST}:{self.https_port}"))
        env["HALAB_CA_FILE"] = self.ca_file or ""
        return env

    def halab_env(self, parts_dir: str, https_url: str) -> dict[str, str]:
        """What the locustfiles read: the spec's knobs, where to record, the agents' HTTPS URL."""
        return {**self.env, "HALAB_PARTS_DIR": parts_dir, "HALAB_HTTPS_URL": https_url}


@dataclass(frozen=True)
class GeneratorCpu:
    """Locust's own CPU over a run: the hottest of its processes, as a share of one CPU (each is
    one Python process: it cannot use more)."""

    peak: float  # the highest share any process reached over one interval
    mean: float  # the hottest process's share, averaged over the run's intervals
    processes: int  # the most processes seen at once (a master and its workers with --processes)
    warned: bool = False  # Locust logged its own "CPU usage above 90%" warning

    @property
    def hot(self) -> bool:
        return self.peak >= GENERATOR_HOT or self.warned

    def figures_line(self) -> str:
        return f"Locust's CPU: peak {self.peak:.0%}, mean {self.mean:.0%} of one CPU over {self.processes} process(es)"

    def hint(self, processes: int) -> str:
        """One line for a hot generator: the figures are its, and what to do."""
        return (
            f"the load generator ran hot (Locust at {self.peak:.0%} of a CPU"
            + (", and it warned" if self.warned else "")
            + f"): throughput and latency are bounded by Locust, not the lab; rerun with --processes "
            f"{max(2, processes * 2)}"
        )


class GeneratorMeter:
    """Reads the CPU of Locust's process group every GENERATOR_INTERVAL on a thread of its own."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.shares: list[tuple[float, float]] = []  # (epoch seconds, hottest process's share)
        self._processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="locust-cpu", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def latest(self) -> float | None:
        return self.shares[-1][1] if self.shares else None

    def _run(self) -> None:
        prev, t_prev = cpu.process_group_cpu(self.pgid), time.monotonic()
        while not self._stop.wait(GENERATOR_INTERVAL):
            cur, now = cpu.process_group_cpu(self.pgid), time.monotonic()
            if cur:
                self._processes = max(self._processes, len(cur))
                self.shares.append(
                    (time.time(), max(cpu.process_shares(prev, cur, now - t_prev).values(), default=0.0))
                )
            prev, t_prev = cur, now

    def figures(self, log_text: str) -> GeneratorCpu | None:
        if not self.shares:
            return None
        values = [s for _, s in self.shares]
        return GeneratorCpu(
            round(max(values), 3), round(sum(values) / len(values), 3), self._processes, LOCUST_CPU_WARNING in log_text
        )


@dataclass(frozen=True)
class LoadResult:
    run_dir: Path
    returncode: int | None  # None: killed
    started: float
    ended: float
    stopped_early: bool  # stop() was called before Locust's own --run-time ended it
    killed: bool  # at the hard deadline, or because it ignored stop()'s SIGINT
    records: int  # history and ledger records merged from the per-process parts
    ops: int = 0  # register operations merged into ops.jsonl (loadtests/registers.py)
    generator_cpu: GeneratorCpu | None = None  # None: not read (a run too short for one interval)
    workers: Mapping[str, int] = field(default_factory=dict)  # Locust worker on a swarm host -> requests it counted

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.killed


class LoadRun:
    """One Locust subprocess: `start()`, then `wait()` (its own end) or `stop()` (now).

    As a context manager it starts on entry and stops on exit, so an exception in a fault
    schedule never leaves load running:

        with LoadRun(spec, run_dir) as load:
            ...apply and heal faults while the load runs...
            result = load.wait()
    """

    def __init__(
        self,
        spec: LoadSpec,
        run_dir: Path | None = None,
        runs_root: str | os.PathLike[str] = "runs",
    ) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir) if run_dir is not None else make_run_dir(spec.name, runs_root)
        self.result: LoadResult | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._stop_requested = False
        self._deadline_hit = False
        self._watchdog: threading.Timer | None = None
        self.generator: GeneratorMeter | None = None

    def start(self) -> LoadRun:
        if self._proc is not None:
            raise RuntimeFailure("this load run was already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.spec.command(self.run_dir)
        self._started = time.time()
        with open(self.run_dir / "locust.out", "ab") as out:
            # A new session: the hard deadline kills Locust's forked workers with it, and a
            # Ctrl-C meant for the harness does not reach Locust before stop() does.
            self._proc = subprocess.Popen(
                cmd,
                env=self.spec.environment(self.run_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.generator = GeneratorMeter(self._proc.pid)  # its own session: the group id is its pid
        self.generator.start()
        # The deadline holds even when nobody waits on the run (a scenario busy with its faults).
        self._watchdog = threading.Timer(self.spec.hard_timeout, self._deadline)
        self._watchdog.daemon = True
        self._watchdog.start()
        where = f"web UI http://{LOAD_HOST}:{self.spec.web_port}/" if self.spec.web_port else "headless"
        log.info(f"load: {self.spec.users} users for {self.spec.duration:g}s ({where}) -> {self.run_dir}")
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> LoadResult:
        """Block until Locust ends by itself (or is killed at the hard deadline), then merge."""
        if self.result is not None:
            return self.result
        self._require_started().wait()
        return self._finish(False)

    def stop(self, grace: float | None = None) -> LoadResult:
        """End the run now: SIGINT lets Locust stop its users and write CSV and HTML reports."""
        if self.result is not None:
            return self.result
        proc = self._require_started()
        killed = False
        if proc.poll() is None:
            self._stop_requested = True
            proc.send_signal(signal.SIGINT)  # Locust saves its HTML report on SIGINT, not on SIGTERM
            try:
                proc.wait(timeout=grace if grace is not None else self.spec.stop_timeout + REPORT_GRACE)
            except subprocess.TimeoutExpired:
                killed = True
                self._kill_group()
        return self._finish(killed)

    def __enter__(self) -> LoadRun:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self.stop()

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeFailure("this load run was never started")
        return self._proc

    def _kill_group(self) -> None:
        proc = self._require_started()
        if proc.poll() is None:  # not reaped yet, so its pid (= its group id) is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created: Locust and its workers

    def _deadline(self) -> None:
        if self.running:
            self._deadline_hit = True
            self._kill_group()

    def _finish(self, killed: bool) -> LoadResult:
        proc = self._require_started()
        proc.wait()
        if self._watchdog is not None:
            self._watchdog.cancel()
        killed = killed or self._deadline_hit
        generator = None
        if self.generator is not None:
            self.generator.stop()
            log_file = self.run_dir / "locust.log"
            generator = self.generator.figures(log_file.read_text(errors="replace") if log_file.exists() else "")
        records = history.merge_parts(self.run_dir)
        ops = registers.merge_ops(self.run_dir)
        self.result = LoadResult(
            run_dir=self.run_dir,
            returncode=None if killed else proc.returncode,
            started=self._started,
            ended=time.time(),
            stopped_early=self._stop_requested,
            killed=killed,
            records=records,
            ops=ops,
            generator_cpu=generator,
        )
        history.write_json(
            self.run_dir / "load.json",
            {
                "spec": {**asdict(self.spec), "env": dict(self.spec.env)},
                "command": self.spec.command(self.run_dir),
                "result": {**asdict(self.result), "run_dir": str(self.run_dir)},
            },
        )
        how = "killed" if killed else f"exit {self.result.returncode}"
        cpu_note = f", Locust CPU peak {generator.peak:.0%} of one CPU" if generator else ""
        log.info(f"load: ended ({how}), {records} records, {ops} register ops{cpu_note}")
        if generator is not None and generator.hot:
            log.warning(f"load: {generator.hint(self.spec.processes)}")
        return self.result


class Load(Protocol):
    """A bounded load run: this machine's Locust (LoadRun) or Locust on a swarm's hosts
    (lab/record/distributed.py `SwarmLoadRun`)."""

    run_dir: Path
    generator: GeneratorMeter | None  # None: Locust's CPU is not read here

    def start(self) -> Load: ...

    def wait(self) -> LoadResult: ...

    def stop(self, grace: float | None = None) -> LoadResult: ...


def run_load(
    spec: LoadSpec,
    run_dir: Path | None = None,
    runs_root: str | os.PathLike[str] = "runs",
    observe: Callable[[Load], AbstractContextManager[object]] | None = None,
    load: Load | None = None,
) -> LoadResult:
    """Run the load (`load`, else this machine's Locust) to its end (Ctrl-C stops it early,
    keeping what was recorded); `observe(load)`, a context manager, runs beside it from its start
    to its end (the capacity sampler does)."""
    load = (load or LoadRun(spec, run_dir, runs_root)).start()
    try:
        with observe(load) if observe else contextlib.nullcontext():
            result = load.wait()
    except KeyboardInterrupt:
        load.stop()
        raise
    if not result.ok:
        raise RuntimeFailure(
            f"Locust {'had to be killed' if result.killed else f'exited {result.returncode}'}; "
            f"see {result.run_dir / 'locust.log'} and {result.run_dir / 'locust.out'}"
        )
    return result
