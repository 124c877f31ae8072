"""flyctl plumbing against the fake ``fly``: finding it, exit codes, streaming, Ctrl-C, JSON shapes."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from aibridge.ops.flyctl import (
    Flyctl,
    FlyctlCommandError,
    FlyctlNotFoundError,
    FlyctlNotLoggedInError,
    FlyctlOutputError,
    find_flyctl,
)
from aibridge.ops.flyjson import parse_emitted_release, parse_releases, parse_status
from aibridge.ops.health import check_health, verify_health
from fakefly.scenarios import APP, FAKEFLY_DIR, IMAGE_B, IMAGE_D, MACHINES, make_fake
from support import BridgeProcess, free_port

FAKE = str(FAKEFLY_DIR / "fly")


def _link(directory: Path, name: str) -> str:
    directory.mkdir(exist_ok=True)
    (directory / name).symlink_to(FAKE)
    return str(directory / name)


def test_fake_fly_is_an_executable_script() -> None:
    mode = os.stat(FAKE).st_mode
    assert mode & stat.S_IXUSR
    assert Path(FAKE).read_text().startswith("#!/usr/bin/env python3\n")


def test_find_flyctl_prefers_env_then_fly_then_flyctl(tmp_path: Path) -> None:
    only_flyctl = tmp_path / "a"
    flyctl_path = _link(only_flyctl, "flyctl")
    both = tmp_path / "b"
    fly_path = _link(both, "fly")
    _link(both, "flyctl")
    assert find_flyctl({"PATH": str(only_flyctl)}) == flyctl_path
    assert find_flyctl({"PATH": str(both)}) == fly_path
    assert find_flyctl({"PATH": str(both), "FLYCTL": flyctl_path}) == flyctl_path
    with pytest.raises(FlyctlNotFoundError, match="flyctl not found: install it"):
        find_flyctl({"PATH": str(tmp_path / "empty")})
    with pytest.raises(FlyctlNotFoundError, match=r"FLYCTL=.*nope is not an executable file"):
        find_flyctl({"PATH": str(both), "FLYCTL": str(tmp_path / "nope")})


def test_releases_json_is_pascal_case_with_four_space_indent(tmp_path: Path) -> None:
    fake = make_fake(tmp_path)
    flyctl = Flyctl(FAKE, fake.env())
    raw = flyctl.run(["releases", "--app", APP, "--json"])
    assert raw.ok
    assert raw.stdout.startswith('[\n    {\n        "ID": "rel_0005",\n        "Version": 5,\n')
    releases = parse_releases(flyctl.run_json(["releases", "--app", APP, "--json"]))
    assert [(r.version, r.status) for r in releases] == [
        (5, "failed"),
        (4, "complete"),
        (3, "complete"),
        (2, "complete"),
        (1, "complete"),
    ]
    assert releases[3].image_ref == IMAGE_B
    assert releases[0].user == "dev@example.com"


def test_status_json_gives_machines_checks_and_running_image(tmp_path: Path) -> None:
    fake = make_fake(tmp_path)
    status = parse_status(Flyctl(FAKE, fake.env()).run_json(["status", "--app", APP, "--json"]))
    assert status.name == APP and status.version == 4 and status.hostname == "demo.fly.dev"
    assert [m.id for m in status.machines] == [m["id"] for m in MACHINES]
    assert status.machines[0].checks == (("servicecheck-00-http-8080", "passing"),)
    assert status.machines[1].region == "ams"
    assert status.running_image == IMAGE_D


def test_malformed_json_is_one_clear_error() -> None:
    with pytest.raises(FlyctlOutputError, match="expected an array, got dict"):
        parse_releases({"Version": 1})
    with pytest.raises(FlyctlOutputError, match="item 0 has no integer Version"):
        parse_releases([{"Version": "1"}])
    with pytest.raises(FlyctlOutputError, match="Machines is not an array"):
        parse_status({"Machines": {}})


def test_deploy_exit_codes_and_error_lines(tmp_path: Path) -> None:
    fake = make_fake(
        tmp_path,
        deploys=[
            {"outcome": "error", "error": "release command failed - aborting deployment."},
            {"outcome": "timeout", "updated": 1},
        ],
    )
    flyctl = Flyctl(FAKE, fake.env())
    failed = flyctl.run(["deploy", "--app", APP])
    assert (failed.returncode, failed.outcome) == (1, "error")
    assert failed.error_line == "release command failed - aborting deployment."
    assert failed.describe() == "`fly deploy` failed (exit 1): release command failed - aborting deployment."
    timed_out = flyctl.run(["deploy", "--app", APP])
    assert (timed_out.returncode, timed_out.outcome) == (126, "timeout")
    assert timed_out.error_line.startswith("timeout reached waiting for health checks to pass for machine")
    with pytest.raises(FlyctlCommandError, match=r"`fly frobnicate` failed \(exit 1\): unknown command"):
        flyctl.run_json(["frobnicate"])


def test_release_line_is_read_from_deploy_output(tmp_path: Path) -> None:
    fake = make_fake(tmp_path)
    flyctl = Flyctl(FAKE, fake.env())
    plain = flyctl.run(["deploy", "--app", APP])
    assert plain.ok and parse_emitted_release(plain.stdout) is None
    emitted = flyctl.run(["deploy", "--app", APP], extra_env={"FLY_EMIT_RELEASE_JSON": "1"})
    release = parse_emitted_release(emitted.stdout)
    assert release is not None
    assert (release.version, release.id) == (7, "rel_0007")
    assert release.image_ref == "registry.fly.io/demo:deployment-02NEW"


def test_output_streams_live_and_ctrl_c_is_passed_on(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, deploys=[{"outcome": "interrupt"}])
    seen: list[tuple[float, str]] = []

    def on_output(line: str, stream: str) -> None:
        seen.append((time.monotonic(), line))
        if "Waiting for" in line:
            # The line arrived while flyctl still runs (it waits for the signal): that is streaming.
            os.kill(os.getpid(), signal.SIGINT)

    result = Flyctl(FAKE, fake.env()).run(["deploy", "--app", APP], on_output=on_output)
    assert result.interrupted and result.returncode == 127 and result.outcome == "interrupted"
    assert {"signal": "SIGINT"} in fake.records()
    assert result.error_line == "context canceled"
    assert any("Waiting for 148e21ea7d9089" in line for _, line in seen)


def test_auth_token_skips_whoami_and_missing_login_is_one_line(tmp_path: Path) -> None:
    fake = make_fake(tmp_path, logged_in=False)
    Flyctl(FAKE, fake.env(FLY_API_TOKEN="fo1_x")).check_auth()
    Flyctl(FAKE, fake.env(FLY_ACCESS_TOKEN="fo1_x")).check_auth()
    assert fake.calls() == []
    with pytest.raises(FlyctlNotLoggedInError) as caught:
        Flyctl(FAKE, fake.env()).check_auth()
    assert caught.value.detail == (
        "not logged in to Fly (no access token available. Please login with 'flyctl auth login'): "
        "run `fly auth login` or set FLY_API_TOKEN"
    )
    assert fake.calls() == [["auth", "whoami"]]
    make_fake(tmp_path, logged_in=True)
    Flyctl(FAKE, fake.env()).check_auth()


def test_health_counts_consecutive_ok_answers(bridge: BridgeProcess) -> None:
    attempts = []
    result = verify_health(
        f"{bridge.url}/health", passes=3, timeout=20, interval=0.05, on_attempt=attempts.append
    )
    assert result.ok and result.attempts == 3
    assert [a.streak for a in attempts] == [1, 2, 3]
    assert all(a.status_code == 200 and a.latency_ms is not None for a in attempts)


def test_health_rejects_non_json_and_gives_up_at_the_deadline(bridge: BridgeProcess) -> None:
    import httpx

    with httpx.Client() as client:
        agents = check_health(client, f"{bridge.url}/agents")
        missing = check_health(client, f"{bridge.url}/no-such-page")
    assert not agents.ok and agents.detail == "HTTP 200, no JSON status"
    assert not missing.ok and missing.status_code == 404
    started = time.monotonic()
    closed = verify_health(f"http://127.0.0.1:{free_port()}/health", timeout=1.0, interval=0.2)
    assert not closed.ok and closed.attempts >= 2
    assert time.monotonic() - started < 5
    assert closed.last is not None and "ConnectError" in closed.last.detail
