"""The Grafana dashboard and the alert rules against a real Prometheus scraping real bridges.

- the dashboard JSON decodes into grafana-foundation-sdk's dashboard model and encodes back unchanged
  (the SDK's models are generated from Grafana's dashboard schema, so an unknown or mistyped field
  would not survive the round trip);
- every panel's query names only metrics the bridge really exports, and returns data from a
  Prometheus that scrapes a real ``aibridge serve``;
- the uptime alert fires when a bridge is stopped, the error-rate alert when a burst of 5xx is
  produced, and neither fires on the healthy bridge.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS
from aibridge.ops.monitoring.dashboard import dashboard_json, panel_queries
from aibridge.ops.monitoring.export import RULES_FILE, export_monitoring
from prometheus_support import PrometheusServer, run_prometheus
from support import BridgeProcess, run_bridge, stop_process

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "or", "and", "unless", "bool"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are neither functions nor labels."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if match.group(0) not in _KEYWORDS and not following.startswith("("):
            names.add(match.group(0))
    return names


def test_dashboard_round_trips_through_the_sdk_dashboard_model() -> None:
    data = json.loads(dashboard_json())
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert again == data
    assert [v["name"] for v in data["templating"]["list"]] == ["datasource", "app", "instance"]
    assert data["templating"]["list"][0]["current"]["text"] == "Prometheus on Fly"
    titles = [p["title"] for p in data["panels"]]
    for wanted in ("Request throughput", "Error rate", "Response time", "Memory", "CPU", "Uptime"):
        assert wanted in titles
    for wanted in ("WebSocket connections", "Envelopes by outcome", "Queue depth"):
        assert wanted in titles
    stats = [p for p in data["panels"] if p["type"] == "stat"]
    assert len(stats) == 5  # one per KPI, coloured by check-kpis' threshold
    steps = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"] for p in stats}
    uptime = next(v for k, v in steps.items() if k.startswith("Uptime"))
    assert uptime[-1] == {"color": "green", "value": pytest.approx(DEFAULT_THRESHOLDS["uptime"].limit / 100)}
    for panel in data["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert 'app="$app"' in target["expr"] and 'instance=~"$instance"' in target["expr"]


def test_metric_names_reads_promql() -> None:
    expr = 'histogram_quantile(0.5, sum by (le) (rate(x_bucket{a="b"}[5m])))'
    expr += ' / max by (i) (y{z="1"}) or vector(0)'
    assert metric_names(expr) == {"x_bucket", "y"}


def _limit_env(tmp_path: Path) -> dict[str, str]:
    """A 512 MiB cgroup limit for the bridge to report, as on a Machine with a known memory size."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir(exist_ok=True)
    (cgroup / "memory.max").write_text(f"{512 * 1024 * 1024}\n")
    return {"AI_BRIDGE_CGROUP_DIR": str(cgroup)}


def test_every_panel_targets_a_metric_the_bridge_exports(tmp_path: Path) -> None:
    with run_bridge(tmp_path, _limit_env(tmp_path)) as bridge:
        httpx.get(f"{bridge.url}/health", timeout=5)
        text = httpx.get(bridge.metrics_url, timeout=5).text
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    exported.add("up")  # written by Prometheus for every target it scrapes
    for query in panel_queries():
        names = metric_names(query.expr)
        assert names, query
        assert names <= exported, f"{query.panel}: {names - exported} not exported"


def _substitute(expr: str, app: str) -> str:
    # What Grafana does with the dashboard's variables before it sends the query.
    return (
        expr.replace("$app", app)
        .replace("$instance", ".*")
        .replace("$__rate_interval", "30s")
        .replace("$__range", "2m")
    )


def _firing(prom: PrometheusServer) -> set[tuple[str, str]]:
    return {
        (item["metric"]["alertname"], item["metric"].get("app", ""))
        for item in prom.query('ALERTS{alertstate="firing"}')
    }


def _wait(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def _hold_agents(ws_url: str, count: int, release: asyncio.Event) -> None:
    """Register ``count`` agents and keep their sockets open until ``release``."""
    sockets = []
    try:
        for i in range(count):
            ws = await websockets.connect(ws_url, compression=None, open_timeout=10)
            await ws.send(json.dumps({"type": "register", "clientId": f"holder-{i}"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("type") != "registered":
                pass
            sockets.append(ws)
        await release.wait()
    finally:
        for ws in sockets:
            await ws.close()


@pytest.fixture
def two_bridges(tmp_path: Path) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    env = _limit_env(tmp_path)
    with (
        run_bridge(tmp_path, env) as doomed,
        run_bridge(tmp_path, {**env, "AI_BRIDGE_MAX_CONNECTIONS": "2"}) as capped,
    ):
        yield doomed, capped


@pytest.mark.prometheus
@pytest.mark.timeout(240)
def test_panels_return_data_and_alerts_fire_on_real_faults(
    tmp_path: Path, two_bridges: tuple[BridgeProcess, BridgeProcess]
) -> None:
    doomed, capped = two_bridges
    export_monitoring(tmp_path / "monitoring")
    targets = {f"127.0.0.1:{doomed.metrics_port}": "doomed", f"127.0.0.1:{capped.metrics_port}": "capped"}
    with run_prometheus(
        tmp_path,
        list(targets),
        job="aibridge",
        target_labels={t: {"app": a} for t, a in targets.items()},
        rule_files=[tmp_path / "monitoring" / RULES_FILE],
    ) as prom:
        # Traffic for the latency and throughput panels, then every panel's query must answer.
        with httpx.Client(base_url=capped.url, timeout=10) as client:
            for _ in range(20):
                assert client.get("/health").status_code == 200
                assert client.post("/send", json={"to": "nobody", "payload": {"n": 1}}).status_code == 202
        prom.wait_for('count_over_time(up{app="capped"}[1m])', lambda v: v >= 5)
        for query in panel_queries():
            expr = _substitute(query.expr, "capped")
            _wait(lambda expr=expr: bool(prom.query(expr)), f"data for {query.panel}: {expr}", timeout=30)
        assert _firing(prom) == set(), "a healthy bridge fired an alert"

        # Fault 1: one bridge goes away; its uptime budget burns fast and pages.
        stop_process(doomed.process)
        _wait(
            lambda: ("AibridgeUptimeBudgetBurnFast", "doomed") in _firing(prom), "the uptime page for doomed"
        )

        # Fault 2: the capped bridge is full, so requests get 503: the error-rate page fires.
        async def burst() -> int:
            release = asyncio.Event()
            holder = asyncio.create_task(_hold_agents(capped.ws_url, 2, release))
            async with httpx.AsyncClient(base_url=capped.url, timeout=10) as client:
                deadline = time.monotonic() + 30
                while (await client.get("/agents")).status_code != 503:  # until both holders are in
                    assert time.monotonic() < deadline and not holder.done(), "the cap never filled"
                    await asyncio.sleep(0.05)
                # The 5xx series exists now; let Prometheus see it before the burst, as a live app would.
                await asyncio.to_thread(
                    prom.wait_for,
                    'sum(aibridge_http_requests_total{app="capped", status="5xx"})',
                    lambda v: v >= 1,
                )
                statuses = [(await client.get("/agents")).status_code for _ in range(60)]
            release.set()
            await holder
            return statuses.count(503)

        assert asyncio.run(burst()) == 60
        _wait(
            lambda: ("AibridgeErrorRateBudgetBurnFast", "capped") in _firing(prom),
            "the error-rate page for capped",
        )
        firing = _firing(prom)
        assert ("AibridgeUptimeBudgetBurnFast", "capped") not in firing
        assert not any(name.startswith("AibridgeHealthLatency") for name, _ in firing)
