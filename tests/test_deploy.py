"""``aibridge deploy`` end to end: the fake ``fly`` on PATH, real bridge servers playing releases.

Each test asserts the exact flyctl argument lists (so also the order of the steps) and the exit code.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from fakefly.scenarios import (
    APP,
    FAKEFLY_DIR,
    IMAGE_B,
    IMAGE_D,
    live_release,
    make_fake,
    run_aibridge,
    write_fly_toml,
)
from support import free_port

RECORD = [["releases", "--app", APP, "--json"], ["status", "--app", APP, "--json"]]
WHOAMI = [["auth", "whoami"]]


def _deploy(config: Path, *extra: str) -> list[str]:
    return ["deploy", "--config", str(config), "--health-passes", "2", "--health-timeout", "6", *extra]


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _rollback_argv(config: Path, image: str = IMAGE_D) -> list[str]:
    return ["deploy", "--config", str(config), "--app", APP, "--image", image, "--strategy", "immediate"]


def test_success_records_deploys_and_verifies_the_live_release(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with live_release(tmp_path) as release:
        result = run_aibridge(
            [*_deploy(config, "--health-url", release.health_url), "--json"], fake.env(), tmp_path
        )
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [*WHOAMI, *RECORD, ["deploy", "--config", str(config), "--app", APP]]
    envs = [r["env"] for r in fake.records()]
    assert envs[-1] == {"FLY_EMIT_RELEASE_JSON": "1"} and envs[1] == {}
    summary = _summary(result)
    assert summary["outcome"] == "deployed" and summary["exit_code"] == 0
    assert summary["strategy"] == "rolling (fly.toml)"
    assert summary["before"] == {"version": 4, "image": IMAGE_D}
    assert summary["after"] == {"version": 6, "image": "registry.fly.io/demo:deployment-01NEW"}
    assert [s["name"] for s in summary["steps"]] == ["validate", "record", "deploy", "verify"]
    health = summary["verification"]["health"]
    assert health["ok"] and health["attempts"] == 2 and health["last"]["status_code"] == 200
    assert summary["rollback"] is None
    # flyctl's own lines streamed through (to stderr, as stdout carries the JSON).
    assert "Visit your newly deployed app at https://demo.fly.dev/" in result.stderr


def test_text_output_ends_with_a_summary(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with live_release(tmp_path) as release:
        result = run_aibridge(_deploy(config, "--health-url", release.health_url), fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "│ Updating existing machines in 'demo' with rolling strategy" in out
    assert "outcome" in out and "deployed" in out
    assert "v4  registry.fly.io/demo:deployment-04DELTA" in out
    assert "v6  registry.fly.io/demo:deployment-01NEW" in out
    assert "deployed and verified: healthy: 2 ok answers in a row" in out


def test_token_skips_whoami_and_flags_map_to_fly_deploy(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    args = ["--app", "other", "--strategy", "bluegreen", "--image", "registry.fly.io/other:v9"]
    args += ["--wait-timeout", "5m", "--no-verify", "--json", "--", "--remote-only", "--build-arg", "K=V"]
    result = run_aibridge(_deploy(config, *args), fake.env(FLY_API_TOKEN="fo1_token"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["releases", "--app", "other", "--json"],
        ["status", "--app", "other", "--json"],
        [
            *["deploy", "--config", str(config), "--app", "other", "--strategy", "bluegreen"],
            *[
                "--image",
                "registry.fly.io/other:v9",
                "--wait-timeout",
                "5m",
                "--remote-only",
                "--build-arg",
                "K=V",
            ],
        ],
    ]
    summary = _summary(result)
    assert summary["strategy"] == "bluegreen"
    assert summary["message"] == "deployed (health not verified: --no-verify)"


def test_deploy_error_before_rollout_needs_no_rollback(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    error = "failed to fetch an image or build from source: error building: exit code: 1"
    fake = make_fake(tmp_path, deploys=[{"outcome": "build_error", "error": error}])
    result = run_aibridge([*_deploy(config), "--json"], fake.env(), tmp_path)
    assert result.returncode == 1
    assert fake.calls() == [*WHOAMI, *RECORD, ["deploy", "--config", str(config), "--app", APP], RECORD[1]]
    assert f"│ Error: {error}" in result.stderr
    summary = _summary(result)
    assert summary["outcome"] == "failed" and summary["after"] is None
    assert summary["message"] == (
        f"`fly deploy` failed (exit 1): {error}; "
        f"every Machine still runs {IMAGE_D}, so no rollback was needed"
    )


def test_partial_rollout_error_rolls_back_and_verifies(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, deploys=[{"outcome": "error", "updated": 1}])
    with live_release(tmp_path) as release:
        result = run_aibridge(
            [*_deploy(config, "--health-url", release.health_url), "--json"], fake.env(), tmp_path
        )
    assert result.returncode == 3, result.stderr
    assert fake.calls() == [
        *WHOAMI,
        *RECORD,
        ["deploy", "--config", str(config), "--app", APP],
        RECORD[1],
        _rollback_argv(config),
    ]
    assert [m["image"] for m in fake.state()["machines"]] == [IMAGE_D, IMAGE_D]
    summary = _summary(result)
    assert summary["outcome"] == "rolled_back"
    assert summary["rollback"]["ok"] and summary["rollback"]["verification"]["health"]["ok"]
    assert summary["rollback"]["release"] == {"version": 7, "image": IMAGE_D}


def test_health_never_ok_rolls_back_to_the_recorded_image(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    with live_release(tmp_path) as release:
        # The new release replaces the live bridge with one that dies at boot (a malformed setting);
        # the rollback brings a good bridge back on the same address.
        fake = make_fake(
            tmp_path,
            deploys=[
                {"outcome": "ok", "actions": [release.stop(), release.start(good=False)]},
                {"outcome": "ok", "actions": [release.start(good=True)]},
            ],
        )
        result = run_aibridge(
            [*_deploy(config, "--health-url", release.health_url), "--json"], fake.env(), tmp_path
        )
    assert result.returncode == 3, result.stderr
    # The rollback target is the image live before the deploy (v4, D): not v5 (failed), not `.[1]`.
    assert fake.calls() == [
        *WHOAMI,
        *RECORD,
        ["deploy", "--config", str(config), "--app", APP],
        _rollback_argv(config),
    ]
    summary = _summary(result)
    assert summary["outcome"] == "rolled_back"
    assert summary["verification"]["ok"] is False
    assert "ConnectError" in summary["verification"]["health"]["last"]["detail"]
    assert summary["rollback"]["verification"]["health"]["ok"] is True
    assert "AI_BRIDGE_HISTORY_LIMIT" in (tmp_path / "release-0.log").read_text()
    assert [s["name"] for s in summary["steps"]] == ["validate", "record", "deploy", "verify", "rollback"]


def test_health_never_ok_and_rollback_image_pruned(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    with live_release(tmp_path) as release:
        fake = make_fake(
            tmp_path, pruned_images=[IMAGE_D], deploys=[{"outcome": "ok", "actions": [release.stop()]}]
        )
        result = run_aibridge(
            [*_deploy(config, "--health-url", release.health_url), "--json"], fake.env(), tmp_path
        )
    assert result.returncode == 4, result.stderr
    assert fake.calls()[-1] == _rollback_argv(config)
    summary = _summary(result)
    assert summary["outcome"] == "rollback_failed"
    assert f"rollback failed: image {IMAGE_D} is no longer in the registry (pruned?)" in summary["message"]
    assert f'could not find image "{IMAGE_D}"' in result.stderr
    # Issue 14 item 2: the real next candidate, chosen as `aibridge rollback` chooses (v1 and v2
    # completed with other images; v6 just failed verification and v4/v3 run the pruned image).
    assert summary["message"].endswith(f"the next candidate is v2 ({IMAGE_B}): `aibridge rollback --to 2`"), (
        summary["message"]
    )


def test_no_auto_rollback_leaves_the_failed_release(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    with live_release(tmp_path) as release:
        fake = make_fake(tmp_path, deploys=[{"outcome": "ok", "actions": [release.stop()]}])
        args = _deploy(
            config, "--health-url", release.health_url, "--health-timeout", "2", "--no-auto-rollback"
        )
        result = run_aibridge([*args, "--json"], fake.env(), tmp_path)
    assert result.returncode == 1
    assert [c[0] for c in fake.calls()].count("deploy") == 1
    assert _summary(result)["message"].endswith(f"auto-rollback is off: `aibridge rollback --to {IMAGE_D}`")


def test_flyctl_timeout_126_is_a_failure_that_rolls_back(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, deploys=[{"outcome": "timeout", "updated": 2}])
    result = run_aibridge([*_deploy(config, "--no-verify"), "--json"], fake.env(), tmp_path)
    assert result.returncode == 3, result.stderr
    assert fake.calls()[-1] == _rollback_argv(config)
    deploy_step = _summary(result)["steps"][2]
    assert deploy_step["name"] == "deploy" and not deploy_step["ok"]
    assert deploy_step["detail"].startswith("`fly deploy` timed out (exit 126): timeout reached waiting")


def test_not_logged_in_stops_before_anything_changes(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, logged_in=False)
    result = run_aibridge(_deploy(config), fake.env(), tmp_path)
    assert result.returncode == 2
    assert fake.calls() == WHOAMI
    assert result.stderr.strip() == (
        "error: not logged in to Fly (no access token available. Please login with 'flyctl auth login'): "
        "run `fly auth login` or set FLY_API_TOKEN"
    )


def test_flyctl_missing_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    env = fake.env(PATH="/usr/bin:/bin")
    result = run_aibridge(_deploy(config), env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: flyctl not found: install it (https://fly.io/docs/flyctl/install/) or set FLYCTL to its path"
    )
    assert "Traceback" not in result.stderr
    # $FLYCTL finds it off PATH.
    env["FLYCTL"] = str(FAKEFLY_DIR / "fly")
    assert run_aibridge([*_deploy(config), "--no-verify"], env, tmp_path).returncode == 0
    assert fake.calls()[-1] == ["deploy", "--config", str(config), "--app", APP]


def test_missing_app_name_and_bad_input_change_nothing(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path, 'primary_region = "sjc"\n')
    fake = make_fake(tmp_path)
    no_app = run_aibridge(_deploy(config), fake.env(), tmp_path)
    assert no_app.returncode == 2
    assert 'error: no app name: add `app = "NAME"`' in no_app.stderr
    missing = run_aibridge(_deploy(tmp_path / "nope.toml"), fake.env(), tmp_path)
    assert missing.returncode == 2 and "nope.toml: no such file" in missing.stderr
    strategy = run_aibridge(_deploy(config, "--app", APP, "--strategy", "yolo"), fake.env(), tmp_path)
    assert strategy.returncode == 2 and "--strategy: expected one of canary, rolling" in strategy.stderr
    assert fake.calls() == []


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, logged_in=False)
    result = run_aibridge(
        _deploy(config, "--dry-run", "--strategy", "canary", "--", "--ha=false"), fake.env(), tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert fake.calls() == []
    fly = FAKEFLY_DIR / "fly"
    out = result.stdout
    assert f"$ {fly} releases --app demo --json" in out
    assert f"$ {fly} status --app demo --json" in out
    assert (
        f"$ FLY_EMIT_RELEASE_JSON=1 {fly} deploy --config {config} --app demo --strategy canary --ha=false"
        in out
    )
    assert "--image '<image live before the deploy>' --strategy immediate" in out
    assert "would poll https://demo.fly.dev/health until ok 2x" in out
    assert "dry run: nothing was changed" in out


def test_ctrl_c_is_passed_to_flyctl_and_reported(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, deploys=[{"outcome": "interrupt"}])
    process = subprocess.Popen(
        [sys.executable, "-m", "aibridge", *_deploy(config, "--no-verify")],
        env=fake.env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # bounded: the fake gives up waiting after 60 s
        if "Waiting for" in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert {"signal": "SIGINT"} in fake.records()
    assert [c[0] for c in fake.calls()].count("deploy") == 1
    assert "`fly deploy` was interrupted (exit 127): context canceled" in out
    assert "outcome" in out and "interrupted" in out


def test_smoke_load_test_judges_the_new_release(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with live_release(tmp_path) as release:
        args = _deploy(config, "--health-url", release.health_url, "--smoke", "200", "--json")
        result = run_aibridge(args, fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    verification = _summary(result)["verification"]
    assert verification["smoke_passed"] is True
    assert verification["smoke_detail"] == "200 requests, KPIs (p95 < 500 ms, errors < 1 %) met"


def test_smoke_needs_a_positive_count(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/health"
    result = run_aibridge(
        _deploy(config, "--health-url", url, "--health-timeout", "1", "--smoke", "0"), fake.env(), tmp_path
    )
    assert result.returncode == 2 and "--smoke: expected a number of requests >= 1" in result.stderr
    assert fake.calls() == []


def test_validate_runs_first_and_errors_refuse_the_deploy(tmp_path: Path) -> None:
    # The files init's bridge Dockerfile COPYs; without them validate's DKR113 (build fails) refuses.
    (tmp_path / "src" / "aibridge").mkdir(parents=True)
    (tmp_path / "src" / "aibridge" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "aibridge"\n')
    (tmp_path / "README.md").write_text("# aibridge\n")
    init = run_aibridge(["init", "--app", APP], make_fake(tmp_path).env(), tmp_path)
    assert init.returncode == 0, init.stderr
    config = tmp_path / "fly.toml"
    fake = make_fake(tmp_path)
    clean = run_aibridge([*_deploy(config, "--no-verify"), "--json"], fake.env(), tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert _summary(clean)["steps"][0] == {
        "name": "validate",
        "ok": True,
        "seconds": _summary(clean)["steps"][0]["seconds"],
        "detail": f"{config}: 0 errors, 0 warnings",
    }
    # flyctl rejects a table here (fly.md §1); validate reports it, and deploy refuses before flyctl runs.
    text = config.read_text()
    config.write_text(text.replace('strategy = "rolling"', 'strategy = "sideways"'))
    calls_before = len(fake.calls())
    refused = run_aibridge(_deploy(config), fake.env(), tmp_path)
    assert refused.returncode == 2
    line = next(n for n, t in enumerate(config.read_text().splitlines(), 1) if "sideways" in t)
    assert f"error: {config} has 1 error, 0 warnings (first: {config}:{line}:3 FLY108" in refused.stderr
    assert "pass --force to deploy anyway" in refused.stderr
    assert len(fake.calls()) == calls_before
    forced = run_aibridge([*_deploy(config, "--force", "--no-verify"), "--json"], fake.env(), tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert _summary(forced)["steps"][0]["detail"].endswith("deploying anyway (--force)")
    # Even --force cannot deploy a file that is not TOML: the app name is unreadable. One line, exit 2.
    config.write_text(text + '\n[http_service.checks]\npath = "/health"\n')
    broken = run_aibridge(_deploy(config, "--force"), fake.env(), tmp_path)
    assert broken.returncode == 2
    assert f"error: {config}:" in broken.stderr and "not valid TOML: Cannot declare" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_first_deploy_that_fails_health_has_nothing_to_roll_back_to(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, releases=[], machines=[], running_image="")
    url = f"http://127.0.0.1:{free_port()}/health"
    result = run_aibridge(
        [*_deploy(config, "--health-url", url, "--health-timeout", "1"), "--json"], fake.env(), tmp_path
    )
    assert result.returncode == 1
    assert [c[0] for c in fake.calls()] == ["auth", "releases", "status", "deploy"]
    summary = _summary(result)
    assert summary["before"] is None and summary["after"]["version"] == 1
    assert summary["message"].startswith("verification failed: not healthy after 1s")
    assert summary["message"].endswith("nothing was live before (first deploy), so nothing to roll back to")


def test_ctrl_c_while_verifying_reports_the_unverified_release(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/health"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aibridge",
                *_deploy(config, "--health-url", url, "--health-timeout", "60"),
            ],
            env=fake.env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = server.accept()  # the first health request: verification is under way
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted while verifying; the new release is live and unverified" in out
    assert [c[0] for c in fake.calls()].count("deploy") == 1
