"""The SQLite store's own promises: what ``accept`` acknowledged survives ``kill -9``, the file
stays bounded, and a data directory it cannot use gives a clear ``StoreError``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from aibridge.errors import StoreError
from aibridge.server.config import BridgeConfig
from aibridge.server.store.sqlite import DB_NAME, SqliteStore

BIG = {"history_limit": 1_000_000, "max_queue": 1_000_000, "max_queued_bytes": 1 << 40}

# Eight concurrent producers; each prints an id only after accept() returned (= committed).
PRODUCER = """
import asyncio, sys, uuid
from aibridge.server.config import BridgeConfig
from aibridge.server.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(BridgeConfig(data_dir=sys.argv[1], history_limit=1_000_000,
                                     max_queue=1_000_000, max_queued_bytes=1 << 40))
    await store.open()

    async def produce(n: int) -> None:
        for i in range(1_000_000):
            env = {"id": str(uuid.uuid4()), "from": f"p{n}", "to": f"r{i % 3}", "intent": "x",
                   "taskId": f"t{i % 5}", "payload": {"i": i, "pad": "x" * 200}}
            await store.accept(env, 300, [env["to"]])
            sys.stdout.write(env["id"] + "\\n")
            sys.stdout.flush()

    await asyncio.gather(*(produce(n) for n in range(8)))

asyncio.run(main())
"""

Opener = Callable[..., Any]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens SqliteStores on ``tmp_path/data``; closes whatever is still open afterwards."""
    stores: list[SqliteStore] = []

    async def opener(data_dir: Path | None = None, **settings: Any) -> SqliteStore:
        config = BridgeConfig(data_dir=str(data_dir or tmp_path / "data"), **settings)
        store = SqliteStore(config)
        await store.open()
        stores.append(store)
        return store

    yield opener
    for store in stores:
        await store.close()


def _run_and_kill(data_dir: Path, at_least: int) -> list[str]:
    """Run the producer until it printed ``at_least`` ids, SIGKILL it, return every id it printed."""
    errors = data_dir.parent / "producer.err"
    printed: list[str] = []
    deadline = time.monotonic() + 60
    with (
        errors.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(data_dir)], stdout=subprocess.PIPE, stderr=stderr
        ) as process,
    ):
        assert process.stdout is not None
        try:
            while len(printed) < at_least:
                assert time.monotonic() < deadline, "the producer was too slow"
                line = process.stdout.readline()
                assert line, f"producer died: {errors.read_text()[-2000:]}"
                printed.append(line.decode().strip())
            process.send_signal(signal.SIGKILL)
            # Whatever it printed before the kill landed was acknowledged too.
            printed += [line for line in process.stdout.read().decode().splitlines() if len(line) == 36]
        finally:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    return printed


async def test_every_acknowledged_envelope_survives_kill_9(tmp_path: Path, open_store: Opener) -> None:
    data_dir = tmp_path / "data"
    acknowledged: list[str] = []
    for round_ in range(3):  # later rounds also test that a recovered file keeps taking writes
        acknowledged += _run_and_kill(data_dir, at_least=400)
        store = await open_store(data_dir, **BIG)
        history = await store.history(1_000_000)
        counts = collections.Counter(e["id"] for e in history)
        missing = [i for i in acknowledged if counts[i] != 1]
        assert not missing, f"round {round_}: {len(missing)} acknowledged ids not in history exactly once"
        queued: collections.Counter[str] = collections.Counter()
        for recipient in ("r0", "r1", "r2"):
            pending = await store.pending(recipient)
            assert all(e["to"] == recipient for e in pending)
            queued.update(e["id"] for e in pending)
        assert all(queued[i] == 1 for i in acknowledged), "every acknowledged id is queued exactly once"
        # A commit is all or nothing: whatever reached history also reached its queue, and no more.
        assert queued == counts
        stats = store.stats()
        assert stats.history_size == len(history)
        assert stats.queued_messages == len(history)
        assert stats.queued_bytes == 300 * len(history)
        assert {t["taskId"] for t in await store.tasks()} == {f"t{i}" for i in range(5)}
        await store.close()


def _files_size(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith(DB_NAME))


async def test_pruning_keeps_the_file_bounded(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store(history_limit=200, max_queue=50, commit_window_ms=0)
    data_dir = tmp_path / "data"
    pad = "y" * 2000
    sizes = []
    for round_ in range(6):
        for i in range(1500):
            env = {"id": f"{round_}-{i}", "from": "a", "to": f"r{i % 4}", "taskId": f"t{i}", "pad": pad}
            await store.accept(env, 2100, [env["to"]])
        for recipient in ("r0", "r1"):  # half the recipients come back and ack everything
            await store.ack(recipient, [e["id"] for e in await store.pending(recipient)])
        sizes.append(_files_size(data_dir))
    # 9,000 envelopes of ~2 KB went through; what is kept is 200 history rows, 100 queued
    # entries and 200 task rows (~2.5 MB of pages). Without pruning the database alone would
    # pass 36 MB; the WAL next to it is held near its 8 MiB limit by the checkpoints.
    assert store.stats().history_size == 200
    assert store.stats().queued_messages == 100
    assert max(sizes) < 24 * 1024 * 1024, sizes
    assert sizes[-1] <= sizes[1] * 1.5, f"the file keeps growing: {sizes}"
    await store.close()
    assert (data_dir / DB_NAME).stat().st_size < 4 * 1024 * 1024


async def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("not a directory")
    with pytest.raises(StoreError, match=r"AI_BRIDGE_DATA_DIR=.*data: exists but is not a directory"):
        await SqliteStore(BridgeConfig(data_dir=str(target))).open()


async def test_data_dir_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="AI_BRIDGE_DATA_DIR="):
        await SqliteStore(BridgeConfig(data_dir=str(tmp_path / "file" / "data"))).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            await SqliteStore(BridgeConfig(data_dir=str(locked))).open()
    finally:
        locked.chmod(0o700)


async def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / DB_NAME).write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(StoreError, match=f"{DB_NAME}: cannot open the SQLite store: file is not a database"):
        await SqliteStore(BridgeConfig(data_dir=str(data_dir))).open()


async def test_second_process_on_the_same_data_dir_is_refused(tmp_path: Path, open_store: Opener) -> None:
    await open_store()
    with pytest.raises(StoreError, match="in use by another aibridge process"):
        await SqliteStore(BridgeConfig(data_dir=str(tmp_path / "data"))).open()


async def test_history_limit_lowered_between_runs_prunes_at_open(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store(history_limit=50)
    for i in range(50):
        await store.accept({"id": str(i), "from": "a", "to": None}, 40)
    await store.close()
    again = await open_store(history_limit=10)
    assert again.stats().history_size == 10
    assert [e["id"] for e in await again.history(100)] == [str(i) for i in range(40, 50)]


def _rows(data_dir: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_nowait_writes_commit_together_and_durable_waits_for_them(
    tmp_path: Path, open_store: Opener
) -> None:
    data_dir = tmp_path / "data"
    store = await open_store(commit_window_ms=0)
    sent = [{"id": f"e{i}", "from": "a", "to": "b"} for i in range(300)]
    for env in sent:
        store.accept_nowait(env, 40, ["b"])
    for env in sent[:200]:  # delivered and acked before their commit: never written to the queue
        assert store.ack_nowait("b", [env["id"]]) == 1
    assert store.stats().queued_messages == 100, "counted at once"
    assert _rows(data_dir, "history") == 0, "nothing is committed before the loop moves on"
    await store.durable()
    assert _rows(data_dir, "history") == 300
    assert _rows(data_dir, "queue") == 100
    await store.close()
    again = await open_store()
    assert [e["id"] for e in await again.pending("b")] == [e["id"] for e in sent[200:]]
    assert again.stats().queued_messages == 100


async def test_accept_takes_the_json_text_the_caller_already_has(open_store: Opener) -> None:
    store = await open_store()
    env = {"id": "e1", "from": "a", "to": "b", "payload": {"text": "déjà vu"}}
    text = json.dumps(env, ensure_ascii=False)
    await store.accept(env, len(text), ["b"], text=text)
    assert await store.pending("b") == [env]
    assert await store.history(1) == [env]
