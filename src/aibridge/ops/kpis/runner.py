"""Running a check: a snapshot, a window of probes and scrapes, a PromQL query, or all of them on repeat."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import httpx

from aibridge.errors import TargetUnreachableError
from aibridge.ops.kpis.config import KpiOptions
from aibridge.ops.kpis.judge import Observation, judge
from aibridge.ops.kpis.limits import fallback_limit
from aibridge.ops.kpis.model import KpiReport
from aibridge.ops.kpis.scrape import Probe, Scrape, fetch_scrape, probe_health

__all__ = ("check_kpis", "watch_kpis")

OnUpdate = Callable[[KpiReport], None]


def _slot(client: httpx.Client, options: KpiOptions) -> tuple[Probe, Scrape | None]:
    """One interval's probe, then its scrape (which so sees what the probe did to the counters)."""
    probe = probe_health(client, options.health_url, options.timeout_s)
    try:
        return probe, fetch_scrape(client, options.resolved_metrics_url, options.timeout_s)
    except TargetUnreachableError:
        return probe, None  # the app went away mid-window: the probes count it as downtime


def _collect(obs: Observation, slots: list[Future[tuple[Probe, Scrape | None]]]) -> None:
    """Move finished slots into ``obs`` in slot order (the first unfinished one stops it)."""
    while slots and slots[0].done():
        probe, scraped = slots.pop(0).result()
        obs.probes.append(probe)
        if scraped is None:
            obs.failed_scrapes += 1
        else:
            obs.scrapes.append(scraped)


def _scraped_window(options: KpiOptions, on_update: OnUpdate | None) -> KpiReport:
    """Probe once per interval slot, each probe on its own thread, so a hung app cannot delay the clock.

    A prober that waits for each answer before sending the next (coordinated omission) sends the
    slots it missed back to back once the app recovers, and they all pass. Here every slot gets
    its own probe at its own time; a slot whose probe got no 2xx within the timeout is down,
    whatever happens later (see ``judge._interval_up``).
    """
    fallback = fallback_limit(options)
    obs = Observation()
    with httpx.Client() as client:
        first = probe_health(client, options.health_url, options.timeout_s)
        if first.status is None:
            raise TargetUnreachableError(f"{options.health_url} does not answer: {first.error}")
        obs.probes.append(first)
        try:
            obs.scrapes.append(fetch_scrape(client, options.resolved_metrics_url, options.timeout_s))
        except TargetUnreachableError as error:
            raise TargetUnreachableError(f"{error.detail} (set it with --metrics-url)") from None
        ticks = math.floor(options.window_s / options.interval_s + 1e-9)
        offsets = [i * options.interval_s for i in range(1, ticks + 1)]
        if options.window_s > 0 and (not offsets or offsets[-1] < options.window_s - 1e-9):
            offsets.append(options.window_s)  # always observe the far end of the window
        # Enough threads for every slot that can be outstanding at once (a probe and a scrape).
        workers = math.ceil(2 * options.timeout_s / options.interval_s) + 2
        slots: list[Future[tuple[Probe, Scrape | None]]] = []
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kpi-probe") as pool:
            for offset in offsets:
                _collect(obs, slots)
                if on_update is not None:
                    on_update(judge(options, obs, fallback, complete=False))
                # Pacing, not a race: each probe is due at a fixed offset from the start.
                time.sleep(max(0.0, start + offset - time.monotonic()))
                if time.monotonic() - (start + offset) > options.interval_s:
                    obs.late_probes += 1  # our side fell behind (a slow callback, a loaded host)
                slots.append(pool.submit(_slot, client, options))
            wait(slots)
            _collect(obs, slots)
    report = judge(options, obs, fallback)
    if on_update is not None:
        on_update(report)
    return report


def check_kpis(options: KpiOptions, on_update: OnUpdate | None = None) -> KpiReport:
    """Judge the app's KPIs once; ``on_update`` sees the partial report after every probe."""
    if options.prometheus is not None:
        from aibridge.ops.kpis.promql import prometheus_report

        report = prometheus_report(options)
        if on_update is not None:
            on_update(report)
        return report
    return _scraped_window(options, on_update)


def watch_kpis(options: KpiOptions, on_update: OnUpdate, runs: int | None = None) -> KpiReport:
    """Repeat :func:`check_kpis` (``runs`` times, or until Ctrl-C); return the last complete report."""
    last: KpiReport | None = None
    done = 0
    try:
        while runs is None or done < runs:
            started = time.monotonic()
            last = check_kpis(options, on_update)
            done += 1
            if (runs is None or done < runs) and (options.window_s == 0 or options.prometheus is not None):
                # Snapshots and queries are instant: repeat them once per interval.
                time.sleep(max(0.0, started + options.interval_s - time.monotonic()))
    except KeyboardInterrupt:
        if last is None:
            raise
    assert last is not None
    return last
