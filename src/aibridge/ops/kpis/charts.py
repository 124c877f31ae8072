"""Time series for the KPI report's charts: latency, traffic, memory and CPU over the window.

A window check derives them from consecutive scrapes (one point per interval, restarts handled
like the verdicts); a Prometheus check asks ``query_range`` for the same four views.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aibridge.ops.kpis.config import STATUS_LABELS, KpiOptions
from aibridge.ops.kpis.scrape import Probe, Scrape, detect_label
from aibridge.ops.kpis.series import counter_increase, histogram_increase, is_error_status

if TYPE_CHECKING:
    from aibridge.ops.kpis.promql import PrometheusClient

__all__ = ("QUANTILES", "Chart", "Series", "prometheus_charts", "window_charts")

QUANTILES = (0.5, 0.95, 0.99)
Point = tuple[float, float | None]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: list[Point]
    """(Unix time, value); None where nothing was measured (the app did not answer)."""


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    """latency, traffic, memory or cpu."""
    title: str
    unit: str
    """s, req/s, bytes or cores: how the renderer formats the axis."""
    series: list[Series] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for _, v in s.points)


def _per_interval(scrapes: Sequence[Scrape], options: KpiOptions) -> dict[str, list[Point]]:
    counter = options.request_counter
    if not any(s.has(counter) for s in scrapes):
        counter = f"{counter}_total"
    labels = [lbl for s in scrapes for lbl, _ in s.series(counter)]
    status = detect_label(labels, options.status_label, STATUS_LABELS)
    out: dict[str, list[Point]] = {f"p{q * 100:g}": [] for q in QUANTILES}
    out |= {"requests": [], "5xx": [], "cpu": []}
    for before, after in itertools.pairwise(scrapes):
        dt = after.at - before.at
        if dt <= 0:
            continue
        pair = [before, after]
        buckets = histogram_increase(pair, options.duration_histogram, lambda _: True)
        for q in QUANTILES:
            out[f"p{q * 100:g}"].append((after.at, buckets.quantile(q)))
        counts = counter_increase(pair, counter)
        errors = sum(v for key, v in counts.items() if status and is_error_status(dict(key).get(status, "")))
        out["requests"].append((after.at, sum(counts.values()) / dt))
        out["5xx"].append((after.at, errors / dt if status else None))
        cpu = counter_increase(pair, "process_cpu_seconds_total")
        out["cpu"].append((after.at, sum(cpu.values()) / dt if cpu else None))
    return out


def window_charts(
    options: KpiOptions, probes: Sequence[Probe], scrapes: Sequence[Scrape], limit: float | None
) -> list[Chart]:
    """The four charts of a window check; ``limit`` is the memory limit the verdict used."""
    per = _per_interval(scrapes, options)
    client = [(p.at, p.latency_s if p.ok else None) for p in probes]
    rss = [(s.at, s.gauge("process_resident_memory_bytes")) for s in scrapes]
    memory = [Series("RSS", rss)]
    if limit is not None and scrapes:
        memory.append(Series("limit", [(scrapes[0].at, limit), (scrapes[-1].at, limit)]))
    return [
        Chart(
            "latency",
            "Response time",
            "s",
            [Series(f"server {k}", per[k]) for k in ("p50", "p95", "p99")]
            + [Series("client /health", client)],
        ),
        Chart(
            "traffic",
            "Requests and errors",
            "req/s",
            [Series("requests", per["requests"]), Series("5xx", per["5xx"])],
        ),
        Chart("memory", "Memory against the limit", "bytes", memory),
        Chart("cpu", "CPU", "cores", [Series("process", per["cpu"])]),
    ]


def _range(prom: PrometheusClient, query: str, start: float, end: float) -> list[Point]:
    values = prom.series(query, start, end)
    if len(values) < 2:
        return [(start, values[0])] if values else []
    step = (math.floor(end) - math.floor(start)) / (len(values) - 1)
    return [(math.floor(start) + i * step, v) for i, v in enumerate(values)]


def prometheus_charts(
    prom: PrometheusClient, options: KpiOptions, selector: str, start: float, end: float, status: str
) -> list[Chart]:
    """The same four charts from PromQL over ``[start, end]``; ``status`` is the counter's status label."""
    step = max(60, math.ceil((end - start) / 60))
    w = f"[{step}s]"
    h, c, s = options.duration_histogram, options.request_counter, selector
    quantiles = [
        Series(
            f"p{q * 100:g}",
            _range(prom, f"histogram_quantile({q}, sum by (le) (rate({h}_bucket{{{s}}}{w})))", start, end),
        )
        for q in QUANTILES
    ]
    errors = f'sum(rate({c}{{{s}, {status}=~"5.."}}{w})) or vector(0)'
    return [
        Chart("latency", "Response time", "s", quantiles),
        Chart(
            "traffic",
            "Requests and errors",
            "req/s",
            [
                Series("requests", _range(prom, f"sum(rate({c}{{{s}}}{w}))", start, end)),
                Series("5xx", _range(prom, errors, start, end)),
            ],
        ),
        Chart(
            "memory",
            "Memory against the limit",
            "bytes",
            [
                Series("RSS", _range(prom, f"max(process_resident_memory_bytes{{{s}}})", start, end)),
                Series("limit", _range(prom, f"max({options.memory_limit_metric}{{{s}}})", start, end)),
            ],
        ),
        Chart(
            "cpu",
            "CPU",
            "cores",
            [Series("process", _range(prom, f"sum(rate(process_cpu_seconds_total{{{s}}}{w}))", start, end))],
        ),
    ]
