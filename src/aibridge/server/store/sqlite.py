"""The durable embedded store: SQLite in WAL mode under ``AI_BRIDGE_DATA_DIR``.

The event loop keeps the bookkeeping in memory (queue entries as ``id -> (seq, size)``,
counters, the task index), so caps are decided, ``stats()`` answered and ``ack`` counted
without reading the file; bodies live only on disk. Writes go through one
:class:`~._sqlite_writer.GroupWriter` (group commit); reads use a second connection on its
own thread, which sees every write whose caller has returned (WAL snapshot after COMMIT).

Durability: ``synchronous=NORMAL`` in WAL mode. A COMMIT has reached the OS when ``accept``
returns, so it survives ``kill -9`` of the server; a power loss or kernel crash may lose the
transactions since the last checkpoint (the database itself stays consistent).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store._sqlite_writer import SCHEMA, GroupWriter, Write
from aibridge.server.store.base import AcceptResult, Envelope, QueueFullError, StoreStats

__all__ = ("SqliteStore",)

DB_NAME = "aibridge.db"
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
"""After a checkpoint the WAL file is truncated back to this size, so it cannot stay large."""
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
    __slots__ = ("first_seq", "intents", "last_seq", "participants")

    def __init__(self, first_seq: int, intents: list[Any], participants: list[Any]) -> None:
        self.first_seq = first_seq
        self.last_seq = first_seq
        self.intents = intents
        self.participants = participants


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class SqliteStore:
    """History, offline queues and tasks in ``<data_dir>/aibridge.db``; see the module docstring."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._dir = Path(config.data_dir)
        self._path = self._dir / DB_NAME
        self._lock_file: IO[str] | None = None
        self._writer: GroupWriter | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="aibridge-sqlite-reader")
        self._queues: dict[str, _Queue] = {}
        self._tasks: dict[str, _Task] = {}  # first seen first
        self._hseq = self._qseq = self._history_size = self._messages = self._bytes = 0

    async def open(self) -> None:
        writer_conn = await asyncio.to_thread(self._open_files)
        self._writer = GroupWriter(writer_conn, self._config.commit_window_ms / 1000, str(self._path))
        self._writer.start(asyncio.get_running_loop())

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._read_pool, self._reader.close)
            self._reader = None
        self._read_pool.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def _open_files(self) -> sqlite3.Connection:
        where = f"AI_BRIDGE_DATA_DIR={self._dir}"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(f"{where}: exists but is not a directory") from None
        except OSError as exc:
            raise StoreError(f"{where}: cannot create the data directory: {exc.strerror}") from None
        try:
            lock_file = (self._dir / "aibridge.lock").open("a")
        except OSError as exc:
            raise StoreError(f"{where}: not writable: {exc.strerror}") from None
        conn: sqlite3.Connection | None = None
        try:
            try:
                # One process per data dir: two would each trust their own in-memory counters.
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    f"{where}: in use by another aibridge process (aibridge.lock is held)"
                ) from None
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self._path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            conn.executescript(SCHEMA)
            self._load(conn)
            self._reader = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            lock_file.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self._path}: cannot open the SQLite store: {exc}") from None
            raise
        self._lock_file = lock_file
        return conn

    def _load(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory bookkeeping from the file (also after a crash)."""
        self._hseq = conn.execute("SELECT coalesce(max(seq), 0) FROM history").fetchone()[0]
        conn.execute("DELETE FROM history WHERE seq <= ?", (self._hseq - self._config.history_limit,))
        self._history_size = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        self._qseq = conn.execute("SELECT coalesce(max(seq), 0) FROM queue").fetchone()[0]
        for seq, recipient, entry_id, size, at in conn.execute(
            "SELECT seq, recipient, id, size, at FROM queue ORDER BY seq"
        ):
            q = self._queues.get(recipient)
            if q is None:
                q = self._queues[recipient] = _Queue(at)
            q.entries[entry_id] = (seq, size)
            q.touched = at
            self._messages += 1
            self._bytes += size
        for task_id, first_seq, last_seq, intents, participants in conn.execute(
            "SELECT task_id, first_seq, last_seq, intents, participants FROM tasks ORDER BY first_seq"
        ):
            task = self._tasks[task_id] = _Task(first_seq, _decode(intents), _decode(participants))
            task.last_seq = last_seq
        self._hseq = max(self._hseq, max((t.last_seq for t in self._tasks.values()), default=0))

    def _live_writer(self) -> GroupWriter:
        if self._writer is None:
            raise StoreError(f"{self._path}: the store is not open")
        if self._writer.failure is not None:
            raise self._writer.failure
        return self._writer

    async def accept(self, envelope: Envelope, size: int, queue_for: Sequence[str] = ()) -> AcceptResult:
        writer = self._live_writer()
        config = self._config
        recipients = list(dict.fromkeys(queue_for))
        new_queues = sum(1 for r in recipients if r not in self._queues)
        if new_queues and len(self._queues) + new_queues > config.max_queues:
            raise QueueFullError(f"offline queue limit reached ({config.max_queues} queues)")
        if recipients and self._bytes + size * len(recipients) > config.max_queued_bytes:
            raise QueueFullError(f"queued bytes limit reached ({config.max_queued_bytes} bytes)")

        body = _encode(envelope)
        self._hseq += 1
        seq = self._hseq
        sender, to = envelope.get("from"), envelope.get("to")
        write = Write(
            history=[
                (
                    seq,
                    _text(sender),
                    _text(to),
                    _text(envelope.get("taskId")),
                    _text(envelope.get("intent")),
                    body,
                )
            ],
            prune_below=seq - config.history_limit + 1,
        )
        self._history_size = min(self._history_size + 1, config.history_limit)
        dropped = self._enqueue(write, recipients, str(envelope.get("id")), size, body)
        task_id = envelope.get("taskId")
        if task_id and isinstance(task_id, str):
            self._index_task(write, task_id, seq, envelope, body)
        await writer.submit(write)
        return AcceptResult(dropped=dropped)

    def _enqueue(self, write: Write, recipients: list[str], entry_id: str, size: int, body: bytes) -> int:
        now = int(time.time() * 1000)
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
                write.queue_deletes.append((old[0],))
                self._messages -= 1
                self._bytes -= old[1]
            self._qseq += 1
            q.entries[entry_id] = (self._qseq, size)
            write.queue.append((self._qseq, recipient, entry_id, size, now, body))
            self._messages += 1
            self._bytes += size
        return dropped

    def _index_task(self, write: Write, task_id: str, seq: int, envelope: Envelope, body: bytes) -> None:
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = _Task(seq, [], [])
            if len(self._tasks) > self._config.history_limit:
                # Like the memory store: beyond history_limit tasks, the first seen goes.
                old_id = next(iter(self._tasks))
                write.task_deletes.append((old_id, self._tasks.pop(old_id).first_seq))
        task.last_seq = seq
        intent = envelope.get("intent")
        if intent not in task.intents and len(task.intents) < MAX_TASK_MEMBERS:
            task.intents.append(intent)
        for who in (envelope.get("from"), envelope.get("to")):
            if who is not None and who not in task.participants and len(task.participants) < MAX_TASK_MEMBERS:
                task.participants.append(who)
        write.tasks.append(
            (
                task_id,
                task.first_seq,
                seq,
                _encode(task.intents),
                _encode(task.participants),
                _text(envelope.get("timestamp")),
                body,
            )
        )

    async def pending(self, recipient: str) -> list[Envelope]:
        q = self._queues.get(recipient)
        if q is None or not q.entries:
            return []
        q.touched = int(time.time() * 1000)  # the recipient is back: its queue is not idle
        rows = await self._read("SELECT seq, body FROM queue WHERE recipient = ? ORDER BY seq", (recipient,))
        # Entries acked (or dropped) whose deletion is still on its way to the file are skipped.
        live = {seq for seq, _ in q.entries.values()}
        return [_decode(body) for seq, body in rows if seq in live]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        q = self._queues.get(recipient)
        if q is None:
            return 0
        write = Write()
        for entry_id in envelope_ids:
            entry = q.entries.pop(entry_id, None)
            if entry is not None:
                write.queue_deletes.append((entry[0],))
                self._messages -= 1
                self._bytes -= entry[1]
        if not q.entries:
            del self._queues[recipient]
        if not write.queue_deletes:
            return 0
        q.touched = int(time.time() * 1000)
        await self._live_writer().submit(write)
        return len(write.queue_deletes)

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        cutoff = int(time.time() * 1000) - idle_ms
        kept = set(keep)
        idle = [r for r, q in self._queues.items() if q.touched <= cutoff and r not in kept]
        write = Write()
        for recipient in idle:
            for seq, size in self._queues.pop(recipient).entries.values():
                write.queue_deletes.append((seq,))
                self._messages -= 1
                self._bytes -= size
        if write.queue_deletes:
            await self._live_writer().submit(write)
        return len(idle)

    async def history(
        self,
        limit: int,
        agent_id: str | None = None,
        task_id: str | None = None,
        intent: str | None = None,
    ) -> list[Envelope]:
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
        sql = f"SELECT seq, body FROM history {clause} ORDER BY seq DESC LIMIT ?"
        rows = await self._read(sql, (*params, max(limit, 0)))
        return [_decode(body) for _, body in reversed(rows)]

    async def tasks(self) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT task_id, intents, participants, last_update, last_body FROM tasks ORDER BY first_seq", ()
        )
        return [
            {
                "taskId": task_id,
                "intents": _decode(intents),
                "participants": _decode(participants),
                "lastUpdate": last_update,
                "lastEnvelope": _decode(last_body),
            }
            for task_id, intents, participants, last_update, last_body in rows
        ]

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
