"""What the SQLite store keeps in memory: queue entries, counters and the task index.

Bodies live only in the file; everything a decision needs lives here, so caps are checked,
``stats()`` answered and acks counted without a read. :meth:`Ledger.record` also decides
every row's ``seq`` and which rows a write deletes, which is what lets the group writer run
a whole batch as one ``executemany`` per statement (see ``_sqlite_writer``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from aibridge.server.config import BridgeConfig
from aibridge.server.store._rows import json_of
from aibridge.server.store._sqlite_writer import Write
from aibridge.server.store.base import Envelope, QueueFullError, StoreStats

__all__ = ("MAX_TASK_MEMBERS", "Ledger")

MAX_TASK_MEMBERS = 256
"""Most distinct intents or participants kept per task, as in the memory store."""
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("aibridge.store")

Row = tuple[Any, ...]


class _Queue:
    __slots__ = ("entries", "touched")

    def __init__(self, touched: int) -> None:
        self.entries: dict[str, tuple[int, int]] = {}  # id -> (seq, size), oldest first
        self.touched = touched


class _Task:
    __slots__ = ("encoded", "first_seq", "intents", "participants")

    def __init__(self, first_seq: int, intents: list[Any], participants: list[Any]) -> None:
        self.first_seq = first_seq
        self.intents = intents
        self.participants = participants
        self.encoded: tuple[bytes, bytes] | None = None
        """Both lists as JSON, until one changes (most envelopes of a task add nobody)."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def now_ms() -> int:
    return int(time.time() * 1000)


class Ledger:
    """The store's in-memory state; :meth:`load` rebuilds it from the file after any stop."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._queues: dict[str, _Queue] = {}
        self._tasks: dict[str, _Task] = {}  # first seen first
        self._hseq = self._qseq = self._history_size = self._messages = self._bytes = 0

    def load(self, conn: sqlite3.Connection, *, prune: bool = True) -> None:
        """Rebuild from the file; ``prune`` (at open) first trims history to AI_BRIDGE_HISTORY_LIMIT.

        A row it cannot make sense of (written by hand, damaged) is skipped with a warning: read
        routes skip such rows too, so one bad row never keeps the bridge from starting.
        """
        self._hseq = conn.execute("SELECT coalesce(max(seq), 0) FROM history").fetchone()[0]
        if prune:
            try:
                conn.execute("DELETE FROM history WHERE seq <= ?", (self._hseq - self._config.history_limit,))
            except sqlite3.OperationalError as exc:  # a full disk must not keep the bridge from starting
                log.warning("cannot trim history at start (%s); the next write trims it", exc)
        # Beyond the limit only when trimming failed; the next committed write prunes down to it.
        count = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        self._history_size = min(count, self._config.history_limit)
        self._qseq = conn.execute("SELECT coalesce(max(seq), 0) FROM queue").fetchone()[0]
        for seq, recipient, entry_id, size, at in conn.execute(
            "SELECT seq, recipient, id, size, at FROM queue ORDER BY seq"
        ):
            if not (isinstance(recipient, str) and isinstance(entry_id, str) and isinstance(size, int)):
                log.warning("skipping unreadable queue row %s", seq)
                continue
            at = at if isinstance(at, int) else now_ms()
            q = self._queues.get(recipient) or self._queues.setdefault(recipient, _Queue(at))
            q.entries[entry_id] = (seq, size)
            q.touched = at
            self._messages += 1
            self._bytes += size
        for task_id, first_seq, last_seq, intents, participants in conn.execute(
            "SELECT task_id, first_seq, last_seq, intents, participants FROM tasks ORDER BY first_seq"
        ):
            where = f"task row {task_id!r}"[:300]
            members = (json_of(intents, where), json_of(participants, where))
            if not isinstance(task_id, str) or not all(isinstance(m, list) for m in members):
                log.warning("skipping unreadable task row %r", task_id)
                continue
            self._tasks[task_id] = _Task(first_seq, members[0], members[1])
            if isinstance(last_seq, int):
                self._hseq = max(self._hseq, last_seq)

    def stats(self) -> StoreStats:
        return StoreStats(self._history_size, len(self._queues), self._messages, self._bytes)

    def record(
        self, envelope: Envelope, size: int, queue_for: Sequence[str], body: str | bytes, ticket: int
    ) -> tuple[Write, int]:
        """Count ``envelope`` in: its rows as write ``ticket``, and how many queue entries it pushed out.

        ``QueueFullError`` (before any change) if a queue limit refuses it.
        """
        config = self._config
        recipients = list(dict.fromkeys(queue_for)) if len(queue_for) > 1 else queue_for
        if recipients:
            queues = self._queues
            new_queues = 0
            for recipient in recipients:
                if recipient not in queues:
                    new_queues += 1
            if new_queues and len(queues) + new_queues > config.max_queues:
                raise QueueFullError(f"too many offline queues (AI_BRIDGE_MAX_QUEUES={config.max_queues})")
            if self._bytes + size * len(recipients) > config.max_queued_bytes:
                raise QueueFullError(
                    f"offline queues are full (AI_BRIDGE_MAX_QUEUED_BYTES={config.max_queued_bytes})"
                )
        self._hseq += 1
        seq = self._hseq
        get = envelope.get
        history = (
            seq,
            _text(get("from")),
            _text(get("to")),
            _text(get("taskId")),
            _text(get("intent")),
            body,
        )
        rows: list[Row] = []
        deletes: list[tuple[int]] = []
        dropped = self._enqueue(rows, deletes, recipients, str(get("id")), size, body) if recipients else 0
        task_id = get("taskId")
        task_row = task_delete = None
        if task_id and isinstance(task_id, str):
            task_row, task_delete = self._index_task(task_id, seq, envelope, body)
        if self._history_size < config.history_limit:
            self._history_size += 1
        prune_below = max(0, seq - config.history_limit + 1)
        return Write(ticket, history, rows, deletes, task_row, task_delete, prune_below), dropped

    def _enqueue(
        self,
        rows: list[Row],
        deletes: list[tuple[int]],
        recipients: Sequence[str],
        entry_id: str,
        size: int,
        body: str | bytes,
    ) -> int:
        now = now_ms()
        dropped = 0
        for recipient in recipients:
            q = self._queues.get(recipient)
            if q is None:
                q = self._queues[recipient] = _Queue(now)
            q.touched = now
            old = q.entries.pop(entry_id, None)
            if old is None and len(q.entries) >= self._config.max_queue:
                old = q.entries.pop(next(iter(q.entries)))
                dropped += 1
            if old is not None:  # the oldest entry, or this id queued before: one entry per id
                deletes.append((old[0],))
                self._messages -= 1
                self._bytes -= old[1]
            self._qseq += 1
            q.entries[entry_id] = (self._qseq, size)
            rows.append((self._qseq, recipient, entry_id, size, now, body))
            self._messages += 1
            self._bytes += size
        return dropped

    def _index_task(
        self, task_id: str, seq: int, envelope: Envelope, body: str | bytes
    ) -> tuple[Row, tuple[str, int] | None]:
        evicted = None
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = _Task(seq, [], [])
            if len(self._tasks) > self._config.history_limit:
                # Like the memory store: beyond history_limit tasks, the first seen goes.
                old_id = next(iter(self._tasks))
                evicted = (old_id, self._tasks.pop(old_id).first_seq)
        intent = envelope.get("intent")
        if intent not in task.intents and len(task.intents) < MAX_TASK_MEMBERS:
            task.intents.append(intent)
            task.encoded = None
        for who in (envelope.get("from"), envelope.get("to")):
            if who is not None and who not in task.participants and len(task.participants) < MAX_TASK_MEMBERS:
                task.participants.append(who)
                task.encoded = None
        if task.encoded is None:
            task.encoded = (_encode(task.intents), _encode(task.participants))
        intents, participants = task.encoded
        timestamp = _text(envelope.get("timestamp"))
        return (task_id, task.first_seq, seq, intents, participants, timestamp, body), evicted

    def live(self, recipient: str) -> set[int]:
        """The ``seq`` of every entry queued for ``recipient``; a returning recipient's queue is not idle."""
        q = self._queues.get(recipient)
        if q is None:
            return set()
        q.touched = now_ms()
        return {seq for seq, _ in q.entries.values()}

    def remove(self, recipient: str, envelope_ids: Sequence[str]) -> list[tuple[int]]:
        """Take these entries out of ``recipient``'s queue; the ``seq`` of the rows to delete."""
        q = self._queues.get(recipient)
        if q is None:
            return []
        deletes = []
        for entry_id in envelope_ids:
            entry = q.entries.pop(entry_id, None)
            if entry is not None:
                deletes.append((entry[0],))
                self._messages -= 1
                self._bytes -= entry[1]
        if not q.entries:
            del self._queues[recipient]
        elif deletes:
            q.touched = now_ms()
        return deletes

    def expire(self, idle_ms: int, keep: Sequence[str]) -> tuple[int, list[tuple[int]]]:
        """Drop queues untouched for ``idle_ms`` not in ``keep``: how many, and the rows to delete."""
        cutoff = now_ms() - idle_ms
        kept = set(keep)
        idle = [r for r, q in self._queues.items() if q.touched <= cutoff and r not in kept]
        deletes = []
        for recipient in idle:
            for seq, size in self._queues.pop(recipient).entries.values():
                deletes.append((seq,))
                self._messages -= 1
                self._bytes -= size
        return len(idle), deletes
