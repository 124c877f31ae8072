"""``aibridge monitoring export``: the Grafana dashboard and Prometheus alert rules, as files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aibridge.cli._app import app, console, run_command

__all__ = ("export",)

monitoring_app = typer.Typer(
    help="Monitoring as code: a Grafana dashboard and Prometheus alert rules for the bridge's KPIs.",
    no_args_is_help=True,
)
app.add_typer(monitoring_app, name="monitoring")


def write_monitoring(out: Path, app_name: str | None, runbook_url: str | None, force: bool) -> None:
    """Export both files and say where they went (shared by ``init --monitoring``)."""
    from aibridge.ops.monitoring.alerts import RUNBOOK
    from aibridge.ops.monitoring.export import export_monitoring, selector_for_app

    selector = selector_for_app(app_name)
    for path in export_monitoring(out, selector=selector, runbook=runbook_url or RUNBOOK, force=force):
        console.print(f"wrote    {path}", highlight=False)
    console.print(
        f"alerts select {selector}; import the dashboard into Grafana (fly-metrics.net on Fly)",
        highlight=False,
    )


@monitoring_app.command(
    help="Write monitoring/aibridge-dashboard.json (Grafana, on the 'Prometheus on Fly' data source) and "
    "monitoring/aibridge-alerts.yml (burn-rate and threshold alerts for the five KPIs)."
)
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write into.")] = Path("monitoring"),
    app_name: Annotated[
        str | None,
        typer.Option(
            "--app",
            help='Fly app whose series the alerts select (app="NAME"); default: fly.toml\'s app, '
            'else job="aibridge".',
        ),
    ] = None,
    runbook_url: Annotated[
        str | None,
        typer.Option(help="Base URL of the runbook the alerts link to (default: README.md of aibridge)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace files that exist.")] = False,
) -> None:
    def call() -> None:
        write_monitoring(out, app_name if app_name is not None else _fly_toml_app(), runbook_url, force)

    run_command(call)


def _fly_toml_app() -> str | None:
    """The ``app`` of ./fly.toml when there is a readable one; monitoring needs nothing else from it."""
    import tomllib

    try:
        data = tomllib.loads(Path("fly.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    name = data.get("app")
    return name if isinstance(name, str) and name else None
