"""The event bus between servers over every node's Redis, as cattle's Redis eventing ran it
(cattle v0.159 `RedisEventingService`, `RedisConnection`; settings `redis.timeout=2000`,
`redis.retry.millis=60000`).

Each server subscribes to its event names on every Redis host of `CATTLE_REDIS_HOSTS`, one
subscriber connection per host; a subscriber connection that fails or ends is opened again
`retry` seconds later. An event is published to one host, the next one round-robin, and on a
failure (no connection within `timeout`, or no reply within `timeout`) to the following hosts in
turn; when every host failed the event is dropped. Since every server subscribes everywhere, an
event published to any live host reaches every server, the publisher included.

Redis is spoken directly (RESP over asyncio): PUBLISH and SUBSCRIBE are all the bus needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("halab.redis")

TIMEOUT = 2.0  # redis.timeout, ms -> s: connect and reply timeout of a publish
RETRY = 60.0  # redis.retry.millis: wait before a subscriber connection is opened again
MAX_IDLE = 50  # JedisPool under global.pool.maxidle


class RedisError(Exception):
    """An error reply, or a connection that broke mid-reply."""


def encode(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else (await reader.readexactly(n + 2))[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [await read_reply(reader) for _ in range(n)]
    raise RedisError(f"not a RESP reply: {line[:40]!r}")


def parse_hosts(text: str) -> list[tuple[str, int]]:
    """`host[:port],...` (CATTLE_REDIS_HOSTS) -> [(host, port)]; the port defaults to 6379."""
    hosts = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        hosts.append((host, int(port)) if sep and port.isdigit() else (item, 6379))
    return hosts


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Host:
    host: str
    port: int
    subscribed: bool = False
    published: int = 0
    failed: int = 0
    idle: list[Conn] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class EventBus:
    def __init__(
        self,
        hosts: Sequence[tuple[str, int]],
        on_event: Callable[[str, Mapping[str, Any]], None],
        timeout: float = TIMEOUT,
        retry: float = RETRY,
    ) -> None:
        self.hosts = [Host(h, p) for h, p in hosts]
        self.on_event = on_event
        self.timeout = timeout
        self.retry = retry
        self.dropped = 0
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, names: Sequence[str]) -> None:
        self._tasks = [asyncio.ensure_future(self._subscribe(h, names)) for h in self.hosts]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for h in self.hosts:
            while h.idle:
                h.idle.pop()[1].close()

    async def publish(self, name: str, payload: Mapping[str, Any]) -> bool:
        """Publish to the next host round-robin, failing over; False: dropped (every host failed)."""
        if not self.hosts:
            return False
        self._next = (self._next + 1) % len(self.hosts)
        message = json.dumps({"name": name, "data": dict(payload)})
        for i in range(len(self.hosts)):
            host = self.hosts[(self._next + i) % len(self.hosts)]
            began = time.monotonic()
            failure = await self._publish_to(host, name, message)
            if failure is None:
                host.published += 1
                return True
            host.failed += 1
            # Logged (cattle's Jedis errors were not) because the time lost is the evidence: a
            # peer killed behind its tunnel costs a write `timeout` seconds until it is forgotten.
            log.warning(
                "publish %s to Redis %s failed after %.1f s (%s)", name, host, time.monotonic() - began, failure
            )
        self.dropped += 1
        log.warning("event %s dropped: no Redis host took it (%s)", name, ", ".join(map(str, self.hosts)))
        return False

    async def _publish_to(self, host: Host, name: str, message: str) -> str | None:
        """None when the host took the event, else what failed. A pooled connection the server has
        since closed is replaced by a new one, as the pool's test on borrow did; a new connection
        that fails fails the host."""
        while True:
            pooled = bool(host.idle)
            conn: Conn | None = None
            try:
                conn = (
                    host.idle.pop()
                    if pooled
                    else await asyncio.wait_for(asyncio.open_connection(host.host, host.port), self.timeout)
                )
                reader, writer = conn
                writer.write(encode("PUBLISH", name, message))
                await asyncio.wait_for(read_reply(reader), self.timeout)
                break
            except (OSError, asyncio.TimeoutError, RedisError, ValueError) as e:
                if conn is not None:
                    conn[1].close()
                if pooled and not isinstance(e, asyncio.TimeoutError):
                    continue
                return type(e).__name__
        if len(host.idle) < MAX_IDLE:
            host.idle.append(conn)
        else:
            conn[1].close()
        return None

    async def _subscribe(self, host: Host, names: Sequence[str]) -> None:
        while True:
            try:
                await self._listen(host, names)
            except (OSError, asyncio.TimeoutError, RedisError, ValueError) as e:
                log.warning(
                    "Redis %s subscriber connection failed (%s); again in %.0f s", host, type(e).__name__, self.retry
                )
            finally:
                host.subscribed = False
            await asyncio.sleep(self.retry)

    async def _listen(self, host: Host, names: Sequence[str]) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host.host, host.port), self.timeout)
        try:
            writer.write(encode("SUBSCRIBE", *names))
            while True:  # a subscriber waits for messages without a timeout, as Jedis did
                reply = await read_reply(reader)
                if not (isinstance(reply, list) and len(reply) == 3):
                    continue
                if reply[0] == b"message":
                    self._deliver(reply[1], reply[2])
                elif reply[0] == b"subscribe" and not host.subscribed:
                    host.subscribed = True
                    log.info("subscribed to %s on Redis %s", ", ".join(names), host)
        finally:
            writer.close()

    def _deliver(self, channel: bytes, raw: bytes) -> None:
        try:
            event = json.loads(raw)
            data = event["data"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event on %s", channel.decode(errors="replace"))
            return
        self.on_event(channel.decode(), data)

    def status(self) -> dict[str, Any]:
        return {
            "dropped": self.dropped,
            "hosts": [
                {"host": str(h), "subscribed": h.subscribed, "published": h.published, "failed": h.failed}
                for h in self.hosts
            ],
        }
