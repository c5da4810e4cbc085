"""Smoke test of the alarm latency benchmark: a tiny run, its JSON keys and its counts.

No timing is asserted (benchmarks report figures; tests never assert wall-clock times): only that
the result has its keys, that latency samples were collected at every load and that the figures
are consistent with each other. Each run waits out the engine's 30 s settling time, so each chain
(storage and detection processes; the same with the storing ingest elsewhere; the single-process
baseline) takes about 45 s.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.topics import MessageKind
from pipesentinel.site_loader import load_site

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 3
PROBES = 2

TOP_LEVEL_KEYS = {
    "benchmark",
    "loads",
    "balance",
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
    "storage",
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
    "offered_rate_msg_per_s",
    "offered_fraction_of_target",
    "offered_short",
    "background_rate_msg_per_s",
    "background_behind_messages",
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
    "cpu_us_per_message",
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


@pytest.fixture
def mqtt_load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.mqtt_load")


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
    # Layout 'processes' with storage=None is what python -m bench runs: storage here at every
    # load, then a fresh chain with the storing ingest elsewhere (not started) at the 10x load.
    seed = bench_alarm_latency.Load("seed", 40.0, 0.05)
    tenfold = bench_alarm_latency.Load("10x", 400.0, 0.25)
    result = bench_alarm_latency.run(
        SAMPLES,
        loads=(seed, tenfold),
        probes=PROBES,
        ramp_s=0.5,
        max_measure_s=60.0,
        broker=mosquitto,
        layout=layout,
        elsewhere_loads=(tenfold,),
    )
    json.dumps(result)  # serialisable as the runner writes it
    if layout == "single":
        assert set(result) == TOP_LEVEL_KEYS
        _check_run(result, layout="single", storage="here", loads={"seed", "10x"})
    else:
        assert set(result) == TOP_LEVEL_KEYS | {"storage_elsewhere"}
        _check_run(result, layout="processes", storage="here", loads={"seed", "10x"})
        elsewhere = result["storage_elsewhere"]
        assert set(elsewhere) == TOP_LEVEL_KEYS
        _check_run(elsewhere, layout="processes", storage="elsewhere", loads={"10x"})


def test_storage_elsewhere_needs_the_processes_layout(bench_alarm_latency: ModuleType) -> None:
    with pytest.raises(ValueError, match="elsewhere"):
        bench_alarm_latency.run(1, layout="single", storage="elsewhere")


def _check_run(result: dict[str, Any], *, layout: str, storage: str, loads: set[str]) -> None:
    """The keys and the consistency of the figures of one run of the benchmark."""
    stored_here = storage == "here"
    assert set(result["loads"]) == loads
    assert result["probe_alarms"] == ["zone.P1-S1.suspected_leak", "zone.P1-S2.suspected_leak"]
    assert result["background_publish_failures"] == 0
    assert result["layout"] == layout
    assert result["storage"] == storage
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
        assert (figures["ingest_accepted_rate_msg_per_s"] is None) is not stored_here
        assert (figures["ingest_mean_batch_records"] is None) is not stored_here
        assert figures["offered_short"] is (figures["offered_fraction_of_target"] < 0.95)
        assert figures["met"] is (
            latency["p99_ms"] < figures["goal_p99_ms"] and not figures["offered_short"]
        )
        cpu = figures["cpu_us_per_message"]
        assert set(cpu) == {"storage_process", "detection_process", "broker", "load_generator"}
        assert cpu["detection_process"] > 0
        assert cpu["load_generator"] > 0
        # No storing process's CPU: in-process (single) or on another host (elsewhere).
        assert (cpu["storage_process"] is None) is (layout == "single" or not stored_here)
    # Nothing lost: every message the broker acknowledged was received (and stored, when the
    # storing ingest runs here) and detected.
    balance = result["balance"]
    assert balance["balanced"], balance
    assert balance["storage_checked"] is stored_here
    published = balance["published_acknowledged_by_broker"]
    assert published == result["background_acknowledged"] + balance["probe_published"]
    assert balance["feed_received"] == published
    assert balance["detection_records"] == balance["feed_accepted"]
    if stored_here:
        assert balance["storage_received"] == published
        assert balance["storage_records_written"] == balance["storage_accepted"]
    else:
        assert balance["storage_received"] is None
        assert balance["storage_records_written"] is None
    assert result["met"] is (
        balance["balanced"] and all(figures["met"] for figures in result["loads"].values())
    )


# MQTT 3.1.1 section 2.2.3, Table 2.4: the first and last values of each remaining-length size.
@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8001"),
        (16_383, "ff7f"),
        (16_384, "808001"),
        (2_097_151, "ffff7f"),
        (2_097_152, "80808001"),
        (268_435_455, "ffffff7f"),
    ],
)
def test_remaining_length_of_the_mqtt_table(
    mqtt_load: ModuleType, length: int, encoded: str
) -> None:
    assert mqtt_load.remaining_length(length).hex() == encoded


def test_publish_packet_and_puback_counting_across_split_reads(mqtt_load: ModuleType) -> None:
    packet = mqtt_load.publish_packet(mqtt_load.topic_field("a/b"), 258, b"xyz")
    # 0x32: PUBLISH QoS 1; remaining length 2 + 3 (topic) + 2 (packet id) + 3 (payload) = 10.
    assert packet.hex() == "320a" + "0003" + b"a/b".hex() + "0102" + b"xyz".hex()
    pubacks = b"\x40\x02\x00\x01" * 3
    stream = pubacks + bytes.fromhex("d000") + pubacks  # a PINGRESP between them is skipped
    counted = 0
    rest = b""
    for start in range(0, len(stream), 5):  # arrives in pieces that cut packets in two
        acks, rest = mqtt_load._count_pubacks(rest + stream[start : start + 5])
        counted += acks
    assert (counted, rest) == (6, b"")
    with pytest.raises(ValueError, match="outside"):
        mqtt_load.remaining_length(2**28)


def test_raw_publisher_delivers_every_message_once(
    mqtt_load: ModuleType, mosquitto: MosquittoProcess, unique_site_id: str
) -> None:
    received: list[bytes] = []
    subscribed = threading.Event()
    subscriber = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))

    def on_subscribe(*args: Any) -> None:
        subscribed.set()

    subscriber.on_message = on_message
    subscriber.on_subscribe = on_subscribe
    subscriber.connect(mosquitto.host, mosquitto.port)
    subscriber.subscribe(f"{unique_site_id}/#", qos=1)
    subscriber.loop_start()
    try:
        assert subscribed.wait(30)
        topic = mqtt_load.topic_field(f"{unique_site_id}/load")
        with mqtt_load.RawPublisher(
            mosquitto.host, mosquitto.port, f"raw-{unique_site_id}", window=50
        ) as pub:
            for chunk in range(10):
                pub.publish([(topic, b"%d" % (chunk * 40 + k)) for k in range(40)], timeout_s=30)
            assert pub.drain(30)
            assert (pub.published, pub.acknowledged, pub.error) == (400, 400, None)
            with pytest.raises(ValueError, match="exceeds the window"):
                pub.publish([(topic, b"x")] * 51, timeout_s=1)
        deadline = time.monotonic() + 30
        while len(received) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert sorted(int(payload) for payload in received) == list(range(400))
