"""Topology -> the stack file `docker stack deploy` runs on a swarm (`halab up --engine swarm`).

The services are the compose project's (lab/cluster/compose.py `base_services`); what a swarm does
its own way is added here:

- networks are overlays, `internal` where compose's are, and `attachable`, so that a fault's or a
  probe's own container can join them. A swarm gives a task no fixed address, so names go through
  Docker's DNS (the same aliases as compose), and every service is `endpoint_mode: dnsrr`: a name
  is the task's own address, which a fault's iptables rules (written by address) then match;
- placement: each node runs on a host labelled `halab.dc=<its datacenter>`, the database on one
  of its datacenter's hosts, the load balancer on the manager, which publishes its ports (host
  mode: no routing mesh, so a request goes where the load balancer is);
- secrets are swarm secrets and the load balancer's haproxy.cfg a swarm config, both created by
  `docker stack deploy` from the files of the lab's state directory;
- restarts are the swarm's restart policy, memory limits its resource limits.
"""

from __future__ import annotations

from typing import Any

from lab.cluster import compose
from lab.cluster.topology import EXTERNAL_DB, OUTSIDE_LB, Topology

STACK_FILE = "stack.yaml"
DC_LABEL = "halab.dc"  # the node label that says which datacenter a swarm host is in
# The compose file version the swarm's own CLI validates against (Debian's docker.io 20.10 wants one).
SCHEMA_VERSION = "3.9"
SECRET_MODE = 0o400


def service_name(t: Topology, service: str) -> str:
    """The swarm's name for a service of the lab's stack."""
    return f"{t.lab}_{service}"


def network_name(t: Topology, network: str) -> str:
    """The swarm's name for a network of the lab's stack."""
    return f"{t.lab}_{network}"


def constraints(t: Topology, service: str) -> list[str]:
    """Where a service's task may run."""

    def dc(name: str) -> str:
        return f"node.labels.{DC_LABEL} == {name}"

    if service in t.node_names:
        return [dc(t.node(service).dc)]
    if service == "db":
        return [] if t.db_dc == EXTERNAL_DB else [dc(t.db_dc)]
    if service == "lb":
        return ["node.role == manager", *([] if t.lb_dc == OUTSIDE_LB else [dc(t.lb_dc)])]
    return []


def render(t: Topology, image_tags: dict[str, str]) -> dict[str, Any]:
    """The stack as a dict (yaml.safe_dump of it is the file); its relative paths are the lab's
    state directory's files."""
    services = compose.base_services(t, image_tags)
    ports, memory = compose.published(t), compose.memory_mib(t)
    configs: dict[str, Any] = {}
    for name, svc in services.items():
        # The swarm's compose schema (3.9) has no dns_opt, and refuses what it does not know.
        svc.pop("dns_opt", None)
        svc["networks"] = {
            net: {"aliases": aliases} if aliases else {} for net, aliases in compose.attachments(t)[name].items()
        }
        svc["secrets"] = [
            {
                "source": secret,
                "target": secret,
                "uid": str(compose.CONTAINER_UID),
                "gid": str(compose.CONTAINER_UID),
                "mode": SECRET_MODE,
            }
            for secret in svc["secrets"]
        ]
        if name in ports:
            svc["ports"] = [
                {"target": inner, "published": port, "protocol": "tcp", "mode": "host"} for port, inner in ports[name]
            ]
        if name in compose.CONFIG_FILES:
            file, inside = compose.CONFIG_FILES[name]
            config = file.replace(".", "_")
            configs[config] = {"file": f"./{file}"}
            svc["configs"] = [{"source": config, "target": inside, "mode": 0o444}]
        svc["deploy"] = {
            "replicas": 1,
            "endpoint_mode": "dnsrr",
            "placement": {"constraints": constraints(t, name)},
            **({"resources": {"limits": {"memory": f"{memory[name]}M"}}} if name in memory else {}),
            # rancher-1.0 nodes come back as Rancher's containers did; nothing else does.
            "restart_policy": {"condition": "any" if compose.restarts(t, name) else "none"},
            "labels": compose.labels(t, "service", **{"halab.service": name}),
        }
    networks = {
        net: {"driver": "overlay", "attachable": True, "internal": net != "front", "labels": net_labels}
        for net, net_labels in compose.network_labels(t).items()
    }
    return {
        "version": SCHEMA_VERSION,
        "services": services,
        "networks": networks,
        "volumes": {"dbdata": {"labels": compose.labels(t, "db-data")}},
        "secrets": {name: {"file": f"./{path}"} for name, path in compose.SECRET_FILES.items()},
        "configs": configs,
    }
