"""The parsed fly.toml: stdlib ``tomllib`` for values, :class:`Locator` for positions, and a typed,
normalised view of the sections the rules and other commands use (both accepted forms folded into one).

Edits go through tomlkit instead (see :mod:`aibridge.fly.generate`) so comments and key order survive.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from aibridge.errors import ConfigError, FileReadError
from aibridge.fly.locate import Locator, Path, syntax_error_position
from aibridge.fly.units import BareUnit, duration_seconds, parse_memory_mb

__all__ = (
    "VM_PRESETS",
    "Check",
    "FlyConfig",
    "FlyDocument",
    "Mount",
    "Service",
    "TomlSyntaxError",
    "Vm",
    "load_fly_config",
    "parse_fly_document",
    "read_text",
)

# fly-go MachinePresets: shared CPUs carry 256 MB each, performance CPUs 2048 MB, GPU presets 32 GB.
VM_PRESETS: dict[str, int] = {
    **{f"shared-cpu-{n}x": n * 256 for n in (1, 2, 4, 6, 8)},
    **{f"performance-{n}x": n * 2048 for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)},
    **dict.fromkeys(("a100-40gb", "a100-80gb", "l40s", "a10"), 32768),
}
DEFAULT_VM_SIZE = "shared-cpu-1x"


class TomlSyntaxError(Exception):
    """fly.toml is not valid TOML; carries flyctl-style row and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass(frozen=True, slots=True)
class Check:
    """One health check, wherever it was declared."""

    origin: str
    """``http_service``, ``services`` or ``checks`` (top level)."""
    path: Path
    name: str
    type: str
    http_path: str | None
    interval_s: float | None
    timeout_s: float | None
    grace_period_s: float | None
    processes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    path: Path
    internal_port: int | None
    processes: tuple[str, ...]
    auto_stop: str | None
    auto_start: bool | None
    soft_limit: int | None
    hard_limit: int | None


@dataclass(frozen=True, slots=True)
class Vm:
    path: Path
    size: str | None
    memory_mb: int | None
    """Effective memory: the size preset, then ``memory``, then ``memory_mb`` (flyctl's precedence)."""
    processes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mount:
    path: Path
    source: str | None
    destination: str | None
    processes: tuple[str, ...]


@dataclass(slots=True)
class FlyConfig:
    """The fly.toml values other commands and the cross-file rules need, normalised."""

    app: str | None = None
    primary_region: str | None = None
    kill_signal: str | None = None
    kill_timeout_s: float | None = None
    """None when unset (Fly then waits 5 s)."""
    strategy: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, str] = field(default_factory=dict)
    http_service: Service | None = None
    services: list[Service] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    vms: list[Vm] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    metrics: list[tuple[Path, int | None, str | None]] = field(default_factory=list)
    dockerfile: str | None = None
    image: str | None = None
    ignorefile: str | None = None
    cmd: list[str] | None = None
    """``[experimental] cmd`` (replaces the image's CMD)."""

    @property
    def internal_port(self) -> int | None:
        if self.http_service is not None:
            return self.http_service.internal_port
        return self.services[0].internal_port if self.services else None

    @property
    def memory_mb(self) -> int | None:
        """MB a machine of the app gets: the [[vm]] without ``processes`` (it applies to every
        group), else the first; Fly's default size when there is none; None when unreadable."""
        if not self.vms:
            return VM_PRESETS[DEFAULT_VM_SIZE]
        return next((vm for vm in self.vms if not vm.processes), self.vms[0]).memory_mb

    @property
    def metrics_port(self) -> int | None:
        return self.metrics[0][1] if self.metrics else None

    @property
    def metrics_path(self) -> str | None:
        return self.metrics[0][2] if self.metrics else None

    @property
    def health_check_path(self) -> str | None:
        """Path of the first HTTP check (http_service first, then services, then top level)."""
        return next((c.http_path for c in self.checks if c.http_path), None)


@dataclass(slots=True)
class FlyDocument:
    """A fly.toml that parsed: its text, raw values, positions and normalised config."""

    file: str
    text: str
    data: dict[str, Any]
    locator: Locator
    config: FlyConfig


def read_text(path: FsPath) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileReadError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError as error:
        raise FileReadError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise FileReadError(f"{path}: cannot be read ({error.strerror})") from None


def parse_fly_document(text: str, file: str = "fly.toml") -> FlyDocument:
    """Parse fly.toml text; raise :class:`TomlSyntaxError` with a position when it is not TOML."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line, column = syntax_error_position(str(error), text)
        raise TomlSyntaxError(str(error), line, column) from None
    return FlyDocument(file, text, data, Locator(text), normalise(data))


def load_fly_config(path: FsPath) -> FlyConfig:
    """The normalised config of a fly.toml file (FileReadError / ConfigError on bad input)."""
    try:
        return parse_fly_document(read_text(path), str(path)).config
    except TomlSyntaxError as error:
        raise ConfigError(f"{path}:{error.line}:{error.column}: not valid TOML: {error.message}") from None


def _tables(data: dict[str, Any], *keys: str) -> list[tuple[Path, dict[str, Any]]]:
    """The items of a section accepted as a table or an array of tables (under any alias)."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for key in keys:
        value = data.get(key)
        if isinstance(value, dict):
            out.append(((key,), value))
        elif isinstance(value, list):
            out += [((key, i), item) for i, item in enumerate(value) if isinstance(item, dict)]
    return out


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # 8080.0 survives flyctl's JSON round trip as 8080
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _strs(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _seconds(value: object, unit: BareUnit) -> float | None:
    try:
        return duration_seconds(value, unit)
    except ValueError:
        return None


def _autostop(value: object) -> str | None:
    if isinstance(value, bool):
        return "stop" if value else "off"
    return value if isinstance(value, str) else None


def _folded(table: dict[str, Any]) -> dict[str, Any]:
    """Keys as encoding/json matches them: the exact name first, else case-insensitively."""
    out = dict(table)
    for key, value in table.items():
        out.setdefault(str(key).lower(), value)
    return out


def _service(path: Path, table: dict[str, Any]) -> Service:
    table = _folded(table)
    concurrency = table.get("concurrency")
    limits = concurrency if isinstance(concurrency, dict) else {}
    auto_start = table.get("auto_start_machines")
    return Service(
        path,
        _int(table.get("internal_port")),
        _strs(table.get("processes")),
        _autostop(table.get("auto_stop_machines")),
        auto_start if isinstance(auto_start, bool) else None,
        _int(limits.get("soft_limit")),
        _int(limits.get("hard_limit")),
    )


def _check(origin: str, path: Path, name: str, table: dict[str, Any], unit: BareUnit, kind: str) -> Check:
    return Check(
        origin,
        path,
        name,
        _str(table.get("type")) or kind,
        _str(table.get("path")) if kind == "http" or table.get("type") == "http" else None,
        _seconds(table.get("interval"), unit) if "interval" in table else None,
        _seconds(table.get("timeout"), unit) if "timeout" in table else None,
        _seconds(table.get("grace_period"), unit) if "grace_period" in table else None,
        _strs(table.get("processes")),
    )


def _vm(path: Path, table: dict[str, Any]) -> Vm:
    size = _str(table.get("size"))
    memory = VM_PRESETS.get(size or DEFAULT_VM_SIZE)
    if "memory" in table:
        # An unreadable memory is unknown, not the preset: FLY104 reports it, and nobody should
        # judge memory use against a size the user did not ask for.
        try:
            memory = parse_memory_mb(table["memory"])
        except ValueError:
            memory = None
        if memory is not None and memory <= 0:
            memory = None
    memory = _int(table.get("memory_mb")) or memory
    return Vm(path, size, memory, _strs(table.get("processes")))


def normalise(data: dict[str, Any]) -> FlyConfig:
    """Fold both accepted forms of every section into one typed view; bad values become None."""
    cfg = FlyConfig(app=_str(data.get("app")), primary_region=_str(data.get("primary_region")))
    cfg.kill_signal = _str(data.get("kill_signal"))
    experimental = data.get("experimental")
    # patches.go patchExperimental: [experimental] kill_timeout counts when the top level has none.
    kill = data.get("kill_timeout")
    if "kill_timeout" not in data and isinstance(experimental, dict):
        kill = experimental.get("kill_timeout")
    cfg.kill_timeout_s = _seconds(kill, "s") if kill is not None else None
    deploy, build = data.get("deploy"), data.get("build")
    cfg.strategy = _str(deploy.get("strategy")) if isinstance(deploy, dict) else None
    if isinstance(build, dict):
        cfg.dockerfile, cfg.image = _str(build.get("dockerfile")), _str(build.get("image"))
        cfg.ignorefile = _str(build.get("ignorefile"))
    for _, env in _tables(data, "env"):
        cfg.env.update({str(k): v if isinstance(v, str) else str(v) for k, v in env.items()})
    processes = data.get("processes")
    if isinstance(processes, dict):
        cfg.processes = {k: v for k, v in processes.items() if isinstance(v, str)}
    elif isinstance(processes, list):  # the legacy [[processes]] name/command form
        items = [p for p in processes if isinstance(p, dict)]
        cfg.processes = {
            p["name"]: p["command"]
            for p in items
            if isinstance(p.get("name"), str) and isinstance(p.get("command"), str)
        }
    http = data.get("http_service")
    if isinstance(http, dict):
        cfg.http_service = _service(("http_service",), http)
        for path, check in _tables(http, "checks"):
            cfg.checks.append(_check("http_service", ("http_service", *path), "", check, "ns", "http"))
    for path, service in _tables(data, "services"):
        cfg.services.append(_service(path, service))
        for sub, check in _tables(service, "http_checks"):
            cfg.checks.append(_check("services", (*path, *sub), "", check, "ms", "http"))
        for sub, check in _tables(service, "tcp_checks"):
            cfg.checks.append(_check("services", (*path, *sub), "", check, "ms", "tcp"))
    checks = data.get("checks")
    named = checks.items() if isinstance(checks, dict) else []
    for name, check in named:
        if isinstance(check, dict):
            cfg.checks.append(_check("checks", ("checks", name), name, check, "ms", ""))
    for index, check in enumerate(checks if isinstance(checks, list) else []):
        if isinstance(check, dict) and isinstance(check.get("name"), str):
            cfg.checks.append(_check("checks", ("checks", index), check["name"], check, "ms", ""))
    cfg.vms = [_vm(path, table) for path, table in _tables(data, "vm", "compute", "computes")]
    cfg.mounts = [
        Mount(path, _str(t.get("source")), _str(t.get("destination")), _strs(t.get("processes")))
        for path, t in _tables(data, "mounts", "mount")
    ]
    cfg.metrics = [
        (p, _int(t.get("port")), _str(t.get("path"))) for p, t in _tables(data, "metrics", "metric")
    ]
    if isinstance(experimental, dict):
        if cfg.metrics == [] and "metrics_port" in experimental:
            port, mpath = _int(experimental.get("metrics_port")), _str(experimental.get("metrics_path"))
            cfg.metrics = [(("experimental", "metrics_port"), port, mpath)]
        cmd = experimental.get("cmd")
        cfg.cmd = [cmd] if isinstance(cmd, str) else list(_strs(cmd)) or None
    return cfg
