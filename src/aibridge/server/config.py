"""The bridge server's configuration: one table of settings, read strictly from the environment.

Every setting is an ``AI_BRIDGE_*`` variable (plus ``PORT``). A malformed value raises
:class:`~aibridge.errors.ConfigError` naming the variable and what it expects; nothing falls
back to a default silently (the older bridge's ``Number(v) || default``, fault B12).
This module imports only the standard library so that ``aibridge serve --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aibridge.errors import ConfigError

__all__ = ("PORT_ALIASES", "SETTINGS", "BridgeConfig", "Setting", "settings_help")

LogFormat = Literal["text", "json"]
StoreKind = Literal["memory", "sqlite"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: its field on :class:`BridgeConfig`, parser, default and help."""

    env: str
    field: str
    kind: str
    default: str | None
    help: str
    parse: Callable[[str, str], Any]


def _int(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(raw.strip().replace("_", ""), 10)
        except ValueError:
            raise ConfigError(f"{name}: expected {expected}, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(f"{name}: expected {expected}, got {raw!r}")
        return value

    return parse


def _float(minimum: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}: expected a number >= {minimum:g}, got {raw!r}") from None
        if not value >= minimum:  # also rejects NaN
            raise ConfigError(f"{name}: expected a number >= {minimum:g}, got {raw!r}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected on/off (1/0, true/false, yes/no), got {raw!r}")


def _text(name: str, raw: str) -> str | None:
    return raw if raw != "" else None


def _name(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(f"{name}: expected a non-empty name, got {raw!r}")
    return value


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    if not origins:
        raise ConfigError(f"{name}: expected '*' or a comma-separated list of origins, got {raw!r}")
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise ConfigError(f"{name}: origin {origin!r} needs a scheme, e.g. https://example.com")
    return origins


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AI_BRIDGE_HOST",
        "host",
        "address",
        "::",
        "Address to bind (overridden by --host); :: is dual-stack (IPv4 too), for Fly's IPv6 6PN.",
        _text,
    ),
    Setting("PORT", "port", "port", "8080", "HTTP + WebSocket port (overridden by --port).", _int(0, 65535)),
    Setting(
        "AI_BRIDGE_AUTH_TOKEN",
        "auth_token",
        "secret",
        None,
        "Bearer token for the API and agents; unset = open.",
        _text,
    ),
    Setting(
        "AI_BRIDGE_AUTH_TIMEOUT_MS",
        "auth_timeout_ms",
        "ms",
        "5000",
        "With a token set, a socket not authenticated this long after its handshake is closed (1008).",
        _int(100),
    ),
    Setting(
        "AI_BRIDGE_CORS_ORIGINS",
        "cors_origins",
        "list",
        "*",
        "Allowed browser origins (comma list, * = any); also checked on WebSocket handshakes.",
        _origins,
    ),
    Setting(
        "AI_BRIDGE_HISTORY_LIMIT",
        "history_limit",
        "count",
        "1000",
        "Envelopes kept in history.",
        _int(1, 1_000_000),
    ),
    Setting(
        "AI_BRIDGE_MAX_QUEUE",
        "max_queue",
        "count",
        "2000",
        "Envelopes kept per offline recipient (oldest dropped beyond).",
        _int(1, 1_000_000),
    ),
    Setting(
        "AI_BRIDGE_MAX_QUEUES",
        "max_queues",
        "count",
        "10000",
        "Offline queues kept at once (a new recipient beyond this is refused).",
        _int(1),
    ),
    Setting(
        "AI_BRIDGE_MAX_QUEUED_BYTES",
        "max_queued_bytes",
        "bytes",
        str(64 * 1024 * 1024),
        "Total bytes held in all offline queues.",
        _int(1024),
    ),
    Setting(
        "AI_BRIDGE_QUEUE_TTL_MS",
        "queue_ttl_ms",
        "ms",
        str(24 * 3600 * 1000),
        "An offline queue whose recipient stays away this long is dropped.",
        _int(1000),
    ),
    Setting(
        "AI_BRIDGE_MAX_ENVELOPE_BYTES",
        "max_envelope_bytes",
        "bytes",
        str(256 * 1024),
        "Largest envelope (JSON bytes) accepted; larger WebSocket frames close with 1009.",
        _int(256),
    ),
    Setting(
        "AI_BRIDGE_MAX_LIST_ITEMS",
        "max_list_items",
        "count",
        "64",
        "Most labels, tools or intents one agent may register.",
        _int(1, 10_000),
    ),
    Setting(
        "AI_BRIDGE_MAX_META_BYTES",
        "max_meta_bytes",
        "bytes",
        str(16 * 1024),
        "Most JSON bytes of labels, tools and intents together one agent may register.",
        _int(256, 1024 * 1024),
    ),
    Setting(
        "AI_BRIDGE_MAX_JSON_DEPTH",
        "max_json_depth",
        "count",
        "64",
        "Deepest nesting of objects and arrays accepted in a frame or request body.",
        _int(4, 256),
    ),
    Setting(
        "AI_BRIDGE_CLIENT_TTL_MS",
        "client_ttl_ms",
        "ms",
        "900000",
        "An agent silent this long is unregistered and its socket closed.",
        _int(1000),
    ),
    Setting(
        "AI_BRIDGE_CLEANUP_INTERVAL_MS",
        "cleanup_interval_ms",
        "ms",
        "60000",
        "How often idle agents and stale queues are swept.",
        _int(100),
    ),
    Setting(
        "AI_BRIDGE_PING_INTERVAL_MS",
        "ping_interval_ms",
        "ms",
        "20000",
        "WebSocket ping interval for idle sockets (0 = off).",
        _int(0),
    ),
    Setting(
        "AI_BRIDGE_METRICS_PORT",
        "metrics_port",
        "port",
        "9091",
        "Port of the Prometheus /metrics listener (0 = off).",
        _int(0, 65535),
    ),
    Setting(
        "AI_BRIDGE_RATE_WINDOW_MS",
        "rate_window_ms",
        "ms",
        "60000",
        "HTTP rate-limit window per client.",
        _int(1000),
    ),
    Setting(
        "AI_BRIDGE_RATE_MAX",
        "rate_max",
        "count",
        "200",
        "HTTP requests per client per window (0 = off); /health and metrics are exempt.",
        _int(0),
    ),
    Setting(
        "AI_BRIDGE_HANDSHAKE_RATE_MAX",
        "handshake_rate_max",
        "count",
        "600",
        "WebSocket handshakes per client per AI_BRIDGE_RATE_WINDOW_MS (0 = off); beyond, 429.",
        _int(0),
    ),
    Setting(
        "AI_BRIDGE_TRUST_FLY_CLIENT_IP",
        "trust_fly_client_ip",
        "on|off",
        None,
        "Take the client's address from Fly-Client-IP (rate limits, logs); unset = on when"
        " FLY_APP_NAME is set (behind Fly's proxy, which overwrites it), else off.",
        _bool,
    ),
    Setting(
        "AI_BRIDGE_WS_RATE_MAX",
        "ws_rate_max",
        "count",
        "5000",
        "Envelopes per second per WebSocket connection (0 = off).",
        _int(0),
    ),
    Setting(
        "AI_BRIDGE_MAX_CONNECTIONS",
        "max_connections",
        "count",
        "1000",
        "Concurrent connections beyond which new ones get 503.",
        _int(1),
    ),
    Setting(
        "AI_BRIDGE_HEADER_TIMEOUT_MS",
        "header_timeout_ms",
        "ms",
        "10000",
        "Longest time a client may take to send a request's headers; then the connection is closed.",
        _int(100),
    ),
    Setting(
        "AI_BRIDGE_LOG_FORMAT",
        "log_format",
        "text|json",
        "text",
        "Log line format: readable text or one JSON object per line.",
        _choice("text", "json"),
    ),
    Setting(
        "AI_BRIDGE_LOG_LEVEL",
        "log_level",
        "level",
        "info",
        "Log level.",
        _choice("debug", "info", "warning", "error"),
    ),
    Setting(
        "AI_BRIDGE_SHUTDOWN_TIMEOUT_S",
        "shutdown_timeout_s",
        "seconds",
        "8",
        "Longest graceful drain after SIGTERM before exiting.",
        _float(0),
    ),
    Setting(
        "AI_BRIDGE_CGROUP_DIR",
        "cgroup_dir",
        "path",
        "/sys/fs/cgroup",
        "Where memory.max is read from for the memory-limit metric.",
        _text,
    ),
    Setting(
        "AI_BRIDGE_STORE",
        "store",
        "memory|sqlite",
        "sqlite",
        "Message store: sqlite (durable, in AI_BRIDGE_DATA_DIR) or memory (lost on restart);"
        " ignored when AI_BRIDGE_REDIS_URL is set.",
        _choice("memory", "sqlite"),
    ),
    Setting(
        "AI_BRIDGE_DATA_DIR",
        "data_dir",
        "path",
        "./data",
        "Directory of the SQLite store, created if missing (/data on a Fly volume).",
        _text,
    ),
    Setting(
        "AI_BRIDGE_COMMIT_WINDOW_MS",
        "commit_window_ms",
        "ms",
        "0",
        "Longest wait to group envelopes into one durable commit (0: one commit per event-loop pass).",
        _float(0),
    ),
    Setting(
        "AI_BRIDGE_REDIS_URL",
        "redis_url",
        "url",
        None,
        "redis:// or rediss:// URL: history, queues and routing shared by every machine in Redis"
        " (replaces AI_BRIDGE_STORE).",
        _text,
    ),
    Setting(
        "AI_BRIDGE_INSTANCE_ID",
        "instance_id",
        "name",
        None,
        "This machine's name in presence records (default: FLY_MACHINE_ID, else the hostname).",
        _text,
    ),
    Setting(
        "AI_BRIDGE_ENV",
        "environment",
        "name",
        "production",
        "Deployment name shown as /api/status environment (the older bridge showed NODE_ENV).",
        _name,
    ),
)

PORT_ALIASES = ("AI_BRIDGE_PORT", "AI_BRIDGE_HTTP_PORT")
"""The older bridge's WebSocket and HTTP ports: deprecated aliases of the one ``PORT``."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Typed configuration of one bridge process. Build it with :meth:`from_env`."""

    host: str = "::"
    port: int = 8080
    auth_token: str | None = None
    auth_timeout_ms: int = 5000
    cors_origins: tuple[str, ...] = ("*",)
    history_limit: int = 1000
    max_queue: int = 2000
    max_queues: int = 10_000
    max_queued_bytes: int = 64 * 1024 * 1024
    queue_ttl_ms: int = 24 * 3600 * 1000
    max_envelope_bytes: int = 256 * 1024
    max_list_items: int = 64
    max_meta_bytes: int = 16 * 1024
    max_json_depth: int = 64
    client_ttl_ms: int = 900_000
    cleanup_interval_ms: int = 60_000
    ping_interval_ms: int = 20_000
    metrics_port: int = 9091
    rate_window_ms: int = 60_000
    rate_max: int = 200
    handshake_rate_max: int = 600
    trust_fly_client_ip: bool = False
    ws_rate_max: int = 5000
    max_connections: int = 1000
    header_timeout_ms: int = 10_000
    log_format: LogFormat = "text"
    log_level: str = "info"
    shutdown_timeout_s: float = 8.0
    cgroup_dir: str = "/sys/fs/cgroup"
    store: StoreKind = "sqlite"
    data_dir: str = "./data"
    commit_window_ms: float = 0.0
    redis_url: str | None = None
    instance_id: str | None = None
    environment: str = "production"
    env_file: str | None = None
    """The ``.env`` file the settings were read from (None: none), named in the startup line."""
    notices: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    """Warnings about the settings (deprecated names) for the server to log at start-up."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> BridgeConfig:
        """Parse every setting from ``environ``; ``overrides`` (e.g. CLI options) win."""
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is not None:
                values[setting.field] = setting.parse(setting.env, raw)
        port, notice = _port_alias(environ, values.get("port"), overrides.get("port"))
        if port is not None:
            values["port"] = port
        if notice:
            values["notices"] = (notice,)
        if "trust_fly_client_ip" not in values:
            # Only Fly's proxy overwrites Fly-Client-IP; reached directly, a client picks its own.
            values["trust_fly_client_ip"] = bool(environ.get("FLY_APP_NAME"))
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        if config.metrics_port != 0 and config.metrics_port == config.port:
            raise ConfigError(
                f"AI_BRIDGE_METRICS_PORT={config.metrics_port} is also the bridge's port (PORT/--port):"
                " the metrics listener needs a port of its own (or 0 to turn it off)"
            )
        return config

    def redacted(self) -> dict[str, Any]:
        """The effective settings for the startup log line, with secrets hidden."""
        shown = dataclasses.asdict(self)
        del shown["notices"]
        if shown["auth_token"]:
            shown["auth_token"] = "***"
        if shown["redis_url"] and "@" in shown["redis_url"]:
            scheme, _, rest = shown["redis_url"].partition("://")
            shown["redis_url"] = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return shown


def _port_alias(
    environ: Mapping[str, str], port: int | None, option: int | None
) -> tuple[int | None, str | None]:
    """The port the older bridge's variables ask for (when PORT and --port do not), and one warning line.

    The older bridge listened twice (WebSocket on AI_BRIDGE_PORT, HTTP on AI_BRIDGE_HTTP_PORT);
    here both share one port, so the WebSocket one wins: agents are the clients hardest to
    reconfigure.
    """
    given = {name: _int(0, 65535)(name, environ[name]) for name in PORT_ALIASES if environ.get(name, "")}
    if not given:
        return None, None
    names = " and ".join(f"{name}={value}" for name, value in given.items())
    verb = "are" if len(given) > 1 else "is"
    if option is not None:
        return None, f"{names} {verb} deprecated and ignored: --port {option} is given"
    if port is not None:
        return None, f"{names} {verb} deprecated and ignored: PORT={port} is set"
    name, value = next(iter(given.items()))
    if len(set(given.values())) > 1:
        return value, (
            f"{names} are deprecated and differ: the WebSocket and the HTTP API now share one port;"
            f" listening on {value} ({name}). Set PORT instead"
        )
    return (
        value,
        f"{names} {verb} deprecated (WebSocket and HTTP share one port now): set PORT={value} instead",
    )


def settings_help() -> str:
    """One line per environment variable, for ``aibridge serve --help``."""
    lines = []
    for s in SETTINGS:
        default = "unset" if s.default is None else s.default
        lines.append(f"{s.env} ({s.kind}, default {default}): {s.help}")
    return "\n\n".join(lines)
