"""``check-kpis --html``: one self-contained page with the verdicts and the window's charts.

Charts are SVG drawn here by pygal (pure Python, SVG is its native output, no browser-side
JavaScript needed): the page loads nothing from anywhere, and its Content-Security-Policy says so
to the browser too, so it can be mailed, attached to a CI run or opened offline.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from html import escape

from aibridge.ops.kpis.charts import Chart
from aibridge.ops.kpis.model import KpiReport, Verdict
from aibridge.ops.kpis.units import format_bytes, format_seconds

__all__ = ("render_html",)

_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_COLOURS = {Verdict.PASS: "#1a7f37", Verdict.FAIL: "#cf222e", Verdict.CANNOT_TELL: "#9a6700"}
_FORMAT: dict[str, Callable[[float], str]] = {
    "s": format_seconds,
    "bytes": format_bytes,
    "req/s": lambda v: f"{v:,.0f}/s" if abs(v) >= 100 else f"{v:.3g}/s",
    "cores": lambda v: f"{v * 100:.3g} %",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>KPIs of {target}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1f2328; }}
table {{ border-collapse: collapse; width: 100%; margin: 1em 0; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .35em .6em; text-align: left; vertical-align: top; }}
td.verdict {{ font-weight: 600; color: #fff; text-align: center; white-space: nowrap; }}
.charts {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }}
.chart {{ border: 1px solid #d0d7de; border-radius: 6px; padding: .5em; }}
.empty {{ color: #57606a; padding: 2em; text-align: center; }}
</style></head><body>
<h1>KPIs of {target}</h1>
<p>{summary}</p>
<table id="verdicts"><thead><tr><th>KPI</th><th>target</th><th>measured</th><th>verdict</th>
<th>how measured</th></tr></thead><tbody>
{kpis}
</tbody></table>
{measurements}
<h2>Over the window</h2>
<div class="charts">
{charts}
</div>
</body></html>
"""


def _chart_svg(chart: Chart) -> str:
    import pygal

    if not chart.has_data:
        return f'<div class="chart empty" data-chart="{chart.key}">{escape(chart.title)}: no data</div>'
    fmt = _FORMAT.get(chart.unit, lambda v: f"{v:.3g}")
    svg = pygal.DateTimeLine(
        title=chart.title,
        js=[],  # pygal's tooltips would load a script from the web
        disable_xml_declaration=True,
        width=520,
        height=280,
        show_dots=False,
        dynamic_print_values=False,
        x_value_formatter=lambda when: when.strftime("%H:%M:%S"),
        value_formatter=fmt,
        legend_at_bottom=True,
        truncate_legend=-1,
        truncate_label=-1,
        x_labels_major_count=5,
        show_minor_x_labels=False,
    )
    for series in chart.series:
        points = [(datetime.datetime.fromtimestamp(t, datetime.UTC), v) for t, v in series.points]
        svg.add(series.label, points, allow_interruptions=True)
    # pygal always embeds its tooltip script's config, which only its (unloaded) script reads.
    drawn = _SCRIPT.sub("", svg.render(is_unicode=True))
    return f'<div class="chart" data-chart="{chart.key}">{drawn}</div>'


def render_html(report: KpiReport) -> str:
    """The report page; every value quoted from the report, every chart inline."""
    rows = "\n".join(
        f'<tr data-kpi="{escape(k.name)}"><td>{escape(k.name)}</td><td>{escape(k.target)}</td>'
        f'<td>{escape(k.measured)}</td><td class="verdict" style="background:{_COLOURS[k.verdict]}">'
        f"{escape(str(k.verdict))}</td><td>{escape(k.how)}</td></tr>"
        for k in report.kpis
    )
    extra = "\n".join(
        f"<tr><td>{escape(m.name)}</td><td>{escape(m.measured)}</td><td>{escape(m.how)}</td></tr>"
        for m in report.measurements
    )
    measurements = (
        f"<h2>Measurements</h2><table><tbody>\n{extra}\n</tbody></table>" if report.measurements else ""
    )
    span = format_seconds(report.span_s) if report.span_s else "one snapshot"
    now = datetime.datetime.now(datetime.UTC)
    summary = (
        f"Mode {escape(report.mode)}, {escape(span)}, metrics from {escape(report.metrics_url or '—')}; "
        f"exit code {report.exit_code}. Generated {now:%Y-%m-%d %H:%M:%S} UTC."
    )
    charts = "\n".join(_chart_svg(c) for c in report.charts) or (
        '<div class="chart empty">a snapshot has no time series: run with --window</div>'
    )
    return _PAGE.format(
        csp=_CSP,
        target=escape(report.target),
        summary=summary,
        kpis=rows,
        measurements=measurements,
        charts=charts,
    )
