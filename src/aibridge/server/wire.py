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

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships its C speedups on every platform we run
    from websockets.utils import apply_mask

__all__ = ("WIRE", "BridgeWebSocketProtocol", "Listener", "Wire", "split_text_frames", "text_frame")

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


def split_text_frames(data: bytes) -> list[bytes]:
    """The payloads of the :func:`text_frame` frames in ``data`` (for in-process wires)."""
    payloads = []
    while data:
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4]), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10]), 10
        payloads.append(data[start : start + size])
        data = data[start + size :]
    return payloads


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
    _rest = b""
    _fast = True

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # a 101: the app runs soon, with this scope
            scope["extensions"][WIRE] = self

    # -- reading: whole unfragmented data frames parsed here, everything else by websockets --------

    def data_received(self, data: bytes) -> None:
        """Parse complete, unfragmented, masked data frames here; hand anything else to websockets.

        websockets' parser is a generator stepped per byte range, a Frame object and an event per
        frame: at 20,000 frames/s that was a sixth of the server's CPU. Control frames (ping,
        pong, close) are handed over whole, so its parser always sees frame boundaries; a
        fragment, a reserved bit, an unmasked or an oversized frame (1009) switches this socket
        to websockets for good, which then answers as uvicorn always did.
        """
        if not self._reading_fast():
            if self._rest:  # a frame we had started on: websockets gets it whole
                data, self._rest = self._rest + data, b""
            super().data_received(data)
            return
        buf = self._rest + data if self._rest else data
        self._rest = b""
        pos, end = 0, len(buf)
        max_size = self.config.ws_max_size
        queued = False
        while end - pos >= 6:
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, pos + 2
            if length == 126:
                length, head = int.from_bytes(buf[pos + 2 : pos + 4]), pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10]), pos + 10
            opcode = first & 0x0F
            if first & 0x70 or not second & 0x80 or not first & 0x80 or opcode not in (1, 2, 8, 9, 10):
                self._fall_back(buf[pos:])
                break
            if length > max_size:
                self._fall_back(buf[pos:])
                break
            stop = head + 4 + length
            if stop > end:
                break
            if opcode >= 8:  # ping, pong, close: websockets' bookkeeping and replies
                super().data_received(buf[pos:stop])
                pos = stop
                if not self._reading_fast():
                    if pos < end:
                        super().data_received(buf[pos:])
                    return
                continue
            payload = apply_mask(buf[head + 4 : stop], buf[head : head + 4])
            if opcode == 1:
                try:
                    message: Any = {"type": "websocket.receive", "text": payload.decode()}
                except UnicodeDecodeError:
                    self._fall_back(buf[pos:])  # uvicorn closes it with 1007
                    break
            else:
                message = {"type": "websocket.receive", "bytes": payload}
            pos = stop
            if not self.close_sent:
                self.queue.put_nowait(message)
                queued = True
        if self._fast:
            self._rest = buf[pos:]  # the start of a frame still on its way
        if queued and not self.read_paused:
            self.read_paused = True  # as uvicorn does: resumed once the app has read the queue
            self.transport.pause_reading()

    def _reading_fast(self) -> bool:
        conn = self.conn
        return (
            self._fast
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and conn.state is State.OPEN
            and not conn.reader.buffer  # websockets holds no partial frame: we are at a boundary
        )

    def _fall_back(self, data: bytes) -> None:
        self._fast = False
        self._rest = b""
        super().data_received(data)

    # -- writing ---------------------------------------------------------------------------------

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
