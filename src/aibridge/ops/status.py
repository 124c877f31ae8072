"""``aibridge status``: releases, Machines and the live ``/health`` answer in one view."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aibridge.ops.flyctl import Flyctl
from aibridge.ops.flyjson import AppStatus, Release
from aibridge.ops.health import USER_AGENT, HealthAttempt, check_health, default_health_url
from aibridge.ops.preflight import resolve_app
from aibridge.ops.rollback import read_live

__all__ = ("DEFAULT_RELEASES_SHOWN", "StatusView", "app_status")

DEFAULT_RELEASES_SHOWN = 5


@dataclass(frozen=True, slots=True)
class StatusView:
    app: str
    status: AppStatus
    releases: list[Release]
    health_url: str
    health: HealthAttempt | None
    """None when the health check was skipped."""

    def to_json(self) -> dict[str, Any]:
        health = None
        if self.health is not None:
            health = {
                "ok": self.health.ok,
                "status_code": self.health.status_code,
                "latency_ms": round(self.health.latency_ms, 1)
                if self.health.latency_ms is not None
                else None,
                "detail": self.health.detail,
            }
        return {
            "app": self.app,
            "status": self.status.to_json(),
            "releases": [r.to_json() for r in self.releases],
            "health_url": self.health_url,
            "health": health,
        }


def app_status(
    config: Path,
    app: str | None = None,
    *,
    health_url: str | None = None,
    check: bool = True,
    releases: int = DEFAULT_RELEASES_SHOWN,
    environ: Mapping[str, str] | None = None,
) -> StatusView:
    """Read releases and Machines with flyctl and GET the health URL once."""
    env = dict(os.environ if environ is None else environ)
    name = resolve_app(config, app, env)
    flyctl = Flyctl.locate(env)
    flyctl.check_auth()
    all_releases, status = read_live(flyctl, name)
    url = health_url or default_health_url(name)
    attempt = None
    if check:
        with httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT}) as client:
            attempt = check_health(client, url)
    return StatusView(name, status, all_releases[: max(releases, 0)], url, attempt)
