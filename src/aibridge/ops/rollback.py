"""Rollback: redeploy an earlier release's image, because flyctl has no rollback command.

fly.md §4: pick the newest release whose status is ``complete`` and whose image differs from the
running one (not blindly the second entry), then ``fly deploy --image REF``. The current fly.toml,
env and secrets stay as they are, and old images may have been pruned from the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aibridge.errors import UsageError
from aibridge.ops.candidates import choose_target, hint
from aibridge.ops.events import OpsEvents
from aibridge.ops.flyctl import Flyctl, FlyctlResult
from aibridge.ops.flyjson import (
    AppStatus,
    Release,
    parse_emitted_release,
    parse_releases,
    parse_status,
)
from aibridge.ops.health import Verification, VerifyOptions, verify_release
from aibridge.ops.preflight import release_command, resolve_app
from aibridge.ops.record import ReleaseRecord, default_record_path

__all__ = (
    "NOT_REVERTED",
    "ROLLBACK_EXIT_DONE",
    "ROLLBACK_EXIT_FAILED",
    "STRATEGIES",
    "RollbackOptions",
    "RollbackOutcome",
    "RollbackPlan",
    "choose_target",
    "deploy_image_args",
    "plan_rollback",
    "rollback",
    "run_rollback",
)

STRATEGIES = ("immediate", "rolling")
ROLLBACK_EXIT_DONE = 0
ROLLBACK_EXIT_FAILED = 1
NOT_REVERTED = "fly.toml, [env] and secrets are NOT reverted: the current ones are used with the old image"
EMIT_RELEASE_ENV = {"FLY_EMIT_RELEASE_JSON": "1"}
# How flyctl says an image is gone. Its resolver ends with `could not find image %q`
# (internal/build/imgsrc/resolver.go ResolveReference); the API's resolveImageForApp error reads
# `Could not find image "REF"` (passed through by remote_image_resolver.go Run); and release
# creation wraps the API body as `failed to create release (status %d): %s`
# (internal/uiex/releases.go CreateRelease).
_PRUNED = re.compile(r"could not find image|failed to create release \(status 404\)", re.IGNORECASE)


def is_pruned_image_error(stderr: str) -> bool:
    return bool(_PRUNED.search(stderr))


def deploy_image_args(
    app: str, config: Path, image: str, strategy: str, *, skip_release_command: bool = False
) -> list[str]:
    """flyctl arguments that put ``image`` live with the current fly.toml."""
    args = ["deploy", "--config", str(config), "--app", app, "--image", image, "--strategy", strategy]
    return [*args, "--skip-release-command"] if skip_release_command else args


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    """What a rollback would do: from the live image to an earlier one."""

    app: str
    config: Path
    current_image: str | None
    current_version: int | None
    target_image: str
    target: Release | None
    next_candidate: Release | None
    strategy: str
    release_command: str | None = None
    """fly.toml's ``[deploy] release_command``: flyctl runs it again with the old image."""
    skip_release_command: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def args(self) -> list[str]:
        return deploy_image_args(
            self.app,
            self.config,
            self.target_image,
            self.strategy,
            skip_release_command=self.skip_release_command,
        )

    @property
    def notes(self) -> list[str]:
        notes = [*self.warnings, NOT_REVERTED]
        if self.release_command and self.skip_release_command:
            notes.append(
                f"[deploy] release_command {self.release_command!r} is skipped (--skip-release-command)"
            )
        elif self.release_command:
            notes.append(
                f"[deploy] release_command {self.release_command!r} runs again, with the old image "
                "(pass --skip-release-command to skip it)"
            )
        return notes

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "from": {"version": self.current_version, "image": self.current_image},
            "to": {"version": self.target.version if self.target else None, "image": self.target_image},
            "next_candidate": self.next_candidate.to_json() if self.next_candidate else None,
            "strategy": self.strategy,
            "release_command": self.release_command,
            "skip_release_command": self.skip_release_command,
            "warnings": list(self.warnings),
            "not_reverted": NOT_REVERTED,
            "notes": self.notes,
        }


def read_live(flyctl: Flyctl, app: str) -> tuple[list[Release], AppStatus]:
    """``fly releases --json`` and ``fly status --json`` for ``app`` (read-only)."""
    releases = parse_releases(flyctl.run_json(["releases", "--app", app, "--json"]))
    status = parse_status(flyctl.run_json(["status", "--app", app, "--json"]))
    return releases, status


def plan_rollback(
    flyctl: Flyctl,
    app: str,
    config: Path,
    to: str | None,
    strategy: str,
    record: ReleaseRecord,
    *,
    skip_release_command: bool = False,
) -> RollbackPlan:
    releases, status = read_live(flyctl, app)
    running = status.running_image
    if running is None and status.version is not None:
        running = next((r.image_ref for r in releases if r.version == status.version), None)
    bad = record.bad_images(app)
    image, target, next_one = choose_target(releases, running, to, bad)
    warnings: tuple[str, ...] = ()
    if image in bad:
        judged = bad[image]
        warnings = (
            f"WARNING: {image} was judged bad by aibridge on {judged.at} ({judged.why}); "
            "deploying it because --to names it",
        )
    return RollbackPlan(
        app,
        config,
        running,
        status.version,
        image,
        target,
        next_one,
        strategy,
        release_command=release_command(config),
        skip_release_command=skip_release_command,
        warnings=warnings,
    )


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    plan: RollbackPlan
    deploy: FlyctlResult
    verification: Verification | None
    message: str

    @property
    def ok(self) -> bool:
        return self.deploy.ok and (self.verification is None or self.verification.ok)

    @property
    def exit_code(self) -> int:
        return ROLLBACK_EXIT_DONE if self.ok else ROLLBACK_EXIT_FAILED

    def to_json(self) -> dict[str, Any]:
        released = parse_emitted_release(self.deploy.stdout)
        return {
            "ok": self.ok,
            "plan": self.plan.to_json(),
            "deploy": {"outcome": self.deploy.outcome, "exit_code": self.deploy.returncode},
            "release": {"version": released.version, "image": released.image_ref} if released else None,
            "seconds": round(self.deploy.seconds, 3),
            "verification": self.verification.to_json() if self.verification else None,
            "message": self.message,
        }


def run_rollback(
    plan: RollbackPlan,
    flyctl: Flyctl,
    verify: VerifyOptions,
    events: OpsEvents,
    record: ReleaseRecord | None = None,
) -> RollbackOutcome:
    """Deploy the plan's image, verify health and record the verdict; a failure names the next candidate."""
    outcome = _run_rollback(plan, flyctl, verify, events)
    if record is not None and outcome.verification is not None:
        released = parse_emitted_release(outcome.deploy.stdout)
        version = released.version if released else (plan.target.version if plan.target else None)
        verdict: Literal["good", "bad"] = "good" if outcome.verification.ok else "bad"
        record.add(plan.app, plan.target_image, version, verdict, f"rollback: {outcome.verification.summary}")
    return outcome


def _run_rollback(
    plan: RollbackPlan, flyctl: Flyctl, verify: VerifyOptions, events: OpsEvents
) -> RollbackOutcome:
    events.step("rollback", f"deploying {plan.target_image} ({plan.strategy})")
    events.command([flyctl.path, *plan.args], EMIT_RELEASE_ENV)
    result = flyctl.run(plan.args, extra_env=EMIT_RELEASE_ENV, on_output=events.output)
    if result.interrupted:
        raise KeyboardInterrupt
    if not result.ok:
        if is_pruned_image_error(result.stderr):
            cause = f"image {plan.target_image} is no longer in the registry (pruned?)"
        else:
            cause = result.describe()
        return RollbackOutcome(plan, result, None, f"rollback failed: {cause}; {hint(plan.next_candidate)}")
    if not verify.enabled:
        return RollbackOutcome(plan, result, None, f"rolled back to {plan.target_image} (not verified)")
    verification = verify_release(verify.url_for(plan.app), verify, events)
    if verification.ok:
        return RollbackOutcome(plan, result, verification, f"rolled back to {plan.target_image}: verified")
    return RollbackOutcome(
        plan, result, verification, f"rolled back to {plan.target_image} but {verification.summary}"
    )


@dataclass(frozen=True, slots=True)
class RollbackOptions:
    config: Path = Path("fly.toml")
    app: str | None = None
    to: str | None = None
    """A release version (``42`` or ``v42``) or an image reference; None picks the newest good one."""
    strategy: str = "immediate"
    dry_run: bool = False
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    skip_release_command: bool = False
    record: Path | None = None
    """The judged-release record; default ``.aibridge/releases.json`` beside the config."""


def rollback(
    options: RollbackOptions,
    events: OpsEvents,
    confirm: Callable[[RollbackPlan], bool],
    environ: Mapping[str, str] | None = None,
) -> tuple[RollbackPlan, RollbackOutcome | None]:
    """Plan (read-only flyctl calls), confirm, deploy the old image, verify.

    The outcome is None for a dry run or when ``confirm`` declines; nothing was deployed then.
    """
    if options.strategy not in STRATEGIES:
        raise UsageError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {options.strategy!r}")
    env = dict(os.environ if environ is None else environ)
    app = resolve_app(options.config, options.app, env)
    record = ReleaseRecord(options.record or default_record_path(options.config))
    flyctl = Flyctl.locate(env)
    flyctl.check_auth()
    events.step("plan", f"reading the releases of {app}")
    plan = plan_rollback(
        flyctl,
        app,
        options.config,
        options.to,
        options.strategy,
        record,
        skip_release_command=options.skip_release_command,
    )
    if options.dry_run:
        events.command([flyctl.path, *plan.args], EMIT_RELEASE_ENV)
        return plan, None
    if not confirm(plan):
        return plan, None
    return plan, run_rollback(plan, flyctl, options.verify, events, record)
