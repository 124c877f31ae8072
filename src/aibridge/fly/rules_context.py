"""DKR113: every file a COPY/ADD takes from the build context must be there and not be excluded by
.dockerignore, or BuildKit fails the build ("failed to compute cache key: ... not found")."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from aibridge.fly.catalog import finding
from aibridge.fly.dockerfile import DockerfileModel, Instruction, Stage
from aibridge.fly.findings import Finding
from aibridge.fly.rules_ignore import excluded

__all__ = ("check_context",)

_REMOTE = ("http://", "https://", "git@", "git://")
_GLOB = set("*?[")
_WALK_LIMIT = 20_000
"""Paths looked at for a glob source, at most: a huge context is not worth a slow lint."""


def _built(model: DockerfileModel, target: str | None) -> list[Stage]:
    """The stages BuildKit builds for ``target``: its chain and every stage it copies from."""
    final = model.stage(target)
    todo, seen = ([final] if final else []), []
    names = {s.name: s for s in model.stages if s.name}
    while todo:
        stage = todo.pop()
        if stage in seen:
            continue
        seen.append(stage)
        todo += [s for s in stage.chain() if s not in seen]
        for instruction in stage.instructions:
            source = instruction.flag("from") if instruction.cmd == "COPY" else None
            if source is None:
                continue
            other = names.get(source.lower())
            if other is None and source.isdigit() and int(source) < len(model.stages):
                other = model.stages[int(source)]
            if other is not None:
                todo.append(other)
    return sorted(seen, key=lambda s: s.index)


def _sources(instruction: Instruction) -> list[str]:
    if instruction.cmd not in ("COPY", "ADD") or instruction.flag("from") is not None:
        return []
    if "<<" in instruction.original or len(instruction.value) < 2:
        return []  # a heredoc writes its own content
    return [s for s in instruction.value[:-1] if not s.startswith(_REMOTE) and "$" not in s]


def _walk(context: Path) -> Iterator[str]:
    count = 0
    for root, dirs, files in os.walk(context):
        rel = Path(root).relative_to(context).as_posix()
        for name in [*dirs, *files]:
            count += 1
            if count > _WALK_LIMIT:
                return
            yield name if rel == "." else f"{rel}/{name}"


def _glob_matches(context: Path, pattern: str) -> list[str]:
    parts = pattern.split("/")
    return [p for p in _walk(context) if len(p.split("/")) == len(parts) and fnmatchcase(p, pattern)]


def _problem(context: Path, ignore: str | None, source: str) -> str | None:
    clean = posixpath.normpath(source.lstrip("/")) or "."
    if clean in (".", "") or clean.startswith(".."):
        return None
    if _GLOB & set(clean):
        matches = _glob_matches(context, clean)
        kept = [m for m in matches if ignore is None or not excluded(ignore, m)]
        if not matches:
            return f"{source!r} matches nothing in the build context ({context})"
        if not kept:
            return f"everything {source!r} matches is excluded by .dockerignore"
        return None
    if not (context / clean).exists():
        return f"{source!r} is not in the build context ({context})"
    if ignore is not None and excluded(ignore, clean):
        return f"{source!r} is excluded by .dockerignore, so the builder never sees it"
    return None


def check_context(
    model: DockerfileModel, context: Path, ignore: str | None, target: str | None = None
) -> list[Finding]:
    """DKR113 findings for the stages built for ``target``, with ``context`` as the build context."""
    out: list[Finding] = []
    for stage in _built(model, target):
        for instruction in stage.instructions:
            for source in _sources(instruction):
                problem = _problem(context, ignore, source)
                if problem is not None:
                    message = f"{instruction.cmd} {problem}: the build fails"
                    out.append(finding("DKR113", model.file, (instruction.line, 1), message))
    return out
