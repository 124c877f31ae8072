"""Rules on one fly.toml: its shape, then what flyctl checks and what it misses (fly.md §1-§2, §6)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from aibridge.fly.catalog import finding
from aibridge.fly.findings import Finding
from aibridge.fly.locate import Path
from aibridge.fly.model import VM_PRESETS, FlyDocument, Service
from aibridge.fly.shape import check_shape
from aibridge.fly.units import format_seconds

__all__ = ("check_fly_toml",)

STRATEGIES = ("canary", "rolling", "immediate", "bluegreen")


def check_fly_toml(doc: FlyDocument) -> list[Finding]:
    """Every fly.toml finding for one parsed document."""
    out = [
        finding(i.code, doc.file, doc.locator.find(i.path), i.message, i.fix) for i in check_shape(doc.data)
    ]
    for code, path, message in _semantic(doc):
        out.append(finding(code, doc.file, doc.locator.find(path), message))
    return out


def _semantic(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    cfg, data = doc.config, doc.data
    if cfg.app is None:
        yield (
            "FLY005",
            (),
            'no app name; flyctl: "the config for your app is missing an app name, add an app field '
            'to the fly.toml file or specify with the -a flag"',
        )
    yield from _services(doc)
    yield from _deploy(doc)
    yield from _checks(doc)
    yield from _commands(doc)
    for vm in cfg.vms:
        if vm.size is not None and vm.size not in VM_PRESETS:
            yield "FLY103", (*vm.path, "size"), f"unknown vm size {vm.size!r} (flyctl fails only at deploy)"
    for name in cfg.env:
        if name.upper().startswith("FLY_"):
            yield "FLY115", ("env", name), f"[env] {name}: names starting with FLY_ are reserved by Fly"
    port = cfg.internal_port
    for path, metrics_port, _ in cfg.metrics:
        if port is not None and metrics_port == port:
            yield (
                "FLY116",
                (*path, "port"),
                f"[metrics] port {metrics_port} is the internal_port: metrics would be public",
            )
    if cfg.kill_timeout_s is not None and cfg.kill_timeout_s > 300:
        yield (
            "FLY122",
            ("kill_timeout",),
            f"kill_timeout {format_seconds(cfg.kill_timeout_s)} is above Fly's 300s maximum",
        )
    build = data.get("build")
    if isinstance(build, dict):
        found = [k for k in ("image", "dockerfile", "builtin") if build.get(k)]
        found += ["buildpack"] if build.get("builder") or build.get("buildpacks") else []
        if len(found) > 1:
            yield "FLY121", ("build",), f'flyctl: "WARN more than one build configuration found: {found}"'


def _known_groups(doc: FlyDocument) -> set[str]:
    return set(doc.config.processes) or {"app"}


def _services(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    cfg = doc.config
    services: list[Service] = ([cfg.http_service] if cfg.http_service else []) + cfg.services
    groups = _known_groups(doc)
    for service in services:
        name = "[http_service]" if service.path == ("http_service",) else "[[services]]"
        table = _table_at(doc, service.path)
        if "internal_port" not in table:
            hint = ""
            if name == "[[services]]" and set(table) <= {"concurrency", "ports"}:
                hint = (
                    " (did you mean [http_service.concurrency]? [services.concurrency] creates a new service)"
                )
            yield (
                "FLY101",
                service.path,
                f"{name} has no internal_port{hint}; flyctl does not check this (#2521)",
            )
        soft, hard = service.soft_limit, service.hard_limit
        if soft is not None and hard is not None and soft > hard:
            yield (
                "FLY102",
                (*service.path, "concurrency", "soft_limit"),
                f"soft_limit {soft} > hard_limit {hard}",
            )

        if service.auto_stop in ("stop", "suspend") and service.auto_start is False:
            yield (
                "FLY107",
                (*service.path, "auto_start_machines"),
                f"{name}: auto_stop_machines stops machines, but auto_start_machines = false "
                "never starts them again",
            )
        for group in service.processes:
            if group not in groups:
                yield (
                    "FLY120",
                    (*service.path, "processes"),
                    f"flyctl: \"Service specifies '{group}' as one of its processes, "
                    'but no processes are defined with that name"',
                )


def _table_at(doc: FlyDocument, path: Path) -> dict[str, object]:
    node: object = doc.data
    for part in path:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return {}
    return node if isinstance(node, dict) else {}


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return not a or not b or bool(set(a) & set(b))


def _deploy(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    cfg = doc.config
    strategy = cfg.strategy
    where: Path = ("deploy", "strategy")
    if strategy is not None and strategy not in STRATEGIES:
        yield (
            "FLY108",
            where,
            f"flyctl: \"unsupported deployment strategy '{strategy}'; Apps v2 supports the following "
            'strategies: canary, rolling, immediate, bluegreen"',
        )
    if cfg.mounts and strategy == "canary":
        yield (
            "FLY109",
            where,
            'flyctl: "error canary deployment strategy is not supported when using mounted volumes"',
        )
    if cfg.mounts and strategy == "bluegreen":
        yield "FLY109", where, "bluegreen deployments cannot be used with volumes (a volume pins its machine)"
    if strategy == "bluegreen" and not cfg.checks:
        yield (
            "FLY109",
            where,
            'flyctl: "You need to define at least 1 check in order to use blue-green deployments..."',
        )
    if cfg.mounts and strategy in (None, "rolling"):
        yield (
            "FLY117",
            where if strategy else cfg.mounts[0].path,
            "rolling deploy with a volume: each machine is pinned to its volume, so a one-machine app is "
            "down while it is replaced",
        )
    for index, mount in enumerate(cfg.mounts):
        if not mount.destination:
            yield "FLY119", mount.path, "a mount without destination has nowhere to be mounted"
        if not mount.source:
            yield (
                "FLY124",
                mount.path,
                "a mount without source: fly deploy finds (or creates) volumes by this name",
            )
        if any(_overlap(mount.processes, other.processes) for other in cfg.mounts[:index]):
            yield (
                "FLY118",
                mount.path,
                "a second mount for one process group (one volume per machine); flyctl: "
                f"\"group '{(*mount.processes, 'app')[0]}' has more than one [[mounts]] section defined\"",
            )


def _checks(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    for check in doc.config.checks:
        label = f"Check '{check.name}'"
        table = _table_at(doc, check.path)
        if check.grace_period_s is not None and check.grace_period_s > 60:
            yield (
                "FLY113",
                (*check.path, "grace_period"),
                f"grace_period {format_seconds(check.grace_period_s)} is above Fly's 1 minute cap",
            )
        if check.origin == "checks":
            if check.type not in ("http", "tcp"):
                yield (
                    "FLY112",
                    check.path,
                    f"flyctl: \"Can't process top level check '{check.name}': Missing or invalid check type, "
                    "must be 'http' or 'tcp'\"",
                )
            if "port" not in table and doc.config.http_service is None:
                group = (*check.processes, *doc.config.processes, "app")[0]
                yield (
                    "FLY123",
                    check.path,
                    f"flyctl: \"{label} for process group '{group}' has no port set and the group has no "
                    'http_service to take it from"',
                )
            if check.interval_s is not None and check.interval_s < 2:
                shown = format_seconds(check.interval_s)
                yield (
                    "FLY110",
                    (*check.path, "interval"),
                    f'flyctl: "{label} interval is too short: {shown}, minimum is 2 seconds"',
                )
            if check.timeout_s is not None and check.timeout_s > 60:
                shown = format_seconds(check.timeout_s)
                yield (
                    "FLY111",
                    (*check.path, "timeout"),
                    f'flyctl: "{label} timeout is too long: {shown}, maximum is 60 seconds"',
                )
            continue
        kind = check.type.upper()
        for attr, value in (("interval", check.interval_s), ("timeout", check.timeout_s)):
            bare_ns = check.origin == "http_service" and isinstance(table.get(attr), int)
            if value is not None and value < 1 and not bare_ns:
                article = "an" if attr == "interval" else "a"
                yield (
                    "FLY114",
                    (*check.path, attr),
                    f'flyctl: "WARN Service {kind} check has {article} {attr} less than 1 second '
                    f'({format_seconds(value)}); this will be raised to 1 second"',
                )


def _commands(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    """Commands flyctl shell-splits before deploying (validation.go); unbalanced quotes fail there."""
    deploy = doc.data.get("deploy")
    release = deploy.get("release_command") if isinstance(deploy, dict) else None
    if isinstance(release, str) and not _splits(release):
        yield "FLY125", ("deploy", "release_command"), f"release_command cannot be shell-split: {release!r}"
    console = doc.data.get("console_command")
    if isinstance(console, str) and not _splits(console):
        yield "FLY125", ("console_command",), f"flyctl: \"Can't shell split console command: '{console}'\""
    for name, command in doc.config.processes.items():
        if not _splits(command):
            yield (
                "FLY125",
                ("processes", name),
                f"flyctl: \"Could not parse command for '{name}' process group; check [processes] section\"",
            )
    for index, mount in enumerate(doc.config.mounts):
        table = _table_at(doc, mount.path)
        retention = table.get("snapshot_retention")
        if isinstance(retention, int) and not 1 <= retention <= 60:
            yield (
                "FLY119",
                (*mount.path, "snapshot_retention"),
                f"flyctl: \"mount '{mount.source or index}' has a snapshot_retention value which is not "
                'between 1 and 60 days inclusive"',
            )
        threshold = table.get("auto_extend_size_threshold")
        if isinstance(threshold, int) and threshold != 0 and not 50 <= threshold <= 99:  # 0 = unset
            yield (
                "FLY119",
                (*mount.path, "auto_extend_size_threshold"),
                "auto_extend_size_threshold must be 50-99",
            )


def _splits(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True
