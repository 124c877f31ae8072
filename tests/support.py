"""Helpers shared by the tests: free loopback ports and a real ``aibridge serve`` subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""A Prometheus scrape: (metric name, labels) -> value."""


def scrape(url: str) -> Samples:
    """Every sample of a real /metrics scrape, after checking it is the text format Fly reads."""
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def require_binary(name: str) -> str:
    """Path of a system binary the test needs. In CI a missing one fails; locally it skips."""
    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/install-system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_http_ok(url: str, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers (any status), failing fast if ``process`` died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a test's server subprocess, SIGKILL it if it has not exited within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class BridgeProcess:
    """A running ``aibridge serve`` subprocess on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def run_bridge(
    tmp_path: Path, env: Mapping[str, str] | None = None, *, wait: bool = True, args: Sequence[str] = ()
) -> Iterator[BridgeProcess]:
    """Start the real server with uvicorn on free loopback ports; stop it (SIGKILL at worst) after."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / f"bridge-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    full_env.update(
        {
            "AI_BRIDGE_METRICS_PORT": str(metrics_port),
            "AI_BRIDGE_DATA_DIR": str(tmp_path / f"data-{port}"),
            "AI_BRIDGE_LOG_LEVEL": "info",
        }
    )
    full_env.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp_path,
        )
    bridge = BridgeProcess(process, port, metrics_port, log_path)
    try:
        if wait:
            wait_http_ok(f"{bridge.url}/health", process=process)
        yield bridge
    finally:
        stop_process(process)


_BUILD_APP = """
import json, sys
from aibridge.server.app import server_stack
from aibridge.server.config import BridgeConfig
from aibridge.server.hub import Hub
from aibridge.server.store.memory import MemoryStore
config = BridgeConfig.from_env({})
store = MemoryStore(config)
app, _ = server_stack(config, store, Hub(config, store), port=1, metrics=None)
print(json.dumps({"modules": sorted(sys.modules), "plugins": sorted(type(p).__name__ for p in app.plugins)}))
"""


def built_app() -> dict[str, list[str]]:
    """Build the bridge's app in a fresh interpreter: the ``modules`` it imported and its ``plugins``."""
    out = subprocess.run([sys.executable, "-c", _BUILD_APP], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return report
