"""``aibridge mcp`` over stdio: the SDK's own MCP client spawning a real ``aibridge mcp`` against a
real ``aibridge serve``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aibridge.client import BridgeClient, send_once
from mcp_support import (
    TOOLS,
    call,
    child_pids,
    health,
    ok,
    stdio_agent,
    text,
    until_registered,
    wait_for,
)
from support import BridgeProcess, built_app, free_port, run_bridge

pytestmark = pytest.mark.timeout(180)


async def test_tools_are_listed_with_their_schemas(bridge: BridgeProcess) -> None:
    async with stdio_agent(bridge.ws_url, "alice") as alice:
        tools = {t.name: t for t in (await alice.list_tools()).tools}
        assert set(tools) == TOOLS
        send = tools["send_message"]
        assert send.input_schema["required"] == ["to"]
        assert {"to", "text", "payload", "intent", "task_id", "reply_to", "queue_if_offline"} <= set(
            send.input_schema["properties"]
        )
        assert send.input_schema["additionalProperties"] is False
        assert send.output_schema is not None
        assert send.output_schema["properties"]["status"]["enum"] == ["delivered", "queued"]
        read = tools["read_messages"].input_schema["properties"]
        assert read["max"]["default"] == 20 and read["wait_seconds"]["maximum"] == 60
        assert all(t.description and len(t.description) > 30 for t in tools.values())
        resources = {str(r.uri) for r in (await alice.list_resources()).resources}
        assert resources == {"aibridge://agents", "aibridge://inbox"}


async def test_two_mcp_agents_exchange_a_direct_message_and_a_broadcast(bridge: BridgeProcess) -> None:
    listener = BridgeClient(bridge.ws_url, "carol")  # an `aibridge listen`-style agent
    async with (
        stdio_agent(bridge.ws_url, "alice") as alice,
        stdio_agent(bridge.ws_url, "bob") as bob,
        listener,
    ):
        await until_registered(alice, "bob")
        await until_registered(bob, "alice")
        sent = ok(await call(alice, "send_message", to="bob", text="hello bob", task_id="t-1"))
        assert sent["status"] == "delivered" and sent["to"] == "bob"
        got = ok(await call(bob, "read_messages", wait_seconds=5))
        [message] = got["messages"]
        assert message["id"] == sent["id"]
        assert (message["sender"], message["to"], message["text"], message["task_id"]) == (
            "alice",
            "bob",
            "hello bob",
            "t-1",
        )
        cast = ok(await call(bob, "broadcast", payload={"kind": "status", "ok": True}, intent="status"))
        got = ok(await call(alice, "read_messages", wait_seconds=5))
        assert [(m["id"], m["sender"], m["to"], m["payload"]) for m in got["messages"]] == [
            (cast["id"], "bob", None, {"kind": "status", "ok": True})
        ]
        heard = await listener.receive(timeout=10)
        assert (heard["id"], heard["from"], heard["intent"]) == (cast["id"], "bob", "status")
        # Each message is handed out once: nothing is left to read.
        assert ok(await call(alice, "read_messages"))["messages"] == []
        tasks = ok(await call(alice, "list_tasks"))["tasks"]
        assert any(t.get("taskId") == "t-1" or t.get("id") == "t-1" for t in tasks), tasks
        history = ok(await call(alice, "get_history", task_id="t-1"))["messages"]
        assert [m["id"] for m in history] == [sent["id"]]


def _kill_stdio_server(agent: str) -> None:
    pids = child_pids(f"--id {agent}")
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)


async def test_a_message_sent_while_the_mcp_process_was_down_is_read_after_restart(
    bridge: BridgeProcess,
) -> None:
    async with stdio_agent(bridge.ws_url, "bob") as bob:
        await until_registered(bob, "bob")
    envelope_id = await send_once(bridge.ws_url, "while you were out", to="bob", client_id="alice")
    assert health(bridge.url)["queuedMessages"] == 1

    # Restarted, bob's MCP server gets the envelope replayed, but has not returned it to the LLM:
    # it stays queued on the bridge. Killed now, nothing is lost.
    with contextlib.suppress(Exception, BaseExceptionGroup):
        async with stdio_agent(bridge.ws_url, "bob") as bob:
            await until_registered(bob, "bob")
            inbox = await bob.read_resource("aibridge://inbox")
            assert "while you were out" in inbox.contents[0].text  # type: ignore[union-attr]
            _kill_stdio_server("bob")
            await asyncio.sleep(0.5)
    assert health(bridge.url)["queuedMessages"] == 1

    async with stdio_agent(bridge.ws_url, "bob") as bob:
        await until_registered(bob, "bob")
        assert health(bridge.url)["queuedMessages"] == 1
        got = ok(await call(bob, "read_messages", wait_seconds=5))
        assert [(m["id"], m["text"]) for m in got["messages"]] == [(envelope_id, "while you were out")]
        # Returned to the client: now it is acked, and the bridge's queue is empty.
        wait_for(lambda: health(bridge.url)["queuedMessages"] == 0, what="the ack")


async def test_read_messages_waits_and_returns_as_soon_as_a_message_arrives(bridge: BridgeProcess) -> None:
    async with stdio_agent(bridge.ws_url, "bob") as bob:
        await until_registered(bob, "bob")
        started = time.monotonic()
        assert ok(await call(bob, "read_messages", wait_seconds=0.5))["messages"] == []
        assert time.monotonic() - started >= 0.5

        reading = asyncio.create_task(call(bob, "read_messages", wait_seconds=2))
        await asyncio.sleep(0.2)
        await send_once(bridge.ws_url, "ping", to="bob", client_id="alice")
        sent_at = time.monotonic()
        got = ok(await reading)
        assert [m["text"] for m in got["messages"]] == ["ping"]
        assert time.monotonic() - sent_at < 1.5  # not the full wait


async def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_MAX_ENVELOPE_BYTES": "2048", "AI_BRIDGE_AUTH_TOKEN": "right"}) as b:
        async with stdio_agent(b.ws_url, "alice", token="right") as alice:
            await until_registered(alice, "alice")
            unknown = await call(alice, "send_message", to="nobody", text="hi")
            assert unknown.is_error
            assert "no agent 'nobody' is connected" in text(unknown) and "queue_if_offline" in text(unknown)
            # Over the limit: the bridge answers an error frame; far over, it closes the socket (1009).
            big = await call(alice, "broadcast", text="x" * 2500)
            assert big.is_error and "at most 2048 allowed" in text(big), text(big)
            huge = await call(alice, "send_message", to="alice", text="x" * 50_000)
            assert huge.is_error and "larger than the bridge accepts" in text(huge), text(huge)
            await until_registered(alice, "alice")  # reconnected by itself
            both = await call(alice, "send_message", to="alice", text="a", payload={"b": 1})
            assert both.is_error and "exactly one of `text`" in text(both)
            wrong_type = await call(alice, "read_messages", max="lots")
            assert wrong_type.is_error and "max" in text(wrong_type)
            assert (
                ok(await call(alice, "send_message", to="alice", text="still here"))["status"] == "delivered"
            )

        async with stdio_agent(b.ws_url, "mallory", token="wrong") as mallory:
            refused = await call(mallory, "broadcast", text="hi")
            deadline = time.monotonic() + 20
            while "connecting" in text(refused) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                refused = await call(mallory, "broadcast", text="hi")
            assert refused.is_error and "the bridge refused the token" in text(refused), text(refused)
            listed = await call(mallory, "list_agents")
            assert listed.is_error and "refused the token" in text(listed)
            assert {t.name for t in (await mallory.list_tools()).tools} == TOOLS

    down = f"ws://127.0.0.1:{free_port()}/ws"
    async with stdio_agent(down, "alice") as alice:
        result = await call(alice, "send_message", to="bob", text="hi")
        assert result.is_error and "not connected to the bridge" in text(result), text(result)
        assert "Nothing was sent" in text(result)
        result = await call(alice, "get_history")
        assert result.is_error and "failed" in text(result)
        assert ok(await call(alice, "read_messages"))["messages"] == []


def test_a_malformed_url_is_one_line_and_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aibridge", "mcp", "--id", "a", "--url", "http://x/ws"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    assert "is not a WebSocket URL" in out.stderr and "Traceback" not in out.stderr


def test_help_and_validate_do_not_import_the_mcp_sdk(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom aibridge.cli import main\nsys.argv = ['aibridge', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('SDK', sorted(m for m in ('mcp', 'mcp_types', 'starlette', 'httpx2') if m in sys.modules))"
    )
    (tmp_path / "fly.toml").write_text('app = "demo"\nprimary_region = "ams"\n')
    for argv in (["--help"], ["validate", str(tmp_path)], ["mcp", "--help"]):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
        assert "SDK []" in out.stdout, (argv, out.stdout, out.stderr)


def test_the_bridge_app_does_not_import_the_mcp_sdk() -> None:
    loaded = set(built_app()["modules"])
    assert not loaded & {"mcp", "mcp_types", "httpx2", "sse_starlette"}


async def test_inbox_updates_reach_a_listening_stdio_client(bridge: BridgeProcess) -> None:
    async with stdio_agent(bridge.ws_url, "bob") as bob:
        await until_registered(bob, "bob")
        async with bob.listen(resource_subscriptions=["aibridge://inbox"]) as subscription:
            await send_once(bridge.ws_url, "knock", to="bob", client_id="alice")
            event = await asyncio.wait_for(subscription.__aiter__().__anext__(), 10)
            assert getattr(event, "uri", None) == "aibridge://inbox"
        [message] = ok(await call(bob, "read_messages"))["messages"]
        assert message["text"] == "knock"
