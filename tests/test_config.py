"""Strict configuration: every malformed variable stops the server with one line (fault B12)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aibridge.errors import ConfigError
from aibridge.server.config import SETTINGS, BridgeConfig
from support import free_port, wait_http_ok


def test_defaults_are_those_of_the_fly_deployment() -> None:
    config = BridgeConfig.from_env({})
    assert (config.host, config.port) == ("::", 8080)
    assert config.history_limit == 1000
    assert config.max_queue == 2000
    assert config.client_ttl_ms == 900_000
    assert config.cleanup_interval_ms == 60_000
    assert config.auth_token is None
    assert config.cors_origins == ("*",)


def test_values_are_parsed_and_zero_means_zero() -> None:
    config = BridgeConfig.from_env(
        {
            "PORT": "9000",
            "AI_BRIDGE_MAX_QUEUE": "5_000",
            "AI_BRIDGE_RATE_MAX": "0",
            "AI_BRIDGE_PING_INTERVAL_MS": "0",
            "AI_BRIDGE_CORS_ORIGINS": "https://a.example/, https://b.example",
            "AI_BRIDGE_SHUTDOWN_TIMEOUT_S": "2.5",
            "AI_BRIDGE_AUTH_TOKEN": "tok",
        },
        port=None,
        host="127.0.0.1",
    )
    assert config.port == 9000  # PORT honoured when --port is not given
    assert config.host == "127.0.0.1"  # options win over the environment
    assert config.max_queue == 5000
    assert config.rate_max == 0  # the older bridge turned 0 into the default
    assert config.ping_interval_ms == 0
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.shutdown_timeout_s == 2.5
    assert config.redacted()["auth_token"] == "***"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AI_BRIDGE_MAX_QUEUE", "abc", "expected an integer >= 1"),
        ("AI_BRIDGE_MAX_QUEUE", "0", "expected an integer >= 1"),
        ("AI_BRIDGE_HISTORY_LIMIT", "-5", "expected an integer >= 1"),
        ("AI_BRIDGE_HISTORY_LIMIT", "", "expected an integer"),
        ("PORT", "70000", "<= 65535"),
        ("AI_BRIDGE_CLIENT_TTL_MS", "15m", "expected an integer >= 1000"),
        ("AI_BRIDGE_SHUTDOWN_TIMEOUT_S", "nan", "expected a number >= 0"),
        ("AI_BRIDGE_LOG_FORMAT", "xml", "expected one of text, json"),
        ("AI_BRIDGE_STORE", "postgres", "expected one of memory, sqlite"),
        ("AI_BRIDGE_CORS_ORIGINS", "example.com", "needs a scheme"),
        ("AI_BRIDGE_CORS_ORIGINS", " , ", "comma-separated list"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        BridgeConfig.from_env({name: value})
    assert error.value.detail.startswith(f"{name}: ")
    assert expected in error.value.detail
    assert repr(value) in error.value.detail


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", *args],
        env=full,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_with_a_malformed_variable_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = _serve(tmp_path, {"AI_BRIDGE_MAX_QUEUE": "lots"}, "--port", str(free_port()))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: AI_BRIDGE_MAX_QUEUE: expected an integer >= 1 and <= 1000000, got 'lots'"]
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_on_a_busy_port_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"AI_BRIDGE_METRICS_PORT": str(free_port())}
        result = _serve(tmp_path, env, "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (address already in use); pick another --port/PORT"
    ]


def test_serve_help_documents_every_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aibridge", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.env in result.stdout


def test_b11_port_variable_serves_http_and_websocket_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    env.update({"PORT": str(port), "AI_BRIDGE_METRICS_PORT": str(free_port()), "AI_BRIDGE_HOST": "127.0.0.1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "aibridge", "serve"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", process=process)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["port"] == port
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_serve_with_an_unusable_data_dir_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    env = {"AI_BRIDGE_STORE": "sqlite", "AI_BRIDGE_DATA_DIR": str(blocker)}
    result = _serve(tmp_path, env, "--port", str(free_port()))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(blocker) in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
