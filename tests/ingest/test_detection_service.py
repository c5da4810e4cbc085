"""The live chain on a real Mosquitto: device publish -> ingest -> detection -> alarm on MQTT."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.records import DeviceStatus, GasReading
from pipesentinel.ingest.service import IngestService
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.settings import Settings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

if TYPE_CHECKING:
    from conftest import AlarmWatcher

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
WAIT_S = 30.0  # deadline of a wait, never asserted as a duration
METHANE_PPM = 15_000.0  # 34 %LEL on the IEC 60079-20-1 basis (LEL 4.4 %vol): above LOW (20 %)


@pytest.fixture
def site(unique_site_id: str) -> Site:
    return dataclasses.replace(load_site(SITE_DIR), id=unique_site_id)


def _settings(broker: MosquittoProcess, directory: Path, site_id: str) -> Settings:
    return Settings(
        site_dir=SITE_DIR,
        broker={"url": broker.url, "client_id": f"ingest-{site_id}"},
        ingest={"dead_letter_path": directory / "dead_letter.sqlite3"},
        alarms={
            "journal_path": directory / "journal.sqlite3",
            "incidents_path": directory / "incidents.sqlite3",
        },
        detection={"tick_period_s": 0.2, "camera_analytics": False},
        notifications={
            "mqtt_client_id": f"notifier-{site_id}",
            "log_path": directory / "notifications.sqlite3",
        },
    )


@pytest.fixture
def chain(
    mosquitto: MosquittoProcess, tmp_path: Path, site: Site
) -> Iterator[tuple[Settings, DetectionService]]:
    settings = _settings(mosquitto, tmp_path, site.id)
    store = SQLiteStore(tmp_path / "telemetry.sqlite3")
    with (
        Notifier(
            settings=settings.notifications, site_id=site.id, broker=settings.broker
        ) as notifier,
        DetectionService(
            settings=settings,
            site=site,
            notifier=notifier,
            alarm_config=AlarmConfig.defaults_for(site),
        ) as detection,
        IngestService(
            settings=settings,
            sites=site,
            store=store,
            topic_filters=(f"{TOPIC_ROOT}/{site.id}/#",),
        ) as ingest,
    ):
        ingest.subscribe(detection.submit)
        assert ingest.wait_connected(WAIT_S)
        assert notifier.wait_connected(WAIT_S)
        yield settings, detection
    store.close()


def _publish_gas(device: mqtt.Client, topic: str, *, readings: int) -> None:
    """``readings`` of 34 %LEL methane 1.1 s apart (the 1 s on-delay needs two, 1 s apart)."""
    for seq in range(1, readings + 1):
        body = {
            "ts": round(time.time() * 1000),
            "seq": seq,
            "ch4_ppm": METHANE_PPM,
            "c3h8_ppm": 0.0,
            "status": "ok",
        }
        device.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(WAIT_S)
        time.sleep(1.1)


def test_gas_on_one_detector_raises_a_suspected_leak_on_mqtt_and_an_ack_is_published(
    mosquitto: MosquittoProcess,
    site: Site,
    chain: tuple[Settings, DetectionService],
    alarm_watcher: Callable[[str], AlarmWatcher],
) -> None:
    _, detection = chain
    prefix = f"{TOPIC_ROOT}/{site.id}"
    watcher = alarm_watcher(f"{prefix}/alarms/#")
    device = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    device.connect(mosquitto.host, mosquitto.port)
    device.loop_start()
    try:
        _publish_gas(device, f"{prefix}/gas/GD07", readings=5)
        topic = f"{prefix}/alarms/zone.P1-S3.suspected_leak"
        alarm = watcher.wait(topic, "unack")
        assert alarm["priority"] == "high"
        assert "1 of" in alarm["detail"]
        detection.acknowledge("zone.P1-S3.suspected_leak", user="duty1", comment="seen")
        acked = watcher.wait(topic, "acked")
        assert acked["user"] == "duty1"
    finally:
        device.disconnect()
        device.loop_stop()
        watcher.close()
    # A console connecting now gets the current state at once (retained).
    late = alarm_watcher(f"{prefix}/alarms/zone.P1-S3.suspected_leak")
    try:
        assert late.wait(f"{prefix}/alarms/zone.P1-S3.suspected_leak", "acked")["alarm_id"] == (
            "zone.P1-S3.suspected_leak"
        )
    finally:
        late.close()
    assert detection.stats().errors == 0


# --- batches that queue up are run together -------------------------------------------------------


def _quiet_gas_batches(site: Site, batches: int, per_batch: int) -> list[list[GasReading]]:
    """``batches`` batches of ``per_batch`` quiet readings each, distinct devices and times."""
    detectors = [detector.id for detector in site.gas_detectors][:per_batch]
    start_s = time.time() - 60.0
    return [
        [
            GasReading(
                site_id=site.id,
                device_id=device_id,
                time_s=start_s + batch,
                seq=batch + 1,
                methane_mole_fraction=2e-6,  # 2 ppm, clean air
                propane_mole_fraction=0.0,
                status=DeviceStatus.OK,
                fault_code=None,
                received_time_s=start_s + batch,
            )
            for device_id in detectors
        ]
        for batch in range(batches)
    ]


@pytest.mark.parametrize(
    ("max_batch_records", "expected_engine_batches"),
    [(4000, 1), (5, 2), (1, 4)],  # 4 batches of 3: all in one; 3 + 3 >= 5 twice; one by one
)
def test_batches_queued_while_detection_is_busy_run_together_up_to_the_limit(
    tmp_path: Path, site: Site, max_batch_records: int, expected_engine_batches: int
) -> None:
    settings = Settings(
        site_dir=SITE_DIR,
        alarms={
            "journal_path": tmp_path / "journal.sqlite3",
            "incidents_path": tmp_path / "incidents.sqlite3",
        },
        detection={"camera_analytics": False, "max_batch_records": max_batch_records},
    )
    batches = _quiet_gas_batches(site, batches=4, per_batch=3)
    service = DetectionService(
        settings=settings, site=site, alarm_config=AlarmConfig.defaults_for(site)
    )
    for batch in batches:  # queued before the thread starts: they all wait together
        service.submit(batch)
    with service:
        pass  # stop() processes what is queued
    stats = service.stats()
    assert stats.errors == 0
    assert stats.records == sum(len(batch) for batch in batches)
    assert stats.batches == expected_engine_batches
    assert stats.submitted_batches_merged == len(batches) - expected_engine_batches


def test_duty_officer_confirms_a_suspected_zone(
    mosquitto: MosquittoProcess,
    site: Site,
    chain: tuple[Settings, DetectionService],
    alarm_watcher: Callable[[str], AlarmWatcher],
) -> None:
    _, detection = chain
    prefix = f"{TOPIC_ROOT}/{site.id}"
    watcher = alarm_watcher(f"{prefix}/alarms/#")
    device = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    device.connect(mosquitto.host, mosquitto.port)
    device.loop_start()
    try:
        _publish_gas(device, f"{prefix}/gas/GD07", readings=5)
        watcher.wait(f"{prefix}/alarms/zone.P1-S3.suspected_leak", "unack")
        assert detection.open_incidents() == []
        incident = detection.confirm_zone("P1-S3", user="duty1", reason="patrol smells gas")
        assert incident.zones == ("P1-S3",)
        assert incident.evidence[-1].kind == "operator.confirm"
        assert incident.evidence[-1].source_id == "duty1"
        confirmed = watcher.wait(f"{prefix}/alarms/zone.P1-S3.confirmed_leak", "unack")
        assert "confirmed by duty1" in confirmed["detail"]
        assert [i.id for i in detection.open_incidents()] == [incident.id]
    finally:
        device.disconnect()
        device.loop_stop()
        watcher.close()
    assert detection.stats().errors == 0
