"""One contract for every message store: memory, SQLite (a temp dir) and Redis (a real redis-server).

Each test runs against each store; a store that behaves differently fails here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aibridge.server.config import BridgeConfig
from aibridge.server.store.base import QueueFullError, Store
from redis_support import redis_server  # noqa: F401  (fixture)

KINDS = ["memory", "sqlite", "redis"]
PERSISTENT = {"sqlite", "redis"}

StoreFactory = Callable[..., Awaitable[Store]]


def _memory_store_class() -> Any:
    try:
        return importlib.import_module("aibridge.server.store.memory").MemoryStore
    except ModuleNotFoundError:
        pytest.skip("aibridge.server.store.memory is not written yet")


@pytest.fixture(params=KINDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Builds and opens stores of this test's kind; every store it made is closed afterwards."""
    kind: str = request.param
    opened: list[Store] = []
    base = BridgeConfig(data_dir=str(tmp_path / "data"))
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        base = dataclasses.replace(base, redis_url=server.url)

    async def factory(**settings: Any) -> Store:
        config = dataclasses.replace(base, **settings)
        store: Store
        if kind == "memory":
            store = _memory_store_class()(config)
        elif kind == "sqlite":
            from aibridge.server.store.sqlite import SqliteStore

            store = SqliteStore(config)
        else:
            from aibridge.server.store.redis import RedisStore

            store = RedisStore(config)
        await store.open()
        opened.append(store)
        return store

    factory.kind = kind  # type: ignore[attr-defined]
    try:
        yield factory
    finally:
        for store in reversed(opened):
            await store.close()


def envelope(
    sender: str = "a",
    to: str | None = "b",
    *,
    task: str | None = None,
    intent: str = "agent.message",
    text: str = "hi",
) -> tuple[dict[str, Any], int]:
    env = {
        "id": str(uuid.uuid4()),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "intent": intent,
        "taskId": task,
        "channel": "default",
        "priority": "normal",
        "from": sender,
        "role": "agent",
        "to": to,
        "replyTo": None,
        "context": {},
        "payload": {"text": text},
        "trace": {},
        "tools": [],
        "attachments": [],
    }
    return env, len(json.dumps(env, separators=(",", ":")).encode())


def ids(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in envelopes]


async def test_accept_writes_history_and_queue(make_store: StoreFactory) -> None:
    store = await make_store()
    env, size = envelope("a", "b", text="ünïcode ✓")
    result = await store.accept(env, size, ["b"])
    assert result.dropped == 0
    assert await store.history(10) == [env]
    assert await store.pending("b") == [env]
    assert await store.pending("a") == []
    stats = store.stats()
    assert (stats.history_size, stats.queues, stats.queued_messages, stats.queued_bytes) == (1, 1, 1, size)


async def test_broadcast_is_history_only(make_store: StoreFactory) -> None:
    store = await make_store()
    env, size = envelope("a", None)
    await store.accept(env, size)
    assert ids(await store.history(10)) == [env["id"]]
    assert store.stats().queues == 0
    assert store.stats().queued_messages == 0


async def test_pending_is_ordered_and_ack_removes(make_store: StoreFactory) -> None:
    store = await make_store()
    sent = [envelope("a", "b", text=str(i)) for i in range(4)]
    for env, size in sent:
        await store.accept(env, size, ["b"])
    assert ids(await store.pending("b")) == [e["id"] for e, _ in sent]
    assert await store.ack("b", [sent[1][0]["id"], "no-such-id"]) == 1
    assert await store.ack("b", [sent[1][0]["id"]]) == 0
    assert await store.ack("nobody", [sent[0][0]["id"]]) == 0
    assert ids(await store.pending("b")) == [sent[i][0]["id"] for i in (0, 2, 3)]
    assert store.stats().queued_messages == 3
    assert store.stats().queued_bytes == sum(sent[i][1] for i in (0, 2, 3))
    assert await store.ack("b", [sent[i][0]["id"] for i in (0, 2, 3)]) == 3
    assert await store.pending("b") == []
    stats = store.stats()
    assert (stats.queues, stats.queued_messages, stats.queued_bytes) == (0, 0, 0)
    assert len(await store.history(10)) == 4, "acks never touch history"


async def test_one_entry_per_id_and_recipient_newest_wins(make_store: StoreFactory) -> None:
    store = await make_store()
    env, size = envelope("a", "b")
    await store.accept(env, size, ["b", "b", "c"])
    assert ids(await store.pending("b")) == [env["id"]]
    assert ids(await store.pending("c")) == [env["id"]]
    assert store.stats().queued_messages == 2
    later, later_size = envelope("a", "b")
    await store.accept(later, later_size, ["b"])
    again = {**env, "payload": {"text": "edited, and longer than before"}}
    again_size = size + 20
    assert (await store.accept(again, again_size, ["b"])).dropped == 0
    assert await store.pending("b") == [later, again], "the re-sent id moves to the end, newest copy"
    stats = store.stats()
    assert (stats.queues, stats.queued_messages) == (2, 3)
    assert stats.queued_bytes == size + later_size + again_size


async def test_max_queue_drops_oldest_and_counts(make_store: StoreFactory) -> None:
    store = await make_store(max_queue=3)
    sent = [envelope("a", "b", text=str(i)) for i in range(5)]
    dropped = [(await store.accept(env, size, ["b"])).dropped for env, size in sent]
    assert dropped == [0, 0, 0, 1, 1]
    assert ids(await store.pending("b")) == [e["id"] for e, _ in sent[2:]]
    assert store.stats().queued_messages == 3
    assert store.stats().queued_bytes == sum(size for _, size in sent[2:])
    assert store.stats().history_size == 5


async def test_max_queues_refuses_before_writing(make_store: StoreFactory) -> None:
    store = await make_store(max_queues=2)
    for recipient in ("b", "c"):
        env, size = envelope("a", recipient)
        await store.accept(env, size, [recipient])
    before = store.stats()
    refused, size = envelope("a", "d")
    with pytest.raises(QueueFullError):
        await store.accept(refused, size, ["d"])
    assert store.stats() == before
    assert refused["id"] not in ids(await store.history(10))
    assert await store.pending("d") == []
    more, size = envelope("a", "b")
    await store.accept(more, size, ["b"])  # existing queues still take envelopes
    assert store.stats().queued_messages == 3


async def test_max_queued_bytes_refuses_before_writing(make_store: StoreFactory) -> None:
    first, size = envelope("a", "b")
    store = await make_store(max_queued_bytes=size * 2 + size // 2)
    await store.accept(first, size, ["b"])
    second, size2 = envelope("a", "c")
    await store.accept(second, size2, ["c"])
    third, size3 = envelope("a", "b")
    with pytest.raises(QueueFullError):
        await store.accept(third, size3, ["b"])
    assert len(await store.history(10)) == 2
    assert store.stats().queued_bytes == size + size2
    await store.ack("b", [first["id"]])
    await store.accept(third, size3, ["b"])
    assert ids(await store.pending("b")) == [third["id"]]


async def test_history_limit_keeps_the_newest(make_store: StoreFactory) -> None:
    store = await make_store(history_limit=5)
    sent = [envelope("a", None, text=str(i))[0] for i in range(8)]
    for env in sent:
        await store.accept(env, 100)
    assert ids(await store.history(100)) == ids(sent[3:])
    assert ids(await store.history(2)) == ids(sent[6:])
    assert store.stats().history_size == 5


async def test_history_filters(make_store: StoreFactory) -> None:
    store = await make_store()
    plan = [
        ("a", "b", "t1", "plan"),
        ("b", "a", "t1", "reply"),
        ("c", None, None, "plan"),
        ("c", "b", "t2", "plan"),
        ("a", "c", "t2", "reply"),
    ]
    sent = []
    for sender, to, task, intent in plan:
        env, size = envelope(sender, to, task=task, intent=intent)
        await store.accept(env, size)
        sent.append(env)
    assert ids(await store.history(10, agent_id="b")) == ids([sent[0], sent[1], sent[3]])
    assert ids(await store.history(10, task_id="t2")) == ids(sent[3:])
    assert ids(await store.history(10, intent="plan")) == ids([sent[0], sent[2], sent[3]])
    assert ids(await store.history(10, agent_id="c", intent="plan")) == ids([sent[2], sent[3]])
    assert ids(await store.history(1, agent_id="a")) == ids([sent[4]])
    assert await store.history(10, agent_id="zed") == []


async def test_tasks_summaries(make_store: StoreFactory) -> None:
    store = await make_store()
    steps = [("a", "b", "t1", "plan"), ("x", None, None, "chat"), ("c", "d", "t2", "plan")]
    steps += [("b", "a", "t1", "reply"), ("c", "a", "t1", "plan")]
    sent = []
    for sender, to, task, intent in steps:
        env, size = envelope(sender, to, task=task, intent=intent)
        await store.accept(env, size)
        sent.append(env)
    tasks = await store.tasks()
    assert [t["taskId"] for t in tasks] == ["t1", "t2"], "first seen first"
    t1 = tasks[0]
    assert t1["intents"] == ["plan", "reply"]
    assert t1["participants"] == ["a", "b", "c"]
    assert t1["lastUpdate"] == sent[4]["timestamp"]
    assert t1["lastEnvelope"] == sent[4]
    assert tasks[1]["participants"] == ["c", "d"]
    assert tasks[1]["lastEnvelope"] == sent[2]


async def test_tasks_are_bounded_by_history_limit(make_store: StoreFactory) -> None:
    store = await make_store(history_limit=3)
    for task in ("t1", "t2", "t3", "t1", "t4"):
        env, size = envelope("a", None, task=task)
        await store.accept(env, size)
    # Beyond history_limit tasks the first seen goes, whatever its activity.
    tasks = await store.tasks()
    assert [t["taskId"] for t in tasks] == ["t2", "t3", "t4"]
    for _ in range(4):  # t2's summary outlives its envelope, which has left the history ring
        env, size = envelope("b", None, task="t3")
        await store.accept(env, size)
    assert [t["taskId"] for t in await store.tasks()] == ["t2", "t3", "t4"]
    assert (await store.tasks())[0] == tasks[0]


async def _wait_clock(ms: float) -> None:
    """Return once both the wall clock and the monotonic clock moved ``ms`` forward."""
    wall, mono = time.time(), time.monotonic()
    deadline = mono + 5
    while time.time() - wall < ms / 1000 or time.monotonic() - mono < ms / 1000:
        assert time.monotonic() < deadline, "the clock did not advance"
        await asyncio.sleep(ms / 4000)


async def test_expire_queues_drops_idle_queues_not_kept(make_store: StoreFactory) -> None:
    store = await make_store()
    for recipient in ("b", "c", "d"):
        env, size = envelope("a", recipient)
        await store.accept(env, size, [recipient])
    assert await store.expire_queues(3_600_000) == 0
    await _wait_clock(600)
    fresh, size = envelope("a", "d")
    await store.accept(fresh, size, ["d"])  # touching d keeps it young
    # b and c are >= 600 ms idle, d a few ms: a 300 ms cut tolerates a loaded machine's stalls.
    assert await store.expire_queues(300, keep=["c"]) == 1
    assert await store.pending("b") == []
    assert len(await store.pending("c")) == 1
    assert len(await store.pending("d")) == 2
    stats = store.stats()
    assert (stats.queues, stats.queued_messages) == (2, 3)
    assert stats.history_size == 4


async def test_stats_match_a_model_after_random_operations(make_store: StoreFactory) -> None:
    store = await make_store(max_queue=4, history_limit=20)
    rng = random.Random(8)
    model: dict[str, list[tuple[str, int]]] = {}
    for _ in range(150):
        recipient = rng.choice("bcdef")
        if rng.random() < 0.65:
            env, size = envelope("a", recipient, text="x" * rng.randrange(50))
            targets = [recipient] if rng.random() < 0.8 else []
            await store.accept(env, size, targets)
            for target in targets:
                model.setdefault(target, []).append((env["id"], size))
                del model[target][:-4]
        elif model.get(recipient):
            chosen = rng.sample(model[recipient], rng.randrange(1, len(model[recipient]) + 1))
            assert await store.ack(recipient, [i for i, _ in chosen]) == len(chosen)
            model[recipient] = [entry for entry in model[recipient] if entry not in chosen]
    live = {r: entries for r, entries in model.items() if entries}
    stats = store.stats()
    assert stats.queues == len(live)
    assert stats.queued_messages == sum(len(e) for e in live.values())
    assert stats.queued_bytes == sum(size for e in live.values() for _, size in e)
    assert stats.history_size == 20
    for recipient in "bcdef":
        assert ids(await store.pending(recipient)) == [i for i, _ in live.get(recipient, [])]


async def test_concurrent_accepts_all_land(make_store: StoreFactory) -> None:
    store = await make_store(history_limit=1000)
    sent = [envelope("a", f"r{i % 7}") for i in range(200)]
    await asyncio.gather(*(store.accept(env, size, [env["to"]]) for env, size in sent))
    history = await store.history(1000)
    assert sorted(ids(history)) == sorted(e["id"] for e, _ in sent)
    assert store.stats().queued_messages == 200
    for i in range(7):
        # Concurrent callers have no order between them, but history and queue agree on one.
        expected = [e["id"] for e in history if e["to"] == f"r{i}"]
        assert ids(await store.pending(f"r{i}")) == expected


async def test_reopen_restores_everything(make_store: StoreFactory) -> None:
    if make_store.kind not in PERSISTENT:  # type: ignore[attr-defined]
        pytest.skip("the memory store forgets on purpose")
    store = await make_store(max_queue=3, history_limit=4)
    sent = [envelope("a", "b", task="t1", intent=f"i{i}") for i in range(5)]
    for env, size in sent:
        await store.accept(env, size, ["b"])
    await store.ack("b", [sent[3][0]["id"]])
    before = (store.stats(), await store.history(10), await store.pending("b"), await store.tasks())
    await store.close()
    again = await make_store(max_queue=3, history_limit=4)
    after = (again.stats(), await again.history(10), await again.pending("b"), await again.tasks())
    assert after == before
    assert ids(after[2]) == [sent[2][0]["id"], sent[4][0]["id"]]
    more, size = envelope("a", "b")
    assert (await again.accept(more, size, ["b"])).dropped == 0
    extra, size = envelope("a", "b")
    assert (await again.accept(extra, size, ["b"])).dropped == 1, "caps hold after reopen"


async def test_redis_unreachable_at_start_names_the_url_without_password() -> None:
    from aibridge.errors import StoreError
    from aibridge.server.store.redis import RedisStore
    from support import free_port

    port = free_port()
    store = RedisStore(BridgeConfig(redis_url=f"redis://bridge:s3cret@127.0.0.1:{port}/0"))
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert f"redis://***@127.0.0.1:{port}/0" in caught.value.detail
    assert "s3cret" not in caught.value.detail


async def test_redis_store_survives_a_flushed_script_cache(redis_server: Any) -> None:  # noqa: F811
    from aibridge.server.store.redis import RedisStore

    store = RedisStore(BridgeConfig(redis_url=redis_server.url))
    await store.open()
    try:
        first, size = envelope("a", "b")
        await store.accept(first, size, ["b"])
        with redis_server.client() as raw:
            raw.script_flush()  # what a restarted Redis looks like to the scripts
        second, size = envelope("a", "b")
        await store.accept(second, size, ["b"])
        assert await store.ack("b", [first["id"]]) == 1
        assert ids(await store.pending("b")) == [second["id"]]
    finally:
        await store.close()
