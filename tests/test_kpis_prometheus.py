"""check-kpis --prometheus against a real Prometheus server scraping a real app every second."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aibridge.cli import app as cli
from aibridge.ops.kpis import KpiOptions, Verdict, check_kpis
from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, Threshold
from kpi_app import KpiApp, run_kpi_app
from prometheus_support import PrometheusServer, run_prometheus
from support import run_bridge

pytestmark = pytest.mark.prometheus

MiB = 1 << 20
RANGE = 8.0


@pytest.fixture
def app() -> Iterator[KpiApp]:
    with run_kpi_app("--memory-limit", str(512 * MiB)) as running:
        yield running


@pytest.fixture
def traffic(app: KpiApp) -> Iterator[None]:
    """Steady requests, 1 in 10 answered 500, for as long as the test runs."""
    app.control(error_ratio=0.1)
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=app.url, timeout=5) as client:
            while not stop.is_set():
                try:
                    client.get("/work")
                    client.get("/health")
                except httpx.HTTPError:
                    pass  # the app is stopped on purpose in one test
                stop.wait(0.02)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def prometheus(tmp_path: Path, app: KpiApp) -> Iterator[PrometheusServer]:
    with run_prometheus(tmp_path, [f"127.0.0.1:{app.metrics_port}"]) as server:
        yield server


def wait_for_range(prometheus: PrometheusServer, app: KpiApp) -> None:
    """Until Prometheus holds more than RANGE seconds of scrapes of the app (bounded)."""
    selector = f'up{{instance="127.0.0.1:{app.metrics_port}"}}'
    prometheus.wait_for(
        f"time() - min_over_time(timestamp({selector})[1m:1s])", lambda span: span >= RANGE + 1
    )


def test_promql_mode_judges_the_range(app: KpiApp, traffic: None, prometheus: PrometheusServer) -> None:
    wait_for_range(prometheus, app)
    options = KpiOptions(url=app.url, metrics_url=app.metrics_url, prometheus=prometheus.url, range_s=RANGE)
    report = check_kpis(options)
    assert report.mode == "prometheus"
    verdicts = {k.name: k.verdict for k in report.kpis}
    assert verdicts == {
        "uptime": Verdict.PASS,
        "health_latency": Verdict.PASS,
        "memory": Verdict.PASS,
        "error_rate": Verdict.FAIL,
        "startup": Verdict.PASS,
    }
    assert report.kpi("uptime").value == 100.0 and "avg_over_time(up{" in report.kpi("uptime").how
    errors = report.kpi("error_rate").value
    assert errors is not None and 2 < errors < 8  # 1 in 10 of /work, half of all requests
    assert "exact" in report.kpi("health_latency").measured
    assert "aibridge_memory_limit_bytes" in report.kpi("memory").how
    assert {m.name for m in report.measurements} >= {"throughput", "cpu", "latency (server)", "all requests"}
    assert report.memory_bytes  # the RSS trend for the sparkline, from query_range
    assert any(v is not None and v < 500 for v in report.latency_ms)  # the /health p95 trend
    assert report.exit_code == 1


def test_promql_uptime_fails_after_the_app_went_down(app: KpiApp, prometheus: PrometheusServer) -> None:
    wait_for_range(prometheus, app)
    app.stop()
    prometheus.wait_for(f'up{{instance="127.0.0.1:{app.metrics_port}"}}', lambda up: up == 0)
    thresholds = {**DEFAULT_THRESHOLDS, "error_rate": Threshold(100.0)}
    options = KpiOptions(
        url=app.url,
        metrics_url=app.metrics_url,
        prometheus=prometheus.url,
        range_s=RANGE,
        thresholds=thresholds,
    )
    uptime = check_kpis(options).kpi("uptime")
    assert uptime.verdict is Verdict.FAIL
    assert uptime.value is not None and 50 < uptime.value < 99.9


def test_promql_range_longer_than_the_data_cannot_tell(app: KpiApp, prometheus: PrometheusServer) -> None:
    prometheus.wait_for(
        f'count_over_time(up{{instance="127.0.0.1:{app.metrics_port}"}}[1m])', lambda n: n >= 2
    )
    options = KpiOptions(url=app.url, metrics_url=app.metrics_url, prometheus=prometheus.url, range_s=3600)
    uptime = check_kpis(options).kpi("uptime")
    assert uptime.verdict is Verdict.CANNOT_TELL and "data covers only" in uptime.how


def test_cli_prometheus_json_and_errors(app: KpiApp, prometheus: PrometheusServer) -> None:
    prometheus.wait_for(
        f'count_over_time(up{{instance="127.0.0.1:{app.metrics_port}"}}[1m])', lambda n: n >= 2
    )
    runner = CliRunner()
    args = ["check-kpis", app.url, "--metrics-url", app.metrics_url, "--prometheus", prometheus.url]
    result = runner.invoke(cli, [*args, "--range", "1h", "--format", "json"])
    assert result.exit_code == 3 and '"mode": "prometheus"' in result.stdout
    result = runner.invoke(cli, [*args, "--selector", 'instance=~"(', "--range", "1h"])
    assert result.exit_code == 2 and "Prometheus rejected" in result.stderr
    result = runner.invoke(cli, [*args[:-1], f"{app.url}", "--range", "1h"])  # not a Prometheus API
    assert result.exit_code == 2 and "is this a Prometheus API?" in result.stderr


@contextlib.contextmanager
def bearer_proxy(upstream: str, prefix: str, token: str) -> Iterator[str]:
    """A loopback reverse proxy shaped like Fly's API: ``prefix`` + bearer token in front of Prometheus."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.end_headers()
                return
            if not self.path.startswith(prefix):
                self.send_response(404)
                self.end_headers()
                return
            answer = httpx.get(upstream + self.path.removeprefix(prefix), timeout=10)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_org_path_and_bearer_token_reach_the_api(app: KpiApp, prometheus: PrometheusServer) -> None:
    prometheus.wait_for(
        f'count_over_time(up{{instance="127.0.0.1:{app.metrics_port}"}}[1m])', lambda n: n >= 2
    )
    runner = CliRunner()
    with bearer_proxy(prometheus.url, "/prometheus/acme", "s3cret") as proxy:
        args = [
            "check-kpis",
            app.url,
            "--metrics-url",
            app.metrics_url,
            "--prometheus",
            f"{proxy}/prometheus",
        ]
        args += ["--org", "acme", "--range", "1h", "--format", "json"]
        result = runner.invoke(cli, [*args, "--token", "s3cret"])
        assert result.exit_code == 3 and '"metrics_url": "' + proxy + '/prometheus/acme"' in result.stdout
        result = runner.invoke(cli, args, env={"PROMETHEUS_TOKEN": "s3cret"})
        assert result.exit_code == 3
        result = runner.invoke(cli, [*args, "--token", "wrong"])
        assert result.exit_code == 2 and "refused the token (HTTP 401)" in result.stderr


def test_promql_against_prometheus_scraping_the_real_bridge(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{512 * MiB}\n")
    with run_bridge(tmp_path, {"AI_BRIDGE_CGROUP_DIR": str(cgroup)}) as bridge:
        target = f"127.0.0.1:{bridge.metrics_port}"
        with run_prometheus(tmp_path, [target]) as prometheus, httpx.Client(base_url=bridge.url) as client:
            selector = f'up{{instance="{target}"}}'
            deadline_query = f"time() - min_over_time(timestamp({selector})[1m:1s])"
            # Traffic between checks of the condition: every scrape interval sees new /health requests.
            prometheus.wait_for(
                deadline_query, lambda span: client.get("/health").is_success and span >= RANGE + 1
            )
            options = KpiOptions(
                url=bridge.url, metrics_url=bridge.metrics_url, prometheus=prometheus.url, range_s=RANGE
            )
            report = check_kpis(options)
    assert {k.name: k.verdict for k in report.kpis} == dict.fromkeys(
        ("uptime", "health_latency", "memory", "error_rate", "startup"), Verdict.PASS
    ), report.to_json()
    assert "exact" in report.kpi("health_latency").measured and "of 512 MiB" in report.kpi("memory").measured
    assert report.exit_code == 0
