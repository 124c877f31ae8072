"""Walk a parsed fly.toml against the schema: wrong shapes, wrong types, unknown keys.

Messages quote the error flyctl itself prints for the same input (fly.md §1), so users can search it.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aibridge.fly.locate import Path
from aibridge.fly.schema import CONCURRENCY, ROOT, Form, Kind, NamedMap, Section, Spec, Value
from aibridge.fly.units import duration_seconds, format_seconds, parse_memory_mb, parse_volume_gb

__all__ = ("Issue", "check_shape")


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    path: Path
    message: str
    fix: str | None = None


def _go_type(value: object) -> str:
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


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path if isinstance(p, str))


def _where(spec_index: dict[str, list[str]], key: str) -> str:
    places = spec_index.get(key, [])
    return ", ".join(f"[{p}]" if p else "the top level" for p in places[:3])


def _index(section: Section, prefix: str, out: dict[str, list[str]]) -> dict[str, list[str]]:
    for name, spec in section.fields.items():
        out.setdefault(name, []).append(prefix)
        inner = spec.item if isinstance(spec, NamedMap) else spec
        if isinstance(inner, Section):
            _index(inner, f"{prefix}.{name}" if prefix else name, out)
    return out


_KEYS_ELSEWHERE = _index(ROOT, "", {})


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, code: str, path: Path, message: str, fix: str | None = None) -> None:
        self.issues.append(Issue(code, path, message, fix))

    def type_error(self, spec: Value, parent: Section, path: Path, value: object) -> None:
        name = _dotted(path)
        text = f"`{name}` must be a {spec.kind.value}, not {_json_kind(value)} {value!r}"
        if spec.go_type:
            text += (
                f'; flyctl: "json: cannot unmarshal {_json_kind(value)} into Go struct field '
                f'{parent.go}.{name} of type {spec.go_type}"'
            )
        self.add("FLY003", path, text)

    def section(self, spec: Section, parent: Section, value: object, path: Path) -> None:
        name = _dotted(path)
        if isinstance(value, dict):
            if spec.form is Form.ARRAY:
                self.add(
                    "FLY002",
                    path,
                    f"[{name}] must be an array of tables, written [[{name}]]; "
                    f'flyctl: "json: cannot unmarshal object into Go struct field {parent.go}.{name} '
                    f'of type {spec.go_type}"',
                    f"Write [[{name}]] (one per item) instead of [{name}].",
                )
                return
            self.fields(spec, value, path)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            if spec.form is Form.TABLE:
                quote = (
                    "Build section of unknown type: []interface {}"
                    if name == "build"
                    else f"json: cannot unmarshal array into Go struct field {parent.go}.{name} "
                    f"of type {spec.go_type}"
                )
                self.add(
                    "FLY002",
                    path,
                    f'[{name}] must be a single table, written [{name}]; flyctl: "{quote}"',
                    f"Write [{name}] once instead of [[{name}]].",
                )
                return
            for index, item in enumerate(value):
                self.fields(spec, item, (*path, index))
        else:
            self.add("FLY002", path, f"`{name}` must be a {spec.form.value} of settings, not {value!r}")

    def fields(self, section: Section, table: dict[str, Any], path: Path) -> None:
        for key, value in table.items():
            canonical = section.aliases.get(key, key)
            spec = section.fields.get(canonical)
            if spec is None:
                self.unknown(section, key, (*path, key))
            else:
                self.spec(spec, section, value, (*path, key))

    def unknown(self, section: Section, key: str, path: Path) -> None:
        where = _dotted(path[:-1])
        names = [*section.fields, *section.aliases]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        label = f"[{where}]" if where else "the top level"
        if close:
            hint = f"did you mean `{close[0]}`?"
        elif key in _KEYS_ELSEWHERE:
            hint = f"`{key}` belongs in {_where(_KEYS_ELSEWHERE, key)}"
        else:
            hint = f"known keys: {', '.join(sorted(section.fields)[:12])}"
        self.add("FLY004", path, f"unknown key `{key}` in {label}, ignored by flyctl; {hint}")

    def spec(self, spec: Spec, parent: Section, value: object, path: Path) -> None:
        if isinstance(spec, Section):
            self.section(spec, parent, value, path)
        elif isinstance(spec, NamedMap):
            self.named_map(spec, value, path)
        else:
            self.value(spec, parent, value, path)

    def named_map(self, spec: NamedMap, value: object, path: Path) -> None:
        if isinstance(value, dict):
            for name, check in value.items():
                if isinstance(check, dict):
                    self.fields(spec.item, check, (*path, name))
                else:
                    self.add(
                        "FLY002",
                        (*path, name),
                        f"flyctl: \"'checks' section of unknown type: {_go_type(check)}\"",
                    )
        elif isinstance(value, list):
            for index, check in enumerate(value):
                if not isinstance(check, dict) or not isinstance(check.get("name"), str):
                    self.add(
                        "FLY002",
                        (*path, index),
                        'a [[checks]] item needs a string `name`; flyctl: "check item name not a string"',
                        "Use named tables: [checks.NAME].",
                    )
                else:
                    self.fields(spec.item, check, (*path, index))
        else:
            self.add("FLY002", path, f"flyctl: \"'checks' section of unknown type: {_go_type(value)}\"")

    def value(self, spec: Value, parent: Section, value: object, path: Path) -> None:
        for issue in _value_issues(spec, value, path):
            if issue is None:
                self.type_error(spec, parent, path, value)
            else:
                self.issues.append(issue)


def _value_issues(spec: Value, value: object, path: Path) -> Iterator[Issue | None]:
    """Problems with one value; ``None`` stands for a plain type error."""
    name, kind = _dotted(path), spec.kind
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
                f"flyctl: \"Do not know how to process 'env' section of type: {_go_type(value)}\"",
            )
    elif kind is Kind.ANYMAP:
        if not isinstance(value, dict):
            yield None
    elif kind is Kind.CONCURRENCY:
        yield from _service_concurrency(value, path)
    elif name == "processes" and not isinstance(value, dict | list):
        yield Issue("FLY002", path, f'flyctl: "Unknown processes type: {_go_type(value)}"')


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
                f'`{name}.{key}` must be a string; flyctl: "json: cannot unmarshal {_json_kind(item)} '
                f'into Go struct field {struct}.{name} of type string"',
                f'Quote the value: {key} = "{item}".',
            )


def _service_concurrency(value: object, path: Path) -> Iterator[Issue | None]:
    if isinstance(value, str):
        left, sep, right = value.partition(",")
        if not sep:
            yield Issue("FLY006", path, f"flyctl: \"Unknown value '{value}' for concurrency limits\"")
        elif not (left.strip().isdigit() and right.strip().isdigit()):
            yield Issue("FLY006", path, f'flyctl: "Can not convert \'{value}\'" (expected "soft,hard")')
    elif isinstance(value, dict):
        walker = _Walker()
        walker.fields(CONCURRENCY, value, path)
        yield from walker.issues
    else:
        yield Issue(
            "FLY002",
            path,
            '[services.concurrency] must be a table; flyctl: "Unknown type for service concurrency: '
            f'{_go_type(value)}"',
            "Write [services.concurrency] with type, soft_limit and hard_limit.",
        )


def check_shape(data: dict[str, Any]) -> list[Issue]:
    """Every shape, type and unknown-key problem in a parsed fly.toml, in document order."""
    walker = _Walker()
    walker.fields(ROOT, data, ())
    return walker.issues
