"""The very first request of a run, sent alone on a fresh connection before anything else.

An auto-stopped Fly machine boots on the first request it gets; sending that request alone shows the
cold start on its own line instead of smearing it over the percentiles. Its failure to connect is
also how a run learns, before any load, that the target does not answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import aiohttp

from aibridge.ops.loadtest.engine import ErrorKind, WorkerPlan, classify, describe, open_session

__all__ = ("FirstRequest", "send_first_request")


@dataclass(frozen=True)
class FirstRequest:
    """The very first request of a run, sent alone: a stopped Fly machine pays its boot here."""

    latency_ms: float
    status: int | None
    error_kind: ErrorKind | None
    error: str | None
    bytes_received: int


async def send_first_request(plan: WorkerPlan) -> FirstRequest:
    """Send one request alone on a fresh connection and report how it went."""
    async with open_session(plan, 1) as session:
        started = perf_counter()
        try:
            async with session.request(
                plan.method, plan.url, data=plan.body, allow_redirects=False
            ) as response:
                size = len(await response.read())
        except (aiohttp.ClientError, OSError) as error:
            return FirstRequest((perf_counter() - started) * 1000, None, classify(error), describe(error), 0)
        latency_ms = (perf_counter() - started) * 1000
        kind: ErrorKind | None = None if response.status in plan.expect_status else "status"
        detail = None if kind is None else f"HTTP {response.status}"
        location = response.headers.get("Location")
        if detail and location:
            detail += f" to {location}"
        return FirstRequest(latency_ms, response.status, kind, detail, size)
