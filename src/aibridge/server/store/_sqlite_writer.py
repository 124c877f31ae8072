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

A failed COMMIT (a full disk, an I/O error) fails exactly the writes of that batch: it is
rolled back, the store is told (``resync``, so it rebuilds its bookkeeping from the
file) and every waiter of the batch hears the error. The writer then refuses writes
(:attr:`GroupWriter.failure` is set) and probes with backoff (:data:`PROBE_FIRST_S` doubling
to :data:`PROBE_MAX_S`): a small real commit, tried only once ``headroom()`` says there is
room again. The first probe that commits clears the failure, so the store recovers by itself.

Statements run in a fixed phase order; that is safe because the store assigns every row
its ``seq`` up front and deletions always name rows by ``seq`` (or, for tasks, by the
``first_seq`` of the task that was evicted), never by "whatever is there now". A queue row
inserted and deleted within one batch (an envelope delivered and acked before its commit)
is written neither way: ``before_commit`` (the sockets' pending writes, see
:class:`~aibridge.server.connection.Outboxes`) runs first so that it usually is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aibridge.errors import StoreError

__all__ = ("PROBE_FIRST_S", "PROBE_MAX_S", "SCHEMA", "GroupWriter", "Write")

log = logging.getLogger("aibridge.store")

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
PROBE_FIRST_S = 0.1
PROBE_MAX_S = 1.0
"""Backoff of the probes after a failed commit; the maximum bounds recovery after space is back."""
_PROBE = "PRAGMA user_version = {}"
"""What a probe commits: rewriting page 1 needs a new WAL frame, so it fails while writes fail."""


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


OnCommit = Callable[[int, int, "StoreError | None"], None]
"""``on_commit(first_ticket, last_ticket, error)`` once per batch."""


class GroupWriter:
    """Commits submitted writes in batches on ``loop``; ``on_commit`` after each (see :data:`OnCommit`)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        window_s: float,
        where: str,
        checkpoint: Callable[[], None],
        resync: Callable[[], bool],
        headroom: Callable[[], bool],
        before_commit: Callable[[], None] = lambda: None,
    ) -> None:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
        self._conn = conn
        self._window = window_s
        self._where = where
        self._checkpoint = checkpoint
        self._resync = resync
        self._stale = False
        self._headroom = headroom
        self._before_commit = before_commit
        self._committing = False
        self._probe_handle: asyncio.TimerHandle | None = None
        self._backoff = PROBE_FIRST_S
        self._failed_at = 0.0
        self._probes = 0
        self._closed = False
        self._pending: list[Write] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_commit: OnCommit | None = None
        self._rows_since_checkpoint = self._commits_since_checkpoint = 0
        self._paused = False
        self.failure: StoreError | None = None
        """Set while writes fail (from a failed commit until a probe commits)."""

    @property
    def connection(self) -> sqlite3.Connection:
        """The writing connection (the store reloads its bookkeeping through it after a failure)."""
        return self._conn

    def start(self, loop: asyncio.AbstractEventLoop, on_commit: OnCommit) -> None:
        self._loop, self._on_commit = loop, on_commit

    def submit(self, write: Write) -> None:
        self._pending.append(write)
        if self._paused:
            return
        if len(self._pending) >= _MAX_BATCH and not self._committing:
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
        if self._paused or not self._pending:
            return
        # Writes that ``before_commit`` submits (acks of frames the sockets just wrote) join
        # this batch, which is not flushed from inside itself.
        self._committing = True
        try:
            self._before_commit()
        finally:
            self._committing = False
        batch, self._pending = self._pending, []
        error = self.failure
        if error is None:
            try:
                self._rows_since_checkpoint += self._execute(batch)
            except sqlite3.Error as exc:
                self._rollback()
                error = self._fail(exc)
        assert self._on_commit is not None
        self._on_commit(batch[0].ticket, batch[-1].ticket, error)
        if error is not None:
            return
        self._commits_since_checkpoint += 1
        if (
            self._rows_since_checkpoint >= CHECKPOINT_EVERY_ROWS
            or self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS
        ):
            self._rows_since_checkpoint = self._commits_since_checkpoint = 0
            self._checkpoint()

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()

    def _fail(self, exc: sqlite3.Error) -> StoreError:
        """A commit failed: refuse writes, let the store resynchronise, and start probing."""
        error = StoreError(f"SQLite store {self._where}: write failed: {exc}")
        first = self.failure is None
        self.failure = error
        if first:
            self._failed_at = time.monotonic()
            self._backoff = PROBE_FIRST_S
            log.warning("%s; refusing writes (503 storage_unavailable) until a probe commits", error.detail)
        # The store's bookkeeping counted this batch in already; the file, rolled back, did not.
        self._stale = not self._resync()
        self._schedule_probe()
        return error

    def _schedule_probe(self) -> None:
        if self._probe_handle is None and self._loop is not None and not self._closed:
            self._probe_handle = self._loop.call_later(self._backoff, self._probe)
            self._backoff = min(PROBE_MAX_S, self._backoff * 2)

    def _probe(self) -> None:
        self._probe_handle = None
        if self.failure is None:
            return
        if self._headroom():
            self._probes += 1
            try:
                self._conn.execute("BEGIN")
                self._conn.execute(_PROBE.format(self._probes))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self.failure = StoreError(f"SQLite store {self._where}: write failed: {exc}")
            else:
                # A resync that failed at the failure (it reads the file) is retried first.
                if not self._stale or self._resync():
                    self._stale = False
                    log.info(
                        "SQLite store %s: writes succeed again after %.1f s",
                        self._where,
                        time.monotonic() - self._failed_at,
                    )
                    self.failure = None
                    return
        self._schedule_probe()

    def failing_for(self) -> float:
        """Seconds since writes started failing (0 while they succeed)."""
        return time.monotonic() - self._failed_at if self.failure is not None else 0.0

    def close(self) -> None:
        """Commit what is pending, fold the WAL into the database file, close the connection."""
        self._paused = False
        self._closed = True  # no more probes: the connection is about to go
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
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
