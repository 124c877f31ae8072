"""Routing figures with the older bridge's own client pattern (Node ``ws``), now against a baseline.

Used by ``bench/bridge.py --client node`` and ``--baseline-ref REF``. The Node client is the
pattern of performance.md in one process: register the receiver(s), register ``src``, ``src``
sends N envelopes without waiting, the clock stops at the last delivery (and the last
``accepted`` with ``confirm``). ``ws`` is installed with npm into a scratch folder.

The figure of record is the server's CPU time per delivery (every thread of the server process,
from /proc, in nanoseconds): on a machine shared with other work the wall-clock rates drift between
hours, the CPU cost much less. Baseline and current servers run alternately, in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NODE_CLIENT = Path(__file__).with_name("node_client.js")


@contextlib.contextmanager
def node_client() -> Iterator[Path]:
    """A scratch folder holding the client script and ``ws`` (npm install); yields the script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("the Node client pattern needs node and npm on PATH")
    with tempfile.TemporaryDirectory(prefix="aibridge-bench-node-") as folder:
        install = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "ws@8"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if install.returncode != 0:
            raise SystemExit(f"npm install ws failed: {install.stderr.strip()[-300:]}")
        script = Path(folder, NODE_CLIENT.name)
        shutil.copyfile(NODE_CLIENT, script)
        yield script


def run_node(script: Path, port: int, messages: int, receivers: int, confirm: bool) -> float:
    """Seconds from the first send to the last delivery (and confirm), as the Node client saw them."""
    url = f"ws://127.0.0.1:{port}/ws"
    args = ["node", str(script), url, str(messages), str(receivers), "1" if confirm else "0"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=script.parent)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        said = f"{done.stdout!r} {done.stderr[-300:]!r}"
        raise RuntimeError(f"node client said nothing readable: {said}") from None
    if "error" in result:
        raise RuntimeError(f"node client: {result['error']}")
    return float(result["seconds"])


@dataclass
class Sample:
    rate: float
    """Deliveries (or confirmed envelopes) per wall-clock second."""
    cpu_us: float
    """Server CPU microseconds per delivery."""


@dataclass
class Figure:
    name: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # "now"/"base" -> samples

    def median(self, side: str, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples[side])


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """A detached git worktree of ``ref`` (removed afterwards); yields its ``src`` folder."""
    repo = Path(__file__).resolve().parent.parent
    folder = Path(tempfile.mkdtemp(prefix="aibridge-baseline-"))
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(folder), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield folder / "src"
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


ROUTING = {
    # name: (receivers, confirm)
    "direct": (1, False),
    "direct_confirm": (1, True),
    "broadcast": (10, False),
}
TARGET_RATIOS = {
    # figure: (cpu per delivery now/base at most, rate now/base at least) — issue 16
    "direct": (0.6, 1.5),
    "direct_confirm": (None, 1.5),
    "broadcast": (0.6, 1.3),
}


@dataclass
class _Run:
    port: int
    pid: int
    messages: int
    receivers: int
    confirm: bool

    def once(
        self,
        client: str,
        script: Path | None,
        cpu_seconds: Callable[[int], float],
        aiohttp_routing: Callable[..., object],
    ) -> Sample:
        cpu_before = cpu_seconds(self.pid)
        deliveries = self.messages * self.receivers
        if client == "node":
            assert script is not None
            seconds = run_node(script, self.port, self.messages, self.receivers, self.confirm)
        else:
            coro = aiohttp_routing(self.port, self.pid, self.messages, self.receivers, confirm=self.confirm)
            seconds = deliveries / float(asyncio.run(coro))  # type: ignore[arg-type]
        time.sleep(0.2)  # deferred commits and acks land on the server's clock too
        cpu = cpu_seconds(self.pid) - cpu_before
        return Sample(deliveries / seconds, cpu / deliveries * 1e6)


def measure(
    bridge: Callable[..., contextlib.AbstractContextManager[tuple[int, int]]],
    cpu_seconds: Callable[[int], float],
    aiohttp_routing: Callable[..., object],
    *,
    store: str,
    extra: dict[str, str],
    messages: int,
    clients: list[str],
    rounds: int,
    baseline_src: Path | None,
) -> list[Figure]:
    """Every routing figure for each client, alternating the current and the baseline server."""
    figures: dict[str, Figure] = {}
    sides: list[tuple[str, Path | None]] = [("now", None)]
    if baseline_src is not None:
        sides.append(("base", baseline_src))
    with contextlib.ExitStack() as stack:
        script = stack.enter_context(node_client()) if "node" in clients else None
        for _ in range(rounds):
            for side, src in sides:
                # One fresh server per client and side: a run never inherits another's history.
                for client in clients:
                    with bridge(store, extra, src=src) as (port, pid):
                        for name, (receivers, confirm) in ROUTING.items():
                            figure = figures.setdefault(f"{name} ({client})", Figure(f"{name} ({client})"))
                            run = _Run(port, pid, messages, receivers, confirm)
                            sample = run.once(client, script, cpu_seconds, aiohttp_routing)
                            figure.samples.setdefault(side, []).append(sample)
                            print(
                                f"  {side:<4} {figure.name:<24} {sample.rate:>10,.0f}/s  "
                                f"server CPU {sample.cpu_us:.1f} µs per delivery",
                                flush=True,
                            )
    return list(figures.values())


def print_table(figures: list[Figure], store: str, baseline: str | None) -> list[str]:
    """The figures, ratios against the baseline next to the issue's targets; names of missed targets."""
    missed: list[str] = []
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\nrouting, store={store}, {stamp}, {os.cpu_count()} CPUs (rates drift on a shared machine;"
        " CPU per delivery is the figure of record)"
    )
    head = f"{'figure':<26}{'CPU µs/deliv':>13}{'rate /s':>12}"
    if baseline:
        head += f"{'base CPU µs':>12}{'base rate':>11}{'CPU ratio':>11}{'rate ratio':>11}  target"
    print(head)
    for figure in figures:
        cpu, rate = figure.median("now", "cpu_us"), figure.median("now", "rate")
        line = f"{figure.name:<26}{cpu:>13.1f}{rate:>12,.0f}"
        if baseline and "base" in figure.samples:
            bcpu, brate = figure.median("base", "cpu_us"), figure.median("base", "rate")
            cpu_ratio, rate_ratio = cpu / bcpu, rate / brate
            line += f"{bcpu:>12.1f}{brate:>11,.0f}{cpu_ratio:>10.2f}×{rate_ratio:>10.2f}×"
            max_cpu, min_rate = TARGET_RATIOS[figure.name.split(" ")[0]]
            if store == "redis":  # issue 16 sets its targets for SQLite and memory only
                max_cpu, min_rate = None, 0.0
            verdicts = []
            if max_cpu is not None:
                ok = cpu_ratio <= max_cpu
                verdicts.append(f"CPU ≤ {max_cpu}× {'ok' if ok else 'MISSED'}")
                missed += [] if ok else [f"{figure.name} CPU"]
            if "(node)" in figure.name and min_rate:  # the rate targets are for the Node client pattern
                ok = rate_ratio >= min_rate
                verdicts.append(f"rate ≥ {min_rate}× {'ok' if ok else 'MISSED'}")
                missed += [] if ok else [f"{figure.name} rate"]
            line += "  " + ", ".join(verdicts)
        print(line, flush=True)
    return missed
