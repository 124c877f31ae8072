"""``aibridge mcp``: the MCP server over stdio for one agent (Claude Desktop, Claude Code, Cursor…).

``read_messages`` acks what it returned once the response has been handed to the stdout writer:
the write stream is wrapped, and the ack waits for the JSON-RPC response carrying those
messages to pass through it. A crash before that redelivers them on the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from aibridge.mcp.inbox import AgentLink
from aibridge.mcp.notify import Watchers
from aibridge.mcp.remote import RemoteLink
from aibridge.mcp.tools import Ctx, build_server

__all__ = ("serve_stdio",)

log = logging.getLogger("aibridge.mcp")

Done = Callable[[bool], Awaitable[None]]


class _AckAfterWrite:
    """The server's write stream, running a request's callbacks once its response went out."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.pending: dict[types.RequestId, list[Done]] = {}

    async def send(self, item: SessionMessage, /) -> None:
        message = item.message
        waiting = None
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id is not None:
            waiting = self.pending.pop(message.id, None)
        try:
            await self._inner.send(item)
        except BaseException:
            for done in waiting or ():
                await done(False)
            raise
        for done in waiting or ():
            await done(isinstance(message, types.JSONRPCResponse))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result


class _StdioBinding:
    def __init__(self, link: RemoteLink, writer: _AckAfterWrite) -> None:
        self._link = link
        self._watchers = Watchers(link.inbox)
        self._writer = writer

    async def link(self, ctx: Ctx) -> tuple[AgentLink, Watchers]:
        return self._link, self._watchers

    def connection_key(self, ctx: Ctx) -> str:
        return "stdio"

    def after_response(self, ctx: Ctx, done: Done) -> None:
        if ctx.request_id is None:
            return
        self._writer.pending.setdefault(ctx.request_id, []).append(done)


async def serve_stdio(url: str, agent_id: str, *, token: str | None, role: str) -> None:
    """Serve MCP on stdin/stdout as agent ``agent_id`` of the bridge at ``url`` until stdin closes."""
    link = RemoteLink(url, agent_id, token=token, role=role)
    await link.start()
    try:
        async with stdio_server() as (read_stream, write_stream):
            writer = _AckAfterWrite(write_stream)
            server = build_server(_StdioBinding(link, writer))
            await server.run(read_stream, writer, server.create_initialization_options())
    finally:
        await link.close()
