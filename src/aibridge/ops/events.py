"""What the deploy, rollback and status pipelines report while they run.

The pipelines are library code and print nothing; the CLI passes an :class:`OpsEvents` that
renders with Rich (a spinner during health checks), and tests pass one that records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aibridge.ops.health import HealthAttempt, HealthResult

__all__ = ("NullEvents", "OpsEvents")


class OpsEvents(Protocol):
    def step(self, name: str, message: str) -> None:
        """A pipeline step starts (or, in a dry run, would start)."""

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """flyctl is about to run ``argv`` with ``env`` added (in a dry run: would run)."""

    def output(self, line: str, stream: str) -> None:
        """One line flyctl printed, as it arrives."""

    def health_started(self, url: str) -> None: ...

    def health_attempt(self, attempt: HealthAttempt) -> None: ...

    def health_finished(self, result: HealthResult) -> None: ...


class NullEvents:
    """Reports nothing."""

    def step(self, name: str, message: str) -> None:
        pass

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        pass

    def output(self, line: str, stream: str) -> None:
        pass

    def health_started(self, url: str) -> None:
        pass

    def health_attempt(self, attempt: HealthAttempt) -> None:
        pass

    def health_finished(self, result: HealthResult) -> None:
        pass
