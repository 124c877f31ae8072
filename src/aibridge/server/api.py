"""HTTP routes with the shapes of the older bridge (bridge.md §6) and the fixes of issue 2.

Every route but ``/health`` (and ``/``) needs ``Authorization: Bearer <token>`` when a token is
set; the guard in :mod:`aibridge.server.app` enforces it. ``/health`` is hammered by health
checks and load tests, so it serves counters kept up to date elsewhere and a timestamp cached
for the current second: no scan and no system call per request.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from aibridge import __version__
from aibridge.server.config import BridgeConfig
from aibridge.server.hub import Hub
from aibridge.server.protocol import ProtocolError, build_envelope, decode_json, now_iso
from aibridge.server.store.base import QueueFullError

__all__ = ("ApiError", "api_routes")

_JSON = "application/json"


class ApiError(Exception):
    """An HTTP error answered as ``{"error": message, "status": code, ...}``."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class _Clock:
    """``timestamp`` for ``/health``, recomputed once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def iso(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second, self._text = second, now_iso()
        return self._text


async def _json_object(request: Request[Any, Any, Any], max_depth: int) -> dict[str, Any]:
    body = await request.body()
    try:
        data = decode_json(body, max_depth) if body.strip() else None
    except ProtocolError as error:
        raise ApiError(400, f"request body {error.message}", code=error.code, **error.details) from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object of envelope fields")
    return data


def api_routes(config: BridgeConfig, hub: Hub, port: int) -> list[HTTPRouteHandler]:
    """The route handlers, bound to ``hub`` (``port`` is the port actually bound)."""
    store = hub.store
    clock = _Clock()
    encoder = msgspec.json.Encoder()

    @get("/health", opt={"public": True}, summary="Liveness and a few counters (503 while draining)")
    async def health() -> Response[bytes]:
        now = time.time()
        if hub.draining:
            return Response(b'{"status":"draining"}', status_code=503, media_type=_JSON)
        stats = store.stats()
        backplane = hub.backplane
        # Degraded, still 200: Fly keeps routing here, and reads and live delivery still work.
        healthy = stats.failure is None and (backplane is None or backplane.healthy)
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if stats.failure is None else f"unavailable: {stats.failure}",
            "timestamp": clock.iso(now),
            "uptime": int(time.monotonic() - hub.started),
            "version": __version__,
            "port": port,
            "connectedClients": len(hub.agents),
            "historySize": stats.history_size,
            "queuedMessages": stats.queued_messages,
        }
        return Response(encoder.encode(body), media_type=_JSON)

    @get("/", opt={"public": True}, summary="What this service is and where its endpoints are")
    async def index() -> dict[str, Any]:
        return {
            "service": "AI Bridge Server",
            "version": __version__,
            "status": "draining" if hub.draining else "ok",
            "websocket": {"enabled": True, "paths": ["/ws", "/"], "protocol": "aibridge/1"},
            "endpoints": ["/health", "/api/status", "/agents", "/history", "/tasks", "/send", "/broadcast"],
            "documentation": "/schema",
        }

    @get("/api/status", summary="Service status and counters")
    async def status() -> dict[str, Any]:
        stats = store.stats()
        return {
            "service": "AI Bridge Server",
            "status": "draining" if hub.draining else "healthy",
            "timestamp": now_iso(),
            "version": __version__,
            "uptime": int(time.monotonic() - hub.started),
            "performance": {
                "connectedClients": len(hub.agents),
                "messagesProcessed": hub.messages_processed,
                "messagesPerSecond": hub.messages_per_second(),
                "queuedMessages": stats.queued_messages,
                "errors": hub.errors,
                "lastError": hub.last_error,
            },
            "websocket": {"port": port, "enabled": True, "connections": len(hub.connections)},
            "http": {"port": port, "enabled": True},
            "storage": {
                "historySize": stats.history_size,
                "historyLimit": config.history_limit,
                "queues": stats.queues,
                "queuedBytes": stats.queued_bytes,
            },
            "environment": config.store,
        }

    @get("/agents", summary="Registered agents")
    async def agents() -> dict[str, Any]:
        return {"agents": [conn.describe() for conn in hub.agents.values()]}

    @get("/history", summary="Recent envelopes, oldest first")
    async def history(
        limit: int | None = None,
        agentId: str | None = None,
        taskId: str | None = None,
        intent: str | None = None,
    ) -> dict[str, Any]:
        if limit is None:
            limit = config.history_limit
        if not 1 <= limit <= config.history_limit:
            raise ApiError(400, f"limit must be between 1 and {config.history_limit}, got {limit}")
        return {"history": await store.history(limit, agent_id=agentId, task_id=taskId, intent=intent)}

    @get("/tasks", summary="Tasks seen in envelopes, first seen first")
    async def tasks() -> dict[str, Any]:
        return {"tasks": await store.tasks()}

    async def _accept(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        given = body.get("from")
        sender = given if isinstance(given, str) and given else "api"
        registered = hub.agents.get(sender)
        try:
            envelope, text = build_envelope(
                body,
                sender=sender,
                role=registered.role if registered is not None else "agent",
                max_bytes=config.max_envelope_bytes,
                trust_from=True,
            )
        except ProtocolError as error:
            hub.events.envelope("rejected")
            raise ApiError(422, error.message, code=error.code, **error.details) from None
        try:
            routed = await hub.route(envelope, text)
        except QueueFullError as error:
            hub.events.envelope("rejected")
            raise ApiError(503, error.detail) from None
        return envelope, routed

    @post("/send", status_code=202, summary="Send an envelope to one agent (delivered or queued)")
    async def send(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await _json_object(request, config.max_json_depth)
        if not body.get("to"):
            raise ApiError(400, "Recipient `to` is required")
        envelope, routed = await _accept(body)
        return {"status": routed.status, "envelope": envelope}

    @post("/broadcast", status_code=202, summary="Send an envelope to every registered agent")
    async def broadcast(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await _json_object(request, config.max_json_depth)
        if body.get("to") is not None:
            raise ApiError(400, "a broadcast has no `to`; use POST /send to address one agent")
        envelope, routed = await _accept(body)
        return {"status": routed.status, "recipients": routed.recipients, "envelope": envelope}

    return [health, index, status, agents, history, tasks, send, broadcast]
