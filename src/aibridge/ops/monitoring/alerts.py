"""Prometheus alerting rules for the bridge's five KPIs, as a rules file ``promtool`` accepts.

SLO KPIs (uptime, error rate, health latency) alert on error-budget burn over two windows at
once: fast burns page, slow burns open a ticket. Memory and start-up alert on their threshold.
Every rule carries ``summary``, ``description`` and a ``runbook`` pointing at README's runbook.
"""

from __future__ import annotations

from typing import Any

import yaml

from aibridge.ops.kpis.units import DEFAULT_THRESHOLDS, KpiName, Threshold
from aibridge.ops.monitoring.slo import (
    BURN_WINDOWS,
    DEFAULT_SELECTOR,
    Slo,
    memory_ratio,
    slos,
    startup_seconds,
)

__all__ = ("RUNBOOK", "alert_rules", "alert_rules_yaml")

RUNBOOK = "README.md"
"""Where the runbook anchors live (aibridge's README); ``--runbook-url`` gives the full URL of your copy."""

_ANCHORS: dict[KpiName, str] = {
    "uptime": "runbook-uptime",
    "error_rate": "runbook-error-rate",
    "health_latency": "runbook-health-latency",
    "memory": "runbook-memory",
    "startup": "runbook-startup",
}


def _burn_expr(slo: Slo, severity: str) -> str:
    """``(long > k·budget and short > k·budget) or …`` for every window pair of ``severity``."""
    clauses = []
    for w in (w for w in BURN_WINDOWS if w.severity == severity):
        limit = f"({w.factor:g} * {slo.budget:.6g})"
        clauses.append(
            f"(\n  ({slo.bad_ratio(w.long)}) > {limit}\nand\n  ({slo.bad_ratio(w.short)}) > {limit}\n)"
        )
    return "\nor\n".join(clauses)


def _burn_rule(slo: Slo, severity: str, runbook: str) -> dict[str, Any]:
    windows = ", ".join(
        f"{w.factor:g}× over {w.long}/{w.short}" for w in BURN_WINDOWS if w.severity == severity
    )
    speed = "fast" if severity == "page" else "slow"
    return {
        "alert": f"Aibridge{slo.name}BudgetBurn{'Fast' if severity == 'page' else 'Slow'}",
        "expr": _burn_expr(slo, severity),
        "labels": {"severity": severity, "kpi": slo.kpi},
        "annotations": {
            "summary": f"{{{{ $labels.app }}}}: {slo.kpi} error budget burning {speed} ({slo.what})",
            "description": (
                f"The bad-event ratio of {slo.kpi} is {{{{ $value | humanizePercentage }}}}, "
                f"against a budget of {slo.budget:.3%} (objective {slo.objective:.4g}). "
                f"Burn-rate windows: {windows}. At this pace the 30-day budget runs out early."
            ),
            "runbook": f"{runbook}#{_ANCHORS[slo.kpi]}",
        },
    }


def alert_rules(
    selector: str = DEFAULT_SELECTOR,
    thresholds: dict[KpiName, Threshold] | None = None,
    runbook: str = RUNBOOK,
) -> dict[str, Any]:
    """The rules file as data: one group of burn-rate alerts, one of threshold alerts."""
    t = thresholds or DEFAULT_THRESHOLDS
    burn = [_burn_rule(slo, sev, runbook) for slo in slos(selector, t) for sev in ("page", "ticket")]
    memory, startup = t["memory"].limit, t["startup"].limit
    plain = [
        {
            "alert": "AibridgeMemoryHigh",
            "expr": f"(\n{memory_ratio(selector)}\n) > {memory / 100:g}",
            "for": "5m",
            "labels": {"severity": "ticket", "kpi": "memory"},
            "annotations": {
                "summary": f"{{{{ $labels.instance }}}}: memory above {memory:g} % of the machine's limit",
                "description": (
                    "Resident memory is {{ $value | humanizePercentage }} of aibridge_memory_limit_bytes "
                    f"(KPI: < {memory:g} %) for 5 minutes; past the limit the kernel kills the bridge."
                ),
                "runbook": f"{runbook}#{_ANCHORS['memory']}",
            },
        },
        {
            "alert": "AibridgeStartupSlow",
            "expr": f"{startup_seconds(selector)} > {startup:g}",
            "labels": {"severity": "ticket", "kpi": "startup"},
            "annotations": {
                "summary": f"{{{{ $labels.instance }}}}: start-up took longer than {startup:g} s",
                "description": (
                    "aibridge_startup_duration_seconds is {{ $value | humanizeDuration }} "
                    f"(KPI: < {startup:g} s); Fly's proxy and health checks wait that long on every start."
                ),
                "runbook": f"{runbook}#{_ANCHORS['startup']}",
            },
        },
    ]
    return {
        "groups": [
            {"name": "aibridge-slo-burn", "rules": burn},
            {"name": "aibridge-kpi-thresholds", "rules": plain},
        ]
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, so the file reads like hand-written rules."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def alert_rules_yaml(**options: Any) -> str:
    header = (
        "# Prometheus alerting rules for aibridge's KPIs, written by `aibridge monitoring export`.\n"
        "# Check: promtool check rules aibridge-alerts.yml\n"
    )
    return header + yaml.dump(
        alert_rules(**options), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=200
    )
