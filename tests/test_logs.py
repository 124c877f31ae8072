"""Access, WebSocket and startup log lines of a real app (tests/obs_app.py) in text and JSON."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import websockets

from aibridge import __version__
from obs_app import ObsApp, run_obs_app

CANARY = "PAYLOAD-CANARY-7f3e"
TOKEN = "s3cret-TOKEN-value"


def chat(app: ObsApp) -> None:
    """Traffic that carries the canary in an HTTP body and in WebSocket frames."""
    httpx.get(app.url + "/items/7", headers={"Fly-Client-IP": "203.0.113.9"})
    httpx.get(app.url + "/no/such/page")
    httpx.post(app.url + "/echo", json={"payload": CANARY})

    async def agent() -> None:
        async with websockets.connect(app.url.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:
            await ws.send(json.dumps({"type": "envelope", "payload": CANARY}))
            await ws.recv()
            await ws.send(json.dumps({"type": "bye"}))
            await ws.wait_closed()

    asyncio.run(agent())


def stopped_log(app: ObsApp) -> str:
    """The complete log: SIGTERM, wait for exit (the listener flushes on the way out)."""
    app.process.send_signal(signal.SIGTERM)
    assert app.process.wait(timeout=10) == 0
    return app.log()


def test_text_lines_for_requests_websockets_and_startup(tmp_path: Path) -> None:
    with run_obs_app(tmp_path, {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on"}) as app:
        chat(app)
        log = stopped_log(app)
    assert re.search(
        r" INFO aibridge\.access: GET /items/\{item_id\} 200 \d+\.\dms client=203\.0\.113\.9$", log, re.M
    )
    assert re.search(r"aibridge\.access: GET <unmatched> 404 \d+\.\dms client=127\.0\.0\.1$", log, re.M)
    assert re.search(r"aibridge\.access: POST /echo 201 ", log)
    assert re.search(r"aibridge\.ws: WS connect agent=tester client=127\.0\.0\.1$", log, re.M)
    assert re.search(
        r"aibridge\.ws: WS disconnect agent=tester client=127\.0\.0\.1 code=1000 after [\d.]+s$", log, re.M
    )
    assert "connection open" not in log  # uvicorn's bare line, superseded by ours
    assert '"WebSocket /ws' not in log  # uvicorn's [accepted] line repeats our WS connect line
    assert f"aibridge: aibridge {__version__} starting: " in log
    assert "auth_token=***" in log
    assert TOKEN not in log
    assert CANARY not in log


def test_json_format_is_one_object_per_line(tmp_path: Path) -> None:
    env = {
        "AI_BRIDGE_LOG_FORMAT": "json",
        "AI_BRIDGE_AUTH_TOKEN": TOKEN,
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on",
    }
    with run_obs_app(tmp_path, env) as app:
        chat(app)
        log = stopped_log(app)
    lines: list[dict[str, Any]] = [json.loads(line) for line in log.splitlines()]  # every line parses
    assert all({"time", "level", "logger", "msg"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "aibridge.access"]
    item = next(line for line in access if line["route"] == "/items/{item_id}")
    assert (item["method"], item["status"], item["client"]) == ("GET", 200, "203.0.113.9")
    assert isinstance(item["duration_ms"], float)
    startup = next(line for line in lines if line["logger"] == "aibridge" and "starting" in line["msg"])
    assert startup["version"] == __version__
    assert startup["config"]["auth_token"] == "***"
    assert startup["config"]["log_format"] == "json"
    closed = next(line for line in lines if line.get("event") == "ws_disconnect")
    assert (closed["agent"], closed["code"]) == ("tester", 1000)
    assert TOKEN not in log
    assert CANARY not in log


def test_level_warning_silences_access_lines(tmp_path: Path) -> None:
    with run_obs_app(tmp_path, {"AI_BRIDGE_LOG_LEVEL": "warning"}) as app:
        chat(app)
        log = stopped_log(app)
    assert "aibridge.access" not in log
    assert "aibridge.ws" not in log
    assert "starting" not in log
