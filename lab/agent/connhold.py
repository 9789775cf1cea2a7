"""Take a database's free connections and keep them: the rogue client of the `exhaust` fault.

    python3 -m lab.agent.connhold --host IP [--port 3306] [--leave N] [--until EPOCH]
    python3 -m lab.agent.connhold --host IP --probe

Runs in a container of its own (lab/faults/gray.py) as the nodes' database user, read from the
same environment as theirs (CATTLE_DB_CATTLE_USERNAME, CATTLE_DB_CATTLE_PASSWORD_FILE): another
application sharing the database. It opens connections until the server refuses one (`1040 Too
many connections`) or only `leave` are free (max_connections less Threads_connected, read on one
of its own), then every POLL seconds takes again whatever was freed since, as a leaking pool
would: a connection a node closes is gone for the nodes. When the server drops them (a restart)
it takes them again. It holds them idle until it is stopped or `--until` passes (so an orphan
ends by itself), and prints a JSON line whenever what it holds changes.

--probe: one more connection, closed at once; prints `ok` or the server's refusal.

Uses the node's own MySQL driver (`lab.server.db.driver`: MySQLdb in the node image, else PyMySQL).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

POLL = 1.0  # seconds between looks at the database's free connections
REFUSED = (1040, 1203)  # too many connections; too many for this user


def _driver() -> Any:
    from lab.server.db import driver

    return driver


def connect(host: str, port: int) -> Any:
    from lab.server.config import read_password

    return _driver().connect(
        host=host,
        port=port,
        user=os.environ.get("CATTLE_DB_CATTLE_USERNAME", "cattle"),
        password=read_password(os.environ),
        connect_timeout=3,
        read_timeout=10,
    )


def refusal(exc: Exception) -> str | None:
    """`1040 Too many connections` when the server refused a connection for lack of slots."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return f"{code} {exc.args[1]}" if code in REFUSED and len(exc.args) > 1 else None


def free_slots(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@max_connections")
        (most,) = cur.fetchone()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        (_, used) = cur.fetchone()
    return int(most) - int(used)


def hold(host: str, port: int, leave: int, until: float) -> None:
    held: list[Any] = []
    shown: dict[str, Any] = {}
    while time.time() < until:
        refused, error = None, None
        try:
            if not held:
                held.append(connect(host, port))
            want = max(0, free_slots(held[0]) - leave)
            for _ in range(want + (1 if leave == 0 else 0)):  # with none to leave, until refused
                held.append(connect(host, port))
        except _driver().MySQLError as exc:
            refused = refusal(exc)
            if not refused:  # the server went away or is starting: begin again
                error = f"{type(exc).__name__}: {exc}"
                for c in held:
                    c.close()
                held = []
        state = {"held": len(held), "refused": refused, "error": error}
        if state != shown:
            print(json.dumps({"t": round(time.time(), 3), **state}), flush=True)
            shown = state
        time.sleep(POLL)


def probe(host: str, port: int) -> str:
    try:
        connect(host, port).close()
    except _driver().MySQLError as exc:
        return refusal(exc) or f"{type(exc).__name__}: {exc}"
    return "ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="connhold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--leave", type=int, default=0, help="connections to leave free")
    ap.add_argument("--until", type=float, default=time.time() + 86400, help="epoch seconds to give up at")
    ap.add_argument("--probe", action="store_true", help="try one connection and say how it went")
    args = ap.parse_args(argv)
    if args.probe:
        print(probe(args.host, args.port))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the connections close with the process
    hold(args.host, args.port, args.leave, args.until)
    return 0


if __name__ == "__main__":
    sys.exit(main())
