"""Prometheus metrics of the bridge, on a registry of their own, served on a second port.

Names are a contract (``aibridge check-kpis`` reads them). Hot-path counters are plain ints or
cached prometheus-client children; gauges that describe state (queues, history, memory limit)
are computed only when Prometheus scrapes, so no request pays for them.

The exposition is always the Prometheus text format 0.0.4, never OpenMetrics: the contract has
both a gauge ``aibridge_websocket_connections`` and a counter ``aibridge_websocket_connections_total``,
two families in the text format but one clashing family name in OpenMetrics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from aibridge.server.asgi import ASGIApp, Receive, Scope, Send, call_observed
from aibridge.server.events import EnvelopeOutcome
from aibridge.server.metrics_listener import MetricsServer, metrics_app, serve_metrics

if TYPE_CHECKING:
    from aibridge.server.events import BridgeEvents
    from aibridge.server.store.base import StoreStats

__all__ = (
    "DURATION_BUCKETS",
    "UNMATCHED_ROUTE",
    "BridgeMetrics",
    "MetricsMiddleware",
    "MetricsServer",
    "PrometheusEvents",
    "memory_limit",
    "memory_limit_bytes",
    "metrics_app",
    "seconds_since_process_start",
    "serve_metrics",
)


DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Includes 0.5 exactly: the KPI is "< 500 ms", so its share must be a bucket, not an interpolation."""
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_UNLIMITED_V1 = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded LONG_MAX
_OUTCOMES: tuple[EnvelopeOutcome, ...] = ("delivered", "queued", "broadcast", "dropped", "rejected")

log = logging.getLogger("aibridge.metrics")


def seconds_since_process_start(proc: str = "/proc") -> float | None:
    """Time since this process was started, from ``/proc/self/stat``; ``None`` without /proc.

    Both ends are on the boot-time clock in 10 ms ticks, unlike ``process_start_time_seconds``
    (whole-second ``btime``), so a 0.8 s start-up reads as 0.8 s, not 0 or 2.
    """
    try:
        stat = Path(proc, "self", "stat").read_bytes()
        ticks = int(stat.rpartition(b")")[2].split()[19])  # field 22, starttime (comm may hold spaces)
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cgroups(proc: str) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and v1 memory-controller path, from ``/proc/self/cgroup``."""
    v2 = v1 = None
    try:
        lines = Path(proc, "self", "cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _read_limit(file: Path) -> int | None:
    try:
        raw = file.read_text().strip()
    except OSError:
        return None
    if raw == "max" or not raw.isdigit() or int(raw) >= _UNLIMITED_V1:
        return None
    return int(raw)


def _tightest(root: Path, path: str, name: str) -> int | None:
    """The smallest limit ``name`` on ``path`` or any ancestor below ``root`` (a parent's cap binds too)."""
    parts = [p for p in path.split("/") if p and p != ".."]
    limits = [
        limit
        for depth in range(len(parts), -1, -1)
        if (limit := _read_limit(root.joinpath(*parts[:depth], name))) is not None
    ]
    return min(limits) if limits else None


def memory_limit(
    cgroup_dir: str | os.PathLike[str] = "/sys/fs/cgroup", proc: str | os.PathLike[str] = "/proc"
) -> tuple[int, str] | None:
    """(bytes, source) this process may use: its own cgroup's limit, else the VM's MemTotal.

    The cgroup is the one ``/proc/self/cgroup`` names (v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``), not the mount root, which is the host's on a plain VM. A Fly
    Machine is a Firecracker VM with no container runtime, so there is usually no limit at
    all: then what the VM has (``MemTotal``, a little under the Machine's size) is the limit.
    """
    root = Path(cgroup_dir)
    v2, v1 = _own_cgroups(str(proc))
    limit = _tightest(root, v2, "memory.max") if v2 is not None else None
    if limit is None and v1 is not None:
        limit = _tightest(root / "memory", v1, "memory.limit_in_bytes")
    if limit is not None:
        return limit, "cgroup"
    try:
        for line in Path(proc, "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024, "meminfo"  # the kernel writes kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_limit_bytes(
    cgroup_dir: str | os.PathLike[str], proc: str | os.PathLike[str] = "/proc"
) -> int | None:
    """The byte count of :func:`memory_limit`, or ``None`` when neither source can be read."""
    found = memory_limit(cgroup_dir, proc)
    return found[0] if found else None


class _StateCollector(Collector):
    """Everything read at scrape time: connection and envelope counts, store stats, limits.

    It has no ``describe`` on purpose: the registry then skips its name-clash check, which would
    reject the contract's gauge/counter pair (see the module docstring).
    """

    def __init__(self, metrics: BridgeMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        m = self._m
        yield GaugeMetricFamily(
            "aibridge_websocket_connections", "WebSocket connections open now.", value=m.ws_open
        )
        yield CounterMetricFamily(
            "aibridge_websocket_connections", "WebSocket connections accepted.", value=m.ws_accepted
        )
        envelopes = CounterMetricFamily(
            "aibridge_envelopes", "Envelopes handled, by outcome.", labels=("outcome",)
        )
        for outcome in _OUTCOMES:
            envelopes.add_metric((outcome,), m.envelopes[outcome])
        yield envelopes
        stats = m.read_stats()
        if stats is not None:
            yield GaugeMetricFamily(
                "aibridge_queue_depth", "Envelopes waiting in offline queues.", value=stats.queued_messages
            )
            yield GaugeMetricFamily(
                "aibridge_queued_bytes", "Bytes held in offline queues.", value=stats.queued_bytes
            )
            yield GaugeMetricFamily("aibridge_queues", "Offline queues held.", value=stats.queues)
            yield GaugeMetricFamily(
                "aibridge_history_size", "Envelopes kept in history.", value=stats.history_size
            )
            yield GaugeMetricFamily(
                "aibridge_store_healthy",
                "1 while the store accepts writes, 0 while they fail (see /health `store`).",
                value=0 if stats.failure else 1,
            )
        found = memory_limit(m.cgroup_dir, m.proc_dir) if m.cgroup_dir else None
        if found is not None:
            gauge = GaugeMetricFamily(
                "aibridge_memory_limit_bytes",
                "Memory this process may use: its cgroup's limit, else the VM's MemTotal.",
                labels=("source",),
            )
            gauge.add_metric((found[1],), found[0])
            yield gauge
        if m.startup_seconds is not None:
            yield GaugeMetricFamily(
                "aibridge_startup_duration_seconds",
                "Time from process start to serving requests.",
                value=m.startup_seconds,
            )
        yield InfoMetricFamily("aibridge_build", "Version of aibridge.", value={"version": m.version})


class BridgeMetrics:
    """The bridge's metrics on a dedicated registry (never prometheus-client's global one)."""

    def __init__(
        self,
        *,
        version: str,
        cgroup_dir: str | None = None,
        proc_dir: str = "/proc",
        stats: Callable[[], StoreStats] | None = None,
        process: bool = True,
    ) -> None:
        self.version = version
        self.cgroup_dir = cgroup_dir
        self.proc_dir = proc_dir
        self.stats = stats
        self.startup_seconds: float | None = None
        self.ws_open = 0
        self.ws_accepted = 0
        self.envelopes: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aibridge_http_requests",
            "HTTP requests by method, route template and status class.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "aibridge_http_request_duration_seconds",
            "HTTP request duration, from the first byte in to the last byte out.",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("aibridge_errors", "Errors by kind.", ("kind",), registry=self.registry)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            self.registry.register(GC_COLLECTOR)
        self.registry.register(_StateCollector(self))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def mark_ready(self) -> float | None:
        """Record start-up duration; call once, when the public listener accepts connections."""
        self.startup_seconds = seconds_since_process_start()
        return self.startup_seconds

    def read_stats(self) -> StoreStats | None:
        if self.stats is None:
            return None
        try:
            return self.stats()
        except Exception:  # a broken stats source must not break the whole scrape
            log.exception("store stats unavailable for this scrape")
            return None

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one finished HTTP request; label children are cached so this stays a dict lookup."""
        key = (method, route or UNMATCHED_ROUTE, status)
        children = self._children.get(key)
        if children is None:
            label_method = method if method in _METHODS else "OTHER"
            status_class = _STATUS_CLASSES[status // 100] if 100 <= status < 600 else "5xx"
            children = (
                self.requests.labels(label_method, key[1], status_class),
                self.duration.labels(label_method, key[1]),
            )
            if len(self._children) < 4096:  # bounded: method x route x status is small in practice
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def precreate(self, routes: Iterable[tuple[str, str]]) -> None:
        """Create every (method, route) x status class child at 0 before the first request.

        Prometheus ``increase()`` needs a sample before the first increment: a child born at 10
        (prometheus-client creates it on first use) counts as 0, so early 5xx went unseen.
        """
        for method, route in routes:
            label_method = method if method in _METHODS else "OTHER"
            for status_class in _STATUS_CLASSES[1:]:
                self.requests.labels(label_method, route, status_class)
            self.duration.labels(label_method, route)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class PrometheusEvents:
    """The hub's observer (``aibridge.server.events.BridgeEvents``) feeding :class:`BridgeMetrics`."""

    def __init__(self, metrics: BridgeMetrics) -> None:
        self._m = metrics
        self._errors: dict[str, Any] = {}

    def envelope(self, outcome: EnvelopeOutcome, count: int = 1) -> None:
        self._m.envelopes[outcome] += count

    def ws_connected(self) -> None:
        self._m.ws_open += 1
        self._m.ws_accepted += 1

    def ws_disconnected(self) -> None:
        self._m.ws_open -= 1

    def error(self, kind: str) -> None:
        child = self._errors.get(kind)
        if child is None:
            child = self._errors[kind] = self._m.errors.labels(kind)
        child.inc()


class MetricsMiddleware:
    """Pure ASGI middleware counting HTTP requests by route template, status class and duration.

    Wrap the whole Litestar app with it (outside CORS, rate limit and connection cap) so 404s,
    429s and 503s are counted too. Litestar writes the matched template to ``scope["path_template"]``.
    """

    def __init__(self, app: ASGIApp, metrics: BridgeMetrics, routes: Iterable[Any] = ()) -> None:
        self.app = app
        self.observe = metrics.observe_request
        metrics.precreate(_known_routes(routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def done(status: int, seconds: float) -> None:
            self.observe(scope["method"], scope.get("path_template"), status, seconds)

        await call_observed(self.app, scope, receive, send, done)


def _known_routes(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(method, route template) of every HTTP route (Litestar ``app.routes``), plus 404s as GET."""
    yield "GET", UNMATCHED_ROUTE
    for route in routes:
        template = getattr(route, "path_format", None)  # what Litestar puts in scope["path_template"]
        methods = getattr(route, "methods", None)
        if isinstance(template, str) and methods and not getattr(route, "is_websocket", False):
            for method in sorted(m for m in methods if m not in ("OPTIONS", "HEAD")):
                yield method, template


if TYPE_CHECKING:

    def _conforms(metrics: BridgeMetrics) -> BridgeEvents:
        return PrometheusEvents(metrics)  # mypy checks PrometheusEvents against the seam
