"""``aibridge loadtest``: an ab/hey-compatible load tester that ends in a verdict.

    from aibridge.ops.loadtest import LoadTestOptions, kpi_slos, run_loadtest

    report = run_loadtest(LoadTestOptions("https://app.fly.dev/health", requests=200, slos=kpi_slos()))
    assert report.verdict is not None and report.verdict.passed

Modules: ``options`` (what to run), ``slo`` (objectives and verdict), ``first`` (the first request,
sent alone), ``engine`` (aiohttp, closed and open model), ``workers`` (several processes),
``histogram`` (HDR latency recording), ``report`` (results and their JSON schema), ``baseline``
(save and compare), ``render`` and ``progress`` (output), ``runner`` (:func:`run_loadtest`).
"""

from __future__ import annotations

from aibridge.ops.loadtest.baseline import Baseline, compare_with_baseline, read_baseline, save_report
from aibridge.ops.loadtest.first import FirstRequest
from aibridge.ops.loadtest.options import (
    LoadTestOptions,
    parse_header,
    parse_status_list,
    parse_tolerance,
    read_body_file,
)
from aibridge.ops.loadtest.progress import ConsoleProgress, ProgressSnapshot
from aibridge.ops.loadtest.render import render_text
from aibridge.ops.loadtest.report import (
    SCHEMA_ID,
    BaselineComparison,
    LatencyStats,
    LoadTestReport,
    load_schema,
)
from aibridge.ops.loadtest.runner import run_loadtest
from aibridge.ops.loadtest.slo import ObjectiveResult, Slo, Verdict, kpi_slos, parse_slos

__all__ = (
    "SCHEMA_ID",
    "Baseline",
    "BaselineComparison",
    "ConsoleProgress",
    "FirstRequest",
    "LatencyStats",
    "LoadTestOptions",
    "LoadTestReport",
    "ObjectiveResult",
    "ProgressSnapshot",
    "Slo",
    "Verdict",
    "compare_with_baseline",
    "kpi_slos",
    "load_schema",
    "parse_header",
    "parse_slos",
    "parse_status_list",
    "parse_tolerance",
    "read_baseline",
    "read_body_file",
    "render_text",
    "run_loadtest",
    "save_report",
)
