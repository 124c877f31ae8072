"""Rate limit, WebSocket budget and connection cap, against a real app on loopback (tests/obs_app.py)."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import websockets
from litestar import Litestar
from litestar.stores.memory import MemoryStore

from aibridge.server.config import BridgeConfig
from aibridge.server.limits import (
    UNLIMITED,
    TokenBucket,
    client_ip,
    prune_rate_limits,
    rate_limit_config,
    ws_bucket,
)
from obs_app import run_obs_app

ORIGIN = "https://app.example"


def test_429_carries_retry_after_ratelimit_and_cors_headers(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_RATE_MAX": "3", "AI_BRIDGE_RATE_WINDOW_MS": "60000", "AI_BRIDGE_CORS_ORIGINS": ORIGIN}
    with (
        run_obs_app(tmp_path, env) as app,
        httpx.Client(base_url=app.url, headers={"Origin": ORIGIN}) as http,
    ):
        remaining = [http.get(f"/items/{i}").headers["RateLimit-Remaining"] for i in range(3)]
        assert remaining == ["2", "1", "0"]
        refused = http.get("/items/4")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json()["status_code"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == "3;w=60"
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert refused.headers["Vary"] == "Origin"


def test_limit_is_per_fly_client_ip_else_peer(tmp_path: Path) -> None:
    env = {
        "AI_BRIDGE_RATE_MAX": "2",
        "AI_BRIDGE_RATE_WINDOW_MS": "60000",
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP": "on",
    }
    with run_obs_app(tmp_path, env) as app, httpx.Client(base_url=app.url) as http:
        a = {"Fly-Client-IP": "203.0.113.1"}
        assert [http.get("/items/1", headers=a).status_code for _ in range(3)] == [200, 200, 429]
        b = {"Fly-Client-IP": "203.0.113.2"}
        assert http.get("/items/1", headers=b).status_code == 200
        # Without the header the key is the peer (127.0.0.1), which has its own budget.
        assert [http.get("/items/1").status_code for _ in range(3)] == [200, 200, 429]


def test_health_is_never_limited(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_RATE_MAX": "2", "AI_BRIDGE_RATE_WINDOW_MS": "60000"}
    with run_obs_app(tmp_path, env) as app, httpx.Client(base_url=app.url) as http:
        statuses = {http.get("/health").status_code for _ in range(25)}
        assert statuses == {200}
        assert "RateLimit-Limit" not in http.get("/health").headers
        assert {httpx.get(app.metrics_url).status_code for _ in range(5)} == {200}


def test_window_in_milliseconds_rolls_over(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_RATE_MAX": "2", "AI_BRIDGE_RATE_WINDOW_MS": "1000"}
    with run_obs_app(tmp_path, env) as app, httpx.Client(base_url=app.url) as http:
        statuses = [http.get("/items/1").status_code for _ in range(3)]
        refused_at = time.monotonic()
        assert statuses == [200, 200, 429]
        deadline = refused_at + 5.0
        while (status := http.get("/items/1").status_code) == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200, "the 1 s window never reopened"
        assert time.monotonic() - refused_at < 2.5  # a 1 s window, not Litestar's whole minute


def test_rate_max_zero_turns_the_limit_off(tmp_path: Path) -> None:
    with run_obs_app(tmp_path, {"AI_BRIDGE_RATE_MAX": "0"}) as app, httpx.Client(base_url=app.url) as http:
        responses = [http.get("/items/1") for _ in range(30)]
    assert {r.status_code for r in responses} == {200}
    assert "RateLimit-Limit" not in responses[-1].headers


def test_connection_cap_refuses_http_and_websocket_with_503(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_MAX_CONNECTIONS": "2", "AI_BRIDGE_CORS_ORIGINS": ORIGIN}
    with run_obs_app(tmp_path, env) as app, ThreadPoolExecutor(2) as pool:
        holds = [pool.submit(httpx.get, f"{app.url}/hold", timeout=30) for _ in range(2)]
        deadline = time.monotonic() + 10
        while (refused := httpx.get(f"{app.url}/items/1", headers={"Origin": ORIGIN})).status_code != 503:
            assert time.monotonic() < deadline, "the two held requests never filled the cap"
            # A hold that raced our probe for the last slot was itself refused: send it again.
            holds = [
                pool.submit(httpx.get, f"{app.url}/hold", timeout=30)
                if hold.done() and hold.result().status_code == 503
                else hold
                for hold in holds
            ]
            time.sleep(0.02)
        assert refused.json()["status"] == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert httpx.get(f"{app.url}/health").status_code == 200  # exempt: Fly must still see us alive

        async def handshake() -> int:
            ws_url = app.url.replace("http", "ws") + "/ws"
            with pytest.raises(websockets.InvalidStatus) as refused_ws:
                async with websockets.connect(ws_url):
                    pass
            return refused_ws.value.response.status_code

        assert asyncio.run(handshake()) == 503

        assert httpx.get(f"{app.url}/release").status_code == 200  # exempt in the test app
        assert [hold.result(timeout=10).status_code for hold in holds] == [200, 200]
        # Finished requests give their slots back.
        assert [httpx.get(f"{app.url}/items/1").status_code for _ in range(5)] == [200] * 5


def test_websocket_budget_answers_error_frames_and_keeps_the_socket(tmp_path: Path) -> None:
    async def exchange(url: str) -> tuple[list[str], int | None]:
        async with websockets.connect(url) as ws:
            for i in range(20):
                await ws.send(json.dumps({"type": "envelope", "n": i}))
            replies = [json.loads(await ws.recv())["type"] for _ in range(20)]
            await ws.send(json.dumps({"type": "bye"}))
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
            return replies, ws.close_code

    with run_obs_app(tmp_path, {"AI_BRIDGE_WS_RATE_MAX": "5"}) as app:
        replies, code = asyncio.run(exchange(app.url.replace("http", "ws") + "/ws"))
    assert replies[:5] == ["ok"] * 5
    assert 5 <= replies.count("ok") <= 8  # 5 burst + what refills at 5/s while 20 frames fly
    assert replies.count("error") >= 12
    assert code == 1000


def test_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(4, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    now[0] += 0.5  # 2 tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 60  # capped at the burst size
    assert sum(bucket.take() for _ in range(10)) == 4


def test_ws_rate_zero_is_unlimited() -> None:
    assert ws_bucket(BridgeConfig(ws_rate_max=0)) is UNLIMITED
    assert all(UNLIMITED.take() for _ in range(100_000))
    assert isinstance(ws_bucket(BridgeConfig(ws_rate_max=3)), TokenBucket)


def test_client_ip_takes_the_fly_header_only_when_trusted() -> None:
    scope = {"headers": [(b"fly-client-ip", b"198.51.100.7")], "client": ("10.0.0.1", 5000)}
    assert client_ip(scope, True) == "198.51.100.7"
    assert client_ip(scope, False) == "10.0.0.1"
    assert client_ip({"headers": [], "client": ("10.0.0.1", 5000)}, True) == "10.0.0.1"


async def test_prune_forgets_clients_whose_window_passed() -> None:
    config = rate_limit_config(BridgeConfig(rate_max=5, rate_window_ms=1000))
    assert config is not None
    app = Litestar(route_handlers=[], middleware=[config.middleware])
    store = config.get_store_from_app(app)
    await store.set("RateLimitMiddleware::gone", b"{}", expires_in=timedelta(milliseconds=1))
    await store.set("RateLimitMiddleware::here", b"{}", expires_in=60)
    assert isinstance(store, MemoryStore)
    deadline = time.monotonic() + 5
    while not store._store["RateLimitMiddleware::gone"].expired:  # private: the only view of memory
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await prune_rate_limits(app, config)
    assert set(store._store) == {"RateLimitMiddleware::here"}
