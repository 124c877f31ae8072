"""Value formats of fly.toml: Go durations, memory sizes and volume sizes, parsed as flyctl does."""

from __future__ import annotations

import math
import re
from typing import Literal

__all__ = (
    "BareUnit",
    "duration_seconds",
    "format_seconds",
    "go_string",
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
    """Seconds in a Go ``time.ParseDuration`` string ("1m30s", "500ms"); ValueError otherwise.

    Like Go, nothing is trimmed: " 10s" is invalid."""
    body = text[1:] if text[:1] in ("+", "-") else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            if not re.match(r"(\d+\.?\d*|\.\d+)", body[pos:]):
                raise ValueError(f'time: invalid duration "{text}"')
            missing = not re.match(r"(\d+\.?\d*|\.\d+)[^\d.]", body[pos:])
            what = "missing unit in duration" if missing else "unknown unit in duration"
            raise ValueError(f'time: {what} "{text}"')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return sign * total


def duration_seconds(value: object, bare_unit: BareUnit) -> float:
    """Seconds for a fly.toml duration: a Go duration string, or a bare number in ``bare_unit``.

    A float is truncated to a whole number first, as Go's ``time.Duration(f)`` conversion does
    (patches.go ``_castDuration``; fly-go ``Duration.ParseDuration``)."""
    if isinstance(value, bool):
        raise ValueError('expected a duration string like "10s" or an integer, got a boolean')
    if isinstance(value, float) and math.isfinite(value):
        return int(value) * _BARE[bare_unit]
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


# docker/go-units v0.5.0 (flyctl's go.mod) sizeRegex, shared by RAMInBytes and FromHumanSize.
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_ATOI = re.compile(r"[+-]?\d+")


def _parse_size(text: str, units: dict[str, int], quotient: int) -> int:
    """flyctl helpers.ParseSize: a plain integer is taken as is, else go-units bytes // quotient."""
    if _ATOI.fullmatch(text):
        return int(text)
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"invalid size: invalid size: '{text}'")
    if match.group(1).count(".") > 1:
        raise ValueError(f'invalid size: strconv.ParseFloat: parsing "{match.group(1)}": invalid syntax')
    size = int(float(match.group(1)) * units[(match.group(2) or "").lower()])
    return size // quotient


def go_string(value: object) -> str:
    """``fmt.Sprintf("%v", v)`` of a decoded TOML scalar (patches.go ``castToString``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def parse_memory_mb(value: object) -> int:
    """MB in ``[[vm]] memory`` (machines.go ``computeToGuest``): a plain integer is MB, else binary
    units ("1gb" = 1024); zero is refused."""
    if isinstance(value, list | dict):
        raise ValueError(f"invalid size: {value!r} is not a string or an integer")
    text = value if isinstance(value, str) else go_string(value)
    megabytes = _parse_size(text, _BINARY, 1 << 20)
    if megabytes == 0:
        raise ValueError("memory cannot be zero")
    if megabytes < 0:
        raise ValueError(f"invalid size: '{text}'")
    return megabytes


def parse_volume_gb(value: object) -> int:
    """Whole GB in a volume size (validation.go ``validateMounts``): a plain integer is GB, else
    decimal units, binary suffixes read as decimal ("10GiB" = 10), rounded down."""
    if isinstance(value, list | dict):
        raise ValueError(f"invalid size: {value!r}")
    text = value if isinstance(value, str) else go_string(value)
    return _parse_size(text, _DECIMAL, 10**9)
