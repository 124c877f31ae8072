"""``aibridge monitoring export`` and ``aibridge init --monitoring``, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def _aibridge(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_BRIDGE_", "FLY_"))}
    return subprocess.run(
        [sys.executable, "-m", "aibridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_export_selects_the_fly_app_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "my-bridge"\nprimary_region = "ams"\n')
    done = _aibridge(tmp_path, "monitoring", "export")
    assert done.returncode == 0, done.stderr
    rules = yaml.safe_load((tmp_path / "monitoring" / "aibridge-alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all('app="my-bridge"' in expr for expr in exprs)
    dashboard = json.loads((tmp_path / "monitoring" / "aibridge-dashboard.json").read_text())
    assert dashboard["uid"] == "aibridge-bridge"

    again = _aibridge(tmp_path, "monitoring", "export")
    assert again.returncode == 2
    assert "already exists (use --force to replace)" in again.stderr and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    forced = _aibridge(
        tmp_path, "monitoring", "export", "--force", "--app", "other", "--runbook-url", "https://wiki.test/r"
    )
    assert forced.returncode == 0, forced.stderr
    text = (tmp_path / "monitoring" / "aibridge-alerts.yml").read_text()
    assert 'app="other"' in text and "https://wiki.test/r#runbook-uptime" in text


def test_export_without_fly_toml_selects_the_job(tmp_path: Path) -> None:
    done = _aibridge(tmp_path, "monitoring", "export", "--out", "obs")
    assert done.returncode == 0, done.stderr
    assert 'job="aibridge"' in (tmp_path / "obs" / "aibridge-alerts.yml").read_text()


def test_a_bad_app_name_is_one_line(tmp_path: Path) -> None:
    done = _aibridge(tmp_path, "monitoring", "export", "--app", 'a"b')
    assert done.returncode == 2 and "expected a Fly app name" in done.stderr
    assert not (tmp_path / "monitoring").exists()


def test_init_monitoring_writes_the_files_for_the_app(tmp_path: Path) -> None:
    done = _aibridge(tmp_path, "init", "--app", "bridge-one", "--monitoring")
    assert done.returncode == 0, done.stderr
    assert 'app="bridge-one"' in (tmp_path / "monitoring" / "aibridge-alerts.yml").read_text()
    assert (tmp_path / "monitoring" / "aibridge-dashboard.json").is_file()


def test_the_cli_imports_neither_grafana_nor_pygal_until_asked() -> None:
    code = (
        "import sys, aibridge.cli\n"
        "print(sorted(m for m in ('grafana_foundation_sdk', 'pygal', 'yaml') if m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]", imported.stderr
