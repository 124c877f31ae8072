"""The one exception hierarchy of aibridge.

Library code raises these; only the CLI turns them into messages and exit codes.

    AibridgeError                 root; carries ``detail`` and the CLI ``exit_code``
    ├── ConfigError               a setting (environment variable or option) is malformed
    ├── UsageError                a command was called with arguments that cannot work
    ├── FileReadError             an input file cannot be read
    ├── TargetUnreachableError    a URL the command must talk to does not answer
    ├── FlyctlError               flyctl is missing, not logged in, or failed
    └── StoreError                the message store cannot be opened or reached
"""

from __future__ import annotations

__all__ = (
    "AibridgeError",
    "ConfigError",
    "FileReadError",
    "FlyctlError",
    "StoreError",
    "TargetUnreachableError",
    "UsageError",
)


class AibridgeError(Exception):
    """Root of every error aibridge raises on purpose."""

    exit_code: int = 1
    """The process exit code the CLI uses when this error ends a command."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(AibridgeError):
    """A setting is malformed; ``detail`` names the variable and what it expects."""

    exit_code = 2


class UsageError(AibridgeError):
    """A command was given arguments that cannot work together."""

    exit_code = 2


class FileReadError(AibridgeError):
    """An input file is missing or unreadable."""

    exit_code = 2


class TargetUnreachableError(AibridgeError):
    """The URL a command must talk to does not answer."""

    exit_code = 2


class FlyctlError(AibridgeError):
    """flyctl is missing, not logged in, or returned an error."""

    exit_code = 2


class StoreError(AibridgeError):
    """The message store (SQLite file or Redis) cannot be opened or reached."""

    exit_code = 2
