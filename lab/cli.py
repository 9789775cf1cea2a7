"""`halab`: thin command line over the lab's modules. Each command calls one function.

Errors print one actionable line and exit non-zero (2 bad input, 1 runtime failure, 3 a check
or claim that did not hold); `--verbose` adds the traceback; `--json` prints data as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn

from lab.errors import BadInput, LabError, mask

Handler = Callable[[argparse.Namespace], int]
# Command groups that live beside what they drive; each has add_commands(command), where
# command(name, handler, help) returns the new subparser (see build_parser).
COMMAND_MODULES: tuple[str, ...] = ("lab.cli_load", "lab.cli_chaos", "lab.cli_capacity")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


# ----------------------------------------------------------------------------- shared options

def add_lab_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=os.environ.get("HALAB_NAME", "halab"),
                   help="lab name = compose project (default: $HALAB_NAME or 'halab')")


def add_topology_options(p: argparse.ArgumentParser) -> None:
    add_lab_name(p)
    p.add_argument("--nodes", default="3", help="cluster size: 1, 3 or 5 (default 3)")
    p.add_argument("--layout", help="datacenters, e.g. dc-a:2,dc-b:1 (default by size)")
    p.add_argument("--db-dc", help="datacenter the database lives in, or 'external' (default: the first)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address the load balancer's ports bind (default 127.0.0.1; others expose the lab)")
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--mgmt-port", type=int, default=18080)
    p.add_argument("--direct-port", type=int, help="benchmarks: also publish the first node's API on this port")
    p.add_argument("--pool-size", type=int, default=50, help="DB connections per node (the guide: 50)")
    p.add_argument("--pool-wait-ms", type=int, default=2000)
    p.add_argument("--java-opts", default="-Xmx1g", help="CATTLE_JAVA_OPTS for every node (its -Xmx is the "
                   "modelled heap)")
    p.add_argument("--heap-scale", type=int, default=32)
    p.add_argument("--db-max-connections", type=int, help="database max_connections (default: nodes x pool + 10)")
    p.add_argument("--db-memory", type=int, default=1024, help="database container memory, MiB (the guide: 1 GB)")
    p.add_argument("--db-buffer-pool", type=int, default=256, help="InnoDB buffer pool, MiB")
    p.add_argument("--node-memory", type=int, help="node container memory limit, MiB (default: from the heap)")
    p.add_argument("--tls-cert", help="your own certificate (PEM) for 443 instead of a generated one")
    p.add_argument("--tls-key", help="the key of --tls-cert")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a server setting for every node, e.g. HALAB_PROCESS_DELAY_MS=1000 (a CATTLE_* or HALAB_* "
                   "variable of docs/architecture.md that no other option sets; repeatable)")


def topology_from_args(args: argparse.Namespace):
    from lab.topology import Ports, Sizing, Tls, make_topology, parse_server_env

    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadInput("--tls-cert and --tls-key go together")
    return make_topology(
        args.nodes,
        lab=args.name,
        layout=args.layout,
        db_dc=args.db_dc,
        ports=Ports(bind=args.bind, http=args.http_port, https=args.https_port, mgmt=args.mgmt_port,
                    direct=args.direct_port),
        sizing=Sizing(pool_size=args.pool_size, pool_wait_ms=args.pool_wait_ms, java_opts=args.java_opts,
                      heap_scale=args.heap_scale, db_max_connections=args.db_max_connections,
                      db_memory_mib=args.db_memory, db_buffer_pool_mib=args.db_buffer_pool,
                      node_mem_limit_mib=args.node_memory),
        tls=Tls(cert=args.tls_cert, key=args.tls_key),
        db_image=os.environ.get("HALAB_DB_IMAGE") or None,
        server_env=parse_server_env(args.server_env),
    )


# ----------------------------------------------------------------------------------- commands

def cmd_render(args: argparse.Namespace) -> int:
    from lab import compose, images, state

    t = topology_from_args(args)
    tags = images.image_tags()
    if args.out:
        path = state.materialize(t, Path(args.out), tags)
        say(f"wrote {path} and its haproxy.cfg, secrets and TLS files; run: docker compose -f {path} up -d")
    print(compose.dump(compose.render(t, tags)), end="")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from lab import docker, images

    docker.require_docker()
    tags = images.build(say, only=tuple(args.only or ()), force=args.force)
    emit(args, tags, "\n".join(f"{k}: {v}" for k, v in tags.items()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from lab import preflight

    t = topology_from_args(args)
    findings = preflight.check(t)
    emit(args, [f.__dict__ for f in findings], "\n".join(f.line() for f in findings))
    return 3 if preflight.errors(findings) else 0


def cmd_up(args: argparse.Namespace) -> int:
    from lab import lab

    t = topology_from_args(args)
    ep = lab.up(t, say, keep_on_failure=args.keep_on_failure, timeout=args.timeout,
                allow_undersized=args.allow_undersized)
    lines = [f"lab {t.lab!r} is up: {t.size} node(s), quorum {t.majority}, survives {t.tolerance} failure(s)",
             *ep.lines(), f"tear down with: halab down --name {t.lab}"]
    emit(args, ep.__dict__ | {"ca_path": str(ep.ca_path)}, "\n".join(lines))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from lab import docker, lab

    docker.require_docker()
    removed = lab.down(args.name, keep_data=args.keep_data, say=say)
    if args.json:
        emit(args, removed, "")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab import docker, lab, state

    docker.require_docker()
    t = state.load_topology(args.name)
    st = lab.status(t)
    rows = [f"{'node':6} {'dc':6} {'container':18} {'zookeeper':12} {'ha':12} {'lb':6}"]
    rows += [f"{n['name']:6} {n['datacenter']:6} {n['container']:18} {n['zk_mode']:12} {n['ha_state']:12} "
             f"{n['lb']:6}" for n in st["nodes"]]
    rows.append(f"database: {st['db']['container']} in {st['db']['datacenter']}, "
                f"{'answers' if st['db']['answers'] else 'does not answer'}; "
                f"load balancer: {st['lb']['container']}")
    emit(args, st, "\n".join(rows))
    healthy = all(n["ha_state"] == "active" and n["lb"] == "UP" for n in st["nodes"]) and st["db"]["answers"]
    return 0 if healthy else 3


def cmd_logs(args: argparse.Namespace) -> int:
    from lab import docker, lab, state

    docker.require_docker()
    print(mask(lab.logs(state.load_topology(args.name), tuple(args.service or ()), args.tail)))
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are bad input too: one line and exit 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="halab", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks")
    p.add_argument("--json", action="store_true", help="print data as JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(handler=handler)
        return sp

    sp = command("render", cmd_render, "print the compose file for a topology")
    add_topology_options(sp)
    sp.add_argument("--out", help="also write the compose project and its files into this folder")

    sp = command("build", cmd_build, "build the lab's images (cached: only what changed)")
    sp.add_argument("--only", action="append", choices=["db", "lb", "node"])
    sp.add_argument("--force", action="store_true")

    sp = command("check", cmd_check, "check a topology against the install guide's requirements (pre-flight)")
    add_topology_options(sp)

    sp = command("up", cmd_up, "start a lab and wait until every node is healthy")
    add_topology_options(sp)
    sp.add_argument("--allow-undersized", action="store_true",
                    help="start even when pre-flight finds the sizing short of the guide (experiments)")
    sp.add_argument("--keep-on-failure", action="store_true", help="leave a failed start in place to debug")
    sp.add_argument("--timeout", type=float, default=180, help="seconds to wait for health")

    sp = command("down", cmd_down, "remove a lab's containers, networks and volumes")
    add_lab_name(sp)
    sp.add_argument("--keep-data", action="store_true", help="keep the database volume for the next up")

    sp = command("status", cmd_status, "show each node, the load balancer and the database")
    add_lab_name(sp)

    sp = command("logs", cmd_logs, "print the lab's container logs")
    add_lab_name(sp)
    sp.add_argument("service", nargs="*", help="db, lb or node names (default: all)")
    sp.add_argument("--tail", type=int)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(command)
    return p


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` (teardown, heal) runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.handler(args)
    except LabError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"halab: error: {mask(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("halab: interrupted; cleaned up what this command started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
