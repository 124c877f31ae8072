"""Checks of single fly.toml values: types, Go durations, sizes and the enumerations flyctl accepts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from aibridge.fly.locate import Path
from aibridge.fly.schema import Kind, Value
from aibridge.fly.units import duration_seconds, format_seconds, parse_memory_mb, parse_volume_gb

__all__ = ("Issue", "dotted", "go_type", "json_kind", "value_issues")


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    path: Path
    message: str
    fix: str | None = None


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path if isinstance(p, str))


def go_type(value: object) -> str:
    """The Go type name flyctl's ``%T`` prints for a decoded TOML value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "time.Time"


def json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def value_issues(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    """Problems with one value; ``None`` stands for a plain type error."""
    name, kind = dotted(path), spec.kind
    if isinstance(value, dt.date | dt.time):
        yield None
    elif kind is Kind.STR:
        if not isinstance(value, str):
            yield None
        elif spec.choices and value not in spec.choices:
            quote = f'; flyctl: "invalid restart policy: {value}"' if name == "restart.policy" else ""
            yield Issue(
                "FLY006", path, f"`{name} = {value!r}` is not one of {', '.join(spec.choices)}{quote}"
            )
    elif kind in (Kind.INT, Kind.INT_CAST):
        if kind is Kind.INT_CAST and isinstance(value, str):
            if not value.strip().lstrip("+-").isdigit():
                yield Issue(
                    "FLY003",
                    path,
                    f"flyctl: \"Can not convert '{value}' to integer: strconv.Atoi: parsing "
                    f'"{value}": invalid syntax"',
                    "Write the port as a number.",
                )
        elif isinstance(value, bool) or not isinstance(
            value, int | (float if kind is Kind.INT_CAST else int)
        ):
            yield None
    elif kind is Kind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield None
    elif kind is Kind.BOOL:
        if not isinstance(value, bool):
            yield None
    elif kind is Kind.STRLIST:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            yield None
    elif kind is Kind.STR_OR_LIST:
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            yield None
    else:
        yield from _special(spec, value, path, name)


def _special(spec: Value, value: object, path: Path, name: str) -> Iterator[Issue | None]:
    kind = spec.kind
    if kind is Kind.DURATION:
        if isinstance(value, bool) or not isinstance(value, int | str):
            yield None
            return
        try:
            seconds = duration_seconds(value, spec.unit)
        except ValueError as error:
            yield Issue("FLY106", path, f'`{name} = {value!r}`: flyctl: "{error}"')
            return
        if isinstance(value, int) and spec.unit == "ns" and value != 0:
            yield Issue(
                "FLY105",
                path,
                f"`{name} = {value}` is a bare integer, which flyctl reads as nanoseconds here: "
                f"{format_seconds(seconds)}",
                f'Write it with a unit, e.g. {name.rsplit(".", 1)[-1]} = "{value}ms" or "{value}s".',
            )
    elif kind is Kind.MEMORY:
        try:
            parse_memory_mb(value)
        except ValueError as error:
            yield Issue("FLY104", path, f'`{name} = {value!r}`: flyctl: "{error}"')
    elif kind is Kind.VOLSIZE:
        try:
            size = parse_volume_gb(value)
        except ValueError as error:
            yield Issue("FLY119", path, f"`{name} = {value!r}`: {error}")
            return
        if size < 1:
            yield Issue(
                "FLY119",
                path,
                f'`{name} = {value!r}` is below the 1GB minimum of a volume; flyctl: "mount has an '
                f"initial_size '{value}' value which is smaller than 1GB\"",
            )
    elif kind is Kind.AUTOSTOP:
        if isinstance(value, str) and value not in ("off", "stop", "suspend"):
            yield Issue(
                "FLY006",
                path,
                f'flyctl: "invalid autostop string value "{value}""',
                'Use true, false, "stop" or "suspend".',
            )
        elif not isinstance(value, bool | str):
            yield None
    elif kind in (Kind.STRMAP, Kind.HEADERS):
        yield from _string_map(spec, value, path, name)
    elif kind is Kind.ENV:
        if not (
            isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
        ):
            yield Issue(
                "FLY002",
                path,
                f"flyctl: \"Do not know how to process 'env' section of type: {go_type(value)}\"",
            )
    elif kind is Kind.ANYMAP:
        if not isinstance(value, dict):
            yield None
    elif name == "processes" and not isinstance(value, dict | list):
        yield Issue("FLY002", path, f'flyctl: "Unknown processes type: {go_type(value)}"')


def _string_map(spec: Value, value: object, path: Path, name: str) -> Iterator[Issue | None]:
    if spec.kind is Kind.HEADERS and isinstance(value, list):
        for index, item in enumerate(value):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)):
                yield Issue(
                    "FLY003", (*path, index), f"`{name}` items must be {{name = ..., value = ...}} tables"
                )
        return
    if not isinstance(value, dict):
        yield None
        return
    struct = "Build" if name == "build.args" else "ServiceHTTPCheck"
    for key, item in value.items():
        if not isinstance(item, str):
            yield Issue(
                "FLY003",
                (*path, key),
                f'`{name}.{key}` must be a string; flyctl: "json: cannot unmarshal {json_kind(item)} '
                f'into Go struct field {struct}.{name} of type string"',
                f'Quote the value: {key} = "{item}".',
            )
