"""Health verification: poll ``/health`` until it answers ok N times in a row, within a timeout.

"Ok" means HTTP 200 with a JSON body whose ``status`` is ``"ok"`` (the bridge's contract; a
draining bridge answers 503 ``{"status": "draining"}``). A release that passed Fly's own checks
can still fail this, which is the point: it runs from where the user is, over the public URL.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from aibridge.errors import AibridgeError, UsageError
from aibridge.ops.events import OpsEvents

__all__ = (
    "DEFAULT_HEALTH_INTERVAL_S",
    "DEFAULT_HEALTH_PASSES",
    "DEFAULT_HEALTH_TIMEOUT_S",
    "HealthAttempt",
    "HealthResult",
    "Verification",
    "VerifyOptions",
    "check_health",
    "default_health_url",
    "require_smoke",
    "verify_health",
    "verify_release",
)

DEFAULT_HEALTH_PASSES = 3
DEFAULT_HEALTH_TIMEOUT_S = 60.0
DEFAULT_HEALTH_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 5.0
USER_AGENT = "aibridge-deploy"


def default_health_url(app: str) -> str:
    return f"https://{app}.fly.dev/health"


@dataclass(frozen=True, slots=True)
class HealthAttempt:
    """One GET of the health URL."""

    number: int
    ok: bool
    status_code: int | None
    latency_ms: float | None
    detail: str
    """``ok``, or what was wrong (status code, body status, connection error)."""
    streak: int = 0
    """Consecutive ok answers up to and including this one."""


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The outcome of one verification."""

    url: str
    ok: bool
    attempts: int
    passes_needed: int
    seconds: float
    last: HealthAttempt | None

    @property
    def summary(self) -> str:
        if self.ok:
            latency = f", last {self.last.latency_ms:.0f} ms" if self.last and self.last.latency_ms else ""
            return f"healthy: {self.passes_needed} ok answers in a row ({self.attempts} attempts{latency})"
        detail = self.last.detail if self.last else "no answer"
        return f"not healthy after {self.seconds:.0f}s and {self.attempts} attempts (last: {detail})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary
        return data


def check_health(
    client: httpx.Client, url: str, number: int = 1, timeout: float = REQUEST_TIMEOUT_S
) -> HealthAttempt:
    """GET ``url`` once and judge the answer."""
    started = time.perf_counter()
    try:
        response = client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return HealthAttempt(number, False, None, None, f"{type(exc).__name__}: {exc}".rstrip(": "))
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code == 200 and status == "ok":
        return HealthAttempt(number, True, 200, latency_ms, "ok")
    shown = f"status {status!r}" if status is not None else "no JSON status"
    return HealthAttempt(
        number, False, response.status_code, latency_ms, f"HTTP {response.status_code}, {shown}"
    )


def verify_health(
    url: str,
    *,
    passes: int = DEFAULT_HEALTH_PASSES,
    timeout: float = DEFAULT_HEALTH_TIMEOUT_S,
    interval: float = DEFAULT_HEALTH_INTERVAL_S,
    on_attempt: Callable[[HealthAttempt], None] | None = None,
) -> HealthResult:
    """Poll until ``passes`` consecutive ok answers, or until ``timeout`` seconds have passed."""
    started = time.monotonic()
    deadline = started + timeout
    streak = attempts = 0
    last: HealthAttempt | None = None
    with httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT}) as client:
        while True:
            attempts += 1
            remaining = max(deadline - time.monotonic(), 0.1)
            attempt = check_health(client, url, attempts, timeout=min(REQUEST_TIMEOUT_S, remaining))
            streak = streak + 1 if attempt.ok else 0
            last = HealthAttempt(**{**asdict(attempt), "streak": streak})
            if on_attempt is not None:
                on_attempt(last)
            if streak >= passes:
                break
            # Pace the polling; the deadline, not the number of sleeps, bounds the loop.
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(min(interval, deadline - now))
    return HealthResult(url, streak >= passes, attempts, passes, time.monotonic() - started, last)


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """How a deploy or rollback is verified."""

    enabled: bool = True
    url: str | None = None
    """Health URL; None means ``https://<app>.fly.dev/health``."""
    passes: int = DEFAULT_HEALTH_PASSES
    timeout: float = DEFAULT_HEALTH_TIMEOUT_S
    interval: float = DEFAULT_HEALTH_INTERVAL_S
    smoke: int | None = None
    """Requests of a short load test judged against the KPIs after health passes (None: no smoke)."""

    def url_for(self, app: str) -> str:
        return self.url or default_health_url(app)


@dataclass(frozen=True, slots=True)
class Verification:
    """Health (and optionally smoke) outcome of one release."""

    health: HealthResult
    smoke_passed: bool | None = None
    smoke_detail: str = ""

    @property
    def ok(self) -> bool:
        return self.health.ok and self.smoke_passed is not False

    @property
    def summary(self) -> str:
        return self.health.summary + (f"; smoke: {self.smoke_detail}" if self.smoke_detail else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "health": self.health.to_json(),
            "smoke_passed": self.smoke_passed,
            "smoke_detail": self.smoke_detail,
        }


def require_smoke(options: VerifyOptions) -> None:
    """Fail before anything changes when ``--smoke`` is asked for but cannot run."""
    if options.smoke is None:
        return
    if options.smoke < 1:
        raise UsageError(f"--smoke: expected a number of requests >= 1, got {options.smoke}")
    try:
        importlib.import_module("aibridge.ops.loadtest")
    except ImportError as exc:
        raise UsageError(
            f"--smoke needs the load tester (aibridge.ops.loadtest), which is missing: {exc}"
        ) from None


def verify_release(url: str, options: VerifyOptions, events: OpsEvents) -> Verification:
    """Health until ok N times in a row; then, if asked, a short load test judged against the KPIs."""
    events.health_started(url)
    health = verify_health(
        url,
        passes=options.passes,
        timeout=options.timeout,
        interval=options.interval,
        on_attempt=events.health_attempt,
    )
    events.health_finished(health)
    if not health.ok or options.smoke is None:
        return Verification(health)
    events.step("smoke", f"load test: {options.smoke} requests to {url}, judged against the KPIs")
    from aibridge.ops.loadtest import LoadTestOptions, kpi_slos, run_loadtest

    try:
        report = run_loadtest(
            LoadTestOptions(url=url, requests=options.smoke, concurrency=10, slos=kpi_slos())
        )
    except AibridgeError as exc:
        return Verification(health, False, f"could not run: {exc.detail}")
    passed = report.verdict is not None and report.verdict.passed
    detail = f"{options.smoke} requests, KPIs (p95 < 500 ms, errors < 1 %) {'met' if passed else 'NOT met'}"
    return Verification(health, passed, detail)
