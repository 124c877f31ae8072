from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import BridgeProcess, run_bridge


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own AI_BRIDGE_* or Fly settings."""
    for name in list(os.environ):
        if name.startswith(("AI_BRIDGE_", "FLY_")) or name in {"PORT", "FLYCTL"}:
            monkeypatch.delenv(name)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeProcess]:
    """A real bridge server with default settings on a free loopback port."""
    with run_bridge(tmp_path) as process:
        yield process
