"""``aibridge deploy``: validate, deploy with flyctl, verify health, roll back when it fails.

Steps (issue 5): 1 validate the config; 2 find flyctl, the login and the app name (exit 2 before
anything changes); 3 record what is live (``fly releases/status --json``); 4 ``fly deploy`` with
``FLY_EMIT_RELEASE_JSON=1``, streamed live; 5 verify ``/health`` (and ``--smoke N``); 6 on
failure, redeploy the image recorded in step 3 and verify again.

Exit codes (:data:`EXIT_CODES`): 0 deployed; 1 failed, nothing rolled back (auto-rollback off,
nothing live before, or the failed deploy changed no Machine); 2 usage or precondition, nothing
changed; 3 failed and rolled back (the old release verified healthy); 4 failed and the rollback
failed too; 130 interrupted (Ctrl-C was passed on to flyctl; no automatic rollback).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from aibridge.errors import FlyctlError, UsageError
from aibridge.ops.candidates import next_candidate
from aibridge.ops.events import OpsEvents
from aibridge.ops.flyctl import Flyctl, FlyctlResult
from aibridge.ops.flyjson import AppStatus, Release, parse_emitted_release, parse_releases, parse_status
from aibridge.ops.health import Verification, VerifyOptions, require_smoke, verify_release
from aibridge.ops.newapp import create_app, read_live_or_new
from aibridge.ops.preflight import release_command, resolve_app, resolve_strategy, validate_config
from aibridge.ops.record import ReleaseRecord, commit_record, default_record_path
from aibridge.ops.rollback import (
    EMIT_RELEASE_ENV,
    RollbackOutcome,
    RollbackPlan,
    run_rollback,
)

__all__ = (
    "EXIT_CODES",
    "EXIT_DEPLOYED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_PRECONDITION",
    "EXIT_ROLLBACK_FAILED",
    "EXIT_ROLLED_BACK",
    "DeployOptions",
    "DeploySummary",
    "deploy",
)

EXIT_DEPLOYED = 0
EXIT_FAILED = 1
EXIT_PRECONDITION = 2
EXIT_ROLLED_BACK = 3
EXIT_ROLLBACK_FAILED = 4
EXIT_INTERRUPTED = 130
Outcome = Literal["deployed", "failed", "rolled_back", "rollback_failed", "interrupted", "dry_run"]
EXIT_CODES: dict[Outcome, int] = {
    "deployed": EXIT_DEPLOYED,
    "dry_run": EXIT_DEPLOYED,
    "failed": EXIT_FAILED,
    "rolled_back": EXIT_ROLLED_BACK,
    "rollback_failed": EXIT_ROLLBACK_FAILED,
    "interrupted": EXIT_INTERRUPTED,
}
STRATEGIES = ("canary", "rolling", "immediate", "bluegreen")
"""flyctl's deploy strategies (fly.md §1 ``[deploy] strategy``)."""
ROLLBACK_STRATEGY = "immediate"
"""Auto-rollback cuts over at once: the release it replaces is already known to be broken."""


@dataclass(frozen=True, slots=True)
class DeployOptions:
    config: Path = Path("fly.toml")
    app: str | None = None
    strategy: str | None = None
    image: str | None = None
    wait_timeout: str | None = None
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    auto_rollback: bool = True
    force: bool = False
    dry_run: bool = False
    flyctl_args: tuple[str, ...] = ()
    """Passed to ``fly deploy`` as given, after the mapped flags."""
    yes: bool = False
    """Passed on as ``fly deploy --yes`` (flyctl's auto-confirm)."""
    create: bool = False
    """Create the app with ``fly apps create`` when Fly does not know it yet."""
    org: str | None = None
    rollback_skip_release_command: bool = False
    record: Path | None = None
    commit_record: bool = False

    @property
    def record_path(self) -> Path:
        return self.record or default_record_path(self.config)

    def deploy_args(self, app: str) -> list[str]:
        args = ["deploy", "--config", str(self.config), "--app", app]
        for flag, value in (("--strategy", self.strategy), ("--image", self.image)):
            if value:
                args += [flag, value]
        if self.wait_timeout:
            args += ["--wait-timeout", self.wait_timeout]
        if self.yes:
            args.append("--yes")
        return [*args, *self.flyctl_args]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass(slots=True)
class DeploySummary:
    """Everything a deploy did, for the closing table and ``--json``."""

    app: str
    strategy: str
    outcome: Outcome = "failed"
    before: Release | None = None
    after: Release | None = None
    steps: list[Step] = field(default_factory=list)
    verification: Verification | None = None
    rollback: RollbackOutcome | None = None
    commands: list[list[str]] = field(default_factory=list)
    """In a dry run: every flyctl command that would run."""
    message: str = ""
    notes: list[str] = field(default_factory=list)
    judged: str = ""
    """What happened to the judged-release record (path, verdict, commit)."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def record(self, name: str, ok: bool, started: float, detail: str) -> None:
        self.steps.append(Step(name, ok, round(time.monotonic() - started, 3), detail))

    def to_json(self) -> dict[str, Any]:
        def ref(release: Release | None) -> dict[str, Any] | None:
            return {"version": release.version, "image": release.image_ref} if release else None

        return {
            "ok": self.exit_code == 0,
            "app": self.app,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "strategy": self.strategy,
            "before": ref(self.before),
            "after": ref(self.after),
            "steps": [
                {"name": s.name, "ok": s.ok, "seconds": s.seconds, "detail": s.detail} for s in self.steps
            ],
            "verification": self.verification.to_json() if self.verification else None,
            "rollback": self.rollback.to_json() if self.rollback else None,
            "commands": self.commands,
            "message": self.message,
            "notes": self.notes,
            "record": self.judged,
        }


def deploy(
    options: DeployOptions, events: OpsEvents, environ: Mapping[str, str] | None = None
) -> DeploySummary:
    """Run the whole pipeline; precondition failures raise (exit 2), everything later is summarised."""
    summary = _deploy(options, events, environ)
    _commit(options, summary)
    return summary


def _deploy(
    options: DeployOptions, events: OpsEvents, environ: Mapping[str, str] | None = None
) -> DeploySummary:
    env = dict(os.environ if environ is None else environ)
    if options.strategy is not None and options.strategy not in STRATEGIES:
        raise UsageError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {options.strategy!r}")
    started = time.monotonic()
    events.step("validate", f"validating {options.config}")
    validated = validate_config(options.config, force=options.force)
    app = resolve_app(options.config, options.app, env)
    require_smoke(options.verify)
    summary = DeploySummary(app, resolve_strategy(options.config, options.strategy))
    summary.record("validate", True, started, validated)
    record = ReleaseRecord(options.record_path)
    command = release_command(options.config)
    if options.auto_rollback and command:
        summary.notes.append(_release_command_note(command, options.rollback_skip_release_command))
    if options.dry_run:
        from aibridge.ops.dryrun import plan_deploy

        return plan_deploy(options, app, env, summary, events)

    started = time.monotonic()
    events.step("preflight", "finding flyctl and checking the Fly login")
    flyctl = Flyctl.locate(env)
    flyctl.check_auth()
    events.step("record", f"recording what is live on {app}")
    live_now = read_live_or_new(flyctl, app, create=options.create)
    if live_now is None:
        create_app(flyctl, app, options.org, events)
        releases: list[Release] = []
        summary.before = None
        summary.notes.append(f"created the app {app}: this is its first deploy, nothing to roll back to")
    else:
        releases, status = live_now
        summary.before = _live_release(releases, status)
    if summary.before is None:
        live = "nothing live yet: first deploy, a failure cannot be rolled back"
    else:
        live = f"{summary.before.label} {summary.before.image_ref}"
    summary.record("record", True, started, live)

    started = time.monotonic()
    args = options.deploy_args(app)
    events.step("deploy", f"fly deploy to {app}")
    events.command([flyctl.path, *args], EMIT_RELEASE_ENV)
    result = flyctl.run(args, extra_env=EMIT_RELEASE_ENV, on_output=events.output)
    summary.record("deploy", result.ok, started, result.describe())
    if result.outcome == "interrupted":
        summary.outcome = "interrupted"
        summary.message = f"{result.describe()}; some Machines may run the new image: check `aibridge status`"
        return summary
    if result.ok:
        summary.after = _new_release(flyctl, app, result)
        if not options.verify.enabled:
            summary.outcome, summary.message = "deployed", "deployed (health not verified: --no-verify)"
            return summary
        started = time.monotonic()
        try:
            summary.verification = verify_release(options.verify.url_for(app), options.verify, events)
        except KeyboardInterrupt:
            summary.outcome = "interrupted"
            summary.message = "interrupted while verifying; the new release is live and unverified"
            return summary
        summary.record("verify", summary.verification.ok, started, summary.verification.summary)
        _judge(options, record, summary)
        if summary.verification.ok:
            summary.outcome, summary.message = (
                "deployed",
                f"deployed and verified: {summary.verification.summary}",
            )
            return summary
        failure = f"verification failed: {summary.verification.summary}"
    else:
        failure = result.describe()
    return _recover(options, flyctl, summary, failure, events, releases, record)


def _release_command_note(command: str, skipped: bool) -> str:
    if skipped:
        return (
            f"an auto-rollback skips [deploy] release_command {command!r} (--rollback-skip-release-command)"
        )
    return (
        f"an auto-rollback runs [deploy] release_command {command!r} again, with the old image "
        "(--rollback-skip-release-command skips it)"
    )


def _judge(options: DeployOptions, record: ReleaseRecord, summary: DeploySummary) -> None:
    """Write aibridge's verdict on the new release into the record (and commit it if asked)."""
    after, verification = summary.after, summary.verification
    if after is None or not after.image_ref or verification is None:
        return
    verdict: Literal["good", "bad"] = "good" if verification.ok else "bad"
    record.add(summary.app, after.image_ref, after.version, verdict, verification.summary)
    summary.judged = f"{options.record_path}: {after.label} {after.image_ref} judged {verdict}"


def _commit(options: DeployOptions, summary: DeploySummary) -> None:
    """Commit the record once, after the deploy's and any rollback's verdicts are in it."""
    if options.commit_record and summary.judged:
        message = f"aibridge: record the verdicts of the {summary.app} deploy ({summary.outcome})"
        summary.judged += "; " + commit_record(options.record_path, message)


def _live_release(releases: list[Release], status: AppStatus) -> Release | None:
    image = status.running_image
    for release in releases:
        if (image and release.image_ref == image) or (not image and release.version == status.version):
            return release
    return Release(version=status.version or 0, status="unknown", image_ref=image) if image else None


def _new_release(flyctl: Flyctl, app: str, result: FlyctlResult) -> Release | None:
    emitted = parse_emitted_release(result.stdout)
    if emitted is not None:
        return Release(version=emitted.version, status="complete", image_ref=emitted.image_ref, id=emitted.id)
    # flyctl older than v0.4.56 prints no release line: the newest release is ours.
    try:
        releases = parse_releases(flyctl.run_json(["releases", "--app", app, "--json"]))
    except FlyctlError:
        return None
    return releases[0] if releases else None


def _recover(
    options: DeployOptions,
    flyctl: Flyctl,
    summary: DeploySummary,
    failure: str,
    events: OpsEvents,
    releases: list[Release],
    record: ReleaseRecord,
) -> DeploySummary:
    before = summary.before
    if before is None or not before.image_ref:
        summary.outcome, summary.message = (
            "failed",
            f"{failure}; nothing was live before (first deploy), so nothing to roll back to",
        )
        return summary
    if not options.auto_rollback:
        summary.outcome = "failed"
        summary.message = f"{failure}; auto-rollback is off: `aibridge rollback --to {before.image_ref}`"
        return summary
    if summary.after is None and _unchanged(flyctl, summary.app, before.image_ref):
        summary.outcome = "failed"
        summary.message = f"{failure}; every Machine still runs {before.image_ref}, so no rollback was needed"
        return summary
    started = time.monotonic()
    current = summary.after
    # The same choice `aibridge rollback` makes, minus the image being tried and the one that failed.
    tried = {before.image_ref, *([current.image_ref] if current else [])}
    plan = RollbackPlan(
        app=summary.app,
        config=options.config,
        current_image=current.image_ref if current else None,
        current_version=current.version if current else None,
        target_image=before.image_ref,
        target=before,
        next_candidate=next_candidate(releases, tried, record.bad_images(summary.app)),
        strategy=ROLLBACK_STRATEGY,
        release_command=release_command(options.config),
        skip_release_command=options.rollback_skip_release_command,
    )
    verify = replace(options.verify, smoke=None)
    summary.rollback = run_rollback(plan, flyctl, verify, events, record if verify.enabled else None)
    summary.record("rollback", summary.rollback.ok, started, summary.rollback.message)
    summary.outcome = "rolled_back" if summary.rollback.ok else "rollback_failed"
    summary.message = f"{failure}; {summary.rollback.message}"
    return summary


def _unchanged(flyctl: Flyctl, app: str, image: str) -> bool:
    """True when every Machine still runs ``image`` after a failed deploy (it failed before rollout)."""
    try:
        status = parse_status(flyctl.run_json(["status", "--app", app, "--json"]))
    except FlyctlError:
        return False
    return bool(status.machines) and all(m.image == image for m in status.machines)
