"""``run_loadtest``: first request alone, warm-up, the measured run (in one or N processes), the report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter

from aibridge.errors import TargetUnreachableError, UsageError
from aibridge.ops.loadtest.baseline import compare_with_baseline, read_baseline, save_report
from aibridge.ops.loadtest.engine import WorkerPlan, WorkerResult
from aibridge.ops.loadtest.first import FirstRequest, send_first_request
from aibridge.ops.loadtest.histogram import LatencyRecorder
from aibridge.ops.loadtest.options import LoadTestOptions
from aibridge.ops.loadtest.phases import execute, run_async
from aibridge.ops.loadtest.progress import ProgressSnapshot
from aibridge.ops.loadtest.report import LatencyStats, LoadTestReport, WorkerUsage, merge_results
from aibridge.ops.loadtest.slo import evaluate_slos

__all__ = ("run_loadtest",)

ProgressCallback = Callable[[ProgressSnapshot], None]
_CPU_BOTTLENECK = 0.8
"""A worker on the CPU for this share of its run was (nearly) the limit; an event loop that busy
adds its own queueing to every latency it measures."""


def run_loadtest(options: LoadTestOptions, progress: ProgressCallback | None = None) -> LoadTestReport:
    """Run the load test ``options`` describes and judge it; synchronous, runs its own event loop.

    Raises :class:`UsageError` for options that cannot work, :class:`FileReadError` for an unreadable
    baseline, and :class:`TargetUnreachableError` when the first request cannot connect.
    """
    options.validate()
    baseline = read_baseline(options.baseline) if options.baseline is not None else None
    if options.save is not None and not options.save.parent.is_dir():
        raise UsageError(f"--save {options.save}: directory {options.save.parent} does not exist")
    started_at = datetime.now(UTC)
    plans = _plans(options)
    first = run_async(send_first_request(plans[0]))
    if first.error_kind == "connect":
        raise TargetUnreachableError(f"{options.url} does not answer: {first.error}")
    watch = _watcher(options, progress) if progress is not None else None
    if all(plan.requests == 0 for plan in plans):
        results: list[WorkerResult] = []
    elif len(plans) == 1:
        results = [run_async(execute(plans[0], _start_now, watch))]
    else:
        from aibridge.ops.loadtest.workers import run_in_processes

        results = run_in_processes(plans, watch)
    report = _build(options, started_at, first, results)
    if options.slos:
        report.verdict = evaluate_slos(options.slos, report.measured(), report.latency.notes)
    if baseline is not None:
        report.baseline = compare_with_baseline(report, baseline, options.tolerance_pct)
    if options.save is not None:
        save_report(report, options.save)
    return report


def _plans(options: LoadTestOptions) -> list[WorkerPlan]:
    """Split requests, connections and warm-up over the workers (the first request is sent apart)."""
    count = options.workers
    first_counted = options.warmup == 0
    measured = None
    if options.duration_s is None:
        assert options.requests is not None
        measured = options.requests - (1 if first_counted else 0)
    warmup = max(options.warmup - 1, 0)
    return [
        WorkerPlan(
            url=options.url,
            method=options.method,
            headers=dict(options.headers),
            body=options.body,
            timeout_s=options.timeout_s,
            expect_status=frozenset(options.expect_status),
            concurrency=_share(options.effective_concurrency, count, slot),
            requests=None if measured is None else _share(measured, count, slot),
            duration_s=options.duration_s,
            rate=options.rate,
            schedule_total=measured if options.rate is not None else None,
            slot=slot,
            slots=count,
            warmup=_share(warmup, count, slot),
            keepalive=options.keepalive,
            compression=options.compression,
        )
        for slot in range(count)
    ]


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


async def _start_now() -> float:
    return perf_counter()


def _watcher(options: LoadTestOptions, progress: ProgressCallback) -> Callable[[int, int], None]:
    total = options.requests if options.duration_s is None else None
    state = {"start": 0.0, "last_t": 0.0, "last_done": 0.0, "rate": 0.0}

    def watch(done: int, failed: int) -> None:
        now = time.monotonic()
        if not state["start"]:
            state.update(start=now, last_t=now)
        if now - state["last_t"] >= 0.2:
            state["rate"] = (done - state["last_done"]) / (now - state["last_t"])
            state.update(last_t=now, last_done=done)
        elapsed = now - state["start"]
        progress(ProgressSnapshot(done, failed, elapsed, total, options.duration_s, state["rate"]))

    return watch


def _build(
    options: LoadTestOptions, started_at: datetime, first: FirstRequest, results: list[WorkerResult]
) -> LoadTestReport:
    latency, service = merge_results(results)
    if not latency.count and options.warmup == 0 and first.status is not None:
        latency.record(first.latency_ms / 1000)  # -n 1: the first request is the only sample there is
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    for result in results:
        for code, number in result.statuses.items():
            statuses[code] = statuses.get(code, 0) + number
        for kind, number in result.errors.items():
            errors[kind] = errors.get(kind, 0) + number
        for kind, text in result.error_examples.items():
            examples.setdefault(kind, text)
    counted = options.warmup == 0
    successes = sum(result.successes for result in results)
    if counted:
        if first.status is not None:
            statuses[first.status] = statuses.get(first.status, 0) + 1
        if first.error_kind is None:
            successes += 1
        else:
            errors[first.error_kind] = errors.get(first.error_kind, 0) + 1
            examples.setdefault(first.error_kind, first.error or f"HTTP {first.status}")
    requests = sum(statuses.values()) + sum(errors.get(kind, 0) for kind in ("connect", "timeout", "read"))
    duration = max((r.elapsed_s for r in results), default=first.latency_ms / 1000)
    report = LoadTestReport(
        options=options,
        started_at=started_at,
        requests=requests,
        successes=successes,
        duration_s=duration,
        bytes_received=sum(r.bytes_received for r in results) + (first.bytes_received if counted else 0),
        latency=LatencyStats.from_recorder(latency),
        service_time=LatencyStats.from_recorder(service) if service is not None else None,
        histogram=latency.buckets(),
        status_codes=statuses,
        errors=errors,
        error_examples=examples,
        first_request=first,
        first_request_counted=counted,
        abandoned=sum(r.abandoned for r in results),
        workers=[
            WorkerUsage(
                sum(r.statuses.values()) + sum(r.errors.values()) - r.errors["status"], r.cpu_s, r.elapsed_s
            )
            for r in results
        ],
    )
    report.interrupted = any(r.interrupted for r in results)
    report.warnings.extend(_warnings(options, report, results, latency))
    return report


def _warnings(
    options: LoadTestOptions, report: LoadTestReport, results: list[WorkerResult], latency: LatencyRecorder
) -> list[str]:
    warnings = []
    if any(r.interrupted for r in results):
        warnings.append(f"interrupted (Ctrl-C) after {report.duration_s:.1f}s: this is a partial report")
    busy = [(slot, usage) for slot, usage in enumerate(report.workers) if usage.cpu_ratio >= _CPU_BOTTLENECK]
    if busy:
        worst = max(usage.cpu_ratio for _, usage in busy)
        cpus = os.cpu_count() or 1
        hint = (
            f"try --workers {options.workers + 1}"
            if options.workers < cpus
            else f"all {cpus} CPUs already have a worker; run the client on a bigger machine"
        )
        warnings.append(
            f"client CPU was the bottleneck: {len(busy)} of {len(report.workers)} worker(s) busy "
            f"{worst:.0%} of the run, so req/s and latency may describe the load generator; {hint}"
        )
    if options.workers > (os.cpu_count() or 1):
        warnings.append(f"--workers {options.workers} exceeds the {os.cpu_count()} CPUs; workers share cores")
    if options.rate is not None and report.requests_per_sec < 0.95 * options.rate and latency.count:
        warnings.append(
            f"target rate {options.rate:g} req/s not reached ({report.requests_per_sec:.1f} req/s): the "
            f"{options.effective_concurrency} connections were busy; raise -c to keep the schedule"
        )
    warmup_failed = sum(r.warmup_failed for r in results)
    if warmup_failed:
        warnings.append(f"{warmup_failed} of {options.warmup} warm-up requests failed (not counted)")
    if report.abandoned:
        warnings.append(
            f"{report.abandoned} request(s) still in flight at the end of -z were cut off, not counted"
        )
    return warnings
