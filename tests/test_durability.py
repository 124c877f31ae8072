"""Durability of the default SQLite store through the real ``aibridge serve`` (issue 8).

The promise under test: every envelope the server acknowledged (HTTP 202, WebSocket
``accepted`` frame) is in history and waiting in its recipient's queue exactly once after
``kill -9`` and a restart; after SIGTERM nothing the server took in is lost at all.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from aibridge.server.store._sqlite_writer import SCHEMA
from support import BridgeProcess, run_bridge

SINK = "sink"
"""The offline recipient every test sends to: it registers only after the restarts."""


def bridge_env(data: Path, **extra: str) -> dict[str, str]:
    # No AI_BRIDGE_STORE: SQLite is the default store. Limits off, so the senders are not throttled.
    return {"AI_BRIDGE_DATA_DIR": str(data), "AI_BRIDGE_WS_RATE_MAX": "0", "AI_BRIDGE_RATE_MAX": "0", **extra}


async def recv(ws: websockets.ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def register(url: str, client_id: str, **options: Any) -> websockets.ClientConnection:
    ws = await websockets.connect(url, compression=None, open_timeout=5, max_size=None)
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **options}))
    assert (await recv(ws))["type"] == "registered"
    return ws


async def ws_sender(bridge: BridgeProcess, name: str, acked: list[str]) -> None:
    """Send to the sink with confirms on, 32 in flight, until the server dies; collect confirmed ids."""
    try:
        ws = await register(bridge.ws_url, name, confirm=True)
        n = 0
        while True:
            for _ in range(32):
                n += 1
                await ws.send(json.dumps({"type": "envelope", "envelope": {"to": SINK, "payload": {"n": n}}}))
            for _ in range(32):
                frame = await recv(ws)
                assert frame["type"] == "accepted", frame
                acked.append(frame["id"])
    except (websockets.ConnectionClosed, OSError, TimeoutError):
        return


async def http_sender(bridge: BridgeProcess, acked: list[str]) -> None:
    """POST /send to the sink, 8 at a time, until the server dies; collect the ids answered 202."""
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as client:

        async def one(n: int) -> None:
            reply = await client.post("/send", json={"to": SINK, "from": "http", "payload": {"n": n}})
            assert reply.status_code == 202, reply.text
            acked.append(reply.json()["envelope"]["id"])

        n = 0
        try:
            while True:
                await asyncio.gather(*(one(n + i) for i in range(8)))
                n += 8
        except httpx.TransportError:
            return


async def send_then_kill(bridge: BridgeProcess, acked: list[str], at_least: int) -> None:
    """Senders run; once ``at_least`` more envelopes were acknowledged, the server gets SIGKILL mid-stream."""
    target = len(acked) + at_least
    senders = [
        asyncio.create_task(ws_sender(bridge, "writer-a", acked)),
        asyncio.create_task(ws_sender(bridge, "writer-b", acked)),
        asyncio.create_task(http_sender(bridge, acked)),
    ]
    deadline = time.monotonic() + 60
    while len(acked) < target:
        assert time.monotonic() < deadline, f"only {len(acked)} of {target} acknowledged in 60 s"
        assert not any(t.done() for t in senders), "a sender stopped while the server was up"
        await asyncio.sleep(0.01)
    bridge.process.kill()
    bridge.wait(10)
    await asyncio.wait_for(asyncio.gather(*senders), 30)


def health(bridge: BridgeProcess) -> dict[str, Any]:
    body = httpx.get(f"{bridge.url}/health", timeout=5).json()
    assert isinstance(body, dict)
    return body


def history_ids(bridge: BridgeProcess, limit: int) -> list[str]:
    reply = httpx.get(f"{bridge.url}/history", params={"limit": limit}, timeout=10)
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()["history"]]


async def replay(bridge: BridgeProcess, expected: int) -> tuple[websockets.ClientConnection, list[str]]:
    """Register the sink (``ack: true``) and read the ``expected`` envelopes its queue replays."""
    ws = await register(bridge.ws_url, SINK, ack=True)
    ids: list[str] = []
    while len(ids) < expected:
        frame = await recv(ws)
        assert frame["type"] == "envelope", frame
        ids.append(frame["envelope"]["id"])
    return ws, ids


async def test_acknowledged_envelopes_survive_kill_9_cycles_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = bridge_env(data, AI_BRIDGE_HISTORY_LIMIT="100000", AI_BRIDGE_MAX_QUEUE="100000")
    acked: list[str] = []
    for _ in range(3):
        with run_bridge(tmp_path, env) as bridge:
            await send_then_kill(bridge, acked, at_least=300)
    assert len(acked) == len(set(acked)) >= 900

    with run_bridge(tmp_path, env) as bridge:
        stored = history_ids(bridge, 100_000)
        assert len(stored) == len(set(stored)), "an envelope is in history twice"
        assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} acknowledged envelopes lost"
        # Every stored envelope went to the offline sink, so each has exactly one queue entry.
        assert health(bridge)["queuedMessages"] == len(stored)
        ws, replayed = await replay(bridge, len(stored))
        assert sorted(replayed) == sorted(stored), "the queue replay differs from history"
        await ws.send(json.dumps({"type": "ack", "ids": replayed}))
        deadline = time.monotonic() + 10
        while health(bridge)["queuedMessages"] != 0:
            assert time.monotonic() < deadline, "acks did not empty the queue"
            await asyncio.sleep(0.05)
        await ws.close()
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(15) == 0

    with run_bridge(tmp_path, env) as bridge:  # the acks themselves were kept by the SIGTERM
        assert health(bridge)["queuedMessages"] == 0
        assert health(bridge)["historySize"] == len(stored)


async def test_sigterm_loses_nothing_even_unconfirmed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = bridge_env(data, AI_BRIDGE_HISTORY_LIMIT="10000", AI_BRIDGE_MAX_QUEUE="10000")
    total = 3000
    with run_bridge(tmp_path, env) as bridge:
        ws = await register(bridge.ws_url, "fire-and-forget")  # no confirm: nothing waits for a commit
        for n in range(total):
            await ws.send(json.dumps({"type": "envelope", "envelope": {"to": SINK, "payload": {"n": n}}}))
        deadline = time.monotonic() + 30
        while health(bridge)["historySize"] < total:  # routed, not necessarily committed yet
            assert time.monotonic() < deadline, "the server did not take in every envelope"
            await asyncio.sleep(0.02)
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(15) == 0

    with run_bridge(tmp_path, env) as bridge:
        assert health(bridge)["historySize"] == total
        ws, replayed = await replay(bridge, total)
        assert len(set(replayed)) == total
        assert replayed == history_ids(bridge, total), "replay order differs from send order"
        await ws.close()


async def test_caps_and_pruning_hold_on_disk_through_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = bridge_env(data, AI_BRIDGE_HISTORY_LIMIT="50", AI_BRIDGE_MAX_QUEUE="20")
    sent: list[str] = []
    with run_bridge(tmp_path, env) as bridge:
        with httpx.Client(base_url=bridge.url, timeout=10) as client:
            for n in range(300):
                reply = client.post("/send", json={"to": SINK, "payload": {"n": n, "pad": "x" * 500}})
                assert reply.status_code == 202, reply.text
                sent.append(reply.json()["envelope"]["id"])
        bridge.process.kill()
        bridge.wait(10)

    with sqlite3.connect(data / "aibridge.db") as db:  # what is on disk, read while no server runs
        assert db.execute("select count(*) from history").fetchone() == (50,)
        assert db.execute("select count(*) from queue").fetchone() == (20,)

    with run_bridge(tmp_path, env) as bridge:
        assert history_ids(bridge, 50) == sent[-50:]
        assert health(bridge)["queuedMessages"] == 20
        ws, replayed = await replay(bridge, 20)
        assert replayed == sent[-20:]
        await ws.close()


async def test_frames_taken_before_the_commit_leave_no_queue_rows(tmp_path: Path) -> None:
    """A live fire-and-forget agent's queue entry is written neither way; an acking agent's is.

    The sockets write before each commit (issue 16), so the entry of a frame the transport
    took is cancelled by its ack inside the same batch. A trigger counts what reached the
    queue table: without that ordering about half of these entries were inserted and
    deleted again. The acking agent is the control: its entries must stay until it acks.
    """
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "aibridge.db") as db:
        db.executescript(
            SCHEMA
            + "CREATE TABLE inserted (n INTEGER NOT NULL); INSERT INTO inserted VALUES (0);"
            + "CREATE TRIGGER count_queue AFTER INSERT ON queue BEGIN UPDATE inserted SET n = n + 1; END;"
        )
    bursts, burst = 20, 50
    with run_bridge(tmp_path, bridge_env(data, AI_BRIDGE_HISTORY_LIMIT="10000")) as bridge:
        live = await register(bridge.ws_url, "live")
        acking = await register(bridge.ws_url, "acking", ack=True)
        sender = await register(bridge.ws_url, "sender")
        for to, ws in (("live", live), ("acking", acking)):
            for _ in range(bursts):  # in bursts, each read before the next: the reader never falls behind
                for n in range(burst):
                    frame = {"type": "envelope", "envelope": {"to": to, "payload": {"n": n}}}
                    await sender.send(json.dumps(frame))
                for _ in range(burst):
                    assert (await recv(ws))["type"] == "envelope"
        for ws in (live, acking, sender):
            await ws.close()
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(15) == 0

    with sqlite3.connect(data / "aibridge.db") as db:
        assert db.execute("select count(*) from history").fetchone() == (2 * bursts * burst,)
        # Every entry of the acking agent, none of the live one's: all stay queued until acked.
        assert db.execute("select n from inserted").fetchone() == (bursts * burst,)
        assert db.execute("select recipient, count(*) from queue group by recipient").fetchall() == [
            ("acking", bursts * burst)
        ]
