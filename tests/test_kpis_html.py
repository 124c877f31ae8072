"""``check-kpis --html``: a self-contained report, checked in a real headless Chromium.

The CLI runs as a real subprocess against a real bridge; the page is opened over the DevTools
protocol, which reports every request the page makes: only the file itself may appear.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from browser_support import open_page
from support import BridgeProcess

_CHART_STATS = """
JSON.stringify([...document.querySelectorAll('div.chart')].map(div => ({
  key: div.dataset.chart,
  svg: div.querySelectorAll('svg').length,
  lines: [...div.querySelectorAll('path.line.reactive')]
    .map(p => (p.getAttribute('d').match(/[0-9.]+ [0-9.]+/g) || []).length),
  box: div.querySelector('svg') ? div.querySelector('svg').getBoundingClientRect().height : 0,
})))
"""


def _check_kpis(bridge: BridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aibridge", "check-kpis", bridge.url, "--metrics-url", bridge.metrics_url]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120)


def _report(tmp_path: Path, bridge: BridgeProcess) -> Path:
    with httpx.Client(base_url=bridge.url, timeout=10) as client:
        for _ in range(30):
            assert client.get("/health").status_code == 200
    out = tmp_path / "report.html"
    result = _check_kpis(
        bridge, "--window", "4s", "--interval", "1s", "--memory-limit", "512MB", "--html", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {out}" in result.stderr
    return out


def test_the_report_renders_its_charts_and_loads_nothing(tmp_path: Path, bridge: BridgeProcess) -> None:
    page_path = _report(tmp_path, bridge)
    html = page_path.read_text()
    assert "Content-Security-Policy" in html and "<script" not in html
    with open_page(tmp_path) as page:
        requests = page.load(page_path.as_uri())
        assert requests == [page_path.as_uri()], f"the page fetched {requests}"
        charts = json.loads(page.evaluate(_CHART_STATS))
        verdicts = page.evaluate(
            "[...document.querySelectorAll('#verdicts td.verdict')].map(td => td.textContent)"
        )
        page.screenshot(tmp_path / "report.png")
    assert [c["key"] for c in charts] == ["latency", "traffic", "memory", "cpu"]
    for chart in charts:
        assert chart["svg"] == 1 and chart["box"] > 100, chart
        # Every series is drawn, each with a point per interval of the window (4 s at 1 s).
        assert chart["lines"] and all(points >= 2 for points in chart["lines"]), chart
    assert max(next(c for c in charts if c["key"] == "latency")["lines"]) >= 4
    assert verdicts == ["pass"] * 5
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_the_request_check_sees_a_page_that_fetches(tmp_path: Path) -> None:
    # The same harness on a page that loads an image from a loopback server: the check is not blind.
    seen: list[str] = []

    class Pixel(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pixel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pixel.png"
    page_path = tmp_path / "leaky.html"
    page_path.write_text(f'<!doctype html><html><body><img src="{url}"></body></html>')
    try:
        with open_page(tmp_path) as page:
            requests = page.load(page_path.as_uri())
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/pixel.png"]
    assert url in requests


def test_a_snapshot_report_says_it_has_no_series(tmp_path: Path, bridge: BridgeProcess) -> None:
    out = tmp_path / "snap.html"
    result = _check_kpis(bridge, "--window", "0", "--memory-limit", "512MB", "--html", str(out))
    assert result.returncode == 3, result.stderr  # uptime cannot be told from one probe
    text = out.read_text()
    assert "a snapshot has no time series" in text and "cannot tell" in text


def test_an_unwritable_html_path_is_one_line_and_exit_2(tmp_path: Path, bridge: BridgeProcess) -> None:
    out = tmp_path / "missing-dir" / "r.html"
    result = _check_kpis(bridge, "--window", "0", "--html", str(out))
    assert result.returncode == 2
    assert "cannot write the HTML report" in result.stderr and "Traceback" not in result.stderr
