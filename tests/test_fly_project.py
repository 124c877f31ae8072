"""Whole projects: what `aibridge init` writes validates clean; cross-file rules; ignores; merging."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from aibridge.errors import ConfigError, FileReadError
from aibridge.fly.findings import Report, Severity
from aibridge.fly.generate import init_project, merge_fly_toml, options_for
from aibridge.fly.templates import InitOptions
from aibridge.fly.validate import validate_project
from support import require_binary


def make(tmp_path: Path, *, sources: bool = True, **options: object) -> Path:
    """``aibridge init`` in ``tmp_path``; with ``sources``, in a checkout of aibridge (the files the
    bridge Dockerfile COPYs exist), as the repo itself is."""
    if sources and options.get("asgi") is None:
        (tmp_path / "src" / "aibridge").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "aibridge" / "__init__.py").write_text("")
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "aibridge"\n')
        (tmp_path / "README.md").write_text("# aibridge\n")
    options.setdefault("volume", False)  # the plain variant unless a test asks for the volume
    init_project(tmp_path, InitOptions(app="demo-app", **options))  # type: ignore[arg-type]
    return tmp_path


def test_init_in_an_empty_folder_copies_files_that_are_not_there(tmp_path: Path) -> None:
    # The true current behaviour of `aibridge init` outside the aibridge tree: the bridge Dockerfile
    # COPYs pyproject.toml, README.md and src/, which an empty folder lacks, so the build fails.
    # This test changes when init installs aibridge from PyPI instead (then: no DKR113 here).
    project = make(tmp_path, sources=False)
    report = validate_project(project / "fly.toml")
    found = [(f.code, f.severity, f.message.split("'")[1]) for f in report.findings]
    assert found == [
        ("DKR113", Severity.ERROR, "pyproject.toml"),
        ("DKR113", Severity.ERROR, "README.md"),
        ("DKR113", Severity.ERROR, "src"),
    ]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def codes(report: Report) -> list[tuple[str, str, int]]:
    return [(Path(f.file).name, f.code, f.line) for f in report.findings]


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("asgi", [None, "myapp.main:app"])
@pytest.mark.parametrize("volume", [False, True])
def test_everything_init_writes_validates_with_zero_findings(
    tmp_path: Path, asgi: str | None, volume: bool
) -> None:
    project = make(tmp_path, asgi=asgi, volume=volume)
    report = validate_project(project / "fly.toml", strict=True)
    assert report.findings == []
    assert [Path(f).name for f in report.files] == ["fly.toml", "Dockerfile", ".dockerignore"]


def test_volume_variant_mounts_data_and_uses_sqlite(tmp_path: Path) -> None:
    from aibridge.fly.model import load_fly_config

    project = make(tmp_path, volume=True)
    config = load_fly_config(project / "fly.toml")
    assert [(m.source, m.destination) for m in config.mounts] == [("demo_app_data", "/data")]
    assert config.env["AI_BRIDGE_DATA_DIR"] == "/data" and config.env["AI_BRIDGE_STORE"] == "sqlite"
    # The one-machine rolling note is acknowledged in the file itself, so removing the comment shows it.
    edit(project / "fly.toml", "  # aibridge: ignore=FLY117\n", "")
    assert [c for _, c, _ in codes(validate_project(project / "fly.toml"))] == ["FLY117"]


def test_init_matches_the_server_defaults(tmp_path: Path) -> None:
    from aibridge.fly.model import load_fly_config
    from aibridge.server.config import BridgeConfig

    config = load_fly_config(make(tmp_path) / "fly.toml")
    server = BridgeConfig()
    assert config.internal_port == server.port
    assert (config.metrics_port, config.metrics_path) == (server.metrics_port, "/metrics")
    assert config.kill_timeout_s is not None and config.kill_timeout_s > server.shutdown_timeout_s
    assert config.health_check_path == "/health" and config.memory_mb == 512


Mutation = Callable[[Path], None]


def _fly(old: str, new: str) -> Mutation:
    return lambda p: edit(p / "fly.toml", old, new)


def _docker(old: str, new: str) -> Mutation:
    return lambda p: edit(p / "Dockerfile", old, new)


_SETPRIV = "exec setpriv --reuid=1001 --regid=1001 --clear-groups -- "


def test_volume_variant_starts_as_root_and_drops_to_the_app_user(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "volume").mkdir()
    plain = make(tmp_path / "plain") / "Dockerfile"
    project = make(tmp_path / "volume", volume=True)
    text = (project / "Dockerfile").read_text()
    assert "\nUSER 1001\n" in plain.read_text() and "\nUSER " not in text
    assert "chown 1001:1001 /data && " + _SETPRIV + '\\"$@\\"' in text
    assert text.rstrip().endswith('CMD ["aibridge", "serve"]')
    # The drop is what keeps DKR103 quiet: without setpriv the image runs as root.
    edit(project / "Dockerfile", _SETPRIV, "exec ")
    assert [c for _, c, _ in codes(validate_project(project / "fly.toml"))] == ["DKR103"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _fly("internal_port = 8080", "internal_port = 8081"),
            [("fly.toml", "XF101"), ("fly.toml", "XF102")],
        ),
        (_docker('"serve"]', '"serve", "--host", "127.0.0.1"]'), [("Dockerfile", "XF103")]),
    ],
)
def test_volume_variant_cross_rules_see_the_server_behind_the_entrypoint(
    tmp_path: Path, mutate: Mutation, expected: list[tuple[str, str]]
) -> None:
    project = make(tmp_path, volume=True)
    mutate(project)
    assert [(name, code) for name, code, _ in codes(validate_project(project / "fly.toml"))] == expected


def test_volume_entrypoint_chowns_a_root_owned_dir_and_runs_cmd_as_1001(tmp_path: Path) -> None:
    from aibridge.fly.dockerfile import parse_dockerfile

    if os.geteuid() != 0:
        pytest.skip("needs root: the entrypoint chowns a root-owned directory and setpriv changes the UID")
    require_binary("setpriv")
    model = parse_dockerfile((make(tmp_path, volume=True) / "Dockerfile").read_text())
    assert model.final is not None
    entry = model.final.last("ENTRYPOINT")
    assert entry is not None and entry.json and list(entry.value[:2]) == ["tini", "--"]
    # Under /tmp (which UID 1001 can traverse), owned by root and 0700: UID 1001 cannot write it yet.
    data = Path(tempfile.mkdtemp(prefix="aibridge-volume-"))
    try:
        assert (data.stat().st_uid, data.stat().st_mode & 0o777) == (0, 0o700)
        argv = [word.replace("/data", str(data)) for word in entry.value[2:]]
        command = ["/bin/sh", "-c", 'id -u; id -G; touch "$0/written"', str(data)]
        done = subprocess.run([*argv, *command], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1001", "1001"]
        assert (data / "written").stat().st_uid == 1001
        assert (data.stat().st_uid, data.stat().st_gid) == (1001, 1001)
    finally:
        shutil.rmtree(data)


@pytest.mark.parametrize(
    ("asgi", "mutate", "expected", "needle"),
    [
        (
            None,
            _fly("internal_port = 8080", "internal_port = 8081"),
            [("fly.toml", "XF101"), ("fly.toml", "XF102")],
            "internal_port",
        ),
        (
            None,
            _docker('"serve"]', '"serve", "--host", "127.0.0.1"]'),
            [("Dockerfile", "XF103")],
            'CMD ["aibridge"',
        ),
        (
            None,
            _fly("[metrics]\n  port = 9091", "[metrics]\n  port = 9092"),
            [("fly.toml", "XF104")],
            "port = 9092",
        ),
        (
            None,
            _fly('path = "/health"', 'path = "/healthz"'),
            [("fly.toml", "XF105"), ("Dockerfile", "XF107")],
            None,
        ),
        (None, _fly('kill_timeout = "10s"', 'kill_timeout = "5s"'), [("fly.toml", "XF106")], "kill_timeout"),
        (None, _fly('kill_timeout = "10s"\n', ""), [("fly.toml", "XF106")], None),
        (None, _fly("[env]\n", '[env]\n  PORT = "9000"\n'), [("fly.toml", "XF102")], "internal_port"),
        (
            None,
            _fly("[env]\n", '[env]\n  AI_BRIDGE_SHUTDOWN_TIMEOUT_S = "30"\n'),
            [("fly.toml", "XF106")],
            "kill_timeout",
        ),
        ("web:app", _docker('"--host", "::", ', ""), [("Dockerfile", "XF103")], 'CMD ["uvicorn"'),
        ("web:app", _docker('"--port", "8080", ', ""), [("fly.toml", "XF102")], "internal_port"),
        (
            "web:app",
            _fly(
                "[http_service]",
                '[processes]\n  app = "uvicorn web:app --port 8080"\n\n[http_service]\n  processes = ["app"]',
            ),
            [("fly.toml", "XF103")],
            "  app = ",
        ),
    ],
)
def test_cross_file_rules(
    tmp_path: Path, asgi: str | None, mutate: Mutation, expected: list[tuple[str, str]], needle: str | None
) -> None:
    project = make(tmp_path, asgi=asgi)
    mutate(project)
    report = validate_project(project / "fly.toml")
    assert [(name, code) for name, code, _ in codes(report)] == expected
    if needle is not None:
        first = report.findings[0]
        assert first.line == line_of(Path(first.file), needle)
    assert report.failed(strict=True)  # XF104 is a warning: a wrong [metrics] scrapes nothing


def test_inline_and_project_ignores(tmp_path: Path) -> None:
    project = make(tmp_path)
    edit(project / "fly.toml", 'kill_timeout = "10s"', 'kill_timeout = "5s" # aibridge: ignore=XF106')
    edit(project / "Dockerfile", "USER 1001\n", "# aibridge: ignore=DKR103\nUSER root\n")
    assert validate_project(project / "fly.toml").findings == []
    edit(project / "fly.toml", "# aibridge: ignore=XF106", "")
    edit(project / "Dockerfile", "# aibridge: ignore=DKR103\n", "")
    assert sorted(c for _, c, _ in codes(validate_project(project / "fly.toml"))) == ["DKR103", "XF106"]
    (project / "pyproject.toml").write_text('[tool.aibridge.validate]\nignore = ["xf106"]\n')
    edit(project / "Dockerfile", "# syntax", "# aibridge: ignore-file=DKR103\n# syntax")
    assert validate_project(project / "fly.toml").findings == []


def test_strict_turns_unknown_keys_into_errors(tmp_path: Path) -> None:
    project = make(tmp_path)
    edit(project / "fly.toml", "force_https = true", "force_https = true\n  forse_https = true")
    (finding,) = validate_project(project / "fly.toml").findings
    assert (finding.code, finding.severity) == ("FLY004", Severity.WARNING)
    report = validate_project(project / "fly.toml", strict=True)
    assert report.findings[0].severity is Severity.ERROR and report.failed()


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match="no such file"):
        validate_project(tmp_path / "fly.toml")
    (tmp_path / "fly.toml").write_text('app = "x"\nkill_timeout = 10\n[http_service]\ninternal_port = 8080\n')
    assert [c for _, c, _ in codes(validate_project(tmp_path / "fly.toml"))] == ["DKR002"]
    with pytest.raises(FileReadError, match="no such file"):
        validate_project(tmp_path / "fly.toml", tmp_path / "Dockerfile.missing")
    (tmp_path / "Dockerfile").write_bytes(b"\xff\xfe FROM")
    with pytest.raises(FileReadError, match="not UTF-8"):
        validate_project(tmp_path / "fly.toml")
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.12-slim\nUSER 1001\nHEALTHCHECK NONE\nCMD ["aibridge", "serve"]\n'
    )
    report = validate_project(tmp_path / "fly.toml")
    found = {c: f.line for (_, c, _), f in zip(codes(report), report.findings, strict=True)}
    # XF108: no volume, so each restart or deploy resets the SQLite store in ./data.
    assert found == {"IGN101": 0, "XF108": found["XF108"]}


def test_dockerfile_named_in_build_must_exist(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "x"\n[build]\n  dockerfile = "docker/Dockerfile"\n')
    (finding,) = validate_project(tmp_path / "fly.toml").findings
    assert (finding.code, finding.severity, finding.line) == ("DKR002", Severity.WARNING, 3)


def test_prebuilt_image_needs_no_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text(
        'app = "x"\n[build]\nimage = "nginx:1.27"\n[http_service]\ninternal_port = 80\n'
    )
    report = validate_project(tmp_path / "fly.toml")
    assert report.findings == [] and len(report.files) == 1


def test_syntax_error_still_checks_the_dockerfile(tmp_path: Path) -> None:
    project = make(tmp_path)
    edit(project / "fly.toml", "force_https = true", "force_https = = true")
    report = validate_project(project / "fly.toml")
    (finding,) = report.findings
    assert (finding.code, finding.line) == ("FLY001", line_of(project / "fly.toml", "force_https"))
    assert finding.column > 1 and len(report.files) == 3


EXISTING = """# Our app. Keep this comment.
app = "kept-name"   # the real name
primary_region = "ams"

[env]
  CUSTOM = "yes"   # unrelated key, must survive

[http_service]
  internal_port = 8080
  auto_stop_machines = false

[http_service.checks]
  path = "/health"

[custom_section_for_later]
  note = "unknown to flyctl but ours"
"""


def test_init_merges_an_existing_fly_toml(tmp_path: Path) -> None:
    make(tmp_path / "tree")  # the aibridge source files the Dockerfile copies
    for name in ("src", "pyproject.toml", "README.md"):
        shutil.move(tmp_path / "tree" / name, tmp_path / name)
    (tmp_path / "fly.toml").write_text(EXISTING)
    opts = options_for(tmp_path, None, None, 512, None, False)
    result = init_project(tmp_path, opts, keep=("app", "primary_region"))
    assert [f.action for f in result.files] == ["merge", "create", "create"]
    merged = (tmp_path / "fly.toml").read_text()
    assert merged.startswith('# Our app. Keep this comment.\napp = "kept-name"   # the real name\n')
    assert 'primary_region = "ams"' in merged and 'CUSTOM = "yes"   # unrelated key, must survive' in merged
    assert merged.index("[env]") < merged.index("[http_service]") < merged.index("[custom_section_for_later]")
    assert 'AI_BRIDGE_HISTORY_LIMIT = "1000"' in merged and "[[http_service.checks]]" in merged
    assert 'auto_stop_machines = "stop"' in merged
    report = validate_project(tmp_path / "fly.toml")
    assert [c for _, c, _ in codes(report)] == ["FLY004"], "only the user's own unknown section remains"


def test_init_with_explicit_app_overrides_and_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text(EXISTING)
    opts = options_for(tmp_path, "new-name", None, 1024, None, False)
    init_project(tmp_path, opts, keep=("primary_region",))
    text = (tmp_path / "fly.toml").read_text()
    assert 'app = "new-name"' in text and 'memory = "1024mb"' in text and 'primary_region = "ams"' in text
    again = init_project(tmp_path, opts, keep=("primary_region",))
    assert [f.action for f in again.files] == ["unchanged", "unchanged", "unchanged"]


def test_dry_run_prints_a_diff_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text(EXISTING)
    result = init_project(tmp_path, options_for(tmp_path, None, None, 512, None, False), dry_run=True)
    diff = result.diff()
    assert "--- a/fly.toml" in diff and "+++ b/fly.toml" in diff and "--- /dev/null" in diff
    assert "+  AI_BRIDGE_MAX_QUEUE" in diff
    assert (tmp_path / "fly.toml").read_text() == EXISTING and not (tmp_path / "Dockerfile").exists()


def test_other_files_are_replaced_only_with_force(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    opts = options_for(tmp_path, "demo-app", None, 512, None, False)
    result = init_project(tmp_path, opts)
    assert result.files[1].action == "keep" and (tmp_path / "Dockerfile").read_text() == "FROM scratch\n"
    init_project(tmp_path, opts, force=True)
    assert "tini" in (tmp_path / "Dockerfile").read_text()


def test_bad_options_and_bad_existing_toml(tmp_path: Path) -> None:
    from aibridge.errors import UsageError

    for args in (
        ("Bad_Name", None, 512, None),
        (None, "frankfurt", 512, None),
        (None, None, 300, None),
        (None, None, 512, "app"),
    ):
        with pytest.raises(UsageError):
            options_for(tmp_path, args[0], args[1], args[2], args[3], False)
    with pytest.raises(ConfigError, match=r"fly.toml:2"):
        merge_fly_toml('app = "x"\n[http_service\n', "app = 'y'\n", file="fly.toml")


def test_repo_files_are_what_init_writes() -> None:
    from aibridge.fly.templates import render_dockerfile, render_dockerignore, render_fly_toml

    repo = Path(__file__).resolve().parent.parent
    opts = InitOptions(app="aibridge")
    assert (repo / "fly.toml").read_text() == render_fly_toml(opts)
    assert (repo / "Dockerfile").read_text() == render_dockerfile(opts)
    assert (repo / ".dockerignore").read_text() == render_dockerignore(opts)
    assert validate_project(repo / "fly.toml", strict=True).findings == []


@pytest.mark.parametrize("asgi", [None, "web:app"])
def test_dockerignore_keeps_what_the_dockerfile_copies(tmp_path: Path, asgi: str | None) -> None:
    from aibridge.fly.dockerfile import parse_dockerfile
    from aibridge.fly.rules_ignore import excluded

    project = make(tmp_path, asgi=asgi)
    ignore = (project / ".dockerignore").read_text()
    model = parse_dockerfile((project / "Dockerfile").read_text())
    sources = [
        source
        for stage in model.stages
        for i in stage.instructions
        if i.cmd == "COPY" and i.flag("from") is None
        for source in i.value[:-1]
    ]
    assert sources, "the Dockerfile copies something from the context"
    for source in sources:
        probe = "app/main.py" if source == "." else f"{source.rstrip('/')}/aibridge/__init__.py"
        probe = source if source in ("pyproject.toml", "README.md") else probe
        assert not excluded(ignore, probe), f"{probe} (from COPY {source}) is excluded by .dockerignore"
    for secret in (".env", ".git/config", ".venv/bin/python", "key.pem"):
        assert excluded(ignore, secret)
