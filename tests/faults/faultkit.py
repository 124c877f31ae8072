"""What the fault tests (and bench/faults.py) share: the faults themselves and how to watch them.

* :func:`failing_commits_env`: the server's SQLite commits fail while a flag file exists
  (``inject/sitecustomize.py``), on any machine;
* :func:`tmpfs`: a real size-limited tmpfs to fill (root only), and :func:`fill` to fill it;
* :func:`fat_tools`: the registration shape of issue 11 (many tiny keys: cheap as JSON,
  expensive as Python objects), cut to a byte budget;
* :func:`rss_bytes`: a process's resident memory, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import websockets

INJECT_DIR = Path(__file__).resolve().parent / "inject"
FLAG_ENV = "AIBRIDGE_TEST_FAIL_COMMITS"


def failing_commits_env(flag: Path, slow_reads: Path | None = None) -> dict[str, str]:
    """Environment for ``run_bridge``: commits fail while ``flag`` exists, reads stall while
    ``slow_reads`` does."""
    path = os.pathsep.join(p for p in (str(INJECT_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, FLAG_ENV: str(flag)}
    if slow_reads is not None:
        env["AIBRIDGE_TEST_SLOW_READS"] = str(slow_reads)
    return env


def is_root() -> bool:
    return os.geteuid() == 0


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``mount -o size=``) at ``where``; lazily unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path, chunk: int = 16 * 1024) -> Path:
    """Write a filler file into ``directory`` until its file system is full; return its path."""
    filler = directory / "filler"
    block = b"\0" * chunk
    with filler.open("wb", buffering=0) as out:
        for _ in range(1 << 20):  # bounded: 16 GiB at most
            try:
                out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # Smaller writes take the last partial block too.
    with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):
        for _ in range(chunk):
            out.write(b"\0")
    return filler


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """``condition()``'s first truthy value within ``timeout`` seconds, else ``AssertionError``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(interval)


def fat_tools(budget: int, keys_per_tool: int = 420) -> list[dict[str, int]]:
    """Tools of ``keys_per_tool`` tiny keys each, as many as fit ``budget`` JSON bytes."""
    tools: list[dict[str, int]] = []
    size = 2
    for t in range(10_000):
        tool = {f"{t}.{k}": 0 for k in range(keys_per_tool)}
        cost = len(json.dumps(tool, separators=(",", ":"))) + 1
        if size + cost > budget:
            # The last tool takes what is left, a key at a time.
            tool = {}
            for k in range(keys_per_tool):
                cost = len(json.dumps({**tool, f"{t}.{k}": 0}, separators=(",", ":"))) + 1
                if size + cost > budget:
                    break
                tool[f"{t}.{k}"] = 0
            if tool:
                tools.append(tool)
            break
        tools.append(tool)
        size += cost
    return tools


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int, timeout: float = 5.0) -> int:
    """RSS once it stops moving (two reads 0.2 s apart within 64 KiB), or the last read."""
    deadline = time.monotonic() + timeout
    last = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_bytes(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


async def recv(ws: websockets.ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def register(url: str, client_id: str, **options: Any) -> websockets.ClientConnection:
    ws = await websockets.connect(url, compression=None, open_timeout=10, max_size=None)
    await ws.send(json.dumps({"type": "register", "clientId": client_id, **options}))
    frame = await recv(ws)
    assert frame["type"] == "registered", frame
    return ws


async def drain_queue(url: str, client_id: str, expected: int, quiet: float = 0.5) -> list[str]:
    """Register ``client_id`` (acking) and collect the ids replayed to it, in order.

    Reads until ``expected`` envelopes came (10 s deadline), then ``quiet`` seconds more so
    that a duplicate or an extra envelope would be seen too.
    """
    ws = await register(url, client_id, ack=True)
    ids: list[str] = []
    try:
        deadline = time.monotonic() + 10
        with contextlib.suppress(TimeoutError):  # too few: the caller's assertion shows which
            while len(ids) < expected and time.monotonic() < deadline:
                await _take(ws, ids, max(0.05, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            while True:
                await _take(ws, ids, quiet)
        return ids
    finally:
        await ws.close()


async def _take(ws: websockets.ClientConnection, ids: list[str], timeout: float) -> None:
    frame = await recv(ws, timeout=timeout)
    if frame.get("type") == "envelope":
        ids.append(frame["envelope"]["id"])
        await ws.send(json.dumps({"type": "ack", "id": frame["envelope"]["id"]}))
