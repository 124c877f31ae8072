"""``.env`` files for ``aibridge serve``: read with python-dotenv, under the real environment.

The older Node bridge called ``dotenv.config()``, so its operators keep settings (the token
above all) in ``.env``; ignoring that file would run an open bridge without a word.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

from aibridge.errors import ConfigError, UsageError

__all__ = ("environment_with_file",)


def _read_env_file(path: str) -> dict[str, str]:
    """The variables of a ``.env`` file, parsed by python-dotenv as the older bridge's dotenv did.

    Without ``${VAR}`` expansion (Node's dotenv has none: a token containing ``$`` must stay
    the same token); a line dotenv cannot parse is an error naming it, not a silent skip.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError(f"--env-file {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--env-file {path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string.strip().splitlines()[0][:60]
            raise ConfigError(f"{path}:{binding.original.line}: cannot parse {line!r} (expected NAME=value)")
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {name: value for name, value in values.items() if value is not None}


def environment_with_file(
    environ: Mapping[str, str], env_file: str | None = None, *, read_file: bool = True
) -> tuple[dict[str, str], str | None]:
    """``environ`` with the variables of a ``.env`` file under it, and that file's path (or None).

    ``env_file`` names the file; without it ``./.env`` is read when it exists. Variables already
    in ``environ`` win over the file, as with dotenv.
    """
    if not read_file:
        if env_file is not None:
            raise UsageError("--env-file and --no-env-file contradict each other: give one")
        return dict(environ), None
    path = env_file if env_file is not None else ".env"
    if env_file is None and not os.path.isfile(path):
        return dict(environ), None
    return {**_read_env_file(path), **environ}, os.path.abspath(path)
