"""Locust in distributed mode on a swarm lab's hosts (`halab load --workers N [--worker-hosts H,...]`).

A master and N workers, each a container of `halab/loadgen` (Debian's python3-locust, the
locustfiles and the recording code: one image, hence one Locust, which `start` checks in every
container, since Debian's package carries no version for Locust's own check to compare) started
by the Docker of a host of the lab's group on the lab's `front` overlay. The workers reach the
master by its container name and the load balancer by its service name `lb` (its certificate
names `lb`) over the swarm's network, not through this machine's loopback. The master runs on the
manager; the workers on `--worker-hosts` (default: every host of the group), in turn.

Each worker records its own history, ledger and ops parts, named after it (containers may share
pids), and says how many requests and acknowledged writes it recorded (loadtests/recording.py).
After the run the master's reports and log and every worker's parts and log are copied back into
the run directory and merged as a local run's (lab/record/load.py), and the merged history must
hold exactly the requests the workers counted: a difference is an error naming both numbers.

Bounded as a local run: Locust's --run-time, then a hard deadline at which every container is
killed. Every container is removed on every path (its end, stop(), Ctrl-C, the deadline, a failed
start); they carry the lab's label, so `halab down` also removes what a killed harness left.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lab.cluster import compose, docker, engine, hosts, images, stack, state
from lab.cluster.topology import Topology
from lab.core import paths
from lab.core.errors import BadInput, RuntimeFailure
from lab.record import history, registers
from lab.record.load import REPORT_GRACE, STARTUP_GRACE, GeneratorMeter, LoadResult, LoadSpec, make_run_dir

log = logging.getLogger("halab.record.distributed")

IMAGE = "loadgen"  # lab/cluster/images.py role of compose/images/loadgen
HOME = "/run/halab"  # the image's working folder: the master's reports and log, a worker's parts
LOADTESTS = "/opt/halab/loadtests"  # where the image keeps loadtests/
LOCUST_PACKAGE = "python3-locust"
LB = "lb"  # the load balancer's name on the lab's networks
NETWORK = "front"  # the lab's overlay the load balancer is on (attachable)
MASTER_PORT = 5557
MAX_WORKERS = 8
WORKER_GRACE = 30.0  # seconds the workers get to quit after their master has
COPY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Member:
    """One Locust process of the run: its name ("master", "w1", ...), host and container."""

    name: str
    host: hosts.Host
    container: str

    def command(self, *args: str) -> list[str]:
        return self.host.command(*args)


@dataclass(frozen=True)
class Placement:
    run_id: str  # in the members' container names and their `halab.load` label
    master: Member
    workers: tuple[Member, ...]

    @property
    def members(self) -> tuple[Member, ...]:
        return (self.master, *self.workers)

    @property
    def hosts(self) -> tuple[hosts.Host, ...]:
        return tuple(dict.fromkeys(m.host for m in self.members))


def place(t: Topology, workers: object, worker_hosts: Sequence[str] = (), run_id: str = "") -> Placement:
    """Validate `--workers`/`--worker-hosts` for lab `t` and name each member's host and container."""
    if not t.engine.swarm:
        # A local process is not a worker on another host: mapping --workers onto --processes
        # would measure something else under the same name.
        raise BadInput(
            f"--workers: lab {t.lab!r} runs on compose, and Locust's workers run on a swarm lab's hosts; "
            "use --processes N for Locust's workers on this machine"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise BadInput(f"--workers: {workers!r} is not a number of workers from 1 to {MAX_WORKERS}")
    if len(set(worker_hosts)) != len(worker_hosts):
        raise BadInput(f"--worker-hosts: {','.join(worker_hosts)} names a host twice")
    group = engine.group(t)
    chosen = [group.host(name, "--worker-hosts") for name in worker_hosts] or list(group.hosts)
    run_id = run_id or uuid.uuid4().hex[:6]
    base = f"{t.lab}-locust-{run_id}"
    return Placement(
        run_id,
        Member("master", group.manager, f"{base}-master"),
        tuple(Member(f"w{i}", chosen[(i - 1) % len(chosen)], f"{base}-w{i}") for i in range(1, workers + 1)),
    )


def locustfile_inside(spec: LoadSpec) -> str:
    """The image's copy of the spec's locustfile (only loadtests/ is in the image)."""
    path = Path(spec.locustfile).resolve()
    if path.parent != paths.LOADTESTS.resolve():
        raise BadInput(
            f"--locustfile: {spec.locustfile} is not in {paths.LOADTESTS}, which is all the loadgen image has"
        )
    return f"{LOADTESTS}/{path.name}"


def check_spec(spec: LoadSpec) -> None:
    if spec.processes > 1:
        raise BadInput("--processes: with --workers, Locust's workers run on the swarm's hosts; give one or the other")
    if spec.web_port is not None:
        raise BadInput("--web: Locust's master runs on a swarm host, where its web UI is not published")
    locustfile_inside(spec)


def run_command(t: Topology, spec: LoadSpec, placement: Placement, member: Member, image: str) -> list[str]:
    """`docker run` of one member on its host's Docker, on the lab's front overlay."""
    inner = dict(compose.published(t)["lb"])  # published port -> the load balancer's own
    env = spec.halab_env(f"{HOME}/{history.PARTS_DIR}", f"https://{LB}:{inner[t.ports.https]}")
    env["HALAB_CA_PEM"] = state.ca_path(t.lab).read_text() if spec.ca_file else ""
    locustfile = locustfile_inside(spec)
    if member == placement.master:
        del env["HALAB_PARTS_DIR"]  # the master runs no users: it records nothing
        args = spec.locust_args(
            HOME,
            f"http://{LB}:{inner[t.ports.http]}",
            locustfile,
            extra=[
                *("--master", "--master-bind-port", str(MASTER_PORT)),
                *("--expect-workers", str(len(placement.workers))),
                # Locust's own bound on the wait for them; the run's deadline allows the same.
                *("--expect-workers-max-wait", f"{STARTUP_GRACE:g}"),
            ],
        )
    else:
        env["HALAB_WORKER"] = member.name
        args = ["-f", locustfile, "--worker", "--master-host", placement.master.container]
        args += ["--master-port", str(MASTER_PORT), "--logfile", f"{HOME}/locust.log"]
    labels = compose.labels(t, "load", **{"halab.load": placement.run_id, "halab.load.member": member.name})
    return member.command(
        "run",
        "-d",
        "--name",
        member.container,
        "--network",
        stack.network_name(t, NETWORK),
        *(a for k, v in labels.items() for a in ("--label", f"{k}={v}")),
        *(a for k, v in sorted(env.items()) for a in ("-e", f"{k}={v}")),
        image,
        *args,
    )


def unpack(data: bytes, member: Member, run_dir: Path) -> list[Path]:
    """Files of a copy of HOME (`docker cp` tar) that belong in the run directory: the master's
    reports and log as a local run's, a worker's parts, and its log as `locust-<worker>.log`."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            rel = PurePosixPath(info.name)
            if not info.isfile() or rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2:
                continue
            rel = PurePosixPath(*rel.parts[1:])  # without HOME's own folder
            if member.name == "master":
                target = rel if len(rel.parts) == 1 and rel.name.startswith("locust") else None
            elif rel.parts[0] == history.PARTS_DIR:
                target = rel
            else:
                target = PurePosixPath(f"locust-{member.name}.log") if rel == PurePosixPath("locust.log") else None
            f = tar.extractfile(info)
            if target is None or f is None:
                continue
            path = run_dir.joinpath(*target.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.read())
            out.append(path)
    return out


def take_counts(run_dir: Path, names: Collection[str]) -> dict[str, dict[str, int]]:
    """worker -> the requests and acks it said it recorded (its count files, removed once read as
    its parts are once merged); a worker without one is absent."""
    out: dict[str, dict[str, int]] = {}
    for path in sorted((run_dir / history.PARTS_DIR).glob("count-*.json")):
        worker = path.stem.removeprefix("count-").split("-")[0]
        if worker in names:
            counts = json.loads(path.read_text())
            mine = out.setdefault(worker, {"requests": 0, "acks": 0})
            for k in mine:
                mine[k] += int(counts.get(k, 0))
        path.unlink()
    return out


def merged_requests(run_dir: Path, names: Collection[str]) -> dict[str, int]:
    """worker -> its requests in the run's merged history."""
    out = dict.fromkeys(sorted(names), 0)
    for r in history.load_run(run_dir).requests:
        worker = r.worker.split("-")[0]
        if worker in names:
            out[worker] += 1
    return out


def check_counts(counted: dict[str, dict[str, int]], merged: dict[str, int]) -> None:
    """The merged history holds exactly the requests the workers counted."""
    missing = [w for w in merged if w not in counted]
    if missing:
        raise RuntimeFailure(f"Locust worker(s) {', '.join(missing)} left no count of their requests")
    total = sum(c["requests"] for c in counted.values())
    if sum(merged.values()) != total:
        own = {w: c["requests"] for w, c in counted.items()}
        raise RuntimeFailure(
            f"the merged history holds {sum(merged.values())} requests of the workers, who counted {total} "
            f"(merged per worker {merged}; counted {own})"
        )


class SwarmLoadRun:
    """Locust's master and workers on a swarm lab's hosts; `start()`, then `wait()` or `stop()`,
    as `LoadRun` (lab/record/load.py), whose result and run directory it makes."""

    generator: GeneratorMeter | None = None  # Locust's CPU is on the hosts, not read here

    def __init__(
        self,
        t: Topology,
        spec: LoadSpec,
        placement: Placement,
        run_dir: Path | None = None,
        runs_root: str = "runs",
    ) -> None:
        check_spec(spec)
        self.t, self.spec, self.placement = t, spec, placement
        self.run_dir = Path(run_dir) if run_dir is not None else make_run_dir(spec.name, runs_root)
        self.result: LoadResult | None = None
        self.image = ""
        self.versions: dict[str, str] = {}
        self._started = 0.0
        self._stop_requested = False
        self._deadline_hit = False
        self._removed = False
        self._watchdog: threading.Timer | None = None

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> SwarmLoadRun:
        if self._started:
            raise RuntimeFailure("this load run was already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.image = images.build(only=(IMAGE,))[IMAGE]
        hosts.ensure_images(engine.group(self.t), [self.image], on=self.placement.hosts)
        self._started = time.time()
        try:
            for m in self.placement.members:
                cmd = run_command(self.t, self.spec, self.placement, m, self.image)
                docker.run(cmd, f"start Locust's {m.name} on {m.host.name}", timeout=60)
            self.versions = self._versions()
        except BaseException:
            self._collect()
            self._remove()
            raise
        # The deadline holds even when nobody waits on the run (a scenario busy with its faults).
        self._watchdog = threading.Timer(self.spec.hard_timeout, self._deadline)
        self._watchdog.daemon = True
        self._watchdog.start()
        where = ", ".join(f"{w.name} on {w.host.name}" for w in self.placement.workers)
        log.info(
            f"load: {self.spec.users} users for {self.spec.duration:g}s, Locust {self.versions['master']} "
            f"master on {self.placement.master.host.name}, {where} -> {self.run_dir}"
        )
        return self

    def wait(self) -> LoadResult:
        """Block until the master ends by itself (or is killed at the hard deadline), then merge."""
        if self.result is not None:
            return self.result
        try:
            ended = self._wait_master(self.spec.hard_timeout + REPORT_GRACE)
        except BaseException:  # Ctrl-C: stop now, keeping what was recorded, as LoadRun's callers do
            self.stop()
            raise
        try:
            return self._finish(not ended)
        finally:
            self._remove()

    def stop(self, grace: float | None = None) -> LoadResult:
        """End the run now: SIGINT lets the master stop its workers and write its reports."""
        if self.result is not None:
            return self.result
        try:
            self._stop_requested = True
            master = self.placement.master
            with suppress(RuntimeFailure):  # it has ended already
                docker.run(master.command("kill", "--signal", "INT", master.container), "stop Locust's master")
            ended = self._wait_master(grace if grace is not None else self.spec.stop_timeout + REPORT_GRACE)
            return self._finish(not ended)
        finally:
            self._remove()

    def __enter__(self) -> SwarmLoadRun:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.stop()

    # -------------------------------------------------------------------------------- the parts

    def _versions(self) -> dict[str, str]:
        """member -> the Locust package in its container; one version, or an error naming them."""
        query = ("dpkg-query", "--show", "--showformat=${Version}", LOCUST_PACKAGE)
        found = {
            m.name: docker.run(m.command("exec", m.container, *query), f"read Locust's version in {m.name}").strip()
            for m in self.placement.members
        }
        if len(set(found.values())) != 1:
            raise RuntimeFailure(f"Locust's master and workers must run one Locust version; they run {found}")
        return found

    def _wait_master(self, timeout: float) -> bool:
        """Whether the master ended within `timeout` (else every member is killed)."""
        m = self.placement.master
        try:
            docker.run(m.command("wait", m.container), "wait for Locust's master", timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self._kill()
            return False

    def _exit_code(self, m: Member) -> int | None:
        out = docker.run(m.command("inspect", "--format", "{{.State.ExitCode}}", m.container), f"{m.name}'s exit")
        return int(out.strip()) if out.strip().lstrip("-").isdigit() else None

    def _kill(self) -> None:
        for cmd, containers in self._by_engine().items():
            with suppress(RuntimeFailure):
                docker.run([*cmd, "kill", *containers], "kill Locust's containers", timeout=60)

    def _deadline(self) -> None:
        self._deadline_hit = True
        self._kill()

    def _by_engine(self) -> dict[tuple[str, ...], list[str]]:
        return engine.by_engine([engine.Place(m.host.docker, m.container) for m in self.placement.members])

    def _collect(self) -> None:
        """Each member's files and console into the run directory (what there is of them)."""
        for m in self.placement.members:
            what = f"copy Locust's {m.name} files from {m.host.name}"
            try:
                with docker.docker_errors(what):
                    tar = subprocess.run(
                        m.command("cp", f"{m.container}:{HOME}", "-"),
                        capture_output=True,
                        timeout=COPY_TIMEOUT,
                        check=True,
                    ).stdout
                unpack(tar, m, self.run_dir)
                with docker.docker_errors(f"read Locust's {m.name} console"):
                    console = subprocess.run(
                        m.command("logs", m.container), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60
                    ).stdout
                name = "locust.out" if m == self.placement.master else f"locust-{m.name}.out"
                (self.run_dir / name).write_bytes(console)
            except (RuntimeFailure, subprocess.TimeoutExpired) as exc:
                log.warning(f"load: {what}: {exc}")

    def _remove(self) -> None:
        """Every container of the run, once, whatever happened."""
        if self._removed or not self._started:
            return
        self._removed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for cmd, containers in self._by_engine().items():
            try:
                docker.run([*cmd, "rm", "-f", *containers], "remove Locust's containers", timeout=60)
            except RuntimeFailure as exc:  # `halab down` removes them by the lab's label
                log.warning(f"load: {exc}")

    def _finish(self, killed: bool) -> LoadResult:
        killed = killed or self._deadline_hit
        for w in self.placement.workers:  # the master told them to quit
            with suppress(subprocess.TimeoutExpired):
                docker.run(w.command("wait", w.container), f"wait for Locust's {w.name}", timeout=WORKER_GRACE)
        self._kill()  # any worker still running
        code = self._exit_code(self.placement.master)
        self._collect()
        self._remove()
        records = history.merge_parts(self.run_dir)
        ops = registers.merge_ops(self.run_dir)
        names = [w.name for w in self.placement.workers]
        counted = take_counts(self.run_dir, names)
        merged = merged_requests(self.run_dir, names)
        self.result = LoadResult(
            run_dir=self.run_dir,
            returncode=None if killed else code,
            started=self._started,
            ended=time.time(),
            stopped_early=self._stop_requested,
            killed=killed,
            records=records,
            ops=ops,
            workers={w: c["requests"] for w, c in counted.items()},
        )
        history.write_json(self.run_dir / "load.json", self._description(counted, merged))
        log.info(
            f"load: ended ({'killed' if killed else f'exit {code}'}), {records} records, {ops} register ops; "
            f"requests per worker {merged}"
        )
        if self.result.ok:
            check_counts(counted, merged)
        return self.result

    def _description(self, counted: dict[str, dict[str, int]], merged: dict[str, int]) -> dict[str, Any]:
        assert self.result is not None
        p = self.placement
        command = run_command(self.t, self.spec, p, p.master, self.image)
        return {
            "spec": {**asdict(self.spec), "env": dict(self.spec.env)},
            "command": [a.split("=")[0] + "=<the lab's CA>" if a.startswith("HALAB_CA_PEM=-") else a for a in command],
            "result": {**asdict(self.result), "run_dir": str(self.run_dir)},
            "distributed": {
                "image": self.image,
                "locust": self.versions,
                "master": {"host": p.master.host.name, "container": p.master.container},
                "workers": {
                    w.name: {"host": w.host.name, "container": w.container, **counted.get(w.name, {})}
                    for w in p.workers
                },
                "merged_requests": merged,
            },
        }
