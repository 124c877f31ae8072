"""Issue 11 item 6: at ``AI_BRIDGE_LOG_LEVEL=debug`` the real server's output never shows the token
or a payload, through any logger (ours, uvicorn's, the websockets library's).

Traffic carries a known token everywhere a client can put it (``?token=``, ``Authorization``,
``register.authToken``, a wrong token) and a known payload in HTTP bodies and WebSocket frames;
then the whole output is grepped. The same traffic proves the debug output is really on (the
websockets library's lines appear) and that every acknowledged envelope was delivered.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from support import BridgeProcess, run_bridge

TOKEN = "tok-redact-3f9a1c77"
WRONG = "wrong-token-8d2e55"
CANARY = "PAYLOAD-CANARY-b41d"


async def recv(ws: websockets.ClientConnection) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(frame, dict)
    return frame


async def traffic(bridge: BridgeProcess) -> list[str]:
    """Every way a token and a payload reach the bridge; the ids of the envelopes it accepted."""
    accepted: list[str] = []
    receiver = await websockets.connect(f"{bridge.ws_url}?token={TOKEN}", compression=None)
    await receiver.send(json.dumps({"type": "register", "clientId": "receiver"}))
    assert (await recv(receiver))["type"] == "registered"
    sender = await websockets.connect(
        bridge.ws_url, compression=None, additional_headers={"Authorization": f"Bearer {TOKEN}"}
    )
    await sender.send(json.dumps({"type": "register", "clientId": "sender", "confirm": True}))
    assert (await recv(sender))["type"] == "registered"
    await sender.send(json.dumps({"type": "envelope", "envelope": {"to": "receiver", "payload": CANARY}}))
    frame = await recv(sender)
    assert frame["type"] == "accepted"
    accepted.append(frame["id"])
    # Token in the first frame, and a binary frame (read as UTF-8 JSON).
    late = await websockets.connect(bridge.ws_url, compression=None)
    await late.send(json.dumps({"type": "register", "clientId": "late", "authToken": TOKEN}).encode())
    assert (await recv(late))["type"] == "registered"
    # Wrong tokens: at the handshake and in register.
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"{bridge.ws_url}?token={WRONG}", compression=None)
    wrong = await websockets.connect(bridge.ws_url, compression=None)
    await wrong.send(json.dumps({"type": "register", "clientId": "x", "authToken": WRONG}))
    assert (await recv(wrong))["error"] == "unauthorized"
    async with httpx.AsyncClient(base_url=bridge.url) as http:
        sent = await http.post(
            "/send",
            json={"to": "receiver", "payload": {"text": CANARY}},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert sent.status_code == 202
        accepted.append(sent.json()["envelope"]["id"])
        assert (
            await http.get(f"/agents?token={TOKEN}", headers={"Authorization": f"Bearer {WRONG}"})
        ).status_code == 401
        # A malformed frame with the payload in it: the error path must not quote it either.
        await sender.send('{"type": "envelope", "envelope": {"payload": "' + CANARY + '"')
        assert (await recv(sender))["type"] == "error"
    delivered = [(await recv(receiver))["envelope"]["id"] for _ in accepted]
    assert delivered == accepted
    for ws in (receiver, sender, late, wrong):
        await ws.close()
    return accepted


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_debug_output_has_no_token_and_no_payload(tmp_path: Path, log_format: str) -> None:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_LOG_LEVEL": "debug", "AI_BRIDGE_LOG_FORMAT": log_format}
    with run_bridge(tmp_path, env) as bridge:
        accepted = asyncio.run(traffic(bridge))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        history = httpx.get(f"{bridge.url}/history", headers=auth).json()["history"]
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(20) == 0
        log = bridge.log()
    assert {e["id"] for e in history} >= set(accepted)  # nothing acknowledged was lost
    assert "DEBUG" in log or '"level":"debug"' in log  # debug output really was on
    assert "WebSocket" in log or "ws_connect" in log
    for secret in (TOKEN, WRONG, CANARY):
        assert secret not in log, [line for line in log.splitlines() if secret in line][:3]
    assert "***" in log  # the startup line's auth_token=***, at least
