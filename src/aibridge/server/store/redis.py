"""The shared store for several machines: history, queues and tasks in Redis (redis-py asyncio).

Every write is one Lua script (see :mod:`._redis_scripts`), so a cap check and its write
are atomic even with many bridge processes writing at once. Writes go out as pipelines, one
in flight at a time: what is written while one is on its way leaves in the next (one round
trip for all of them, as the SQLite store groups its commits), and writes reach Redis in the
order they were made, so an ack never overtakes its accept. ``accept_later``/``ack_later``
queue a write without waiting for its reply (the hub uses them for senders promised nothing).
``stats()`` is a snapshot: every script returns the fresh counters, and a background task
re-reads them once a second (four O(1) commands) to see what other machines wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store._redis_pipeline import ScriptPipeline
from aibridge.server.store._redis_scripts import ACCEPT, ACK, DROP_QUEUE
from aibridge.server.store._rows import envelope_of, json_of
from aibridge.server.store.base import AcceptResult, Envelope, QueueFullError, StoreStats

__all__ = ("RedisStore", "redact_url")

log = logging.getLogger("aibridge.store")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_T = TypeVar("_T")
STATS_REFRESH_S = 1.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def redact_url(url: str) -> str:
    """``url`` with any user/password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client for ``url`` (redis:// or rediss://) with bounded timeouts, so a lost Redis fails fast.

    The pool blocks (up to 20 s) instead of failing when every connection is busy: a burst of
    concurrent accepts waits for a connection rather than erroring.
    """
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=20, socket_connect_timeout=3, socket_timeout=5
        )
    except ValueError as exc:
        raise StoreError(f"AI_BRIDGE_REDIS_URL={redact_url(url)}: {exc}") from None
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


class RedisStore:
    """The :class:`~aibridge.server.store.base.Store` on Redis; ``prefix`` separates bridges on one Redis."""

    def __init__(self, config: BridgeConfig, *, prefix: str = "aibridge") -> None:
        if not config.redis_url:
            raise StoreError("the Redis store needs AI_BRIDGE_REDIS_URL")
        self._config = config
        self._url = redact_url(config.redis_url)
        self._redis = connect(config.redis_url)
        p = f"{{{prefix}}}"
        self._p = p
        self._hist, self._stats, self._queues = f"{p}:hist", f"{p}:stats", f"{p}:queues"
        self._task_keys = [f"{p}:tmeta", f"{p}:tbody", f"{p}:tfirst"]
        self._accept = self._redis.register_script(ACCEPT)
        self._ack = self._redis.register_script(ACK)
        self._drop = self._redis.register_script(DROP_QUEUE)
        self._snapshot = StoreStats(0, 0, 0, 0)
        self._writes = ScriptPipeline(self._redis, self._url)
        self._version = 0
        self._refresher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            await self._redis.ping()
            await self._refresh()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise StoreError(f"cannot reach Redis at {self._url}: {exc}") from None
        self._refresher = asyncio.create_task(self._refresh_forever(), name="aibridge-redis-stats")

    async def close(self) -> None:
        await self._writes.flush()  # everything written so far reaches Redis first
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self._redis.aclose()

    async def _call(self, awaitable: Awaitable[_T]) -> _T:
        # OSError too: a socket torn down mid-reply can surface unwrapped, and the app answers
        # 503 only for StoreError (anything else would be a 500 with a traceback).
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis at {self._url}: {exc}") from None

    def _queue_keys(self, recipient: str) -> list[str]:
        return [f"{self._p}:q:{recipient}", f"{self._p}:qb:{recipient}"]

    def _update(self, reply: list[Any]) -> int:
        queues, messages, size, history, version = (int(x) for x in reply[1:6])
        if version > self._version:
            self._version = version
            self._snapshot = StoreStats(history, queues, messages, size)
        return int(reply[0])

    async def accept(self, envelope: Envelope, size: int, queue_for: Sequence[str] = ()) -> AcceptResult:
        return self._accepted(
            await self._writes.call(self._accept, *self._accept_call(envelope, size, queue_for))
        )

    def accept_later(
        self,
        envelope: Envelope,
        size: int,
        queue_for: Sequence[str] = (),
        done: Callable[[AcceptResult | QueueFullError | StoreError], None] | None = None,
    ) -> None:
        """Queue the accept without waiting; ``done`` gets its result (or refusal) once Redis replied."""
        future = self._writes.call(self._accept, *self._accept_call(envelope, size, queue_for))

        def settled(_: asyncio.Future[list[Any]]) -> None:
            outcome: AcceptResult | QueueFullError | StoreError
            try:
                outcome = self._accepted(future.result())
            except (QueueFullError, StoreError) as exc:
                outcome = exc
                log.warning("envelope %s not stored: %s", envelope.get("id"), exc)
            if done is not None:
                done(outcome)

        future.add_done_callback(settled)

    def _accept_call(
        self, envelope: Envelope, size: int, queue_for: Sequence[str]
    ) -> tuple[list[str], list[str | bytes | int | float]]:
        config = self._config
        recipients = list(dict.fromkeys(queue_for))
        keys = [self._hist, self._stats, self._queues, *self._task_keys]
        for recipient in recipients:
            keys += self._queue_keys(recipient)
        task = envelope.get("taskId")
        args: list[str | bytes | int | float] = [
            _encode(envelope),
            size,
            str(envelope.get("id")),
            int(time.time() * 1000),
            config.history_limit,
            config.max_queue,
            config.max_queues,
            config.max_queued_bytes,
            task if task and isinstance(task, str) else "",
            _encode(envelope.get("intent")),
            _encode(envelope.get("from")),
            _encode(envelope.get("to")),
            _text(envelope.get("timestamp")),
            *recipients,
        ]
        return keys, args

    def _accepted(self, reply: list[Any]) -> AcceptResult:
        config = self._config
        if reply[0] == -1:
            raise QueueFullError(f"offline queue limit reached ({config.max_queues} queues)")
        if reply[0] == -2:
            raise QueueFullError(f"queued bytes limit reached ({config.max_queued_bytes} bytes)")
        return AcceptResult(dropped=self._update(reply))

    async def pending(self, recipient: str) -> list[Envelope]:
        queue_key, bodies_key = self._queue_keys(recipient)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrange(queue_key, 0, -1)
            pipe.hgetall(bodies_key)
            pipe.zadd(self._queues, {recipient: int(time.time() * 1000)}, xx=True)  # back: not idle
            order, values, _ = await self._call(pipe.execute())
        found = (
            envelope_of(values[i].partition(b"\n")[2], f"queued envelope {i!r}") for i in order if i in values
        )
        return [e for e in found if e is not None]

    async def ack(self, recipient: str, envelope_ids: Sequence[str]) -> int:
        if not envelope_ids:
            return 0
        keys = [self._hist, self._stats, self._queues, *self._queue_keys(recipient)]
        args: list[str | int] = [recipient, int(time.time() * 1000), *envelope_ids]
        return self._update(await self._writes.call(self._ack, keys, args))

    def ack_later(self, recipient: str, envelope_ids: Sequence[str]) -> None:
        """Queue the ack without waiting (a lost one only means a redelivery: at least once)."""
        keys = [self._hist, self._stats, self._queues, *self._queue_keys(recipient)]
        future = self._writes.call(self._ack, keys, [recipient, int(time.time() * 1000), *envelope_ids])

        def settled(_: asyncio.Future[list[Any]]) -> None:
            if future.exception() is None:
                self._update(future.result())
            else:
                log.warning("ack for %s not stored: %s", recipient, future.exception())

        future.add_done_callback(settled)

    async def expire_queues(self, idle_ms: int, keep: Sequence[str] = ()) -> int:
        cutoff = int(time.time() * 1000) - idle_ms
        kept = set(keep)
        idle = await self._call(self._redis.zrangebyscore(self._queues, "-inf", cutoff))
        dropped = 0
        for raw in idle:
            recipient = raw.decode() if isinstance(raw, bytes) else str(raw)
            if recipient in kept:
                continue
            keys = [self._hist, self._stats, self._queues, *self._queue_keys(recipient)]
            dropped += self._update(await self._call(self._drop(keys=keys, args=[recipient, cutoff])))
        return dropped

    async def history(
        self,
        limit: int,
        agent_id: str | None = None,
        task_id: str | None = None,
        intent: str | None = None,
    ) -> list[Envelope]:
        if limit <= 0:
            return []
        if agent_id is None and task_id is None and intent is None:
            found = [
                envelope_of(b, "history entry")
                for b in await self._call(self._redis.lrange(self._hist, -limit, -1))
            ]
            return [e for e in found if e is not None]
        stored = (
            envelope_of(b, "history entry") for b in await self._call(self._redis.lrange(self._hist, 0, -1))
        )
        matches = [
            e
            for e in stored
            if e is not None
            and (agent_id is None or agent_id in (e.get("from"), e.get("to")))
            and (task_id is None or e.get("taskId") == task_id)
            and (intent is None or e.get("intent") == intent)
        ]
        return matches[-limit:]

    async def tasks(self) -> list[dict[str, Any]]:
        meta_key, body_key, first_key = self._task_keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrange(first_key, 0, -1)
            pipe.hgetall(meta_key)
            pipe.hgetall(body_key)
            order, metas, bodies = await self._call(pipe.execute())
        summaries = []
        for task_id in order:
            where = f"task {task_id!r}"[:300]
            meta, last = json_of(metas.get(task_id), where), envelope_of(bodies.get(task_id), where)
            if not isinstance(meta, dict) or last is None:
                continue
            try:
                summary = {
                    "taskId": task_id.decode(),
                    # cjson writes an empty Lua table as {}; the lists hold JSON texts of the values.
                    "intents": [_decode(i) for i in meta["i"] or ()],
                    "participants": [_decode(p) for p in meta["p"] or ()],
                    "lastUpdate": meta.get("u") or None,
                    "lastEnvelope": last,
                }
            except (KeyError, TypeError, UnicodeDecodeError, msgspec.DecodeError, RecursionError) as exc:
                log.warning("skipping unreadable %s: %s", where, exc)
                continue
            summaries.append(summary)
        return summaries

    def stats(self) -> StoreStats:
        return self._snapshot

    async def _refresh(self) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.llen(self._hist)
            pipe.zcard(self._queues)
            pipe.hmget(self._stats, "messages", "bytes", "version")
            history, queues, (messages, size, version) = await pipe.execute()
        # >= : a Redis restarted empty starts its versions again at 0, and must still show.
        if int(version or 0) >= self._version or int(version or 0) == 0:
            self._version = int(version or 0)
            self._snapshot = StoreStats(int(history), int(queues), int(messages or 0), int(size or 0))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_REFRESH_S)
            with contextlib.suppress(RedisError, OSError):
                await self._refresh()  # a lost Redis shows up in the backplane's health, not here
