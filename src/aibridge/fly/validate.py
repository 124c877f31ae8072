"""``aibridge validate``: read fly.toml, the Dockerfile and .dockerignore, run every rule, apply ignores.

Turning rules off: ``# aibridge: ignore=CODE[,CODE]`` at the end of a line (that line) or alone on a
line (the next line); ``# aibridge: ignore-file=CODE`` anywhere (the whole file); and
``[tool.aibridge.validate] ignore = ["CODE"]`` in the nearest pyproject.toml (the whole project).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from aibridge.errors import FileReadError
from aibridge.fly.catalog import finding
from aibridge.fly.findings import Finding, Report, Severity
from aibridge.fly.model import FlyDocument, TomlSyntaxError, parse_fly_document, read_text

if TYPE_CHECKING:
    from aibridge.fly.dockerfile import DockerfileModel

__all__ = ("inline_ignores", "project_ignores", "validate_dockerfile", "validate_paths", "validate_project")

_IGNORE = re.compile(r"#\s*aibridge:\s*ignore(-file)?=([A-Za-z]+[0-9]+(?:\s*,\s*[A-Za-z]+[0-9]+)*)")


def inline_ignores(text: str) -> tuple[dict[int, set[str]], set[str]]:
    """Codes ignored per line, and codes ignored in the whole file."""
    per_line: dict[int, set[str]] = {}
    whole: set[str] = set()
    pending: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        match = _IGNORE.search(line)
        codes = {c.strip().upper() for c in match.group(2).split(",") if c.strip()} if match else set()
        if match and match.group(1):
            whole |= codes
        elif match and stripped.startswith("#"):
            pending |= codes
            continue
        elif match:
            per_line.setdefault(number, set()).update(codes)
        if stripped and not stripped.startswith("#") and pending:
            per_line.setdefault(number, set()).update(pending)
            pending = set()
    return per_line, whole


def project_ignores(start: Path) -> set[str]:
    """``[tool.aibridge.validate] ignore`` from the nearest pyproject.toml at or above ``start``."""
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return set()
            section = data.get("tool", {}).get("aibridge", {}).get("validate", {})
            codes = section.get("ignore", []) if isinstance(section, dict) else []
            return {str(c).upper() for c in codes} if isinstance(codes, list) else set()
    return set()


def _keep(findings: list[Finding], texts: dict[str, str], project: set[str]) -> list[Finding]:
    """Drop the findings turned off in pyproject.toml or by inline comments in their own file."""
    ignores = {file: inline_ignores(text) for file, text in texts.items()}
    kept = []
    for f in findings:
        per_line, whole = ignores.get(f.file, ({}, set()))
        if f.code not in project and f.code not in whole and f.code not in per_line.get(f.line, set()):
            kept.append(f)
    return kept


def _dockerfile_path(config: Path, doc: FlyDocument | None) -> Path | None:
    """The Dockerfile fly deploy would build, or None when the config builds no Dockerfile."""
    cfg = doc.config if doc else None
    if cfg and cfg.dockerfile and "://" not in cfg.dockerfile:
        return config.parent / cfg.dockerfile
    build = doc.data.get("build") if doc else None
    # config.go BuildStrategies: an image, a buildpack or a builtin builds no Dockerfile of ours.
    strategies = ("builder", "buildpacks", "builtin")
    if cfg and (cfg.image or (isinstance(build, dict) and any(build.get(k) for k in strategies))):
        return None
    return config.parent / "Dockerfile"


def validate_project(
    config: Path,
    dockerfile: Path | None = None,
    dockerignore: Path | None = None,
    *,
    strict: bool = False,
) -> Report:
    """Validate one app's fly.toml, Dockerfile and .dockerignore (found next to the config if not given).

    Raises :class:`~aibridge.errors.FileReadError` when a file that is given or required cannot be read.
    """
    from aibridge.fly.rules_cross import check_cross
    from aibridge.fly.rules_toml import check_fly_toml

    texts = {str(config): read_text(config)}
    findings: list[Finding] = []
    doc: FlyDocument | None = None
    try:
        doc = parse_fly_document(texts[str(config)], str(config))
        findings += check_fly_toml(doc)
    except TomlSyntaxError as error:
        message = f"not valid TOML: {error.message}"
        findings.append(finding("FLY001", str(config), (error.line, error.column), message))
    build = doc.data.get("build") if doc else None
    target = build.get("build-target") if isinstance(build, dict) else None
    target = target if isinstance(target, str) else None
    docker_path = dockerfile or _dockerfile_path(config, doc)
    model: DockerfileModel | None = None
    if docker_path is not None and dockerfile is None and not docker_path.exists():
        if doc is not None and doc.config.dockerfile:
            # A warning, not an error: fly.toml may be checked on its own, away from its project.
            where = doc.locator.find(("build", "dockerfile"))
            message = f"[build] dockerfile = {doc.config.dockerfile!r}: no such file ({docker_path})"
            findings.append(finding("DKR002", str(config), where, message))
        else:
            message = f"no Dockerfile at {docker_path} and [build] sets no image or builder"
            findings.append(finding("DKR002", str(config), (1, 1), message))
    elif docker_path is not None:
        model = _dockerfile(docker_path, target, texts, findings)
        ignore = _ignore(dockerignore or _ignore_path(config, doc), dockerignore is not None, texts, findings)
        if model is not None:
            findings += _context(model, config.parent, ignore, target)
    if doc is not None:
        findings += check_cross(doc, model, target)
    kept = _keep(findings, texts, project_ignores(config.resolve().parent))
    if strict:
        kept = [dataclasses.replace(f, severity=Severity.ERROR) if f.code == "FLY004" else f for f in kept]
    order = list(texts)
    kept.sort(key=lambda f: (order.index(f.file) if f.file in order else len(order), f.line, f.column))
    return Report(kept, order)


def _ignore_path(config: Path, doc: FlyDocument | None) -> Path:
    if doc and doc.config.ignorefile:
        return config.parent / doc.config.ignorefile
    return config.parent / ".dockerignore"


def _dockerfile(
    path: Path, target: str | None, texts: dict[str, str], findings: list[Finding]
) -> DockerfileModel | None:
    from aibridge.fly.dockerfile import DockerfileSyntaxError, parse_dockerfile
    from aibridge.fly.rules_docker import check_dockerfile

    texts[str(path)] = text = read_text(path)
    try:
        model = parse_dockerfile(text, str(path))
    except DockerfileSyntaxError as error:
        findings.append(finding("DKR001", str(path), (error.line, 1), error.message))
        return None
    findings += check_dockerfile(model, target)
    return model


def _ignore(path: Path, explicit: bool, texts: dict[str, str], findings: list[Finding]) -> str | None:
    """Check .dockerignore; its text, or None when there is none."""
    from aibridge.fly.rules_ignore import check_dockerignore, missing_dockerignore

    if not explicit and not path.exists():
        findings.append(missing_dockerignore(str(path)))
        return None
    texts[str(path)] = text = read_text(path)
    findings += check_dockerignore(text, str(path))
    return text


def _context(model: DockerfileModel, context: Path, ignore: str | None, target: str | None) -> list[Finding]:
    from aibridge.fly.rules_context import check_context

    return check_context(model, context, ignore, target)


ALONE_NOTE = "no fly.toml: the Dockerfile was checked alone; the cross-file rules (XF) were skipped"


def validate_dockerfile(dockerfile: Path, dockerignore: Path | None = None) -> Report:
    """Lint a Dockerfile without a fly.toml: its own rules, its .dockerignore (the one given, else the
    one next to it) and DKR113 against its folder as the build context; no cross-file rules."""
    texts: dict[str, str] = {}
    findings: list[Finding] = []
    model = _dockerfile(dockerfile, None, texts, findings)
    ignore_path = dockerignore or dockerfile.parent / ".dockerignore"
    ignore = _ignore(ignore_path, dockerignore is not None, texts, findings)
    if model is not None:
        findings += _context(model, dockerfile.parent, ignore, None)
    kept = _keep(findings, texts, project_ignores(dockerfile.resolve().parent))
    order = list(texts)
    kept.sort(key=lambda f: (order.index(f.file) if f.file in order else len(order), f.line, f.column))
    return Report(kept, order, [ALONE_NOTE])


def validate_paths(
    paths: list[Path], config: Path | None = None, dockerfile: Path | None = None, *, strict: bool = False
) -> Report:
    """The CLI's entry. A directory is a project of its own; files given are sorted into the fly.toml
    files, a Dockerfile and a .dockerignore, which (with --config/--dockerfile) make one more project."""
    projects: list[tuple[Path, Path | None, Path | None]] = []
    configs: list[Path] = [config] if config else []
    ignore: Path | None = None
    for path in paths or ([] if config or dockerfile else [Path(".")]):
        if path.is_dir():
            projects.append((path / "fly.toml", None, None))
        elif not path.exists():
            raise FileReadError(f"{path}: no such file or directory")
        elif path.name.endswith(".dockerignore"):
            ignore = path
        elif path.name.startswith("Dockerfile") or path.name.lower().endswith(".dockerfile"):
            dockerfile = path
        else:
            configs.append(path)
    total = Report()
    if not configs and (dockerfile or ignore):
        if Path("fly.toml").exists() or dockerfile is None:
            configs.append(Path("fly.toml"))
        else:
            # README: a Dockerfile can be passed alone; with no fly.toml there is nothing to cross-check.
            report = validate_dockerfile(dockerfile, ignore)
            total.files, total.findings, total.notes = report.files, report.findings, report.notes
    projects += [(item, dockerfile, ignore) for item in configs]
    for item, docker, ignored in projects:
        report = validate_project(item, docker, ignored, strict=strict)
        total.files += [f for f in report.files if f not in total.files]
        total.findings += report.findings
    return total
