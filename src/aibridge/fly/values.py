"""Checks of single fly.toml values, as flyctl decodes them: patches.go first, then Go's JSON
decoder into the appconfig structs (``mapToConfig``), then the checks of validation.go.

A value flyctl cannot decode is an error (FLY003 and friends); a value it silently drops, truncates
or stringifies is a warning (FLY127); a value it passes on to the platform unchecked is a warning
naming the values the platform knows (FLY126).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from aibridge.fly.locate import Path
from aibridge.fly.schema import Kind, Value
from aibridge.fly.units import duration_seconds, format_seconds, parse_memory_mb, parse_volume_gb

__all__ = ("Issue", "dotted", "go_type", "int_ok", "is_datetime", "json_kind", "value_issues")

_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    path: Path
    message: str
    fix: str | None = None


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path if isinstance(p, str))


def go_type(value: object) -> str:
    """The Go type name flyctl's ``%T`` prints for a value go-toml v2 decoded."""
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
    if isinstance(value, dt.datetime):
        return "time.Time" if value.tzinfo else "toml.LocalDateTime"
    return "toml.LocalDate" if isinstance(value, dt.date) else "toml.LocalTime"


def is_datetime(value: object) -> bool:
    """A TOML date, time or datetime: go-toml's types marshal to JSON strings (MarshalText)."""
    return isinstance(value, dt.date | dt.time)


def json_kind(value: object) -> str:
    """How Go's JSON decoder names the value in ``cannot unmarshal X``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def int_ok(value: object, low: int = -_INT64, high: int = _INT64 - 1) -> bool:
    """Whether a number survives flyctl's JSON round trip into a Go integer: json.Marshal writes
    an integral float64 below 1e21 without a fraction, so ``8080.0`` decodes as 8080."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer() and abs(value) < 1e21 and low <= value <= high
    return isinstance(value, int) and low <= value <= high


def _stringified(path: Path, value: object) -> Issue:
    text = value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    return Issue(
        "FLY127",
        path,
        f"`{dotted(path)}` is a TOML date/time, not a string: flyctl turns it into the text {text!r}",
        f'Quote the value if the text is what you mean: "{text}".',
    )


def value_issues(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    """Problems with one value; ``None`` stands for a plain JSON type error (an error)."""
    kind = spec.kind
    if kind is Kind.STR:
        if is_datetime(value):
            yield _stringified(path, value)
        elif not isinstance(value, str):
            yield None
        elif spec.choices and value not in spec.choices:
            yield _choice(spec, value, path)
    elif kind in (Kind.INT, Kind.UINT32):
        high = 2**32 - 1 if kind is Kind.UINT32 else _INT64 - 1
        if not int_ok(value, 0 if kind is Kind.UINT32 else -_INT64, high):
            yield None
    elif kind is Kind.INT_CAST:
        yield from _int_cast(value, path)
    elif kind is Kind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield None
    elif kind is Kind.BOOL:
        if not isinstance(value, bool):
            yield None
    elif kind is Kind.STRLIST:
        if not isinstance(value, list) or not all(isinstance(v, str) or is_datetime(v) for v in value):
            yield None
        else:
            yield from (_stringified((*path, i), v) for i, v in enumerate(value) if is_datetime(v))
    elif kind is Kind.STR_OR_LIST:
        # patches.go stringOrSliceToSlice: a string or a list of strings, nothing else.
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            yield Issue(
                "FLY003",
                path,
                f'`{dotted(path)}` must be a string or a list of strings; flyctl: "could not cast '
                f'{value!r} of type {go_type(value)} to []string on {path[-1]}"',
            )
    elif kind is Kind.DURATION:
        yield from _duration(spec, value, path)
    else:
        from aibridge.fly.values_special import special_issues

        yield from special_issues(spec, value, path)


def _choice(spec: Value, value: str, path: Path) -> Issue:
    name = dotted(path)
    known = ", ".join(spec.choices)
    if not spec.enforced:
        return Issue(
            "FLY126",
            path,
            f"`{name} = {value!r}` is not one of {known}: flyctl passes it through unchecked and the "
            "platform may refuse it at deploy",
        )
    if name == "restart.policy":
        quote = f"invalid restart policy: {value}"
    else:
        quote = f"Invalid value '{value}' for compression. Valid options are 'gzip', 'zstd', or leave unset."
    return Issue("FLY006", path, f'`{name} = {value!r}` is not one of {known}; flyctl: "{quote}"')


def _int_cast(value: object, path: Path) -> Iterator[Issue | None]:
    """patches.go ``castToInt`` on [[services]] internal_port and ports.port."""
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]+", value):  # strconv.Atoi: no spaces, one sign
            yield Issue(
                "FLY003",
                path,
                f"flyctl: \"Can not convert '{value}' to integer: strconv.Atoi: parsing "
                f'"{value}": invalid syntax"',
                "Write the port as a number.",
            )
    elif isinstance(value, float) and not isinstance(value, bool):
        if not value.is_integer():
            yield Issue(
                "FLY127",
                path,
                f"`{dotted(path)} = {value}`: flyctl truncates it to {int(value)}",
                f"Write {int(value)}.",
            )
    elif isinstance(value, bool) or not isinstance(value, int):
        yield Issue("FLY003", path, f'`{dotted(path)}`: flyctl: "Unknown type for cast: {go_type(value)}"')


def _duration(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    name = dotted(path)
    if spec.patched and (value == "" or not isinstance(value, str | int | float) or isinstance(value, bool)):
        # _castDuration maps "" and every non-number, non-string to nil: the key is as good as unset.
        if value != "":
            yield Issue(
                "FLY127",
                path,
                f"`{name} = {value!r}` is not a duration: flyctl drops it and the default applies",
                'Write a duration string such as "10s".',
            )
        return
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        what = "string" if is_datetime(value) else go_type(value)
        yield Issue("FLY106", path, f'`{name} = {value!r}`: flyctl: "unknown duration type: {what}"')
        return
    try:
        seconds = duration_seconds(value, spec.unit)
    except ValueError as error:
        yield Issue("FLY106", path, f'`{name} = {value!r}`: flyctl: "{error}"')
        return
    if spec.unit == "ns" and value != 0 and not isinstance(value, str):
        yield Issue(
            "FLY105",
            path,
            f"`{name} = {value}` is a bare number, which flyctl reads as nanoseconds here: "
            f"{format_seconds(seconds)}",
            f'Write it with a unit, e.g. {name.rsplit(".", 1)[-1]} = "{value}ms" or "{value}s".',
        )
    elif isinstance(value, float) and not value.is_integer():
        yield Issue(
            "FLY127",
            path,
            f"`{name} = {value}`: flyctl truncates the number to {int(value)}{spec.unit} "
            f"({format_seconds(seconds)})",
            f'Write it as a string with a unit, e.g. "{value}{spec.unit}".',
        )


def memory_issue(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    if not spec.patched and not isinstance(value, str):
        yield None  # [deploy.release_command_vm] memory is a string field, not patched
        return
    try:
        parse_memory_mb(value)
    except ValueError as error:
        yield Issue("FLY104", path, f'`{dotted(path)} = {value!r}`: flyctl: "{error}"')


def volume_issue(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    name = dotted(path)
    if not spec.patched and not isinstance(value, str):
        yield None  # only initial_size gets castToString (patchMounts)
        return
    try:
        size = parse_volume_gb(value)
    except ValueError as error:
        yield Issue("FLY119", path, f'`{name} = {value!r}`: flyctl: "{error}"')
        return
    if size < 1:
        what = name.rsplit(".", 1)[-1]
        article = "an" if what[0] in "aeiou" else "a"
        yield Issue(
            "FLY119",
            path,
            f'`{name} = {value!r}` is below the 1GB minimum of a volume; flyctl: "mount has {article} '
            f"{what} '{value}' value which is smaller than 1GB\"",
        )
