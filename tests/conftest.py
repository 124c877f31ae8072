from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtarget import LoadTarget, run_loadtarget
from support import BridgeProcess, run_bridge


def pytest_configure(config: pytest.Config) -> None:
    """Give every process the tests start the default SIGINT, however the run was started.

    Started with SIGINT ignored (``nohup make test &``, any background job of a script), each
    subprocess would inherit SIG_IGN across exec and shrug off the Ctrl-C a test sends it. A
    handler, unlike SIG_IGN, is reset to the default on exec, so installing Python's own here
    resets SIGINT in every child (and lets the tests that interrupt this process work too).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="module")
def loadtarget_server() -> Iterator[LoadTarget]:
    """The load tests' controllable ASGI server (tests/loadtarget.py), one per test module."""
    with run_loadtarget() as server:
        yield server


@pytest.fixture
def target(loadtarget_server: LoadTarget) -> LoadTarget:
    """That server with its counters reset, so each test counts only its own requests."""
    loadtarget_server.reset()
    return loadtarget_server
