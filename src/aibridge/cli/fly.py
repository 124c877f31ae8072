"""``aibridge init`` and ``aibridge validate``: Fly config as code, checked offline."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from aibridge.cli._app import app, console, run_command

__all__ = ("init", "validate")


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


@app.command(
    help="Write fly.toml, Dockerfile and .dockerignore for the bridge (or any ASGI app) in the current "
    "directory. An existing fly.toml is merged (comments and unrelated keys kept); other existing files "
    "are replaced only with --force."
)
def init(
    app_name: Annotated[
        str | None,
        typer.Option("--app", help="Fly app name (default: the existing one, else the directory name)."),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Primary region (default: the existing one, else sjc).")
    ] = None,
    memory: Annotated[int, typer.Option(help="VM memory in MB (multiple of 256).")] = 512,
    asgi: Annotated[
        str | None, typer.Option(help="Serve any ASGI app MODULE:APP with uvicorn instead of the bridge.")
    ] = None,
    volume: Annotated[
        bool | None,
        typer.Option(
            "--volume/--no-volume",
            help="Mount a Fly volume at /data (default for the bridge: its SQLite store lives there; "
            "--no-volume loses queues and history on every stop). With --asgi: off unless given.",
            show_default=False,
        ),
    ] = None,
    health_path: Annotated[
        str | None,
        typer.Option(help="With --asgi: the app's health check path (no check at all without it)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the diff, write nothing.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing Dockerfile and .dockerignore.")] = False,
    monitoring: Annotated[
        bool,
        typer.Option(help="Also write monitoring/ (Grafana dashboard, KPI alert rules) for this app."),
    ] = False,
) -> None:
    def call() -> None:
        from aibridge.fly.generate import init_project, options_for
        from aibridge.fly.templates import NO_VOLUME_LOSS

        here = Path.cwd()
        opts = options_for(here, app_name, region, memory, asgi, volume, health_path)
        keep = tuple(k for k, given in (("app", app_name), ("primary_region", region)) if given is None)
        result = init_project(here, opts, dry_run=dry_run, force=force, keep=keep)
        if dry_run:
            console.out(result.diff() or "no changes", highlight=False)
            return
        verbs = {"create": "created", "merge": "merged into", "replace": "replaced", "unchanged": "unchanged"}
        for planned in result.files:
            if planned.action == "keep":
                console.print(
                    f"kept     {planned.path.name} (it exists; --force replaces it)", highlight=False
                )
            else:
                console.print(f"{verbs[planned.action]:<8} {planned.path.name}", highlight=False)
        if monitoring:
            from aibridge.cli.monitoring import write_monitoring

            write_monitoring(here / "monitoring", opts.app, None, force)
        if opts.asgi is None and not opts.volume:
            console.print(f"no volume: {NO_VOLUME_LOSS}", highlight=False, soft_wrap=True)
        if opts.asgi is None and not opts.from_source:
            console.print(
                f"image: installs aibridge=={opts.version} from the package index (not this directory)",
                highlight=False,
                soft_wrap=True,
            )
        for note in result.notes:
            console.print(f"warning: {note}", highlight=False, soft_wrap=True)
        console.print("next: aibridge validate && aibridge deploy", highlight=False)

    run_command(call)


@app.command(
    help="Lint fly.toml, the Dockerfile and .dockerignore offline, and check they agree with each other. "
    "Exit 0 clean, 1 errors (or warnings with --strict), 2 unreadable file."
)
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Project directories or files (default: the current directory)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The fly.toml to check.")] = None,
    dockerfile: Annotated[
        Path | None,
        typer.Option(
            help="The Dockerfile (default: the one \\[build] names, else the one next to fly.toml)."
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.TEXT,
    strict: Annotated[bool, typer.Option(help="Unknown keys are errors; warnings fail the run.")] = False,
) -> None:
    def call() -> bool:
        from aibridge.fly.report import render_json, render_sarif, render_text
        from aibridge.fly.validate import validate_paths

        report = validate_paths(list(paths or []), config, dockerfile, strict=strict)
        if output_format is OutputFormat.JSON:
            console.out(render_json(report), highlight=False)
        elif output_format is OutputFormat.SARIF:
            console.out(render_sarif(report), highlight=False)
        else:
            console.print(render_text(report), highlight=False, soft_wrap=True)
        return report.failed(strict=strict)

    if run_command(call):
        raise typer.Exit(1)
