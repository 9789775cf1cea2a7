"""A lab as a stack on a swarm (`halab up --engine swarm`): deploy it from the lab's state
directory, remove it and everything it left on every host.

`docker stack deploy` reads the stack file and the files it names (secrets, haproxy.cfg) where the
docker command runs: on this machine for real hosts (their docker command reaches the manager's
engine from here), inside the manager for hosts made here (reached with `docker exec`), so the
state directory is copied into the manager first (STATE_INSIDE) and removed with the lab.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import suppress

from lab.cluster import compose, docker, engine, hosts, stack, state
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure
from lab.core.wait import wait_for

log = logging.getLogger("halab.cluster.swarm")

STATE_INSIDE = "/var/lib/halab/labs"  # where a lab's files are inside a manager made here
REMOVE_TIMEOUT = 120.0  # every task of a removed stack gone from every host within this
NETWORKS_TIMEOUT = 30.0  # and its overlays, which the swarm removes itself, within this after


def stack_dir(group: hosts.HostGroup, t: Topology) -> str:
    """The lab's state directory as the manager's docker command sees it."""
    return f"{STATE_INSIDE}/{t.lab}" if group.made_here else str(state.lab_dir(t.lab))


def deploy(t: Topology) -> None:
    """Deploy the lab's stack (rendered into its state directory) from the manager."""
    group = engine.group(t)
    manager = group.manager
    inside = stack_dir(group, t)
    if group.made_here:
        assert manager.container is not None
        docker.run(manager_shell(group, f"rm -rf '{inside}' && mkdir -p '{STATE_INSIDE}'"), "prepare the manager")
        docker.run(
            ["docker", "cp", str(state.lab_dir(t.lab)), f"{manager.container}:{inside}"],
            f"copy lab {t.lab}'s files into {manager.name}",
            timeout=60,
        )
    docker.run(
        manager.command("stack", "deploy", "--compose-file", f"{inside}/{stack.STACK_FILE}", t.lab),
        f"docker stack deploy {t.lab} on {manager.name}",
        timeout=180,
    )


def scale_to_none(t: Topology, services: Sequence[str]) -> None:
    """Leave each service of the lab without a task until `run_again`: what a compose lab's killed
    or stopped container is. Without it the swarm would replace the task (rancher-1.0's nodes have
    restart policy `any`), unlike Rancher's own `unless-stopped` containers."""
    names = [f"{stack.service_name(t, s)}=0" for s in services]
    manager = engine.group(t).manager
    docker.run(manager.command("service", "scale", "--detach", *names), f"scale {' '.join(services)} to none")


def run_again(t: Topology, services: Sequence[str]) -> None:
    """Give each service of the lab one new task, wherever its placement allows: the swarm's way to
    start a killed (scaled to none, or left dead by restart policy `none`) or restart a running
    service. `--force` makes a new task even when the spec is unchanged."""
    manager = engine.group(t).manager
    for s in services:
        name = stack.service_name(t, s)
        docker.run(
            manager.command("service", "update", "--force", "--replicas", "1", "--detach", name),
            f"run {name} again",
            timeout=60,
        )


def told_to_stop(t: Topology) -> list[str]:
    """The lab's services with a task the swarm has told to shut down that it still sees running:
    what a host cut off past the swarm's heartbeat does when it is back (the manager marked it down
    and shut its tasks down; its agent does so once it hears the manager again)."""
    manager = engine.group(t).manager
    names = [stack.service_name(t, s) for s in compose.services(t)]
    out = docker.run(
        manager.command(
            "service", "ps", "--filter", "desired-state=shutdown", "--format", "{{.Name}} {{.CurrentState}}", *names
        ),
        f"list the tasks of {t.lab} the swarm shuts down",
    )
    found = (line.split() for line in out.splitlines())
    return sorted({w[0].split(".")[0].removeprefix(f"{t.lab}_") for w in found if len(w) > 1 and w[1] == "Running"})


def manager_shell(group: hosts.HostGroup, script: str) -> list[str]:
    """A shell command in the manager's own container (hosts made here only)."""
    return ["docker", "exec", str(group.manager.container), "sh", "-c", script]


def remove(t: Topology, keep_data: bool = False) -> dict[str, int]:
    """`docker stack rm`, then what the stack leaves: on every host its containers until the swarm
    has removed them and its volumes (unless keep_data); on the manager its networks the swarm has
    not removed; and the manager's copy of the state directory. Hosts that do not answer are
    skipped (a killed host keeps its share)."""
    group = engine.group(t)
    removed = {"containers": 0, "networks": 0, "volumes": 0}
    with suppress(RuntimeFailure):  # no such stack: only leftovers to sweep
        docker.run(group.manager.command("stack", "rm", t.lab), f"docker stack rm {t.lab}", timeout=120)
    removed["containers"] = len(engine.states(t))

    def gone() -> bool:
        left = engine.states(t)
        for host, engine_cmd in engine.engines(t).items():
            ids = [c.id for c in left if c.host == host]
            if ids:  # a task the swarm is slow to remove (or of a host it lost)
                with suppress(RuntimeFailure):
                    docker.run([*engine_cmd, "rm", "-f", "-v", *ids], f"remove containers of {t.lab} on {host}")
        return not left

    wait_for(f"every container of lab {t.lab} gone from its hosts", gone, REMOVE_TIMEOUT, interval=1.0)
    # `docker stack rm` removes the stack's overlays itself once its tasks are gone: a sweep before
    # that races it ("network ... not found"). They are swarm state, listed and removed on a
    # manager only (a worker refuses: "not a swarm manager"). A worker drops its own copy some
    # time after its last task or attached container went (a CI rehearsal found two still on a
    # worker right after `down`), so the wait is for every host that answers.
    manager = group.manager

    def networks_left() -> dict[str, list[str]]:
        left = {}
        for host, engine_cmd in engine.engines(t).items():
            with suppress(RuntimeFailure):  # a host that does not answer keeps its share
                left[host] = docker.labelled("network", t.lab, engine_cmd)
        return {h: ids for h, ids in left.items() if ids}

    with suppress(RuntimeFailure):  # a timeout: the manager's sweep removes what is left there
        wait_for(
            f"the networks of lab {t.lab} removed by the swarm",
            lambda: not networks_left(),
            NETWORKS_TIMEOUT,
            interval=0.5,
        )
    for host, engine_cmd in engine.engines(t).items():
        kinds = (("network",) if host == manager.name else ()) + (() if keep_data else ("volume",))
        for kind in kinds:
            try:
                ids = docker.labelled(kind, t.lab, engine_cmd)
                if ids:
                    docker.run([*engine_cmd, kind, "rm", *ids], f"remove {kind}s of {t.lab} on {host}", timeout=60)
                    removed[f"{kind}s"] += len(ids)
            except RuntimeFailure as exc:
                log.info(f"  {host}: {kind}s of {t.lab} not removed: {exc}")
    for host, ids in networks_left().items():  # a worker's copy only its own swarm agent removes
        log.warning(f"  {host}: networks of {t.lab} still there after {NETWORKS_TIMEOUT:g} s: {', '.join(ids)}")
    if group.made_here:
        with suppress(RuntimeFailure):
            docker.run(manager_shell(group, f"rm -rf '{stack_dir(group, t)}'"), "remove the lab's files in the manager")
    return removed
