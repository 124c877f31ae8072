"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for looking at pages.

with open_page(tmp_path) as page:
    requests = page.load("file:///…/report.html")   # every URL the page asked for
    page.evaluate("document.title")
    page.screenshot(tmp_path / "shot.png")

Only loopback and file URLs are ever opened; Chromium's own background traffic is switched off
by the flags and, being no page's, is not among the page's requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets

from support import require_binary, stop_process

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1200,1400",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Page:
    """One page target; each call runs its own short asyncio loop (tests stay synchronous)."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self._ids = itertools.count(1)

    async def _session(
        self, calls: list[tuple[str, dict[str, Any]]], until: tuple[str, ...] | None
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Send ``calls``; read until each has answered and the event ``until`` fired."""
        results: dict[int, Any] = {}
        events: list[dict[str, Any]] = []
        async with websockets.connect(self.ws_url, max_size=None, open_timeout=10) as ws:
            ids: list[int] = []
            deadline = time.monotonic() + 30
            for method, params in calls:
                # One at a time: Page.navigate must not overtake Network.enable.
                ids.append(next(self._ids))
                await ws.send(json.dumps({"id": ids[-1], "method": method, "params": params}))
                while ids[-1] not in results:
                    message = json.loads(
                        await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                    )
                    if "error" in message:
                        raise RuntimeError(f"DevTools: {message['error']}")
                    if "id" in message:
                        results[message["id"]] = message.get("result")
                    else:
                        events.append(message)

            def done() -> bool:
                fired = until is None or any(e["method"] in until for e in events)
                return len(results) == len(ids) and fired

            while not done():
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    seen = [e["method"] for e in events]
                    raise TimeoutError(f"DevTools: no {until} (events {seen})") from None
                message = json.loads(raw)
                if "id" in message:
                    if "error" in message:
                        raise RuntimeError(f"DevTools: {message['error']}")
                    results[message["id"]] = message.get("result")
                    continue
                events.append(message)
        return [results[i] for i in ids], events

    def load(self, url: str) -> list[str]:
        """Navigate and wait for the load event (it waits for every subresource); return the URLs
        the page requested or got a response from (Chromium does not always report both)."""
        calls = [("Network.enable", {}), ("Page.enable", {}), ("Page.navigate", {"url": url})]
        _, events = asyncio.run(
            self._session(calls, until=("Page.loadEventFired", "Page.frameStoppedLoading"))
        )
        urls: list[str] = []
        for event in events:
            params = event.get("params", {})
            if event["method"] == "Network.requestWillBeSent":
                url = params["request"]["url"]
            elif event["method"] == "Network.responseReceived":
                url = params["response"]["url"]
            else:
                continue
            if url not in urls:
                urls.append(url)
        return urls

    def evaluate(self, expression: str) -> Any:
        params = {"expression": expression, "returnByValue": True}
        (result,), _ = asyncio.run(self._session([("Runtime.evaluate", params)], until=None))
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        params = {"format": "png", "captureBeyondViewport": True}
        (result,), _ = asyncio.run(self._session([("Page.captureScreenshot", params)], until=None))
        path.write_bytes(base64.b64decode(result["data"]))


@contextlib.contextmanager
def open_page(tmp_path: Path) -> Iterator[Page]:
    profile = tmp_path / "chromium-profile"
    log = (tmp_path / "chromium.log").open("wb")
    process = subprocess.Popen(
        [require_binary("chromium"), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"chromium did not start:\n{(tmp_path / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        port = active.read_text().split()[0]
        # A target of our own, created after start-up, so no start-up navigation races ours.
        target = httpx.put(f"http://127.0.0.1:{port}/json/new?about:blank", timeout=10).json()
        yield Page(target["webSocketDebuggerUrl"])
    finally:
        stop_process(process)
        log.close()
