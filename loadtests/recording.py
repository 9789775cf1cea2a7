"""Per-request history and the write ledger, recorded from inside Locust.

Imported by the locustfiles here (Locust puts this directory on `sys.path`). With
`HALAB_PARTS_DIR` set (lab/load.py sets it), every request Locust reports becomes one `request`
record, and `Api.call(..., ack=...)` appends one ledger entry per acknowledged (2xx) write. Each
process (Locust forks its workers) writes its own pair of files, `history-<worker>.jsonl` and
`ledger-<worker>.jsonl`; lab/load.py merges them into the run directory afterwards.
A Locust worker on a swarm host (lab/record/distributed.py) is named by `HALAB_WORKER` too, since
processes of different containers may share a pid; it also writes how many requests and writes it
recorded (`count-<worker>.json`), which the harness holds the merged history to.
Without `HALAB_PARTS_DIR` nothing is recorded, so the locustfiles also run under plain `locust`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from locust import events

from lab.record.history import JsonlWriter, LedgerEntry, RequestRecord, count_path, part_paths, write_json

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
NODE_HEADER = "X-Rancher-Node"
_ERROR_CHARS = 200


def process_name() -> str:
    """This load process's name in the history: `p<pid>`, after its worker's name when it has one."""
    worker = os.environ.get("HALAB_WORKER", "")
    return f"{worker}-p{os.getpid()}" if worker else f"p{os.getpid()}"


class Recorder:
    """The two writers of one process, and how many records each took."""

    def __init__(self, parts_dir: str) -> None:
        self.pid = os.getpid()
        self.worker = process_name()
        self.parts_dir = parts_dir
        history, ledger = part_paths(parts_dir, self.worker)
        self.history = JsonlWriter(history)
        self.ledger = JsonlWriter(ledger)
        self.requests = 0
        self.acks = 0

    def write_counts(self) -> None:
        write_json(count_path(self.parts_dir, self.worker), {"requests": self.requests, "acks": self.acks})


_recorder: Recorder | None = None


def recorder() -> Recorder | None:
    """This process's recorder (a forked worker gets its own), None when not recording."""
    global _recorder
    parts_dir = os.environ.get("HALAB_PARTS_DIR", "")
    if not parts_dir:
        return None
    if _recorder is None or _recorder.pid != os.getpid():
        _recorder = Recorder(parts_dir)
    return _recorder


def response_node(response: Any) -> str | None:
    headers = getattr(response, "headers", None)
    return headers.get(NODE_HEADER) if headers else None


def describe_error(response: Any, exception: BaseException | None) -> str | None:
    """One short line: the gdapi error code and message when the server sent one."""
    if exception is None:
        return None
    status = getattr(response, "status_code", 0) or 0
    if status >= 400:
        try:
            body = json.loads(response.text or "")
        except (ValueError, TypeError, AttributeError):
            body = None
        if isinstance(body, dict) and body.get("type") == "error":
            return f"{status} {body.get('code')}: {body.get('message')}"[:_ERROR_CHARS]
    return f"{type(exception).__name__}: {exception}"[:_ERROR_CHARS]


@events.request.add_listener
def record_request(
    request_type: str,
    name: str,
    response_time: float,
    response: Any,
    context: dict[str, Any],
    exception: BaseException | None,
    start_time: float,
    **_: Any,
) -> None:
    rec = recorder()
    if rec is None:
        return
    rec.requests += 1
    rec.history.append(
        RequestRecord(
            t0=start_time,
            t1=start_time + response_time / 1000.0,
            method=request_type,
            name=name,
            status=getattr(response, "status_code", 0) or 0,
            ok=exception is None,
            node=response_node(response),
            error=describe_error(response, exception),
            write=bool(context.get("write", False)),
            idempotent=request_type in IDEMPOTENT_METHODS,
            resource_id=context.get("resource_id"),
            uuid=context.get("uuid"),
            worker=rec.worker,
        )
    )


@events.test_stop.add_listener
@events.quitting.add_listener
def write_counts(**_: Any) -> None:
    """A worker's own counts, when its users have stopped (test_stop) and again as it quits."""
    rec = recorder()
    if rec is not None and os.environ.get("HALAB_WORKER"):
        rec.write_counts()


@dataclass(frozen=True)
class Ack:
    """What a write is, for the ledger: `op` on a resource of gdapi `type`."""

    op: str  # create, update, delete, checkin
    type: str
    uuid: str
    value: str | None = None  # the name an update sets
    id_key: str = "id"  # where the answer names the resource (a registration: "hostId")


class Api:
    """gdapi calls over a Locust FastHttpSession that feed the history context and the ledger."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        name: str,
        body: dict[str, Any] | None = None,
        ack: Ack | None = None,
        resource_id: str | None = None,
        auth: tuple[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The JSON body of a 2xx answer, else None (Locust counts the failure).

        A write is acknowledged by its 2xx status: it goes to the ledger even if the body is
        unreadable, because the server has committed it.
        """
        context = {"write": ack is not None, "uuid": ack.uuid if ack else None, "resource_id": resource_id}
        with self.client.request(
            method, path, name=name, json=body, auth=auth, context=context, catch_response=True
        ) as resp:
            if not 200 <= resp.status_code < 300:
                return None  # the context manager marks it failed
            try:
                data = resp.json()
            except ValueError:
                data = None
                resp.failure("2xx answer without a JSON body")
            if ack is not None:
                rid = (data or {}).get(ack.id_key) or resource_id
                meta = resp.request_meta  # what the request event will report when the block ends
                meta["context"]["resource_id"] = rid
                self._ledger(meta, ack, rid, response_node(resp))
            return data if isinstance(data, dict) else None

    @staticmethod
    def _ledger(meta: dict[str, Any], ack: Ack, rid: str | None, node: str | None) -> None:
        rec = recorder()
        if rec is None:
            return
        rec.acks += 1
        t0 = meta["start_time"]
        rec.ledger.append(
            LedgerEntry(
                t0=t0,
                t1=t0 + meta["response_time"] / 1000.0,
                op=ack.op,
                type=ack.type,
                id=rid,
                uuid=ack.uuid,
                node=node,
                value=ack.value,
                worker=rec.worker,
            )
        )
