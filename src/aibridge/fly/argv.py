"""What a container's argv finally runs, looking through inits, ``sh -c`` wrappers and privilege drops.

An entrypoint such as ``tini -- /bin/sh -c 'chown 1001 /data && exec setpriv --reuid=1001 -- "$@"' sh``
with CMD ``aibridge serve`` ends up running ``aibridge serve`` as UID 1001: the port rules need the
program, the root-user rule needs the UID.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ("INITS", "Launch", "unwrap")

INITS = {"tini", "tini-static", "dumb-init", "catatonit", "docker-init", "s6-svscan", "init"}
SHELLS = {"sh", "bash", "dash", "ash"}
_SEPARATORS = {"&&", "||", ";", "|", "&"}
# setpriv options that take a value (``--opt value`` or ``--opt=value``), from setpriv(1).
_SETPRIV_VALUED = {
    "--ruid", "--euid", "--reuid", "--rgid", "--egid", "--regid", "--groups", "--inh-caps",
    "--ambient-caps", "--bounding-set", "--securebits", "--pdeathsig", "--selinux-label",
    "--apparmor-profile", "--landlock-access", "--landlock-rule", "--seccomp-filter",
}  # fmt: skip
_MAX_WRAPPERS = 16


@dataclass(frozen=True, slots=True)
class Launch:
    argv: list[str]
    """The program finally exec'd and its arguments (the shell itself when it stays PID 1)."""
    user: str | None
    """The user a ``setpriv --reuid`` / ``gosu`` / ``su-exec`` drop switches to, None without one."""


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, split at ``&&``, ``||``, ``;``, ``|`` and ``&``."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        words = script.split()
    out: list[list[str]] = [[]]
    for word in words:
        if word in _SEPARATORS:
            out.append([])
        else:
            out[-1].append(word)
    return [command for command in out if command]


def _positional(word: str, name: list[str], args: list[str]) -> list[str]:
    if word in ("$@", "${@}", "$*", "${*}"):
        return args
    if word == "$0":
        return name
    if len(word) == 2 and word[0] == "$" and word[1].isdigit():
        index = int(word[1]) - 1
        return args[index : index + 1]
    return [word]


def _shell_exec(argv: list[str]) -> list[str] | None:
    """What ``sh -c SCRIPT [NAME [ARGS...]]`` execs into, or None when the shell stays PID 1."""
    commands = _commands(argv[2])
    if not commands:
        return None
    last = commands[-1]
    if last[0] == "exec":
        last = last[1:]
    elif len(commands) > 1:
        return None  # the server is a child of the shell, which keeps PID 1
    name, args = argv[3:4], argv[4:]
    return [out for word in last for out in _positional(word, name, args)]


def _setpriv(args: list[str]) -> tuple[str | None, list[str]]:
    user = None
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-"):
            break
        key, eq, value = word.partition("=")
        if key in _SETPRIV_VALUED and not eq:
            index += 1
            value = args[index] if index < len(args) else ""
        if key == "--reuid":
            user = value
        index += 1
    return user, args[index:]


def unwrap(argv: list[str]) -> Launch:
    """Strip init, ``sh -c '... exec "$@"'`` and privilege-drop wrappers from ``argv``."""
    user: str | None = None
    for _ in range(_MAX_WRAPPERS):
        name = PurePosixPath(argv[0]).name if argv else ""
        if name in INITS:
            argv = argv[1:]
            while argv and argv[0].startswith("-"):
                flag, argv = argv[0], argv[1:]
                if flag == "--":
                    break
        elif name in SHELLS and argv[1:2] == ["-c"] and len(argv) > 2:
            inner = _shell_exec(argv)
            if inner is None:
                break
            argv = inner
        elif name == "setpriv":
            dropped, argv = _setpriv(argv[1:])
            user = dropped if dropped is not None else user
        elif name in ("gosu", "su-exec") and len(argv) > 2:
            user, argv = argv[1].partition(":")[0], argv[2:]
        else:
            break
    return Launch(argv, user)
