"""What ``/schema`` says about the HTTP API, kept true to what the routes answer.

The routes read their bodies themselves (to answer our own JSON errors), so Litestar cannot see
a request body, and it would document its own ``detail``/``status_code`` errors where ours are
``error``/``status``. These are the bodies and statuses the routes really send, as Litestar
response specs and operation classes; ``tests/test_openapi_schemathesis.py`` holds the two
together by running schemathesis against the real server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.security_scheme import SecurityScheme

__all__ = (
    "BEARER",
    "COMPONENTS",
    "ErrorBody",
    "HealthBody",
    "HealthDraining",
    "broadcast_operation",
    "read_responses",
    "send_operation",
    "write_responses",
)

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
"""The security requirement of every route but ``/health`` and ``/`` (when a token is set)."""

COMPONENTS = Components(
    security_schemes={
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            description="AI_BRIDGE_AUTH_TOKEN, when the bridge has one (else every route is open).",
        )
    }
)


class ErrorBody(msgspec.Struct):
    """Every error the bridge answers: a message and the HTTP status; some add ``code`` etc."""

    error: str
    status: int


class HealthBody(msgspec.Struct):
    """``GET /health`` while serving."""

    status: Literal["ok", "degraded"]
    store: str
    """"ok", or "unavailable: …" while writes fail (status is then "degraded")."""
    timestamp: str
    uptime: int
    version: str
    port: int
    connectedClients: int
    historySize: int
    queuedMessages: int


class HealthDraining(msgspec.Struct):
    """``GET /health`` after SIGTERM: 503, so Fly's proxy stops routing here."""

    status: Literal["draining"]


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


_GUARDED = {
    401: _error("Missing or wrong `Authorization: Bearer` token (only when AI_BRIDGE_AUTH_TOKEN is set)"),
    403: _error("A browser Origin outside AI_BRIDGE_CORS_ORIGINS"),
    429: _error("Over AI_BRIDGE_RATE_MAX requests in the window; see Retry-After"),
    503: _error("At AI_BRIDGE_MAX_CONNECTIONS, or the store is unavailable; see Retry-After"),
}


def read_responses(*, bad_query: bool = False) -> dict[int, ResponseSpec]:
    """The error answers of a guarded GET route (``bad_query``: it takes query parameters)."""
    extra = {400: _error("A query parameter of the wrong type or out of range")} if bad_query else {}
    return {**extra, **_GUARDED}


def write_responses() -> dict[int, ResponseSpec]:
    """The error answers of ``POST /send`` and ``/broadcast``."""
    return {
        400: _error("The body is not a JSON object, or `to` is missing (send) or present (broadcast)"),
        413: _error("The body is over AI_BRIDGE_MAX_ENVELOPE_BYTES"),
        415: _error("Content-Type is not application/json"),
        422: _error("An envelope field of the wrong type, or the envelope too large; `code` names it"),
        **_GUARDED,
    }


def _nullable(kind: OpenAPIType, **constraints: int) -> Schema:
    # Every optional field may be null: the route reads null as "not given".
    return Schema(type=[kind, OpenAPIType.NULL], **constraints)  # type: ignore[arg-type]


_ID = Schema(type=OpenAPIType.STRING, min_length=1, max_length=256)


def _envelope_schema(*, to: bool) -> Schema:
    text = _nullable(OpenAPIType.STRING)
    properties: dict[str, Schema | Reference] = {
        "to": _ID if to else Schema(type=OpenAPIType.NULL),
        "id": _nullable(OpenAPIType.STRING, max_length=256),
        "from": text,
        "intent": text,
        "taskId": text,
        "channel": text,
        "priority": text,
        "role": text,
        "replyTo": Schema(one_of=[_ID, Schema(type=OpenAPIType.NULL)]),
        "timestamp": text,
        "context": _nullable(OpenAPIType.OBJECT),
        "trace": _nullable(OpenAPIType.OBJECT),
        "tools": _nullable(OpenAPIType.ARRAY),
        "attachments": _nullable(OpenAPIType.ARRAY),
        "payload": Schema(description="Anything JSON; carried as given."),
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,
        required=["to"] if to else None,
        description="Envelope fields; unknown fields are carried as given."
        + ("" if to else " A broadcast has no `to`."),
    )


def _operation(schema: Schema) -> type[Operation]:
    @dataclass
    class EnvelopeOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)}, required=True
            )

    return EnvelopeOperation


send_operation = _operation(_envelope_schema(to=True))
broadcast_operation = _operation(_envelope_schema(to=False))
