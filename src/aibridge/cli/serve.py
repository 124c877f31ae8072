"""``aibridge serve``: run the bridge server."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from aibridge.cli._app import app, run_command
from aibridge.server.config import BridgeConfig, settings_help


@app.command(
    help="Run the bridge server (HTTP API + WebSocket on one port, metrics on another).",
    epilog="Environment variables:\n\n" + settings_help(),
)
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [env AI_BRIDGE_HOST, default :: (dual-stack)].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port for HTTP and WebSocket [env PORT, default 8080].")
    ] = None,
) -> None:
    def call() -> None:
        config = BridgeConfig.from_env(os.environ, host=host, port=port)
        from aibridge.server.runner import serve as run_server

        run_server(config)

    run_command(call)
