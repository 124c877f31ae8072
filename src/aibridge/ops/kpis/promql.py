"""KPIs as PromQL over a range, against any Prometheus-compatible API (Fly's hosted one included).

Uptime comes from ``avg_over_time(up[R])``: Prometheus records up=0 for every failed scrape, so
a day or a month of availability is real data here, unlike anything one scrape can say.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from aibridge.errors import TargetUnreachableError, UsageError
from aibridge.ops.kpis.charts import prometheus_charts
from aibridge.ops.kpis.config import ROUTE_LABELS, STATUS_LABELS, KpiOptions
from aibridge.ops.kpis.limits import fallback_limit
from aibridge.ops.kpis.model import KpiReport, KpiResult, Measurement
from aibridge.ops.kpis.promraw import raw_increase
from aibridge.ops.kpis.series import Buckets, is_error_status
from aibridge.ops.kpis.units import format_bytes, format_seconds
from aibridge.ops.kpis.verdicts import (
    cannot_tell,
    server_latency,
    server_latency_measurement,
    unless_too_few,
    verdict_above,
    verdict_below,
)

__all__ = ("PrometheusClient", "prometheus_report", "promql_duration")

Vector = list[tuple[dict[str, str], float]]
FLY_MEM_TOTAL = "fly_instance_memory_mem_total"
FLY_MEM_AVAILABLE = "fly_instance_memory_mem_available"
"""Fly's per-Machine memory in bytes (from /proc/meminfo of the VM), scraped by Fly for every app."""


def promql_duration(seconds: float) -> str:
    """A PromQL duration literal: whole seconds when possible, else milliseconds."""
    return f"{round(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


class PrometheusClient:
    """The two query endpoints of the Prometheus HTTP API, with errors turned into aibridge errors."""

    def __init__(self, base: str, token: str | None, timeout_s: float) -> None:
        headers = {}
        if token:
            # A token that already names its scheme ("FlyV1 …", "Bearer …") is sent as it is.
            scheme_given = token.split(" ", 1)[0] in ("Bearer", "FlyV1")
            headers["Authorization"] = token if scheme_given else f"Bearer {token}"
        self.base = base.rstrip("/")
        self.http = httpx.Client(headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base}/api/v1/{path}"
        try:
            response = self.http.get(url, params=params)
        except httpx.HTTPError as error:
            raise TargetUnreachableError(f"Prometheus at {self.base} does not answer: {error}") from None
        if response.status_code in (401, 403):
            raise UsageError(f"Prometheus at {self.base} refused the token (HTTP {response.status_code})")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise TargetUnreachableError(
                f"{url} answered HTTP {response.status_code} without a Prometheus API body: "
                "is this a Prometheus API?"
            )
        if body.get("status") != "success":
            raise UsageError(f"Prometheus rejected {params.get('query')!r}: {body.get('error', body)}")
        return body["data"]

    def vector(self, query: str, at: float) -> Vector:
        data = self._get("query", {"query": query, "time": f"{at:.3f}"})
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def matrix(self, query: str, at: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The raw samples of a range-vector selector (``metric[R]``), per series."""
        data = self._get("query", {"query": query, "time": f"{at:.3f}"})
        if data.get("resultType") != "matrix":
            return []
        return [
            (item["metric"], [(float(t), float(v)) for t, v in item["values"]]) for item in data["result"]
        ]

    def scalar(self, query: str, at: float) -> float | None:
        values = [v for _, v in self.vector(query, at) if math.isfinite(v)]
        return values[0] if values else None

    def series(self, query: str, start: float, end: float, points: int = 60) -> list[float | None]:
        """The first series of a range query, one slot per step; None where it has no value."""
        start, end = math.floor(start), math.floor(end)
        step = max(1, math.ceil((end - start) / points))
        params = {"query": query, "start": str(start), "end": str(end), "step": str(step)}
        result = self._get("query_range", params)["result"]
        slots: list[float | None] = [None] * ((end - start) // step + 1)
        for t, v in result[0]["values"] if result else []:
            index = round((float(t) - start) / step)
            if 0 <= index < len(slots) and math.isfinite(float(v)):
                slots[index] = float(v)
        return slots


class _PromJudge:
    def __init__(
        self, options: KpiOptions, prom: PrometheusClient, fallback_limit: tuple[int, str] | None
    ) -> None:
        self.o, self.prom, self.fallback_limit = options, prom, fallback_limit
        self.now = time.time()
        self.r = promql_duration(options.range_s)
        self.sel = options.prometheus_selector
        self.counter = self._existing(options.request_counter, f"{options.request_counter}_total")
        self.health_matcher: str | None = None
        """Label matchers of the health route's histogram series, once :meth:`buckets` found the label."""

    def q(self, query: str) -> Vector:
        return self.prom.vector(query, self.now)

    def _existing(self, *names: str) -> str:
        for name in names:
            if self.q(f"count(last_over_time({name}{{{self.sel}}}[{self.r}]))"):
                return name
        return names[0]

    def _labels(self, metric: str) -> list[dict[str, str]]:
        return [labels for labels, _ in self.q(f"last_over_time({metric}{{{self.sel}}}[{self.r}])")]

    def uptime(self) -> KpiResult:
        t = self.o.thresholds["uptime"]
        step_s = max(1.0, float(round(self.o.range_s / 500)))
        step = promql_duration(step_s)
        avg = self.prom.scalar(f"avg(avg_over_time(up{{{self.sel}}}[{self.r}]))", self.now)
        samples = self.prom.scalar(f"sum(count_over_time(up{{{self.sel}}}[{self.r}]))", self.now)
        first = self.prom.scalar(
            f"min(min_over_time(timestamp(up{{{self.sel}}})[{self.r}:{step}]))", self.now
        )
        if avg is None or samples is None:
            how = f"no up{{{self.sel}}} series in the last {self.r}; check --selector"
            return cannot_tell("uptime", t, "no data", how)
        # No subquery step saw a sample yet: the data is younger than one step.
        covered = min(self.o.range_s, self.now - first) if first is not None else 0.0
        pct = avg * 100
        measured = f"{pct:.3f} % ({samples:.0f} scrapes over {format_seconds(covered)})"
        how = f"avg_over_time(up{{{self.sel}}}[{self.r}]): share of successful scrapes"
        # Subquery steps are aligned to multiples of the step, so the first sample may be one step late.
        if covered < 0.9 * self.o.range_s - step_s:
            return cannot_tell(
                "uptime", t, measured, how + f"; data covers only {format_seconds(covered)} of {self.r}"
            )
        return KpiResult("uptime", t.describe("uptime"), verdict_above(pct, t), measured, how, pct)

    def buckets(self) -> tuple[Buckets | None, str]:
        h = self.o.duration_histogram
        label = self.o.route_label or next(
            (n for n in ROUTE_LABELS if any(n in lb for lb in self._labels(f"{h}_count"))), None
        )
        if label is None:
            return None, f"no {h}_count{{{self.sel}}} with a route label"
        matcher = f'{self.sel},{label}="{self.o.health_path}"'
        self.health_matcher = matcher
        expr = f"sum by (le) (increase({h}_bucket{{{matcher}}}[{self.r}]))"
        counts = {float(lb["le"]): v for lb, v in self.q(expr) if "le" in lb}
        buckets = Buckets(counts, counts.get(math.inf, 0.0))
        return (buckets if buckets.total > 0 else None), expr

    def latency(self) -> KpiResult:
        t = self.o.thresholds["health_latency"]
        buckets, expr = self.buckets()
        if buckets is None:
            return cannot_tell("health_latency", t, "no /health requests in range", expr)
        verdict, text, estimate = server_latency(buckets, t)
        how = f"bucket ratio from {expr.replace(f'{self.sel},', '')} (server side)"
        return KpiResult("health_latency", t.describe("health_latency"), verdict, text, how, estimate)

    def memory(self) -> KpiResult:
        t = self.o.thresholds["memory"]
        peaks = self.q(
            f"max by (instance) (max_over_time(process_resident_memory_bytes{{{self.sel}}}[{self.r}]))"
        )
        used_how = f"max_over_time(process_resident_memory_bytes[{self.r}])"
        fly_total = {
            lb.get("instance", ""): v
            for lb, v in self.q(
                f"max by (instance) (last_over_time({FLY_MEM_TOTAL}{{{self.sel}}}[{self.r}]))"
            )
        }
        if not peaks and fly_total:
            # No process metrics: the Machine's own used memory, as Fly measures it.
            peaks = self.q(
                f"max by (instance) (max_over_time(({FLY_MEM_TOTAL}{{{self.sel}}} - "
                f"{FLY_MEM_AVAILABLE}{{{self.sel}}})[{self.r}:]))"
            )
            used_how = f"max_over_time(({FLY_MEM_TOTAL} - {FLY_MEM_AVAILABLE})[{self.r}:])"
        if not peaks:
            return cannot_tell(
                "memory", t, "no data", f"no process_resident_memory_bytes{{{self.sel}}} in range"
            )
        metric = self.o.memory_limit_metric
        limits = {
            lb.get("instance", ""): v
            for lb, v in self.q(f"max by (instance) (last_over_time({metric}{{{self.sel}}}[{self.r}]))")
        }
        worst: tuple[float, float, float, str] | None = None
        for labels, peak in peaks:
            instance = labels.get("instance", "")
            limit, source = limits.get(instance, 0.0), f"app's {metric}"
            if not limit and fly_total.get(instance):
                # Fly's own per-Machine metric (fly.md §5 built-ins: fly_instance_memory_*).
                limit, source = fly_total[instance], f"Fly's {FLY_MEM_TOTAL} (the Machine's memory)"
            if not limit and self.fallback_limit is not None:
                limit, source = float(self.fallback_limit[0]), self.fallback_limit[1]
            if limit and (worst is None or peak / limit > worst[0] / worst[1]):
                worst = (peak, limit, 100.0 * peak / limit, source)
        if worst is None:
            how = f"no {metric} or {FLY_MEM_TOTAL} in Prometheus; pass --config fly.toml or --memory-limit"
            return cannot_tell("memory", t, f"peak {format_bytes(max(v for _, v in peaks))} of ?", how)
        peak, limit, pct, source = worst
        measured = f"{pct:.1f} % (peak {format_bytes(peak)} of {format_bytes(limit)})"
        how = f"{used_how} / {source}, worst instance"
        return KpiResult("memory", t.describe("memory"), verdict_below(pct, t), measured, how, pct)

    def error_rate(self) -> KpiResult:
        t = self.o.thresholds["error_rate"]
        status = self.o.status_label or next(
            (n for n in STATUS_LABELS if any(n in lb for lb in self._labels(self.counter))), None
        )
        if status is None:
            return cannot_tell(
                "error_rate", t, "no data", f"no {self.counter}{{{self.sel}}} with a status label"
            )
        raw = raw_increase(self.prom, self.counter, self.sel, self.r, self.now)
        total = sum(raw.by_series.values())
        errors = sum(v for key, v in raw.by_series.items() if is_error_status(dict(key).get(status, "")))
        how = (
            f"raw samples of {self.counter}{{{status}=~5xx|5..}}[{self.r}] / all, summed by aibridge "
            f"(not increase()): {raw.births} series born in range counted from 0, "
            f"{raw.restarts} restart(s) seen via process_start_time_seconds"
        )
        if total <= 0:
            return cannot_tell("error_rate", t, "no requests in range", how)
        pct = 100.0 * errors / total
        measured = f"{pct:.2f} % (≈{errors:.0f}/{total:.0f})"
        result = KpiResult("error_rate", t.describe("error_rate"), verdict_below(pct, t), measured, how, pct)
        return unless_too_few(result, round(total), t.limit / 100, "requests")

    def startup(self) -> KpiResult:
        t = self.o.thresholds["startup"]
        metric = self.o.startup_metric
        worst = self.prom.scalar(f"max(max_over_time({metric}{{{self.sel}}}[{self.r}]))", self.now)
        if worst is None:
            return cannot_tell("startup", t, "not exported", f"no {metric}{{{self.sel}}} in range")
        how = f"max_over_time({metric}[{self.r}]): the slowest start in range"
        return KpiResult(
            "startup", t.describe("startup"), verdict_below(worst, t), format_seconds(worst), how, worst
        )

    def measurements(self, buckets: Buckets | None) -> list[Measurement]:
        out = []
        rps = self.prom.scalar(f"sum(rate({self.counter}{{{self.sel}}}[{self.r}]))", self.now)
        if rps is not None:
            out.append(
                Measurement("throughput", f"{rps:.2f} req/s", f"sum(rate({self.counter}[{self.r}]))", rps)
            )
        cpu = self.prom.scalar(f"max(rate(process_cpu_seconds_total{{{self.sel}}}[{self.r}]))", self.now)
        if cpu is not None:
            how = f"rate(process_cpu_seconds_total[{self.r}]), busiest instance"
            out.append(Measurement("cpu", f"{cpu * 100:.1f} % of one core", how, cpu * 100))
        if buckets is not None:
            out.append(server_latency_measurement(buckets))
        h, limit = self.o.duration_histogram, self.o.thresholds["health_latency"].limit
        counts = {
            float(lb["le"]): v
            for lb, v in self.q(f"sum by (le) (increase({h}_bucket{{{self.sel}}}[{self.r}]))")
        }
        every = Buckets(counts, counts.get(math.inf, 0.0))
        if every.total > 0:
            low, high, _, _ = every.share_within(limit)
            share = f"{low * 100:.2f} %" if low == high else f"{low * 100:.1f}–{high * 100:.1f} %"
            measured = f"{share} ≤ {format_seconds(limit)} (≈{every.total:.0f} req)"
            out.append(Measurement("all requests", measured, f"{h} bucket ratio, every route", low * 100))
        return out


def prometheus_report(options: KpiOptions) -> KpiReport:
    """Judge every KPI from PromQL over ``options.range_s``."""
    prom = PrometheusClient(options.prometheus_base, options.token, max(options.timeout_s, 30.0))
    try:
        j = _PromJudge(options, prom, fallback_limit(options))
        buckets, _ = j.buckets()
        report = KpiReport("prometheus", options.health_url, options.prometheus_base, options.range_s)
        report.kpis = [j.uptime(), j.latency(), j.memory(), j.error_rate(), j.startup()]
        report.measurements = j.measurements(buckets)
        start = j.now - options.range_s
        rss = prom.series(f"max(process_resident_memory_bytes{{{j.sel}}})", start, j.now)
        report.memory_bytes = [v for v in rss if v is not None]
        if j.health_matcher is not None:
            h, step = options.duration_histogram, promql_duration(max(60.0, options.range_s / 60))
            p95 = f"histogram_quantile(0.95, sum by (le) (rate({h}_bucket{{{j.health_matcher}}}[{step}])))"
            series = prom.series(p95, start, j.now)
            report.latency_ms = [v * 1000 if v is not None and math.isfinite(v) else None for v in series]
        status = options.status_label or "status"
        report.charts = prometheus_charts(prom, options, j.sel, start, j.now, status)
        return report
    finally:
        prom.close()
