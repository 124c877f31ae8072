"""Arithmetic on counters and histograms: increases across restarts, exact bucket shares, quantiles."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aibridge.ops.kpis.scrape import Probe, Scrape

__all__ = (
    "Buckets",
    "counter_increase",
    "histogram_increase",
    "is_error_status",
    "nearest_rank",
    "restart_startup_bounds",
    "restarts",
)

START_TIME = "process_start_time_seconds"
_CODE_5XX = re.compile(r"^5(\d\d|xx)$", re.IGNORECASE)

LabelFilter = Callable[[Mapping[str, str]], bool]


def is_error_status(value: str) -> bool:
    """A server error, whether labelled as a class ("5xx") or a code ("503")."""
    return bool(_CODE_5XX.match(value.strip()))


def restarts(scrapes: Sequence[Scrape]) -> int:
    """How many times the process start time changed between consecutive scrapes."""
    starts = [s.gauge(START_TIME) for s in scrapes]
    return sum(1 for a, b in itertools.pairwise(starts) if a is not None and b is not None and a != b)


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def counter_increase(
    scrapes: Sequence[Scrape], name: str, keep: LabelFilter = lambda _: True
) -> dict[tuple[tuple[str, str], ...], float]:
    """Increase of every series of counter sample ``name`` over consecutive scrapes.

    Like PromQL ``increase`` without extrapolation: a value that went down, or any value after
    the process start time changed, means the counter restarted from zero, so the whole new
    value is counted. A series missing from the earlier scrape counts from zero, because
    prometheus-client creates a labelled series on its first increment.
    """
    total: dict[tuple[tuple[str, str], ...], float] = {}
    for before, after in itertools.pairwise(scrapes):
        restarted = (
            before.gauge(START_TIME) is not None
            and after.gauge(START_TIME) is not None
            and before.gauge(START_TIME) != after.gauge(START_TIME)
        )
        old = {_key(labels): value for labels, value in before.series(name) if keep(labels)}
        for labels, value in after.series(name):
            if not keep(labels):
                continue
            key = _key(labels)
            previous = 0.0 if restarted else old.get(key, 0.0)
            total[key] = total.get(key, 0.0) + (value - previous if value >= previous else value)
    return total


@dataclass(frozen=True, slots=True)
class Buckets:
    """A histogram's cumulative bucket counts, by upper bound, plus the total observations."""

    counts: dict[float, float]
    total: float

    @classmethod
    def from_increase(cls, increase: Mapping[tuple[tuple[str, str], ...], float]) -> Buckets:
        counts: dict[float, float] = {}
        for key, value in increase.items():
            le = float(dict(key)["le"])
            counts[le] = counts.get(le, 0.0) + value
        return cls(counts, counts.get(math.inf, 0.0))

    def share_within(self, limit: float) -> tuple[float, float, float | None, float | None]:
        """Bounds on the share of observations ≤ ``limit``: (low, high, lower bound, upper bound).

        Exact (low == high) when ``limit`` is a bucket bound, as 0.5 s is for the bridge.
        """
        bounds = sorted(self.counts)
        below = max((b for b in bounds if b <= limit), default=None)
        above = min((b for b in bounds if b >= limit), default=None)
        low = self.counts[below] / self.total if below is not None else 0.0
        high = self.counts[above] / self.total if above is not None else 1.0
        return low, high, below, above

    def quantile(self, q: float) -> float | None:
        """``histogram_quantile`` semantics: linear inside a bucket, top bucket → its lower bound."""
        if self.total <= 0 or math.inf not in self.counts:
            return None
        rank = q * self.total
        previous_bound, previous_count = 0.0, 0.0
        for bound in sorted(self.counts):
            count = self.counts[bound]
            if count >= rank:
                if math.isinf(bound):
                    return previous_bound
                if count == previous_count:
                    return bound
                return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                    count - previous_count
                )
            previous_bound, previous_count = bound, count
        return previous_bound


def histogram_increase(scrapes: Sequence[Scrape], histogram: str, keep: LabelFilter) -> Buckets:
    """The buckets of ``histogram`` filled during the scrapes, summed over the series ``keep`` selects."""
    return Buckets.from_increase(counter_increase(scrapes, f"{histogram}_bucket", keep))


def lifetime_buckets(scrape: Scrape, histogram: str, keep: LabelFilter) -> Buckets:
    """The buckets since the process started (one scrape: no window to subtract)."""
    increase = {_key(labels): value for labels, value in scrape.series(f"{histogram}_bucket") if keep(labels)}
    return Buckets.from_increase(increase)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile: a value that was really observed, never interpolated."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def restart_startup_bounds(scrapes: Sequence[Scrape], probes: Sequence[Probe]) -> list[tuple[float, float]]:
    """For each restart between scrapes: (lower, upper) seconds from the new process start to ready.

    Ready came after the last failed probe since the start, and before the first 2xx answered.
    """
    bounds: list[tuple[float, float]] = []
    for before, after in itertools.pairwise(scrapes):
        old, new = before.gauge(START_TIME), after.gauge(START_TIME)
        if old is None or new is None or old == new:
            continue
        ready = next((p for p in probes if p.ok and p.at >= new), None)
        if ready is None:
            continue
        failed = [p.at for p in probes if not p.ok and new <= p.at < ready.at]
        bounds.append((max(failed, default=new) - new, ready.at + (ready.latency_s or 0.0) - new))
    return bounds
