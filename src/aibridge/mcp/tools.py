"""The MCP server both transports share: tools, resources and subscriptions on the SDK's
low-level :class:`mcp.server.lowlevel.Server`.

The low-level server (not ``MCPServer``) because the bridge embeds it: ``MCPServer`` configures
process-wide logging on construction, and one agent per session needs per-connection
subscriptions it does not expose. A :class:`Binding` says which agent a request speaks for and
when its response has left the process (that is when ``read_messages`` acks).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from aibridge import __version__
from aibridge.errors import AibridgeError
from aibridge.mcp.inbox import AgentLink
from aibridge.mcp.models import (
    AgentInfo,
    AgentsResult,
    BroadcastInput,
    BroadcastResult,
    HistoryInput,
    MessagesResult,
    NoInput,
    ReadInput,
    SendInput,
    SendResult,
    TasksResult,
    message_of,
)
from aibridge.mcp.notify import INBOX_URI, Watchers

__all__ = ("AGENTS_URI", "Binding", "build_server")

AGENTS_URI = "aibridge://agents"
Ctx = ServerRequestContext[Any, Any]

INSTRUCTIONS = (
    "You are an agent on an aibridge: other agents (LLM sessions, programs) send you messages and "
    "you send them yours. list_agents shows who is connected; send_message writes to one agent, "
    "broadcast to all; read_messages takes your unread messages (use wait_seconds to wait for a "
    "reply). Messages are kept for you while you are not reading, so nothing is lost."
)


class Binding(Protocol):
    """What a transport tells the tools about the request in hand."""

    async def link(self, ctx: Ctx) -> tuple[AgentLink, Watchers]:
        """The agent this request speaks for (raises AibridgeError when it cannot say)."""
        ...

    def connection_key(self, ctx: Ctx) -> str:
        """A stable key for the client connection (for resource subscriptions)."""
        ...

    def after_response(self, ctx: Ctx, done: Callable[[bool], Awaitable[None]]) -> None:
        """Call ``done(True)`` once this request's response left the process, ``done(False)`` if not."""
        ...


_Tool = tuple[type[BaseModel], type[BaseModel], str, bool]

TOOLS: dict[str, _Tool] = {
    "send_message": (
        SendInput,
        SendResult,
        "Send a message to one agent by id and wait until the bridge has stored it. Returns the message "
        "id and `delivered` (the agent has it now) or `queued` (kept until it connects, only with "
        "queue_if_offline). Fails if that agent is not connected, unless queue_if_offline is true.",
        False,
    ),
    "broadcast": (
        BroadcastInput,
        BroadcastResult,
        "Send a message to every other agent on the bridge and wait until it is stored.",
        False,
    ),
    "read_messages": (
        ReadInput,
        MessagesResult,
        "Take your unread messages, oldest first (each is returned once). With wait_seconds > 0 it "
        "waits for the first message to arrive, and returns as soon as one does. Reply to a "
        "message with send_message(to=<its sender>).",
        False,
    ),
    "list_agents": (
        NoInput,
        AgentsResult,
        "List the agents connected to the bridge now, and your own id.",
        True,
    ),
    "get_history": (
        HistoryInput,
        MessagesResult,
        "Recent messages on the bridge (oldest first), optionally only those of one agent, task or intent. "
        "Does not mark anything as read.",
        True,
    ),
    "list_tasks": (NoInput, TasksResult, "List the tasks seen in messages (by task_id).", True),
}


def _tool_list() -> list[types.Tool]:
    return [
        types.Tool(
            name=name,
            description=description,
            input_schema=inputs.model_json_schema(),
            output_schema=outputs.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=read_only, open_world_hint=True),
        )
        for name, (inputs, outputs, description, read_only) in TOOLS.items()
    ]


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _invalid(name: str, error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()
    )
    return f"invalid arguments for {name}: {problems}"


async def _run(name: str, args: Any, link: AgentLink, binding: Binding, ctx: Ctx) -> BaseModel:
    if isinstance(args, SendInput):
        sent = await link.send(args.to, args.body(), args.fields(), require_online=not args.queue_if_offline)
        return SendResult(
            id=sent.id, status="delivered" if sent.status == "delivered" else "queued", to=args.to
        )
    if isinstance(args, BroadcastInput):
        sent = await link.send(None, args.body(), args.fields(), require_online=False)
        return BroadcastResult(id=sent.id, status=sent.status, recipients=sent.recipients)
    if isinstance(args, ReadInput):
        taken = await link.inbox.take(args.max, args.wait_seconds)
        if taken:
            ids = [str(e["id"]) for e in taken]

            async def done(sent: bool) -> None:
                if sent:
                    await link.ack(ids)
                else:
                    link.inbox.give_back(taken)

            binding.after_response(ctx, done)
        return MessagesResult(messages=[message_of(e) for e in taken], remaining=len(link.inbox))
    if isinstance(args, HistoryInput):
        found = await link.history(args.limit, args.agent_id, args.task_id, args.intent)
        return MessagesResult(messages=[message_of(e) for e in found], remaining=None)
    if name == "list_agents":
        agents = [
            AgentInfo(
                id=str(a.get("id")),
                role=a.get("role"),
                connected_at=a.get("connectedAt"),
                last_seen=a.get("lastSeen"),
                labels=list(a.get("labels") or []),
            )
            for a in await link.agents()
        ]
        return AgentsResult(you=link.agent_id, agents=agents)
    return TasksResult(tasks=await link.tasks())


def build_server(binding: Binding) -> Server[Any]:
    """The MCP server whose requests ``binding`` maps to agents."""

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        # Clients list tools when they connect: be an agent from then on, so others can write to
        # it before its LLM made a call. Failing that is a tool error later, not a listing error.
        with contextlib.suppress(AibridgeError):
            await binding.link(ctx)
        return types.ListToolsResult(tools=_tool_list())

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = TOOLS.get(params.name)
        if spec is None:
            return _error(f"unknown tool {params.name!r}; the tools are {', '.join(TOOLS)}")
        try:
            args = spec[0].model_validate(params.arguments or {})
        except ValidationError as error:
            return _error(_invalid(params.name, error))
        try:
            link, _ = await binding.link(ctx)
            result = await _run(params.name, args, link, binding, ctx)
        except AibridgeError as error:
            return _error(f"{params.name} failed: {error.detail}")
        data = result.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(data))], structured_content=data
        )

    async def list_resources(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    name="agents",
                    uri=AGENTS_URI,
                    mime_type="application/json",
                    description="The agents connected to the bridge now.",
                ),
                types.Resource(
                    name="inbox",
                    uri=INBOX_URI,
                    mime_type="application/json",
                    description="Your unread messages (reading this does not mark them read; "
                    "read_messages does). Subscribe to hear when one arrives.",
                ),
            ]
        )

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            link, _ = await binding.link(ctx)
            if uri == AGENTS_URI:
                body: Any = {"you": link.agent_id, "agents": await link.agents()}
            elif uri == INBOX_URI:
                unread = [message_of(e).model_dump(mode="json") for e in link.inbox.peek(100)]
                body = {"unread": len(link.inbox), "messages": unread}
            else:
                raise _resource_missing(uri)
        except AibridgeError as error:
            raise _mcp_error(types.INTERNAL_ERROR, error.detail) from None
        text = json.dumps(body)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        _, watchers = await _watchers(ctx, str(params.uri))
        watchers.subscribe(binding.connection_key(ctx), ctx.session, str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        _, watchers = await _watchers(ctx, str(params.uri))
        watchers.unsubscribe(binding.connection_key(ctx), str(params.uri))
        return types.EmptyResult()

    async def listen(
        ctx: Ctx, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        _, watchers = await _watchers(ctx, None)
        return await watchers.listen(ctx, params)

    async def _watchers(ctx: Ctx, uri: str | None) -> tuple[AgentLink, Watchers]:
        if uri is not None and uri not in (AGENTS_URI, INBOX_URI):
            raise _resource_missing(uri)
        try:
            return await binding.link(ctx)
        except AibridgeError as error:
            raise _mcp_error(types.INTERNAL_ERROR, error.detail) from None

    return Server(
        "aibridge",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_subscriptions_listen=listen,
    )


def _mcp_error(code: int, message: str) -> Exception:
    return MCPError(code, message)


def _resource_missing(uri: str) -> Exception:
    return _mcp_error(types.INVALID_PARAMS, f"no resource {uri!r}; there are {AGENTS_URI} and {INBOX_URI}")
