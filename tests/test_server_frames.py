"""Property tests of frame parsing: whatever a client sends, the only failure is a ProtocolError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.server.protocol import (
    ProtocolError,
    build_envelope,
    decode_frame,
    encode,
    parse_registration,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
envelope_keys = st.sampled_from(
    ["id", "to", "from", "intent", "taskId", "context", "payload", "tools", "replyTo", "message", "x"]
)
envelopes = st.dictionaries(envelope_keys, json_values, max_size=8)


@given(st.text(max_size=200) | json_values.map(json.dumps))
@settings(max_examples=400, deadline=None)
def test_any_text_decodes_to_a_frame_or_a_protocol_error(text: str) -> None:
    try:
        frame = decode_frame(text)
    except ProtocolError as error:
        assert error.frame()["type"] == "error"
        assert error.message
        return
    assert isinstance(frame["type"], str)


@given(envelopes | json_values)
@settings(max_examples=400, deadline=None)
def test_any_envelope_is_enriched_or_refused_with_a_named_problem(raw: Any) -> None:
    try:
        envelope, text = build_envelope(raw, sender="me", role="agent", max_bytes=4096)
    except ProtocolError as error:
        assert error.code in {"invalid_field", "too_large"}
        return
    assert json.loads(text) == envelope
    assert envelope["from"] == "me"  # never what the client claimed
    assert envelope["to"] is None or (isinstance(envelope["to"], str) and envelope["to"])
    for key in set(raw) - {"from"}:
        if raw[key] is not None and raw[key] != "":
            assert key in envelope  # unknown fields are carried, known ones kept
    encode(envelope)


@given(
    st.dictionaries(st.sampled_from(["clientId", "role", "labels", "ack", "maxConcurrentTasks"]), json_values)
)
@settings(max_examples=300, deadline=None)
def test_any_register_frame_is_parsed_or_refused(frame: dict[str, Any]) -> None:
    try:
        registration = parse_registration({"type": "register", **frame}, max_items=3)
    except ProtocolError as error:
        assert error.code == "invalid_field"
        assert error.details["field"] in frame
        return
    assert len(registration.labels) <= 3
    assert isinstance(registration.ack, bool)
