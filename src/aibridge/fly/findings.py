"""What ``aibridge validate`` reports: findings with a rule code, severity, position and fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ("Finding", "Report", "Severity")


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in one file, at a 1-based line and column (0 when the whole file is meant)."""

    code: str
    """Stable rule code, e.g. ``FLY101``; documented in README and never reused."""
    severity: Severity
    file: str
    line: int
    column: int
    message: str
    """One line saying what is wrong."""
    fix: str
    """One line saying how to fix it."""


@dataclass(slots=True)
class Report:
    """All findings of one validation run, in file then line order."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """Files that were read."""
    notes: list[str] = field(default_factory=list)
    """What was not checked, and why (e.g. the cross-file rules without a fly.toml)."""

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    def failed(self, *, strict: bool = False) -> bool:
        """True when the run should exit 1: errors, or warnings too with ``strict``."""
        return self.errors > 0 or (strict and self.warnings > 0)
