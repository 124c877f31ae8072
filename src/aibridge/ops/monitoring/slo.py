"""The bridge's KPIs as PromQL: service-level objectives with error budgets, and plain thresholds.

Three KPIs are SLOs over events, so they get error-budget burn-rate alerts (Google SRE workbook,
ch. 5, "multiwindow, multi-burn-rate"; the scheme sloth and pyrra generate):

- uptime: the share of scrapes where ``up`` was 1 (budget 0.1 % at the default 99.9 %);
- error rate: the share of HTTP requests answered 5xx (budget 1 %);
- health latency: the share of ``/health`` requests slower than the limit (budget 5 % at p95).

Memory and start-up are states, not event ratios: they get plain threshold alerts.
Every expression aggregates ``by (app)`` (Fly's Prometheus labels each series with its app), and
uses only ``rate``/``avg_over_time`` over a window, which Prometheus and VictoriaMetrics (Fly's
hosted Prometheus) compute alike on counters that exist from start-up at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, KpiName, Threshold, format_seconds

__all__ = (
    "BURN_WINDOWS",
    "DEFAULT_SELECTOR",
    "HEALTH_ROUTE",
    "BurnWindow",
    "Slo",
    "memory_ratio",
    "slos",
    "startup_seconds",
)

DEFAULT_SELECTOR = 'job="aibridge"'
"""Picks the bridge's series when no Fly app name is known: scrape it under job "aibridge"."""
HEALTH_ROUTE = "/health"
REQUESTS = "aibridge_http_requests_total"
DURATION = "aibridge_http_request_duration_seconds"


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """Alert when the budget burns ``factor`` times too fast over both the long and the short window.

    The long window makes the alert significant, the short one makes it stop soon after the burn
    does, which is why these alerts need no ``for:`` clause.
    """

    severity: str
    factor: float
    long: str
    short: str


BURN_WINDOWS = (
    # For a 30-day SLO: 2 % of the budget in 1 h, 5 % in 6 h page; 10 % in 1 d, 10 % in 3 d ticket.
    BurnWindow("page", 14.4, "1h", "5m"),
    BurnWindow("page", 6.0, "6h", "30m"),
    BurnWindow("ticket", 3.0, "1d", "2h"),
    BurnWindow("ticket", 1.0, "3d", "6h"),
)


def _matchers(selector: str, *more: str) -> str:
    return "{" + ", ".join(m for m in (selector, *more) if m) + "}"


@dataclass(frozen=True, slots=True)
class Slo:
    """One KPI as an objective on a ratio of bad events; ``bad_ratio(window)`` is its PromQL."""

    kpi: KpiName
    name: str
    """CamelCase, for alert names."""
    objective: float
    """The share of good events promised, 0..1."""
    what: str
    selector: str
    le: float = 0.5
    """health_latency only: the histogram bucket that is the latency limit."""

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    def bad_ratio(self, window: str) -> str:
        s = self.selector
        if self.kpi == "uptime":
            return f"1 - avg by (app) (avg_over_time(up{_matchers(s)}[{window}]))"
        if self.kpi == "error_rate":
            errors = _matchers(s, 'status="5xx"')
            return (
                f"sum by (app) (rate({REQUESTS}{errors}[{window}]))\n"
                f"/\nsum by (app) (rate({REQUESTS}{_matchers(s)}[{window}]))"
            )
        route, le = f'route="{HEALTH_ROUTE}"', f'le="{self.le:g}"'
        return (
            f"1 - (\n  sum by (app) (rate({DURATION}_bucket{_matchers(s, route, le)}[{window}]))\n"
            f"  /\n  sum by (app) (rate({DURATION}_count{_matchers(s, route)}[{window}]))\n)"
        )


def slos(selector: str = DEFAULT_SELECTOR, thresholds: dict[KpiName, Threshold] | None = None) -> list[Slo]:
    """The three event-ratio KPIs as SLOs, with ``check-kpis``' thresholds."""
    t = thresholds or DEFAULT_THRESHOLDS
    latency = t["health_latency"]
    return [
        Slo("uptime", "Uptime", t["uptime"].limit / 100, f"uptime > {t['uptime'].limit:g} %", selector),
        Slo(
            "error_rate",
            "ErrorRate",
            1 - t["error_rate"].limit / 100,
            f"5xx share < {t['error_rate'].limit:g} %",
            selector,
        ),
        Slo(
            "health_latency",
            "HealthLatency",
            latency.quantile,
            f"{latency.quantile * 100:g} % of {HEALTH_ROUTE} within {format_seconds(latency.limit)}",
            selector,
            le=latency.limit,
        ),
    ]


def memory_ratio(selector: str = DEFAULT_SELECTOR) -> str:
    """Resident memory over the machine's limit, per instance (the limit's own labels ignored)."""
    m = _matchers(selector)
    return (
        f"max by (app, instance) (process_resident_memory_bytes{m})\n"
        f"/\nmax by (app, instance) (aibridge_memory_limit_bytes{m})"
    )


def startup_seconds(selector: str = DEFAULT_SELECTOR) -> str:
    return f"max by (app, instance) (aibridge_startup_duration_seconds{_matchers(selector)})"
