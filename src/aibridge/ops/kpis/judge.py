"""KPIs from what ``check-kpis`` saw itself: probes of /health and scrapes of /metrics.

A snapshot (one probe, one scrape) judges only what a single scrape can honestly show;
everything that needs time is "cannot tell", never a silent pass (anchors.md §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aibridge.ops.kpis.charts import window_charts
from aibridge.ops.kpis.config import ROUTE_LABELS, STATUS_LABELS, KpiOptions
from aibridge.ops.kpis.model import KpiReport, KpiResult, Measurement, Verdict
from aibridge.ops.kpis.scrape import Probe, Scrape, detect_label
from aibridge.ops.kpis.series import (
    START_TIME,
    Buckets,
    counter_increase,
    histogram_increase,
    is_error_status,
    lifetime_buckets,
    nearest_rank,
    restart_startup_bounds,
    restarts,
)
from aibridge.ops.kpis.units import format_bytes, format_seconds
from aibridge.ops.kpis.verdicts import (
    cannot_tell,
    combine,
    samples_needed,
    server_latency,
    server_latency_measurement,
    under,
    unless_too_few,
    verdict_above,
    verdict_below,
)

__all__ = ("Observation", "judge")

RSS = "process_resident_memory_bytes"
CPU = "process_cpu_seconds_total"


@dataclass(slots=True)
class Observation:
    """Raw material: every probe and every successful scrape, in time order."""

    probes: list[Probe] = field(default_factory=list)
    scrapes: list[Scrape] = field(default_factory=list)
    failed_scrapes: int = 0
    late_probes: int = 0
    """Probes sent more than an interval after their slot because this side fell behind."""

    @property
    def span_s(self) -> float:
        times = [p.at for p in self.probes] + [s.at for s in self.scrapes]
        return max(times) - min(times) if len(times) > 1 else 0.0


def _interval_up(probe: Probe, probes: Sequence[Probe], allowed_s: float) -> bool:
    """Was the app answering during the interval this probe opened?

    Its own 2xx within the timeout is not enough: a hung app (SIGSTOP, a stalled event loop)
    answers every waiting probe at once when it resumes, each "within the timeout". The interval
    counts as up only if its probe came back within ``allowed_s`` (the interval, or twice the
    window's median latency for an app that is slow all the time), or some other 2xx arrived
    during it.
    """
    if not probe.ok or probe.latency_s is None:
        return False
    if probe.latency_s <= allowed_s:
        return True
    end = probe.at + allowed_s
    return any(p.ok and p.latency_s is not None and probe.at <= p.at + p.latency_s < end for p in probes)


def _counter_name(scrapes: Sequence[Scrape], name: str) -> str:
    """Accept the counter's name with or without its ``_total`` suffix."""
    if not any(s.has(name) for s in scrapes) and any(s.has(f"{name}_total") for s in scrapes):
        return f"{name}_total"
    return name


class _Judge:
    def __init__(self, options: KpiOptions, obs: Observation, fallback_limit: tuple[int, str] | None) -> None:
        self.o, self.obs, self.fallback_limit = options, obs, fallback_limit
        self.window = options.window_s > 0
        self.last = obs.scrapes[-1] if obs.scrapes else None
        self.counter = _counter_name(obs.scrapes, options.request_counter)
        self.restarts = restarts(obs.scrapes)

    def age(self) -> float | None:
        start = self.last.gauge(START_TIME) if self.last else None
        return max(0.0, self.last.at - start) if self.last and start is not None else None

    def uptime(self) -> KpiResult:
        t, probes = self.o.thresholds["uptime"], self.obs.probes
        if not self.window:
            state = "up now" if probes and probes[0].ok else "down now"
            age = self.age()
            measured = state + (f", process up {format_seconds(age)}" if age is not None else "")
            return cannot_tell("uptime", t, measured, "needs a window: one probe only says up or down now")
        answered = [p.latency_s for p in probes if p.ok and p.latency_s is not None]
        allowed = max(self.o.interval_s, 2 * nearest_rank(answered, 0.5)) if answered else self.o.interval_s
        up = sum(1 for p in probes if _interval_up(p, probes, allowed))
        pct = 100.0 * up / len(probes)
        how = (
            f"GET {self.o.health_path} every {format_seconds(self.o.interval_s)} on a new connection; "
            f"an interval is down when its probe got no 2xx in {format_seconds(self.o.timeout_s)} "
            "or nothing answered during it"
        )
        if self.restarts:
            how += f"; process restarted {self.restarts}× in the window"
        if self.obs.failed_scrapes:
            how += f"; {self.obs.failed_scrapes} scrape(s) of /metrics failed too"
        if self.obs.late_probes:
            how += f"; {self.obs.late_probes} probe(s) sent late (this host fell behind)"
        measured = f"{pct:.2f} % ({up}/{len(probes)} intervals)"
        result = KpiResult("uptime", t.describe("uptime"), verdict_above(pct, t), measured, how, pct)
        return unless_too_few(result, len(probes), (100 - t.limit) / 100, "probes")

    def server_buckets(self, *, all_routes: bool = False) -> Buckets | None:
        """The duration histogram of the health route (or every route) over the window or lifetime."""
        series = [lb for s in self.obs.scrapes for lb, _ in s.series(f"{self.o.duration_histogram}_count")]
        label = detect_label(series, self.o.route_label, ROUTE_LABELS)
        if (label is None and not all_routes) or self.last is None:
            return None
        route = self.o.health_path

        def keep(labels: Mapping[str, str]) -> bool:
            return all_routes or (label is not None and labels.get(label) == route)

        if self.window:
            buckets = histogram_increase(self.obs.scrapes, self.o.duration_histogram, keep)
        else:
            buckets = lifetime_buckets(self.last, self.o.duration_histogram, keep)
        return buckets if buckets.total > 0 else None

    def latency(self) -> KpiResult:
        t = self.o.thresholds["health_latency"]
        target = t.describe("health_latency")
        client = [p.latency_s for p in self.obs.probes if p.ok and p.latency_s is not None]
        views, verdicts, value = [], [], None
        if self.window and len(client) >= 2:
            value = nearest_rank(client, t.quantile)
            client_verdict = under(value, t)
            needed = samples_needed(1 - t.quantile)
            few = client_verdict is Verdict.PASS and len(client) < needed
            verdicts.append(client_verdict)
            note = f", too few samples: trust from {needed}" if few else ""
            views.append(
                f"client: p{t.quantile * 100:g} {format_seconds(value)} ({len(client)} probes{note})"
            )
        elif client:
            views.append(f"client: {format_seconds(client[0])} (one probe)")
        buckets = self.server_buckets()
        if buckets is not None:
            verdict, text, estimate = server_latency(buckets, t)
            verdicts.append(verdict)
            views.append(("server: " if self.window else "server since start: ") + text)
            value = value if value is not None else estimate
        elif self.last is not None:
            views.append(f"no {self.o.duration_histogram}{{…={self.o.health_path!r}}} data")
        how = "client: nearest rank of probes (incl. network); server: " + (
            "histogram Δ over the window" if self.window else "histogram since process start"
        )
        if not verdicts:
            return cannot_tell(
                "health_latency", t, " · ".join(views) or "no response", "needs a window; " + how
            )
        return KpiResult("health_latency", target, combine(verdicts), " · ".join(views), how, value)

    def memory(self) -> KpiResult:
        t = self.o.thresholds["memory"]
        rss = [v for s in self.obs.scrapes if (v := s.gauge(RSS)) is not None]
        if not rss:
            how = f"no {RSS} (prometheus-client multiprocess mode drops it)"
            return cannot_tell("memory", t, "not exported", how)
        peak = max(rss)
        word = "peak" if self.window else "now"
        app_limit = self.last.gauge(self.o.memory_limit_metric) if self.last else None
        if app_limit:
            limit, source = app_limit, f"app's {self.o.memory_limit_metric}"
        elif self.fallback_limit is not None:
            limit, source = float(self.fallback_limit[0]), self.fallback_limit[1]
        else:
            how = (
                f"no limit: app exports no {self.o.memory_limit_metric}; "
                "pass --config fly.toml or --memory-limit"
            )
            return cannot_tell("memory", t, f"{word} {format_bytes(peak)} of ?", how)
        pct = 100.0 * peak / limit
        measured = f"{pct:.1f} % ({word} {format_bytes(peak)} of {format_bytes(limit)})"
        seen = f"max {RSS} of {len(rss)} scrapes" if self.window else f"{RSS} now"
        how = f"{seen} ÷ {source}"
        return KpiResult("memory", t.describe("memory"), verdict_below(pct, t), measured, how, pct)

    def requests(self) -> tuple[float, float, str | None]:
        """(errors, total, status label) over the window, or since process start for a snapshot."""
        labels = [lb for s in self.obs.scrapes for lb, _ in s.series(self.counter)]
        status = detect_label(labels, self.o.status_label, STATUS_LABELS)
        if self.window:
            increase = counter_increase(self.obs.scrapes, self.counter)
            items = [(dict(k), v) for k, v in increase.items()]
        else:
            items = [(lb, v) for lb, v in (self.last.series(self.counter) if self.last else [])]
        total = sum(v for _, v in items)
        errors = sum(v for lb, v in items if status and is_error_status(lb.get(status, "")))
        return errors, total, status

    def error_rate(self) -> KpiResult:
        t = self.o.thresholds["error_rate"]
        errors, total, status = self.requests()
        scope = "Δ over the window" if self.window else "since process start (one scrape has no window)"
        if not any(s.has(self.counter) for s in self.obs.scrapes):
            how = f"no {self.counter} in the scrape; name the app's request counter with --request-counter"
            return cannot_tell("error_rate", t, "not exported", how)
        if total <= 0:
            return cannot_tell("error_rate", t, "no requests counted", f"{self.counter}: {scope}")
        if status is None:
            how = f"{self.counter} has none of the labels {', '.join(STATUS_LABELS)}; pass a status label"
            return cannot_tell("error_rate", t, f"{total:.0f} requests, status unknown", how)
        pct = 100.0 * errors / total
        how = f"{self.counter}{{{status}=~5xx|5..}} / all, {scope}"
        if self.window:
            how += f"; counter resets handled ({self.restarts} restart{'s' * (self.restarts != 1)})"
        measured = f"{pct:.2f} % ({errors:.0f}/{total:.0f})"
        result = KpiResult("error_rate", t.describe("error_rate"), verdict_below(pct, t), measured, how, pct)
        return unless_too_few(result, round(total), t.limit / 100, "requests")

    def startup(self) -> KpiResult:
        t = self.o.thresholds["startup"]
        values = [v for s in self.obs.scrapes if (v := s.gauge(self.o.startup_metric)) is not None]
        if not values:
            return self.observed_startup()
        worst = max(values)
        how = f"app's {self.o.startup_metric} (process start → ready); worst seen"
        return KpiResult(
            "startup", t.describe("startup"), verdict_below(worst, t), format_seconds(worst), how, worst
        )

    def observed_startup(self) -> KpiResult:
        """Without the app's gauge, time a restart seen in the window: new process start → first 2xx.

        The start time comes from the app's clock and the probes from ours, so this assumes the
        clocks agree (true on one host, usually within milliseconds with NTP). It is a bound, not a
        point: ready after the last failed probe, and before the first good one answered.
        """
        t = self.o.thresholds["startup"]
        bounds = restart_startup_bounds(self.obs.scrapes, self.obs.probes)
        if not bounds:
            how = (
                f"app exports no {self.o.startup_metric} and no restart was seen in the window; "
                "a start timestamp alone is not time-to-ready"
            )
            return cannot_tell("startup", t, "not exported", how)
        lower, upper = max(bounds, key=lambda b: b[1])
        how = "restart seen: process_start_time_seconds → first 2xx probe (clocks assumed in sync)"
        measured = f"{format_seconds(lower)}–{format_seconds(upper)}"
        if upper < t.limit:
            return KpiResult("startup", t.describe("startup"), Verdict.PASS, measured, how, upper)
        if lower >= t.limit:
            return KpiResult("startup", t.describe("startup"), Verdict.FAIL, measured, how, lower)
        return cannot_tell("startup", t, measured, how + "; the bound straddles the target")

    def measurements(self) -> list[Measurement]:
        out: list[Measurement] = []
        span = self.obs.span_s if self.window else (self.age() or 0.0)
        scope = "over the window" if self.window else "lifetime average"
        _, total, _ = self.requests()
        if span > 0 and total > 0:
            out.append(
                Measurement(
                    "throughput", f"{total / span:.2f} req/s", f"{self.counter}, {scope}", total / span
                )
            )
        if self.window:
            cpu = sum(counter_increase(self.obs.scrapes, CPU).values())
        else:
            cpu = (self.last.gauge(CPU) or 0.0) if self.last else 0.0
        if span > 0 and any(s.has(CPU) for s in self.obs.scrapes):
            pct = 100.0 * cpu / span
            out.append(Measurement("cpu", f"{pct:.1f} % of one core", f"{CPU}, {scope}", pct))
        client = [p.latency_s for p in self.obs.probes if p.ok and p.latency_s is not None]
        if len(client) >= 2:
            parts = [f"p{q:g} {format_seconds(nearest_rank(client, q / 100))}" for q in (50, 95, 99)]
            out.append(Measurement("latency (client)", " · ".join(parts), "nearest rank over /health probes"))
        buckets = self.server_buckets()
        if buckets is not None:
            out.append(server_latency_measurement(buckets))
        every = self.server_buckets(all_routes=True)
        if every is not None:
            limit = self.o.thresholds["health_latency"].limit
            low, high, _, _ = every.share_within(limit)
            share = f"{low * 100:.2f} %" if low == high else f"{low * 100:.1f}–{high * 100:.1f} %"
            scope = "over the window" if self.window else "since process start"
            how = f"{self.o.duration_histogram}, every route, {scope}"
            measured = f"{share} ≤ {format_seconds(limit)} ({every.total:.0f} req)"
            out.append(Measurement("all requests", measured, how, low * 100))
        return out


def judge(
    options: KpiOptions, obs: Observation, fallback_limit: tuple[int, str] | None, *, complete: bool = True
) -> KpiReport:
    """The report for what ``obs`` holds so far (``complete=False`` while a window is running)."""
    j = _Judge(options, obs, fallback_limit)
    report = KpiReport(
        mode="window" if j.window else "snapshot",
        target=options.health_url,
        metrics_url=options.resolved_metrics_url,
        span_s=obs.span_s,
        kpis=[j.uptime(), j.latency(), j.memory(), j.error_rate(), j.startup()],
        measurements=j.measurements(),
        latency_ms=[p.latency_s * 1000 if p.ok and p.latency_s is not None else None for p in obs.probes],
        memory_bytes=[v for s in obs.scrapes if (v := s.gauge(RSS)) is not None],
        complete=complete,
    )
    if j.window:
        limit = j.last.gauge(options.memory_limit_metric) if j.last else None
        if limit is None and fallback_limit is not None:
            limit = float(fallback_limit[0])
        report.charts = window_charts(options, obs.probes, obs.scrapes, limit)
    return report
