"""What metrics, access logging and limits cost on ``/health``: req/s with ``wrk`` per layer set.

Starts tests/obs_app.py (a real Litestar app under uvicorn, wired like the bridge) once per
variant on a free loopback port, logs to a file, runs ``wrk -t2 -c50 -d10s`` on /health, and
prints req/s and the cost against the bare app. ``--url`` measures a server already running
instead (e.g. ``aibridge serve``). Figures are indicative on a shared machine: use ``--rounds``.

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


def wrk(url: str, duration: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk run was not clean:\n{out}")
    return float(match.group(1))


def measure_variant(layers: str, log_format: str, duration: int, connections: int, logdir: Path) -> float:
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
        return wrk(url, duration, connections)
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
        rps = wrk(args.url, args.duration, args.connections)
        print(f"{args.url}: {rps:,.0f} req/s (target >= {TARGET_RPS:,})")
        return
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every variant alike
            for name, (layers, fmt) in VARIANTS.items():
                rps = measure_variant(layers, fmt, args.duration, args.connections, Path(logdir))
                best[name] = max(best.get(name, 0.0), rps)
    bare = best["bare"]
    print(f"/health, wrk -t2 -c{args.connections} -d{args.duration}s, best of {args.rounds}")
    print(f"{'variant':<22}{'req/s':>10}{'cost':>9}")
    for name, rps in best.items():
        print(f"{name:<22}{rps:>10,.0f}{(1 - rps / bare) * 100:>8.1f}%")
    logging_cost = 1 - best["logs (text)"] / bare
    full = best["metrics+logs+limits"]
    verdict = "ok" if logging_cost <= LOG_BUDGET else "OVER"
    print(f"logging cost {logging_cost:.1%} (budget {LOG_BUDGET:.0%}): {verdict}")
    print(
        f"all layers {full:,.0f} req/s (target >= {TARGET_RPS:,}): {'ok' if full >= TARGET_RPS else 'BELOW'}"
    )


if __name__ == "__main__":
    main()
