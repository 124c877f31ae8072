"""The arithmetic under check-kpis: counter increases across restarts, exact bucket shares, parsing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aibridge.errors import UsageError
from aibridge.ops.kpis.model import KpiReport, KpiResult, Verdict
from aibridge.ops.kpis.scrape import Scrape, parse_exposition
from aibridge.ops.kpis.series import Buckets, counter_increase, histogram_increase, is_error_status, restarts
from aibridge.ops.kpis.units import parse_bytes, parse_kpi_option
from aibridge.ops.kpis.verdicts import server_latency
from aibridge.ops.units import parse_duration

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Process:
    """A prometheus-client registry standing in for one process lifetime (a restart = a new one)."""

    def __init__(self, start: float) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("app_requests", "r", ["status"], registry=self.registry)
        self.duration = Histogram("app_seconds", "d", ["route"], buckets=BUCKETS, registry=self.registry)
        Gauge("process_start_time_seconds", "s", registry=self.registry).set(start)

    def scrape(self, at: float) -> Scrape:
        return parse_exposition(generate_latest(self.registry).decode(), at)


def test_counter_increase_counts_a_restart_from_zero() -> None:
    first = Process(start=1000)
    first.requests.labels("2xx").inc(300)
    before = first.scrape(1)
    first.requests.labels("2xx").inc(10)
    first.requests.labels("5xx").inc(1)  # a series born inside the window counts from zero
    middle = first.scrape(2)
    second = Process(start=2000)
    second.requests.labels("5xx").inc(4)
    second.requests.labels("2xx").inc(400)  # above the old value: only the start time shows the restart
    after = second.scrape(3)
    increase = counter_increase([before, middle, after], "app_requests_total")
    assert increase == {(("status", "2xx"),): 410.0, (("status", "5xx"),): 5.0}
    assert restarts([before, middle, after]) == 1


def test_counter_decrease_without_start_time_is_a_reset() -> None:
    low, high = CollectorRegistry(), CollectorRegistry()
    Counter("c", "c", registry=high).inc(50)
    Counter("c", "c", registry=low).inc(7)
    scrapes = [parse_exposition(generate_latest(r).decode(), i) for i, r in enumerate((high, low))]
    assert counter_increase(scrapes, "c_total") == {(): 7.0}


def test_histogram_delta_gives_the_exact_share_at_a_bucket_bound() -> None:
    app = Process(start=1)
    for _ in range(100):
        app.duration.labels("/health").observe(2.0)  # lifetime: slow, outside the window
    before = app.scrape(1)
    for value in [0.01] * 19 + [0.7]:
        app.duration.labels("/health").observe(value)
    app.duration.labels("/other").observe(9.0)
    after = app.scrape(2)
    buckets = histogram_increase([before, after], "app_seconds", lambda lb: lb.get("route") == "/health")
    assert buckets.total == 20
    assert buckets.share_within(0.5) == (0.95, 0.95, 0.5, 0.5)
    _, p95 = parse_kpi_option("health_latency=500ms")
    verdict, text, _ = server_latency(buckets, p95)
    assert verdict is Verdict.PASS and text.startswith("95.00 % ≤ 500 ms (exact")
    _, p99 = parse_kpi_option("health_latency=500ms@p99")
    assert server_latency(buckets, p99)[0] is Verdict.FAIL


def test_histogram_quantile_follows_prometheus_interpolation() -> None:
    buckets = Buckets({0.1: 50.0, 0.2: 100.0, math.inf: 100.0}, 100.0)
    assert buckets.quantile(0.5) == pytest.approx(0.1)
    assert buckets.quantile(0.75) == pytest.approx(0.15)
    top = Buckets({0.1: 10.0, math.inf: 100.0}, 100.0)
    assert top.quantile(0.95) == 0.1  # in the +Inf bucket: the highest finite bound


@pytest.mark.parametrize(
    ("value", "error"),
    [("5xx", True), ("503", True), ("500", True), ("4xx", False), ("200", False), ("5", False)],
)
def test_error_status_accepts_classes_and_codes(value: str, error: bool) -> None:
    assert is_error_status(value) is error


def test_parsing_of_options() -> None:
    assert (
        parse_duration("500ms", "x") == 0.5
        and parse_duration("24h", "x") == 86400
        and parse_duration("30d", "x") == 2592000
    )
    assert parse_duration("90", "x") == 90
    assert (
        parse_bytes("512MB", "x") == 512 << 20
        and parse_bytes("1GiB", "x") == 1 << 30
        and parse_bytes("1000", "x") == 1000
    )
    assert parse_kpi_option("uptime=99.5%")[1].limit == 99.5
    assert parse_kpi_option("errors=2")[0] == "error_rate"
    assert parse_kpi_option("startup=1m")[1].limit == 60
    with pytest.raises(UsageError, match="expected a size"):
        parse_bytes("1 iB", "--memory-limit")


def test_exit_code_prefers_fail_over_cannot_tell_and_json_round_trips() -> None:
    report = KpiReport("window", "http://x/health", None, 60)
    report.kpis = [KpiResult("uptime", "> 99.9 %", Verdict.PASS, "100 %", "probes", 100.0)]
    assert report.exit_code == 0
    report.kpis.append(KpiResult("startup", "< 30 s", Verdict.CANNOT_TELL, "not exported", "no gauge"))
    assert report.exit_code == 3
    report.kpis.append(KpiResult("memory", "< 80 %", Verdict.FAIL, "95 %", "rss", 95.0))
    assert report.exit_code == 1
    import json

    data = json.loads(report.to_json())
    assert data["exit_code"] == 1 and [k["verdict"] for k in data["kpis"]] == ["pass", "cannot tell", "fail"]


def test_urls_and_selectors_derived_from_the_options() -> None:
    from aibridge.ops.kpis import KpiOptions

    plain = KpiOptions(url="http://127.0.0.1:8080")
    assert plain.health_url == "http://127.0.0.1:8080/health" and plain.health_path == "/health"
    assert plain.resolved_metrics_url == "http://127.0.0.1:9091/metrics"
    custom = KpiOptions(url="https://[::1]:8443/healthz", health_route="/healthz")
    assert (
        custom.health_url == "https://[::1]:8443/healthz"
        and custom.resolved_metrics_url == "http://[::1]:9091/metrics"
    )
    fly = KpiOptions(url="https://my-app.fly.dev", prometheus="fly", org="acme")
    assert fly.prometheus_base == "https://api.fly.io/prometheus/acme"
    assert fly.prometheus_selector == 'app="my-app"'
    local = KpiOptions(
        url="http://127.0.0.1:8080", metrics_url="http://127.0.0.1:9200/metrics", prometheus="http://p:9090/"
    )
    assert (
        local.prometheus_base == "http://p:9090" and local.prometheus_selector == 'instance="127.0.0.1:9200"'
    )
    chosen = KpiOptions(url="http://x", prometheus="http://p", selector='{job="bridge"}')
    assert chosen.prometheus_selector == 'job="bridge"'


@pytest.mark.parametrize(
    ("toml", "megabytes"),
    [
        ('app = "x"\n', 256),  # no [[vm]]: Fly's default shared-cpu-1x
        ('[[vm]]\nsize = "shared-cpu-4x"\n', 1024),
        ('[vm]\nmemory = "1gb"\n', 1024),
        ("[[vm]]\nmemory = 512\nmemory_mb = 2048\n", 2048),
        ('[[vm]]\nprocesses = ["worker"]\nmemory = 4096\n[[vm]]\nmemory = "768mb"\n', 768),
    ],
)
def test_fly_toml_memory_follows_flyctl_precedence(tmp_path: Path, toml: str, megabytes: int) -> None:
    """Preset, then memory, then memory_mb; the [[vm]] without processes applies to every group."""
    from aibridge.ops.kpis.limits import fly_memory_limit

    path = tmp_path / "fly.toml"
    path.write_text(toml)
    assert fly_memory_limit(str(path))[0] == megabytes << 20


def test_fly_toml_memory_that_cannot_be_read_is_an_error_not_a_guess(tmp_path: Path) -> None:
    from aibridge.errors import AibridgeError
    from aibridge.ops.kpis.limits import fly_memory_limit

    path = tmp_path / "fly.toml"
    for toml, message in [
        ('[[vm]]\nmemory = "lots"\n', "vm memory cannot be read"),
        ("[[vm]\n", "not valid TOML"),
        ("[[vm]]\nmemory = 0\n", "vm memory cannot be read"),
    ]:
        path.write_text(toml)
        with pytest.raises(AibridgeError, match=message):
            fly_memory_limit(str(path))
