"""``aibridge rollback``: target choice, the plan, confirmation, pruned images, health afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aibridge.errors import UsageError
from aibridge.ops.flyctl import Flyctl
from aibridge.ops.flyjson import Release, parse_releases
from aibridge.ops.rollback import choose_target
from fakefly.scenarios import (
    APP,
    FAKEFLY_DIR,
    IMAGE_A,
    IMAGE_B,
    IMAGE_D,
    IMAGE_E,
    live_release,
    make_fake,
    run_aibridge,
    write_fly_toml,
)

RECORD = [["releases", "--app", APP, "--json"], ["status", "--app", APP, "--json"]]


@pytest.fixture
def releases(tmp_path: Path) -> list[Release]:
    """The releases exactly as the fake prints them, parsed."""
    fake = make_fake(tmp_path)
    return parse_releases(Flyctl(str(FAKEFLY_DIR / "fly"), fake.env()).run_json(["releases", "--json"]))


def test_default_target_is_newest_complete_release_with_another_image(releases: list[Release]) -> None:
    image, target, following = choose_target(releases, IMAGE_D)
    # Not v5 (failed), not v4 or v3 (the running image D): v2.
    assert (image, target and target.version) == (IMAGE_B, 2)
    assert following is not None and (following.version, following.image_ref) == (1, IMAGE_A)


def test_to_version_or_image(releases: list[Release]) -> None:
    assert choose_target(releases, IMAGE_D, "v1")[:2] == (IMAGE_A, releases[4])
    assert choose_target(releases, IMAGE_D, "2")[2] == releases[4]
    image, release, _ = choose_target(releases, IMAGE_D, IMAGE_A)
    assert (image, release and release.version) == (IMAGE_A, 1)
    unknown = "registry.fly.io/demo@sha256:" + "cd" * 32
    assert choose_target(releases, IMAGE_D, unknown)[:2] == (unknown, None)


def test_unusable_targets_name_the_next_candidate(releases: list[Release]) -> None:
    with pytest.raises(UsageError) as never:
        choose_target(releases, IMAGE_D, "5")
    assert never.value.detail == (
        "release v5 never completed (status failed); the next candidate is v2 "
        f"({IMAGE_B}): `aibridge rollback --to 2`"
    )
    with pytest.raises(
        UsageError, match=r"release v3 runs the image that is live now; the next candidate is v2"
    ):
        choose_target(releases, IMAGE_D, "v3")
    with pytest.raises(UsageError, match=r"no release v99 among the last releases \(v5, v4, v3, v2, v1\)"):
        choose_target(releases, IMAGE_D, "99")
    with pytest.raises(UsageError, match="that image is the one running now"):
        choose_target(releases, IMAGE_D, IMAGE_D)
    only_live = [r for r in releases if r.image_ref in (IMAGE_D, IMAGE_E)]
    with pytest.raises(UsageError, match="nothing to roll back to"):
        choose_target(only_live, IMAGE_D)


def test_rollback_deploys_the_target_and_verifies_health(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    with live_release(tmp_path) as release:
        args = ["rollback", "--yes", "--config", str(config), "--health-url", release.health_url]
        result = run_aibridge([*args, "--health-passes", "2"], fake.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["auth", "whoami"],
        *RECORD,
        ["deploy", "--config", str(config), "--app", APP, "--image", IMAGE_B, "--strategy", "immediate"],
    ]
    assert fake.records()[-1]["env"] == {"FLY_EMIT_RELEASE_JSON": "1"}
    out = result.stdout
    assert f"from  v4  {IMAGE_D}" in out and f"to    v2  {IMAGE_B}" in out
    assert "fly.toml, [env] and secrets are NOT reverted" in out
    assert f"rolled back to {IMAGE_B}: verified" in out
    assert [m["image"] for m in fake.state()["machines"]] == [IMAGE_B, IMAGE_B]


def test_rollback_json_with_rolling_strategy_and_version(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    args = [
        "rollback",
        "-y",
        "--to",
        "v1",
        "--strategy",
        "rolling",
        "--no-verify",
        "--json",
        "-c",
        str(config),
    ]
    result = run_aibridge(args, fake.env(FLY_API_TOKEN="fo1_token"), tmp_path)
    assert result.returncode == 0, result.stderr
    expected = ["deploy", "--config", str(config), "--app", APP, "--image", IMAGE_A, "--strategy", "rolling"]
    assert fake.calls()[-1] == expected
    data = json.loads(result.stdout)
    assert data["plan"]["from"] == {"version": 4, "image": IMAGE_D}
    assert data["plan"]["to"] == {"version": 1, "image": IMAGE_A}
    assert data["outcome"]["release"] == {"version": 6, "image": IMAGE_A}
    assert data["outcome"]["ok"] is True


@pytest.mark.parametrize(
    ("style", "said"),
    [
        ("resolver", f'could not find image "{IMAGE_B}"'),
        ("api", f'Could not find image "{IMAGE_B}"'),
        ("release", "failed to create release (status 404)"),
    ],
)
def test_pruned_target_names_the_next_candidate(tmp_path: Path, style: str, said: str) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path, pruned_images=[IMAGE_B], pruned_style=style)
    result = run_aibridge(["rollback", "--yes", "--no-verify", "-c", str(config)], fake.env(), tmp_path)
    assert result.returncode == 1
    assert " ".join(result.stdout.split()).endswith(
        f"rollback failed: image {IMAGE_B} is no longer in the registry (pruned?); "
        f"the next candidate is v1 ({IMAGE_A}): `aibridge rollback --to 1`"
    )
    assert said in result.stdout


def test_never_completed_release_is_refused_before_deploying(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    result = run_aibridge(["rollback", "--yes", "--to", "5", "-c", str(config)], fake.env(), tmp_path)
    assert result.returncode == 2
    assert "release v5 never completed (status failed); the next candidate is v2" in result.stderr
    assert [c[0] for c in fake.calls()] == ["auth", "releases", "status"]


def test_no_confirmation_without_a_terminal_and_dry_run_deploy_nothing(tmp_path: Path) -> None:
    config = write_fly_toml(tmp_path)
    fake = make_fake(tmp_path)
    refused = subprocess.run(
        [sys.executable, "-m", "aibridge", "rollback", "-c", str(config)],
        env=fake.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to roll back without confirmation: pass --yes" in refused.stderr
    dry = run_aibridge(["rollback", "--dry-run", "-c", str(config)], fake.env(), tmp_path)
    assert dry.returncode == 0, dry.stderr
    command = (
        f"FLY_EMIT_RELEASE_JSON=1 {FAKEFLY_DIR / 'fly'} deploy --config {config} --app demo --image {IMAGE_B}"
    )
    assert command in dry.stdout and "dry run: nothing deployed" in dry.stdout
    assert "deploy" not in [c[0] for c in fake.calls()]
