"""Value formats of fly.toml: Go durations, memory sizes and volume sizes, parsed as flyctl does."""

from __future__ import annotations

import re
from typing import Literal

__all__ = (
    "BareUnit",
    "duration_seconds",
    "format_seconds",
    "parse_go_duration",
    "parse_memory_mb",
    "parse_volume_gb",
)

BareUnit = Literal["s", "ms", "ns"]
"""What a bare integer means where it appears (fly.md §1 "Durations")."""

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BARE = {"s": 1.0, "ms": 1e-3, "ns": 1e-9}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string ("1m30s", "500ms"); ValueError otherwise."""
    raw = text.strip()
    body = raw.lstrip("+-")
    sign = -1.0 if raw.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            missing = not re.match(r"(\d+\.?\d*|\.\d+)[a-zµμ]", body[pos:])
            what = "missing unit in duration" if missing else "unknown unit in duration"
            raise ValueError(f'time: {what} "{text}"')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return sign * total


def duration_seconds(value: object, bare_unit: BareUnit) -> float:
    """Seconds for a fly.toml duration: a Go duration string, or a bare integer in ``bare_unit``."""
    if isinstance(value, bool):
        raise ValueError('expected a duration string like "10s" or an integer, got a boolean')
    if isinstance(value, int):
        return value * _BARE[bare_unit]
    if isinstance(value, str):
        return parse_go_duration(value)
    raise ValueError(f'expected a duration string like "10s", got {type(value).__name__}')


def format_seconds(seconds: float) -> str:
    """A short human form: 10µs, 250ms, 2s, 1m30s."""
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:g}s" if rest else f"{int(minutes)}m"


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory_mb(value: object) -> int:
    """MB in ``[[vm]] memory``: an integer (or numeric string) is MB, else binary units ("1gb" = 1024)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid size: {value!r} is not a string or an integer")
    if isinstance(value, int):
        megabytes = value
    elif re.fullmatch(r"[+-]?\d+", value.strip()):
        megabytes = int(value.strip())
    else:
        match = _RAM.match(value)
        if match is None:
            raise ValueError(f"invalid size: '{value}'")
        number = float(match.group(1)) if match.group(1).count(".") <= 1 else None
        if number is None:
            raise ValueError(f"invalid size: '{value}'")
        megabytes = int(number * _BINARY[(match.group(2) or "").lower()]) // (1 << 20)
    if megabytes == 0:
        raise ValueError("memory cannot be zero")
    if megabytes < 0:
        raise ValueError(f"invalid size: '{value}'")
    return megabytes


_HUMAN = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[bB]?$")
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_volume_gb(value: object) -> float:
    """GB in a volume size: an integer is GB, else decimal units ("30gb")."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid size: {value!r}")
    if isinstance(value, int):
        return float(value)
    if re.fullmatch(r"\d+", value.strip()):
        return float(value.strip())
    match = _HUMAN.match(value.strip())
    if match is None:
        raise ValueError(f"invalid size: '{value}'")
    return float(match.group(1)) * _DECIMAL[(match.group(2) or "").lower()] / 10**9
