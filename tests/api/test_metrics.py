"""Prometheus text exposition: format 0.0.4 lines, counters from stats dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipesentinel.api.metrics import MetricFamily, RequestMetrics, render, stats_families


def test_render_writes_help_type_and_escaped_labels() -> None:
    text = render(
        [
            MetricFamily(
                "x_total", "counter", "a help\nline", (("", (("route", 'a"b\\c'),), 3.0),)
            ),
            MetricFamily("y", "gauge", "g", (("", (), 0.25),)),
        ]
    )
    assert text == (
        "# HELP x_total a help\\nline\n"
        "# TYPE x_total counter\n"
        'x_total{route="a\\"b\\\\c"} 3\n'
        "# HELP y g\n"
        "# TYPE y gauge\n"
        "y 0.25\n"
    )


@dataclass
class _Stats:
    batches: int = 4
    connected: bool = True
    queue_depth: int = 2
    last_error: str | None = "boom"
    by_plan: dict[str, int] = field(default_factory=lambda: {"P-B": 2, "P-A": 1})


def test_stats_become_counters_gauges_and_labelled_counters() -> None:
    families = {f.name: f for f in stats_families("p", _Stats(), gauges=("queue_depth",), what="t")}
    assert set(families) == {"p_batches_total", "p_connected", "p_queue_depth", "p_by_plan_total"}
    assert families["p_batches_total"].kind == "counter"
    assert families["p_connected"].samples == (("", (), 1.0),)
    assert families["p_queue_depth"].kind == "gauge"
    assert families["p_by_plan_total"].samples == (
        ("", (("key", "P-A"),), 1.0),
        ("", (("key", "P-B"),), 2.0),
    )
    with pytest.raises(TypeError, match="dataclass"):
        stats_families("p", {"a": 1}, what="t")


def test_request_latency_is_a_cumulative_histogram() -> None:
    metrics = RequestMetrics()
    for duration_s in (0.0005, 0.003, 0.003, 20.0):
        metrics.observe(method="GET", route="/r", status=200, duration_s=duration_s)
    metrics.observe(method="GET", route="/r", status=404, duration_s=0.001)
    assert metrics.count(method="GET", route="/r", status=200) == 4
    lines = render(metrics.families()).splitlines()
    assert 'pipesentinel_http_requests_total{method="GET",route="/r",status="404"} 1' in lines
    bucket = 'pipesentinel_http_request_duration_seconds_bucket{method="GET",route="/r",le='
    assert f'{bucket}"0.001"}} 2' in lines  # 0.0005 and 0.001 (le is inclusive)
    assert f'{bucket}"0.005"}} 4' in lines
    assert f'{bucket}"10"}} 4' in lines  # the 20 s request is above the last bound
    assert f'{bucket}"+Inf"}} 5' in lines
    assert 'pipesentinel_http_request_duration_seconds_count{method="GET",route="/r"} 5' in lines
