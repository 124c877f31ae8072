"""``aibridge loadtest``: ab/hey flags, a report, and a verdict as the exit code."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aibridge.cli._app import app, console, err_console, run_command
from aibridge.errors import UsageError

if TYPE_CHECKING:
    from aibridge.ops.loadtest import LoadTestOptions


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


_EPILOG = (
    "Drop-in for [bold]ab -n 1000 -c 10 URL[/] and hey/oha (-n -c -z -q -m -H -d -D -t). "
    "-q is the TOTAL rate (oha's meaning, not hey's per-worker one) and switches to an open model "
    "whose latency counts from each request's intended start (coordinated omission corrected).\n\n"
    "hey's -disable-keepalive / -disable-compression / -disable-redirects are accepted (also with --).\n\n"
    "Exit code: 0 pass, 1 no request succeeded, an SLO failed or the run regressed against --baseline, "
    "2 bad usage or the target never answered, 130 interrupted (the partial report is printed)."
)


@app.command(help="Load-test a URL like ab/hey, then judge it against SLOs and a baseline.", epilog=_EPILOG)
def loadtest(
    url: Annotated[str, typer.Argument(help="http(s) URL to load, e.g. https://app.fly.dev/health.")],
    requests: Annotated[
        int | None, typer.Option("-n", "--requests", help="Requests to send (default 1000); ignored with -z.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("-c", "--concurrency", help="Connections kept busy at once.")
    ] = 10,
    duration: Annotated[
        str | None, typer.Option("-z", "--duration", help="Run for a time instead of -n (30s, 2m).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("-q", "--rate", help="TOTAL requests/s, fixed arrival rate (open model).")
    ] = None,
    method: Annotated[
        str | None, typer.Option("-m", "--method", help="HTTP method [GET; POST when a body is given].")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help='"Name: value"; repeat for more.')
    ] = None,
    data: Annotated[str | None, typer.Option("-d", "--data", help="Request body.")] = None,
    data_file: Annotated[
        Path | None, typer.Option("-D", "--data-file", help="Read the body from a file.")
    ] = None,
    timeout: Annotated[str, typer.Option("-t", "--timeout", help="Per-request timeout.")] = "10s",
    warmup: Annotated[int, typer.Option(help="Requests sent first and not counted.")] = 0,
    expect_status: Annotated[
        str, typer.Option(help="Status codes that count as success: 200,204 or 2xx.")
    ] = "200",
    slo: Annotated[
        list[str] | None, typer.Option(help='Objectives, e.g. "p95<500ms,errors<1%,rps>100".')
    ] = None,
    kpi: Annotated[bool, typer.Option(help="Add the health KPIs: p95<500ms, errors<1%.")] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format.")
    ] = OutputFormat.text,
    save: Annotated[
        Path | None, typer.Option(help="Write the JSON report here (a future --baseline).")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Compare with a saved report; fail on a regression.")
    ] = None,
    tolerance: Annotated[
        str, typer.Option(help="Allowed regression of req/s and p50/p95/p99 against --baseline.")
    ] = "10%",
    workers: Annotated[
        int, typer.Option(help="Processes sharing the load (when one core is not enough).")
    ] = 1,
    disable_keepalive: Annotated[
        bool,
        typer.Option(
            "--disable-keepalive",
            "-disable-keepalive",
            help="A new connection per request (as ab without -k).",
        ),
    ] = False,
    disable_compression: Annotated[
        bool,
        typer.Option("--disable-compression", "-disable-compression", help="Send no Accept-Encoding."),
    ] = False,
    disable_redirects: Annotated[
        bool,
        typer.Option(
            "--disable-redirects",
            "-disable-redirects",
            help="Accepted for hey: redirects are never followed.",
        ),
    ] = False,
) -> None:
    def call() -> None:
        from dataclasses import replace

        from aibridge.ops.loadtest import ConsoleProgress, render_text, run_loadtest

        options = _options(
            url, requests, concurrency, duration, rate, method, header, data, data_file, timeout, warmup,
            expect_status, slo, kpi, save, baseline, tolerance, workers,
        )  # fmt: skip
        options = replace(options, keepalive=not disable_keepalive, compression=not disable_compression)
        with ConsoleProgress(err_console) as progress:
            report = run_loadtest(options, progress)
        if output_format is OutputFormat.json:
            typer.echo(json.dumps(report.to_json(), indent=2))
        else:
            render_text(report, console)
        if report.interrupted:
            raise typer.Exit(130)
        if not report.answered:
            err_console.print(f"[bold red]error:[/] {url} never answered: no HTTP response to any request")
            raise typer.Exit(2)
        if not report.passed:
            raise typer.Exit(1)

    run_command(call)


def _options(
    url: str,
    requests: int | None,
    concurrency: int,
    duration: str | None,
    rate: float | None,
    method: str | None,
    header: list[str] | None,
    data: str | None,
    data_file: Path | None,
    timeout: str,
    warmup: int,
    expect_status: str,
    slo: list[str] | None,
    kpi: bool,
    save: Path | None,
    baseline: Path | None,
    tolerance: str,
    workers: int,
) -> LoadTestOptions:
    from aibridge.ops.loadtest import (
        LoadTestOptions,
        kpi_slos,
        parse_header,
        parse_slos,
        parse_status_list,
        parse_tolerance,
        read_body_file,
    )
    from aibridge.ops.units import parse_duration

    if data is not None and data_file is not None:
        raise UsageError("-d and -D both give a body; use one")
    body = read_body_file(data_file) if data_file is not None else None if data is None else data.encode()
    slos = kpi_slos() if kpi else []
    for text in slo or []:
        slos.extend(parse_slos(text))
    defaults = LoadTestOptions(url)
    return LoadTestOptions(
        url=url,
        requests=defaults.requests if requests is None else requests,
        concurrency=concurrency,
        duration_s=parse_duration(duration, "-z/--duration") if duration is not None else None,
        rate=rate,
        method=(method or ("POST" if body is not None else "GET")).upper(),
        headers=dict(parse_header(item) for item in header or []),
        body=body,
        timeout_s=parse_duration(timeout, "-t/--timeout"),
        warmup=warmup,
        expect_status=parse_status_list(expect_status),
        slos=slos,
        workers=workers,
        baseline=baseline,
        tolerance_pct=parse_tolerance(tolerance),
        save=save,
    )
