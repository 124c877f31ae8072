"""Logging for the bridge: readable text or one JSON object per line, written off the event loop.

Every line goes through one queue to a writer thread that formats it and writes in batches (one
``write`` + ``flush`` per burst, not per line), so a slow stdout never stalls the event loop.
Ordinary ``logging`` records reach that queue through a ``QueueHandler``. Access and WebSocket
lines skip ``LogRecord`` (4 µs each to build) and enqueue a tuple; measured in
bench/obs_overhead.py, that is what keeps logging inside its 15 % budget on ``/health``.
Envelope payloads are never logged: callers pass ids, codes and counts, never frame contents;
the frame and handshake dumps the websockets library writes at debug are dropped; and at every
level the token (``?token=``, ``Bearer …``, ``"authToken"``, or the configured value anywhere in
a line) is written as ``***``.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

import msgspec

from aibridge.server.asgi import ASGIApp, Receive, Scope, Send, call_observed
from aibridge.server.limits import client_ip
from aibridge.server.metrics import UNMATCHED_ROUTE

if TYPE_CHECKING:
    from aibridge.server.config import BridgeConfig

__all__ = (
    "AccessLogMiddleware",
    "LogWriter",
    "configure_logging",
    "log_startup",
    "log_ws_connected",
    "log_ws_disconnected",
    "log_ws_registered",
)

Line = tuple[float, str, str, dict[str, Any]]
"""A fast-path line: (time, logger name, %-template over the fields, fields)."""

access_log = logging.getLogger("aibridge.access")
ws_log = logging.getLogger("aibridge.ws")
log = logging.getLogger("aibridge")

ACCESS = "%(method)s %(route)s %(status)d %(duration_ms).1fms client=%(client)s"
MAX_BACKLOG = 20_000
"""Lines queued beyond this (stdout stuck) are dropped and counted, not held in memory."""
_json = msgspec.json.Encoder(enc_hook=str).encode  # 5x json.dumps; any odd value becomes its str()
LINGER_S = 0.02
"""Pause after each write; lines reach stdout at most this much later."""
_STOP = object()
_SECRETS = re.compile(
    r"""(?P<lead>[?&]token=|\bbearer\s+|"authToken"\s*:\s*")(?P<secret>"""
    r"""(?<=")(?:[^"\\]|\\.)*|[^\s&"',;]+)""",
    re.IGNORECASE,
)


def redactor(token: str | None) -> Callable[[str], str]:
    """``line -> line`` with every token shown as ``***``: the configured one wherever it is,
    and any value after ``?token=``, ``Bearer`` or ``"authToken":`` (a wrong token given by a
    client may be someone's real one)."""

    # Bounded by characters a token cannot end on, so a short token ("tok") does not turn
    # "auth_token" into "auth_***en".
    exact = re.compile(rf"(?<![\w.~+/-]){re.escape(token)}(?![\w.~+/-])") if token else None

    def redact(line: str) -> str:
        if exact is not None and token and token in line:
            line = exact.sub("***", line)
        return _SECRETS.sub(r"\g<lead>***", line)

    return redact


class LogWriter(threading.Thread):
    """Formats queued records and fast-path lines and writes them to ``stream`` in batches."""

    def __init__(self, stream: IO[str], json_lines: bool, redact: Callable[[str], str] | None = None) -> None:
        super().__init__(name="aibridge-log-writer", daemon=True)
        self.stream = stream
        self.json_lines = json_lines
        self.redact = redact or redactor(None)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.dropped = 0
        self._second = -1
        self._stamp = ""

    def put(self, item: Any) -> None:
        if self.queue.qsize() < MAX_BACKLOG:
            self.queue.put(item)
        else:
            self.dropped += 1

    def stop(self, timeout: float = 2.0) -> None:
        """Write what is queued, then end the thread (idempotent)."""
        if self.is_alive():
            self.queue.put(_STOP)
            self.join(timeout)

    def run(self) -> None:
        get, get_nowait = self.queue.get, self.queue.get_nowait
        while True:
            batch = [get()]
            try:
                while len(batch) < 1000:
                    batch.append(get_nowait())
            except queue.Empty:
                pass
            lines = [self._safe_format(item) for item in batch if item is not _STOP]
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stdout closed: nowhere left to report it
                pass
            if batch[-1] is _STOP:
                return
            if len(batch) < 1000:
                # Let the next burst gather: a put() that finds this thread blocked in get() pays
                # a futex wake-up and a context switch, measured at ~5 µs per line on the loop.
                time.sleep(LINGER_S)

    def _safe_format(self, item: logging.LogRecord | Line) -> str:
        try:
            line = self._format(item)
        except Exception as exc:  # one bad record (e.g. a wrong %-template) must not end logging
            line = f"unformattable log record {item!r}: {exc!r}"
        # Fast-path lines are built here from ids and codes only; records come from anywhere
        # (uvicorn, websockets, tracebacks) and may quote a request line or a header.
        return line if type(item) is tuple else self.redact(line)

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def _format(self, item: logging.LogRecord | Line) -> str:
        fields: Mapping[str, Any] | None
        if isinstance(item, logging.LogRecord):
            created, name, level = item.created, item.name, item.levelname
            message = item.getMessage()
            fields = item.args if isinstance(item.args, Mapping) else getattr(item, "fields", None)
            error = logging.Formatter().formatException(item.exc_info) if item.exc_info else None
        else:
            created, name, template, fields = item
            level, message, error = "INFO", template % fields, None
        if not self.json_lines:
            line = f"{self._time(created)} {level} {name}: {message}"
            return f"{line}\n{error}" if error else line
        out: dict[str, Any] = {"time": self._time(created), "level": level.lower(), "logger": name}
        out["msg"] = message
        if fields:
            out.update(fields)
        if error:
            out["exc"] = error
        return _json(out).decode()


class _WriterHandler(logging.handlers.QueueHandler):
    """Hands records to the writer untouched (the stdlib version formats them on the caller's
    thread). ``logging.shutdown`` (atexit, or before ``os._exit``) closes it, flushing the queue."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(writer.queue)
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        self.writer.put(record)

    def close(self) -> None:
        self.writer.stop()
        super().close()


_UVICORN_WS_NOISE = frozenset(
    {
        "connection open",
        "connection closed",
        '%s - "WebSocket %s" [accepted]',  # our "WS connect" line says more
        "connection rejected (%d %s)",  # repeats the handshake line before it
        # websockets-sansio logs this at ERROR after every complete denial response (our 401/403/
        # 503 handshake refusals), https://github.com/Kludex/uvicorn/pull/3138; our endpoint
        # always accepts or refuses, so the line is never a real fault here.
        "ASGI callable returned without completing handshake.",
    }
)


_WEBSOCKETS_DUMPS = frozenset({"< ", "> "})
"""At debug the websockets library logs every frame and handshake header ("< TEXT '{...}'",
"< authorization: Bearer …") to the logger uvicorn gives it: payloads and tokens."""


class _UvicornWsLines(logging.Filter):
    """Keeps secrets and noise out of uvicorn's WebSocket lines.

    Its handshake lines log the path *with the query string*, where agents may carry
    ``?token=``: the query is cut. Lines that repeat ours, or are spurious, are dropped; the
    refused-handshake lines ('"WebSocket /ws" 401') stay, as the only trace of refusals.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _UVICORN_WS_NOISE:
            return False
        if isinstance(record.msg, str) and record.msg[:2] in _WEBSOCKETS_DUMPS:
            return False
        args = record.args
        handshake = isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"')
        if handshake and isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str):
            record.args = (args[0], args[1].partition("?")[0], *args[2:])
        return True


_writer: LogWriter | None = None
_trust_fly = False
"""AI_BRIDGE_TRUST_FLY_CLIENT_IP, for the ``client`` field of access and WebSocket lines."""


def configure_logging(config: BridgeConfig, stream: IO[str] | None = None) -> LogWriter:
    """Send every logger (aibridge, uvicorn, litestar) to one writer thread on ``stream`` (stdout).

    Call once at start-up and ``.stop()`` the result at exit. Run uvicorn with
    ``log_config=None, access_log=False`` and Litestar with ``logging_config=None`` so neither
    replaces this nor logs requests twice.
    """
    global _writer, _trust_fly
    if _writer is not None:
        _writer.stop()
    _trust_fly = config.trust_fly_client_ip
    redact = redactor(config.auth_token)
    _writer = writer = LogWriter(stream or sys.stdout, json_lines=config.log_format == "json", redact=redact)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(_WriterHandler(writer))
    root.setLevel(config.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    for name in ("uvicorn.error", "websockets"):
        named = logging.getLogger(name)
        if not any(isinstance(f, _UvicornWsLines) for f in named.filters):
            named.addFilter(_UvicornWsLines())
    writer.start()
    return writer


def _line(name: str, template: str, fields: dict[str, Any]) -> None:
    if _writer is not None:
        _writer.put((time.time(), name, template, fields))


def log_startup(config: BridgeConfig, version: str) -> None:
    """One line with the version and every effective setting, secrets redacted."""
    settings = config.redacted()
    shown = " ".join(f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in settings.items())
    log.info(
        "aibridge %s starting: %s", version, shown, extra={"fields": {"version": version, "config": settings}}
    )


def log_ws_connected(scope: Scope, agent_id: str | None = None) -> None:
    """Log an accepted WebSocket (never frame contents)."""
    if ws_log.isEnabledFor(logging.INFO):
        fields = {"event": "ws_connect", "agent": agent_id or "-", "client": client_ip(scope, _trust_fly)}
        _line("aibridge.ws", "WS connect agent=%(agent)s client=%(client)s", fields)


def log_ws_registered(agent_id: str, role: str, peer: str) -> None:
    """Log the agent id a WebSocket registered as (the connect line comes before it is known)."""
    if ws_log.isEnabledFor(logging.INFO):
        fields = {"event": "ws_register", "agent": agent_id, "role": role, "peer": peer}
        _line("aibridge.ws", "WS register agent=%(agent)s role=%(role)s peer=%(peer)s", fields)


def log_ws_disconnected(scope: Scope, agent_id: str | None, code: int | None, seconds: float) -> None:
    """Log a closed WebSocket with its close code and how long it lived."""
    if ws_log.isEnabledFor(logging.INFO):
        fields = {
            "event": "ws_disconnect",
            "agent": agent_id or "-",
            "client": client_ip(scope, _trust_fly),
            "code": code if code is not None else "-",
            "duration_s": round(seconds, 3),
        }
        template = "WS disconnect agent=%(agent)s client=%(client)s code=%(code)s after %(duration_s)ss"
        _line("aibridge.ws", template, fields)


class AccessLogMiddleware:
    """Pure ASGI middleware: one line per HTTP request (method, route template, status, ms, client).

    Wrap the whole app (outermost, like ``MetricsMiddleware``) so 404s, 429s and 503s are logged.
    Below INFO on ``aibridge.access`` it costs one cached level check per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = _writer
        if scope["type"] != "http" or writer is None or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return

        def done(status: int, seconds: float) -> None:
            fields = {
                "method": scope["method"],
                "route": scope.get("path_template") or UNMATCHED_ROUTE,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": client_ip(scope, _trust_fly),
            }
            writer.put((time.time(), "aibridge.access", ACCESS, fields))

        await call_observed(self.app, scope, receive, send, done)
