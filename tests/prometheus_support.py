"""A real Prometheus server for tests: generated config, free loopback port, temporary TSDB.

with run_prometheus(tmp_path, ["127.0.0.1:9100"]) as prom:
    prom.wait_for('count_over_time(up[10s])', lambda v: v >= 5)
    prom.query("up")
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import free_port, require_binary, stop_process, wait_http_ok


@dataclass
class PrometheusServer:
    """A running ``prometheus`` subprocess and its HTTP API base URL."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query at now (a vector's items; [] when empty)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        data = response.json()["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, accept: Callable[[float], bool], timeout: float = 60.0) -> float:
        """Poll ``expr`` until its first value satisfies ``accept``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.log_path.read_text()[-2000:]}")
            last = self.value(expr)
            if last is not None and accept(last):
                return last
            time.sleep(0.25)
        raise TimeoutError(f"{expr} never satisfied the condition within {timeout}s (last value {last})")


@contextlib.contextmanager
def run_prometheus(
    tmp_path: Path,
    targets: Sequence[str],
    scrape_interval: str = "1s",
    *,
    job: str = "app",
    target_labels: Mapping[str, Mapping[str, str]] | None = None,
    rule_files: Sequence[Path] = (),
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (host:port, path /metrics) under ``job``; stop it after.

    ``target_labels`` adds labels per target (as Fly's Prometheus adds ``app``); ``rule_files``
    are evaluated every ``scrape_interval`` too.
    """
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    labels = target_labels or {}
    static = ", ".join(
        f'{{targets: ["{t}"], labels: {json.dumps(dict(labels.get(t, {})))}}}' for t in targets
    )
    rules = "".join(f'  - "{path}"\n' for path in rule_files)
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    static_configs: [{static}]\n"
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http_ok(f"{server.url}/-/ready", timeout=30, process=process)
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/-/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"prometheus never became ready:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        stop_process(process)
