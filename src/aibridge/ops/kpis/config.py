"""The settings of one ``check-kpis`` run, and the URLs derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from aibridge.errors import UsageError
from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, KpiName, Threshold

__all__ = ("DEFAULT_METRICS_PORT", "FLY_PROMETHEUS", "KpiOptions")

DEFAULT_METRICS_PORT = 9091
FLY_PROMETHEUS = "https://api.fly.io/prometheus"
ROUTE_LABELS = ("route", "handler", "path", "endpoint")
STATUS_LABELS = ("status", "code", "status_code")


@dataclass(frozen=True, slots=True)
class KpiOptions:
    """One run of ``check-kpis``. ``window_s == 0`` is a snapshot; ``prometheus`` selects PromQL mode."""

    url: str
    """The app's base URL (its health path is appended) or its full health URL."""
    metrics_url: str | None = None
    """Default: same host, port 9091, /metrics."""
    window_s: float = 60.0
    interval_s: float = 5.0
    config_path: str | None = None
    """A fly.toml whose ``[[vm]]`` memory is the limit when the app exports none."""
    memory_limit_bytes: int | None = None
    prometheus: str | None = None
    """Base URL of a Prometheus-compatible API; "fly" means Fly's hosted one."""
    org: str | None = None
    token: str | None = None
    range_s: float = 86400.0
    selector: str | None = None
    """PromQL label matchers for the app's series; default from the metrics URL or the Fly app name."""
    thresholds: dict[KpiName, Threshold] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    request_counter: str = "aibridge_http_requests_total"
    duration_histogram: str = "aibridge_http_request_duration_seconds"
    status_label: str | None = None
    """None: the first of status, code, status_code that the counter carries."""
    route_label: str | None = None
    """None: the first of route, handler, path, endpoint that the histogram carries."""
    health_route: str | None = None
    """The histogram's label value for the health route; default: the probed path."""
    memory_limit_metric: str = "aibridge_memory_limit_bytes"
    startup_metric: str = "aibridge_startup_duration_seconds"
    timeout_s: float = 5.0
    """Longest wait for one probe or scrape."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"URL {self.url!r}: expected http(s)://host:port or a full health URL")
        if self.window_s < 0 or self.interval_s <= 0:
            raise UsageError("--window must be ≥ 0 and --interval > 0")
        if 0 < self.window_s < self.interval_s:
            raise UsageError(
                f"--window ({self.window_s:g}s) is shorter than --interval ({self.interval_s:g}s)"
            )
        if self.prometheus is None and (self.org or self.token or self.selector):
            raise UsageError("--org, --token and --selector only apply with --prometheus")
        if self.range_s <= 0:
            raise UsageError("--range must be more than zero")

    @property
    def health_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.path not in ("", "/"):
            return self.url
        return urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))

    @property
    def health_path(self) -> str:
        return self.health_route or urlsplit(self.health_url).path

    @property
    def resolved_metrics_url(self) -> str:
        if self.metrics_url:
            return self.metrics_url
        host = urlsplit(self.url).hostname or ""
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{DEFAULT_METRICS_PORT}/metrics"

    @property
    def prometheus_base(self) -> str:
        base = FLY_PROMETHEUS if self.prometheus == "fly" else (self.prometheus or "")
        base = base.rstrip("/")
        if self.org and not base.endswith("/" + self.org):
            base = f"{base}/{self.org}"
        return base

    @property
    def is_fly(self) -> bool:
        return self.prometheus_base.startswith(FLY_PROMETHEUS)

    @property
    def prometheus_selector(self) -> str:
        """Label matchers (without braces) that pick the app's series in Prometheus."""
        if self.selector:
            return self.selector.strip().removeprefix("{").removesuffix("}")
        if self.is_fly:
            host = urlsplit(self.url).hostname or ""
            return f'app="{host.split(".")[0]}"'
        metrics = urlsplit(self.resolved_metrics_url)
        return f'instance="{metrics.netloc}"'
