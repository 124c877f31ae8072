"""Every rule of ``aibridge validate``: stable code, default severity, what it finds, how to fix it.

Codes are never reused. FLY = fly.toml, DKR = Dockerfile, IGN = .dockerignore, XF = across files.
README's rule table is generated from this catalog (``aibridge.fly.catalog.markdown_table``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.fly.findings import Finding, Severity

__all__ = ("RULES", "Rule", "finding", "markdown_table")

E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    title: str
    fix: str


_RULES = (
    Rule("FLY001", E, "fly.toml is not valid TOML", "Fix the syntax at the reported line and column."),
    Rule(
        "FLY002",
        E,
        "A section has a shape flyctl rejects (table vs array of tables)",
        "Use the form named in the message.",
    ),
    Rule("FLY003", E, "A value has a type flyctl cannot decode", "Use the type named in the message."),
    Rule(
        "FLY004",
        W,
        "Unknown key or section (flyctl ignores it silently)",
        "Fix the spelling or move the key to its section.",
    ),
    Rule("FLY005", W, "No app name", 'Add app = "NAME" (or always pass -a).'),
    Rule("FLY006", E, "A value is not one flyctl accepts", "Use one of the values named in the message."),
    Rule(
        "FLY101",
        E,
        "A service has no internal_port (flyctl does not check)",
        "Set internal_port to the port the app listens on.",
    ),
    Rule("FLY102", E, "concurrency soft_limit is above hard_limit", "Make soft_limit <= hard_limit."),
    Rule(
        "FLY103",
        E,
        "Unknown [[vm]] size (flyctl only fails at deploy)",
        "Use a preset such as shared-cpu-1x.",
    ),
    Rule(
        "FLY104", E, "[[vm]] memory cannot be parsed or is zero", 'Write memory = "512mb" or memory_mb = 512.'
    ),
    Rule(
        "FLY105",
        E,
        "A bare-integer duration whose unit surprises",
        'Write the duration as a string with a unit, e.g. "10s".',
    ),
    Rule(
        "FLY106",
        E,
        "A duration string is not a Go duration",
        'Use a Go duration such as "500ms", "10s", "1m30s".',
    ),
    Rule(
        "FLY107",
        W,
        "auto_stop_machines is on but auto_start_machines is off",
        "Set auto_start_machines = true.",
    ),
    Rule("FLY108", E, "Unsupported deploy strategy", "Use canary, rolling, immediate or bluegreen."),
    Rule(
        "FLY109",
        E,
        "A deploy strategy flyctl refuses with this config",
        "Use rolling or immediate with volumes; add a check for bluegreen.",
    ),
    Rule("FLY110", E, "Top-level check interval below 2 s", 'Set interval to "2s" or more.'),
    Rule("FLY111", E, "Top-level check timeout above 60 s", 'Set timeout to "60s" or less.'),
    Rule("FLY112", E, "Top-level check without a valid type", 'Set type = "http" or "tcp".'),
    Rule("FLY113", W, "A check grace_period above Fly's 1 minute cap", 'Lower grace_period to "1m" or less.'),
    Rule(
        "FLY114", W, "A service check interval or timeout below 1 s (flyctl raises it)", 'Use at least "1s".'
    ),
    Rule("FLY115", E, "[env] name starting with FLY_ (reserved by the platform)", "Rename the variable."),
    Rule("FLY116", E, "[metrics] port equals internal_port", "Serve metrics on their own port (e.g. 9091)."),
    Rule(
        "FLY117",
        N,
        "Rolling deploy of a single machine (downtime while it is replaced)",
        "Run >= 2 machines, or accept the gap.",
    ),
    Rule("FLY118", E, "More than one mount for one process group", "Keep one [[mounts]] per process group."),
    Rule(
        "FLY119",
        E,
        "A mount without destination, or a volume size, retention or auto-extend value out of range",
        "Set destination; sizes >= 1GB, snapshot_retention 1-60, auto_extend_size_threshold 50-99.",
    ),
    Rule(
        "FLY120",
        E,
        "A service or check names a process group that is not defined",
        "Define it in [processes] or fix the name.",
    ),
    Rule(
        "FLY121",
        W,
        "More than one build strategy in [build]",
        "Keep one of image, dockerfile, builder/buildpacks, builtin.",
    ),
    Rule("FLY122", W, "kill_timeout above Fly's 300 s maximum", 'Use at most "300s".'),
    Rule(
        "FLY123",
        E,
        "A top-level check with no port and no [http_service] to take it from",
        "Set port in the check.",
    ),
    Rule("FLY124", W, "A mount without source (the volume name)", "Set source to the volume's name."),
    Rule("FLY125", E, "A command flyctl cannot shell-split (unbalanced quotes)", "Balance the quotes."),
    Rule("DKR001", E, "The Dockerfile cannot be parsed", "Fix the instruction at the reported line."),
    Rule("DKR002", W, "No Dockerfile to build from", "Add a Dockerfile, or set [build] image."),
    Rule(
        "DKR101",
        E,
        "Shell syntax in COPY/ADD arguments (they run no shell)",
        "Move the shell logic into a RUN.",
    ),
    Rule(
        "DKR102",
        E,
        "COPY --from names a stage that is not defined before it",
        "Name a previous stage (FROM ... AS name) or an image with a tag.",
    ),
    Rule(
        "DKR103",
        W,
        "The final stage runs as root",
        "Add a non-root USER (e.g. USER 1001), or drop to one in the entrypoint (setpriv, gosu, su-exec).",
    ),
    Rule(
        "DKR104",
        W,
        "No init as PID 1",
        'Use ENTRYPOINT ["tini", "--"] (or dumb-init), or exec a server that handles signals.',
    ),
    Rule(
        "DKR105",
        W,
        "Shell-form CMD/ENTRYPOINT (/bin/sh is PID 1 and swallows SIGTERM)",
        'Use the exec form: CMD ["prog", "arg"].',
    ),
    Rule("DKR106", W, "Unpinned or latest base image", "Pin the tag, e.g. python:3.12-slim."),
    Rule(
        "DKR107", W, "pip install without --no-cache-dir", "Add --no-cache-dir (or ENV PIP_NO_CACHE_DIR=1)."
    ),
    Rule("DKR108", N, "apt lists left behind in the image", "End the RUN with rm -rf /var/lib/apt/lists/*."),
    Rule("DKR109", W, "ADD used for local files", "Use COPY (ADD is for URLs and archives)."),
    Rule(
        "DKR110",
        W,
        "A secret in ENV or ARG (baked into the image)",
        "Use fly secrets set, or a build secret.",
    ),
    Rule(
        "DKR111",
        N,
        "No HEALTHCHECK (Fly uses fly.toml's checks)",
        "Add a HEALTHCHECK for local runs, or ignore this.",
    ),
    Rule("DKR112", E, "EXPOSE port is not a valid port", "Use a number 1-65535, optionally /tcp or /udp."),
    Rule(
        "IGN101",
        W,
        "No .dockerignore: everything, secrets included, goes into the build context",
        "Create a .dockerignore.",
    ),
    Rule(
        "IGN102",
        W,
        ".dockerignore does not exclude a sensitive or bulky path",
        "Add the pattern named in the message.",
    ),
    Rule(
        "XF101", E, "internal_port is not EXPOSEd by the Dockerfile", "EXPOSE the port, or fix internal_port."
    ),
    Rule("XF102", E, "internal_port differs from the port the command serves on", "Make them the same."),
    Rule(
        "XF103",
        E,
        "The server binds a loopback address (unreachable from Fly's proxy)",
        "Bind :: (dual-stack; Fly's 6PN is IPv6 only) or 0.0.0.0 (uvicorn --host ::).",
    ),
    Rule(
        "XF104",
        E,
        "[metrics] port or path differs from what the app serves",
        "Point [metrics] at the app's metrics listener.",
    ),
    Rule(
        "XF105",
        E,
        "A health check path the app does not serve",
        "Use a path the app serves (aibridge: /health).",
    ),
    Rule(
        "XF106",
        E,
        "kill_timeout is shorter than the server's drain timeout",
        "Raise kill_timeout above the drain timeout.",
    ),
    Rule(
        "XF107",
        W,
        "The Dockerfile HEALTHCHECK probes another path than fly.toml's check",
        "Probe the same path.",
    ),
    Rule(
        "XF108",
        E,
        "The bridge's SQLite store is on the root filesystem Fly resets (no volume at AI_BRIDGE_DATA_DIR)",
        'Mount a volume there ([[mounts]] destination = "/data", AI_BRIDGE_DATA_DIR = "/data"; '
        "`aibridge init` writes both). Or AI_BRIDGE_REDIS_URL: Redis holds everything (what survives is "
        'then Redis\'s persistence, at a network hop per write). Or AI_BRIDGE_STORE = "memory": nothing '
        "survives a stop, by choice.",
    ),
    Rule(
        "XF109",
        E,
        "[[mounts]] with a non-root USER and no ownership fix: the app cannot write its volume",
        "Start as root, chown the mount point, then drop to the app user (setpriv, gosu, su-exec); "
        "`aibridge init --volume` writes that entrypoint.",
    ),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _RULES}


def finding(
    code: str,
    file: str,
    position: tuple[int, int],
    message: str,
    fix: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    """A finding of rule ``code`` (its default severity and fix unless given)."""
    rule = RULES[code]
    return Finding(code, severity or rule.severity, file, position[0], position[1], message, fix or rule.fix)


def markdown_table() -> str:
    """The README rule table."""
    rows = ["| code | severity | what | fix |", "|---|---|---|---|"]
    rows += [f"| {r.code} | {r.severity.value} | {r.title} | {r.fix} |" for r in _RULES]
    return "\n".join(rows)
