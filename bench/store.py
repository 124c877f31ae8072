"""Envelopes/s through the message stores alone, from many concurrent producers.

    .venv/bin/python bench/store.py [--envelopes 40000] [--producers 64] [--window-ms 2] [--no-redis]

Scenarios per store: ``queued`` (recipient offline: accept into its queue), ``direct``
(recipient online: accept, then ack right after writing to its socket, as the hub does
for fire-and-forget agents), ``broadcast`` (history only); in these every producer awaits
each call (what a confirm-on sender or an HTTP 202 costs). ``pipelined``: one producer,
``accept_nowait`` + ``ack_nowait`` without waiting for the disk (a confirm-off WebSocket
sender), then one wait for the last commit; only stores that have ``accept_nowait``.
CPU is the process time (all threads) per envelope: steadier than the rate on a busy machine.
The SQLite store must stay well above the 25,000 envelopes/s end-to-end target, since the
server adds its own work on top.
Redis runs against a private ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from aibridge.server.config import BridgeConfig
from aibridge.server.store.base import Store
from support import free_port

SCENARIOS = ("queued", "direct", "broadcast", "pipelined")


def make_envelopes(count: int) -> list[tuple[dict[str, Any], int]]:
    out = []
    for i in range(count):
        env = {
            "id": str(uuid.uuid4()),
            "timestamp": "2026-11-27T01:00:00.000Z",
            "intent": "agent.message",
            "taskId": f"task-{i % 50}" if i % 4 == 0 else None,
            "channel": "default",
            "priority": "normal",
            "from": f"p{i % 64}",
            "role": "agent",
            "to": f"r{i % 64}",
            "replyTo": None,
            "context": {},
            "payload": {"text": "hello from the benchmark", "i": i},
            "trace": {},
            "tools": [],
            "attachments": [],
        }
        out.append((env, len(json.dumps(env, separators=(",", ":")))))
    return out


async def run(store: Any, scenario: str, envelopes: list[tuple[dict[str, Any], int]], producers: int) -> None:
    if scenario == "pipelined":
        for i, (env, size) in enumerate(envelopes):
            store.accept_nowait(env, size, [env["to"]])
            store.ack_nowait(env["to"], [env["id"]])
            if i % 100 == 99:
                await asyncio.sleep(0)  # as a server does between socket reads
        await store.durable()
        return

    async def produce(share: list[tuple[dict[str, Any], int]]) -> None:
        for env, size in share:
            if scenario == "broadcast":
                await store.accept(env, size)
            else:
                await store.accept(env, size, [env["to"]])
                if scenario == "direct":
                    await store.ack(env["to"], [env["id"]])

    await asyncio.gather(*(produce(envelopes[i::producers]) for i in range(producers)))


async def bench(name: str, factory: Callable[[BridgeConfig], Store], config: BridgeConfig, args: Any) -> None:
    for scenario in SCENARIOS:
        envelopes = make_envelopes(args.envelopes)
        store = factory(config)
        if scenario == "pipelined" and not hasattr(store, "accept_nowait"):
            continue
        await store.open()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            await run(store, scenario, envelopes, args.producers)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await store.close()
        producers = 1 if scenario == "pipelined" else args.producers
        print(
            f"{name:<7} {scenario:<10} {len(envelopes) / wall:>9,.0f} envelopes/s"
            f"  cpu {1e6 * cpu / len(envelopes):5.1f} us/envelope  ({producers} producers)",
            flush=True,
        )


def sqlite_factory(config: BridgeConfig) -> Store:
    from aibridge.server.store.sqlite import SqliteStore

    data = Path(config.data_dir)
    shutil.rmtree(data, ignore_errors=True)  # every scenario starts from an empty file
    return SqliteStore(config)


def redis_factory(config: BridgeConfig) -> Store:
    from aibridge.server.store.redis import RedisStore

    subprocess.run(["redis-cli", "-u", config.redis_url or "", "FLUSHALL"], check=True, capture_output=True)
    return RedisStore(config)


async def main(args: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = BridgeConfig(
            data_dir=str(Path(tmp) / "data"),
            commit_window_ms=args.window_ms,
            history_limit=1000,
            max_queue=2000,
            max_queued_bytes=1 << 32,
        )
        try:
            from aibridge.server.store.memory import MemoryStore

            await bench("memory", MemoryStore, config, args)
        except ModuleNotFoundError:
            pass
        await bench("sqlite", sqlite_factory, config, args)
        binary = shutil.which("redis-server")
        if args.no_redis or binary is None:
            print("redis    skipped (--no-redis or redis-server not installed)")
            return
        port = free_port()
        with subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        ) as server:
            try:
                url = f"redis://127.0.0.1:{port}/0"
                deadline = time.monotonic() + 10
                while (
                    subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).stdout
                    != b"PONG\n"
                ):
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start")
                    time.sleep(0.05)
                await bench("redis", redis_factory, dataclasses.replace(config, redis_url=url), args)
            finally:
                server.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envelopes", type=int, default=40_000)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--window-ms", type=float, default=2.0, help="AI_BRIDGE_COMMIT_WINDOW_MS")
    parser.add_argument("--no-redis", action="store_true")
    uvloop.run(main(parser.parse_args()))
