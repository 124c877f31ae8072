"""What metrics, access logging and limits cost on ``/health``: req/s with ``wrk`` per layer set.

Starts tests/obs_app.py (a real Litestar app under uvicorn, wired like the bridge) once per
variant on a free loopback port, logs to a file, runs ``wrk -t2 -c50 -d10s`` on /health, and
prints req/s and the cost against the bare app. ``--url`` measures a server already running
instead (e.g. ``aibridge serve``). Figures are indicative on a shared machine: use ``--rounds``.

The figures of record (the real bridge as shipped, logging on and off) come from
``bench/bridge.py --only health``; this script stays as the per-layer breakdown for tuning.

    python bench/obs_overhead.py [--duration 10] [--rounds 1] [--url http://127.0.0.1:8080/health]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from support import free_port  # noqa: E402

VARIANTS = {
    "bare": ("", "text"),
    "metrics": ("metrics", "text"),
    "logs (text)": ("logs", "text"),
    "logs (json)": ("logs", "json"),
    "metrics+logs+limits": ("metrics,logs,limits", "text"),
}
TARGET_RPS = 9000
LOG_BUDGET = 0.15


def wrk(url: str, duration: int, connections: int) -> tuple[float, int]:
    """(req/s, requests) of one clean wrk run."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk run was not clean:\n{out}")
    return float(rate.group(1)), int(total.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (the log writer and metrics threads too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_variant(
    layers: str, log_format: str, duration: int, connections: int, logdir: Path
) -> tuple[float, float]:
    """(req/s, server CPU µs per request): the second barely moves when neighbours steal CPU."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_")}
    env |= {
        "PORT": str(port),
        "AI_BRIDGE_HOST": "127.0.0.1",
        "AI_BRIDGE_METRICS_PORT": str(free_port()),
        "AI_BRIDGE_LOG_FORMAT": log_format,
        "OBS_LAYERS": layers,
    }
    with (logdir / f"{port}.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "obs_app.py")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}/health"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"app did not start: {(logdir / f'{port}.log').read_text()}") from None
                time.sleep(0.05)
        wrk(url, 2, connections)  # warm-up
        before = cpu_seconds(server.pid)
        rps, requests = wrk(url, duration, connections)
        return rps, (cpu_seconds(server.pid) - before) / requests * 1e6
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant; the best is kept")
    parser.add_argument("--url", help="measure this running server's URL instead of the variants")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.url:
        rps, _ = wrk(args.url, args.duration, args.connections)
        print(f"{args.url}: {rps:,.0f} req/s (target >= {TARGET_RPS:,})")
        return
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every variant alike
            for name, (layers, fmt) in VARIANTS.items():
                rps, us = measure_variant(layers, fmt, args.duration, args.connections, Path(logdir))
                best[name] = max(best.get(name, 0.0), rps)
                cpu[name] = min(cpu.get(name, float("inf")), us)
    print(f"/health, wrk -t2 -c{args.connections} -d{args.duration}s, best of {args.rounds}")
    print(f"{'variant':<22}{'req/s':>9}{'cost':>8}{'CPU µs/req':>12}{'CPU cost':>10}")
    for name in VARIANTS:
        rps_cost = (1 - best[name] / best["bare"]) * 100
        cpu_cost = (cpu[name] / cpu["bare"] - 1) * 100
        print(f"{name:<22}{best[name]:>9,.0f}{rps_cost:>7.1f}%{cpu[name]:>12.1f}{cpu_cost:>9.1f}%")
    logging_cost = 1 - cpu["bare"] / cpu["logs (text)"]  # share of throughput lost when CPU-bound
    verdict = "ok" if logging_cost <= LOG_BUDGET else "OVER"
    print(f"logging cost (CPU-bound throughput) {logging_cost:.1%} (budget {LOG_BUDGET:.0%}): {verdict}")
    full = best["metrics+logs+limits"]
    print(
        f"all layers {full:,.0f} req/s (target >= {TARGET_RPS:,}): {'ok' if full >= TARGET_RPS else 'BELOW'}"
    )


if __name__ == "__main__":
    main()
