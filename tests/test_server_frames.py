"""Property tests of frame parsing: whatever a client sends, the only failure is a ProtocolError."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import time
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.server.protocol import (
    ProtocolError,
    build_envelope,
    decode_frame,
    encode,
    new_id,
    now_iso,
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


def test_generated_ids_are_distinct_random_v4_uuids_across_pool_refills() -> None:
    ids = [new_id() for _ in range(5000)]  # about twenty refills of the randomness pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Random, not a counter: no two consecutive ids share their first 8 hex digits.
    assert not any(a[:8] == b[:8] for a, b in itertools.pairwise(ids))


def test_timestamps_are_iso_utc_milliseconds_that_never_go_back() -> None:
    stamps = [now_iso() for _ in range(20000)]
    for text in (stamps[0], stamps[-1]):
        parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        assert abs(parsed.timestamp() - time.time()) < 5
        assert len(text) == len("2025-10-14T12:00:00.000Z")
    assert stamps == sorted(stamps)


def test_generated_ids_do_not_come_from_the_random_module() -> None:
    # Python's `random` is predictable from its output; reseeding it must not repeat an id.
    random.seed(16)
    first = [new_id() for _ in range(300)]
    random.seed(16)
    again = [new_id() for _ in range(300)]
    assert not set(first) & set(again)
