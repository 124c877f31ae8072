"""A small async client for agents on an aibridge (or the older Node bridge's protocol).

    async with BridgeClient("ws://127.0.0.1:8080/ws", "alice", token=...) as agent:
        await agent.send("bob", {"text": "hello"})
        async for envelope in agent:
            print(envelope["payload"])

It registers on connect, sends heartbeats, and reconnects with exponential backoff when the
connection drops (re-registering the same id, so queued envelopes are replayed). It stops for
good when the bridge says the token is wrong (1008) or that a newer connection took the id (4409).

No delivery is lost on the client side: envelopes that arrive before ``registered`` (the older
bridge replays queues first, as ``["env", envelope]``) or in the same read as it are queued for
:meth:`BridgeClient.receive` like any other, however late the caller starts reading.

Payloads follow one rule, here and in ``aibridge send``: an object or array is the payload
itself, ``None`` is ``{}``, and anything else is sent as ``{"text": <its text>}`` (see
:func:`payload_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from aibridge.client_wire import (
    NO_TOKEN,
    TOKEN_REFUSED,
    BridgeAuthError,
    BridgeClosedError,
    BridgeRefusedError,
    check_url,
    cli_payload,
    closed_reason,
    decode,
    delivery,
    error_of,
    payload_of,
)
from aibridge.errors import AibridgeError, TargetUnreachableError, UsageError

__all__ = (
    "NO_TOKEN",
    "TOKEN_REFUSED",
    "BridgeAuthError",
    "BridgeClient",
    "BridgeClosedError",
    "BridgeRefusedError",
    "check_url",
    "listen",
    "payload_of",
    "send_once",
)

FINAL_CLOSE_CODES = {1008: TOKEN_REFUSED, 4409: "a newer connection registered this id"}

Reconnecting = Callable[[int, float, str], None]
"""``on_reconnect(attempt, delay_s, reason)``: called before each reconnect attempt waits."""


class BridgeClient:
    """One agent's connection to a bridge."""

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        *,
        token: str | None = None,
        role: str = "agent",
        ack: bool = False,
        confirm: bool = False,
        reconnect: bool = True,
        heartbeat_s: float = 30.0,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        register_fields: dict[str, Any] | None = None,
        on_reconnect: Reconnecting | None = None,
    ) -> None:
        self.url = check_url(url)
        self.client_id = client_id
        self.token = token
        self.role = role
        self.ack_mode = ack
        self.confirm = confirm
        self.reconnect = reconnect
        self.heartbeat_s = heartbeat_s
        self.backoff_s = backoff_s
        self.register_fields = register_fields or {}
        self.on_reconnect = on_reconnect
        self.registered: dict[str, Any] | None = None
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None
        self._deliveries: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._confirms: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> dict[str, Any]:
        """Connect and register; return the ``registered`` frame's client meta."""
        ws = await self._open(timeout)
        self._runner = asyncio.create_task(self._run(ws))
        assert self.registered is not None
        return self.registered

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def __aenter__(self) -> BridgeClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Registered on an open socket right now (False while reconnecting or once closed)."""
        return self._ready.is_set() and not self._closing

    async def _open(self, timeout: float) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = await asyncio.wait_for(
                websockets.connect(self.url, additional_headers=headers, compression=None, max_size=None),
                timeout,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise BridgeAuthError(self.url, TOKEN_REFUSED if self.token else NO_TOKEN) from None
            said = error_of(exc.response.body)
            raise UsageError(
                f"{self.url} refused the connection: HTTP {status}" + (f" ({said})" if said else "")
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise TargetUnreachableError(f"cannot connect to {self.url}: {exc}") from None
        frame: dict[str, Any] = {"type": "register", "role": self.role, **self.register_fields}
        if self.client_id:
            frame["clientId"] = self.client_id
        if self.ack_mode:
            frame["ack"] = True
        if self.confirm:
            frame["confirm"] = True
        await ws.send(json.dumps(frame))
        while True:
            try:
                reply = decode(await asyncio.wait_for(ws.recv(), timeout))
            except (ConnectionClosed, TimeoutError) as exc:
                await ws.close()
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                if code == 1008:
                    raise BridgeAuthError(self.url, TOKEN_REFUSED if self.token else NO_TOKEN) from None
                raise UsageError(
                    f"{self.url} did not register us: {FINAL_CLOSE_CODES.get(code or 0, exc)}"
                ) from None
            if reply is None:
                continue
            delivered = delivery(reply)
            if delivered is not None:  # the older bridge replays before `registered`: keep it
                self._deliveries.put_nowait(delivered)
                continue
            if reply.get("type") == "registered":
                self.registered = reply["client"]
                self.client_id = reply["client"]["id"]
                self._ws = ws
                self._ready.set()
                return ws
            if reply.get("type") == "error":
                await ws.close()
                if reply.get("error") == "unauthorized":
                    raise BridgeAuthError(self.url, TOKEN_REFUSED if self.token else NO_TOKEN, reply)
                raise BridgeRefusedError(reply)

    async def _run(self, ws: ClientConnection | None) -> None:
        while ws is not None:
            beat = asyncio.create_task(self._heartbeat(ws))
            try:
                await self._read(ws)
            finally:
                beat.cancel()
            self._ready.clear()
            self.close_code = ws.close_code
            if self._closing or not self.reconnect or ws.close_code in FINAL_CLOSE_CODES:
                break
            ws = await self._reconnect(closed_reason(ws))
        self._deliveries.put_nowait(None)

    async def _reconnect(self, reason: str) -> ClientConnection | None:
        """Reopen with exponential backoff and jitter; None once the client is closing."""
        delay = self.backoff_s[0]
        attempt = 0
        while not self._closing:
            attempt += 1
            wait = delay * (0.5 + random.random())
            if self.on_reconnect is not None:
                self.on_reconnect(attempt, wait, reason)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_s[1])
            try:
                return await self._open(timeout=10.0)
            except AibridgeError as error:
                reason = error.detail
        return None

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = decode(raw)
                if frame is None:
                    continue
                delivered = delivery(frame)
                kind = frame.get("type")
                if delivered is not None:
                    self._deliveries.put_nowait(delivered)
                elif kind == "accepted":
                    self._confirms.put_nowait(frame)
                elif kind == "error":
                    self.errors.put_nowait(frame)
                    if self.confirm and "error" in frame:
                        self._confirms.put_nowait(frame)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                await ws.send('{"type":"heartbeat"}')

    # -- sending ------------------------------------------------------------------------------

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        if self._closing:
            raise BridgeClosedError("the client is closed")
        await asyncio.wait_for(self._ready.wait(), 30)
        assert self._ws is not None
        await self._ws.send(json.dumps(frame))

    async def send(self, to: str | None, payload: Any = None, **fields: Any) -> str:
        """Send an envelope (``to=None`` broadcasts); return its id.

        With ``confirm=True`` this waits for the bridge's ``accepted`` frame (the envelope is
        stored) and raises :class:`BridgeRefusedError` if it refused the envelope instead.
        """
        envelope: dict[str, Any] = {"payload": payload_of(payload), **fields}
        if to is not None:
            envelope["to"] = to
        envelope.setdefault("id", str(uuid.uuid4()))
        await self._send_frame({"type": "envelope", "envelope": envelope})
        if self.confirm:
            reply = await asyncio.wait_for(self._confirms.get(), 30)
            if reply.get("type") == "error":
                raise BridgeRefusedError(reply)
        return str(envelope["id"])

    async def send_confirmed(self, to: str | None, payload: Any = None, **fields: Any) -> tuple[str, str]:
        """:meth:`send` on a ``confirm=True`` client, returning ``(id, status)`` from ``accepted``.

        ``status`` is ``delivered`` (on the recipient's socket) or ``queued`` (kept for it).
        """
        if not self.confirm:
            raise UsageError("send_confirmed needs a client created with confirm=True")
        envelope: dict[str, Any] = {"payload": {} if payload is None else payload, **fields}
        if to is not None:
            envelope["to"] = to
        envelope.setdefault("id", str(uuid.uuid4()))
        await self._send_frame({"type": "envelope", "envelope": envelope})
        reply = await asyncio.wait_for(self._confirms.get(), 30)
        if reply.get("type") == "error":
            raise BridgeRefusedError(reply)
        return str(envelope["id"]), str(reply.get("status", "queued"))

    async def broadcast(self, payload: Any = None, **fields: Any) -> str:
        """Send an envelope to every other agent (``payload`` as in :meth:`send`); return its id."""
        return await self.send(None, payload, **fields)

    async def ack(self, *envelope_ids: str) -> None:
        """Acknowledge deliveries (only meaningful for clients created with ``ack=True``)."""
        await self._send_frame({"type": "ack", "ids": list(envelope_ids)})

    async def heartbeat(self) -> None:
        await self._send_frame({"type": "heartbeat"})

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next delivered envelope; :class:`BridgeClosedError` once the client has stopped."""
        envelope = await asyncio.wait_for(self._deliveries.get(), timeout)
        if envelope is None:
            self._deliveries.put_nowait(None)
            raise BridgeClosedError(f"connection to {self.url} closed (code {self.close_code})")
        return envelope

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.receive()
            except BridgeClosedError:
                return


async def send_once(
    url: str,
    message: str,
    *,
    to: str | None = None,
    client_id: str | None = None,
    token: str | None = None,
    intent: str | None = None,
    task_id: str | None = None,
) -> str:
    """Connect, send one envelope (broadcast when ``to`` is None), wait until it is stored, return its id."""
    fields: dict[str, Any] = {}
    if intent:
        fields["intent"] = intent
    if task_id:
        fields["taskId"] = task_id
    client = BridgeClient(url, client_id, token=token, confirm=True, reconnect=False)
    async with client:
        return await client.send(to, cli_payload(message), **fields)


async def listen(
    url: str,
    client_id: str | None,
    on_envelope: Callable[[dict[str, Any]], None],
    *,
    token: str | None = None,
    ack: bool = False,
    count: int | None = None,
    on_reconnect: Reconnecting | None = None,
) -> int:
    """Receive envelopes (acking each when ``ack``) until ``count`` arrived or the bridge ends it."""
    received = 0
    async with BridgeClient(url, client_id, token=token, ack=ack, on_reconnect=on_reconnect) as client:
        async for envelope in client:
            on_envelope(envelope)
            if ack:
                await client.ack(envelope["id"])
            received += 1
            if count is not None and received >= count:
                break
    return received
