"""Opening the SQLite store's files: the data directory, its lock, and two WAL connections.

Every way this can fail becomes a :class:`~aibridge.errors.StoreError` that names the
setting or file and says what is wrong, so ``aibridge serve`` prints one clear line.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO, NamedTuple

from aibridge.errors import StoreError
from aibridge.server.store._sqlite_writer import SCHEMA

__all__ = ("DB_NAME", "JOURNAL_SIZE_LIMIT", "Files", "open_files")

DB_NAME = "aibridge.db"
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
"""After a checkpoint the WAL file is truncated back to this size, so it cannot stay large."""


class Files(NamedTuple):
    writer: sqlite3.Connection
    reader: sqlite3.Connection
    lock: IO[str]
    """Held open for the store's lifetime: closing it releases the flock."""
    was_empty: bool = False
    """``aibridge.db`` existed as a 0-byte file (SQLite would silently treat it as a new database)."""


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _if_full(data_dir: Path) -> str:
    """A hint when the file system is full: SQLite then reports only "disk I/O error"."""
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    return f" (its file system is full: {free} bytes free)" if free < 64 * 1024 else ""


def open_files(data_dir: Path) -> Files:
    """Create ``data_dir`` if needed, lock it for this process, open the database in WAL mode."""
    where = f"AI_BRIDGE_DATA_DIR={data_dir}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"{where}: exists but is not a directory") from None
    except OSError as exc:
        raise StoreError(f"{where}: cannot create the data directory: {exc.strerror}") from None
    try:
        lock = (data_dir / "aibridge.lock").open("a")
    except OSError as exc:
        raise StoreError(f"{where}: not writable: {exc.strerror}") from None
    path = data_dir / DB_NAME
    writer: sqlite3.Connection | None = None
    try:
        try:
            # One process per data dir: two would each trust their own in-memory bookkeeping.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{where}: in use by another aibridge process (aibridge.lock is held)") from None
        # SQLite takes a 0-byte file for a new database; the store says so (a truncated volume?).
        was_empty = _size(path) == 0 and not _size(path.with_name(f"{DB_NAME}-wal"))
        writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        # NORMAL in WAL: a COMMIT reaches the OS before accept() returns (safe from kill -9);
        # only a power loss or kernel crash can lose the last transactions.
        writer.execute("PRAGMA synchronous=NORMAL")
        writer.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        writer.executescript(SCHEMA)
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except BaseException as exc:
        if writer is not None:
            writer.close()
        lock.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{path}: cannot open the SQLite store: {exc}{_if_full(data_dir)}") from None
        raise
    return Files(writer, reader, lock, was_empty)
