"""A small real ASGI app exposing the bridge's metric names, for driving ``check-kpis`` to pass and fail.

Run as a script (uvicorn serves the app; prometheus-client serves /metrics on a second port):

    python tests/kpi_app.py --port P --metrics-port M [--status-style class|code] [--status-label status]
                            [--memory-limit BYTES] [--startup SECONDS|none]
                            [--metric-prefix aibridge_] [--route-label route]

``POST /control`` (not counted) sets ``delay`` (seconds before /health answers), ``error_ratio``
(share of ``GET /work`` answered 500), ``health_status`` and ``memory_limit`` at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support import free_port, wait_http_ok

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def build_app(args: argparse.Namespace) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    started = time.perf_counter()
    from prometheus_client import Counter, Gauge, Histogram

    prefix, route_label = args.metric_prefix, args.route_label
    requests = Counter(f"{prefix}http_requests", "Requests.", ["method", route_label, args.status_label])
    duration = Histogram(
        f"{prefix}http_request_duration_seconds", "Duration.", ["method", route_label], buckets=BUCKETS
    )
    limit = Gauge("aibridge_memory_limit_bytes", "Memory limit.")
    if args.memory_limit:
        limit.set(args.memory_limit)
    state: dict[str, Any] = {"delay": 0.0, "error_ratio": 0.0, "health_status": 200, "served": 0}

    async def respond(send: Send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    if args.startup != "none":
                        startup = float(args.startup) if args.startup else time.perf_counter() - started
                        Gauge("aibridge_startup_duration_seconds", "Startup.").set(startup)
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        method, path = scope["method"], scope["path"]
        if path == "/control":
            body = b""
            while (message := await receive()).get("more_body", False) or not body:
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            changes = json.loads(body or b"{}")
            state.update({k: v for k, v in changes.items() if k != "memory_limit"})
            if "memory_limit" in changes:
                limit.set(changes["memory_limit"])
            await respond(send, 200, {"state": state})
            return
        begin = time.perf_counter()
        if path == "/health":
            await asyncio.sleep(state["delay"])
            status = state["health_status"]
        elif path == "/work":
            state["served"] += 1
            failing = (
                state["error_ratio"] > 0 and state["served"] % max(1, round(1 / state["error_ratio"])) == 0
            )
            status = 500 if failing else 200
        else:
            status = 404
        await respond(send, status, {"status": status})
        label = f"{status // 100}xx" if args.status_style == "class" else str(status)
        route = path if path in ("/health", "/work") else "unmatched"
        requests.labels(method, route, label).inc()
        duration.labels(method, route).observe(time.perf_counter() - begin)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--status-style", choices=("class", "code"), default="class")
    parser.add_argument("--status-label", default="status")
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--startup", default="")
    parser.add_argument("--metric-prefix", default="aibridge_")
    parser.add_argument("--route-label", default="route")
    args = parser.parse_args()
    import uvicorn
    from prometheus_client import start_http_server

    start_http_server(args.metrics_port, addr="127.0.0.1")
    uvicorn.run(build_app(args), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


@dataclass
class KpiApp:
    """The app as a subprocess on fixed free ports, so it can be stopped and started again."""

    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        command = [sys.executable, str(Path(__file__)), "--port", str(self.port)]
        command += ["--metrics-port", str(self.metrics_port), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http_ok(f"{self.url}/health", process=self.process)
        wait_http_ok(self.metrics_url, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def control(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/control", json=changes, timeout=5).raise_for_status()

    def traffic(self, count: int) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for _ in range(count):
                client.get("/work")


@contextlib.contextmanager
def run_kpi_app(*args: str) -> Iterator[KpiApp]:
    app = KpiApp(list(args))
    app.start()
    try:
        yield app
    finally:
        app.stop()


if __name__ == "__main__":
    main()
