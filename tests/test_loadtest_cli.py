"""``aibridge loadtest`` as a user runs it: a subprocess against a real server, judged by exit code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from aibridge.ops.loadtest import load_schema
from loadtarget import LoadTarget, run_loadtest_cli
from support import free_port


def _loadtest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_loadtest_cli(*args, cwd=cwd)


def test_ab_style_run_passes_the_kpis_with_json_output(target: LoadTarget) -> None:
    result = _loadtest(f"{target.url}/health", "-n", "300", "-c", "5", "--kpi", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(load_schema()).validate(report)
    assert report["summary"]["requests"] == 300 and report["status_codes"] == {"200": 300}
    assert [o["objective"] for o in report["verdict"]["objectives"]] == ["p95<500ms", "errors<1%"]
    assert report["verdict"]["passed"] is True and report["passed"] is True
    assert target.stats()["handled"] == 300


def test_failed_objective_exits_1_with_a_verdict_table(target: LoadTarget) -> None:
    result = _loadtest(f"{target.url}/slow?delay_ms=30", "-n", "40", "-c", "4", "--slo", "p50<5ms,errors<1%")
    assert result.returncode == 1, result.stderr
    assert "SLO verdict" in result.stdout and "FAIL" in result.stdout
    assert "p50<5ms" in result.stdout and "Requests/sec" in result.stdout


def test_unexpected_status_fails_the_error_objective(target: LoadTarget) -> None:
    url = f"{target.url}/e?status=500&status_every=2"
    result = _loadtest(url, "-n", "100", "-c", "5", "--slo", "errors<1%", "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["errors"]["status"] == 50 and report["status_codes"] == {"200": 50, "500": 50}
    assert report["verdict"]["objectives"][0]["measured"] == pytest.approx(50.0)


def test_unreachable_target_exits_2_with_one_line() -> None:
    result = _loadtest(f"http://127.0.0.1:{free_port()}/health", "-n", "10")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "p95<500"], "needs a unit"),
        (["-z", "forever"], "is not a duration"),
        (["-d", "a", "-D", "body.txt"], "-d and -D both give a body"),
        (["--workers", "3", "-c", "2"], "--workers 3 needs at least 3 connections"),
        (["--baseline", "missing.json"], "cannot read it"),
    ],
)
def test_usage_errors_exit_2_with_one_line(target: LoadTarget, args: list[str], message: str) -> None:
    result = _loadtest(f"{target.url}/health", "-n", "10", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert target.stats()["handled"] == 0  # nothing was sent


def test_baseline_regression_exits_1(target: LoadTarget, tmp_path: Path) -> None:
    saved = tmp_path / "baseline.json"
    first = _loadtest(f"{target.url}/b", "-n", "200", "-c", "4", "--save", str(saved))
    assert first.returncode == 0, first.stderr
    assert json.loads(saved.read_text())["schema"] == "aibridge.loadtest/1"
    slower = _loadtest(
        f"{target.url}/b?delay_ms=40", "-n", "60", "-c", "4", "--baseline", str(saved), "--tolerance", "25%"
    )
    assert slower.returncode == 1, slower.stderr
    assert "REGRESSED" in slower.stdout and "tolerance 25 %" in slower.stdout


def test_body_makes_a_post_and_reaches_the_server(target: LoadTarget, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"hello": "world"}')
    headers = ["-H", "Content-Type: application/json", "-H", "X-Probe: yes"]
    result = _loadtest(f"{target.url}/p", "-n", "20", "-c", "2", "-D", str(body), *headers)
    assert result.returncode == 0, result.stderr
    stats = target.stats()
    assert stats["methods"] == {"POST": 20}
    assert stats["bytes_of_bodies"] == 20 * len(body.read_bytes())
    assert stats["x_headers"] == {"x-probe: yes": 20}
    put = _loadtest(f"{target.url}/p", "-n", "5", "-c", "1", "-m", "put", "-d", "abc")
    assert put.returncode == 0, put.stderr
    assert target.stats()["methods"] == {"POST": 20, "PUT": 5}


def test_rate_and_duration_with_two_workers(target: LoadTarget) -> None:
    result = _loadtest(
        f"{target.url}/q", "-q", "100", "-z", "1s", "-c", "4", "--workers", "2", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "open" and report["coordinated_omission_corrected"] is True
    assert len(report["workers"]) == 2
    # 100 req/s for 1 s, plus the first request sent alone before the schedule.
    assert 95 <= report["summary"]["requests"] <= 102
    assert report["summary"]["duration_s"] == pytest.approx(1.0, abs=0.05)
