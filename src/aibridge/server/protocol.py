"""The agent protocol: decoding frames, validating them, and enriching envelopes.

Frames are JSON text objects tagged by ``type`` (protocol ``aibridge/1``). Envelopes get the
defaults of the older bridge (bridge.md §2). Fields the bridge does not know are **carried**
unchanged after the known ones (the older bridge dropped them silently, fault B17); known
fields are type-checked, and every problem raises :class:`ProtocolError` whose frame names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from aibridge.server.jsondepth import depth_exceeds
from aibridge.server.stamps import new_id, now_iso

__all__ = (
    "PROTOCOL",
    "Envelope",
    "ProtocolError",
    "Registration",
    "build_envelope",
    "decode_frame",
    "decode_json",
    "delivery_frame",
    "encode",
    "new_id",
    "now_iso",
    "parse_registration",
)

PROTOCOL = "aibridge/1"
MAX_ID_CHARS = 256
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_META_BYTES = 16 * 1024
_ID_TEXT = f"a non-empty string of at most {MAX_ID_CHARS} characters"

Envelope = dict[str, Any]

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_DELIVERY_HEAD = '{"type":"envelope","envelope":'


class ProtocolError(Exception):
    """A frame or envelope the bridge refuses; ``code`` is machine-readable, ``message`` for people."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def frame(self) -> dict[str, Any]:
        """The ``error`` frame sent back to the client."""
        return {"type": "error", "error": self.code, "message": self.message, **self.details}


def encode(value: Any) -> str:
    """Compact JSON text of ``value``."""
    return _encoder.encode(value).decode()


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


def decode_json(data: str | bytes, max_depth: int) -> Any:
    """Decode JSON text nested at most ``max_depth`` deep; ``invalid_json`` otherwise.

    Checked before anything is stored: deeper documents break the encoder later, when the
    envelope is already committed and queued, and every read that returns it (issue 11).
    """
    too_deep = f"is nested deeper than {max_depth} levels (AI_BRIDGE_MAX_JSON_DEPTH={max_depth})"
    try:
        value = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError("invalid_json", f"is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec gives up at about a thousand levels
        raise ProtocolError("invalid_json", too_deep, limit=max_depth) from None
    if depth_exceeds(data, value, max_depth):
        raise ProtocolError("invalid_json", too_deep, limit=max_depth)
    return value


def decode_frame(data: str | bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse one client frame: a JSON object with a string ``type``, nested at most ``max_depth``."""
    try:
        frame = decode_json(data, max_depth)
    except ProtocolError as error:
        raise ProtocolError(error.code, f"frame {error.message}", **error.details) from None
    if not isinstance(frame, dict):
        raise ProtocolError(
            "invalid_frame", f"frame must be a JSON object with a string `type`, got {_describe(frame)}"
        )
    if not isinstance(frame.get("type"), str):
        raise ProtocolError(
            "invalid_frame", "frame needs a string `type`: register, heartbeat, envelope or ack"
        )
    return frame


def _field_error(where: str, name: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(
        "invalid_field", f"{where}.{name} must be {expected}, got {_describe(value)}", field=name
    )


def _text(raw: dict[str, Any], name: str, where: str, default: str | None) -> Any:
    value = raw.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise _field_error(where, name, "a string", value)
    return value


def _container(
    raw: dict[str, Any],
    name: str,
    kind: type[dict[str, Any]] | type[list[Any]],
    where: str,
    max_items: int | None = None,
) -> Any:
    value = raw.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise _field_error(where, name, "an object" if kind is dict else "an array", value)
    if max_items is not None and len(value) > max_items:
        raise ProtocolError(
            "invalid_field", f"{where}.{name} has {len(value)} items, at most {max_items} allowed", field=name
        )
    return value


_TEXT, _RECIPIENT, _OBJECT, _ARRAY, _ANY = range(5)
_FIELDS = {
    **dict.fromkeys(("id", "timestamp", "intent", "taskId", "channel", "priority", "from", "role"), _TEXT),
    **dict.fromkeys(("to", "replyTo"), _RECIPIENT),
    **dict.fromkeys(("context", "trace"), _OBJECT),
    **dict.fromkeys(("tools", "attachments"), _ARRAY),
    "payload": _ANY,
}
"""Every known envelope field and what it must be."""


def build_envelope(
    raw: Any, *, sender: str, role: str, max_bytes: int, trust_from: bool = False
) -> tuple[Envelope, str]:
    """Validate and enrich ``raw``; return the envelope and its JSON text.

    ``sender`` is stamped as ``from`` (the registered id on WebSocket) unless ``trust_from``
    (the HTTP API, whose callers are not agents) lets the body name it. A known field that
    is null (or an empty string, for text) takes its default.
    """
    if not isinstance(raw, dict):
        raise ProtocolError(
            "invalid_field", f"`envelope` must be an object, got {_describe(raw)}", field="envelope"
        )
    # The defaults, then one pass over the fields the sender gave (usually a few) instead of
    # a lookup per known field: this runs for every envelope.
    envelope: Envelope = {
        "id": None,
        "timestamp": None,
        "intent": "agent.message",
        "taskId": None,
        "channel": "default",
        "priority": "normal",
        "from": sender,
        "role": role,
        "to": None,
        "replyTo": None,
        "context": None,
        "payload": None,
        "trace": None,
        "tools": None,
        "attachments": None,
    }
    extra: dict[str, Any] | None = None
    for name, value in raw.items():
        kind = _FIELDS.get(name)
        if kind is None:
            if extra is None:
                extra = {}
            extra[name] = value
        elif value is None:
            continue
        elif kind == _TEXT:
            if value == "" or (name == "from" and not trust_from):
                continue  # the default; or the sender's id, whatever the envelope claims
            if not isinstance(value, str):
                raise _field_error("envelope", name, "a string", value)
            envelope[name] = value
        elif kind == _RECIPIENT:
            if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
                raise _field_error("envelope", name, _ID_TEXT, value)
            envelope[name] = value
        elif kind == _OBJECT and not isinstance(value, dict):
            raise _field_error("envelope", name, "an object", value)
        elif kind == _ARRAY and not isinstance(value, list):
            raise _field_error("envelope", name, "an array", value)
        else:
            envelope[name] = value
    envelope_id = envelope["id"]
    if envelope_id is None:
        envelope["id"] = new_id()
    elif len(envelope_id) > MAX_ID_CHARS:
        raise ProtocolError("invalid_field", f"envelope.id is longer than {MAX_ID_CHARS} chars", field="id")
    if envelope["timestamp"] is None:
        envelope["timestamp"] = now_iso()
    if envelope["payload"] is None:
        envelope["payload"] = {}
    if envelope["context"] is None:
        envelope["context"] = {}
    if envelope["trace"] is None:
        envelope["trace"] = {}
    if envelope["tools"] is None:
        envelope["tools"] = []
    if envelope["attachments"] is None:
        envelope["attachments"] = []
    if extra is not None:
        envelope.update(extra)
    try:
        text = encode(envelope)
    except RecursionError:  # only reachable by a caller that skipped decode_json's depth check
        raise ProtocolError("invalid_json", "envelope is nested too deeply to encode") from None
    if len(text) > max_bytes:
        raise ProtocolError(
            "too_large", f"envelope is {len(text)} bytes, at most {max_bytes} allowed", limit=max_bytes
        )
    return envelope, text


def delivery_frame(envelope_json: str) -> str:
    """The ``{"type":"envelope","envelope":…}`` frame every shipped client parses (fault B2)."""
    return _DELIVERY_HEAD + envelope_json + "}"


@dataclass(slots=True)
class Registration:
    """A validated ``register`` frame."""

    client_id: str | None
    role: str
    labels: list[Any]
    tools: list[Any]
    intents: list[Any]
    max_concurrent_tasks: int
    auth_token: str | None
    ack: bool
    confirm: bool


def _flag(frame: dict[str, Any], name: str) -> bool:
    value = frame.get(name, False)
    if not isinstance(value, bool):
        raise _field_error("register", name, "true or false", value)
    return value


def parse_registration(
    frame: dict[str, Any], max_items: int, max_meta_bytes: int = DEFAULT_MAX_META_BYTES
) -> Registration:
    """Validate a ``register`` frame (lists capped at ``max_items``, all three at ``max_meta_bytes``).

    The byte cap is what bounds an agent's memory: 64 tools of 420 tiny keys each fit any
    item cap, and held 4.7 MB per agent as Python objects (issue 11, item 5).
    """
    client_id = frame.get("clientId")
    if client_id is not None and (
        not isinstance(client_id, str) or not client_id or len(client_id) > MAX_ID_CHARS
    ):
        raise _field_error("register", "clientId", _ID_TEXT, client_id)
    tasks = frame.get("maxConcurrentTasks", 1)
    if tasks is None:
        tasks = 1
    if not isinstance(tasks, int) or isinstance(tasks, bool) or tasks < 0:
        raise _field_error("register", "maxConcurrentTasks", "an integer >= 0", tasks)
    token = frame.get("authToken")
    if token is not None and not isinstance(token, str):
        raise _field_error("register", "authToken", "a string", token)
    role = _text(frame, "role", "register", "agent")
    if len(role) > MAX_ID_CHARS:
        raise ProtocolError(
            "invalid_field", f"register.role is longer than {MAX_ID_CHARS} chars", field="role"
        )
    labels = _container(frame, "labels", list, "register", max_items)
    tools = _container(frame, "tools", list, "register", max_items)
    intents = _container(frame, "intents", list, "register", max_items)
    sizes = {"labels": len(_encoder.encode(labels)), "tools": len(_encoder.encode(tools))}
    sizes["intents"] = len(_encoder.encode(intents))
    if sum(sizes.values()) > max_meta_bytes:
        raise ProtocolError(
            "invalid_field",
            f"register labels, tools and intents are {sum(sizes.values())} bytes of JSON together,"
            f" at most {max_meta_bytes} allowed (AI_BRIDGE_MAX_META_BYTES)",
            field=max(sizes, key=sizes.__getitem__),
            limit=max_meta_bytes,
        )
    return Registration(
        client_id=client_id,
        role=role,
        labels=labels,
        tools=tools,
        intents=intents,
        max_concurrent_tasks=tasks,
        auth_token=token,
        ack=_flag(frame, "ack"),
        confirm=_flag(frame, "confirm"),
    )
