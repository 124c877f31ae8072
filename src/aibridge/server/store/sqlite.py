"""The durable embedded store: SQLite in WAL mode under ``AI_BRIDGE_DATA_DIR``.

The event loop keeps the bookkeeping in memory (:class:`~._sqlite_ledger.Ledger`: queue
entries, counters, the task index), so caps are decided, ``stats()`` answered and ``ack``
counted without reading the file; bodies live only on disk. Writes go through one
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store._sqlite_files import DB_NAME, open_files
from aibridge.server.store._sqlite_ledger import Ledger
from aibridge.server.store._sqlite_writer import GroupWriter, Write
from aibridge.server.store.base import AcceptResult, Envelope, StoreStats

__all__ = ("DB_NAME", "SqliteStore")

WAL_RESET_BYTES = 8 * 1024 * 1024
"""Past this WAL size, commits wait for one checkpoint so the WAL can restart (see _start_checkpoint)."""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[object], None], arg: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, arg)


class SqliteStore:
    """History, offline queues and tasks in ``<data_dir>/aibridge.db``; see the module docstring."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._path = Path(config.data_dir) / DB_NAME
        self._lock: IO[str] | None = None
        self._writer: GroupWriter | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="aibridge-sqlite-reader")
        self._ledger = Ledger(config)
        self._ticket = self._committed = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._checkpointing: concurrent.futures.Future[None] | None = None

    async def open(self) -> None:
        files = await asyncio.to_thread(open_files, self._path.parent)
        try:
            await asyncio.to_thread(self._ledger.load, files.writer)
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
        body: str | bytes = _encode(envelope) if text is None else text
        recorded = self._ledger.record(envelope, size, queue_for, body)
        self._ticket += 1
        self._submit(Write(self._ticket, *recorded[:-1]))
        return AcceptResult(dropped=recorded.dropped)

    async def pending(self, recipient: str) -> list[Envelope]:
        if not self._ledger.live(recipient):
            return []
        await self.durable()  # entries recorded but not yet committed are in the file after this
        rows = await self._read("SELECT seq, body FROM queue WHERE recipient = ? ORDER BY seq", (recipient,))
        # Entries acked or dropped meanwhile (their deletion is still on its way) are skipped.
        live = self._ledger.live(recipient)
        return [_decode(body) for seq, body in rows if seq in live]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        removed = self.ack_nowait(recipient, envelope_ids)
        if removed:
            await self.durable()
        return removed

    def ack_nowait(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        """:meth:`ack`, returning before the deletion is committed (a crash redelivers: at least once)."""
        deletes = self._ledger.remove(recipient, envelope_ids)
        if deletes:
            self._ticket += 1
            self._submit(Write(self._ticket, queue_deletes=deletes))
        return len(deletes)

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        expired, deletes = self._ledger.expire(idle_ms, keep)
        if deletes:
            self._ticket += 1
            self._submit(Write(self._ticket, queue_deletes=deletes))
            await self.durable()
        return expired

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
        return self._ledger.stats()

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
