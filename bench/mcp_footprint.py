"""What the MCP SDK costs the commands and the bridge that do not use it, measured in one run.

    .venv/bin/python bench/mcp_footprint.py [--runs N]

- ``aibridge --help`` and ``aibridge validate`` wall time (median of N runs) as shipped, next to a
  baseline that imports the SDK's server modules first (what an eager import would cost).
- Bridge RSS: idle as shipped; idle with ``opentelemetry`` made unimportable (it arrives with
  ``mcp`` and Litestar imports its plugin when present: the bridge as it was before the SDK was a
  dependency); and after one MCP session on ``/mcp`` (the SDK loaded).

Target: as shipped, the commands are no slower than the baseline minus the SDK's import time,
and the idle bridge carries no SDK module (its RSS grows only once ``/mcp`` is used).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx

from support import free_port, stop_process, wait_http_ok

CLI = "import sys\n{pre}\nfrom aibridge.cli import main\nsys.argv = ['aibridge', *sys.argv[1:]]\nmain()\n"
EAGER = "import mcp.server.lowlevel, mcp.server.streamable_http_manager, mcp.server.stdio"
NO_OTEL = "sys.modules['opentelemetry'] = None"


def _timed(pre: str, argv: list[str], runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CLI.format(pre=pre), *argv], capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _bridge(pre: str, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {"AI_BRIDGE_METRICS_PORT": str(free_port()), "AI_BRIDGE_DATA_DIR": str(data / str(port))}
    argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-c", CLI.format(pre=pre), *argv],
        env={**{k: v for k, v in __import__("os").environ.items() if not k.startswith("AI_BRIDGE_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/health", process=process)
    for _ in range(20):
        httpx.get(f"{base}/agents")
    time.sleep(1.0)  # let the allocator settle after start-up
    return process, base


async def _one_session(base: str) -> None:
    from mcp import Client

    async with Client(f"{base}/mcp?agent=bench") as client:
        await client.list_tools()
        await client.call_tool("list_agents", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "fly.toml").write_text('app = "demo"\nprimary_region = "ams"\n')
        print(f"{'figure':44} {'shipped':>10} {'baseline':>10}  baseline is")
        for name, argv in (("aibridge --help (ms)", ["--help"]), ("aibridge validate (ms)", ["validate"])):
            shipped = _timed("", argv, runs, project)
            eager = _timed(EAGER, argv, runs, project)
            extra = eager - shipped
            print(f"{name:44} {shipped:10.0f} {eager:10.0f}  SDK imported eagerly ({extra:+.0f} ms)")

        with_otel, base = _bridge("", project)
        try:
            idle = _rss_kib(with_otel.pid)
            asyncio.run(_one_session(base))
            time.sleep(0.5)
            used = _rss_kib(with_otel.pid)
        finally:
            stop_process(with_otel)
        without, _ = _bridge(NO_OTEL, project)
        try:
            before_sdk = _rss_kib(without.pid)
        finally:
            stop_process(without)
    mib = 1024
    print(f"{'bridge idle RSS (MiB)':44} {idle / mib:10.1f} {before_sdk / mib:10.1f}  without opentelemetry")
    after = "bridge RSS after one /mcp session (MiB)"
    print(f"{after:44} {used / mib:10.1f} {idle / mib:10.1f}  idle as shipped")
    print(
        f"the SDK loads on first /mcp use: +{(used - idle) / mib:.1f} MiB; idle cost of its deps: "
        f"{(idle - before_sdk) / mib:+.1f} MiB (opentelemetry, via Litestar's plugin probe)"
    )


if __name__ == "__main__":
    main()
