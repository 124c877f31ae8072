"""What an MCP agent was sent and has not read yet, and the link every transport's agent offers.

The bridge keeps each envelope in the agent's queue until it is acked (the agent registers with
``ack: true``); the inbox only holds the copy the LLM has not been shown. ``take`` hands out the
oldest envelopes; the caller acks them once the tool result carrying them has left the process,
so a crash in between only redelivers (at least once, never lost).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ("AgentLink", "Inbox", "Sent")

Envelope = dict[str, Any]

MAX_UNREAD = 10_000
"""Envelopes kept unread in memory; beyond that the bridge's queue still has them (not acked)."""
RECENT_ACKS = 4096
"""Ids acked lately: a replay of one (its ack was lost with a socket) is acked again, not shown."""


class Inbox:
    """Unread envelopes in arrival order, deduplicated by id across bridge replays."""

    def __init__(self) -> None:
        self._unread: OrderedDict[str, Envelope] = OrderedDict()
        self._handed_out: set[str] = set()
        self._recent: deque[str] = deque(maxlen=RECENT_ACKS)
        self._arrived = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []
        """Called (synchronously) whenever a new envelope arrives: resource-updated notifiers."""
        self.reack: Callable[[str], None] | None = None
        """Called with the id of a replayed envelope that was already acked."""

    def __len__(self) -> int:
        return len(self._unread)

    def put(self, envelope: Envelope) -> None:
        envelope_id = str(envelope.get("id"))
        if envelope_id in self._recent:
            if self.reack is not None:
                self.reack(envelope_id)
            return
        if envelope_id in self._unread or envelope_id in self._handed_out or len(self._unread) >= MAX_UNREAD:
            return
        self._unread[envelope_id] = envelope
        self._arrived.set()
        for listener in list(self.listeners):
            listener()

    def peek(self, limit: int) -> list[Envelope]:
        return [e for _, e in zip(range(limit), self._unread.values(), strict=False)]

    async def take(self, limit: int, wait_s: float) -> list[Envelope]:
        """Up to ``limit`` oldest unread envelopes, waiting up to ``wait_s`` for a first one."""
        if not self._unread and wait_s > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait_s)
            except TimeoutError:
                return []
        taken: list[Envelope] = []
        while self._unread and len(taken) < limit:
            envelope_id, envelope = self._unread.popitem(last=False)
            self._handed_out.add(envelope_id)
            taken.append(envelope)
        if not self._unread:
            self._arrived.clear()
        return taken

    def settled(self, envelope_ids: Iterable[str]) -> None:
        """These were acked to the bridge: forget them (but recognise a replay)."""
        for envelope_id in envelope_ids:
            self._handed_out.discard(envelope_id)
            self._recent.append(envelope_id)

    def give_back(self, envelopes: Sequence[Envelope]) -> None:
        """The result carrying these never left: show them again, oldest first."""
        for envelope in reversed(envelopes):
            envelope_id = str(envelope.get("id"))
            self._handed_out.discard(envelope_id)
            self._unread[envelope_id] = envelope
            self._unread.move_to_end(envelope_id, last=False)
        if self._unread:
            self._arrived.set()


@dataclass(frozen=True, slots=True)
class Sent:
    """What the bridge answered for an envelope it accepted."""

    id: str
    status: str
    recipients: int | None = None


class AgentLink(Protocol):
    """One agent on a bridge, as the MCP tools use it (a WebSocket client, or inside the bridge).

    Every method raises an :class:`aibridge.errors.AibridgeError` whose detail an LLM can act on.
    """

    agent_id: str
    inbox: Inbox

    async def send(self, to: str | None, payload: Any, fields: dict[str, Any], require_online: bool) -> Sent:
        """Send (``to=None`` broadcasts) and return once the bridge stored it."""
        ...

    async def ack(self, envelope_ids: Sequence[str]) -> None: ...

    async def agents(self) -> list[dict[str, Any]]: ...

    async def history(
        self, limit: int, agent_id: str | None, task_id: str | None, intent: str | None
    ) -> list[Envelope]: ...

    async def tasks(self) -> list[dict[str, Any]]: ...
