"""Operators coming from the older Node bridge (issue 15): `.env`, its port variables, what
/api/status says, strict query strings, WebSocket paths, and replays that follow `registered`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from aibridge.client import BridgeClient
from aibridge.errors import ConfigError
from aibridge.server.config import BridgeConfig
from aibridge.server.envfile import environment_with_file
from support import BridgeProcess, free_port, run_bridge, stop_process, wait_http_ok


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """One memory-store bridge for the tests that only read or refuse."""
    with run_bridge(tmp_path_factory.mktemp("shared"), {"AI_BRIDGE_STORE": "memory"}) as bridge:
        yield bridge


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- .env ----------------------------------------------------------------------------------------


def test_a_token_only_in_dotenv_is_enforced_and_the_file_named_at_start(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# kept by an operator of the older bridge\nAI_BRIDGE_AUTH_TOKEN=fr$om-file\n"
    )
    with run_bridge(tmp_path) as bridge:
        assert httpx.get(f"{bridge.url}/agents").status_code == 401  # the older bridge's answer
        assert httpx.get(f"{bridge.url}/agents", headers=bearer("fr$om-file")).status_code == 200
        (start,) = [line for line in bridge.log().splitlines() if " starting: " in line]
        assert f"env_file={tmp_path / '.env'}" in start and "fr$om-file" not in bridge.log()


def test_the_real_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AI_BRIDGE_AUTH_TOKEN=from-file\nAI_BRIDGE_ENV=from-file\n")
    with run_bridge(tmp_path, {"AI_BRIDGE_AUTH_TOKEN": "from-env"}) as bridge:
        assert httpx.get(f"{bridge.url}/agents", headers=bearer("from-file")).status_code == 401
        status = httpx.get(f"{bridge.url}/api/status", headers=bearer("from-env"))
        assert status.json()["environment"] == "from-file"  # not set in the environment: the file's


def test_env_file_chooses_the_file_and_no_env_file_skips_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AI_BRIDGE_AUTH_TOKEN=from-dotenv\n")
    (tmp_path / "staging.env").write_text('AI_BRIDGE_ENV="staging"\n')
    with run_bridge(tmp_path, args=["--env-file", "staging.env"]) as bridge:
        assert httpx.get(f"{bridge.url}/api/status").json()["environment"] == "staging"  # no token
        assert f"env_file={tmp_path / 'staging.env'}" in bridge.log()
    with run_bridge(tmp_path, args=["--no-env-file"]) as bridge:
        assert httpx.get(f"{bridge.url}/agents").status_code == 200
        assert "env_file=None" in bridge.log()


def serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``aibridge serve`` expecting it to refuse to start: its one stderr line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    full_env.update({"AI_BRIDGE_METRICS_PORT": "0", "AI_BRIDGE_STORE": "memory", **(env or {})})
    result = subprocess.run(
        [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(free_port()), *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_missing_or_broken_env_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert serve_fails(tmp_path, "--env-file", "nope.env") == "error: --env-file nope.env: no such file"
    (tmp_path / ".env").write_text("AI_BRIDGE_ENV=ok\nthis line is not an assignment\n")
    line = serve_fails(tmp_path)
    assert line.startswith("error: .env:2: cannot parse 'this line is not an assignment'"), line
    assert "contradict" in serve_fails(tmp_path, "--env-file", ".env", "--no-env-file")


def test_environment_with_file_keeps_dollars_and_skips_a_missing_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert environment_with_file({"A": "1"}) == ({"A": "1"}, None)
    (tmp_path / ".env").write_text("TOKEN=a$HOME${HOME}b\nA=file\n")
    merged, source = environment_with_file({"A": "env"})
    assert merged == {"TOKEN": "a$HOME${HOME}b", "A": "env"} and source == str(tmp_path / ".env")


# -- the older bridge's two ports --------------------------------------------------------------


def serve_without_port(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    full_env.update({"AI_BRIDGE_METRICS_PORT": "0", "AI_BRIDGE_STORE": "memory", **env})
    with (tmp_path / "serve.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1"],
            cwd=tmp_path,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("which", ["AI_BRIDGE_PORT", "AI_BRIDGE_HTTP_PORT"])
def test_an_old_port_variable_is_the_port_with_a_deprecation_line(tmp_path: Path, which: str) -> None:
    port = free_port()
    process = serve_without_port(tmp_path, {which: str(port)})
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", process=process)
    finally:
        stop_process(process)
    warnings = [line for line in (tmp_path / "serve.log").read_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and f"{which}={port} is deprecated" in warnings[0] and "PORT" in warnings[0]


async def test_both_old_ports_differ_the_websocket_one_serves_both(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    process = serve_without_port(
        tmp_path, {"AI_BRIDGE_PORT": str(ws_port), "AI_BRIDGE_HTTP_PORT": str(http_port)}
    )
    try:
        await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{ws_port}/health", process=process)
        # A client of the older bridge: ws://localhost:4567 style, path /, no /ws.
        async with websockets.connect(f"ws://127.0.0.1:{ws_port}") as ws:
            await ws.send(json.dumps({"type": "register", "clientId": "old-client"}))
            assert json.loads(await ws.recv())["type"] == "registered"
    finally:
        stop_process(process)
    log = (tmp_path / "serve.log").read_text()
    (warning,) = [line for line in log.splitlines() if " WARNING " in line]
    assert "share one port" in warning and f"listening on {ws_port} (AI_BRIDGE_PORT)" in warning


def test_port_precedence_and_the_alias_messages() -> None:
    config = BridgeConfig.from_env({"PORT": "9000", "AI_BRIDGE_PORT": "4567"})
    assert config.port == 9000 and config.notices == (
        "AI_BRIDGE_PORT=4567 is deprecated and ignored: PORT=9000 is set",
    )
    config = BridgeConfig.from_env({"AI_BRIDGE_PORT": "4567"}, port=7000)
    assert config.port == 7000 and "--port 7000 is given" in config.notices[0]
    assert BridgeConfig.from_env({"AI_BRIDGE_PORT": "4567", "AI_BRIDGE_HTTP_PORT": "4567"}).port == 4567
    assert BridgeConfig.from_env({}).notices == ()
    with pytest.raises(ConfigError, match="AI_BRIDGE_HTTP_PORT: expected an integer"):
        BridgeConfig.from_env({"AI_BRIDGE_HTTP_PORT": "http"})
    assert "notices" not in BridgeConfig.from_env({"AI_BRIDGE_PORT": "1"}).redacted()


# -- /api/status, query strings, WebSocket paths ---------------------------------------------


def test_api_status_environment_is_ai_bridge_env_and_the_store_is_under_storage(tmp_path: Path) -> None:
    with run_bridge(tmp_path) as bridge:
        status = httpx.get(f"{bridge.url}/api/status").json()
        assert status["environment"] == "production" and status["storage"]["store"] == "sqlite"
    with run_bridge(tmp_path, {"AI_BRIDGE_ENV": "staging", "AI_BRIDGE_STORE": "memory"}) as bridge:
        status = httpx.get(f"{bridge.url}/api/status").json()
        assert status["environment"] == "staging" and status["storage"]["store"] == "memory"


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("GET", "/history?intent[]=x", "'intent[]'"),
        ("GET", "/history?intent=x&intent=y", "'intent' (2 times)"),
        ("GET", "/history?limit=1&agentid=bob", "'agentid'"),
        ("GET", "/agents?verbose=1", "'verbose'"),
        ("GET", "/tasks?limit=5", "'limit'"),
        ("GET", "/api/status?x", "'x'"),
        ("GET", "/?a=1&b=2", "'a', 'b'"),
        ("POST", "/send?to=bob", "'to'"),
        ("POST", "/broadcast?x=1", "'x'"),
    ],
)
def test_unknown_or_repeated_query_parameters_are_400_naming_them(
    shared: BridgeProcess, method: str, path: str, named: str
) -> None:
    response = httpx.request(method, f"{shared.url}{path}", json={"to": "bob"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert named in body["error"] and body["status"] == 400 and body["parameters"]


def test_known_query_parameters_still_filter(shared: BridgeProcess) -> None:
    for intent in ("qa", "qb", "qa"):
        httpx.post(f"{shared.url}/send", json={"to": "qbob", "intent": intent}).raise_for_status()
    got = httpx.get(f"{shared.url}/history", params={"intent": "qa", "limit": 5, "agentId": "qbob"})
    assert got.status_code == 200 and [e["intent"] for e in got.json()["history"]] == ["qa", "qa"]
    assert httpx.get(f"{shared.url}/health?probe=1").status_code == 200  # health checks may tag


async def test_a_websocket_handshake_on_another_path_is_404(shared: BridgeProcess) -> None:
    for path in ("/socket", "/ws/", "/agents"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{shared.port}{path}")
        assert refused.value.response.status_code == 404
        assert b"no WebSocket endpoint" in refused.value.response.body
    for path in ("/ws", "/"):
        async with websockets.connect(f"ws://127.0.0.1:{shared.port}{path}"):
            pass


# -- replays follow `registered` ------------------------------------------------------------


async def test_replayed_envelopes_follow_registered_and_the_client_keeps_them(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_STORE": "memory"}) as bridge:
        async with httpx.AsyncClient() as http:
            for n in range(5):
                sent = await http.post(f"{bridge.url}/send", json={"to": "late", "payload": {"n": n}})
                assert sent.json()["status"] == "queued"
            # The protocol as documented: `registered` first, then the replay, in order.
            async with websockets.connect(bridge.ws_url) as ws:
                await ws.send(json.dumps({"type": "register", "clientId": "peek", "ack": True}))
                assert json.loads(await ws.recv())["type"] == "registered"
            for n in range(3):
                await http.post(f"{bridge.url}/send", json={"to": "peek", "payload": {"n": n}})
            async with websockets.connect(bridge.ws_url) as ws:
                await ws.send(json.dumps({"type": "register", "clientId": "peek", "ack": True}))
                frames = [json.loads(await ws.recv()) for _ in range(4)]
            assert [f["type"] for f in frames] == ["registered", "envelope", "envelope", "envelope"]
            # aibridge.client, fire-and-forget, reading only after other work: nothing lost.
            client = BridgeClient(bridge.ws_url, "late")
            await client.connect()
            await http.get(f"{bridge.url}/agents")
            got = [(await client.receive(timeout=5))["payload"]["n"] for _ in range(5)]
            await client.close()
        assert got == [0, 1, 2, 3, 4]


async def test_the_client_keeps_envelopes_sent_before_registered() -> None:
    """The older bridge's order: the replay first (as ["env", e]), then `registered`, one write."""
    replay = [{"id": f"e{n}", "payload": {"n": n}} for n in range(3)]

    async def older_bridge(ws: Any) -> None:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "register"
        frames = [json.dumps(["env", e]) for e in replay]
        frames.append(json.dumps({"type": "registered", "client": {"id": frame["clientId"]}, "history": []}))
        for text in frames:
            await ws.send(text)
        await ws.wait_closed()

    async with websockets.serve(older_bridge, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = BridgeClient(f"ws://127.0.0.1:{port}", "old-agent", reconnect=False)
        assert (await client.connect())["id"] == "old-agent"
        got = [await client.receive(timeout=5) for _ in replay]
        await client.close()
    assert got == replay


# -- logs and /health ---------------------------------------------------------------------


async def test_register_logs_the_agent_and_uvicorn_starts_and_stops_once(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_STORE": "memory"}) as bridge:
        client = BridgeClient(bridge.ws_url, "tester")
        await client.connect()
        await client.close()
        deadline = time.monotonic() + 10
        while "WS disconnect agent=tester" not in bridge.log():
            assert time.monotonic() < deadline, bridge.log()
            await asyncio.sleep(0.05)
    log = bridge.log()
    assert "WS register agent=tester role=agent peer=127.0.0.1:" in log
    assert (
        log.index("WS connect agent=-")
        < log.index("WS register agent=tester")
        < log.index("WS disconnect agent=tester")
    )
    assert "metrics on http://127.0.0.1:" in log  # the metrics listener was on
    for line in ("Started server process", "Shutting down", "Finished server process"):
        assert log.count(line) == 1, log


def test_health_timestamp_is_the_time_of_the_answer(shared: BridgeProcess) -> None:
    bridge = shared
    with httpx.Client() as http:
        end = time.time() + 1.2  # across a second boundary, where a per-second cache lags most
        seen = set()
        while time.time() < end:
            before = time.time()
            stamp = http.get(f"{bridge.url}/health").json()["timestamp"]
            after = time.time()
            answered = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            assert before - 0.002 <= answered <= after + 0.002, (before, stamp, after)
            seen.add(stamp)
        assert len(seen) > 2


async def test_a_burst_over_the_socket_budget_sees_rate_limited_as_documented(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_STORE": "memory", "AI_BRIDGE_WS_RATE_MAX": "3"}) as bridge:
        async with websockets.connect(bridge.ws_url) as ws:
            await ws.send(json.dumps({"type": "register", "clientId": "burst", "confirm": True}))
            assert json.loads(await ws.recv())["type"] == "registered"
            ids = [f"burst-{n}" for n in range(10)]
            for envelope_id in ids:  # one burst, faster than 3/s refills
                await ws.send(json.dumps({"type": "envelope", "envelope": {"id": envelope_id, "to": "x"}}))
            replies = [json.loads(await ws.recv()) for _ in ids]  # confirm: one reply per envelope
        refused = [r for r in replies if r["type"] == "error"]
        accepted = {r["id"] for r in replies if r["type"] == "accepted"}
        assert refused and accepted and all(r["error"] == "rate_limited" for r in refused)
        assert refused[0]["message"] == "over 3 envelopes/s on this connection; envelope not accepted"
        assert {r["id"] for r in refused} | accepted == set(ids)
        stored = {e["id"] for e in httpx.get(f"{bridge.url}/history").json()["history"]}
        assert stored == accepted  # a refused envelope is not stored
