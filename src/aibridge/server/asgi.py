"""Plain ASGI types and the one response-observing wrapper the pure-ASGI middlewares share.

The middlewares here (metrics, access log, connection cap, the metrics listener) sit outside
Litestar, so they speak raw ASGI; loose mappings keep them independent of Litestar's TypedDicts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ("ASGIApp", "Message", "Receive", "Scope", "Send", "call_observed")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def call_observed(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, done: Callable[[int, float], None]
) -> None:
    """Run ``app`` and then call ``done(status, seconds)``, even when the app raised.

    ``status`` is 500 when no response started: that is what the client is left with.
    """
    start = time.perf_counter()
    status = 500

    async def send_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_status)
    finally:
        done(status, time.perf_counter() - start)
