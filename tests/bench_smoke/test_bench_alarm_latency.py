"""Smoke test of the alarm latency benchmark: a tiny run, its JSON keys and its counts.

No timing is asserted (benchmarks report figures; tests never assert wall-clock times): only that
the result has its keys, that latency samples were collected at every load and that the figures
are consistent with each other. The run waits out the engine's 30 s settling time, so each layout
(storage and detection processes; the single-process baseline) takes about 45 s.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.topics import MessageKind
from pipesentinel.site_loader import load_site

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 3
PROBES = 2

TOP_LEVEL_KEYS = {
    "benchmark",
    "loads",
    "met",
    "samples_per_load",
    "probes",
    "probe_alarms",
    "probe_period_s",
    "probe_level_ppm",
    "background_devices",
    "background_acknowledged",
    "background_publish_failures",
    "other_alarm_messages",
    "settle_s",
    "ramp_s",
    "ingest_settings",
    "layout",
    "detection_settings",
    "lel_basis",
    "method",
    "notes",
    "elapsed_s",
    "paho_mqtt",
    "python",
    "machine",
    "cpus",
}
LOAD_KEYS = {
    "target_rate_msg_per_s",
    "background_rate_msg_per_s",
    "probe_rate_msg_per_s",
    "nominal_probe_rate_msg_per_s",
    "achieved_rate_msg_per_s",
    "ingest_accepted_rate_msg_per_s",
    "detection_feed_rate_msg_per_s",
    "measure_s",
    "latency",
    "clear",
    "to_ingest",
    "ingest_to_alarm",
    "missed",
    "unmatched",
    "states",
    "dropped_or_rejected",
    "ingest_mean_batch_records",
    "detection_mean_batch_records",
    "keeps_up",
    "goal_p99_ms",
    "met",
}
PERCENTILE_KEYS = {"samples", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}


@pytest.fixture
def bench_alarm_latency(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is not an installed package: import it from the checkout. The child processes are
    # spawned and inherit sys.path, so they find the module too.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.alarm_latency")


def test_percentiles_of_hand_worked_values(bench_alarm_latency: ModuleType) -> None:
    # 1, 2, ..., 100 ms: linear interpolation puts p50 at 50.5, p90 at 90.1, p99 at 99.01 ms
    # (hand-worked: rank (n - 1) q = 49.5, 89.1, 98.01 from 0).
    figures = bench_alarm_latency.percentiles_ms([k * 1e-3 for k in range(1, 101)])
    assert figures["samples"] == 100
    np.testing.assert_allclose(
        [figures["p50_ms"], figures["p90_ms"], figures["p99_ms"], figures["max_ms"]],
        [50.5, 90.1, 99.01, 100.0],
    )
    assert math.isclose(figures["mean_ms"], 50.5)
    empty = bench_alarm_latency.percentiles_ms([])
    assert empty["samples"] == 0
    assert empty["p99_ms"] is None


def test_probe_cycle_activates_after_the_on_delay_and_clears_after_the_off_delay(
    bench_alarm_latency: ModuleType,
) -> None:
    cycle = bench_alarm_latency.probe_cycle(on_delay_s=1.0, off_delay_s=10.0)
    assert [step.high for step in cycle] == [True, True, False, False]
    assert [step.activates for step in cycle] == [False, True, False, False]
    assert [step.clears for step in cycle] == [False, False, False, True]
    assert cycle[1].advance_s >= 1.0  # the second high reading completes the on-delay
    assert cycle[3].advance_s >= 10.0  # the second quiet reading completes the off-delay


def test_background_readings_are_valid_quiet_readings(bench_alarm_latency: ModuleType) -> None:
    site = load_site(REPO_ROOT / "sites" / "wanli")
    devices = bench_alarm_latency.background_devices(site, ["GD01"])
    # 30 gas detectors but the probe, 2 wind stations, 8 lasers (the reference site).
    assert len(devices) == 29 + 2 + 8
    assert not any(device.topic.endswith("/GD01") for device in devices)
    rng = np.random.default_rng(1)
    for device in devices:
        body = json.loads(bench_alarm_latency.background_payload(device, 7, 1_800_000_000_000, rng))
        assert (body["ts"], body["seq"]) == (1_800_000_000_000, 7)
        if device.kind is MessageKind.GAS:
            # Quiet: far below LOW (20 %LEL = 8800 ppm on the default basis), within NE 43 range.
            assert -625.0 - 1e-6 <= body["ch4_ppm"] < 2500.0
            assert body["status"] == "ok"
        elif device.kind is MessageKind.WIND:
            assert 0.0 <= body["direction_deg"] < 360.0
        else:
            # The ambient column along the beam (at most the 200 m range): 1.922 ppm x length
            # (NOAA, 2023), at most 384.4 ppm m (hand-worked); the noise is 5 ppm m.
            assert 0.0 < device.level <= 384.4 + 1e-9
            assert abs(body["path_integral_ppm_m"] - device.level) < 5 * 5.0 + 0.1


@pytest.mark.parametrize("layout", ["processes", "single"])
def test_run_reports_every_key_and_collects_samples(
    bench_alarm_latency: ModuleType, mosquitto: MosquittoProcess, layout: str
) -> None:
    loads = (
        bench_alarm_latency.Load("seed", 40.0, 0.05),
        bench_alarm_latency.Load("10x", 400.0, 0.25),
    )
    result = bench_alarm_latency.run(
        SAMPLES,
        loads=loads,
        probes=PROBES,
        ramp_s=0.5,
        max_measure_s=60.0,
        broker=mosquitto,
        layout=layout,
    )
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == TOP_LEVEL_KEYS
    assert set(result["loads"]) == {"seed", "10x"}
    assert result["probe_alarms"] == ["zone.P1-S1.suspected_leak", "zone.P1-S2.suspected_leak"]
    assert result["background_publish_failures"] == 0
    assert result["layout"] == layout
    for figures in result["loads"].values():
        assert set(figures) == LOAD_KEYS
        for key in ("latency", "clear", "to_ingest", "ingest_to_alarm"):
            assert set(figures[key]) == PERCENTILE_KEYS
        latency = figures["latency"]
        assert latency["samples"] >= SAMPLES
        assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert figures["clear"]["samples"] > 0
        assert figures["states"] == ["rtn_unack", "unack"]
        assert figures["dropped_or_rejected"] == {
            "ingest_rejected": 0,
            "ingest_queue_overflows": 0,
            "feed_queue_overflows": 0,
            "detection_errors": 0,
        }
        assert figures["achieved_rate_msg_per_s"] > 0
        assert figures["met"] is (latency["p99_ms"] < figures["goal_p99_ms"])
    assert result["met"] is all(figures["met"] for figures in result["loads"].values())
