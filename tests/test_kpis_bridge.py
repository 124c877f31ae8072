"""check-kpis against the real bridge (``aibridge serve``) on loopback, memory limit from a cgroup file."""

from __future__ import annotations

from pathlib import Path

from aibridge.ops.kpis import KpiOptions, Verdict, check_kpis
from support import run_bridge

MiB = 1 << 20


def cgroup(tmp_path: Path, limit: int) -> dict[str, str]:
    directory = tmp_path / f"cgroup-{limit}"
    directory.mkdir()
    (directory / "memory.max").write_text(f"{limit}\n")
    return {"AI_BRIDGE_CGROUP_DIR": str(directory)}


def test_bridge_meets_its_kpis_in_a_window(tmp_path: Path) -> None:
    with run_bridge(tmp_path, cgroup(tmp_path, 512 * MiB)) as bridge:
        report = check_kpis(
            KpiOptions(url=bridge.url, metrics_url=bridge.metrics_url, window_s=1.0, interval_s=0.25)
        )
    assert {k.name: k.verdict for k in report.kpis} == dict.fromkeys(
        ("uptime", "health_latency", "memory", "error_rate", "startup"), Verdict.PASS
    ), report.to_json()
    assert "exact" in report.kpi("health_latency").measured  # the bridge has the 0.5 s bucket
    assert (
        "of 512 MiB" in report.kpi("memory").measured
        and "aibridge_memory_limit_bytes" in report.kpi("memory").how
    )
    assert "aibridge_startup_duration_seconds" in report.kpi("startup").how
    assert report.exit_code == 0


def test_bridge_over_a_low_cgroup_limit_fails_memory(tmp_path: Path) -> None:
    with run_bridge(tmp_path, cgroup(tmp_path, 16 * MiB)) as bridge:
        report = check_kpis(KpiOptions(url=bridge.url, metrics_url=bridge.metrics_url, window_s=0))
    memory = report.kpi("memory")
    assert memory.verdict is Verdict.FAIL and memory.value is not None and memory.value > 100
    assert report.kpi("uptime").verdict is Verdict.CANNOT_TELL and report.exit_code == 1


def test_bridge_stopped_mid_window_fails_uptime(tmp_path: Path) -> None:
    with run_bridge(tmp_path, cgroup(tmp_path, 512 * MiB)) as bridge:

        def stop_after_two(report: object) -> None:
            if len(getattr(report, "latency_ms", [])) == 2 and bridge.process.poll() is None:
                bridge.process.kill()
                bridge.wait(timeout=10)

        options = KpiOptions(url=bridge.url, metrics_url=bridge.metrics_url, window_s=1.0, interval_s=0.25)
        report = check_kpis(options, on_update=stop_after_two)
    uptime = report.kpi("uptime")
    assert uptime.verdict is Verdict.FAIL and uptime.measured.startswith("40.00 % (2/5"), uptime.measured
    assert report.exit_code == 1
