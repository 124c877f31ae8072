"""A first deploy: the app does not exist on Fly yet, so there is nothing live and nothing to roll back to.

``fly releases`` for an app Fly does not know fails with ``failed retrieving app releases NAME:
Could not find App`` (``internal/command/apps/releases.go`` runReleases wraps the GraphQL error
"Could not find App", the message ``internal/command/deploy/deploy.go`` also matches).
"""

from __future__ import annotations

from aibridge.errors import FlyctlError
from aibridge.ops.events import OpsEvents
from aibridge.ops.flyctl import Flyctl, FlyctlCommandError
from aibridge.ops.flyjson import AppStatus, Release
from aibridge.ops.rollback import read_live

__all__ = ("AppNotFoundError", "create_app", "create_args", "read_live_or_new")

APP_NOT_FOUND = "Could not find App"


class AppNotFoundError(FlyctlError):
    """Fly has no app of that name (exit 2: nothing was changed)."""


def create_args(app: str, org: str | None) -> list[str]:
    # `fly apps create NAME` (internal/command/apps/create.go RunCreate); without --org it picks
    # the only personal org or prompts, which fails when not interactive (prompt.go Org).
    return ["apps", "create", app, *(["--org", org] if org else [])]


def read_live_or_new(flyctl: Flyctl, app: str, *, create: bool) -> tuple[list[Release], AppStatus] | None:
    """What is live on ``app``; None when it does not exist and ``create`` allows making it."""
    try:
        return read_live(flyctl, app)
    except FlyctlCommandError as error:
        if APP_NOT_FOUND not in error.detail:
            raise
    if create:
        return None
    raise AppNotFoundError(
        f"Fly has no app named {app}: create it with `fly apps create {app}` (or `fly launch --no-deploy`), "
        "or run `aibridge deploy --create`; a first deploy has nothing to roll back to"
    )


def create_app(flyctl: Flyctl, app: str, org: str | None, events: OpsEvents) -> None:
    args = create_args(app, org)
    events.step("create", f"creating the app {app} (first deploy: nothing to roll back to)")
    events.command([flyctl.path, *args], {})
    result = flyctl.run(args, on_output=events.output)
    if result.interrupted:
        raise KeyboardInterrupt
    if not result.ok:
        raise FlyctlCommandError(f"cannot create the app {app}: {result.describe()}")
