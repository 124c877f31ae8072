"""``aibridge check-kpis``: judge a running app against its KPIs, saying how each was measured.

Three modes: a snapshot (one probe and one scrape), a window of probes and scrapes, and PromQL
over a range against a Prometheus-compatible API. Anything a mode cannot measure is reported as
"cannot tell", never as a pass.
"""

from aibridge.ops.kpis.config import KpiOptions
from aibridge.ops.kpis.model import KpiReport, KpiResult, Measurement, Verdict
from aibridge.ops.kpis.render import render_report
from aibridge.ops.kpis.runner import check_kpis, watch_kpis
from aibridge.ops.kpis.units import (
    DEFAULT_THRESHOLDS,
    Threshold,
    parse_bytes,
    parse_kpi_option,
)

__all__ = (
    "DEFAULT_THRESHOLDS",
    "KpiOptions",
    "KpiReport",
    "KpiResult",
    "Measurement",
    "Threshold",
    "Verdict",
    "check_kpis",
    "parse_bytes",
    "parse_kpi_option",
    "render_report",
    "watch_kpis",
)
