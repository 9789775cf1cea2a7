"""What every command group shares: output helpers and the options that name a lab or describe a
topology."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.cluster.topology import DEFAULT_HOST_GROUP
from lab.core.errors import BadInput

if TYPE_CHECKING:
    from lab.cluster.topology import Engine, Topology

DEFAULT_HOSTS = DEFAULT_HOST_GROUP  # `halab hosts up`'s, `halab up --engine swarm`'s and `halab capacity`'s

Handler = Callable[[argparse.Namespace], int]
# command(name, handler, help) returns the new subparser; main.build_parser passes it to each
# group's add_commands.
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


# ----------------------------------------------------------------------------- shared options


def add_lab_name(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default=os.environ.get("HALAB_NAME", "halab"),
        help="lab name = compose project (default: $HALAB_NAME or 'halab')",
    )


def add_topology_options(p: argparse.ArgumentParser) -> None:
    add_lab_name(p)
    p.add_argument("--nodes", default="3", help="cluster size: 1, 3 or 5 (default 3)")
    p.add_argument("--layout", help="datacenters, e.g. dc-a:2,dc-b:1 (default by size)")
    p.add_argument("--db-dc", help="datacenter the database lives in, or 'external' (default: the first)")
    p.add_argument(
        "--db",
        help="the database: single (one MariaDB, the default) or galera:3 / galera:5 (MariaDB Galera behind a "
        "database front; docs/galera.md)",
    )
    p.add_argument(
        "--db-layout",
        help="galera: the datacenter of each member, e.g. dc-a,dc-a,dc-b (default: spread like the nodes)",
    )
    p.add_argument(
        "--db-arbitrator",
        metavar="SITE",
        help="galera: run a garbd arbitrator at SITE, a datacenter of the lab or a third site (e.g. dc-c)",
    )
    p.add_argument(
        "--lb-dc",
        help="datacenter the load balancer and its clients sit in, so that a split cuts them from the other "
        "side, or 'outside' (default: beyond every datacenter)",
    )
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        help="address the load balancer's ports bind (default 127.0.0.1; others expose the lab)",
    )
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--mgmt-port", type=int, default=18080)
    p.add_argument(
        "--monitoring",
        action="store_true",
        help="add Prometheus, scraping every node, the load balancer, the database and each ZooKeeper member "
        "(runs then record metrics.json and plot it in report.html)",
    )
    p.add_argument("--prom-port", type=int, default=9090, help="Prometheus's port, with --monitoring (default 9090)")
    p.add_argument("--direct-port", type=int, help="benchmarks: also publish the first node's API on this port")
    p.add_argument(
        "--pool-size",
        type=int,
        help="DB connections per node (default: the profile's, rancher-1.0: "
        "cattle's 1000; the database is sized for the guide's 50 unless this is set)",
    )
    p.add_argument(
        "--pool-wait-ms", type=int, help="ms a request waits for a pooled connection (default: the profile's)"
    )
    p.add_argument(
        "--java-opts", default="-Xmx1g", help="CATTLE_JAVA_OPTS for every node (its -Xmx is the modelled heap)"
    )
    p.add_argument("--heap-scale", type=int, default=32)
    p.add_argument("--db-max-connections", type=int, help="database max_connections (default: nodes x pool + 10)")
    p.add_argument("--db-memory", type=int, default=1024, help="database container memory, MiB (the guide: 1 GB)")
    p.add_argument("--db-buffer-pool", type=int, default=256, help="InnoDB buffer pool, MiB")
    p.add_argument("--node-memory", type=int, help="node container memory limit, MiB (default: from the heap)")
    p.add_argument("--tls-cert", help="your own certificate (PEM) for 443 instead of a generated one")
    p.add_argument("--tls-key", help="the key of --tls-cert")
    add_profile_option(p)
    add_engine_options(p)
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server setting for every node, e.g. HALAB_PROCESS_DELAY_MS=1000 (a CATTLE_* or HALAB_* "
        "variable of docs/architecture.md that no other option sets; repeatable)",
    )


def add_engine_options(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--engine",
        default="compose",
        choices=["compose", "swarm"],
        help="compose (this machine's Docker, the default) or swarm: a stack on the swarm of --hosts (docs/swarm.md)",
    )
    p.add_argument("--hosts", help="with --engine swarm: the host group to run on (`halab hosts up`; default 'swm')")


def engine_from_args(args: argparse.Namespace) -> Engine:
    from lab.cluster.topology import SWARM, Engine

    return Engine(args.engine, args.hosts or (DEFAULT_HOSTS if args.engine == SWARM else None))


def add_profile_option(p: argparse._ActionsContainer, default: str | None = "rancher-1.0") -> None:
    from lab.server.profiles import PROFILES

    p.add_argument(
        "--profile",
        default=default,
        choices=list(PROFILES),
        help="how the nodes fail: rancher-1.0 (as released: /ping always pong, the server exits and "
        "restarts on a lost ZooKeeper session) or tuned (fenced by quorum within seconds)"
        + (f" (default {default})" if default else ""),
    )


def topology_from_args(args: argparse.Namespace) -> Topology:
    from lab.cluster.topology import Ports, Sizing, Tls, make_topology, parse_server_env

    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadInput("--tls-cert and --tls-key go together")
    return make_topology(
        args.nodes,
        lab=args.name,
        layout=args.layout,
        db_dc=args.db_dc,
        lb_dc=args.lb_dc,
        db=args.db,
        db_layout=args.db_layout,
        db_arbitrator=args.db_arbitrator,
        ports=Ports(
            bind=args.bind,
            http=args.http_port,
            https=args.https_port,
            mgmt=args.mgmt_port,
            prom=args.prom_port,
            direct=args.direct_port,
        ),
        sizing=Sizing(
            pool_size=args.pool_size,
            pool_wait_ms=args.pool_wait_ms,
            java_opts=args.java_opts,
            heap_scale=args.heap_scale,
            db_max_connections=args.db_max_connections,
            db_memory_mib=args.db_memory,
            db_buffer_pool_mib=args.db_buffer_pool,
            node_mem_limit_mib=args.node_memory,
        ),
        tls=Tls(cert=args.tls_cert, key=args.tls_key),
        db_image=os.environ.get("HALAB_DB_IMAGE") or None,
        server_env=parse_server_env(args.server_env),
        profile=args.profile,
        monitoring=args.monitoring,
        engine=engine_from_args(args),
    )
