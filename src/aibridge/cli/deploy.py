"""``aibridge deploy``, ``rollback`` and ``status``: safe deploys over flyctl.

Exit codes of ``deploy`` (constants in :mod:`aibridge.ops.deploy`): 0 deployed, 1 failed with
nothing rolled back, 2 usage or precondition (nothing changed), 3 failed and rolled back, 4 failed
and the rollback failed too, 130 interrupted. ``rollback``: 0 done, 1 failed, 2 precondition.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aibridge.cli._app import app, console, err_console, run_command

if TYPE_CHECKING:
    from aibridge.ops.health import VerifyOptions
    from aibridge.ops.rollback import RollbackPlan

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="fly.toml to deploy with.")]
AppOpt = Annotated[
    str | None, typer.Option("--app", "-a", help="App name (default: FLY_APP, then fly.toml's app).")
]
HealthUrlOpt = Annotated[
    str | None, typer.Option(help="Health URL to verify (default: https://APP.fly.dev/health).")
]
VerifyOpt = Annotated[bool, typer.Option("--verify/--no-verify", help="Verify /health after deploying.")]
PassesOpt = Annotated[int, typer.Option(min=1, help="Ok answers in a row that count as healthy.")]
HealthTimeoutOpt = Annotated[
    str, typer.Option(help="How long to wait for health: 60, 60s, 500ms, 2m (a bare number is seconds).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
RecordOpt = Annotated[
    Path | None,
    typer.Option(help="The judged-release record (default: .aibridge/releases.json beside fly.toml)."),
]


def _verify(enabled: bool, url: str | None, passes: int, timeout: str, smoke: int | None) -> VerifyOptions:
    from aibridge.errors import UsageError
    from aibridge.ops.health import VerifyOptions
    from aibridge.ops.units import parse_duration

    seconds = parse_duration(timeout, "--health-timeout")
    if seconds < 0.1:
        raise UsageError(f"--health-timeout: {timeout!r} is too short (at least 100ms)")
    return VerifyOptions(enabled=enabled, url=url, passes=passes, timeout=seconds, smoke=smoke)


def _flyctl_duration(text: str | None, what: str) -> str | None:
    """Checked here (so a typo fails before anything changes), passed on in a form flyctl takes.

    flyctl reads Go durations or a bare number of seconds (fly.md §3); only "d" is ours alone.
    """
    if text is None:
        return None
    from aibridge.ops.units import parse_duration

    seconds = parse_duration(text, what)
    if text.strip().lower().endswith("d"):
        return f"{round(seconds)}s"
    return text.strip()


def _run(call: Callable[[], None], as_json: bool) -> None:
    """``run_command``, plus: with --json an error is a JSON object on stdout too (scripts read it)."""
    from aibridge.errors import AibridgeError

    def guarded() -> None:
        try:
            call()
        except AibridgeError as error:
            if as_json:
                _print_json({"ok": False, "error": error.detail, "exit_code": error.exit_code})
            raise

    run_command(guarded)


def _progress(as_json: bool) -> Console:
    # With --json, stdout carries only the JSON document; progress goes to stderr.
    return err_console if as_json else console


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command(
    "deploy",
    help="Validate, deploy with flyctl, verify /health, and roll back automatically if it fails.",
    epilog="Exit codes: 0 deployed · 1 failed, nothing rolled back · 2 usage/precondition, nothing changed · "
    "3 failed and rolled back · 4 failed and the rollback failed too · 130 interrupted.",
)
def deploy_command(
    flyctl_args: Annotated[
        list[str] | None, typer.Argument(metavar="[-- FLYCTL ARGS...]", help="Extra `fly deploy` arguments.")
    ] = None,
    config: ConfigOpt = Path("fly.toml"),
    app_name: AppOpt = None,
    strategy: Annotated[str | None, typer.Option(help="canary, rolling, immediate or bluegreen.")] = None,
    image: Annotated[str | None, typer.Option("--image", "-i", help="Deploy this prebuilt image.")] = None,
    wait_timeout: Annotated[
        str | None, typer.Option(help="flyctl's per-Machine wait: 300, 300s, 5m (a bare number is seconds).")
    ] = None,
    health_url: HealthUrlOpt = None,
    verify: VerifyOpt = True,
    health_passes: PassesOpt = 3,
    health_timeout: HealthTimeoutOpt = "60s",
    smoke: Annotated[
        int | None, typer.Option(help="After health passes, load-test with N requests against the KPIs.")
    ] = None,
    auto_rollback: Annotated[
        bool,
        typer.Option("--auto-rollback/--no-auto-rollback", help="Roll back when deploy or verify fails."),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy even when `aibridge validate` finds errors.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print every command that would run; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Passed on as `fly deploy --yes`.")] = False,
    create: Annotated[
        bool, typer.Option("--create", help="Run `fly apps create` first if Fly has no such app.")
    ] = False,
    org: Annotated[
        str | None, typer.Option(help="Organization for --create (`fly apps create --org`).")
    ] = None,
    rollback_skip_release_command: Annotated[
        bool,
        typer.Option(
            "--rollback-skip-release-command",
            help="An auto-rollback passes --skip-release-command to flyctl ([deploy] release_command).",
        ),
    ] = False,
    record: RecordOpt = None,
    commit_record: Annotated[
        bool, typer.Option("--commit-record", help="git-commit the judged-release record after judging.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    def call() -> None:
        from aibridge.cli._deploy_render import RichEvents, render_summary
        from aibridge.ops.deploy import DeployOptions, deploy

        options = DeployOptions(
            config=config,
            app=app_name,
            strategy=strategy,
            image=image,
            wait_timeout=_flyctl_duration(wait_timeout, "--wait-timeout"),
            verify=_verify(verify, health_url, health_passes, health_timeout, smoke),
            auto_rollback=auto_rollback,
            force=force,
            dry_run=dry_run,
            flyctl_args=tuple(flyctl_args or ()),
            yes=yes,
            create=create,
            org=org,
            rollback_skip_release_command=rollback_skip_release_command,
            record=record,
            commit_record=commit_record,
        )
        progress = _progress(as_json)
        events = RichEvents(progress)
        try:
            summary = deploy(options, events)
        finally:
            events.close()
        if as_json:
            _print_json(summary.to_json())
        else:
            render_summary(progress, summary)
        raise typer.Exit(summary.exit_code)

    _run(call, as_json)


@app.command(
    "rollback",
    help="Redeploy the newest completed release whose image differs from the running one, then verify.",
    epilog="fly.toml, env and secrets are not reverted. Exit codes: 0 rolled back and verified · "
    "1 failed or cancelled · 2 usage/precondition (nothing changed) · 130 interrupted.",
)
def rollback_command(
    to: Annotated[str | None, typer.Option(help="Release version (42 or v42) or image reference.")] = None,
    strategy: Annotated[str, typer.Option(help="immediate or rolling.")] = "immediate",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and the command; deploy nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOpt = Path("fly.toml"),
    app_name: AppOpt = None,
    health_url: HealthUrlOpt = None,
    verify: VerifyOpt = True,
    health_passes: PassesOpt = 3,
    health_timeout: HealthTimeoutOpt = "60s",
    skip_release_command: Annotated[
        bool,
        typer.Option(
            "--skip-release-command", help="Passed to `fly deploy`: do not run [deploy] release_command."
        ),
    ] = False,
    record: RecordOpt = None,
    as_json: JsonOpt = False,
) -> None:
    def call() -> None:
        from aibridge.cli._deploy_render import RichEvents, render_plan, render_rollback
        from aibridge.errors import UsageError
        from aibridge.ops.rollback import RollbackOptions, rollback

        progress = _progress(as_json)

        def confirm(plan: RollbackPlan) -> bool:
            render_plan(progress, plan)
            if yes:
                return True
            if not sys.stdin.isatty():
                raise UsageError("refusing to roll back without confirmation: pass --yes")
            return typer.confirm("Roll back now?", default=False, err=as_json)

        options = RollbackOptions(
            config=config,
            app=app_name,
            to=to,
            strategy=strategy,
            dry_run=dry_run,
            verify=_verify(verify, health_url, health_passes, health_timeout, None),
            skip_release_command=skip_release_command,
            record=record,
        )
        events = RichEvents(progress)
        try:
            plan, outcome = rollback(options, events, confirm)
        finally:
            events.close()
        code = outcome.exit_code if outcome else (0 if dry_run else 1)
        if as_json:
            commands = [[*events.commands[-1]]] if dry_run and events.commands else []
            _print_json(
                {
                    "ok": code == 0,
                    "exit_code": code,
                    "plan": plan.to_json(),
                    "commands": commands,
                    "outcome": outcome.to_json() if outcome else None,
                }
            )
        elif outcome is None:
            if dry_run:
                render_plan(progress, plan)
            progress.print("dry run: nothing deployed" if dry_run else "cancelled: nothing deployed")
        else:
            render_rollback(progress, outcome)
        raise typer.Exit(code)

    _run(call, as_json)


@app.command("status", help="Releases, Machines and the live /health answer of the app, in one view.")
def status_command(
    config: ConfigOpt = Path("fly.toml"),
    app_name: AppOpt = None,
    health_url: HealthUrlOpt = None,
    health: Annotated[bool, typer.Option("--health/--no-health", help="GET the health URL once.")] = True,
    releases: Annotated[int, typer.Option(min=0, help="How many recent releases to show.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    def call() -> None:
        from aibridge.cli._deploy_render import render_status
        from aibridge.ops.status import app_status

        view = app_status(config, app_name, health_url=health_url, check=health, releases=releases)
        if as_json:
            _print_json(view.to_json())
        else:
            render_status(console, view)

    _run(call, as_json)
