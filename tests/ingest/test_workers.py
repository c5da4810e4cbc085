"""The process layout on a real Mosquitto: a storing ingest process and a detection process."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.service import MqttProtocol
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.ingest.workers import (
    PROCESS_CPU_KEY,
    PROCESS_NICE_KEY,
    Role,
    ServiceProcess,
    detection_chain,
    feed_protocol,
    feed_settings,
)
from pipesentinel.settings import Settings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

if TYPE_CHECKING:
    from conftest import AlarmWatcher

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
WAIT_S = 60.0  # deadline of a wait (a child process starts a fresh interpreter), never asserted
POLL_S = 0.05
METHANE_PPM = 15_000.0  # 34 %LEL on the IEC 60079-20-1 basis (LEL 4.4 %vol): above LOW (20 %)
READINGS = 5  # one detector, 1.1 s apart: the 1 s on-delay is complete after the second


def _wait_counters(process: ServiceProcess, name: str, value: int) -> dict[str, int]:
    deadline = time.monotonic() + WAIT_S
    counters = process.counters()
    while counters[name] != value:
        if time.monotonic() > deadline:
            pytest.fail(f"{process.role.value}: {name} never reached {value}; {counters}")
        time.sleep(POLL_S)
        counters = process.counters()
    return counters


def test_the_feed_has_its_own_client_id() -> None:
    settings = Settings(broker={"client_id": "storing"}, detection={"mqtt_client_id": "detecting"})
    assert feed_settings(settings).broker.client_id == "detecting"
    assert feed_settings(settings).ingest == settings.ingest


def test_a_qos_0_feed_speaks_mqtt_311_unless_told_otherwise() -> None:
    qos0 = Settings(detection={"feed_qos": 0})
    qos1 = Settings(detection={"feed_qos": 1})
    assert Settings().detection.feed_qos == 0  # the default: see docs/architecture.md
    assert feed_protocol(qos0, MqttProtocol.AUTO) is MqttProtocol.V311
    assert feed_protocol(qos0, "5") is MqttProtocol.V5
    assert feed_protocol(qos1, MqttProtocol.AUTO) is MqttProtocol.AUTO
    assert feed_protocol(qos1, MqttProtocol.V311) is MqttProtocol.V311


def test_storage_process_stores_and_detection_alarms_from_the_same_messages(
    mosquitto: MosquittoProcess,
    live_settings: Settings,
    unique_site_id: str,
    alarm_watcher: Callable[[str], AlarmWatcher],
) -> None:
    site: Site = dataclasses.replace(load_site(SITE_DIR), id=unique_site_id)
    settings = live_settings
    prefix = f"{TOPIC_ROOT}/{site.id}"
    alarm_topic = f"{prefix}/alarms/zone.P1-S3.suspected_leak"
    watcher = alarm_watcher(alarm_topic)
    device = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    device.connect(mosquitto.host, mosquitto.port)
    device.loop_start()
    try:
        with (
            ServiceProcess(
                Role.STORAGE, settings=settings, site=site, topic_filters=(f"{prefix}/#",)
            ) as storage,
            detection_chain(
                settings=settings,
                site=site,
                alarm_config=AlarmConfig.defaults_for(site),
                topic_filters=(f"{prefix}/#",),
            ) as chain,
        ):
            assert storage.alive()
            assert chain.feed.wait_connected(WAIT_S)
            assert chain.notifier.wait_connected(WAIT_S)
            assert not chain.feed.stores
            assert chain.feed.stats().protocol == MqttProtocol.V311.value  # the QoS 0 default
            for seq in range(1, READINGS + 1):
                body = {
                    "ts": round(time.time() * 1000),
                    "seq": seq,
                    "ch4_ppm": METHANE_PPM,
                    "c3h8_ppm": 0.0,
                    "status": "ok",
                }
                device.publish(
                    f"{prefix}/gas/GD07", json.dumps(body).encode(), qos=1
                ).wait_for_publish(WAIT_S)
                time.sleep(1.1)  # the 1 s on-delay needs two readings at least 1 s apart
            alarm = watcher.wait(alarm_topic, "unack")
            assert alarm["priority"] == "high"
            counters = _wait_counters(storage, "records_written", READINGS)
            assert counters["accepted"] == READINGS
            assert counters[PROCESS_CPU_KEY] > 0  # the child's own CPU time [us]
            # Storage yields the CPU to detection (this process is not reniced).
            assert counters[PROCESS_NICE_KEY] == os.nice(0) + settings.ingest.storage_nice
            assert settings.ingest.storage_nice > 0
            assert counters["rejected"] == counters["queue_overflows"] == 0
            assert chain.feed.wait_idle(WAIT_S)
            assert chain.feed.stats().accepted == READINGS
            assert chain.detection.stats().records == READINGS
            assert chain.detection.stats().errors == 0
        assert storage.final_counters is not None
        assert storage.final_counters["unacknowledged"] == 0
        assert not storage.alive()
    finally:
        device.disconnect()
        device.loop_stop()
        watcher.close()
    store = SQLiteStore(settings.storage.sqlite_path)
    try:
        assert store.count(site_id=site.id, device_id="GD07") == READINGS
    finally:
        store.close()


def test_a_role_that_cannot_start_reports_why(tmp_path: Path, unique_site_id: str) -> None:
    site = dataclasses.replace(load_site(SITE_DIR), id=unique_site_id)
    settings = Settings(
        site_dir=SITE_DIR,
        broker={"url": "mqtt://127.0.0.1:1"},  # nothing listens on port 1
        storage={"sqlite_path": tmp_path / "telemetry.sqlite3", "frames_dir": tmp_path / "f"},
        ingest={"dead_letter_path": tmp_path / "dead_letter.sqlite3"},
    )
    process = ServiceProcess(Role.STORAGE, settings=settings, site=site)
    with pytest.raises(RuntimeError, match="storage process: TimeoutError"):
        process.start()
    assert not process.alive()
