"""``run_loadtest`` against a real uvicorn server (tests/loadtarget.py) on a free loopback port.

The server's behaviour is driven by deterministic counters, so counts are asserted exactly; timing
assertions use generous bounds because the machine is shared, but each can fail.
"""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import pytest

from aibridge.errors import TargetUnreachableError
from aibridge.ops.loadtest import LoadTestOptions, load_schema, parse_slos, run_loadtest
from loadtarget import LoadTarget
from support import free_port


def _validate(report_json: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(load_schema()).validate(report_json)


def test_counts_statuses_and_drops_are_exact(target: LoadTarget) -> None:
    url = f"{target.url}/x?drop_every=10&status=503&status_every=7"
    report = run_loadtest(LoadTestOptions(url, requests=300, concurrency=6))
    stats = target.stats()
    # Every request reached the server once: a dropped keep-alive connection is not silently retried.
    assert stats["received"] == 300 and stats["dropped"] == 30 and stats["handled"] == 270
    assert report.requests == 300
    assert report.status_codes == {200: 270 - 38, 503: 38}
    assert report.errors == {"connect": 0, "timeout": 0, "read": 30, "status": 38}
    assert report.successes == 232 and report.failures == 68
    assert report.latency.count == 270 - 1  # every response except the first, kept apart
    assert report.first_request is not None and report.first_request.status == 200
    assert "Server disconnected" in report.error_examples["read"]
    _validate(report.to_json())


def test_injected_latency_lands_in_the_right_percentiles(target: LoadTarget) -> None:
    url = f"{target.url}/slow?slow_every=10&slow_ms=300"
    report = run_loadtest(LoadTestOptions(url, requests=400, concurrency=8))
    p = report.latency.percentiles
    assert report.latency.count == 399
    # 90 % of requests are instant, 10 % wait 300 ms; bounds are wide for a shared machine.
    assert p["p50"] < 150, p
    assert 300 <= p["p95"] < 1800, p
    assert 300 <= report.latency.max_ms < 1800, report.latency
    assert report.latency.notes.keys() >= {"p99", "p99.9"}  # 399 samples cannot support them
    assert "p50" not in report.latency.notes


def test_timeouts_are_counted_and_cut_at_t(target: LoadTarget) -> None:
    url = f"{target.url}/stall?slow_every=5&slow_ms=3000"
    started = time.monotonic()
    report = run_loadtest(LoadTestOptions(url, requests=50, concurrency=10, timeout_s=0.3))
    assert time.monotonic() - started < 2.9  # nobody waited for the 3 s answers
    assert report.errors["timeout"] == 10
    assert report.status_codes == {200: 40}
    assert report.latency.max_ms < 300


def test_timeouts_and_the_end_of_a_duration_run_together(target: LoadTarget) -> None:
    url = f"{target.url}/stall?slow_every=3&slow_ms=2000"
    started = time.monotonic()
    report = run_loadtest(LoadTestOptions(url, duration_s=1.0, concurrency=3, timeout_s=0.2))
    assert time.monotonic() - started < 1.0 + 2.0
    assert 1.0 <= report.duration_s < 1.1
    handled = target.stats()["handled"]
    assert report.requests <= handled <= report.requests + report.abandoned
    # Every 3rd request stalls: each one is a timeout unless it was still in flight at the end.
    assert handled // 3 - report.abandoned <= report.errors["timeout"] <= handled // 3
    assert report.errors["timeout"] >= 3 and report.latency.max_ms < 200


def test_first_request_is_reported_apart(target: LoadTarget) -> None:
    report = run_loadtest(LoadTestOptions(f"{target.url}/cold?first_ms=300", requests=60, concurrency=4))
    assert report.first_request is not None and report.first_request.latency_ms >= 300
    assert report.first_request_counted and report.requests == 60
    assert report.latency.max_ms < 300  # the cold start does not pollute the steady-state percentiles
    assert report.to_json()["first_request"]["counted"] is True


def test_a_single_request_is_still_measured(target: LoadTarget) -> None:
    report = run_loadtest(LoadTestOptions(f"{target.url}/one", requests=1, slos=parse_slos("p95<1s")))
    assert report.requests == 1 and report.latency.count == 1
    assert report.verdict is not None and report.verdict.passed
    assert target.stats()["handled"] == 1


def test_warmup_requests_are_sent_but_not_counted(target: LoadTarget) -> None:
    report = run_loadtest(LoadTestOptions(f"{target.url}/w", requests=100, concurrency=5, warmup=20))
    assert target.stats()["handled"] == 120
    assert report.requests == 100 and report.latency.count == 100
    assert not report.first_request_counted


def test_open_model_holds_the_total_rate(target: LoadTarget) -> None:
    report = run_loadtest(LoadTestOptions(f"{target.url}/r", requests=401, concurrency=10, rate=200))
    arrivals = target.stats()["arrivals_ms"][1:]  # the first request is sent alone, before the schedule
    assert len(arrivals) == 400
    span_s = (arrivals[-1] - arrivals[0]) / 1000
    assert span_s == pytest.approx(399 / 200, rel=0.05)
    assert report.requests_per_sec == pytest.approx(200, rel=0.05)
    assert report.to_json()["coordinated_omission_corrected"] is True
    _validate(report.to_json())


def test_open_model_corrects_coordinated_omission(target: LoadTarget) -> None:
    # One connection, 100 req/s, every 20th answer stalls 300 ms: ~30 requests queue behind each stall,
    # and the 2 s schedule needs over 3 s of service, so the rate cannot be held either.
    url = f"{target.url}/co?slow_every=20&slow_ms=300"
    report = run_loadtest(LoadTestOptions(url, requests=200, concurrency=1, rate=100))
    assert report.service_time is not None
    assert report.service_time.percentiles["p90"] < 50  # what a closed-model tool would report
    assert report.latency.percentiles["p50"] > 50  # what users behind the stalls actually waited
    assert any("target rate 100 req/s not reached" in w for w in report.warnings)


def test_duration_ends_on_time(target: LoadTarget) -> None:
    started = time.monotonic()
    report = run_loadtest(LoadTestOptions(f"{target.url}/z?delay_ms=20", duration_s=1.5, concurrency=4))
    wall = time.monotonic() - started
    assert 1.5 <= report.duration_s < 1.6
    assert wall < 1.5 + 2.0
    handled = target.stats()["handled"]
    assert report.requests <= handled <= report.requests + report.abandoned
    assert report.abandoned <= 4
    assert report.requests > 4 * 1.5 / 0.5  # far more than a stalled run would manage


def test_workers_merge_exactly(target: LoadTarget) -> None:
    url = f"{target.url}/m?status=500&status_every=4"
    report = run_loadtest(LoadTestOptions(url, requests=1000, concurrency=4, workers=2))
    assert target.stats()["received"] == 1000
    assert report.requests == 1000
    assert report.status_codes == {200: 750, 500: 250}
    assert report.errors["status"] == 250
    assert report.latency.count == 999
    assert len(report.workers) == 2 and sum(w.requests for w in report.workers) == 999
    _validate(report.to_json())


def test_verdict_and_baseline(target: LoadTarget, tmp_path: Path) -> None:
    saved = tmp_path / "base.json"
    kpi = parse_slos("p95<500ms,errors<1%")
    first = run_loadtest(
        LoadTestOptions(f"{target.url}/b", requests=200, concurrency=4, slos=kpi, save=saved)
    )
    assert first.verdict is not None and first.verdict.passed and first.passed
    assert saved.exists()

    slos = parse_slos("p50<10ms,rps>1")
    url = f"{target.url}/b?delay_ms=40"
    second = run_loadtest(LoadTestOptions(url, requests=100, concurrency=4, slos=slos, baseline=saved))
    assert second.verdict is not None
    assert [r.passed for r in second.verdict.results] == [False, True]
    assert second.baseline is not None and not second.baseline.passed
    regressed = {row.metric for row in second.baseline.rows if row.regressed}
    assert {"requests_per_sec", "p50_ms", "p95_ms"} <= regressed
    assert not second.passed
    _validate(second.to_json())


def test_redirects_are_counted_not_followed(target: LoadTarget) -> None:
    url = f"{target.url}/old?status=301&location=/elsewhere"
    report = run_loadtest(LoadTestOptions(url, requests=30, concurrency=3))
    assert target.stats()["handled"] == 30  # nobody went to /elsewhere
    assert report.status_codes == {301: 30} and report.errors["status"] == 30
    assert report.error_examples["status"] == "HTTP 301 to /elsewhere (expected 200)"
    ok = run_loadtest(LoadTestOptions(url, requests=10, concurrency=2, expect_status=(200, 301)))
    assert ok.successes == 10


def test_unreachable_target_raises() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(TargetUnreachableError, match=r"does not answer: cannot connect to 127\.0\.0\.1"):
        run_loadtest(LoadTestOptions(url, requests=10))
