"""One agent's WebSocket as the hub sees it: writes that never wait on a slow reader.

Each send is stepped by hand: it completes at once unless uvicorn has paused the socket for
writing. A paused agent gets a bounded backlog drained by a task of its own; senders to it
wait while that backlog is long (flow control, as TCP would do), and an agent that takes none
of it for :data:`STALL_S` is cut off with :data:`CLOSE_SLOW`. So one agent that does not read
cannot stall the agents sending to it, or a broadcast to everyone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from aibridge.server.protocol import now_iso

__all__ = (
    "CLOSE_EXPIRED",
    "CLOSE_REPLACED",
    "CLOSE_RESTART",
    "CLOSE_SLOW",
    "CLOSE_UNAUTHORIZED",
    "MAX_BACKLOG",
    "SOFT_BACKLOG",
    "STALL_S",
    "Connection",
    "Send",
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
"""Unsent frames for one agent beyond which senders to it wait for it (flow control)."""
MAX_BACKLOG = 8192
"""Unsent frames for one agent beyond which it is cut off, whatever the senders do."""
STALL_S = 2.0
"""How long a sender waits for an agent that takes none of its backlog before cutting it off."""

Send = Callable[[Any], Coroutine[Any, Any, None]]


class Connection:
    """One accepted WebSocket, registered (``agent_id`` set) or not yet."""

    __slots__ = (
        "_drainer",
        "_room",
        "ack",
        "agent_id",
        "authenticated",
        "backlog",
        "closed",
        "confirm",
        "connected_at",
        "last_seen",
        "meta",
        "peer",
        "replaying",
        "role",
        "send",
    )

    def __init__(self, send: Send, peer: str, authenticated: bool) -> None:
        self.send = send
        self.peer = peer
        self.authenticated = authenticated
        self.agent_id: str | None = None
        self.role = "agent"
        self.ack = False
        self.confirm = False
        self.replaying = False
        self.closed = False
        self.meta: dict[str, Any] = {}
        self.connected_at = now_iso()
        self.last_seen = time.time()
        self.backlog: deque[str] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._room: asyncio.Event | None = None

    async def write(self, text: str, message: dict[str, Any] | None = None) -> bool:
        """Send one text frame; ``False`` when the socket is gone (the caller keeps the envelope).

        Never waits for a slow reader: when its socket buffer is full, the frame and the ones
        after it wait in a bounded backlog drained by a task of their own, so one agent that
        does not read cannot stall the agents sending to it (or a broadcast to everyone).
        """
        if self.closed:
            return False
        if self.backlog is not None:
            if len(self.backlog) >= MAX_BACKLOG:
                self._cut_off()
                return False
            self.backlog.append(text)
            return True
        sending = self.send(message or {"type": "websocket.send", "text": text})
        try:
            # Step the send by hand: it finishes at once unless the socket is paused for writing.
            waiting = sending.send(None)
        except StopIteration:
            return True
        except Exception:
            self.closed = True
            return False
        self.backlog = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._drainer = asyncio.ensure_future(self._drain_backlog(sending, waiting))
        return True

    async def wait_for_room(self) -> None:
        """Flow control: hold the sender while this agent's backlog is long; cut off a stuck agent.

        An agent that reads slowly slows its senders down (as TCP would); one that reads
        nothing for STALL_S is closed, so it cannot hold its senders (or a broadcast) longer.
        """
        room = self._room
        if self.backlog is None or room is None or len(self.backlog) < SOFT_BACKLOG:
            return
        room.clear()
        try:
            await asyncio.wait_for(room.wait(), STALL_S)
        except TimeoutError:
            self._cut_off()

    def _cut_off(self) -> None:
        if not self.closed:
            log.warning("closing %s (agent %s): it does not read its frames", self.peer, self.agent_id)
            self._start_close(CLOSE_SLOW, "too slow")
        if self._room is not None:
            self._room.set()

    async def _drain_backlog(self, sending: Coroutine[Any, Any, None], waiting: Any) -> None:
        if not await _finish(sending, waiting):
            self.closed = True
        backlog = self.backlog
        room = self._room
        while backlog and not self.closed:
            try:
                await self.send({"type": "websocket.send", "text": backlog.popleft()})
            except Exception:
                self.closed = True
            if room is not None and len(backlog) < SOFT_BACKLOG // 2:
                room.set()
        self.backlog = None
        if room is not None:
            room.set()
        self._drainer = None

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame without waiting on a peer that does not read."""
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        closing = self.send({"type": "websocket.close", "code": code, "reason": reason})
        try:
            waiting = closing.send(None)
        except BaseException:  # StopIteration (done) or the socket is already gone
            return
        task = asyncio.ensure_future(_finish(closing, waiting))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def describe(self) -> dict[str, Any]:
        """The agent's meta as ``/agents`` and ``registered`` show it."""
        return {**self.meta, "lastSeen": _iso(self.last_seen)}


_background: set[asyncio.Future[bool]] = set()


async def _finish(coro: Coroutine[Any, Any, None], waiting: Any) -> bool:
    """Drive a coroutine that suspended on ``waiting`` to its end, as its Task would have."""
    try:
        while True:
            try:
                if waiting is None:  # a bare yield (sleep(0)): just let the loop run once
                    await asyncio.sleep(0)
                else:
                    await waiting
            except BaseException as exc:
                waiting = coro.throw(exc)
            else:
                waiting = coro.send(None)
    except StopIteration:
        return True
    except Exception:
        return False


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
