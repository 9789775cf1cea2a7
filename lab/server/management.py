"""The management view on port 18080: `/` (HTML) and `/status.json`, like the HA management
stack page Rancher showed on 18080 while HA came up. Served from memory: no database query."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .gdapi import dumps

if TYPE_CHECKING:
    from .node import Node


def render_html(status: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for m in status["members"]:
        rows.append(
            "<tr>"
            f"<td>{m['id']}</td><td>{e(m['name'])}{' (this node)' if m['self'] else ''}</td>"
            f"<td>{'master' if m['master'] else ''}</td><td>{e(str(m['state']))}</td>"
            f"<td>{e(str(m['zkMode']))}</td><td>{e(str(m['ipAddress'] or ''))}</td>"
            "</tr>"
        )
    zk = status["zookeeper"]
    db = status["database"]
    mem = status["memory"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Rancher HA management: {e(status["node"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>Rancher HA (ha-lab simulation)</h1>
<p>This node: <b>{e(status["node"])}</b>, state <b>{e(status["state"])}</b>
{("(" + e("; ".join(status["reasons"])) + ")") if status["reasons"] else ""}</p>
<p>ZooKeeper: session {e(zk["session"])}, mode {e(zk["mode"])}.
Database: {"ok" if db["ok"] else "failing: " + e(str(db["error"]))}.
Heap model: {mem["pressure"] * 100:.0f}% of {mem["budgetBytes"] // (1 << 20)} MiB
{"(degraded by memory)" if mem["degraded"] else ""}.</p>
<h2>Members (cluster size {status["clusterSize"]}, master {e(str(status["master"]))})</h2>
<table><tr><th>id</th><th>name</th><th></th><th>HA state</th><th>ZooKeeper</th><th>address</th></tr>
{"".join(rows)}</table></body></html>
"""


def app(node: Node) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=render_html(node.status()), content_type="text/html")

    async def status(request: web.Request) -> web.Response:
        return web.Response(body=dumps(node.status()), content_type="application/json")

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Rancher-Node"] = node.cfg.node_name

    application = web.Application()
    application.on_response_prepare.append(headers)
    application.router.add_get("/", index)
    application.router.add_get("/status.json", status)
    return application
