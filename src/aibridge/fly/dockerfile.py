"""A Dockerfile read with the official BuildKit parser (the ``dockerfile`` package), split into stages.

The ``dockerfile`` module is imported lazily: it is a compiled extension the CLI must not load for
``--help``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

__all__ = (
    "DockerfileModel",
    "DockerfileSyntaxError",
    "Instruction",
    "Stage",
    "command_argv",
    "parse_dockerfile",
    "process_argv",
    "split_shell",
)

KNOWN = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


class DockerfileSyntaxError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True, slots=True)
class Instruction:
    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    line: int
    original: str

    def flag(self, name: str) -> str | None:
        """Value of ``--name=value`` (last one wins), or None."""
        found = None
        for flag in self.flags:
            key, _, value = flag.partition("=")
            if key.lower() == f"--{name}":
                found = value
        return found


@dataclass(slots=True)
class Stage:
    index: int
    base: str
    name: str | None
    line: int
    parent: Stage | None
    """The earlier stage this one is built FROM, if any."""
    instructions: list[Instruction] = field(default_factory=list)

    def chain(self) -> list[Stage]:
        """This stage and the stages it is built from, nearest first."""
        out: list[Stage] = []
        stage: Stage | None = self
        while stage is not None and stage not in out:
            out.append(stage)
            stage = stage.parent
        return out

    def last(self, cmd: str) -> Instruction | None:
        """The last ``cmd`` instruction in effect (inherited from parent stages)."""
        for stage in self.chain():
            for instruction in reversed(stage.instructions):
                if instruction.cmd == cmd:
                    return instruction
        return None

    def all(self, cmd: str) -> list[Instruction]:
        return [i for s in reversed(self.chain()) for i in s.instructions if i.cmd == cmd]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values = instruction.value
            out.update(dict(zip(values[::2], values[1::2], strict=False)))
        return out


@dataclass(slots=True)
class DockerfileModel:
    file: str
    text: str
    stages: list[Stage]
    global_args: dict[str, str]
    errors: list[tuple[int, str]]
    """Instructions BuildKit would refuse: (line, message)."""

    @property
    def final(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    def stage(self, target: str | None) -> Stage | None:
        """The stage ``[build] build-target`` names, else the last one."""
        if target:
            for stage in self.stages:
                if stage.name == target.lower():
                    return stage
        return self.final

    def expand(self, text: str) -> str:
        return _VAR.sub(lambda m: self.global_args.get(m.group(1) or m.group(2), m.group(0)), text)


def _error_line(text: str, message: str) -> int:
    import dockerfile

    lines = text.splitlines()
    for end in range(1, len(lines) + 1):
        try:
            dockerfile.parse_string("\n".join(lines[:end]) + "\n")
        except dockerfile.GoParseError as error:
            if str(error) == message:
                return end
    return 1


def parse_dockerfile(text: str, file: str = "Dockerfile") -> DockerfileModel:
    """Parse and split into stages; raise :class:`DockerfileSyntaxError` if BuildKit cannot parse it."""
    import dockerfile

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        raise DockerfileSyntaxError(str(error), _error_line(text, str(error))) from None
    model = DockerfileModel(file, text, [], {}, [])
    names: dict[str, Stage] = {}
    for command in commands:
        if not command.cmd:  # a line holding only a continuation backslash: no instruction at all
            continue
        instruction = Instruction(
            command.cmd.upper(),
            command.flags,
            command.value,
            command.json,
            command.start_line,
            command.original,
        )
        if instruction.cmd not in KNOWN:
            model.errors.append((instruction.line, f"unknown instruction: {command.cmd}"))
        elif instruction.cmd == "FROM":
            if not instruction.value:
                model.errors.append((instruction.line, "FROM requires an image"))
                continue
            base = model.expand(instruction.value[0])
            alias = None
            if len(instruction.value) >= 3 and instruction.value[1].lower() == "as":
                alias = instruction.value[2].lower()
            stage = Stage(len(model.stages), base, alias, instruction.line, names.get(base.lower()))
            model.stages.append(stage)
            if alias:
                names[alias] = stage
        elif not model.stages:
            if instruction.cmd == "ARG":
                for arg in instruction.value:
                    key, _, default = arg.partition("=")
                    model.global_args[key] = default.strip("\"'")
            else:
                model.errors.append(
                    (instruction.line, f"{instruction.cmd} before the first FROM: no build stage")
                )
        else:
            model.stages[-1].instructions.append(instruction)
    return model


def command_argv(instruction: Instruction | None) -> list[str]:
    """The argv of a CMD/ENTRYPOINT: exec form as is, shell form as /bin/sh -c."""
    if instruction is None or not instruction.value:
        return []
    if instruction.json:
        return list(instruction.value)
    return ["/bin/sh", "-c", " ".join(instruction.value)]


def split_shell(text: str) -> list[str]:
    """Words of a shell command line, tolerant of unbalanced quotes."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def process_argv(stage: Stage) -> tuple[list[str], Instruction | None, Instruction | None]:
    """The argv the container starts with, its ENTRYPOINT, and its CMD (None when not used)."""
    entry, cmd = stage.last("ENTRYPOINT"), stage.last("CMD")
    argv = command_argv(entry)
    if entry is not None and not entry.json:
        return argv, entry, None
    return argv + command_argv(cmd), entry, cmd
