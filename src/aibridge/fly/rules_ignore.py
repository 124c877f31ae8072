"""Rules on .dockerignore, matched the way Docker does (moby patternmatcher semantics)."""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache

from aibridge.fly.catalog import finding
from aibridge.fly.findings import Finding

__all__ = ("REQUIRED", "check_dockerignore", "excluded", "missing_dockerignore")

# (a path that must stay out of the build context, the pattern to suggest)
REQUIRED: tuple[tuple[str, str], ...] = (
    (".env", ".env*"),
    (".env.production", ".env*"),
    (".git/HEAD", ".git"),
    (".venv/bin/python", ".venv"),
    ("src/app/__pycache__/mod.cpython-312.pyc", "**/__pycache__"),
    ("deploy/key.pem", "**/*.pem"),
    ("secrets/server.key", "**/*.key"),
)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern[i : i + 1] == "/":
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.find("]", i)
            if end < 0:
                out += re.escape(char)
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out += f"[{'^' + body[1:] if body.startswith('^') else body}]"
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    try:
        return re.compile(out + r"\Z")
    except re.error:
        return re.compile(r"(?!)")


def _patterns(text: str) -> list[tuple[bool, str, int]]:
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:].strip() if negate else line
        cleaned = posixpath.normpath(line).lstrip("/")
        if cleaned and cleaned != ".":
            out.append((negate, cleaned, number))
    return out


def excluded(text: str, path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context under this .dockerignore."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, pattern, _ in _patterns(text):
        regex = _regex(pattern)
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def check_dockerignore(text: str, file: str) -> list[Finding]:
    out: list[Finding] = []
    reported: set[str] = set()
    for path, pattern in REQUIRED:
        if pattern in reported or excluded(text, path):
            continue
        reported.add(pattern)
        out.append(
            finding(
                "IGN102",
                file,
                (1, 1),
                f"nothing excludes {path!r}: it is sent to the builder and can end up in the image",
                f"Add the line {pattern}",
            )
        )
    return out


def missing_dockerignore(file: str) -> Finding:
    return finding("IGN101", file, (0, 0), "no .dockerignore: .env, .git and .venv go into the image build")
