"""Checks before a deploy changes anything: the config validates, and there is an app name.

Both raise errors that exit 2, so a refused deploy never reaches flyctl.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aibridge.errors import FileReadError, UsageError

__all__ = ("release_command", "resolve_app", "resolve_strategy", "validate_config")

_NO_APP = (
    'no app name: add `app = "NAME"` to {config}, pass --app NAME, or set FLY_APP '
    "(`aibridge init --app NAME` writes a fly.toml)"
)


def _require_file(config: Path) -> None:
    if not config.is_file():
        raise FileReadError(f"{config}: no such file (run `aibridge init` or pass --config PATH)")


def validate_config(config: Path, *, force: bool) -> str:
    """Run ``aibridge validate`` on ``config``; errors refuse the deploy unless ``force``.

    Returns one line describing the result, for the deploy summary.
    """
    _require_file(config)
    from aibridge.fly.findings import Severity
    from aibridge.fly.validate import validate_project

    report = validate_project(config)
    errors, warnings = report.errors, report.warnings
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if not report.failed():
        return f"{config}: {counts}"
    first = next(f for f in report.findings if f.severity is Severity.ERROR)
    where = f"{first.file}:{first.line}:{first.column}"
    if not force:
        raise UsageError(
            f"{config} has {counts} (first: {where} {first.code} {first.message}); "
            "fix them (`aibridge validate` lists them) or pass --force to deploy anyway"
        )
    return f"{config}: {counts}, deploying anyway (--force)"


def resolve_app(config: Path, app: str | None, environ: Mapping[str, str]) -> str:
    """The app name: ``--app``, else ``FLY_APP``, else fly.toml's ``app`` (both replace it in flyctl)."""
    for given in (app, environ.get("FLY_APP")):
        if given and given.strip():
            return given.strip()
    _require_file(config)
    name = _app_from_config(config)
    if name:
        return name
    raise UsageError(_NO_APP.format(config=config))


def _app_from_config(config: Path) -> str | None:
    from aibridge.fly.model import load_fly_config

    app = load_fly_config(config).app
    return app.strip() if isinstance(app, str) and app.strip() else None


def resolve_strategy(config: Path, given: str | None) -> str:
    """The strategy flyctl will use: ``--strategy``, else ``[deploy] strategy``, else rolling (fly.md §1)."""
    if given:
        return given
    from aibridge.fly.model import load_fly_config

    return f"{load_fly_config(config).strategy or 'rolling'} (fly.toml)"


def release_command(config: Path) -> str | None:
    """fly.toml's ``[deploy] release_command``, which every ``fly deploy`` runs first (fly.md §1)."""
    import tomllib

    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    deploy = data.get("deploy")
    command = deploy.get("release_command") if isinstance(deploy, dict) else None
    return command.strip() if isinstance(command, str) and command.strip() else None
