"""``aibridge status``: releases, Machines with checks, and the live /health answer."""

from __future__ import annotations

import json
from pathlib import Path

from fakefly.scenarios import (
    APP,
    IMAGE_D,
    IMAGE_E,
    MACHINES,
    live_release,
    make_fake,
    run_aibridge,
    write_fly_toml,
)
from support import free_port

RECORD = [["releases", "--app", APP, "--json"], ["status", "--app", APP, "--json"]]


def test_status_json_has_releases_machines_and_live_health(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with live_release(tmp_path) as release:
        args = ["status", "-c", str(config), "--health-url", release.health_url, "--releases", "3", "--json"]
        result = run_aibridge(args, fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [["auth", "whoami"], *RECORD]
    data = json.loads(result.stdout)
    assert [(r["version"], r["status"], r["image"]) for r in data["releases"]] == [
        (5, "failed", IMAGE_E),
        (4, "complete", IMAGE_D),
        (3, "complete", IMAGE_D),
    ]
    machines = data["status"]["machines"]
    assert [(m["id"], m["state"], m["region"]) for m in machines] == [
        (m["id"], "started", m["region"]) for m in MACHINES
    ]
    assert machines[0]["checks"] == [{"name": "servicecheck-00-http-8080", "status": "passing"}]
    assert data["status"]["running_image"] == IMAGE_D and data["status"]["version"] == 4
    health = data["health"]
    assert health["ok"] is True and health["status_code"] == 200 and health["latency_ms"] > 0


def test_status_text_and_a_down_health_url(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/health"
    result = run_aibridge(
        ["status", "-c", str(config), "--health-url", url], fake.env(FLY_API_TOKEN="t"), tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert fake.calls() == RECORD
    out = result.stdout
    assert "app demo  demo.fly.dev  deployed  v4" in out
    assert "148e21ea7d9089" in out and "ams" in out and "servicecheck-00-http-8080 passing" in out
    assert "registry.fly.io/demo:deployment-05ECHO" in out
    assert f"health  ✘ {url}  ConnectError" in out


def test_status_without_health_and_not_logged_in(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    skipped = run_aibridge(["status", "-c", str(config), "--no-health", "--json"], fake.env(), tmp_path)
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["health"] is None
    other = tmp_path / "other"
    other.mkdir()
    logged_out = make_fake(other, logged_in=False)
    result = run_aibridge(["status", "-c", str(config)], logged_out.env(), tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: not logged in to Fly")
