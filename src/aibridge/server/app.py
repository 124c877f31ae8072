"""The Litestar application factory: routes, WebSocket endpoint, auth, CORS and JSON errors;
and the full stack the server runs (metrics, access log, limits around that app)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, WebSocket, websocket
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.stores.base import Store as LitestarStore
from litestar.types import Middleware

from aibridge import __version__
from aibridge.errors import StoreError
from aibridge.mcp.mount import mcp_route
from aibridge.server.api import ApiError, api_routes
from aibridge.server.api_docs import COMPONENTS
from aibridge.server.config import BridgeConfig
from aibridge.server.hub import Hub
from aibridge.server.limits import ConnectionGate, rate_limit_config, rate_limit_stores
from aibridge.server.logs import AccessLogMiddleware
from aibridge.server.metrics import BridgeMetrics, MetricsMiddleware
from aibridge.server.store.base import Store
from aibridge.server.ws import FRAME_OVERHEAD, WebSocketEndpoint, bearer_token, origin_allowed, tokens_equal

__all__ = ("WS_PATHS", "create_app", "server_stack", "with_websocket_fast_path")

log = logging.getLogger("aibridge.app")

WS_PATHS = frozenset({"/ws", "/"})
ALLOWED_HEADERS = ["Origin", "X-Requested-With", "Content-Type", "Accept", "Authorization"]


def _guard(config: BridgeConfig) -> Any:
    # async on purpose: Litestar runs a sync guard in a worker thread, a thread hop per request
    # (it cost /health about a fifth of its throughput).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public") or connection.scope.get("method") == "OPTIONS":
            # A plain OPTIONS tells only which methods a path has (its Allow header): no secret.
            return
        # A browser page from an origin outside the list gets no data and changes nothing
        # (the older bridge served such requests and only left out the CORS header, B16).
        if not origin_allowed(connection.headers.get("origin"), config.cors_origins):
            raise PermissionDeniedException("origin not allowed")
        expected = config.auth_token
        if expected is None:
            return
        token = bearer_token(connection.headers.get("authorization"))
        if token is None or not tokens_equal(token, expected):
            raise NotAuthorizedException("unauthorized")

    return guard


def _error_handlers(hub: Hub) -> dict[type[Exception] | int, Any]:
    def api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
        return Response({"error": exc.message, "status": exc.status, **exc.details}, status_code=exc.status)

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        body: dict[str, Any] = {"error": exc.detail, "status": exc.status_code}
        if exc.extra:
            body["details"] = exc.extra
        if exc.status_code == 401:
            hub.record_error("auth", "unauthorized HTTP request")
        elif exc.status_code == 429:
            hub.events.error("rate_limited")  # a client's pace, not a bridge fault: not last_error
        return Response(body, status_code=exc.status_code, headers=exc.headers)

    def store_unavailable(request: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
        # Redis down or the SQLite file failing is the bridge's state, not a bug in the route:
        # one line, no traceback, and a hint to retry (the store usually comes back).
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc.detail)
        hub.record_error("storage_unavailable", f"store unavailable: {exc.detail}")
        body = {"error": f"store unavailable: {exc.detail}", "status": 503, "code": "storage_unavailable"}
        return Response(body, status_code=503, headers={"Retry-After": "1"})

    def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        hub.record_error("internal", f"internal error on {request.method} {request.url.path}")
        return Response({"error": "internal server error", "status": 500}, status_code=500)

    return {
        ApiError: api_error,
        HTTPException: http_error,
        StoreError: store_unavailable,
        Exception: internal_error,
    }


def create_app(
    config: BridgeConfig,
    store: Store,
    hub: Hub,
    *,
    port: int | None = None,
    middleware: Sequence[Middleware] = (),
    stores: Mapping[str, LitestarStore] | None = None,
) -> Litestar:
    """Build the bridge's ASGI app. ``port`` is the bound port shown by ``/health``.

    ``middleware`` (outermost first) is where metrics, access logs and rate limits plug in.
    """
    if store is not hub.store:
        raise ValueError("the hub must route through the same store the app reports on")
    endpoint = WebSocketEndpoint(config, hub)

    @websocket(sorted(WS_PATHS), opt={"public": True})
    async def agent_socket(socket: WebSocket[Any, Any, Any]) -> None:
        await endpoint(socket.scope, socket.receive, socket.send)  # type: ignore[arg-type]

    app = _Litestar(
        route_handlers=[
            *api_routes(config, hub, port if port is not None else config.port),
            agent_socket,
            mcp_route(hub),  # the MCP SDK is imported on the first /mcp request, not here
        ],
        guards=[_guard(config)],
        middleware=list(middleware),
        stores=dict(stores or {}),
        cors_config=CORSConfig(
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=ALLOWED_HEADERS,
        ),
        exception_handlers=_error_handlers(hub),
        openapi_config=OpenAPIConfig(
            title="aibridge", version=__version__, path="/schema", components=COMPONENTS
        ),
        request_max_body_size=config.max_envelope_bytes + FRAME_OVERHEAD,
        logging_config=None,
        debug=False,
    )
    app.state.ws_endpoint = endpoint
    return app


class _Litestar(Litestar):
    """Litestar without the plugins it adds whenever pydantic or attrs is installed.

    pydantic is (typer and the MCP SDK need it), but no route here takes or returns a pydantic
    or attrs model, and those plugins and what they import held 2.6 MiB of the 60 MiB idle RSS.
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        plugins.append(MsgspecDIPlugin())
        return plugins


def with_websocket_fast_path(app: Litestar) -> Any:
    """An ASGI callable that hands agent sockets straight to the WebSocket endpoint.

    Inside Litestar every frame would pass two wrappers (the socket's state checks and the
    exception middleware); in a broadcast to ten agents that is twenty extra coroutine calls
    per envelope. The endpoint catches everything itself, so nothing is lost by going around.
    """
    endpoint: WebSocketEndpoint = app.state.ws_endpoint

    async def entry(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            if scope["path"] in WS_PATHS:
                await endpoint(scope, receive, send)
            else:
                await _no_socket_here(scope, receive, send)
        elif scope["type"] != "http":
            await app(scope, receive, send)
        elif scope["method"] == "HEAD":
            # RFC 9110 §9.3.2: HEAD is GET without the body. uvicorn leaves the body out
            # itself, reading the method from its own scope, which still says HEAD.
            await _as_get(app, scope, receive, send)
        elif scope["method"] == "OPTIONS" and any(name == b"origin" for name, _ in scope["headers"]):
            await app(scope, receive, _json_preflight_refusal(send))
        else:
            await app(scope, receive, send)

    return entry


async def _no_socket_here(scope: Any, receive: Any, send: Any) -> None:
    """404 for a handshake on another path (Litestar would close it, which uvicorn answers with a
    403 that reads like an origin refusal)."""
    if (await receive())["type"] != "websocket.connect":
        return
    error = f"no WebSocket endpoint at {scope['path'][:200]}; agents connect to /ws (or /)"
    body = msgspec.json.encode({"error": error, "status": 404})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _as_get(app: Litestar, scope: Any, receive: Any, send: Any) -> None:
    inner = {**scope, "method": "GET"}

    async def send_back(message: Any) -> None:
        if message["type"] == "http.response.start" and "path_template" in inner:
            scope["path_template"] = inner["path_template"]  # for the metrics and access log
        await send(message)

    await app(inner, receive, send_back)  # type: ignore[arg-type]


def _json_preflight_refusal(send: Any) -> Any:
    """Turns Litestar's refused CORS preflight (400 ``text/plain``) into our JSON error body."""
    refused = False

    async def wrapped(message: Any) -> None:
        nonlocal refused
        if message["type"] == "http.response.start" and message["status"] == 400:
            refused = True
            return
        if refused and message["type"] == "http.response.body":
            if message.get("more_body"):
                return  # Litestar sends this short text in one message; keep only the last
            reason = bytes(message.get("body", b"")).decode("utf-8", "replace") or "Disallowed CORS request"
            body = json.dumps({"error": f"CORS preflight refused: {reason}", "status": 400}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


def server_stack(
    config: BridgeConfig, store: Store, hub: Hub, *, port: int, metrics: BridgeMetrics | None
) -> tuple[Litestar, Any]:
    """The app, and the ASGI callable uvicorn serves: the app inside metrics, access log and limits.

    Outermost first::

        metrics -> access log -> connection cap (WebSocket) -> agent-socket fast path -> Litestar:
            CORS -> exception handlers -> connection cap (HTTP) -> rate limit -> handler

    Metrics and the access log see every request, 404s, 429s and 503s included. The HTTP cap and
    the rate limit sit inside Litestar's CORS layer, so a browser can read their 503/429. Agent
    sockets take the fast path around Litestar, so the WebSocket half of the cap wraps that.
    ``app.state.rate_limit`` is the rate-limit config (``None`` when off), for pruning.
    """
    gate = ConnectionGate(config.max_connections, on_reject=functools.partial(hub.events.error, "overloaded"))
    rate_limit = rate_limit_config(config)
    middleware: list[Any] = [functools.partial(gate.middleware, scopes=frozenset({"http"}))]
    if rate_limit is not None:
        middleware.append(rate_limit.middleware)
    app = create_app(config, store, hub, port=port, middleware=middleware, stores=rate_limit_stores(config))
    app.state.rate_limit = rate_limit
    app.state.gate = gate
    asgi: Any = gate.middleware(with_websocket_fast_path(app), scopes=frozenset({"websocket"}))
    asgi = AccessLogMiddleware(asgi)
    if metrics is not None:
        asgi = MetricsMiddleware(asgi, metrics, routes=app.routes)
    return app, asgi
