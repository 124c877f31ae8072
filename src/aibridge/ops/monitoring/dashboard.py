"""The bridge's Grafana dashboard, built with grafana-foundation-sdk (Grafana's own typed builders).

It targets Fly's managed Grafana (fly-metrics.net) and its "Prometheus on Fly" data source, but
the data source, app and instance are template variables, so any Prometheus that labels the
bridge's series with ``app`` and ``instance`` works. Every query uses only metrics the bridge
exports (plus ``up``, which Prometheus writes per target).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)

from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, KpiName
from aibridge.ops.monitoring.slo import HEALTH_ROUTE

__all__ = ("DASHBOARD_UID", "FLY_DATASOURCE", "PanelQuery", "dashboard_json", "panel_queries")

DASHBOARD_UID = "aibridge-bridge"
FLY_DATASOURCE = "Prometheus on Fly"
_DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
S = 'app="$app", instance=~"$instance"'
"""The matchers every query carries: the dashboard's app and instance variables."""
REQ = "aibridge_http_requests_total"
DUR = "aibridge_http_request_duration_seconds"
GREEN, ORANGE, RED = "green", "orange", "red"
BY_MACHINE = "{{instance}}"


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One panel's query, for tests and for people: what the dashboard asks Prometheus."""

    panel: str
    expr: str
    legend: str = ""


def _time_series_queries() -> list[tuple[str, str, list[PanelQuery], str]]:
    """(title, unit, queries, description) for every time-series panel, in layout order."""
    ri = "$__rate_interval"
    errors = f'(sum(rate({REQ}{{{S}, status="5xx"}}[{ri}])) or vector(0))'
    quantiles = [
        PanelQuery(
            "Response time",
            f"histogram_quantile({q}, sum by (le) (rate({DUR}_bucket{{{S}}}[{ri}])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]
    return [
        (
            "Request throughput",
            "reqps",
            [
                PanelQuery(
                    "Request throughput", f"sum by (instance) (rate({REQ}{{{S}}}[{ri}]))", "{{instance}}"
                )
            ],
            "HTTP requests per second, every route, per machine.",
        ),
        (
            "Error rate",
            "percentunit",
            [PanelQuery("Error rate", f"{errors}\n/\nsum(rate({REQ}{{{S}}}[{ri}]))", "5xx share")],
            "Share of HTTP requests answered 5xx (KPI: < 1 %).",
        ),
        ("Response time", "s", quantiles, "Bucket-interpolated percentiles over every route."),
        (
            "Memory",
            "bytes",
            [
                PanelQuery("Memory", f"process_resident_memory_bytes{{{S}}}", "RSS {{instance}}"),
                PanelQuery(
                    "Memory", f"max by (instance) (aibridge_memory_limit_bytes{{{S}}})", "limit {{instance}}"
                ),
            ],
            "Resident memory against the machine's limit (cgroup, else the VM's MemTotal).",
        ),
        (
            "CPU",
            "percentunit",
            [PanelQuery("CPU", f"rate(process_cpu_seconds_total{{{S}}}[{ri}])", "{{instance}}")],
            "Share of one core the bridge process uses.",
        ),
        (
            "Uptime",
            "percentunit",
            [PanelQuery("Uptime", f"avg by (instance) (avg_over_time(up{{{S}}}[{ri}]))", "{{instance}}")],
            "Share of successful scrapes (1 = up). Stopped machines are not scraped, so idle stops "
            "are not downtime.",
        ),
        (
            "WebSocket connections",
            "short",
            [PanelQuery("WebSocket connections", f"aibridge_websocket_connections{{{S}}}", "{{instance}}")],
            "Agent sockets open now.",
        ),
        (
            "Envelopes by outcome",
            "ops",
            [
                PanelQuery(
                    "Envelopes by outcome",
                    f"sum by (outcome) (rate(aibridge_envelopes_total{{{S}}}[{ri}]))",
                    "{{outcome}}",
                )
            ],
            "Envelopes per second: delivered, queued for offline agents, broadcast, dropped, rejected.",
        ),
        (
            "Queue depth",
            "short",
            [PanelQuery("Queue depth", f"aibridge_queue_depth{{{S}}}", "{{instance}}")],
            "Envelopes waiting in offline queues.",
        ),
    ]


def _kpi_queries() -> list[tuple[KpiName, str, str, PanelQuery, list[Threshold]]]:
    """(kpi, title, unit, query, threshold steps) for the stat panel of each KPI, coloured by its target."""
    t = DEFAULT_THRESHOLDS
    r = "$__range"
    up, err, mem = (round(t[k].limit / 100, 6) for k in ("uptime", "error_rate", "memory"))
    lat, q = t["health_latency"].limit, t["health_latency"].quantile
    health = f'{S}, route="{HEALTH_ROUTE}"'
    return [
        (
            "uptime",
            f"Uptime (KPI > {t['uptime'].limit:g} %)",
            "percentunit",
            PanelQuery("Uptime KPI", f"avg(avg_over_time(up{{{S}}}[{r}]))"),
            [Threshold(None, RED), Threshold(up, GREEN)],
        ),
        (
            "health_latency",
            f"/health p{q * 100:g} (KPI ≤ {lat * 1000:g} ms)",
            "s",
            PanelQuery(
                "Health latency KPI",
                f"histogram_quantile({q:g}, sum by (le) (increase({DUR}_bucket{{{health}}}[{r}])))",
            ),
            [Threshold(None, GREEN), Threshold(lat, RED)],
        ),
        (
            "memory",
            f"Memory (KPI < {t['memory'].limit:g} % of limit)",
            "percentunit",
            PanelQuery(
                "Memory KPI",
                f"max(max by (instance) (process_resident_memory_bytes{{{S}}})\n"
                f"/ max by (instance) (aibridge_memory_limit_bytes{{{S}}}))",
            ),
            [Threshold(None, GREEN), Threshold(round(mem * 0.9, 6), ORANGE), Threshold(mem, RED)],
        ),
        (
            "error_rate",
            f"Errors (KPI < {t['error_rate'].limit:g} %)",
            "percentunit",
            PanelQuery(
                "Error rate KPI",
                f'(sum(increase({REQ}{{{S}, status="5xx"}}[{r}])) or vector(0))\n'
                f"/ sum(increase({REQ}{{{S}}}[{r}]))",
            ),
            [Threshold(None, GREEN), Threshold(err, RED)],
        ),
        (
            "startup",
            f"Start-up (KPI < {t['startup'].limit:g} s)",
            "s",
            PanelQuery("Startup KPI", f"max(aibridge_startup_duration_seconds{{{S}}})"),
            [Threshold(None, GREEN), Threshold(t["startup"].limit, RED)],
        ),
    ]


def panel_queries() -> list[PanelQuery]:
    """Every query of every panel, KPI stats first."""
    queries = [k[3] for k in _kpi_queries()]
    for _, _, panel_queries_, _ in _time_series_queries():
        queries.extend(panel_queries_)
    return queries


def _targets(queries: Sequence[PanelQuery]) -> list[cogbuilder.Builder[variants.Dataquery]]:
    return [
        prometheus.Dataquery().expr(q.expr).legend_format(q.legend).ref_id(chr(ord("A") + i)).range()
        for i, q in enumerate(queries)
    ]


def _variables(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_variable(
            dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(VariableOption(selected=True, text=FLY_DATASOURCE, value=FLY_DATASOURCE))
        )
        .with_variable(
            dash.QueryVariable("app")
            .label("App")
            .datasource(_DS)
            .query("label_values(aibridge_build_info, app)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            dash.QueryVariable("instance")
            .label("Machine")
            .datasource(_DS)
            .query('label_values(aibridge_build_info{app="$app"}, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )


def _build() -> Any:
    builder = _variables(
        dash.Dashboard("aibridge")
        .uid(DASHBOARD_UID)
        .description("The aibridge bridge: the five KPIs, traffic, latency, memory, CPU, agents and queues.")
        .tags(["aibridge", "fly"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
    )
    for i, (_, title, unit, query, steps) in enumerate(_kpi_queries()):
        panel = (
            stat.Panel()
            .title(title)
            .datasource(_DS)
            .unit(unit)
            .grid_pos(GridPos(h=4, w=4, x=4 * i, y=0))
            .with_target(prometheus.Dataquery().expr(query.expr).ref_id("A").instant())
            .thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        )
        builder = builder.with_panel(panel)
    for i, (title, unit, queries, description) in enumerate(_time_series_queries()):
        width = 12 if i < 6 else 8
        x = (i % 2) * 12 if i < 6 else (i - 6) * 8
        y = 4 + (i // 2) * 8 if i < 6 else 28
        series = (
            timeseries.Panel()
            .title(title)
            .description(description)
            .datasource(_DS)
            .unit(unit)
            .grid_pos(GridPos(h=8, w=width, x=x, y=y))
            .targets(_targets(queries))
            .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).show_legend(True))
        )
        builder = builder.with_panel(series)
    return builder.build()


def dashboard_json() -> str:
    """The dashboard as Grafana's JSON model (import it, or provision it as a file)."""
    return json.dumps(_build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
