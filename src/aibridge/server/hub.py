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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.connection import (
    CLOSE_EXPIRED,
    CLOSE_REPLACED,
    CLOSE_RESTART,
    CLOSE_SLOW,
    CLOSE_STORE_DOWN,
    CLOSE_UNAUTHORIZED,
    Connection,
)
from aibridge.server.events import BridgeEvents, NullEvents
from aibridge.server.protocol import PROTOCOL, Envelope, Registration, delivery_frame, encode, new_id
from aibridge.server.store.base import QueueFullError, Store
from aibridge.server.writes import Outcome, StoreWrites

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

SNAPSHOT_SIZE = 10
"""Envelopes of history sent with ``registered``."""


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
        self.writes = StoreWrites(store, self._settled)
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
        try:
            await self._welcome(conn, agent_id)
        except StoreError as exc:
            # Left half-registered the agent would stay "replaying" and miss every live envelope;
            # closed, it reconnects and replays its whole queue (at least once).
            log.warning("registering %s: %s; closing so it reconnects", agent_id, exc)
            self.record_error("internal", str(exc))
            await conn.close(CLOSE_STORE_DOWN, "store unavailable, reconnect")

    async def _welcome(self, conn: Connection, agent_id: str) -> None:
        """Send ``registered`` with a history snapshot, then replay the agent's queue."""
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

    async def ack(self, conn: Connection, envelope_ids: Sequence[str]) -> None:
        """The agent acknowledged these envelopes: they leave its queue.

        Not awaited where the store can defer it: a lost ack only redelivers (at least once),
        and the agent's next frames should not wait for a commit or a Redis round trip.
        """
        if conn.agent_id is None:
            return
        await self.writes.ack(conn.agent_id, envelope_ids)

    # -- routing ---------------------------------------------------------------------------------

    def _settled(self, outcome: Outcome) -> None:
        """How a deferred accept ended: only the events can still hear of it."""
        if isinstance(outcome, QueueFullError):
            self.events.envelope("rejected")
        elif isinstance(outcome, StoreError):
            self.record_error("internal", str(outcome))
        elif outcome.dropped:
            self.events.envelope("dropped", outcome.dropped)

    async def _delivered(self, recipient: str, envelope_id: str) -> None:
        """A fire-and-forget agent got it: it leaves the queue."""
        await self.writes.ack(recipient, (envelope_id,))

    async def route(self, envelope: Envelope, text: str, *, durable: bool = True) -> Routed:
        """Record ``envelope`` (JSON ``text``) and deliver or queue it. ``QueueFullError`` refuses it.

        With ``durable`` it returns only once the store has committed the envelope (for the
        HTTP 202 and the ``accepted`` frame); without, delivery does not wait for the commit.
        """
        routed = await self._route(envelope, text, durable)
        if durable:
            await self.writes.durable()
        return routed

    async def _route(self, envelope: Envelope, text: str, durable: bool) -> Routed:
        to = envelope["to"]
        if to is not None:
            return await self._direct(envelope, text, to, durable)
        sender = envelope["from"]
        targets = [c for a, c in self.agents.items() if a != sender]
        queue_for = [c.agent_id for c in targets if (c.ack or c.replaying) and c.agent_id is not None]
        # A replaying agent's replay must see the entry: no deferred write then.
        later = not durable and not any(c.replaying for c in targets)
        result = await self.writes.accept(envelope, text, queue_for, later)
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

    async def _direct(self, envelope: Envelope, text: str, to: str, durable: bool) -> Routed:
        local = self.agents.get(to)
        # Deferred only for a local agent that reads live: its ack follows the write in order.
        # A remote one could ack through its own process before our write lands.
        later = not durable and local is not None and not local.replaying
        if later and self.writes.defers_accepts and local is not None and not local.ack:
            return await self._hand_over(envelope, text, to, local)
        result = await self.writes.accept(envelope, text, (to,), later)
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

    async def _hand_over(self, envelope: Envelope, text: str, to: str, conn: Connection) -> Routed:
        """Redis, a live fire-and-forget recipient, a sender promised nothing: write, then record.

        Queue, write and ack would be two Redis scripts per envelope; the queue entry is only
        needed when the write fails, so the one deferred write carries it only then.
        """
        written = await conn.write(delivery_frame(text))
        self.writes.accept_later(envelope, text, () if written else (to,))
        self.messages_processed += 1
        if not written:
            self.events.envelope("queued")
            return _QUEUED
        if conn.backlog is not None:
            await conn.wait_for_room()
        self.events.envelope("delivered")
        return _DELIVERED

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
