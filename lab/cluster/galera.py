"""The compose services of a Galera database (`--db galera:N`) and its front's HAProxy config.

Members db1..dbN each sit on their datacenter's network and on `db`, where the group traffic
(4567), state transfers (IST 4568, mariabackup SST 4444) and the clients' 3306 go. Writes go to one
member at a time, as Galera's users are told to for applications that take locks (certification
conflicts otherwise surface as deadlocks on commit): `dbfront`, HAProxy in TCP mode at the address
the nodes use for `db` today, sends every connection to one active member and keeps the others as
backups, each checked over HTTP against its clustercheck (lab/agent/clustercheck.py: 200 only
when Synced and in the Primary Component). The nodes need no change. docs/galera.md.

Pure: no Docker, no I/O.
"""

from __future__ import annotations

from typing import Any

from lab.cluster.addressing import Plan
from lab.cluster.database import ARBITRATOR
from lab.cluster.topology import Topology

FRONT = "dbfront"
FRONT_CFG = "dbfront.cfg"
BOOTSTRAP_FILE = "galera-bootstrap"  # in the lab's directory: the member to bootstrap, or empty
CLUSTERCHECK_PORT = 9200
GALERA_PORTS = (3306, 4567, 4568, 4444)
# The member started with --wsrep-new-cluster when the lab is new; after every member stopped the
# lab chooses from their grastate.dat (lab/cluster/grastate.py) and starts that one first.
FIRST_BOOTSTRAP = "db1"
_CHECK_URL = f"http://127.0.0.1:{CLUSTERCHECK_PORT}/"


def cluster_name(t: Topology) -> str:
    return f"halab-{t.lab}"


def gcomm(t: Topology, plan: Plan) -> str:
    """wsrep_cluster_address: every member by its fixed address on `db` (the arbitrator joins
    through it too; listing it would only add a peer that holds no data)."""
    return "gcomm://" + ",".join(plan.db_member(t, m, "db") for m in t.db.member_names)


def services(t: Topology, image_tags: dict[str, str], plan: Plan) -> dict[str, Any]:
    """dbfront, db1..dbN and garbd (when asked): the services that stand where `db` stands for a
    single database. None depends on another: the lab starts them in order itself
    (lab/cluster/galera_life.py), and compose, which leaves a dependency out of the config it
    compares when a service is started alone (`--no-deps`), would recreate a member that has one
    at the lab's next `compose up`."""
    from lab.cluster.compose import DB_NAME, DB_USER, labels  # compose.render calls this module

    s = t.sizing
    out: dict[str, Any] = {
        FRONT: {
            "image": image_tags["lb"],
            "hostname": FRONT,
            "labels": labels(t, "dbfront", **{"halab.dc": t.db_dc}),
            "networks": {"db": {"ipv4_address": plan.db()}},
            "volumes": [f"./{FRONT_CFG}:/usr/local/etc/haproxy/haproxy.cfg:ro"],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "restart": "no",
        }
    }
    for name, dc in zip(t.db.member_names, t.db.layout, strict=True):
        out[name] = {
            "image": image_tags["galera"],
            "hostname": name,
            "labels": labels(t, "db-member", **{"halab.db-member": name, "halab.dc": dc}),
            "environment": {
                "MYSQL_DATABASE": DB_NAME,
                "MYSQL_USER": DB_USER,
                "MYSQL_PASSWORD_FILE": "/run/secrets/db_password",
                "HALAB_GALERA_NAME": name,
                "HALAB_GALERA_ADDRESS": plan.db_member(t, name, "db"),
                "HALAB_GALERA_CLUSTER": cluster_name(t),
                "HALAB_GALERA_PEERS": gcomm(t, plan),
                # Read by the entrypoint: it bootstraps only when this names itself (docs/galera.md).
                "HALAB_GALERA_BOOTSTRAP_FILE": "/run/halab/bootstrap",
                # Not a command-line option: the SST script hands a server's --innodb-buffer-pool-size
                # on to mariadb-backup, which refuses it and fails the state transfer (10.11.18).
                "HALAB_INNODB_BUFFER_POOL_SIZE": f"{s.db_buffer_pool_mib}M",
            },
            "command": [f"--max-connections={t.db_max_connections}"],
            "networks": {
                dc: {"ipv4_address": plan.db_member(t, name, dc)},
                "db": {"ipv4_address": plan.db_member(t, name, "db")},
            },
            # `db` is the front for the members too: the lab asks them which member it serves.
            "extra_hosts": [f"db:{plan.db()}"],
            "volumes": [f"{name}data:/var/lib/mysql", f"./{BOOTSTRAP_FILE}:/run/halab/bootstrap:ro"],
            "secrets": ["db_password"],
            "mem_limit": f"{s.db_memory_mib}m",
            "tmpfs": ["/run/mysqld:uid=10001,gid=10001,mode=0700"],
            # As the nodes: no effective capabilities, NET_ADMIN in the bounding set only, so that a
            # split's rules can be installed in the member's namespace with `docker exec -u root`.
            "cap_drop": ["ALL"],
            "cap_add": ["NET_ADMIN"],
            "healthcheck": {
                # Healthy = Synced and Primary, what the front checks too (urlopen raises on a 503).
                "test": [
                    "CMD",
                    "python3",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen({_CHECK_URL!r}, timeout=2)",
                ],
                "interval": "1s",
                "timeout": "3s",
                "retries": 600,  # a joiner's first state transfer copies the whole database
            },
            "stop_grace_period": "30s",  # a clean shutdown writes grastate.dat's seqno
            "restart": "no",
        }
    if t.db.arbitrator:
        site = t.db.arbitrator
        out[ARBITRATOR] = {
            "image": image_tags["galera"],
            "hostname": ARBITRATOR,
            "labels": labels(t, "db-arbitrator", **{"halab.dc": site}),
            "entrypoint": ["garbd"],
            "command": ["--address", gcomm(t, plan), "--group", cluster_name(t), "--name", ARBITRATOR],
            "networks": {
                **({site: {"ipv4_address": plan.arbitrator(site)}} if site in t.datacenters else {}),
                "db": {"ipv4_address": plan.arbitrator("db")},
            },
            "cap_drop": ["ALL"],
            "cap_add": ["NET_ADMIN"],
            "restart": "no",
        }
    return out


def volumes(t: Topology) -> dict[str, Any]:
    from lab.cluster.compose import labels

    return {f"{m}data": {"labels": labels(t, "db-data", **{"halab.db-member": m})} for m in t.db.member_names}


def front_config(t: Topology, plan: Plan) -> str:
    """HAProxy for the database front: TCP, the first member active and the others `backup` (HAProxy
    uses the first healthy backup alone), each checked on its clustercheck. A member marked down has
    its sessions cut so the pool reconnects to the next; when a better member comes back, sessions
    on the backup are cut too, so that writes never go to two members at once for long."""
    members = t.db.member_names
    servers = "\n".join(
        f"    server {m} {plan.db_member(t, m, 'db')}:3306 check port {CLUSTERCHECK_PORT}{'' if i == 0 else ' backup'}"
        for i, m in enumerate(members)
    )
    return f"""# HAProxy for ha-lab "{t.lab}"'s Galera front (rendered by lab/cluster/galera.py)
global
    log stdout format raw local0 info
    maxconn 4096

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    timeout client 1h
    timeout server 1h
    timeout check 1s

listen galera
    bind :3306
    option httpchk GET /
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions
{servers}
"""
