"""The memory limit a KPI is judged against when the app does not export one: fly.toml ``[[vm]]``."""

from __future__ import annotations

from pathlib import Path

from aibridge.errors import FileReadError
from aibridge.fly.model import load_fly_config
from aibridge.ops.kpis.config import KpiOptions
from aibridge.ops.kpis.units import format_bytes

__all__ = ("fallback_limit", "fly_memory_limit")


def fly_memory_limit(path: str) -> tuple[int, str]:
    """Bytes of memory a Machine built from fly.toml at ``path`` gets, and where that came from."""
    file = Path(path)
    if not file.is_file():
        raise FileReadError(f"{path}: no such file (--config expects a fly.toml)")
    megabytes = load_fly_config(file).memory_mb
    if megabytes is None:
        raise FileReadError(
            f"{path}: the vm memory cannot be read (aibridge validate says why); or pass --memory-limit"
        )
    return megabytes << 20, f"{path} [[vm]] memory"


def fallback_limit(options: KpiOptions) -> tuple[int, str] | None:
    """The limit used when the app exports none: fly.toml ``[[vm]]`` first, then ``--memory-limit``."""
    if options.config_path:
        return fly_memory_limit(options.config_path)
    if options.memory_limit_bytes:
        return options.memory_limit_bytes, f"--memory-limit {format_bytes(options.memory_limit_bytes)}"
    return None
