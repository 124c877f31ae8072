"""The result of a run: counts, latency statistics, notes and warnings, and its stable JSON form.

The JSON layout is described by ``report.schema.json`` beside this module; ``SCHEMA_ID`` changes
only when a field is removed or changes meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from aibridge import __version__
from aibridge.ops.loadtest.engine import ERROR_KINDS, WorkerResult
from aibridge.ops.loadtest.first import FirstRequest
from aibridge.ops.loadtest.histogram import PERCENTILES, HistogramBucket, LatencyRecorder, percentile_key
from aibridge.ops.loadtest.options import LoadModel, LoadTestOptions
from aibridge.ops.loadtest.slo import Verdict

__all__ = (
    "SCHEMA_ID",
    "BaselineComparison",
    "BaselineRow",
    "LatencyStats",
    "LoadTestReport",
    "WorkerUsage",
    "load_schema",
)

SCHEMA_ID = "aibridge.loadtest/1"
_MIN_TAIL_SAMPLES = 10
"""A percentile is trusted when at least this many samples lie above it (p99 needs 1,000 in all)."""


@dataclass(frozen=True)
class LatencyStats:
    """Latency of every request that got a response (any status), in milliseconds."""

    count: int
    min_ms: float
    mean_ms: float
    stddev_ms: float
    max_ms: float
    percentiles: dict[str, float]
    notes: dict[str, str]
    """Per percentile: why it rests on too few samples to be trusted."""

    @classmethod
    def from_recorder(cls, recorder: LatencyRecorder) -> LatencyStats:
        notes = {}
        for percentile in PERCENTILES:
            above = int(recorder.count * (100 - percentile) / 100)
            if above < _MIN_TAIL_SAMPLES:
                needed = int(_MIN_TAIL_SAMPLES * 100 / (100 - percentile) + 0.5)
                notes[percentile_key(percentile)] = (
                    f"too few samples: {above} above it; trust from {needed:,}"
                )
        return cls(
            count=recorder.count,
            min_ms=recorder.min_us / 1000,
            mean_ms=recorder.mean_ms,
            stddev_ms=recorder.stddev_ms,
            max_ms=recorder.max_us / 1000,
            percentiles=recorder.percentiles_ms(),
            notes=notes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "min": _ms(self.min_ms),
            "mean": _ms(self.mean_ms),
            "stddev": _ms(self.stddev_ms),
            "max": _ms(self.max_ms),
            "percentiles": {key: _ms(value) for key, value in self.percentiles.items()},
            "notes": dict(self.notes),
        }


@dataclass(frozen=True)
class WorkerUsage:
    """How busy one load-generating process was: near 100 % CPU means the client was the bottleneck."""

    requests: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class BaselineRow:
    metric: str
    baseline: float
    current: float
    change_pct: float
    """Positive is worse: slower latency or fewer requests per second."""
    regressed: bool


@dataclass(frozen=True)
class BaselineComparison:
    source: str
    tolerance_pct: float
    rows: tuple[BaselineRow, ...]
    warnings: tuple[str, ...] = ()
    """How the two runs' load models differ (their figures are then not like for like)."""

    @property
    def passed(self) -> bool:
        return not any(row.regressed for row in self.rows)


@dataclass
class LoadTestReport:
    """One run, ready to print (``render.py``), judge (``verdict``) or save (``to_json``)."""

    options: LoadTestOptions
    started_at: datetime
    requests: int
    successes: int
    duration_s: float
    bytes_received: int
    latency: LatencyStats
    service_time: LatencyStats | None
    histogram: list[HistogramBucket]
    status_codes: dict[int, int]
    errors: dict[str, int]
    error_examples: dict[str, str]
    first_request: FirstRequest | None
    first_request_counted: bool
    """True when the first request is one of the counted requests (no warm-up)."""
    abandoned: int
    workers: list[WorkerUsage]
    warnings: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    baseline: BaselineComparison | None = None
    interrupted: bool = False

    @property
    def model(self) -> LoadModel:
        return self.options.model

    @property
    def failures(self) -> int:
        return self.requests - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.requests if self.requests else 0.0

    @property
    def requests_per_sec(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def answered(self) -> bool:
        """False when the target never gave one HTTP answer (every request failed to connect/read)."""
        return bool(self.status_codes)

    @property
    def passed(self) -> bool:
        """True unless nothing succeeded, an objective failed, or the run regressed against the baseline."""
        if self.requests and self.successes == 0:
            return False
        return (self.verdict is None or self.verdict.passed) and (
            self.baseline is None or self.baseline.passed
        )

    def measured(self) -> dict[str, float | None]:
        """Metric name → value as SLOs name them (latency in ms, errors/success in %)."""
        values: dict[str, float | None] = dict.fromkeys(
            ("min", "mean", "max", *map(percentile_key, PERCENTILES))
        )
        if self.latency.count:
            values.update(min=self.latency.min_ms, mean=self.latency.mean_ms, max=self.latency.max_ms)
            values.update(self.latency.percentiles)
        values["rps"] = self.requests_per_sec
        values["errors"] = 100 * (1 - self.success_rate) if self.requests else None
        values["success"] = 100 * self.success_rate if self.requests else None
        return values

    def to_json(self) -> dict[str, Any]:
        """The report in the documented schema (``report.schema.json``)."""
        opts = self.options
        latency = self.latency.to_json()
        return {
            "schema": SCHEMA_ID,
            "aibridge_version": __version__,
            "started_at": self.started_at.isoformat(),
            "target": {"url": opts.url, "method": opts.method},
            "options": {
                "requests": opts.requests if opts.duration_s is None else None,
                "concurrency": opts.effective_concurrency,
                "duration_s": opts.duration_s,
                "rate": opts.rate,
                "timeout_s": opts.timeout_s,
                "warmup": opts.warmup,
                "workers": opts.workers,
                "expect_status": list(opts.expect_status),
                "keepalive": opts.keepalive,
                "compression": opts.compression,
            },
            "model": self.model,
            "coordinated_omission_corrected": self.model == "open",
            "summary": {
                "requests": self.requests,
                "successes": self.successes,
                "failures": self.failures,
                "success_rate": round(self.success_rate, 6),
                "duration_s": round(self.duration_s, 6),
                "requests_per_sec": round(self.requests_per_sec, 3),
                "bytes_received": self.bytes_received,
                "abandoned": self.abandoned,
            },
            "metrics": {
                "success_rate": round(self.success_rate, 6),
                "error_rate": round(1 - self.success_rate, 6) if self.requests else 0.0,
                "requests_per_sec": round(self.requests_per_sec, 3),
                "latency_ms": {
                    key: latency[key] if key in latency else latency["percentiles"].get(key)
                    for key in ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
                },
            },
            "latency_ms": latency,
            "service_time_ms": self.service_time.to_json() if self.service_time else None,
            "histogram": [{"upper_ms": b.upper_ms, "count": b.count} for b in self.histogram],
            "status_codes": {str(code): count for code, count in sorted(self.status_codes.items())},
            "errors": {kind: self.errors.get(kind, 0) for kind in ERROR_KINDS},
            "error_examples": dict(self.error_examples),
            "first_request": _first_json(self.first_request, self.first_request_counted),
            "workers": [
                {"requests": w.requests, "cpu_s": round(w.cpu_s, 4), "wall_s": round(w.wall_s, 4)}
                for w in self.workers
            ],
            "warnings": list(self.warnings),
            "verdict": _verdict_json(self.verdict),
            "baseline": _baseline_json(self.baseline),
            "passed": self.passed,
        }


def merge_results(results: list[WorkerResult]) -> tuple[LatencyRecorder, LatencyRecorder | None]:
    latency = LatencyRecorder()
    service = LatencyRecorder() if results and results[0].service is not None else None
    for result in results:
        latency.merge(result.latency)
        if service is not None and result.service is not None:
            service.merge(result.service)
    return latency, service


def load_schema() -> dict[str, Any]:
    """The JSON Schema of :meth:`LoadTestReport.to_json`, shipped inside the package."""
    text = resources.files(__package__).joinpath("report.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _ms(value: float) -> float:
    return round(value, 3)


def _first_json(first: FirstRequest | None, counted: bool) -> dict[str, Any] | None:
    if first is None:
        return None
    return {
        "latency_ms": _ms(first.latency_ms),
        "status": first.status,
        "error": first.error_kind,
        "detail": first.error,
        "counted": counted,
    }


def _verdict_json(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "passed": verdict.passed,
        "objectives": [
            {
                "objective": r.slo.text,
                "metric": r.slo.metric,
                "op": r.slo.op,
                "threshold": r.slo.threshold,
                "unit": r.slo.unit,
                "measured": None if r.measured is None else round(r.measured, 4),
                "passed": r.passed,
                "note": r.note,
            }
            for r in verdict.results
        ],
    }


def _baseline_json(comparison: BaselineComparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    return {
        "source": comparison.source,
        "tolerance_pct": comparison.tolerance_pct,
        "passed": comparison.passed,
        "warnings": list(comparison.warnings),
        "rows": [
            {
                "metric": row.metric,
                "baseline": row.baseline,
                "current": round(row.current, 3),
                "change_pct": round(row.change_pct, 2),
                "regressed": row.regressed,
            }
            for row in comparison.rows
        ],
    }
