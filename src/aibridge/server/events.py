"""The hub's two outward seams: what it reports to, and what joins it to other processes.

:class:`BridgeEvents` is an observer between the bridge and whatever counts what happens in
it (metrics). The hub and the WebSocket endpoint call it at the moments that matter; the
default :class:`NullEvents` does nothing, the metrics module implements it with
prometheus-client. Calls sit on the hot path, so implementations must be cheap and never raise.

:class:`Backplane` and :class:`RemoteMessage` are what the hub expects of a cross-process
transport (``backplane.RedisBackplane``); tests join in-process hubs with their own.
"""

from __future__ import annotations

from typing import Literal, Protocol

from aibridge.server.protocol import Envelope

__all__ = ("Backplane", "BridgeEvents", "EnvelopeOutcome", "NullEvents", "RemoteMessage")

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


class Backplane(Protocol):
    """Cross-process presence and delivery (``backplane.RedisBackplane`` implements it).

    The hub announces agents it holds and withdraws them when they leave (the backplane keeps
    presence fresh itself), asks where an absent recipient is, and publishes to the process
    holding it. What other processes publish comes back through :meth:`Hub.on_remote`, which
    the runner passes to the backplane's ``start``.
    """

    @property
    def healthy(self) -> bool: ...
    async def announce(self, agent_id: str) -> None: ...
    async def withdraw(self, agent_id: str) -> None: ...
    async def locate(self, agent_id: str) -> str | None: ...
    async def publish_direct(self, instance: str, envelope: Envelope) -> bool: ...
    async def publish_broadcast(self, envelope: Envelope, exclude_from: str | None) -> None: ...


class RemoteMessage(Protocol):
    """What a backplane hands the hub: ``direct``/``broadcast`` envelopes, or a ``claimed`` id."""

    @property
    def kind(self) -> str: ...
    @property
    def envelope(self) -> Envelope: ...
    @property
    def exclude_from(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
