"""Parsing of ab/hey-style flag values and SLOs, the HDR recorder, and the report's own judgements."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from aibridge.errors import UsageError
from aibridge.ops.loadtest import (
    LoadTestOptions,
    kpi_slos,
    parse_header,
    parse_slos,
    parse_status_list,
    parse_tolerance,
)
from aibridge.ops.loadtest.engine import WorkerResult
from aibridge.ops.loadtest.first import FirstRequest
from aibridge.ops.loadtest.histogram import LatencyRecorder
from aibridge.ops.loadtest.runner import _build
from aibridge.ops.loadtest.slo import evaluate_slos
from aibridge.ops.units import parse_duration


def test_parse_slos_reads_units_and_operators() -> None:
    slos = parse_slos("p95<500ms, errors<1%, rps>100, p99<=1.5s, p99.9<800ms, mean<250us")
    assert [(s.metric, s.op, s.threshold) for s in slos] == [
        ("p95", "<", 500.0),
        ("errors", "<", 1.0),
        ("rps", ">", 100.0),
        ("p99", "<=", 1500.0),
        ("p99.9", "<", 800.0),
        ("mean", "<", 0.25),
    ]
    assert [s.text for s in kpi_slos()] == ["p95<500ms", "errors<1%"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95<500", "needs a unit"),
        ("errors<1", "is a percentage"),
        ("latency<5ms", "unknown metric 'latency'"),
        ("p95=500ms", "is not 'metric<value'"),
        ("errors<150%", "cannot exceed 100"),
        (" , ", "has no objective"),
    ],
)
def test_parse_slos_names_the_bad_item(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_slos(text)


def test_flag_value_parsers() -> None:
    assert parse_duration("30s", "-z") == 30.0
    assert parse_duration("500ms", "-z") == 0.5
    assert parse_duration("2m", "-z") == 120.0
    assert parse_duration("1.5", "-z") == 1.5
    with pytest.raises(UsageError, match="-z/--duration: '10 minutes' is not a duration"):
        parse_duration("10 minutes", "-z/--duration")
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    with pytest.raises(UsageError, match="is not a header"):
        parse_header("no colon here")
    assert parse_status_list("200,204") == (200, 204)
    assert parse_status_list("2xx") == tuple(range(200, 300))
    with pytest.raises(UsageError, match="'abc' is not a status code"):
        parse_status_list("200,abc")
    assert parse_tolerance("10%") == 10.0
    assert parse_tolerance("2.5") == 2.5
    with pytest.raises(UsageError):
        parse_tolerance("ten")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (LoadTestOptions("ftp://host/x"), "must be http"),
        (LoadTestOptions("http://h/", requests=0), "-n/--requests must be at least 1"),
        (LoadTestOptions("http://h/", duration_s=0), "-z/--duration must be positive"),
        (LoadTestOptions("http://h/", rate=0), "-q/--rate must be positive"),
        (LoadTestOptions("http://h/", workers=4, concurrency=2), "--workers 4 needs at least 4 connections"),
        (LoadTestOptions("http://h/", method="GE T"), "not an HTTP method"),
    ],
)
def test_options_that_cannot_work_are_refused(options: LoadTestOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        options.validate()


def test_concurrency_never_exceeds_the_request_count() -> None:
    assert LoadTestOptions("http://h/", requests=3, concurrency=10).effective_concurrency == 3
    assert LoadTestOptions("http://h/", duration_s=1, concurrency=10).effective_concurrency == 10


def test_recorder_percentiles_are_within_hdr_precision() -> None:
    recorder = LatencyRecorder()
    samples = [i / 1000 for i in range(1, 10_001)]  # 1 ms … 10 s, uniform
    for seconds in samples:
        recorder.record(seconds)
    percentiles = recorder.percentiles_ms()
    for key, expected in {"p50": 5000.0, "p90": 9000.0, "p99": 9900.0, "p99.9": 9990.0}.items():
        assert expected <= percentiles[key] <= expected * 1.001, key
    assert recorder.min_us == 1000 and recorder.max_us == 10_000_000
    assert recorder.mean_ms == pytest.approx(5000.5)
    assert sum(bucket.count for bucket in recorder.buckets()) == 10_000


def test_merged_recorders_equal_one_recorder_of_everything() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(-6, 1) for _ in range(5000)]
    whole, left, right = LatencyRecorder(), LatencyRecorder(), LatencyRecorder()
    for index, seconds in enumerate(samples):
        whole.record(seconds)
        (left if index % 3 else right).record(seconds)
    merged = LatencyRecorder()
    merged.merge(left.snapshot())
    merged.merge(right.snapshot())
    assert merged.count == whole.count == 5000
    assert (merged.min_us, merged.max_us, merged.sum_us) == (whole.min_us, whole.max_us, whole.sum_us)
    assert merged.percentiles_ms() == whole.percentiles_ms()
    assert merged.buckets() == whole.buckets()


def test_a_latency_objective_fails_when_nothing_answered() -> None:
    verdict = evaluate_slos(parse_slos("p95<500ms,errors<1%"), {"p95": None, "errors": 100.0}, {})
    assert not verdict.passed
    assert [r.passed for r in verdict.results] == [False, False]
    assert verdict.results[0].note is not None and "no response" in verdict.results[0].note


def _worker(cpu_s: float, statuses: dict[int, int]) -> WorkerResult:
    recorder = LatencyRecorder()
    for _ in range(sum(statuses.values())):
        recorder.record(0.001)
    return WorkerResult(
        latency=recorder.snapshot(),
        service=None,
        statuses=statuses,
        errors={"connect": 0, "timeout": 2, "read": 1, "status": statuses.get(500, 0)},
        error_examples={},
        successes=statuses.get(200, 0),
        bytes_received=0,
        elapsed_s=1.0,
        cpu_s=cpu_s,
        abandoned=0,
        warmup_failed=0,
    )


def test_report_counts_the_first_request_and_warns_of_a_busy_client() -> None:
    options = LoadTestOptions("http://h/", requests=0 + 1 + 2 * 23, workers=2, concurrency=4)
    first = FirstRequest(12.0, 200, None, None, 10)
    results = [_worker(0.97, {200: 15, 500: 5}), _worker(0.2, {200: 20})]
    report = _build(options, datetime.now(UTC), first, results)
    assert report.requests == 1 + 20 + 20 + 2 * 3  # first + responses + transport errors
    assert report.status_codes == {200: 36, 500: 5}
    assert report.errors == {"connect": 0, "timeout": 4, "read": 2, "status": 5}
    assert report.successes == 36
    assert report.latency.count == 40  # the first request is kept apart
    assert [w.requests for w in report.workers] == [23, 23]
    assert any("client CPU was the bottleneck: 1 of 2 worker(s) busy 97%" in w for w in report.warnings)
    quiet = _build(options, datetime.now(UTC), first, [_worker(0.5, {200: 20}), _worker(0.2, {200: 20})])
    assert not any("client CPU" in w for w in quiet.warnings)


def test_progress_is_plain_when_piped_and_live_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from aibridge.ops.loadtest import ConsoleProgress, ProgressSnapshot
    from aibridge.ops.loadtest import progress as progress_module

    monkeypatch.setattr(progress_module, "_PLAIN_EVERY_S", 0.0)
    piped = io.StringIO()
    with ConsoleProgress(Console(file=piped, force_terminal=False)) as progress:
        progress(ProgressSnapshot(done=120, failed=3, elapsed_s=1.0, total=1000, duration_s=None, rate=120.0))
        progress(ProgressSnapshot(done=900, failed=3, elapsed_s=9.0, total=None, duration_s=30.0, rate=100.0))
    lines = piped.getvalue().splitlines()
    assert lines == [
        "loadtest: 120/1000 · 120 done · 120 req/s · 3 errors",
        "loadtest: 9/30s · 900 done · 100 req/s · 3 errors",
    ]
    terminal = io.StringIO()
    with ConsoleProgress(Console(file=terminal, force_terminal=True, width=100)) as progress:
        progress(ProgressSnapshot(done=500, failed=0, elapsed_s=1.0, total=1000, duration_s=None, rate=500.0))
    assert "\x1b[" in terminal.getvalue()  # drawn with terminal control sequences, then cleared


def test_public_names_are_exported() -> None:
    import aibridge.ops.loadtest as package

    assert list(package.__all__) == sorted(package.__all__, key=lambda name: (not name.isupper(), name))
    for name in package.__all__:
        assert getattr(package, name) is not None
