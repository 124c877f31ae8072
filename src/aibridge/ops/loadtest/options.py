"""What a load test should do, and the parsers that turn ab/hey-style flag values into it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from aibridge.errors import FileReadError, UsageError
from aibridge.ops.loadtest.slo import Slo

__all__ = (
    "DEFAULT_CONCURRENCY",
    "DEFAULT_REQUESTS",
    "DEFAULT_TIMEOUT_S",
    "LoadModel",
    "LoadTestOptions",
    "parse_header",
    "parse_status_list",
    "parse_tolerance",
    "read_body_file",
)

DEFAULT_REQUESTS = 1000
DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT_S = 10.0

LoadModel = Literal["closed", "open"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass
class LoadTestOptions:
    """One load test. Field names follow ab/hey: ``-n`` requests, ``-c`` concurrency, ``-z``, ``-q``…"""

    url: str
    requests: int | None = DEFAULT_REQUESTS
    """Requests to send (``-n``); ignored when ``duration_s`` is set, as in hey and oha."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Connections kept open at once (``-c``), spread over the workers."""
    duration_s: float | None = None
    """Run for this long instead of a request count (``-z``)."""
    rate: float | None = None
    """TOTAL arrival rate in requests/s (``-q``); switches to the open model."""
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Per-request timeout (``-t``); a request that takes longer counts as a ``timeout`` error."""
    warmup: int = 0
    """Requests sent before measuring and not counted (``--warmup``)."""
    expect_status: tuple[int, ...] = (200,)
    """Status codes that count as success; any other is an ``status`` error."""
    slos: list[Slo] = field(default_factory=list)
    workers: int = 1
    """Processes sharing the load, for when one core cannot drive the target."""
    baseline: Path | None = None
    """A report saved by an earlier ``--save`` to compare this run with."""
    tolerance_pct: float = 10.0
    """How much worse than the baseline (req/s, p50/p95/p99) still passes."""
    save: Path | None = None
    """Where to write this run's JSON report."""
    keepalive: bool = True
    """False: a new connection for every request (hey ``-disable-keepalive``; ab without ``-k``)."""
    compression: bool = True
    """False: send no ``Accept-Encoding`` (hey ``-disable-compression``)."""

    @property
    def model(self) -> LoadModel:
        """``open`` (fixed arrival rate) with ``rate``, else ``closed`` (each connection loops)."""
        return "open" if self.rate is not None else "closed"

    @property
    def effective_concurrency(self) -> int:
        """Never open more connections than there are requests to send."""
        if self.duration_s is None and self.requests is not None:
            return max(1, min(self.concurrency, self.requests))
        return self.concurrency

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first option that cannot work."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"URL {self.url!r} must be http:// or https:// with a host")
        if self.duration_s is None:
            if self.requests is None or self.requests < 1:
                raise UsageError(f"-n/--requests must be at least 1, got {self.requests}")
        elif not self.duration_s > 0:
            raise UsageError(f"-z/--duration must be positive, got {self.duration_s}s")
        if self.concurrency < 1:
            raise UsageError(f"-c/--concurrency must be at least 1, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise UsageError(f"-q/--rate must be positive, got {self.rate}")
        if not self.timeout_s > 0:
            raise UsageError(f"-t/--timeout must be positive, got {self.timeout_s}s")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if not _TOKEN.match(self.method):
            raise UsageError(f"-m/--method {self.method!r} is not an HTTP method")
        if not self.expect_status:
            raise UsageError("--expect-status needs at least one status code")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.workers > self.effective_concurrency:
            raise UsageError(
                f"--workers {self.workers} needs at least {self.workers} connections, "
                f"but -c is {self.effective_concurrency}"
            )
        if self.tolerance_pct < 0:
            raise UsageError(f"--tolerance must be 0 % or more, got {self.tolerance_pct} %")


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` → ``("Name", "value")``, as curl, ab and hey take ``-H``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not _TOKEN.match(name):
        raise UsageError(f'-H {text!r} is not a header; write it as "Name: value"')
    return name, value.strip()


def parse_status_list(text: str) -> tuple[int, ...]:
    """``"200,204"`` or ``"2xx"`` → status codes that count as success."""
    codes: list[int] = []
    for item in (part.strip().lower() for part in text.split(",")):
        if re.fullmatch(r"[1-5]xx", item):
            base = int(item[0]) * 100
            codes.extend(range(base, base + 100))
        elif item.isdigit() and 100 <= int(item) <= 599:
            codes.append(int(item))
        else:
            raise UsageError(f"--expect-status {text!r}: {item!r} is not a status code (e.g. 200,204 or 2xx)")
    return tuple(dict.fromkeys(codes))


def parse_tolerance(text: str) -> float:
    """``"10%"`` or ``"10"`` → 10.0 (percent)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if match is None:
        raise UsageError(f"--tolerance {text!r} is not a percentage (e.g. 10%)")
    return float(match.group(1))


def read_body_file(path: Path) -> bytes:
    """The request body for ``-D FILE``."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise FileReadError(f"-D {path}: cannot read the body file ({error.strerror or error})") from error
