"""The contract every message store keeps (memory, SQLite, Redis).

A store holds four things: the bounded **history** of accepted envelopes, a **task index**
derived from it, and per-recipient **queues** of envelopes not yet handed over for good.
A queue entry leaves its queue only through :meth:`Store.ack`: for agents that acknowledge
(``"ack": true``) when they ack it, for fire-and-forget agents right after it was written
to their socket. So "unacknowledged deliveries go back to the queue" needs no extra step:
they never left it, and :meth:`Store.pending` replays them on the next registration.

Every ``accept`` is durable when it returns (for stores that persist): the HTTP 202 and
the WebSocket ``accepted`` frame are sent only after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aibridge.errors import AibridgeError

__all__ = ("AcceptResult", "Envelope", "QueueFullError", "Store", "StoreStats")

Envelope = dict[str, Any]
"""An enriched envelope: the fields of bridge.md §2 plus any extra fields the sender gave."""


class QueueFullError(AibridgeError):
    """A queue limit (number of queues or total queued bytes) refuses this envelope.

    Raised *before* anything is written: the envelope is neither in history nor queued.
    """


class AcceptResult(NamedTuple):
    """What an accept did (a tuple: one is made per envelope, and a frozen dataclass costs twice as much)."""

    dropped: int = 0
    """Oldest entries dropped from recipients' queues to respect ``max_queue``."""
    ticket: int = 0
    """For stores that commit later (SQLite): the write's number, for ``durable(ticket)``."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    history_size: int
    queues: int
    queued_messages: int
    queued_bytes: int
    failure: str | None = None
    """Why writes fail right now (``/health`` says ``degraded``); ``None`` while they succeed."""


class Store(Protocol):
    async def open(self) -> None:
        """Create or load the store; raise ``StoreError`` if it cannot be opened or reached."""

    async def close(self) -> None:
        """Flush anything not yet durable and release resources."""

    async def accept(self, envelope: Envelope, size: int, queue_for: Sequence[str] = ()) -> AcceptResult:
        """Append ``envelope`` (``size`` JSON bytes) to history and to each recipient's queue."""

    async def pending(self, recipient: str) -> list[Envelope]:
        """Everything queued for ``recipient`` and not acked, oldest first."""

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        """Remove these entries from ``recipient``'s queue; return how many were there."""

    async def history(
        self,
        limit: int,
        agent_id: str | None = None,
        task_id: str | None = None,
        intent: str | None = None,
    ) -> list[Envelope]:
        """The last ``limit`` matching envelopes, oldest first (``agent_id`` matches from or to)."""

    async def tasks(self) -> list[dict[str, Any]]:
        """Task summaries ``{taskId, intents, participants, lastUpdate, lastEnvelope}``, first seen first."""

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        """Drop queues untouched for ``idle_ms`` whose recipient is not in ``keep``; return how many."""

    def stats(self) -> StoreStats:
        """Counters kept up to date on every write, so ``/health`` and metrics never scan."""
