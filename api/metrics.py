"""Prometheus text exposition (format 0.0.4) of the API's and the services' counters.

The API counts requests and their latency by method, route template and status
(:class:`RequestMetrics`); the services' own counters (ingest, detection, response, stream) are
read from their ``stats()`` when ``/metrics`` is scraped and rendered by :func:`render`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS_S",
    "MetricFamily",
    "RequestMetrics",
    "render",
    "stats_families",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Histogram bucket bounds of request latency (design choice: 1 ms .. 10 s, roughly x2.5) [s].
LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass(frozen=True)
class MetricFamily:
    """One metric: name, type (counter, gauge, histogram), help, samples (suffix, labels, value)."""

    name: str
    kind: str
    help: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(families: Iterable[MetricFamily]) -> str:
    """The exposition text of ``families`` (HELP, TYPE, then one line per sample)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            label_text = ",".join(f'{key}="{_escape(text)}"' for key, text in labels)
            braces = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{family.name}{suffix}{braces} {_number(value)}")
    return "\n".join(lines) + "\n"


def stats_families(
    prefix: str, stats: object, *, gauges: Iterable[str] = (), what: str
) -> list[MetricFamily]:
    """One family per numeric field of a stats dataclass (``*_total`` counters, else gauges).

    Booleans become 0/1 gauges; mappings of name -> number become one labelled family
    (label ``key``); other fields (texts) are left out.
    """
    if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
        raise TypeError(f"{what}: stats must be a dataclass instance, got {type(stats).__name__}")
    gauge_names = set(gauges)
    families: list[MetricFamily] = []
    for item in dataclasses.fields(stats):
        value = getattr(stats, item.name)
        name = f"{prefix}_{item.name}"
        if isinstance(value, bool):
            families.append(
                MetricFamily(name, "gauge", f"{what}: {item.name}", (("", (), float(value)),))
            )
        elif isinstance(value, int | float):
            if item.name in gauge_names:
                families.append(
                    MetricFamily(name, "gauge", f"{what}: {item.name}", (("", (), float(value)),))
                )
            else:
                families.append(
                    MetricFamily(
                        f"{name}_total",
                        "counter",
                        f"{what}: {item.name}",
                        (("", (), float(value)),),
                    )
                )
        elif isinstance(value, Mapping):
            samples = tuple(
                ("", (("key", str(key)),), float(number))
                for key, number in sorted(value.items())
                if isinstance(number, int | float)
            )
            families.append(
                MetricFamily(f"{name}_total", "counter", f"{what}: {item.name}", samples)
            )
    return families


class RequestMetrics:
    """Request counts and latency histograms by method, route template and status; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = {}
        self._totals: dict[tuple[str, str], int] = {}

    def observe(self, *, method: str, route: str, status: int, duration_s: float) -> None:
        """Count one request that took ``duration_s`` [s]."""
        with self._lock:
            key = (method, route, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            timing = (method, route)
            buckets = self._buckets.setdefault(timing, [0] * len(LATENCY_BUCKETS_S))
            for index, bound in enumerate(LATENCY_BUCKETS_S):
                if duration_s <= bound:
                    buckets[index] += 1
            self._sums[timing] = self._sums.get(timing, 0.0) + duration_s
            self._totals[timing] = self._totals.get(timing, 0) + 1

    def count(self, *, method: str, route: str, status: int) -> int:
        """Requests counted so far with these labels."""
        with self._lock:
            return self._counts.get((method, route, str(status)), 0)

    def families(self) -> list[MetricFamily]:
        """The request counter and latency histogram."""
        with self._lock:
            counts = sorted(self._counts.items())
            timings = sorted(self._totals)
            histogram: list[tuple[str, tuple[tuple[str, str], ...], float]] = []
            for method, route in timings:
                labels = (("method", method), ("route", route))
                for bound, count in zip(
                    LATENCY_BUCKETS_S, self._buckets[(method, route)], strict=True
                ):
                    histogram.append(("_bucket", (*labels, ("le", _number(bound))), float(count)))
                total = float(self._totals[(method, route)])
                histogram.append(("_bucket", (*labels, ("le", "+Inf")), total))
                histogram.append(("_sum", labels, self._sums[(method, route)]))
                histogram.append(("_count", labels, total))
        return [
            MetricFamily(
                "pipesentinel_http_requests_total",
                "counter",
                "HTTP requests by method, route template and status",
                tuple(
                    ("", (("method", m), ("route", r), ("status", s)), float(n))
                    for (m, r, s), n in counts
                ),
            ),
            MetricFamily(
                "pipesentinel_http_request_duration_seconds",
                "histogram",
                "HTTP request latency by method and route template [s]",
                tuple(histogram),
            ),
        ]
