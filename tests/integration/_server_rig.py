"""Docker plumbing for the server node's own integration tests (kept in one place so that the
platform's lab fixtures can replace it later).

A rig is a throwaway MariaDB and 1..N `halab/node` containers on two user networks with a unique
suffix: `db` (database traffic; the containers' published ports live here) and `zk` (ZooKeeper
traffic only, through the aliases `<node>.zk`), so that cutting a node from `zk` isolates its
ZooKeeper member and nothing else. Everything carries the label `halab.dev=server` and is removed
by `close()`, which also dumps the logs when asked to.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "halab/node"
DB_IMAGE = "halab-dev/server-mariadb"
LABEL = "halab.dev=server"

_MARIADB_DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server \\
 && rm -rf /var/lib/apt/lists/*
RUN printf '[mysqld]\\nbind-address=0.0.0.0\\nmax_connections=400\\nskip-name-resolve\\ninnodb_buffer_pool_size=64M\\n' \\
      > /etc/mysql/mariadb.conf.d/99-halab-dev.cnf \\
 && mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld \\
 && (mariadbd --user=mysql --skip-networking &) \\
 && for i in $(seq 60); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done \\
 && mariadb -e "CREATE DATABASE cattle; CREATE USER 'cattle'@'%' IDENTIFIED BY 'cattle'; GRANT ALL ON \\`cattle%\\`.* TO 'cattle'@'%';" \\
 && mariadb-admin shutdown
CMD ["mariadbd", "--user=mysql"]
"""


def docker(*args: str, check: bool = True, timeout: float = 300, stdin: str | None = None) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def build_images() -> None:
    """Build halab/node from the repo (cached layers make this quick) and the dev database."""
    docker("build", "-q", "-t", NODE_IMAGE, "-f", str(REPO / "compose/images/node/Dockerfile"), str(REPO), timeout=900)
    docker("build", "-q", "-t", DB_IMAGE, "-", stdin=_MARIADB_DOCKERFILE, timeout=900)


def http(method: str, url: str, body: Any = None, auth: tuple[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], Any]:
    """(status, headers, decoded JSON or text) without raising on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, dict(e.headers), e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


def wait_for(what: str, fn: Any, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, urllib.error.URLError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Rig:
    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.db_net = f"halabsrv-{self.suffix}-db"
        self.zk_net = f"halabsrv-{self.suffix}-zk"
        self.db = f"halabsrv-{self.suffix}-mariadb"
        self.nodes: dict[str, str] = {}  # node name -> container name
        self.ports: dict[str, int] = {}
        self._containers: list[str] = []
        for net in (self.db_net, self.zk_net):
            docker("network", "create", "--label", LABEL, net)

    def start_db(self) -> None:
        docker("run", "-d", "--name", self.db, "--label", LABEL, "--network", self.db_net,
               "--network-alias", "db", DB_IMAGE)
        self._containers.append(self.db)
        wait_for("the database", self._db_answers, 90)

    def _db_answers(self) -> bool:
        try:
            return self.sql("SELECT 1") == "1"
        except RuntimeError:
            return False

    def sql(self, query: str, database: str = "cattle") -> str:
        return docker("exec", self.db, "mariadb", "-N", "-B", database, "-e", query, timeout=30)

    def start_nodes(self, names: list[str], env: dict[str, str] | None = None) -> None:
        """Create every node (ZooKeeper needs its peers' names), then start them together."""
        ensemble = ",".join(f"{i}={n}.zk" for i, n in enumerate(names, start=1)) if len(names) > 1 else ""
        conn = ",".join(f"{n}.zk:2181" for n in names) if len(names) > 1 else "127.0.0.1:2181"
        for i, name in enumerate(names, start=1):
            container = f"halabsrv-{self.suffix}-{name}"
            settings = {
                "HALAB_NODE_NAME": name,
                "CATTLE_HA_CLUSTER_SIZE": str(len(names)),
                "CATTLE_ZOOKEEPER_CONNECTION_STRING": conn,
                "HALAB_ZK_MYID": str(i),
                "HALAB_ZK_SERVERS": ensemble,
                "HALAB_CLUSTER_HEARTBEAT": "1",
                "CATTLE_HA_HOST_REGISTRATION_URL": "http://lb.example",
                **(env or {}),
            }
            args = ["create", "--name", container, "--label", LABEL, "--hostname", name,
                    "--network", self.db_net, "-p", "127.0.0.1::8080"]
            for k, v in settings.items():
                args += ["-e", f"{k}={v}"]
            docker(*args, NODE_IMAGE)
            self._containers.append(container)
            self.nodes[name] = container
            self.connect_zk(name)
        for name in names:
            docker("start", self.nodes[name])
            self.ports[name] = int(docker("port", self.nodes[name], "8080/tcp").splitlines()[0].rsplit(":", 1)[1])

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def ping(self, name: str) -> int:
        try:
            return http("GET", self.url(name, "/ping"), timeout=3)[0]
        except (OSError, urllib.error.URLError):
            return 0

    def wait_active(self, names: list[str] | None = None, timeout: float = 90) -> None:
        for name in names or list(self.nodes):
            wait_for(f"{name} to be active", lambda n=name: self.ping(n) == 200, timeout)

    def status(self, name: str) -> dict[str, Any]:
        return http("GET", self.url(name, "/status.json"))[2]

    def cut_zk(self, name: str) -> None:
        docker("network", "disconnect", self.zk_net, self.nodes[name])

    def connect_zk(self, name: str) -> None:
        docker("network", "connect", "--alias", f"{name}.zk", self.zk_net, self.nodes[name])

    def kill(self, name: str) -> None:
        docker("kill", self.nodes[name])

    def logs(self, container: str, tail: int = 120) -> str:
        proc = subprocess.run(["docker", "logs", "--tail", str(tail), container], capture_output=True, text=True)
        return proc.stdout + proc.stderr

    def close(self, dump_logs: bool = False) -> None:
        if dump_logs:
            for c in self._containers:
                sys.stderr.write(f"\n===== docker logs {c} =====\n{self.logs(c)}")
        if self._containers:
            docker("rm", "-f", "-v", *self._containers, check=False, timeout=120)
        for net in (self.db_net, self.zk_net):
            docker("network", "rm", net, check=False)


def leftovers() -> list[str]:
    return docker("ps", "-aq", "--filter", f"label={LABEL}", "--filter", "name=halabsrv-").split()

