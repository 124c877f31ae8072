"""The text form of a report: a Rich table of KPIs, dashboard figures, and sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from aibridge.ops.kpis.model import KpiReport, Verdict
from aibridge.ops.kpis.units import format_bytes, format_seconds

__all__ = ("render_report", "sparkline")

_BARS = "▁▂▃▄▅▆▇█"
_STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.CANNOT_TELL: "bold yellow"}


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    """One character per value (the last ``width``), scaled min..max; a gap (·) where a value is missing."""
    shown = list(values)[-width:]
    present = [v for v in shown if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low or 1.0
    return "".join(
        "·" if v is None else _BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1) + 0.5))]
        for v in shown
    )


def _title(report: KpiReport) -> str:
    if report.mode == "snapshot":
        scope = "snapshot (one probe, one scrape)"
    elif report.mode == "prometheus":
        scope = f"Prometheus, last {format_seconds(report.span_s)}"
    else:
        scope = f"window {format_seconds(report.span_s)}" + ("" if report.complete else " (running…)")
    return f"KPIs of {report.target} — {scope}"


def render_report(report: KpiReport) -> Group:
    """The table KPI · target · measured · verdict · how measured, then figures and sparklines."""
    table = Table(title=_title(report), title_justify="left", expand=False)
    table.add_column("KPI", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("measured", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("how measured", style="dim", overflow="fold")
    for kpi in report.kpis:
        table.add_row(
            kpi.name, kpi.target, kpi.measured, Text(str(kpi.verdict), _STYLE[kpi.verdict]), kpi.how
        )
    for m in report.measurements:
        table.add_row(m.name, "—", m.measured, Text("info", "dim"), m.how)
    parts: list[Table | Text] = [table]
    latency = [v for v in report.latency_ms if v is not None]
    if len(report.latency_ms) > 1 and latency:
        line = f"/health latency  {sparkline(report.latency_ms)}  "
        line += f"{format_seconds(min(latency) / 1000)} … {format_seconds(max(latency) / 1000)}"
        parts.append(Text(line + ("  (· = no answer)" if None in report.latency_ms else "")))
    if len(report.memory_bytes) > 1:
        memory = report.memory_bytes
        line = (
            f"memory (RSS)     {sparkline(memory)}  {format_bytes(min(memory))} … {format_bytes(max(memory))}"
        )
        parts.append(Text(line))
    verdicts = [k.verdict for k in report.kpis]
    summary = ", ".join(f"{verdicts.count(v)} {v}" for v in Verdict if verdicts.count(v))
    parts.append(Text(f"{summary} → exit {report.exit_code}"))
    return Group(*parts)
