"""Issue 11 item 7, drain: SIGTERM under ``hey -c 20`` POSTing /send to a real ``aibridge serve``.

Every request that reached the bridge is answered (no "connection reset", no EOF mid-request),
the process exits 0 within AI_BRIDGE_SHUTDOWN_TIMEOUT_S (8 s), and every envelope answered 202
is in the history when the bridge starts again on the same data directory.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from support import require_binary, run_bridge

BUDGET_S = 8.0


def hey_counts(output: str) -> tuple[dict[int, int], list[str]]:
    """hey's status code distribution and its error lines."""
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    errors_part = output.partition("Error distribution:")[2]
    errors = [line.strip() for line in errors_part.splitlines() if line.strip().startswith("[")]
    return statuses, errors


def test_sigterm_under_load_finishes_in_flight_posts_within_the_budget(tmp_path: Path) -> None:
    hey = require_binary("hey")
    data_dir = tmp_path / "data"
    env = {
        "AI_BRIDGE_RATE_MAX": "0",
        "AI_BRIDGE_DATA_DIR": str(data_dir),
        "AI_BRIDGE_HISTORY_LIMIT": "1000000",
        "AI_BRIDGE_MAX_QUEUE": "1000000",
        "AI_BRIDGE_SHUTDOWN_TIMEOUT_S": str(BUDGET_S),
    }
    with run_bridge(tmp_path, env) as bridge:
        load = subprocess.Popen(
            [
                hey,
                "-c",
                "20",
                "-z",
                "8s",
                "-m",
                "POST",
                "-T",
                "application/json",
                "-d",
                '{"to":"offline-agent","payload":{"n":1}}',
                f"{bridge.url}/send",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # SIGTERM once the load is really flowing.
            deadline = time.monotonic() + 30
            while httpx.get(f"{bridge.url}/health").json()["historySize"] < 300:
                assert time.monotonic() < deadline and load.poll() is None, "hey never got going"
                time.sleep(0.05)
            signalled = time.monotonic()
            bridge.signal(signal.SIGTERM)
            code = bridge.wait(BUDGET_S + 10)
            drain_s = time.monotonic() - signalled
            output, _ = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    assert code == 0
    assert drain_s <= BUDGET_S, f"drain took {drain_s:.1f}s, budget {BUDGET_S}s"
    statuses, errors = hey_counts(output)
    assert statuses.get(202, 0) >= 300 and set(statuses) == {202}, output
    # Once the listener is closed, new connections are refused: that is not an in-flight request.
    cut_short = [e for e in errors if "connection refused" not in e]
    assert cut_short == [], output

    # Nothing answered 202 is lost: restart on the same data directory and count.
    with run_bridge(tmp_path, env) as again:
        history_size = httpx.get(f"{again.url}/health").json()["historySize"]
    assert history_size >= statuses[202]
