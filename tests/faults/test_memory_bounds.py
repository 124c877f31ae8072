"""Item 5 of issue 11: what one agent or one queued envelope can make the server hold is bounded.

Before: 40 agents registering 246 KB of tiny-key tools took RSS from 60 to 251 MB (4.7 MB
each), and 30 envelopes of that shape in the memory store added 125 MB, because both were
held as Python objects. Now registrations are capped at AI_BRIDGE_MAX_META_BYTES of JSON and
both are held as JSON bytes; RSS growth is measured on the real server process.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import websockets

from faults.faultkit import drain_queue, fat_tools, json_size, recv, register, settled_rss
from support import BridgeProcess, run_bridge

META_CAP = 16 * 1024
"""AI_BRIDGE_MAX_META_BYTES's default."""
AGENTS = 40
PER_FAT_AGENT = 128 * 1024
"""Stated bound: RSS per agent registered with tools just under the cap (8 x the cap; measured
about 84 KiB, a bare connection about 22 KiB; as decoded objects it was about 10 x the JSON)."""
ENVELOPES = 30
ENVELOPE_OVERHEAD = 1.25
"""Stated bound: RSS per queued envelope (memory store) at most 1.25 x its JSON bytes + 16 KiB."""


def issue_tools() -> list[dict[str, int]]:
    """The registration of the issue: 64 tools, each an object of 420 tiny keys (about 246 KB)."""
    return [{f"k{k}": 0 for k in range(420)} for _ in range(64)]


async def test_registration_metadata_is_capped_in_bytes(bridge: BridgeProcess) -> None:
    ws = await websockets.connect(bridge.ws_url, compression=None, max_size=None)
    frame = json.dumps({"type": "register", "clientId": "fat", "tools": issue_tools()}, separators=(",", ":"))
    assert 230_000 < len(frame) < 256 * 1024  # fits the frame cap, as in the issue
    await ws.send(frame)
    error = await recv(ws)
    assert error["type"] == "error" and error["error"] == "invalid_field", error
    assert error["field"] == "tools" and error["limit"] == META_CAP, error
    assert "AI_BRIDGE_MAX_META_BYTES" in error["message"], error
    tools = fat_tools(META_CAP - 64)  # labels and intents are empty lists: 4 bytes
    await ws.send(json.dumps({"type": "register", "clientId": "fat", "tools": tools}))
    assert (await recv(ws))["type"] == "registered"
    agents = httpx.get(f"{bridge.url}/agents").json()["agents"]
    assert [a["tools"] for a in agents if a["id"] == "fat"] == [tools]  # served as sent
    await ws.close()


async def test_rss_growth_per_fat_agent_is_bounded(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_RATE_MAX": "0"}) as bridge:
        pid = bridge.process.pid
        tools = fat_tools(META_CAP - 64)
        sockets = [await register(bridge.ws_url, f"warm-{i}", tools=tools) for i in range(5)]
        before = settled_rss(pid)
        sockets += [await register(bridge.ws_url, f"fat-{i}", tools=tools) for i in range(AGENTS)]
        grown = (settled_rss(pid) - before) / AGENTS
        listed = httpx.get(f"{bridge.url}/agents").json()["agents"]
        assert len(listed) == AGENTS + 5
        for ws in sockets:
            await ws.close()
    print(f"RSS per agent with {json_size(tools)} bytes of tools: {grown / 1024:.1f} KiB")
    assert grown <= PER_FAT_AGENT, f"{grown / 1024:.1f} KiB per agent, bound {PER_FAT_AGENT / 1024:.0f} KiB"


async def test_memory_store_holds_queued_envelopes_as_bytes(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_STORE": "memory", "AI_BRIDGE_RATE_MAX": "0"}
    payload = {"tools": fat_tools(240 * 1024)}  # the issue's shape, under AI_BRIDGE_MAX_ENVELOPE_BYTES
    with run_bridge(tmp_path, env) as bridge, httpx.Client(base_url=bridge.url, timeout=30) as client:
        pid = bridge.process.pid

        def send(envelope_id: str) -> int:
            reply = client.post("/send", json={"id": envelope_id, "to": "away", "payload": payload})
            assert reply.status_code == 202, reply.text
            return len(json.dumps(reply.json()["envelope"], separators=(",", ":")))

        for i in range(3):  # warm up: the first large bodies grow buffers once
            send(f"warm-{i}")
        before = settled_rss(pid)
        size = max(send(f"e-{i}") for i in range(ENVELOPES))
        grown = (settled_rss(pid) - before) / ENVELOPES
        stats = client.get("/api/status").json()["storage"]
        assert stats["queuedBytes"] >= (ENVELOPES + 3) * size * 0.99
        expected = [f"warm-{i}" for i in range(3)] + [f"e-{i}" for i in range(ENVELOPES)]
        assert await drain_queue(bridge.ws_url, "away", expected=len(expected)) == expected
    print(f"RSS per queued envelope of {size} JSON bytes: {grown / 1024:.1f} KiB")
    bound = ENVELOPE_OVERHEAD * size + 16 * 1024
    assert grown <= bound, f"{grown / 1024:.1f} KiB per envelope, bound {bound / 1024:.0f} KiB"
