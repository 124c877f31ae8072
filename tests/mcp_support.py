"""Helpers for the MCP tests: the SDK's own client on stdio (a real ``aibridge mcp``) and on
Streamable HTTP (``/mcp`` of a real ``aibridge serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult

TOOLS = {"send_message", "broadcast", "read_messages", "list_agents", "get_history", "list_tasks"}


def stdio_params(url: str, agent: str, token: str | None = None) -> StdioServerParameters:
    args = [sys.executable, "-m", "aibridge", "mcp", "--url", url, "--id", agent]
    if token is not None:
        args += ["--token", token]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_")}
    return StdioServerParameters(command=args[0], args=args[1:], env=env)


@contextlib.asynccontextmanager
async def stdio_agent(url: str, agent: str, token: str | None = None) -> AsyncIterator[Client]:
    """A real ``aibridge mcp`` subprocess driven by the SDK's stdio client."""
    async with Client(stdio_params(url, agent, token)) as client:
        yield client


@contextlib.asynccontextmanager
async def http_agent(
    base: str, agent: str | None, token: str | None = None, mode: str = "auto", on_message: Any = None
) -> AsyncIterator[Client]:
    """The SDK's Streamable HTTP client on ``/mcp`` of a real bridge, as ``agent``."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    url = f"{base}/mcp" + (f"?agent={agent}" if agent else "")
    http = create_mcp_http_client(headers=headers)
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode, message_handler=on_message) as client:
        yield client


async def call(client: Client, tool: str, **args: Any) -> CallToolResult:
    return await client.call_tool(tool, args)


def text(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a call that must have succeeded."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    assert json.loads(text(result)) == result.structured_content
    return dict(result.structured_content)


async def until_registered(client: Client, agent: str, timeout: float = 20.0) -> None:
    """Poll list_agents until ``agent`` is on the bridge (the stdio agent registers in the background)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = await call(client, "list_agents")
        if not result.is_error and agent in {a["id"] for a in ok(result)["agents"]}:
            return
        last = text(result)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{agent} did not register within {timeout}s: {last}")


def health(base: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base}/health", timeout=5).json())


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout}s")


async def await_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def child_pids(marker: str) -> list[int]:
    """Our child processes whose command line contains ``marker`` (to SIGKILL a stdio server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and marker in cmdline:
            found.append(int(entry.name))
    return found
