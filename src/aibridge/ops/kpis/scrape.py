"""Talking to the target: one ``/health`` probe, one ``/metrics`` scrape, parsed by prometheus-client."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aibridge.errors import TargetUnreachableError

__all__ = ("Labels", "Probe", "Scrape", "detect_label", "fetch_scrape", "probe_health")

Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Probe:
    """One GET of the health URL, on a new connection like a platform health check."""

    at: float
    """Wall-clock time the probe started (Unix seconds)."""
    ok: bool
    """True for a 2xx answer."""
    latency_s: float | None
    """Time to the full response; None when nothing came back."""
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Scrape:
    """One ``/metrics`` exposition: every sample by sample name ("x_total", "x_bucket")."""

    at: float
    samples: dict[str, list[tuple[dict[str, str], float]]]

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])

    def gauge(self, name: str) -> float | None:
        """The value of an unlabelled metric (the largest if it has several series)."""
        values = [value for _, value in self.series(name) if math.isfinite(value)]
        return max(values) if values else None

    def has(self, name: str) -> bool:
        return name in self.samples


def probe_health(client: httpx.Client, url: str, timeout_s: float) -> Probe:
    """GET ``url`` once; any transport error or non-2xx counts as down, never raises."""
    started_wall, started = time.time(), time.perf_counter()
    try:
        response = client.get(url, timeout=timeout_s, headers={"Connection": "close"})
    except httpx.HTTPError as error:
        return Probe(started_wall, False, None, None, f"{type(error).__name__}: {error}".rstrip(": "))
    latency = time.perf_counter() - started
    if latency > timeout_s:
        # httpx's timeout is per phase (connect, then each read): a hung app that accepted the
        # connection can answer later than the probe's rule allows. Late is down.
        late = f"HTTP {response.status_code} after {latency:.2f}s, over the {timeout_s:g}s timeout"
        return Probe(started_wall, False, latency, response.status_code, late)
    ok = 200 <= response.status_code < 300
    return Probe(
        started_wall, ok, latency, response.status_code, None if ok else f"HTTP {response.status_code}"
    )


def parse_exposition(text: str, at: float) -> Scrape:
    """Parse Prometheus text format; ValueError when ``text`` is not exposition text."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return Scrape(at, samples)


def fetch_scrape(client: httpx.Client, url: str, timeout_s: float) -> Scrape:
    """Scrape ``url``; TargetUnreachableError if it does not answer 200 with exposition text."""
    at = time.time()
    try:
        response = client.get(url, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise TargetUnreachableError(f"metrics URL {url} does not answer: {error}") from None
    if response.status_code != 200:
        raise TargetUnreachableError(f"metrics URL {url} answered HTTP {response.status_code}, not 200")
    try:
        return parse_exposition(response.text, at)
    except (ValueError, IndexError, TypeError) as error:
        raise TargetUnreachableError(
            f"metrics URL {url} did not return Prometheus exposition text ({error})"
        ) from None


def detect_label(
    label_sets: Iterable[Mapping[str, str]], preferred: str | None, candidates: Iterable[str]
) -> str | None:
    """The label to read: ``preferred`` if given, else the first candidate that any series carries."""
    if preferred:
        return preferred
    seen: set[str] = set()
    for labels in label_sets:
        seen.update(labels)
    return next((name for name in candidates if name in seen), None)
