"""`halab up`, `down`, `status`, `render`, `logs`, `build`, `check`: one lab's life (lab.cluster)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lab.cli.common import DEFAULT_HOSTS, AddCommand, add_lab_name, add_topology_options, emit, topology_from_args
from lab.core.errors import BadInput, mask

log = logging.getLogger("halab.cli.cluster")


def cmd_render(args: argparse.Namespace) -> int:
    from lab.cluster import addressing, compose, images, stack, state

    t = topology_from_args(args)
    tags = images.image_tags()
    # Fixed addresses free on this machine now; a swarm gives none.
    plan = None if t.engine.swarm else addressing.choose(t, addressing.used_subnets())
    if args.out:
        path = state.materialize(t, Path(args.out), tags, plan)
        run = f"docker stack deploy -c {path} {t.lab}" if plan is None else f"docker compose -f {path} up -d"
        log.info(f"wrote {path} and its haproxy.cfg, secrets and TLS files; run: {run}")
    print(compose.dump(stack.render(t, tags) if plan is None else compose.render(t, tags, plan)), end="")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from lab.cluster import docker, images

    docker.require_docker()
    tags = images.build(only=tuple(args.only or ()), force=args.force)
    emit(args, tags, "\n".join(f"{k}: {v}" for k, v in tags.items()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from lab.cluster import preflight

    t = topology_from_args(args)
    findings = preflight.check(t)
    emit(args, [f.__dict__ for f in findings], "\n".join(f.line() for f in findings))
    return 3 if preflight.errors(findings) else 0


def cmd_up(args: argparse.Namespace) -> int:
    from lab.cluster import lifecycle

    t = topology_from_args(args)
    ep = lifecycle.up(
        t, keep_on_failure=args.keep_on_failure, timeout=args.timeout, allow_undersized=args.allow_undersized
    )
    lines = [
        (
            f"lab {t.lab!r} is up: {t.size} node(s), quorum {t.majority}, survives {t.tolerance} failure(s), "
            f"node profile {t.profile}"
        ),
        *ep.lines(),
        f"tear down with: halab down --name {t.lab}",
    ]
    emit(args, ep.__dict__ | {"ca_path": str(ep.ca_path)}, "\n".join(lines))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from lab.cluster import docker, lifecycle

    docker.require_docker()
    removed = lifecycle.down(args.name, keep_data=args.keep_data)
    log.info(lifecycle.removed_line(args.name, removed, args.keep_data))
    if args.json:
        emit(args, removed, "")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.cluster import docker, lifecycle, state

    docker.require_docker()
    t = state.load_topology(args.name)
    st = lifecycle.status(t)
    rows = [
        f"node profile: {t.profile}",
        f"{'node':6} {'dc':6} {'container':18} {'zookeeper':12} {'ha':12} {'lb':6} server restarts",
    ]
    rows += [
        f"{n['name']:6} {n['datacenter']:6} {n['container']:18} {n['zk_mode']:12} {n['ha_state']:12} "
        f"{n['lb']:6} {_restarts(n)}"
        for n in st["nodes"]
    ]
    rows.append(
        f"database: {st['db']['container']} in {st['db']['datacenter']}, "
        f"{'answers' if st['db']['answers'] else 'does not answer'}; "
        f"load balancer: {st['lb']['container']}"
    )
    if "galera" in st["db"]:
        rows += _galera_rows(st["db"]["galera"])
    if st["monitoring"]:
        containers = ", ".join(f"{s} {state}" for s, state in st["monitoring"].items())
        rows.append(f"prometheus: {st['endpoints']['prometheus']} ({containers})")
    emit(args, st, "\n".join(rows))
    return 0 if lifecycle.healthy(st) else 3


def _galera_rows(g: dict[str, Any]) -> list[str]:
    """Each member's wsrep state; where the Primary Component is; whom the front serves from."""
    rows = [f"{'member':6} {'dc':6} {'container':18} {'wsrep state':16} {'cluster':12} size"]
    rows += [
        f"{m['name']:6} {m['datacenter']:6} {m['container']:18} {m['state'] or '-':16} "
        f"{m['cluster_status'] or '-':12} {m['cluster_size'] if m['cluster_size'] is not None else '-'}"
        for m in g["members"]
    ]
    p = g["primary"]
    rows.append(
        (
            f"primary component: {', '.join(p['members'])} in {', '.join(p['datacenters'])}"
            if p
            else "no primary component"
        )
        + f"; the front serves from {g['front_serves'] or 'no member'}"
        + (f"; garbd {g['arbitrator']}" if "arbitrator" in g else "")
    )
    return rows


def _restarts(node: dict[str, Any]) -> str:
    count = node["server_restarts"]
    if count is None:
        return "?"
    return f"{count}" + (f" (last exit {node['last_exit_status']})" if count else "")


def cmd_logs(args: argparse.Namespace) -> int:
    from lab.cluster import docker, lifecycle, state

    docker.require_docker()
    print(mask(lifecycle.logs(state.load_topology(args.name), tuple(args.service or ()), args.tail)))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from lab.cluster import docker, state
    from lab.ui import guard, server

    docker.require_docker()
    t = state.load_topology(args.name)
    secret = guard.token(state.lab_dir(t.lab))
    httpd = server.serve(server.LabUi(t), secret, args.port)
    print(f"halab ui for {t.lab}: open {server.address(httpd, secret)} (Ctrl-C stops it)", flush=True)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
    return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    from lab.cluster import docker, hosts

    if args.action == "up":
        group = hosts.make_group(
            args.name,
            args.count,
            layout=args.layout,
            published=tuple(args.publish or hosts.DEFAULT_PUBLISHED),
            storage_driver=args.storage_driver,
        )
        hosts.up(group, keep_on_failure=args.keep_on_failure)
        lines = [
            f"host group {group.name!r} is up: a swarm of {len(group.hosts)} host(s), manager {group.manager.name}"
        ]
        lines += [f"  {h.name}  {h.dc}" for h in group.hosts]
        lines.append(f"start a lab on it: halab up --engine swarm --hosts {group.name}")
        emit(args, group.to_dict(), "\n".join(lines))
        return 0
    if args.count is not None:
        raise BadInput(f"halab hosts {args.action}: takes no number of hosts")
    if args.action == "down":
        docker.require_docker()
        removed = hosts.down(args.name)
        emit(args, removed, ", ".join(f"{n} {k}" for k, n in removed.items()) + f" of host group {args.name!r} removed")
        return 0
    group = hosts.load(args.name, "--name")
    emit(args, group.to_dict(), "\n".join(f"{h.name}  {h.dc}  {' '.join(h.docker)}" for h in group.hosts))
    return 0


def add_commands(command: AddCommand) -> None:
    sp = command("render", cmd_render, "print the compose file for a topology")
    add_topology_options(sp)
    sp.add_argument("--out", help="also write the compose project and its files into this folder")

    sp = command("build", cmd_build, "build the lab's images (cached: only what changed)")
    sp.add_argument("--only", action="append", choices=["db", "lb", "node", "prom", "galera", "dind", "loadgen"])
    sp.add_argument("--force", action="store_true")

    sp = command("check", cmd_check, "check a topology against the install guide's requirements (pre-flight)")
    add_topology_options(sp)

    sp = command("up", cmd_up, "start a lab and wait until every node is healthy")
    add_topology_options(sp)
    sp.add_argument(
        "--allow-undersized",
        action="store_true",
        help="start even when pre-flight finds the sizing short of the guide (experiments)",
    )
    sp.add_argument("--keep-on-failure", action="store_true", help="leave a failed start in place to debug")
    sp.add_argument(
        "--timeout", type=float, help="seconds to wait for health (default 180, and 60 more per Galera member)"
    )

    sp = command("down", cmd_down, "remove a lab's containers, networks and volumes")
    add_lab_name(sp)
    sp.add_argument("--keep-data", action="store_true", help="keep the database volume for the next up")

    sp = command("status", cmd_status, "show each node, the load balancer and the database")
    add_lab_name(sp)

    sp = command("ui", cmd_ui, "serve a live page of the lab on 127.0.0.1: picture, faults, load")
    add_lab_name(sp)
    sp.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")

    sp = command("hosts", cmd_hosts, "make Docker hosts here for swarm labs (containers with dockerd), or remove them")
    sp.add_argument("action", choices=["up", "down", "ls"])
    sp.add_argument("count", nargs="?", help="up: how many hosts (the first is the swarm's manager)")
    sp.add_argument("--name", default=DEFAULT_HOSTS, help=f"the host group (default {DEFAULT_HOSTS!r})")
    sp.add_argument("--layout", help="up: the hosts' datacenters, e.g. dc-a:2,dc-b:1 (default by count, as --nodes)")
    sp.add_argument(
        "--publish",
        type=int,
        action="append",
        help="up: a port the manager publishes on 127.0.0.1 for the labs' load balancer (repeatable; "
        "default 80, 443 and 18080)",
    )
    sp.add_argument(
        "--storage-driver", default="overlay2", choices=["overlay2", "vfs"], help="up: the hosts' dockerd storage"
    )
    sp.add_argument("--keep-on-failure", action="store_true", help="up: leave a failed start in place to debug")

    sp = command("logs", cmd_logs, "print the lab's container logs")
    add_lab_name(sp)
    sp.add_argument("service", nargs="*", help="db, lb or node names (default: all)")
    sp.add_argument("--tail", type=int)
