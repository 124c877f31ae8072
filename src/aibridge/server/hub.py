"""The hub: who is connected, and where each envelope goes.

Routing (issue 2): ``to`` set → that agent now, else its queue; no ``to`` → every registered
agent but the sender. Every direct envelope is written to the recipient's queue first and
leaves it only by ``Store.ack``: right after the socket write for fire-and-forget agents,
when the agent acks for ``"ack": true`` agents. Replay after ``registered`` drains the queue
in order while new envelopes for that agent keep queueing behind it, so order holds.

Duplicate ``clientId``: the newest registration wins; the older socket is closed with
:data:`CLOSE_REPLACED`, and only the socket an entry points to can remove it (fault B8).

A :class:`Backplane` (optional) lets several bridge processes share presence and delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aibridge.server.config import BridgeConfig
from aibridge.server.events import BridgeEvents, NullEvents
from aibridge.server.protocol import PROTOCOL, Envelope, Registration, delivery_frame, encode, new_id, now_iso
from aibridge.server.store.base import AcceptResult, Store

__all__ = (
    "CLOSE_EXPIRED",
    "CLOSE_REPLACED",
    "CLOSE_RESTART",
    "CLOSE_SLOW",
    "CLOSE_UNAUTHORIZED",
    "Backplane",
    "Connection",
    "Hub",
    "RemoteMessage",
    "Routed",
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
SOFT_BACKLOG = 1024
"""Unsent frames for one agent beyond which senders to it wait for it (flow control)."""
MAX_BACKLOG = 8192
"""Unsent frames for one agent beyond which it is cut off, whatever the senders do."""
STALL_S = 2.0
"""How long a sender waits for an agent that takes none of its backlog before cutting it off."""

SNAPSHOT_SIZE = 10
"""Envelopes of history sent with ``registered``."""

Send = Callable[[Any], Coroutine[Any, Any, None]]


class Backplane(Protocol):
    """Cross-process presence and delivery (``backplane.RedisBackplane`` implements it).

    The hub announces agents it holds and withdraws them when they leave (the backplane keeps
    presence fresh itself), asks where an absent recipient is, and publishes to the process
    holding it. What other processes publish comes back through :meth:`Hub.on_remote`, which
    the runner passes to the backplane's ``start``.
    """

    @property
    def healthy(self) -> bool: ...
    async def announce(self, agent_id: str) -> None: ...
    async def withdraw(self, agent_id: str) -> None: ...
    async def locate(self, agent_id: str) -> str | None: ...
    async def publish_direct(self, instance: str, envelope: Envelope) -> bool: ...
    async def publish_broadcast(self, envelope: Envelope, exclude_from: str | None) -> None: ...


class RemoteMessage(Protocol):
    """What a backplane hands the hub: ``direct``/``broadcast`` envelopes, or a ``claimed`` id."""

    @property
    def kind(self) -> str: ...
    @property
    def envelope(self) -> Envelope: ...
    @property
    def exclude_from(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...


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


@dataclass(frozen=True, slots=True)
class Routed:
    status: str
    """``delivered`` (written to the recipient's socket) or ``queued`` (kept for it)."""
    recipients: int


_DELIVERED = Routed("delivered", 1)
_QUEUED = Routed("queued", 0)


class Hub:
    """Registry of connected agents and the router between them."""

    def __init__(
        self,
        config: BridgeConfig,
        store: Store,
        events: BridgeEvents | None = None,
        backplane: Backplane | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.events: BridgeEvents = events or NullEvents()
        self.backplane = backplane
        self.connections: set[Connection] = set()
        self.agents: dict[str, Connection] = {}
        self.draining = False
        self.started = time.monotonic()
        self.messages_processed = 0
        self.registrations = 0
        self.errors = 0
        self.last_error: str | None = None
        self._rate_samples: deque[tuple[float, int]] = deque(maxlen=13)
        # Stores that can record now and commit later (SQLite's group commit) let the router
        # deliver without waiting for a commit; only callers that promise durability wait.
        self._accept_nowait: Callable[..., AcceptResult] | None = getattr(store, "accept_nowait", None)
        self._ack_nowait: Callable[[str, Sequence[str]], int] | None = getattr(store, "ack_nowait", None)
        self._durable: Callable[[], Awaitable[None]] | None = getattr(store, "durable", None)
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aibridge-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self.config.cleanup_interval_ms / 1000
        next_sweep = time.monotonic() + interval
        while True:
            now = time.monotonic()
            self._rate_samples.append((now, self.messages_processed))
            if now >= next_sweep:
                next_sweep = now + interval
                try:
                    await self.sweep()
                except Exception:
                    log.exception("cleanup sweep failed")
                    self.record_error("internal", "cleanup sweep failed")
            await asyncio.sleep(min(5.0, max(0.05, next_sweep - time.monotonic())))

    async def drain(self) -> None:
        """Refuse new agents and ask every connected one to reconnect elsewhere (1012)."""
        self.draining = True
        await asyncio.gather(*(c.close(CLOSE_RESTART, "service restart") for c in list(self.connections)))

    def record_error(self, kind: str, message: str) -> None:
        self.errors += 1
        self.last_error = message
        self.events.error(kind)

    def messages_per_second(self) -> float:
        """Envelopes per second over roughly the last minute (not a lifetime average, B18)."""
        if not self._rate_samples:
            return 0.0
        then, count = self._rate_samples[0]
        elapsed = time.monotonic() - then
        return round((self.messages_processed - count) / elapsed, 2) if elapsed > 0 else 0.0

    # -- connections and registration -----------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        self.connections.add(conn)

    async def detach(self, conn: Connection) -> None:
        self.connections.discard(conn)
        conn.closed = True
        await self._unregister(conn)

    async def _unregister(self, conn: Connection) -> None:
        agent_id = conn.agent_id
        if agent_id is not None and self.agents.get(agent_id) is conn:
            del self.agents[agent_id]
            if self.backplane is not None:
                await self.backplane.withdraw(agent_id)

    async def register(self, conn: Connection, reg: Registration) -> None:
        """Bind ``conn`` to an agent id, answer ``registered``, then replay its queue in order."""
        agent_id = reg.client_id or new_id()
        if conn.agent_id is not None and conn.agent_id != agent_id:
            await self._unregister(conn)  # re-registering under a new name leaves no stale entry
        conn.agent_id = agent_id
        conn.role = reg.role
        conn.ack = reg.ack
        conn.confirm = reg.confirm
        conn.replaying = True
        conn.meta = {
            "id": agent_id,
            "role": reg.role,
            "labels": reg.labels,
            "tools": reg.tools,
            "intents": reg.intents,
            "maxConcurrentTasks": reg.max_concurrent_tasks,
            "ack": reg.ack,
            "connectedAt": conn.connected_at,
        }
        previous = self.agents.get(agent_id)
        self.agents[agent_id] = conn
        self.registrations += 1
        if previous is not None and previous is not conn:
            await previous.close(CLOSE_REPLACED, "clientId registered by a newer connection")
        if self.backplane is not None:
            await self.backplane.announce(agent_id)
        # Only what this agent could have received: broadcasts and its own direct messages
        # (the older bridge showed everyone's direct messages to every newcomer, B16).
        recent = await self.store.history(SNAPSHOT_SIZE * 5)
        visible = [e for e in recent if e.get("to") in (None, agent_id) or e.get("from") == agent_id]
        registered = {
            "type": "registered",
            "protocol": PROTOCOL,
            "client": conn.describe(),
            "history": visible[-SNAPSHOT_SIZE:],
        }
        if await conn.write(encode(registered)):
            await self._replay(conn, agent_id)

    async def _replay(self, conn: Connection, agent_id: str) -> None:
        sent: set[str] = set()
        while self.agents.get(agent_id) is conn:
            fresh = [e for e in await self.store.pending(agent_id) if e["id"] not in sent]
            if not fresh:
                conn.replaying = False  # no await since pending(): nothing can slip in between
                return
            for envelope in fresh:
                if not await conn.write(delivery_frame(encode(envelope))):
                    return
                sent.add(envelope["id"])
            if not conn.ack:
                await self.store.ack(agent_id, [e["id"] for e in fresh])
        conn.replaying = False

    async def ack(self, conn: Connection, envelope_ids: Sequence[str]) -> int:
        if conn.agent_id is None:
            return 0
        return await self.store.ack(conn.agent_id, envelope_ids)

    # -- routing ---------------------------------------------------------------------------------

    async def _accept(self, envelope: Envelope, text: str, queue_for: Sequence[str]) -> AcceptResult:
        if self._accept_nowait is not None:
            return self._accept_nowait(envelope, len(text), queue_for, text=text)
        return await self.store.accept(envelope, len(text), queue_for)

    async def _delivered(self, recipient: str, envelope_id: str) -> None:
        """A fire-and-forget agent got it: it leaves the queue."""
        if self._ack_nowait is not None:
            self._ack_nowait(recipient, (envelope_id,))
        else:
            await self.store.ack(recipient, (envelope_id,))

    async def route(self, envelope: Envelope, text: str, *, durable: bool = True) -> Routed:
        """Record ``envelope`` (JSON ``text``) and deliver or queue it. ``QueueFullError`` refuses it.

        With ``durable`` it returns only once the store has committed the envelope (for the
        HTTP 202 and the ``accepted`` frame); without, delivery does not wait for the commit.
        """
        routed = await self._route(envelope, text)
        if durable and self._durable is not None:
            await self._durable()
        return routed

    async def _route(self, envelope: Envelope, text: str) -> Routed:
        to = envelope["to"]
        if to is not None:
            return await self._direct(envelope, text, to)
        sender = envelope["from"]
        targets = [c for a, c in self.agents.items() if a != sender]
        queue_for = [c.agent_id for c in targets if (c.ack or c.replaying) and c.agent_id is not None]
        result = await self._accept(envelope, text, queue_for)
        self.messages_processed += 1
        if result.dropped:
            self.events.envelope("dropped", result.dropped)
        frame = delivery_frame(text)
        message = {"type": "websocket.send", "text": frame}  # one ASGI message for all of them
        delivered = 0
        for conn in targets:
            if not conn.replaying and await conn.write(frame, message):
                delivered += 1
        for conn in targets:
            if conn.backlog is not None:
                await conn.wait_for_room()
        if self.backplane is not None:
            await self.backplane.publish_broadcast(envelope, sender)
        self.events.envelope("broadcast")
        return Routed("delivered", delivered)

    async def _direct(self, envelope: Envelope, text: str, to: str) -> Routed:
        result = await self._accept(envelope, text, (to,))
        self.messages_processed += 1
        if result.dropped:
            self.events.envelope("dropped", result.dropped)
        target = self.agents.get(to)
        if target is not None:
            if not target.replaying and await target.write(delivery_frame(text)):
                if not target.ack:
                    await self._delivered(to, envelope["id"])
                if target.backlog is not None:
                    await target.wait_for_room()
                self.events.envelope("delivered")
                return _DELIVERED
        elif self.backplane is not None:
            instance = await self.backplane.locate(to)
            # The shared store holds it until the other process's agent takes it.
            if instance is not None and await self.backplane.publish_direct(instance, envelope):
                self.events.envelope("delivered")
                return _DELIVERED
        self.events.envelope("queued")
        return _QUEUED

    async def on_remote(self, message: RemoteMessage) -> None:
        """What another process published: deliver to our agents, or let go of a claimed id."""
        if message.kind == "claimed":
            conn = self.agents.pop(message.agent_id or "", None)
            if conn is not None:  # newest registration wins across machines too
                await conn.close(CLOSE_REPLACED, "clientId registered by a newer connection")
            return
        envelope = message.envelope
        frame = delivery_frame(encode(envelope))
        to = envelope.get("to")
        if to is None:
            for agent_id, conn in list(self.agents.items()):
                if agent_id != message.exclude_from and not conn.replaying:
                    await conn.write(frame)
            return
        target = self.agents.get(to)
        # A replaying agent picks it up from the shared queue; others ack it as delivered.
        if target is not None and not target.replaying and await target.write(frame) and not target.ack:
            await self._delivered(to, envelope["id"])

    # -- expiry ----------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Close sockets silent past the TTL (registered or not) and drop abandoned queues."""
        cutoff = time.time() - self.config.client_ttl_ms / 1000
        for conn in [c for c in self.connections if c.last_seen < cutoff]:
            log.info("closing idle connection %s (agent %s)", conn.peer, conn.agent_id)
            await self._unregister(conn)
            await conn.close(CLOSE_EXPIRED, "idle timeout")
        await self.store.expire_queues(self.config.queue_ttl_ms, keep=list(self.agents))
