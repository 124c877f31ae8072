"""Rules across fly.toml, the Dockerfile and the server: do the ports, paths and timeouts agree?"""

from __future__ import annotations

import posixpath
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

__all__ = ("Served", "check_cross", "served_by", "volume_unwritable")

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
            f"{served.program} binds {served.host}{default}: Fly's proxy cannot reach it; "
            "bind :: (dual-stack, also reachable over 6PN) or 0.0.0.0",
            None,
        )
    yield from _volume_owner(doc, stage)
    if served.program != "aibridge":
        return
    yield from _store_durability(doc, stage, {**(stage.env() if stage else {}), **cfg.env})
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


def volume_unwritable(stage: Stage, destination: str) -> str | None:
    """Why the app in ``stage`` cannot write a Fly volume at ``destination``, or None if it can.

    A new Fly volume is an ext4 device mounted root-owned over the image's directory, so a
    ``RUN chown`` in the image does not help: the process must start as root, chown the mount,
    then drop privileges (what ``aibridge init --volume`` writes).
    """
    user = stage.last("USER")
    name = user.value[0].split(":")[0] if user and user.value else "root"
    argv, _, _ = process_argv(stage)
    script = " ".join(argv)
    dropped = unwrap(argv).user
    if name not in ("root", "0"):
        return (
            f"USER {name} with no ownership fix: the volume at {destination} is root-owned on Fly, "
            "so the app cannot write it"
        )
    if dropped is not None and dropped not in ("root", "0") and "chown" not in script:
        return (
            f"the entrypoint drops to {dropped} without chowning {destination}: the root-owned "
            "volume stays unwritable to the app"
        )
    return None


def _volume_owner(doc: FlyDocument, stage: Stage | None) -> Iterator[Hit]:
    if stage is None:
        return
    for mount in doc.config.mounts:
        problem = volume_unwritable(stage, mount.destination or "/data")
        if problem is not None:
            yield "XF109", (*mount.path, "destination"), problem, None


def _inside(path: str, root: str) -> bool:
    root = posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _persist_rootfs(doc: FlyDocument) -> str:
    """``[[vm]] persist_rootfs`` of the VM that applies to every group (fly-go MachineGuest)."""
    vms = doc.data.get("vm", doc.data.get("compute"))
    tables = [vms] if isinstance(vms, dict) else [t for t in vms or [] if isinstance(t, dict)]
    general = next((t for t in tables if not t.get("processes")), tables[0] if tables else {})
    value = general.get("persist_rootfs", "never")
    return value if isinstance(value, str) else "never"


def _store_durability(doc: FlyDocument, stage: Stage | None, env: dict[str, str]) -> Iterator[Hit]:
    """XF108: the SQLite store on the root filesystem, which Fly resets (fly.io/docs/apps/restart)."""
    if env.get("AI_BRIDGE_REDIS_URL") or env.get("AI_BRIDGE_STORE", _DEFAULTS["AI_BRIDGE_STORE"]) != "sqlite":
        return
    data_dir = env.get("AI_BRIDGE_DATA_DIR") or _DEFAULTS["AI_BRIDGE_DATA_DIR"] or "./data"
    workdir = "/"
    for instruction in stage.all("WORKDIR") if stage else []:
        workdir = posixpath.join(workdir, instruction.value[0]) if instruction.value else workdir
    absolute = posixpath.normpath(posixpath.join(workdir, data_dir))
    cfg = doc.config
    if any(m.destination and _inside(absolute, m.destination) for m in cfg.mounts):
        return
    services = [cfg.http_service] if cfg.http_service else list(cfg.services)
    auto_stop = next((s.auto_stop for s in services if s.auto_stop not in (None, "off")), None)
    raw = doc.data.get("http_service")
    minimum = raw.get("min_machines_running") if isinstance(raw, dict) else None
    shown = data_dir if absolute == data_dir else f"{data_dir} (= {absolute})"
    persist = _persist_rootfs(doc)
    where = ("env", "AI_BRIDGE_DATA_DIR") if "AI_BRIDGE_DATA_DIR" in cfg.env else ()
    if persist == "always":
        message = (
            f'the SQLite store in {shown} is on the root filesystem: persist_rootfs = "always" keeps it '
            "across stops and deploys, but not a host failure or a replaced machine, and it has no snapshots"
        )
        yield "XF108", where, message, Severity.WARNING
        return
    if persist == "restart":
        message = (
            f'the SQLite store in {shown} is on the root filesystem: persist_rootfs = "restart" keeps it '
            "across stops and restarts, but not reliably across deploys (machine updates), a host failure "
            "or a replaced machine, and it has no snapshots"
        )
        yield "XF108", where, message, Severity.WARNING
        return
    lost = "queued envelopes, history and unacknowledged deliveries"
    if auto_stop is not None or minimum == 0:
        why = f'auto_stop_machines = "{auto_stop}"' if auto_stop else "min_machines_running = 0"
        message = (
            f"the SQLite store in {shown} is on the root filesystem, which Fly resets on every stop, "
            f"restart and deploy; with {why} an idle machine stops and loses its {lost}"
        )
        at: Path = ("http_service", "auto_stop_machines") if auto_stop and cfg.http_service else where
        yield "XF108", at, message, None
    else:
        message = (
            f"the SQLite store in {shown} is on the root filesystem, which Fly resets on every restart "
            f"and deploy: each one loses the {lost}"
        )
        yield "XF108", where, message, Severity.WARNING
