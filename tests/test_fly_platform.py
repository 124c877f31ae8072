"""Issue 12: init mounts a volume by default and works outside our tree; XF108, XF109; 6PN binds."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aibridge import __version__
from aibridge.cli import app
from aibridge.fly.findings import Severity
from aibridge.fly.validate import validate_project

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def init(directory: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.chdir(directory)
    result = runner.invoke(app, ["init", "--app", "demo-app", *args])
    assert result.exit_code == 0, result.output
    return result.output


def found(project: Path, code: str) -> list[tuple[Severity, str]]:
    report = validate_project(project / "fly.toml")
    return [(f.severity, f.message) for f in report.findings if f.code == code]


def test_default_init_outside_our_tree_mounts_a_volume_and_installs_the_pinned_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = init(tmp_path, monkeypatch)
    toml, docker = (tmp_path / "fly.toml").read_text(), (tmp_path / "Dockerfile").read_text()
    assert "[[mounts]]" in toml and 'destination = "/data"' in toml and 'AI_BRIDGE_DATA_DIR = "/data"' in toml
    assert f'pip install --no-cache-dir "aibridge=={__version__}"' in docker
    assert "COPY src" not in docker and "COPY pyproject.toml" not in docker
    assert f"image: installs aibridge=={__version__} from the package index" in output
    assert "setpriv --reuid=1001" in docker and "\nUSER " not in docker
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 0


def test_init_inside_our_source_tree_builds_from_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src" / "aibridge").mkdir(parents=True)
    (tmp_path / "src" / "aibridge" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "aibridge"\nversion = "0"\n')
    output = init(tmp_path, monkeypatch)
    docker = (tmp_path / "Dockerfile").read_text()
    assert "COPY src ./src" in docker and "aibridge==" not in docker and "package index" not in output
    # Someone else's project with a src/aibridge folder is not our tree.
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    init(tmp_path, monkeypatch, "--force")
    assert "aibridge==" in (tmp_path / "Dockerfile").read_text()


def test_no_volume_says_what_is_lost_and_uses_memory_on_purpose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = init(tmp_path, monkeypatch, "--no-volume")
    toml = (tmp_path / "fly.toml").read_text()
    assert (
        "no volume: queued envelopes, history and unacknowledged deliveries are in memory and lost" in output
    )
    assert "# No volume (`aibridge init --no-volume`)" in toml and "[[mounts]]" not in toml
    assert 'AI_BRIDGE_STORE = "memory"' in toml and "\nUSER 1001\n" in (tmp_path / "Dockerfile").read_text()
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 0


def test_asgi_health_path_or_no_check_and_volume_entrypoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init(tmp_path, monkeypatch, "--asgi", "web.main:app")
    toml, docker = (tmp_path / "fly.toml").read_text(), (tmp_path / "Dockerfile").read_text()
    assert "http_service.checks" not in toml and "# No health check" in toml
    assert "HEALTHCHECK NONE" in docker and "[[mounts]]" not in toml and "\nUSER 1001\n" in docker
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 0
    for name in ("fly.toml", "Dockerfile", ".dockerignore"):
        (tmp_path / name).unlink()
    init(tmp_path, monkeypatch, "--asgi", "web.main:app", "--health-path", "/healthz", "--volume")
    toml, docker = (tmp_path / "fly.toml").read_text(), (tmp_path / "Dockerfile").read_text()
    assert 'path = "/healthz"' in toml and "http://127.0.0.1:8080/healthz" in docker
    assert 'destination = "/data"' in toml and "chown 1001:1001 /data && exec setpriv" in docker
    assert "\nUSER " not in docker and "mkdir /data" in docker
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 0
    result = runner.invoke(app, ["init", "--health-path", "/ready", "--force"])
    assert result.exit_code == 2 and "the bridge serves its health check on /health" in result.output
    result = runner.invoke(app, ["init", "--asgi", "web:app", "--health-path", "healthz"])
    assert (
        result.exit_code == 2
        and "--health-path 'healthz': expected a URL path starting with /" in result.output
    )


def test_volume_on_a_kept_dockerfile_without_the_drop_is_reported_by_init_and_xf109(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init(tmp_path, monkeypatch, "--no-volume")
    plain = (tmp_path / "Dockerfile").read_text()
    output = init(tmp_path, monkeypatch, "--volume")
    assert (tmp_path / "Dockerfile").read_text() == plain  # kept, not replaced
    assert "warning: Dockerfile kept, but USER 1001 with no ownership fix" in output
    assert "aibridge init --volume --force" in output
    ((severity, message),) = found(tmp_path, "XF109")
    assert severity is Severity.ERROR and "the volume at /data is root-owned on Fly" in message
    # A drop without the chown is no better.
    edit = plain.replace("USER 1001\n", "").replace(
        'ENTRYPOINT ["tini", "--"]',
        'ENTRYPOINT ["tini", "--", "setpriv", "--reuid=1001", "--regid=1001", "--"]',
    )
    (tmp_path / "Dockerfile").write_text(edit)
    ((severity, message),) = found(tmp_path, "XF109")
    assert "drops to 1001 without chowning /data" in message
    output = init(tmp_path, monkeypatch, "--volume", "--force")
    assert "warning" not in output and found(tmp_path, "XF109") == []


FLY = """app = "demo-app"
[env]
{env}
[http_service]
  internal_port = 8080
{service}
{vm}
{mounts}
"""
DOCKER = (
    "FROM python:3.12-slim\nWORKDIR /app\nEXPOSE 8080 9091\nHEALTHCHECK NONE\n"
    'ENTRYPOINT ["tini", "--"]\nCMD ["aibridge", "serve"]\n'
)


@pytest.mark.parametrize(
    ("env", "service", "vm", "mounts", "expected"),
    [
        (
            "",
            'auto_stop_machines = "stop"',
            "",
            "",
            (Severity.ERROR, 'with auto_stop_machines = "stop" an idle'),
        ),
        ("", "auto_stop_machines = true", "", "", (Severity.ERROR, "./data (= /app/data) is on the root")),
        (
            "",
            "auto_stop_machines = false\nmin_machines_running = 0",
            "",
            "",
            (Severity.ERROR, "min_machines_running = 0"),
        ),
        (
            "",
            "auto_stop_machines = false\nmin_machines_running = 1",
            "",
            "",
            (Severity.WARNING, "every restart and deploy"),
        ),
        (
            'AI_BRIDGE_DATA_DIR = "/data/db"',
            'auto_stop_machines = "stop"',
            "",
            '[[mounts]]\nsource = "d"\ndestination = "/data"',
            None,
        ),
        (
            'AI_BRIDGE_DATA_DIR = "/database"',
            'auto_stop_machines = "stop"',
            "",
            '[[mounts]]\nsource = "d"\ndestination = "/data"',
            (Severity.ERROR, "/database is on the root"),
        ),
        ('AI_BRIDGE_STORE = "memory"', 'auto_stop_machines = "stop"', "", "", None),
        ('AI_BRIDGE_REDIS_URL = "redis://r.internal:6379"', 'auto_stop_machines = "stop"', "", "", None),
        (
            "",
            'auto_stop_machines = "stop"',
            '[[vm]]\npersist_rootfs = "restart"',
            "",
            (Severity.WARNING, "not reliably across deploys"),
        ),
        (
            "",
            'auto_stop_machines = "stop"',
            '[[vm]]\npersist_rootfs = "always"',
            "",
            (Severity.WARNING, "not a host failure"),
        ),
        (
            "",
            'auto_stop_machines = "stop"',
            '[[vm]]\npersist_rootfs = "never"',
            "",
            (Severity.ERROR, "an idle machine stops"),
        ),
    ],
)
def test_xf108_sqlite_on_the_root_filesystem(
    tmp_path: Path, env: str, service: str, vm: str, mounts: str, expected: tuple[Severity, str] | None
) -> None:
    (tmp_path / "fly.toml").write_text(FLY.format(env=env, service=service, vm=vm, mounts=mounts))
    (tmp_path / "Dockerfile").write_text(DOCKER)
    (tmp_path / ".dockerignore").write_text(".git\n")
    hits = found(tmp_path, "XF108")
    if expected is None:
        assert hits == []
    else:
        ((severity, message),) = hits
        assert severity is expected[0] and expected[1] in message, message


def test_the_repo_ships_inits_volume_output() -> None:
    toml = (REPO / "fly.toml").read_text()
    assert 'destination = "/data"' in toml and 'AI_BRIDGE_DATA_DIR = "/data"' in toml
    assert validate_project(REPO / "fly.toml", strict=True).findings == []


@pytest.mark.parametrize(
    ("cmd", "flagged"),
    [
        ('["aibridge", "serve", "--host", "::"]', False),
        ('["aibridge", "serve", "--host", "[::]"]', False),
        ('["aibridge", "serve", "--host", "fly-local-6pn"]', False),
        ('["aibridge", "serve"]', False),
        ('["uvicorn", "web:app", "--host", "::", "--port", "8080"]', False),
        ('["gunicorn", "--bind", "[::]:8080", "web:app"]', False),
        ('["gunicorn", "--bind", "fly-local-6pn:8080", "web:app"]', False),
        ('["aibridge", "serve", "--host", "::1"]', True),
        ('["uvicorn", "web:app", "--host", "[::1]", "--port", "8080"]', True),
    ],
)
def test_bind_rules_accept_the_6pn_addresses(tmp_path: Path, cmd: str, flagged: bool) -> None:
    (tmp_path / "fly.toml").write_text('app = "x"\n[http_service]\n  internal_port = 8080\n')
    (tmp_path / "Dockerfile").write_text(f"FROM python:3.12-slim\nEXPOSE 8080\nCMD {cmd}\n")
    hits = found(tmp_path, "XF103")
    assert bool(hits) is flagged, hits
    if flagged:
        assert "bind :: (dual-stack, also reachable over 6PN) or 0.0.0.0" in hits[0][1]
