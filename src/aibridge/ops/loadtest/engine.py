"""The request engine: one aiohttp session, N connection loops, closed or open (fixed-rate) model.

aiohttp, not httpx: on this hardware httpx drives a tenth of hey's request rate, and a load tester
must not be the bottleneck it measures (reference/performance.md). One engine runs per process;
``workers.py`` starts several and merges what they return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from time import perf_counter, process_time
from typing import Any, Literal, TypeVar

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
    "execute",
    "open_session",
    "run_async",
)

T = TypeVar("T")
ErrorKind = Literal["connect", "timeout", "read", "status"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("connect", "timeout", "read", "status")
_PROGRESS_EVERY_S = 0.25


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


def open_session(plan: WorkerPlan, connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=plan.timeout_s),
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

    async def send(self, intended: float | None) -> None:
        plan = self.plan
        self.in_flight += 1
        started = perf_counter()
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
        finally:
            self.in_flight -= 1
        ended = perf_counter()
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
        while pending:
            # The event loop's timers may fire a little early: keep waiting until the deadline is real.
            timeout = None if self.deadline == float("inf") else self.deadline - perf_counter()
            if timeout is not None and timeout <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=timeout)
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


async def execute(
    plan: WorkerPlan,
    gate: Callable[[], Awaitable[float]],
    watch: Callable[[int, int], None] | None = None,
) -> WorkerResult:
    """Warm up, wait for ``gate`` to give the start time, run the measured phase, return the tallies.

    ``watch(done, failed)`` is called a few times a second for live progress.
    """
    async with open_session(plan, plan.concurrency) as session:
        engine = Engine(plan, session)
        if plan.warmup:
            engine.remaining = plan.warmup
            await engine.run_phase(engine.closed_loop)
        engine.start = await gate()
        delay = engine.start - perf_counter()
        if delay > 0 and plan.rate is None:
            await asyncio.sleep(delay)  # several workers begin together at the agreed instant
        engine.recording = True
        engine.remaining = plan.requests if plan.duration_s is None else None
        if plan.duration_s is not None:
            engine.deadline = engine.start + plan.duration_s
        ticker = asyncio.create_task(_tick(engine, watch)) if watch is not None else None
        cpu_before = process_time()
        abandoned = await engine.run_phase(engine.open_loop if plan.rate else engine.closed_loop)
        ended = min(perf_counter(), engine.deadline)
        cpu_s = process_time() - cpu_before
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            assert watch is not None
            watch(engine.done, engine.failed)
    return WorkerResult(
        latency=engine.latency.snapshot(),
        service=engine.service.snapshot() if engine.service is not None else None,
        statuses=engine.statuses,
        errors=engine.errors,
        error_examples=engine.examples,
        successes=engine.successes,
        bytes_received=engine.bytes_received,
        elapsed_s=max(ended - engine.start, 1e-9),
        cpu_s=cpu_s,
        abandoned=abandoned,
        warmup_failed=engine.warmup_failed,
    )


async def _tick(engine: Engine, watch: Callable[[int, int], None]) -> None:
    while True:
        watch(engine.done, engine.failed)
        await asyncio.sleep(_PROGRESS_EVERY_S)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (it comes with uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
