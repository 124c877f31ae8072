"""Prometheus metrics on their own port, scraped for real from tests/obs_app.py (a real uvicorn app)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from aibridge import __version__
from aibridge.errors import ConfigError
from aibridge.server.config import BridgeConfig
from aibridge.server.metrics import BridgeMetrics, memory_limit, memory_limit_bytes, serve_metrics
from obs_app import run_obs_app
from support import Samples, require_binary, run_bridge, scrape, value


@pytest.mark.prometheus
def test_real_scrape_passes_promtool_with_no_complaints(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    with run_obs_app(tmp_path) as app:
        for path in ("/health", "/items/3", "/nope", "/items/x"):
            httpx.get(app.url + path)
        httpx.post(app.url + "/echo", json={"a": 1})
        text = httpx.get(app.metrics_url).text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
    assert "aibridge_http_requests_total" in text and "process_resident_memory_bytes" in text


def test_requests_are_labelled_by_route_template_and_status_class(tmp_path: Path) -> None:
    with run_obs_app(tmp_path) as app:
        for path in ("/items/1", "/items/2", "/health", "/no/such/path", "/items/not-an-int"):
            httpx.get(app.url + path)
        httpx.request("PURGE", app.url + "/health")  # known to httptools, unknown to us
        samples = scrape(app.metrics_url)
    requests = "aibridge_http_requests_total"
    assert value(samples, requests, method="GET", route="/items/{item_id}", status="2xx") == 2
    assert value(samples, requests, method="GET", route="/health", status="2xx") == 2  # + the readiness poll
    assert value(samples, requests, method="GET", route="<unmatched>", status="4xx") == 2
    assert value(samples, requests, method="OTHER", route="<unmatched>", status="4xx") == 1
    routes = {dict(labels).get("route") for (name, labels) in samples if name == requests}
    assert routes == {"/items/{item_id}", "/health", "<unmatched>"}  # never a raw path


def test_duration_histogram_has_exactly_the_half_second_bucket(tmp_path: Path) -> None:
    with run_obs_app(tmp_path) as app:
        httpx.get(app.url + "/health")
        samples = scrape(app.metrics_url)
    bounds = sorted(
        float(dict(labels)["le"])
        for (name, labels) in samples
        if name == "aibridge_http_request_duration_seconds_bucket" and dict(labels)["route"] == "/health"
    )
    assert bounds == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf")]
    half = value(
        samples, "aibridge_http_request_duration_seconds_bucket", method="GET", route="/health", le="0.5"
    )
    assert half == 2  # this request + the readiness poll


def _mem_total() -> int:
    line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_memory_limit_is_read_from_the_cgroup_at_each_scrape(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("536870912\n")
    with run_obs_app(tmp_path, {"AI_BRIDGE_CGROUP_DIR": str(cgroup)}) as app:
        assert value(scrape(app.metrics_url), "aibridge_memory_limit_bytes", source="cgroup") == 536870912
        (cgroup / "memory.max").write_text("max\n")
        samples = scrape(app.metrics_url)
    # No cgroup limit (a Fly Machine): what the VM has, from the real /proc/meminfo.
    assert value(samples, "aibridge_memory_limit_bytes", source="meminfo") == _mem_total()
    assert value(samples, "aibridge_memory_limit_bytes", source="cgroup") is None


def _fake_proc(tmp_path: Path, cgroup_lines: str, mem_total_kb: int | None = 501_844) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_lines)
    if mem_total_kb is not None:
        (proc / "meminfo").write_text(f"MemTotal:       {mem_total_kb} kB\nMemFree:  1000 kB\n")
    return proc


def test_memory_limit_reads_the_process_own_cgroup_not_the_mount_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    own = root / "system.slice" / "aibridge.service"
    own.mkdir(parents=True)
    (root / "memory.max").write_text(f"{8 << 30}\n")  # the mount root: some other, bigger limit
    (own / "memory.max").write_text(f"{256 << 20}\n")
    proc = _fake_proc(tmp_path, "0::/system.slice/aibridge.service\n")
    assert memory_limit(root, proc) == (256 << 20, "cgroup")
    # Unlimited itself, but a parent caps it: the parent's limit binds.
    (own / "memory.max").write_text("max\n")
    (root / "system.slice" / "memory.max").write_text(f"{512 << 20}\n")
    assert memory_limit(root, proc) == (512 << 20, "cgroup")


def test_memory_limit_cgroup_v1_then_meminfo_then_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "memory" / "docker" / "abc").mkdir(parents=True)
    limit_file = root / "memory" / "docker" / "abc" / "memory.limit_in_bytes"
    limit_file.write_text("268435456\n")
    proc = _fake_proc(tmp_path, "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n")
    assert memory_limit(root, proc) == (268435456, "cgroup")  # cgroup v1
    limit_file.write_text("9223372036854771712\n")  # v1 "unlimited": a page-rounded LONG_MAX
    # A 512 MB Fly Machine: no cgroup limit, MemTotal a little under 512 MiB.
    assert memory_limit(root, proc) == (501_844 * 1024, "meminfo")
    assert memory_limit_bytes(root, proc) == 501_844 * 1024
    (proc / "meminfo").unlink()
    assert memory_limit(root, proc) is None
    assert memory_limit(tmp_path / "missing", tmp_path / "no-proc") is None


def test_startup_duration_build_info_and_process_metrics(tmp_path: Path) -> None:
    started = time.monotonic()
    with run_obs_app(tmp_path) as app:
        samples = scrape(app.metrics_url)
        answered = time.monotonic() - started
    startup = value(samples, "aibridge_startup_duration_seconds")
    assert startup is not None and 0.05 < startup < answered
    assert value(samples, "aibridge_build_info", version=__version__) == 1
    rss = value(samples, "process_resident_memory_bytes")
    assert rss is not None and rss > 10 * 1024 * 1024
    assert value(samples, "process_start_time_seconds") is not None
    assert value(samples, "process_open_fds") is not None


def test_websocket_envelope_and_store_gauges(tmp_path: Path) -> None:
    async def session(ws_url: str, metrics_url: str) -> tuple[Samples, Samples]:
        async with websockets.connect(ws_url) as ws:
            for i in range(3):
                await ws.send(json.dumps({"type": "envelope", "n": i}))
                assert json.loads(await ws.recv())["type"] == "ok"
            during = await asyncio.to_thread(scrape, metrics_url)
        deadline = time.monotonic() + 5
        while value(after := await asyncio.to_thread(scrape, metrics_url), "aibridge_websocket_connections"):
            assert time.monotonic() < deadline, "gauge never went back to 0"
            await asyncio.sleep(0.02)
        return during, after

    with run_obs_app(tmp_path) as app:
        for i in range(2):
            httpx.post(app.url + "/echo", json={"n": i})
        during, after = asyncio.run(session(app.url.replace("http", "ws") + "/ws", app.metrics_url))
    assert value(during, "aibridge_websocket_connections") == 1
    assert value(after, "aibridge_websocket_connections_total") == 1
    assert value(after, "aibridge_envelopes_total", outcome="delivered") == 3
    assert value(after, "aibridge_envelopes_total", outcome="dropped") == 0
    assert value(after, "aibridge_history_size") == 2
    assert value(after, "aibridge_queue_depth") == 2
    queued = value(after, "aibridge_queued_bytes")
    assert queued is not None and queued > 0


def test_metrics_stay_off_the_public_port(tmp_path: Path) -> None:
    with run_obs_app(tmp_path) as app:
        assert httpx.get(app.url + "/metrics").status_code == 404
        assert httpx.get(app.metrics_url.replace("/metrics", "/other")).status_code == 404
        assert httpx.post(app.metrics_url).status_code == 405


async def test_busy_metrics_port_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = BridgeConfig(host="127.0.0.1", metrics_port=busy.getsockname()[1])
        with pytest.raises(ConfigError, match=r"AI_BRIDGE_METRICS_PORT: cannot listen on 127\.0\.0\.1"):
            await serve_metrics(config, BridgeMetrics(version="t", process=False))


async def test_metrics_port_zero_serves_nothing() -> None:
    assert (
        await serve_metrics(BridgeConfig(metrics_port=0), BridgeMetrics(version="t", process=False)) is None
    )


def test_seconds_since_process_start_is_precise_for_a_fresh_process() -> None:
    code = "from aibridge.server.metrics import seconds_since_process_start as s; print(s())"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lifetime = time.monotonic() - started
    measured = float(out)
    assert 0.0 < measured <= lifetime + 0.02  # clock ticks are 10 ms


def test_every_route_and_status_class_exists_at_zero_before_any_request(tmp_path: Path) -> None:
    """Issue 14 item 8: a 5xx child born at its first increment is invisible to increase()."""
    with run_bridge(tmp_path) as bridge:
        text = httpx.get(bridge.metrics_url, timeout=5).text
    # (run_bridge polled /health until it answered, so only 2xx has counted anything.)
    for status in ("1xx", "3xx", "4xx", "5xx"):
        line = f'aibridge_http_requests_total{{method="GET",route="/health",status="{status}"}} 0.0'
        assert line in text, status
    assert 'aibridge_http_requests_total{method="GET",route="<unmatched>",status="5xx"} 0.0' in text
    assert 'aibridge_http_request_duration_seconds_count{method="POST",route="/send"} 0.0' in text
