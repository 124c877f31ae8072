"""Rules across fly.toml, the Dockerfile and the server: do the ports, paths and timeouts agree?"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from aibridge.fly.argv import unwrap
from aibridge.fly.catalog import finding
from aibridge.fly.dockerfile import DockerfileModel, Stage, process_argv, split_shell
from aibridge.fly.findings import Finding, Severity
from aibridge.fly.locate import Path
from aibridge.fly.model import FlyDocument
from aibridge.fly.rules_docker import program
from aibridge.server.config import SETTINGS

__all__ = ("Served", "check_cross", "served_by")

_DEFAULTS = {s.env: s.default for s in SETTINGS}
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\")]*)")


@dataclass(slots=True)
class Served:
    """What the container's command listens on, as far as can be told offline."""

    program: str
    port: int | None
    host: str | None
    certain: bool
    """False when the port is only inferred from a PORT variable the program may not read."""
    metrics_port: int | None = None
    metrics_path: str | None = None
    health_paths: tuple[str, ...] = ()
    drain_s: float | None = None
    argv: list[str] = field(default_factory=list)


def _option(argv: list[str], *names: str) -> str | None:
    for index, word in enumerate(argv):
        for name in names:
            if word == name and index + 1 < len(argv):
                return argv[index + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


def served_by(argv: list[str], env: dict[str, str]) -> Served | None:
    """Port, host and (for aibridge) metrics, health and drain of the server ``argv`` starts."""
    argv = unwrap(argv).argv
    name = program(argv)
    if name == "aibridge" and "serve" in argv:
        metrics = _int(env.get("AI_BRIDGE_METRICS_PORT", _DEFAULTS["AI_BRIDGE_METRICS_PORT"]))
        drain = env.get("AI_BRIDGE_SHUTDOWN_TIMEOUT_S", _DEFAULTS["AI_BRIDGE_SHUTDOWN_TIMEOUT_S"]) or "0"
        return Served(
            name,
            _int(_option(argv, "--port") or env.get("PORT") or _DEFAULTS["PORT"]),
            _option(argv, "--host") or env.get("AI_BRIDGE_HOST") or _DEFAULTS["AI_BRIDGE_HOST"],
            True,
            metrics_port=metrics,
            metrics_path="/metrics",
            health_paths=("/health",),
            drain_s=float(drain) if re.fullmatch(r"\d+(\.\d+)?", drain) else None,
            argv=argv,
        )
    if name in ("uvicorn", "hypercorn", "gunicorn", "granian"):
        bind = _option(argv, "--bind", "-b")
        if bind is not None and not bind.startswith(("unix:", "fd:")):
            bind_host, _, bind_port = bind.rpartition(":")
            return Served(name, _int(bind_port), bind_host or "0.0.0.0", True, argv=argv)
        if name == "gunicorn" and "PORT" in env:
            return Served(name, _int(env["PORT"]), "0.0.0.0", True, argv=argv)
        uvicorn = name == "uvicorn"
        port = _option(argv, "--port") or (env.get("UVICORN_PORT") if uvicorn else None) or "8000"
        host = _option(argv, "--host", "--interface") or (env.get("UVICORN_HOST") if uvicorn else None)
        return Served(name, _int(port), host or "127.0.0.1", True, argv=argv)
    if "PORT" in env and name:
        return Served(name, _int(env["PORT"]), None, False, argv=argv)
    return None


def _command(doc: FlyDocument, stage: Stage | None) -> tuple[list[str], Path | None, int | None]:
    """The app group's argv, and where it is set (fly.toml path, or Dockerfile line)."""
    cfg = doc.config
    entry = stage.last("ENTRYPOINT") if stage else None
    prefix = list(entry.value) if entry is not None and entry.json else []
    groups = cfg.http_service.processes if cfg.http_service and cfg.http_service.processes else ()
    if cfg.processes:
        group = next((g for g in groups if g in cfg.processes), "app" if "app" in cfg.processes else None)
        group = group or next(iter(cfg.processes))
        return prefix + split_shell(cfg.processes[group]), ("processes", group), None
    if cfg.cmd:
        return prefix + cfg.cmd, ("experimental", "cmd"), None
    if stage is None:
        return [], None, None
    argv, entry, cmd = process_argv(stage)
    decider = cmd or entry
    return argv, None, decider.line if decider else None


def check_cross(doc: FlyDocument, model: DockerfileModel | None, target: str | None = None) -> list[Finding]:
    stage = model.stage(target) if model else None
    argv, fly_path, docker_line = _command(doc, stage)
    env = {**(stage.env() if stage else {}), **doc.config.env}
    served = served_by(argv, env) if argv else None
    out: list[Finding] = []

    def where(path: Path) -> tuple[int, int]:
        return doc.locator.find(path)

    def command_at() -> tuple[str, tuple[int, int]]:
        if fly_path is not None or model is None:
            return doc.file, where(fly_path or ())
        return model.file, (docker_line or 1, 1)

    for code, path, message, severity in _rules(doc, stage, served):
        if path is None:
            file, position = command_at()
            out.append(finding(code, file, position, message, severity=severity))
        elif isinstance(path, int):
            assert model is not None
            out.append(finding(code, model.file, (path, 1), message, severity=severity))
        else:
            out.append(finding(code, doc.file, where(path), message, severity=severity))
    return out


Hit = tuple[str, Path | int | None, str, Severity | None]


def _rules(doc: FlyDocument, stage: Stage | None, served: Served | None) -> Iterator[Hit]:
    cfg = doc.config
    port = cfg.internal_port
    port_path: Path = (
        ("http_service", "internal_port") if cfg.http_service else ("services", 0, "internal_port")
    )
    exposed = _exposed(stage)
    if port is not None and exposed and port not in exposed:
        shown = " ".join(str(p) for p in sorted(exposed))
        yield (
            "XF101",
            port_path,
            f"internal_port {port} is not EXPOSEd by the Dockerfile (EXPOSE {shown})",
            None,
        )
    if served is None:
        return
    if port is not None and served.port is not None and served.port != port:
        how = "serves on" if served.certain else "is told PORT="
        severity = None if served.certain else Severity.WARNING
        yield "XF102", port_path, f"internal_port {port}, but {served.program} {how} {served.port}", severity
    if served.host in LOOPBACK:
        default = " (its default)" if "--host" not in served.argv and "--bind" not in served.argv else ""
        yield (
            "XF103",
            None,
            f"{served.program} binds {served.host}{default}: Fly's proxy cannot reach it; bind 0.0.0.0",
            None,
        )
    if served.program != "aibridge":
        return
    for path, metrics_port, metrics_path in cfg.metrics:
        if metrics_port != served.metrics_port or (metrics_path or "/metrics") != served.metrics_path:
            yield (
                "XF104",
                (*path, "port" if metrics_port != served.metrics_port else "path"),
                f"[metrics] {metrics_port}{metrics_path or ''}, but aibridge serves metrics on "
                f"{served.metrics_port}{served.metrics_path}",
                None,
            )
    for check in cfg.checks:
        if check.http_path and check.http_path.split("?")[0] not in served.health_paths:
            yield (
                "XF105",
                (*check.path, "path"),
                f"check path {check.http_path} is not served by aibridge (/health)",
                None,
            )
    kill = cfg.kill_timeout_s if cfg.kill_timeout_s is not None else 5.0
    if served.drain_s is not None and kill < served.drain_s:
        shown = "kill_timeout" if cfg.kill_timeout_s is not None else "kill_timeout (unset: Fly's 5s default)"
        yield (
            "XF106",
            ("kill_timeout",) if cfg.kill_timeout_s is not None else (),
            f"{shown} {kill:g}s < the server's {served.drain_s:g}s drain: SIGKILL cuts connections mid-drain",
            None,
        )
    yield from _healthcheck(cfg.health_check_path, stage)


def _exposed(stage: Stage | None) -> set[int]:
    ports: set[int] = set()
    for instruction in stage.all("EXPOSE") if stage else []:
        for value in instruction.value:
            number = value.partition("/")[0]
            if number.isdigit():
                ports.add(int(number))
    return ports


def _healthcheck(fly_path: str | None, stage: Stage | None) -> Iterator[Hit]:
    health = stage.last("HEALTHCHECK") if stage else None
    if health is None or fly_path is None:
        return
    match = _URL_PATH.search(" ".join(health.value))
    if match and match.group(1).split("?")[0] != fly_path.split("?")[0]:
        yield (
            "XF107",
            health.line,
            f"HEALTHCHECK probes {match.group(1)}, fly.toml's check probes {fly_path}",
            None,
        )
