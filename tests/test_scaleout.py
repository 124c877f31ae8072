"""Two real ``aibridge serve`` processes sharing one real ``redis-server`` (issue 8, scale-out).

Agents on different processes reach each other directly and by broadcast, offline queues
and acks are shared, one process can die (SIGKILL) while the other keeps serving, and a lost
Redis turns ``/health`` to ``degraded`` until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from redis_support import RedisServer, redis_server
from support import BridgeProcess, free_port, run_bridge

__all__ = ("redis_server",)  # the fixture, imported for pytest


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    """Bridges A and B on one Redis, each with its own instance id."""
    common = {
        "AI_BRIDGE_REDIS_URL": redis_server.url,
        "AI_BRIDGE_WS_RATE_MAX": "0",
        "AI_BRIDGE_RATE_MAX": "0",
    }
    with (
        run_bridge(tmp_path, {**common, "AI_BRIDGE_INSTANCE_ID": "machine-a"}) as a,
        run_bridge(tmp_path, {**common, "AI_BRIDGE_INSTANCE_ID": "machine-b"}) as b,
    ):
        yield a, b


async def recv(ws: websockets.ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def register(bridge: BridgeProcess, client_id: str, **options: Any) -> websockets.ClientConnection:
    ws = await websockets.connect(bridge.ws_url, compression=None, open_timeout=5)
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **options}))
    assert (await recv(ws))["type"] == "registered"
    return ws


async def envelope(ws: websockets.ClientConnection) -> dict[str, Any]:
    frame = await recv(ws)
    assert frame["type"] == "envelope", frame
    got = frame["envelope"]
    assert isinstance(got, dict)
    return got


def health(bridge: BridgeProcess) -> dict[str, Any]:
    body = httpx.get(f"{bridge.url}/health", timeout=5).json()
    assert isinstance(body, dict)
    return body


async def until(what: str, check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def post(bridge: BridgeProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(f"{bridge.url}{path}", json=body, timeout=10)
    assert reply.status_code == 202, reply.text
    result = reply.json()
    assert isinstance(result, dict)
    return result


async def test_direct_and_broadcast_cross_machines(pair: tuple[BridgeProcess, BridgeProcess]) -> None:
    a, b = pair
    assert health(a)["status"] == health(b)["status"] == "ok"
    alice = await register(a, "alice")
    bob = await register(b, "bob", confirm=True)

    await bob.send(json.dumps({"type": "envelope", "envelope": {"to": "alice", "payload": {"n": 1}}}))
    accepted = await recv(bob)
    assert accepted["type"] == "accepted" and accepted["status"] == "delivered"
    got = await envelope(alice)
    assert got["payload"] == {"n": 1} and got["from"] == "bob" and got["id"] == accepted["id"]

    sent = post(a, "/send", {"to": "bob", "payload": {"n": 2}})  # HTTP on A, agent on B
    assert sent["status"] == "delivered"
    assert (await envelope(bob))["payload"] == {"n": 2}

    post(b, "/broadcast", {"payload": {"b": 1}})
    assert (await envelope(alice))["payload"] == {"b": 1}
    assert (await envelope(bob))["payload"] == {"b": 1}

    await alice.send(json.dumps({"type": "envelope", "envelope": {"payload": {"b": 2}}}))
    got = await envelope(bob)
    assert got["payload"] == {"b": 2} and got["from"] == "alice"
    with pytest.raises(TimeoutError):  # the sender does not get its own broadcast back
        await recv(alice, timeout=0.5)
    # History is shared: both machines show all four envelopes.
    for bridge in (a, b):
        history = httpx.get(f"{bridge.url}/history", timeout=5).json()["history"]
        assert [e["payload"] for e in history] == [{"n": 1}, {"n": 2}, {"b": 1}, {"b": 2}]
    await alice.close()
    await bob.close()


async def test_offline_queue_and_ack_follow_the_agent_across_machines(
    pair: tuple[BridgeProcess, BridgeProcess],
) -> None:
    a, b = pair
    carol = await register(a, "carol", ack=True)
    post(b, "/send", {"to": "carol", "payload": {"n": 1}})
    first = await envelope(carol)  # delivered across machines, not acked
    await carol.close()
    # Queued in the shared store whether or not A has withdrawn carol's presence yet.
    post(b, "/send", {"to": "carol", "payload": {"n": 2}})
    await until("both queued", lambda: health(a)["queuedMessages"] == 2)

    carol = await register(b, "carol", ack=True)  # back, on the other machine
    replayed = [await envelope(carol), await envelope(carol)]
    assert [e["payload"] for e in replayed] == [{"n": 1}, {"n": 2}]
    assert replayed[0]["id"] == first["id"]
    await carol.send(json.dumps({"type": "ack", "ids": [e["id"] for e in replayed]}))
    await until("acks seen on A", lambda: health(a)["queuedMessages"] == 0)
    await carol.close()


async def test_one_machine_killed_the_other_keeps_serving(pair: tuple[BridgeProcess, BridgeProcess]) -> None:
    a, b = pair
    dave = await register(a, "dave", ack=True)
    erin = await register(b, "erin")
    post(b, "/send", {"to": "dave", "payload": {"n": 1}})
    assert (await envelope(dave))["payload"] == {"n": 1}
    a.process.kill()  # SIGKILL: no withdraw, dave's presence record still names machine-a
    a.wait(10)

    sent = post(b, "/send", {"to": "dave", "payload": {"n": 2}})
    assert sent["status"] == "queued"  # nobody listens on machine-a's channel any more
    post(b, "/send", {"to": "erin", "payload": {"n": 3}})
    assert (await envelope(erin))["payload"] == {"n": 3}

    with contextlib.suppress(websockets.ConnectionClosed):
        await dave.close()
    dave = await register(b, "dave", ack=True)  # the agent reconnects to the surviving machine
    assert [(await envelope(dave))["payload"] for _ in range(2)] == [{"n": 1}, {"n": 2}]
    await dave.close()
    await erin.close()


async def test_redis_lost_and_back_health_degraded_then_ok(
    pair: tuple[BridgeProcess, BridgeProcess], redis_server: RedisServer
) -> None:
    a, b = pair
    frank = await register(a, "frank")
    # Wait until frank's (empty) queue replay is over, so Redis does not vanish in the middle of it:
    # while replaying, envelopes for frank are queued, not delivered.
    deadline = time.monotonic() + 10
    while post(a, "/send", {"to": "frank", "payload": {"warm": True}})["status"] != "delivered":
        assert time.monotonic() < deadline, "frank's replay never ended"
    while True:  # drain what the replay handed over, up to the delivered one
        with contextlib.suppress(TimeoutError):
            await recv(frank, timeout=0.2)
            continue
        break
    redis_server.stop()
    await until("A degraded", lambda: health(a)["status"] == "degraded")
    await until("B degraded", lambda: health(b)["status"] == "degraded")
    reply = httpx.post(f"{b.url}/send", json={"to": "frank", "payload": {}}, timeout=15)
    assert reply.status_code >= 500 and "error" in reply.json()  # refused, not acknowledged
    # An agent registering now cannot get its queue: closed "try again later", not left half-registered.
    gina = await websockets.connect(a.ws_url, compression=None, open_timeout=5)
    await gina.send(json.dumps({"type": "register", "clientId": "gina"}))
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await recv(gina)
    assert gina.close_code == 1013

    redis_server.start()  # empty again: the bridges re-announce their agents
    await until("A ok", lambda: health(a)["status"] == "ok")
    await until("B ok", lambda: health(b)["status"] == "ok")
    sent = post(b, "/send", {"to": "frank", "payload": {"back": True}})
    assert sent["status"] == "delivered"
    assert (await envelope(frank))["payload"] == {"back": True}
    await frank.close()


async def test_store_down_answers_503_with_retry_after_then_202_when_back(
    pair: tuple[BridgeProcess, BridgeProcess], redis_server: RedisServer
) -> None:
    a, _ = pair
    post(a, "/send", {"to": "nobody-yet", "payload": {"n": 0}})  # the pool holds a live connection
    redis_server.stop()
    for method, path, body in (
        ("POST", "/send", {"to": "nobody-yet", "payload": {"n": 1}}),
        ("POST", "/broadcast", {"payload": {"n": 2}}),
        ("GET", "/history", None),
    ):
        reply = httpx.request(method, f"{a.url}{path}", json=body, timeout=15)
        assert reply.status_code == 503, (path, reply.text)
        assert reply.headers["retry-after"] == "1"
        answer = reply.json()
        assert answer["status"] == 503 and answer["error"].startswith("store unavailable: "), answer
    # The log is written after the reply: wait for the last request's line.
    await until("the /history warning in the log", lambda: "store unavailable on GET /history" in a.log())
    log = a.log()
    assert "WARNING aibridge.app: store unavailable on POST /send: Redis at redis://127.0.0.1:" in log
    assert "Traceback" not in log

    redis_server.start()
    deadline = time.monotonic() + 15
    while (
        reply := httpx.post(f"{a.url}/send", json={"to": "nobody-yet", "payload": {}}, timeout=15)
    ).status_code != 202:
        assert reply.status_code == 503, reply.text  # still refused as unavailable, never a 500
        assert time.monotonic() < deadline, "POST /send never accepted again after Redis came back"
        await asyncio.sleep(0.05)
    assert reply.json()["status"] == "queued"
    assert "Traceback" not in a.log()


async def test_pipelined_sends_keep_order_and_every_ack_lands(
    pair: tuple[BridgeProcess, BridgeProcess],
) -> None:
    """Senders without confirm do not wait for Redis; writes still land in order, acks after accepts."""
    a, b = pair
    sender = await register(a, "hasty")
    quick = await register(a, "quick")  # fire-and-forget: acked by the hub right after the write
    careful = await register(a, "careful", ack=True)
    total = 1000
    for n in range(total):
        for to in ("quick", "careful"):
            body = {"type": "envelope", "envelope": {"to": to, "payload": {"n": n}}}
            await sender.send(json.dumps(body))
    got_quick = [(await envelope(quick))["payload"]["n"] for _ in range(total)]
    careful_envelopes = [await envelope(careful) for _ in range(total)]
    assert got_quick == list(range(total))
    assert [e["payload"]["n"] for e in careful_envelopes] == list(range(total))
    await until("careful's envelopes queued until acked", lambda: health(b)["queuedMessages"] == total)
    await careful.send(json.dumps({"type": "ack", "ids": [e["id"] for e in careful_envelopes]}))
    # Had an ack overtaken its accept, the entry would stay queued for ever.
    await until("every queue entry acked", lambda: health(b)["queuedMessages"] == 0)
    history = httpx.get(f"{b.url}/history", params={"limit": 1000}, timeout=10).json()["history"]
    assert [e["payload"]["n"] for e in history if e["to"] == "quick"] == list(range(500, 1000))
    for ws in (sender, quick, careful):
        await ws.close()


def test_unreachable_redis_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_")}
    env["AI_BRIDGE_REDIS_URL"] = f"redis://default:s3cret@127.0.0.1:{port}/0"
    done = subprocess.run(
        [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: cannot reach Redis at redis://***@127.0.0.1:{port}/0: "), errors
    assert "s3cret" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_rate_limit_counts_a_client_across_machines_and_fails_open_without_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    limited = {
        "AI_BRIDGE_REDIS_URL": redis_server.url,
        "AI_BRIDGE_RATE_MAX": "3",
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on",
    }
    with (
        run_bridge(tmp_path, {**limited, "AI_BRIDGE_INSTANCE_ID": "machine-a"}) as a,
        run_bridge(tmp_path, {**limited, "AI_BRIDGE_INSTANCE_ID": "machine-b"}) as b,
    ):
        client = {"Fly-Client-IP": "198.51.100.7"}
        statuses = [httpx.get(f"{bridge.url}/agents", headers=client).status_code for bridge in (a, a, b, b)]
        # One shared window: the fourth request is over the limit although B has seen only two.
        assert statuses == [200, 200, 200, 429]
        other = {"Fly-Client-IP": "198.51.100.8"}
        assert httpx.get(f"{b.url}/agents", headers=other).status_code == 200

        redis_server.stop()
        # Counters unreachable: requests are served rather than refused or failed.
        fresh = {"Fly-Client-IP": "198.51.100.9"}
        assert [httpx.get(f"{a.url}/agents", headers=fresh).status_code for _ in range(5)] == [200] * 5
        assert "Traceback" not in a.log()
