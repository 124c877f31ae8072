"""Issue 14: the judged-release record, new apps, --json errors, dry-run completeness, options.

The fake ``fly`` prints what flyctl prints (quoted in tests/fakefly/fly); the releases are real
bridge servers. The record is read back by a second run from a fresh ``git clone``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fakefly.scenarios import (
    APP,
    FAKEFLY_DIR,
    FLY_TOML,
    IMAGE_B,
    IMAGE_D,
    live_release,
    make_fake,
    run_aibridge,
    write_fly_toml,
)

NEW_IMAGE = "registry.fly.io/demo:deployment-01NEW"


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
GIT_ID |= {"GIT_COMMITTER_EMAIL": "t@example.com"}


def _git(cwd: Path, *args: str) -> None:
    env = {**GIT_ID, "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_a_release_judged_bad_is_never_the_rollback_target_also_from_a_fresh_checkout(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    config = write_fly_toml(repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "fly.toml")
    _git(repo, "commit", "-q", "-m", "init")
    with live_release(tmp_path) as release:
        # flyctl marks v6 `complete` (its deploy step succeeded) but the bridge dies at boot.
        fake = make_fake(
            tmp_path,
            deploys=[
                {"outcome": "ok", "actions": [release.stop(), release.start(good=False)]},
                {"outcome": "ok", "actions": [release.start(good=True)]},
            ],
        )
        deploy = run_aibridge(
            [
                "deploy",
                "-c",
                str(config),
                "--health-url",
                release.health_url,
                "--health-timeout",
                "6s",
                "--health-passes",
                "2",
                "--commit-record",
                "--json",
            ],
            {**fake.env(), **GIT_ID, "HOME": str(repo)},
            repo,
        )
    assert deploy.returncode == 3, deploy.stderr
    assert [r["status"] for r in fake.state()["releases"] if r["version"] == 6] == ["complete"]
    record = json.loads((repo / ".aibridge" / "releases.json").read_text())["judged"]
    assert [(j["image"], j["version"], j["verdict"]) for j in record] == [
        (NEW_IMAGE, 6, "bad"),
        (IMAGE_D, 7, "good"),
    ]
    assert "record committed" in _json(deploy)["record"]

    # A later run from a fresh CI checkout: the clone has the committed record and nothing else.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    # D runs again (v7), so the choice is between v6 (complete, judged bad) and v2.
    plan_args = ["rollback", "--dry-run", "--json", "-c", str(clone / "fly.toml")]
    dry = run_aibridge(plan_args, fake.env(), clone)
    assert dry.returncode == 0, dry.stderr
    plan = _json(dry)["plan"]
    assert plan["to"] == {"version": 2, "image": IMAGE_B}, plan
    assert plan["next_candidate"]["version"] == 1

    # Without the record (a checkout that never got it) flyctl's word alone proposes v6.
    (clone / ".aibridge" / "releases.json").unlink()
    assert _json(run_aibridge(plan_args, fake.env(), clone))["plan"]["to"]["version"] == 6

    # --to may still name the bad image, with a warning.
    shutil.copy(repo / ".aibridge" / "releases.json", clone / ".aibridge" / "releases.json")
    forced = run_aibridge([*plan_args[:-2], "--to", "6", "-c", str(clone / "fly.toml")], fake.env(), clone)
    assert forced.returncode == 0, forced.stderr
    assert f"WARNING: {NEW_IMAGE} was judged bad by aibridge" in " ".join(forced.stdout.split())


def test_missing_app_is_detected_and_deploy_create_makes_it(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, app_exists=False, releases=[], machines=[], running_image="")
    refused = run_aibridge(["deploy", "-c", str(config), "--no-verify", "--json"], fake.env(), tmp_path)
    assert refused.returncode == 2
    error = _json(refused)
    assert error["ok"] is False and error["exit_code"] == 2
    assert error["error"].startswith(f"Fly has no app named {APP}: create it with `fly apps create {APP}`")
    assert "--create" in error["error"] and "Traceback" not in refused.stderr
    assert [c[0] for c in fake.calls()] == ["auth", "releases"]

    created = run_aibridge(
        ["deploy", "-c", str(config), "--no-verify", "--create", "--json"], fake.env(), tmp_path
    )
    assert created.returncode == 0, created.stderr
    assert ["apps", "create", APP] in fake.calls()
    summary = _json(created)
    assert any("first deploy, nothing to roll back to" in n for n in summary["notes"])
    assert "New app created: demo" in created.stderr


def test_exit_2_errors_are_json_objects_with_json(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, logged_in=False)
    for command in (["deploy"], ["rollback", "--yes"], ["status"]):
        result = run_aibridge([*command, "-c", str(config), "--json"], fake.env(), tmp_path)
        assert result.returncode == 2
        data = _json(result)
        assert data["ok"] is False and data["exit_code"] == 2 and "not logged in" in data["error"]
    no_fly = run_aibridge(["deploy", "-c", str(config), "--json"], fake.env(PATH="/usr/bin:/bin"), tmp_path)
    assert no_fly.returncode == 2 and _json(no_fly)["error"].startswith("flyctl not found")


def test_dry_run_lists_every_command_with_the_same_field_names(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, logged_in=False)
    result = run_aibridge(["deploy", "-c", str(config), "--dry-run", "--json"], fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == []
    fly = str(FAKEFLY_DIR / "fly")
    commands = [c[1:] for c in _json(result)["commands"]]
    assert [fly] == list({c[0] for c in _json(result)["commands"]})
    assert commands == [
        ["auth", "whoami"],
        ["releases", "--app", APP, "--json"],
        ["status", "--app", APP, "--json"],
        ["deploy", "--config", str(config), "--app", APP],
        ["releases", "--app", APP, "--json"],
        ["status", "--app", APP, "--json"],
        [
            *["deploy", "--config", str(config), "--app", APP],
            *["--image", "<image live before the deploy>", "--strategy", "immediate"],
        ],
    ]
    # Every release the JSON shows names its image "image", as deploy's before/after do.
    (tmp_path / "in").mkdir()
    fake = make_fake(tmp_path / "in")
    status = _json(run_aibridge(["status", "-c", str(config), "--json", "--no-health"], fake.env(), tmp_path))
    assert all("image" in r and "image_ref" not in r for r in status["releases"])
    plan = _json(run_aibridge(["rollback", "--dry-run", "--json", "-c", str(config)], fake.env(), tmp_path))
    assert set(plan["plan"]["next_candidate"]) >= {"version", "image"}
    assert plan["commands"][0][-3] == IMAGE_B


@pytest.mark.parametrize("timeout", ["8", "8s", "500ms", "2m"])
def test_every_duration_takes_units_and_yes_is_passed_on(tmp_path: Path, timeout: str) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    args = [
        "deploy",
        "-c",
        str(config),
        "--dry-run",
        "-y",
        "--health-timeout",
        timeout,
        "--wait-timeout",
        "2m",
    ]
    result = run_aibridge([*args, "--json"], fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    deploy = _json(result)["commands"][3][1:]
    assert deploy[-3:] == ["--wait-timeout", "2m", "--yes"]
    bad = run_aibridge([*args[:-4], "--health-timeout", "soon"], fake.env(), tmp_path)
    assert bad.returncode == 2 and "--health-timeout: 'soon' is not a duration" in bad.stderr


def test_rollback_plan_says_release_command_runs_and_can_skip_it(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path, FLY_TOML + '\n[deploy]\nrelease_command = "python migrate.py"\n')
    fake = make_fake(tmp_path, release_command="python migrate.py")
    plain = run_aibridge(["rollback", "--yes", "--no-verify", "-c", str(config)], fake.env(), tmp_path)
    assert plain.returncode == 0, plain.stderr
    text = " ".join(plain.stdout.split())
    assert "[deploy] release_command 'python migrate.py' runs again, with the old image" in text
    assert "Running demo release_command: python migrate.py" in plain.stdout
    (tmp_path / "b").mkdir()
    fake = make_fake(tmp_path / "b", release_command="python migrate.py")
    skipped = run_aibridge(
        ["rollback", "--yes", "--no-verify", "--skip-release-command", "-c", str(config)],
        fake.env(),
        tmp_path,
    )
    assert skipped.returncode == 0, skipped.stderr
    assert fake.calls()[-1][-1] == "--skip-release-command"
    assert "Running demo release_command" not in skipped.stdout
    dry = _json(run_aibridge(["deploy", "-c", str(config), "--dry-run", "--json"], fake.env(), tmp_path))
    assert any("auto-rollback runs [deploy] release_command" in n for n in dry["notes"])
