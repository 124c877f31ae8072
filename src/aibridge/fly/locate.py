"""Line and column of tables and keys in TOML source text.

The stdlib parser (tomllib) gives values but no positions, and tomlkit's document keeps none either,
so this small scanner walks the text once and records where each table header and key starts. It is
deliberately forgiving: it runs only on text tomllib has already accepted, and a path it cannot place
falls back to its nearest placed ancestor.
"""

from __future__ import annotations

import re

__all__ = ("Locator", "Path", "syntax_error_position")

Path = tuple[str | int, ...]
"""A key path into the parsed document; ints index arrays of tables."""

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def syntax_error_position(message: str, text: str) -> tuple[int, int]:
    """(line, column) from a tomllib error message; the last line when it says "end of document"."""
    match = _POSITION.search(message)
    if match:
        return int(match.group(1)), int(match.group(2))
    lines = text.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _read_key(line: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a dotted key at ``pos``; return its parts and the index after it, or None."""
    parts: list[str] = []
    while True:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos >= len(line):
            return None
        char = line[pos]
        if char in "\"'":
            end = pos + 1
            while end < len(line) and line[end] != char:
                end += 2 if char == '"' and line[end] == "\\" else 1
            if end >= len(line):
                return None
            raw = line[pos + 1 : end]
            parts.append(raw.encode().decode("unicode_escape") if char == '"' and "\\" in raw else raw)
            pos = end + 1
        else:
            match = _BARE.match(line, pos)
            if match is None:
                return None
            parts.append(match.group(0))
            pos = match.end()
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == ".":
            pos += 1
            continue
        return parts, pos


class _ValueScanner:
    """Tracks whether a value continues onto the next line (open brackets or multi-line strings)."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, line: str, pos: int = 0) -> None:
        while pos < len(line):
            if self.multiline is not None:
                end = line.find(self.multiline, pos)
                if end < 0:
                    return
                pos, self.multiline = end + 3, None
                continue
            char = line[pos]
            if char == "#":
                return
            if line.startswith(('"""', "'''"), pos):
                self.multiline, pos = line[pos : pos + 3], pos + 3
                continue
            if char in "\"'":
                end = pos + 1
                while end < len(line) and line[end] != char:
                    end += 2 if char == '"' and line[end] == "\\" else 1
                pos = end + 1
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth = max(0, self.depth - 1)
            pos += 1


class Locator:
    """Where each table and key of a TOML document starts (1-based line and column)."""

    def __init__(self, text: str) -> None:
        self._positions: dict[Path, tuple[int, int]] = {}
        self._arrays: dict[Path, int] = {}
        self._scan(text)

    def _record(self, path: Path, line: int, column: int) -> None:
        self._positions.setdefault(path, (line, column))

    def _resolve(self, keys: list[str]) -> Path:
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self._arrays:
                path = (*path, self._arrays[path] - 1)
        return path

    def _scan(self, text: str) -> None:
        current: Path = ()
        value = _ValueScanner()
        for number, line in enumerate(text.splitlines(), start=1):
            if value.open:
                value.feed(line)
                continue
            stripped = line.lstrip()
            column = len(line) - len(stripped) + 1
            if stripped.startswith("[["):
                parsed = _read_key(stripped, 2)
                if parsed:
                    keys = parsed[0]
                    for size in range(1, len(keys)):
                        self._record(self._resolve(keys[:size]), number, column)
                    base = (*self._resolve(keys[:-1]), keys[-1])
                    index = self._arrays.get(base, 0)
                    self._arrays[base] = index + 1
                    current = (*base, index)
                    self._record(base, number, column)
                    self._record(current, number, column)
            elif stripped.startswith("["):
                parsed = _read_key(stripped, 1)
                if parsed:
                    keys = parsed[0]
                    for size in range(1, len(keys) + 1):
                        self._record(self._resolve(keys[:size]), number, column)
                    current = self._resolve(keys)
            elif stripped and not stripped.startswith("#"):
                parsed = _read_key(line, 0)
                if parsed and parsed[1] < len(line) and line[parsed[1]] == "=":
                    keys = parsed[0]
                    for size in range(1, len(keys) + 1):
                        self._record((*current, *keys[:size]), number, column)
                    value.feed(line, parsed[1] + 1)

    def find(self, path: Path) -> tuple[int, int]:
        """Position of ``path``, else of its nearest placed ancestor, else (1, 1)."""
        for size in range(len(path), 0, -1):
            found = self._positions.get(path[:size])
            if found:
                return found
        return (1, 1)

    def has(self, path: Path) -> bool:
        return path in self._positions
