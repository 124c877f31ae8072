"""The 70 real fly.toml files of ../shared/corpus/flytoml: no crash, the six syntax errors with a
position, and exactly the errors reviewed as real (see the table in the fly notes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aibridge.cli import app
from aibridge.fly.findings import Severity
from aibridge.fly.validate import validate_project

REPO = Path(__file__).resolve().parent.parent
# ../shared from the main checkout; ../../shared from a worktree under /work/wt.
CORPUS = next(
    (
        base / "shared" / "corpus" / "flytoml"
        for base in (REPO.parent, REPO.parent.parent)
        if (base / "shared" / "corpus" / "flytoml").is_dir()
    ),
    REPO.parent / "shared" / "corpus" / "flytoml",
)

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"fly.toml corpus not found at {CORPUS}")

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


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.toml"))


def test_corpus_is_complete() -> None:
    assert len(corpus_files()) == 70


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_corpus_file(path: Path) -> None:
    report = validate_project(path)
    errors = [
        (f.code, f.line) for f in report.findings if f.severity is Severity.ERROR and f.file == str(path)
    ]
    if path.stem in SYNTAX:
        assert errors == [("FLY001", SYNTAX[path.stem][0])]
        (syntax,) = [f for f in report.findings if f.code == "FLY001"]
        assert syntax.column == SYNTAX[path.stem][1] and "not valid TOML" in syntax.message
    else:
        assert errors == REAL_ERRORS.get(path.stem, [])


def test_cli_over_the_whole_corpus_exits_1_without_traceback() -> None:
    result = CliRunner().invoke(app, ["validate", *map(str, corpus_files()), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
