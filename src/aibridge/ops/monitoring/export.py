"""``aibridge monitoring export``: write the dashboard and the alert rules into a project."""

from __future__ import annotations

from pathlib import Path

from aibridge.errors import FileReadError, UsageError
from aibridge.ops.monitoring.alerts import RUNBOOK, alert_rules_yaml
from aibridge.ops.monitoring.dashboard import dashboard_json
from aibridge.ops.monitoring.slo import DEFAULT_SELECTOR

__all__ = ("DASHBOARD_FILE", "RULES_FILE", "export_monitoring", "selector_for_app")

DASHBOARD_FILE = "aibridge-dashboard.json"
RULES_FILE = "aibridge-alerts.yml"


def selector_for_app(app: str | None) -> str:
    """``app="NAME"`` (how Fly's Prometheus labels an app's series), else ``job="aibridge"``."""
    if app is None:
        return DEFAULT_SELECTOR
    if not app or '"' in app or "\\" in app:
        raise UsageError(f"--app {app!r}: expected a Fly app name")
    return f'app="{app}"'


def export_monitoring(
    out_dir: Path, *, selector: str = DEFAULT_SELECTOR, runbook: str = RUNBOOK, force: bool = False
) -> list[Path]:
    """Write both files into ``out_dir`` (created if missing); refuse to overwrite unless ``force``."""
    files = {
        out_dir / DASHBOARD_FILE: dashboard_json(),
        out_dir / RULES_FILE: alert_rules_yaml(selector=selector, runbook=runbook),
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(f"{names}: already exists (use --force to replace)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise FileReadError(f"{out_dir}: cannot write: {error.strerror}") from None
    return list(files)
