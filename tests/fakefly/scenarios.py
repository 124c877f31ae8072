"""Scenarios for the fake ``fly`` (tests/fakefly/fly) and real bridge servers that play releases.

A "release" is a real ``aibridge serve`` process on a loopback port. The fake's ``deploy`` can stop
the running one (SIGTERM: it drains with 503, then exits) and start another, good or broken
(a malformed setting makes it exit at boot), exactly as a Fly deploy replaces a Machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import free_port, run_bridge

FAKEFLY_DIR = Path(__file__).resolve().parent
APP = "demo"
IMAGE_A = "registry.fly.io/demo:deployment-01ALPHA"
IMAGE_B = "registry.fly.io/demo:deployment-02BRAVO"
IMAGE_D = "registry.fly.io/demo:deployment-04DELTA"
IMAGE_E = "registry.fly.io/demo:deployment-05ECHO"
# Newest first as flyctl sorts them: v5 failed, v4 is live (image D), v3 redeployed D, so the right
# rollback target is v2 (image B), not the blind second entry v4.
RELEASES = [
    {"version": 5, "status": "failed", "image": IMAGE_E},
    {"version": 4, "status": "complete", "image": IMAGE_D},
    {"version": 3, "status": "complete", "image": IMAGE_D},
    {"version": 2, "status": "complete", "image": IMAGE_B},
    {"version": 1, "status": "complete", "image": IMAGE_A},
]
MACHINES = [{"id": "148e21ea7d9089", "region": "sjc"}, {"id": "3d8d9d1fa51d89", "region": "ams"}]
FLY_TOML = f'app = "{APP}"\nprimary_region = "sjc"\n\n[http_service]\ninternal_port = 8080\n'


@dataclass
class FakeFly:
    """One scenario directory: the scenario file, the state and the record of calls."""

    root: Path
    scenario: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / "scenario.json"

    def write(self) -> FakeFly:
        self.path.write_text(json.dumps(self.scenario, indent=2))
        return self

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "AI_BRIDGE_"))}
        env.pop("FLYCTL", None)
        env["PATH"] = f"{FAKEFLY_DIR}{os.pathsep}{env.get('PATH', '')}"
        env["FAKEFLY_SCENARIO"] = str(self.path)
        env["COLUMNS"] = "200"
        env.update(extra)
        return env

    def records(self) -> list[dict[str, Any]]:
        calls = self.path.with_suffix(".calls.jsonl")
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines() if line.strip()]

    def calls(self) -> list[list[str]]:
        return [r["argv"] for r in self.records() if "argv" in r]

    def state(self) -> dict[str, Any]:
        return json.loads(self.path.with_suffix(".state.json").read_text())


def make_fake(tmp_path: Path, **overrides: Any) -> FakeFly:
    root = tmp_path / "fakefly"
    root.mkdir(exist_ok=True)
    scenario: dict[str, Any] = {
        "app": APP,
        "logged_in": True,
        "releases": RELEASES,
        "machines": MACHINES,
        "running_image": IMAGE_D,
        "deploys": [],
    }
    scenario.update(overrides)
    return FakeFly(root, scenario).write()


def write_fly_toml(tmp_path: Path, text: str = FLY_TOML) -> Path:
    path = tmp_path / "fly.toml"
    path.write_text(text)
    return path


@dataclass
class Releases:
    """Real bridge servers on one loopback port, standing in for the app's Machines."""

    tmp_path: Path
    port: int
    pid_file: Path
    started: list[Path] = field(default_factory=list)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def stop(self) -> dict[str, Any]:
        """A fake-deploy action: SIGTERM the release that is running now."""
        return {"stop_pid_file": str(self.pid_file)}

    def start(self, *, good: bool = True) -> dict[str, Any]:
        """A fake-deploy action: start a release; a bad one has a malformed setting and exits at boot."""
        env = {"AI_BRIDGE_METRICS_PORT": str(free_port()), "AI_BRIDGE_DATA_DIR": str(self.tmp_path / "data")}
        if not good:
            env["AI_BRIDGE_HISTORY_LIMIT"] = "lots"
        log = self.tmp_path / f"release-{len(self.started)}.log"
        self.started.append(log)
        argv = [sys.executable, "-m", "aibridge", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        spec = {"argv": argv, "env": env, "pid_file": str(self.pid_file), "log": str(log)}
        if good:
            spec["wait_url"] = self.health_url
        return {"start": spec}


@contextlib.contextmanager
def live_release(tmp_path: Path) -> Iterator[Releases]:
    """The release live before the deploy: a real bridge; any release started later is stopped too."""
    with run_bridge(tmp_path) as bridge:
        releases = Releases(tmp_path, bridge.port, tmp_path / "release.pid")
        releases.pid_file.write_text(str(bridge.process.pid))
        try:
            yield releases
        finally:
            pid = int(releases.pid_file.read_text())
            if pid != bridge.process.pid and _is_bridge(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _is_bridge(pid: int) -> bool:
    """Guard against a recycled pid: only kill what is still an ``aibridge serve`` process."""
    try:
        return b"aibridge" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_aibridge(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aibridge", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
