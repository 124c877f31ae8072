"""The files ``aibridge init`` writes (fly.toml, Dockerfile, .dockerignore), every value in its correct form.

Durations are always strings with units (a bare integer means seconds, milliseconds or nanoseconds
depending on where it sits), checks are an array of tables and concurrency a table (fly.md §1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aibridge import __version__
from aibridge.server.config import SETTINGS

__all__ = (
    "NO_VOLUME_LOSS",
    "PYTHON_IMAGE",
    "VOLUME_ENTRYPOINT",
    "InitOptions",
    "render_dockerfile",
    "render_dockerignore",
    "render_fly_toml",
)

PYTHON_IMAGE = "python:3.12-slim"
KILL_TIMEOUT_S = 10
_DEFAULTS = {s.env: s.default for s in SETTINGS}
_ENV_KEYS = (
    "AI_BRIDGE_HISTORY_LIMIT",
    "AI_BRIDGE_MAX_QUEUE",
    "AI_BRIDGE_CLIENT_TTL_MS",
    "AI_BRIDGE_CLEANUP_INTERVAL_MS",
    "AI_BRIDGE_RATE_WINDOW_MS",
    "AI_BRIDGE_RATE_MAX",
)
# tini (PID 1) runs this as root: give the volume to the app user, then drop to it for good.
VOLUME_ENTRYPOINT = (
    "tini",
    "--",
    "/bin/sh",
    "-c",
    'chown 1001:1001 /data && exec setpriv --reuid=1001 --regid=1001 --clear-groups -- "$@"',
    "sh",
)
NO_VOLUME_LOSS = (
    "queued envelopes, history and unacknowledged deliveries are in memory and lost on every stop "
    "(auto-stop stops an idle machine), restart, deploy and host failure"
)
_VOLUME_NOTE = """# A new Fly volume is mounted owned by root, which the app user cannot write. So this image
# starts as root: the entrypoint gives /data to UID 1001 (the mount point only, not recursively:
# what is inside was written by 1001, and walking a full volume would slow every boot), then
# setpriv drops to 1001 for good before exec'ing CMD. /data also exists in the image, so it
# starts without a volume too.
"""


@dataclass(frozen=True, slots=True)
class InitOptions:
    app: str
    region: str = "sjc"
    memory_mb: int = 512
    asgi: str | None = None
    """``MODULE:APP`` of any ASGI app (served by uvicorn), or None for the aibridge server."""
    volume: bool = True
    """Mount a Fly volume at /data (the bridge keeps its SQLite store there)."""
    health_path: str | None = "/health"
    """Path of the HTTP health check; None writes no check at all (``--asgi`` without ``--health-path``)."""
    from_source: bool = True
    """Build the bridge from this source tree; False installs ``aibridge==<version>`` from the index."""
    version: str = __version__

    @property
    def port(self) -> int:
        return int(_DEFAULTS["PORT"] or 8080)

    @property
    def metrics_port(self) -> int:
        return int(_DEFAULTS["AI_BRIDGE_METRICS_PORT"] or 9091)


def render_fly_toml(opts: InitOptions) -> str:
    drain = _DEFAULTS["AI_BRIDGE_SHUTDOWN_TIMEOUT_S"]
    env = {key: _DEFAULTS[key] for key in _ENV_KEYS} if opts.asgi is None else {}
    if opts.asgi is None:
        store = {"AI_BRIDGE_STORE": "sqlite", "AI_BRIDGE_DATA_DIR": "/data"}
        env |= store if opts.volume else {"AI_BRIDGE_STORE": "memory"}
    lines = [
        f"# fly.toml for {opts.asgi or 'the aibridge agent bridge'}, written by `aibridge init`.",
        "# Check it offline with `aibridge validate`, deploy it with `aibridge deploy` (or `fly deploy`).",
        "",
        f'app = "{opts.app}"',
        f'primary_region = "{opts.region}"',
        'kill_signal = "SIGTERM"',
        f"# Longer than the server's graceful drain ({drain} s), so SIGKILL never cuts it short.",
        f'kill_timeout = "{KILL_TIMEOUT_S}s"',
        "",
        "[build]",
        '  dockerfile = "Dockerfile"',
        "",
        "[deploy]",
    ]
    if opts.volume:
        lines.append(
            "  # A volume pins its machine, so rolling is the only strategy; expect a short gap per deploy."
        )
        lines.append("  # aibridge: ignore=FLY117")
    lines += ['  strategy = "rolling"', ""]
    if env:
        lines.append("[env]")
        if opts.asgi is None and opts.volume:
            lines += [
                "  # The SQLite store is on the volume at /data: Fly resets the root filesystem on every",
                "  # stop, restart and deploy, the volume survives them (not its host's failure: README",
                '  # "Durability"). One volume per machine: more than one machine needs AI_BRIDGE_REDIS_URL.',
            ]
        elif opts.asgi is None:
            lines += [
                "  # No volume (`aibridge init --no-volume`): queued envelopes, history and unacknowledged",
                "  # deliveries are in memory and lost on every stop (auto-stop stops an idle machine),",
                "  # restart, deploy and host failure. `aibridge init` (with its volume) or",
                "  # AI_BRIDGE_REDIS_URL keeps them.",
            ]
        lines += [*(f'  {key} = "{value}"' for key, value in env.items()), ""]
    lines += [
        "[http_service]",
        f"  internal_port = {opts.port}",
        "  force_https = true",
        '  auto_stop_machines = "stop"',
        "  auto_start_machines = true",
        "  min_machines_running = 0",
        "",
        "  [http_service.concurrency]",
        '    type = "connections"',
        "    hard_limit = 1000",
        "    soft_limit = 500",
        "",
        *_fly_check(opts),
        "",
        "[[vm]]",
        '  cpu_kind = "shared"',
        "  cpus = 1",
        f'  memory = "{opts.memory_mb}mb"',
    ]
    if opts.asgi is None:
        lines += ["", "[metrics]", f"  port = {opts.metrics_port}", '  path = "/metrics"']
    if opts.volume:
        lines += [
            "",
            "[[mounts]]",
            f'  source = "{opts.app.replace("-", "_")}_data"',
            '  destination = "/data"',
        ]
    return "\n".join(lines) + "\n"


def _fly_check(opts: InitOptions) -> list[str]:
    if opts.health_path is None:
        return [
            "  # No health check: pass `--health-path /your/health` to `aibridge init` for one.",
            "  # A guessed path would fail every check and stall each deploy.",
        ]
    return [
        "  [[http_service.checks]]",
        '    method = "GET"',
        f'    path = "{opts.health_path}"',
        '    grace_period = "30s"',
        '    interval = "15s"',
        '    timeout = "10s"',
        '    headers = { User-Agent = "fly-health-check" }',
    ]


def _healthcheck(opts: InitOptions) -> str:
    if opts.health_path is None:
        return (
            "# No health check was named (`aibridge init --health-path` adds one here and in fly.toml):\n"
            "# none at all is better than a guessed path that always fails.\n"
            "HEALTHCHECK NONE"
        )
    url = f"http://127.0.0.1:{opts.port}{opts.health_path}"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"
    return (
        "# No curl in a slim image: probe with the Python standard library.\n"
        "HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \\\n"
        f'  CMD ["python", "-c", "{probe}"]'
    )


def render_dockerfile(opts: InitOptions) -> str:
    if opts.asgi is None and opts.from_source:
        build = (
            "COPY pyproject.toml README.md ./\nCOPY src ./src\nRUN /opt/venv/bin/pip install --no-cache-dir ."
        )
    elif opts.asgi is None:
        build = (
            "# aibridge from the package index, pinned to the version of `aibridge init` that wrote this.\n"
            f'RUN /opt/venv/bin/pip install --no-cache-dir "aibridge=={opts.version}"'
        )
    if opts.asgi is None:
        cmd, expose, copy_app, workdir = (
            '["aibridge", "serve"]',
            f"{opts.port} {opts.metrics_port}",
            "",
            "/app",
        )
    else:
        build = (
            "COPY . /app\n"
            "RUN /opt/venv/bin/pip install --no-cache-dir 'uvicorn[standard]' \\\n"
            " && if [ -f /app/requirements.txt ]; then \\\n"
            "      /opt/venv/bin/pip install --no-cache-dir -r /app/requirements.txt; fi \\\n"
            " && if [ -f /app/pyproject.toml ]; then /opt/venv/bin/pip install --no-cache-dir /app; fi"
        )
        drain = _DEFAULTS["AI_BRIDGE_SHUTDOWN_TIMEOUT_S"]
        cmd = (
            f'["uvicorn", "{opts.asgi}", "--host", "::", "--port", "{opts.port}", '
            f'"--proxy-headers", "--timeout-graceful-shutdown", "{drain}"]'
        )
        expose, copy_app, workdir = (
            str(opts.port),
            "COPY --from=builder --chown=1001:1001 /app /app\n",
            "/app",
        )
    user, mkdir, entrypoint = "USER 1001\n", "", 'ENTRYPOINT ["tini", "--"]'
    if opts.volume:
        user, mkdir = "", " \\\n && mkdir /data"
        entrypoint = _VOLUME_NOTE + "ENTRYPOINT " + json.dumps(VOLUME_ENTRYPOINT)
    return f"""# syntax=docker/dockerfile:1
# Dockerfile written by `aibridge init`: a virtualenv built in one stage, copied into a slim runtime
# that runs as an unprivileged user with tini as PID 1 (signals forwarded, zombies reaped).

FROM {PYTHON_IMAGE} AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/venv
{build}

FROM {PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PATH="/opt/venv/bin:$PATH"
RUN apt-get update \\
 && apt-get install -y --no-install-recommends tini \\
 && rm -rf /var/lib/apt/lists/* \\
 && groupadd --system --gid 1001 app \\
 && useradd --system --uid 1001 --gid app --home-dir {workdir} --create-home app{mkdir}
COPY --from=builder /opt/venv /opt/venv
{copy_app}WORKDIR {workdir}
{user}EXPOSE {expose}
{_healthcheck(opts)}
{entrypoint}
CMD {cmd}
"""


def render_dockerignore(opts: InitOptions) -> str:
    return """# Keep secrets, VCS data and local artefacts out of the build context (and so out of the image).
.git
.gitignore
.env*
**/*.pem
**/*.key
.venv
venv
**/__pycache__
**/*.py[cod]
.pytest_cache
.mypy_cache
.ruff_cache
.hypothesis
*.egg-info
dist
tests
bench
fly.toml
Dockerfile
.dockerignore
"""
