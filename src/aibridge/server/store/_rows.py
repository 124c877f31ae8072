"""Reading stored rows back: nothing a row holds may make a read route fail (issue 11, item 3).

A row can be hostile without anyone sending it through the bridge: written by an older
version without the depth limit, edited by hand, or damaged. Every store decodes bodies with
:func:`envelope_of`, which turns any such row into ``None`` (the caller skips it, and one
warning names it) instead of an exception or a response the encoder cannot write.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from aibridge.server.jsondepth import READ_MAX_DEPTH, depth_exceeds
from aibridge.server.store.base import Envelope

__all__ = ("envelope_of", "json_of")

log = logging.getLogger("aibridge.store")
_decode = msgspec.json.Decoder().decode


def json_of(body: Any, where: str) -> Any:
    """The decoded JSON of a stored ``body``, or ``None`` (logged) when it cannot be served."""
    if not isinstance(body, str | bytes | bytearray | memoryview):
        log.warning("skipping unreadable %s: not JSON text (%s)", where, type(body).__name__)
        return None
    raw = bytes(body) if isinstance(body, bytearray | memoryview) else body
    try:
        value = _decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        log.warning("skipping unreadable %s: %s", where, str(exc)[:120])
        return None
    if depth_exceeds(raw, value, READ_MAX_DEPTH):
        log.warning("skipping unreadable %s: JSON nested deeper than %d", where, READ_MAX_DEPTH)
        return None
    return value


def envelope_of(body: Any, where: str) -> Envelope | None:
    """The stored envelope, or ``None`` (logged) unless it is an object with a string ``id``."""
    value = json_of(body, where)
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        log.warning("skipping unreadable %s: not an envelope object with a string id", where)
        return None
    return value
