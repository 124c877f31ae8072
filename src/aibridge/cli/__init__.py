"""The ``aibridge`` command line: thin commands that parse options and call one library function.

Each command family lives in its own module; heavy libraries (Litestar, uvicorn, aiohttp, the
parsers) are imported inside command bodies so that ``aibridge --help`` stays fast.
"""

from __future__ import annotations

# Importing a command module registers its commands on the app.
from aibridge.cli import agent, deploy, fly, kpis, loadtest, mcp, monitoring, serve  # noqa: F401
from aibridge.cli._app import app

__all__ = ("app", "main")


def main() -> None:
    """Console-script entry point."""
    app()
