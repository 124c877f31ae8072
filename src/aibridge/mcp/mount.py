"""The ``/mcp`` route handler the bridge app mounts: loads the MCP SDK on the first request.

The SDK (pydantic, starlette, its transports) costs tens of MiB of RSS and a noticeable import
time; a bridge whose clients never use ``/mcp`` pays for neither. This module imports nothing
of it: :mod:`aibridge.mcp.http` is imported inside the first request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from litestar.handlers import asgi

if TYPE_CHECKING:
    from aibridge.mcp.http import McpHttp
    from aibridge.server.asgi import Receive, Scope, Send
    from aibridge.server.hub import Hub

__all__ = ("MCP_PATH", "mcp_route")

MCP_PATH = "/mcp"


def mcp_route(hub: Hub) -> Any:
    """A Litestar ASGI mount at ``/mcp`` (behind the app's guard, rate limit and connection cap)."""
    app: McpHttp | None = None
    lock = asyncio.Lock()

    # copy_scope=False: writing path_template into the request's own scope is what names the
    # route in the access log and the metrics (Litestar sets it for routes, not for mounts).
    @asgi(MCP_PATH, is_mount=True, copy_scope=False, summary="MCP over Streamable HTTP (?agent=NAME)")
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal app
        scope["path_template"] = MCP_PATH
        if app is None:
            async with lock:
                if app is None:
                    from aibridge.mcp.http import McpHttp

                    app = McpHttp(hub)
        await app(scope, receive, send)

    return mcp_endpoint
