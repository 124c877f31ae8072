"""HTTP routes with the shapes of the older bridge (bridge.md §6) and the fixes of issue 2.

Every route but ``/health`` (and ``/``) needs ``Authorization: Bearer <token>`` when a token is
set; the guard in :mod:`aibridge.server.app` enforces it. ``/health`` is hammered by health
checks and load tests, so it serves counters kept up to date elsewhere and the time of the answer
(its date part formatted once per second): no scan per request.
Every other route refuses a query parameter it does not take, or one given twice, with a 400
naming it (the older bridge read ``?intent[]=x`` as a filter matching nothing, B16).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.types import Guard

from aibridge import __version__
from aibridge.server.api_docs import (
    BEARER,
    HealthBody,
    HealthDraining,
    broadcast_operation,
    read_responses,
    send_operation,
    write_responses,
)
from aibridge.server.config import BridgeConfig
from aibridge.server.hub import Hub
from aibridge.server.protocol import ProtocolError, build_envelope, decode_json, now_iso
from aibridge.server.store.base import QueueFullError

__all__ = ("ApiError", "api_routes")

_JSON = "application/json"
HISTORY_FILTERS = ("limit", "agentId", "taskId", "intent")


class ApiError(Exception):
    """An HTTP error answered as ``{"error": message, "status": code, ...}``."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def query_params(*names: str) -> Guard:
    """A guard refusing (400) query parameters other than ``names``, and any given more than once."""
    allowed = frozenset(names)
    takes = ", ".join(names) if names else "no query parameters"

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        raw = connection.scope.get("query_string", b"")
        if not raw:
            return
        counts = Counter(key for key, _ in parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        path = connection.scope["path"][:200]
        unknown = [key for key in counts if key not in allowed]
        if unknown:
            shown = ", ".join(repr(key[:64]) for key in unknown[:10])
            plural = "s" if len(unknown) > 1 else ""
            message = f"unknown query parameter{plural} {shown} on {path} (it takes {takes})"
            raise ApiError(400, message, parameters=[key[:64] for key in unknown[:10]])
        repeated = [key for key, count in counts.items() if count > 1]
        if repeated:
            shown = ", ".join(f"{key!r} ({counts[key]} times)" for key in repeated)
            raise ApiError(
                400, f"query parameter given more than once on {path}: {shown}", parameters=repeated
            )

    return guard


async def _json_object(request: Request[Any, Any, Any], max_depth: int) -> dict[str, Any]:
    # A web page may POST text/plain cross-origin without a preflight; it may not send JSON so.
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != _JSON and not (media_type.startswith("application/") and media_type.endswith("+json")):
        shown = repr(media_type) if media_type else "none"
        raise ApiError(415, f"Content-Type must be application/json, got {shown}")
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
    encoder = msgspec.json.Encoder()
    # Documented only: the route checks it itself, to name the bounds in its 400.
    limit_bounds = {"minimum": 1, "maximum": config.history_limit}

    @get(
        "/health",
        opt={"public": True},
        summary="Liveness and a few counters (503 while draining)",
        responses={
            200: ResponseSpec(HealthBody, description="Serving", generate_examples=False),
            503: ResponseSpec(HealthDraining, description="Draining after SIGTERM", generate_examples=False),
        },
    )
    async def health() -> Response[bytes]:
        if hub.draining:
            return Response(b'{"status":"draining"}', status_code=503, media_type=_JSON)
        stats = store.stats()
        backplane = hub.backplane
        # Degraded, still 200: Fly keeps routing here, and reads and live delivery still work.
        healthy = stats.failure is None and (backplane is None or backplane.healthy)
        body = {
            "status": "ok" if healthy else "degraded",
            "store": "ok" if stats.failure is None else f"unavailable: {stats.failure}",
            "timestamp": now_iso(),
            "uptime": int(time.monotonic() - hub.started),
            "version": __version__,
            "port": port,
            "connectedClients": len(hub.agents),
            "historySize": stats.history_size,
            "queuedMessages": stats.queued_messages,
        }
        return Response(encoder.encode(body), media_type=_JSON)

    @get(
        "/",
        opt={"public": True},
        guards=[query_params()],
        summary="What this service is and where its endpoints are",
    )
    async def index() -> dict[str, Any]:
        return {
            "service": "AI Bridge Server",
            "version": __version__,
            "status": "draining" if hub.draining else "ok",
            "websocket": {"enabled": True, "paths": ["/ws", "/"], "protocol": "aibridge/1"},
            "endpoints": ["/health", "/api/status", "/agents", "/history", "/tasks", "/send", "/broadcast"],
            "documentation": "/schema",
        }

    @get(
        "/api/status",
        guards=[query_params()],
        summary="Service status and counters",
        security=BEARER,
        responses=read_responses(),
    )
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
                "store": "redis" if config.redis_url else config.store,
            },
            "environment": config.environment,
        }

    @get(
        "/agents",
        guards=[query_params()],
        summary="Registered agents",
        security=BEARER,
        responses=read_responses(),
    )
    async def agents() -> dict[str, Any]:
        return {"agents": [conn.describe() for conn in hub.agents.values()]}

    @get(
        "/history",
        guards=[query_params(*HISTORY_FILTERS)],
        summary="Recent envelopes, oldest first",
        security=BEARER,
        responses=read_responses(bad_query=True),
        signature_namespace={"limit_bounds": limit_bounds},
    )
    async def history(
        limit: Annotated[int | None, Parameter(schema_extra=limit_bounds)] = None,
        agentId: str | None = None,
        taskId: str | None = None,
        intent: str | None = None,
    ) -> dict[str, Any]:
        if limit is None:
            limit = config.history_limit
        if not 1 <= limit <= config.history_limit:
            raise ApiError(400, f"limit must be between 1 and {config.history_limit}, got {limit}")
        return {"history": await store.history(limit, agent_id=agentId, task_id=taskId, intent=intent)}

    @get(
        "/tasks",
        guards=[query_params()],
        summary="Tasks seen in envelopes, first seen first",
        security=BEARER,
        responses=read_responses(),
    )
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

    @post(
        "/send",
        status_code=202,
        guards=[query_params()],
        summary="Send an envelope to one agent (delivered or queued)",
        security=BEARER,
        responses=write_responses(),
        operation_class=send_operation,
    )
    async def send(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await _json_object(request, config.max_json_depth)
        if not body.get("to"):
            raise ApiError(400, "Recipient `to` is required")
        envelope, routed = await _accept(body)
        return {"status": routed.status, "envelope": envelope}

    @post(
        "/broadcast",
        status_code=202,
        guards=[query_params()],
        summary="Send an envelope to every registered agent",
        security=BEARER,
        responses=write_responses(),
        operation_class=broadcast_operation,
    )
    async def broadcast(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await _json_object(request, config.max_json_depth)
        if body.get("to") is not None:
            raise ApiError(400, "a broadcast has no `to`; use POST /send to address one agent")
        envelope, routed = await _accept(body)
        return {"status": routed.status, "recipients": routed.recipients, "envelope": envelope}

    return [health, index, status, agents, history, tasks, send, broadcast]
