"""The judged-release record: every release aibridge verified, good or bad, in a file in the repo.

Why a file next to fly.toml (``.aibridge/releases.json``) and not something flyctl keeps: flyctl
(superfly/flyctl @ ad0172f) offers no place that a later run can both write after judging and
read back without a redeploy.

- ``fly releases`` marks a release ``complete`` when flyctl's own deploy step succeeded, and its
  ``Description`` is set by the platform (``internal/command/apps/releases.go`` has no flag to
  write anything).
- Image labels (``fly deploy --label``, ``internal/command/deploy/deploy.go``) are written at build
  time, before the verdict exists, and an image in the registry is immutable.
- Machine metadata is only set through ``fly machine run/update --metadata``
  (``internal/command/machine/run.go``), which replaces the Machine, and each deploy rewrites
  the Machine config; there is no app-level metadata command.
- ``fly secrets`` are write-only: ``fly secrets list`` shows digests, never values.

A file in the repository is readable by any later run that checks the repo out, including a
fresh CI checkout, once it is committed: ``aibridge deploy --commit-record`` commits it (pushing
is the pipeline's job). Without the record a run knows only what ``fly releases`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aibridge.errors import FileReadError

__all__ = (
    "RECORD_NAME",
    "Judgement",
    "ReleaseRecord",
    "commit_record",
    "default_record_path",
)

RECORD_NAME = Path(".aibridge") / "releases.json"
Verdict = Literal["good", "bad"]


def default_record_path(config: Path) -> Path:
    """``.aibridge/releases.json`` in the directory of fly.toml (the repo's root, usually)."""
    return config.parent / RECORD_NAME


@dataclass(frozen=True, slots=True)
class Judgement:
    """One verdict aibridge reached on one release."""

    app: str
    image: str
    version: int | None
    verdict: Verdict
    why: str
    at: str
    """UTC, ISO 8601."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ReleaseRecord:
    """The record file; entries are appended, the newest verdict on an image wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Judgement] = self._load()

    def _load(self) -> list[Judgement]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            items = data["judged"] if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ValueError("no 'judged' list")
            return [
                Judgement(
                    app=str(i["app"]),
                    image=str(i["image"]),
                    version=i.get("version") if isinstance(i.get("version"), int) else None,
                    verdict="bad" if i["verdict"] == "bad" else "good",
                    why=str(i.get("why", "")),
                    at=str(i.get("at", "")),
                )
                for i in items
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileReadError(f"{self.path}: not a judged-release record ({exc})") from None

    def verdicts(self, app: str) -> dict[str, Judgement]:
        """The latest judgement per image of ``app``."""
        latest: dict[str, Judgement] = {}
        for entry in self.entries:
            if entry.app == app:
                latest[entry.image] = entry
        return latest

    def bad_images(self, app: str) -> dict[str, Judgement]:
        return {image: j for image, j in self.verdicts(app).items() if j.verdict == "bad"}

    def add(self, app: str, image: str, version: int | None, verdict: Verdict, why: str) -> Judgement:
        """Append a judgement and write the file atomically (a crash never leaves half a record)."""
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = Judgement(app, image, version, verdict, why, at)
        self.entries.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"judged": [e.to_json() for e in self.entries]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".releases.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return entry


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def commit_record(path: Path, message: str) -> str:
    """``git add`` + ``git commit`` of the record alone; returns a one-line result for the summary."""
    cwd = path.parent
    try:
        add = subprocess.run(["git", "add", "--", str(path)], cwd=cwd, capture_output=True, text=True)
        if add.returncode != 0:
            said = " ".join(add.stderr.strip().splitlines()[-1:])
            return f"record not committed: git add failed: {said}"
        commit = subprocess.run(
            ["git", "commit", "--quiet", "-m", message, "--", str(path)],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        return f"record not committed: cannot run git ({exc.strerror or exc})"
    if commit.returncode != 0:
        last = (commit.stderr.strip() or commit.stdout.strip()).splitlines()[-1:]
        return f"record not committed: git commit failed: {' '.join(last)}"
    return f"record committed to git ({path.name}); push it so later runs see it"
