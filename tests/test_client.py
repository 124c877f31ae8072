"""aibridge.client and the ``aibridge send``/``listen`` commands against a real bridge."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aibridge.client import BridgeClient, BridgeClosedError, BridgeRefusedError
from aibridge.errors import TargetUnreachableError
from support import BridgeProcess, free_port, run_bridge, wait_http_ok


async def test_send_receive_and_broadcast(bridge: BridgeProcess) -> None:
    async with (
        BridgeClient(bridge.ws_url, "alice", confirm=True) as alice,
        BridgeClient(bridge.ws_url, "bob") as bob,
        BridgeClient(bridge.ws_url, "carol") as carol,
    ):
        sent = await alice.send("bob", {"text": "hi"}, intent="greet", taskId="t1")
        got = await bob.receive(timeout=5)
        assert (got["id"], got["from"], got["intent"], got["taskId"]) == (sent, "alice", "greet", "t1")
        await alice.broadcast("all hands")  # the CLI's rule: text is sent as {"text": …}
        assert (await bob.receive(timeout=5))["payload"] == {"text": "all hands"}
        assert (await carol.receive(timeout=5))["payload"] == {"text": "all hands"}


async def test_confirmed_send_raises_when_refused(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_MAX_ENVELOPE_BYTES": "1024"}) as bridge:
        async with BridgeClient(bridge.ws_url, "x", confirm=True) as client:
            with pytest.raises(BridgeRefusedError) as refused:
                await client.send("y", "z" * 900)
            assert refused.value.frame["error"] == "too_large"
            await client.send("y", "small")  # the connection still works


async def test_ack_mode_redelivers_until_acked(bridge: BridgeProcess) -> None:
    async with BridgeClient(bridge.ws_url, "sender", confirm=True) as sender:
        await sender.send("worker", "job-1")
        async with BridgeClient(bridge.ws_url, "worker", ack=True) as worker:
            first = await worker.receive(timeout=5)
        async with BridgeClient(bridge.ws_url, "worker", ack=True) as worker:
            again = await worker.receive(timeout=5)
            assert again["id"] == first["id"]
            await worker.ack(again["id"])
            await worker.heartbeat()
            # The ack is read by this socket's own loop; a newer connection's replay may run first
            # on a loaded machine, so wait until the bridge has taken the ack.
            deadline = time.monotonic() + 10
            while httpx.get(f"{bridge.url}/health").json()["queuedMessages"]:
                assert time.monotonic() < deadline, "the ack never took the envelope out of the queue"
                await asyncio.sleep(0.05)
        async with BridgeClient(bridge.ws_url, "worker", ack=True) as worker:
            with pytest.raises(TimeoutError):
                await worker.receive(timeout=0.3)


async def test_a_newer_connection_ends_the_older_client_for_good(bridge: BridgeProcess) -> None:
    async with BridgeClient(bridge.ws_url, "dup") as older, BridgeClient(bridge.ws_url, "dup"):
        with pytest.raises(BridgeClosedError):
            await older.receive(timeout=5)
        assert older.close_code == 4409


async def test_unreachable_bridge_is_a_clear_error() -> None:
    with pytest.raises(TargetUnreachableError, match="cannot connect"):
        await BridgeClient(f"ws://127.0.0.1:{free_port()}/ws", "x").connect(timeout=2)


@contextmanager
def serve_on(port: int, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    env["AI_BRIDGE_METRICS_PORT"] = str(free_port())
    cmd = [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", process=process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


async def test_reconnects_with_backoff_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    with serve_on(port, tmp_path) as first:
        client = BridgeClient(url, "survivor", backoff_s=(0.05, 0.5))
        await client.connect()
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 10) == 0
    with serve_on(port, tmp_path):
        async with httpx.AsyncClient() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "survivor" not in [
                a["id"] for a in (await http.get(f"http://127.0.0.1:{port}/agents")).json()["agents"]
            ]:
                assert loop.time() < deadline, "client did not reconnect"
                await asyncio.sleep(0.05)
            assert client.close_code == 1012
            await http.post(
                f"http://127.0.0.1:{port}/send", json={"to": "survivor", "payload": "welcome back"}
            )
        assert (await client.receive(timeout=5))["payload"] == "welcome back"
        await client.close()


def test_cli_listen_and_send(bridge: BridgeProcess) -> None:
    cli = [sys.executable, "-m", "aibridge"]
    listener = subprocess.Popen(
        [*cli, "listen", "--id", "shell-agent", "--count", "2", "--url", bridge.ws_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while "shell-agent" not in [a["id"] for a in httpx.get(f"{bridge.url}/agents").json()["agents"]]:
        assert listener.poll() is None, listener.stderr.read() if listener.stderr else ""
        assert time.monotonic() < deadline, "the listener did not register"
        time.sleep(0.05)
    sent = subprocess.run(
        [*cli, "send", "hello there", "--to", "shell-agent", "--url", bridge.ws_url, "--id", "shell-sender"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sent.returncode == 0, sent.stderr
    envelope_id = sent.stdout.strip()
    subprocess.run(
        [*cli, "send", '{"k": 1}', "--url", bridge.ws_url], check=True, capture_output=True, timeout=30
    )
    out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["id"] == envelope_id
    assert first["payload"] == {"text": "hello there"}
    assert first["from"] == "shell-sender"
    assert second["payload"] == {"k": 1}


def test_cli_send_to_nowhere_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aibridge", "send", "hi", "--url", f"ws://127.0.0.1:{free_port()}/ws"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot connect to ws://127.0.0.1:")
