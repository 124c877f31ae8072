"""``--save`` and ``--baseline``: keep a run's JSON report, and fail a later run that got worse."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibridge.errors import FileReadError, UsageError
from aibridge.ops.loadtest.report import SCHEMA_ID, BaselineComparison, BaselineRow, LoadTestReport

__all__ = ("Baseline", "compare_with_baseline", "read_baseline", "save_report")

_LATENCY_KEYS = ("p50", "p95", "p99")


@dataclass(frozen=True)
class Baseline:
    """The figures of a saved run that a new run is compared with."""

    source: str
    requests_per_sec: float
    latency_ms: dict[str, float]
    success_rate: float | None = None
    """0..1; None in reports saved before it was compared."""
    model: dict[str, Any] | None = None
    """model, concurrency, rate, keepalive of the saved run."""


def read_baseline(path: Path) -> Baseline:
    """Read a report saved by ``--save``; any problem names the file (and line for bad JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FileReadError(f"--baseline {path}: cannot read it ({error.strerror or error})") from error
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileReadError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from error
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        raise FileReadError(f'{path}: not an aibridge loadtest report (expected "schema": "{SCHEMA_ID}")')
    metrics = data.get("metrics")
    latency = metrics.get("latency_ms") if isinstance(metrics, dict) else None
    rps = metrics.get("requests_per_sec") if isinstance(metrics, dict) else None
    if not isinstance(latency, dict) or not isinstance(rps, int | float):
        raise FileReadError(f"{path}: the report has no metrics.requests_per_sec / metrics.latency_ms")
    values = {key: float(latency[key]) for key in _LATENCY_KEYS if isinstance(latency.get(key), int | float)}
    success = metrics.get("success_rate") if isinstance(metrics, dict) else None
    raw_options = data.get("options")
    options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
    model = {
        "model": data.get("model"),
        "concurrency": options.get("concurrency"),
        "rate": options.get("rate"),
        "keepalive": options.get("keepalive", True),
    }
    rate = float(success) if isinstance(success, int | float) else None
    return Baseline(str(path), float(rps), values, rate, model)


def compare_with_baseline(
    report: LoadTestReport, baseline: Baseline, tolerance_pct: float
) -> BaselineComparison:
    """Req/s or success rate lower, or p50/p95/p99 higher, by more than ``tolerance_pct`` is a regression.

    Failed requests are counted in req/s (a reset is fast), so the success and error rates are
    compared too: a run whose every request was reset is not "faster" than a healthy baseline.
    """
    rows = [_row("requests_per_sec", baseline.requests_per_sec, report.requests_per_sec, tolerance_pct, True)]
    if baseline.success_rate is not None and report.requests:
        before, now = baseline.success_rate * 100, report.success_rate * 100
        rows.append(_row("success_rate", before, now, tolerance_pct, True))
        # The error rate in points: 0 % → 2 % is a regression at any tolerance of the success rate.
        errors_before, errors_now = 100 - before, 100 - now
        rise = errors_now - errors_before
        allowed = max(errors_before * tolerance_pct / 100, 0.1)
        rows.append(BaselineRow("error_rate", errors_before, errors_now, rise, rise > allowed))
    for key in _LATENCY_KEYS:
        current = report.latency.percentiles.get(key)
        if key in baseline.latency_ms and current is not None:
            rows.append(_row(f"{key}_ms", baseline.latency_ms[key], current, tolerance_pct, False))
    return BaselineComparison(baseline.source, tolerance_pct, tuple(rows), _model_warnings(report, baseline))


def _model_warnings(report: LoadTestReport, baseline: Baseline) -> tuple[str, ...]:
    saved = baseline.model or {}
    opts = report.options
    now = {
        "model": report.model,
        "concurrency": opts.effective_concurrency,
        "rate": opts.rate,
        "keepalive": opts.keepalive,
    }
    names = {"model": "model (open/closed)", "concurrency": "-c", "rate": "-q", "keepalive": "keep-alive"}
    return tuple(
        f"the baseline used {names[key]} {saved[key]!r}, this run {value!r}: not like for like"
        for key, value in now.items()
        if saved.get(key) is not None and saved[key] != value
    )


def _row(metric: str, before: float, now: float, tolerance_pct: float, higher_is_better: bool) -> BaselineRow:
    if before <= 0:
        change = 0.0
    elif higher_is_better:
        change = (before - now) / before * 100
    else:
        change = (now - before) / before * 100
    return BaselineRow(metric, before, now, change, change > tolerance_pct)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_report(report: LoadTestReport, path: Path) -> None:
    """Write the JSON report atomically (a half-written baseline would break the next run)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"--save {path}: directory {directory} does not exist")
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=directory, prefix=f".{path.name}.", delete=False
        ) as handle:
            json.dump(report.to_json(), handle, indent=2)
            handle.write("\n")
        # NamedTemporaryFile creates 0600; a report is not a secret: honour the umask as open() would.
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except OSError as error:
        raise UsageError(f"--save {path}: cannot write it ({error.strerror or error})") from error
