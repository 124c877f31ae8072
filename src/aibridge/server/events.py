"""A tiny observer seam between the bridge and whatever counts what happens in it (metrics).

The hub and the WebSocket endpoint call these methods at the moments that matter; the
default :class:`NullEvents` does nothing, the metrics module implements them with
prometheus-client. Calls sit on the hot path, so implementations must be cheap and never raise.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ("BridgeEvents", "EnvelopeOutcome", "NullEvents")

EnvelopeOutcome = Literal["delivered", "queued", "broadcast", "dropped", "rejected"]


class BridgeEvents(Protocol):
    def envelope(self, outcome: EnvelopeOutcome, count: int = 1) -> None:
        """``count`` envelopes had this outcome (``dropped`` = pushed out of a full queue)."""

    def ws_connected(self) -> None:
        """A WebSocket handshake was accepted."""

    def ws_disconnected(self) -> None:
        """An accepted WebSocket connection ended."""

    def error(self, kind: str) -> None:
        """Something went wrong: ``invalid_json``, ``invalid_frame``, ``auth``, ``oversize``, ``internal``…"""


class NullEvents:
    """The default observer: counts nothing."""

    def envelope(self, outcome: EnvelopeOutcome, count: int = 1) -> None:
        pass

    def ws_connected(self) -> None:
        pass

    def ws_disconnected(self) -> None:
        pass

    def error(self, kind: str) -> None:
        pass
