"""Issue 11 item 4: sockets without a token cannot hold the bridge's connection slots.

Against a real ``aibridge serve`` with a token and ``AI_BRIDGE_MAX_CONNECTIONS=50``: sockets that
never authenticate (and only send heartbeats) get at most a tenth of the slots, are closed with
1008 after ``AI_BRIDGE_AUTH_TIMEOUT_MS`` whatever they send, and meanwhile a real agent and the
HTTP API are served; a client opening handshakes too fast gets 429. What a real agent had
acknowledged as accepted is delivered and kept in the history throughout.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import BridgeProcess, run_bridge

TOKEN = "unauth-test-token-5c1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAP = 50
AUTH_TIMEOUT_S = 2.0


async def connect(url: str, **kwargs: Any) -> websockets.ClientConnection:
    return await websockets.connect(url, compression=None, open_timeout=10, **kwargs)


async def recv(ws: websockets.ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def heartbeat_until_closed(
    ws: websockets.ClientConnection, deadline: float
) -> tuple[int | None, float]:
    """Send heartbeats every 100 ms; return (close code, seconds after start) when the bridge closes."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            await ws.send(json.dumps({"type": "heartbeat"}))
            await asyncio.wait_for(ws.recv(), 0.1)  # the 1008's error frame, then the close
        except TimeoutError:
            continue
        except ConnectionClosed:
            break
    await asyncio.wait_for(ws.wait_closed(), 5)
    return ws.close_code, time.monotonic() - start


@pytest.fixture
def secured(tmp_path: Path) -> Any:
    env = {
        "AI_BRIDGE_AUTH_TOKEN": TOKEN,
        "AI_BRIDGE_MAX_CONNECTIONS": str(CAP),
        "AI_BRIDGE_AUTH_TIMEOUT_MS": str(int(AUTH_TIMEOUT_S * 1000)),
        "AI_BRIDGE_RATE_MAX": "0",
    }
    with run_bridge(tmp_path, env) as bridge:
        yield bridge


async def test_unauthenticated_sockets_get_a_tenth_of_the_slots_and_1008_after_the_timeout(
    secured: BridgeProcess,
) -> None:
    # An attacker opens as many token-less sockets as it can (the cap, 50).
    held: list[websockets.ClientConnection] = []
    refusals: list[int] = []
    for _ in range(CAP):
        try:
            held.append(await connect(secured.ws_url))
        except InvalidStatus as refused:
            refusals.append(refused.response.status_code)
            body = json.loads(refused.response.body or b"{}")
            assert body["status"] == 503 and "authenticate" in body["error"]
            assert refused.response.headers["Retry-After"] == "1"
    assert len(held) == CAP // 10
    assert refusals == [503] * (CAP - CAP // 10)

    # While they are held, a real agent registers, sends with confirm, and the API answers.
    receiver = await connect(f"{secured.ws_url}?token={TOKEN}")
    await receiver.send(json.dumps({"type": "register", "clientId": "receiver"}))
    assert (await recv(receiver))["type"] == "registered"
    sender = await connect(secured.ws_url, additional_headers=AUTH)
    await sender.send(json.dumps({"type": "register", "clientId": "sender", "confirm": True}))
    assert (await recv(sender))["type"] == "registered"
    accepted_ids = []
    for i in range(5):
        envelope_id = f"held-{i}-{uuid.uuid4().hex[:6]}"
        await sender.send(json.dumps({"type": "envelope", "envelope": {"id": envelope_id, "to": "receiver"}}))
        frame = await recv(sender)
        assert frame["type"] == "accepted" and frame["id"] == envelope_id
        accepted_ids.append(envelope_id)
    received = [(await recv(receiver))["envelope"]["id"] for _ in accepted_ids]
    assert received == accepted_ids
    async with httpx.AsyncClient(base_url=secured.url) as http:
        agents = await http.get("/agents", headers=AUTH)
        assert agents.status_code == 200
        assert {a["id"] for a in agents.json()["agents"]} >= {"receiver", "sender"}

    # Heartbeats do not keep the unauthenticated sockets: each is closed with 1008 once its
    # AI_BRIDGE_AUTH_TIMEOUT_MS has passed since its handshake, not earlier.
    deadline = time.monotonic() + AUTH_TIMEOUT_S + 15
    results = await asyncio.gather(*(heartbeat_until_closed(ws, deadline) for ws in held))
    assert [code for code, _ in results] == [1008] * len(held)
    # Opened before the agent work above, so all of them had at least that long, at most
    # the timeout plus scheduling slack on a loaded machine.
    assert all(seconds <= AUTH_TIMEOUT_S + 10 for _, seconds in results)

    # Their slots are free again: a new token-less socket is accepted (and can authenticate).
    late = await connect(secured.ws_url)
    await late.send(json.dumps({"type": "register", "clientId": "late", "authToken": TOKEN}))
    assert (await recv(late))["type"] == "registered"
    # Authenticated now, it outlives the auth timeout.
    await asyncio.sleep(0)
    start = time.monotonic()
    while time.monotonic() - start < AUTH_TIMEOUT_S + 0.5:
        await late.send(json.dumps({"type": "heartbeat"}))
        await asyncio.sleep(0.2)
    assert late.close_code is None

    # Nothing that was accepted is lost: all of it is in the history.
    async with httpx.AsyncClient(base_url=secured.url) as http:
        history = (await http.get("/history", params={"agentId": "receiver"}, headers=AUTH)).json()["history"]
    assert [e["id"] for e in history if e["id"] in accepted_ids] == accepted_ids
    for ws in (receiver, sender, late):
        await ws.close()


async def test_a_socket_that_never_authenticates_is_closed_1008_even_alone(secured: BridgeProcess) -> None:
    ws = await connect(secured.ws_url)
    opened = time.monotonic()
    code, _ = await heartbeat_until_closed(ws, time.monotonic() + AUTH_TIMEOUT_S + 15)
    lived = time.monotonic() - opened
    assert code == 1008
    assert lived >= AUTH_TIMEOUT_S - 0.2  # heartbeats were not mistaken for authentication
    assert ws.close_reason == "authentication timeout"


async def test_handshakes_beyond_the_per_client_rate_get_429(tmp_path: Path) -> None:
    env = {
        "AI_BRIDGE_HANDSHAKE_RATE_MAX": "5",
        "AI_BRIDGE_RATE_WINDOW_MS": "60000",
        "AI_BRIDGE_RATE_MAX": "0",
    }
    with run_bridge(tmp_path, env) as bridge:
        opened = []
        for _ in range(5):
            opened.append(await connect(bridge.ws_url))
        # A forged Fly-Client-IP is no new identity: the header is not trusted off Fly.
        for headers in ({}, {"Fly-Client-IP": "198.51.100.99"}):
            with pytest.raises(InvalidStatus) as refused:
                await connect(bridge.ws_url, additional_headers=headers)
            response = refused.value.response
            assert response.status_code == 429
            assert json.loads(response.body or b"{}")["status"] == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        # The sockets already open are not affected.
        await opened[0].send(json.dumps({"type": "register", "clientId": "early"}))
        assert (await recv(opened[0]))["type"] == "registered"
        assert httpx.get(f"{bridge.url}/health").status_code == 200
        for ws in opened:
            await ws.close()


async def test_binary_frames_are_read_as_utf8_json(secured: BridgeProcess) -> None:
    ws = await connect(secured.ws_url)
    await ws.send(b"\xff\xfe not utf-8")
    assert (await recv(ws))["error"] == "invalid_json"
    await ws.send(json.dumps({"type": "register", "clientId": "binary", "authToken": TOKEN}).encode())
    assert (await recv(ws))["type"] == "registered"
    await ws.close()
