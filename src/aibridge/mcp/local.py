"""An agent inside the bridge, for ``/mcp``: registered on the hub like a WebSocket agent.

It is a :class:`aibridge.server.connection.Connection` whose wire is in-process (no socket), so
the hub routes to it, queues for it (it registers with ``ack: true``), lists it in ``/agents``
and expires it after ``AI_BRIDGE_CLIENT_TTL_MS`` without a call, exactly as for any agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from aibridge.errors import StoreError, UsageError
from aibridge.mcp.inbox import Envelope, Inbox, Sent
from aibridge.server.connection import Connection
from aibridge.server.hub import Hub
from aibridge.server.protocol import ProtocolError, Registration, build_envelope
from aibridge.server.store.base import QueueFullError
from aibridge.server.wire import Listener, split_text_frames

__all__ = ("LocalLink",)


class LocalLink:
    """One MCP agent identity registered on this bridge's hub."""

    def __init__(self, hub: Hub, agent_id: str, role: str, peer: str) -> None:
        self.hub = hub
        self.agent_id = agent_id
        self.role = role
        self.peer = peer
        self.inbox = Inbox()
        self.inbox.reack = lambda envelope_id: self._later(self.ack([envelope_id]))
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def registered(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def ensure(self) -> Connection:
        """The registered connection, registering (again, after an expiry or drain) when needed."""
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                conn.last_seen = time.time()
                return conn
            if self.hub.draining:
                raise StoreError("the bridge is shutting down; reconnect in a moment")
            conn = Connection(_InProcessWire(self._frames, self._closed), self.peer, authenticated=True)
            self._conn = conn
            self.hub.attach(conn)
            registration = Registration(
                client_id=self.agent_id,
                role=self.role,
                labels=["mcp"],
                tools=[],
                intents=[],
                max_concurrent_tasks=1,
                auth_token=None,
                ack=True,
                confirm=True,
            )
            await self.hub.register(conn, registration)  # replays the queue into our sink
            return conn

    def _frames(self, data: bytes) -> None:
        """What the hub writes to this agent's "socket": envelopes go to the inbox, now."""
        for payload in split_text_frames(data):
            frame = json.loads(payload)
            if frame.get("type") == "envelope":
                self.inbox.put(frame["envelope"])

    def _closed(self) -> None:
        conn = self._conn
        if conn is not None:
            self._later(self.hub.detach(conn))

    def _later(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.hub.detach(conn)

    # -- the link --------------------------------------------------------------------------------

    async def send(self, to: str | None, payload: Any, fields: dict[str, Any], require_online: bool) -> Sent:
        conn = await self.ensure()
        if to is not None and require_online and to not in self.hub.agents:
            others = ", ".join(sorted(self.hub.agents)) or "none"
            raise UsageError(
                f"no agent {to!r} is connected to the bridge (connected: {others}). Check the id with "
                f"list_agents, or pass queue_if_offline=true to keep the message until {to!r} connects."
            )
        raw = {**fields, "payload": payload, "to": to}
        try:
            envelope, text = build_envelope(
                raw, sender=self.agent_id, role=conn.role, max_bytes=self.hub.config.max_envelope_bytes
            )
        except ProtocolError as error:
            self.hub.events.envelope("rejected")
            raise UsageError(f"the bridge refused the message: {error.message}") from None
        try:
            routed = await self.hub.route(envelope, text, durable=True)
        except QueueFullError as error:
            self.hub.events.envelope("rejected")
            raise UsageError(f"the bridge refused the message: {error.detail}") from None
        return Sent(str(envelope["id"]), routed.status, routed.recipients if to is None else None)

    async def ack(self, envelope_ids: Sequence[str]) -> None:
        conn = self._conn
        if conn is not None and envelope_ids:
            await self.hub.ack(conn, envelope_ids)
        self.inbox.settled(envelope_ids)

    async def agents(self) -> list[dict[str, Any]]:
        await self.ensure()
        # describe() splices the registration metadata in as JSON text (msgspec.Raw): decode it.
        described = msgspec.json.encode([conn.describe() for conn in self.hub.agents.values()])
        agents: list[dict[str, Any]] = msgspec.json.decode(described)
        return agents

    async def history(
        self, limit: int, agent_id: str | None, task_id: str | None, intent: str | None
    ) -> list[Envelope]:
        await self.ensure()
        limit = min(limit, self.hub.config.history_limit)
        return await self.hub.store.history(limit, agent_id=agent_id, task_id=task_id, intent=intent)

    async def tasks(self) -> list[dict[str, Any]]:
        await self.ensure()
        return await self.hub.store.tasks()


class _InProcessWire:
    """A :class:`~aibridge.server.wire.Wire` with no socket: the MCP session is the reader, and
    it always takes everything at once (its inbox is the backlog)."""

    listener: Listener | None = None

    def __init__(self, frames: Callable[[bytes], None], closed: Callable[[], None]) -> None:
        self._frames, self._closed = frames, closed

    def writable_now(self) -> bool:
        return True

    def write_frames(self, data: bytes) -> bool:
        self._frames(data)
        return True

    def buffered(self) -> int:
        return 0

    def close_now(self, code: int, reason: str) -> None:
        self._closed()
