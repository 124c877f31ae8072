"""Live progress: a Rich bar on a terminal, a plain line every few seconds when output is piped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ("ConsoleProgress", "ProgressSnapshot")

_PLAIN_EVERY_S = 5.0


@dataclass(frozen=True)
class ProgressSnapshot:
    """Where a running load test stands; ``total`` or ``duration_s`` says which mode it is in."""

    done: int
    failed: int
    elapsed_s: float
    total: int | None
    duration_s: float | None
    rate: float
    """Requests per second over the last interval."""


class ConsoleProgress:
    """A progress callback for :func:`run_loadtest`; use it as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = console.is_terminal
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("loadtest", total=None, status="starting")
        self._last_plain = time.monotonic()

    def __enter__(self) -> ConsoleProgress:
        if self._live:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live:
            self._bar.stop()

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        status = f"{snapshot.done} done · {snapshot.rate:,.0f} req/s · {snapshot.failed} errors"
        if snapshot.duration_s is not None:
            total, completed = snapshot.duration_s, min(snapshot.elapsed_s, snapshot.duration_s)
        else:
            total, completed = float(snapshot.total or 0), float(snapshot.done)
        if self._live:
            self._bar.update(self._task, total=total, completed=completed, status=status)
            return
        now = time.monotonic()
        if now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = now
            where = (
                f"{snapshot.elapsed_s:.0f}/{snapshot.duration_s:g}s"
                if snapshot.duration_s is not None
                else f"{snapshot.done}/{snapshot.total}"
            )
            self._console.print(f"loadtest: {where} · {status}", highlight=False)
