"""How deeply JSON nests: the guard against payloads that break encoders (issue 11, item 3).

msgspec (like any recursive encoder) fails on JSON nested about a thousand deep, and decoding
fails a little deeper. A document is therefore checked against AI_BRIDGE_MAX_JSON_DEPTH before
anything is stored, and every stored row is checked again when it is read (:data:`READ_MAX_DEPTH`).

The check is cheap for ordinary documents: a document with fewer brackets than the limit
cannot nest deeper than it (``bytes.count`` runs in C), so only bracket-heavy documents are
walked, iteratively (a recursive walk would fail exactly where the encoder does).
"""

from __future__ import annotations

from typing import Any

__all__ = ("READ_MAX_DEPTH", "depth_exceeds")

READ_MAX_DEPTH = 256
"""Deepest stored document a read route returns: the upper bound of AI_BRIDGE_MAX_JSON_DEPTH,
and far from the encoder's recursion limit even inside a response that nests it twice more."""


def _brackets(raw: str | bytes) -> int:
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[")
    return raw.count(b"{") + raw.count(b"[")


def depth_exceeds(raw: str | bytes, value: Any, limit: int) -> bool:
    """Whether ``value`` (decoded from ``raw``) nests containers more than ``limit`` deep.

    The top-level object or array is depth 1; scalars add nothing.
    """
    brackets = _brackets(raw)
    if brackets <= limit or not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list) and child:
                stack.append((child, depth + 1))
            elif isinstance(child, dict | list) and depth + 1 > limit:
                return True
    return False
