"""uvicorn's httptools protocol with what the bridge needs at the connection level.

uvicorn bounds the idle time between keep-alive requests but not the time a client takes to
send a request's headers, and a connection reaches the ASGI app (and so
:class:`~aibridge.server.limits.ConnectionGate`) only once its headers are complete: 50
slowloris connections at 1 byte/s were held for a minute without being counted. Here:

- a request's headers must arrive within ``AI_BRIDGE_HEADER_TIMEOUT_MS``, else 408 and close;
- a connection sending headers counts in the gate's ``pending`` (toward
  ``AI_BRIDGE_MAX_CONNECTIONS``: requests beyond get 503, ``/health`` still answers); once
  twice the cap are pending, further connections get 503 before anything is read (so memory
  stays bounded, while up to a cap's worth of slow clients cannot also take ``/health``);
- at shutdown, an idle keep-alive connection is not closed at once: a request may already be
  on its way (closing then resets it, seen as "connection reset" under ``hey -c 20``), so it
  lingers briefly and such a request is served, with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aibridge.server.limits import ConnectionGate

__all__ = ("IDLE_LINGER_S", "bridge_http_protocol")

IDLE_LINGER_S = 0.5
"""How long an idle keep-alive connection stays open at shutdown for a request already sent."""


def _raw_response(status: str, error: str, code: int) -> bytes:
    body = json.dumps({"error": error, "status": code}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def bridge_http_protocol(
    gate: ConnectionGate, header_timeout_s: float, on_event: Callable[[str], None] | None = None
) -> type[HttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=…)``, counting into ``gate``.

    ``on_event`` is told ``"header_timeout"`` or ``"overloaded"`` (for the error counters).
    """
    timed_out = _raw_response(
        "408 Request Timeout", f"request headers not received within {header_timeout_s:g}s", 408
    )
    refused = _raw_response(
        "503 Service Unavailable", f"server at its limit of {gate.limit} connections; retry shortly", 503
    )

    class BridgeHttpProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _pending = False
        _draining = False
        _linger: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if gate.pending >= 2 * gate.limit:
                gate.rejected += 1
                if on_event is not None:
                    on_event("overloaded")
                transport.write(refused)
                transport.close()
                return
            self._begin_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_headers()
            if self._linger is not None:
                self._linger.cancel()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._pending:  # the next request on a keep-alive connection
                self._begin_headers()

        def on_headers_complete(self) -> None:
            self._end_headers()
            super().on_headers_complete()
            if self._draining and self.cycle is not None:
                self.cycle.keep_alive = False  # answered with Connection: close, then closed

        def shutdown(self) -> None:
            self._draining = True
            if self.cycle is None or self.cycle.response_complete:
                if self._linger is None:
                    self._linger = self.loop.call_later(IDLE_LINGER_S, self._close_if_idle)
            else:
                self.cycle.keep_alive = False

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers a request it cannot parse in text/plain; ours are all JSON.
            self._end_headers()
            self.transport.write(_raw_response("400 Bad Request", msg, 400))
            self.transport.close()

        def _close_if_idle(self) -> None:
            self._linger = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def _begin_headers(self) -> None:
            self._pending = True
            gate.pending += 1
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _end_headers(self) -> None:
            if self._pending:
                self._pending = False
                gate.pending -= 1
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            self._end_headers()
            if on_event is not None:
                on_event("header_timeout")
            if not self.transport.is_closing():
                self.transport.write(timed_out)
                self.transport.close()

    return BridgeHttpProtocol
