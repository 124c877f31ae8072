"""The routing and RSS figures' aiohttp client pattern (performance.md), used by bench/bridge.py.

One sender pipelines N envelopes; the receivers live in other processes (one Python process
cannot read 200,000 frames/s), and the clock stops at the last delivery (or confirm).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from multiprocessing.connection import Connection

import aiohttp
import httpx

from procfs import cpu_seconds, rss_mib


async def _agent(
    session: aiohttp.ClientSession, url: str, client_id: str, confirm: bool = False
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, compress=0, max_msg_size=0, autoping=True)
    await ws.send_str(json.dumps({"type": "register", "clientId": client_id, "confirm": confirm}))
    while json.loads((await ws.receive()).data).get("type") != "registered":
        pass
    return ws


async def _count(ws: aiohttp.ClientWebSocketResponse, expected: int, kind: str = "envelope") -> float:
    """Read until ``expected`` frames of type ``kind`` came; the monotonic time of the last one.

    aiohttp's C frame reader and a prefix test instead of json.loads per frame: the load
    generator must not be what limits the figure (the bridge writes ``type`` first).
    """
    tag = f'{{"type":"{kind}"'
    seen = 0
    while seen < expected:
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"connection ended after {seen} of {expected} {kind} frames: {message}")
        if message.data.startswith(tag):
            seen += 1
    return time.monotonic()


def _receiver_process(port: int, ids: list[str], expected: int, pipe: Connection) -> None:
    """A load-generator process holding some receiving agents (one Python process cannot
    read 200,000 frames/s; spreading receivers keeps the generator from being the limit)."""

    async def run() -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as session:
            sinks = [await _agent(session, url, client_id) for client_id in ids]
            pipe.send("ready")
            await asyncio.gather(*(_count(ws, expected) for ws in sinks))
            pipe.send(time.monotonic())
            for ws in sinks:
                await ws.close()

    asyncio.run(run())


async def routing(
    port: int, pid: int, messages: int, receivers: int, processes: int = 2, confirm: bool = False
) -> float:
    """Deliveries per second: 1 sender pipelining ``messages`` envelopes to ``receivers`` agents.

    Also prints the server's CPU time per delivery: on a machine shared with other work the
    wall-clock rate drops, the CPU cost does not.
    """
    ids = [f"dst{i}" for i in range(receivers)]
    context = multiprocessing.get_context("spawn")
    workers = []
    for n in range(min(processes, receivers)):
        ours, theirs = context.Pipe()
        worker = context.Process(target=_receiver_process, args=(port, ids[n::processes], messages, theirs))
        worker.start()
        workers.append((worker, ours))
    for _, pipe in workers:
        if not pipe.poll(30):
            raise SystemExit("receiver processes did not register within 30 s")
        pipe.recv()
    session = aiohttp.ClientSession()
    sender = await _agent(session, f"ws://127.0.0.1:{port}/ws", "src", confirm=confirm)
    to = {"to": "dst0"} if receivers == 1 else {}
    frames = [
        json.dumps(
            {
                "type": "envelope",
                "envelope": {
                    **to,
                    "intent": "bench",
                    "taskId": f"t{i % 50}",
                    "payload": {"i": i, "text": "hello world"},
                },
            }
        )
        for i in range(messages)
    ]
    cpu_start = cpu_seconds(pid)
    start = time.monotonic()
    confirms = asyncio.create_task(_count(sender, messages, "accepted")) if confirm else None
    for frame in frames:
        await sender.send_str(frame)
    ends = [await asyncio.to_thread(pipe.recv) for _, pipe in workers]
    if confirms is not None:  # the clock stops at the last delivery or the last confirm
        ends.append(await confirms)
    elapsed = max(ends) - start
    cpu = cpu_seconds(pid) - cpu_start
    rate = messages * receivers / cpu if cpu else float("inf")
    print(f"  server CPU {cpu:.2f}s for {messages * receivers:,} deliveries = {rate:,.0f} per CPU-second")
    await sender.close()
    await session.close()
    for worker, _ in workers:
        worker.join(10)
    return messages * receivers / elapsed


async def rss_with_agents(port: int, pid: int, count: int) -> float:
    url = f"ws://127.0.0.1:{port}/ws"
    agents = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for batch in range(0, count, 100):
            agents += await asyncio.gather(
                *(_agent(session, url, f"idle{i}") for i in range(batch, min(count, batch + 100)))
            )
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["connectedClients"] >= count, health
        rss = rss_mib(pid)
        await asyncio.gather(*(ws.close() for ws in agents))
    return rss
