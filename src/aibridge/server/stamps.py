"""What the bridge stamps on every envelope it did not get them for: an id and the time.

Both run once per envelope, so both are built to be cheap (see each class).
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

__all__ = ("new_id", "now_iso")


class _Ids:
    """Random (version 4) UUIDs, from a pool of OS randomness refilled every 256 ids.

    From the OS, not the ``random`` module: an agent that could predict the ids of other
    agents' envelopes could send its own under one of them, and an offline queue keeps one
    entry per id. Pooled, because one ``getrandom()`` per envelope cost more than the rest
    of building it; ``uuid.uuid4()`` cost four times as much as this.
    """

    _POOL_BYTES = 4096
    _VARIANT: ClassVar[dict[str, str]] = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)  # a child must not reuse the parent's pool

    def _forget(self) -> None:
        self._pool, self._pos = b"", 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._pool):
            self._pool, pos = os.urandom(self._POOL_BYTES), 0
        self._pos = pos + 16
        h = self._pool[pos : pos + 16].hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self._VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


new_id = _Ids()
"""A new envelope id (``xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx``)."""


class _IsoClock:
    """ISO-8601 UTC timestamps with milliseconds, formatted once per millisecond.

    At tens of thousands of envelopes a second most share their millisecond with the one before.
    """

    def __init__(self) -> None:
        self._ms = self._second = -1
        self._prefix = self._text = ""

    def __call__(self) -> str:
        ms = int(time.time() * 1000)
        if ms != self._ms:
            second, fraction = divmod(ms, 1000)
            if second != self._second:
                self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._ms, self._text = ms, f"{self._prefix}.{fraction:03d}Z"
        return self._text


now_iso = _IsoClock()
"""The current time the way the older bridge wrote it (``2025-10-14T12:00:00.000Z``)."""
