"""The text report: summary, latency, histogram, statuses, errors, then the verdict and baseline tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from aibridge.ops.loadtest.report import LatencyStats, LoadTestReport
from aibridge.ops.loadtest.slo import Verdict

__all__ = ("render_text",)

_BAR_WIDTH = 40


def render_text(report: LoadTestReport, console: Console) -> None:
    """Print ``report`` for a person; ``--format json`` prints ``report.to_json()`` instead."""
    opts = report.options
    print_ = console.print
    print_(f"[bold]aibridge loadtest[/]  {opts.method} {opts.url}", highlight=False)
    print_(f"  {_describe_load(report)}", highlight=False)
    print_()
    print_("[bold]Summary[/]")
    print_(
        f"  Requests      {report.requests:,}  ({report.successes:,} ok, {report.failures:,} failed)"
        f"   success {report.success_rate:.2%}",
        highlight=False,
    )
    print_(f"  Duration      {report.duration_s:.3f} s", highlight=False)
    print_(f"  Requests/sec  {report.requests_per_sec:,.1f}", highlight=False)
    print_(f"  Received      {_bytes(report.bytes_received)}", highlight=False)
    _first_request(report, console)
    print_()
    title = "from intended start, coordinated omission corrected" if report.model == "open" else "per request"
    _latency("Latency", title, report.latency, console)
    if report.service_time is not None:
        _latency(
            "Service time", "from actual send: uncorrected, for comparison", report.service_time, console
        )
    _histogram(report, console)
    _statuses_and_errors(report, console)
    if report.warnings:
        print_()
        for warning in report.warnings:
            print_(f"[yellow]warning:[/] {warning}", highlight=False)
    if report.verdict is not None:
        _verdict(report.verdict, console)
    if report.baseline is not None:
        _baseline(report, console)
    if not report.answered:
        print_()
        print_("[bold red]FAIL[/]: the target never answered (no HTTP response at all)")
    elif report.requests and not report.successes:
        print_()
        print_("[bold red]FAIL[/]: no request succeeded")
    elif report.verdict is not None or report.baseline is not None:
        print_()
        print_("[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]")


def _describe_load(report: LoadTestReport) -> str:
    opts = report.options
    amount = f"for {opts.duration_s:g} s" if opts.duration_s is not None else f"{opts.requests:,} requests"
    workers = f", {opts.workers} worker processes" if opts.workers > 1 else ""
    warmup = f", {opts.warmup} warm-up requests not counted" if opts.warmup else ""
    if report.model == "open":
        return (
            f"open model: {opts.rate:g} req/s in total, {amount}, up to {opts.effective_concurrency} "
            f"connections{workers}{warmup}\n  latency counts from each request's intended start: "
            "coordinated omission corrected"
        )
    return f"closed model: {amount} over {opts.effective_concurrency} connections{workers}{warmup}"


def _first_request(report: LoadTestReport, console: Console) -> None:
    first = report.first_request
    if first is None:
        return
    outcome = f"HTTP {first.status}" if first.status is not None else (first.error or "no answer")
    # Sent alone and kept out of the percentiles: an auto-stopped machine pays its cold start here.
    how = "sent alone, not in the percentiles" if report.first_request_counted else "warm-up #1, not counted"
    console.print(f"  First request {first.latency_ms:,.2f} ms  {outcome}  ({how})", highlight=False)


def _latency(name: str, how: str, stats: LatencyStats, console: Console) -> None:
    console.print(f"[bold]{name}[/] (ms, {how}, {stats.count:,} samples)", highlight=False)
    if not stats.count:
        console.print("  no response arrived")
        return
    console.print(
        f"  min {stats.min_ms:.3f}   mean {stats.mean_ms:.3f}   stddev {stats.stddev_ms:.3f}   "
        f"max {stats.max_ms:.3f}",
        highlight=False,
    )
    for key, value in stats.percentiles.items():
        note = f"   [dim]({stats.notes[key]})[/]" if key in stats.notes else ""
        console.print(f"  {key:<6} {value:10.3f}{note}", highlight=False)
    console.print()


def _histogram(report: LoadTestReport, console: Console) -> None:
    if not report.histogram:
        return
    console.print("[bold]Histogram[/] (ms)")
    peak = max(bucket.count for bucket in report.histogram) or 1
    for bucket in report.histogram:
        bar = "■" * round(_BAR_WIDTH * bucket.count / peak)
        console.print(f"  ≤ {bucket.upper_ms:10.3f} [{bucket.count:>8,}] {bar}", highlight=False)
    console.print()


def _statuses_and_errors(report: LoadTestReport, console: Console) -> None:
    codes = "  ".join(f"{code}×{count:,}" for code, count in sorted(report.status_codes.items()))
    console.print(f"[bold]Status codes[/]  {codes or 'none'}", highlight=False)
    errors = {kind: count for kind, count in report.errors.items() if count}
    if not errors:
        console.print("[bold]Errors[/]        none")
        return
    console.print("[bold]Errors[/]")
    for kind, count in errors.items():
        example = report.error_examples.get(kind, "")
        console.print(f"  {kind:<8} {count:>8,}   e.g. {example}", highlight=False, soft_wrap=True)


def _verdict(verdict: Verdict, console: Console) -> None:
    table = Table(title="SLO verdict", title_justify="left", show_edge=False)
    for column in ("objective", "measured", "result", "note"):
        table.add_column(column)
    for result in verdict.results:
        measured = "—" if result.measured is None else f"{result.measured:,.3f} {result.slo.unit}"
        mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
        table.add_row(result.slo.text, measured, mark, result.note or "")
    console.print()
    console.print(table)


def _baseline(report: LoadTestReport, console: Console) -> None:
    comparison = report.baseline
    assert comparison is not None
    table = Table(
        title=f"Baseline {comparison.source} (tolerance {comparison.tolerance_pct:g} %)",
        title_justify="left",
        show_edge=False,
    )
    for column in ("metric", "baseline", "now", "worse by", "result"):
        table.add_column(column)
    for row in comparison.rows:
        mark = "[red]REGRESSED[/]" if row.regressed else "[green]ok[/]"
        table.add_row(
            row.metric, f"{row.baseline:,.3f}", f"{row.current:,.3f}", f"{row.change_pct:+.1f} %", mark
        )
    console.print()
    console.print(table)
    for warning in comparison.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"
