"""Plain TCP tunnels standing in for cluster-manager's `tunnel-<service>-<slot>` containers.

Rancher v1.0's ZooKeeper members, Redis servers and servers reached each other only through
spiped tunnels that cluster-manager created per peer slot: on every node, `127.0.0.1:<base port +
slot - 1>` led to the member in that slot, and the node's own slot was reachable from its peers on
the public port. The lab keeps the layout and the lifecycle (a tunnel is created, re-pointed or
deleted when the slots change, and deleting one cuts the connections through it) and drops the
encryption. Like spiped, a tunnel gives up on a target it cannot connect to within
`CONNECT_TIMEOUT` and closes the client's connection.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger("halab.tunnel")

CONNECT_TIMEOUT = 5.0  # spiped's default -o
CHUNK = 1 << 16


@dataclass(frozen=True)
class Spec:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port} -> {self.target_host}:{self.target_port}"


class Tunnel:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.spec.listen_host, self.spec.listen_port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening and cut every connection through the tunnel."""
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._pipe(reader, writer))
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.wait_for(
                asyncio.open_connection(self.spec.target_host, self.spec.target_port), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        try:
            await asyncio.gather(_copy(reader, t_writer), _copy(t_reader, writer))
        finally:
            writer.close()
            t_writer.close()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


class Tunnels:
    """The tunnels of one node by name. A tunnel that cannot listen yet (its port is still held,
    say by a member that is about to move to another slot) is tried again by `retry`, as Docker
    restarted a spiped container that exited."""

    def __init__(self) -> None:
        self._wanted: dict[str, Spec] = {}
        self._running: dict[str, Tunnel] = {}

    def specs(self) -> dict[str, Spec]:
        return {name: t.spec for name, t in self._running.items()}

    async def ensure(self, name: str, spec: Spec) -> None:
        self._wanted[name] = spec
        current = self._running.get(name)
        if current is not None and current.spec == spec:
            return
        if current is not None:
            await self._stop(name)
        await self._start(name, spec)

    async def remove(self, name: str) -> None:
        self._wanted.pop(name, None)
        if name in self._running:
            await self._stop(name)
            log.info("tunnel %s deleted", name)

    async def retry(self) -> None:
        for name, spec in list(self._wanted.items()):
            if name not in self._running:
                await self._start(name, spec)

    async def close(self) -> None:
        self._wanted.clear()
        for name in list(self._running):
            await self._stop(name)

    async def _start(self, name: str, spec: Spec) -> None:
        tunnel = Tunnel(spec)
        try:
            await tunnel.start()
        except OSError as e:
            log.warning("tunnel %s (%s) cannot listen yet: %s", name, spec, e.strerror or e)
            return
        self._running[name] = tunnel
        log.info("tunnel %s: %s", name, spec)

    async def _stop(self, name: str) -> None:
        await self._running.pop(name).stop()
