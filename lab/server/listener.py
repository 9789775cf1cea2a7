"""Serving an aiohttp app on a TCP port, with aiohttp's own error answers in the gdapi shape.

aiohttp answers a request its HTTP parser refuses (a bad method token, a malformed request line or
header, an oversized head) before any handler or middleware runs, with its own text/plain 400,
from `RequestHandler.handle_error`. No setting selects another handler class (aio-libs/aiohttp#3287,
still open), so `Listener` does what `web.AppRunner` + `web.TCPSite` do, except that the protocol
factory it gives `loop.create_server` builds `GdapiProtocol` connections. Checked against aiohttp
3.8.4 (Debian bookworm's, in the image) and 3.14.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter, _serialize_headers
from multidict import CIMultiDict

from .gdapi import ApiError
from .responses import error_response

SHUTDOWN_TIMEOUT = 60.0  # web.TCPSite's default: in-flight requests may finish
# aiohttp 3.8 (the image's) writes a response's head as soon as it is ready and its body after it:
# two sends, and with TCP_NODELAY two segments, for every answer. Later releases (the venv's) hold
# the head back for the body by themselves, and have `send_headers` for a head that must go alone.
HEAD_WAITS_FOR_BODY = hasattr(StreamWriter, "send_headers")


class HeadWithBody(StreamWriter):
    """A StreamWriter that sends a response's head in the same write as the first of its body, as
    aiohttp 3.9 and later do: one send per answer instead of two, about a tenth of the node's CPU
    per request on aiohttp 3.8 (issue 18). The bytes on the wire are the same. A head with no body
    after it goes out when the response ends (`drain`) or, for a response streamed by hand, when
    the loop next turns."""

    _head = b""

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        if self._on_headers_sent is not None:
            await self._on_headers_sent(headers)
        self._head = _serialize_headers(status_line, headers)
        self.loop.call_soon(self._send_head)

    def _send_head(self) -> None:
        if self._head:
            with suppress(ConnectionResetError):  # the client left: nothing to send it to
                self._write(b"")

    def _write(self, chunk: bytes | bytearray | memoryview[int] | memoryview[bytes]) -> None:
        if self._head:
            chunk, self._head = self._head + bytes(chunk), b""
        super()._write(chunk)

    async def drain(self) -> None:
        self._send_head()
        await super().drain()


class GdapiProtocol(web.RequestHandler):
    def __init__(self, manager: web.Server, *, headers: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._error_headers = headers
        if not HEAD_WAITS_FOR_BODY:
            # The request factory is the one place a request's writer can be chosen on aiohttp 3.8.
            make = self._request_factory
            assert make is not None
            loop = kwargs["loop"]

            def request_with_one_send(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
                return make(message, payload, protocol, HeadWithBody(protocol, loop), task)

            self._request_factory = request_with_one_send

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # aiohttp's answer is dropped, but the call still logs the error and refuses to answer twice.
        super().handle_error(request, status, exc, message)
        if status == 400:  # the parser refused the request; its message says where
            error = ApiError(400, "BadRequest", "malformed HTTP request", " ".join(str(message).split()))
        else:  # a handler failed outside the API middleware, or timed out
            error = ApiError(status, "SERVER_ERROR", "internal error")
        response = error_response(error)
        response.headers.update(self._error_headers)
        response.force_close()  # what is left of the connection's input cannot be trusted
        return response


class Listener:
    """`headers` go on aiohttp's own error answers too (the apps add them to theirs)."""

    def __init__(self, app: web.Application, headers: Mapping[str, str]) -> None:
        self._runner = web.AppRunner(app)
        self._headers = headers
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None
        self._server = await loop.create_server(
            lambda: GdapiProtocol(manager, headers=self._headers, loop=loop, access_log=None),
            host,
            port,
            backlog=backlog,
        )

    async def stop(self) -> None:
        """What web.TCPSite.stop and web.AppRunner.cleanup do between them on aiohttp 3.8."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        server = self._runner.server
        if server is not None:
            await self._runner.shutdown()
            await server.shutdown(SHUTDOWN_TIMEOUT)
        await self._runner.cleanup()
