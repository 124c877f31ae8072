"""Limits that keep one 512 MB machine alive: per-client HTTP and handshake rate limits, per-socket
envelope budget, and a cap on concurrent connections (requests still sending headers included).

The HTTP rate limit is Litestar's ``RateLimitMiddleware`` (identifier callback, path exclusion,
store, ``RateLimit-*`` headers). It is subclassed only where it cannot follow our settings: it
counts in whole seconds/minutes/hours/days while ``AI_BRIDGE_RATE_WINDOW_MS`` is any number of
milliseconds, and it sends no ``Retry-After``. Installed in Litestar's ``middleware`` list, its
429s pass through Litestar's CORS layer, so browsers can read them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.serialization import decode_json, encode_json
from litestar.stores.memory import MemoryStore

from aibridge.server.asgi import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.connection import Request
    from litestar.stores.base import Store

    from aibridge.server.config import BridgeConfig

__all__ = (
    "RATE_LIMIT_KEYS",
    "UNLIMITED",
    "BoundedMemoryStore",
    "BridgeRateLimitConfig",
    "ConnectionGate",
    "HandshakeLimiter",
    "TokenBucket",
    "client_ip",
    "prune_rate_limits",
    "rate_limit_config",
    "rate_limit_stores",
    "ws_bucket",
)


NEVER_LIMITED = ("^/health$",)
"""Path patterns no limit applies to: Fly's health checks and load tests hammer /health."""


RATE_LIMIT_KEYS = 10_000
"""Clients the rate limiters remember at once (~0.5 KB each); beyond, the oldest are forgotten."""


def client_ip(scope: Scope, trust_fly: bool) -> str:
    """The client's address: the peer, or ``Fly-Client-IP`` when ``trust_fly`` and present.

    Only Fly's proxy overwrites that header (AI_BRIDGE_TRUST_FLY_CLIENT_IP); reached directly,
    a client trusted with it could pick a fresh rate-limit key for every request.
    """
    if trust_fly:
        for name, value in scope["headers"]:
            if name == b"fly-client-ip":
                return str(value.decode("latin-1"))
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class BoundedMemoryStore(MemoryStore):
    """Litestar's in-memory store with at most ``max_keys`` keys.

    Litestar's store grows by one key per client for the whole window; under forged or very
    many client keys that is unbounded memory (30,000 keys took 16 MB). A new key beyond the
    cap first sweeps expired keys (at most once a second), then forgets the oldest.
    """

    __slots__ = ("_swept", "max_keys")

    def __init__(self, max_keys: int = RATE_LIMIT_KEYS) -> None:
        super().__init__()
        self.max_keys = max_keys
        self._swept = 0.0

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        table = self._store
        if key not in table and len(table) >= self.max_keys:
            now = time.monotonic()
            if now - self._swept >= 1.0:
                self._swept = now
                await self.delete_expired()
            while len(table) >= self.max_keys:
                del table[next(iter(table))]  # dicts keep insertion order: the oldest first
        await super().set(key, value, expires_in)


@dataclass
class BridgeRateLimitConfig(RateLimitConfig):
    """Litestar's config plus a window in milliseconds (its ``rate_limit`` unit is then unused)."""

    window_ms: int = 60_000


def _store_outage() -> tuple[type[BaseException], ...]:
    """Errors meaning "the shared counter store is down" (evaluated only when one is raised).

    redis-py costs ~15 MiB of RSS to import, so it is not imported here: if it was never loaded,
    the store cannot be Redis and only socket errors can mean an outage.
    """
    redis_errors = sys.modules.get("redis.exceptions")
    return (OSError,) if redis_errors is None else (OSError, redis_errors.RedisError)


class _WindowRateLimitMiddleware(RateLimitMiddleware):
    """A fixed window of ``window_ms`` per client instead of Litestar's whole time units."""

    config: BridgeRateLimitConfig

    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        now = int(time.time() * 1000)
        try:
            cached = await store.get(key)
        except _store_outage():
            # A shared counter store that is down must not take the API down with it: fail open.
            cached = None
        if cached:
            cache_object = CacheObject(**decode_json(value=cached))
            if cache_object.reset > now:
                return cache_object
        return CacheObject(history=[], reset=now + self.config.window_ms)

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        cache_object.history = [int(time.time() * 1000), *cache_object.history]
        expires = timedelta(milliseconds=max(cache_object.reset - int(time.time() * 1000), 1))
        with contextlib.suppress(*_store_outage()):
            await store.set(key, encode_json(cache_object), expires_in=expires)

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        remaining = max(self.max_requests - len(cache_object.history), 0)
        reset_s = max(math.ceil((cache_object.reset - time.time() * 1000) / 1000), 0)
        headers = {
            self.config.rate_limit_policy_header_key: (
                f"{self.max_requests};w={math.ceil(self.config.window_ms / 1000)}"
            ),
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(remaining),
            self.config.rate_limit_reset_header_key: str(reset_s),
        }
        if remaining == 0:
            # On the 429 and on the response that used the last request of the window: the
            # advice "wait this long before the next request" is true for both.
            headers["Retry-After"] = str(max(reset_s, 1))
        return headers


def _request_ip(trust_fly: bool, request: Request[Any, Any, Any]) -> str:
    return client_ip(request.scope, trust_fly)  # type: ignore[arg-type]


def rate_limit_config(config: BridgeConfig) -> BridgeRateLimitConfig | None:
    """The HTTP rate limit from ``AI_BRIDGE_RATE_*``; ``None`` when ``AI_BRIDGE_RATE_MAX`` is 0.

    Add ``.middleware`` to the Litestar app's ``middleware`` list. Handlers can opt out with
    ``opt={"no_rate_limit": True}``.
    """
    if config.rate_max == 0:
        return None
    return BridgeRateLimitConfig(
        rate_limit=("minute", config.rate_max),
        window_ms=config.rate_window_ms,
        exclude=list(NEVER_LIMITED),
        exclude_opt_key="no_rate_limit",
        identifier_for_request=functools.partial(_request_ip, config.trust_fly_client_ip),
        middleware_class=_WindowRateLimitMiddleware,
    )


def rate_limit_stores(config: BridgeConfig) -> dict[str, Store]:
    """Litestar stores for the rate limit: shared through Redis when the bridge has one.

    With several machines behind Fly's proxy a client's requests land on any of them; only a
    shared counter holds it to ``AI_BRIDGE_RATE_MAX`` per window in total.
    """
    if config.redis_url is None:
        return {"rate_limit": BoundedMemoryStore()}
    from litestar.stores.redis import RedisStore

    return {"rate_limit": RedisStore.with_client(url=config.redis_url, namespace="aibridge:ratelimit")}


async def prune_rate_limits(app: Litestar, config: BridgeRateLimitConfig) -> None:
    """Forget clients whose window has passed.

    Litestar's in-memory store drops an expired key only when that key is read again, so one-off
    clients would pile up for the life of the process. Call this from the periodic cleanup task.
    """
    store = config.get_store_from_app(app)
    if isinstance(store, MemoryStore):
        await store.delete_expired()


class TokenBucket:
    """Per-WebSocket envelope budget: ``rate`` tokens a second, bursts up to ``rate``.

    The ws code calls :meth:`take` once per envelope and answers an error frame when it is False.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "capacity", "rate")

    def __init__(
        self, rate: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = rate
        self.capacity = rate if capacity is None else capacity
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def take(self) -> bool:
        if self._tokens < 1.0:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                return False
        self._tokens -= 1.0
        return True


class _Unlimited:
    __slots__ = ()

    def take(self) -> bool:
        return True


UNLIMITED = _Unlimited()
"""The bucket used when ``AI_BRIDGE_WS_RATE_MAX`` is 0: ``take()`` is always True."""


def ws_bucket(config: BridgeConfig) -> TokenBucket | _Unlimited:
    """A fresh bucket for one WebSocket connection, per ``AI_BRIDGE_WS_RATE_MAX``."""
    return TokenBucket(config.ws_rate_max) if config.ws_rate_max > 0 else UNLIMITED


class HandshakeLimiter:
    """WebSocket handshakes per client key in a fixed window shared by all keys.

    Agent sockets bypass Litestar (and its rate limiter), so their handshakes are counted here,
    per the same client key as HTTP. In-process on purpose: a handshake lands on one machine,
    and the cost it guards (a slot, a TLS/upgrade) is that machine's. At most ``max_keys``
    clients are remembered; the table empties each window.
    """

    __slots__ = ("_clock", "_counts", "_started", "max_keys", "max_per_window", "window_s")

    def __init__(
        self,
        max_per_window: int,
        window_ms: int,
        max_keys: int = RATE_LIMIT_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_window = max_per_window
        self.window_s = window_ms / 1000
        self.max_keys = max_keys
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._started = clock()

    def retry_after(self, key: str) -> float | None:
        """Count one handshake from ``key``: ``None`` if allowed, else seconds until it may retry."""
        if self.max_per_window <= 0:
            return None
        now = self._clock()
        if now - self._started >= self.window_s:
            self._counts.clear()
            self._started = now
        counts = self._counts
        seen = counts.get(key, 0)
        if seen >= self.max_per_window:
            return max(self.window_s - (now - self._started), 0.001)
        if seen == 0 and len(counts) >= self.max_keys:
            del counts[next(iter(counts))]
        counts[key] = seen + 1
        return None


class ConnectionGate:
    """Caps concurrent HTTP requests plus open WebSockets plus connections still sending their
    request headers (``pending``, kept by the HTTP protocol) at ``limit``; beyond, 503 or a
    refused handshake, so a flood costs a few bytes instead of the machine's memory.

    :meth:`middleware` makes pure ASGI middleware; all of them share this gate's count, so the
    HTTP part can sit in Litestar's per-route ``middleware`` list (inside CORS, so browsers can
    read the 503) while the WebSocket part wraps a fast path that bypasses Litestar.
    """

    def __init__(
        self,
        limit: int,
        exempt_paths: frozenset[str] = frozenset({"/health"}),
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.active = 0
        self.pending = 0
        self.rejected = 0
        self.exempt_paths = exempt_paths
        self.on_reject = on_reject
        self._body = json.dumps(
            {"error": f"server at its limit of {limit} connections; retry shortly", "status": 503}
        ).encode()

    def middleware(self, app: ASGIApp, scopes: frozenset[str] = frozenset({"http", "websocket"})) -> ASGIApp:
        async def gate(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] not in scopes or scope["path"] in self.exempt_paths:
                await app(scope, receive, send)
                return
            if self.active + self.pending >= self.limit:
                self.rejected += 1
                if self.on_reject is not None:
                    self.on_reject()
                await self._refuse(scope, receive, send)
                return
            self.active += 1
            try:
                await app(scope, receive, send)
            finally:
                self.active -= 1

        return gate

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", b"1"),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": self._body})
        else:
            await send({"type": "websocket.close", "code": 1013})  # "try again later"
