"""Service-level objectives (``p95<500ms,errors<1%,rps>100``) and the verdict they give a run."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aibridge.errors import UsageError

__all__ = (
    "LATENCY_METRICS",
    "ObjectiveResult",
    "Slo",
    "Verdict",
    "evaluate_slos",
    "kpi_slos",
    "parse_slos",
)

LATENCY_METRICS = ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")
"""Latency metrics an objective can name; values are compared in milliseconds."""
_RATIO_METRICS = ("errors", "success")
_METRICS = (*LATENCY_METRICS, *_RATIO_METRICS, "rps")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_LATENCY_UNITS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_SLO = re.compile(r"^\s*([a-z][a-z0-9.]*)\s*(<=|>=|<|>)\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zµ%/]*)\s*$")


@dataclass(frozen=True)
class Slo:
    """One objective: ``metric op threshold``; latency thresholds in ms, ratios in %, rps in req/s."""

    metric: str
    op: str
    threshold: float
    text: str
    """The objective as the user wrote it, shown in the verdict table."""

    @property
    def unit(self) -> str:
        if self.metric in LATENCY_METRICS:
            return "ms"
        return "%" if self.metric in _RATIO_METRICS else "req/s"

    def holds(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.threshold)


@dataclass(frozen=True)
class ObjectiveResult:
    """One row of the verdict table."""

    slo: Slo
    measured: float | None
    """None when the run produced nothing to measure (e.g. no response at all for a latency)."""
    passed: bool
    note: str | None = None


@dataclass(frozen=True)
class Verdict:
    """Every objective with its measured value; the run passes only if all of them hold."""

    results: tuple[ObjectiveResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


def kpi_slos() -> list[Slo]:
    """The seed's health KPIs: p95 under 500 ms and under 1 % errors."""
    return parse_slos("p95<500ms,errors<1%")


def parse_slos(text: str) -> list[Slo]:
    """Parse ``"p95<500ms,errors<1%,rps>100"``; a bad item raises :class:`UsageError` naming it."""
    slos: list[Slo] = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            slos.append(_parse_one(item))
    if not slos:
        raise UsageError(f"--slo {text!r} has no objective (example: p95<500ms,errors<1%,rps>100)")
    return slos


def _parse_one(item: str) -> Slo:
    match = _SLO.match(item.lower())
    if match is None:
        raise UsageError(f"SLO {item!r} is not 'metric<value' (example: p95<500ms, errors<1%, rps>100)")
    metric, op, number, unit = match.groups()
    if metric == "p999":
        metric = "p99.9"
    if metric not in _METRICS:
        raise UsageError(f"SLO {item!r}: unknown metric {metric!r} (known: {', '.join(_METRICS)})")
    value = float(number)
    if metric in LATENCY_METRICS:
        if unit not in _LATENCY_UNITS:
            raise UsageError(f"SLO {item!r}: a latency needs a unit, ms or s (e.g. {metric}<500ms)")
        value *= _LATENCY_UNITS[unit]
    elif metric in _RATIO_METRICS:
        if unit != "%":
            raise UsageError(f"SLO {item!r}: {metric} is a percentage (e.g. {metric}{op}1%)")
        if value > 100:
            raise UsageError(f"SLO {item!r}: a percentage cannot exceed 100")
    elif unit not in ("", "/s", "req/s", "rps"):
        raise UsageError(f"SLO {item!r}: rps is in requests per second (e.g. rps>100)")
    return Slo(metric=metric, op=op, threshold=value, text=item)


def evaluate_slos(slos: list[Slo], measured: Mapping[str, float | None], notes: Mapping[str, str]) -> Verdict:
    """Judge each objective against ``measured`` (metric → value); a missing value fails."""
    results = []
    for slo in slos:
        value = measured.get(slo.metric)
        if value is None:
            results.append(ObjectiveResult(slo, None, False, "nothing to measure: no response arrived"))
        else:
            results.append(ObjectiveResult(slo, value, slo.holds(value), notes.get(slo.metric)))
    return Verdict(tuple(results))
