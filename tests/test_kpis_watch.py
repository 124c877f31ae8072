"""``check-kpis --watch`` in a real terminal: Ctrl-C leaves the screen of the run the exit code is.

Issue 14 item 11. The command runs as a subprocess on a pseudo-terminal (on a pipe Rich's Live draws
nothing until it stops, so there would be no screens to watch), against the real test app whose
health the test flips at run time.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from kpi_app import KpiApp, run_kpi_app

MiB = 1 << 20
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SUMMARY = re.compile(r"→ exit (\d)\s*$", re.MULTILINE)


@pytest.fixture
def app() -> Iterator[KpiApp]:
    with run_kpi_app("--memory-limit", str(512 * MiB)) as running:
        yield running


def _child_setup() -> None:
    # Tests may run with SIGINT ignored; the command must take Ctrl-C as a user's shell delivers it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """The master side of a pty the child draws on, split into the screens (frames) Live drew."""

    def __init__(self, master: int) -> None:
        self.master, self.raw, self.closed = master, b"", False

    def read(self, timeout: float) -> None:
        if self.closed or not select.select([self.master], [], [], timeout)[0]:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child is gone and the slave side closed
            chunk = b""
        self.closed = not chunk
        self.raw += chunk

    def frames(self) -> list[str]:
        """Every fully drawn screen, oldest first (each starts at the table's title)."""
        text = _ESCAPE.sub("", self.raw.decode(errors="replace")).replace("\r", "")
        return ["KPIs of" + f.rstrip() for f in text.split("KPIs of")[1:] if _SUMMARY.search(f)]

    def wait_for(self, seen: int, wanted: Callable[[str], bool], what: str) -> int:
        """Read until a screen after the first ``seen`` ones is ``wanted``; the count up to it."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.closed:
            frames = self.frames()
            for index in range(seen, len(frames)):
                if wanted(frames[index]):
                    return index + 1
            self.read(0.2)
        raise AssertionError(f"no screen {what} within 60 s:\n{self.frames()[-1:]}")

    def drain(self) -> None:
        deadline = time.monotonic() + 60
        while not self.closed and time.monotonic() < deadline:
            self.read(0.5)


def exit_shown(frame: str) -> int:
    return int(_SUMMARY.findall(frame)[-1])


def judged(frame: str) -> bool:
    return "(running…)" not in frame.splitlines()[0]


def uptime_verdict(frame: str) -> str:
    row = next(line for line in frame.splitlines() if line.startswith("│ uptime "))
    return row.split("│")[4].strip()


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [(200, 503, 1), (503, 200, 0)],
    ids=["pass-then-fail", "fail-then-pass"],
)
def test_watch_ctrl_c_leaves_the_screen_of_the_run_it_exits_with(
    app: KpiApp, first: int, then: int, expected: int
) -> None:
    app.control(health_status=first)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 80, 220, 0, 0))
    command = [sys.executable, "-m", "aibridge", "check-kpis", app.url, "--metrics-url", app.metrics_url]
    command += ["--watch", "--window", "1s", "--interval", "0.25s"]
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "220", "LINES": "80"}
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=_child_setup
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        start = {200: "pass", 503: "fail"}[first]
        seen = terminal.wait_for(
            0, lambda f: judged(f) and uptime_verdict(f) == start, f"judging uptime {start}"
        )
        app.control(health_status=then)
        verdict = {200: "pass", 503: "fail"}[then]
        # The target stays as flipped, so once a run is judged so, every later one is too.
        seen = terminal.wait_for(
            seen,
            lambda f: judged(f) and uptime_verdict(f) == verdict and exit_shown(f) == expected,
            f"judging uptime {verdict}, exit {expected}",
        )
        # Ctrl-C lands in the middle of the next window, whose screens say "running…".
        terminal.wait_for(seen, lambda f: not judged(f), "of the next run")
        process.send_signal(signal.SIGINT)
        terminal.drain()  # a child blocked writing to a full pty could not exit
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(master)
    frames = terminal.frames()
    last = frames[-1]
    assert "Traceback" not in _ESCAPE.sub("", terminal.raw.decode(errors="replace"))
    assert judged(last), last  # not the half-measured window Ctrl-C cut short
    assert process.returncode == exit_shown(last) == expected, last
    assert uptime_verdict(last) == verdict
    # The same table the run showed when it finished, not one recomputed from other data.
    assert last == [f for f in frames[:-1] if judged(f)][-1]
