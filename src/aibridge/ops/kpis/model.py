"""What ``check-kpis`` reports: one verdict per KPI, extra measurements, series, and an exit code."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aibridge.ops.kpis.charts import Chart

__all__ = ("EXIT_CANNOT_TELL", "EXIT_FAIL", "EXIT_PASS", "KpiReport", "KpiResult", "Measurement", "Verdict")

Mode = Literal["snapshot", "window", "prometheus"]

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CANNOT_TELL = 3


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CANNOT_TELL = "cannot tell"


@dataclass(frozen=True, slots=True)
class KpiResult:
    """The verdict on one KPI and, always, how it was reached."""

    name: str
    target: str
    """The threshold in words, e.g. "> 99.9 %"."""
    verdict: Verdict
    measured: str
    """The measured value for people ("100 % (13/13 probes)"), or why there is none."""
    how: str
    """Where the number comes from and what it cannot see."""
    value: float | None = None
    """The measured value in the KPI's unit (percent or seconds), for machines."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """A dashboard figure with no target of its own (throughput, CPU, latency percentiles)."""

    name: str
    measured: str
    how: str
    value: float | None = None


@dataclass(slots=True)
class KpiReport:
    """Everything one ``check-kpis`` run found; ``complete`` is False while a window is still running."""

    mode: Mode
    target: str
    metrics_url: str | None
    """Where the metrics came from: the /metrics URL, or the Prometheus API base."""
    span_s: float
    """Seconds the measurements cover (0 for a snapshot, the range in Prometheus mode)."""
    kpis: list[KpiResult] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    latency_ms: list[float | None] = field(default_factory=list)
    """/health latency per probe (None: no answer); in Prometheus mode the server-side p95 per step."""
    memory_bytes: list[float] = field(default_factory=list)
    """Resident memory per scrape (per step in Prometheus mode)."""
    complete: bool = True
    charts: list[Chart] = field(default_factory=list)
    """Time series over the window for the HTML report (empty for a snapshot)."""

    @property
    def exit_code(self) -> int:
        """0 all pass, 1 any KPI fails (wins over 3), 3 a KPI could not be measured."""
        verdicts = {k.verdict for k in self.kpis}
        if Verdict.FAIL in verdicts:
            return EXIT_FAIL
        if Verdict.CANNOT_TELL in verdicts or not self.kpis:
            return EXIT_CANNOT_TELL
        return EXIT_PASS

    def kpi(self, name: str) -> KpiResult:
        return next(k for k in self.kpis if k.name == name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        for kpi in data["kpis"]:
            kpi["verdict"] = str(kpi["verdict"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
