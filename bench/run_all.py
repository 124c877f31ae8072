"""Run every benchmark in turn and summarise which ones met their targets (`make bench`).

Each script prints its own figures next to their targets and exits non-zero when one is missed;
run them on a quiet machine, since the load generator shares the cores with the server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES: tuple[tuple[str, ...], ...] = (
    ("validate_speed.py",),
    ("bridge.py", "--store", "sqlite"),  # the default store, as shipped
    ("bridge.py", "--store", "memory"),
    ("bridge.py", "--store", "redis", "--only", "direct", "--only", "direct_confirm", "--only", "broadcast"),
    # Issue 16: routing with the Node `ws` client pattern too, against the code before it (fd04884).
    ("bridge.py", "--store", "sqlite", "--baseline-ref", "fd04884"),
    ("bridge.py", "--store", "memory", "--baseline-ref", "fd04884"),
    ("store.py", "--window-ms", "0"),  # AI_BRIDGE_COMMIT_WINDOW_MS defaults to 0
    ("loadtest_vs_hey.py",),
    ("faults.py",),
)


def main() -> int:
    results: list[tuple[str, int, float]] = []
    for bench in BENCHES:
        name = " ".join(bench)
        print(f"\n=== {name}", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / bench[0]), *bench[1:]])
        results.append((name, code, time.monotonic() - start))
    print("\n=== summary")
    for name, code, seconds in results:
        print(f"{'ok  ' if code == 0 else 'MISS'} {name:<32} {seconds:6.0f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
