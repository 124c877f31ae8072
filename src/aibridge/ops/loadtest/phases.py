"""One engine's run: warm-up, the agreed start, the measured phase, and the event loop it runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter, process_time
from typing import Any, TypeVar

from aibridge.ops.loadtest.engine import Engine, WorkerPlan, WorkerResult, open_session

__all__ = ("execute", "run_async")

T = TypeVar("T")
_PROGRESS_EVERY_S = 0.25


async def execute(
    plan: WorkerPlan,
    gate: Callable[[], Awaitable[float]],
    watch: Callable[[int, int], None] | None = None,
) -> WorkerResult:
    """Warm up, wait for ``gate`` to give the start time, run the measured phase, return the tallies.

    ``watch(done, failed)`` is called a few times a second for live progress.
    """
    async with open_session(plan, plan.concurrency, enforce_timeout=False) as session:
        engine = Engine(plan, session)
        watchdog = asyncio.create_task(engine.watchdog())
        try:
            abandoned, elapsed_s, cpu_s = await _measure(engine, gate, watch)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
    return WorkerResult(
        latency=engine.latency.snapshot(),
        service=engine.service.snapshot() if engine.service is not None else None,
        statuses=engine.statuses,
        errors=engine.errors,
        error_examples=engine.examples,
        successes=engine.successes,
        bytes_received=engine.bytes_received,
        elapsed_s=elapsed_s,
        cpu_s=cpu_s,
        abandoned=abandoned,
        warmup_failed=engine.warmup_failed,
        interrupted=engine.interrupted,
    )


async def _measure(
    engine: Engine, gate: Callable[[], Awaitable[float]], watch: Callable[[int, int], None] | None
) -> tuple[int, float, float]:
    """Warm-up, then the measured phase; returns (abandoned, elapsed seconds, CPU seconds)."""
    plan = engine.plan
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
    try:
        abandoned = await engine.run_phase(engine.open_loop if plan.rate else engine.closed_loop)
        ended = min(perf_counter(), engine.deadline)
        if engine.interrupted:
            abandoned = 0  # requests cut off by Ctrl-C are not "in flight at the end of -z"
        cpu_s = process_time() - cpu_before
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    if watch is not None:
        watch(engine.done, engine.failed)
    return abandoned, max(ended - engine.start, 1e-9), cpu_s


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
