"""The durable embedded store: SQLite in WAL mode under ``AI_BRIDGE_DATA_DIR``.

The event loop keeps the bookkeeping in memory (queue entries as ``id -> (seq, size)``,
counters, the task index), so caps are decided, ``stats()`` answered and ``ack`` counted
without reading the file; bodies live only on disk. Writes go through one
:class:`~._sqlite_writer.GroupWriter` (group commit); reads use a second connection on its
own thread, which sees every write whose caller has returned (WAL snapshot after COMMIT).

Besides the :class:`~aibridge.server.store.base.Store` methods, :meth:`SqliteStore.accept_nowait`
and :meth:`SqliteStore.ack_nowait` record a write at once and return before it is durable,
and :meth:`SqliteStore.durable` waits for everything recorded so far: a sender that asked
for no confirm is routed without waiting for the disk.

Durability: ``synchronous=NORMAL`` in WAL mode. A COMMIT has reached the OS when ``accept``
returns, so it survives ``kill -9`` of the server; a power loss or kernel crash may lose the
transactions since the last checkpoint (the database itself stays consistent).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store._sqlite_files import DB_NAME, open_files
from aibridge.server.store._sqlite_writer import GroupWriter, Write
from aibridge.server.store.base import AcceptResult, Envelope, QueueFullError, StoreStats

__all__ = ("DB_NAME", "SqliteStore")

WAL_RESET_BYTES = 8 * 1024 * 1024
MAX_TASK_MEMBERS = 256
"""Most distinct intents or participants kept per task, as in the memory store."""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Queue:
    __slots__ = ("entries", "touched")

    def __init__(self, touched: int) -> None:
        self.entries: dict[str, tuple[int, int]] = {}  # id -> (seq, size), oldest first
        self.touched = touched


class _Task:
    __slots__ = ("first_seq", "intents", "participants")

    def __init__(self, first_seq: int, intents: list[Any], participants: list[Any]) -> None:
        self.first_seq = first_seq
        self.intents = intents
        self.participants = participants


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[object], None], arg: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, arg)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteStore:
    """History, offline queues and tasks in ``<data_dir>/aibridge.db``; see the module docstring."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._path = Path(config.data_dir) / DB_NAME
        self._lock: IO[str] | None = None
        self._writer: GroupWriter | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="aibridge-sqlite-reader")
        self._queues: dict[str, _Queue] = {}
        self._tasks: dict[str, _Task] = {}  # first seen first
        self._hseq = self._qseq = self._history_size = self._messages = self._bytes = 0
        self._ticket = self._committed = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._checkpointing: concurrent.futures.Future[None] | None = None

    async def open(self) -> None:
        files = await asyncio.to_thread(open_files, self._path.parent)
        try:
            await asyncio.to_thread(self._load, files.writer)
        except sqlite3.Error as exc:
            files.writer.close()
            files.reader.close()
            files.lock.close()
            raise StoreError(f"{self._path}: cannot load the SQLite store: {exc}") from None
        self._reader, self._lock = files.reader, files.lock
        window = self._config.commit_window_ms / 1000
        self._writer = GroupWriter(files.writer, window, str(self._path), self._start_checkpoint)
        self._writer.start(asyncio.get_running_loop(), self._on_commit)

    async def close(self) -> None:
        if self._checkpointing is not None:
            await asyncio.wrap_future(self._checkpointing)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._read_pool, self._reader.close)
            self._reader = None
        self._read_pool.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _load(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory bookkeeping from the file (also after a crash)."""
        self._hseq = conn.execute("SELECT coalesce(max(seq), 0) FROM history").fetchone()[0]
        conn.execute("DELETE FROM history WHERE seq <= ?", (self._hseq - self._config.history_limit,))
        self._history_size = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        self._qseq = conn.execute("SELECT coalesce(max(seq), 0) FROM queue").fetchone()[0]
        for seq, recipient, entry_id, size, at in conn.execute(
            "SELECT seq, recipient, id, size, at FROM queue ORDER BY seq"
        ):
            q = self._queues.get(recipient) or self._queues.setdefault(recipient, _Queue(at))
            q.entries[entry_id] = (seq, size)
            q.touched = at
            self._messages += 1
            self._bytes += size
        for task_id, first_seq, last_seq, intents, participants in conn.execute(
            "SELECT task_id, first_seq, last_seq, intents, participants FROM tasks ORDER BY first_seq"
        ):
            self._tasks[task_id] = _Task(first_seq, _decode(intents), _decode(participants))
            self._hseq = max(self._hseq, last_seq)

    def _submit(self, write: Write) -> None:
        if self._writer is None:
            raise StoreError(f"{self._path}: the store is not open")
        if self._writer.failure is not None:
            raise self._writer.failure
        self._writer.submit(write)

    def durable(self) -> asyncio.Future[None]:
        """Done once every write recorded so far is committed (raises ``StoreError`` if it failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._committed >= self._ticket:
            future.set_result(None)
        else:
            self._waiters.append((self._ticket, future))
        return future

    def _on_commit(self, ticket: int, error: StoreError | None) -> None:
        self._committed = ticket
        waiters = self._waiters
        while waiters and (error is not None or waiters[0][0] <= ticket):
            _, future = waiters.popleft()
            if not future.done():  # a cancelled waiter; the write committed anyway
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def accept(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        result = self.accept_nowait(envelope, size, queue_for, text=text)
        await self.durable()
        return result

    def accept_nowait(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        """:meth:`accept`, returning once recorded and counted, before the commit.

        ``text``: the envelope's JSON when the caller has it already (saves encoding it again).
        """
        config = self._config
        recipients = list(dict.fromkeys(queue_for)) if len(queue_for) > 1 else queue_for
        if recipients:
            new_queues = sum(1 for r in recipients if r not in self._queues)
            if new_queues and len(self._queues) + new_queues > config.max_queues:
                raise QueueFullError(f"too many offline queues (AI_BRIDGE_MAX_QUEUES={config.max_queues})")
            if self._bytes + size * len(recipients) > config.max_queued_bytes:
                raise QueueFullError(
                    f"offline queues are full (AI_BRIDGE_MAX_QUEUED_BYTES={config.max_queued_bytes})"
                )
        body: str | bytes = _encode(envelope) if text is None else text
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
        rows: list[tuple[Any, ...]] = []
        deletes: list[tuple[int]] = []
        dropped = self._enqueue(rows, deletes, recipients, str(get("id")), size, body) if recipients else 0
        task_id = get("taskId")
        task_row = task_delete = None
        if task_id and isinstance(task_id, str):
            task_row, task_delete = self._index_task(task_id, seq, envelope, body)
        if self._history_size < config.history_limit:
            self._history_size += 1
        self._ticket += 1
        self._submit(
            Write(
                self._ticket,
                history,
                rows,
                deletes,
                task_row,
                task_delete,
                max(0, seq - config.history_limit + 1),
            )
        )
        return AcceptResult(dropped=dropped)

    def _enqueue(
        self,
        rows: list[tuple[Any, ...]],
        deletes: list[tuple[int]],
        recipients: Sequence[str],
        entry_id: str,
        size: int,
        body: str | bytes,
    ) -> int:
        now = _now_ms()
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
    ) -> tuple[tuple[Any, ...], tuple[str, int] | None]:
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
        for who in (envelope.get("from"), envelope.get("to")):
            if who is not None and who not in task.participants and len(task.participants) < MAX_TASK_MEMBERS:
                task.participants.append(who)
        intents, participants = _encode(task.intents), _encode(task.participants)
        timestamp = _text(envelope.get("timestamp"))
        return (task_id, task.first_seq, seq, intents, participants, timestamp, body), evicted

    async def pending(self, recipient: str) -> list[Envelope]:
        q = self._queues.get(recipient)
        if q is None or not q.entries:
            return []
        q.touched = _now_ms()  # the recipient is back: its queue is not idle
        await self.durable()  # entries recorded but not yet committed are in the file after this
        rows = await self._read("SELECT seq, body FROM queue WHERE recipient = ? ORDER BY seq", (recipient,))
        # Entries acked or dropped meanwhile (their deletion is still on its way) are skipped.
        live = {seq for seq, _ in q.entries.values()}
        return [_decode(body) for seq, body in rows if seq in live]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        removed = self.ack_nowait(recipient, envelope_ids)
        if removed:
            await self.durable()
        return removed

    def ack_nowait(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        """:meth:`ack`, returning before the deletion is committed (a crash redelivers: at least once)."""
        q = self._queues.get(recipient)
        if q is None:
            return 0
        deletes = []
        for entry_id in envelope_ids:
            entry = q.entries.pop(entry_id, None)
            if entry is not None:
                deletes.append((entry[0],))
                self._messages -= 1
                self._bytes -= entry[1]
        if not q.entries:
            del self._queues[recipient]
        if deletes:
            q.touched = _now_ms()
            self._ticket += 1
            self._submit(Write(self._ticket, queue_deletes=deletes))
        return len(deletes)

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        cutoff = _now_ms() - idle_ms
        kept = set(keep)
        idle = [r for r, q in self._queues.items() if q.touched <= cutoff and r not in kept]
        deletes = []
        for recipient in idle:
            for seq, size in self._queues.pop(recipient).entries.values():
                deletes.append((seq,))
                self._messages -= 1
                self._bytes -= size
        if deletes:
            self._ticket += 1
            self._submit(Write(self._ticket, queue_deletes=deletes))
            await self.durable()
        return len(idle)

    async def history(
        self,
        limit: int,
        agent_id: str | None = None,
        task_id: str | None = None,
        intent: str | None = None,
    ) -> list[Envelope]:
        if limit <= 0:
            return []
        where, params = [], []
        if agent_id is not None:
            where.append("(from_id = ? OR to_id = ?)")
            params += [agent_id, agent_id]
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)
        if intent is not None:
            where.append("intent = ?")
            params.append(intent)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        await self.durable()
        rows = await self._read(
            f"SELECT body FROM history {clause} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [_decode(body) for (body,) in reversed(rows)]

    async def tasks(self) -> list[dict[str, Any]]:
        await self.durable()
        rows = await self._read(
            "SELECT task_id, intents, participants, last_update, last_body FROM tasks ORDER BY first_seq", ()
        )
        keys = ("taskId", "intents", "participants", "lastUpdate", "lastEnvelope")
        return [
            dict(zip(keys, (t, _decode(i), _decode(p), u, _decode(b)), strict=True)) for t, i, p, u, b in rows
        ]

    def _start_checkpoint(self) -> None:
        """Fold the WAL into the database on the reader thread, never on the loop (it fsyncs).

        A PASSIVE checkpoint racing a busy writer never reaches the WAL's end, so the WAL would
        never restart from its beginning; once it passes :data:`WAL_RESET_BYTES`, commits wait
        for one checkpoint (the loop does not) so that it completes and the WAL restarts.
        """
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or self._checkpointing is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            hold = os.stat(f"{self._path}-wal").st_size > WAL_RESET_BYTES
        except OSError:
            hold = False

        def checkpoint() -> None:
            with contextlib.suppress(sqlite3.Error):  # a failed checkpoint is retried next time
                reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        def done(_: object) -> None:
            self._checkpointing = None
            if hold:
                writer.resume()

        if hold:
            writer.pause()
        self._checkpointing = self._read_pool.submit(checkpoint)
        self._checkpointing.add_done_callback(lambda f: _call_soon(loop, done, f))

    def stats(self) -> StoreStats:
        return StoreStats(self._history_size, len(self._queues), self._messages, self._bytes)

    async def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        reader = self._reader
        if reader is None:
            raise StoreError(f"{self._path}: the store is not open")

        def run() -> list[tuple[Any, ...]]:
            with contextlib.closing(reader.execute(sql, params)) as cursor:
                return cursor.fetchall()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: read failed: {exc}") from None
