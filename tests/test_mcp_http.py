"""``/mcp`` on a real ``aibridge serve``: the SDK's own Streamable HTTP client, both protocol eras."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from aibridge.client import BridgeClient, send_once
from mcp_support import TOOLS, call, health, http_agent, ok, text, wait_for
from support import BridgeProcess, run_bridge

pytestmark = pytest.mark.timeout(180)


async def test_tools_and_resources_are_listed_with_their_schemas(bridge: BridgeProcess) -> None:
    async with http_agent(bridge.url, "alice") as alice:
        assert alice.protocol_version == "2026-07-28"
        tools = {t.name: t for t in (await alice.list_tools()).tools}
        assert set(tools) == TOOLS
        assert tools["broadcast"].input_schema["additionalProperties"] is False
        assert tools["read_messages"].output_schema is not None
        assert "messages" in tools["read_messages"].output_schema["properties"]
        assert (
            tools["list_agents"].annotations is not None and tools["list_agents"].annotations.read_only_hint
        )
        agents = await alice.read_resource("aibridge://agents")
        assert '"you": "alice"' in agents.contents[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("bob_mode", ["auto", "legacy"])
async def test_two_mcp_agents_exchange_a_direct_message_and_a_broadcast(
    bridge: BridgeProcess, bob_mode: str
) -> None:
    """alice speaks 2026-07-28 (no session), bob the handshake era (an Mcp-Session-Id session)."""
    async with (
        http_agent(bridge.url, "alice") as alice,
        http_agent(bridge.url, "bob", mode=bob_mode) as bob,
        BridgeClient(bridge.ws_url, "carol") as carol,
    ):
        ok(await call(bob, "list_agents"))  # bob is an agent from his first call
        listed = {a["id"]: a for a in ok(await call(alice, "list_agents"))["agents"]}
        assert {"alice", "bob", "carol"} <= set(listed) and listed["bob"]["labels"] == ["mcp"]
        sent = ok(await call(alice, "send_message", to="bob", text="hi bob", intent="task.request"))
        assert sent["status"] == "delivered"
        [message] = ok(await call(bob, "read_messages", wait_seconds=5))["messages"]
        assert (message["id"], message["sender"], message["text"], message["intent"]) == (
            sent["id"],
            "alice",
            "hi bob",
            "task.request",
        )
        cast = ok(await call(bob, "broadcast", payload={"done": True}))
        assert cast["recipients"] == 2  # alice and carol
        [seen] = ok(await call(alice, "read_messages", wait_seconds=5))["messages"]
        assert (seen["id"], seen["sender"], seen["payload"]) == (cast["id"], "bob", {"done": True})
        heard = await carol.receive(timeout=10)
        assert heard["id"] == cast["id"]
        await carol.send("alice", {"text": "from a websocket agent"})
        [reply] = ok(await call(alice, "read_messages", wait_seconds=5))["messages"]
        assert (reply["sender"], reply["text"]) == ("carol", "from a websocket agent")


async def test_a_message_kept_while_the_client_was_away_is_acked_only_once_returned(
    bridge: BridgeProcess,
) -> None:
    async with http_agent(bridge.url, "bob") as bob:
        ok(await call(bob, "list_agents"))
    envelope_id = await send_once(bridge.ws_url, "while you were out", to="bob", client_id="alice")
    assert health(bridge.url)["queuedMessages"] == 1  # bob registers with ack: true
    async with http_agent(bridge.url, "bob", mode="legacy") as bob:
        inbox = await bob.read_resource("aibridge://inbox")
        assert "while you were out" in inbox.contents[0].text  # type: ignore[union-attr]
        assert health(bridge.url)["queuedMessages"] == 1  # shown in the inbox is not read
        [message] = ok(await call(bob, "read_messages"))["messages"]
        assert message["id"] == envelope_id
        wait_for(lambda: health(bridge.url)["queuedMessages"] == 0, what="the ack")
        assert ok(await call(bob, "read_messages"))["messages"] == []


async def test_read_messages_returns_as_soon_as_a_message_arrives(bridge: BridgeProcess) -> None:
    loop = asyncio.get_running_loop()
    async with http_agent(bridge.url, "bob") as bob:
        ok(await call(bob, "list_agents"))
        reading = asyncio.create_task(call(bob, "read_messages", wait_seconds=2))
        await asyncio.sleep(0.2)
        await send_once(bridge.ws_url, "ping", to="bob", client_id="alice")
        sent_at = loop.time()
        assert [m["text"] for m in ok(await reading)["messages"]] == ["ping"]
        assert loop.time() - sent_at < 1.5


async def test_inbox_updates_reach_subscribers_in_both_eras(bridge: BridgeProcess) -> None:
    updated: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updated.put_nowait(str(message.params.uri))

    async with http_agent(bridge.url, "bob", mode="legacy", on_message=on_message) as bob:
        with pytest.warns(MCPDeprecationWarning):  # handshake-era clients (most today) still do this
            await bob.subscribe_resource("aibridge://inbox")
        await send_once(bridge.ws_url, "knock", to="bob", client_id="alice")
        assert await asyncio.wait_for(updated.get(), 10) == "aibridge://inbox"

    async with http_agent(bridge.url, "dave") as dave:
        ok(await call(dave, "list_agents"))
        async with dave.listen(resource_subscriptions=["aibridge://inbox"]) as subscription:
            await send_once(bridge.ws_url, "knock", to="dave", client_id="alice")
            event = await asyncio.wait_for(subscription.__aiter__().__anext__(), 10)
            assert getattr(event, "uri", None) == "aibridge://inbox"


async def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_MAX_ENVELOPE_BYTES": "2048", "AI_BRIDGE_AUTH_TOKEN": "right"}
    with run_bridge(tmp_path, env) as b:
        async with http_agent(b.url, "alice", token="right") as alice:
            unknown = await call(alice, "send_message", to="nobody", text="hi")
            assert unknown.is_error and "no agent 'nobody' is connected" in text(unknown)
            big = await call(alice, "broadcast", text="x" * 5000)
            assert big.is_error and "at most 2048 allowed" in text(big), text(big)
            bad = await call(alice, "get_history", limit=0)
            assert bad.is_error and "limit" in text(bad)
            assert ok(await call(alice, "send_message", to="alice", text="fine"))["status"] == "delivered"

        async with http_agent(b.url, None, token="right") as nameless:
            result = await call(nameless, "list_agents")
            assert result.is_error and "?agent=NAME" in text(result)

        wrong = httpx.post(
            f"{b.url}/mcp?agent=mallory",
            headers={"Authorization": "Bearer wrong", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        # The SDK's client turns that 401 into "Server returned an error response" and gives up.
        with pytest.raises(BaseExceptionGroup) as raised:
            async with http_agent(b.url, "mallory", token="wrong") as mallory:
                await call(mallory, "list_agents")
        assert raised.group_contains(MCPError, match="error response")

        async with http_agent(b.url, "alice", token="right") as alice:
            assert "alice" in {a["id"] for a in ok(await call(alice, "list_agents"))["agents"]}


async def test_mcp_is_behind_the_rate_limit(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_RATE_MAX": "3", "AI_BRIDGE_RATE_WINDOW_MS": "60000"}) as b:
        statuses = [
            httpx.post(f"{b.url}/mcp?agent=a", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code
            for _ in range(4)
        ]
        assert statuses[-1] == 429 and 429 not in statuses[:-1], statuses


async def test_an_open_mcp_session_does_not_hold_up_the_drain(tmp_path: Path) -> None:
    """A handshake-era client keeps a GET event stream open; SIGTERM must still drain promptly."""
    took: list[float] = []
    codes: list[int] = []
    with run_bridge(tmp_path, {"AI_BRIDGE_SHUTDOWN_TIMEOUT_S": "20"}) as b:
        # The client's own close (DELETE to a bridge that is gone) fails: that is not under test.
        with contextlib.suppress(BaseExceptionGroup):
            async with http_agent(b.url, "bob", mode="legacy") as bob:
                ok(await call(bob, "list_agents"))
                await asyncio.sleep(0.3)  # the client opens its standalone stream after initialize
                loop = asyncio.get_running_loop()
                started = loop.time()
                b.signal(signal.SIGTERM)
                codes.append(await loop.run_in_executor(None, b.wait, 30))
                took.append(loop.time() - started)
        assert codes == [0] and "drained" in b.log()
        assert took[0] < 5, f"the drain waited {took[0]:.1f}s on the MCP session"
