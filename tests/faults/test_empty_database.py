"""Item 7 of issue 11 (one bullet): a 0-byte ``aibridge.db`` no longer starts empty without a word."""

from __future__ import annotations

from pathlib import Path

import httpx

from support import run_bridge


def test_a_zero_byte_database_is_named_in_a_startup_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "aibridge.db").touch()
    with run_bridge(tmp_path, {"AI_BRIDGE_DATA_DIR": str(data)}) as bridge:
        reply = httpx.post(f"{bridge.url}/send", json={"to": "bob", "id": "after"})
        assert reply.status_code == 202  # it still serves, and what it takes now is kept
        log = bridge.log()
    warning = [line for line in log.splitlines() if "empty (0-byte)" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and str(data / "aibridge.db") in warning[0], log
    with run_bridge(tmp_path, {"AI_BRIDGE_DATA_DIR": str(data)}) as bridge:
        assert [e["id"] for e in httpx.get(f"{bridge.url}/history").json()["history"]] == ["after"]
        assert "empty (0-byte)" not in bridge.log()  # a database created by the bridge is not empty


def test_a_new_data_directory_starts_without_that_warning(tmp_path: Path) -> None:
    with run_bridge(tmp_path, {"AI_BRIDGE_DATA_DIR": str(tmp_path / "fresh")}) as bridge:
        assert httpx.get(f"{bridge.url}/health").status_code == 200
        assert "empty (0-byte)" not in bridge.log()
