"""The durable embedded store: SQLite in WAL mode under ``AI_BRIDGE_DATA_DIR``.

The event loop keeps the bookkeeping in memory (:class:`~._sqlite_ledger.Ledger`: queue
entries, counters, the task index), so caps are decided, ``stats()`` answered and ``ack``
counted without reading the file; bodies live only on disk. Writes go through one
:class:`~._sqlite_writer.GroupWriter` (group commit); reads use a second connection on its
own thread, which sees every write whose caller has returned (WAL snapshot after COMMIT).

Besides the :class:`~aibridge.server.store.base.Store` methods, :meth:`SqliteStore.accept_nowait`
and :meth:`SqliteStore.ack_nowait` record a write at once and return before it is durable,
and :meth:`SqliteStore.durable` waits for one of them (or everything recorded so far): a
sender that asked for no confirm is routed without waiting for the disk.

Faults (issue 11): a failed commit fails the writes of its batch and nothing else; the
bookkeeping is rebuilt from the file, writes are refused (``StoreError``, 503
``storage_unavailable``) until the writer's probe commits again (see ``_sqlite_writer``),
and ``stats().failure`` says why meanwhile. Reads never wait on a failed write and give up
after :data:`READ_TIMEOUT_S`. Acks while writes fail are not recorded: the entries stay
queued and are redelivered (at least once).

Durability: ``synchronous=NORMAL`` in WAL mode. A COMMIT has reached the OS when ``accept``
returns, so it survives ``kill -9`` of the server; a power loss or kernel crash may lose the
transactions since the last checkpoint (the database itself stays consistent).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store._rows import envelope_of, json_of
from aibridge.server.store._sqlite_files import DB_NAME, open_files
from aibridge.server.store._sqlite_ledger import Ledger
from aibridge.server.store._sqlite_writer import GroupWriter, Write
from aibridge.server.store.base import AcceptResult, Envelope, StoreStats

__all__ = ("DB_NAME", "READ_TIMEOUT_S", "SqliteStore")

log = logging.getLogger("aibridge.store")

WAL_RESET_BYTES = 8 * 1024 * 1024
"""Past this WAL size, commits wait for one checkpoint so the WAL can restart (see _start_checkpoint)."""
READ_TIMEOUT_S = 5.0
"""A read (history, tasks, a replayed queue) that takes longer is answered 503, never left hanging."""
FAILED_RANGES_KEPT = 256
"""Failed batches remembered, so a late ``durable(ticket)`` still hears its write failed."""
_encode = msgspec.json.Encoder().encode


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
        self._failed: collections.deque[tuple[int, int, StoreError]] = collections.deque(
            maxlen=FAILED_RANGES_KEPT
        )
        self._checkpointing: concurrent.futures.Future[None] | None = None
        self.before_commit: Callable[[], None] | None = None
        """Called right before each commit (the hub writes out its sockets' frames then)."""

    async def open(self) -> None:
        files = await asyncio.to_thread(open_files, self._path.parent)
        if files.was_empty:
            log.warning(
                "%s was an empty (0-byte) file, not a database: starting with an empty store"
                " (whatever it held before it was emptied is not here)",
                self._path,
            )
        try:
            await asyncio.to_thread(self._ledger.load, files.writer)
        except sqlite3.Error as exc:
            files.writer.close()
            files.reader.close()
            files.lock.close()
            raise StoreError(f"{self._path}: cannot load the SQLite store: {exc}") from None
        self._reader, self._lock = files.reader, files.lock
        window = self._config.commit_window_ms / 1000
        self._writer = GroupWriter(
            files.writer,
            window,
            str(self._path),
            self._start_checkpoint,
            self._resync,
            self._headroom,
            self._before_commit,
        )
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

    def _writable(self) -> GroupWriter:
        """The writer, if writes are accepted now; else ``StoreError`` before anything is recorded."""
        writer = self._writer
        if writer is None:
            raise StoreError(f"{self._path}: the store is not open")
        if writer.failure is not None:
            raise StoreError(
                f"{writer.failure.detail} ({writer.failing_for():.0f} s ago); retrying, try again shortly"
            )
        return writer

    def _resync(self) -> bool:
        """After a failed commit: the bookkeeping again exactly what the file holds (False if unreadable)."""
        assert self._writer is not None
        ledger = Ledger(self._config)
        try:
            ledger.load(self._writer.connection, prune=False)
        except sqlite3.Error as exc:
            log.warning("%s: cannot reload the bookkeeping after a failed write: %s", self._path, exc)
            return False
        self._ledger = ledger
        return True

    def _before_commit(self) -> None:
        if self.before_commit is not None:
            self.before_commit()

    def _headroom(self) -> bool:
        """Whether the file system has room for a couple of the largest envelopes again."""
        try:
            st = os.statvfs(self._path.parent)
        except OSError:
            return True  # cannot tell: let the probe's commit decide
        return st.f_bavail * st.f_frsize >= 2 * self._config.max_envelope_bytes

    def durable(self, ticket: int | None = None) -> asyncio.Future[None]:
        """Done once write ``ticket`` (default: every write recorded so far) is committed.

        Raises ``StoreError`` if that write's batch failed.
        """
        if ticket is None:
            ticket = self._ticket
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._committed >= ticket:
            error = self._failure_of(ticket)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        else:
            self._waiters.append((ticket, future))
        return future

    def _failure_of(self, ticket: int) -> StoreError | None:
        for first, last, error in reversed(self._failed):
            if first <= ticket <= last:
                return error
            if last < ticket:
                break
        return None

    def _on_commit(self, first: int, last: int, error: StoreError | None) -> None:
        self._committed = last
        if error is not None:
            self._failed.append((first, last, error))
        waiters = self._waiters
        while waiters and waiters[0][0] <= last:
            ticket, future = waiters.popleft()
            if not future.done():  # a cancelled waiter; the write committed (or failed) anyway
                if error is None or ticket < first:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def _settled(self) -> None:
        """Wait until everything recorded so far has committed or failed (reads only need the file)."""
        with contextlib.suppress(StoreError):
            await self.durable()

    async def accept(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        result = self.accept_nowait(envelope, size, queue_for, text=text)
        await self.durable(result.ticket)
        return result

    def accept_nowait(
        self, envelope: Envelope, size: int, queue_for: Sequence[str] = (), *, text: str | None = None
    ) -> AcceptResult:
        """:meth:`accept`, returning once recorded and counted, before the commit.

        ``text``: the envelope's JSON when the caller has it already (saves encoding it again).
        """
        writer = self._writable()
        body: str | bytes = _encode(envelope) if text is None else text
        write, dropped = self._ledger.record(envelope, size, queue_for, body, self._ticket + 1)
        self._ticket += 1  # only now: a refused envelope takes no ticket, which durable() would await
        writer.submit(write)
        return AcceptResult(dropped, self._ticket)

    async def pending(self, recipient: str) -> list[Envelope]:
        if not self._ledger.live(recipient):
            return []
        rows = await self._read("SELECT seq, body FROM queue WHERE recipient = ? ORDER BY seq", (recipient,))
        # Entries acked or dropped meanwhile (their deletion is still on its way) are skipped.
        live = self._ledger.live(recipient)
        found = (envelope_of(body, f"queue row {seq}") for seq, body in rows if seq in live)
        return [e for e in found if e is not None]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        removed = self.ack_nowait(recipient, envelope_ids)
        if removed:
            with contextlib.suppress(StoreError):  # a lost ack only redelivers
                await self.durable(self._ticket)
        return removed

    def ack_nowait(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        """:meth:`ack`, returning before the deletion is committed (a crash redelivers: at least once).

        While writes fail nothing is recorded (0): the entries stay queued and come again.
        """
        writer = self._writer
        if writer is None or writer.failure is not None:
            return 0
        deletes = self._ledger.remove(recipient, envelope_ids)
        if deletes:
            self._ticket += 1
            writer.submit(Write(self._ticket, queue_deletes=deletes))
        return len(deletes)

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        writer = self._writer
        if writer is None or writer.failure is not None:
            return 0  # the next sweep after the store recovers expires them
        expired, deletes = self._ledger.expire(idle_ms, keep)
        if deletes:
            self._ticket += 1
            writer.submit(Write(self._ticket, queue_deletes=deletes))
            with contextlib.suppress(StoreError):  # their queues come back with the resync
                await self.durable(self._ticket)
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
        rows = await self._read(
            f"SELECT seq, body FROM history {clause} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        found = (envelope_of(body, f"history row {seq}") for seq, body in reversed(rows))
        return [e for e in found if e is not None]

    async def tasks(self) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT task_id, intents, participants, last_update, last_body FROM tasks ORDER BY first_seq", ()
        )
        tasks = []
        for task_id, intents, participants, last_update, body in rows:
            where = f"task row {task_id!r}"[:300]
            found = (json_of(intents, where), json_of(participants, where), envelope_of(body, where))
            if not isinstance(task_id, str) or not all(isinstance(m, list) for m in found[:2]):
                log.warning("skipping unreadable %s", where)
                continue
            if found[2] is None:
                continue
            update = last_update if isinstance(last_update, str) else None
            tasks.append(
                {
                    "taskId": task_id,
                    "intents": found[0],
                    "participants": found[1],
                    "lastUpdate": update,
                    "lastEnvelope": found[2],
                }
            )
        return tasks

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
        stats = self._ledger.stats()
        writer = self._writer
        if writer is not None and writer.failure is not None:
            return dataclasses.replace(stats, failure=writer.failure.detail)
        return stats

    async def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` once every recorded write has settled; ``StoreError`` after READ_TIMEOUT_S."""
        reader = self._reader
        if reader is None:
            raise StoreError(f"{self._path}: the store is not open")

        def run() -> list[tuple[Any, ...]]:
            with contextlib.closing(reader.execute(sql, params)) as cursor:
                return cursor.fetchall()

        async def settle_then_read() -> list[tuple[Any, ...]]:
            await self._settled()  # writes recorded before this read are in the file (or failed)
            return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)

        try:
            return await asyncio.wait_for(settle_then_read(), READ_TIMEOUT_S)
        except TimeoutError:
            raise StoreError(f"{self._path}: read timed out after {READ_TIMEOUT_S:g} s") from None
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: read failed: {exc}") from None
