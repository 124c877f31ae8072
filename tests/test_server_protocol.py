"""The agent protocol against a real ``aibridge serve``: framing, errors, auth, identity, caps.

Each ``test_b<N>_…`` is a regression test for fault B<N> of the older Node bridge
(reference/bridge.md §10) and fails on its behaviour.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import BridgeProcess, run_bridge

TOKEN = "s3cret-token"


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def shared(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[BridgeProcess]:
    """A bridge per store for the tests that use fresh agent ids and cannot disturb each other."""
    with run_bridge(tmp_path_factory.mktemp("bridge"), {"AI_BRIDGE_STORE": request.param}) as process:
        yield process


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_CORS_ORIGINS": "https://app.example"}
    with run_bridge(tmp_path_factory.mktemp("secured"), env) as process:
        yield process


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def recv(ws: websockets.ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def connect(url: str, **kwargs: Any) -> websockets.ClientConnection:
    return await websockets.connect(url, compression=None, open_timeout=5, **kwargs)


async def agent(
    url: str, client_id: str, **register: Any
) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    ws = await connect(url)
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **register}))
    registered = await recv(ws)
    assert registered["type"] == "registered", registered
    return ws, registered


async def send_envelope(ws: websockets.ClientConnection, **envelope: Any) -> None:
    await ws.send(json.dumps({"type": "envelope", "envelope": envelope}))


async def closed_code(ws: websockets.ClientConnection, timeout: float = 5.0) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code


async def test_b1_websocket_accepts_missing_and_allowed_origins_refuses_others(
    secured: BridgeProcess,
) -> None:
    ws, _ = await agent(secured.ws_url, uid("b1"), authToken=TOKEN)  # no Origin header at all
    await ws.close()
    ws = await connect(secured.ws_url, origin="https://app.example")  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "register", "clientId": uid("b1"), "authToken": TOKEN}))
    assert (await recv(ws))["type"] == "registered"
    await ws.close()
    with pytest.raises(InvalidStatus) as refused:
        await connect(secured.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body or b"{}")["error"] == "origin not allowed"


async def test_b1_legacy_root_path_is_a_websocket_endpoint(shared: BridgeProcess) -> None:
    ws, registered = await agent(f"ws://127.0.0.1:{shared.port}", uid("root"))
    assert registered["protocol"] == "aibridge/1"
    await ws.close()


async def test_b2_deliveries_are_tagged_objects(shared: BridgeProcess) -> None:
    alice, bob = uid("alice"), uid("bob")
    a, _ = await agent(shared.ws_url, alice)
    b, _ = await agent(shared.ws_url, bob)
    await send_envelope(a, to=bob, payload={"n": 1})
    frame = await recv(b)
    assert frame["type"] == "envelope"
    assert frame["envelope"]["payload"] == {"n": 1}
    assert frame["envelope"]["from"] == alice
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        ("null", "invalid_frame", "got null"),
        ("42", "invalid_frame", "got a number"),
        ('"hi"', "invalid_frame", "got a string"),
        ("[1, 2]", "invalid_frame", "got an array"),
        ("{not json", "invalid_json", "not valid JSON"),
        ('{"kind": "register"}', "invalid_frame", "string `type`"),
        ('{"type": 7}', "invalid_frame", "string `type`"),
        ('{"type": "teleport"}', "unknown_type", "'teleport'"),
        ('{"type": "envelope", "envelope": {"to": {"id": "x"}}}', "invalid_field", "envelope.to"),
        ('{"type": "envelope", "envelope": {"to": 5}}', "invalid_field", "got a number"),
        ('{"type": "envelope", "envelope": {"to": ""}}', "invalid_field", "envelope.to"),
        ('{"type": "envelope", "envelope": null}', "invalid_field", "`envelope` must be an object"),
        ('{"type": "envelope", "envelope": {"context": []}}', "invalid_field", "envelope.context"),
        ('{"type": "envelope", "envelope": {"intent": 3}}', "invalid_field", "envelope.intent"),
        ('{"type": "ack", "id": 3}', "invalid_field", "ack needs"),
        ('{"type": "register", "clientId": 12}', "invalid_field", "register.clientId"),
    ],
)
async def test_b3_bad_frames_get_error_frames_and_the_connection_survives(
    shared: BridgeProcess, raw: str, error: str, words: str
) -> None:
    me, peer = uid("b3"), uid("peer")
    ws, _ = await agent(shared.ws_url, me)
    other, _ = await agent(shared.ws_url, peer)
    await ws.send(raw)
    frame = await recv(ws)
    assert frame["type"] == "error"
    assert frame["error"] == error
    assert words in frame["message"]
    # The same socket still works, and so does everyone else's.
    await send_envelope(ws, to=peer, payload="still here")
    assert (await recv(other))["envelope"]["payload"] == "still here"
    assert httpx.get(f"{shared.url}/health").json()["status"] == "ok"
    await ws.close()
    await other.close()


async def test_b4_unregistered_socket_cannot_send(shared: BridgeProcess) -> None:
    victim = uid("victim")
    v, _ = await agent(shared.ws_url, victim)
    anonymous = await connect(shared.ws_url)
    await send_envelope(anonymous, to=victim, payload="spam")
    await send_envelope(anonymous, payload="broadcast spam")
    assert (await recv(anonymous))["error"] == "not_registered"
    assert (await recv(anonymous))["error"] == "not_registered"
    history = httpx.get(f"{shared.url}/history", params={"agentId": victim}).json()["history"]
    assert history == []
    with pytest.raises(TimeoutError):
        await recv(v, timeout=0.3)
    await anonymous.close()
    await v.close()


async def test_b4_token_required_at_handshake_or_register(secured: BridgeProcess) -> None:
    # Wrong token at the handshake: refused before the upgrade.
    for kwargs in ({"additional_headers": {"Authorization": "Bearer nope"}}, {}):
        url = secured.ws_url if kwargs else f"{secured.ws_url}?token=nope"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, **kwargs)
        assert refused.value.response.status_code == 401
    # No token at the handshake: nothing is accepted before a register with the right token.
    ws = await connect(secured.ws_url)
    await send_envelope(ws, payload="x")
    assert (await recv(ws))["error"] == "not_registered"
    await ws.send(json.dumps({"type": "register", "clientId": uid("b4"), "authToken": "wrong"}))
    assert (await recv(ws))["error"] == "unauthorized"
    assert await closed_code(ws) == 1008
    # Token in the header (any scheme case) or the query string: registered without authToken.
    for url, headers in (
        (secured.ws_url, {"Authorization": f"bearer {TOKEN}"}),
        (f"{secured.ws_url}?token={TOKEN}", {}),
    ):
        ws = await connect(url, additional_headers=headers)
        await ws.send(json.dumps({"type": "register", "clientId": uid("b4")}))
        assert (await recv(ws))["type"] == "registered"
        await ws.close()


async def test_b5_from_is_stamped_with_the_registered_id(shared: BridgeProcess) -> None:
    mallory, victim, friend = uid("mallory"), uid("victim"), uid("friend")
    m, _ = await agent(shared.ws_url, mallory)
    v, _ = await agent(shared.ws_url, victim)
    f, _ = await agent(shared.ws_url, friend)
    await send_envelope(m, to=friend, **{"from": victim}, payload="I am the victim")
    assert (await recv(f))["envelope"]["from"] == mallory
    # A spoofed broadcast is not hidden from the spoofed agent either.
    await send_envelope(m, **{"from": victim}, payload="everyone")
    assert (await recv(v))["envelope"]["from"] == mallory
    for ws in (m, v, f):
        await ws.close()


async def test_b6_oversize_frame_closes_1009_and_the_bridge_lives(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_MAX_ENVELOPE_BYTES": "4096"}) as bridge:
        ws, _ = await agent(bridge.ws_url, "big")
        await send_envelope(ws, payload="x" * 3900)  # fits the frame, not the enriched envelope
        frame = await recv(ws)
        assert frame["error"] == "too_large"
        await ws.send(json.dumps({"type": "envelope", "envelope": {"payload": "x" * 20_000}}))
        assert await closed_code(ws) == 1009
        assert httpx.get(f"{bridge.url}/health").json()["status"] == "ok"


async def test_b6_register_lists_are_capped(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_MAX_LIST_ITEMS": "3"}) as bridge:
        ws = await connect(bridge.ws_url)
        await ws.send(json.dumps({"type": "register", "labels": ["a", "b", "c", "d"]}))
        frame = await recv(ws)
        assert frame["error"] == "invalid_field"
        assert "register.labels has 4 items, at most 3" in frame["message"]
        await ws.close()


async def test_b6_number_of_queues_and_queued_bytes_are_bounded(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_MAX_QUEUES": "3", "AI_BRIDGE_MAX_QUEUED_BYTES": "4096"}
    with run_bridge(tmp_path, env) as bridge:
        ws, _ = await agent(bridge.ws_url, "sender", confirm=True)
        for i in range(3):
            await send_envelope(ws, to=f"offline-{i}", payload=i)
            assert (await recv(ws))["type"] == "accepted"
        await send_envelope(ws, to="offline-3", payload=3)
        refused = await recv(ws)
        assert refused["error"] == "queue_full"
        assert "AI_BRIDGE_MAX_QUEUES=3" in refused["message"]
        await send_envelope(ws, to="offline-0", payload="y" * 2000)
        assert (await recv(ws))["type"] == "accepted"
        await send_envelope(ws, to="offline-1", payload="y" * 2000)
        assert "AI_BRIDGE_MAX_QUEUED_BYTES" in (await recv(ws))["message"]
        status = httpx.get(f"{bridge.url}/api/status").json()
        assert status["storage"]["queues"] == 3
        assert status["performance"]["queuedMessages"] == 4
        await ws.close()


async def test_b7_queued_envelopes_replay_in_order_after_registered(shared: BridgeProcess) -> None:
    sender, late = uid("sender"), uid("late")
    s, _ = await agent(shared.ws_url, sender)
    for i in range(5):
        await send_envelope(s, to=late, payload=i)
    await send_envelope(s, payload="broadcast: not for the absent")
    deadline = asyncio.get_running_loop().time() + 5
    while httpx.get(f"{shared.url}/history", params={"agentId": sender}).json()["history"].__len__() < 6:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    ws = await connect(shared.ws_url)
    await ws.send(json.dumps({"type": "register", "clientId": late}))
    assert (await recv(ws))["type"] == "registered"  # first, before any replay
    assert [(await recv(ws))["envelope"]["payload"] for _ in range(5)] == [0, 1, 2, 3, 4]
    await s.close()
    await ws.close()


async def test_ack_mode_redelivers_unacknowledged_envelopes(shared: BridgeProcess) -> None:
    sender, worker = uid("sender"), uid("worker")
    s, _ = await agent(shared.ws_url, sender)
    w, _ = await agent(shared.ws_url, worker, ack=True)
    for i in range(3):
        await send_envelope(s, to=worker, id=f"{worker}-{i}", payload=i)
    got = [(await recv(w))["envelope"]["id"] for _ in range(3)]
    assert got == [f"{worker}-{i}" for i in range(3)]
    await w.send(json.dumps({"type": "ack", "id": got[0]}))
    await w.close()  # envelopes 1 and 2 were never acknowledged
    w, _ = await agent(shared.ws_url, worker, ack=True)
    assert [(await recv(w))["envelope"]["id"] for _ in range(2)] == got[1:]
    await w.send(json.dumps({"type": "ack", "ids": got[1:]}))
    await w.close()
    w, _ = await agent(shared.ws_url, worker, ack=True)
    with pytest.raises(TimeoutError):
        await recv(w, timeout=0.3)
    await w.close()
    await s.close()


async def test_fire_and_forget_agents_are_not_redelivered(shared: BridgeProcess) -> None:
    sender, worker = uid("sender"), uid("plain")
    s, _ = await agent(shared.ws_url, sender)
    w, _ = await agent(shared.ws_url, worker)
    await send_envelope(s, to=worker, payload="once")
    assert (await recv(w))["envelope"]["payload"] == "once"
    await w.close()
    w, _ = await agent(shared.ws_url, worker)
    with pytest.raises(TimeoutError):
        await recv(w, timeout=0.3)
    await w.close()
    await s.close()


async def test_b8_duplicate_client_id_newest_wins_and_old_close_keeps_it(shared: BridgeProcess) -> None:
    twin, sender = uid("twin"), uid("sender")
    old, _ = await agent(shared.ws_url, twin)
    new, _ = await agent(shared.ws_url, twin)
    assert await closed_code(old) == 4409
    assert old.close_reason == "clientId registered by a newer connection"
    s, _ = await agent(shared.ws_url, sender)
    await send_envelope(s, to=twin, payload="to the newest")
    assert (await recv(new))["envelope"]["payload"] == "to the newest"
    agents = [a["id"] for a in httpx.get(f"{shared.url}/agents").json()["agents"]]
    assert agents.count(twin) == 1
    await new.close()
    await s.close()


async def test_b8_reregistering_under_a_new_id_leaves_no_stale_entry(shared: BridgeProcess) -> None:
    first, second = uid("first"), uid("second")
    ws, _ = await agent(shared.ws_url, first)
    await ws.send(json.dumps({"type": "register", "clientId": second}))
    assert (await recv(ws))["client"]["id"] == second
    agents = [a["id"] for a in httpx.get(f"{shared.url}/agents").json()["agents"]]
    assert second in agents
    assert first not in agents
    await ws.close()


async def test_b9_any_frame_refreshes_last_seen_and_idle_agents_are_closed(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_CLIENT_TTL_MS": "1500", "AI_BRIDGE_CLEANUP_INTERVAL_MS": "100"}
    with run_bridge(tmp_path, env) as bridge:
        busy, _ = await agent(bridge.ws_url, "busy")
        idle, _ = await agent(bridge.ws_url, "idle")
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        # "busy" only sends envelopes (never a heartbeat) and must stay; "idle" sends nothing.
        while loop.time() < end:
            await send_envelope(busy, to="nobody", payload="keepalive by traffic")
            await asyncio.sleep(0.2)
        assert await closed_code(idle) == 4408
        agents = [a["id"] for a in httpx.get(f"{bridge.url}/agents").json()["agents"]]
        assert agents == ["busy"]
        await busy.close()


async def test_broadcast_reaches_every_agent_but_the_sender(tmp_path: Path) -> None:
    with run_bridge(tmp_path) as bridge:
        sender, _ = await agent(bridge.ws_url, "caster", confirm=True)
        others = [(await agent(bridge.ws_url, f"listener-{i}"))[0] for i in range(3)]
        await send_envelope(sender, payload="hello all")
        accepted = await recv(sender)
        assert accepted["type"] == "accepted"
        assert accepted["status"] == "delivered"
        for ws in others:
            frame = await recv(ws)
            assert frame["envelope"]["payload"] == "hello all"
            assert frame["envelope"]["to"] is None
        with pytest.raises(TimeoutError):
            await recv(sender, timeout=0.3)
        for ws in [sender, *others]:
            await ws.close()


async def test_max_queue_drops_the_oldest(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_MAX_QUEUE": "3"}) as bridge:
        s, _ = await agent(bridge.ws_url, "s", confirm=True)
        for i in range(5):
            await send_envelope(s, to="away", payload=i)
            assert (await recv(s))["status"] == "queued"
        ws, _ = await agent(bridge.ws_url, "away")
        assert [(await recv(ws))["envelope"]["payload"] for _ in range(3)] == [2, 3, 4]
        await ws.close()
        await s.close()


async def test_b17_unknown_envelope_fields_are_carried(shared: BridgeProcess) -> None:
    a, b = uid("a"), uid("b")
    wa, _ = await agent(shared.ws_url, a)
    wb, _ = await agent(shared.ws_url, b)
    await send_envelope(wa, to=b, message="docs-style text", content={"k": [1, 2]}, confidence=0.9)
    envelope = (await recv(wb))["envelope"]
    assert envelope["message"] == "docs-style text"
    assert envelope["content"] == {"k": [1, 2]}
    assert envelope["confidence"] == 0.9
    # ... and the bridge's defaults are all there (bridge.md §2).
    assert envelope["intent"] == "agent.message"
    assert envelope["channel"] == "default"
    assert envelope["priority"] == "normal"
    assert envelope["role"] == "agent"
    assert envelope["taskId"] is None
    assert envelope["replyTo"] is None
    assert envelope["context"] == {} and envelope["trace"] == {}
    assert envelope["tools"] == [] and envelope["attachments"] == []
    assert envelope["timestamp"].endswith("Z")
    uuid.UUID(envelope["id"])
    await wa.close()
    await wb.close()


async def test_b16_registered_snapshot_hides_other_agents_direct_messages(shared: BridgeProcess) -> None:
    a, b, c = uid("a"), uid("b"), uid("c")
    wa, _ = await agent(shared.ws_url, a, confirm=True)
    wb, _ = await agent(shared.ws_url, b)
    await send_envelope(wa, to=b, payload="private")
    assert (await recv(wa))["type"] == "accepted"
    await send_envelope(wa, payload="public")
    assert (await recv(wa))["type"] == "accepted"
    wc, registered = await agent(shared.ws_url, c)
    payloads = [e["payload"] for e in registered["history"]]
    assert "public" in payloads
    assert "private" not in payloads
    for ws in (wa, wb, wc):
        await ws.close()


async def test_an_agent_that_does_not_read_stalls_nobody(tmp_path: Path) -> None:
    with run_bridge(tmp_path) as bridge:
        slow = await websockets.connect(bridge.ws_url, compression=None, max_queue=1)
        await slow.send(json.dumps({"type": "register", "clientId": "slow"}))
        assert (await recv(slow))["type"] == "registered"
        fast, _ = await agent(bridge.ws_url, "fast")
        sender, _ = await agent(bridge.ws_url, "sender")
        batches, batch, blob = 60, 100, "x" * 8192  # ~50 MiB: more than the slow socket's buffers hold
        for b in range(batches):
            for i in range(batch):
                await send_envelope(sender, payload={"i": b * batch + i, "blob": blob})
            for i in range(batch):
                frame = json.loads(await asyncio.wait_for(fast.recv(), 10))
                assert frame["envelope"]["payload"]["i"] == b * batch + i
        assert httpx.get(f"{bridge.url}/health").json()["status"] == "ok"
        for ws in (slow, fast, sender):
            await ws.close()


async def test_b7_server_pings_and_drops_a_peer_that_never_answers(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_PING_INTERVAL_MS": "300"}) as bridge:
        healthy, _ = await agent(bridge.ws_url, "answers-pings")  # websockets answers pings itself
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
        # A half-open peer: we read what the server sends but never answer its pings.
        received = b""
        while chunk := await asyncio.wait_for(reader.read(4096), 5):
            received += chunk
        assert received[0] == 0x89  # an unmasked ping frame came first
        assert b"keepalive ping timeout" in received  # then a close (1011) before the server hung up
        writer.close()
        await send_envelope(healthy, to="answers-pings", payload="still connected")
        assert (await recv(healthy))["envelope"]["payload"] == "still connected"
        await healthy.close()
