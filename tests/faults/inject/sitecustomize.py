"""Loaded by the server under test (PYTHONPATH) to fail SQLite commits on demand.

While the file named by ``AIBRIDGE_TEST_FAIL_COMMITS`` exists, every ``COMMIT`` on every
SQLite connection of the process fails the way a full disk makes it fail
(``sqlite3.OperationalError: database or disk is full``) and leaves the transaction open, as
SQLite may; once the file is gone, commits go through again. Nothing else changes, so the
bridge runs its real code against a fault it cannot tell from the real one. Test-only: this
directory is on PYTHONPATH only for servers the fault tests start.

While the file named by ``AIBRIDGE_TEST_SLOW_READS`` exists, every ``SELECT`` takes
:data:`SLOW_READ_S` longer (a disk that stalls), to prove that reads give up instead of hanging.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

_FLAG = os.environ.get("AIBRIDGE_TEST_FAIL_COMMITS")
_SLOW = os.environ.get("AIBRIDGE_TEST_SLOW_READS")
SLOW_READ_S = 8.0


class _FailingCommits(sqlite3.Connection):
    def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        if _FLAG and sql.lstrip()[:6].upper() == "COMMIT" and os.path.exists(_FLAG):
            raise sqlite3.OperationalError("database or disk is full")
        if _SLOW and sql.lstrip()[:6].upper() == "SELECT" and os.path.exists(_SLOW):
            time.sleep(SLOW_READ_S)
        return super().execute(sql, *args, **kwargs)


if _FLAG or _SLOW:
    _connect = sqlite3.connect

    def _connect_failing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", _FailingCommits)
        return _connect(*args, **kwargs)

    sqlite3.connect = _connect_failing  # type: ignore[assignment]
