"""One agent's WebSocket as the hub sees it: frames written per loop pass, flow control, cut-off.

Frames for an agent collect in its outbox and reach the transport in one write per loop pass
(one syscall for everything the hub routed to it in that pass). A frame is *taken* when the
transport has it; only then does a fire-and-forget envelope leave the agent's queue (its
``ack_id``, acked through ``on_taken``). While the peer is behind (the transport's buffer is
over its high-water mark) frames wait in the outbox: senders to this agent wait while the
outbox is long (flow control, as TCP would do), and an agent that takes nothing for
:data:`STALL_S` while frames wait is closed with :data:`CLOSE_SLOW`. What it never took stays
queued in the store and is replayed when it registers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aibridge.server.protocol import now_iso
from aibridge.server.wire import Wire, text_frame

__all__ = (
    "CLOSE_EXPIRED",
    "CLOSE_REPLACED",
    "CLOSE_RESTART",
    "CLOSE_SLOW",
    "CLOSE_UNAUTHORIZED",
    "MAX_BACKLOG",
    "MAX_BACKLOG_BYTES",
    "SOFT_BACKLOG",
    "SOFT_BACKLOG_BYTES",
    "STALL_S",
    "Connection",
    "Outboxes",
)

log = logging.getLogger("aibridge.hub")

CLOSE_UNAUTHORIZED = 1008
CLOSE_RESTART = 1012
CLOSE_REPLACED = 4409
"""The clientId was registered again on a newer connection (mirrors HTTP 409 Conflict)."""
CLOSE_EXPIRED = 4408
"""Nothing arrived from the agent within AI_BRIDGE_CLIENT_TTL_MS (mirrors HTTP 408)."""

CLOSE_SLOW = 1013
"""The agent stopped reading its frames ("try again later")."""
CLOSE_STORE_DOWN = 1013
"""The store could not be read while registering (Redis lost): reconnect and replay later."""
SOFT_BACKLOG = 1024
"""Frames waiting for one agent beyond which senders to it wait for it (flow control)."""
SOFT_BACKLOG_BYTES = 4 << 20
MAX_BACKLOG = 8192
"""Frames waiting for one agent beyond which it is cut off, whatever the senders do."""
MAX_BACKLOG_BYTES = 32 << 20
STALL_S = 2.0
"""How long an agent may take nothing while frames wait for it before it is cut off."""
CHUNK_BYTES = 256 << 10
"""At most this much per transport write once the peer has fallen behind."""

Taken = Callable[[str, Sequence[str]], None]
"""``on_taken(agent_id, envelope_ids)``: these frames reached the transport."""
OnError = Callable[[str, str], None]


def _ignore_taken(agent_id: str, envelope_ids: Sequence[str]) -> None:
    return None


def _ignore_error(kind: str, message: str) -> None:
    return None


class Outboxes:
    """The connections whose frames wait for this loop pass's write; :meth:`flush` writes them now.

    The SQLite store calls it right before a commit: the frames of fire-and-forget agents that
    their transports take then are acked in the same batch that queues them, so those queue
    rows are written neither way (otherwise they were about a third of every commit's work).
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: set[Connection] = set()

    def add(self, conn: Connection) -> None:
        self._waiting.add(conn)

    def discard(self, conn: Connection) -> None:
        self._waiting.discard(conn)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, set()
        for conn in waiting:
            conn.flush_now()


class Connection:
    """One accepted WebSocket, registered (``agent_id`` set) or not yet."""

    __slots__ = (
        "_flushing",
        "_force",
        "_ids",
        "_loop",
        "_out",
        "_out_bytes",
        "_room",
        "_stall",
        "_stall_mark",
        "_taken_total",
        "_wrote_error",
        "ack",
        "agent_id",
        "authenticated",
        "closed",
        "confirm",
        "connected_at",
        "last_seen",
        "meta",
        "on_error",
        "on_taken",
        "outboxes",
        "peer",
        "replaying",
        "role",
        "unconfirmed",
        "wire",
    )

    def __init__(self, wire: Wire, peer: str, authenticated: bool) -> None:
        self.peer = peer
        self.authenticated = authenticated
        self.wire = wire
        self.agent_id: str | None = None
        self.role = "agent"
        self.ack = False
        self.confirm = False
        self.replaying = False
        self.closed = False
        self.unconfirmed = 0
        """Envelopes of a confirming agent whose ``accepted`` waits for their commit."""
        self.meta: dict[str, Any] = {}
        self.connected_at = now_iso()
        self.last_seen = time.time()
        self.on_taken: Taken = _ignore_taken
        self.on_error: OnError = _ignore_error
        self.outboxes: Outboxes | None = None
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._ids: list[str | None] = []
        self._out_bytes = 0
        self._flushing: asyncio.Handle | None = None
        self._force = False
        self._room: asyncio.Event | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._stall_mark = (0, 0)
        self._taken_total = 0
        self._wrote_error = False
        wire.listener = self

    # -- writing -----------------------------------------------------------------------------

    @property
    def congested(self) -> bool:
        """The peer is behind: a frame written now waits in the outbox, not in the transport."""
        return not self.wire.writable_now()

    @property
    def reads_live(self) -> bool:
        """A fire-and-forget agent that is not behind: what is written to it now, it takes now."""
        return not self.ack and self.wire.writable_now()

    @property
    def backlog(self) -> int:
        """Frames written but not yet taken by the transport."""
        return len(self._out)

    @property
    def crowded(self) -> bool:
        """Enough waits for this agent that its senders should wait too (:meth:`wait_for_room`)."""
        return len(self._out) >= SOFT_BACKLOG or self._out_bytes >= SOFT_BACKLOG_BYTES

    def send_frame(self, frame: bytes, ack_id: str | None = None, *, kept: bool = True) -> bool:
        """Queue one ready-made frame (:func:`text_frame`) for this loop pass; False once closed.

        ``ack_id``: the store holds this envelope for the agent until the frame is taken (then
        ``on_taken`` hears it). ``kept=False``: nothing holds it (a broadcast to a
        fire-and-forget agent), so it goes to the transport even while the peer is behind.
        """
        if self.closed:
            return False
        self._out.append(frame)
        self._ids.append(ack_id)
        self._out_bytes += len(frame)
        if not kept:
            self._force = True
        if len(self._out) > MAX_BACKLOG or self._out_bytes > MAX_BACKLOG_BYTES:
            self._cut_off(f"over {MAX_BACKLOG} frames or {MAX_BACKLOG_BYTES >> 20} MiB wait for it")
            return False
        if self._flushing is None:
            self._flushing = self._loop.call_soon(self._flush)
            if self.outboxes is not None:
                self.outboxes.add(self)
        return True

    def send_text(self, text: str) -> bool:
        """Queue one text frame (a reply: ``registered``, ``accepted``, ``error``)."""
        return self.send_frame(text_frame(text.encode()))

    async def write(self, text: str) -> bool:
        """:meth:`send_text` for callers that await (the frame reaches the transport this pass)."""
        return self.send_text(text)

    async def wait_for_room(self) -> None:
        """Flow control: hold the sender while this agent's outbox is long.

        An agent that reads slowly slows its senders down (as TCP would); one that takes nothing
        for STALL_S is closed (the stall timer), which releases its senders too.
        """
        if self.closed or not self.crowded:
            return
        room = self._room
        if room is None:
            room = self._room = asyncio.Event()
        room.clear()
        await room.wait()

    def _flush(self) -> None:
        self._flushing = None
        if self.outboxes is not None:
            self.outboxes.discard(self)
        wire = self.wire
        if self.closed or not self._out:
            return
        try:
            self._write_out(wire)
        except Exception as exc:  # never silently: the frames stay queued in the store
            self._report(exc)
            self._drop_out()
            self._start_close(1011, "internal error")
            return
        if self._out:
            self._arm_stall(wire)
        elif self._stall is not None:
            self._stall.cancel()
            self._stall = None
        room = self._room
        roomy = len(self._out) < SOFT_BACKLOG // 2 and self._out_bytes < SOFT_BACKLOG_BYTES // 2
        if room is not None and roomy:
            room.set()

    def _write_out(self, wire: Wire) -> None:
        """Give the transport what it can take: all of it while writable, in chunks once behind."""
        out = self._out
        if self._force or (wire.writable_now() and self._out_bytes <= CHUNK_BYTES):
            self._force = False
            count = len(out)
            data = out[0] if count == 1 else b"".join(out)
            if not wire.write_frames(data):
                self._gone()
                return
            self._taken(count)
            return
        while out and wire.writable_now():
            count, size = 0, 0
            while count < len(out) and size < CHUNK_BYTES:
                size += len(out[count])
                count += 1
            if not wire.write_frames(b"".join(out[:count])):
                self._gone()
                return
            self._taken(count)

    def _taken(self, count: int) -> None:
        self._taken_total += count
        out, ids = self._out, self._ids
        if count == len(out):
            taken = [i for i in ids if i is not None]
            out.clear()
            ids.clear()
            self._out_bytes = 0
        else:
            taken = [i for i in ids[:count] if i is not None]
            self._out_bytes -= sum(len(f) for f in out[:count])
            del out[:count]
            del ids[:count]
        if taken and self.agent_id is not None:
            self.on_taken(self.agent_id, taken)

    def flush_now(self) -> None:
        """Write what waits at once (when the caller needs to know the transport has it)."""
        if self._flushing is not None:
            self._flushing.cancel()
        self._flush()

    def on_writable(self) -> None:
        """The wire drained below its low-water mark: write what waits."""
        if self._out and self._flushing is None and not self.closed:
            self._flushing = self._loop.call_soon(self._flush)

    def on_lost(self) -> None:
        """The socket is gone: what it never took stays queued in the store."""
        self._gone()

    def _gone(self) -> None:
        self.closed = True
        self._drop_out()
        self._release()

    def _drop_out(self) -> None:
        self._out.clear()
        self._ids.clear()
        self._out_bytes = 0

    def _release(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self._room is not None:
            self._room.set()

    def _arm_stall(self, wire: Wire) -> None:
        if self._stall is None:
            self._stall_mark = (self._taken_total, wire.buffered())
            self._stall = self._loop.call_later(STALL_S, self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        wire = self.wire
        if self.closed or not self._out:
            return
        if wire.writable_now():
            self.on_writable()
            return
        taken, buffered = self._stall_mark
        if self._taken_total > taken or wire.buffered() < buffered:  # it took some: slow, not stuck
            self._arm_stall(wire)
            return
        self._cut_off(f"it took nothing for {STALL_S:g} s while {len(self._out)} frames waited")

    def _cut_off(self, why: str) -> None:
        if self.closed:
            return
        log.warning("closing %s (agent %s) with %d: %s", self.peer, self.agent_id, CLOSE_SLOW, why)
        self.on_error("slow_reader", why)
        self._drop_out()  # never taken: still queued in the store (see send_frame)
        self._start_close(CLOSE_SLOW, "too slow")

    def _report(self, exc: Exception) -> None:
        if not self._wrote_error:
            self._wrote_error = True
            log.error("writing to %s (agent %s) failed", self.peer, self.agent_id, exc_info=exc)
        self.on_error("internal", f"writing to {self.peer} failed: {exc!r}")

    # -- closing -----------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Send what waits, then a close frame, without waiting on a peer that does not read."""
        if not self.closed and self._out:
            self._force = True
            self._flush()
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._release()
        try:
            self.wire.close_now(code, reason)
        except Exception as exc:
            self._report(exc)

    def describe(self) -> dict[str, Any]:
        """The agent's meta as ``/agents`` and ``registered`` show it."""
        return {**self.meta, "lastSeen": _iso(self.last_seen)}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
