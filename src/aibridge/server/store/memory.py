"""The in-memory store: fast, bounded, and gone when the process ends.

History is a ring (``collections.deque``), each recipient's queue an insertion-ordered dict
keyed by envelope id (so an ack is O(1)), the task index is kept up to date on every accept
(``/tasks`` never scans history), and the counters behind :meth:`MemoryStore.stats` move with
every write.

Envelopes are kept as their encoded JSON (``bytes``, one object shared by history and every
queue), decoded only when read: as Python objects a JSON byte of small keys costs many bytes
of memory (30 envelopes of 246 KB took 125 MB, issue 11), so AI_BRIDGE_MAX_QUEUED_BYTES would
bound nothing. Now the bytes it counts are, give or take a few dozen per entry, the memory held.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, NamedTuple

import msgspec

from aibridge.server.config import BridgeConfig
from aibridge.server.store._rows import envelope_of
from aibridge.server.store.base import AcceptResult, Envelope, QueueFullError, StoreStats

__all__ = ("MemoryStore",)

MAX_TASK_MEMBERS = 256
"""Most distinct intents or participants remembered per task (a task summary stays small)."""


_NOTHING_DROPPED = AcceptResult()
_encode = msgspec.json.Encoder().encode


class _Kept(NamedTuple):
    """One envelope in history: its JSON, and the fields the history filters look at."""

    body: bytes
    sender: Any
    to: Any
    task_id: Any
    intent: Any


class _Queue:
    __slots__ = ("entries", "touched")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.touched = time.monotonic()


class _Task:
    __slots__ = ("intents", "last", "last_update", "participants", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.intents: dict[Any, None] = {}
        self.participants: dict[Any, None] = {}
        self.last = b"{}"
        self.last_update: Any = None

    def add(self, envelope: Envelope, body: bytes) -> None:
        if len(self.intents) < MAX_TASK_MEMBERS:
            self.intents[envelope.get("intent")] = None
        for who in (envelope.get("from"), envelope.get("to")):
            if who is not None and len(self.participants) < MAX_TASK_MEMBERS:
                self.participants[who] = None
        self.last = body
        self.last_update = envelope.get("timestamp")

    def summary(self) -> dict[str, Any] | None:
        last = envelope_of(self.last, f"task {self.task_id!r}"[:300])
        if last is None:
            return None
        return {
            "taskId": self.task_id,
            "intents": list(self.intents),
            "participants": list(self.participants),
            "lastUpdate": self.last_update,
            "lastEnvelope": last,
        }


class MemoryStore:
    """:class:`~aibridge.server.store.base.Store` held in this process's memory."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._history: deque[_Kept] = deque(maxlen=config.history_limit)
        self._queues: dict[str, _Queue] = {}
        # Tasks outlive the history ring (the older bridge lost them when it rolled over,
        # fault B16) but are bounded too: beyond history_limit the first-seen task goes.
        self._tasks: dict[str, _Task] = {}
        self._queued_messages = 0
        self._queued_bytes = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def accept(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        return self.accept_nowait(envelope, size, queue_for, text=text)

    def accept_nowait(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        """:meth:`accept` without a coroutine (the hub calls this one): nothing here waits."""
        config = self._config
        if queue_for:
            new_queues = 0
            for recipient in queue_for:
                if recipient not in self._queues:
                    new_queues += 1
            if new_queues and len(self._queues) + new_queues > config.max_queues:
                raise QueueFullError(f"too many offline queues (AI_BRIDGE_MAX_QUEUES={config.max_queues})")
            if self._queued_bytes + size * len(queue_for) > config.max_queued_bytes:
                raise QueueFullError(
                    f"offline queues are full (AI_BRIDGE_MAX_QUEUED_BYTES={config.max_queued_bytes})"
                )
        body = _encode(envelope) if text is None else text.encode()
        get = envelope.get
        self._history.append(_Kept(body, get("from"), get("to"), get("taskId"), get("intent")))
        task_id = envelope.get("taskId")
        if task_id:
            self._index_task(task_id, envelope, body)
        dropped = 0
        now = time.monotonic()
        envelope_id = envelope["id"]
        for recipient in queue_for:
            queue = self._queues.get(recipient)
            if queue is None:
                queue = self._queues[recipient] = _Queue()
            entries = queue.entries
            old = entries.pop(envelope_id, None)
            if old is not None:  # the same id queued twice: keep one copy, the newest
                self._forget(old[1])
            elif len(entries) >= config.max_queue:
                self._forget(entries.pop(next(iter(entries)))[1])
                dropped += 1
            entries[envelope_id] = (body, size)
            queue.touched = now
            self._queued_messages += 1
            self._queued_bytes += size
        return AcceptResult(dropped=dropped) if dropped else _NOTHING_DROPPED

    def _forget(self, size: int) -> None:
        self._queued_messages -= 1
        self._queued_bytes -= size

    def _index_task(self, task_id: str, envelope: Envelope, body: bytes) -> None:
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = _Task(task_id)
            if len(self._tasks) > self._config.history_limit:
                del self._tasks[next(iter(self._tasks))]
        task.add(envelope, body)

    async def pending(self, recipient: str) -> list[Envelope]:
        queue = self._queues.get(recipient)
        if queue is None:
            return []
        queue.touched = time.monotonic()
        found = (envelope_of(body, f"queued envelope {i!r}") for i, (body, _) in queue.entries.items())
        return [e for e in found if e is not None]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        return self.ack_nowait(recipient, envelope_ids)

    def ack_nowait(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        """:meth:`ack` without a coroutine (the hub calls this one)."""
        queue = self._queues.get(recipient)
        if queue is None:
            return 0
        removed = 0
        for envelope_id in envelope_ids:
            entry = queue.entries.pop(envelope_id, None)
            if entry is not None:
                self._forget(entry[1])
                removed += 1
        if not queue.entries:
            del self._queues[recipient]
        return removed

    async def history(
        self,
        limit: int,
        agent_id: str | None = None,
        task_id: str | None = None,
        intent: str | None = None,
    ) -> list[Envelope]:
        if limit <= 0:
            return []
        if agent_id is None and task_id is None and intent is None:
            kept = list(islice(self._history, max(0, len(self._history) - limit), None))
        else:
            kept = []
            for entry in reversed(self._history):
                if agent_id is not None and entry.sender != agent_id and entry.to != agent_id:
                    continue
                if task_id is not None and entry.task_id != task_id:
                    continue
                if intent is not None and entry.intent != intent:
                    continue
                kept.append(entry)
                if len(kept) >= limit:
                    break
            kept.reverse()
        found = (envelope_of(entry.body, "history entry") for entry in kept)
        return [e for e in found if e is not None]

    async def tasks(self) -> list[dict[str, Any]]:
        found = (task.summary() for task in self._tasks.values())
        return [t for t in found if t is not None]

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        cutoff = time.monotonic() - idle_ms / 1000
        kept = set(keep)
        stale = [r for r, q in self._queues.items() if q.touched < cutoff and r not in kept]
        for recipient in stale:
            for _, size in self._queues.pop(recipient).entries.values():
                self._forget(size)
        return len(stale)

    def stats(self) -> StoreStats:
        return StoreStats(
            history_size=len(self._history),
            queues=len(self._queues),
            queued_messages=self._queued_messages,
            queued_bytes=self._queued_bytes,
        )
