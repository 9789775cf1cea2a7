"""Locust's master and workers on a swarm lab's hosts (lab/record/distributed.py), the hosts'
Docker faked: where each runs, what it is started with, what comes back into the run directory,
the counts the merged history is held to, and every container removed on every path."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from lab.cluster import hosts, images, state
from lab.cluster.topology import Engine, make_topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.record import distributed, history
from lab.record.distributed import SwarmLoadRun, check_counts, check_spec, merged_requests, place, take_counts
from lab.record.history import RequestRecord
from lab.record.load import LoadSpec, run_load


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    hosts.save(hosts.make_group("swm", 3))
    t = make_topology(3, lab="demo", engine=Engine("swarm", "swm"))
    tls = state.lab_dir(t.lab) / "tls"
    tls.mkdir(parents=True)
    (tls / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    return t


def spec(t, **kw: Any) -> LoadSpec:
    return LoadSpec(**{"name": "d", "users": 4, "duration": 10, "ca_file": str(state.ca_path(t.lab)), **kw})


def test_the_master_runs_on_the_manager_and_workers_in_turn_on_the_hosts_given(lab):
    p = place(lab, 3, ["swm-h2", "swm-h3"], run_id="r1")
    assert (p.master.host.name, p.master.container) == ("swm-h1", "demo-locust-r1-master")
    assert [(w.name, w.host.name) for w in p.workers] == [("w1", "swm-h2"), ("w2", "swm-h3"), ("w3", "swm-h2")]
    assert [w.name for w in place(lab, 2).workers] == ["w1", "w2"]
    assert [w.host.name for w in place(lab, 4).workers] == ["swm-h1", "swm-h2", "swm-h3", "swm-h1"]


@pytest.mark.parametrize(
    "workers,worker_hosts,option",
    [(0, (), "--workers"), (99, (), "--workers"), (True, (), "--workers"), (2, ["swm-h9"], "--worker-hosts"),
     (2, ["swm-h2", "swm-h2"], "--worker-hosts")],
)  # fmt: skip
def test_workers_and_their_hosts_are_checked(lab, workers, worker_hosts, option):
    with pytest.raises(BadInput, match=option):
        place(lab, workers, worker_hosts)


def test_a_compose_lab_is_told_to_use_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("HALAB_HOME", str(tmp_path))
    with pytest.raises(BadInput, match=r"--workers: lab 'c' runs on compose.*--processes"):
        place(make_topology(3, lab="c"), 2)


def test_what_workers_cannot_be_combined_with(lab):
    with pytest.raises(BadInput, match="--processes"):
        check_spec(spec(lab, processes=2))
    with pytest.raises(BadInput, match="--web"):
        check_spec(spec(lab, web_port=8089))
    elsewhere = Path(state.lab_dir(lab.lab)) / "mine.py"
    elsewhere.write_text("")
    with pytest.raises(BadInput, match="--locustfile"):
        check_spec(spec(lab, locustfile=str(elsewhere)))


def test_master_and_workers_reach_each_other_and_the_load_balancer_on_the_labs_network(lab):
    p = place(lab, 2, run_id="r1")
    s = spec(lab, user_classes=("ApiUser",), env={"HALAB_WAIT": "0.1,0.2"})
    master = distributed.run_command(lab, s, p, p.master, "halab/loadgen:x")
    worker = distributed.run_command(lab, s, p, p.workers[1], "halab/loadgen:x")
    assert master[:7] == ["docker", "exec", "-i", "swm-h1", "docker", "run", "-d"]
    assert worker[:4] == ["docker", "exec", "-i", "swm-h2"]
    for cmd in (master, worker):
        assert cmd[cmd.index("--network") + 1] == "demo_front"
        assert "halab.lab=demo" in cmd and "HALAB_HTTPS_URL=https://lb:443" in cmd and "HALAB_WAIT=0.1,0.2" in cmd
        assert any(a.startswith("HALAB_CA_PEM=-----BEGIN CERTIFICATE-----") for a in cmd)
        assert cmd[cmd.index("-f") + 1] == "/opt/halab/loadtests/rancher.py"
    args = master[master.index("halab/loadgen:x") + 1 :]
    assert args[args.index("--host") + 1] == "http://lb:80"
    assert args[args.index("--expect-workers") + 1] == "2" and "--master" in args and "--headless" in args
    assert args[-1] == "ApiUser" and not any(a.startswith("HALAB_PARTS_DIR") for a in master)
    assert "HALAB_WORKER=w2" in worker and "HALAB_PARTS_DIR=/run/halab/parts" in worker
    assert worker[worker.index("--master-host") + 1] == "demo-locust-r1-master"


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_masters_reports_and_each_workers_parts_come_back_as_a_local_runs(lab, tmp_path):
    p = place(lab, 2, run_id="r1")
    run = tmp_path / "run"
    master = {"halab/locust_stats.csv": b"s", "halab/locust.html": b"h", "halab/locust.log": b"l", "halab/.bashrc": b""}
    distributed.unpack(tar_of(master), p.master, run)
    worker = {
        "halab/parts/history-w1-p7.jsonl": b"{}\n",
        "halab/parts/ops/ops-w1-p7.jsonl": b"",
        "halab/locust.log": b"w",
        "halab/registers.json": b"[]",
        "halab/../../escape": b"x",
    }
    distributed.unpack(tar_of(worker), p.workers[0], run)
    got = sorted(str(f.relative_to(run)) for f in run.rglob("*") if f.is_file())
    assert got == [
        "locust-w1.log",
        "locust.html",
        "locust.log",
        "locust_stats.csv",
        "parts/history-w1-p7.jsonl",
        "parts/ops/ops-w1-p7.jsonl",
    ]


def request(worker: str, t0: float = 1.0) -> RequestRecord:
    return RequestRecord(t0, t0 + 0.1, "GET", "/v1/projects", 200, True, worker=worker)


def write_worker(run: Path, worker: str, recorded: int, counted: int) -> None:
    parts = run / history.PARTS_DIR
    with history.JsonlWriter(history.part_paths(parts, worker)[0]) as w:
        w.extend(request(worker, float(i)) for i in range(recorded))
    history.write_json(history.count_path(parts, worker), {"requests": counted, "acks": 0})


def test_the_merged_history_must_hold_what_the_workers_counted(tmp_path):
    write_worker(tmp_path, "w1-p7", 3, 3)
    write_worker(tmp_path, "w2-p7", 2, 2)  # the same pid in another container
    history.JsonlWriter(tmp_path / history.HISTORY_FILE).append(request("probe"))  # not a worker's
    history.merge_parts(tmp_path)
    counted, merged = take_counts(tmp_path, ["w1", "w2"]), merged_requests(tmp_path, ["w1", "w2"])
    assert counted == {"w1": {"requests": 3, "acks": 0}, "w2": {"requests": 2, "acks": 0}}
    assert merged == {"w1": 3, "w2": 2} and not list((tmp_path / history.PARTS_DIR).glob("count-*"))
    check_counts(counted, merged)
    with pytest.raises(RuntimeFailure, match="holds 5 requests of the workers, who counted 6"):
        check_counts({**counted, "w2": {"requests": 3, "acks": 0}}, merged)
    with pytest.raises(RuntimeFailure, match="w3 left no count"):
        check_counts(counted, {**merged, "w3": 0})


class FakeHosts:
    """The hosts' Docker as the run sees it: containers started, waited for, killed, removed."""

    def __init__(self, interrupt_wait: bool = False, lose_a_line: bool = False):
        self.running: dict[str, str] = {}  # container -> host
        self.removed: list[str] = []
        self.signals: list[str] = []
        self.interrupt_wait = interrupt_wait
        self.lose_a_line = lose_a_line

    def run(self, args, what, timeout=None, **_):
        host, cmd = args[3], args[5:]
        if cmd[:2] == ["run", "-d"]:
            self.running[cmd[cmd.index("--name") + 1]] = host
            return "id\n"
        if cmd[0] == "exec":
            return "2.12.1-1"
        if cmd[0] == "wait":
            if self.interrupt_wait and cmd[1].endswith("master"):
                self.interrupt_wait = False
                raise KeyboardInterrupt
            return "0\n"
        if cmd[0] == "kill":
            self.signals.append(" ".join(cmd))
            return ""
        if cmd[0] == "inspect":
            return "0\n"
        if cmd[:2] == ["rm", "-f"]:
            self.removed += cmd[2:]
            return ""
        raise AssertionError(f"unexpected {args}")

    def collect(self, load: SwarmLoadRun) -> None:
        """What the workers would leave: their parts and counts (3 requests each)."""
        for w in load.placement.workers:
            write_worker(load.run_dir, f"{w.name}-p7", 3 - (self.lose_a_line and w.name == "w2"), 3)


@pytest.fixture
def fake(lab, monkeypatch):
    def make(**kw: Any) -> FakeHosts:
        hosts_ = FakeHosts(**kw)
        monkeypatch.setattr(distributed.docker, "run", hosts_.run)
        monkeypatch.setattr(images, "build", lambda only: {"loadgen": "halab/loadgen:x"})
        monkeypatch.setattr(hosts, "ensure_images", lambda group, tags, on=(): None)
        monkeypatch.setattr(SwarmLoadRun, "_collect", lambda load: hosts_.collect(load))
        return hosts_

    return make


def test_a_run_merges_the_workers_parts_and_removes_every_container(lab, fake, tmp_path):
    f = fake()
    load = SwarmLoadRun(lab, spec(lab), place(lab, 2, run_id="r1"), tmp_path / "run")
    result = run_load(load.spec, load=load)
    assert result.ok and result.workers == {"w1": 3, "w2": 3} and result.records == 6
    assert sorted(f.removed) == sorted(f.running) and len(f.running) == 3
    d = json.loads((tmp_path / "run" / "load.json").read_text())["distributed"]
    assert d["locust"] == {"master": "2.12.1-1", "w1": "2.12.1-1", "w2": "2.12.1-1"}
    assert d["workers"]["w2"] == {"host": "swm-h2", "container": "demo-locust-r1-w2", "requests": 3, "acks": 0}
    assert not any(
        "BEGIN CERTIFICATE" in a for a in json.loads((tmp_path / "run" / "load.json").read_text())["command"]
    )


def test_ctrl_c_stops_the_master_and_still_removes_every_container(lab, fake, tmp_path):
    f = fake(interrupt_wait=True)
    load = SwarmLoadRun(lab, spec(lab), place(lab, 2, run_id="r1"), tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_load(load.spec, load=load)
    assert f.signals[0] == "kill --signal INT demo-locust-r1-master"
    assert sorted(f.removed) == sorted(f.running)
    assert load.result is not None and load.result.stopped_early


def test_a_lost_line_is_an_error_naming_both_counts_and_nothing_is_left(lab, fake, tmp_path):
    f = fake(lose_a_line=True)
    load = SwarmLoadRun(lab, spec(lab), place(lab, 2, run_id="r1"), tmp_path / "run")
    with pytest.raises(RuntimeFailure, match="holds 5 requests of the workers, who counted 6"):
        run_load(load.spec, load=load)
    assert sorted(f.removed) == sorted(f.running)


def test_versions_that_differ_stop_the_start_and_remove_what_started(lab, fake, tmp_path, monkeypatch):
    f = fake()
    versions = iter(["2.12.1-1", "2.12.1-1", "2.20.0-1"])
    monkeypatch.setattr(
        distributed.docker,
        "run",
        lambda args, what, **kw: next(versions) if args[5] == "exec" else f.run(args, what, **kw),
    )
    load = SwarmLoadRun(lab, spec(lab), place(lab, 2, run_id="r1"), tmp_path / "run")
    with pytest.raises(RuntimeFailure, match=r"one Locust version.*2\.20\.0-1"):
        load.start()
    assert sorted(f.removed) == sorted(f.running)


def test_the_loadgen_image_holds_everything_the_locustfiles_import(tmp_path):
    """Its context, laid out as the image's /opt/halab, imports every locustfile (in a subprocess:
    importing Locust patches the process) with nothing of this checkout on the path."""
    spec = next(s for s in images.OPTIONAL_IMAGES if s.name == "loadgen")
    with images.build_context(spec) as (dockerfile, context):
        assert "python3-locust=" in dockerfile.read_text()
        code = "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/loadtests']; import rancher, endpoint"
        proc = subprocess.run(
            [sys.executable, "-I", "-c", code, str(context)], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
