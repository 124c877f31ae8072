"""``serve(config)``: open the store, bind the port, run uvicorn, and drain gracefully on a signal.

Drain (issue 3): the first SIGTERM/SIGINT turns ``/health`` to 503 ``draining`` and refuses new
agents, closes every agent socket with 1012 (service restart) so it reconnects elsewhere,
keeps serving HTTP until the WebSocket connections are gone, then lets uvicorn finish the
in-flight requests, closes the store (flushing what it holds) and returns: exit 0 within
AI_BRIDGE_SHUTDOWN_TIMEOUT_S. A second signal exits at once with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Generator
from typing import TYPE_CHECKING

import uvicorn
import uvloop
from litestar import Litestar
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from aibridge import __version__
from aibridge.server.app import server_stack
from aibridge.server.config import BridgeConfig
from aibridge.server.events import NullEvents
from aibridge.server.http_protocol import bridge_http_protocol
from aibridge.server.hub import Hub
from aibridge.server.limits import prune_rate_limits
from aibridge.server.listen import bind_listener, display_host
from aibridge.server.logs import configure_logging, log_startup
from aibridge.server.metrics import BridgeMetrics, MetricsServer, PrometheusEvents, serve_metrics
from aibridge.server.store.base import Store
from aibridge.server.wire import BridgeWebSocketProtocol
from aibridge.server.ws import FRAME_OVERHEAD

if TYPE_CHECKING:
    from aibridge.server.backplane import RedisBackplane

__all__ = ("FORCED_EXIT", "build_store", "serve")

log = logging.getLogger("aibridge")

FORCED_EXIT = 1
"""Exit status when a second signal cuts the drain short."""
DRAIN_RESERVE_S = 0.5
"""Part of the shutdown budget kept for stopping uvicorn and closing the store."""
GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two young-generation collections (Python's default is 700)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals are ours (see _Drain): uvicorn would re-raise them after shutting down,
        # turning a clean drain into a death by SIGTERM.
        yield


def build_store(config: BridgeConfig) -> Store:
    """The store ``config`` asks for: Redis when a URL is set, else the durable SQLite store or memory."""
    if config.redis_url:
        from aibridge.server.store.redis import RedisStore

        shared: Store = RedisStore(config)
        return shared
    if config.store == "sqlite":
        from aibridge.server.store.sqlite import SqliteStore

        store: Store = SqliteStore(config)
        return store
    from aibridge.server.store.memory import MemoryStore

    return MemoryStore(config)


def _metrics(config: BridgeConfig, store: Store) -> BridgeMetrics | None:
    """The bridge's metrics, or ``None`` when AI_BRIDGE_METRICS_PORT is 0 (nothing counted)."""
    if config.metrics_port == 0:
        return None
    return BridgeMetrics(version=__version__, cgroup_dir=config.cgroup_dir, stats=store.stats)


async def _observe(
    config: BridgeConfig, app: Litestar, server: uvicorn.Server, metrics: BridgeMetrics | None
) -> None:
    """Record the start-up duration once serving, then prune the rate limiter now and then.

    Litestar's in-memory rate-limit store forgets a client only when that client comes back,
    so without pruning every one-off client would stay for the life of the process.
    """
    while not server.started:
        await asyncio.sleep(0.005)
    if metrics is not None:
        metrics.mark_ready()
    rate_limit = app.state.rate_limit
    while rate_limit is not None:
        await asyncio.sleep(config.cleanup_interval_ms / 1000)
        try:
            await prune_rate_limits(app, rate_limit)
        except Exception:
            log.exception("pruning the rate limiter failed")


def _tune_gc() -> None:
    """Keep what start-up built out of every collection, and collect the young generation less often.

    The hot path's objects are freed by reference counting as soon as an envelope is through;
    the collector only looks for cycles. At the default threshold it ran every few envelopes
    and took about a tenth of the server's CPU per delivered envelope (bench/bridge.py).
    """
    gc.collect()
    gc.freeze()  # the app, the routes and every imported module: never garbage
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class _Drain:
    """Turns signals into the two-phase drain; a second signal exits at once."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()

    def on_signal(self, signum: int) -> None:
        if self.requested.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(FORCED_EXIT)
        log.info("%s received: draining", signal.Signals(signum).name)
        self.requested.set()


async def _serve(config: BridgeConfig) -> None:
    store = build_store(config)
    await store.open()
    metrics_server: MetricsServer | None = None
    try:
        sock = bind_listener(config.host, config.port, suffix="; pick another --port/PORT")
        port = int(sock.getsockname()[1])
        backplane: RedisBackplane | None = None
        if config.redis_url:
            from aibridge.server.backplane import RedisBackplane

            backplane = RedisBackplane(config)
        metrics = _metrics(config, store)
        hub = Hub(config, store, PrometheusEvents(metrics) if metrics else NullEvents(), backplane)
        app, asgi = server_stack(config, store, hub, port=port, metrics=metrics)
        ping = config.ping_interval_ms / 1000 or None
        server = _Server(
            uvicorn.Config(
                asgi,
                loop="none",
                # httptools, plus a header-read timeout, slowloris counted toward the connection
                # cap and a drain that does not reset requests already on their way.
                http=bridge_http_protocol(
                    app.state.gate, config.header_timeout_ms / 1000, on_event=hub.events.error
                ),
                ws=BridgeWebSocketProtocol,  # uvicorn's websockets-sansio plus the hub's frame writer
                ws_per_message_deflate=False,
                ws_max_size=config.max_envelope_bytes + FRAME_OVERHEAD,
                ws_ping_interval=ping,
                ws_ping_timeout=ping,
                lifespan="off",
                access_log=False,
                proxy_headers=False,
                server_header=False,
                log_config=None,
                backlog=2048,
            )
        )
        drain = _Drain()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, drain.on_signal, signum)
        hub.start()
        if backplane is not None:
            await backplane.start(hub.on_remote)  # StoreError naming the URL if Redis is gone
        if metrics is not None:
            metrics_server = await serve_metrics(config, metrics)  # a busy port is a ConfigError
        log.info(
            "aibridge %s serving on %s:%d (store %s)",
            __version__,
            display_host(config.host),
            port,
            "redis" if config.redis_url else config.store,
        )
        _tune_gc()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        observing = asyncio.create_task(_observe(config, app, server, metrics))
        waiting = asyncio.create_task(drain.requested.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            await _drain(config, hub, server, serving)
        waiting.cancel()
        observing.cancel()
        await hub.stop()
        if backplane is not None:
            await backplane.stop()  # withdraws this machine's presence records
        serving.result()
    finally:
        if metrics_server is not None:
            await metrics_server.stop()  # after the drain, so a last scrape still sees it
        await store.close()


async def _drain(config: BridgeConfig, hub: Hub, server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + max(0.0, config.shutdown_timeout_s - DRAIN_RESERVE_S)
    await hub.drain()
    # Phase 1: keep answering HTTP (/health says 503) until every WebSocket is really closed,
    # for at most half the budget: a peer that never answers our close frame must not eat
    # the time in-flight HTTP requests need in phase 2.
    phase_one_end = start + (deadline - start) / 2
    while loop.time() < phase_one_end and any(
        isinstance(c, WebSocketsSansIOProtocol) for c in server.server_state.connections
    ):
        await asyncio.sleep(0.05)
    # Phase 2: uvicorn stops listening, closes idle keep-alive connections, finishes the rest.
    server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(serving), max(0.1, deadline - loop.time()))
    except TimeoutError:
        log.warning("drain deadline reached: closing the remaining connections")
        server.force_exit = True
        for task in server.server_state.tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, DRAIN_RESERVE_S / 2)
    log.info("drained")


def serve(config: BridgeConfig) -> None:
    """Run the bridge until a signal drains it; raise ``ConfigError``/``StoreError`` on startup problems."""
    writer = configure_logging(config)
    log_startup(config, __version__)
    for notice in config.notices:  # deprecated settings: said once, then served as asked
        log.warning("%s", notice)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(config))
    finally:
        writer.stop()  # writes the lines still queued
