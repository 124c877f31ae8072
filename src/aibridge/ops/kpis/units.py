"""Parsing of the human values ``check-kpis`` takes: durations, byte sizes and KPI thresholds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from aibridge.errors import UsageError
from aibridge.ops.units import parse_duration

__all__ = (
    "DEFAULT_THRESHOLDS",
    "KPI_NAMES",
    "KpiName",
    "Threshold",
    "format_bytes",
    "format_seconds",
    "parse_bytes",
    "parse_kpi_option",
)

KpiName = Literal["uptime", "health_latency", "memory", "error_rate", "startup"]
KPI_NAMES: tuple[KpiName, ...] = ("uptime", "health_latency", "memory", "error_rate", "startup")

_ALIASES: dict[str, KpiName] = {
    "uptime": "uptime",
    "availability": "uptime",
    "health_latency": "health_latency",
    "latency": "health_latency",
    "memory": "memory",
    "mem": "memory",
    "error_rate": "error_rate",
    "errors": "error_rate",
    "startup": "startup",
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_bytes(text: str, what: str) -> int:
    """Bytes in "512MB", "1GiB", "256m" or a bare byte count.

    Memory limits are binary everywhere they come from (cgroups, Fly's ``[[vm]] memory``), so
    "512MB" means 512 MiB here too, as flyctl reads it.
    """
    match = _SIZE.match(text)
    if match is None or (not match.group(2) and match.group(3)):
        raise UsageError(f"{what}: expected a size like 512MB or 1GiB, got {text!r}")
    value = float(match.group(1)) * 1024 ** _POWER[match.group(2).lower()]
    if value < 1:
        raise UsageError(f"{what}: must be more than zero, got {text!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One KPI target: a limit in the KPI's unit and, for latency, the quantile it applies to."""

    limit: float
    """Percent for uptime/memory/error_rate, seconds for health_latency/startup."""
    quantile: float = 0.95
    """Share of /health responses that must be within ``limit`` (health_latency only)."""

    def describe(self, name: KpiName) -> str:
        if name == "uptime":
            return f"> {self.limit:g} %"
        if name == "health_latency":
            return f"p{self.quantile * 100:g} ≤ {format_seconds(self.limit)}"
        if name == "startup":
            return f"< {format_seconds(self.limit)}"
        if name == "memory":
            return f"< {self.limit:g} % of limit"
        return f"< {self.limit:g} %"


DEFAULT_THRESHOLDS: dict[KpiName, Threshold] = {
    "uptime": Threshold(99.9),
    "health_latency": Threshold(0.5, 0.95),
    "memory": Threshold(80.0),
    "error_rate": Threshold(1.0),
    "startup": Threshold(30.0),
}


def _percent(text: str, what: str) -> float:
    try:
        value = float(text.strip().removesuffix("%").strip())
    except ValueError:
        raise UsageError(f"{what}: expected a percentage like 99.9 or 99.9%, got {text!r}") from None
    if not 0 <= value <= 100:
        raise UsageError(f"{what}: a percentage must be between 0 and 100, got {text!r}")
    return value


def parse_kpi_option(option: str) -> tuple[KpiName, Threshold]:
    """One ``--kpi NAME=THRESHOLD``: uptime=99.5, health_latency=300ms@p99, memory=75%, startup=20s."""
    what = f"--kpi {option!r}"
    name_text, sep, value = option.partition("=")
    name = _ALIASES.get(name_text.strip().lower().replace("-", "_"))
    if not sep or not value.strip():
        raise UsageError(f"{what}: expected NAME=THRESHOLD, e.g. uptime=99.9 or health_latency=500ms")
    if name is None:
        raise UsageError(f"{what}: unknown KPI {name_text.strip()!r}; known: {', '.join(KPI_NAMES)}")
    if name == "health_latency":
        limit_text, _, quantile_text = value.partition("@")
        quantile = DEFAULT_THRESHOLDS["health_latency"].quantile
        if quantile_text:
            match = re.fullmatch(r"\s*p(\d+(?:\.\d+)?)\s*", quantile_text, re.IGNORECASE)
            if match is None or not 0 < float(match.group(1)) <= 100:
                raise UsageError(f"{what}: expected a quantile like @p95 or @p99, got {quantile_text!r}")
            quantile = float(match.group(1)) / 100
        return name, Threshold(parse_duration(_with_unit(limit_text, what), what), quantile)
    if name == "startup":
        return name, Threshold(parse_duration(_with_unit(value, what), what))
    return name, Threshold(_percent(value, what))


def _with_unit(text: str, what: str) -> str:
    """A latency needs its unit: is "300" 300 ms or 300 s? (loadtest refuses it the same way.)"""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        raise UsageError(f"{what}: give the unit, e.g. {text.strip()}ms or {text.strip()}s")
    return text


def format_seconds(seconds: float) -> str:
    """500 ms, 1.2 s, 3 m 20 s: short enough for a table cell."""
    if not math.isfinite(seconds):
        return "∞"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def format_bytes(count: float) -> str:
    """Binary units, as memory limits are: 512 MiB, 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.4g} {unit}"
        count /= 1024
    return f"{count:.4g} TiB"
