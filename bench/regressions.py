"""The figures issue 16 must not worsen, now against a baseline commit in the same run.

Used by ``bench/bridge.py --baseline-ref REF`` after the routing figures: ``/health`` req/s
(``wrk -t2 -c50``, as shipped: access log, metrics and limits on), RSS idle, and RSS with
1,000 registered agents, the current server and REF's alternating, medians over the rounds.
RSS has absolute targets; ``/health`` a ratio, since its rate drifts with the machine's load
(a ratio below :data:`HEALTH_RATIO_MIN` is more than the alternating runs' noise).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

HEALTH_RATIO_MIN = 0.9
RSS_IDLE_MAX_MIB = 60
RSS_1000_MAX_MIB = 150

Bridge = Callable[..., contextlib.AbstractContextManager[tuple[int, int]]]


def measure(
    bridge: Bridge,
    wrk_health: Callable[[int, str], float],
    rss_mib: Callable[[int], float],
    rss_with_agents: Callable[[int, int, int], Coroutine[Any, Any, float]],
    *,
    store: str,
    extra: dict[str, str],
    shipped: dict[str, str],
    duration: str,
    rounds: int,
    baseline_src: Path,
) -> dict[str, dict[str, list[float]]]:
    """``{figure: {"now": [...], "base": [...]}}``, one sample per side and round."""
    figures: dict[str, dict[str, list[float]]] = {}

    def add(name: str, side: str, value: float) -> None:
        figures.setdefault(name, {}).setdefault(side, []).append(value)
        print(f"  {side:<4} {name:<12} {value:>10,.1f}", flush=True)

    for _ in range(rounds):
        for side, src in (("now", None), ("base", baseline_src)):
            with bridge(store, {**shipped, **extra}, src=src) as (port, pid):
                add("rss_idle", side, rss_mib(pid))
                add("health", side, wrk_health(port, duration))
            with bridge(store, extra, src=src) as (port, pid):
                add("rss_1000", side, asyncio.run(rss_with_agents(port, pid, 1000)))
    return figures


def print_table(figures: dict[str, dict[str, list[float]]], baseline: str) -> list[str]:
    """The medians now and for ``baseline`` next to their targets; names of missed targets."""
    print(f"\nno regression (now vs {baseline}, same run, medians)")
    print(f"{'figure':<30}{'now':>10}{'base':>10}{'ratio':>8}  target  (ratio: median of the rounds' ratios)")
    missed = []
    rows = (
        ("health", "/health req/s, as shipped", f"ratio ≥ {HEALTH_RATIO_MIN}", None),
        ("rss_idle", "RSS idle, MiB", f"≤ {RSS_IDLE_MAX_MIB} MiB", RSS_IDLE_MAX_MIB),
        ("rss_1000", "RSS, 1,000 agents, MiB", f"≤ {RSS_1000_MAX_MIB} MiB", RSS_1000_MAX_MIB),
    )
    for name, label, target, limit in rows:
        samples = figures[name]
        now, base = statistics.median(samples["now"]), statistics.median(samples["base"])
        # Each round ran both sides back to back: the median of the rounds' ratios cancels the
        # drift between rounds that a ratio of the two medians keeps.
        ratio = statistics.median(n / b for n, b in zip(samples["now"], samples["base"], strict=True))
        ok = ratio >= HEALTH_RATIO_MIN if limit is None else now <= limit
        missed += [] if ok else [name]
        verdict = "ok" if ok else "MISSED"
        print(f"{label:<30}{now:>10,.1f}{base:>10,.1f}{ratio:>7.2f}×  {target} {verdict}", flush=True)
    return missed
