"""``aibridge mcp``: an MCP server on stdio that puts an LLM client on the bridge as one agent."""

from __future__ import annotations

from typing import Annotated

import typer

from aibridge.cli._app import app, run_command

DEFAULT_URL = "ws://127.0.0.1:8080/ws"


@app.command(
    help="Serve MCP over stdio as one bridge agent (for Claude Desktop, Claude Code, Cursor, …).",
    epilog="The bridge also serves the same tools over Streamable HTTP at /mcp?agent=NAME.",
)
def mcp(
    agent_id: Annotated[
        str, typer.Option("--id", envvar="AI_BRIDGE_AGENT_ID", help="Our agent id on the bridge.")
    ],
    url: Annotated[str, typer.Option(envvar="AI_BRIDGE_URL", help="Bridge WebSocket URL.")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="AI_BRIDGE_AUTH_TOKEN", help="Bridge token (sent as a Bearer header)."),
    ] = None,
    role: Annotated[str, typer.Option(help="Role shown to the other agents.")] = "agent",
) -> None:
    def call() -> None:
        import asyncio
        import logging
        import sys

        from aibridge.errors import UsageError
        from aibridge.mcp.remote import http_base

        http_base(url)  # a malformed URL is one line now, not a retry loop later
        if not agent_id.strip() or len(agent_id) > 256:
            raise UsageError("--id must be a non-empty agent id of at most 256 characters")
        # stdout is the MCP wire: every log line goes to stderr, which MCP clients show as logs.
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="aibridge mcp: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call is noise
        from aibridge.mcp.stdio import serve_stdio

        asyncio.run(serve_stdio(url, agent_id, token=token, role=role))

    run_command(call)
