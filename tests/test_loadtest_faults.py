"""Issue 14 items 12–16: ``aibridge loadtest`` against targets with known outcomes, run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loadtarget import LoadTarget, run_loadtest_cli


def _child_setup() -> None:
    # Tests may run with SIGINT ignored; the command under test must see Ctrl-C as a user's shell sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.umask(0o022)


def _loadtest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_loadtest_cli(*args, cwd=cwd, preexec_fn=_child_setup)


@contextlib.contextmanager
def counting_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """HTTP/1.1 keep-alive server counting connections, methods, bodies and Accept-Encoding."""
    seen: dict[str, Any] = {"connections": 0, "methods": set(), "bodies": 0, "accept_encoding": set()}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with lock:
                seen["connections"] += 1

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            with lock:
                seen["methods"].add(self.command)
                seen["bodies"] += length
                seen["accept_encoding"].add(self.headers.get("Accept-Encoding"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_hey_disable_flags_are_options_not_a_post_body() -> None:
    with counting_server() as (url, seen):
        result = _loadtest(url, "-n", "20", "-c", "2", "-disable-keepalive", "-disable-compression")
        assert result.returncode == 0, result.stderr
        assert seen["methods"] == {"GET"} and seen["bodies"] == 0
        assert seen["connections"] == 20  # one per request, as ab without -k
        assert seen["accept_encoding"] == {None}
        seen.update(connections=0, accept_encoding=set())
        result = _loadtest(url, "-n", "20", "-c", "2", "--disable-redirects", "--format", "json")
        assert result.returncode == 0, result.stderr
        assert seen["connections"] <= 3  # kept alive: the first request's and -c 2
        assert json.loads(result.stdout)["options"]["keepalive"] is True
        assert None not in seen["accept_encoding"]  # compression offered by default


def test_baseline_compares_success_and_error_rates_and_warns_on_model_changes(
    target: LoadTarget, tmp_path: Path
) -> None:
    saved = tmp_path / "base.json"
    healthy = _loadtest(f"{target.url}/health", "-n", "200", "-c", "4", "--save", str(saved))
    assert healthy.returncode == 0, healthy.stderr
    assert saved.stat().st_mode & 0o777 == 0o644  # item 16: the umask (022), not 0600
    half = f"{target.url}/health?status=500&status_every=2"
    result = _loadtest(half, "-n", "200", "-c", "2", "--baseline", str(saved), "--format", "json")
    assert result.returncode == 1, result.stderr
    baseline = json.loads(result.stdout)["baseline"]
    rows = {row["metric"]: row for row in baseline["rows"]}
    assert rows["success_rate"]["regressed"] and rows["success_rate"]["current"] == 50.0
    assert rows["error_rate"]["regressed"] and rows["error_rate"]["current"] == 50.0
    assert any("-c 4, this run 2" in w for w in baseline["warnings"]), baseline["warnings"]


def test_no_success_exits_1_and_no_answer_at_all_exits_2(target: LoadTarget) -> None:
    failing = _loadtest(f"{target.url}/health?status=503", "-n", "30", "-c", "3")
    assert failing.returncode == 1, failing.stdout
    assert "no request succeeded" in failing.stdout
    silent = _loadtest(f"{target.url}/health?drop_every=1", "-n", "30", "-c", "3")
    assert silent.returncode == 2, silent.stdout
    assert "never answered" in silent.stderr and "Traceback" not in silent.stderr


def test_ctrl_c_prints_the_partial_report_and_exits_130(target: LoadTarget) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aibridge",
            "loadtest",
            f"{target.url}/health?delay_ms=2",
            "-z",
            "60s",
            "-c",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
        preexec_fn=_child_setup,
    )
    try:
        deadline = time.monotonic() + 30
        while target.stats()["handled"] < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Task exception was never retrieved" not in err
    assert "interrupted (Ctrl-C)" in out and "partial report" in out
    assert "Latency" in out or "latency" in out
