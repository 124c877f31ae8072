"""Group commit for the SQLite store, on the event loop's own thread.

The store hands every accept/ack to :meth:`GroupWriter.submit` as one :class:`Write`,
numbered by a ticket. The first write of a batch schedules a flush: at the end of the
current event-loop pass when the commit window is 0, else after the window. The flush runs
every pending write in ONE transaction (``executemany`` per statement) and reports the
highest committed ticket, so many envelopes share one COMMIT.

Why not a writer thread: measured here, a thread spent most of its time waiting for the
GIL while the loop was busy (Python's 5 ms switch interval), and ran at half the rate of
committing inline. In WAL mode with ``synchronous=NORMAL`` a COMMIT is a few ``write()``
calls to the OS, not an fsync, so the loop blocks for microseconds per envelope. The one
slow step, the WAL checkpoint, is taken off the loop: automatic checkpoints are off and
the store runs a PASSIVE one on its reader thread every :data:`CHECKPOINT_EVERY_ROWS` rows
or :data:`CHECKPOINT_EVERY_COMMITS` commits (it fsyncs, so it must not run on the loop).

Statements run in a fixed phase order; that is safe because the store assigns every row
its ``seq`` up front and deletions always name rows by ``seq`` (or, for tasks, by the
``first_seq`` of the task that was evicted), never by "whatever is there now". A queue row
inserted and deleted within one batch (an envelope delivered and acked before its commit)
is written neither way.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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

_MAX_BATCH = 2048
"""A batch this large is committed at once, which bounds how long one flush blocks the loop."""
CHECKPOINT_EVERY_ROWS = 4096
CHECKPOINT_EVERY_COMMITS = 128
"""Whichever comes first: each commit appends whole pages, so small commits grow the WAL too."""


class Write(NamedTuple):
    """One caller's share of a transaction; every row already carries its final ``seq``."""

    ticket: int
    history: tuple[Any, ...] | None = None
    queue: Sequence[tuple[Any, ...]] = ()
    queue_deletes: Sequence[tuple[int]] = ()
    task: tuple[Any, ...] | None = None
    task_delete: tuple[str, int] | None = None
    prune_below: int = 0
    """History rows with a smaller ``seq`` are deleted (0 = none)."""


OnCommit = Callable[[int, "StoreError | None"], None]


class GroupWriter:
    """Commits submitted writes in batches on ``loop``; ``on_commit(ticket, error)`` after each."""

    def __init__(
        self, conn: sqlite3.Connection, window_s: float, where: str, checkpoint: Callable[[], None]
    ) -> None:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
        self._conn = conn
        self._window = window_s
        self._where = where
        self._checkpoint = checkpoint
        self._pending: list[Write] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_commit: OnCommit | None = None
        self._rows_since_checkpoint = self._commits_since_checkpoint = 0
        self._paused = False
        self.failure: StoreError | None = None

    def start(self, loop: asyncio.AbstractEventLoop, on_commit: OnCommit) -> None:
        self._loop, self._on_commit = loop, on_commit

    def submit(self, write: Write) -> None:
        self._pending.append(write)
        if self._paused:
            return
        if len(self._pending) >= _MAX_BATCH:
            self.flush()
        elif self._flush_handle is None:
            assert self._loop is not None, "start() first"
            if self._window > 0:
                self._flush_handle = self._loop.call_later(self._window, self.flush)
            else:
                self._flush_handle = self._loop.call_soon(self.flush)

    def pause(self) -> None:
        """Hold commits back (writes still queue up) while a checkpoint must catch up."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._pending:
            self.flush()

    def flush(self) -> None:
        """Commit everything pending now (unless paused: :meth:`resume` commits it)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._paused:
            return
        batch, self._pending = self._pending, []
        if not batch:
            return
        error = self.failure
        if error is None:
            try:
                self._rows_since_checkpoint += self._execute(batch)
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                # The store's in-memory bookkeeping already includes this batch, so it no longer
                # matches the file: refuse further writes rather than drift (a restart reloads).
                error = self.failure = StoreError(f"SQLite store {self._where}: write failed: {exc}")
        assert self._on_commit is not None
        self._on_commit(batch[-1].ticket, error)
        self._commits_since_checkpoint += 1
        if (
            self._rows_since_checkpoint >= CHECKPOINT_EVERY_ROWS
            or self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS
        ):
            self._rows_since_checkpoint = self._commits_since_checkpoint = 0
            self._checkpoint()

    def close(self) -> None:
        """Commit what is pending, fold the WAL into the database file, close the connection."""
        self._paused = False
        self.flush()
        # The WAL is replayed at the next open anyway; truncating it is only a courtesy.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _execute(self, writes: Sequence[Write]) -> int:
        history: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        deletes: list[tuple[int]] = []
        tasks: dict[str, tuple[Any, ...]] = {}  # a task's last row holds its whole state
        task_deletes: list[tuple[str, int]] = []
        prune = 0
        for write in writes:
            if write.history is not None:
                history.append(write.history)
            if write.queue:
                rows += write.queue
            if write.queue_deletes:
                deletes += write.queue_deletes
            if write.task is not None:
                tasks[write.task[0]] = write.task
            if write.task_delete is not None:
                task_deletes.append(write.task_delete)
            prune = max(prune, write.prune_below)
        if rows and deletes:
            both = {row[0] for row in rows}.intersection(seq for (seq,) in deletes)
            if both:
                rows = [row for row in rows if row[0] not in both]
                deletes = [d for d in deletes if d[0] not in both]
        conn = self._conn
        conn.execute("BEGIN")
        if history:
            conn.executemany(_INSERT_HISTORY, history)
        if rows:
            conn.executemany(_INSERT_QUEUE, rows)
        if deletes:
            conn.executemany(_DELETE_QUEUE, deletes)
        if tasks:
            conn.executemany(_UPSERT_TASK, tasks.values())
        if task_deletes:
            conn.executemany(_DELETE_TASK, task_deletes)
        if prune:
            conn.execute(_PRUNE_HISTORY, (prune,))
        conn.execute("COMMIT")
        return len(history) + len(rows)
