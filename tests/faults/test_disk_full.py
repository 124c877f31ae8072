"""Item 1 of issue 11: a store whose writes fail is degraded, never wedged, and recovers by itself.

Two real faults, one scenario: a real 3 MiB tmpfs filled to the last byte (root only), and
commits failing inside the server's own SQLite connections (``inject/sitecustomize.py``,
runs everywhere). Promised: the envelopes whose commit failed are refused (HTTP 503 /
``storage_unavailable`` frame) and are nowhere afterwards; reads and registrations keep
answering; ``/health`` says ``degraded`` with a ``store`` reason and ``aibridge_store_healthy``
is 0 while writes fail, with counters of committed state only; once writes can succeed the
store takes them again without a restart; and every acknowledged envelope is in history and
in its recipient's queue, exactly once, also after a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faults.faultkit import drain_queue, failing_commits_env, fill, is_root, recv, register, tmpfs
from support import BridgeProcess, run_bridge, scrape, value

SINK = "sink"
RECOVERY_S = 15.0
"""Deadline for the first accepted write after the fault ends (the probe backs off to 1 s)."""


class Senders:
    """HTTP sends to the offline sink, each with its own id, sorted by what the bridge answered."""

    def __init__(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
        self.client = client
        self.payload = payload
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.n = 0

    async def send(self) -> httpx.Response:
        self.n += 1
        envelope_id = f"e-{self.n}"
        reply = await self.client.post(
            "/send", json={"id": envelope_id, "to": SINK, "from": "http", "payload": self.payload}
        )
        if reply.status_code == 202:
            self.acked.append(envelope_id)
        else:
            assert reply.status_code == 503, reply.text
            body = reply.json()
            assert body["code"] == "storage_unavailable", body
            assert "disk is full" in body["error"], body
            assert reply.headers["retry-after"] == "1"
            self.refused.append(envelope_id)
        return reply


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    reply = await client.get("/health")
    assert reply.status_code == 200, reply.text  # degraded, still 200: Fly keeps routing here
    body = reply.json()
    assert isinstance(body, dict)
    return body


async def history_ids(client: httpx.AsyncClient) -> list[str]:
    reply = await client.get("/history")
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()["history"]]


async def ride_out_the_fault(
    bridge: BridgeProcess,
    payload: dict[str, Any],
    start_fault: Callable[[], None],
    end_fault: Callable[[], None],
    first: str = "http",
) -> list[str]:
    """The whole scenario; returns the acknowledged ids (checked against a restart by the caller).

    ``first``: who sends once the fault started, until one write fails: HTTP, or a WebSocket
    agent with confirms (then the HTTP sends that follow are refused before being recorded).
    """
    async with httpx.AsyncClient(base_url=bridge.url, timeout=15) as client:
        senders = Senders(client, payload)
        for _ in range(10):
            assert (await senders.send()).status_code == 202
        confirmer = await register(bridge.ws_url, "confirmer", confirm=True)
        plain = await register(bridge.ws_url, "plain")

        start_fault()
        if first == "ws":
            for n in range(400):
                envelope = {"id": f"ws-a{n}", "to": SINK}
                await confirmer.send(json.dumps({"type": "envelope", "envelope": envelope}))
                frame = await recv(confirmer)
                if frame["type"] != "accepted":
                    break
                senders.acked.append(frame["id"])
            assert frame["type"] == "error" and frame["error"] == "storage_unavailable", frame
            assert frame["id"] == f"ws-a{n}" and "disk is full" in frame["message"], frame
            await senders.send()
        else:
            for _ in range(400):  # on a real disk, what is left of the last pages may take a few more
                if (await senders.send()).status_code == 503:
                    break
        assert senders.refused, "the fault never made a write fail"
        for _ in range(5):  # refused at once now, before anything is recorded
            assert (await senders.send()).status_code == 503

        await confirmer.send(json.dumps({"type": "envelope", "envelope": {"id": "ws-1", "to": SINK}}))
        frame = await recv(confirmer)
        assert frame["type"] == "error" and frame["error"] == "storage_unavailable", frame
        assert frame["id"] == "ws-1"
        await plain.send(json.dumps({"type": "envelope", "envelope": {"id": "ws-2", "to": SINK}}))
        frame = await recv(plain)
        assert frame["type"] == "error" and frame["error"] == "storage_unavailable", frame

        # Reads and registrations still answer (they hung before), and count only what committed.
        newcomer = await register(bridge.ws_url, "newcomer")
        await newcomer.close()
        state = await health(client)
        assert state["status"] == "degraded", state
        assert state["store"].startswith("unavailable:") and "disk is full" in state["store"], state
        assert state["historySize"] == len(senders.acked), state
        assert state["queuedMessages"] == len(senders.acked), state
        assert value(scrape(bridge.metrics_url), "aibridge_store_healthy") == 0
        assert await history_ids(client) == senders.acked
        assert (await client.get("/tasks")).status_code == 200
        deadline = time.monotonic() + 10
        while "newcomer" in [a["id"] for a in (await client.get("/agents")).json()["agents"]]:
            assert time.monotonic() < deadline, "a closed socket stayed registered"
            await asyncio.sleep(0.05)

        end_fault()
        ended = time.monotonic()
        while (await senders.send()).status_code != 202:
            assert time.monotonic() - ended < RECOVERY_S, "the store did not recover by itself"
            await asyncio.sleep(0.05)
        state = await health(client)
        assert state["status"] == "ok" and state["store"] == "ok", state
        assert value(scrape(bridge.metrics_url), "aibridge_store_healthy") == 1
        for _ in range(10):
            assert (await senders.send()).status_code == 202
        await confirmer.send(json.dumps({"type": "envelope", "envelope": {"id": "ws-3", "to": SINK}}))
        assert (await recv(confirmer)) == {"type": "accepted", "id": "ws-3", "status": "queued"}
        senders.acked.append("ws-3")
        await confirmer.close()
        await plain.close()

        assert await history_ids(client) == senders.acked
        assert (await health(client))["queuedMessages"] == len(senders.acked)
    assert "Traceback" not in bridge.log()
    assert "write failed" in bridge.log() and "writes succeed again" in bridge.log()
    return senders.acked


async def check_after_restart(tmp_path: Path, env: dict[str, str], acked: list[str]) -> None:
    """Everything acknowledged is still there after a restart, exactly once, and nothing else."""
    with run_bridge(tmp_path, env) as bridge:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=15) as client:
            assert await history_ids(client) == acked
        assert await drain_queue(bridge.ws_url, SINK, expected=len(acked)) == acked


@pytest.mark.parametrize("first", ["http", "ws"])
async def test_failing_commits_fail_their_batch_then_the_store_recovers(tmp_path: Path, first: str) -> None:
    flag = tmp_path / "disk-is-full"
    env = {
        **failing_commits_env(flag),
        "AI_BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "AI_BRIDGE_RATE_MAX": "0",
        "AI_BRIDGE_WS_RATE_MAX": "0",
    }
    with run_bridge(tmp_path, env) as bridge:
        acked = await ride_out_the_fault(bridge, {"n": 1}, flag.touch, flag.unlink, first)
    await check_after_restart(tmp_path, env, acked)


@pytest.mark.skipif(not is_root(), reason="mounting a size-limited tmpfs needs root (mount -t tmpfs)")
async def test_a_full_tmpfs_is_survived_without_a_restart(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "3m") as mount:
        env = {
            "AI_BRIDGE_DATA_DIR": str(mount / "data"),
            "AI_BRIDGE_RATE_MAX": "0",
            "AI_BRIDGE_WS_RATE_MAX": "0",
        }
        fillers: list[Path] = []
        with run_bridge(tmp_path, env) as bridge:
            acked = await ride_out_the_fault(
                bridge,
                {"blob": "x" * 16 * 1024},
                lambda: fillers.append(fill(mount)),
                lambda: fillers.pop().unlink(),
            )
        await check_after_restart(tmp_path, env, acked)


@pytest.mark.skipif(not is_root(), reason="mounting a size-limited tmpfs needs root (mount -t tmpfs)")
async def test_a_full_disk_at_start_is_one_clear_line_and_loses_nothing(tmp_path: Path) -> None:
    """SQLite cannot open a WAL database without room for its shared-memory file: say why, exit 2."""
    with tmpfs(tmp_path / "mnt", "3m") as mount:
        env = {"AI_BRIDGE_DATA_DIR": str(mount / "data"), "AI_BRIDGE_RATE_MAX": "0"}
        with run_bridge(tmp_path, env) as bridge, httpx.Client(base_url=bridge.url, timeout=15) as client:
            ids = [f"e-{i}" for i in range(20)]
            for envelope_id in ids:
                assert client.post("/send", json={"id": envelope_id, "to": SINK}).status_code == 202
        filler = fill(mount)
        with run_bridge(tmp_path, env, wait=False) as bridge:
            assert bridge.wait(timeout=30) == 2
            lines = bridge.log().strip().splitlines()
        assert "Traceback" not in "\n".join(lines)
        assert lines[-1].startswith("error: ") and "its file system is full" in lines[-1], lines[-1]
        filler.unlink()
        with run_bridge(tmp_path, env) as bridge:
            async with httpx.AsyncClient(base_url=bridge.url, timeout=15) as client:
                assert await history_ids(client) == ids
            assert await drain_queue(bridge.ws_url, SINK, expected=len(ids)) == ids


async def test_a_stalled_read_is_answered_503_not_left_hanging(tmp_path: Path) -> None:
    slow = tmp_path / "slow-reads"
    env = {**failing_commits_env(tmp_path / "unused", slow), "AI_BRIDGE_DATA_DIR": str(tmp_path / "data")}
    with run_bridge(tmp_path, env) as bridge:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30) as client:
            assert (await client.post("/send", json={"id": "kept", "to": SINK})).status_code == 202
            slow.touch()
            started = time.monotonic()
            reply = await client.get("/history")
            waited = time.monotonic() - started
            assert reply.status_code == 503, reply.text
            assert reply.json()["code"] == "storage_unavailable" and "read timed out" in reply.json()["error"]
            assert 4 < waited < 12, waited  # READ_TIMEOUT_S is 5 (the stalled SELECT takes 8)
            assert (await health(client))["status"] == "ok"  # writes are fine: not degraded
            assert (await client.post("/send", json={"id": "also", "to": SINK})).status_code == 202
            slow.unlink()
            deadline = time.monotonic() + 15
            while (reply := await client.get("/history")).status_code != 200:
                assert time.monotonic() < deadline, reply.text
                await asyncio.sleep(0.1)
            assert [e["id"] for e in reply.json()["history"]] == ["kept", "also"]
    assert "Traceback" not in bridge.log()
