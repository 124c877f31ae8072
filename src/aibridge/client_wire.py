"""What :mod:`aibridge.client` says and parses: URL checks, the payload rule, frames of both bridges,
and its errors, with the one-line reasons they and the reconnect notices give."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from aibridge.errors import AibridgeError, UsageError

__all__ = (
    "CLOSE_REASONS",
    "NO_TOKEN",
    "TOKEN_REFUSED",
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeRefusedError",
    "check_url",
    "cli_payload",
    "closed_reason",
    "decode",
    "delivery",
    "error_of",
    "payload_of",
)

NO_TOKEN = "no token given (set --token or AI_BRIDGE_AUTH_TOKEN)"
TOKEN_REFUSED = "the bridge refused the token"
CLOSE_REASONS = {1001: "the bridge went away", 1012: "the bridge is restarting", 1013: "try again later"}


def check_url(url: str) -> str:
    """``url`` if it is a ws:// or wss:// URL with a host and a valid port, else :class:`UsageError`
    saying what is wrong with it (and what to write instead)."""
    example = "ws://127.0.0.1:8080/ws"
    if "://" not in url:
        hint = f"ws://{url.rstrip('/')}/ws" if url.strip() else example
        raise UsageError(f"{url!r} is not a WebSocket URL: it has no ws:// or wss:// scheme (e.g. {hint})")
    scheme, _, rest = url.partition("://")
    if scheme.lower() in ("http", "https"):
        path = "" if urlsplit(url).path not in ("", "/") else "/ws"
        hint = f"{'wss' if scheme.lower() == 'https' else 'ws'}://{rest.rstrip('/') if path else rest}{path}"
        raise UsageError(f"{url!r} is an HTTP URL: agents connect over WebSocket, use {hint}")
    try:
        port = urlsplit(url).port
        parse_uri(url)
    except ValueError:
        raise UsageError(f"{url!r} has a port out of range: use 1-65535 (e.g. {example})") from None
    except InvalidURI:
        if scheme.lower() not in ("ws", "wss"):
            raise UsageError(f"{url!r}: scheme {scheme!r} is not ws or wss (e.g. {example})") from None
        raise UsageError(f"{url!r} has no host (e.g. {example})") from None
    if port == 0:
        raise UsageError(f"{url!r} has port 0, which nothing listens on: use 1-65535 (e.g. {example})")
    return url


def payload_of(value: Any) -> Any:
    """The payload an envelope carries for ``value``: an object or array as it is, ``None`` as
    ``{}``, anything else as ``{"text": <its text>}`` (a str as is, other values as JSON text)."""
    if value is None:
        return {}
    if isinstance(value, dict | list):
        return value
    return {"text": value if isinstance(value, str) else json.dumps(value)}


def decode(raw: str | bytes) -> dict[str, Any] | None:
    """A frame as a dict; the older bridge's ``["env", envelope]`` as an envelope frame; else None."""
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    if isinstance(frame, list) and len(frame) == 2 and frame[0] == "env" and isinstance(frame[1], dict):
        return {"type": "envelope", "envelope": frame[1]}
    return frame if isinstance(frame, dict) else None


def delivery(frame: dict[str, Any]) -> dict[str, Any] | None:
    envelope = frame.get("envelope") if frame.get("type") == "envelope" else None
    return envelope if isinstance(envelope, dict) else None


def error_of(body: bytes | bytearray | None) -> str | None:
    """The ``error`` of a JSON refusal body, if there is one."""
    try:
        error = json.loads(body or b"").get("error")
    except (ValueError, AttributeError):
        return None
    return str(error)[:200] if error else None


def closed_reason(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is None or code == 1006:
        return "the connection dropped"
    return f"closed with {code}" + (f" ({CLOSE_REASONS[code]})" if code in CLOSE_REASONS else "")


def cli_payload(message: str) -> Any:
    """A command-line message: JSON object/array text is that value; any other text is ``payload_of``."""
    try:
        value = json.loads(message)
    except ValueError:
        return payload_of(message)
    return value if isinstance(value, dict | list) else payload_of(message)


class BridgeRefusedError(AibridgeError):
    """The bridge answered an ``error`` frame to something this client sent."""

    exit_code = 2

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('error')}: {frame.get('message', '')}".rstrip(": "))
        self.frame = frame


class BridgeAuthError(BridgeRefusedError, UsageError):
    """The bridge wants a token and got none, or refused the one given (:data:`NO_TOKEN`,
    :data:`TOKEN_REFUSED`). Also a :class:`UsageError`, what a refused token raised before."""

    def __init__(self, url: str, reason: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(frame or {"type": "error", "error": "unauthorized"})
        self.detail = f"{url}: {reason}"
        self.args = (self.detail,)
        self.reason = reason


class BridgeClosedError(AibridgeError):
    """The connection ended for good (closed by the client, or a final close code)."""

    exit_code = 2
