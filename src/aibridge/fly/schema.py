"""The fly.toml schema of flyctl (fly.md §1) as data: every section and key, its accepted forms, and
the Go struct and type flyctl decodes it into, so shape errors can quote flyctl's own error text."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from aibridge.fly.units import BareUnit

__all__ = ("CONCURRENCY", "ROOT", "Form", "Kind", "NamedMap", "Section", "Spec", "Value")


class Form(enum.Enum):
    TABLE = "table"
    ARRAY = "array"
    BOTH = "table or array"


class Kind(enum.Enum):
    STR = "string"
    INT = "integer"
    INT_CAST = "integer (a numeric string is cast)"
    UINT32 = "integer from 0 to 4294967295"
    FLOAT = "number"
    BOOL = "boolean"
    STRLIST = "list of strings"
    STR_OR_LIST = "string or list of strings"
    DURATION = "duration"
    MEMORY = "memory size"
    VOLSIZE = "volume size"
    PERSIST = '"never", "restart" or "always" (or 0-3)'
    PROCESSES = "table of command strings"
    AUTOSTOP = 'true/false or "off"/"stop"/"suspend"'
    STRMAP = "table of strings"
    ENV = "table of strings (or an array of tables)"
    ANYMAP = "table"
    HEADERS = "table of header values"
    CONCURRENCY = 'table (or the legacy "soft,hard" string)'
    ANY = "any value"


@dataclass(frozen=True)
class Value:
    kind: Kind
    go_type: str | None = None
    """Go type in flyctl's json errors; None where flyctl's error text is not a plain json one."""
    unit: BareUnit = "ns"
    """For durations: what a bare integer means here."""
    choices: tuple[str, ...] = ()
    enforced: bool = True
    """For choices: flyctl refuses other values (else it passes them through to the platform)."""
    patched: bool = False
    """flyctl's patches.go rewrites the raw value before the JSON decode (``_castDuration`` on
    durations, ``castToString`` on memory and initial_size), so more input forms get through."""


@dataclass(frozen=True)
class Section:
    go: str
    """Go struct name, as it appears in ``json: cannot unmarshal ... Go struct field <go>.<path>``."""
    go_type: str
    form: Form
    fields: Mapping[str, Spec] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NamedMap:
    """A table of named tables (top-level ``[checks.<name>]``); an array needs a ``name`` per item."""

    item: Section


Spec = Value | Section | NamedMap

S, INT, B = Value(Kind.STR, "string"), Value(Kind.INT, "int"), Value(Kind.BOOL, "bool")
SL = Value(Kind.STRLIST, "[]string")


def _dur(unit: BareUnit) -> Value:
    """A fly.Duration: bare integers are seconds or milliseconds where patches.go ``_castDuration``
    shifts them (kill_timeout, [[services]] and top-level checks), nanoseconds where it does not."""
    return Value(Kind.DURATION, None, unit, patched=unit != "ns")


def _choice(*choices: str, enforced: bool = False) -> Value:
    return Value(Kind.STR, "string", choices=choices, enforced=enforced)


def _check_fields(unit: BareUnit) -> dict[str, Spec]:
    """Check fields; patched (``_patchCheck``: durations and headers) unless under [http_service]."""
    return {
        "grace_period": _dur(unit),
        "interval": _dur(unit),
        "timeout": _dur(unit),
        "method": S,
        "path": S,
        "protocol": _choice("http", "https"),
        "tls_skip_verify": B,
        "tls_server_name": S,
        "headers": Value(Kind.HEADERS, "map[string]string", patched=unit != "ns"),
    }


_TLS = Section(
    "TLSOptions", "fly.TLSOptions", Form.TABLE, {"alpn": SL, "versions": SL, "default_self_signed": B}
)
_HTTP_OPTIONS = Section(
    "HTTPOptions",
    "fly.HTTPOptions",
    Form.TABLE,
    {
        "compress": B,
        "h2_backend": B,
        "idle_timeout": Value(Kind.UINT32, "uint32"),
        "headers_read_timeout": Value(Kind.UINT32, "uint32"),
        "response": Section(
            "HTTPResponseOptions",
            "fly.HTTPResponseOptions",
            Form.TABLE,
            {"headers": Value(Kind.ANYMAP), "pristine": B},
        ),
        "replay_cache": Value(Kind.ANY),
    },
)
_MACHINE_CHECKS = Section(
    "ServiceMachineCheck",
    "[]*appconfig.ServiceMachineCheck",
    Form.ARRAY,
    {"command": SL, "image": S, "entrypoint": SL, "kill_signal": S, "kill_timeout": _dur("ns")},
)
_VM_FIELDS: dict[str, Spec] = {
    "size": S,
    "memory": Value(Kind.MEMORY, "string", patched=True),
    "memory_mb": INT,
    "max_memory_mb": INT,
    "cpus": INT,
    "cpu_kind": _choice("shared", "performance"),
    "gpus": INT,
    "gpu_kind": S,
    "kernel_args": SL,
    "host_dedication_id": S,
    "persist_rootfs": Value(Kind.PERSIST),
    "processes": SL,
}
CONCURRENCY = Section(
    "MachineServiceConcurrency",
    "fly.MachineServiceConcurrency",
    Form.TABLE,
    {"type": _choice("connections", "requests"), "hard_limit": INT, "soft_limit": INT},
)

ROOT = Section(
    "Config",
    "appconfig.Config",
    Form.TABLE,
    {
        "app": S,
        "primary_region": S,
        "kill_signal": S,
        "kill_timeout": _dur("s"),
        "swap_size_mb": INT,
        "console_command": S,
        "host_dedication_id": S,
        "machine_config": S,
        "container": S,
        "build": Section(
            "Build",
            "appconfig.Build",
            Form.TABLE,
            {
                "builder": S,
                "buildpacks": SL,
                "image": S,
                "dockerfile": S,
                "ignorefile": S,
                "build-target": S,
                "builtin": S,
                "settings": Value(Kind.ANYMAP),
                "args": Value(Kind.STRMAP, "map[string]string"),
                "compose": Section("BuildCompose", "appconfig.BuildCompose", Form.TABLE, {"file": S}),
                "compression": _choice("gzip", "zstd", enforced=True),
                "compression_level": INT,
            },
            aliases={"build_target": "build-target"},
        ),
        "deploy": Section(
            "Deploy",
            "appconfig.Deploy",
            Form.TABLE,
            {
                "strategy": S,
                "max_unavailable": Value(Kind.FLOAT, "float64"),
                "wait_timeout": _dur("ns"),
                "release_command": S,
                "release_command_timeout": _dur("ns"),
                # Not patched like [[vm]] (patchCompute): memory must be a string here.
                "release_command_vm": Section(
                    "Compute",
                    "appconfig.Compute",
                    Form.TABLE,
                    {**_VM_FIELDS, "memory": Value(Kind.MEMORY, "string")},
                ),
                "seed_command": S,
            },
        ),
        "env": Value(Kind.ENV),
        "processes": Value(Kind.PROCESSES, "string"),
        "http_service": Section(
            "HTTPService",
            "appconfig.HTTPService",
            Form.TABLE,
            {
                "internal_port": INT,
                "force_https": B,
                "auto_stop_machines": Value(Kind.AUTOSTOP),
                "auto_start_machines": B,
                "min_machines_running": INT,
                "processes": SL,
                "concurrency": CONCURRENCY,
                "tls_options": _TLS,
                "http_options": _HTTP_OPTIONS,
                "checks": Section(
                    "ServiceHTTPCheck", "[]*appconfig.ServiceHTTPCheck", Form.ARRAY, _check_fields("ns")
                ),
                "machine_checks": _MACHINE_CHECKS,
            },
        ),
        "services": Section(
            "Service",
            "[]appconfig.Service",
            Form.BOTH,
            {
                "internal_port": Value(Kind.INT_CAST),
                "protocol": _choice("tcp", "udp"),
                "auto_stop_machines": Value(Kind.AUTOSTOP),
                "auto_start_machines": B,
                "min_machines_running": INT,
                "processes": SL,
                "ports": Section(
                    "MachinePort",
                    "[]fly.MachinePort",
                    Form.BOTH,
                    {
                        "port": Value(Kind.INT_CAST),
                        "start_port": INT,
                        "end_port": INT,
                        "handlers": SL,
                        "force_https": B,
                        "tls_options": _TLS,
                        "http_options": _HTTP_OPTIONS,
                        "proxy_proto_options": Section(
                            "ProxyProtoOptions", "fly.ProxyProtoOptions", Form.TABLE, {"version": S}
                        ),
                    },
                ),
                "concurrency": Value(Kind.CONCURRENCY),
                "tcp_checks": Section(
                    "ServiceTCPCheck",
                    "[]*appconfig.ServiceTCPCheck",
                    Form.BOTH,
                    {"interval": _dur("ms"), "timeout": _dur("ms"), "grace_period": _dur("ms")},
                ),
                "http_checks": Section(
                    "ServiceHTTPCheck", "[]*appconfig.ServiceHTTPCheck", Form.BOTH, _check_fields("ms")
                ),
                "machine_checks": _MACHINE_CHECKS,
            },
        ),
        "checks": NamedMap(
            Section(
                "ToplevelCheck",
                "appconfig.ToplevelCheck",
                Form.TABLE,
                {**_check_fields("ms"), "port": INT, "type": S, "processes": SL, "name": S},
            )
        ),
        "vm": Section("Compute", "[]*appconfig.Compute", Form.BOTH, _VM_FIELDS),
        "mounts": Section(
            "Mount",
            "[]appconfig.Mount",
            Form.BOTH,
            {
                "source": S,
                "destination": S,
                # patchMounts castToStrings initial_size only; the auto_extend sizes are plain strings.
                "initial_size": Value(Kind.VOLSIZE, "string", patched=True),
                "snapshot_retention": INT,
                "scheduled_snapshots": B,
                "auto_extend_size_threshold": INT,
                "auto_extend_size_increment": Value(Kind.VOLSIZE, "string"),
                "auto_extend_size_limit": Value(Kind.VOLSIZE, "string"),
                "processes": SL,
            },
        ),
        "metrics": Section(
            "Metrics",
            "[]*appconfig.Metrics",
            Form.BOTH,
            {"port": INT, "path": S, "https": B, "processes": SL},
        ),
        "statics": Section(
            "Static",
            "[]appconfig.Static",
            Form.ARRAY,
            {"guest_path": S, "url_prefix": S, "tigris_bucket": S, "index_document": S},
        ),
        "files": Section(
            "File",
            "[]appconfig.File",
            Form.ARRAY,
            {"guest_path": S, "local_path": S, "secret_name": S, "raw_value": S, "processes": SL},
        ),
        "restart": Section(
            "Restart",
            "[]appconfig.Restart",
            Form.ARRAY,
            {
                "policy": _choice("always", "never", "on-failure", enforced=True),
                "retries": INT,
                "processes": SL,
            },
        ),
        "machine_checks": _MACHINE_CHECKS,
        "experimental": Section(
            "Experimental",
            "appconfig.Experimental",
            Form.TABLE,
            {
                "cmd": Value(Kind.STR_OR_LIST),
                "entrypoint": Value(Kind.STR_OR_LIST),
                "exec": Value(Kind.STR_OR_LIST),
                "auto_rollback": B,
                "enable_consul": B,
                "enable_etcd": B,
                "lazy_load_images": B,
                "machine_config": S,
                # patchExperimental copies kill_timeout up (when the top level has none).
                "kill_timeout": _dur("s"),
                "attached": Value(Kind.ANYMAP),
                "use_zstd": B,
                "metrics_port": INT,
                "metrics_path": S,
            },
        ),
    },
    aliases={"compute": "vm", "computes": "vm", "mount": "mounts", "metric": "metrics"},
)
