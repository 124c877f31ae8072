"""Turning numbers into verdicts, shared by the scrape-based and the PromQL modes."""

from __future__ import annotations

import math

from aibridge.ops.kpis.model import KpiResult, Measurement, Verdict
from aibridge.ops.kpis.series import Buckets
from aibridge.ops.kpis.units import KpiName, Threshold, format_seconds

__all__ = (
    "cannot_tell",
    "combine",
    "samples_needed",
    "server_latency",
    "server_latency_measurement",
    "under",
    "unless_too_few",
    "verdict_above",
    "verdict_below",
)


def verdict_above(value: float, threshold: Threshold) -> Verdict:
    return Verdict.PASS if value > threshold.limit else Verdict.FAIL


def verdict_below(value: float, threshold: Threshold) -> Verdict:
    return Verdict.PASS if value < threshold.limit else Verdict.FAIL


def under(value: float, threshold: Threshold) -> Verdict:
    """Latency: "p95 ≤ 500 ms" holds at the bound, as a histogram bucket ``le`` does."""
    return Verdict.PASS if value <= threshold.limit else Verdict.FAIL


def samples_needed(share_allowed: float) -> int:
    """Samples before a pass of "fewer than ``share_allowed`` bad" means anything (loadtest's rule).

    With fewer than 1/share samples, not one bad sample is expected even when the KPI is missed:
    4 probes cannot show "up > 99.9 %".
    """
    return math.ceil(1 / share_allowed - 1e-9) if share_allowed > 0 else 1


def unless_too_few(result: KpiResult, samples: int, share_allowed: float, unit: str) -> KpiResult:
    """A pass on too few samples carries loadtest's "too few samples" note (a failure seen is real)."""
    needed = samples_needed(share_allowed)
    if result.verdict is not Verdict.PASS or samples >= needed:
        return result
    note = f"too few samples: {samples} {unit}; trust a pass from {needed:,}"
    return KpiResult(
        result.name, result.target, result.verdict, f"{result.measured}, {note}", result.how, result.value
    )


def cannot_tell(name: KpiName, threshold: Threshold, measured: str, how: str) -> KpiResult:
    return KpiResult(name, threshold.describe(name), Verdict.CANNOT_TELL, measured, how)


def server_latency(buckets: Buckets, threshold: Threshold) -> tuple[Verdict, str, float | None]:
    """Judge the quantile from a histogram exactly when a bucket bound equals the threshold.

    Between two bounds the share of requests within the threshold is only known to lie between
    the shares at those bounds; the verdict is given only when both bounds agree.
    """
    low, high, below, above = buckets.share_within(threshold.limit)
    q = threshold.quantile
    estimate = buckets.quantile(q)
    if below == threshold.limit:
        text = f"{low * 100:.2f} % ≤ {format_seconds(threshold.limit)} (exact, {buckets.total:.0f} req)"
    else:
        lo = format_seconds(below) if below is not None else "0"
        hi = format_seconds(above) if above is not None else "∞"
        text = (
            f"{low * 100:.1f}–{high * 100:.1f} % ≤ {format_seconds(threshold.limit)} "
            f"(buckets {lo}–{hi}, {buckets.total:.0f} req)"
        )
    if low >= q:
        return Verdict.PASS, text, estimate
    if high < q:
        return Verdict.FAIL, text, estimate
    return Verdict.CANNOT_TELL, text, estimate


def combine(verdicts: list[Verdict]) -> Verdict:
    """Any failing view fails the KPI; otherwise one passing view is enough.

    Client-side latency includes the network, so it bounds the server's from above: a client
    pass implies a server pass, and the server's exact share can only fail a KPI, never rescue it.
    """
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.PASS in verdicts:
        return Verdict.PASS
    return Verdict.CANNOT_TELL


def server_latency_measurement(buckets: Buckets) -> Measurement:
    """p50/p95/p99 of a duration histogram, marked as interpolated (they are not exact)."""
    parts = [
        f"p{q:g} ≈{format_seconds(v)}" for q in (50, 95, 99) if (v := buckets.quantile(q / 100)) is not None
    ]
    return Measurement("latency (server)", " · ".join(parts), "bucket-interpolated (histogram_quantile)")
