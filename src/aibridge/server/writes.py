"""``StoreWrites``: how the hub writes to its store — at once, deferred, or until durable.

Stores differ in what they can promise without waiting:

* memory (``accept_nowait``/``ack_nowait``): every call is done when it returns, and the
  store keeps the JSON text it is given (issue 11, item 5);
* SQLite (``accept_nowait``/``ack_nowait``/``durable``): a write is recorded at once (order,
  caps and counts decided synchronously) and committed with the next group; ``durable()``
  waits for that commit;
* Redis (``accept_later``/``ack_later``): a write is queued, in order, for the next
  pipeline; its result arrives later through a callback.

The hub waits only where it promised something (HTTP 202, the ``accepted`` frame) or where a
deferred write could be overtaken (see ``Hub._direct``).

``durable()`` waits for the caller's own last accept, not for everyone's: when a commit fails
(issue 11) only the senders of that batch hear it. The ticket travels in a context variable,
which is per task (one HTTP request, one socket's reading loop), so the hub passes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from aibridge.errors import StoreError
from aibridge.server.protocol import Envelope
from aibridge.server.store.base import AcceptResult, QueueFullError, Store

__all__ = ("Outcome", "StoreWrites")

Outcome = AcceptResult | QueueFullError | StoreError
"""What a deferred accept turned out to be."""

_NOTHING_DROPPED = AcceptResult()
_last_ticket: contextvars.ContextVar[int | None] = contextvars.ContextVar("aibridge_ticket", default=None)

log = logging.getLogger("aibridge.hub")
_acks: set[asyncio.Future[int]] = set()


@runtime_checkable
class _GroupCommits(Protocol):
    before_commit: Callable[[], None] | None


class StoreWrites:
    """The hub's writes to ``store``; ``settled`` hears how each deferred accept ended.

    ``before_commit``: for stores that commit in groups (SQLite), called right before each
    commit (the hub writes its sockets' pending frames, see ``Outboxes``).
    """

    def __init__(
        self,
        store: Store,
        settled: Callable[[Outcome], None],
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        if isinstance(store, _GroupCommits):
            store.before_commit = before_commit
        self._settled = settled
        self._accept_nowait: Callable[..., AcceptResult] | None = getattr(store, "accept_nowait", None)
        self._accept_later: Callable[..., None] | None = getattr(store, "accept_later", None)
        self._ack_later: Callable[[str, Sequence[str]], object] | None = getattr(
            store, "ack_nowait", getattr(store, "ack_later", None)
        )
        self._durable: Callable[[int | None], Awaitable[None]] | None = getattr(store, "durable", None)

    @property
    def defers_accepts(self) -> bool:
        """Whether ``later`` accepts skip a round trip (Redis): worth routing around."""
        return self._accept_later is not None

    async def accept(
        self, envelope: Envelope, text: str, queue_for: Sequence[str], later: bool
    ) -> AcceptResult:
        """Record ``envelope``; with ``later`` (a sender promised nothing) without awaiting Redis.

        ``QueueFullError`` refuses it when the store decides at once (memory, SQLite, awaited Redis).
        """
        if self._accept_nowait is not None:
            result = self._accept_nowait(envelope, len(text), queue_for, text=text)
            _last_ticket.set(result.ticket)
            return result
        if later and self._accept_later is not None:
            self._accept_later(envelope, len(text), queue_for, self._settled)
            return _NOTHING_DROPPED  # the real count arrives through ``settled``
        return await self.store.accept(envelope, len(text), queue_for)

    def accept_later(self, envelope: Envelope, text: str, queue_for: Sequence[str]) -> None:
        """Queue the accept (only when :attr:`defers_accepts`); ``settled`` hears the result."""
        assert self._accept_later is not None
        self._accept_later(envelope, len(text), queue_for, self._settled)

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> None:
        """Take these entries out of ``recipient``'s queue, without waiting where the store allows.

        A lost ack only redelivers (at least once), so nothing waits for its commit.
        """
        if self._ack_later is not None:
            self._ack_later(recipient, envelope_ids)
        else:
            await self.store.ack(recipient, envelope_ids)

    def ack_soon(self, recipient: str, envelope_ids: Sequence[str]) -> None:
        """:meth:`ack` without awaiting: recorded now where the store allows, else in a task."""
        if self._ack_later is not None:
            self._ack_later(recipient, envelope_ids)
            return
        task = asyncio.ensure_future(self.store.ack(recipient, envelope_ids))
        _acks.add(task)
        task.add_done_callback(self._ack_done)

    def _ack_done(self, task: asyncio.Future[int]) -> None:
        _acks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # A lost ack only redelivers (at least once), but it is never lost silently.
            log.warning("acking delivered envelopes failed: %r", error)
            self._settled(error if isinstance(error, StoreError) else StoreError(repr(error)))

    def commit_pending(self) -> asyncio.Future[None] | None:
        """A future done once everything recorded so far is committed; None when it already is."""
        if self._durable is None:
            return None
        waiting = self._durable(_last_ticket.get())  # this task's own last accept
        if isinstance(waiting, asyncio.Future):
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                return None
            return waiting
        return asyncio.ensure_future(waiting)

    async def durable(self) -> None:
        """Return once this task's last accept is committed (at once for other stores).

        ``StoreError`` if its commit failed (the sender answers 503 / ``storage_unavailable``).
        """
        if self._durable is not None:
            await self._durable(_last_ticket.get())
