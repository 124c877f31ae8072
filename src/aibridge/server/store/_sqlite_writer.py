"""The one writer of the SQLite store: a thread that group-commits queued writes.

Every write the store wants (history rows, queue rows, deletions, task rows) is a
:class:`Write` put on a queue. The writer thread takes the first one, waits at most the
commit window for more, runs them all in ONE transaction (``executemany`` per statement)
and settles every waiting future after the single COMMIT, so many envelopes share one
write to the WAL. Statements run in a fixed phase order; that is safe because the store
assigns every row its ``seq`` up front and deletions always name rows by ``seq`` (or, for
tasks, by the ``first_seq`` of the task that was evicted), never by "whatever is there now".
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aibridge.errors import StoreError

__all__ = ("SCHEMA", "GroupWriter", "Write")

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY, from_id TEXT, to_id TEXT, task_id TEXT, intent TEXT, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY, recipient TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL,
    at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS queue_by_recipient ON queue (recipient, seq);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    intents BLOB NOT NULL, participants BLOB NOT NULL, last_update TEXT, last_body BLOB NOT NULL);
"""

_INSERT_HISTORY = "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_QUEUE = "INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?)"
_DELETE_QUEUE = "DELETE FROM queue WHERE seq = ?"
_UPSERT_TASK = "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?)"
_DELETE_TASK = "DELETE FROM tasks WHERE task_id = ? AND first_seq = ?"
_PRUNE_HISTORY = "DELETE FROM history WHERE seq < ?"

_MAX_BATCH = 4096


@dataclass(slots=True)
class Write:
    """One caller's share of a transaction; every row already carries its final ``seq``."""

    history: list[tuple[Any, ...]] = field(default_factory=list)
    queue: list[tuple[Any, ...]] = field(default_factory=list)
    queue_deletes: list[tuple[int]] = field(default_factory=list)
    tasks: list[tuple[Any, ...]] = field(default_factory=list)
    task_deletes: list[tuple[str, int]] = field(default_factory=list)
    prune_below: int = 0
    """History rows with a smaller ``seq`` are deleted (0 = none)."""


_Item = tuple[Write, "asyncio.Future[None]"] | None


class GroupWriter:
    """Owns ``conn`` from its own thread; :meth:`submit` returns a future settled after COMMIT."""

    def __init__(self, conn: sqlite3.Connection, window_s: float, where: str) -> None:
        self._conn = conn
        self._window = window_s
        self._where = where
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aibridge-sqlite-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: StoreError | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def submit(self, write: Write) -> asyncio.Future[None]:
        assert self._loop is not None, "start() first"
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((write, future))
        return future

    async def stop(self) -> None:
        """Let every queued write commit, then end the thread and close the connection."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self._window
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
        # The WAL is replayed at the next open anyway; truncating it is only a courtesy.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _commit(self, batch: Sequence[tuple[Write, asyncio.Future[None]]]) -> None:
        error: StoreError | None = self.failure
        if error is None:
            try:
                self._execute([write for write, _ in batch])
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                # The store's in-memory counters already include this batch, so they no longer
                # match the file: refuse further writes rather than drift (a restart reloads).
                error = StoreError(f"SQLite store {self._where}: write failed: {exc}")
                self.failure = error
        assert self._loop is not None
        # RuntimeError: the event loop is gone (interpreter shutdown); nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, [future for _, future in batch], error)

    def _execute(self, writes: Sequence[Write]) -> None:
        history: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        deletes: list[tuple[int]] = []
        tasks: list[tuple[Any, ...]] = []
        task_deletes: list[tuple[str, int]] = []
        prune = 0
        for write in writes:
            history += write.history
            rows += write.queue
            deletes += write.queue_deletes
            tasks += write.tasks
            task_deletes += write.task_deletes
            prune = max(prune, write.prune_below)
        conn = self._conn
        conn.execute("BEGIN")
        if history:
            conn.executemany(_INSERT_HISTORY, history)
        if rows:
            conn.executemany(_INSERT_QUEUE, rows)
        if deletes:
            conn.executemany(_DELETE_QUEUE, deletes)
        if tasks:
            conn.executemany(_UPSERT_TASK, tasks)
        if task_deletes:
            conn.executemany(_DELETE_TASK, task_deletes)
        if prune:
            conn.execute(_PRUNE_HISTORY, (prune,))
        conn.execute("COMMIT")


def _settle(futures: list[asyncio.Future[None]], error: StoreError | None) -> None:
    for future in futures:
        if future.done():
            continue  # the caller was cancelled; the write committed anyway
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
