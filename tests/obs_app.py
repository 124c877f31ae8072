"""A small real Litestar app wired with the observability pieces exactly as the bridge should be.

Run as ``python tests/obs_app.py`` with ``PORT``/``AI_BRIDGE_*`` in the environment. ``OBS_LAYERS``
(comma list of metrics, logs, limits; default all) picks the layers, so bench/obs_overhead.py can
compare with and without. The wiring in ``build_app``/``main`` is the reference for app.py/runner.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, WebSocket, get, post, websocket
from litestar.config.cors import CORSConfig

from aibridge import __version__
from aibridge.server.config import BridgeConfig
from aibridge.server.limits import ConnectionGate, rate_limit_config, ws_bucket
from aibridge.server.logs import (
    AccessLogMiddleware,
    configure_logging,
    log_startup,
    log_ws_connected,
    log_ws_disconnected,
)
from aibridge.server.metrics import BridgeMetrics, MetricsMiddleware, PrometheusEvents, serve_metrics
from aibridge.server.store.base import StoreStats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import free_port, stop_process, wait_http_ok

HISTORY: list[int] = []
RELEASE = asyncio.Event()


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/items/{item_id:int}", sync_to_thread=False)
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@post("/echo", sync_to_thread=False)
def echo(data: dict[str, Any]) -> dict[str, int]:
    HISTORY.append(len(str(data)))
    return {"stored": len(HISTORY)}


@get("/hold")
async def hold() -> dict[str, bool]:
    """Stays in flight until /release (bounded), so tests can fill the connection cap."""
    await asyncio.wait_for(RELEASE.wait(), timeout=30)
    return {"held": True}


@get("/release", sync_to_thread=False, opt={"no_rate_limit": True})
def release() -> dict[str, bool]:
    RELEASE.set()
    return {"released": True}


def build_app(config: BridgeConfig, metrics: BridgeMetrics | None, layers: set[str]) -> Any:
    events = PrometheusEvents(metrics) if metrics else None

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        opened, bucket, code = time.monotonic(), ws_bucket(config), None
        if events:
            events.ws_connected()
        if "logs" in layers:
            log_ws_connected(socket.scope, agent_id="tester")  # type: ignore[arg-type]
        try:
            while True:
                frame = await socket.receive_json()
                if frame.get("type") == "bye":
                    code = 1000
                    await socket.close(code)
                    break
                if not bucket.take():
                    await socket.send_json({"type": "error", "error": "rate_limited"})
                    continue
                if events:
                    events.envelope("delivered")
                await socket.send_json({"type": "ok"})
        finally:
            if events:
                events.ws_disconnected()
            if "logs" in layers:
                log_ws_disconnected(socket.scope, "tester", code, time.monotonic() - opened)  # type: ignore[arg-type]

    middleware: list[Any] = []
    gate = ConnectionGate(config.max_connections, frozenset({"/health", "/release"}))
    if "limits" in layers:
        # HTTP inside Litestar (its CORS layer then covers the 503), WebSocket outside (below),
        # as the bridge's agent sockets take a fast path around Litestar.
        middleware.append(functools.partial(gate.middleware, scopes=frozenset({"http"})))
        limit = rate_limit_config(config)
        if limit is not None:
            middleware.append(limit.middleware)
    app: Any = Litestar(
        route_handlers=[health, item, echo, hold, release, ws],
        cors_config=CORSConfig(allow_origins=list(config.cors_origins)),
        middleware=middleware,
        openapi_config=None,
        logging_config=None,  # Litestar's default would replace configure_logging's handlers
    )
    if "limits" in layers:
        app = gate.middleware(app, scopes=frozenset({"websocket"}))
    if "logs" in layers:
        app = AccessLogMiddleware(app)
    if metrics is not None:
        app = MetricsMiddleware(app, metrics)
    return app


class QuietServer(uvicorn.Server):
    """Leaves signals to main(), as the bridge's runner does (uvicorn re-raises them at exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def main() -> None:
    config = BridgeConfig.from_env(os.environ)
    layers = set(filter(None, os.environ.get("OBS_LAYERS", "metrics,logs,limits").split(",")))
    listener = configure_logging(config) if "logs" in layers else None
    if listener:
        log_startup(config, __version__)
    metrics = None
    if "metrics" in layers:
        metrics = BridgeMetrics(
            version=__version__,
            cgroup_dir=config.cgroup_dir,
            stats=lambda: StoreStats(len(HISTORY), 1 if HISTORY else 0, len(HISTORY), sum(HISTORY)),
        )
    app = build_app(config, metrics, layers)
    metrics_server = await serve_metrics(config, metrics) if metrics else None
    server = QuietServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            access_log=False,
            log_config=None,
            http="httptools",
            ws="websockets-sansio",
            ws_per_message_deflate=False,
        )
    )
    for sig in (signal.SIGTERM, signal.SIGINT):  # the real runner drains here; we just stop
        asyncio.get_running_loop().add_signal_handler(sig, setattr, server, "should_exit", True)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if metrics:
        metrics.mark_ready()
    await task
    if metrics_server:
        await metrics_server.stop()
    if listener:
        listener.stop()


@contextlib.contextmanager
def run_obs_app(
    tmp_path: Path, env: Mapping[str, str] | None = None, layers: str = "metrics,logs,limits"
) -> Iterator[ObsApp]:
    """Start this app in a subprocess on free loopback ports; SIGTERM (then SIGKILL) it after."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / f"obs-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_")}
    full_env.update(
        {
            "PORT": str(port),
            "AI_BRIDGE_HOST": "127.0.0.1",
            "AI_BRIDGE_METRICS_PORT": str(metrics_port),
            "AI_BRIDGE_CGROUP_DIR": str(tmp_path / "no-cgroup"),
            "OBS_LAYERS": layers,
            **(env or {}),
        }
    )
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__))], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )
    obs = ObsApp(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log_path)
    try:
        wait_http_ok(f"{obs.url}/health", process=process)
        yield obs
    finally:
        stop_process(process)


@dataclass
class ObsApp:
    process: subprocess.Popen[bytes]
    url: str
    metrics_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """The log once it contains ``needle`` (records are written by a background thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not logged within {timeout}s; log:\n{self.log()}")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
