"""Where a lab's containers run and the docker command that reaches each: this machine's Docker
for a compose lab; for a swarm lab, the Docker of the host that runs each task (its host group,
lab/cluster/hosts.py). Everything that acts on one container of a lab (probes, faults, logs) asks
here, so that it works on either engine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lab.cluster import cpu, docker, hosts
from lab.cluster.compose import container_name
from lab.cluster.docker import ContainerState
from lab.cluster.topology import Topology
from lab.core.errors import RuntimeFailure


@dataclass(frozen=True)
class Place:
    """One container of a lab: the docker command of the engine that runs it, and its name or id."""

    engine: tuple[str, ...]
    container: str
    host: str = ""  # a swarm lab's: the host

    def command(self, *args: str) -> list[str]:
        """`docker <args>` on its engine; the caller appends the container where it goes."""
        return [*self.engine, *args]


def group(t: Topology) -> hosts.HostGroup:
    assert t.engine.swarm and t.engine.hosts is not None, "a swarm lab names its host group"
    return hosts.load(t.engine.hosts)


def engines(t: Topology) -> dict[str, tuple[str, ...]]:
    """host name -> its docker command ("" -> this machine's, for a compose lab)."""
    if not t.engine.swarm:
        return {"": docker.LOCAL}
    return {h.name: h.docker for h in group(t).hosts}


def states(t: Topology) -> list[ContainerState]:
    """Every container of the lab on every engine, each with its host; a host that does not
    answer (killed, cut off) shows none."""
    out: list[ContainerState] = []
    for host, engine in engines(t).items():
        try:
            found = docker.container_states(t.lab, engine)
        except RuntimeFailure:
            if not host:
                raise
            continue
        out += [replace(c, host=host) for c in found]
    return out


def current(found: Iterable[ContainerState]) -> dict[str, ContainerState]:
    """service -> its container; of a swarm service's tasks, the running one, else the newest
    (a replaced task's exited container stays until the swarm prunes it)."""
    out: dict[str, ContainerState] = {}
    for c in found:
        if not c.service:
            continue
        old = out.get(c.service)
        if old is None or (c.running, c.started_at or "") > (old.running, old.started_at or ""):
            out[c.service] = c
    return out


def place(t: Topology, service: str, found: dict[str, ContainerState] | None = None) -> Place:
    """Where `service`'s container is: for a compose lab by its name alone, for a swarm lab from
    `found` (or the engines, asked now)."""
    if not t.engine.swarm:
        return Place(docker.LOCAL, container_name(t, service))
    c = (current(states(t)) if found is None else found).get(service)
    if c is None:
        raise RuntimeFailure(f"no container of {service} runs on the hosts of lab {t.lab!r}")
    return Place(engines(t)[c.host], c.id, c.host)


def placed(t: Topology, services: Iterable[str]) -> dict[str, Place]:
    """Where each of `services` that has a container is (a swarm lab's engines asked once); one
    without a container (its host killed or cut off) is left out."""
    if not t.engine.swarm:
        return {s: place(t, s) for s in services}
    found = current(states(t))
    return {s: place(t, s, found) for s in services if s in found}


def by_id(t: Topology, services: Iterable[str]) -> dict[str, Place]:
    """Where each of `services` that has a container is, by its container id (its cgroup's name,
    lab/cluster/cpu.py), on either engine: the engines asked once."""
    found, reach = current(states(t)), engines(t)
    return {s: Place(reach[c.host], c.id, c.host) for s in services if (c := found.get(s)) is not None and c.id}


def files(t: Topology, host: str) -> cpu.Files:
    """How to read files of the machine that runs a container (`host` of its Place): this machine's
    directly; a host made here's with one `grep -H` in its container per call (a file it cannot read
    is left out, as locally). A real machine's are not reachable through its docker command."""
    if not host:
        return cpu.local_files
    container = group(t).host(host).container
    if container is None:
        raise RuntimeFailure(f"host {host} is a real machine: its files are not reachable from here")

    def read(paths: Sequence[Path]) -> dict[Path, str]:
        script = 'grep -H "" "$@" 2>/dev/null; exit 0'  # grep exits 2 when some file is missing
        out = docker.run(
            ["docker", "exec", container, "sh", "-c", script, "sh", *map(str, paths)],
            f"read files on {host}",
            timeout=15,
        )
        texts: dict[Path, str] = {}
        for line in out.splitlines():
            path, _, text = line.partition(":")
            texts[Path(path)] = texts.get(Path(path), "") + text + "\n"
        return texts

    return read


def by_engine(places: Sequence[Place]) -> dict[tuple[str, ...], list[str]]:
    """docker command -> the containers it reaches, so that one command acts on each engine's."""
    out: dict[tuple[str, ...], list[str]] = {}
    for p in places:
        out.setdefault(p.engine, []).append(p.container)
    return out
