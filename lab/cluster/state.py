"""A lab's state directory: the rendered compose project, its config, secrets and TLS material.

`$HALAB_HOME/labs/<lab>/` (default `~/.local/state/halab`), holding:
  compose.yaml, haproxy.cfg, topology.json   what `docker compose` runs and how it was asked for
  stack.yaml (instead of compose.yaml)       on a swarm: what `docker stack deploy` runs
  prometheus.yml                             with monitoring: what Prometheus scrapes
  secrets/db_password, secrets/db_root_password   random per lab, 0600, owned by the containers' uid
  tls/ca.crt (0400, as the guide asks), tls/ca.key (0600), tls/server.pem (0600)
The directories are 0700. Run without root, the files the containers read (the secrets and
server.pem) cannot be given to their uid and are 0644 instead, still behind the 0700 directories.
Secrets reach containers as compose file secrets or swarm secrets (/run/secrets/...), never as environment values
or command-line arguments.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab.cluster import compose, galera, stack, tls
from lab.cluster.addressing import Plan
from lab.cluster.compose import CONTAINER_UID
from lab.cluster.database import Database
from lab.cluster.topology import OUTSIDE_LB, Engine, Node, Ports, Sizing, Tls, Topology
from lab.core.errors import BadInput, register_secret
from lab.server.profiles import DEFAULT_PROFILE

_lab_counter = itertools.count(1)


def unique_lab_name(prefix: str = "t") -> str:
    """A lab name no other process on this machine is using (pid + counter)."""
    return f"{prefix}{os.getpid()}-{next(_lab_counter)}"


def home() -> Path:
    base = os.environ.get("HALAB_HOME") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "halab"
    )
    return Path(base)


def lab_dir(lab: str) -> Path:
    return home() / "labs" / lab


def topology_to_dict(t: Topology) -> dict[str, Any]:
    return asdict(t)


def topology_from_dict(d: dict[str, Any]) -> Topology:
    return Topology(
        lab=d["lab"],
        nodes=tuple(Node(**n) for n in d["nodes"]),
        datacenters=tuple(d["datacenters"]),
        db_dc=d["db_dc"],
        ports=Ports(**d["ports"]),
        sizing=Sizing(**d["sizing"]),
        tls=Tls(**d["tls"]),
        db_image=d.get("db_image"),
        server_env=tuple((k, v) for k, v in d.get("server_env", ())),
        profile=d.get("profile", DEFAULT_PROFILE),
        lb_dc=d.get("lb_dc", OUTSIDE_LB),
        # state files from before issue 15 have no "db": a single database
        db=_database(d.get("db") or {}),
        monitoring=bool(d.get("monitoring", False)),  # absent from labs started before monitoring existed
        engine=Engine(**d.get("engine", {})),  # absent from labs started before swarm existed: compose
    )


def _database(d: dict[str, Any]) -> Database:
    return Database(**{**d, "layout": tuple(d.get("layout", ()))})


def load_topology(lab: str) -> Topology:
    path = lab_dir(lab) / "topology.json"
    try:
        return topology_from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise BadInput(
            f"no lab named {lab!r} here ({path} is missing): start one with `halab up --name {lab}`"
        ) from None


def can_chown() -> bool:
    return os.geteuid() == 0


def _write(path: Path, data: bytes, mode: int, owner: int | None = None) -> None:
    """Write a file the containers' user `owner` must read. Root hands it over with chown. A user
    without root (in the docker group) cannot, so the file is made readable to all instead: the
    lab's 0700 directory still keeps every other host user out, while a bind mount takes the
    container straight to the file without passing through that directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        path.chmod(0o600)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if owner is not None:
        if can_chown():
            os.chown(path, owner, owner)
        else:
            mode |= 0o444
    path.chmod(mode)


def _secret(path: Path) -> str:
    """Read an existing per-lab secret or create a new random one (kept across `down --keep-data`)."""
    if path.exists():
        value = path.read_text().strip()
    else:
        value = secrets.token_urlsafe(24)
        _write(path, value.encode(), 0o600, CONTAINER_UID)
    register_secret(value)
    return value


def materialize(t: Topology, directory: Path, image_tags: dict[str, str], plan: Plan | None) -> Path:
    """Write everything the compose project (or, on a swarm, the stack) needs into `directory`;
    return its compose or stack file. PLAN: the fixed addresses of a compose project (a swarm has
    none)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    for name in ("db_password", "db_root_password"):
        _secret(directory / compose.SECRET_FILES[name])
    tdir = directory / "tls"
    if t.tls.provided:
        assert t.tls.cert and t.tls.key
        cert, key = tls.load_provided(t.tls.cert, t.tls.key)
        _write(tdir / "ca.crt", cert, 0o400)
    elif not (tdir / "server.pem").exists():
        ca, ca_key, cert, key = tls.generate(t.lab)
        _write(tdir / "ca.crt", ca, 0o400)
        _write(tdir / "ca.key", ca_key, 0o600)
        cert = cert + ca
    else:
        cert, key = b"", b""
    if cert:
        _write(tdir / "server.pem", cert + key, 0o600, CONTAINER_UID)
    _write(directory / compose.HAPROXY_CFG, compose.haproxy_config(t).encode(), 0o644)
    if t.db.galera and plan is not None:  # make_topology refuses Galera on a swarm
        _write(directory / galera.FRONT_CFG, galera.front_config(t, plan).encode(), 0o644)
        # The members mount it (a missing file would become a directory): the member the entrypoints
        # bootstrap, for a new cluster the first; `halab up` writes it (lab/cluster/galera_life.py).
        if not (directory / galera.BOOTSTRAP_FILE).exists():
            _write(directory / galera.BOOTSTRAP_FILE, f"{galera.FIRST_BOOTSTRAP}\n".encode(), 0o644)
    if t.monitoring and plan is not None:  # make_topology refuses monitoring on a swarm
        _write(directory / compose.PROMETHEUS_CFG, compose.prometheus_config(t, plan).encode(), 0o644)
    _write(directory / "topology.json", json.dumps(topology_to_dict(t), indent=2).encode(), 0o644)
    if t.engine.swarm:
        project, rendered = directory / stack.STACK_FILE, stack.render(t, image_tags)
    elif plan is not None:
        project, rendered = directory / "compose.yaml", compose.render(t, image_tags, plan)
    else:
        raise ValueError("a compose project needs its address plan")
    _write(project, compose.dump(rendered).encode(), 0o644)
    return project


def ca_path(lab: str) -> Path:
    return lab_dir(lab) / "tls" / "ca.crt"
