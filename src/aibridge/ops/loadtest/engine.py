"""The request engine: one aiohttp session, N connection loops, closed or open (fixed-rate) model.

aiohttp, not httpx: on this hardware httpx drives a tenth of hey's request rate, and a load tester
must not be the bottleneck it measures (reference/performance.md). One engine runs per process;
``workers.py`` starts several and merges what they return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal

import aiohttp

from aibridge import __version__
from aibridge.ops.loadtest.histogram import LatencyRecorder, LatencySnapshot

__all__ = (
    "ERROR_KINDS",
    "Engine",
    "ErrorKind",
    "WorkerPlan",
    "WorkerResult",
    "classify",
    "describe",
    "open_session",
)

ErrorKind = Literal["connect", "timeout", "read", "status"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("connect", "timeout", "read", "status")


@dataclass(frozen=True)
class WorkerPlan:
    """What one engine (one process) does; picklable so a worker process can receive it."""

    url: str
    method: str
    headers: dict[str, str]
    body: bytes | None
    timeout_s: float
    expect_status: frozenset[int]
    concurrency: int
    requests: int | None
    """This worker's share of measured requests (closed model, count mode)."""
    duration_s: float | None
    rate: float | None
    """The TOTAL arrival rate; this worker takes every ``slots``-th slot of the shared schedule."""
    schedule_total: int | None
    """Slots in the shared open-model schedule (count mode), all workers together."""
    slot: int
    slots: int
    warmup: int
    keepalive: bool = True
    """False: one connection per request (hey -disable-keepalive, ab without -k)."""
    compression: bool = True
    """False: no Accept-Encoding header (hey -disable-compression)."""


@dataclass(frozen=True)
class WorkerResult:
    """Everything one engine measured, small enough to send back from a worker process."""

    latency: LatencySnapshot
    service: LatencySnapshot | None
    """Open model only: time from actual send to response, without the queueing delay."""
    statuses: dict[int, int]
    errors: dict[str, int]
    error_examples: dict[str, str]
    successes: int
    bytes_received: int
    elapsed_s: float
    cpu_s: float
    abandoned: int
    """Requests still in flight when the duration ran out; cut off and not counted."""
    warmup_failed: int
    interrupted: bool = False
    """Ctrl-C ended the measured phase early: the tallies are a partial run."""


def classify(error: BaseException) -> ErrorKind:
    """Which of the report's error kinds a transport exception is."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "read"


def describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = error.os_error.strerror or str(error.os_error) or str(error)
        return f"cannot connect to {error.host}:{error.port}: {reason.lower()}"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


def open_session(plan: WorkerPlan, connections: int, enforce_timeout: bool = True) -> aiohttp.ClientSession:
    """A session for ``plan``; without ``enforce_timeout`` the caller times requests out itself."""
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=connections, force_close=not plan.keepalive
    )
    session = aiohttp.ClientSession(
        connector=connector,
        skip_auto_headers=() if plan.compression else ("Accept-Encoding",),
        timeout=aiohttp.ClientTimeout(total=plan.timeout_s if enforce_timeout else None),
        headers={"User-Agent": f"aibridge-loadtest/{__version__}", **plan.headers},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    # aiohttp silently resends an idempotent request once when a kept-alive connection drops; a load
    # tester must count that drop instead (aiohttp's own test client switches it off the same way).
    session._retry_connection = False
    return session


class Engine:
    """Sends requests over one session and tallies them; the hot path stays allocation-light."""

    def __init__(self, plan: WorkerPlan, session: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.session = session
        self.latency = LatencyRecorder()
        self.service = LatencyRecorder() if plan.rate is not None else None
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.examples: dict[str, str] = {}
        self.successes = self.bytes_received = self.warmup_failed = 0
        self.done = self.failed = self.in_flight = 0
        self.recording = False
        self.remaining: int | None = None
        self.deadline = float("inf")
        self.start = 0.0
        self.next_slot = 0
        self._sending: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self.interrupted = False

    async def send(self, intended: float | None) -> None:
        plan = self.plan
        task = asyncio.current_task()
        assert task is not None
        self.in_flight += 1
        started = perf_counter()
        self._sending[task] = started
        try:
            # Redirects are not followed (as ab): one request is one exchange, and a 301 shows up.
            async with self.session.request(
                plan.method, plan.url, data=plan.body, allow_redirects=False
            ) as response:
                size = len(await response.read())
                status = response.status
        except (aiohttp.ClientError, OSError) as error:
            self._fail(classify(error), error)
            return
        except asyncio.CancelledError:
            if task not in self._expired or task.cancelling() > 1:
                raise  # cancelled by the end of the run, not (only) by the watchdog
            task.uncancel()
            self._fail("timeout", TimeoutError(f"no complete answer within {plan.timeout_s:g}s"))
            return
        finally:
            self.in_flight -= 1
            del self._sending[task]
            self._expired.discard(task)
        ended = perf_counter()
        if ended - started > plan.timeout_s:  # answered between the deadline and the watchdog's round
            self._fail("timeout", TimeoutError(f"no complete answer within {plan.timeout_s:g}s"))
            return
        if not self.recording:
            return
        self.done += 1
        self.bytes_received += size
        self.statuses[status] = self.statuses.get(status, 0) + 1
        # Open model: latency counts from the intended start, so a queue behind a slow response shows.
        # (A timer may wake up to a millisecond early; then the request's own start is the honest one.)
        self.latency.record(ended - (started if intended is None else min(intended, started)))
        if self.service is not None:
            self.service.record(ended - started)
        if status in plan.expect_status:
            self.successes += 1
        else:
            self.failed += 1
            self.errors["status"] += 1
            if "status" not in self.examples:
                location = response.headers.get("Location")
                moved = f" to {location}" if location else ""
                self.examples["status"] = f"HTTP {status}{moved} (expected {_codes(plan.expect_status)})"

    def _fail(self, kind: ErrorKind, error: BaseException) -> None:
        if not self.recording:
            self.warmup_failed += 1
            return
        self.done += 1
        self.failed += 1
        self.errors[kind] += 1
        self.examples.setdefault(kind, describe(error))

    async def watchdog(self) -> None:
        """Cancel requests older than ``-t``.

        One watchdog per engine instead of aiohttp's per-request timeout, which costs about a tenth of
        the client's CPU per request (a timer armed and cancelled for every request).
        """
        timeout = self.plan.timeout_s
        every = min(max(timeout / 20, 0.002), 0.05)
        while True:
            await asyncio.sleep(every)
            limit = perf_counter() - timeout
            for task, started in list(self._sending.items()):
                if started <= limit and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def closed_loop(self) -> None:
        """One connection's loop: send, wait for the answer, send again (ab/hey's model)."""
        while True:
            if self.remaining is not None:
                if self.remaining <= 0:
                    return
                self.remaining -= 1
            elif perf_counter() >= self.deadline:
                return
            await self.send(None)

    async def open_loop(self) -> None:
        """Take the next slot of the fixed-rate schedule, wait for its time, send; late slots stay late."""
        plan = self.plan
        assert plan.rate is not None
        while True:
            index = self.next_slot * plan.slots + plan.slot
            self.next_slot += 1
            if plan.schedule_total is not None and index >= plan.schedule_total:
                return
            intended = self.start + index / plan.rate
            if intended >= self.deadline:
                return
            delay = intended - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send(intended)

    async def run_phase(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> int:
        """Run ``concurrency`` loops until they end or the deadline passes; return requests cut off."""
        tasks = [asyncio.create_task(loop()) for _ in range(self.plan.concurrency)]
        pending: set[asyncio.Task[None]] = set(tasks)
        try:
            while pending:
                # The event loop's timers may fire a little early: keep waiting until the deadline is real.
                timeout = None if self.deadline == float("inf") else self.deadline - perf_counter()
                if timeout is not None and timeout <= 0:
                    break
                _, pending = await asyncio.wait(pending, timeout=timeout)
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.Runner cancels the main task): stop every loop before the session
            # closes under them, and hand back what was measured, as hey prints its partial report.
            current = asyncio.current_task()
            if current is None or not self.recording:
                raise
            current.uncancel()
            self.interrupted = True
        abandoned = self.in_flight if pending else 0
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled():
                task.result()
        return abandoned


def _codes(codes: frozenset[int]) -> str:
    ordered = sorted(codes)
    return ",".join(map(str, ordered)) if len(ordered) <= 5 else f"{ordered[0]}-{ordered[-1]}"
