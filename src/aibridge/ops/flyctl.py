"""Finding and running flyctl: argument lists only, output streamed live, exit codes mapped.

flyctl's exit codes (fly.md §3): 0 success, 1 any error (``Error: <msg>`` on stderr), 126 the
error wraps a deadline (timeout), 127 cancelled or interrupted, 3 a panic. Every failure the
wrappers cannot work around becomes a :class:`~aibridge.errors.FlyctlError` with one clear line.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aibridge.errors import FlyctlError

__all__ = (
    "FLYCTL_EXIT_ERROR",
    "FLYCTL_EXIT_INTERRUPTED",
    "FLYCTL_EXIT_TIMEOUT",
    "Flyctl",
    "FlyctlCommandError",
    "FlyctlNotFoundError",
    "FlyctlNotLoggedInError",
    "FlyctlOutputError",
    "FlyctlResult",
    "OutputCallback",
    "find_flyctl",
    "strip_ansi",
)

FLYCTL_EXIT_ERROR = 1
FLYCTL_EXIT_TIMEOUT = 126
FLYCTL_EXIT_INTERRUPTED = 127
INTERRUPT_GRACE_S = 30.0
"""How long flyctl may take to wind down after Ctrl-C before it is killed."""
PIPE_DRAIN_S = 10.0

TOKEN_VARIABLES = ("FLY_API_TOKEN", "FLY_ACCESS_TOKEN")
Stream = Literal["stdout", "stderr"]
OutputCallback = Callable[[str, Stream], None]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FlyctlNotFoundError(FlyctlError):
    """No flyctl binary: not on PATH and ``$FLYCTL`` unset or wrong."""


class FlyctlNotLoggedInError(FlyctlError):
    """flyctl has no access token."""


class FlyctlCommandError(FlyctlError):
    """A flyctl command the wrapper needs (releases, status...) exited non-zero."""


class FlyctlOutputError(FlyctlError):
    """flyctl printed something other than the JSON shape fly.md documents."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def find_flyctl(environ: Mapping[str, str]) -> str:
    """Path of flyctl: ``$FLYCTL`` if set, else ``fly`` then ``flyctl`` on ``$PATH``."""
    explicit = environ.get("FLYCTL", "").strip()
    if explicit:
        found = shutil.which(explicit, path=environ.get("PATH"))
        if found is None:
            raise FlyctlNotFoundError(f"FLYCTL={explicit} is not an executable file")
        return found
    for name in ("fly", "flyctl"):
        found = shutil.which(name, path=environ.get("PATH"))
        if found is not None:
            return found
    raise FlyctlNotFoundError(
        "flyctl not found: install it (https://fly.io/docs/flyctl/install/) or set FLYCTL to its path"
    )


@dataclass(frozen=True, slots=True)
class FlyctlResult:
    """One finished flyctl run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    interrupted: bool = False
    """True when Ctrl-C reached the wrapper while flyctl ran (it was passed on)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.interrupted

    @property
    def outcome(self) -> str:
        if self.interrupted or self.returncode == FLYCTL_EXIT_INTERRUPTED:
            return "interrupted"
        if self.returncode == 0:
            return "ok"
        if self.returncode == FLYCTL_EXIT_TIMEOUT:
            return "timeout"
        return "error"

    @property
    def error_line(self) -> str:
        """flyctl's own ``Error: ...`` line, else its last stderr line, else the exit code."""
        lines = [strip_ansi(line).strip() for line in self.stderr.splitlines()]
        for line in lines:
            if line.startswith("Error:"):
                return line.removeprefix("Error:").strip()
        last = next((line for line in reversed(lines) if line), "")
        return last or f"exited with code {self.returncode}"

    def describe(self) -> str:
        """One line: what flyctl said and what its exit code means."""
        meaning = {
            "ok": "succeeded",
            "timeout": f"timed out (exit {self.returncode})",
            "interrupted": f"was interrupted (exit {self.returncode})",
            "error": f"failed (exit {self.returncode})",
        }[self.outcome]
        command = self.argv[1] if len(self.argv) > 1 else ""
        return f"`fly {command}` {meaning}" + ("" if self.ok else f": {self.error_line}")


class Flyctl:
    """A located flyctl binary plus the environment it runs in."""

    def __init__(self, path: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = dict(environ)

    @classmethod
    def locate(cls, environ: Mapping[str, str]) -> Flyctl:
        return cls(find_flyctl(environ), environ)

    def run(
        self,
        args: Sequence[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> FlyctlResult:
        """Run ``flyctl ARGS``, calling ``on_output`` for each line as it arrives.

        Ctrl-C while flyctl runs is passed on as SIGINT; flyctl gets a grace period to wind
        down (it exits 127), then the result comes back with ``interrupted=True``.
        """
        argv = (self.path, *args)
        env = {**self.environ, **(extra_env or {})}
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise FlyctlNotFoundError(f"cannot run flyctl at {self.path}: {exc.strerror or exc}") from None
        chunks: dict[Stream, list[str]] = {"stdout": [], "stderr": []}
        streams: tuple[tuple[Any, Stream], ...] = ((process.stdout, "stdout"), (process.stderr, "stderr"))
        readers = [
            threading.Thread(target=_pump, args=(pipe, name, chunks[name], on_output), daemon=True)
            for pipe, name in streams
        ]
        interrupted = False
        try:
            for reader in readers:
                reader.start()
            returncode = process.wait()
        except KeyboardInterrupt:
            interrupted = True
            for reader in readers:
                if reader.ident is None:
                    reader.start()
            returncode = _wind_down(process)
        for reader in readers:
            # A grandchild (a docker build, say) may hold the pipe open after flyctl exits.
            reader.join(timeout=PIPE_DRAIN_S)
        return FlyctlResult(
            argv=argv,
            returncode=returncode,
            stdout="".join(chunks["stdout"]),
            stderr="".join(chunks["stderr"]),
            seconds=time.monotonic() - started,
            interrupted=interrupted,
        )

    def run_json(self, args: Sequence[str]) -> Any:
        """Run a read-only ``--json`` command; a failure or non-JSON output raises."""
        result = self.run(args)
        if result.interrupted:
            raise KeyboardInterrupt
        if not result.ok:
            raise FlyctlCommandError(result.describe())
        import json

        try:
            return json.loads(strip_ansi(result.stdout))
        except json.JSONDecodeError as exc:
            raise FlyctlOutputError(
                f"`fly {' '.join(args[:1])}` printed output that is not JSON ({exc.msg} at line {exc.lineno})"
            ) from None

    def check_auth(self) -> None:
        """A token in the environment, or a working ``fly auth whoami``; else one clear error."""
        if any(self.environ.get(name, "").strip() for name in TOKEN_VARIABLES):
            return
        result = self.run(["auth", "whoami"])
        if result.interrupted:
            raise KeyboardInterrupt
        if not result.ok:
            raise FlyctlNotLoggedInError(
                f"not logged in to Fly ({result.error_line}): run `fly auth login` or set FLY_API_TOKEN"
            )


def _pump(pipe: Any, name: Stream, sink: list[str], on_output: OutputCallback | None) -> None:
    for line in pipe:
        sink.append(line)
        if on_output is not None:
            on_output(line.rstrip("\n"), name)
    pipe.close()


def _wind_down(process: subprocess.Popen[str]) -> int:
    # A terminal's Ctrl-C reaches flyctl too (same process group); a signal sent to us alone
    # does not, so pass it on either way. flyctl treats a repeated SIGINT like the first.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
    except KeyboardInterrupt:
        # A second Ctrl-C: the user does not want to wait for flyctl to wind down.
        process.kill()
        process.wait()
        raise
