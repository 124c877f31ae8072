"""``resources/updated`` for ``aibridge://inbox`` when a message arrives, on both MCP eras.

Handshake-era clients (protocol 2024-11-05 .. 2025-11-25) ``resources/subscribe`` and get the
notification on their connection's standalone channel. 2026-07-28 clients open a
``subscriptions/listen`` stream instead; the SDK's :class:`ListenHandler` serves it from a bus,
and each agent gets a bus of its own so one agent's inbox never wakes another's listener.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated

from aibridge.mcp.inbox import Inbox

__all__ = ("INBOX_URI", "Watchers")

log = logging.getLogger("aibridge.mcp")

INBOX_URI = "aibridge://inbox"


class Watchers:
    """Who wants to hear that one agent's inbox changed."""

    def __init__(self, inbox: Inbox) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus, max_subscriptions=16)
        self._sessions: dict[str, tuple[ServerSession, set[str]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        inbox.listeners.append(self._changed)

    def subscribe(self, key: str, session: ServerSession, uri: str) -> None:
        _, uris = self._sessions.setdefault(key, (session, set()))
        uris.add(uri)

    def unsubscribe(self, key: str, uri: str) -> None:
        entry = self._sessions.get(key)
        if entry is not None:
            entry[1].discard(uri)
            if not entry[1]:
                del self._sessions[key]

    def _changed(self) -> None:
        self._spawn(self.bus.publish(ResourceUpdated(uri=INBOX_URI)))
        for key, (session, uris) in list(self._sessions.items()):
            if INBOX_URI in uris:
                self._spawn(self._tell(key, session))

    async def _tell(self, key: str, session: ServerSession) -> None:
        try:
            await session.send_resource_updated(INBOX_URI)
        except Exception as exc:
            # The client went away: stop telling it (it subscribes again when it comes back).
            log.info("dropping inbox subscription %s: %s", key, exc)
            self._sessions.pop(key, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self.listen.close()
        self._sessions.clear()
