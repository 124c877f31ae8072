"""`aibridge validate` / `aibridge init` through the real CLI: output formats, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from aibridge.cli import app
from aibridge.fly.catalog import RULES
from aibridge.fly.report import JSON_SCHEMA

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures" / "fly"

# The part of the SARIF 2.1.0 schema GitHub code scanning relies on (docs: "SARIF support for code scanning").
SARIF_SUBSET: dict[str, Any] = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription"],
                                            "properties": {
                                                "shortDescription": {
                                                    "type": "object",
                                                    "required": ["text"],
                                                },
                                                "defaultConfiguration": {
                                                    "properties": {
                                                        "level": {"enum": ["error", "warning", "note"]}
                                                    }
                                                },
                                            },
                                        },
                                    }
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "locations", "level"],
                            "properties": {
                                "level": {"enum": ["error", "warning", "note"]},
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation", "region"],
                                                "properties": {
                                                    "artifactLocation": {"required": ["uri"]},
                                                    "region": {
                                                        "required": ["startLine"],
                                                        "properties": {
                                                            "startLine": {"type": "integer", "minimum": 1},
                                                            "startColumn": {"type": "integer", "minimum": 1},
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def source_tree(folder: Path) -> None:
    """The files the bridge Dockerfile COPYs (DKR113 checks they exist), as in a checkout of aibridge."""
    (folder / "src" / "aibridge").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "aibridge" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text('[project]\nname = "aibridge"\n')
    (folder / "README.md").write_text("# aibridge\n")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    source_tree(tmp_path)
    result = runner.invoke(app, ["init", "--app", "demo-app"])
    assert result.exit_code == 0, result.output
    assert "created  fly.toml" in result.output
    return tmp_path


def broken(project: Path) -> None:
    text = (project / "fly.toml").read_text().replace("[[http_service.checks]]", "[http_service.checks]")
    (project / "fly.toml").write_text(text.replace("force_https = true", "force_https = true\n  forse = 1"))


def test_clean_project_exits_0(project: Path) -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0 and "3 files checked, no findings" in result.output


def test_errors_exit_1_grouped_by_file_with_position(project: Path) -> None:
    broken(project)
    result = runner.invoke(app, ["validate", str(project)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].endswith("fly.toml")
    assert any(
        "FLY002" in line and "[http_service.checks] must be an array of tables" in line for line in lines
    )
    assert "1 error(s), 1 warning(s), 0 info in 3 files" in result.output


def test_warnings_fail_only_with_strict(project: Path) -> None:
    text = (project / "fly.toml").read_text().replace("force_https = true", "force_https = true\n  forse = 1")
    (project / "fly.toml").write_text(text)
    assert runner.invoke(app, ["validate"]).exit_code == 0
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 1


def test_unreadable_file_exits_2_without_traceback(project: Path) -> None:
    result = runner.invoke(app, ["validate", "--config", "nope.toml"])
    assert result.exit_code == 2 and "nope.toml: no such file" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["validate", "--dockerfile", "Nope"])
    assert result.exit_code == 2 and "Nope: no such file" in result.output


def test_json_output_follows_the_documented_schema(project: Path) -> None:
    broken(project)
    result = runner.invoke(app, ["validate", "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    jsonschema.validate(data, JSON_SCHEMA)
    assert data["summary"] == {"errors": 1, "warnings": 1, "info": 0}
    first = next(f for f in data["findings"] if f["severity"] == "error")
    checks_line = (project / "fly.toml").read_text().splitlines().index("  [http_service.checks]") + 1
    assert (first["code"], first["file"], first["line"]) == ("FLY002", "fly.toml", checks_line)
    assert first["title"] == RULES["FLY002"].title


def test_sarif_output_is_what_github_reads(project: Path) -> None:
    broken(project)
    (project / ".dockerignore").unlink()
    result = runner.invoke(app, ["validate", "-f", "sarif"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    jsonschema.validate(data, SARIF_SUBSET)
    run = data["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for item in run["results"]:
        assert rules[item["ruleIndex"]] == item["ruleId"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"FLY002": "error", "FLY004": "warning", "IGN101": "warning"}
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert uris == {"fly.toml", ".dockerignore"}
    absolute = json.loads(runner.invoke(app, ["validate", str(project), "-f", "sarif"]).output)
    assert {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in absolute["runs"][0]["results"]
    } == uris
    ign = next(r for r in run["results"] if r["ruleId"] == "IGN101")
    assert ign["locations"][0]["physicalLocation"]["region"]["startLine"] == 1


def test_paths_can_be_files_and_several_projects(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "fly.toml").write_text(
        "app = 'x'\n[build]\nimage = 'nginx:1.27'\n[http_service]\ninternal_port = 80\n"
    )
    result = runner.invoke(app, ["validate", "fly.toml", "Dockerfile", str(other), "-f", "json"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["files"] == [
        f"{other}/fly.toml",
        "fly.toml",
        "Dockerfile",
        ".dockerignore",
    ]


def test_init_dry_run_force_and_options(project: Path) -> None:
    (project / "Dockerfile").write_text("FROM scratch\n")
    result = runner.invoke(app, ["init", "--dry-run", "--force", "--memory", "1024"])
    assert result.exit_code == 0
    assert '+  memory = "1024mb"' in result.output and "+FROM python:3.12-slim AS builder" in result.output
    assert (project / "Dockerfile").read_text() == "FROM scratch\n"
    result = runner.invoke(app, ["init", "--memory", "1024"])
    assert "kept     Dockerfile (it exists; --force replaces it)" in result.output
    assert "merged into fly.toml" in result.output
    result = runner.invoke(app, ["init", "--force"])
    assert "replaced Dockerfile" in result.output
    result = runner.invoke(app, ["init", "--asgi", "not a module"])
    assert result.exit_code == 2 and "--asgi 'not a module': expected MODULE:APP" in result.output


def test_init_asgi_and_volume_variants_validate(project: Path) -> None:
    result = runner.invoke(app, ["init", "--asgi", "web.main:app", "--volume", "--force", "--region", "ams"])
    assert result.exit_code == 0, result.output
    text = (project / "fly.toml").read_text()
    assert 'primary_region = "ams"' in text and 'destination = "/data"' in text
    assert '"uvicorn", "web.main:app", "--host", "::"' in (project / "Dockerfile").read_text()
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AI_BRIDGE_", "FLY_"))}


def test_real_subprocess_exit_codes(project: Path) -> None:
    command = [sys.executable, "-m", "aibridge", "validate"]
    clean = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert clean.returncode == 0, clean.stderr
    broken(project)
    failed = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert failed.returncode == 1 and "FLY002" in failed.stdout
    missing = subprocess.run(
        [*command, "missing-dir"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert missing.returncode == 2 and "missing-dir: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr + failed.stderr


def test_validate_does_not_import_the_server_stack(project: Path) -> None:
    code = (
        "import sys\nfrom aibridge.cli import main\nsys.argv = ['aibridge', 'validate']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "stack = ('litestar', 'uvicorn', 'aiohttp', 'prometheus_client', 'redis')\n"
        "heavy = [m for m in stack if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_every_rule_code_is_catalogued_and_tested() -> None:
    import re

    source = "".join(p.read_text() for p in (Path(__file__).parent.parent / "src/aibridge/fly").glob("*.py"))
    used = set(re.findall(r'"((?:FLY|DKR|IGN|XF)\d{3})"', source))
    assert used <= set(RULES), used - set(RULES)
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_fly_*.py"))
    tests += "".join(p.read_text() for p in FIXTURES.rglob("*") if p.is_file())
    untested = {code for code in RULES if code not in tests}
    assert untested == set(), f"rules without a test: {sorted(untested)}"


@pytest.mark.parametrize("how", ["argument", "option"])
def test_a_dockerfile_alone_is_linted_without_fly_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # README: a Dockerfile can be passed alone. With no fly.toml there is nothing to cross-check:
    # the Dockerfile rules and DKR113 (its folder is the context) run, and the report says XF is skipped.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docker").mkdir()
    dockerfile = tmp_path / "docker" / "web.Dockerfile"
    dockerfile.write_text(
        'FROM python:3.12-slim\nCOPY app.py /app/\nUSER 1001\nCMD ["python", "/app/app.py"]\n'
    )
    args = [str(dockerfile)] if how == "argument" else ["--dockerfile", str(dockerfile)]
    result = runner.invoke(app, ["validate", *args, "--format", "json"])
    assert result.exit_code == 1, result.output  # DKR113: app.py is not next to it
    report = json.loads(result.output)
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["DKR113"]
    assert report["notes"] and "cross-file rules (XF) were skipped" in report["notes"][0]
    assert not any(f["code"].startswith(("FLY", "XF")) for f in report["findings"])
    (tmp_path / "docker" / "app.py").write_text("print('hi')\n")
    (tmp_path / "docker" / ".dockerignore").write_text(
        ".env*\n.git\n.venv\n**/__pycache__\n**/*.pem\n**/*.key\n"
    )
    result = runner.invoke(app, ["validate", *args])
    assert result.exit_code == 0, result.output
    assert "note: no fly.toml" in result.output


def test_readme_rule_table_is_the_catalog() -> None:
    from aibridge.fly.catalog import markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme
    assert "**error**: flyctl refuses the file" in readme and "**warning**: flyctl accepts the file" in readme
