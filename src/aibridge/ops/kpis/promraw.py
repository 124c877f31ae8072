"""Counter increases from raw samples, with series births and process restarts handled explicitly.

PromQL's ``increase()`` cannot be trusted for an error rate: Prometheus needs two samples of a
series, so a child born at 10 (prometheus-client creates labelled children on first use) adds
nothing, and a restart whose counter comes back at the value it had is no visible reset.
VictoriaMetrics (Fly's hosted Prometheus) counts a new series' first sample in full instead.
So this reads the samples themselves (``metric[R]``, the same on both) and does the arithmetic:

- a series whose first sample comes after its instance's first sample was born while watched:
  it was 0 before, its whole first value counts;
- when ``process_start_time_seconds`` of the instance changed between two samples, the process
  restarted: the counter began again at 0, its whole new value counts;
- otherwise a drop is a reset (the new value counts), a rise counts its difference.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ("RawIncrease", "raw_increase")

START_TIME = "process_start_time_seconds"
Key = tuple[tuple[str, str], ...]


class _Api(Protocol):
    def matrix(self, query: str, at: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]: ...


@dataclass(slots=True)
class RawIncrease:
    by_series: dict[Key, float] = field(default_factory=dict)
    births: int = 0
    restarts: int = 0


def raw_increase(prom: _Api, counter: str, selector: str, range_: str, at: float) -> RawIncrease:
    """Increase of every series of ``counter`` over ``range_`` ending at ``at`` (see module doc)."""
    starts: dict[str, tuple[list[float], list[float]]] = {}
    for labels, values in prom.matrix(f"{START_TIME}{{{selector}}}[{range_}]", at):
        starts[labels.get("instance", "")] = ([t for t, _ in values], [v for _, v in values])
    first_seen: dict[str, float] = {}
    for labels, values in prom.matrix(f"up{{{selector}}}[{range_}]", at):
        if values:
            instance = labels.get("instance", "")
            first_seen[instance] = min(first_seen.get(instance, values[0][0]), values[0][0])

    def start_at(instance: str, t: float) -> float | None:
        times, values = starts.get(instance, ([], []))
        index = bisect.bisect_right(times, t + 1e-6) - 1
        return values[index] if index >= 0 else None

    out = RawIncrease()
    restarts_seen: set[tuple[str, float]] = set()
    for labels, values in prom.matrix(f"{counter}{{{selector}}}[{range_}]", at):
        instance = labels.get("instance", "")
        key: Key = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
        total = 0.0
        if values and values[0][0] > first_seen.get(instance, values[0][0]) + 1e-6:
            total += values[0][1]  # born while watched: it was 0 before
            out.births += 1
        for (t0, v0), (t1, v1) in itertools.pairwise(values):
            s0, s1 = start_at(instance, t0), start_at(instance, t1)
            if s0 is not None and s1 is not None and s0 != s1:
                total += v1
                restarts_seen.add((instance, s1))
            else:
                total += v1 - v0 if v1 >= v0 else v1
        out.by_series[key] = out.by_series.get(key, 0.0) + total
    out.restarts = len(restarts_seen)
    return out
