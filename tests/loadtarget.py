"""A real HTTP server to load-test: a raw ASGI app under uvicorn, steered by the query string.

Run ``python tests/loadtarget.py --port N`` (``run_loadtarget()`` does it on a free port). Every
behaviour is deterministic, driven by per-server counters, so tests know exact expected counts:

- ``delay_ms=D``                 answer after D ms
- ``first_ms=F``                 the first handled request (only) waits F ms, like a cold start
- ``slow_every=K&slow_ms=M``     every K-th handled request waits M ms (instead of ``delay_ms``)
- ``status=S``                   answer with status S; with ``status_every=K`` only every K-th request
- ``location=URL``               add a Location header (with ``status=301`` makes a redirect)
- ``drop_every=K``               every K-th received request: close the connection without answering

``GET /__stats`` returns the counters, methods, ``X-*`` headers seen and arrival times (ms since
the first arrival); ``POST /__reset`` clears them. Neither is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from support import free_port, wait_http_ok

_REQUEST_LINE = re.compile(rb"^[A-Z]+ (/[^ ]*) HTTP/1\.[01]\r\n")
_DROP_EVERY = re.compile(rb"[?&]drop_every=(\d+)")
_BODY = b'{"status":"ok"}'


@dataclass
class Stats:
    received: int = 0
    handled: int = 0
    dropped: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: int = 0
    x_headers: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        start = self.arrivals[0] if self.arrivals else 0.0
        return {
            "received": self.received,
            "handled": self.handled,
            "dropped": self.dropped,
            "statuses": {str(code): count for code, count in self.statuses.items()},
            "bytes_of_bodies": self.bodies,
            "x_headers": dict(self.x_headers),
            "methods": dict(self.methods),
            "arrivals_ms": [round((t - start) * 1000, 3) for t in self.arrivals[:100_000]],
        }


STATS = Stats()


class DroppingProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, but able to hang up on a request before any response byte."""

    def data_received(self, data: bytes) -> None:
        match = _REQUEST_LINE.match(data)
        if match and not match.group(1).startswith(b"/__"):
            STATS.received += 1
            drop = _DROP_EVERY.search(match.group(1))
            if drop and int(drop.group(1)) and STATS.received % int(drop.group(1)) == 0:
                STATS.dropped += 1
                self.transport.close()
                return
        super().data_received(data)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/__stats":
        await _respond(send, 200, json.dumps(STATS.as_json()).encode())
        return
    if path == "/__reset":
        STATS.__init__()  # type: ignore[misc]
        await _respond(send, 200, b"{}")
        return
    STATS.handled += 1
    STATS.bodies += len(body)
    STATS.methods[scope["method"]] = STATS.methods.get(scope["method"], 0) + 1
    for name, value in scope["headers"]:
        if name.startswith(b"x-"):
            key = f"{name.decode()}: {value.decode()}"
            STATS.x_headers[key] = STATS.x_headers.get(key, 0) + 1
    STATS.arrivals.append(time.monotonic())
    index = STATS.handled
    query = {key: values[-1] for key, values in parse_qs(scope["query_string"].decode()).items()}
    delay_ms = float(query.get("delay_ms", 0))
    if index == 1 and "first_ms" in query:
        delay_ms = float(query["first_ms"])
    elif int(query.get("slow_every", 0)) and index % int(query["slow_every"]) == 0:
        delay_ms = float(query.get("slow_ms", 0))
    status = 200
    if "status" in query:
        every = int(query.get("status_every", 1))
        status = int(query["status"]) if index % every == 0 else 200
    STATS.statuses[status] = STATS.statuses.get(status, 0) + 1
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    extra = [(b"location", query["location"].encode())] if "location" in query else []
    await _respond(send, status, _BODY, extra)


async def _respond(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class LoadTarget:
    """A running load-target subprocess."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/__stats", timeout=10).json()
        return data

    def reset(self) -> None:
        httpx.post(f"{self.url}/__reset", timeout=10).raise_for_status()


@contextlib.contextmanager
def run_loadtarget() -> Iterator[LoadTarget]:
    """Start the load target on a free loopback port; stop it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/__stats", process=process)
        yield LoadTarget(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_loadtest_cli(
    *args: str, cwd: Path | None = None, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """``aibridge loadtest ARGS`` as a real subprocess, 120 columns, no proxy settings."""
    return subprocess.run(
        [sys.executable, "-m", "aibridge", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
        preexec_fn=preexec_fn,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        http=DroppingProtocol,
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
