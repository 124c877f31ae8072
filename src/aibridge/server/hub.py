"""The hub: where each envelope goes (who is connected is :mod:`aibridge.server.registry`).

Routing (issue 2): ``to`` set → that agent now, else its queue; no ``to`` → every registered
agent but the sender. Every direct envelope is written to the recipient's queue first and
leaves it only by ``Store.ack``: right after the socket write for fire-and-forget agents,
when the agent acks for ``"ack": true`` agents. While an agent's queue is replayed
(:mod:`aibridge.server.registry`), new envelopes for it queue behind, so order holds.

A :class:`Backplane` (optional) lets several bridge processes share presence and delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.connection import (
    CLOSE_EXPIRED,
    CLOSE_REPLACED,
    CLOSE_RESTART,
    CLOSE_SLOW,
    CLOSE_UNAUTHORIZED,
    Connection,
    Outboxes,
)
from aibridge.server.events import Backplane, BridgeEvents, NullEvents, RemoteMessage
from aibridge.server.logs import log_ws_registered
from aibridge.server.protocol import Envelope, Registration, delivery_frame, encode
from aibridge.server.registry import Registry
from aibridge.server.store.base import QueueFullError, Store
from aibridge.server.wire import text_frame
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


@dataclass(frozen=True, slots=True)
class Routed:
    status: str
    """``delivered`` (written to the recipient's socket) or ``queued`` (kept for it)."""
    recipients: int


_DELIVERED = Routed("delivered", 1)
_QUEUED = Routed("queued", 0)


class Hub:
    """The router between connected agents; registration itself is delegated to :class:`Registry`."""

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
        self.registry = Registry(store, backplane, self.record_error)
        # The registry's own containers, shared: the router reads them on every envelope.
        self.connections = self.registry.connections
        self.agents = self.registry.agents
        self.draining = False
        self.started = time.monotonic()
        self.messages_processed = 0
        self.errors = 0
        self.last_error: str | None = None
        self._rate_samples: deque[tuple[float, int]] = deque(maxlen=13)
        self.outboxes = Outboxes()
        self.writes = StoreWrites(store, self._settled, self.outboxes.flush)
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

    # -- connections and registration (see :mod:`aibridge.server.registry`) -------------------

    @property
    def registrations(self) -> int:
        return self.registry.registrations

    def attach(self, conn: Connection) -> None:
        conn.on_taken = self._taken
        conn.on_error = self.record_error
        conn.outboxes = self.outboxes
        self.registry.attach(conn)

    async def detach(self, conn: Connection) -> None:
        await self.registry.detach(conn)

    async def register(self, conn: Connection, reg: Registration) -> None:
        """Bind ``conn`` to an agent id, answer ``registered``, then replay its queue in order."""
        await self.registry.register(conn, reg)
        if conn.agent_id is not None and not conn.closed:
            log_ws_registered(conn.agent_id, conn.role, conn.peer)

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

    def _taken(self, recipient: str, envelope_ids: Sequence[str]) -> None:
        """A fire-and-forget agent's transport took these frames: they leave its queue."""
        self.writes.ack_soon(recipient, envelope_ids)

    async def route(self, envelope: Envelope, text: str, *, durable: bool = True) -> Routed:
        """Record ``envelope`` (JSON ``text``) and deliver or queue it. ``QueueFullError`` refuses it.

        With ``durable`` it returns only once the store has committed the envelope (for the
        HTTP 202 and the ``accepted`` frame); without, delivery does not wait for the commit.
        """
        routed = await self._route(envelope, text, durable)
        if durable:
            await self.writes.durable()
        return routed

    async def route_uncommitted(
        self, envelope: Envelope, text: str
    ) -> tuple[Routed, asyncio.Future[None] | None]:
        """:meth:`route` (durable) without waiting: also the future its commit resolves, if pending.

        A confirming agent's next frames need not wait for this one's commit: its ``accepted``
        goes out when the commit lands, so one commit serves everything it sent meanwhile.
        """
        routed = await self._route(envelope, text, True)
        return routed, self.writes.commit_pending()

    def _route(self, envelope: Envelope, text: str, durable: bool) -> Coroutine[Any, Any, Routed]:
        # Hands back the coroutine rather than awaiting it: one coroutine less per envelope.
        to = envelope["to"]
        if to is not None:
            return self._direct(envelope, text, to, durable)
        return self._broadcast(envelope, text, durable)

    async def _broadcast(self, envelope: Envelope, text: str, durable: bool) -> Routed:
        sender = envelope["from"]
        # Queued for an agent that acks, replays, or is behind (its frame may wait in its
        # outbox): if it is cut off before taking the frame, the envelope is still there.
        plan = [(c, c.ack or c.replaying or c.congested) for a, c in self.agents.items() if a != sender]
        queue_for = [c.agent_id for c, held in plan if held and c.agent_id is not None]
        # A replaying agent's replay must see the entry: no deferred write then.
        later = not durable and not any(c.replaying for c, _ in plan)
        result = await self.writes.accept(envelope, text, queue_for, later)
        self.messages_processed += 1
        if result.dropped:
            self.events.envelope("dropped", result.dropped)
        frame = text_frame(delivery_frame(text).encode())  # one frame, written to all of them
        envelope_id = envelope["id"]
        delivered = 0
        crowded = False
        for conn, held in plan:
            if conn.replaying:
                continue
            ack_id = envelope_id if held and not conn.ack else None
            if conn.send_frame(frame, ack_id, kept=held):
                delivered += 1
                crowded = crowded or conn.crowded
        if crowded:
            for conn, _ in plan:
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
        if later and self.writes.defers_accepts and local is not None and local.reads_live:
            return await self._hand_over(envelope, text, to, local)
        result = await self.writes.accept(envelope, text, (to,), later)
        self.messages_processed += 1
        if result.dropped:
            self.events.envelope("dropped", result.dropped)
        target = self.agents.get(to)
        if target is not None:
            if not target.replaying:
                behind = target.congested
                # A fire-and-forget agent's entry leaves its queue once the transport has the frame.
                ack_id = None if target.ack else envelope["id"]
                if target.send_frame(text_frame(delivery_frame(text).encode()), ack_id):
                    if target.crowded:
                        await target.wait_for_room()
                    if not behind:
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
        needed when the write fails, so the one deferred write carries it only then. The frame
        is written at once, so "written" means the transport has it.
        """
        written = conn.send_frame(text_frame(delivery_frame(text).encode()))
        if written:
            conn.flush_now()
            written = not conn.closed and conn.backlog == 0
        self.writes.accept_later(envelope, text, () if written else (to,))
        self.messages_processed += 1
        if not written:
            self.events.envelope("queued")
            return _QUEUED
        self.events.envelope("delivered")
        return _DELIVERED

    async def on_remote(self, message: RemoteMessage) -> None:
        """What another process published: deliver to our agents, or let go of a claimed id."""
        if message.kind == "claimed":
            await self.registry.release_claimed(message.agent_id)
            return
        envelope = message.envelope
        frame = text_frame(delivery_frame(encode(envelope)).encode())
        to = envelope.get("to")
        if to is None:
            # Nothing holds a broadcast for a fire-and-forget agent: written even while it is behind.
            for agent_id, conn in list(self.agents.items()):
                if agent_id != message.exclude_from and not conn.replaying:
                    conn.send_frame(frame, kept=conn.ack)
            return
        target = self.agents.get(to)
        # A replaying agent picks it up from the shared queue; others ack it once it is taken.
        if target is not None and not target.replaying:
            target.send_frame(frame, None if target.ack else envelope["id"])

    # -- expiry ----------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Close sockets silent past the TTL (registered or not) and drop abandoned queues."""
        cutoff = time.time() - self.config.client_ttl_ms / 1000
        for conn in [c for c in self.connections if c.last_seen < cutoff]:
            log.info("closing idle connection %s (agent %s)", conn.peer, conn.agent_id)
            await self.registry.unregister(conn)
            await conn.close(CLOSE_EXPIRED, "idle timeout")
        await self.store.expire_queues(self.config.queue_ttl_ms, keep=list(self.agents))
