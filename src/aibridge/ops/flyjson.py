"""The JSON flyctl prints, read into small typed records (shapes from fly.md §3–§4).

``fly releases --json``: an array of fly-go ``Release`` with PascalCase keys. ``fly status --json``:
an object with PascalCase keys whose ``Machines`` are snake_case. ``FLY_EMIT_RELEASE_JSON=1`` makes
``fly deploy`` print one line ``{"id":..., "version":N, "image_ref":...}`` after a successful deploy.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from aibridge.ops.flyctl import FlyctlOutputError, strip_ansi

__all__ = (
    "AppStatus",
    "EmittedRelease",
    "Machine",
    "Release",
    "parse_emitted_release",
    "parse_releases",
    "parse_status",
)

COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Release:
    """One entry of ``fly releases --json``."""

    version: int
    status: str
    image_ref: str
    id: str = ""
    description: str = ""
    created_at: str = ""
    user: str = ""

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def to_json(self) -> dict[str, Any]:
        # "image" everywhere in aibridge's JSON (deploy, rollback, status), whatever flyctl calls it.
        data = asdict(self)
        data["image"] = data.pop("image_ref")
        return data


@dataclass(frozen=True, slots=True)
class Machine:
    """One Machine of ``fly status --json``."""

    id: str
    state: str
    region: str
    image: str
    release_version: str = ""
    checks: tuple[tuple[str, str], ...] = ()
    """(check name, passing|warning|critical)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [{"name": name, "status": status} for name, status in self.checks]
        return data


@dataclass(frozen=True, slots=True)
class AppStatus:
    """The parts of ``fly status --json`` the deploy wrapper uses."""

    name: str
    hostname: str
    version: int | None
    status: str
    machines: tuple[Machine, ...] = field(default_factory=tuple)

    @property
    def running_image(self) -> str | None:
        """The image most started Machines run (any Machine's if none is started)."""
        started = [m.image for m in self.machines if m.state == "started" and m.image]
        images = started or [m.image for m in self.machines if m.image]
        return Counter(images).most_common(1)[0][0] if images else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hostname": self.hostname,
            "version": self.version,
            "status": self.status,
            "running_image": self.running_image,
            "machines": [m.to_json() for m in self.machines],
        }


@dataclass(frozen=True, slots=True)
class EmittedRelease:
    """The line ``FLY_EMIT_RELEASE_JSON=1`` makes ``fly deploy`` print."""

    id: str
    version: int
    image_ref: str


def _fail(command: str, what: str) -> FlyctlOutputError:
    return FlyctlOutputError(f"`fly {command} --json` printed an unexpected shape: {what}")


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def parse_releases(data: Any) -> list[Release]:
    """Releases from the decoded JSON, newest (highest version) first."""
    if not isinstance(data, list):
        raise _fail("releases", f"expected an array, got {type(data).__name__}")
    releases = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("Version"), int):
            raise _fail("releases", f"item {index} has no integer Version")
        user = item.get("User")
        releases.append(
            Release(
                version=item["Version"],
                status=_text(item, "Status"),
                image_ref=_text(item, "ImageRef"),
                id=_text(item, "ID"),
                description=_text(item, "Description"),
                created_at=_text(item, "CreatedAt"),
                user=_text(user, "Email") if isinstance(user, dict) else "",
            )
        )
    return sorted(releases, key=lambda r: r.version, reverse=True)


def _machine_image(raw: dict[str, Any]) -> str:
    config = raw.get("config")
    if isinstance(config, dict) and _text(config, "image"):
        return _text(config, "image")
    ref = raw.get("image_ref")
    if isinstance(ref, dict) and _text(ref, "repository"):
        registry = _text(ref, "registry")
        name = f"{registry}/{ref['repository']}" if registry else ref["repository"]
        if _text(ref, "tag"):
            return f"{name}:{ref['tag']}"
        return f"{name}@{ref['digest']}" if _text(ref, "digest") else name
    return ""


def _machine(raw: Any, index: int) -> Machine:
    if not isinstance(raw, dict):
        raise _fail("status", f"Machines[{index}] is not an object")
    config = raw.get("config")
    metadata = config.get("metadata") if isinstance(config, dict) else None
    raw_checks = raw.get("checks")
    checks: list[Any] = raw_checks if isinstance(raw_checks, list) else []
    return Machine(
        id=_text(raw, "id"),
        state=_text(raw, "state"),
        region=_text(raw, "region"),
        image=_machine_image(raw),
        release_version=_text(metadata, "fly_release_version") if isinstance(metadata, dict) else "",
        checks=tuple((_text(c, "name"), _text(c, "status")) for c in checks if isinstance(c, dict)),
    )


def parse_status(data: Any) -> AppStatus:
    if not isinstance(data, dict):
        raise _fail("status", f"expected an object, got {type(data).__name__}")
    machines = data.get("Machines")
    machines = [] if machines is None else machines  # a Go nil slice is JSON null
    if not isinstance(machines, list):
        raise _fail("status", "Machines is not an array")
    version = data.get("Version")
    return AppStatus(
        name=_text(data, "Name"),
        hostname=_text(data, "Hostname"),
        version=version if isinstance(version, int) else None,
        status=_text(data, "Status"),
        machines=tuple(_machine(m, i) for i, m in enumerate(machines)),
    )


def parse_emitted_release(stdout: str) -> EmittedRelease | None:
    """The release line of a ``fly deploy`` run, or None (older flyctl, or a failed deploy)."""
    for line in reversed(strip_ansi(stdout).splitlines()):
        line = line.strip()
        if not (line.startswith("{") and '"image_ref"' in line):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("version"), int):
            return EmittedRelease(
                id=_text(obj, "id"), version=obj["version"], image_ref=_text(obj, "image_ref")
            )
    return None
