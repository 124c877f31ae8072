"""``/mcp`` on the bridge: the MCP tools over Streamable HTTP, each client an agent on this hub.

The agent is named by the URL (``/mcp?agent=NAME[&role=R]``) or an ``X-Aibridge-Agent`` header,
so a client configured with one URL is one agent; a handshake-era session (``Mcp-Session-Id``)
is pinned to the agent its first request named. The SDK's session manager serves both protocol
eras; the bearer token, rate limit and connection cap are the bridge's, applied before this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from aibridge.errors import UsageError
from aibridge.mcp.inbox import AgentLink
from aibridge.mcp.local import LocalLink
from aibridge.mcp.notify import Watchers
from aibridge.mcp.tools import Ctx, build_server
from aibridge.server.asgi import Message, Receive, Scope, Send
from aibridge.server.hub import Hub
from aibridge.server.limits import client_ip
from aibridge.server.protocol import MAX_ID_CHARS

__all__ = ("McpHttp",)

log = logging.getLogger("aibridge.mcp")

HOOKS = "aibridge.after_response"
"""Scope key: callbacks to run once this HTTP request's response has been sent (or failed)."""
SESSION_HEADER = "mcp-session-id"
DRAIN_POLL_S = 0.25

Done = Callable[[bool], Awaitable[None]]


def _request(ctx: Ctx) -> Any:
    """The Starlette request the SDK attached to this MCP message (always set over HTTP)."""
    if ctx.request is None:
        raise RuntimeError("an /mcp message arrived without its HTTP request")
    return ctx.request


class _HttpBinding:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.links: dict[str, tuple[LocalLink, Watchers]] = {}
        self._sessions: dict[str, str] = {}

    async def link(self, ctx: Ctx) -> tuple[AgentLink, Watchers]:
        request = _request(ctx)
        headers = request.headers
        query = request.query_params
        agent_id = (headers.get("x-aibridge-agent") or query.get("agent") or "").strip()
        if not agent_id or len(agent_id) > MAX_ID_CHARS:
            raise UsageError(
                "this MCP client has no agent id: add ?agent=NAME to the /mcp URL "
                "(or send an X-Aibridge-Agent header)"
            )
        session = headers.get(SESSION_HEADER)
        if session is not None:
            pinned = self._sessions.setdefault(session, agent_id)
            if pinned != agent_id:
                raise UsageError(
                    f"this MCP session is agent {pinned!r}; open a new session to be {agent_id!r}"
                )
        entry = self.links.get(agent_id)
        if entry is None:
            self._prune()
            if len(self.links) >= self.hub.config.max_connections:
                raise UsageError("the bridge holds as many MCP agents as it allows; retry later")
            role = (headers.get("x-aibridge-role") or query.get("role") or "agent")[:MAX_ID_CHARS]
            peer = f"mcp:{client_ip(request.scope, self.hub.config.trust_fly_client_ip)}"
            link = LocalLink(self.hub, agent_id, role, peer)
            entry = self.links[agent_id] = (link, Watchers(link.inbox))
        await entry[0].ensure()
        return entry

    def _prune(self) -> None:
        """Forget agents the hub expired that have nothing unread (their queue stays in the store)."""
        for agent_id, (link, watchers) in list(self.links.items()):
            if not link.registered and not len(link.inbox):
                watchers.close()
                del self.links[agent_id]
        live = {s for s, a in self._sessions.items() if a in self.links}
        self._sessions = {s: self._sessions[s] for s in live}

    def connection_key(self, ctx: Ctx) -> str:
        return str(_request(ctx).headers.get(SESSION_HEADER, "stateless"))

    def after_response(self, ctx: Ctx, done: Done) -> None:
        hooks = _request(ctx).scope.get(HOOKS)
        if hooks is None:
            raise RuntimeError("an /mcp request reached the tools without the after-response hook")
        hooks.append(done)

    async def close(self) -> None:
        for link, watchers in self.links.values():
            watchers.close()
            await link.close()
        self.links.clear()


class McpHttp:
    """The ASGI app behind ``/mcp``: the SDK's session manager, run for the life of the bridge."""

    def __init__(self, hub: Hub) -> None:
        config = hub.config
        self.hub = hub
        self.binding = _HttpBinding(hub)
        self.manager = StreamableHTTPSessionManager(
            app=build_server(self.binding),
            session_idle_timeout=max(config.client_ttl_ms / 1000, 1.0),
            max_sessions=config.max_connections,
            # A payload can be as big as the bridge accepts, and JSON escaping can double it.
            max_request_body_size=2 * config.max_envelope_bytes + 64 * 1024,
        )
        self._started = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="aibridge-mcp-http")

    async def _run(self) -> None:
        try:
            async with self.manager.run():
                self._started.set()
                # Drain ends the sessions, so their open event streams do not hold the drain up.
                while not self.hub.draining:
                    await asyncio.sleep(DRAIN_POLL_S)
        finally:
            self._started.set()
            await self.binding.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._started.wait()
        if self._task.done() or self.hub.draining:
            await _unavailable(send)
            return
        hooks: list[Done] = []
        scope[HOOKS] = hooks
        finished = False

        async def watch(message: Message) -> None:
            nonlocal finished
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True

        try:
            await self.manager.handle_request(scope, receive, watch)
        finally:
            for done in hooks:
                with contextlib.suppress(Exception):
                    await done(finished)


async def _unavailable(send: Send) -> None:
    body = b'{"error":"the bridge is shutting down; reconnect in a moment","status":503}'
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
