"""Values whose decode is not a plain JSON type check: sizes, enums with their own UnmarshalJSON,
string maps, check headers and [processes] (see :mod:`aibridge.fly.values` for the severity rule)."""

from __future__ import annotations

from collections.abc import Iterator

from aibridge.fly.locate import Path
from aibridge.fly.schema import Kind, Value
from aibridge.fly.values import (
    Issue,
    dotted,
    go_type,
    int_ok,
    is_datetime,
    json_kind,
    memory_issue,
    volume_issue,
)

__all__ = ("special_issues",)

_PERSIST = ("", "never", "restart", "always")


def special_issues(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    kind, name = spec.kind, dotted(path)
    if kind is Kind.MEMORY:
        yield from memory_issue(spec, value, path)
    elif kind is Kind.VOLSIZE:
        yield from volume_issue(spec, value, path)
    elif kind is Kind.AUTOSTOP:
        # fly-go MachineAutostop.UnmarshalJSON: a bool, or "off"/"stop"/"suspend".
        if isinstance(value, str) and value not in ("off", "stop", "suspend"):
            yield Issue(
                "FLY006",
                path,
                f'flyctl: "invalid autostop string value "{value}""',
                'Use true, false, "stop" or "suspend".',
            )
        elif not isinstance(value, bool | str) or is_datetime(value):
            yield Issue("FLY003", path, f'`{name}`: flyctl: "autostop value is not a valid bool or string"')
    elif kind is Kind.PERSIST:
        # fly-go MachinePersistRootfs.UnmarshalJSON: one of the strings, or an integer 0-3.
        if isinstance(value, str) and value not in _PERSIST:
            yield Issue("FLY003", path, f'flyctl: "invalid persist_rootfs string value "{value}""')
        elif int_ok(value) and not 0 <= int(value) <= 3:  # type: ignore[call-overload]
            yield Issue("FLY003", path, f'flyctl: "invalid persist_rootfs int value {int(value)}"')  # type: ignore[call-overload]
        elif not isinstance(value, str) and not int_ok(value):
            yield Issue(
                "FLY003",
                path,
                f'`{name}` must be one of never, restart, always; flyctl: "json: cannot unmarshal '
                f'{json_kind(value)} into Go value of type string"',
            )
    elif kind is Kind.STRMAP:
        yield from _string_map(value, path, "Build")
    elif kind is Kind.HEADERS:
        if spec.patched:
            yield from _patched_headers(value, path)
        else:
            yield from _string_map(value, path, "ServiceHTTPCheck")
    elif kind is Kind.PROCESSES:
        yield from _processes(value, path)
    elif kind is Kind.ENV:
        if not (
            isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
        ):
            yield Issue(
                "FLY002",
                path,
                f"flyctl: \"Do not know how to process 'env' section of type: {go_type(value)}\"",
            )
    elif kind is Kind.ANYMAP and not isinstance(value, dict):
        yield None


def _string_map(value: object, path: Path, struct: str) -> Iterator[Issue | None]:
    """A Go map[string]string decoded straight from JSON: values must be strings."""
    name = dotted(path)
    if not isinstance(value, dict):
        yield None
        return
    for key, item in value.items():
        if is_datetime(item):
            yield Issue(
                "FLY127",
                (*path, key),
                f"`{name}.{key}` is a TOML date/time: flyctl turns it into the text {item.isoformat()!r}",
                f'Quote the value: {key} = "{item.isoformat()}".',
            )
        elif not isinstance(item, str):
            yield Issue(
                "FLY003",
                (*path, key),
                f'`{name}.{key}` must be a string; flyctl: "json: cannot unmarshal {json_kind(item)} '
                f'into Go struct field {struct}.{name} of type string"',
                f'Quote the value: {key} = "{item}".',
            )


def _patched_headers(value: object, path: Path) -> Iterator[Issue | None]:
    """patches.go ``_patchCheckHeaders``: a table (values castToString'd) or [{name, value}] items."""
    if isinstance(value, dict):
        return
    if not isinstance(value, list):
        yield Issue("FLY003", path, f'`{dotted(path)}`: flyctl: "Unsupported headers format: {value!r}"')
        return
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            yield Issue("FLY003", (*path, index), f'flyctl: "Can\'t cast {item!r} into map[string]any"')
            return
        if "name" not in item:
            yield Issue(
                "FLY003",
                (*path, index),
                f"`{dotted(path)}` items must be {{name = ..., value = ...}} tables; flyctl: "
                f'"Unsupported headers format {item!r}"',
            )
            return


def _processes(value: object, path: Path) -> Iterator[Issue | None]:
    """[processes]: a table of command strings (the legacy [[processes]] name/command form is
    castToString'd by ``patchProcesses``); then JSON into map[string]string."""
    if isinstance(value, list):
        return
    if not isinstance(value, dict):
        yield Issue("FLY002", path, f'flyctl: "Unknown processes type: {go_type(value)}"')
        return
    for key, item in value.items():
        if is_datetime(item):
            yield Issue(
                "FLY127",
                (*path, key),
                f"[processes] {key} is a TOML date/time, not a command: flyctl runs {item.isoformat()!r}",
            )
        elif not isinstance(item, str):
            yield Issue(
                "FLY003",
                (*path, key),
                f'[processes] {key} must be a command string; flyctl: "json: cannot unmarshal '
                f'{json_kind(item)} into Go struct field Config.processes of type string"',
                f'Write it as one string: {key} = "{_joined(item)}".',
            )


def _joined(item: object) -> str:
    return " ".join(map(str, item)) if isinstance(item, list) else str(item)
