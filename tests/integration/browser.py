"""A page opened in headless Chromium (Debian's `chromium`) through the DevTools protocol, over
aiohttp's WebSocket client: what the console and the network said about it, which images did
not load, and a screenshot.

Chromium is started for one page with its own profile directory and `--remote-debugging-port=0`
(it prints the address it chose); it is killed on every way out. `--no-sandbox`: the tests run as
root, where Chromium's sandbox refuses to start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from lab.core.wait import wait_for

CHROMIUM = "chromium"
START_TIMEOUT = 30.0
# Images that did not load: not complete, or complete with nothing decoded.
_BROKEN_IMAGES = "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))"


@dataclass
class PageCheck:
    url: str
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    value: Any = None  # what the `until` expression last gave
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        return self.errors + [f"image did not load: {src}" for src in self.broken_images]


def require_chromium() -> str:
    found = shutil.which(CHROMIUM)
    if not found:
        raise RuntimeError("chromium is not installed (scripts/install-prereqs.sh installs Debian's)")
    return found


def open_page(url: str, screenshot: Path, until: str = "true", timeout: float = 30.0) -> PageCheck:
    """Load `url`, wait until the JavaScript expression `until` is truthy (after the load event),
    then collect the page's problems and save a PNG screenshot."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="halab-chromium-") as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,900",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its renderers and helpers go with it
        )
        try:
            ws = _devtools_address(proc)
            return asyncio.run(asyncio.wait_for(_check(ws, url, screenshot, until, timeout), timeout + 15))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            _wait_gone(proc.pid)


def _wait_gone(group: int) -> None:
    """Until no process of the group is left (they write the profile directory to the end)."""

    def gone() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for("chromium's processes to end", gone, 30, interval=0.05)


def _devtools_address(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + START_TIMEOUT, []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line.strip())
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            return m.group(1)
    raise RuntimeError("chromium did not start its DevTools endpoint: " + " | ".join(seen[-5:]))


class _Session:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            else:
                for listen in self.listeners:
                    listen(data)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})


async def _check(ws_url: str, url: str, screenshot: Path, until: str, timeout: float) -> PageCheck:
    out = PageCheck(url)
    loaded = asyncio.Event()

    def listen(event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            out.errors.append("exception: " + str(details.get("exception", {}).get("description") or details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            out.errors.append(f"network: {params.get('errorText')} ({params.get('type')})")
        elif method == "Page.loadEventFired":
            loaded.set()

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        cdp = _Session(ws)
        cdp.listeners.append(listen)
        pump = asyncio.create_task(cdp.pump())
        try:
            target = await cdp.call("Target.createTarget", url="about:blank")
            session = (await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                await cdp.call(f"{domain}.enable", session)
            await cdp.call("Page.navigate", session, url=url)
            await asyncio.wait_for(loaded.wait(), timeout)
            deadline = time.monotonic() + timeout
            while True:
                result = await cdp.call("Runtime.evaluate", session, expression=until, returnByValue=True)
                out.value = result.get("result", {}).get("value")
                if out.value or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            broken = await cdp.call("Runtime.evaluate", session, expression=_BROKEN_IMAGES, returnByValue=True)
            out.broken_images = list(broken["result"]["value"])
            count = await cdp.call("Runtime.evaluate", session, expression="document.images.length", returnByValue=True)
            out.images = int(count["result"]["value"])
            shot = await cdp.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            out.screenshot = screenshot
        finally:
            pump.cancel()
    return out
