"""The second listener: ``GET /metrics`` on ``AI_BRIDGE_METRICS_PORT``, next to the main server.

A bare ASGI app under its own ``uvicorn.Server`` on the same event loop. Re-exported by
:mod:`aibridge.server.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from aibridge.server.asgi import ASGIApp, Receive, Scope, Send
from aibridge.server.listen import bind_listener, display_host

if TYPE_CHECKING:
    from aibridge.server.config import BridgeConfig
    from aibridge.server.metrics import BridgeMetrics

__all__ = ("MetricsServer", "metrics_app", "serve_metrics")


log = logging.getLogger("aibridge.metrics")


def metrics_app(metrics: BridgeMetrics) -> ASGIApp:
    """A bare ASGI app answering ``GET /metrics`` (collected in a thread: /proc reads stay off the loop)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b'{"error":"only /metrics here","status":404}\n', "application/json"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, b'{"error":"use GET","status":405}\n', "application/json"
        else:
            status, body, ctype = 200, await asyncio.to_thread(metrics.exposition), CONTENT_TYPE_PLAIN_0_0_4
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


_in_metrics_server: contextvars.ContextVar[bool] = contextvars.ContextVar("aibridge_metrics", default=False)


class _OneServerLifecycle(logging.Filter):
    """Drops uvicorn's start/stop lines ("Started server process", "Shutting down", …) when the
    metrics listener logs them: the main server logs the same lines, and twice reads like two
    processes. Its warnings and errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not _in_metrics_server.get()


class _NoSignalServer(uvicorn.Server):
    """The main server owns SIGTERM/SIGINT (graceful drain); this one must not capture them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class MetricsServer:
    """The running ``/metrics`` listener; :meth:`stop` it after the main server."""

    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve_metrics(config: BridgeConfig, metrics: BridgeMetrics) -> MetricsServer | None:
    """Start the ``/metrics`` listener on ``config.metrics_port`` (``None`` when it is 0).

    The socket is bound here, so a busy port raises :class:`ConfigError` at start-up instead of
    uvicorn's ``sys.exit`` inside a task.
    """
    if config.metrics_port == 0:
        return None
    sock = bind_listener(config.host, config.metrics_port, prefix="AI_BRIDGE_METRICS_PORT: ")
    server = _NoSignalServer(
        uvicorn.Config(metrics_app(metrics), lifespan="off", access_log=False, log_config=None, ws="none")
    )
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _OneServerLifecycle) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_OneServerLifecycle())
    quiet = contextvars.copy_context()
    quiet.run(_in_metrics_server.set, True)  # the task runs in this context, the main server not
    task = asyncio.create_task(server.serve(sockets=[sock]), name="aibridge-metrics", context=quiet)
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if task.done():
        task.result()  # surfaces whatever stopped it
    log.info("metrics on http://%s:%d/metrics", display_host(config.host), config.metrics_port)
    return MetricsServer(server, task)
