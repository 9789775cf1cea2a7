"""A Galera member's health for the database front: HTTP 200 only when it can take writes.

    python3 clustercheck.py [--port 9200]

Runs beside mariadbd in each Galera member (compose/images/galera/entrypoint.sh), as the
`clustercheck` scripts of Percona and MariaDB's packagers do: on every request it reads
`wsrep_local_state` and `wsrep_cluster_status` over the server's socket (the container's own OS
user, unix_socket authentication: no password anywhere) and answers 200 when the member is Synced
(state 4) in the Primary Component, 503 otherwise (joining, donor, desynced, non-Primary, or the
server not answering). A donor is refused too: a mariabackup state transfer holds it.

Standard library only: the Galera image has python3 and the mariadb client, nothing else.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYNCED = "4"
PRIMARY = "Primary"
QUERY = "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_cluster_status')"
TIMEOUT = 2.0  # seconds: the front's check gives up after 1 s, a stuck server must not pile up clients


def verdict(status: Mapping[str, str]) -> tuple[int, str]:
    """(HTTP status, one line) from the wsrep status variables."""
    state, cluster = status.get("wsrep_local_state"), status.get("wsrep_cluster_status")
    if state == SYNCED and cluster == PRIMARY:
        return 200, "synced, primary"
    return 503, f"not ready: wsrep_local_state={state}, wsrep_cluster_status={cluster}"


def parse_status(text: str) -> dict[str, str]:
    """`mariadb -N -B` output (name TAB value per line) -> {name: value}."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("\t")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def read_status() -> dict[str, str]:
    """The member's wsrep status; empty when the server does not answer in time."""
    try:
        proc = subprocess.run(["mariadb", "-N", "-B", "-e", QUERY], capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_status(proc.stdout) if proc.returncode == 0 else {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code, text = verdict(read_status())
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one check a second per front: the member's log stays the server's


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9200)
    args = p.parse_args(argv)
    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
