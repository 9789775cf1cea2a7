"""Docker hosts for swarm labs (`halab hosts up N`, `halab hosts down`, `halab up --engine swarm`).

A host group is a swarm whose hosts each carry the node label `halab.dc=<datacenter>`; its first
host is the manager. On one machine (CI, a laptop) `up` makes them: N containers with every capability from
`halab/dind` (Debian's docker.io) on a network of their own, each with its Docker data on a
volume, the lab's images loaded into each with `docker save | docker load` (there is no registry),
a swarm initialised on the first and joined by the others. The harness reaches each host's Docker
through `docker exec <host> docker ...`: no Docker port is opened, not even on 127.0.0.1 (an open
one would give any local user root on the machine). The manager publishes the load balancer's
ports on 127.0.0.1 of this machine.

Real machines form a group too: `$HALAB_HOME/hosts/<group>.json` written by hand (docs/swarm.md),
each host with the `docker` command that reaches it (e.g. `docker --host ssh://admin@rack1`).

The group's bookkeeping is `$HALAB_HOME/hosts/<group>.json` (the `HostGroup` below).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lab.cluster import docker, images, stack, state
from lab.cluster.topology import DEFAULT_LAYOUTS, Ports, parse_layout
from lab.core.errors import BadInput, RuntimeFailure
from lab.core.wait import wait_for

log = logging.getLogger("halab.cluster.hosts")

GROUP_LABEL = "halab.hosts"  # on every container, network and volume of a host group made here
HOST_IMAGE = "dind"  # lab/cluster/images.py role of compose/images/dind
LAB_IMAGES = ("db", "lb", "node")  # what a swarm lab runs (no monitoring on a swarm yet)
STORAGE_DRIVERS = ("overlay2", "vfs")
MAX_HOSTS = 9
DEFAULT_PUBLISHED = (Ports.http, Ports.https, Ports.mgmt)  # the labs' default load balancer ports
DOCKER_DATA = "/var/lib/docker"
SWARM_PORT = 2377
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DOCKERD_TIMEOUT = 60.0  # a host's dockerd answers within this of its container's start
READY_TIMEOUT = 120.0  # every host of the swarm Ready within this of the last join


@dataclass(frozen=True)
class Host:
    name: str  # its hostname, and the swarm node's
    dc: str
    docker: tuple[str, ...]  # the command that reaches its Docker engine, e.g. ("docker", "exec", "-i", name, "docker")
    container: str | None = None  # the container that is this host, when made here (None: a real machine)

    def command(self, *args: str) -> list[str]:
        return [*self.docker, *args]


@dataclass(frozen=True)
class HostGroup:
    name: str
    hosts: tuple[Host, ...]  # the first is the swarm's manager
    published: tuple[int, ...] = ()  # ports the manager publishes on 127.0.0.1 (made here)
    storage_driver: str = "overlay2"

    @property
    def manager(self) -> Host:
        return self.hosts[0]

    @property
    def made_here(self) -> bool:
        return all(h.container is not None for h in self.hosts)

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def datacenters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.dc for h in self.hosts))

    def host(self, name: str, where: str = "host") -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise BadInput(f"{where}: no host {name!r} in host group {self.name!r} ({', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def labels(self, **extra: str) -> dict[str, str]:
        return {GROUP_LABEL: self.name, **extra}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def volume(self, host: Host) -> str:
        return f"{host.name}-docker"


def exec_docker(container: str) -> tuple[str, ...]:
    """How the harness reaches the Docker of a host made here: through the container, no port."""
    return ("docker", "exec", "-i", container, "docker")


def make_group(
    name: str,
    count: object,
    *,
    layout: str | None = None,
    published: Sequence[int] = DEFAULT_PUBLISHED,
    storage_driver: str = "overlay2",
) -> HostGroup:
    """Validate `halab hosts up` and name its hosts `<group>-h1`, `<group>-h2`, ...; each error
    names its option."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BadInput(f"--name: host group name {name!r} must be lowercase letters, digits or '-' (at most 31)")
    if isinstance(count, str) and count.strip().isascii() and count.strip().isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_HOSTS:
        raise BadInput(f"hosts: {count!r} is not a number of hosts from 1 to {MAX_HOSTS}")
    if layout is not None:
        dcs = parse_layout(layout)
    elif count in DEFAULT_LAYOUTS:
        dcs = DEFAULT_LAYOUTS[count]
    else:
        raise BadInput(f"--layout: say which datacenter each of the {count} hosts is in, e.g. dc-a:2,dc-b:2")
    if sum(c for _, c in dcs) != count:
        raise BadInput(f"--layout: {layout} places {sum(c for _, c in dcs)} hosts, not {count}")
    if storage_driver not in STORAGE_DRIVERS:
        raise BadInput(f"--storage-driver: {storage_driver!r} is not one of {', '.join(STORAGE_DRIVERS)}")
    ports = tuple(published)
    bad = [p for p in ports if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535]
    if bad or len(set(ports)) != len(ports):
        raise BadInput(f"--publish: {list(ports)} must be different TCP ports (1-65535)")
    dc_of = [dc for dc, c in dcs for _ in range(c)]
    hosts = tuple(
        Host(f"{name}-h{i}", dc, exec_docker(f"{name}-h{i}"), f"{name}-h{i}") for i, dc in enumerate(dc_of, 1)
    )
    return HostGroup(name, hosts, ports, storage_driver)


# ------------------------------------------------------------------------------------ bookkeeping


def group_path(name: str) -> Path:
    return state.home() / "hosts" / f"{name}.json"


def save(group: HostGroup) -> Path:
    path = group_path(group.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(group.to_dict(), indent=2))
    return path


def from_dict(d: dict[str, Any], where: str) -> HostGroup:
    """A group from its JSON, checked (a real machines' group is written by hand)."""
    try:
        hosts = tuple(
            Host(str(h["name"]), str(h["dc"]), tuple(str(a) for a in h["docker"]), h.get("container"))
            for h in d["hosts"]
        )
        group = HostGroup(
            str(d["name"]),
            hosts,
            tuple(int(p) for p in d.get("published", ())),
            str(d.get("storage_driver", "overlay2")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{where}: not a host group: {exc!r} (see docs/swarm.md for its fields)") from None
    if not hosts:
        raise BadInput(f"{where}: hosts: a host group needs at least one host")
    if any(not h.docker for h in hosts):
        raise BadInput(f"{where}: hosts[].docker: every host needs the command that reaches its Docker")
    if len(set(group.names)) != len(hosts):
        raise BadInput(f"{where}: hosts[].name: every host needs a name of its own")
    return group


def load(name: str, where: str = "--hosts") -> HostGroup:
    path = group_path(name)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{where}: no host group {name!r} ({path} is missing): make one with `halab hosts up`") from None
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON: {exc}") from None
    return from_dict(d, str(path))


def check_lab_fits(group: HostGroup, datacenters: Sequence[str], ports: dict[str, int]) -> None:
    """A lab can run on the group: a host in each of its datacenters, its load balancer's ports
    published by the manager (a group made here publishes only what `hosts up --publish` said)."""
    missing = [dc for dc in datacenters if dc not in group.datacenters]
    if missing:
        raise BadInput(
            f"--layout: host group {group.name!r} has no host in {', '.join(missing)} "
            f"(its datacenters: {', '.join(group.datacenters)})"
        )
    if group.made_here:
        for option, port in ports.items():
            if port not in group.published:
                raise BadInput(
                    f"--{option}-port: {port} is not published by host group {group.name!r} "
                    f"(it publishes {', '.join(map(str, group.published))}; see `halab hosts up --publish`)"
                )


def lab_ports(group: HostGroup, where: str = "--hosts") -> Ports:
    """The load balancer ports of a lab the harness starts on the group by itself (the matrix's,
    a sweep's): the first three the group publishes, as http, https and mgmt (the order of `hosts
    up --publish`, as its default 80, 443, 18080), or the defaults on real machines, where nothing
    here publishes them."""
    if not group.made_here:
        return Ports()
    if len(group.published) < 3:
        raise BadInput(
            f"{where}: host group {group.name!r} publishes {len(group.published)} port(s); a lab needs three "
            "(http, https, mgmt): `halab hosts up --publish HTTP --publish HTTPS --publish MGMT`"
        )
    http, https, mgmt = group.published[:3]
    return Ports(http=http, https=https, mgmt=mgmt)


# --------------------------------------------------------------------------------------- commands


# What a host made here needs to run dockerd, without `--privileged`: some Docker hosts (this
# Firecracker VM: dockerd's bounding set lacks CAP_SYS_RESOURCE) refuse a privileged container
# ("unable to apply caps"). Every other capability, no seccomp or AppArmor profile, /proc and /sys
# unmasked, every device; the entrypoint makes /sys and the cgroup mounts writable.
HOST_PRIVILEGES = (
    *("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"),
    *("--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"),
    *("--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm"),
)


def run_command(group: HostGroup, host: Host, image: str) -> list[str]:
    """`docker run` of one host made here: every capability it may have (it runs dockerd), its
    Docker data on a volume of its own, tini reaping what dockerd leaves, the manager publishing
    the labs' ports."""
    assert host.container is not None
    publish = [a for p in group.published for a in ("-p", f"127.0.0.1:{p}:{p}")] if host == group.manager else []
    labels = [a for k, v in group.labels(**{"halab.host": host.name}).items() for a in ("--label", f"{k}={v}")]
    return [
        "docker",
        "run",
        "-d",
        "--init",
        *HOST_PRIVILEGES,
        "--name",
        host.container,
        "--hostname",
        host.name,
        "--network",
        group.network,
        "-v",
        f"{group.volume(host)}:{DOCKER_DATA}",
        *labels,
        *publish,
        image,
        "--storage-driver",
        group.storage_driver,
    ]


def join_command(group: HostGroup, host: Host, token: str) -> list[str]:
    """A worker joins the manager by its name on the group's network (Docker's DNS there)."""
    return host.command("swarm", "join", "--token", token, f"{group.manager.name}:{SWARM_PORT}")


def label_command(group: HostGroup, host: Host) -> list[str]:
    return group.manager.command("node", "update", "--label-add", f"{stack.DC_LABEL}={host.dc}", host.name)


# ---------------------------------------------------------------------------------------- up, down


def dockerd_answers(host: Host) -> bool:
    try:
        docker.run(host.command("info", "--format", "{{.ServerVersion}}"), f"ask {host.name}'s dockerd", timeout=10)
        return True
    except (RuntimeFailure, subprocess.TimeoutExpired):
        return False


def not_ready(group: HostGroup) -> list[str]:
    """Hosts the manager does not see Ready and Active, as `name=status/availability`."""
    out = docker.run(
        group.manager.command("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}"),
        "list the swarm's nodes",
        timeout=20,
    )
    seen = {f[0]: f"{f[1]}/{f[2]}" for f in (line.split() for line in out.splitlines()) if len(f) == 3}
    return [f"{h}={seen.get(h, 'absent')}" for h in group.names if seen.get(h) != "Ready/Active"]


def load_images(host: Host, tags: Sequence[str]) -> None:
    """`docker save TAGS | <host's docker> load`: the images reach the host without a registry."""
    what = f"load {len(tags)} image(s) into {host.name}"
    with docker.docker_errors(what):
        save = subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            loaded = subprocess.run(
                host.command("load", "--quiet"), stdin=save.stdout, capture_output=True, text=True, timeout=600
            )
        finally:
            assert save.stdout is not None
            save.stdout.close()
            _, save_err = save.communicate(timeout=60)
        if save.returncode != 0:
            raise subprocess.CalledProcessError(save.returncode, save.args, "", save_err.decode(errors="replace"))
        if loaded.returncode != 0:
            raise subprocess.CalledProcessError(loaded.returncode, loaded.args, loaded.stdout, loaded.stderr)


def has_image(host: Host, tag: str) -> bool:
    try:
        docker.run(host.command("image", "inspect", "--format", "{{.Id}}", tag), f"look for {tag} on {host.name}")
        return True
    except RuntimeFailure:
        return False


def ensure_images(group: HostGroup, tags: Sequence[str], on: Sequence[Host] = ()) -> None:
    """Load into each host (of `on`, default all) the images of TAGS it lacks (a lab of newer code
    needs newer tags)."""
    for host in on or group.hosts:
        missing = [tag for tag in tags if not has_image(host, tag)]
        if missing:
            log.info(f"loading {', '.join(missing)} into {host.name}")
            load_images(host, missing)


def up(group: HostGroup, *, keep_on_failure: bool = False) -> HostGroup:
    """Make the group's hosts here, load the lab's images, form the swarm; on any failure or
    interruption remove what was made (unless keep_on_failure)."""
    docker.require_docker()
    if not group.made_here:
        raise BadInput(f"host group {group.name!r} names real machines: `halab hosts up` makes hosts on this one only")
    if docker.run(["docker", "ps", "-aq", "--filter", f"label={GROUP_LABEL}={group.name}"], "list hosts").split():
        raise BadInput(f"host group {group.name!r} is up already; `halab hosts down --name {group.name}` first")
    tags = images.build(only=(*LAB_IMAGES, HOST_IMAGE))
    save(group)
    ok = False
    try:
        docker.run(
            ["docker", "network", "create", *_label_args(group.labels()), group.network], "create the hosts' network"
        )
        for host in group.hosts:
            docker.run(["docker", "volume", "create", *_label_args(group.labels()), group.volume(host)], "volume")
            docker.run(run_command(group, host, tags[HOST_IMAGE]), f"start host {host.name}", timeout=120)
        for host in group.hosts:
            wait_for(f"{host.name}'s dockerd", partial(dockerd_answers, host), DOCKERD_TIMEOUT, interval=0.5)
        log.info(f"hosts {', '.join(group.names)}: dockerd up")
        ensure_images(group, [tags[r] for r in LAB_IMAGES])
        manager = group.manager
        docker.run(manager.command("swarm", "init", "--advertise-addr", "eth0"), "init the swarm", timeout=60)
        token = docker.run(manager.command("swarm", "join-token", "-q", "worker"), "read the join token").strip()
        for host in group.hosts[1:]:
            docker.run(join_command(group, host, token), f"join {host.name} to the swarm", timeout=60)
        for host in group.hosts:
            docker.run(label_command(group, host), f"label {host.name} {stack.DC_LABEL}={host.dc}")
        wait_for(f"every host of {group.name} Ready", lambda: not not_ready(group), READY_TIMEOUT, interval=0.5)
        ok = True
    finally:
        if not ok and not keep_on_failure:
            log.info(f"hosts up failed or was interrupted: removing host group {group.name}")
            down(group.name)
    return group


def down(name: str) -> dict[str, int]:
    """Remove every container, volume and network of a group made here, found by its label (so it
    also cleans up after a harness that was killed), and its bookkeeping."""
    label = f"label={GROUP_LABEL}={name}"
    removed = {"hosts": 0, "volumes": 0, "networks": 0}
    ids = docker.run(["docker", "ps", "-aq", "--filter", label], "list hosts").split()
    if ids:
        docker.run(["docker", "rm", "-f", "-v", *ids], f"remove the hosts of {name}", timeout=120)
        removed["hosts"] = len(ids)
    vols = docker.run(["docker", "volume", "ls", "-q", "--filter", label], "list the hosts' volumes").split()
    if vols:
        docker.run(["docker", "volume", "rm", "-f", *vols], f"remove the hosts' volumes of {name}", timeout=120)
        removed["volumes"] = len(vols)
    nets = docker.run(["docker", "network", "ls", "-q", "--filter", label], "list the hosts' networks").split()
    if nets:
        docker.run(["docker", "network", "rm", *nets], f"remove the hosts' network of {name}", timeout=60)
        removed["networks"] = len(nets)
    group_path(name).unlink(missing_ok=True)
    return removed


def _label_args(labels: dict[str, str]) -> list[str]:
    return [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
