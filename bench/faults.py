"""Measure the bridge under the faults of issue 11 and print each figure next to its target.

    .venv/bin/python bench/faults.py [--rounds N]

Figures, each on a real ``aibridge serve`` on 127.0.0.1:

* ``recovery_tmpfs``: seconds from disk space back (the filler file on a full 3 MiB tmpfs
  removed, after the fault lasted ``--hold`` s) to the first ``POST /send`` answered 202;
  root only (it mounts the tmpfs), else "cannot tell". ``recovery_commit``: the same with
  the server's SQLite commits failing (tests/faults/inject) until a flag file is removed, on
  any machine. Median of ``--rounds``, the worst round too. The probes back off to 1 s, so a
  long fault is followed by up to 1 s of 503s.
* ``rss_fat_agent``: RSS growth per agent registered with tools just under
  AI_BRIDGE_MAX_META_BYTES (tiny keys, the costliest shape), next to a bare agent's (the
  baseline in the same run) and as a multiple of its JSON bytes.
* ``rss_queued_envelope``: RSS growth per envelope queued in the memory store (the issue's
  246 KB shape), as a multiple of its JSON bytes.

The tests in tests/faults hold the same figures to their bounds; this prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faults.faultkit import (
    failing_commits_env,
    fat_tools,
    fill,
    is_root,
    json_size,
    register,
    settled_rss,
    tmpfs,
)
from support import BridgeProcess, run_bridge

META_CAP = 16 * 1024
TARGETS: dict[str, tuple[float, str]] = {
    "recovery_tmpfs": (1.5, "s"),
    "recovery_commit": (1.5, "s"),
    "rss_fat_agent": (128, "KiB"),
    "rss_queued_envelope": (1.25, "x JSON bytes"),
}
_missed: list[str] = []


def report(name: str, value: float | None, detail: str = "") -> None:
    target, unit = TARGETS[name]
    if value is None:
        print(f"{name:<22} cannot tell: {detail}")
        return
    ok = value <= target
    if not ok:
        _missed.append(name)
    print(f"{name:<22} {value:10.2f} {unit:<13} target <= {target:g}  {'ok' if ok else 'MISSED'}  {detail}")


def _env(data: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"AI_BRIDGE_DATA_DIR": str(data), "AI_BRIDGE_RATE_MAX": "0", **(extra or {})}


def _time_to_recovery(
    bridge: BridgeProcess, start: Callable[[], None], end: Callable[[], None], hold: float
) -> float:
    """Break writes, see a 503, keep the fault ``hold`` s (backoff reaches its cap), time the first 202."""
    with httpx.Client(base_url=bridge.url, timeout=15) as client:

        def send() -> int:
            body = {"to": "sink", "payload": {"blob": "x" * 16 * 1024}}
            return client.post("/send", json=body).status_code

        assert send() == 202
        start()
        for _ in range(400):
            if send() == 503:
                break
        else:
            raise RuntimeError("the fault never made a write fail")
        time.sleep(hold)  # the fault lasting: the probes back off meanwhile
        end()
        ended = time.monotonic()
        while send() != 202:
            if time.monotonic() - ended > 30:
                raise RuntimeError("no successful write within 30 s of the fault ending")
            time.sleep(0.01)
        return time.monotonic() - ended


def recovery_commit(rounds: int, hold: float) -> None:
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        flag = base / "fail"
        with run_bridge(base, _env(base / "data", failing_commits_env(flag))) as bridge:
            for _ in range(rounds):
                seconds.append(_time_to_recovery(bridge, flag.touch, flag.unlink, hold))
    report("recovery_commit", statistics.median(seconds), f"worst {max(seconds):.2f} s of {rounds}")


def recovery_tmpfs(rounds: int, hold: float) -> None:
    if not is_root():
        report("recovery_tmpfs", None, "mounting a tmpfs needs root")
        return
    seconds = []
    with tempfile.TemporaryDirectory() as tmp, tmpfs(Path(tmp) / "mnt", "3m") as mount:
        fillers: list[Path] = []
        with run_bridge(Path(tmp), _env(mount / "data")) as bridge:
            for _ in range(rounds):
                start, end = (lambda: fillers.append(fill(mount))), (lambda: fillers.pop().unlink())
                seconds.append(_time_to_recovery(bridge, start, end, hold))
    report("recovery_tmpfs", statistics.median(seconds), f"worst {max(seconds):.2f} s of {rounds}")


@contextlib.contextmanager
def _bridge(extra: dict[str, str]) -> Iterator[BridgeProcess]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_bridge(Path(tmp), _env(Path(tmp) / "data", extra)) as bridge,
    ):
        yield bridge


async def _agents_rss(bridge: BridgeProcess, tools: list[dict[str, int]], count: int, prefix: str) -> float:
    """RSS growth per agent over ``count`` agents registering ``tools`` (kept connected)."""
    pid = bridge.process.pid
    before = settled_rss(pid)
    sockets = [await register(bridge.ws_url, f"{prefix}-{i}", tools=tools) for i in range(count)]
    grown = (settled_rss(pid) - before) / count
    for ws in sockets:
        await ws.close()
    return grown


async def rss_agents() -> None:
    tools = fat_tools(META_CAP - 64)
    with _bridge({}) as bridge:
        await _agents_rss(bridge, [], 5, "warm")
        bare = await _agents_rss(bridge, [], 40, "bare")
        fat = await _agents_rss(bridge, tools, 40, "fat")
    size = json_size(tools)
    report(
        "rss_fat_agent",
        fat / 1024,
        f"bare agent {bare / 1024:.1f} KiB (ratio {fat / bare:.1f}); {fat / size:.1f} x its {size} bytes",
    )


def rss_queued() -> None:
    payload = {"tools": fat_tools(240 * 1024)}
    with (
        _bridge({"AI_BRIDGE_STORE": "memory"}) as bridge,
        httpx.Client(base_url=bridge.url, timeout=30) as client,
    ):

        def send(i: int) -> int:
            reply = client.post("/send", json={"to": "away", "payload": payload, "id": f"e-{i}"})
            reply.raise_for_status()
            return json_size(reply.json()["envelope"])

        for i in range(3):
            send(i)
        before = settled_rss(bridge.process.pid)
        size = max(send(i) for i in range(3, 33))
        grown = (settled_rss(bridge.process.pid) - before) / 30
    report(
        "rss_queued_envelope", grown / size, f"{grown / 1024:.1f} KiB per envelope of {size / 1024:.1f} KiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="fault/recovery rounds per figure")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds each fault lasts")
    args = parser.parse_args()
    recovery_tmpfs(args.rounds, args.hold)
    recovery_commit(args.rounds, args.hold)
    asyncio.run(rss_agents())
    rss_queued()
    return 1 if _missed else 0


if __name__ == "__main__":
    sys.exit(main())
