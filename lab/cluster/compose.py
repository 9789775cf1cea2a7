"""Topology -> a compose project a user can read and run with plain `docker compose`.

Network layout (docs/architecture.md): `front` (the load balancer's public side), one network per
datacenter (its nodes and the load balancer: the LB's path to them), `interdc` (the peer mesh of
every node: ZooKeeper and cluster traffic, the only network nodes of different datacenters share)
and `db` (the database and every node). A datacenter split drops, on `interdc`, exactly the
traffic between nodes of different datacenters (and the `db` path to a database on the far side).

With monitoring (`halab up --monitoring`) two more services run from the `prom` image: Prometheus
(`prom`) on `front` (to publish its port and reach the load balancer's exporter) and on `db` (where
it scrapes every node's `/metrics` by its fixed address), and the database's exporter
(`dbexporter`) on `db`. Network faults are iptables rules for peers' addresses inside the nodes, so
they never cut Prometheus's own address: it observes a split from outside it.
"""

from __future__ import annotations

from string import Template
from typing import Any

import yaml

from lab.cluster.addressing import EXPORTER_HOST, LB_HOST, PROM_HOST, Plan
from lab.cluster.database import ARBITRATOR
from lab.cluster.topology import Topology
from lab.core import paths

TEMPLATES = paths.COMPOSE
# The uid the lab's images run as; secret files belong to it so a 0600 file is still readable.
CONTAINER_UID = 10001
DB_NAME = "cattle"
DB_USER = "cattle"
NODE_API_PORT = 8080
NODE_MGMT_PORT = 18080
MONITORING_SERVICES = ("prom", "dbexporter")
PROM_PORT = 9090
EXPORTER_PORT = 9104
SCRAPE_INTERVAL = "1s"
PROM_MEMORY_MIB = 384
EXPORTER_MEMORY_MIB = 64
# Files the compose project refers to, relative to the project directory.
HAPROXY_CFG = "haproxy.cfg"
PROMETHEUS_CFG = "prometheus.yml"
SECRET_FILES = {
    "db_password": "secrets/db_password",
    "db_root_password": "secrets/db_root_password",
    "lb_pem": "tls/server.pem",
}


def container_name(t: Topology, service: str) -> str:
    """Compose v2's name for a service's one container."""
    return f"{t.lab}-{service}-1"


def services(t: Topology) -> tuple[str, ...]:
    """The compose services of a lab, in the order `render` writes them."""
    return (*database_services(t), "lb", *t.node_names, *(MONITORING_SERVICES if t.monitoring else ()))


def database_services(t: Topology) -> tuple[str, ...]:
    """`db`, or a Galera database's front, members and arbitrator."""
    if not t.db.galera:
        return ("db",)
    from lab.cluster.galera import FRONT

    return (FRONT, *t.db.member_names, *((ARBITRATOR,) if t.db.arbitrator else ()))


def labels(t: Topology, role: str, **extra: str) -> dict[str, str]:
    return {"halab.lab": t.lab, "halab.role": role, **extra}


def node_environment(t: Topology, node_name: str) -> dict[str, str]:
    """Every node's server settings: what the lab wires (topology.RESERVED_SERVER_ENV names what
    sets each), then the user's own `--server-env` settings, which make_topology keeps apart."""
    node = t.node(node_name)
    s = t.sizing
    wired = {
        "CATTLE_DB_CATTLE_MYSQL_HOST": "db",
        "CATTLE_DB_CATTLE_MYSQL_PORT": "3306",
        "CATTLE_DB_CATTLE_MYSQL_NAME": DB_NAME,
        "CATTLE_DB_CATTLE_USERNAME": DB_USER,
        "CATTLE_DB_CATTLE_PASSWORD_FILE": "/run/secrets/db_password",
        "CATTLE_HA_CLUSTER_SIZE": str(t.size),
        "CATTLE_HA_HOST_REGISTRATION_URL": registration_url(t),
        "CATTLE_ZOOKEEPER_CONNECTION_STRING": t.zk_connect(node),
        "CATTLE_JAVA_OPTS": s.java_opts,
        "HALAB_NODE_NAME": node.name,
        "HALAB_ZK_MYID": str(node.zk_id),
        "HALAB_ZK_SERVERS": t.zk_servers(),
        "HALAB_HEAP_SCALE": str(s.heap_scale),
        # Every profile setting (ZooKeeper timing, session, locks, heartbeat) follows from it,
        # each still overridable by its own variable through --server-env.
        "HALAB_PROFILE": t.profile,
    }
    if s.pool_size is not None:
        wired["CATTLE_DB_CATTLE_MAXTOTAL"] = str(s.pool_size)
    if s.pool_wait_ms is not None:
        wired["CATTLE_DB_CATTLE_MAXWAIT"] = str(s.pool_wait_ms)
    return {**wired, **dict(t.server_env)}


def registration_url(t: Topology) -> str:
    port = t.ports.https
    return f"https://127.0.0.1{'' if port == 443 else f':{port}'}"


# ------------------------------------------------------- what a lab runs, whatever runs it
# The compose project (`render` below) and the swarm stack (lab/cluster/stack.py) are both made of
# these; each adds only what its engine does its own way: addresses, restarts, limits, files, ports.

# Files a service reads from the lab's state directory: service -> (file, path inside the container).
CONFIG_FILES = {
    "lb": (HAPROXY_CFG, "/usr/local/etc/haproxy/haproxy.cfg"),
    "prom": (PROMETHEUS_CFG, "/etc/halab/prometheus.yml"),
}
# Services that run confined: no capabilities, no new privileges (nodes keep NET_ADMIN, below).
CONFINED = ("lb", *MONITORING_SERVICES)


def attachments(t: Topology) -> dict[str, dict[str, list[str]]]:
    """service -> network -> the service's aliases on it."""
    out: dict[str, dict[str, list[str]]] = {"db": {"db": []}, "lb": {"front": [], **{dc: [] for dc in t.datacenters}}}
    for node in t.nodes:
        out[node.name] = {node.dc: [node.alias(node.dc)], "interdc": [node.alias("interdc")], "db": []}
        if direct_node(t, node.name):
            out[node.name]["front"] = []  # Docker publishes ports only through a network that is not internal
    if t.monitoring:
        out.update({"prom": {"front": [], "db": []}, "dbexporter": {"db": []}})
    return out


def direct_node(t: Topology, service: str) -> bool:
    """Whether `service` is the node whose API the benchmarks reach directly (`--direct-port`)."""
    return t.ports.direct is not None and service == t.nodes[0].name


def published(t: Topology) -> dict[str, list[tuple[int, int]]]:
    """service -> (published port, port inside) pairs."""
    out = {"lb": [(t.ports.http, 80), (t.ports.https, 443), (t.ports.mgmt, 18080)]}
    if t.ports.direct is not None:
        out[t.nodes[0].name] = [(t.ports.direct, NODE_API_PORT)]
    if t.monitoring:
        out["prom"] = [(t.ports.prom, PROM_PORT)]
    return out


def memory_mib(t: Topology) -> dict[str, int]:
    """service -> its memory limit, MiB (the load balancer has none)."""
    out = {"db": t.sizing.db_memory_mib, **{n: t.node_mem_limit_mib for n in t.node_names}}
    return {**out, "prom": PROM_MEMORY_MIB, "dbexporter": EXPORTER_MEMORY_MIB} if t.monitoring else out


def restarts(t: Topology, service: str) -> bool:
    """Whether the engine brings an exited container of `service` back: rancher-1.0 nodes, like
    Rancher's containers; nothing else (the lab sees every exit)."""
    return service in t.node_names and t.node_profile.container_restart != "no"


def base_services(t: Topology, image_tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each service as both engines run it: image, name, labels, settings, command, secrets,
    capabilities, health check and volumes."""
    s = t.sizing
    out: dict[str, dict[str, Any]] = {
        "db": {
            "image": t.db_image or image_tags["db"],
            "hostname": "db",
            "labels": labels(t, "db", **{"halab.dc": t.db_dc}),
            "environment": {
                # The official MySQL/MariaDB images' *_FILE convention; ours honours the same names.
                "MYSQL_DATABASE": DB_NAME,
                "MYSQL_USER": DB_USER,
                "MYSQL_PASSWORD_FILE": "/run/secrets/db_password",
                "MYSQL_ROOT_PASSWORD_FILE": "/run/secrets/db_root_password",
            },
            "command": [
                f"--max-connections={t.db_max_connections}",
                f"--innodb-buffer-pool-size={s.db_buffer_pool_mib}M",
            ],
            "volumes": ["dbdata:/var/lib/mysql"],
            "secrets": ["db_password", "db_root_password"],
            "healthcheck": {
                "test": ["CMD-SHELL", "mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent"],
                "interval": "1s",
                "timeout": "2s",
                "retries": 120,
            },
        },
        "lb": {"image": image_tags["lb"], "hostname": "lb", "labels": labels(t, "lb"), "secrets": ["lb_pem"]},
    }
    for node in t.nodes:
        out[node.name] = {
            "image": image_tags["node"],
            "hostname": node.name,
            "labels": labels(t, "node", **{"halab.node": node.name, "halab.dc": node.dc, "halab.profile": t.profile}),
            "environment": node_environment(t, node.name),
            "secrets": ["db_password"],
            # The server runs as uid 10001 with no effective capabilities. NET_ADMIN stays in the
            # bounding set only so that `docker exec -u root` can install a network fault's
            # iptables rules in the node's own namespace (no-new-privileges would forbid that).
            "cap_drop": ["ALL"],
            "cap_add": ["NET_ADMIN"],
            "stop_grace_period": "5s",
            # Any name that reaches Docker's DNS on an internal network must not stall a caller for
            # its default 10 s.
            "dns_opt": ["timeout:1", "attempts:1"],
        }
    if t.monitoring:
        out.update(_monitoring_services(t, image_tags))
    for name in CONFINED:
        if name in out:
            out[name]["cap_drop"] = ["ALL"]
    return out


def fixed_addresses(t: Topology, plan: Plan) -> dict[str, dict[str, str]]:
    """service -> network -> its fixed address (addressing.py): every private network."""
    out = {"db": {"db": plan.db()}, "lb": {dc: plan.address(dc, LB_HOST) for dc in t.datacenters}}
    for n in t.nodes:
        out[n.name] = {net: plan.node(t, n.name, net) for net in (n.dc, "interdc", "db")}
    if t.monitoring:
        out.update(
            {"prom": {"db": plan.address("db", PROM_HOST)}, "dbexporter": {"db": plan.address("db", EXPORTER_HOST)}}
        )
    return out


def render(t: Topology, image_tags: dict[str, str], plan: Plan) -> dict[str, Any]:
    """The compose project as a dict (yaml.safe_dump of it is the file `halab render` prints);
    every container on a private network has the fixed address PLAN gives it (addressing.py) and
    names the containers it talks to in its /etc/hosts. A Galera database's services
    (lab/cluster/galera.py) stand where the single database's `db` stands."""
    from lab.cluster import galera  # builds on this module's helpers

    services = base_services(t, image_tags)
    if t.db.galera:
        del services["db"]
    # The nodes reach `db` at one address either way: the database, or the Galera front (started
    # by the lab once a member is Synced and Primary).
    db_first, db_ready = (galera.FRONT, "service_started") if t.db.galera else ("db", "service_healthy")
    fixed = fixed_addresses(t, plan)
    hosts = {"lb": plan.lb_hosts(t), **{n: plan.node_hosts(t) for n in t.node_names}, "dbexporter": {"db": plan.db()}}
    ports, memory = published(t), memory_mib(t)
    for name, svc in services.items():
        svc["networks"] = {
            net: {
                **({"aliases": aliases} if aliases else {}),
                **({"ipv4_address": fixed[name][net]} if net in fixed.get(name, {}) else {}),
            }
            for net, aliases in attachments(t)[name].items()
        }
        if name in hosts:
            svc["extra_hosts"] = _hosts(hosts[name])
        if name in ports:
            svc["ports"] = [f"{t.ports.bind}:{port}:{inner}" for port, inner in ports[name]]
        if name in CONFIG_FILES:
            file, inside = CONFIG_FILES[name]
            svc["volumes"] = [f"./{file}:{inside}:ro"]
        if name in memory:
            svc["mem_limit"] = f"{memory[name]}m"
        if name in CONFINED:
            svc["security_opt"] = ["no-new-privileges:true"]
        if name in t.node_names or name == "dbexporter":
            svc["depends_on"] = {db_first: {"condition": db_ready}}
        # rancher-1.0: a node whose supervisor or ZooKeeper exits comes back, like Rancher's
        # containers; `docker kill` and `docker stop` (the kill and stop faults) keep it down.
        svc["restart"] = t.node_profile.container_restart if restarts(t, name) else "no"
    if t.db.galera:
        services = {**galera.services(t, image_tags, plan), **services}
    else:
        services["db"]["tmpfs"] = ["/run/mysqld:uid=10001,gid=10001,mode=0700"]
    if t.monitoring:
        services["dbexporter"]["tmpfs"] = ["/run/halab:uid=10001,gid=10001,mode=0700"]
    networks: dict[str, Any] = {
        net: _private_network(net_labels, plan.subnets[net]) if net in plan.subnets else {"labels": net_labels}
        for net, net_labels in network_labels(t).items()
    }
    return {
        "name": t.lab,
        "services": services,
        "networks": networks,
        "volumes": galera.volumes(t) if t.db.galera else {"dbdata": {"labels": labels(t, "db-data")}},
        "secrets": {name: {"file": f"./{path}"} for name, path in SECRET_FILES.items()},
    }


def network_labels(t: Topology) -> dict[str, dict[str, str]]:
    """network -> its labels."""
    return {
        "front": labels(t, "net-front"),
        "interdc": labels(t, "net-interdc"),
        "db": labels(t, "net-db"),
        **{dc: labels(t, "net-dc", **{"halab.dc": dc}) for dc in t.datacenters},
    }


def _private_network(network_labels: dict[str, str], subnet: str) -> dict[str, Any]:
    """A network only its containers can use: no route out (internal) and no address on the host's
    bridge, so not even the host reaches the database or the nodes directly."""
    return {
        "internal": True,
        "driver_opts": {"com.docker.network.bridge.inhibit_ipv4": "true"},
        "ipam": {"config": [{"subnet": subnet}]},
        "labels": network_labels,
    }


def _hosts(names: dict[str, str]) -> list[str]:
    return [f"{name}:{ip}" for name, ip in names.items()]


def _monitoring_services(t: Topology, image_tags: dict[str, str]) -> dict[str, Any]:
    """Prometheus and the database's exporter (both from the `prom` image, uid 10001)."""
    return {
        "prom": {
            "image": image_tags["prom"],
            "hostname": "prom",
            "labels": labels(t, "prometheus"),
            "command": [
                "prometheus",
                "--config.file=/etc/halab/prometheus.yml",
                "--storage.tsdb.path=/var/lib/halab/prometheus",
                f"--web.listen-address=:{PROM_PORT}",
            ],
        },
        "dbexporter": {
            "image": image_tags["prom"],
            "hostname": "dbexporter",
            "labels": labels(t, "db-exporter"),
            # Writes the my.cnf it reads from the db_password secret, then runs the exporter.
            "command": ["halab-dbexporter", DB_USER, f"--web.listen-address=:{EXPORTER_PORT}"],
            "dns_opt": ["timeout:1", "attempts:1"],
            "secrets": ["db_password"],
        },
    }


def prometheus_config(t: Topology, plan: Plan) -> str:
    """Scrape every second: each node's `/metrics` on the `db` network (its ZooKeeper member's
    `mntr` gauges included), HAProxy's exporter on the management port (backend and server
    figures only) and the database's exporter. The nodes' own `node` label is kept (honor_labels)."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "node",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"{plan.node(t, n, 'db')}:{NODE_API_PORT}"], "labels": {"node": n}}
                    for n in t.node_names
                ],
            },
            {
                "job_name": "haproxy",
                "params": {"scope": ["backend", "server"]},
                # `lb` by Docker's DNS: the load balancer's `front` address is not fixed.
                "static_configs": [{"targets": [f"lb:{NODE_MGMT_PORT}"]}],
            },
            {
                "job_name": "mysqld",
                "static_configs": [{"targets": [f"{plan.address('db', EXPORTER_HOST)}:{EXPORTER_PORT}"]}],
            },
        ],
    }
    return f"# Prometheus for ha-lab {t.lab!r} (rendered by lab/cluster/compose.py)\n" + dump(config)


def dump(project: dict[str, Any]) -> str:
    return yaml.safe_dump(project, sort_keys=False, default_flow_style=False)


_COMPOSE_ADDRESSING = {
    "resolvers": "",
    "addressing": "init-addr libc",
    "addressing_why": "fixed addresses named in /etc/hosts (lab/cluster/addressing.py), no DNS at run time",
}
# A swarm gives a task no fixed address and a replaced task a new one: the load balancer asks
# Docker's DNS again every second, and starts before the nodes it cannot resolve yet.
_SWARM_ADDRESSING = {
    "resolvers": (
        "\nresolvers docker\n"
        "    nameserver docker 127.0.0.11:53\n"
        "    timeout resolve 500ms\n"
        "    hold valid 1s\n"
        "    hold obsolete 1s\n"
    ),
    "addressing": "init-addr none resolvers docker resolve-prefer ipv4",
    "addressing_why": "swarm tasks by Docker's DNS, asked again every second (a replaced task has a new address)",
}


def haproxy_config(t: Topology) -> str:
    """HAProxy config: health checks on /ping as the node profile says (rancher-1.0: the management
    stack's 1 s x 2; tuned: fast detection), retries with redispatch (tuned: L7 retries of
    idempotent requests), a stats page, and `/node/<name>/...` routes that reach one node whatever
    its health (the harness's probes)."""
    servers = "\n".join(f"    server {n.name} {n.alias(n.dc)}:{NODE_API_PORT} check" for n in t.nodes)
    mgmt_servers = "\n".join(f"    server {n.name} {n.alias(n.dc)}:{NODE_MGMT_PORT} check" for n in t.nodes)
    routes = "\n".join(f"    use_backend direct_{n.name} if {{ path_beg /node/{n.name}/ }}" for n in t.nodes)
    direct = "\n".join(
        f"backend direct_{n.name}\n"
        # The node's own answer, never retried: a probe must see a 503, and a write sent to one
        # node must not run twice (the defaults' L7 retries would resend it on a 503).
        f"    retries 0\n"
        f"    http-request replace-path /node/{n.name}(/.*) \\1\n"
        f"    server {n.name} {n.alias(n.dc)}:{NODE_API_PORT}\n"
        for n in t.nodes
    )
    template = Template((TEMPLATES / "haproxy.cfg.tmpl").read_text())
    p = t.node_profile
    return template.substitute(
        **(_SWARM_ADDRESSING if t.engine.swarm else _COMPOSE_ADDRESSING),
        servers=servers,
        mgmt_servers=mgmt_servers,
        routes=routes,
        direct=direct,
        lab=t.lab,
        check=p.lb_check(),
        check_timeout=f"{p.lb_check_timeout_ms}ms",
        retry_on=p.lb_retry_on,
        profile=p.name,
    )
