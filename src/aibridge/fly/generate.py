"""``aibridge init``: write fly.toml, Dockerfile and .dockerignore, merging into an existing fly.toml.

The merge goes through tomlkit so the user's comments, key order and unrelated keys survive. Keys
``init`` manages take its value; a section in a shape flyctl rejects is replaced by the right shape.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aibridge.errors import ConfigError, FileReadError, UsageError
from aibridge.fly.model import read_text
from aibridge.fly.templates import InitOptions, render_dockerfile, render_dockerignore, render_fly_toml

__all__ = ("InitResult", "PlannedFile", "in_source_tree", "init_project", "merge_fly_toml", "options_for")

Action = Literal["create", "merge", "replace", "keep", "unchanged"]


@dataclass(frozen=True, slots=True)
class PlannedFile:
    path: Path
    action: Action
    old: str | None
    new: str

    @property
    def changes(self) -> bool:
        return self.action in ("create", "merge", "replace")


@dataclass(slots=True)
class InitResult:
    files: list[PlannedFile] = field(default_factory=list)
    written: bool = False
    notes: list[str] = field(default_factory=list)
    """What the user must know about the result (a kept Dockerfile that cannot write the volume)."""

    def diff(self) -> str:
        """Unified diff of every change (what --dry-run prints)."""
        chunks: list[str] = []
        for f in self.files:
            if f.changes:
                old = (f.old or "").splitlines(keepends=True)
                before = f"a/{f.path.name}" if f.old is not None else "/dev/null"
                chunks += difflib.unified_diff(
                    old, f.new.splitlines(keepends=True), before, f"b/{f.path.name}"
                )
        return "".join(chunks)


def options_for(
    directory: Path,
    app: str | None,
    region: str | None,
    memory_mb: int,
    asgi: str | None,
    volume: bool | None,
    health_path: str | None = None,
) -> InitOptions:
    """Check the CLI options; the app name defaults to the existing one, else the directory's name.

    The bridge gets a volume unless ``volume`` is False; an ASGI app only when it is True. An
    ASGI app gets a health check only at ``health_path``: no check beats one that always fails.
    """
    if app is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", app):
        raise UsageError(f"--app {app!r}: use 3-63 lowercase letters, digits and dashes")
    if region is not None and not re.fullmatch(r"[a-z]{3}", region):
        raise UsageError(f"--region {region!r}: expected a three-letter Fly region code such as sjc")
    if memory_mb < 256 or memory_mb % 256 or memory_mb > 131072:
        raise UsageError(f"--memory {memory_mb}: expected a multiple of 256 MB between 256 and 131072")
    if asgi is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", asgi):
        raise UsageError(f"--asgi {asgi!r}: expected MODULE:APP, e.g. myapp.main:app")
    if health_path is not None and not re.fullmatch(r"/[\w\-./~%?=&]*", health_path):
        raise UsageError(f"--health-path {health_path!r}: expected a URL path starting with /, e.g. /healthz")
    if asgi is None and health_path not in (None, "/health"):
        raise UsageError(f"--health-path {health_path}: the bridge serves its health check on /health")
    if app is None:
        slug = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
        app = slug if len(slug) >= 3 else "aibridge"
    return InitOptions(
        app=app,
        region=region or "sjc",
        memory_mb=memory_mb,
        asgi=asgi,
        volume=volume if volume is not None else asgi is None,
        health_path="/health" if asgi is None else health_path,
        from_source=in_source_tree(directory),
    )


def in_source_tree(directory: Path) -> bool:
    """Whether ``directory`` is aibridge's own checkout (its pyproject names aibridge, src/ holds it)."""
    import tomllib

    if not (directory / "src" / "aibridge" / "__init__.py").is_file():
        return False
    try:
        project = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return bool(project.get("project", {}).get("name") == "aibridge")


def _merge_table(ours: Any, theirs: Any) -> None:
    """Merge tomlkit container ``ours`` into ``theirs`` in place; ``ours`` wins on managed keys."""
    import tomlkit.items as items

    for key, value in ours.items():
        if key not in theirs:
            theirs[key] = value
            continue
        current = theirs[key]
        if isinstance(value, items.Table) and isinstance(current, items.Table):
            _merge_table(value, current)
        elif isinstance(value, items.AoT) and isinstance(current, items.AoT) and len(current) > 0:
            _merge_table(value[0], current[0])
        else:
            theirs[key] = value


def merge_fly_toml(
    existing: str, generated: str, *, keep: tuple[str, ...] = (), file: str = "fly.toml"
) -> str:
    """``generated`` merged into ``existing``; top-level keys in ``keep`` keep their existing value."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        theirs = tomlkit.parse(existing)
    except ParseError as error:
        raise ConfigError(
            f"{file}:{error.line}:{error.col}: not valid TOML, cannot merge into it: {error}"
        ) from None
    ours = tomlkit.parse(generated)
    for key in keep:
        if key in theirs and key in ours:
            del ours[key]
    _merge_table(ours, theirs)
    return tomlkit.dumps(theirs)


def _kept_dockerfile_notes(result: InitResult) -> list[str]:
    """A kept Dockerfile that cannot write the root-owned volume: say so (validate says XF109)."""
    from aibridge.fly.dockerfile import DockerfileSyntaxError, parse_dockerfile
    from aibridge.fly.rules_cross import volume_unwritable

    kept = next((f for f in result.files if f.path.name == "Dockerfile" and f.action == "keep"), None)
    if kept is None or kept.old is None:
        return []
    try:
        model = parse_dockerfile(kept.old, str(kept.path))
    except DockerfileSyntaxError:  # validate reports it
        return []
    stage = model.stage(None)
    problem = volume_unwritable(stage, "/data") if stage is not None else None
    if problem is None:
        return []
    return [
        f"{kept.path.name} kept, but {problem}: add the privilege drop (chown /data, then setpriv to the "
        "app user) or run `aibridge init --volume --force` to replace it"
    ]


def init_project(
    directory: Path,
    opts: InitOptions,
    *,
    dry_run: bool = False,
    force: bool = False,
    keep: tuple[str, ...] = (),
) -> InitResult:
    """Plan and (unless ``dry_run``) write the three files in ``directory``.

    ``keep`` names top-level fly.toml keys (app, primary_region) an existing file keeps.
    """
    if not directory.is_dir():
        raise FileReadError(f"{directory}: not a directory")
    result = InitResult()
    for name, new in (
        ("fly.toml", render_fly_toml(opts)),
        ("Dockerfile", render_dockerfile(opts)),
        (".dockerignore", render_dockerignore(opts)),
    ):
        path = directory / name
        old = read_text(path) if path.exists() else None
        action: Action = "create"
        if old is not None and name == "fly.toml":
            new, action = merge_fly_toml(old, new, keep=keep, file=str(path)), "merge"
        elif old is not None:
            action = "replace" if force else "keep"
        if old == new or (action == "keep"):
            action = "unchanged" if old == new else action
            new = old if old is not None else new
        result.files.append(PlannedFile(path, action, old, new))
    if opts.volume:
        result.notes += _kept_dockerfile_notes(result)
    if not dry_run:
        for planned in result.files:
            if planned.changes:
                try:
                    planned.path.write_text(planned.new, encoding="utf-8")
                except OSError as error:
                    raise FileReadError(f"{planned.path}: cannot be written ({error.strerror})") from None
        result.written = True
    return result
