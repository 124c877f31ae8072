"""``ScriptPipeline``: the Redis store's writes, grouped into pipelines sent one at a time.

Every write is a Lua script call. Calls wait in a batch; one writer task sends the batch as
one pipeline of EVALSHA (one round trip) and, while it is on its way, the next calls gather
behind it. One pipeline in flight means writes reach Redis in the order they were made (an
ack never overtakes its accept), and the busier the bridge, the larger each batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from aibridge.errors import StoreError

__all__ = ("ScriptPipeline",)

_Call = tuple[AsyncScript, list[str], Sequence[Any], "asyncio.Future[list[Any]]"]


class ScriptPipeline:
    """Ordered, grouped script calls on ``client``; ``url`` (redacted) names Redis in errors."""

    def __init__(self, client: aioredis.Redis, url: str) -> None:
        self._redis = client
        self._url = url
        self._batch: list[_Call] = []
        self._writer: asyncio.Task[None] | None = None

    def call(self, script: AsyncScript, keys: list[str], args: Sequence[Any]) -> asyncio.Future[list[Any]]:
        """Run ``script`` in the next pipeline; its reply (or a ``StoreError``) resolves the future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._batch.append((script, keys, args, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_batches(), name="aibridge-redis-writer")
        return future

    async def flush(self) -> None:
        """Return once every call made so far has its reply."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_batches(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                await self._run_batch(batch)
        finally:
            self._writer = None

    async def _run_batch(self, batch: list[_Call]) -> None:
        try:
            replies = await self._evalsha_all(batch)
            if any(isinstance(r, NoScriptError) for r in replies):
                # Redis restarted or flushed its script cache; EVALSHA ran nothing, so retry.
                for script in {id(c[0]): c[0] for c in batch}.values():
                    script.sha = await self._redis.script_load(script.script)
                retry = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                for i, reply in zip(retry, await self._evalsha_all([batch[i] for i in retry]), strict=True):
                    replies[i] = reply
        except (RedisError, OSError) as exc:
            replies = [exc] * len(batch)
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller was cancelled
            if isinstance(reply, Exception):
                future.set_exception(StoreError(f"Redis at {self._url}: {reply}"))
            else:
                future.set_result(reply)

    async def _evalsha_all(self, batch: Sequence[_Call]) -> list[Any]:
        # EVALSHA straight on the pipeline: Script objects would add a SCRIPT EXISTS round trip.
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))
