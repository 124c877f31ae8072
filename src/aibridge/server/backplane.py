"""The Redis backplane: several bridge machines act as one.

* **Presence**: ``{aibridge}:presence:<agent>`` names the instance holding that agent, with an
  expiry; the backplane refreshes its own agents every ``ttl/3`` (and right after a
  reconnect, since a restarted Redis may have forgotten them). A machine that dies simply
  stops refreshing, and its agents' records expire.
* **Delivery**: each instance subscribes to its own channel (direct envelopes) and to one
  shared channel (broadcasts and presence claims). Pub/sub is fire-and-forget, so the
  at-least-once promise stays with the shared store: the hub queues a direct envelope in
  Redis *before* publishing it, and the receiving hub acks it only after delivery, so
  nothing acknowledged is lost if either machine dies.
* **Publishing**: PUBLISHes go out as pipelines, one in flight at a time, so a busy bridge
  sends many per round trip and they reach Redis in the order they were made. A broadcast
  does not wait for its reply; a direct publish does (its receiver count says "delivered").
* **Health**: ``healthy`` is false while Redis is unreachable; a listener task reconnects
  with capped exponential backoff, and ``/health`` reports ``degraded`` meanwhile.

Calls never raise because Redis is down: ``locate`` answers ``None`` and ``publish_direct``
``False`` (the envelope stays queued), announcements are replayed on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store.base import Envelope
from aibridge.server.store.redis import redact_url

__all__ = ("BackplaneMessage", "RedisBackplane", "default_instance_id")

log = logging.getLogger("aibridge.backplane")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# Refresh only what is still ours (or free): a newer claim by another instance must win.
_REFRESH = """
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner and owner ~= ARGV[1] then
    table.insert(lost, i)
    table.insert(lost, owner)
  else
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  end
end
return lost
"""
_REDIS_DOWN = (RedisError, OSError)
_WITHDRAW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass(frozen=True, slots=True)
class BackplaneMessage:
    """What the hub's handler receives from another instance."""

    kind: Literal["direct", "broadcast", "claimed"]
    origin: str
    """The instance that sent it."""
    envelope: Envelope = field(default_factory=dict)
    exclude_from: str | None = None
    """Broadcast: the sender, who gets no copy."""
    agent_id: str | None = None
    """Claimed: this agent registered on ``origin``; close the local (older) connection."""


Handler = Callable[[BackplaneMessage], Awaitable[None]]


def default_instance_id(config: BridgeConfig, environ: Mapping[str, str] = os.environ) -> str:
    """``AI_BRIDGE_INSTANCE_ID``, else ``FLY_MACHINE_ID``, else ``<hostname>-<pid>`` (unique per process)."""
    return config.instance_id or environ.get("FLY_MACHINE_ID") or f"{socket.gethostname()}-{os.getpid()}"


class RedisBackplane:
    """Presence and cross-instance delivery over Redis pub/sub (see the module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        instance_id: str | None = None,
        presence_ttl_ms: int = 30_000,
        prefix: str = "aibridge",
        max_backoff_s: float = 2.0,
    ) -> None:
        if not config.redis_url:
            raise StoreError("the Redis backplane needs AI_BRIDGE_REDIS_URL")
        self.instance_id = instance_id or default_instance_id(config)
        self._url = redact_url(config.redis_url)
        pool = aioredis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=16,
            timeout=5,
            socket_connect_timeout=3,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),  # the listener reconnects itself, with backoff
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._ttl_ms = presence_ttl_ms
        self._max_backoff = max_backoff_s
        self._presence = f"{{{prefix}}}:presence:"
        self._direct_channel = f"{prefix}:instance:{self.instance_id}"
        self._shared_channel = f"{prefix}:all"
        self._channel_prefix = f"{prefix}:instance:"
        self._refresh = self._redis.register_script(_REFRESH)
        self._withdraw = self._redis.register_script(_WITHDRAW)
        self._local: set[str] = set()
        self._handler: Handler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._refresh_ok = True
        self._outbox: list[tuple[str, bytes, asyncio.Future[int]]] = []
        self._publisher: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """Subscribed and the last presence refresh reached Redis."""
        return self._subscribed.is_set() and self._refresh_ok

    async def start(self, handler: Handler) -> None:
        """Check Redis answers (else ``StoreError`` naming the URL), then listen and refresh."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise StoreError(f"cannot reach Redis at {self._url}: {exc}") from None
        self._handler = handler
        self._tasks = [
            asyncio.create_task(self._listen(), name="aibridge-backplane-listen"),
            asyncio.create_task(self._refresh_forever(), name="aibridge-backplane-refresh"),
        ]
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def stop(self) -> None:
        """Stop listening and withdraw this instance's presence records (best effort)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._subscribed.clear()
        if self._publisher is not None:
            await self._publisher  # broadcasts made before the drain still go out
        for agent_id in list(self._local):
            await self.withdraw(agent_id)
        await self._redis.aclose()

    async def announce(self, agent_id: str) -> None:
        """``agent_id`` is connected here now; the newest announcement wins over older ones elsewhere."""
        self._local.add(agent_id)
        claim = _encode({"k": "claimed", "o": self.instance_id, "a": agent_id})
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._presence + agent_id, self.instance_id, px=self._ttl_ms)
                pipe.publish(self._shared_channel, claim)
                await pipe.execute()
        except _REDIS_DOWN as exc:
            self._degraded("announce", exc)  # replayed by the refresh after reconnecting

    async def withdraw(self, agent_id: str) -> None:
        """``agent_id`` left this instance; its record goes unless another instance claimed it since."""
        self._local.discard(agent_id)
        try:
            await self._withdraw(keys=[self._presence + agent_id], args=[self.instance_id])
        except _REDIS_DOWN as exc:
            self._degraded("withdraw", exc)  # the record expires on its own

    async def locate(self, agent_id: str) -> str | None:
        """The instance holding ``agent_id``, or ``None`` (unknown, expired, or Redis unreachable)."""
        try:
            owner = await self._redis.get(self._presence + agent_id)
        except _REDIS_DOWN as exc:
            self._degraded("locate", exc)
            return None
        return owner.decode() if isinstance(owner, bytes) else None

    async def publish_direct(self, instance: str, envelope: Envelope) -> bool:
        """Hand ``envelope`` to ``instance``'s hub; ``False`` if nobody there is listening."""
        message = _encode({"k": "direct", "o": self.instance_id, "e": envelope})
        return await self._publish(self._channel_prefix + instance, message) > 0

    async def publish_broadcast(self, envelope: Envelope, exclude_from: str | None) -> None:
        """Send ``envelope`` to the agents of every other instance, except ``exclude_from``."""
        message = _encode({"k": "broadcast", "o": self.instance_id, "x": exclude_from, "e": envelope})
        self._publish(self._shared_channel, message)  # not awaited: nothing to learn from it

    def _publish(self, channel: str, message: bytes) -> asyncio.Future[int]:
        """Queue a PUBLISH for the next pipeline; the future gets its receiver count (0 if Redis is down)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._outbox.append((channel, message, future))
        if self._publisher is None:
            self._publisher = loop.create_task(self._send_published(), name="aibridge-backplane-publish")
        return future

    async def _send_published(self) -> None:
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, message, _ in batch:
                            pipe.publish(channel, message)
                        counts = [int(n) for n in await pipe.execute()]
                except _REDIS_DOWN as exc:
                    self._degraded("publish", exc)
                    counts = [0] * len(batch)
                for (*_, future), count in zip(batch, counts, strict=True):
                    if not future.done():
                        future.set_result(count)
        finally:
            self._publisher = None

    def _degraded(self, what: str, exc: Exception) -> None:
        self._refresh_ok = False
        log.warning("backplane %s failed, Redis at %s unreachable: %s", what, self._url, exc)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._direct_channel, self._shared_channel)
                await self._refresh_presence()  # Redis may have restarted empty
                self._subscribed.set()
                delay = 0.05
                log.info("backplane subscribed on Redis at %s as %s", self._url, self.instance_id)
                async for message in pubsub.listen():
                    await self._dispatch(message["data"])
            except _REDIS_DOWN as exc:
                if self._subscribed.is_set():
                    log.warning("backplane lost Redis at %s: %s; reconnecting", self._url, exc)
                self._subscribed.clear()
            finally:
                with contextlib.suppress(*_REDIS_DOWN):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._max_backoff)

    async def _dispatch(self, data: bytes) -> None:
        try:
            raw = _decode(data)
            origin = raw["o"]
            if origin == self.instance_id:
                return  # our own broadcast or claim: the local hub already handled it
            if raw["k"] == "claimed":
                if raw["a"] not in self._local:
                    return
                self._local.discard(raw["a"])
                message = BackplaneMessage("claimed", origin, agent_id=raw["a"])
            else:
                message = BackplaneMessage(raw["k"], origin, raw["e"], exclude_from=raw.get("x"))
            assert self._handler is not None
            await self._handler(message)
        except Exception:
            # One bad message or handler failure must not stop cross-instance delivery.
            log.exception("backplane message from Redis not handled")

    async def _refresh_presence(self) -> None:
        agents = list(self._local)
        if agents:
            lost = await self._refresh(
                keys=[self._presence + a for a in agents], args=[self.instance_id, self._ttl_ms]
            )
            for index, owner in zip(lost[::2], lost[1::2], strict=True):
                agent_id = agents[int(index) - 1]
                self._local.discard(agent_id)
                if self._handler is not None:
                    await self._handler(BackplaneMessage("claimed", owner.decode(), agent_id=agent_id))
        else:
            await self._redis.ping()
        self._refresh_ok = True

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._refresh_presence()
            except _REDIS_DOWN as exc:
                self._degraded("presence refresh", exc)
