"""``aibridge deploy --dry-run``: every flyctl command the deploy could run, in order, and nothing run.

The list includes the conditional ones (``fly auth whoami`` without a token, ``fly apps create``
with ``--create``, the ``fly status`` after a failed deploy, the rollback), each named by when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aibridge.errors import FlyctlError

# aibridge.ops.deploy imports this module only inside deploy(), so it is fully loaded by now.
from aibridge.ops.deploy import ROLLBACK_STRATEGY
from aibridge.ops.events import OpsEvents
from aibridge.ops.flyctl import TOKEN_VARIABLES, find_flyctl
from aibridge.ops.newapp import create_args
from aibridge.ops.rollback import EMIT_RELEASE_ENV, deploy_image_args

if TYPE_CHECKING:
    from aibridge.ops.deploy import DeployOptions, DeploySummary

__all__ = ("plan_deploy",)


def plan_deploy(
    options: DeployOptions, app: str, env: dict[str, str], summary: DeploySummary, events: OpsEvents
) -> DeploySummary:
    try:
        path = find_flyctl(env)
    except FlyctlError:
        path = "fly"
    previous = "<image live before the deploy>"
    planned: list[tuple[str, list[str], Mapping[str, str]]] = []
    if not any(env.get(name, "").strip() for name in TOKEN_VARIABLES):
        planned.append(("preflight", ["auth", "whoami"], {}))
    planned += [
        ("record", ["releases", "--app", app, "--json"], {}),
        ("record", ["status", "--app", app, "--json"], {}),
    ]
    if options.create:
        planned.append(("create (only if Fly does not know the app)", create_args(app, options.org), {}))
        summary.notes.append("if the app is created, this is its first deploy: nothing to roll back to")
    planned += [
        ("deploy", options.deploy_args(app), EMIT_RELEASE_ENV),
        ("record (only if flyctl prints no release line)", ["releases", "--app", app, "--json"], {}),
    ]
    if options.auto_rollback:
        planned.append(("check (only if the deploy fails)", ["status", "--app", app, "--json"], {}))
        rollback = deploy_image_args(
            app,
            options.config,
            previous,
            ROLLBACK_STRATEGY,
            skip_release_command=options.rollback_skip_release_command,
        )
        planned.append(("rollback (only if the deploy or verification fails)", rollback, EMIT_RELEASE_ENV))
    for name, args, extra in planned:
        events.step(name, "would run")
        events.command([path, *args], extra)
        summary.commands.append([path, *args])
    if options.verify.enabled:
        events.step("verify", f"would poll {options.verify.url_for(app)} until ok {options.verify.passes}x")
        summary.notes.append(f"the verdict would be recorded in {options.record_path}")
    summary.outcome, summary.message = "dry_run", "dry run: nothing was changed"
    return summary
