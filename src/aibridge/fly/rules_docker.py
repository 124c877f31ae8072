"""Rules on one Dockerfile: instructions that cannot work, and images that run badly on Fly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from aibridge.fly.argv import INITS, unwrap
from aibridge.fly.catalog import finding
from aibridge.fly.dockerfile import DockerfileModel, Instruction, Stage, process_argv
from aibridge.fly.findings import Finding, Severity

__all__ = ("INITS", "SIGNAL_AWARE", "check_dockerfile", "program")

# Servers that install SIGTERM handlers and run fine as PID 1 (their own graceful shutdown).
SIGNAL_AWARE = {
    "aibridge",
    "uvicorn",
    "gunicorn",
    "hypercorn",
    "granian",
    "daphne",
    "nginx",
    "caddy",
    "litestar",
}
_SHELL_TOKENS = {"&&", "||", "|", ";", "&"}
_REDIRECT = re.compile(r"^(\d*>>?|&>|<|\d*>&\d)")
_SECRET = re.compile(r"(?i)(secret|passw(or)?d|token|api[_-]?key|private[_-]?key|access[_-]?key|credential)")
_ARCHIVE = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_PIP = re.compile(r"\bpip[0-9.]*\s+install\b|\bpython[0-9.]*\s+-m\s+pip\s+install\b")


def program(argv: list[str]) -> str:
    """Basename of the program an argv runs, looking through inits, ``sh -c``, privilege drops
    and ``python -m``."""
    argv = unwrap(argv).argv
    if not argv:
        return ""
    name = PurePosixPath(argv[0]).name
    if re.fullmatch(r"python[0-9.]*", name) and "-m" in argv[1:]:
        module = argv[argv.index("-m") + 1 : argv.index("-m") + 2]
        return module[0].split(".")[0] if module else name
    return name


def check_dockerfile(model: DockerfileModel, target: str | None = None) -> list[Finding]:
    out = [finding("DKR001", model.file, (line, 1), message) for line, message in model.errors]
    final = model.stage(target)
    if final is None:
        return out
    image_stages = {id(s) for s in final.chain()}
    for stage in model.stages:
        out += [finding(c, model.file, (i.line, 1), m, severity=sev) for c, i, m, sev in _stage(model, stage)]
        if id(stage) in image_stages:
            out += [finding(c, model.file, (i.line, 1), m) for c, i, m in _image_stage(stage)]
    out += [finding(c, model.file, (line, 1), m) for c, line, m in _final(final)]
    return out


Hit = tuple[str, Instruction, str, Severity | None]


def _stage(model: DockerfileModel, stage: Stage) -> Iterator[Hit]:
    base = stage.base
    if stage.parent is None and base != "scratch" and "$" not in base:
        yield from _base_image(stage, base)
    env = stage.env()
    for instruction in stage.instructions:
        cmd = instruction.cmd
        if cmd in ("COPY", "ADD"):
            yield from _copy(model, stage, instruction)
        elif cmd == "RUN" and _PIP.search(" ".join(instruction.value)):
            text = " ".join(instruction.value)
            cached = "type=cache" in (instruction.flag("mount") or "")
            if (
                "--no-cache-dir" not in text
                and not cached
                and env.get("PIP_NO_CACHE_DIR", "") in ("", "0", "false")
            ):
                yield (
                    "DKR107",
                    instruction,
                    "pip install without --no-cache-dir keeps pip's cache in the layer",
                    None,
                )
        elif cmd in ("ENV", "ARG"):
            pairs = (
                instruction.value[::2]
                if cmd == "ENV"
                else tuple(v.partition("=")[0] for v in instruction.value)
            )
            for name in pairs:
                if _SECRET.search(name) and not name.upper().endswith(("_FILE", "_PATH")):
                    yield (
                        "DKR110",
                        instruction,
                        f"{cmd} {name} looks like a secret; it stays in the image history",
                        None,
                    )
        elif cmd == "EXPOSE":
            for port in instruction.value:
                number, _, proto = port.partition("/")
                if "$" in port:
                    continue
                if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp"):
                    yield "DKR112", instruction, f"EXPOSE {port} is not a port", None


def _base_image(stage: Stage, base: str) -> Iterator[Hit]:
    where = Instruction("FROM", (), (base,), False, stage.line, f"FROM {base}")
    if "@" in base:
        return
    tail = base.rsplit("/", 1)[-1]
    tag = tail.partition(":")[2]
    if not tag:
        yield "DKR106", where, f"FROM {base} has no tag: it floats to :latest", None
    elif tag == "latest":
        yield "DKR106", where, f"FROM {base} uses :latest", None
    elif not re.search(r"\d", tag):
        yield "DKR106", where, f"FROM {base}: tag {tag!r} names no version", None


def _copy(model: DockerfileModel, stage: Stage, instruction: Instruction) -> Iterator[Hit]:
    if instruction.value and not instruction.json and not instruction.original.lstrip().upper().count("<<"):
        for token in instruction.value:
            if token in _SHELL_TOKENS or _REDIRECT.match(token) or "$(" in token:
                yield (
                    "DKR101",
                    instruction,
                    f"{instruction.cmd} runs no shell: {token!r} is taken as a file name "
                    f"(in {instruction.original.strip()!r})",
                    None,
                )
                break
    source = instruction.flag("from")
    if source is not None and instruction.cmd == "COPY":
        yield from _copy_from(model, stage, instruction, source)
    if instruction.cmd == "ADD" and instruction.value:
        sources = instruction.value[:-1]
        remote = ("http://", "https://", "git@", "git://")
        if sources and all(not s.startswith(remote) and not s.endswith(_ARCHIVE) for s in sources):
            yield (
                "DKR109",
                instruction,
                "ADD of local files: use COPY (ADD also unpacks archives and fetches URLs)",
                None,
            )


def _copy_from(model: DockerfileModel, stage: Stage, instruction: Instruction, source: str) -> Iterator[Hit]:
    earlier = {s.name for s in model.stages[: stage.index] if s.name}
    later = {s.name for s in model.stages[stage.index :] if s.name}
    key = source.lower()
    if key in earlier or "$" in source:
        return
    if source.isdigit():
        if int(source) >= stage.index:
            yield (
                "DKR102",
                instruction,
                f"COPY --from={source}: stage {source} is not defined before this one",
                None,
            )
    elif key == stage.name:
        yield "DKR102", instruction, f"COPY --from={source}: a stage cannot copy from itself", None
    elif key in later:
        yield (
            "DKR102",
            instruction,
            f"COPY --from={source}: stage {source!r} is defined after this line",
            None,
        )
    elif not re.search(r"[:/@]", source):
        yield (
            "DKR102",
            instruction,
            f"COPY --from={source}: no stage has this name, so BuildKit pulls an image {source}:latest",
            Severity.WARNING,
        )


def _image_stage(stage: Stage) -> Iterator[tuple[str, Instruction, str]]:
    for instruction in stage.instructions:
        text = " ".join(instruction.value)
        if instruction.cmd == "RUN" and re.search(r"\bapt(-get)?\s+(-\S+\s+)*install\b", text):
            cached = "type=cache" in (instruction.flag("mount") or "")
            if "/var/lib/apt/lists" not in text and not cached:
                yield "DKR108", instruction, "apt-get install leaves /var/lib/apt/lists in the image"


def _final(stage: Stage) -> Iterator[tuple[str, int, str]]:
    user = stage.last("USER")
    name = user.value[0].split(":")[0] if user and user.value else None
    argv, entry, cmd = process_argv(stage)
    # An entrypoint may start as root on purpose (to chown a volume) and then drop for good.
    dropped = unwrap(argv).user
    drops = dropped is not None and dropped not in ("root", "0")
    if user is None and not drops:
        yield "DKR103", stage.line, "the final stage sets no USER: it runs as root (the base image's default)"
    elif user is not None and name in ("root", "0") and not drops:
        yield "DKR103", user.line, f"USER {user.value[0]}: the final stage runs as root"
    shell = next((i for i in (entry, cmd) if i is not None and i.value and not i.json), None)
    first = entry or cmd
    if shell is not None:
        yield (
            "DKR105",
            shell.line,
            f"{shell.cmd} in shell form: /bin/sh runs the app and does not pass SIGTERM on",
        )
    elif first is not None and argv:
        name = PurePosixPath(argv[0]).name
        if name not in INITS and program(argv) not in SIGNAL_AWARE:
            yield (
                "DKR104",
                first.line,
                f"{first.cmd} starts {name!r} as PID 1 with no init: "
                "signals may be ignored and zombies not reaped",
            )
    health = stage.last("HEALTHCHECK")
    if health is None:
        yield (
            "DKR111",
            stage.line,
            "no HEALTHCHECK (Fly routes on fly.toml's checks; this one helps local runs)",
        )
