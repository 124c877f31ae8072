"""Issue 11 item 7, HTTP side, against a real ``aibridge serve``: slowloris clients are timed out
and counted toward the connection cap; HEAD and plain OPTIONS answer; refused CORS preflights and
unsupported media types get JSON errors; an Origin with a trailing slash is refused like any
other origin outside the list; a forged ``Fly-Client-IP`` is no new rate-limit identity off Fly;
the rate limiter's key table is bounded. Each test also checks that what the bridge accepted
(202) is in the history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from aibridge.server.limits import BoundedMemoryStore
from support import BridgeProcess, run_bridge

TOKEN = "hygiene-token-71ab"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "https://app.example"
JSON = {"Content-Type": "application/json"}


def send(bridge: BridgeProcess, headers: dict[str, str] | None = None) -> str:
    """POST /send one envelope to an offline agent; the id of the accepted envelope."""
    envelope_id = f"h-{uuid.uuid4().hex[:10]}"
    response = httpx.post(
        f"{bridge.url}/send",
        json={"id": envelope_id, "to": "offline-agent"},
        headers={**AUTH, **(headers or {})},
    )
    assert response.status_code == 202, response.text
    return envelope_id


def history_ids(bridge: BridgeProcess) -> set[str]:
    response = httpx.get(f"{bridge.url}/history", headers=AUTH)
    assert response.status_code == 200
    return {e["id"] for e in response.json()["history"]}


async def slow_client(port: int, stop: asyncio.Event) -> tuple[bytes, float]:
    """Send a request's headers at one byte per 0.2 s until the bridge answers or closes.

    Returns what the bridge sent and after how many seconds.
    """
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 10_000
    answer = b""
    try:
        for byte in request:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            break  # the bridge answered (or closed: b"")
    finally:
        writer.close()
    return answer, time.monotonic() - start


async def slowloris(bridge: BridgeProcess, cap: int, timeout_s: float) -> None:
    stop = asyncio.Event()
    first = [asyncio.create_task(slow_client(bridge.port, stop)) for _ in range(cap)]
    async with httpx.AsyncClient(base_url=bridge.url) as http:

        async def agents_refused() -> bool:
            return (await http.get("/agents", headers=AUTH)).status_code == 503

        # The slow connections count toward AI_BRIDGE_MAX_CONNECTIONS: other requests get a
        # JSON 503, while /health (exempt from the cap) still answers 200.
        deadline = time.monotonic() + timeout_s
        while not await agents_refused():
            assert time.monotonic() < deadline, "slow connections are not counted toward the cap"
            await asyncio.sleep(0.05)
        refused = await http.get("/agents", headers=AUTH)
        assert refused.json()["status"] == 503 and "limit of" in refused.json()["error"]
        assert (await http.get("/health")).status_code == 200
        # Up to twice the cap may be sending headers; connections beyond are refused with 503
        # before anything is read. Open twice the cap more: some of them must be refused.
        second = [asyncio.create_task(slow_client(bridge.port, stop)) for _ in range(2 * cap)]
        results = await asyncio.gather(*first, *second)
        stop.set()
        timed_out = [(a, s) for a, s in results if a.startswith(b"HTTP/1.1 408 ")]
        refused = [(a, s) for a, s in results if a.startswith(b"HTTP/1.1 503 ")]
        assert len(timed_out) + len(refused) == len(results), [a[:40] for a, _ in results]
        assert refused and len(timed_out) <= 2 * cap
        assert all(s < timeout_s for _, s in refused)  # at once, not after the timeout
        # Each slow client gets a 408 once its headers are overdue, long before uvicorn's minute.
        assert all(b'"status": 408' in a and s < timeout_s + 10 for a, s in timed_out)
        assert all(a.startswith(b"HTTP/1.1 408 ") for a, _ in results[:cap])
        # And the slots are free again.
        deadline = time.monotonic() + 10
        while await agents_refused():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


def test_slowloris_connections_are_timed_out_and_counted_toward_the_cap(tmp_path: Path) -> None:
    cap, timeout_s = 10, 4.0
    env = {
        "AI_BRIDGE_AUTH_TOKEN": TOKEN,
        "AI_BRIDGE_MAX_CONNECTIONS": str(cap),
        "AI_BRIDGE_HEADER_TIMEOUT_MS": str(int(timeout_s * 1000)),
        "AI_BRIDGE_RATE_MAX": "0",
    }
    with run_bridge(tmp_path, env) as bridge:
        before = send(bridge)
        asyncio.run(slowloris(bridge, cap, timeout_s))
        after = send(bridge)
        assert {before, after} <= history_ids(bridge)
        assert "Traceback" not in bridge.log()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> BridgeProcess:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_CORS_ORIGINS": ORIGIN, "AI_BRIDGE_RATE_MAX": "0"}
    with run_bridge(tmp_path_factory.mktemp("secured"), env) as bridge:
        yield bridge  # type: ignore[misc]


def test_head_answers_like_get_without_a_body(secured: BridgeProcess) -> None:
    for path, headers in (("/health", {}), ("/", {}), ("/agents", AUTH)):
        got = httpx.get(secured.url + path, headers=headers)
        head = httpx.head(secured.url + path, headers=headers)
        assert head.status_code == 200 == got.status_code, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert int(head.headers["content-length"]) > 0
    assert httpx.head(secured.url + "/agents").status_code == 401  # HEAD is guarded like GET


def test_plain_options_is_not_refused_for_want_of_a_token(secured: BridgeProcess) -> None:
    for path in ("/health", "/agents", "/send"):
        response = httpx.options(secured.url + path)
        assert response.status_code == 204, (path, response.text)
        assert "GET" in response.headers["allow"] or "POST" in response.headers["allow"]


def test_cors_preflight_refusal_is_json_and_allowed_ones_pass(secured: BridgeProcess) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    refused = httpx.options(secured.url + "/send", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {"error": "CORS preflight refused: Disallowed CORS Origin", "status": 400}
    allowed = httpx.options(secured.url + "/send", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ORIGIN


def test_an_origin_with_a_trailing_slash_is_not_the_listed_origin(secured: BridgeProcess) -> None:
    exact = httpx.get(secured.url + "/agents", headers={"Origin": ORIGIN, **AUTH})
    assert exact.status_code == 200 and exact.headers["access-control-allow-origin"] == ORIGIN
    # Before: served (the guard stripped the slash) but without Access-Control-Allow-Origin.
    slashed = httpx.get(secured.url + "/agents", headers={"Origin": ORIGIN + "/", **AUTH})
    assert slashed.status_code == 403
    assert slashed.json() == {"error": "origin not allowed", "status": 403}
    blocked = httpx.post(secured.url + "/send", json={"to": "a"}, headers={"Origin": ORIGIN + "/", **AUTH})
    assert blocked.status_code == 403


def test_post_routes_require_json_content_type(secured: BridgeProcess) -> None:
    before = history_ids(secured)
    marker = f"text-{uuid.uuid4().hex[:8]}"
    body = f'{{"id": "{marker}", "to": "offline-agent"}}'
    for route in ("/send", "/broadcast"):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
            response = httpx.post(secured.url + route, content=body.encode(), headers=headers)
            assert response.status_code == 415, (route, content_type)
            assert response.json()["status"] == 415
            assert "application/json" in response.json()["error"]
    assert marker not in history_ids(secured)  # nothing refused was stored
    accepted = httpx.post(
        secured.url + "/send",
        content=body.encode(),
        headers={**AUTH, "Content-Type": "application/json; charset=utf-8"},
    )
    assert accepted.status_code == 202
    assert history_ids(secured) >= before | {marker}


def test_forged_fly_client_ip_is_no_new_identity_off_fly(tmp_path: Path) -> None:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_RATE_MAX": "3", "AI_BRIDGE_RATE_WINDOW_MS": "60000"}
    with run_bridge(tmp_path, env) as bridge:
        statuses = [
            httpx.get(f"{bridge.url}/agents", headers={**AUTH, "Fly-Client-IP": f"203.0.113.{i}"}).status_code
            for i in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        assert "trust_fly_client_ip=False" in bridge.log()
    # Behind Fly's proxy (FLY_APP_NAME set), the header is the client's identity by default.
    with run_bridge(tmp_path, {**env, "FLY_APP_NAME": "bridge-test"}) as bridge:
        ids = [send(bridge, {"Fly-Client-IP": f"203.0.113.{i}"}) for i in range(5)]
        assert set(ids) <= history_ids(bridge)
        assert "trust_fly_client_ip=True" in bridge.log()


async def test_the_rate_limit_key_table_is_bounded() -> None:
    store = BoundedMemoryStore(max_keys=1000)
    for i in range(3000):
        await store.set(f"client-{i}", b"{}", expires_in=60)
    assert len(store._store) == 1000
    assert await store.get("client-2999") == b"{}"  # the newest are kept
    assert await store.get("client-0") is None  # the oldest forgotten
