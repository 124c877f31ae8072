"""``--workers N``: one engine per process, started together, their histograms merged afterwards.

A Python process drives roughly one core's worth of requests; when that is less than the target can
take, several processes share the load. Each sends back its encoded HDR histogram and its counts.
Workers are spawned (not forked) so that no thread or event loop state of the parent leaks in; as with
any spawned process, a script that calls this must guard its entry point with
``if __name__ == "__main__":`` (the ``aibridge`` command and ``python -m aibridge`` are safe).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from multiprocessing.synchronize import Event
from time import perf_counter
from typing import Any

from aibridge.ops.loadtest.engine import WorkerPlan, WorkerResult
from aibridge.ops.loadtest.phases import execute, run_async

__all__ = ("run_in_processes",)

_START_MARGIN_S = 0.05
"""Head start given to every worker between 'go' and the agreed first instant."""
_READY_TIMEOUT_S = 600.0
"""Bound on worker start-up plus warm-up before the run is abandoned."""


def _worker_main(
    plan: WorkerPlan,
    slot: int,
    tally: SynchronizedArray[Any],
    ready: Synchronized[int],
    go: Event,
    start_wall: Synchronized[float],
    results: multiprocessing.Queue[tuple[int, WorkerResult | str]],
) -> None:
    async def gate() -> float:
        with ready.get_lock():
            ready.value += 1
        # Blocking here is fine: this worker has nothing else to do until every worker is warm.
        if not go.wait(_READY_TIMEOUT_S):
            raise TimeoutError("the parent never gave the start signal")
        return perf_counter() + (start_wall.value - time.time())

    def watch(done: int, failed: int) -> None:
        tally[2 * slot] = done
        tally[2 * slot + 1] = failed

    try:
        results.put((slot, run_async(execute(plan, gate, watch))))
    except BaseException as error:  # the parent must hear about any failure, not wait forever
        results.put((slot, f"{type(error).__name__}: {error}"))


def run_in_processes(
    plans: list[WorkerPlan], watch: Callable[[int, int], None] | None = None
) -> list[WorkerResult]:
    """Run one engine per plan in its own process; ``watch(done, failed)`` sees the summed tallies."""
    context = multiprocessing.get_context("spawn")
    tally = context.Array("q", 2 * len(plans), lock=False)
    ready = context.Value("i", 0)
    start_wall = context.Value("d", 0.0)
    go = context.Event()
    results: multiprocessing.Queue[tuple[int, WorkerResult | str]] = context.Queue()
    processes: list[SpawnProcess] = [
        context.Process(
            target=_worker_main,
            args=(plan, slot, tally, ready, go, start_wall, results),
            name=f"aibridge-loadtest-{slot}",
            daemon=True,
        )
        for slot, plan in enumerate(plans)
    ]
    collected: dict[int, WorkerResult] = {}
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while ready.value < len(plans):
            _check_alive(processes, results, collected, deadline)
            time.sleep(0.01)
        start_wall.value = time.time() + _START_MARGIN_S
        go.set()
        while len(collected) < len(plans):
            _receive(results, collected, timeout=0.25)
            if watch is not None:
                watch(sum(tally[0::2]), sum(tally[1::2]))
            _check_alive(processes, results, collected, None)
    finally:
        for process in processes:
            if process.pid is None:
                continue  # start() itself failed for this one
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)
        results.close()
    return [collected[slot] for slot in range(len(plans))]


def _receive(
    results: multiprocessing.Queue[tuple[int, WorkerResult | str]],
    collected: dict[int, WorkerResult],
    timeout: float,
) -> None:
    try:
        slot, outcome = results.get(timeout=timeout)
    except queue.Empty:
        return
    if isinstance(outcome, str):
        raise RuntimeError(f"load-test worker {slot} failed: {outcome}")
    collected[slot] = outcome


def _check_alive(
    processes: list[SpawnProcess],
    results: multiprocessing.Queue[tuple[int, WorkerResult | str]],
    collected: dict[int, WorkerResult],
    deadline: float | None,
) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise RuntimeError(f"load-test workers were not ready within {_READY_TIMEOUT_S:.0f}s")
    for slot, process in enumerate(processes):
        if slot not in collected and not process.is_alive():
            # It may have put its result just before exiting: drain before calling it dead.
            _receive(results, collected, timeout=1.0)
            if slot not in collected:
                raise RuntimeError(f"load-test worker {slot} exited with code {process.exitcode}")
