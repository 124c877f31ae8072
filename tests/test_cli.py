"""The CLI boundary: errors become one plain line and an exit code, whatever they quote."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aibridge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "NO_COLOR": "1", "COLUMNS": "200"},
        timeout=60,
    )


def test_error_details_are_printed_verbatim_not_as_markup() -> None:
    # "[/x]" is a closing Rich tag with no opening one: read as markup it raised MarkupError.
    result = run_cli("serve", env={"AI_BRIDGE_MAX_QUEUE": "[/x][[vm]]"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "AI_BRIDGE_MAX_QUEUE: expected an integer >= 1 and <= 1000000, got '[/x][[vm]]'" in result.stderr


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in (
        "serve",
        "send",
        "listen",
        "init",
        "validate",
        "deploy",
        "rollback",
        "status",
        "loadtest",
        "check-kpis",
    ):
        assert f" {command} " in result.stdout, command
