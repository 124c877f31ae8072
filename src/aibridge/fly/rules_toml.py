"""Rules on one fly.toml: its shape, then what flyctl checks and what it misses (fly.md §1-§2, §6)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from aibridge.fly.catalog import finding
from aibridge.fly.findings import Finding
from aibridge.fly.locate import Path
from aibridge.fly.model import VM_PRESETS, FlyDocument, Service
from aibridge.fly.rules_checks import check_rules, defined_groups, group_names, table_at
from aibridge.fly.shape import check_shape
from aibridge.fly.units import format_seconds, parse_volume_gb

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
    if not cfg.app:  # serde.go keeps app only when it is a string; "" is no name either
        yield (
            "FLY005",
            (),
            'no app name; flyctl: "the config for your app is missing an app name, add an app field '
            'to the fly.toml file or specify with the -a flag"',
        )
    yield from _services(doc)
    yield from _deploy(doc)
    yield from check_rules(doc)
    yield from _commands(doc)
    for vm in cfg.vms:
        if vm.size is not None and vm.size not in VM_PRESETS:
            yield "FLY103", (*vm.path, "size"), f"unknown vm size {vm.size!r} (flyctl fails only at deploy)"
    for name in cfg.env:
        if name.upper().startswith("FLY_"):
            yield "FLY115", ("env", name), f"[env] {name}: names starting with FLY_ are reserved by Fly"
    if cfg.kill_timeout_s is not None and cfg.kill_timeout_s > 300:
        yield (
            "FLY122",
            ("kill_timeout",),
            f"kill_timeout {format_seconds(cfg.kill_timeout_s)} is above Fly's 300s maximum",
        )
    yield from _build(data.get("build"))
    yield from _restart(doc)


def _build(build: object) -> Iterator[tuple[str, Path, str]]:
    if not isinstance(build, dict):
        return
    # config.go BuildStrategies, in its order; validation.go validateBuildStrategies warns on 2+.
    found = [f'the "{build["image"]}" docker image'] if build.get("image") else []
    found += ["a buildpack"] if build.get("builder") or build.get("buildpacks") else []
    if build.get("dockerfile"):
        found.append(f'the "{build["dockerfile"]}" dockerfile')
    elif build.get("build-target") or build.get("build_target"):
        found.append("a dockerfile")
    found += [f'the "{build["builtin"]}" builtin image'] if build.get("builtin") else []
    if len(found) > 1:
        shown = ", ".join(str(f) for f in found)
        yield "FLY121", ("build",), f'flyctl: "WARN more than one build configuration found: [{shown}]"'
    level = build.get("compression_level")
    if isinstance(level, int) and not isinstance(level, bool) and not 0 <= level <= 9:
        # validation.go validateCompression -> ValidateCompressionLevelFlag
        yield (
            "FLY006",
            ("build", "compression_level"),
            f"flyctl: \"Invalid value '{level}' for compression level. Must be an integer between 0 and 9.\"",
        )


def _restart(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    """validation.go validateRestartPolicy: every [[restart]] needs a policy and known groups."""
    restarts = doc.data.get("restart")
    groups = group_names(doc)
    for index, item in enumerate(restarts if isinstance(restarts, list) else []):
        if not isinstance(item, dict):
            continue
        if "policy" not in item or item.get("policy") == "":
            yield (
                "FLY006",
                ("restart", index),
                '[[restart]] has no policy; flyctl: "invalid restart policy: "',
            )
        named = item.get("processes")
        for group in named if isinstance(named, list) else []:
            if isinstance(group, str) and group not in groups:
                yield (
                    "FLY120",
                    ("restart", index, "processes"),
                    f"flyctl: \"Restart policy specifies '{group}' as one of its processes, but no "
                    'processes are defined with that name"',
                )


def _services(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    cfg = doc.config
    services: list[Service] = ([cfg.http_service] if cfg.http_service else []) + cfg.services
    groups, defined = group_names(doc), len(defined_groups(doc))
    for service in services:
        name = "[http_service]" if service.path == ("http_service",) else "[[services]]"
        table = table_at(doc, service.path)
        if "internal_port" not in {str(k).lower() for k in table}:  # encoding/json folds case
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
        if not table.get("processes") and defined:
            # validation.go validateServicesSection
            yield (
                "FLY120",
                service.path,
                f'flyctl: "Service has no processes set but app has {defined} processes defined; update '
                'fly.toml to set processes for each service"',
            )
        if name == "[[services]]" and not table.get("ports"):
            yield (
                "FLY128",
                service.path,
                'flyctl: "WARNING: Service must expose at least one port. Add a [[services.ports]] '
                'section to fly.toml"',
            )
        for group in service.processes:
            if group not in groups:
                yield (
                    "FLY120",
                    (*service.path, "processes"),
                    f"flyctl: \"Service specifies '{group}' as one of its processes, "
                    'but no processes are defined with that name"',
                )


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
            # flyctl's validateMounts says so only for a flattened group (fly config validate
            # --process-groups); a machine takes one volume, so the deploy of that group fails.
            group = (*mount.processes, *defined_groups(doc), "app")[0]
            yield (
                "FLY118",
                mount.path,
                f"a second [[mounts]] for process group '{group}': a machine takes one volume",
            )


def _commands(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    """Commands flyctl shell-splits before deploying (validation.go); unbalanced quotes fail there."""
    deploy = doc.data.get("deploy")
    release = deploy.get("release_command") if isinstance(deploy, dict) else None
    if isinstance(release, str) and not _splits(release):
        yield (
            "FLY125",
            ("deploy", "release_command"),
            f"flyctl: \"Can't shell split release command: '{release}'\"",
        )
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
        table = table_at(doc, mount.path)
        retention = table.get("snapshot_retention")
        if isinstance(retention, int) and not 1 <= retention <= 60:
            yield (
                "FLY119",
                (*mount.path, "snapshot_retention"),
                f"flyctl: \"mount '{mount.source or index}' has a snapshot_retention value which is not "
                'between 1 and 60 days inclusive"',
            )
        yield from _auto_extend(mount.source or "", mount.path, table)


def _auto_extend(source: str, path: Path, table: dict[str, object]) -> Iterator[tuple[str, Path, str]]:
    """validation.go validateMounts: the three auto_extend_size_* settings, as flyctl checks them."""
    threshold = table.get("auto_extend_size_threshold")
    threshold = threshold if isinstance(threshold, int) and not isinstance(threshold, bool) else 0
    sizes = []
    for key in ("auto_extend_size_increment", "auto_extend_size_limit"):
        raw = table.get(key)
        if raw is not None and not isinstance(raw, str):
            return  # a decode error (FLY003): flyctl stops before validateMounts
        try:
            sizes.append(parse_volume_gb(raw) if isinstance(raw, str) and raw else 0)
        except ValueError:
            sizes.append(0)  # FLY119 on the value itself already
    increment, limit = sizes
    if threshold == 0 and increment == 0 and limit == 0:
        return
    mount = f"mount '{source}'"
    if threshold != 0 and increment == 0 and limit == 0:
        yield (
            "FLY119",
            path,
            f'flyctl: "{mount} auto_extend_size_threshold, auto_extend_size_increment and '
            'auto_extend_size_limit must be all defined or none"',
        )
    if not 50 <= threshold <= 99:
        where = (*path, "auto_extend_size_threshold") if threshold else path
        yield "FLY119", where, f'flyctl: "{mount} auto_extend_size_threshold must be between 50 and 99"'
    if not 1 <= increment <= 100:
        where = (*path, "auto_extend_size_increment") if increment else path
        yield "FLY119", where, f'flyctl: "{mount} auto_extend_size_increment must be between 1GB and 100GB"'
    if limit != 0 and not 1 <= limit <= 500:
        yield (
            "FLY119",
            (*path, "auto_extend_size_limit"),
            f'flyctl: "{mount} auto_extend_size_limit must be between 1GB and 500GB"',
        )


def _splits(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True
