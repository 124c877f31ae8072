"""``aibridge check-kpis``: judge a running app against its KPIs."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aibridge.cli._app import app, console, err_console, run_command

if TYPE_CHECKING:
    from aibridge.ops.kpis import KpiOptions, KpiReport


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


_EPILOG = (
    "Modes: --window 0 is one probe and one scrape (what needs time is 'cannot tell'); a window probes "
    "/health every --interval and scrapes /metrics each time; --prometheus queries a Prometheus API "
    "over --range "
    "('fly' = https://api.fly.io/prometheus, with --org and a token from `fly auth token`).\n\n"
    "KPIs and defaults: uptime=99.9 (%, more than), health_latency=500ms@p95, memory=80 (% of the limit), "
    "error_rate=1 (% of requests answered 5xx), startup=30s.\n\n"
    "Exit codes: 0 every KPI passes, 1 a KPI fails, 3 a KPI could not be measured, "
    "2 bad usage or target unreachable."
)


@app.command(
    "check-kpis", help="Judge a running app against its KPIs, and say how each was measured.", epilog=_EPILOG
)
def check_kpis(
    url: Annotated[str, typer.Argument(help="The app's base URL (probes URL/health) or its health URL.")],
    metrics_url: Annotated[
        str | None,
        typer.Option("--metrics-url", help="Prometheus /metrics URL (default: same host, port 9091)."),
    ] = None,
    window: Annotated[str, typer.Option(help="How long to watch: 60s, 5m; 0 = one snapshot.")] = "60s",
    interval: Annotated[str, typer.Option(help="Time between probes and scrapes.")] = "5s",
    config: Annotated[
        str | None,
        typer.Option("--config", help="fly.toml whose [[vm]] memory is the limit if the app exports none."),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option("--memory-limit", help="Memory limit if neither app nor fly.toml gives one: 512MB."),
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus API base URL, or 'fly' for Fly's hosted Prometheus.")
    ] = None,
    org: Annotated[
        str | None, typer.Option(help="Fly organisation slug (appended to the Prometheus URL).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="PROMETHEUS_TOKEN", show_envvar=True, help="Bearer token for Prometheus."),
    ] = None,
    range_: Annotated[
        str, typer.Option("--range", help="Time range for --prometheus: 1h, 24h, 30d.")
    ] = "24h",
    selector: Annotated[
        str | None,
        typer.Option(
            help='PromQL matchers of the app (default: instance="<metrics host:port>", or app="<name>").'
        ),
    ] = None,
    kpi: Annotated[
        list[str] | None,
        typer.Option("--kpi", help="Override a target: uptime=99.5, health_latency=300ms@p99, …"),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text (a table) or json (for CI).")
    ] = OutputFormat.TEXT,
    watch: Annotated[
        bool, typer.Option(help="Repeat the check and refresh the table live until Ctrl-C.")
    ] = False,
    request_counter: Annotated[
        str, typer.Option(help="Request counter with a status label.")
    ] = "aibridge_http_requests_total",
    duration_histogram: Annotated[
        str, typer.Option(help="Request duration histogram with a route label.")
    ] = "aibridge_http_request_duration_seconds",
    status_label: Annotated[
        str | None, typer.Option(help="Status label of the counter (default: status, code or status_code).")
    ] = None,
    route_label: Annotated[
        str | None,
        typer.Option(help="Route label of the histogram (default: route, handler, path or endpoint)."),
    ] = None,
    health_route: Annotated[
        str | None,
        typer.Option(
            help="The histogram's route label value for the health check (default: the URL's path)."
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained HTML report (verdicts and charts) to this file."),
    ] = None,
) -> None:
    def build() -> KpiOptions:
        from aibridge.ops.kpis import (
            DEFAULT_THRESHOLDS,
            KpiOptions,
            parse_bytes,
            parse_kpi_option,
        )
        from aibridge.ops.units import parse_duration

        thresholds = dict(DEFAULT_THRESHOLDS)
        thresholds.update(parse_kpi_option(option) for option in kpi or [])
        return KpiOptions(
            url=url,
            metrics_url=metrics_url,
            window_s=parse_duration(window, "--window"),
            interval_s=parse_duration(interval, "--interval"),
            config_path=config,
            memory_limit_bytes=parse_bytes(memory_limit, "--memory-limit") if memory_limit else None,
            prometheus=prometheus,
            org=org,
            token=token,
            range_s=parse_duration(range_, "--range"),
            selector=selector,
            thresholds=thresholds,
            request_counter=request_counter,
            duration_histogram=duration_histogram,
            status_label=status_label,
            route_label=route_label,
            health_route=health_route,
        )

    options = run_command(build)
    report = run_command(lambda: _run(options, output, watch))
    if html is not None:
        run_command(lambda: _write_html(html, report))
    raise typer.Exit(report.exit_code)


def _write_html(path: Path, report: KpiReport) -> None:
    from aibridge.errors import FileReadError
    from aibridge.ops.kpis.html import render_html

    try:
        path.write_text(render_html(report), encoding="utf-8")
    except OSError as error:
        raise FileReadError(f"{path}: cannot write the HTML report: {error.strerror}") from None
    err_console.print(f"wrote {path}", highlight=False)


def _run(options: KpiOptions, output: OutputFormat, watch: bool) -> KpiReport:
    from rich.live import Live

    from aibridge.ops.kpis import check_kpis as check
    from aibridge.ops.kpis import render_report, watch_kpis

    if output is OutputFormat.JSON:

        def emit(report: KpiReport) -> None:
            if report.complete:
                sys.stdout.write(
                    report.to_json().replace("\n", "") + "\n" if watch else report.to_json() + "\n"
                )
                sys.stdout.flush()

        return watch_kpis(options, emit) if watch else check(options, emit)
    if watch:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            last = watch_kpis(options, lambda r: live.update(render_report(r), refresh=True))
            # Ctrl-C may cut a window short: the screen left behind is the run the exit code is.
            live.update(render_report(last), refresh=True)
            return last
    with err_console.status("measuring…") as status:

        def progress(report: KpiReport) -> None:
            seen = len(report.latency_ms)
            status.update(f"probed {seen}× over {report.span_s:.0f}s of {options.window_s:g}s…")

        report = check(options, progress if options.window_s > 0 and os.isatty(2) else None)
    console.print(render_report(report))
    return report
