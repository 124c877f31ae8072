"""Walk a parsed fly.toml against the schema: wrong shapes, wrong types, unknown keys.

Messages quote the error flyctl itself prints for the same input (fly.md §1), so users can search it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

from aibridge.fly.locate import Path
from aibridge.fly.schema import CONCURRENCY, ROOT, Form, Kind, NamedMap, Section, Spec, Value
from aibridge.fly.values import Issue, dotted, go_type, is_datetime, json_kind, value_issues

__all__ = ("Issue", "check_shape")


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
_ATOI = re.compile(r"[+-]?[0-9]+")
_PATCHED_TABLES = {"build": "Build", "experimental": "Experimental"}


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, code: str, path: Path, message: str, fix: str | None = None) -> None:
        self.issues.append(Issue(code, path, message, fix))

    def type_error(self, spec: Value, parent: Section, path: Path, value: object) -> None:
        name = dotted(path)
        shown = "a TOML date/time" if is_datetime(value) else f"{json_kind(value)} {value!r}"
        text = f"`{name}` must be a {spec.kind.value}, not {shown}"
        if spec.go_type:
            # encoding/json names the innermost struct and the key path from the root, map keys
            # (the [checks.NAME] names) left out; a number into a number type shows its literal.
            field = name
            if path[:1] == ("checks",) and len(path) > 2:
                field = dotted((path[0], *path[2:]))
            what = json_kind(value)
            numeric = spec.go_type.startswith(("int", "uint", "float"))
            if what == "number" and numeric:
                what = f"number {value:g}" if isinstance(value, float) else f"number {value}"
            text += (
                f'; flyctl: "json: cannot unmarshal {what} into Go struct field '
                f'{parent.go}.{field} of type {spec.go_type}"'
            )
        self.add("FLY003", path, text)

    def section(self, spec: Section, parent: Section, value: object, path: Path) -> None:
        name = dotted(path)
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
        elif name in _PATCHED_TABLES and parent is ROOT:
            # patches.go patchBuild / patchExperimental refuse anything but a table.
            self.add(
                "FLY002",
                path,
                f'[{name}] must be a single table, written [{name}]; flyctl: "{_PATCHED_TABLES[name]} '
                f'section of unknown type: {go_type(value)}"',
                f"Write [{name}] once.",
            )
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            if spec.form is Form.TABLE:
                quote = (
                    f"json: cannot unmarshal array into Go struct field {parent.go}.{name} "
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
        folded = {name.lower(): name for name in section.fields}
        for key, value in table.items():
            canonical = section.aliases.get(key, key)
            # Go's JSON decoder matches struct field names case-insensitively.
            canonical = canonical if canonical in section.fields else folded.get(key.lower(), canonical)
            spec = section.fields.get(canonical)
            if spec is None:
                self.unknown(section, key, (*path, key))
            else:
                self.spec(spec, section, value, (*path, key))

    def unknown(self, section: Section, key: str, path: Path) -> None:
        where = dotted(path[:-1])
        names = [*section.fields, *section.aliases]
        close = [n for n in names if len(key) >= 4 and (n.startswith(key) or key.startswith(n))]
        close = close or difflib.get_close_matches(key, names, n=1, cutoff=0.7)
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
                        f"flyctl: \"'checks' section of unknown type: {go_type(check)}\"",
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
            self.add("FLY002", path, f"flyctl: \"'checks' section of unknown type: {go_type(value)}\"")

    def value(self, spec: Value, parent: Section, value: object, path: Path) -> None:
        if spec.kind is Kind.CONCURRENCY:
            self.issues += _service_concurrency(value, path)
            return
        for issue in value_issues(spec, value, path):
            if issue is None:
                self.type_error(spec, parent, path, value)
            else:
                self.issues.append(issue)


def _service_concurrency(value: object, path: Path) -> Iterator[Issue]:
    if isinstance(value, str):
        left, sep, right = value.partition(",")
        if not sep:
            yield Issue("FLY006", path, f"flyctl: \"Unknown value '{value}' for concurrency limits\"")
        elif not (_ATOI.fullmatch(left) and _ATOI.fullmatch(right)):  # strconv.Atoi: no spaces
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
            f'{go_type(value)}"',
            "Write [services.concurrency] with type, soft_limit and hard_limit.",
        )


def check_shape(data: dict[str, Any]) -> list[Issue]:
    """Every shape, type and unknown-key problem in a parsed fly.toml, in document order."""
    walker = _Walker()
    walker.fields(ROOT, data, ())
    return walker.issues
