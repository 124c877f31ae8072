"""What a newcomer runs first (issue 15): `aibridge send`/`listen` through real subprocesses, the
serve options, the package's dependencies and licence, and `make run`."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aibridge.client import BridgeClient, payload_of
from support import REPO, BridgeProcess, free_port, run_bridge, stop_process, wait_http_ok

CLI = [sys.executable, "-m", "aibridge"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    env.update({"COLUMNS": "200", **extra})
    return env


def one_error_line(args: list[str], **env: str) -> str:
    """Run the CLI expecting a user mistake: exit 2 and exactly one stderr line, returned."""
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=cli_env(**env))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "http://127.0.0.1:8080/ws",
            "is an HTTP URL: agents connect over WebSocket, use ws://127.0.0.1:8080/ws",
        ),
        ("localhost:8080", "has no ws:// or wss:// scheme (e.g. ws://localhost:8080/ws)"),
        ("ws://", "has no host"),
        ("ws://127.0.0.1:99999/ws", "port out of range"),
    ],
)
def test_send_and_listen_with_a_bad_url_say_so_in_one_line(url: str, says: str) -> None:
    line = one_error_line(["send", "hi", "--url", url])
    assert line.startswith(f"error: --url: {url!r}") and says in line, line
    line = one_error_line(["listen", "--id", "x"], AI_BRIDGE_URL=url)
    assert line.startswith(f"error: AI_BRIDGE_URL: {url!r}") and says in line, line


def test_token_errors_say_what_to_do(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_AUTH_TOKEN": "right", "AI_BRIDGE_STORE": "memory"}) as bridge:
        line = one_error_line(["send", "hi", "--url", bridge.ws_url])
        assert line == f"error: {bridge.ws_url}: no token given (set --token or AI_BRIDGE_AUTH_TOKEN)"
        line = one_error_line(["listen", "--url", bridge.ws_url], AI_BRIDGE_AUTH_TOKEN="wrong")
        assert line == f"error: {bridge.ws_url}: the bridge refused the token"
        sent = subprocess.run(
            [*CLI, "send", "hi", "--url", bridge.ws_url, "--token", "right"],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
        assert sent.returncode == 0, sent.stderr


@contextmanager
def serve_on(port: int, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = cli_env(AI_BRIDGE_METRICS_PORT="0", AI_BRIDGE_DATA_DIR=str(tmp_path / "data"))
    cmd = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", process=process)
        yield process
    finally:
        stop_process(process)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def registered(port: int, agent: str) -> bool:
    try:
        agents = httpx.get(f"http://127.0.0.1:{port}/agents").json()["agents"]
    except httpx.HTTPError:
        return False
    return agent in [a["id"] for a in agents]


def test_listen_says_each_reconnect_attempt_then_is_quiet_again(tmp_path: Path) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    err_path, out_path = tmp_path / "listen.err", tmp_path / "listen.out"
    with serve_on(port, tmp_path), err_path.open("w") as err, out_path.open("w") as out:
        listener = subprocess.Popen(
            [*CLI, "listen", "--id", "patient", "--url", url, "--count", "1"],
            stdout=out,
            stderr=err,
            env=cli_env(),
        )
        wait_for(lambda: registered(port, "patient"), "the listener to register")
        assert err_path.read_text() == ""  # nothing to say while connected
    try:
        # The bridge is gone (drained by SIGTERM): one line per attempt, with its backoff.
        wait_for(lambda: err_path.read_text().count("reconnecting in") >= 3, "three reconnect lines")
        lines = err_path.read_text().splitlines()
        assert lines[0].startswith("reconnecting in ") and "(attempt 1): closed with 1012" in lines[0], lines
        assert all(f"(attempt {n})" in line for n, line in enumerate(lines, 1)), lines
        assert "cannot connect to" in lines[1]
        with serve_on(port, tmp_path):
            wait_for(lambda: registered(port, "patient"), "the listener to come back")
            after = err_path.read_text()
            httpx.post(f"http://127.0.0.1:{port}/send", json={"to": "patient", "payload": {"k": 1}})
            assert listener.wait(30) == 0
        assert json.loads(out_path.read_text())["payload"] == {"k": 1}
        assert err_path.read_text() == after  # quiet once connected
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(5)


async def test_client_and_cli_share_one_payload_rule(bridge: BridgeProcess) -> None:
    assert payload_of("all hands") == {"text": "all hands"}
    assert payload_of(42) == {"text": "42"} and payload_of(None) == {}
    assert payload_of({"k": 1}) == {"k": 1} and payload_of([1]) == [1]
    async with BridgeClient(bridge.ws_url, "rule-listener") as listener:
        async with BridgeClient(bridge.ws_url, "py", confirm=True) as sender:
            await sender.broadcast("all hands")
            await sender.broadcast({"k": 1})
        for message in ("all hands", '{"k": 1}', "42"):
            sent = await asyncio.to_thread(
                subprocess.run,
                [*CLI, "send", message, "--url", bridge.ws_url],
                capture_output=True,
                text=True,
                timeout=60,
                env=cli_env(),
            )
            assert sent.returncode == 0, sent.stderr
        got = [(await listener.receive(timeout=10))["payload"] for _ in range(5)]
    assert got == [{"text": "all hands"}, {"k": 1}, {"text": "all hands"}, {"k": 1}, {"text": "42"}]


def test_serve_help_has_no_stray_space_and_names_the_env_file_options() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60, env=cli_env()
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Address to bind (env AI_BRIDGE_HOST, default :: (dual-stack))." in text
    assert "Address to bind ." not in text and "HTTP and WebSocket ." not in text  # Rich ate [env …]
    assert "Port for HTTP and WebSocket (env PORT, default 8080)." in text
    assert "--env-file" in text and "--no-env-file" in text and "AI_BRIDGE_ENV" in text


def test_metrics_port_equal_to_the_port_is_a_clear_message(tmp_path: Path) -> None:
    port = str(free_port())
    line = one_error_line(["serve", "--host", "127.0.0.1", "--port", port], AI_BRIDGE_METRICS_PORT=port)
    assert line.startswith(f"error: AI_BRIDGE_METRICS_PORT={port} is also the bridge's port"), line
    line = one_error_line(["serve", "--host", "127.0.0.1"], AI_BRIDGE_METRICS_PORT=port, PORT=port)
    assert "needs a port of its own (or 0 to turn it off)" in line


def test_websockets_is_a_runtime_dependency_and_the_licence_ships() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("websockets") for d in project["dependencies"])
    assert any(d.startswith("python-dotenv") for d in project["dependencies"])
    runtime = [r for r in importlib.metadata.requires("aibridge") or [] if "extra ==" not in r]
    assert any(r.startswith("websockets") for r in runtime), runtime
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and project["license"] == "MIT"


def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # absent: make shows every step it would take
    # Under `make test` the outer make's flags would reach this one (and -w its "Entering directory").
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    installs = [line for line in result.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs == [f"{venv}/bin/python -m pip install --quiet -e ."], result.stdout
    assert result.stdout.strip().endswith(f"{venv}/bin/aibridge serve")


def test_subprocesses_of_the_tests_get_the_default_sigint() -> None:
    """Run under ``nohup make test &`` (SIGINT ignored), children must still obey Ctrl-C."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert child.stdout.strip() == "True"
