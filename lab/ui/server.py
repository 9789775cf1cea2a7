"""`halab ui`: the live page of one lab, served on 127.0.0.1 (lab/ui/guard.py says who may use it).

- `GET /` the page (lab/ui/page.html): the topology as a picture, redrawn every second or so.
- `GET /api/state` the page's model (lab/ui/view.py): status (probed at most every STATUS_TTL),
  faults, cuts, the load's rates.
- `POST /api/fault` a fault as a scenario file writes it (`{"kind": "split", "sides": [["dc-a"],
  ["dc-b"]]}`), validated and verified as `halab fault` does; it holds until healed.
- `POST /api/heal` `{"id": "f3"}` heals that fault, `{}` everything (`halab heal`).

One fault action runs at a time; a refused or failed one answers its error's one line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.cluster.topology import Topology
from lab.core.errors import BadInput, LabError, mask
from lab.ui import guard, view

log = logging.getLogger("halab.ui")

PAGE = Path(__file__).with_name("page.html")
MAX_BODY = 16 * 1024  # bytes: a fault is a few hundred
STATUS_TTL = 0.75  # seconds a status is shown again before the lab is probed anew
# The page is one file: its own script and style inline, nothing from anywhere else, never framed.
CSP = (
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'"
)


class LabUi:
    """What the handler asks of the lab (one lab); the real one talks to Docker, a test's may not.
    `clock`: a monotonic clock, for the load's rates and the status's age."""

    def __init__(self, t: Topology, clock: Callable[[], float] = time.monotonic) -> None:
        self.t = t
        self._clock = clock
        self._last: view.LbCounters | None = None
        self._act = threading.Lock()
        self._status: tuple[float, dict[str, Any]] | None = None  # (read by, lifecycle.status)
        self._status_lock = threading.Lock()

    def state(self) -> dict[str, Any]:
        from lab import faults
        from lab.cluster import probes

        status = self._lab_status()
        counters = view.lb_counters(probes.lb_stats(self.t), self._clock())
        rates, self._last = view.load_rates(self._last, counters), counters or self._last
        out = view.lab_view(self.t, status, faults.active(self.t.lab), time.time())
        return {**out, "load": rates}

    def _lab_status(self) -> dict[str, Any]:
        """`lifecycle.status`, read at most once per STATUS_TTL: each read probes every node (a
        `docker exec` each), and each open page asks every second. Its age counts from the read's
        end, so requests that waited for a read (slower than STATUS_TTL on a big lab) take it."""
        from lab.cluster import lifecycle

        with self._status_lock:
            if self._status is None or self._clock() - self._status[0] >= STATUS_TTL:
                status = lifecycle.status(self.t)
                self._status = self._clock(), status
            return self._status[1]

    @contextmanager
    def _action(self) -> Iterator[None]:
        """One fault action at a time; after it, done or failed, the next state reads the lab afresh
        so the page shows what it did."""
        with self._act:
            try:
                yield
            finally:
                with self._status_lock:  # after a read under way, which may predate the action
                    self._status = None

    def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        from lab import faults

        spec = faults.spec_from_yaml(body, "request")
        with self._action():
            fault = faults.Injector(self.t).apply(spec, where="request")
        return {
            "id": fault.id,
            "text": fault.spec.describe(),
            "targets": list(fault.targets),
            "detail": dict(fault.detail),
        }

    def heal(self, body: dict[str, Any]) -> dict[str, Any]:
        from lab import faults

        fault_id = body.get("id")
        with self._action():
            if fault_id is None:
                return {"lines": faults.heal_lab(self.t).lines()}
            if not isinstance(fault_id, str):
                raise BadInput(f"request.id: a fault id such as f3, got {fault_id!r}")
            record = faults.heal_entry(self.t, fault_id)
        if record is None:
            raise BadInput(f"request.id: no active fault {fault_id}")
        return {"lines": [f"healed {record.id} (held {record.t1 - record.t0:.1f} s)"]}


def make_handler(ui: LabUi, port: Callable[[], int], secret: str) -> type[BaseHTTPRequestHandler]:
    routes: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
        ("POST", "/api/fault"): ui.fault,
        ("POST", "/api/heal"): ui.heal,
        ("GET", "/api/state"): lambda _body: ui.state(),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "halab-ui"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            refused = guard.refusal(method, path, headers, port(), secret)
            if refused is not None:
                self._json(refused[0], {"error": refused[1]})
                return
            if method == "GET" and path in ("/", "/index.html"):
                self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
                return
            route = routes.get((method, path))
            if route is None:
                self._json(404 if method == "GET" else 405, {"error": f"no {method} {path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise BadInput(f"request: a body of {length} bytes; at most {MAX_BODY}")
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except ValueError as exc:
                    raise BadInput(f"request: not JSON ({exc})") from None
                if not isinstance(body, dict):
                    raise BadInput('request: a JSON object, such as {"kind": "kill", "target": ["a1"]}')
                self._json(200, route(body))
            except BadInput as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": mask(str(exc))})
            except LabError as exc:
                self._json(HTTPStatus.CONFLICT, {"error": mask(str(exc))})
            except Exception as exc:  # the page shows it; the server goes on
                log.exception("ui: %s %s", method, path)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_OPTIONS(self) -> None:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "no cross-origin requests"})

    return Handler


def serve(ui: LabUi, secret: str, port: int = 0) -> ThreadingHTTPServer:
    """A server for the page on 127.0.0.1 (`port` 0: any free one); `serve_forever()` runs it."""
    box: list[int] = []
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(ui, lambda: box[0], secret))
    server.daemon_threads = True
    box.append(server.server_address[1])
    return server


def address(server: ThreadingHTTPServer, secret: str) -> str:
    """The address to open: the token in the fragment, which the browser keeps to itself."""
    return f"http://127.0.0.1:{server.server_address[1]}/#token={secret}"
