"""Render a validation :class:`Report`: Rich text grouped by file, stable JSON, or SARIF 2.1.0.

JSON schema (version 1; fields are only ever added, never renamed or removed)::

    {"version": 1, "tool": "aibridge", "tool_version": "0.1.0",
     "files": ["fly.toml", "Dockerfile", ".dockerignore"],
     "notes": ["what was not checked, and why"],
     "summary": {"errors": 0, "warnings": 0, "info": 0},
     "findings": [{"code": "FLY002", "severity": "error", "title": "...", "file": "fly.toml",
                   "line": 12, "column": 1, "message": "...", "fix": "...",
                   "why": "the clause of the severity rule behind the rule's severity"}]}

``line``/``column`` are 1-based; 0 means the finding is about the whole file (e.g. it is missing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aibridge import __version__
from aibridge.fly.catalog import RULES
from aibridge.fly.findings import Report, Severity

__all__ = ("JSON_SCHEMA", "render_json", "render_sarif", "render_text")

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "tool", "tool_version", "files", "summary", "findings"],
    "properties": {
        "version": {"const": 1},
        "tool": {"const": "aibridge"},
        "tool_version": {"type": "string"},
        "files": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "array", "items": {"type": "string"}},
        "summary": {
            "type": "object",
            "required": ["errors", "warnings", "info"],
            "properties": {k: {"type": "integer", "minimum": 0} for k in ("errors", "warnings", "info")},
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "severity", "title", "file", "line", "column", "message", "fix"],
                "properties": {
                    "code": {"type": "string", "pattern": "^(FLY|DKR|IGN|XF)[0-9]{3}$"},
                    "severity": {"enum": ["error", "warning", "info"]},
                    "title": {"type": "string"},
                    "file": {"type": "string"},
                    "line": {"type": "integer", "minimum": 0},
                    "column": {"type": "integer", "minimum": 0},
                    "message": {"type": "string"},
                    "fix": {"type": "string"},
                    "why": {"type": "string"},
                },
            },
        },
    },
}


def _as_dict(report: Report) -> dict[str, Any]:
    return {
        "version": 1,
        "tool": "aibridge",
        "tool_version": __version__,
        "files": report.files,
        "notes": report.notes,
        "summary": {
            "errors": report.errors,
            "warnings": report.warnings,
            "info": report.count(Severity.INFO),
        },
        "findings": [
            {
                "code": f.code,
                "severity": f.severity.value,
                "title": RULES[f.code].title,
                "file": f.file,
                "line": f.line,
                "column": f.column,
                "message": f.message,
                "fix": f.fix,
                "why": RULES[f.code].why.value,
            }
            for f in report.findings
        ],
    }


def render_json(report: Report) -> str:
    return json.dumps(_as_dict(report), indent=2, ensure_ascii=False)


def _uri(file: str) -> str:
    """A repository-relative URI when the file is under the working directory (what GitHub expects)."""
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return path.as_uri()
    return path.as_posix()


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render_sarif(report: Report) -> str:
    """SARIF 2.1.0 as GitHub code scanning reads it (one run, every rule described)."""
    codes = list(RULES)
    rules = [
        {
            "id": rule.code,
            "name": rule.code,
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.title},
            "help": {"text": rule.fix},
            "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        }
        for rule in RULES.values()
    ]
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": codes.index(f.code),
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message} (fix: {f.fix})"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.file)},
                        "region": {"startLine": max(1, f.line), "startColumn": max(1, f.column)},
                    }
                }
            ],
        }
        for f in report.findings
    ]
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "aibridge",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False)


_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render_text(report: Report) -> str:
    """Findings grouped by file, then one summary line; Rich markup, to print with a Console."""
    from rich.markup import escape

    lines: list[str] = []
    current = None
    for f in report.findings:
        if f.file != current:
            current = f.file
            lines.append(f"[bold]{escape(f.file)}[/]")
        where = f"{f.line}:{f.column}" if f.line else "-"
        style = _STYLE[f.severity]
        severity = f"[{style}]{f.severity.value:<7}[/]"
        lines.append(f"  {where:>7}  {severity} [dim]{f.code:<6}[/]  {escape(f.message)}")
        lines.append(f"  {'':>7}  {'':<7} {'':6}  [green]fix:[/] {escape(f.fix)}")
    lines += [f"[dim]note:[/] {escape(note)}" for note in report.notes]
    info = report.count(Severity.INFO)
    files = f"{len(report.files)} file{'s' if len(report.files) != 1 else ''}"
    if not report.findings:
        lines.append(f"[green]✓[/] {files} checked, no findings")
    else:
        lines.append(f"{report.errors} error(s), {report.warnings} warning(s), {info} info in {files}")
    return "\n".join(lines)
