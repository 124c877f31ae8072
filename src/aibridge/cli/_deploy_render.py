"""Rich rendering for ``deploy``, ``rollback`` and ``status``: live progress and closing tables."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from aibridge.ops.deploy import DeploySummary
    from aibridge.ops.flyjson import Release
    from aibridge.ops.health import HealthAttempt, HealthResult
    from aibridge.ops.rollback import RollbackOutcome, RollbackPlan
    from aibridge.ops.status import StatusView

__all__ = ("RichEvents", "render_plan", "render_rollback", "render_status", "render_summary")

_OUTCOME_STYLE = {
    "deployed": "bold green",
    "dry_run": "bold cyan",
    "failed": "bold red",
    "rolled_back": "bold yellow",
    "rollback_failed": "bold red",
    "interrupted": "bold yellow",
}


def _release(release: Release | None) -> str:
    return f"{release.label}  {release.image_ref}" if release else "-"


class RichEvents:
    """Progress on ``console``: steps, the flyctl commands, flyctl's own lines, a health spinner."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.commands: list[list[str]] = []
        """Every flyctl command announced, in order (a dry run's JSON lists them)."""
        self._spinner: Status | None = None
        self._url = ""

    def step(self, name: str, message: str) -> None:
        self.console.print(Text.assemble(("→ ", "bold cyan"), (name, "bold"), " ", message))

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.commands.append(list(argv))
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f"{prefix} {shlex.join(argv)}" if prefix else shlex.join(argv)
        self.console.print(Text(f"  $ {line}", style="dim"), soft_wrap=True)

    def output(self, line: str, stream: str) -> None:
        style = "red" if stream == "stderr" and line.startswith("Error:") else ""
        self.console.print(Text.assemble(("  │ ", "dim"), (line, style)), soft_wrap=True)

    def health_started(self, url: str) -> None:
        self._url = url
        self._spinner = self.console.status(f"verifying {url}")
        self._spinner.start()

    def health_attempt(self, attempt: HealthAttempt) -> None:
        latency = f"{attempt.latency_ms:.0f} ms" if attempt.latency_ms is not None else "no answer"
        text = (
            f"verifying {self._url}: attempt {attempt.number}, {attempt.detail}, {latency}, "
            f"{attempt.streak} ok in a row"
        )
        if self._spinner is not None:
            self._spinner.update(text)

    def health_finished(self, result: HealthResult) -> None:
        self.close()
        mark = ("✓", "green") if result.ok else ("✘", "red")
        self.console.print(Text.assemble(("  ", ""), mark, f" {result.url}: {result.summary}"))

    def close(self) -> None:
        """Stop the spinner (also when Ctrl-C cut a verification short)."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


def render_summary(console: Console, summary: DeploySummary) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("outcome", Text(summary.outcome, style=_OUTCOME_STYLE[summary.outcome]))
    table.add_row("app", summary.app)
    table.add_row("strategy", summary.strategy)
    table.add_row("before", _release(summary.before))
    table.add_row("after", _release(summary.after))
    for step in summary.steps:
        mark = "✓" if step.ok else "✘"
        table.add_row(f"{mark} {step.name}", f"{step.seconds:.1f}s  {step.detail}")
    if summary.judged:
        table.add_row("record", summary.judged)
    console.print(table)
    for note in summary.notes:
        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    console.print(Text(summary.message, style=_OUTCOME_STYLE[summary.outcome]), soft_wrap=True)


def render_plan(console: Console, plan: RollbackPlan) -> None:
    target = f"v{plan.target.version}  {plan.target_image}" if plan.target else plan.target_image
    current = f"v{plan.current_version}  " if plan.current_version is not None else ""
    console.print(Text.assemble(("rollback ", "bold"), plan.app, f" ({plan.strategy})"))
    console.print(f"  from  {current}{plan.current_image or 'unknown image'}", highlight=False)
    console.print(f"  to    {target}", highlight=False)
    if plan.next_candidate is not None:
        candidate = plan.next_candidate
        console.print(f"  next candidate  {candidate.label}  {candidate.image_ref}", highlight=False)
    for note in plan.notes:
        console.print(Text(f"  note: {note}", style="yellow"), soft_wrap=True)


def render_rollback(console: Console, outcome: RollbackOutcome) -> None:
    style = "bold green" if outcome.ok else "bold red"
    console.print(Text(outcome.message, style=style), soft_wrap=True)


def render_status(console: Console, view: StatusView) -> None:
    status = view.status
    version = f"v{status.version}" if status.version is not None else "-"
    console.print(
        Text.assemble(("app ", "bold"), f"{view.app}  {status.hostname}  {status.status}  {version}")
    )
    releases = Table(title="releases", title_justify="left")
    for column in ("version", "status", "image", "created", "user"):
        releases.add_column(column, overflow="fold")
    for release in view.releases:
        style = "" if release.status == "complete" else "yellow"
        releases.add_row(
            release.label, release.status, release.image_ref, release.created_at, release.user, style=style
        )
    console.print(releases)
    machines = Table(title="machines", title_justify="left")
    for column in ("id", "state", "region", "release", "checks", "image"):
        machines.add_column(column, overflow="fold")
    for machine in status.machines:
        checks = ", ".join(f"{name} {state}" for name, state in machine.checks) or "-"
        machines.add_row(
            machine.id, machine.state, machine.region, machine.release_version, checks, machine.image
        )
    console.print(machines)
    if view.health is None:
        console.print(f"health  {view.health_url}  (not checked)", highlight=False)
        return
    health = view.health
    latency = f"{health.latency_ms:.0f} ms" if health.latency_ms is not None else "no answer"
    mark = ("✓", "green") if health.ok else ("✘", "red")
    console.print(Text.assemble("health  ", mark, f" {view.health_url}  {health.detail}  {latency}"))
