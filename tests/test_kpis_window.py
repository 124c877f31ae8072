"""check-kpis against a real app on loopback: snapshot vs window, each KPI driven to pass and to fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aibridge.ops.kpis import KpiOptions, KpiReport, Verdict, check_kpis, watch_kpis
from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, parse_kpi_option
from kpi_app import KpiApp, run_kpi_app

MiB = 1 << 20


@pytest.fixture(scope="module")
def app() -> Iterator[KpiApp]:
    """One app shared by the tests that put it back the way they found it (limit 512 MiB)."""
    with run_kpi_app("--memory-limit", str(512 * MiB)) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "app" in request.fixturenames:
        request.getfixturevalue("app").control(
            delay=0, error_ratio=0, health_status=200, memory_limit=512 * MiB
        )


def options(app: KpiApp, **overrides: object) -> KpiOptions:
    values: dict[str, object] = {
        "url": app.url,
        "metrics_url": app.metrics_url,
        "window_s": 1.0,
        "interval_s": 0.25,
    }
    values.update(overrides)
    return KpiOptions(**values)  # type: ignore[arg-type]


def verdicts(report: KpiReport) -> dict[str, Verdict]:
    return {k.name: k.verdict for k in report.kpis}


def test_snapshot_judges_only_what_one_scrape_can_show(app: KpiApp) -> None:
    app.traffic(20)
    report = check_kpis(options(app, window_s=0))
    assert report.mode == "snapshot"
    assert verdicts(report) == {
        "uptime": Verdict.CANNOT_TELL,
        "health_latency": Verdict.PASS,
        "memory": Verdict.PASS,
        "error_rate": Verdict.PASS,
        "startup": Verdict.PASS,
    }
    assert "needs a window" in report.kpi("uptime").how
    assert "up now" in report.kpi("uptime").measured
    assert "since process start" in report.kpi("error_rate").how
    assert "server since start" in report.kpi("health_latency").measured
    assert report.exit_code == 3  # a snapshot never passes silently
    every = next(m for m in report.measurements if m.name == "all requests")
    assert every.measured.startswith("100.00 % ≤ 500 ms (") and "since process start" in every.how


def test_window_with_healthy_app_passes_every_kpi(app: KpiApp) -> None:
    report = check_kpis(options(app))
    assert report.mode == "window"
    assert verdicts(report) == dict.fromkeys(verdicts(report), Verdict.PASS)
    assert report.exit_code == 0
    assert report.kpi("uptime").value == 100.0
    assert len(report.latency_ms) == 5 and all(v is not None for v in report.latency_ms)
    assert len(report.memory_bytes) == 5
    assert "exact" in report.kpi("health_latency").measured  # 0.5 s is a bucket bound
    assert {m.name for m in report.measurements} >= {"throughput", "cpu", "latency (client)"}


def test_errors_during_the_window_fail_error_rate(app: KpiApp) -> None:
    app.traffic(200)  # lifetime traffic without errors must not dilute the window's rate
    sent = []

    def provoke(report: KpiReport) -> None:
        if not sent:
            app.control(error_ratio=0.5)
            app.traffic(40)
            sent.append(True)

    report = check_kpis(options(app), on_update=provoke)
    error_rate = report.kpi("error_rate")
    assert error_rate.verdict is Verdict.FAIL and report.exit_code == 1
    # 20 of 40 /work requests failed; the denominator also holds this window's few /health probes.
    assert error_rate.measured.split("(")[1].startswith("20/")
    assert error_rate.value is not None and 30 < error_rate.value < 50


def test_slow_health_fails_latency_on_both_sides(app: KpiApp) -> None:
    app.control(delay=0.6)
    report = check_kpis(options(app, window_s=1.0, interval_s=0.5))
    latency = report.kpi("health_latency")
    assert latency.verdict is Verdict.FAIL
    assert latency.value is not None and latency.value >= 0.6
    assert "server: 0.00 % ≤ 500 ms (exact" in latency.measured
    every = next(m for m in report.measurements if m.name == "all requests")
    assert every.measured.startswith("0.00 % ≤ 500 ms (") and "over the window" in every.how
    assert report.kpi("uptime").verdict is Verdict.PASS  # slow is not down


def test_latency_threshold_between_buckets_is_bounded_not_guessed(app: KpiApp) -> None:
    app.control(delay=0.3)  # every request lands in the (0.25, 0.5] bucket
    name, threshold = parse_kpi_option("health_latency=400ms@p95")
    report = check_kpis(options(app, window_s=0.5, thresholds={**DEFAULT_THRESHOLDS, name: threshold}))
    latency = report.kpi("health_latency")
    # Between the 0.25 and 0.5 bounds the server side only knows "0 % to (nearly) 100 %" is within 400 ms…
    assert "server: 0.0–" in latency.measured and "(buckets 250 ms–500 ms" in latency.measured, (
        latency.measured
    )
    # …so it cannot decide; the client side (~300 ms, an upper bound on the server's time) does.
    assert latency.value is not None and latency.value >= 0.3
    assert latency.verdict is (Verdict.PASS if latency.value <= 0.4 else Verdict.FAIL)


def test_memory_over_the_apps_own_limit_fails(app: KpiApp) -> None:
    app.control(memory_limit=16 * MiB)
    report = check_kpis(options(app, window_s=0))
    memory = report.kpi("memory")
    assert memory.verdict is Verdict.FAIL and report.exit_code == 1
    assert memory.value is not None and memory.value > 100
    assert "of 16 MiB" in memory.measured and "aibridge_memory_limit_bytes" in memory.how


def test_unhealthy_answers_count_as_downtime(app: KpiApp) -> None:
    flipped = []

    def flip(report: KpiReport) -> None:
        if len(report.latency_ms) == 2 and not flipped:
            app.control(health_status=503)
            flipped.append(True)

    report = check_kpis(options(app), on_update=flip)
    uptime = report.kpi("uptime")
    # Probes run on their own threads now: the flip lands after the 2nd or 3rd probe.
    ok = sum(1 for v in report.latency_ms if v is not None)
    assert flipped and ok in (2, 3) and len(report.latency_ms) == 5
    assert uptime.verdict is Verdict.FAIL and uptime.measured.startswith(f"{ok * 20:.2f} % ({ok}/5")


def test_app_stopped_mid_window_fails_uptime_and_counter_reset_is_handled(tmp_path: Path) -> None:
    with run_kpi_app("--memory-limit", str(512 * MiB)) as app:
        app.traffic(300)  # a high counter before the restart
        steps: list[str] = []

        def chaos(report: KpiReport) -> None:
            if len(report.latency_ms) == 3 and "stopped" not in steps:
                app.stop()
                steps.append("stopped")
            elif len(report.latency_ms) == 4 and "started" not in steps:
                app.start()  # a new process: every counter starts again from zero
                app.control(error_ratio=1.0)
                app.traffic(5)
                steps.append("started")

        report = check_kpis(options(app, window_s=2.0, interval_s=0.25), on_update=chaos)
    uptime, errors = report.kpi("uptime"), report.kpi("error_rate")
    assert steps == ["stopped", "started"]
    assert None in report.latency_ms[3:]  # the probes while the app was stopped
    assert (
        uptime.verdict is Verdict.FAIL
        and uptime.measured.endswith("intervals)")
        and uptime.value is not None
        and uptime.value <= 88.9
    )
    assert "restarted 1×" in uptime.how and "scrape(s) of /metrics failed" in uptime.how
    # The 5 errors after the restart are seen although the counter fell from ~300 to ~10.
    assert errors.verdict is Verdict.FAIL and errors.measured.split("(")[1].startswith("5/")
    assert "1 restart)" in errors.how


def test_apps_without_startup_gauge_or_limit_cannot_tell(tmp_path: Path) -> None:
    with run_kpi_app("--startup", "none") as app:
        report = check_kpis(options(app))
    assert report.kpi("startup").verdict is Verdict.CANNOT_TELL
    assert "exports no aibridge_startup_duration_seconds" in report.kpi("startup").how
    assert report.kpi("memory").verdict is Verdict.CANNOT_TELL
    assert "--memory-limit" in report.kpi("memory").how
    assert report.exit_code == 3


def test_slow_startup_gauge_fails_startup(tmp_path: Path) -> None:
    with run_kpi_app("--startup", "42.5", "--status-style", "code", "--status-label", "code") as app:
        app.control(error_ratio=0.25)
        app.traffic(8)
        report = check_kpis(options(app, window_s=0, memory_limit_bytes=1 << 30))
    assert report.kpi("startup").verdict is Verdict.FAIL and report.kpi("startup").value == 42.5
    # Status codes ("500") under a "code" label are found without being told.
    errors = report.kpi("error_rate")
    assert errors.verdict is Verdict.FAIL and "{code=~" in errors.how
    assert errors.measured.split("(")[1].startswith("2/")
    # No limit from the app: --memory-limit is used and named.
    assert report.kpi("memory").verdict is Verdict.PASS and "--memory-limit 1 GiB" in report.kpi("memory").how


@pytest.mark.parametrize(
    ("vm", "limit_text", "verdict"),
    [
        ('memory = "256mb"', "256 MiB", Verdict.PASS),
        ("memory_mb = 16", "16 MiB", Verdict.FAIL),
        ('size = "shared-cpu-2x"', "512 MiB", Verdict.PASS),
    ],
)
def test_fly_toml_vm_memory_is_the_fallback_limit(
    tmp_path: Path, vm: str, limit_text: str, verdict: Verdict
) -> None:
    fly_toml = tmp_path / "fly.toml"
    fly_toml.write_text(f'app = "demo"\n\n[[vm]]\n  {vm}\n')
    with run_kpi_app() as app:
        report = check_kpis(options(app, window_s=0, config_path=str(fly_toml)))
    memory = report.kpi("memory")
    assert memory.verdict is verdict
    assert f"of {limit_text})" in memory.measured and str(fly_toml) in memory.how


def test_watch_repeats_snapshots_and_returns_the_last(app: KpiApp) -> None:
    seen: list[KpiReport] = []
    last = watch_kpis(options(app, window_s=0, interval_s=0.1), seen.append, runs=3)
    assert len(seen) == 3 and last is seen[-1]
    assert all(r.mode == "snapshot" for r in seen)


def test_without_a_startup_gauge_a_restart_in_the_window_is_timed(tmp_path: Path) -> None:
    with run_kpi_app("--startup", "none", "--memory-limit", str(512 * MiB)) as app:
        steps: list[str] = []

        def restart(report: KpiReport) -> None:
            if len(report.latency_ms) == 2 and not steps:
                app.stop()
                app.start()  # returns once /health answers: the next probe is the first good one
                steps.append("restarted")

        report = check_kpis(options(app, window_s=1.0, interval_s=0.25), on_update=restart)
    startup = report.kpi("startup")
    assert steps == ["restarted"]
    assert startup.verdict is Verdict.PASS, startup
    assert startup.value is not None and 0 < startup.value < 30
    assert "restart seen" in startup.how and "clocks assumed in sync" in startup.how
