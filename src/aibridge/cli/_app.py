"""The Typer application and the one place where errors become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from aibridge.errors import AibridgeError

__all__ = ("app", "console", "err_console", "exit_with", "run_command")

T = TypeVar("T")

app = typer.Typer(
    name="aibridge",
    help="Run an LLM agent bridge on Fly.io, and deploy, load-test and judge any Fly app.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)


def exit_with(error: AibridgeError) -> NoReturn:
    """Print one clear line for ``error`` and exit with its code (never a traceback)."""
    # Details quote user input and TOML paths like [[vm]]: never read them as Rich markup.
    err_console.print(f"[bold red]error:[/] {escape(error.detail)}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


def run_command(call: Callable[[], T]) -> T:
    """Run a command body, turning aibridge errors and Ctrl-C into messages and exit codes."""
    try:
        return call()
    except AibridgeError as error:
        exit_with(error)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
