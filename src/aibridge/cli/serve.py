"""``aibridge serve``: run the bridge server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from aibridge.cli._app import app, run_command
from aibridge.server.config import BridgeConfig, settings_help
from aibridge.server.envfile import environment_with_file


@app.command(
    help="Run the bridge server (HTTP API + WebSocket on one port, metrics on another).",
    epilog="Environment variables (also read from ./.env; real environment variables win):\n\n"
    + settings_help(),
)
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (env AI_BRIDGE_HOST, default :: (dual-stack)).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port for HTTP and WebSocket (env PORT, default 8080).")
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read settings from this file instead of ./.env (real environment variables win).",
        ),
    ] = None,
    no_env_file: Annotated[bool, typer.Option("--no-env-file", help="Do not read ./.env.")] = False,
) -> None:
    def call() -> None:
        environ, source = environment_with_file(
            os.environ, str(env_file) if env_file is not None else None, read_file=not no_env_file
        )
        config = BridgeConfig.from_env(environ, host=host, port=port, env_file=source)
        from aibridge.server.runner import serve as run_server

        run_server(config)

    run_command(call)
