"""A lab's life: up (build, render, start, wait on real health), status, logs, down.

Every start has a teardown on every path: if `up` fails or is interrupted half-way, what it
started is removed (unless the user asks to keep it for debugging). `down` finds everything by
the lab's labels, so it also cleans up after a harness that was killed outright.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cluster import (
    addressing,
    compose,
    docker,
    engine,
    galera_life,
    hosts,
    images,
    preflight,
    probes,
    prometheus,
    state,
    swarm,
)
from lab.cluster.compose import registration_url
from lab.cluster.database import ARBITRATOR
from lab.cluster.topology import Topology
from lab.core.errors import BadInput, RuntimeFailure
from lab.core.wait import WaitTimeout, wait_for, wait_until
from lab.server import profiles

log = logging.getLogger("halab.cluster.lifecycle")

SCHEMA_TABLE = "DATABASECHANGELOG"


@dataclass(frozen=True)
class Endpoints:
    api: str
    api_tls: str
    management: str
    registration_url: str
    ca_path: Path
    prometheus: str | None = None  # with monitoring

    def lines(self) -> list[str]:
        return [
            f"API (HTTP):            {self.api}",
            f"API (HTTPS):           {self.api_tls}",
            f"management view:       {self.management}",
            f"host registration URL: {self.registration_url}",
            f"CA certificate:        {self.ca_path}",
            *([f"Prometheus:            {self.prometheus}"] if self.prometheus else []),
        ]


def endpoints(t: Topology) -> Endpoints:
    def url(scheme: str, port: int, default: int, path: str = "") -> str:
        return f"{scheme}://{t.ports.bind}{'' if port == default else f':{port}'}{path}"

    return Endpoints(
        url("http", t.ports.http, 80, "/v1"),
        url("https", t.ports.https, 443, "/v1"),
        url("http", t.ports.mgmt, 80, "/"),
        registration_url(t),
        state.ca_path(t.lab),
        url("http", t.ports.prom, 80, "/") if t.monitoring else None,
    )


# ---------------------------------------------------------------------------------------------- up


def swarm_lab(lab: str) -> Topology | None:
    """The topology of a swarm lab whose state directory is here; None for any other (a compose
    lab's containers are found by label, state directory or not)."""
    try:
        t = state.load_topology(lab)
    except BadInput:
        return None
    return t if t.engine.swarm else None


def running_containers(lab: str) -> list[str]:
    """The lab's running containers: on this machine, or a swarm lab's on its hosts."""
    t = swarm_lab(lab)
    found = engine.states(t) if t else docker.container_states(lab)
    return [c.name for c in found if c.running]


def up(
    t: Topology,
    *,
    keep_on_failure: bool = False,
    timeout: float | None = None,
    allow_undersized: bool = False,
    before_nodes: Callable[[Topology], None] | None = None,
) -> Endpoints:
    """Start the lab and wait until it is healthy; `timeout` (seconds) defaults to default_timeout(t).
    `before_nodes`: run once the database answers and before the nodes start (a restore loads its
    dump there, so that the nodes' migrations find the restored schema); compose engine only."""
    docker.require_docker()
    group = engine.group(t) if t.engine.swarm else None
    if group is not None:
        hosts.check_lab_fits(group, t.datacenters, t.published_ports)
    running = running_containers(t.lab)
    if running:
        raise BadInput(
            f"lab {t.lab!r} is already up ({len(running)} containers); use `halab status --name "
            f"{t.lab}`, or `halab down --name {t.lab}` first, or pick another --name"
        )
    preflight.enforce(t, allow_undersized)
    tags = images.build(only=images.needed(t))
    log.info(
        f"starting lab {t.lab!r}: database ({t.db.describe()}), load balancer and {t.size} node(s) over "
        f"{', '.join(f'{dc}:{len(t.nodes_in(dc))}' for dc in t.datacenters)} (database in {t.db_dc})"
    )
    ok = False
    try:
        if group is not None:
            log.info(f"on the swarm of host group {group.name!r} ({', '.join(group.names)})")
            hosts.ensure_images(group, [tags[role] for role in images.needed(t)])
            state.materialize(t, state.lab_dir(t.lab), tags, None)
            swarm.deploy(t)
        else:
            with addressing.reserving(), docker.docker_errors(f"docker compose up (project {t.lab})"):
                plan = addressing.choose(t, addressing.used_subnets())
                compose_file = state.materialize(t, state.lab_dir(t.lab), tags, plan)
                project = docker.client(t.lab, compose_file)
                if t.db.galera:  # the networks now; the members start one by one below
                    project.compose.create()
                elif before_nodes:  # the database alone first
                    project.compose.up(["db"], detach=True, quiet=True)
                else:
                    project.compose.up(detach=True, quiet=True)
        deadline = time.monotonic() + (timeout or default_timeout(t))

        def rest() -> None:  # once the database takes connections: the dump to restore, then the nodes
            if before_nodes:
                _wait("database", lambda: None if probes.db_alive(t) else "the database does not answer yet", deadline)
                before_nodes(t)
            with docker.docker_errors(f"docker compose up (project {t.lab})"):
                # A Galera lab's members are left to galera_life, which starts them one by one.
                project.compose.up(beside_database(t), detach=True, quiet=True)

        if t.db.galera:  # a compose lab's: make_topology refuses Galera on a swarm
            log.info("waiting for health:")
            # The nodes start while the other members join: they need the first member only.
            galera_life.start(t, deadline, while_joining=rest)
        elif before_nodes:
            rest()
        wait_healthy(t, timeout=deadline - time.monotonic())
        ok = True
    finally:
        if not ok and not keep_on_failure:
            log.info("start failed or was interrupted: removing what was started (use --keep-on-failure to inspect)")
            dump_logs(t)
            down(t.lab, keep_data=False)
    return endpoints(t)


def beside_database(t: Topology) -> list[str] | None:
    """The lab's services but a Galera database's members and arbitrator (None: every service)."""
    if not t.db.galera:
        return None
    return [s for s in compose.services(t) if s not in (*t.db.member_names, ARBITRATOR)]


def default_timeout(t: Topology) -> float:
    """Seconds a start may take: 180, and 60 more per Galera member (each joins by a state transfer)."""
    return 180.0 + (60.0 * t.db.members if t.db.galera else 0.0)


def _wait(what: str, check: Callable[[], str | None], deadline: float) -> None:
    """Wait until `check` says nothing is off (None), logging how long it took."""
    log.info(f"  {what}: ready after {wait_until(what, check, deadline):.1f} s")


def wait_healthy(t: Topology, timeout: float = 180) -> None:
    """Database ready (a Galera database whole: every member Synced, counting every voter), schema
    in place, ZooKeeper quorum with one leader, every node active via the LB;
    with monitoring, Prometheus scraping every target, so that a run's series start with it."""
    deadline = time.monotonic() + timeout

    def db() -> str | None:
        return None if probes.db_alive(t) else "the database does not answer yet"

    def schema() -> str | None:
        try:
            rows = probes.db_query(t, f"SELECT COUNT(*) AS n FROM {SCHEMA_TABLE}", timeout=5)
        except RuntimeFailure:
            return "no schema yet (migrations have not run)"
        return None if rows and int(rows[0]["n"]) > 0 else "migrations have not finished"

    def quorum() -> str | None:
        return probes.quorum_problem({n: probes.node_view(t, n).zk_mode for n in t.node_names})

    def nodes_active() -> str | None:
        # Each node's own HA state, not /ping alone: a rancher-1.0 node answers pong at once.
        views = [probes.node_view(t, n) for n in t.node_names]
        lb = probes.lb_servers(t)
        bad = [f"{v.name}={v.state}" for v in views if not v.active]
        bad += [f"lb:{n}={s}" for n, s in lb.items() if s != "UP"]
        if not lb:
            bad.append("load balancer stats not readable yet")
        return ", ".join(bad) or None

    if not t.db.galera:  # a Galera database was waited on member by member as it started
        log.info("waiting for health:")
    _wait("database", db, deadline)
    if t.db.galera:  # the front answers as soon as one member is Synced; after a heal the others may still be joining
        _wait("every Galera member Synced in one Primary Component", lambda: galera_life.unsettled(t), deadline)
    _wait("schema", schema, deadline)
    _wait("ZooKeeper quorum", quorum, deadline)
    _wait("every node active through the load balancer", nodes_active, deadline)
    if t.monitoring:
        _wait("Prometheus scraping every target", lambda: prometheus.scrape_problem(t), deadline)


# -------------------------------------------------------------------------------------- down, logs


def down(lab: str, keep_data: bool = False) -> dict[str, int]:
    """Remove every container, network (and volume and state directory unless keep_data) of the lab.

    Works from labels alone, so it cleans up after a harness killed with SIGKILL or a state
    directory that is gone. A swarm lab (known by its state directory) is removed from every host."""
    t = swarm_lab(lab)
    if t is not None:
        try:
            removed = swarm.remove(t, keep_data)
        except BadInput as exc:  # its host group is gone, and the lab with it
            log.info(f"lab {lab!r}: {exc}; removing its state directory only")
            removed = {"containers": 0, "networks": 0, "volumes": 0}
        if not keep_data:
            shutil.rmtree(state.lab_dir(lab), ignore_errors=True)
        log.debug(removed_line(lab, removed, keep_data))
        return removed
    removed = {"containers": 0, "networks": 0, "volumes": 0}
    ids = docker.labelled("container", lab)
    if ids:
        docker.run(["docker", "rm", "-f", "-v", *ids], f"remove containers of lab {lab}", timeout=120)
        removed["containers"] = len(ids)
    nets = docker.labelled("network", lab)
    if nets:
        removed["networks"] = _remove_networks(lab, nets)
    if not keep_data:
        vols = docker.labelled("volume", lab)
        if vols:
            docker.run(["docker", "volume", "rm", "-f", *vols], f"remove volumes of lab {lab}", timeout=60)
            removed["volumes"] = len(vols)
    if not keep_data:
        # The state directory holds the lab's secrets: kept only with the data they unlock.
        shutil.rmtree(state.lab_dir(lab), ignore_errors=True)
    log.debug(removed_line(lab, removed, keep_data))
    return removed


def removed_line(lab: str, removed: dict[str, int], keep_data: bool = False) -> str:
    """What `down` removed, in one line (`halab down` shows it; `down` itself logs it at DEBUG)."""
    return (
        f"lab {lab!r}: removed {removed['containers']} containers, {removed['networks']} networks, "
        f"{removed['volumes']} volumes" + (" (database volume kept)" if keep_data else "")
    )


NETWORK_RELEASE = 60.0  # seconds Docker is given to release a removed container's endpoint


def _remove_networks(lab: str, nets: list[str]) -> int:
    """`docker network rm`; returns how many went. Docker sometimes still holds an endpoint of a
    container it has just removed ("has active endpoints"; on Docker 28 even with no container
    listed on the network, for a second or two under load), so what is left attached is
    force-disconnected and the networks that remain are removed again until they are gone.

    Docker 20.10 can also keep counting an endpoint for good with none listed and none known by
    name (seen twice on this machine, once in a CI rehearsal; only a restart of dockerd clears
    it). Such an empty network is left behind with a warning that names it, rather than failing
    the teardown of a lab whose containers and volumes are gone; anything still attached fails."""
    what = f"remove networks of lab {lab}"
    try:
        docker.run(["docker", "network", "rm", *nets], what, timeout=60)
        return len(nets)
    except RuntimeFailure as exc:
        if not exc.stderr_has("active endpoints"):
            raise

    def removed() -> bool:
        left = docker.labelled("network", lab)
        for net in docker.inspect(left, "network"):
            for endpoint in (net.get("Containers") or {}).values():
                with suppress(RuntimeFailure):  # gone meanwhile
                    docker.run(
                        ["docker", "network", "disconnect", "-f", net["Id"], endpoint["Name"]],
                        f"disconnect a stale endpoint from {net['Name']}",
                        timeout=60,
                    )
        if left:
            docker.run(["docker", "network", "rm", *left], what, timeout=60)
        return True

    try:
        wait_for(
            f"the networks of lab {lab} to be removable",
            removed,
            NETWORK_RELEASE,
            interval=1.0,
            not_yet=(RuntimeFailure,),
        )
    except WaitTimeout:
        left = docker.inspect(docker.labelled("network", lab), "network")
        if any(net.get("Containers") for net in left):
            raise
        log.warning(
            f"lab {lab!r}: Docker still counts an endpoint on network(s) {', '.join(n['Name'] for n in left)} "
            f"with none attached, {NETWORK_RELEASE:g} s after the lab's containers were removed; left behind "
            "(empty; a restart of dockerd releases it)"
        )
        return len(nets) - len(left)
    return len(nets)


def _log_of(t: Topology, service: str, *options: str) -> tuple[str, subprocess.CompletedProcess[str] | None]:
    """(the container's name, `docker logs` of it); None when the container cannot be found."""
    try:
        where = engine.place(t, service)
    except RuntimeFailure:
        return service, None
    args = where.command("logs", "--timestamps", *options, where.container)
    return (where.container if not where.host else f"{service} on {where.host}"), subprocess.run(
        args, capture_output=True, text=True
    )


def logs(t: Topology, services: tuple[str, ...] = (), tail: int | None = None) -> str:
    out = []
    for service in services or compose.services(t):
        name, proc = _log_of(t, service, *(["--tail", str(tail)] if tail else []))
        text = f"{proc.stdout}{proc.stderr}" if proc else "(no container)\n"
        out.append(f"===== {name} =====\n{text}")
    return "\n".join(out)


def save_logs(t: Topology, folder: Path) -> list[Path]:
    """Each container's whole log (timestamped) into FOLDER/<service>.log, so that what a run saw can
    be read after its lab is gone; a container that is already gone is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for service in compose.services(t):
        _, proc = _log_of(t, service)
        if proc is not None and proc.returncode == 0:
            path = folder / f"{service}.log"
            path.write_text(proc.stdout + proc.stderr)
            out.append(path)
    return out


def dump_logs(t: Topology, tail: int = 30) -> None:
    try:
        for line in logs(t, tail=tail).splitlines():
            log.info("  | " + line)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------ status


def status(t: Topology) -> dict[str, Any]:
    """Each node's container state, datacenter, ZooKeeper mode, HA state and server restarts; LB
    backends; database; the monitoring containers; the node profile and the settings the nodes run with."""
    containers = engine.current(engine.states(t))
    lb = probes.lb_servers(t)
    nodes = []
    for n in t.nodes:
        c = containers.get(n.name)
        running = bool(c and c.running)
        view = probes.node_view(t, n.name) if running else None
        supervisor = probes.supervisor_state(t, n.name) if running else {}
        nodes.append(
            {
                "name": n.name,
                "datacenter": n.dc,
                "host": c.host if c else "",  # a swarm lab's: the host running it
                "container": _container_state(c),
                "zk_mode": view.zk_mode if view else "down",
                "ha_state": view.state if view else "down",
                "ping": view.ping if view else None,
                "lb": lb.get(n.name, "unknown"),
                "server_restarts": supervisor.get("serverRestarts"),
                "last_exit_status": supervisor.get("lastExitStatus"),
            }
        )
    db = containers.get(compose.database_services(t)[0])  # the database, or a Galera database's front
    return {
        "lab": t.lab,
        "size": t.size,
        "quorum": t.majority,
        "nodes": nodes,
        "lb": {"container": _container_state(containers.get("lb")), "backends": lb},
        "db": {
            "container": _container_state(db),
            "datacenter": t.db_dc,
            "answers": bool(db and db.running and probes.db_alive(t)),
            **({"galera": galera_status(t, containers)} if t.db.galera else {}),
        },
        "endpoints": endpoints(t).__dict__ | {"ca_path": str(endpoints(t).ca_path)},
        "monitoring": (
            {s: _container_state(containers.get(s)) for s in compose.MONITORING_SERVICES} if t.monitoring else None
        ),
        "profile": profile_settings(t),
    }


def galera_status(t: Topology, containers: dict[str, docker.ContainerState]) -> dict[str, Any]:
    """Each member's wsrep state, the side holding the Primary Component, the member the front
    serves from and the arbitrator's container."""
    views = galera_life.members(t, containers)
    return {
        "members": [v.to_dict() for v in views],
        "primary": galera_life.primary(views),
        "front_serves": galera_life.front_target(t),
        **({"arbitrator": _container_state(containers.get(ARBITRATOR))} if t.db.arbitrator else {}),
    }


def healthy(st: dict[str, Any]) -> bool:
    """What `status` returned shows every node active and UP in the load balancer, the database
    answering (a Galera database: every member Synced in the Primary Component)."""
    members = (st["db"].get("galera") or {}).get("members", [])
    return (
        all(n["ha_state"] == "active" and n["lb"] == "UP" for n in st["nodes"])
        and bool(st["db"]["answers"])
        and all(m["ready"] for m in members)
    )


def server_restarts(t: Topology) -> dict[str, int | None]:
    """Per node, how often its supervisor restarted the API server (None: not readable, e.g. the
    container is down)."""
    return {n: probes.supervisor_state(t, n).get("serverRestarts") for n in t.node_names}


def profile_settings(t: Topology) -> dict[str, Any]:
    """The node profile and its effective values: the server's settings as the nodes' environment
    makes them (the same computation as the node's /status.json) and what the lab renders."""
    p = profiles.from_env(compose.node_environment(t, t.nodes[0].name))
    return {**profiles.effective(p), "harness": {f.name: getattr(p, f.name) for f in profiles.harness_settings()}}


def _container_state(c: docker.ContainerState | None) -> str:
    return "absent" if c is None else c.word
