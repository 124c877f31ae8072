"""The README's worked example, for real: two MCP agents (one stdio, one Streamable HTTP) and one
``aibridge listen`` agent on one bridge."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from mcp_support import call, http_agent, ok, stdio_agent, until_registered
from support import BridgeProcess

pytestmark = pytest.mark.timeout(180)


async def test_planner_coder_and_logger(bridge: BridgeProcess) -> None:
    logger = subprocess.Popen(
        [sys.executable, "-m", "aibridge", "listen", "--id", "logger", "--ack", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"AI_BRIDGE_URL": bridge.ws_url, "PATH": "/usr/bin:/bin"},
    )
    try:
        async with stdio_agent(bridge.ws_url, "planner") as planner, http_agent(bridge.url, "coder") as coder:
            await coder.list_tools()  # what Claude Code and Cursor do on connect: coder is an agent now
            await until_registered(planner, "logger")
            await until_registered(planner, "coder")
            task = ok(
                await call(
                    planner, "send_message", to="coder", text="write fizzbuzz in Rust", task_id="fizz-1"
                )
            )
            assert task["status"] == "delivered"
            waiting = asyncio.create_task(call(planner, "read_messages", wait_seconds=30))

            [job] = ok(await call(coder, "read_messages", wait_seconds=10))["messages"]
            assert (job["sender"], job["task_id"], job["text"]) == (
                "planner",
                "fizz-1",
                "write fizzbuzz in Rust",
            )
            answer = "fn main() { /* fizzbuzz */ }"
            reply = ok(
                await call(
                    coder,
                    "send_message",
                    to=job["sender"],
                    text=answer,
                    task_id="fizz-1",
                    intent="task.result",
                )
            )
            done = ok(await call(coder, "broadcast", text="fizz-1 done", task_id="fizz-1"))

            got = ok(await waiting)["messages"]
            assert [(m["id"], m["intent"], m["text"]) for m in got] == [(reply["id"], "task.result", answer)]
            history = ok(await call(planner, "get_history", task_id="fizz-1"))["messages"]
            assert [m["id"] for m in history] == [task["id"], reply["id"], done["id"]]

        out, err = logger.communicate(timeout=30)
        assert logger.returncode == 0, err
        [line] = out.decode().splitlines()
        printed = json.loads(line)
        assert (printed["id"], printed["from"], printed["payload"]) == (
            done["id"],
            "coder",
            {"text": "fizz-1 done"},
        )
    finally:
        if logger.poll() is None:
            logger.kill()
            logger.wait(timeout=10)
