"""``validate`` agrees with flyctl: each ``flyctl_*.toml`` fixture pins one flyctl behaviour (its
header comment names the flyctl file and function). ``# !CODE`` marks are checked by test_fly_toml;
here ``says: TEXT`` after a mark must appear in that line's finding, and errors name a reason."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from aibridge.fly.catalog import ERROR_REASONS, RULES
from aibridge.fly.findings import Severity
from aibridge.fly.model import load_fly_config, parse_fly_document
from aibridge.fly.rules_toml import check_fly_toml
from aibridge.fly.validate import validate_project

FIXTURES = Path(__file__).parent / "fixtures" / "fly" / "toml"
SAYS = re.compile(r"# !([A-Z0-9,]+) says: (.*)$")
PINNED = sorted(FIXTURES.glob("flyctl_*.toml"))


@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.stem)
def test_finding_quotes_what_flyctl_says(path: Path) -> None:
    text = path.read_text()
    assert text.lstrip().startswith(("#", "app")) and re.search(r"\w+\.go ", text), "cite flyctl's source"
    findings = check_fly_toml(parse_fly_document(text, path.name))
    for number, line in enumerate(text.splitlines(), start=1):
        match = SAYS.search(line)
        if match:
            messages = [f.message for f in findings if f.line == number]
            assert any(match.group(2) in m for m in messages), (number, messages)
    for f in findings:
        assert f.severity is not Severity.ERROR or RULES[f.code].why in ERROR_REASONS


def test_experimental_kill_timeout_is_used_and_covers_the_drain(tmp_path: Path) -> None:
    # patches.go patchExperimental: [experimental] kill_timeout = 20 means 20 s, so XF106 (8 s drain)
    # must not claim Fly's 5 s default applies.
    config = load_fly_config(FIXTURES / "flyctl_experimental_kill_timeout_counts.toml")
    assert config.kill_timeout_s == 20
    shutil.copy(FIXTURES / "flyctl_experimental_kill_timeout_counts.toml", tmp_path / "fly.toml")
    (tmp_path / "Dockerfile").write_text('FROM python:3.12-slim\nUSER 1001\nCMD ["aibridge", "serve"]\n')
    codes = {f.code for f in validate_project(tmp_path / "fly.toml").findings}
    assert "XF106" not in codes
    (tmp_path / "fly.toml").write_text(
        (tmp_path / "fly.toml").read_text().replace("kill_timeout = 20", "kill_timeout = 2")
    )
    assert "XF106" in {f.code for f in validate_project(tmp_path / "fly.toml").findings}


def test_float_kill_timeout_is_truncated_like_go() -> None:
    assert load_fly_config(FIXTURES / "flyctl_integral_floats_survive_json.toml").kill_timeout_s == 5


def test_case_folded_internal_port_is_the_internal_port() -> None:
    config = load_fly_config(FIXTURES / "flyctl_knows_max_memory_mb_and_folds_key_case.toml")
    assert config.internal_port == 8080


def test_builtin_builder_needs_no_dockerfile(tmp_path: Path) -> None:
    # config.go BuildStrategies: builtin generates the Dockerfile, so DKR002 must not fire.
    shutil.copy(FIXTURES / "flyctl_builtin_builder_needs_no_dockerfile.toml", tmp_path / "fly.toml")
    report = validate_project(tmp_path / "fly.toml")
    assert "DKR002" not in {f.code for f in report.findings}
    assert report.files == [str(tmp_path / "fly.toml")]


def test_every_error_rule_names_a_reason_from_the_severity_rule() -> None:
    for rule in RULES.values():
        if rule.severity is Severity.ERROR:
            assert rule.why in ERROR_REASONS, rule.code
        else:
            assert rule.why not in ERROR_REASONS, rule.code
