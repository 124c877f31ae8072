"""The agent sockets' wire: uvicorn's sans-I/O WebSocket protocol, plus a direct frame writer.

Through ASGI every frame is one ``send`` coroutine, one websockets ``Frame`` object and one
``transport.write`` (one ``send`` syscall). The hub writes many frames per loop pass, so
:class:`BridgeWebSocketProtocol` hands the endpoint itself (``scope["extensions"][WIRE]``) to
write ready-made frames in batches, to learn when the socket's buffer is full, and to close
without waiting for a peer that does not read. Everything else (handshake, reading, pings,
the closing handshake) is uvicorn's, unchanged.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

__all__ = ("WIRE", "BridgeWebSocketProtocol", "Listener", "Wire", "text_frame")

WIRE = "aibridge.wire"
"""The scope extension under which the protocol offers itself to the endpoint."""

_H7 = struct.Struct("!BB")
_H16 = struct.Struct("!BBH")
_H64 = struct.Struct("!BBQ")
_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed server text frame (RFC 6455 §5.2) carrying ``payload``.

    Built once per envelope: a broadcast to ten agents writes the same bytes ten times.
    """
    size = len(payload)
    if size < 126:
        return _H7.pack(_FIN_TEXT, size) + payload
    if size < 65536:
        return _H16.pack(_FIN_TEXT, 126, size) + payload
    return _H64.pack(_FIN_TEXT, 127, size) + payload


class Listener(Protocol):
    """What the connection on top hears from its wire."""

    def on_writable(self) -> None: ...
    def on_lost(self) -> None: ...


class Wire(Protocol):
    """What a connection writes through (the protocol below, or a test's stand-in)."""

    listener: Listener | None

    def writable_now(self) -> bool: ...
    def write_frames(self, data: bytes) -> bool: ...
    def buffered(self) -> int: ...
    def close_now(self, code: int, reason: str) -> None: ...


class BridgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol that also serves as the hub's frame writer.

    Needs ``ws_per_message_deflate=False`` (frames are written uncompressed).
    """

    listener: Listener | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # a 101: the app runs soon, with this scope
            scope["extensions"][WIRE] = self

    def writable_now(self) -> bool:
        """False while the transport's buffer is over its high-water mark (the peer is behind)."""
        return self.writable.is_set()

    def is_open(self) -> bool:
        return not (self.close_sent or self.disconnected) and self.conn.state is State.OPEN

    def write_frames(self, data: bytes) -> bool:
        """Hand ready-made frames to the transport (never blocks); False once the socket is closing."""
        if not self.is_open() or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def buffered(self) -> int:
        """Bytes the transport holds that the peer has not taken yet."""
        return int(self.transport.get_write_buffer_size())

    def close_now(self, code: int, reason: str) -> None:
        """Send a close frame now, even while paused; give up on the peer after ``close_timeout``.

        uvicorn's own ``websocket.close`` first waits until the socket is writable again, which
        a peer that stopped reading never lets happen (fault 11.2: no 1013 was ever sent).
        """
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._give_up)

    def _give_up(self) -> None:
        # close() would wait to flush a buffer the peer never takes; abort() lets go of it.
        self.close_timer = None
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.listener is not None:
            self.listener.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.on_lost()
