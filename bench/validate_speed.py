"""How fast `aibridge validate` (on this repo) and `aibridge --help` are, as fresh subprocesses.

Targets (issue 4): validate < 0.5 s, --help < 0.3 s. Best of N wall-clock runs, so the figure is the
cost of the command rather than of a busy machine. Also lists heavy modules either command imports.

    python bench/validate_speed.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("litestar", "uvicorn", "aiohttp", "prometheus_client", "redis", "dockerfile", "hdrh")
TARGETS = {"validate": 0.5, "--help": 0.3}


# An installed package has its bytecode cached; measure that, not compiling every module from source.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def best_of(args: list[str], runs: int) -> float:
    times = []
    command = [sys.executable, "-m", "aibridge", *args]
    subprocess.run(command, cwd=REPO, capture_output=True, check=False, env=ENV)  # warm-up writes .pyc
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, check=False, env=ENV)
        times.append(time.perf_counter() - start)
    return min(times)


def imported(args: list[str]) -> list[str]:
    """Heavy top-level packages ``python -X importtime`` sees the command import."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "aibridge", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line
    }
    return sorted(names & set(HEAVY))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    failed = False
    for label, args in (("validate", ["validate"]), ("--help", ["--help"])):
        seconds = best_of(args, runs)
        target = TARGETS[label]
        verdict = "ok" if seconds < target else "SLOW"
        failed |= seconds >= target
        shown = f"{seconds * 1000:6.0f} ms  (target < {target * 1000:.0f} ms)"
        print(f"aibridge {label:<9} best of {runs}: {shown} {verdict}")
        print(f"  heavy imports: {', '.join(imported(args)) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
