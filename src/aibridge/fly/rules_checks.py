"""fly.toml rules on health checks (validation.go validateChecksSection and
validateSingleServiceCheckDuration, machines.go ToMachineConfig), and the process-group helpers."""

from __future__ import annotations

from collections.abc import Iterator

from aibridge.fly.locate import Path
from aibridge.fly.model import Check, FlyDocument
from aibridge.fly.units import format_seconds

__all__ = ("check_rules", "defined_groups", "group_names", "table_at")


def defined_groups(doc: FlyDocument) -> list[str]:
    """The keys of flyctl's Config.Processes after patchProcesses (legacy items need only a name)."""
    raw = doc.data.get("processes")
    if isinstance(raw, dict):
        return [str(k) for k in raw]
    if isinstance(raw, list):
        return [str(p["name"]) for p in raw if isinstance(p, dict) and "name" in p]
    return []


def group_names(doc: FlyDocument) -> set[str]:
    """processgroups.go ProcessNames: the defined groups, else the default group "app"."""
    return set(defined_groups(doc)) or {"app"}


def table_at(doc: FlyDocument, path: Path) -> dict[str, object]:
    node: object = doc.data
    for part in path:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return {}
    return node if isinstance(node, dict) else {}


def check_rules(doc: FlyDocument) -> Iterator[tuple[str, Path, str]]:
    for check in doc.config.checks:
        label = f"Check '{check.name}'"
        table = table_at(doc, check.path)
        if check.origin == "checks":
            yield from _toplevel_check(doc, check, label, table)
        else:
            yield from _service_check(check, table)


def _toplevel_check(
    doc: FlyDocument, check: Check, label: str, table: dict[str, object]
) -> Iterator[tuple[str, Path, str]]:
    """validation.go validateChecksSection, and machines.go ToMachineConfig for the port."""
    if check.type not in ("http", "tcp"):
        yield (
            "FLY112",
            check.path,
            f"flyctl: \"Can't process top level check '{check.name}': Missing or invalid check type, "
            "must be 'http' or 'tcp'\"",
        )
    if "port" not in table and doc.config.http_service is None:
        group = (*check.processes, *defined_groups(doc), "app")[0]
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


def _service_check(check: Check, table: dict[str, object]) -> Iterator[tuple[str, Path, str]]:
    """validation.go validateSingleServiceCheckDuration: flyctl clamps to 1s..1m and warns."""
    kind = check.type.upper()
    values = (
        ("interval", "an interval", check.interval_s, False),
        ("timeout", "a timeout", check.timeout_s, False),
        ("grace_period", "a grace period", check.grace_period_s, True),
    )
    for attr, description, value, zero_ok in values:
        # A bare number under [http_service] is nanoseconds: FLY105 says so already.
        if value is None or (check.origin == "http_service" and isinstance(table.get(attr), int | float)):
            continue
        shown = format_seconds(value)
        if zero_ok and value != 0 and value < 1:
            text = f"{description} that is non-zero and less than 1 second ({shown})"
            yield (
                "FLY114",
                (*check.path, attr),
                f'flyctl: "WARN Service {kind} check has {text}; this will be raised to 1 second"',
            )
        elif not zero_ok and value < 1:
            text = f"{description} less than 1 second ({shown})"
            yield (
                "FLY114",
                (*check.path, attr),
                f'flyctl: "WARN Service {kind} check has {text}; this will be raised to 1 second"',
            )
        elif value > 60:
            text = f"{description} greater than 1 minute ({shown})"
            yield (
                "FLY113",
                (*check.path, attr),
                f'flyctl: "WARN Service {kind} check has {text}; this will be lowered to 1 minute"',
            )
