"""Who is connected: agent registration, the duplicate-id policy and queue replay.

Duplicate ``clientId``: the newest registration wins; the older socket is closed with
:data:`CLOSE_REPLACED`, and only the socket an entry points to can remove it (fault B8).
That holds across machines too: a ``claimed`` id from the backplane closes our holder.

Replay after ``registered`` drains the agent's queue in order. While it runs the connection
is ``replaying``: the router queues new envelopes for it instead of writing them, so they
arrive behind the replayed ones and order holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from aibridge.errors import StoreError
from aibridge.server.connection import CLOSE_REPLACED, CLOSE_STORE_DOWN, Connection
from aibridge.server.protocol import PROTOCOL, Registration, delivery_frame, encode, new_id
from aibridge.server.store.base import Store
from aibridge.server.wire import text_frame

__all__ = ("SNAPSHOT_SIZE", "Presence", "Registry")

log = logging.getLogger("aibridge.hub")  # the hub's logger still: log filters name it

SNAPSHOT_SIZE = 10
"""Envelopes of history sent with ``registered``."""


class Presence(Protocol):
    """The part of a backplane that tells other processes which agents this one holds."""

    async def announce(self, agent_id: str) -> None: ...
    async def withdraw(self, agent_id: str) -> None: ...


class Registry:
    """The open sockets, and the agent id each registered one answers to.

    ``on_store_error(kind, message)`` hears a registration the store could not serve.
    """

    def __init__(
        self,
        store: Store,
        presence: Presence | None,
        on_store_error: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.presence = presence
        self.connections: set[Connection] = set()
        self.agents: dict[str, Connection] = {}
        self.registrations = 0
        self._on_store_error = on_store_error

    def attach(self, conn: Connection) -> None:
        self.connections.add(conn)

    async def detach(self, conn: Connection) -> None:
        self.connections.discard(conn)
        conn.on_lost()  # what it never took stays queued
        await self.unregister(conn)

    async def unregister(self, conn: Connection) -> None:
        agent_id = conn.agent_id
        if agent_id is not None and self.agents.get(agent_id) is conn:
            del self.agents[agent_id]
            if self.presence is not None:
                await self.presence.withdraw(agent_id)

    async def release_claimed(self, agent_id: str | None) -> None:
        """Another process registered ``agent_id``: newest registration wins across machines too."""
        conn = self.agents.pop(agent_id or "", None)
        if conn is not None:
            await conn.close(CLOSE_REPLACED, "clientId registered by a newer connection")

    async def register(self, conn: Connection, reg: Registration) -> None:
        """Bind ``conn`` to an agent id, answer ``registered``, then replay its queue in order."""
        agent_id = reg.client_id or new_id()
        if conn.agent_id is not None and conn.agent_id != agent_id:
            await self.unregister(conn)  # re-registering under a new name leaves no stale entry
        conn.agent_id = agent_id
        conn.role = reg.role
        conn.ack = reg.ack
        conn.confirm = reg.confirm
        conn.replaying = True
        # Kept as JSON text, spliced into /agents and `registered` as is: decoded, small keys
        # cost Python objects many times their JSON size (issue 11, item 5).
        conn.meta = {
            "id": agent_id,
            "role": reg.role,
            "labels": msgspec.Raw(encode(reg.labels).encode()),
            "tools": msgspec.Raw(encode(reg.tools).encode()),
            "intents": msgspec.Raw(encode(reg.intents).encode()),
            "maxConcurrentTasks": reg.max_concurrent_tasks,
            "ack": reg.ack,
            "connectedAt": conn.connected_at,
        }
        previous = self.agents.get(agent_id)
        self.agents[agent_id] = conn
        self.registrations += 1
        if previous is not None and previous is not conn:
            await previous.close(CLOSE_REPLACED, "clientId registered by a newer connection")
        if self.presence is not None:
            await self.presence.announce(agent_id)
        try:
            await self._welcome(conn, agent_id)
        except StoreError as exc:
            # Left half-registered the agent would stay "replaying" and miss every live envelope;
            # closed, it reconnects and replays its whole queue (at least once).
            log.warning("registering %s: %s; closing so it reconnects", agent_id, exc)
            self._on_store_error("internal", str(exc))
            await conn.close(CLOSE_STORE_DOWN, "store unavailable, reconnect")

    async def _welcome(self, conn: Connection, agent_id: str) -> None:
        """Send ``registered`` with a history snapshot, then replay the agent's queue."""
        # Only what this agent could have received: broadcasts and its own direct messages
        # (the older bridge showed everyone's direct messages to every newcomer, B16).
        recent = await self.store.history(SNAPSHOT_SIZE * 5)
        visible = [e for e in recent if e.get("to") in (None, agent_id) or e.get("from") == agent_id]
        registered = {
            "type": "registered",
            "protocol": PROTOCOL,
            "client": conn.describe(),
            "history": visible[-SNAPSHOT_SIZE:],
        }
        if await conn.write(encode(registered)):
            await self._replay(conn, agent_id)

    async def _replay(self, conn: Connection, agent_id: str) -> None:
        sent: set[str] = set()
        while self.agents.get(agent_id) is conn:
            fresh = [e for e in await self.store.pending(agent_id) if e["id"] not in sent]
            if not fresh:
                conn.replaying = False  # no await since pending(): nothing can slip in between
                return
            for envelope in fresh:
                # A fire-and-forget agent's entry leaves its queue once its transport has the frame.
                ack_id = None if conn.ack else envelope["id"]
                if not conn.send_frame(text_frame(delivery_frame(encode(envelope)).encode()), ack_id):
                    return
                sent.add(envelope["id"])
                if conn.crowded:
                    await conn.wait_for_room()
        conn.replaying = False
