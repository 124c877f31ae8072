"""Values typed on the command line that several ops commands share."""

from __future__ import annotations

import re

from aibridge.errors import UsageError

__all__ = ("parse_duration",)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, what: str) -> float:
    """Seconds in "500ms", "30s", "10m", "24h", "30d", or a bare number of seconds.

    ``what`` names the option in the error, e.g. ``"-z/--duration"``.
    """
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{what}: {text!r} is not a duration (examples: 500ms, 30s, 10m, 24h, 30d)")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]
