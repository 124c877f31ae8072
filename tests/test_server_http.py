"""The HTTP API against a real ``aibridge serve``: shapes, auth, CORS and JSON errors everywhere."""

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

from support import BridgeProcess, built_app, run_bridge

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    with run_bridge(tmp_path_factory.mktemp("bridge"), {"AI_BRIDGE_HISTORY_LIMIT": "50"}) as process:
        yield process


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_CORS_ORIGINS": "https://app.example,https://b.example"}
    with run_bridge(tmp_path_factory.mktemp("secured"), env) as process:
        yield process


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_json_error(response: httpx.Response, status: int, words: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert words in body["error"]
    assert "Traceback" not in response.text
    return body


def test_health_shape(shared: BridgeProcess) -> None:
    body = httpx.get(f"{shared.url}/health").json()
    assert body["status"] == "ok"
    assert body["port"] == shared.port  # the bound port, not a configured one (B12)
    for key in ("timestamp", "uptime", "version", "connectedClients", "historySize", "queuedMessages"):
        assert key in body


def test_b13_health_is_public_other_routes_need_the_token(secured: BridgeProcess) -> None:
    assert httpx.get(f"{secured.url}/health").status_code == 200
    for path in ("/agents", "/history", "/tasks", "/api/status"):
        body = assert_json_error(httpx.get(f"{secured.url}{path}"), 401)
        assert body["error"] == "unauthorized"
        assert httpx.get(f"{secured.url}{path}", headers=AUTH).status_code == 200
    assert httpx.get(f"{secured.url}/agents", headers={"Authorization": f"BEARER {TOKEN}"}).status_code == 200
    assert httpx.get(f"{secured.url}/agents", headers={"Authorization": TOKEN}).status_code == 401
    assert (
        httpx.get(f"{secured.url}/agents", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    )
    assert httpx.get(f"{secured.url}/agents", headers={"Authorization": "Basic abc"}).status_code == 401


def test_b14_auth_is_checked_before_the_body_is_read(secured: BridgeProcess) -> None:
    response = httpx.post(f"{secured.url}/send", content=b"{not json", headers=JSON)
    assert_json_error(response, 401)


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("GET", "/no/such/route", {}, 404, "Not Found"),
        ("PUT", "/send", {}, 405, "Method Not Allowed"),
        ("DELETE", "/health", {}, 405, "Method Not Allowed"),
        ("POST", "/send", {"content": b"{oops", "headers": JSON}, 400, "not valid JSON"),
        ("POST", "/send", {"content": b"[1,2]", "headers": JSON}, 400, "JSON object"),
        ("POST", "/broadcast", {"content": b"", "headers": JSON}, 400, "JSON object"),
        ("POST", "/send", {"content": b'{"to": "x"}'}, 415, "must be application/json, got none"),
        ("POST", "/send", {"json": {"payload": 1}}, 400, "Recipient `to` is required"),
        ("POST", "/send", {"json": {"to": 5}}, 422, "envelope.to"),
        ("POST", "/send", {"json": {"to": "x", "tools": "hammer"}}, 422, "envelope.tools"),
        ("POST", "/broadcast", {"json": {"to": "x"}}, 400, "use POST /send"),
        ("POST", "/send", {"json": {"to": "x", "payload": "z" * 400_000}}, 413, ""),
        ("GET", "/history?limit=0", {}, 400, "between 1 and 50"),
        ("GET", "/history?limit=-3", {}, 400, "between 1 and 50"),
        ("GET", "/history?limit=51", {}, 400, "between 1 and 50"),
        ("GET", "/history?limit=abc", {}, 400, "Validation failed"),
    ],
)
def test_b15_every_error_is_json_with_a_message(
    shared: BridgeProcess, method: str, path: str, kwargs: dict[str, Any], status: int, words: str
) -> None:
    assert_json_error(httpx.request(method, f"{shared.url}{path}", **kwargs), status, words)


async def test_b15_send_says_delivered_or_queued(shared: BridgeProcess) -> None:
    online = uid("online")
    async with websockets.connect(shared.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "register", "clientId": online}))
        assert json.loads(await ws.recv())["type"] == "registered"
        async with httpx.AsyncClient() as client:
            sent = await client.post(f"{shared.url}/send", json={"to": online, "payload": {"a": 1}})
            assert sent.status_code == 202
            assert sent.json()["status"] == "delivered"
            assert sent.json()["envelope"]["from"] == "api"
            delivered = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert delivered["envelope"]["id"] == sent.json()["envelope"]["id"]
            queued = await client.post(f"{shared.url}/send", json={"to": uid("offline"), "from": "ops"})
            assert queued.status_code == 202
            assert queued.json()["status"] == "queued"
            assert queued.json()["envelope"]["from"] == "ops"
            cast = await client.post(f"{shared.url}/broadcast", json={"payload": "all"})
            assert cast.status_code == 202
            assert cast.json()["recipients"] >= 1
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["envelope"]["payload"] == "all"


def test_b16_history_filters_and_limit(shared: BridgeProcess) -> None:
    task, agent = uid("task"), uid("agent")
    for i in range(4):
        body = {"to": agent, "taskId": task, "intent": "plan" if i % 2 else "act", "payload": i}
        assert httpx.post(f"{shared.url}/send", json=body).status_code == 202
    history = httpx.get(f"{shared.url}/history", params={"taskId": task}).json()["history"]
    assert [e["payload"] for e in history] == [0, 1, 2, 3]
    last_two = httpx.get(f"{shared.url}/history", params={"agentId": agent, "limit": 2}).json()["history"]
    assert [e["payload"] for e in last_two] == [2, 3]
    plans = httpx.get(f"{shared.url}/history", params={"taskId": task, "intent": "plan"}).json()["history"]
    assert [e["payload"] for e in plans] == [1, 3]


def test_b16_tasks_survive_the_history_ring_rolling_over(shared: BridgeProcess) -> None:
    task = uid("long-task")
    httpx.post(f"{shared.url}/send", json={"to": "planner", "taskId": task, "intent": "start"})
    for i in range(60):  # history limit is 50 on this bridge
        httpx.post(f"{shared.url}/send", json={"to": "filler", "payload": i})
    httpx.post(
        f"{shared.url}/send", json={"to": "worker", "taskId": task, "intent": "finish", "from": "planner"}
    )
    tasks = {t["taskId"]: t for t in httpx.get(f"{shared.url}/tasks").json()["tasks"]}
    summary = tasks[task]
    assert summary["intents"] == ["start", "finish"]
    assert summary["participants"] == ["api", "planner", "worker"]
    assert summary["lastEnvelope"]["intent"] == "finish"
    assert summary["lastUpdate"] == summary["lastEnvelope"]["timestamp"]


def test_b16_cors_echoes_allowed_origins_with_vary_and_refuses_others(secured: BridgeProcess) -> None:
    allowed = httpx.get(f"{secured.url}/agents", headers={**AUTH, "Origin": "https://b.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://b.example"
    assert "Origin" in allowed.headers["vary"]
    refused = httpx.get(f"{secured.url}/agents", headers={**AUTH, "Origin": "https://evil.example"})
    assert_json_error(refused, 403, "origin not allowed")
    assert "access-control-allow-origin" not in refused.headers
    denied = httpx.get(f"{secured.url}/agents", headers={"Origin": "https://app.example"})
    assert_json_error(denied, 401)
    assert denied.headers["access-control-allow-origin"] == "https://app.example"
    preflight = httpx.options(
        f"{secured.url}/send",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_api_status_and_agents_shapes(shared: BridgeProcess) -> None:
    status = httpx.get(f"{shared.url}/api/status").json()
    assert status["service"] == "AI Bridge Server"
    assert status["status"] == "healthy"
    assert set(status["performance"]) >= {
        "connectedClients",
        "messagesProcessed",
        "messagesPerSecond",
        "queuedMessages",
        "errors",
        "lastError",
    }
    assert status["websocket"]["port"] == status["http"]["port"] == shared.port
    assert status["storage"]["historyLimit"] == 50
    assert status["performance"]["messagesProcessed"] >= 0


def test_openapi_schema_is_served(shared: BridgeProcess) -> None:
    schema = httpx.get(f"{shared.url}/schema/openapi.json").json()
    assert {"/health", "/send", "/broadcast", "/history", "/tasks", "/agents"} <= set(schema["paths"])


async def test_b11_http_and_websocket_share_one_port(tmp_path: Path) -> None:
    with run_bridge(tmp_path) as bridge:
        async with websockets.connect(f"ws://127.0.0.1:{bridge.port}/ws", compression=None) as ws:
            await ws.send(json.dumps({"type": "register", "clientId": "one-port"}))
            assert json.loads(await ws.recv())["type"] == "registered"
            agents = httpx.get(f"http://127.0.0.1:{bridge.port}/agents").json()["agents"]
            assert [a["id"] for a in agents] == ["one-port"]
            assert agents[0]["role"] == "agent"
            assert agents[0]["lastSeen"].endswith("Z")


def test_the_app_loads_no_pydantic_or_attrs_plugin() -> None:
    # Litestar adds them whenever the packages are installed (pydantic is: typer needs it); no
    # route uses them, and they held 2.6 MiB of the idle RSS budget.
    app = built_app()
    plugin_modules = {"litestar.plugins.pydantic", "litestar.plugins.attrs", "pydantic_extra_types"}
    assert not set(app["modules"]) & plugin_modules
    assert "MsgspecDIPlugin" in app["plugins"]
    assert not [name for name in app["plugins"] if "Pydantic" in name or "Attrs" in name], app["plugins"]
