"""Issue 14 items 8 and 9: check-kpis against targets with known faults.

- PromQL mode against a real Prometheus scraping a target whose counters are set by the test:
  a 5xx series born at 10 and a restart after which the counter comes back at the same value.
- Window mode against a real app that is SIGSTOPped for part of the window.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aibridge.ops.kpis import KpiOptions, Verdict, check_kpis
from kpi_app import run_kpi_app
from prometheus_support import PrometheusServer, run_prometheus

COUNTER = "aibridge_http_requests_total"


@contextlib.contextmanager
def exposition_target(*extra: str) -> Iterator[tuple[dict[str, float], int]]:
    """An HTTP server whose /metrics shows exactly the values in the returned dict (and ``extra`` lines)."""
    values: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            lines = ["# TYPE aibridge_http_requests_total counter"]
            lines += [
                f'{COUNTER}{{route="/work",status="{k}"}} {v}' for k, v in values.items() if k != "start"
            ]
            lines += [
                "# TYPE process_start_time_seconds gauge",
                f"process_start_time_seconds {values['start']}",
                *extra,
            ]
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield values, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _wait_samples(prom: PrometheusServer, instance: str, more_than: float) -> float:
    """Until Prometheus has scraped the target 3 more times than ``more_than`` (bounded)."""
    expr = f'count_over_time(up{{instance="{instance}"}}[10m])'
    return prom.wait_for(expr, lambda n: n >= more_than + 3, timeout=60)


def test_promql_error_rate_counts_series_births_and_restarts(tmp_path: Path) -> None:
    with exposition_target() as (values, port):
        instance = f"127.0.0.1:{port}"
        values.update({"start": 1000.0, "2xx": 100.0})
        with run_prometheus(tmp_path, [instance]) as prom:
            seen = _wait_samples(prom, instance, 0)
            values.update({"2xx": 110.0, "5xx": 10.0})  # the 5xx child is born at 10
            seen = _wait_samples(prom, instance, seen)
            values.update({"start": 2000.0, "2xx": 5.0, "5xx": 10.0})  # restart: 5xx back at 10
            _wait_samples(prom, instance, seen)
            # What increase() sees (the old query): nothing of the 20 server errors.
            old = {
                r["metric"]["status"]: float(r["value"][1])
                for r in prom.query(f'sum by (status) (increase({COUNTER}{{instance="{instance}"}}[10m]))')
            }
            options = KpiOptions(
                url="http://127.0.0.1:1",
                prometheus=prom.url,
                selector=f'instance="{instance}"',
                range_s=600,
            )
            report = check_kpis(options)
    errors = report.kpi("error_rate")
    # Truth: 2xx rose 10 then restarted to 5 (15); 5xx was born at 10, then restarted to 10 (20).
    assert old.get("5xx", 0.0) < 1.0, old
    assert errors.value is not None and abs(errors.value - 100 * 20 / 35) < 0.01, errors
    assert errors.verdict is Verdict.FAIL
    assert "1 series born in range" in errors.how and "1 restart(s)" in errors.how


def test_window_counts_every_interval_a_hung_app_did_not_answer() -> None:
    window, interval, stop_at, stopped = 8.0, 0.5, 2.0, 3.0
    with run_kpi_app() as app:
        assert app.process is not None
        pid = app.process.pid
        options = KpiOptions(
            url=app.url, metrics_url=app.metrics_url, window_s=window, interval_s=interval, timeout_s=2.0
        )
        began: list[float] = []

        def chaos() -> None:
            time.sleep(stop_at)
            os.kill(pid, signal.SIGSTOP)
            began.append(time.monotonic())
            time.sleep(stopped)
            os.kill(pid, signal.SIGCONT)
            began.append(time.monotonic())

        thread = threading.Thread(target=chaos, daemon=True)
        try:
            thread.start()
            report = check_kpis(options)
        finally:
            os.kill(pid, signal.SIGCONT)
            thread.join(timeout=10)
    uptime = report.kpi("uptime")
    assert uptime.value is not None and uptime.verdict is Verdict.FAIL
    slots = window / interval + 1
    truth = 100 * (1 - (began[1] - began[0]) / interval / slots)
    # Within one interval of the truth either way (the SIGSTOP lands between two probe times);
    # the old prober said ≥ 94 % here: the missed probes fired back to back after SIGCONT.
    assert abs(uptime.value - truth) <= 100 / slots + 0.01, (uptime.measured, truth)


def test_fly_machine_memory_is_the_source_when_the_app_exports_no_limit(tmp_path: Path) -> None:
    """Item 10: Fly's fly_instance_memory_mem_total/_mem_available (bytes, per Machine)."""
    mib = 1 << 20
    fly = (
        f"fly_instance_memory_mem_total {459 * mib}",
        f"fly_instance_memory_mem_available {300 * mib}",
    )
    with exposition_target(*fly) as (values, port):
        instance = f"127.0.0.1:{port}"
        values.update({"start": 1000.0, "2xx": 100.0})
        with run_prometheus(tmp_path, [instance]) as prom:
            _wait_samples(prom, instance, 0)
            options = KpiOptions(
                url="http://127.0.0.1:1", prometheus=prom.url, selector=f'instance="{instance}"', range_s=600
            )
            memory = check_kpis(options).kpi("memory")
    assert memory.value is not None and abs(memory.value - 100 * 159 / 459) < 0.01, memory
    assert "Fly's fly_instance_memory_mem_total" in memory.how
    assert "fly_instance_memory_mem_total - fly_instance_memory_mem_available" in memory.how


def test_a_pass_from_a_handful_of_probes_says_too_few_samples() -> None:
    """Item 11: 5 probes cannot show "up > 99.9 %"; the pass carries loadtest's note."""
    with run_kpi_app() as app:
        options = KpiOptions(url=app.url, metrics_url=app.metrics_url, window_s=1.0, interval_s=0.25)
        uptime = check_kpis(options).kpi("uptime")
    assert uptime.verdict is Verdict.PASS
    assert uptime.measured.endswith("too few samples: 5 probes; trust a pass from 1,000"), uptime.measured
