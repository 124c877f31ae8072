"""The WebSocket endpoint (``/ws`` and ``/``): handshake checks, then one reading loop per socket.

Handshake: refused with a JSON HTTP response while draining (503), for an Origin outside
AI_BRIDGE_CORS_ORIGINS (403, a missing Origin is allowed), or for a wrong token given in
``Authorization: Bearer`` / ``?token=`` (401), for a client over AI_BRIDGE_HANDSHAKE_RATE_MAX
handshakes in the window (429), and without a token while a tenth of AI_BRIDGE_MAX_CONNECTIONS
is already held by unauthenticated sockets (503). A socket without a handshake token must send
the right ``register.authToken`` before anything else is accepted, within
AI_BRIDGE_AUTH_TIMEOUT_MS, else it is closed with 1008; its heartbeats do not keep it alive.

The loop turns every bad frame into an ``error`` frame naming the problem and carries on: no
client input ends the loop except a frame over the size limit, which uvicorn closes with 1009.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.hub import CLOSE_UNAUTHORIZED, Connection, Hub
from aibridge.server.limits import HandshakeLimiter, TokenBucket, client_ip
from aibridge.server.logs import log_ws_connected, log_ws_disconnected
from aibridge.server.protocol import (
    ProtocolError,
    build_envelope,
    decode_frame,
    encode,
    parse_registration,
)
from aibridge.server.store.base import QueueFullError
from aibridge.server.wire import WIRE

__all__ = ("FRAME_OVERHEAD", "WebSocketEndpoint", "bearer_token", "origin_allowed", "tokens_equal")

log = logging.getLogger("aibridge.ws")

MAX_UNCONFIRMED = 4096
"""Envelopes of one confirming agent that may await their commit before its frames wait too."""

FRAME_OVERHEAD = 1024
"""Bytes allowed around an envelope in its frame; bigger frames are closed with 1009."""
UNAUTHENTICATED_SHARE = 0.1
"""Part of AI_BRIDGE_MAX_CONNECTIONS that sockets still without a token may hold at once."""

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Coroutine[Any, Any, None]]


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time token comparison (the older bridge used ``===``, fault B13)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """A missing Origin (non-browser clients) is allowed; ``*`` allows every origin.

    Matched exactly, as the CORS layer matches it: a browser never sends a path (not even
    ``/``) in Origin, and a guard looser than the CORS layer would serve requests whose
    answers get no ``Access-Control-Allow-Origin``.
    """
    return origin is None or "*" in allowed or origin in allowed


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class WebSocketEndpoint:
    """Serves agent sockets for one hub."""

    def __init__(self, config: BridgeConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.events = hub.events
        self.handshakes = HandshakeLimiter(config.handshake_rate_max, config.rate_window_ms)
        self.unauthenticated: set[Connection] = set()
        self.max_unauthenticated = max(1, int(config.max_connections * UNAUTHENTICATED_SHARE))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        refusal = self._check_handshake(scope)
        if isinstance(refusal, tuple):
            status, error, headers = refusal
            await _refuse(send, status, error, headers)
            return
        wire = scope.get("extensions", {}).get(WIRE)
        if wire is None:  # served by another WebSocket protocol than `aibridge serve` sets up
            log.error("agent socket refused: the server does not provide %r (run `aibridge serve`)", WIRE)
            await _refuse(send, 500, "server misconfigured", [])
            return
        await send({"type": "websocket.accept"})
        client = scope.get("client")
        conn = Connection(wire, f"{client[0]}:{client[1]}" if client else "?", authenticated=refusal)
        self.hub.attach(conn)
        self.events.ws_connected()
        opened = time.monotonic()
        log_ws_connected(scope)
        # Each socket has its own envelope budget (AI_BRIDGE_WS_RATE_MAX per second, 0 = off).
        rate = self.config.ws_rate_max
        bucket = TokenBucket(rate) if rate > 0 else None
        code: int | None = None
        try:
            if not conn.authenticated:
                self.unauthenticated.add(conn)
                code = await self._authenticate(conn, receive, bucket)
                self.unauthenticated.discard(conn)
            if conn.authenticated and not conn.closed:
                code = await self._read_loop(conn, receive, bucket)
        finally:
            self.unauthenticated.discard(conn)
            await self.hub.detach(conn)
            self.events.ws_disconnected()
            log_ws_disconnected(scope, conn.agent_id, code, time.monotonic() - opened)

    def _check_handshake(self, scope: dict[str, Any]) -> tuple[int, str, list[tuple[bytes, bytes]]] | bool:
        """``(status, error, headers)`` to refuse the handshake, else whether it carried a valid token."""
        if self.hub.draining:
            return 503, "draining: reconnect to another instance", []
        if not origin_allowed(_header(scope, b"origin"), self.config.cors_origins):
            self.events.error("origin")
            return 403, "origin not allowed", []
        retry = self.handshakes.retry_after(client_ip(scope, self.config.trust_fly_client_ip))
        if retry is not None:
            self.events.error("rate_limited")
            limit = self.config.handshake_rate_max
            return 429, f"over {limit} WebSocket handshakes per window; retry later", _retry_after(retry)
        expected = self.config.auth_token
        if expected is None:
            return True
        token = bearer_token(_header(scope, b"authorization"))
        if token is None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            token = query.get("token") or None
        if token is None:
            # May still authenticate with register.authToken; until then it holds a slot.
            if len(self.unauthenticated) >= self.max_unauthenticated:
                self.events.error("overloaded")
                error = (
                    f"{self.max_unauthenticated} sockets are already waiting to authenticate; send a token"
                )
                return 503, error, _retry_after(1)
            return False
        if not tokens_equal(token, expected):
            self.events.error("auth")
            return 401, "unauthorized", []
        return True

    async def _authenticate(
        self, conn: Connection, receive: Receive, bucket: TokenBucket | None
    ) -> int | None:
        """Frames of a socket not yet authenticated, until it is (then ``None``) or it ends.

        Nothing but a register frame with the token helps: heartbeats do not refresh
        ``lastSeen``, and the deadline counts from the handshake.
        """
        deadline = asyncio.get_running_loop().time() + self.config.auth_timeout_ms / 1000
        while not conn.authenticated:
            try:
                # Only the wait is timed: a frame being handled (a register) is never cut short.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                self.hub.record_error("auth", "no token within AI_BRIDGE_AUTH_TIMEOUT_MS")
                refusal = {"type": "error", "error": "unauthorized", "message": "authentication timeout"}
                await conn.write(encode(refusal))
                await conn.close(CLOSE_UNAUTHORIZED, "authentication timeout")
                return CLOSE_UNAUTHORIZED
            if message["type"] != "websocket.receive":
                code: int | None = message.get("code")
                return code
            await self._frame(conn, message, bucket)
            if conn.closed:
                return None
        return None

    async def _frame(self, conn: Connection, message: dict[str, Any], bucket: TokenBucket | None) -> None:
        """One frame, with the error handling of both read loops (before and after authentication)."""
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            await self._handle(conn, data, bucket)
        except ProtocolError as error:
            self.hub.record_error(error.code, error.message)
            await conn.write(encode(error.frame()))
        except Exception:
            log.exception("internal error while handling a frame from %s", conn.peer)
            self.hub.record_error("internal", "internal error while handling a frame")
            await conn.write(encode({"type": "error", "error": "internal", "message": "internal error"}))

    async def _read_loop(self, conn: Connection, receive: Receive, bucket: TokenBucket | None) -> int | None:
        """Handle frames until the socket ends; the close code, when known."""
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                code: int | None = message.get("code")
                if code == 1009:
                    self.hub.record_error("oversize", "frame over the size limit")
                return code
            conn.last_seen = time.time()
            await self._frame(conn, message, bucket)
            if conn.closed:
                return None

    async def _handle(self, conn: Connection, data: str | bytes, bucket: TokenBucket | None) -> None:
        frame = decode_frame(data, self.config.max_json_depth)
        kind = frame["type"]
        if kind == "envelope":
            await self._envelope(conn, frame, bucket)
        elif kind == "heartbeat":
            return  # receiving it refreshed lastSeen; no reply, like the older bridge
        elif kind == "ack":
            await self.hub.ack(conn, _ack_ids(frame))
        elif kind == "register":
            registration = parse_registration(frame, self.config.max_list_items, self.config.max_meta_bytes)
            expected = self.config.auth_token
            if expected is not None and not conn.authenticated:
                given = registration.auth_token
                if given is None or not tokens_equal(given, expected):
                    self.hub.record_error("auth", "unauthorized register")
                    refusal = {"type": "error", "error": "unauthorized", "message": "bad token"}
                    await conn.write(encode(refusal))
                    await conn.close(CLOSE_UNAUTHORIZED, "Unauthorized")
                    return
                conn.authenticated = True
            await self.hub.register(conn, registration)
        else:
            raise ProtocolError(
                "unknown_type", f"unknown frame type {kind!r}; expected register, heartbeat, envelope or ack"
            )

    async def _envelope(self, conn: Connection, frame: dict[str, Any], bucket: TokenBucket | None) -> None:
        if conn.agent_id is None:
            self.events.envelope("rejected")
            raise ProtocolError("not_registered", "send a register frame before envelopes")
        if bucket is not None and not bucket.take():
            # An error frame, not a disconnect: the agent slows down and keeps its socket.
            self.events.envelope("rejected")
            raise ProtocolError(
                "rate_limited",
                f"over {self.config.ws_rate_max} envelopes/s on this connection; envelope not accepted",
                **_envelope_id(frame),
            )
        try:
            envelope, text = build_envelope(
                frame.get("envelope"),
                sender=conn.agent_id,
                role=conn.role,
                max_bytes=self.config.max_envelope_bytes,
            )
        except ProtocolError:
            self.events.envelope("rejected")
            raise
        committed: asyncio.Future[None] | None = None
        try:
            if conn.confirm:
                routed, committed = await self.hub.route_uncommitted(envelope, text)
            else:
                routed = await self.hub.route(envelope, text, durable=False)
        except QueueFullError as error:
            self.events.envelope("rejected")
            raise ProtocolError("queue_full", error.detail, id=envelope["id"]) from None
        except StoreError as error:
            # The store's state, not this frame's fault: the agent may resend the same id later.
            self.events.envelope("rejected")
            raise ProtocolError("storage_unavailable", error.detail, id=envelope["id"]) from None
        if conn.confirm:
            accepted = encode({"type": "accepted", "id": envelope["id"], "status": routed.status})
            if committed is None:
                conn.send_text(accepted)
            else:
                await self._confirm_on_commit(conn, committed, envelope["id"], accepted)

    async def _confirm_on_commit(
        self, conn: Connection, committed: asyncio.Future[None], envelope_id: str, accepted: str
    ) -> None:
        """Send ``accepted`` once the commit lands, or the error if it fails; read on meanwhile."""

        def settled(future: asyncio.Future[None]) -> None:
            conn.unconfirmed -= 1
            error = None if future.cancelled() else future.exception()
            if error is None:
                conn.send_text(accepted)
                return
            if isinstance(error, StoreError):
                # The store's state (issue 11.1): this envelope's batch failed; the agent may resend it.
                self.events.envelope("rejected")
                self.hub.record_error("storage_unavailable", f"commit failed: {error.detail}")
                frame = {
                    "type": "error",
                    "error": "storage_unavailable",
                    "message": error.detail,
                    "id": envelope_id,
                }
            else:
                log.error("envelope %s from %s not stored: %r", envelope_id, conn.agent_id, error)
                self.hub.record_error("internal", f"commit failed: {error!r}")
                frame = {"type": "error", "error": "internal", "message": "internal error", "id": envelope_id}
            conn.send_text(encode(frame))

        conn.unconfirmed += 1
        committed.add_done_callback(settled)
        if conn.unconfirmed >= MAX_UNCONFIRMED:  # flow control: wait for the store to catch up
            await asyncio.wait([committed])


def _envelope_id(frame: dict[str, Any]) -> dict[str, str]:
    """``{"id": …}`` when the refused envelope carried a string id, so the agent can resend it."""
    envelope = frame.get("envelope")
    given = envelope.get("id") if isinstance(envelope, dict) else None
    return {"id": given} if isinstance(given, str) else {}


def _ack_ids(frame: dict[str, Any]) -> list[str]:
    ids = frame.get("ids")
    if ids is None:
        ids = [frame.get("id")]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ProtocolError("invalid_field", "ack needs `id` (a string) or `ids` (an array of strings)")
    return ids


def _retry_after(seconds: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(max(1, math.ceil(seconds))).encode())]


async def _refuse(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = encode({"error": error, "status": status}).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
