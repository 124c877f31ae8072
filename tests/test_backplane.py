"""Two Redis backplanes on one real redis-server: presence, direct and broadcast delivery,
claims, expiry when an instance dies, and recovery when Redis itself restarts.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aibridge.errors import StoreError
from aibridge.server.backplane import BackplaneMessage, RedisBackplane
from aibridge.server.config import BridgeConfig
from redis_support import RedisServer, redis_server  # noqa: F401  (fixture)
from support import free_port


class Node:
    """One backplane plus everything its handler received."""

    def __init__(self, backplane: RedisBackplane) -> None:
        self.backplane = backplane
        self.inbox: asyncio.Queue[BackplaneMessage] = asyncio.Queue()

    async def handle(self, message: BackplaneMessage) -> None:
        self.inbox.put_nowait(message)

    async def next(self, timeout: float = 5.0) -> BackplaneMessage:
        return await asyncio.wait_for(self.inbox.get(), timeout)


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[Callable[..., Node]]:  # noqa: F811
    started: list[Node] = []

    async def start(instance_id: str, **options: object) -> Node:
        config = BridgeConfig(redis_url=redis_server.url)
        node = Node(RedisBackplane(config, instance_id=instance_id, **options))  # type: ignore[arg-type]
        await node.backplane.start(node.handle)
        started.append(node)
        return node

    yield start  # type: ignore[misc]
    for node in started:
        await node.backplane.stop()


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait for ``condition()`` to be true (polling), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def until_async(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[misc]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def env(text: str, to: str | None = None) -> dict[str, object]:
    return {"id": f"id-{text}", "from": "sender", "to": to, "payload": {"text": text}}


async def test_presence_and_direct_delivery_across_instances(nodes: Callable[..., Node]) -> None:
    a, b = await nodes("A"), await nodes("B")
    assert a.backplane.healthy and b.backplane.healthy
    await a.backplane.announce("agent-x")
    assert await b.backplane.locate("agent-x") == "A"
    assert await b.backplane.locate("agent-y") is None
    assert await b.backplane.publish_direct("A", env("one", "agent-x")) is True
    message = await a.next()
    assert message == BackplaneMessage("direct", "B", env("one", "agent-x"))
    assert await b.backplane.publish_direct("no-such-instance", env("two")) is False
    await a.backplane.withdraw("agent-x")
    assert await b.backplane.locate("agent-x") is None


async def test_broadcast_reaches_other_instances_only(nodes: Callable[..., Node]) -> None:
    a, b, c = await nodes("A"), await nodes("B"), await nodes("C")
    await a.backplane.publish_broadcast(env("all"), exclude_from="sender")
    for node in (b, c):
        assert await node.next() == BackplaneMessage("broadcast", "A", env("all"), exclude_from="sender")
    # A direct message published after the broadcast reaches A first: A never saw its own broadcast.
    await b.backplane.publish_direct("A", env("after"))
    assert (await a.next()).envelope == env("after")


async def test_newest_announcement_wins_and_the_old_holder_is_told(nodes: Callable[..., Node]) -> None:
    a, b = await nodes("A"), await nodes("B")
    await a.backplane.announce("agent-x")
    await b.backplane.announce("agent-x")
    assert await a.next() == BackplaneMessage("claimed", "B", agent_id="agent-x")
    assert await a.backplane.locate("agent-x") == "B"
    await a.backplane.withdraw("agent-x")  # the older holder leaving must not erase the newer record
    assert await a.backplane.locate("agent-x") == "B"
    assert b.inbox.empty(), "B's own claim is not echoed back to B"


DYING_INSTANCE = """
import asyncio, sys
from aibridge.server.backplane import RedisBackplane
from aibridge.server.config import BridgeConfig

async def main() -> None:
    backplane = RedisBackplane(BridgeConfig(redis_url=sys.argv[1]), instance_id="C", presence_ttl_ms=600)
    async def ignore(message): pass
    await backplane.start(ignore)
    await backplane.announce("agent-z")
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_presence_expires_when_an_instance_dies(
    nodes: Callable[..., Node],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    b = await nodes("B")
    with subprocess.Popen(
        [sys.executable, "-c", DYING_INSTANCE, redis_server.url], stdout=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        try:
            assert process.stdout.readline().strip() == b"ready"
            # Refreshed every ttl/3 while alive: still there after several TTLs.
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                assert await b.backplane.locate("agent-z") == "C"
                await asyncio.sleep(0.1)
            process.kill()  # kill -9: no withdraw, no goodbye
            process.wait(timeout=10)
        finally:
            process.kill()
    killed = time.monotonic()
    await until_async(lambda: _gone(b, "agent-z"), timeout=5)
    assert time.monotonic() - killed < 2, "the record expired within about one TTL"
    assert await b.backplane.publish_direct("C", env("late")) is False


async def _gone(node: Node, agent_id: str) -> bool:
    return await node.backplane.locate(agent_id) is None


async def test_redis_restart_degrades_then_recovers(
    nodes: Callable[..., Node],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a, b = await nodes("A", presence_ttl_ms=3000), await nodes("B", presence_ttl_ms=3000)
    await a.backplane.announce("agent-x")
    redis_server.stop()
    await until(lambda: not a.backplane.healthy and not b.backplane.healthy)
    assert await b.backplane.locate("agent-x") is None, "unreachable Redis answers None, never raises"
    assert await b.backplane.publish_direct("A", env("lost")) is False
    redis_server.start()  # same port, empty: every presence record is gone
    await until(lambda: a.backplane.healthy and b.backplane.healthy)
    assert await b.backplane.locate("agent-x") == "A", "presence is re-announced after reconnecting"
    assert await b.backplane.publish_direct("A", env("back")) is True
    assert (await a.next()).envelope == env("back")


async def test_unreachable_redis_at_start_is_a_clear_error() -> None:
    port = free_port()
    backplane = RedisBackplane(BridgeConfig(redis_url=f"redis://:hunter2@127.0.0.1:{port}"), instance_id="A")
    with pytest.raises(StoreError) as caught:
        await backplane.start(Node(backplane).handle)
    assert f"cannot reach Redis at redis://***@127.0.0.1:{port}" in caught.value.detail
    assert "hunter2" not in caught.value.detail


def test_default_instance_id_prefers_config_then_fly(tmp_path: Path) -> None:
    from aibridge.server.backplane import default_instance_id

    assert default_instance_id(BridgeConfig(instance_id="mine"), {"FLY_MACHINE_ID": "m1"}) == "mine"
    assert default_instance_id(BridgeConfig(), {"FLY_MACHINE_ID": "m1"}) == "m1"
    one, two = default_instance_id(BridgeConfig(), {}), default_instance_id(BridgeConfig(), {})
    assert one == two and one.endswith(f"-{__import__('os').getpid()}")
