"""The exported alert rules: promtool accepts them and its unit tests (tests/promtool/) pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS
from aibridge.ops.monitoring.alerts import alert_rules
from aibridge.ops.monitoring.export import RULES_FILE, export_monitoring
from support import require_binary

UNIT_TESTS = Path(__file__).parent / "promtool" / "aibridge-alerts.test.yml"

pytestmark = pytest.mark.prometheus


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_exported_rules(tmp_path: Path) -> None:
    export_monitoring(tmp_path)
    result = _promtool("check", "rules", RULES_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_promtool_unit_tests_fire_and_stay_silent(tmp_path: Path) -> None:
    export_monitoring(tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path)
    result = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_cover_every_alert_firing() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for group in tests for case in group["alert_rule_test"] if case.get("exp_alerts")
    }
    silent = {
        case["alertname"]
        for group in tests
        for case in group["alert_rule_test"]
        if not case.get("exp_alerts")
    }
    alerts = {rule["alert"] for group in alert_rules()["groups"] for rule in group["rules"]}
    # The slow-burn latency ticket needs a day of synthetic samples: its fast twin stands for the expression.
    assert alerts - fired == {"AibridgeHealthLatencyBudgetBurnSlow"}
    assert {"AibridgeUptimeBudgetBurnFast", "AibridgeUptimeBudgetBurnSlow", "AibridgeMemoryHigh"} <= silent


def test_every_rule_has_its_annotations_and_check_kpis_thresholds() -> None:
    rules = [
        rule for group in alert_rules(runbook="https://x.test/README.md")["groups"] for rule in group["rules"]
    ]
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        assert rule["annotations"]["runbook"].startswith("https://x.test/README.md#runbook-")
        assert rule["labels"]["severity"] in {"page", "ticket"}
    by_name = {rule["alert"]: rule for rule in rules}
    budget = 1 - DEFAULT_THRESHOLDS["uptime"].limit / 100
    assert f"(14.4 * {budget:.6g})" in by_name["AibridgeUptimeBudgetBurnFast"]["expr"]
    assert by_name["AibridgeMemoryHigh"]["expr"].endswith(f"> {DEFAULT_THRESHOLDS['memory'].limit / 100:g}")
    assert by_name["AibridgeStartupSlow"]["expr"].endswith(f"> {DEFAULT_THRESHOLDS['startup'].limit:g}")


def test_every_runbook_anchor_is_a_readme_heading() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    # GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation dropped.
    anchors = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in readme.splitlines()
        if line.startswith("#")
    }
    for group in alert_rules()["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].partition("#")[2]
            assert anchor in anchors, f"{rule['alert']}: README has no heading for #{anchor}"
