"""JSON answers and gdapi error answers: what the API app (api.py) and the listener's own error
answers (listener.py) both send, kept apart so that the listener does not import the API app."""

from __future__ import annotations

from aiohttp import web

from . import gdapi

JSON = "application/json"


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def error_response(e: gdapi.ApiError) -> web.Response:
    return json_response(gdapi.dumps(e.body()), e.status)
