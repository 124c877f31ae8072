"""Latency recording in an HDR histogram: fixed memory whatever the request count, no sorting.

Values are recorded in microseconds with 3 significant digits (a reported percentile is at most
0.1 % above the true sample). The exact count, sum, min and max are kept beside the histogram,
so the mean and the extremes are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

__all__ = ("PERCENTILES", "HistogramBucket", "LatencyRecorder", "LatencySnapshot", "percentile_key")

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
_HIGHEST_US = 3_600_000_000
"""One hour: anything slower is recorded as one hour (timeouts cut requests long before)."""
_SIGNIFICANT_DIGITS = 3


def percentile_key(percentile: float) -> str:
    """50.0 → ``"p50"``, 99.9 → ``"p99.9"``."""
    return f"p{percentile:g}"


@dataclass(frozen=True)
class LatencySnapshot:
    """A recorder in a picklable, mergeable form (what a worker process sends back)."""

    encoded: bytes
    count: int
    sum_us: int
    min_us: int
    max_us: int


@dataclass(frozen=True)
class HistogramBucket:
    """Samples with a latency above the previous bucket's bound and at most ``upper_ms``."""

    upper_ms: float
    count: int


class LatencyRecorder:
    """Records latencies; merges with other recorders; answers percentiles in milliseconds."""

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, _HIGHEST_US, _SIGNIFICANT_DIGITS)
        self.count = 0
        self.sum_us = 0
        self.min_us = 0
        self.max_us = 0

    def record(self, seconds: float) -> None:
        micros = min(max(int(seconds * 1_000_000), 0), _HIGHEST_US)
        self._histogram.record_value(micros)
        if self.count == 0 or micros < self.min_us:
            self.min_us = micros
        self.max_us = max(micros, self.max_us)
        self.count += 1
        self.sum_us += micros

    def snapshot(self) -> LatencySnapshot:
        return LatencySnapshot(self._histogram.encode(), self.count, self.sum_us, self.min_us, self.max_us)

    def merge(self, snapshot: LatencySnapshot) -> None:
        if snapshot.count == 0:
            return
        self._histogram.decode_and_add(snapshot.encoded)
        self.min_us = snapshot.min_us if self.count == 0 else min(self.min_us, snapshot.min_us)
        self.max_us = max(self.max_us, snapshot.max_us)
        self.count += snapshot.count
        self.sum_us += snapshot.sum_us

    @property
    def mean_ms(self) -> float:
        return self.sum_us / self.count / 1000 if self.count else 0.0

    @property
    def stddev_ms(self) -> float:
        return float(self._histogram.get_stddev()) / 1000 if self.count else 0.0

    def percentiles_ms(self) -> dict[str, float]:
        """The :data:`PERCENTILES`, each capped by the exact max (HDR reports a bucket's upper edge)."""
        if not self.count:
            return {}
        values = self._histogram.get_percentile_to_value_dict(list(PERCENTILES))
        return {percentile_key(p): min(values[p], self.max_us) / 1000 for p in PERCENTILES}

    def buckets(self, count: int = 10) -> list[HistogramBucket]:
        """``count`` equal-width buckets from min to max, filled from the histogram's own bins."""
        if not self.count:
            return []
        low, high = self.min_us, self.max_us
        if high == low:
            return [HistogramBucket(high / 1000, self.count)]
        width = (high - low) / count
        counts = [0] * count
        for item in self._histogram.get_recorded_iterator():
            value = min(max(int(item.value_iterated_to), low), high)
            counts[min(int((value - low) / width), count - 1)] += int(item.count_at_value_iterated_to)
        return [
            HistogramBucket(round((low + width * (index + 1)) / 1000, 3), bucket)
            for index, bucket in enumerate(counts)
        ]
