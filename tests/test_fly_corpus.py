"""``aibridge validate`` over real-world fly.toml files.

Two sets: the 70 files of the shared corpus (``../shared/corpus/flytoml`` next to the checkout,
or ``AIBRIDGE_CORPUS=DIR``; those tests skip without it), and the self-contained
``tests/fixtures/corpus`` (written for the repo, in the shapes the corpus showed), which always runs.
Both: no crash, syntax errors reported with a position, and exactly the errors reviewed as real.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aibridge.cli import app
from aibridge.fly.findings import Severity
from aibridge.fly.validate import validate_project

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("AIBRIDGE_CORPUS") or REPO.parent / "shared" / "corpus") / "flytoml"
LOCAL = Path(__file__).resolve().parent / "fixtures" / "corpus"

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"fly.toml corpus not found at {CORPUS} (set AIBRIDGE_CORPUS=DIR)"
)

SYNTAX = {"009": (43, 25), "024": (18, 8), "030": (23, 11), "047": (20, 15), "063": (52, 11), "067": (31, 7)}
# Every error reported on the files that parse, each reviewed by hand (fly notes, "Corpus review").
REAL_ERRORS = {
    "017": [("FLY109", 13)],  # strategy = "canary" with [[mounts]]: flyctl refuses canary with volumes
    "022": [("FLY002", 19)],  # [http_service.checks] as a table: flyctl's json unmarshal error
    # [processes] defines two groups and this [[services]] names none: validation.go
    # validateServicesSection refuses it ("Service has no processes set but app has 2 processes").
    "039": [("FLY120", 39)],
    "050": [("FLY109", 31)],  # strategy = "bluegreen" with [[mounts]]: bluegreen cannot use volumes
    "056": [("FLY002", 17)],  # [http_service.checks.health]: the tokf PR #168 error
    "058": [("FLY123", 28)],  # tcp check without port, no [http_service]: flyctl errors at deploy
}
LOCAL_SYNTAX = {"syntax-unclosed": (4, 20), "syntax-duplicate": (6, 14)}
LOCAL_ERRORS = {
    "canary-with-mounts": [("FLY109", 5)],  # flyctl: canary is not supported with mounted volumes
    "checks-as-table": [("FLY002", 7)],  # [http_service.checks] must be an array of tables
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.toml"))


def local_files() -> list[Path]:
    return sorted(LOCAL.glob("*.toml"))


def check(path: Path, syntax: dict[str, tuple[int, int]], real: dict[str, list[tuple[str, int]]]) -> None:
    report = validate_project(path)
    errors = [
        (f.code, f.line) for f in report.findings if f.severity is Severity.ERROR and f.file == str(path)
    ]
    if path.stem in syntax:
        assert errors == [("FLY001", syntax[path.stem][0])]
        (found,) = [f for f in report.findings if f.code == "FLY001"]
        assert found.column == syntax[path.stem][1] and "not valid TOML" in found.message
    else:
        assert errors == real.get(path.stem, [])


def exits_1_without_traceback(paths: list[Path]) -> None:
    result = CliRunner().invoke(app, ["validate", *map(str, paths), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@needs_corpus
def test_corpus_is_complete() -> None:
    assert len(corpus_files()) == 70


@needs_corpus
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_corpus_file(path: Path) -> None:
    check(path, SYNTAX, REAL_ERRORS)


@needs_corpus
def test_cli_over_the_whole_corpus_exits_1_without_traceback() -> None:
    exits_1_without_traceback(corpus_files())


def test_local_corpus_holds_each_shape() -> None:
    assert {p.stem for p in local_files()} >= {*LOCAL_SYNTAX, *LOCAL_ERRORS, "nomad-services", "http-service"}


@pytest.mark.parametrize("path", local_files(), ids=lambda p: p.stem)
def test_local_corpus_file(path: Path) -> None:
    check(path, LOCAL_SYNTAX, LOCAL_ERRORS)


def test_cli_over_the_local_corpus_exits_1_without_traceback() -> None:
    exits_1_without_traceback(local_files())
