"""Faults on a real 3-node lab: every kind takes effect and heals without a trace; a fault that
silently did nothing is an error; a split holds while a node of the minority side restarts;
SIGINT in the middle of a fault (a `halab run` subprocess) and SIGKILL of a fault holder followed
by `halab heal` both leave no fault behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import NOTHING_LEFT, REPO, heal_from_another_process, kill_fault_holder, wait_active_faults

from lab import faults
from lab.cluster import probes, state
from lab.cluster.compose import container_name
from lab.core.errors import FaultNotEffective
from lab.core.wait import wait_for
from lab.faults import backend, make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def halab_profile() -> str:
    """The fencing checks here need the tuned node, whose /ping turns 503 when it is cut
    (docs/architecture.md, Node profiles)."""
    return "tuned"


def clean(t: Any) -> dict[str, Any]:
    return faults.leftovers(t) == NOTHING_LEFT


@pytest.mark.parametrize(
    "spec",
    [
        make_spec("kill", ["follower"]),
        make_spec("stop", ["follower"]),
        make_spec("pause", ["leader"]),
        make_spec("restart", ["follower"]),
        make_spec("kill", ["db"]),
        make_spec("pause", ["db"]),
        make_spec("restart", ["db"]),
        make_spec("restart", ["lb"]),
        make_spec("split"),
        make_spec("split", sides=[["dc-b"], ["dc-a"]], one_way=True),
        make_spec("partition", sides=[["a1"], ["a2", "db"]]),
        make_spec("flaky", sides=[["a1", "a2"], ["b1"]], loss=50),
    ],
    ids=lambda s: s.describe().replace(" ", "_"),
)
def test_each_fault_takes_effect_and_heals_without_a_trace(lab3, halab_faults, tmp_path, spec):
    inj = halab_faults(lab3)
    inj.history = str(tmp_path / "history.jsonl")
    fault = inj.apply(spec)
    assert [e["id"] for e in faults.active(lab3.lab)] == [fault.id]
    record = inj.heal(fault)
    assert record is not None and record.t1 >= record.t0 and record.id == fault.id
    assert json.loads((tmp_path / "history.jsonl").read_text())["id"] == fault.id
    assert clean(lab3)


def test_an_isolated_node_fences_itself_behind_the_load_balancer(lab3, halab_faults):
    inj = halab_faults(lab3)
    with inj.held(make_spec("isolate", ["b1"])):
        wait_for("b1 to answer 503", lambda: probes.node_view(lab3, "b1").ping == 503, 20)
        wait_for("a1 and a2 active", lambda: all(probes.node_view(lab3, n).active for n in ("a1", "a2")), 20)
    wait_for("b1 active after heal", lambda: probes.node_view(lab3, "b1").active, 60)
    assert clean(lab3)


def fenced_since(t: Any, node: str, since: float) -> bool:
    """The node's server started after `since`, answers /ping 503 and has met the cut: its
    database check failed (the database lives on the other side)."""
    v = probes.node_view(t, node)
    db = v.detail.get("database") or {}
    return (
        v.ping == 503
        and v.detail.get("uptimeSeconds", float("inf")) <= time.time() - since
        and db.get("ok") is False
        and db.get("error") not in (None, "not checked yet")
    )


def reapplied_after(t: Any, fault_id: str, since: float, node: str) -> dict[str, Any] | None:
    """The fault's first re-establishment after `since` that found `node` freshly started."""
    entry = next(e for e in faults.active(t.lab) if e["id"] == fault_id)
    return next(
        (n for n in entry["detail"].get("reapplied", []) if n["t"] > since and node in n.get("exposed", {})), None
    )


def event_readers(lab: str) -> list[int]:
    """Pids of `docker events` processes watching the lab."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"events" in args and f"label=halab.lab={lab}".encode() in args:
            out.append(int(cmdline.parent.name))
    return out


def test_a_split_holds_while_a_node_of_the_minority_side_restarts(lab3, halab_faults, record_property):
    """dc-a | dc-b, then b1 restarted twice: by the restart fault (re-cut by the injector, or by its
    watcher when that saw the start first) and by a plain `docker restart` that only the watcher
    sees. Each time b1 must come back fenced and cut; the time from its start to its rules is
    recorded, never asserted."""
    inj = halab_faults(lab3)
    split = inj.apply(make_spec("split", sides=[["dc-a"], ["dc-b"]]))
    assert event_readers(lab3.lab)
    windows = {}
    for how in ("restart fault", "docker restart"):
        since = time.time()
        if how == "restart fault":
            inj.heal(inj.apply(make_spec("restart", ["b1"])))
        else:
            subprocess.run(
                ["docker", "restart", "--time", str(faults.STOP_GRACE), container_name(lab3, "b1")],
                check=True,
                capture_output=True,
                timeout=60,
            )
        note = wait_for(
            f"the split re-established after the {how}",
            lambda since=since: reapplied_after(lab3, split.id, since, "b1"),
            30,
        )
        assert "error" not in note, note
        windows[how] = {"seconds": note["exposed"]["b1"], "re-cut on": note["why"]}
        wait_for(f"b1 fenced after the {how}", lambda since=since: fenced_since(lab3, "b1", since), 60)
        ips = faults.addresses(lab3, faults.containers(lab3))
        paths = [("b1", "a1", 1), ("b1", "db", 1), ("a1", "b1", 1)]
        assert faults.connectivity(lab3, paths, ips) == {(s, d): (0, 1) for s, d, _ in paths}
        wait_for("a1 and a2 active", lambda: all(probes.node_view(lab3, n).active for n in ("a1", "a2")), 20)
    print(f"b1 ran uncut after its start: {windows}")
    record_property("start_to_rules_seconds", json.dumps(windows))
    record = inj.heal(split)
    assert record is not None and len(record.detail["reapplied"]) >= 2
    assert event_readers(lab3.lab) == []  # the watcher's process was killed with the last network fault
    wait_for("every node active after heal", lambda: all(probes.node_view(lab3, n).active for n in lab3.node_names), 90)
    assert clean(lab3)


def test_a_fault_that_silently_did_nothing_is_reported(lab3, halab_faults, monkeypatch):
    inj = halab_faults(lab3)
    monkeypatch.setattr(backend, "install_rules", lambda t, plan: None)  # the rules never land
    with pytest.raises(FaultNotEffective, match=r"isolate b1: .*still connect"):
        inj.apply(make_spec("isolate", ["b1"]))
    real_run = backend.docker.run
    monkeypatch.setattr(
        backend.docker, "run", lambda args, what, **kw: "" if args[1] == "pause" else real_run(args, what, **kw)
    )  # `docker pause` "succeeds" without pausing anything
    with pytest.raises(FaultNotEffective, match=r"pause a2: a2 is still running"):
        inj.apply(make_spec("pause", ["a2"]))
    assert clean(lab3) and inj.applied == []


SLOW_FAULTS = """name: interrupted
topology: {nodes: 3}
faults:
  - {at: 1s, kind: isolate, target: b1, hold: 120s}
  - {at: 1s, kind: pause, target: a2, hold: 120s}
checks: {before: [all-active]}
"""


def halab(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_sigint_in_the_middle_of_a_fault_leaves_no_fault_behind(lab3, tmp_path):
    path = tmp_path / "scenarios" / "interrupted.yaml"
    path.parent.mkdir()
    path.write_text(SLOW_FAULTS)
    proc = halab("run", str(path), "--name", lab3.lab, "--runs", str(tmp_path / "runs"))
    try:
        wait_active_faults(lab3.lab, 2, proc)
        assert not clean(lab3)  # the faults are really there
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert clean(lab3), out
    journal = json.loads(next((tmp_path / "runs").glob("*/journal.json")).read_text())
    assert journal["status"] == "interrupted" and journal["verdict"] == "failed"
    assert all(f.get("t1") for f in journal["faults"]), journal["faults"]  # both healed and recorded


def test_heal_from_another_process_after_the_holder_was_sigkilled(lab3):
    kill_fault_holder(lab3.lab, "split", "dc-a", "dc-b")
    left = faults.leftovers(lab3)
    assert left["registered"] and left["rules"]
    heal_from_another_process(lab3.lab)
    assert clean(lab3)
    log = [json.loads(x) for x in (state.lab_dir(lab3.lab) / faults.LOG_FILE).read_text().splitlines()]
    assert log[-1]["fault"] == "split" and log[-1]["t1"] > log[-1]["t0"]
