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
from typing import Any

from aiohttp import web

from .gdapi import ApiError
from .responses import error_response

SHUTDOWN_TIMEOUT = 60.0  # web.TCPSite's default: in-flight requests may finish


class GdapiProtocol(web.RequestHandler):
    def __init__(self, manager: web.Server, *, headers: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._error_headers = headers

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # aiohttp's answer is dropped, but the call still logs the error and refuses to answer twice.
        super().handle_error(request, status, exc, message)
        if status == 400:  # the parser refused the request; its message says where
            error = ApiError(400, "BadRequest", "malformed HTTP request", " ".join(str(message).split()))
        else:  # a handler failed outside the API's guard (api.py), or timed out
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
