"""Dockerfile and .dockerignore rules. A ``# !CODE`` comment marks the next instruction's line."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from aibridge.fly.argv import unwrap
from aibridge.fly.catalog import finding
from aibridge.fly.dockerfile import DockerfileSyntaxError, parse_dockerfile
from aibridge.fly.findings import Finding, Severity
from aibridge.fly.rules_docker import check_dockerfile
from aibridge.fly.rules_ignore import check_dockerignore, excluded

FIXTURES = Path(__file__).parent / "fixtures" / "fly" / "docker"


def expected(text: str) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    pending: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r"\s*# !([A-Z0-9,]+)", line)
        if match:
            pending += match.group(1).split(",")
        elif line.strip() and not line.strip().startswith("#") and pending:
            out.update((code, number) for code in pending)
            pending = []
    return out


def lint(text: str) -> list[Finding]:
    try:
        return check_dockerfile(parse_dockerfile(text, "Dockerfile"))
    except DockerfileSyntaxError as error:
        return [finding("DKR001", "Dockerfile", (error.line, 1), error.message)]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_fixture_reports_exactly_the_marked_lines(path: Path) -> None:
    text = path.read_text()
    findings = lint(text)
    assert Counter((f.code, f.line) for f in findings) == expected(text), "\n".join(
        f"{f.code}:{f.line} {f.message}" for f in findings
    )


def test_copy_with_shell_operators_names_the_token() -> None:
    findings = lint((FIXTURES / "bad_copy_shell.Dockerfile").read_text())
    first = next(f for f in findings if f.code == "DKR101")
    assert "'2>/dev/null'" in first.message and first.severity is Severity.ERROR


def test_unknown_bare_copy_source_is_a_warning_but_forward_reference_an_error() -> None:
    findings = [f for f in lint((FIXTURES / "bad_copy_from.Dockerfile").read_text()) if f.code == "DKR102"]
    by_line = {f.line: f.severity for f in findings}
    assert by_line == {3: Severity.ERROR, 5: Severity.ERROR, 7: Severity.WARNING, 9: Severity.ERROR}


def test_build_target_selects_the_final_stage() -> None:
    text = 'FROM python:3.12-slim AS app\nUSER 1001\nHEALTHCHECK NONE\nCMD ["aibridge"]\n'
    text += "FROM app AS debug\nUSER root\n"
    assert [f.code for f in check_dockerfile(parse_dockerfile(text), target="app")] == []
    assert [f.code for f in check_dockerfile(parse_dockerfile(text))] == ["DKR103"]


_SH = ["/bin/sh", "-c"]


@pytest.mark.parametrize(
    ("entrypoint", "runs_as_root"),
    [
        (["tini", "--", "setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", "--"], False),
        (["tini", "--", "setpriv", "--reuid", "app", "--init-groups"], False),
        (["tini", "--", *_SH, 'chown 1001 /data && exec setpriv --reuid=1001 -- "$@"', "sh"], False),
        (["dumb-init", "--", "gosu", "1001:1001"], False),
        (["su-exec", "app"], False),
        (["tini", "--", "setpriv", "--reuid=0", "--"], True),
        (["tini", "--", "setpriv", "--regid=1001", "--"], True),
        (["tini", "--", "gosu", "root"], True),
        (["tini", "--", "su-exec", "0:0"], True),
        # Without exec the shell runs setpriv as a child: not recognised as a drop.
        (["tini", "--", *_SH, 'chown 1001 /data && setpriv --reuid=1001 -- "$@"', "sh"], True),
        (["tini", "--"], True),
    ],
)
def test_root_final_stage_is_fine_only_with_a_drop_to_non_root(
    entrypoint: list[str], runs_as_root: bool
) -> None:
    text = f"FROM python:3.12-slim\nHEALTHCHECK NONE\nENTRYPOINT {json.dumps(entrypoint)}\n"
    text += 'CMD ["aibridge", "serve"]\n'
    assert [f.code for f in lint(text)] == (["DKR103"] if runs_as_root else [])


def test_unwrap_finds_the_server_and_the_user_through_every_wrapper() -> None:
    script = 'chown 1001:1001 /data && exec setpriv --reuid=1001 --regid=1001 --clear-groups -- "$@"'
    launch = unwrap(["tini", "--", *_SH, script, "sh", "aibridge", "serve", "--port", "9000"])
    assert (launch.argv, launch.user) == (["aibridge", "serve", "--port", "9000"], "1001")
    launch = unwrap(["tini", "-g", "--", "sh", "-c", 'exec gosu app:app "$1" run', "sh", "uvicorn", "x"])
    assert (launch.argv, launch.user) == (["uvicorn", "run"], "app")
    # A shell that stays PID 1 is what runs; the server is its child.
    assert unwrap([*_SH, "migrate; aibridge serve"]).argv == [*_SH, "migrate; aibridge serve"]


def test_parse_error_has_the_line() -> None:
    with pytest.raises(DockerfileSyntaxError) as caught:
        parse_dockerfile("FROM python:3.12-slim\nUSER 1001\nENV ONLY_A_NAME\n")
    assert caught.value.line == 3 and "ENV" in caught.value.message


@pytest.mark.parametrize(
    ("patterns", "path", "out"),
    [
        (".env*", ".env.local", True),
        (".env*", "config/.env", False),
        ("**/.env*", "config/.env", True),
        ("__pycache__", "src/__pycache__/m.pyc", False),
        ("**/__pycache__", "src/__pycache__/m.pyc", True),
        ("*.pyc", "a/b.pyc", False),
        ("/.git", ".git/HEAD", True),
        (".venv\n!.venv/keep", ".venv/keep", False),
        ("*\n!src", "src/app.py", False),
        ("*\n!src", "fly.toml", True),
        ("docs/**/*.md", "docs/a/b/c.md", True),
    ],
)
def test_dockerignore_matches_like_docker(patterns: str, path: str, out: bool) -> None:
    assert excluded(patterns, path) is out


def test_dockerignore_missing_entries_are_named() -> None:
    findings = check_dockerignore(".git\n__pycache__\n", ".dockerignore")
    suggested = {f.fix for f in findings}
    assert suggested == {
        "Add the line .env*",
        "Add the line .venv",
        "Add the line **/__pycache__",
        "Add the line **/*.pem",
        "Add the line **/*.key",
    }
    assert all(f.code == "IGN102" and f.severity is Severity.WARNING for f in findings)


def test_complete_dockerignore_is_clean() -> None:
    assert check_dockerignore(".git\n.env*\n.venv\n**/__pycache__\n**/*.pem\n**/*.key\n", "x") == []


def test_copy_sources_must_be_in_the_context_and_not_ignored() -> None:
    # DKR113: BuildKit fails "failed to compute cache key: ... not found" for a COPY/ADD source that
    # is missing from the build context or excluded by .dockerignore (the fixture's header says where).
    from aibridge.fly.dockerfile import parse_dockerfile
    from aibridge.fly.rules_context import check_context

    context = Path(__file__).parent / "fixtures" / "fly" / "context"
    text = (context / "Dockerfile").read_text()
    lines = text.splitlines()
    marked = [n - 1 for n, line in enumerate(lines, 1) if line.startswith("# !DKR113")]
    ignore = (context / ".dockerignore").read_text()
    findings = check_context(parse_dockerfile(text), context, ignore)
    assert [f.line for f in findings] == marked
    assert all(f.code == "DKR113" and f.severity.value == "error" for f in findings)
    assert "excluded by .dockerignore" in findings[1].message
    assert "matches nothing" in findings[2].message
    # Without the .dockerignore, secrets.env is sent and the COPY works.
    assert len(check_context(parse_dockerfile(text), context, None)) == 2


def test_copy_sources_follow_the_build_target(tmp_path: Path) -> None:
    from aibridge.fly.dockerfile import parse_dockerfile
    from aibridge.fly.rules_context import check_context

    text = "FROM python:3.12-slim AS dev\nCOPY dev.txt /\n\nFROM python:3.12-slim AS prod\nCOPY . /app\n"
    model = parse_dockerfile(text)
    assert check_context(model, tmp_path, None) == []  # prod is built; dev never is
    (finding,) = check_context(model, tmp_path, None, target="dev")
    assert finding.line == 2 and "'dev.txt' is not in the build context" in finding.message
