"""Logging for the bridge: readable text or one JSON object per line, off the event loop.

Records go through a queue to a listener thread that formats and writes them, so a slow stdout
(a log shipper applying back-pressure) never stalls the event loop. Access lines carry their
fields as a dict, formatted only in that thread. Envelope payloads are never logged: callers
pass ids and counts, never frame contents.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import IO, TYPE_CHECKING, Any

from aibridge.server.limits import client_ip
from aibridge.server.metrics import UNMATCHED_ROUTE

if TYPE_CHECKING:
    from aibridge.server.config import BridgeConfig

__all__ = (
    "AccessLogMiddleware",
    "JsonFormatter",
    "configure_logging",
    "log_startup",
    "log_ws_connected",
    "log_ws_disconnected",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("aibridge.access")
ws_log = logging.getLogger("aibridge.ws")
log = logging.getLogger("aibridge")

_ACCESS_FORMAT = "%(method)s %(route)s %(status)d %(duration_ms).1fms client=%(client)s"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, plus the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if isinstance(record.args, Mapping):
            line.update(record.args)
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _LoopSafeQueueHandler(logging.handlers.QueueHandler):
    """Enqueue the record untouched; the stdlib version formats it here, on the event loop."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(config: BridgeConfig, stream: IO[str] | None = None) -> logging.handlers.QueueListener:
    """Route every logger (aibridge, uvicorn, litestar) to one queue-fed handler on ``stream``.

    Call once at start-up; call ``.stop()`` on the result at exit to flush. Run uvicorn with
    ``log_config=None, access_log=False`` so it neither replaces this nor logs requests twice.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(_LoopSafeQueueHandler(records))
    root.setLevel(config.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # Not used by our formats; skipping them makes each record cheaper to create.
    logging.logMultiprocessing = False
    logging.logProcesses = False
    logging.logThreads = False
    listener.start()
    return listener


def _emit(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    # makeRecord + handle skips Logger._log's stack walk (findCaller), the costliest step.
    logger.handle(logger.makeRecord(logger.name, level, "", 0, msg, (fields,), None))


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
        fields = {"event": "ws_connect", "agent": agent_id or "-", "client": client_ip(scope)}
        _emit(ws_log, logging.INFO, "WS connect agent=%(agent)s client=%(client)s", fields)


def log_ws_disconnected(scope: Scope, agent_id: str | None, code: int | None, seconds: float) -> None:
    """Log a closed WebSocket with its close code and how long it lived."""
    if ws_log.isEnabledFor(logging.INFO):
        fields = {
            "event": "ws_disconnect",
            "agent": agent_id or "-",
            "client": client_ip(scope),
            "code": code if code is not None else "-",
            "duration_s": round(seconds, 3),
        }
        _emit(
            ws_log,
            logging.INFO,
            "WS disconnect agent=%(agent)s client=%(client)s code=%(code)s after %(duration_s)ss",
            fields,
        )


class AccessLogMiddleware:
    """Pure ASGI middleware: one line per HTTP request (method, route template, status, ms, client).

    Wrap the whole Litestar app (outermost, like ``MetricsMiddleware``) so 404s, 429s and 503s are
    logged. When ``aibridge.access`` is below INFO it costs one cached level check per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            fields = {
                "method": scope["method"],
                "route": scope.get("path_template") or UNMATCHED_ROUTE,
                "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "client": client_ip(scope),
            }
            _emit(access_log, logging.INFO, _ACCESS_FORMAT, fields)
