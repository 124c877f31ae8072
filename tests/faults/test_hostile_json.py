"""Item 3 of issue 11: deeply nested JSON is refused before anything is stored, and nothing
stored (whoever wrote it) can make a read route fail.

Before: a payload nested about a thousand deep was committed and queued, *then* answered 500
(so a retrying client sent it twice), and from then on ``/history`` and ``/tasks`` answered
500 for everyone, even after a restart.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from aibridge.server.jsondepth import depth_exceeds
from faults.faultkit import drain_queue, recv, register
from support import BridgeProcess, run_bridge

LIMIT = 64
"""AI_BRIDGE_MAX_JSON_DEPTH's default: the top-level object counts as 1."""


def nested(depth: int) -> str:
    """JSON text of objects nested ``depth`` deep (built as text: json.dumps would recurse)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def body_nested(depth: int, **fields: str) -> str:
    """A /send or /broadcast body that is ``depth`` deep in all (its payload one less)."""
    head = "".join(f"{json.dumps(k)}:{json.dumps(v)}," for k, v in fields.items())
    return "{" + head + '"payload":' + nested(depth - 1) + "}"


def post(client: httpx.Client, route: str, text: str) -> httpx.Response:
    return client.post(route, content=text, headers={"content-type": "application/json"})


def test_http_refuses_deep_bodies_before_storing_them(bridge: BridgeProcess) -> None:
    with httpx.Client(base_url=bridge.url, timeout=15) as client:
        ok = post(client, "/send", body_nested(LIMIT, to="sink", id="at-the-limit"))
        assert ok.status_code == 202, ok.text
        for depth in (LIMIT + 1, 958, 5000, 20_000):
            for route, fields in (("/send", {"to": "sink"}), ("/broadcast", {})):
                reply = post(client, route, body_nested(depth, id=f"deep-{depth}", **fields))
                assert reply.status_code == 400, (depth, route, reply.text)
                body = reply.json()
                assert body["code"] == "invalid_json" and body["limit"] == LIMIT, body
                assert f"AI_BRIDGE_MAX_JSON_DEPTH={LIMIT}" in body["error"], body
        history = client.get("/history").json()["history"]
        assert [e["id"] for e in history] == ["at-the-limit"]  # nothing refused was stored
        assert client.get("/health").json()["queuedMessages"] == 1
    assert "Traceback" not in bridge.log()


async def test_websocket_refuses_deep_frames_and_keeps_the_socket(bridge: BridgeProcess) -> None:
    ws = await register(bridge.ws_url, "deep-sender", confirm=True)
    # The frame adds two levels (frame, envelope) above the payload.
    for depth in (LIMIT + 1, 958, 5000):
        frame = '{"type":"envelope","envelope":{"id":"deep","to":"sink","payload":' + nested(depth - 2) + "}}"
        await ws.send(frame)
        error = await recv(ws)
        assert error["type"] == "error" and error["error"] == "invalid_json", error
        assert error["limit"] == LIMIT and f"AI_BRIDGE_MAX_JSON_DEPTH={LIMIT}" in error["message"]
    fine = '{"type":"envelope","envelope":{"id":"fine","to":"sink","payload":' + nested(LIMIT - 2) + "}}"
    await ws.send(fine)
    assert await recv(ws) == {"type": "accepted", "id": "fine", "status": "queued"}
    await ws.send('{"type":"register","clientId":"x","tools":[' + nested(LIMIT) + "]}")
    assert (await recv(ws))["error"] == "invalid_json"
    await ws.close()
    assert await drain_queue(bridge.ws_url, "sink", expected=1) == ["fine"]  # nothing else was queued
    assert "Traceback" not in bridge.log()


GOOD = {"id": "good-1", "from": "alice", "to": None, "taskId": "t-good", "intent": "agent.message"}
HOSTILE_BODIES: list[Any] = [
    '{"id":"deep-900","payload":' + nested(900) + "}",  # decodes, but breaks the encoder
    '{"id":"deep-5000","payload":' + nested(5000) + "}",  # does not even decode
    '{"id":"deep-300","payload":' + nested(300) + "}",  # decodes and encodes; still over the read bound
    "{not json",
    "[1, 2, 3]",
    '{"no":"id"}',
    '{"id": 42}',
    b"\xff\xfe\x00garbage",
    42,
    "",
]


def plant_hostile_rows(db: Path) -> None:
    """Hostile rows straight into every table, beside one good row each."""
    good = json.dumps(GOOD)
    with sqlite3.connect(db) as conn:
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM history").fetchone()[0]
        for body in HOSTILE_BODIES:
            seq += 1
            conn.execute(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", (seq, "mallory", None, "t-bad", "x", body)
            )
            conn.execute(
                "INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?)", (seq, "victim", f"bad-{seq}", 10, 0, body)
            )
        seq += 1
        history = "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)"
        queue = "INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?)"
        conn.execute(history, (seq, "alice", None, "t-good", "x", good))
        conn.execute(queue, (seq, "victim", "good-1", len(good), 0, good))
        conn.execute(queue, (seq + 1, "victim", "odd", "big", "x", good))  # bookkeeping columns wrong too
        tasks = [
            ("t-good", seq, seq, '["agent.message"]', '["alice"]', "2025-01-01T00:00:00.000Z", good),
            ("t-bad-intents", 1, 1, "{not json", "[]", None, good),
            ("t-bad-members", 2, 2, "[]", nested(2000), None, good),
            ("t-bad-body", 3, 3, "[]", "[]", None, '{"id":"x","payload":' + nested(900) + "}"),
            ("t-not-text", 4, 4, 7, b"\xff", 5, 6),
        ]
        conn.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?)", tasks)


READ_ROUTES = (
    "/health",
    "/",
    "/api/status",
    "/agents",
    "/history",
    "/history?limit=5",
    "/history?agentId=mallory",
    "/history?agentId=alice",
    "/history?taskId=t-bad",
    "/history?intent=x",
    "/tasks",
)


async def test_hostile_rows_never_break_a_read_route(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"AI_BRIDGE_DATA_DIR": str(data)}
    with run_bridge(tmp_path, env):
        pass  # creates the database and its schema
    plant_hostile_rows(data / "aibridge.db")
    with run_bridge(tmp_path, env) as bridge:  # a hostile row must not keep it from starting either
        with httpx.Client(base_url=bridge.url, timeout=15) as client:
            for route in READ_ROUTES:
                reply = client.get(route)
                assert reply.status_code == 200, (route, reply.text[:300])
                reply.json()
            assert [e["id"] for e in client.get("/history").json()["history"]] == ["good-1"]
            assert [e["id"] for e in client.get("/history?agentId=alice").json()["history"]] == ["good-1"]
            assert client.get("/history?agentId=mallory").json()["history"] == []
            tasks = client.get("/tasks").json()["tasks"]
            assert [t["taskId"] for t in tasks] == ["t-good"]
            assert tasks[0]["lastEnvelope"]["id"] == "good-1"
        # The recipient of the hostile queue rows registers (history snapshot included) and
        # gets the one good envelope; the socket stays usable.
        ws = await register(bridge.ws_url, "victim", ack=True)
        frame = await recv(ws)
        assert frame["type"] == "envelope" and frame["envelope"]["id"] == "good-1", frame
        await ws.send(json.dumps({"type": "ack", "id": "good-1"}))
        await ws.send(json.dumps({"type": "envelope", "envelope": {"to": "victim", "id": "after"}}))
        frame = await recv(ws)
        assert frame["type"] == "envelope" and frame["envelope"]["id"] == "after", frame
        await ws.close()
        with httpx.Client(base_url=bridge.url, timeout=15) as client:
            for route in READ_ROUTES:
                assert client.get(route).status_code == 200, route
        log = bridge.log()
    assert "Traceback" not in log
    assert "skipping unreadable history row" in log and "skipping unreadable task row" in log


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_depth_limit_is_a_setting(tmp_path: Path, store: str) -> None:
    env = {"AI_BRIDGE_MAX_JSON_DEPTH": "8", "AI_BRIDGE_STORE": store}
    with run_bridge(tmp_path, env) as bridge, httpx.Client(base_url=bridge.url, timeout=15) as client:
        assert post(client, "/send", body_nested(8, to="sink")).status_code == 202
        reply = post(client, "/send", body_nested(9, to="sink"))
        assert reply.status_code == 400 and reply.json()["limit"] == 8, reply.text


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_depth_check_agrees_with_a_recursive_count() -> None:
    """The fast check (bracket count, then level by level) against the obvious definition."""
    rng = random.Random(11)

    def shape(budget: int) -> Any:
        if budget <= 0 or rng.random() < 0.25:
            return rng.choice([0, "s[{", None, [], {}])
        if rng.random() < 0.5:
            return [shape(budget - 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": shape(budget - 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = shape(rng.randint(0, 12))
        text = json.dumps(value)
        depth = _depth(value)
        for limit in {1, 2, max(1, depth - 1), max(1, depth), depth + 1}:
            assert depth_exceeds(text, value, limit) == (depth > limit), (text, limit)
