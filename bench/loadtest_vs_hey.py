"""``aibridge loadtest`` against ``hey``: same local server, same run, ratio of requests/s.

    .venv/bin/python bench/loadtest_vs_hey.py [--requests 20000] [--concurrency 10] [--rounds 3]

The server is a real ``aibridge serve`` (its ``/health``) on a free loopback port; with
``--target loadtarget`` (or if the bridge cannot start) it is the tests' uvicorn load target.
Each round runs hey, then ``aibridge loadtest``, then ``aibridge loadtest --workers 2``, alternating
so that drift on a shared machine hits all three alike; medians are reported, and the ratio is
the median of the per-round ratios. The target
is a ratio of at least 0.8 (reference/performance.md: aiohttp reached 0.82 × hey, httpx 0.1 ×).
The last column, client CPU time per request, stays meaningful when other work shares the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from loadtarget import run_loadtarget  # noqa: E402
from support import free_port, wait_http_ok  # noqa: E402

TARGET_RATIO = 0.8


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    """Client CPU time (user + system) per request, start-up included: robust to a busy machine."""
    run_cpu_us: float
    """The same for the measured phase only (aibridge's own figure; hey's start-up is negligible)."""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def bridge() -> Iterator[str]:
    """A real ``aibridge serve`` with rate limits off; yields its /health URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
        env.update(
            {
                "AI_BRIDGE_METRICS_PORT": str(free_port()),
                "AI_BRIDGE_DATA_DIR": data_dir,
                "AI_BRIDGE_LOG_LEVEL": "warning",
                "AI_BRIDGE_RATE_MAX": "0",  # measure the server, not its per-client budget
            }
        )
        cmd = [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(
            cmd, env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=20, process=process)
            yield f"http://127.0.0.1:{port}/health"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def run_hey(url: str, requests: int, concurrency: int) -> Figures:
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("hey is not installed (scripts/install-system-deps installs it)")
    cpu_before = _children_cpu_s()
    out = subprocess.run(
        [hey, "-n", str(requests), "-c", str(concurrency), url], capture_output=True, text=True, check=True
    ).stdout
    cpu_us = (_children_cpu_s() - cpu_before) / requests * 1e6
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    if not (rps and p50 and p99):
        raise RuntimeError(f"cannot read hey's output:\n{out}")
    if re.search(r"\[(?!200\])\d{3}\]\s+\d+ responses", out):
        print(f"  warning: hey saw non-200 responses:\n{out}")
    return Figures(
        float(rps.group(1)), float(p50.group(1)) * 1000, float(p99.group(1)) * 1000, cpu_us, cpu_us
    )


def run_aibridge(url: str, requests: int, concurrency: int, workers: int) -> Figures:
    cmd = [sys.executable, "-m", "aibridge", "loadtest", url, "-n", str(requests), "-c", str(concurrency)]
    cmd += ["--workers", str(workers), "--format", "json"]
    cpu_before = _children_cpu_s()
    result = subprocess.run(cmd, capture_output=True, text=True)
    cpu_us = (_children_cpu_s() - cpu_before) / requests * 1e6
    if result.returncode != 0:
        raise RuntimeError(f"aibridge loadtest failed ({result.returncode}): {result.stderr}")
    report = json.loads(result.stdout)
    for warning in report["warnings"]:
        print(f"  aibridge warning: {warning}")
    latency = report["metrics"]["latency_ms"]
    run_cpu_us = sum(w["cpu_s"] for w in report["workers"]) / report["summary"]["requests"] * 1e6
    return Figures(report["metrics"]["requests_per_sec"], latency["p50"], latency["p99"], cpu_us, run_cpu_us)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", choices=("bridge", "loadtarget"), default="bridge")
    args = parser.parse_args()
    server = bridge() if args.target == "bridge" else run_loadtarget_url()
    runs: dict[str, list[Figures]] = {"hey": [], "aibridge": [], "aibridge --workers 2": []}
    with server as url:
        print(f"target {url}: {args.requests} requests, -c {args.concurrency}, {args.rounds} rounds")
        run_hey(url, 2000, args.concurrency)  # warm the server up once; not reported
        for round_number in range(1, args.rounds + 1):
            runs["hey"].append(run_hey(url, args.requests, args.concurrency))
            runs["aibridge"].append(run_aibridge(url, args.requests, args.concurrency, 1))
            runs["aibridge --workers 2"].append(run_aibridge(url, args.requests, args.concurrency, 2))
            print(
                "  round "
                + str(round_number)
                + ": "
                + ", ".join(f"{k} {v[-1].rps:,.0f}" for k, v in runs.items())
            )
    header = ("tool", "req/s", "p50 ms", "p99 ms", "× hey", "CPU µs/req", "in run")
    print("\n{:<22} {:>10} {:>8} {:>8} {:>7} {:>11} {:>7}".format(*header))
    ok = True
    for name, figures in runs.items():
        rps = statistics.median(f.rps for f in figures)
        p50 = statistics.median(f.p50_ms for f in figures)
        p99 = statistics.median(f.p99_ms for f in figures)
        cpu = statistics.median(f.cpu_us for f in figures)
        run_cpu = statistics.median(f.run_cpu_us for f in figures)
        # Rounds are pairs taken seconds apart: the median of per-round ratios cancels slow drift.
        ratio = statistics.median(f.rps / h.rps for f, h in zip(figures, runs["hey"], strict=True))
        print(f"{name:<22} {rps:>10,.0f} {p50:>8.2f} {p99:>8.2f} {ratio:>7.2f} {cpu:>11.1f} {run_cpu:>7.1f}")
        if name == "aibridge" and ratio < TARGET_RATIO:
            ok = False
    verdict = "meets" if ok else "MISSES"
    print(f"\naibridge loadtest {verdict} the target of ≥ {TARGET_RATIO} × hey's req/s (1 process)")
    return 0 if ok else 1


@contextlib.contextmanager
def run_loadtarget_url() -> Iterator[str]:
    with run_loadtarget() as target:
        yield f"{target.url}/health"


if __name__ == "__main__":
    raise SystemExit(main())
