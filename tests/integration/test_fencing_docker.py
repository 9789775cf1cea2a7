"""Fencing at the database, on a real 3-node lab: the nemesis freezes a lock holder between its
fence check and its COMMIT while its lock passes to another node.

a1 takes a project's lock for a compare-and-set `v0 -> hook-v1`, checks its fence (its session is
live) and stops at the server's commit hook (HALAB_COMMIT_HOOK); the harness `docker pause`s it
there. Its ZooKeeper session expires, a2 takes the lock for `v0 -> v2`, reads v0 (cattle's reads
take no row lock) and waits at the database behind a1's uncommitted update. Then a1 is thawed and
let go. With fencing off (HALAB_COMMIT_FENCE=false, cattle's way) a1 commits late, a2 commits
after it, both compare-and-sets from v0 succeed, and the linearizability checker must find that
lost update. With fencing on (tuned), a2 registered its newer lock token before reading, so a1's
COMMIT is refused and the history is linearizable."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
from helpers import http, on_node

from lab.cluster import docker, probes
from lab.cluster.compose import container_name
from lab.core.wait import wait_for
from lab.record.linearizability import check_linearizable
from lab.record.ops import Op
from lab.server.processes import COMMIT_HOOK_FILE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOOK = "hook-"


@pytest.fixture(scope="module")
def halab_profile() -> str:
    return "tuned"  # 4 s sessions: the frozen holder's lock passes within seconds


class Client:
    """Compare-and-sets on one node's API, each recorded as a history op."""

    def __init__(self, t: Any, key: str) -> None:
        self.t, self.key = t, key
        self.ops: list[Op] = []
        self.lock = threading.Lock()

    def call(self, process: str, node: str, method: str, body: dict[str, Any], value: Any, f: str) -> tuple[int, Any]:
        path = "/v1/projects" + ("" if method == "POST" else f"/{self.key}")
        invoke = time.time()
        try:
            status, _, answer = http(method, on_node(self.t, node, path), body, timeout=90)
        except OSError:
            status, answer = 0, None
        done = time.time()
        # 2xx: it happened; 409 and 503 are refusals before COMMIT; anything else is unknown.
        kind = "ok" if status in (200, 201) else "fail" if status in (409, 503) else "info"
        with self.lock:
            self.ops.append(Op(process, self.key, f, value, kind, invoke, done if kind != "info" else math.inf, node))
        return status, answer


def lock_waits(t: Any) -> int:
    """Transactions waiting on a row lock in the database right now."""
    rows = probes.db_query(t, "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")
    return int(rows[0]["n"]) if rows else 0


def hooked(t: Any, node: str) -> bool:
    out = docker.run(
        ["docker", "exec", container_name(t, node), "sh", "-c", f"test -e {COMMIT_HOOK_FILE} && echo yes || true"],
        f"look for the commit hook on {node}",
    )
    return out.strip() == "yes"


def frozen_holder_history(t: Any) -> tuple[list[Op], dict[str, tuple[int, Any]]]:
    """The history of the nemesis on lab T, and each compare-and-set's last status and answer."""
    status, _, made = http("POST", on_node(t, "a2", "/v1/projects"), {"name": "fenced", "description": "v0"})
    assert status == 201, made
    c = Client(t, made["id"])
    c.ops.append(Op("setup", c.key, "write", "v0", "ok", time.time() - 0.01, time.time(), "a2"))
    # An update of a project still being created is refused (409 InvalidState): let it settle.
    wait_for(
        "the project to settle",
        lambda: http("GET", on_node(t, "a1", f"/v1/projects/{c.key}"))[2].get("state") == "active",
        timeout=60,
    )
    results: dict[str, int] = {}
    answers: dict[str, Any] = {}

    def cas(process: str, node: str, new: str) -> None:
        body = {"description": new, "halabExpect": {"description": "v0"}}
        status, answer = c.call(process, node, "PUT", body, ("v0", new), "cas")
        results[process] = status
        answers[process] = answer

    first = threading.Thread(target=cas, args=("p1", "a1", f"{HOOK}v1"))
    first.start()

    def at_hook() -> bool:
        assert first.is_alive() or hooked(t, "a1"), f"a1's write ended before the hook: {answers}"
        return hooked(t, "a1")

    wait_for("a1's write held at the commit hook", at_hook, timeout=30)
    a1 = container_name(t, "a1")
    docker.run(["docker", "pause", a1], "freeze a1 between its fence check and its COMMIT")
    try:
        attempts: list[threading.Thread] = []

        def a2_waits_behind_a1() -> bool:
            # a2 cannot have the lock until a1's session expires: its attempts are refused (409
            # busy) until one gets it and waits at the database behind a1's uncommitted update.
            if not attempts or not attempts[-1].is_alive():
                assert results.get("p2") != 200, "a2's compare-and-set went through while a1 held its row"
                attempts.append(threading.Thread(target=cas, args=("p2", "a2", "v2")))
                attempts[-1].start()
            return lock_waits(t) > 0

        wait_for("a2 holding the lock, waiting behind a1's row", a2_waits_behind_a1, timeout=60, interval=0.5)
    finally:
        docker.run(["docker", "unpause", a1], "thaw a1")
    docker.run(["docker", "exec", "-u", "root", a1, "rm", "-f", COMMIT_HOOK_FILE], "let a1's write go on")
    first.join(90)
    attempts[-1].join(90)
    status, _, row = http("GET", on_node(t, "a2", f"/v1/projects/{c.key}"))
    assert status == 200
    c.ops.append(Op("check", c.key, "read", row["description"], "ok", time.time() - 0.01, time.time(), "a2"))
    return c.ops, {p: (results[p], answers[p]) for p in results}


@pytest.mark.timeout(600)
def test_without_fencing_the_frozen_holders_late_commit_is_a_lost_update(halab_lab_factory):
    t = halab_lab_factory(3, server_env={"HALAB_COMMIT_HOOK": HOOK, "HALAB_COMMIT_FENCE": "false"})
    ops, results = frozen_holder_history(t)
    assert results["p1"][0] == 200 and results["p2"][0] == 200, results  # both from v0
    verdict = check_linearizable(ops)
    assert verdict.valid == "violation", verdict
    (key,) = verdict.violations()
    assert {op.process for op in key.witness} >= {"p1", "p2"}, key.explanation


@pytest.mark.timeout(600)
def test_with_fencing_the_frozen_holders_late_commit_is_refused(halab_lab_factory):
    t = halab_lab_factory(3, server_env={"HALAB_COMMIT_HOOK": HOOK})
    ops, results = frozen_holder_history(t)
    assert results["p1"][0] == 503 and results["p2"][0] == 200, results
    assert "older than" in results["p1"][1]["detail"]  # refused by the database's fence
    assert check_linearizable(ops).ok
    assert ops[-1].value == "v2"
