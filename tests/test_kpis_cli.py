"""``aibridge check-kpis`` as users run it: exit codes, JSON for CI, the table, and clear usage errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aibridge.cli import app as cli
from kpi_app import KpiApp, run_kpi_app
from support import free_port

MiB = 1 << 20


@pytest.fixture(scope="module")
def app() -> Iterator[KpiApp]:
    with run_kpi_app("--memory-limit", str(512 * MiB)) as running:
        yield running


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["check-kpis", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_json_window_all_pass_exits_0(app: KpiApp) -> None:
    code, out, _ = run(
        app.url, "--metrics-url", app.metrics_url, "--window", "1s", "--interval", "0.5s", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0 and data["exit_code"] == 0 and data["mode"] == "window"
    assert [k["name"] for k in data["kpis"]] == [
        "uptime",
        "health_latency",
        "memory",
        "error_rate",
        "startup",
    ]
    assert {k["verdict"] for k in data["kpis"]} == {"pass"}
    assert all(k["how"] for k in data["kpis"])
    assert len(data["latency_ms"]) == 3 and len(data["memory_bytes"]) == 3


def test_kpi_override_turns_a_pass_into_a_fail_exit_1(app: KpiApp) -> None:
    # Resident memory of a Python process is far above 1 % of 512 MiB? No: ~8 %; 1 % fails it.
    code, out, _ = run(
        app.url, "--metrics-url", app.metrics_url, "--window", "0", "--kpi", "memory=1%", "--format", "json"
    )
    data = json.loads(out)
    memory = next(k for k in data["kpis"] if k["name"] == "memory")
    assert code == 1 and memory["verdict"] == "fail" and memory["target"] == "< 1 % of limit"


def test_snapshot_table_exits_3_and_says_why(app: KpiApp) -> None:
    code, out, _ = run(app.url, "--metrics-url", app.metrics_url, "--window", "0")
    assert code == 3
    for text in (
        "KPI",
        "target",
        "measured",
        "verdict",
        "how measured",
        "cannot tell",
        "needs a window",
        "exit 3",
    ):
        assert text in out


def test_window_table_has_sparklines(app: KpiApp) -> None:
    code, out, _ = run(app.url, "--metrics-url", app.metrics_url, "--window", "1s", "--interval", "0.25s")
    assert code == 0
    latency_line = next(line for line in out.splitlines() if line.startswith("/health latency"))
    assert sum(ch in "▁▂▃▄▅▆▇█" for ch in latency_line) == 5
    assert any(line.startswith("memory (RSS)") for line in out.splitlines())


def test_unreachable_target_exits_2_with_a_message() -> None:
    port = free_port()
    code, out, err = run(f"http://127.0.0.1:{port}", "--window", "0")
    assert code == 2 and out == ""
    assert f"http://127.0.0.1:{port}/health does not answer" in err and "Traceback" not in err


def test_wrong_metrics_url_exits_2_and_names_the_option(app: KpiApp) -> None:
    code, _, err = run(app.url, "--window", "0", "--metrics-url", f"http://127.0.0.1:{free_port()}/metrics")
    assert code == 2 and "--metrics-url" in err
    code, _, err = run(app.url, "--window", "0", "--metrics-url", f"{app.url}/health")
    assert code == 2 and "did not return Prometheus exposition text" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kpi", "speed=5"], "unknown KPI 'speed'"),
        (["--kpi", "uptime"], "expected NAME=THRESHOLD"),
        (["--kpi", "uptime=120"], "between 0 and 100"),
        (["--kpi", "health_latency=fast"], "'fast' is not a duration"),
        (["--kpi", "health_latency=300"], "give the unit, e.g. 300ms or 300s"),
        (["--kpi", "health_latency=500ms@q9"], "expected a quantile"),
        (["--window", "ten"], "--window: 'ten' is not a duration"),
        (["--window", "1s", "--interval", "5s"], "shorter than --interval"),
        (["--memory-limit", "lots"], "--memory-limit: expected a size"),
        (["--org", "acme"], "only apply with --prometheus"),
        (["--config", "/nonexistent/fly.toml", "--window", "0"], "/nonexistent/fly.toml: no such file"),
    ],
)
def test_usage_errors_exit_2_without_traceback(app: KpiApp, args: list[str], message: str) -> None:
    code, out, err = run(app.url, "--metrics-url", app.metrics_url, *args)
    assert code == 2 and message in err and "Traceback" not in err + out


def test_bad_url_and_bad_fly_toml_are_usage_errors(tmp_path: Path, app: KpiApp) -> None:
    code, _, err = run("localhost:8080")
    assert code == 2 and "expected http(s)://host:port" in err
    fly_toml = tmp_path / "fly.toml"
    fly_toml.write_text("[[vm]\n  memory = 512\n")
    code, _, err = run(app.url, "--metrics-url", app.metrics_url, "--window", "0", "--config", str(fly_toml))
    assert code == 2 and f"{fly_toml}:" in err and "TOML" in err and "Traceback" not in err


def test_real_process_exit_code_and_help_is_fast(app: KpiApp) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aibridge",
            "check-kpis",
            app.url,
            "--metrics-url",
            app.metrics_url,
            "--window",
            "0",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and json.loads(done.stdout)["mode"] == "snapshot"
    heavy = "('prometheus_client', 'httpx', 'rich.live')"
    code = f"import sys, aibridge.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]"


def test_any_app_with_other_metric_names_and_labels(tmp_path: Path) -> None:
    """An app instrumented like prometheus-fastapi-instrumentator: http_*, a "handler" label, codes."""
    args = (
        "--metric-prefix",
        "",
        "--route-label",
        "handler",
        "--status-style",
        "code",
        "--status-label",
        "code",
    )
    with run_kpi_app(*args, "--memory-limit", str(512 * MiB)) as other:
        other.traffic(10)
        names = [
            "--request-counter",
            "http_requests_total",
            "--duration-histogram",
            "http_request_duration_seconds",
        ]
        code, out, _ = run(
            other.url,
            "--metrics-url",
            other.metrics_url,
            "--window",
            "0.5s",
            "--interval",
            "0.25s",
            *names,
            "--format",
            "json",
        )
        data = json.loads(out)
        kpis = {k["name"]: k for k in data["kpis"]}
        assert code == 0, out
        assert "{code=~5xx|5..}" in kpis["error_rate"]["how"]
        assert "server:" in kpis["health_latency"]["measured"]  # found through the "handler" label
        code, out, _ = run(other.url, "--metrics-url", other.metrics_url, "--window", "0", "--format", "json")
        error_rate = next(k for k in json.loads(out)["kpis"] if k["name"] == "error_rate")
        assert code == 3 and error_rate["verdict"] == "cannot tell"  # our default names are absent
        assert "--request-counter" in error_rate["how"]


def test_watch_prints_one_json_report_per_run_until_ctrl_c(app: KpiApp) -> None:
    command = [sys.executable, "-m", "aibridge", "check-kpis", app.url, "--metrics-url", app.metrics_url]
    command += ["--window", "0", "--interval", "0.2s", "--watch", "--format", "json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        reports = [json.loads(process.stdout.readline()) for _ in range(2)]  # blocks until each run ends
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert [r["mode"] for r in reports] == ["snapshot", "snapshot"]
    assert process.returncode == 3 and "Traceback" not in err  # the last complete report's exit code
