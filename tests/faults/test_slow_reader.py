"""Issue 11.2: a reader that stops reading, and one that only reads slowly, against the real server.

The readers are real ``websockets`` clients with a small ``max_queue`` on a socket with a
small receive buffer: once their queue is full they stop reading the socket, so the
server's buffers really fill. A stuck reader must be closed with 1013 after taking nothing
for 2 s, its sender held meanwhile, and every envelope the bridge accepted for it must reach
it (before the close, or replayed when it registers again). A slow reader gets everything,
in order, and its sender waits for it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from support import BridgeProcess, run_bridge, scrape, value

BLOB = "x" * 4096
ENV = {
    "AI_BRIDGE_MAX_QUEUE": "100000",
    "AI_BRIDGE_MAX_QUEUED_BYTES": str(512 << 20),
    "AI_BRIDGE_WS_RATE_MAX": "0",
    "AI_BRIDGE_CLIENT_TTL_MS": "120000",
}


async def small_socket_client(url: str, port: int) -> websockets.ClientConnection:
    """A websockets client whose socket buffers little and whose queue holds 4 messages."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await websockets.connect(url, sock=sock, compression=None, max_queue=4, max_size=None)


async def register(ws: websockets.ClientConnection, client_id: str, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **fields}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "registered":
            return frame


class Sender:
    """A confirming agent pipelining 4 KB envelopes to ``to``; records each ``accepted``."""

    def __init__(self, ws: websockets.ClientConnection, to: str) -> None:
        self.ws = ws
        self.to = to
        self.sent = 0
        self.accepted: dict[int, str] = {}  # seq -> delivered/queued
        self.times: list[float] = []
        self.longest_send = 0.0
        self._ids: dict[str, int] = {}

    async def send(self, seq: int) -> None:
        envelope_id = f"env-{seq}"
        self._ids[envelope_id] = seq
        envelope = {"id": envelope_id, "to": self.to, "payload": {"seq": seq, "blob": BLOB}}
        started = time.monotonic()
        await self.ws.send(json.dumps({"type": "envelope", "envelope": envelope}))
        self.longest_send = max(self.longest_send, time.monotonic() - started)
        self.sent += 1

    async def read_confirms(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            assert frame["type"] == "accepted", frame
            self.accepted[self._ids[frame["id"]]] = frame["status"]
            self.times.append(time.monotonic())

    def longest_gap(self) -> float:
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)


async def agents(bridge: BridgeProcess) -> set[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        return {a["id"] for a in (await client.get(f"{bridge.url}/agents")).json()["agents"]}


async def seqs_until_closed(ws: websockets.ClientConnection) -> tuple[list[int], int | None]:
    """Everything still buffered for a socket, then its close code."""
    seqs: list[int] = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "envelope":
                seqs.append(frame["envelope"]["payload"]["seq"])
    except ConnectionClosed as closed:
        return seqs, closed.rcvd.code if closed.rcvd else None


async def replayed(
    url: str, port: int, client_id: str, marker: str, sender: Sender, **fields: Any
) -> list[int]:
    """Register again and collect the replay; a marker sent after registering ends it (order holds)."""
    ws = await small_socket_client(url, port)
    await register(ws, client_id, **fields)
    marker_env = {"id": marker, "to": client_id, "payload": {"seq": -1}}
    sender._ids[marker] = -1
    await sender.ws.send(json.dumps({"type": "envelope", "envelope": marker_env}))
    seqs: list[int] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["type"] != "envelope":
            continue
        seq = frame["envelope"]["payload"]["seq"]
        if seq == -1:
            break
        seqs.append(seq)
    await ws.close()
    return seqs


@pytest.mark.parametrize("ack", [False, True], ids=["fire-and-forget", "ack"])
async def test_a_reader_that_stops_is_closed_1013_and_loses_nothing(tmp_path: Path, ack: bool) -> None:
    with run_bridge(tmp_path, ENV) as bridge:
        stuck = await small_socket_client(bridge.ws_url, bridge.port)
        await register(stuck, "stuck", ack=ack)
        out = await websockets.connect(bridge.ws_url, compression=None, max_size=None)
        await register(out, "sender", confirm=True)
        sender = Sender(out, "stuck")
        confirms = asyncio.create_task(sender.read_confirms())
        # From here on `stuck` reads nothing: its 4-message queue fills, then its socket.
        stop = asyncio.Event()
        producing = asyncio.create_task(_send_until(sender, stop, limit=60_000))  # 240 MB at most
        async with asyncio.timeout(90):
            while "stuck" in await agents(bridge):
                assert not producing.done(), f"no cut-off after {sender.sent} envelopes"
                await asyncio.sleep(0.1)
        stop.set()
        await producing
        seq = sender.sent
        cut_at = time.monotonic()
        # The agent is gone: what the sender sends now is queued for it.
        for extra in range(seq, seq + 50):
            await sender.send(extra)
        total = sender.sent
        async with asyncio.timeout(60):
            while len(sender.accepted) < total:
                await asyncio.sleep(0.05)
        # It reads again: what the transport took arrives, then the 1013 close.
        before, code = await seqs_until_closed(stuck)
        assert code == 1013
        # What the operator sees: one warning line and the counter.
        cut = "with 1013: it took nothing for 2 s"
        cut_lines = [line for line in bridge.log().splitlines() if cut in line]
        assert len(cut_lines) == 1, cut_lines
        assert value(scrape(bridge.metrics_url), "aibridge_errors_total", kind="slow_reader") == 1
        assert value(scrape(bridge.metrics_url), "aibridge_errors_total", kind="internal") is None
        # The sender was held while the reader was stuck: one send waited for most of the stall
        # (unheld, a 4 KB send returns in microseconds), and its confirms paused before the cut-off.
        assert sender.longest_send >= 0.9, sender.longest_send
        assert sender.longest_gap() >= 0.5, sender.longest_gap()
        assert any(abs(t - cut_at) < 5 for t in sender.times)
        everything = list(range(total))
        assert sorted(sender.accepted) == everything  # every envelope was accepted ...
        again = await replayed(bridge.ws_url, bridge.port, "stuck", "marker", sender, ack=ack)
        if ack:
            assert again == everything  # ... nothing acked, so all of it is replayed, in order
        else:
            assert before + again == everything  # ... and arrives exactly once, in order
            assert before, "nothing reached the reader before it stopped"
        statuses = {sender.accepted[s] for s in again if s in sender.accepted}
        assert "queued" in statuses
        confirms.cancel()
        await out.close()


async def test_a_slow_reader_gets_everything_in_order_and_slows_its_sender(tmp_path: Path) -> None:
    with run_bridge(tmp_path, ENV) as bridge:
        slow = await small_socket_client(bridge.ws_url, bridge.port)
        await register(slow, "slow")
        out = await websockets.connect(bridge.ws_url, compression=None, max_size=None)
        await register(out, "sender", confirm=True)
        sender = Sender(out, "slow")
        confirms = asyncio.create_task(sender.read_confirms())
        total = 10_000  # 40 MB: far more than the sockets' buffers between them hold
        producing = asyncio.create_task(_send_all(sender, total))
        received: list[int] = []
        lead = 0  # how far the sender got ahead of the reader
        async with asyncio.timeout(100):
            while len(received) < total:
                frame = json.loads(await slow.recv())
                assert frame["type"] == "envelope", frame
                received.append(frame["envelope"]["payload"]["seq"])
                lead = max(lead, sender.sent - len(received))
                if len(received) % 20 == 0:
                    await asyncio.sleep(0.01)  # slow, never stopped: at most ~2,000 frames/s
            await producing
        assert received == list(range(total))
        assert "slow" in await agents(bridge)  # never cut off
        async with asyncio.timeout(30):
            while len(sender.accepted) < total:
                await asyncio.sleep(0.05)
        assert set(sender.accepted.values()) <= {"delivered", "queued"}
        # Backpressure: the sender never got further ahead than the buffers between them plus the
        # 1,024 frames the bridge lets wait. Unheld, it sent all 10,000 while the reader had a few hundred.
        assert lead < total // 2, lead
        assert "1013" not in bridge.log()
        confirms.cancel()
        await out.close()
        await slow.close()


async def _send_until(sender: Sender, stop: asyncio.Event, limit: int) -> None:
    while not stop.is_set() and sender.sent < limit:
        await sender.send(sender.sent)


async def _send_all(sender: Sender, total: int) -> None:
    for seq in range(total):
        await sender.send(seq)
