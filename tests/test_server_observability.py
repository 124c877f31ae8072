"""Metrics, logs and limits of the real ``aibridge serve`` (issue 3), over real HTTP and WebSockets.

Every test starts the bridge with ``run_bridge`` (uvicorn on free loopback ports, the metrics
listener on its own port) and checks what a client, Prometheus or a log shipper would see.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from aibridge import __version__
from support import require_binary, run_bridge, scrape, value

TOKEN = "tok-" + uuid.uuid4().hex
ORIGIN = "https://app.example"


def wait_until(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")


async def recv(ws: websockets.ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def agent(url: str, client_id: str, **register: Any) -> websockets.ClientConnection:
    ws = await websockets.connect(url, compression=None, open_timeout=5)
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **register}))
    while (await recv(ws))["type"] != "registered":
        pass
    return ws


async def envelope(ws: websockets.ClientConnection, **fields: Any) -> None:
    await ws.send(json.dumps({"type": "envelope", "envelope": {"intent": "test", **fields}}))


@pytest.mark.prometheus
def test_real_scrape_counts_requests_envelopes_and_state_and_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    with run_bridge(tmp_path) as bridge:
        for path in ("/history?limit=1", "/history?limit=2", "/agents", "/no/such/path"):
            httpx.get(bridge.url + path)
        sent = httpx.post(bridge.url + "/send", json={"to": "offline-http", "payload": {"n": 1}})
        assert sent.status_code == 202

        async def traffic() -> None:
            sender = await agent(bridge.ws_url, "m-sender", confirm=True)
            receiver = await agent(bridge.ws_url, "m-receiver")
            statuses = []
            for to in ("m-receiver", "m-receiver", "offline-ws", None):
                await envelope(sender, **({"to": to} if to else {}))
                while (frame := await recv(sender))["type"] != "accepted":
                    pass
                statuses.append(frame["status"])
            assert statuses == ["delivered", "delivered", "queued", "delivered"]
            await sender.send(json.dumps({"type": "envelope", "envelope": {"to": 5}}))  # wrong type
            assert (await recv(sender))["type"] == "error"
            samples = scrape(bridge.metrics_url)
            assert value(samples, "aibridge_websocket_connections") == 2
            await sender.close()
            await receiver.close()

        asyncio.run(traffic())
        samples = wait_until(
            lambda: (
                (s := scrape(bridge.metrics_url)) and value(s, "aibridge_websocket_connections") == 0 and s
            ),
            what="both sockets counted closed",
        )
        text = httpx.get(bridge.metrics_url).text
        public = httpx.get(bridge.url + "/metrics")

    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
    assert public.status_code == 404, "metrics must not be served on the public port"

    requests = "aibridge_http_requests_total"
    assert value(samples, requests, method="GET", route="/history", status="2xx") == 2
    assert value(samples, requests, method="GET", route="/agents", status="2xx") == 1
    assert value(samples, requests, method="GET", route="<unmatched>", status="4xx") == 1
    assert value(samples, requests, method="POST", route="/send", status="2xx") == 1
    assert not any("limit=" in dict(labels).get("route", "") for _, labels in samples)
    assert (
        value(
            samples, "aibridge_http_request_duration_seconds_bucket", method="GET", route="/agents", le="0.5"
        )
        == 1
    )
    envelopes = "aibridge_envelopes_total"
    assert value(samples, envelopes, outcome="delivered") == 2
    assert value(samples, envelopes, outcome="queued") == 2  # one over HTTP, one over the socket
    assert value(samples, envelopes, outcome="broadcast") == 1
    assert value(samples, envelopes, outcome="rejected") == 1
    assert value(samples, "aibridge_websocket_connections_total") == 2
    assert value(samples, "aibridge_queue_depth") == 2
    assert value(samples, "aibridge_queues") == 2
    assert (value(samples, "aibridge_queued_bytes") or 0) > 0
    assert value(samples, "aibridge_history_size") == 5
    assert (value(samples, "aibridge_errors_total", kind="invalid_field") or 0) >= 1
    startup = value(samples, "aibridge_startup_duration_seconds")
    assert startup is not None and 0 < startup < 30
    assert value(samples, "aibridge_build_info", version=__version__) == 1
    assert (value(samples, "process_resident_memory_bytes") or 0) > 10 * 1024 * 1024


def test_memory_limit_is_read_from_the_cgroup_dir_and_token_is_redacted(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("536870912\n")
    env = {"AI_BRIDGE_CGROUP_DIR": str(cgroup), "AI_BRIDGE_AUTH_TOKEN": TOKEN}
    with run_bridge(tmp_path, env) as bridge:
        samples = scrape(bridge.metrics_url)
        assert value(samples, "aibridge_memory_limit_bytes", source="cgroup") == 512 * 1024 * 1024
        (cgroup / "memory.max").write_text("max\n")  # read at scrape time: unlimited now
        samples = scrape(bridge.metrics_url)
        assert value(samples, "aibridge_memory_limit_bytes", source="cgroup") is None
        assert value(samples, "aibridge_memory_limit_bytes", source="meminfo")  # the VM's MemTotal
        log = bridge.log()
    startup = next(line for line in log.splitlines() if " starting: " in line)
    assert f"aibridge {__version__} starting:" in startup and "auth_token=***" in startup
    assert "rate_max=200" in startup and "metrics_port=" in startup
    assert TOKEN not in log


def test_http_rate_limit_per_fly_client_ip_with_cors_and_retry_after(tmp_path: Path) -> None:
    env = {
        "AI_BRIDGE_RATE_WINDOW_MS": "1000",
        "AI_BRIDGE_RATE_MAX": "3",
        "AI_BRIDGE_CORS_ORIGINS": ORIGIN,
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on",
    }
    with run_bridge(tmp_path, env) as bridge, httpx.Client(base_url=bridge.url) as client:
        alice = {"Fly-Client-IP": "203.0.113.7", "Origin": ORIGIN}
        answers = [client.get("/agents", headers=alice) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited = answers[3]
        assert limited.json() == {"error": "Too Many Requests", "status": 429}
        assert limited.headers["retry-after"] == "1"
        assert limited.headers["ratelimit-limit"] == "3"
        assert limited.headers["ratelimit-remaining"] == "0"
        assert limited.headers["ratelimit-policy"] == "3;w=1"
        assert 0 <= int(limited.headers["ratelimit-reset"]) <= 1
        assert limited.headers["access-control-allow-origin"] == ORIGIN
        assert "origin" in limited.headers["vary"].lower()
        # Another client behind Fly's proxy has its own budget; /health is never limited.
        assert client.get("/agents", headers={"Fly-Client-IP": "198.51.100.2"}).status_code == 200
        assert {client.get("/health", headers=alice).status_code for _ in range(20)} == {200}
        # The window passes and alice may come back.
        wait_until(lambda: client.get("/agents", headers=alice).status_code == 200, 5, "a new window")
        samples = scrape(bridge.metrics_url)
    assert (value(samples, "aibridge_errors_total", kind="rate_limited") or 0) >= 1
    assert (
        value(samples, "aibridge_http_requests_total", method="GET", route="/agents", status="4xx") or 0
    ) >= 1
    health = value(samples, "aibridge_http_requests_total", method="GET", route="/health", status="2xx")
    assert (health or 0) >= 20


def test_websocket_envelope_budget_answers_error_frames_and_keeps_the_socket(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_WS_RATE_MAX": "5"}) as bridge:

        async def flood() -> tuple[int, int, float, dict[str, Any]]:
            ws = await agent(bridge.ws_url, "budget", confirm=True)
            start = time.monotonic()
            for i in range(30):
                await envelope(ws, to="nobody", id=f"env-{i}")
            accepted = limited = 0
            while accepted + limited < 30:
                frame = await recv(ws)
                if frame["type"] == "accepted":
                    accepted += 1
                elif frame.get("error") == "rate_limited":
                    assert frame["id"].startswith("env-")
                    limited += 1
            elapsed = time.monotonic() - start
            await ws.send(json.dumps({"type": "nonsense"}))  # still open: it answers
            still_open = await recv(ws)
            await ws.close()
            return accepted, limited, elapsed, still_open

        accepted, limited, elapsed, still_open = asyncio.run(flood())
        samples = scrape(bridge.metrics_url)
    assert still_open["error"] == "unknown_type"
    assert 5 <= accepted <= 5 + 5 * elapsed + 1
    assert limited == 30 - accepted and limited >= 1
    assert value(samples, "aibridge_envelopes_total", outcome="rejected") == limited
    assert value(samples, "aibridge_envelopes_total", outcome="queued") == accepted


def test_connection_cap_answers_503_but_health_stays_up(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_MAX_CONNECTIONS": "2", "AI_BRIDGE_CORS_ORIGINS": ORIGIN}
    with run_bridge(tmp_path, env) as bridge:

        async def fill() -> None:
            held = [await agent(bridge.ws_url, f"cap-{i}") for i in range(2)]
            async with httpx.AsyncClient(base_url=bridge.url) as client:
                full = await client.get("/agents", headers={"Origin": ORIGIN})
                assert full.status_code == 503
                assert full.json()["status"] == 503 and "limit of 2" in full.json()["error"]
                assert full.headers["retry-after"] == "1"
                assert full.headers["access-control-allow-origin"] == ORIGIN
                with pytest.raises(InvalidStatus) as refused:
                    await websockets.connect(bridge.ws_url, open_timeout=5)
                assert refused.value.response.status_code == 503
                assert (await client.get("/health")).status_code == 200
                await held[0].close()
                deadline = time.monotonic() + 10
                while (await client.get("/agents")).status_code != 200:
                    assert time.monotonic() < deadline, "a freed slot was never reused"
                    await asyncio.sleep(0.02)
            await held[1].close()

        asyncio.run(fill())
        samples = scrape(bridge.metrics_url)
    assert (value(samples, "aibridge_errors_total", kind="overloaded") or 0) >= 2


def test_json_log_lines_one_per_request_without_payload_query_or_token(tmp_path: Path) -> None:
    canary = "payload-canary-" + uuid.uuid4().hex
    env = {
        "AI_BRIDGE_LOG_FORMAT": "json",
        "AI_BRIDGE_AUTH_TOKEN": TOKEN,
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on",
    }
    with run_bridge(tmp_path, env) as bridge:
        auth = {"Authorization": f"Bearer {TOKEN}", "Fly-Client-IP": "192.0.2.44"}
        for _ in range(5):
            assert httpx.get(bridge.url + "/history?limit=3", headers=auth).status_code == 200
        assert httpx.get(bridge.url + "/history").status_code == 401

        async def talk() -> None:
            ws = await websockets.connect(f"{bridge.ws_url}?token={TOKEN}", compression=None)
            await ws.send(json.dumps({"type": "register", "clientId": "logged", "confirm": True}))
            assert (await recv(ws))["type"] == "registered"
            await envelope(ws, to="someone", payload={"secret": canary})
            assert (await recv(ws))["type"] == "accepted"
            await ws.close()
            with pytest.raises(InvalidStatus):  # a wrong token in the query: refused, not logged
                await websockets.connect(f"{bridge.ws_url}?token={TOKEN}-wrong", open_timeout=5)

        asyncio.run(talk())
        log = wait_until(
            lambda: '"ws_disconnect"' in (text := bridge.log()) and '/ws\\" 401' in text and text,
            what="the disconnect and refusal lines",
        )

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line parses
    assert all({"time", "level", "logger", "msg"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "aibridge.access" and line["route"] == "/history"]
    assert [(a["status"], a["method"]) for a in access] == [(200, "GET")] * 5 + [(401, "GET")]
    assert access[0]["client"] == "192.0.2.44" and isinstance(access[0]["duration_ms"], float)
    ws_lines = [line for line in lines if line["logger"] == "aibridge.ws"]
    assert [w["event"] for w in ws_lines] == ["ws_connect", "ws_register", "ws_disconnect"]
    assert ws_lines[1]["agent"] == "logged" and ws_lines[1]["role"] == "agent"
    assert ws_lines[2]["agent"] == "logged" and ws_lines[2]["code"] == 1000
    startup = next(line for line in lines if "config" in line)
    assert startup["version"] == __version__ and startup["config"]["auth_token"] == "***"
    assert TOKEN not in log and canary not in log and "limit=3" not in log
    # uvicorn's WebSocket lines: the refusal stays (query cut), repeats and spurious errors go.
    refusals = [line["msg"] for line in lines if '"WebSocket /ws' in line["msg"]]
    assert len(refusals) == 1 and refusals[0].endswith('"WebSocket /ws" 401'), refusals
    assert "connection open" not in log and "[accepted]" not in log and "connection rejected" not in log
    assert [line for line in lines if line["level"] == "error"] == []
