"""The register workload: `RegisterUser` reads, writes and compare-and-sets the `description` of a
few projects made for the run, recording each operation as an `Op` (lab/record/ops.py) for the
linearizability and session checkers (lab/record/registers.py).

The keys (`HALAB_REGISTERS` projects, default 5) are created once per run by whichever user comes
first, under a file lock in the run directory (`registers.json` beside `parts/`), so every Locust
process shares them. Each user is one client process: one operation at a time, values
`<process>-<counter>`, unique per write. A cas expects the value the user last read of that key and
uses the server's `halabExpect` (a lab extension: 409 when the stored value differs).

Outcomes: 2xx `ok`; 4xx `fail` (the server refused before writing: 409 busy, changing or
expectation failed, 404, 422); anything else `info` (5xx, no answer, a timeout): it may have
applied. Without `HALAB_PARTS_DIR` nothing is recorded and the keys are per process.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import recording
from locust import FastHttpUser, between, task

from lab.record.history import JsonlWriter
from lab.record.ops import Fn, Op, Payload, outcome_of_status
from lab.record.registers import part_path

KEYS = int(os.environ.get("HALAB_REGISTERS", "5"))
PARTS_DIR = os.environ.get("HALAB_PARTS_DIR", "")
FIELD = "description"
EXPECT = "halabExpect"  # lab/server/inputs.py

_keys: list[str] = []  # project ids, shared by this process's users
_setup = threading.Lock()  # Locust patches it for gevent: one user at a time takes the file lock
_users = itertools.count(1)
_writer: tuple[int, JsonlWriter] | None = None


def _ops_writer() -> JsonlWriter | None:
    global _writer
    if not PARTS_DIR:
        return None
    if _writer is None or _writer[0] != os.getpid():  # a forked worker writes its own file
        _writer = (os.getpid(), JsonlWriter(part_path(PARTS_DIR, recording.process_name())))
    return _writer[1]


@contextmanager
def _run_lock() -> Iterator[Path | None]:
    if not PARTS_DIR:
        yield None
        return
    path = Path(PARTS_DIR).parent / "registers.json"
    fd = os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


class RegisterUser(FastHttpUser):
    host = os.environ.get("HALAB_HTTP_URL", "http://127.0.0.1:80")
    weight = 2
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.process = f"{recording.process_name()}-u{next(_users)}"
        self.counter = itertools.count(1)
        self.last_read: dict[str, Any] = {}

    def keys(self) -> list[str]:
        """The run's register projects, created by the first user that needs them."""
        with _setup:
            if len(_keys) < KEYS:
                with _run_lock() as path:
                    known = json.loads(path.read_text()) if path is not None and path.exists() else []
                    while len(known) < KEYS:
                        name = f"halab-register-{len(known)}-{uuid.uuid4().hex[:8]}"
                        with self.client.post(
                            "/v1/projects", json={"name": name}, name="/v1/projects [register]", catch_response=True
                        ) as resp:
                            if resp.status_code != 201:
                                break  # the lab is failing: try again at the next task
                            known.append(resp.json()["id"])
                    if path is not None:
                        path.write_text(json.dumps(known))
                    _keys[:] = known
            return list(_keys)

    def call(self, f: Fn, key: str, method: str, body: dict[str, Any] | None, value: Payload) -> None:
        invoke = time.time()
        with self.client.request(
            method, f"/v1/projects/{key}", name=f"/v1/projects/[register] {f}", json=body, catch_response=True
        ) as resp:
            status = resp.status_code or 0
            kind = outcome_of_status(status)
            if f == "read" and kind == "ok":
                try:
                    value = self.last_read[key] = resp.json().get(FIELD)
                except (ValueError, AttributeError):
                    kind = "info"  # a 2xx read without its body told nothing
                    resp.failure("2xx answer without a JSON body")
            if status == 409:
                resp.success()  # a refused cas or a busy key is the workload working, not an error
            op = Op(self.process, key, f, value, kind, invoke, time.time(), recording.response_node(resp))
        writer = _ops_writer()
        if writer is not None:
            writer.write_lines([op.to_json()])

    def fresh(self) -> str:
        return f"{self.process}-{next(self.counter)}"

    @task(3)
    def read(self) -> None:
        keys = self.keys()
        if keys:
            self.call("read", random.choice(keys), "GET", None, None)

    @task(1)
    def write(self) -> None:
        keys = self.keys()
        if keys:
            value = self.fresh()
            self.call("write", random.choice(keys), "PUT", {FIELD: value}, value)

    @task(1)
    def cas(self) -> None:
        keys = self.keys()
        if keys:
            key = random.choice(keys)
            expected, new = self.last_read.get(key), self.fresh()
            self.call("cas", key, "PUT", {FIELD: new, EXPECT: {FIELD: expected}}, (expected, new))
