"""Every rule of ``aibridge validate``: stable code, default severity, what it finds, how to fix it.

Codes are never reused. FLY = fly.toml, DKR = Dockerfile, IGN = .dockerignore, XF = across files.
README's rule table is generated from this catalog (``aibridge.fly.catalog.markdown_table``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aibridge.fly.findings import Finding, Severity

__all__ = ("ERROR_REASONS", "RULES", "Rule", "Why", "finding", "markdown_table")

E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO


class Why(enum.StrEnum):
    """Why a rule has its severity. An error is a file flyctl refuses, or a deploy or app the
    platform will certainly fail; a warning is a file flyctl accepts that does not do what it says."""

    PARSE = "flyctl cannot parse the TOML"
    DECODE = "flyctl refuses it while decoding (patches.go, then JSON into appconfig.Config)"
    VALIDATE = "flyctl refuses it in Config.Validate (validation.go)"
    DEPLOY = "fly deploy refuses it (machine config conversion, deploy strategy)"
    PLATFORM = "the platform will certainly fail the deploy or the app"
    BUILD = "the image build fails"
    DROPPED = "flyctl accepts it but drops, truncates or stringifies the value"
    UNKNOWN = "flyctl accepts it but ignores the key"
    UNCHECKED = "flyctl passes it through unchecked; the platform may refuse it"
    SURPRISE = "flyctl accepts it but it does not do what it seems to say"
    FLYCTL_WARNS = "flyctl accepts it and prints a warning"
    HYGIENE = "it works, but runs worse or leaks on Fly"


ERROR_REASONS = frozenset({Why.PARSE, Why.DECODE, Why.VALIDATE, Why.DEPLOY, Why.PLATFORM, Why.BUILD})


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    title: str
    fix: str
    why: Why
    """The clause of the severity rule (README) this rule's severity follows from."""
    lesser: Why | None = None
    """For a rule that reports its less certain cases one severity lower: why those are lower."""


# Retired codes, never reused: FLY116 ([metrics] port = internal_port; flyctl and Fly accept it).
_RULES = (
    Rule(
        "FLY001",
        E,
        "fly.toml is not valid TOML",
        "Fix the syntax at the reported line and column.",
        Why.PARSE,
    ),
    Rule(
        "FLY002",
        E,
        "A section has a shape flyctl rejects (table vs array of tables)",
        "Use the form named in the message.",
        Why.DECODE,
    ),
    Rule(
        "FLY003",
        E,
        "A value has a type flyctl cannot decode",
        "Use the type named in the message.",
        Why.DECODE,
    ),
    Rule(
        "FLY004",
        W,
        "Unknown key or section (flyctl ignores it silently)",
        "Fix the spelling or move the key to its section.",
        Why.UNKNOWN,
    ),
    Rule(
        "FLY005",
        W,
        'No app name (or app = ""): flyctl needs -a then',
        'Add app = "NAME" (or always pass -a).',
        Why.SURPRISE,
    ),
    Rule(
        "FLY006",
        E,
        "A value flyctl refuses (restart policy, autostop, compression, concurrency string)",
        "Use one of the values named in the message.",
        Why.DECODE,
    ),
    Rule(
        "FLY101",
        E,
        "A service has no internal_port (flyctl does not check)",
        "Set internal_port to the port the app listens on.",
        Why.PLATFORM,
    ),
    Rule(
        "FLY102",
        W,
        "concurrency soft_limit is above hard_limit (the soft limit never applies)",
        "Make soft_limit <= hard_limit.",
        Why.SURPRISE,
    ),
    Rule(
        "FLY103",
        E,
        "Unknown [[vm]] size (flyctl only fails at deploy)",
        "Use a preset such as shared-cpu-1x.",
        Why.DEPLOY,
    ),
    Rule(
        "FLY104",
        E,
        "[[vm]] memory cannot be parsed or is zero",
        'Write memory = "512mb" or memory_mb = 512.',
        Why.DEPLOY,
    ),
    Rule(
        "FLY105",
        E,
        "A bare-number duration read as nanoseconds (e.g. a 10 ns check interval)",
        'Write the duration as a string with a unit, e.g. "10s".',
        Why.PLATFORM,
    ),
    Rule(
        "FLY106",
        E,
        "A duration flyctl cannot parse (not a Go duration, a leading space, a wrong type)",
        'Use a Go duration such as "500ms", "10s", "1m30s".',
        Why.DECODE,
    ),
    Rule(
        "FLY107",
        W,
        "auto_stop_machines is on but auto_start_machines is off",
        "Set auto_start_machines = true.",
        Why.SURPRISE,
    ),
    Rule(
        "FLY108",
        E,
        "Unsupported deploy strategy",
        "Use canary, rolling, immediate or bluegreen.",
        Why.VALIDATE,
    ),
    Rule(
        "FLY109",
        E,
        "A deploy strategy fly deploy refuses with this config (canary or bluegreen with volumes, "
        "bluegreen without checks)",
        "Use rolling or immediate with volumes; add a check for bluegreen.",
        Why.DEPLOY,
    ),
    Rule("FLY110", E, "Top-level check interval below 2 s", 'Set interval to "2s" or more.', Why.VALIDATE),
    Rule("FLY111", E, "Top-level check timeout above 60 s", 'Set timeout to "60s" or less.', Why.VALIDATE),
    Rule("FLY112", E, "Top-level check without a valid type", 'Set type = "http" or "tcp".', Why.VALIDATE),
    Rule(
        "FLY113",
        W,
        "A service check interval, timeout or grace_period above 1 minute (flyctl lowers it to 1 minute)",
        'Use at most "1m".',
        Why.FLYCTL_WARNS,
    ),
    Rule(
        "FLY114",
        W,
        "A service check interval or timeout below 1 s, or a non-zero grace_period below 1 s "
        "(flyctl raises it to 1 s)",
        'Use at least "1s".',
        Why.FLYCTL_WARNS,
    ),
    Rule(
        "FLY115",
        W,
        "[env] name starting with FLY_ (the platform sets these; yours may be overwritten)",
        "Rename the variable.",
        Why.SURPRISE,
    ),
    Rule(
        "FLY117",
        N,
        "Rolling deploy of a single machine (downtime while it is replaced)",
        "Run >= 2 machines, or accept the gap.",
        Why.HYGIENE,
    ),
    Rule(
        "FLY118",
        E,
        "More than one mount for one process group (a machine takes one volume)",
        "Keep one [[mounts]] per process group.",
        Why.PLATFORM,
    ),
    Rule(
        "FLY119",
        E,
        "A mount without destination, or a volume size, retention or auto-extend value flyctl refuses",
        "Set destination; initial_size >= 1GB, snapshot_retention 1-60; auto_extend_size_threshold "
        "50-99, increment 1-100GB and limit 1-500GB, all three or none.",
        Why.VALIDATE,
    ),
    Rule(
        "FLY120",
        E,
        "A service or [[restart]] names a process group that is not defined, or a service names none "
        "while [processes] defines groups",
        "Set processes to groups defined in [processes].",
        Why.VALIDATE,
    ),
    Rule(
        "FLY121",
        W,
        "More than one build strategy in [build] (build-target counts as a Dockerfile)",
        "Keep one of image, dockerfile/build-target, builder/buildpacks, builtin.",
        Why.FLYCTL_WARNS,
    ),
    Rule("FLY122", W, "kill_timeout above Fly's 300 s maximum", 'Use at most "300s".', Why.SURPRISE),
    Rule(
        "FLY123",
        E,
        "A top-level check with no port and no [http_service] to take it from",
        "Set port in the check.",
        Why.DEPLOY,
    ),
    Rule(
        "FLY124",
        W,
        "A mount without source (the volume name)",
        "Set source to the volume's name.",
        Why.SURPRISE,
    ),
    Rule(
        "FLY125",
        E,
        "A command flyctl cannot shell-split (unbalanced quotes)",
        "Balance the quotes.",
        Why.VALIDATE,
    ),
    Rule(
        "FLY126",
        W,
        "A value flyctl passes through unchecked that the platform does not know "
        "(cpu_kind, protocol, concurrency type)",
        "Use one of the values named in the message.",
        Why.UNCHECKED,
    ),
    Rule(
        "FLY127",
        W,
        "A value flyctl silently drops, truncates or turns into text (a boolean duration, a TOML date, 5.5)",
        "Write the value in the type named in the message.",
        Why.DROPPED,
    ),
    Rule(
        "FLY128",
        W,
        "A [[services]] section with no ports (flyctl warns; nothing is routed to it)",
        "Add a [[services.ports]] section.",
        Why.FLYCTL_WARNS,
    ),
    Rule(
        "DKR001", E, "The Dockerfile cannot be parsed", "Fix the instruction at the reported line.", Why.BUILD
    ),
    Rule(
        "DKR002",
        W,
        "No Dockerfile to build from (fly.toml may be checked away from its project)",
        "Add a Dockerfile, or set [build] image.",
        Why.SURPRISE,
    ),
    Rule(
        "DKR101",
        E,
        "Shell syntax in COPY/ADD arguments (they run no shell)",
        "Move the shell logic into a RUN.",
        Why.BUILD,
    ),
    Rule(
        "DKR102",
        E,
        "COPY --from names a stage defined after it or itself (a warning when no stage has the name: "
        "BuildKit then pulls an image of that name)",
        "Name a previous stage (FROM ... AS name) or an image with a tag.",
        Why.BUILD,
        lesser=Why.SURPRISE,
    ),
    Rule(
        "DKR103",
        W,
        "The final stage runs as root (no USER, and no setpriv/gosu/su-exec drop in the entrypoint)",
        "Add a non-root USER (e.g. USER 1001), or drop to one in the entrypoint (setpriv, gosu, su-exec).",
        Why.HYGIENE,
    ),
    Rule(
        "DKR104",
        W,
        "No init as PID 1",
        'Use ENTRYPOINT ["tini", "--"] (or dumb-init), or exec a server that handles signals.',
        Why.HYGIENE,
    ),
    Rule(
        "DKR105",
        W,
        "Shell-form CMD/ENTRYPOINT (/bin/sh is PID 1 and swallows SIGTERM)",
        'Use the exec form: CMD ["prog", "arg"].',
        Why.HYGIENE,
    ),
    Rule("DKR106", W, "Unpinned or latest base image", "Pin the tag, e.g. python:3.12-slim.", Why.HYGIENE),
    Rule(
        "DKR107",
        W,
        "pip install without --no-cache-dir",
        "Add --no-cache-dir (or ENV PIP_NO_CACHE_DIR=1).",
        Why.HYGIENE,
    ),
    Rule(
        "DKR108",
        N,
        "apt lists left behind in the image",
        "End the RUN with rm -rf /var/lib/apt/lists/*.",
        Why.HYGIENE,
    ),
    Rule("DKR109", W, "ADD used for local files", "Use COPY (ADD is for URLs and archives).", Why.HYGIENE),
    Rule(
        "DKR110",
        W,
        "A secret in ENV or ARG (baked into the image)",
        "Use fly secrets set, or a build secret.",
        Why.HYGIENE,
    ),
    Rule(
        "DKR111",
        N,
        "No HEALTHCHECK (Fly uses fly.toml's checks)",
        "Add a HEALTHCHECK for local runs, or ignore this.",
        Why.HYGIENE,
    ),
    Rule(
        "DKR112",
        E,
        "EXPOSE port is not a valid port",
        "Use a number 1-65535, optionally /tcp or /udp.",
        Why.BUILD,
    ),
    Rule(
        "DKR113",
        E,
        "A COPY/ADD source that is not in the build context, or that .dockerignore excludes",
        "Create the file, fix the path, or stop excluding it in .dockerignore.",
        Why.BUILD,
    ),
    Rule(
        "IGN101",
        W,
        "No .dockerignore: everything, secrets included, goes into the build context",
        "Create a .dockerignore.",
        Why.HYGIENE,
    ),
    Rule(
        "IGN102",
        W,
        ".dockerignore does not exclude a sensitive or bulky path",
        "Add the pattern named in the message.",
        Why.HYGIENE,
    ),
    Rule(
        "XF101",
        E,
        "internal_port is not EXPOSEd by the Dockerfile",
        "EXPOSE the port, or fix internal_port.",
        Why.PLATFORM,
    ),
    Rule(
        "XF102",
        E,
        "internal_port differs from the port the command serves on (a warning when the port is only "
        "inferred from PORT)",
        "Make them the same.",
        Why.PLATFORM,
        lesser=Why.SURPRISE,
    ),
    Rule(
        "XF103",
        E,
        "The server binds a loopback address (unreachable from Fly's proxy)",
        "Bind :: (dual-stack; Fly's 6PN is IPv6 only) or 0.0.0.0 (uvicorn --host ::).",
        Why.PLATFORM,
    ),
    Rule(
        "XF104",
        W,
        "[metrics] port or path differs from what the app serves (Fly scrapes nothing)",
        "Point [metrics] at the app's metrics listener.",
        Why.SURPRISE,
    ),
    Rule(
        "XF105",
        E,
        "A health check path the app does not serve (the check fails, so the deploy does)",
        "Use a path the app serves (aibridge: /health).",
        Why.PLATFORM,
    ),
    Rule(
        "XF106",
        E,
        "kill_timeout is shorter than the server's drain timeout",
        "Raise kill_timeout above the drain timeout.",
        Why.PLATFORM,
    ),
    Rule(
        "XF107",
        W,
        "The Dockerfile HEALTHCHECK probes another path than fly.toml's check",
        "Probe the same path.",
        Why.SURPRISE,
    ),
    Rule(
        "XF108",
        E,
        "The bridge's SQLite store is on the root filesystem Fly resets (no volume at AI_BRIDGE_DATA_DIR)",
        'Mount a volume there ([[mounts]] destination = "/data", AI_BRIDGE_DATA_DIR = "/data"; '
        "`aibridge init` writes both). Or AI_BRIDGE_REDIS_URL: Redis holds everything (what survives is "
        'then Redis\'s persistence, at a network hop per write). Or AI_BRIDGE_STORE = "memory": nothing '
        "survives a stop, by choice.",
        Why.PLATFORM,
        lesser=Why.SURPRISE,
    ),
    Rule(
        "XF109",
        E,
        "[[mounts]] with a non-root USER and no ownership fix: the app cannot write its volume",
        "Start as root, chown the mount point, then drop to the app user (setpriv, gosu, su-exec); "
        "`aibridge init --volume` writes that entrypoint.",
        Why.PLATFORM,
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
    rows = ["| code | severity | why | what | fix |", "|---|---|---|---|---|"]
    for r in _RULES:
        severity = r.severity.value
        why = r.why.value
        if r.lesser is not None:
            severity += " (some cases: warning)"
            why += f"; the warning cases: {r.lesser.value}"
        rows.append(f"| {r.code} | {severity} | {why} | {r.title} | {r.fix} |")
    return "\n".join(rows)
