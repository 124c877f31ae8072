"""The memory limit a KPI is judged against when the app does not export one: fly.toml ``[[vm]]``."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

from aibridge.errors import FileReadError
from aibridge.ops.kpis.config import KpiOptions
from aibridge.ops.kpis.units import format_bytes

__all__ = ("fallback_limit", "fly_memory_limit")

# fly-go MachinePresets: MB of memory each size preset gives (fly.md §1 "[[vm]]").
_PRESET_MB = {
    "shared-cpu-1x": 256,
    "shared-cpu-2x": 512,
    "shared-cpu-4x": 1024,
    "shared-cpu-6x": 1536,
    "shared-cpu-8x": 2048,
    "performance-1x": 2048,
    "performance-2x": 4096,
    "performance-4x": 8192,
    "performance-8x": 16384,
    "performance-16x": 32768,
}
_DEFAULT_SIZE = "shared-cpu-1x"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SHIFT = {"": 20, "k": 10, "m": 20, "g": 30, "t": 40}


def _memory_mb(value: object, where: str) -> int:
    """flyctl's reading of ``memory``: a bare number is MB, units are binary ("1gb" = 1024 MB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        megabytes = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        megabytes = int(float(match.group(1)) * (1 << _SHIFT[match.group(2).lower()])) >> 20
    else:
        raise FileReadError(f'{where}: memory {value!r} is not a size like 512 or "1gb"')
    if megabytes <= 0:
        raise FileReadError(f"{where}: memory cannot be zero")
    return megabytes


def _from_fly_model(path: Path) -> int | None:
    """Ask the fly.toml model (``aibridge.fly.model``) when it is installed; None when it is not."""
    try:
        model: Any = importlib.import_module("aibridge.fly.model")
    except ImportError:
        return None
    loader = getattr(model, "load_fly_config", None)
    if loader is None:
        return None
    memory = getattr(loader(path), "memory_mb", None)
    return int(memory) if isinstance(memory, int | float) and memory > 0 else None


def _parse_minimally(path: Path) -> tuple[int, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FileReadError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise FileReadError(f"{path}: not valid TOML ({error})") from None
    vms = data.get("vm", data.get("compute", []))
    vms = [vms] if isinstance(vms, dict) else vms
    if not isinstance(vms, list) or not all(isinstance(vm, dict) for vm in vms):
        raise FileReadError(f"{path}: vm must be a table or an array of tables")
    # The [[vm]] without `processes` applies to every group; prefer it.
    vm: dict[str, Any] = next((v for v in vms if not v.get("processes")), vms[0] if vms else {})
    where = f"{path}: vm section"
    size = str(vm.get("size", _DEFAULT_SIZE))
    if size not in _PRESET_MB and "memory" not in vm and "memory_mb" not in vm:
        raise FileReadError(f"{where}: unknown size {size!r} and no memory given")
    megabytes = _PRESET_MB.get(size, 0)
    source = f"size {size}" + (" (Fly's default)" if "size" not in vm else "")
    if "memory" in vm:
        megabytes, source = _memory_mb(vm["memory"], where), f"memory = {vm['memory']!r}"
    if vm.get("memory_mb"):
        megabytes, source = _memory_mb(vm["memory_mb"], where), f"memory_mb = {vm['memory_mb']}"
    return megabytes, source


def fly_memory_limit(path: str) -> tuple[int, str]:
    """Bytes of memory a Machine built from fly.toml at ``path`` gets, and where that came from."""
    file = Path(path)
    if not file.is_file():
        raise FileReadError(f"{path}: no such file (--config expects a fly.toml)")
    from_model = _from_fly_model(file)
    if from_model is not None:
        return from_model << 20, f"{path} [[vm]] memory"
    megabytes, source = _parse_minimally(file)
    return megabytes << 20, f"{path} [[vm]] {source}"


def fallback_limit(options: KpiOptions) -> tuple[int, str] | None:
    """The limit used when the app exports none: fly.toml ``[[vm]]`` first, then ``--memory-limit``."""
    if options.config_path:
        return fly_memory_limit(options.config_path)
    if options.memory_limit_bytes:
        return options.memory_limit_bytes, f"--memory-limit {format_bytes(options.memory_limit_bytes)}"
    return None
