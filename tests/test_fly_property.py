"""Property tests: whatever fly.toml, Dockerfile or .dockerignore text comes in, no traceback comes out."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aibridge.cli import app
from aibridge.fly.catalog import ERROR_REASONS, RULES
from aibridge.fly.dockerfile import DockerfileSyntaxError, parse_dockerfile
from aibridge.fly.findings import Finding, Severity
from aibridge.fly.model import TomlSyntaxError, parse_fly_document
from aibridge.fly.rules_cross import check_cross
from aibridge.fly.rules_docker import check_dockerfile
from aibridge.fly.rules_ignore import check_dockerignore
from aibridge.fly.rules_toml import check_fly_toml
from aibridge.fly.schema import ROOT, Form, Kind, NamedMap, Section
from aibridge.fly.templates import InitOptions, render_dockerfile, render_fly_toml
from aibridge.fly.validate import validate_project

FIXTURES = Path(__file__).parent / "fixtures" / "fly"
TOML_SEEDS = [p.read_text() for p in sorted((FIXTURES / "toml").glob("*.toml"))] + [
    render_fly_toml(InitOptions(app="demo-app", volume=True))
]
DOCKER_SEEDS = [p.read_text() for p in sorted((FIXTURES / "docker").glob("*"))] + [
    render_dockerfile(InitOptions(app="demo-app")),
    render_dockerfile(InitOptions(app="demo-app", asgi="web:app")),
]
# FUZZ_EXAMPLES=5000 runs a longer fuzz locally.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _names(section: Section, out: set[str]) -> set[str]:
    for name, spec in section.fields.items():
        out.add(name)
        inner = spec.item if isinstance(spec, NamedMap) else spec
        if isinstance(inner, Section):
            _names(inner, out)
    return out


KEYS = st.sampled_from(sorted(_names(ROOT, set()) | {"compute", "mount", "metric", "name", "x-unknown"}))
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(
        ["10s", "1m30s", "10", "0", "512mb", "1gb", "lots", "stop", "rolling", "bluegreen", "canary"]
    ),
    st.text(max_size=12),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=5),
        st.lists(st.dictionaries(KEYS, inner, min_size=1, max_size=4), min_size=1, max_size=3),
    ),
    max_leaves=25,
)


def _mangle(seed: str, data: st.DataObject) -> str:
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete":
            text = text[:where] + text[where + data.draw(st.integers(1, 20)) :]
        elif action == "insert":
            junk = data.draw(st.text(alphabet="[]{}=\"',.#\\\n x0-:$<>|&", max_size=8))
            text = text[:where] + junk + text[where:]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                index = data.draw(st.integers(0, len(lines) - 1))
                text = "".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    return text


def _check_all(toml_text: str, docker_text: str) -> list[Finding]:
    findings: list[Finding] = []
    model = None
    try:
        model = parse_dockerfile(docker_text)
        findings += check_dockerfile(model)
    except DockerfileSyntaxError as error:
        assert error.line >= 1
    try:
        doc = parse_fly_document(toml_text)
    except TomlSyntaxError as error:
        assert error.line >= 1 and error.column >= 1
        return findings
    findings += check_fly_toml(doc)
    findings += check_cross(doc, model)
    return findings


@SETTINGS
@given(st.sampled_from(TOML_SEEDS), st.sampled_from(DOCKER_SEEDS), st.data())
def test_mangled_files_never_crash(toml_seed: str, docker_seed: str, data: st.DataObject) -> None:
    for f in _check_all(_mangle(toml_seed, data), _mangle(docker_seed, data)):
        assert f.line >= 0 and f.code and f.message


@SETTINGS
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_any_toml_document_shape_never_crashes(document: dict[str, Any]) -> None:
    text = tomlkit.dumps(document)
    for f in _check_all(text, "FROM python:3.12-slim\n"):
        assert f.line >= 1


@SETTINGS
@given(st.text(max_size=200))
@example("\\")  # the BuildKit parser returns an instruction with no name for a lone backslash
@example("FROM x\n\\\n")
def test_any_text_never_crashes(text: str) -> None:
    _check_all(text, text)
    check_dockerignore(text, ".dockerignore")


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(TOML_SEEDS), st.sampled_from(DOCKER_SEEDS), st.data())
def test_cli_exit_code_is_0_1_or_2_never_a_traceback(
    toml_seed: str, docker_seed: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "fly.toml").write_text(_mangle(toml_seed, data))
        (root / "Dockerfile").write_text(_mangle(docker_seed, data))
        (root / ".dockerignore").write_text(data.draw(st.text(max_size=40)))
        for output in ("text", "json", "sarif"):
            result = CliRunner().invoke(app, ["validate", folder, "--format", output])
            assert result.exit_code in (0, 1, 2), result.output
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(
                result.exception
            )


# Every known key, as a path of (key, form) steps from the root: the sections it is under, each
# written as a table, an array of tables or a named [checks.NAME] table, as flyctl accepts them.
Step = tuple[str, str]


def _key_paths(section: Section, prefix: tuple[Step, ...], out: list[tuple[tuple[Step, ...], Any]]) -> None:
    for name, spec in section.fields.items():
        if isinstance(spec, NamedMap):
            _key_paths(spec.item, (*prefix, (name, "named")), out)
        elif isinstance(spec, Section):
            form = "array" if spec.form is Form.ARRAY else "table"
            _key_paths(spec, (*prefix, (name, form)), out)
        else:
            out.append(((*prefix, (name, "value")), spec))


KEY_PATHS: list[tuple[tuple[Step, ...], Any]] = []
_key_paths(ROOT, (), KEY_PATHS)
TOML_SCALARS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " 10s", "10s", "512mb", "10GiB", "0", "-1", "stop", "always", "http"]),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.datetimes(timezones=st.just(dt.UTC)),  # offset datetime
    st.datetimes(),  # local datetime
    st.dates(),  # local date
    st.times(),  # local time
)
TOML_ANY: st.SearchStrategy[Any] = st.one_of(
    TOML_SCALARS,
    st.lists(TOML_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["name", "value", "x"]), TOML_SCALARS, max_size=2),
)


def _place(document: dict[str, Any], steps: tuple[Step, ...], value: Any) -> None:
    node = document
    for key, form in steps[:-1]:
        if form == "array":
            items = node.get(key)
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                items = node[key] = [{}]
            node = items[0]
        else:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
            if form == "named":
                inner = node.get("probe")
                if not isinstance(inner, dict):
                    inner = node["probe"] = {}
                node = inner
    node[steps[-1][0]] = value


def _reason_ok(f: Finding) -> bool:
    rule = RULES[f.code]
    if f.severity is not Severity.ERROR:
        return True
    return rule.why in ERROR_REASONS or f.code == "FLY004"  # FLY004: --strict makes it an error


# Hypothesis warns when an example's repr would be long; the test itself is unaffected.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(KEY_PATHS), TOML_ANY), min_size=1, max_size=6))
def test_every_toml_type_in_every_known_key(entries: list[tuple[tuple[tuple[Step, ...], Any], Any]]) -> None:
    document: dict[str, Any] = {"app": "demo"}
    for (steps, _), value in entries:
        _place(document, steps, value)
    text = tomlkit.dumps(document)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "fly.toml").write_text(text)
        (root / "Dockerfile").write_text(
            'FROM python:3.12-slim\nCOPY . /app\nUSER 1001\nCMD ["aibridge", "serve"]\n'
        )
        (root / ".dockerignore").write_text(".env*\n.git\n.venv\n**/__pycache__\n**/*.pem\n**/*.key\n")
        for strict in (False, True):
            report = validate_project(root / "fly.toml", strict=strict)
            for f in report.findings:
                assert _reason_ok(f), (f.code, f.message)
                rule = RULES[f.code]
                assert f.severity is rule.severity or rule.lesser or (strict and f.code == "FLY004"), f


@SETTINGS
@given(st.sampled_from([p for p in KEY_PATHS if p[1].kind is Kind.STR]), st.one_of(st.dates(), st.times()))
def test_a_toml_date_in_a_string_field_is_never_an_error(
    entry: tuple[tuple[Step, ...], Any], value: object
) -> None:
    # patches.go mapToConfig: json.Marshal writes go-toml's date/time values as strings, so a string
    # field takes the text. flyctl accepts the file: a warning (FLY127), never an error.
    document: dict[str, Any] = {"app": "demo"}
    _place(document, entry[0], value)
    doc = parse_fly_document(tomlkit.dumps(document))
    at = [f for f in check_fly_toml(doc) if f.severity is Severity.ERROR and f.code.startswith("FLY0")]
    assert at == [], [f.message for f in at]
    assert any(f.code == "FLY127" for f in check_fly_toml(doc))
