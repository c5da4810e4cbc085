"""The ingest service against a real Mosquitto (tests/conftest.py) and the real SQLite store.

Storage faults are injected by a subclass of the real SQLite store whose ``write`` raises
:class:`StorageError` while an outage is on or for its first N calls: a fault injector in front of
the real thing, not a mock of it. Waits poll for a state with a generous deadline; no test
asserts how long anything took.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.contract import ImageFormat, encode_frame_envelope
from pipesentinel.ingest.dead_letter import DeadLetterStore
from pipesentinel.ingest.embedded_broker import EmbeddedBroker
from pipesentinel.ingest.recording import read_recording
from pipesentinel.ingest.records import (
    CameraChannel,
    GasReading,
    Record,
    RejectReason,
)
from pipesentinel.ingest.service import (
    BrokerAddress,
    IngestService,
    IngestStats,
    MqttProtocol,
    _AckLedger,
    _BatchHandoff,
    backoff_delay_s,
)
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.frames import FileFrameStore
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import TOPIC_ROOT, MessageKind, device_topic
from pipesentinel.settings import Settings
from pipesentinel.site import (
    Camera,
    DetectorPlacement,
    Gas,
    GasDetector,
    GeoOrigin,
    Site,
    WindStation,
)

WAIT_S = 30.0  # deadline of a wait for a state (generous for slow CI machines), never asserted
POLL_S = 0.02
SETTLE_S = 0.5  # how long to watch for something that must NOT happen
GAS_ID = "G01"
WIND_ID = "W01"
CAMERA_ID = "C01"

MosquittoFactory = Callable[..., MosquittoProcess]


# --- helpers --------------------------------------------------------------------------------------


def make_site(site_id: str) -> Site:
    return Site(
        id=site_id,
        name="Service test site",
        origin=GeoOrigin(latitude_deg=30.0, longitude_deg=120.0, altitude_m=10.0),
        pipelines=(),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=(
            GasDetector(
                id=GAS_ID,
                placement=DetectorPlacement.PIPELINE,
                position_m=np.array([0.0, 0.0, 0.5]),
                gases=(Gas.METHANE, Gas.PROPANE),
                full_scale_ppm=10_000.0,
                t90_s=30.0,
                sample_period_s=1.0,
            ),
        ),
        wind_stations=(
            WindStation(
                id=WIND_ID,
                position_m=np.array([10.0, 0.0]),
                mast_height_m=10.0,
                sample_period_s=1.0,
                averaging_period_s=60.0,
            ),
        ),
        cameras=(
            Camera(
                id=CAMERA_ID,
                position_m=np.array([0.0, 10.0]),
                mounting_height_m=8.0,
                heading_deg=90.0,
                tilt_deg=10.0,
                horizontal_fov_deg=50.0,
                vertical_fov_deg=40.0,
                laser_range_m=150.0,
                frame_period_s=1.0,
                resolution_px=(64, 48),
            ),
        ),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def gas_json(seq: int, *, ts_ms: int | None = None, ch4_ppm: float = 120.0) -> bytes:
    # By default a distinct millisecond per seq: the stores identify a reading by its device and
    # time in ms, so two readings of one device in the same millisecond would be one.
    body = {
        "ts": now_ms() - 60_000 + seq if ts_ms is None else ts_ms,
        "seq": seq,
        "ch4_ppm": ch4_ppm,
        "c3h8_ppm": 0.0,
        "status": "ok",
    }
    return json.dumps(body).encode()


def jpeg_envelope(seq: int) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, dtype=np.uint8))
    assert ok
    return encode_frame_envelope(
        ts_ms=now_ms(),
        seq=seq,
        width_px=64,
        height_px=48,
        image_format=ImageFormat.JPEG,
        image=jpeg.tobytes(),
    )


def thermal_envelope(seq: int) -> bytes:
    ok, png = cv2.imencode(".png", np.full((24, 32), 30015, dtype=np.uint16))
    assert ok
    return encode_frame_envelope(
        ts_ms=now_ms(),
        seq=seq,
        width_px=32,
        height_px=24,
        image_format=ImageFormat.PNG,
        image=png.tobytes(),
    )


class FaultySQLiteStore(SQLiteStore):
    """The real SQLite store with injected write faults (the first N writes, or an outage)."""

    def __init__(self, path: Path, *, failing_writes: int = 0) -> None:
        super().__init__(path)
        self.failing_writes = failing_writes
        self.failed_writes = 0
        self.outage = threading.Event()
        self._fault_lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        with self._fault_lock:
            failing = self.outage.is_set() or self.failing_writes > 0
            if failing:
                self.failing_writes = max(self.failing_writes - 1, 0)
                self.failed_writes += 1
        if failing:
            raise StorageError("injected storage fault")
        super().write(records)


class Publisher:
    """A device-side MQTT 5 client that publishes with QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"broker did not acknowledge {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def read_retained(host: str, port: int, topic: str) -> bytes | None:
    """The retained message of ``topic`` (``None`` if none arrives)."""
    received: list[bytes] = []
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        done.set()

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        done.wait(SETTLE_S * 4)
    finally:
        client.disconnect()
        client.loop_stop()
    return received[0] if received else None


def wait_for(service: IngestService, condition: Callable[[IngestStats], bool]) -> IngestStats:
    deadline = time.monotonic() + WAIT_S
    stats = service.stats()
    while not condition(stats):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {WAIT_S} s; stats: {stats}")
        time.sleep(POLL_S)
        stats = service.stats()
    return stats


def make_settings(url: str, directory: Path, client_id: str, **ingest: Any) -> Settings:
    return Settings(
        broker={
            "url": url,
            "client_id": client_id,
            "reconnect_min_delay_s": 0.05,
            "reconnect_max_delay_s": 0.5,
        },
        ingest={"dead_letter_path": directory / "dead_letter.sqlite3", "batch_max_wait_s": 0.05}
        | ingest,
    )


@pytest.fixture
def site(unique_site_id: str) -> Site:
    return make_site(unique_site_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FaultySQLiteStore]:
    telemetry = FaultySQLiteStore(tmp_path / "telemetry.sqlite3")
    yield telemetry
    telemetry.close()


@pytest.fixture
def publisher(mosquitto: MosquittoProcess, unique_site_id: str) -> Iterator[Publisher]:
    device = Publisher(mosquitto.host, mosquitto.port, f"pub-{unique_site_id}")
    yield device
    device.close()


def start_service(
    broker: MosquittoProcess,
    tmp_path: Path,
    site: Site,
    store: SQLiteStore,
    *,
    topic_filters: Sequence[str] | None = None,
    frame_store: FileFrameStore | None = None,
    queue_full_wait_s: float = 1.0,
    **ingest: Any,
) -> IngestService:
    settings = make_settings(broker.url, tmp_path, f"ingest-{site.id}", **ingest)
    service = IngestService(
        settings=settings,
        sites=site,
        store=store,
        frame_store=frame_store,
        topic_filters=topic_filters or (f"{TOPIC_ROOT}/{site.id}/#",),
        queue_full_wait_s=queue_full_wait_s,
    ).start()
    assert service.wait_connected(WAIT_S), service.stats()
    return service


# --- offline: backoff, settings checks, acknowledgement order -------------------------------------


def test_backoff_doubles_to_the_cap_with_equal_jitter() -> None:
    # Hand-worked: ceilings 0.5, 1, 2, 4, 8, then the 5 s cap; the delay is in [ceiling/2, ceiling].
    ceilings = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    for attempt, ceiling in enumerate(ceilings, start=1):
        low = backoff_delay_s(attempt, min_delay_s=0.5, max_delay_s=5.0, random_fraction=0.0)
        high = backoff_delay_s(attempt, min_delay_s=0.5, max_delay_s=5.0, random_fraction=1.0)
        assert (low, high) == (ceiling / 2, ceiling)
    assert backoff_delay_s(10_000, min_delay_s=0.5, max_delay_s=30.0, random_fraction=0.5) == 22.5


def test_broker_address_parsing_and_settings_checks(tmp_path: Path, site: Site) -> None:
    assert BrokerAddress.parse("mqtt://broker.example:1884") == BrokerAddress(
        "broker.example", 1884, tls=False
    )
    assert BrokerAddress.parse("mqtts://broker.example") == BrokerAddress(
        "broker.example", 8883, tls=True
    )
    for url, fragment in [
        (None, "broker.url is not set"),
        ("http://host:1883", "scheme"),
        ("mqtt://:1883", "names no host"),
        ("mqtt://host:99999", "Port out of range"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            BrokerAddress.parse(url)
    store = SQLiteStore(tmp_path / "t.sqlite3")
    try:
        bad = Settings(broker={"url": "mqtt://127.0.0.1:1", "ca_file": tmp_path / "missing.pem"})
        with pytest.raises(ValueError, match="ca_file"):
            IngestService(settings=bad, sites=site, store=store)
        bad = Settings(broker={"url": "mqtt://127.0.0.1:1", "password": "secret"})
        with pytest.raises(ValueError, match=r"without broker\.username"):
            IngestService(settings=bad, sites=site, store=store)
        with pytest.raises(ValueError, match="topic_filters"):
            IngestService(
                settings=Settings(broker={"url": "mqtt://127.0.0.1:1"}),
                sites=site,
                store=store,
                topic_filters=[],
            )
    finally:
        store.close()


def test_ack_ledger_releases_in_arrival_order_and_drops_old_connections() -> None:
    ledger = _AckLedger()
    ledger.new_connection()
    first, second, third = (ledger.register(mid, 1) for mid in (1, 2, 3))
    assert ledger.register(4, 0) is None  # QoS 0: nothing to acknowledge
    assert first is not None
    assert second is not None
    assert third is not None
    third.done = True
    second.done = True
    assert ledger.releasable() == []  # 1 is not done: 2 and 3 wait behind it
    first.done = True
    assert [entry.mid for entry in ledger.releasable()] == [1, 2, 3]
    stale = ledger.register(5, 1)
    assert stale is not None
    assert ledger.new_connection() == 1
    stale.done = True
    fresh = ledger.register(5, 1)
    assert fresh is not None
    fresh.done = True
    assert ledger.releasable() == [fresh]


def test_batch_handoff_lingers_only_linger_s_once_an_item_is_there() -> None:
    handoff: _BatchHandoff[int] = _BatchHandoff(maxsize=100)
    for item in (1, 2, 3):
        handoff.put(item)
    # Item 4 arrives well after a zero linger ends; with the old behaviour (waiting up to the
    # idle period, here 30 s, for a full batch) the batch would have been [1, 2, 3, 4].
    late = threading.Timer(2.0, handoff.put, args=(4,))
    late.start()
    try:
        assert handoff.get_batch(10, 30.0, 0.0) == [1, 2, 3]
    finally:
        late.join()
    assert handoff.get_batch(10, 30.0, 0.0) == [4]
    # Items that accumulated meanwhile fill the batch up to its size, oldest first.
    for item in range(5, 10):
        handoff.put(item)
    assert handoff.get_batch(3, 30.0, 0.0) == [5, 6, 7]
    assert handoff.get_batch(3, 30.0, 0.0) == [8, 9]
    assert handoff.get_batch(3, 0.01, 0.0) == []  # idle: nothing within max_wait_s
    assert handoff.qsize() == 0


def test_batch_linger_and_recording_settings() -> None:
    ingest = Settings().ingest
    assert ingest.batch_linger_s == 0.005
    assert ingest.record_path is None
    with pytest.raises(ValueError, match="batch_linger_s"):
        Settings(ingest={"batch_linger_s": -0.001})


# --- against Mosquitto ----------------------------------------------------------------------------


def test_valid_readings_of_every_kind_are_stored(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    frames = FileFrameStore(tmp_path / "frames", kept_per_channel=5)
    service = start_service(mosquitto, tmp_path, site, store, frame_store=frames)
    batches: list[Sequence[Record]] = []
    unsubscribe = service.subscribe(batches.append)

    def broken_subscriber(records: Sequence[Record]) -> None:
        raise RuntimeError("subscriber bug")

    service.subscribe(broken_subscriber)
    try:
        assert read_retained(mosquitto.host, mosquitto.port, service.status_topic) == b"online"
        ts = now_ms()
        wind = {
            "ts": ts,
            "seq": 1,
            "speed_m_per_s": 3.0,
            "direction_deg": 90.0,
            "sigma_theta_deg": 12.0,
        }
        laser = {"ts": ts, "seq": 1, "path_integral_ppm_m": 250.0, "status": "ok"}
        messages = [
            (device_topic(site.id, MessageKind.GAS, GAS_ID), gas_json(1, ts_ms=ts, ch4_ppm=500)),
            (device_topic(site.id, MessageKind.WIND, WIND_ID), json.dumps(wind).encode()),
            (device_topic(site.id, MessageKind.LASER, CAMERA_ID), json.dumps(laser).encode()),
            (device_topic(site.id, MessageKind.VISIBLE, CAMERA_ID), jpeg_envelope(1)),
            (device_topic(site.id, MessageKind.THERMAL, CAMERA_ID), thermal_envelope(1)),
            (device_topic(site.id, MessageKind.STATUS, GAS_ID), b"online"),
        ]
        for topic, payload in messages:
            publisher.publish(topic, payload)
        stats = wait_for(service, lambda stats: stats.records_written == len(messages))
        assert service.wait_idle(WAIT_S)
        assert stats.rejected == 0
        assert stats.accepted_by_kind == dict.fromkeys(MessageKind, 1)
        assert store.count(site_id=site.id) == len(messages)
        series = store.query(
            site_id=site.id,
            device_id=GAS_ID,
            field="methane_mole_fraction",
            start_s=ts / 1000 - 1,
            end_s=ts / 1000 + 1,
        )
        np.testing.assert_allclose(series.value, [500e-6], rtol=1e-12)  # 500 ppm
        thermal = frames.latest(site_id=site.id, device_id=CAMERA_ID, channel=CameraChannel.THERMAL)
        assert thermal is not None
        assert (thermal.width_px, thermal.height_px) == (32, 24)
        received = [record for batch in batches for record in batch]
        assert len(received) == len(messages)
        assert any(isinstance(record, GasReading) for record in received)
        assert service.stats().subscriber_errors >= 1
        unsubscribe()
        publisher.publish(device_topic(site.id, MessageKind.GAS, GAS_ID), gas_json(2))
        wait_for(service, lambda stats: stats.records_written == len(messages) + 1)
        assert len([record for batch in batches for record in batch]) == len(messages)
    finally:
        service.stop()
    assert read_retained(mosquitto.host, mosquitto.port, service.status_topic) == b"offline"


def test_malformed_messages_are_rejected_counted_and_dead_lettered(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    other_site = f"{site.id}x"
    service = start_service(
        mosquitto,
        tmp_path,
        site,
        store,
        topic_filters=(f"{TOPIC_ROOT}/{site.id}/#", f"{TOPIC_ROOT}/{other_site}/#"),
    )
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    ts = now_ms()
    valid = gas_json(10, ts_ms=ts)
    cases: list[tuple[RejectReason, str, bytes]] = [
        (RejectReason.BAD_TOPIC, f"{TOPIC_ROOT}/{site.id}/smoke/{GAS_ID}", valid),
        (RejectReason.UNKNOWN_SITE, device_topic(other_site, MessageKind.GAS, GAS_ID), valid),
        (RejectReason.UNKNOWN_DEVICE, device_topic(site.id, MessageKind.GAS, "G99"), valid),
        (
            RejectReason.DEVICE_KIND_MISMATCH,
            device_topic(site.id, MessageKind.GAS, WIND_ID),
            valid,
        ),
        (RejectReason.OVERSIZED, gas_topic, b" " * 5000),
        (RejectReason.BAD_ENCODING, gas_topic, b"\xff\xfe"),
        (RejectReason.BAD_JSON, gas_topic, b"{ch4: 1}"),
        (RejectReason.NOT_AN_OBJECT, gas_topic, b"[]"),
        (RejectReason.MISSING_FIELD, gas_topic, b'{"ts": 1}'),
        (RejectReason.UNKNOWN_FIELD, gas_topic, valid.replace(b'"seq"', b'"co_ppm": 1, "seq"')),
        (RejectReason.WRONG_TYPE, gas_topic, valid.replace(b"120.0", b"true")),
        (RejectReason.NOT_FINITE, gas_topic, valid.replace(b"120.0", b"NaN")),
        (RejectReason.OUT_OF_RANGE, gas_topic, valid.replace(b"120.0", b"-3000")),
        (RejectReason.BAD_STATUS, gas_topic, valid.replace(b'"ok"', b'"fine"')),
        (RejectReason.TIMESTAMP_IN_FUTURE, gas_topic, gas_json(11, ts_ms=ts + 3_600_000)),
        (RejectReason.TIMESTAMP_TOO_OLD, gas_topic, gas_json(11, ts_ms=ts - 30 * 86_400_000)),
        (
            RejectReason.BAD_ENVELOPE,
            device_topic(site.id, MessageKind.VISIBLE, CAMERA_ID),
            b"JPEG" + jpeg_envelope(1)[4:],
        ),
        (
            RejectReason.BAD_IMAGE,
            device_topic(site.id, MessageKind.THERMAL, CAMERA_ID),
            thermal_envelope(1)[:-30],
        ),
    ]
    try:
        for _, topic, payload in cases:
            publisher.publish(topic, payload)
        # A valid reading, then its exact redelivery and an older seq (a replay).
        publisher.publish(gas_topic, valid)
        publisher.publish(gas_topic, valid)
        publisher.publish(gas_topic, gas_json(9, ts_ms=ts - 1000))
        expected = {reason: 1 for reason, _, _ in cases}
        expected[RejectReason.DUPLICATE] = 1
        expected[RejectReason.REPLAYED_SEQ] = 1
        wait_for(service, lambda stats: stats.rejections_dead_lettered == len(expected))
        stats = service.stats()
        assert stats.rejected_by_reason == expected
        assert stats.records_written == 1
        assert store.count(site_id=site.id) == 1
        assert service.dead_letters.count_by_reason() == expected
        for reason, topic, payload in cases:
            (letter,) = service.dead_letters.query(reason=reason)
            assert (letter.topic, letter.payload) == (topic, payload)
            assert letter.detail
        (duplicate,) = service.dead_letters.query(reason=RejectReason.DUPLICATE)
        assert duplicate.payload == valid
    finally:
        service.stop()
    # The dead letters are durable: another connection to the file sees them.
    with DeadLetterStore(tmp_path / "dead_letter.sqlite3") as reopened:
        assert sum(reopened.count_by_reason().values()) == len(expected)


def test_readings_published_while_stopped_arrive_after_restart(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    first = start_service(mosquitto, tmp_path, site, store)
    first.stop()
    assert read_retained(mosquitto.host, mosquitto.port, first.status_topic) == b"offline"
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    for seq in range(20):
        publisher.publish(gas_topic, gas_json(seq))
    publisher.publish(device_topic(site.id, MessageKind.STATUS, WIND_ID), b"offline")
    assert store.count(site_id=site.id) == 0
    second = start_service(mosquitto, tmp_path, site, store)
    try:
        stats = wait_for(second, lambda stats: stats.records_written == 21)
        assert stats.rejected == 0
        assert store.count(site_id=site.id) == 21
        assert store.count(site_id=site.id, device_id=GAS_ID) == 20
    finally:
        second.stop()


def test_storage_failures_lose_nothing_and_store_no_duplicates(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    unique_site_id: str,
) -> None:
    store = FaultySQLiteStore(tmp_path / "telemetry.sqlite3", failing_writes=3)
    service = start_service(mosquitto, tmp_path, site, store)
    try:
        gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
        for seq in range(30):
            publisher.publish(gas_topic, gas_json(seq))
        stats = wait_for(service, lambda stats: stats.records_written == 30)
        assert store.failed_writes == 3
        assert stats.storage_retries == 3
        assert stats.last_error is not None
        assert "injected storage fault" in stats.last_error
        assert stats.rejected == 0
        assert store.count(site_id=site.id) == 30
        assert service.wait_idle(WAIT_S)
    finally:
        service.stop()
        store.close()


def test_unstored_messages_are_redelivered_to_the_next_service(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
) -> None:
    broken = FaultySQLiteStore(tmp_path / "telemetry.sqlite3")
    broken.outage.set()
    first = start_service(mosquitto, tmp_path, site, broken)
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    try:
        for seq in range(10):
            publisher.publish(gas_topic, gas_json(seq))
        wait_for(first, lambda stats: stats.unacknowledged == 10 and stats.storage_retries >= 1)
    finally:
        first.stop(timeout_s=0.2)  # storage is still down: nothing can be stored or acknowledged
    assert first.stats().left_for_redelivery == 10
    assert broken.count(site_id=site.id) == 0
    broken.close()
    healthy = SQLiteStore(tmp_path / "telemetry.sqlite3")
    second = start_service(mosquitto, tmp_path, site, healthy)
    try:
        stats = wait_for(second, lambda stats: stats.records_written == 10)
        assert stats.rejected == 0
        assert healthy.count(site_id=site.id) == 10
    finally:
        second.stop()
        healthy.close()


def test_broker_restart_redelivery_is_not_stored_twice(
    mosquitto_factory: MosquittoFactory,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    broker = mosquitto_factory()
    store.outage.set()
    service = start_service(broker, tmp_path, site, store)
    publisher = Publisher(broker.host, broker.port, f"pub-{site.id}")
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    try:
        for seq in range(5):
            publisher.publish(gas_topic, gas_json(seq))
        wait_for(service, lambda stats: stats.unacknowledged == 5)
        publisher.close()
        broker.restart()  # the five unacknowledged deliveries are redelivered on reconnect
        stats = wait_for(
            service, lambda stats: stats.connections == 2 and stats.unacknowledged == 10
        )
        store.outage.clear()
        stats = wait_for(service, lambda stats: stats.unacknowledged == 0)
        assert stats.records_written == 5
        assert stats.rejected_by_reason == {RejectReason.DUPLICATE: 5}
        assert store.count(site_id=site.id) == 5
        assert service.wait_idle(WAIT_S)
    finally:
        service.stop()
    # Everything was acknowledged: a new session gets nothing again.
    again = start_service(broker, tmp_path, site, store)
    try:
        time.sleep(SETTLE_S)
        assert again.stats().accepted + again.stats().rejected == 0
    finally:
        again.stop()


def test_receive_maximum_keeps_the_queue_from_overflowing(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    capacity = 10
    store.outage.set()
    service = start_service(
        mosquitto, tmp_path, site, store, queue_capacity_messages=capacity, batch_max_messages=4
    )
    try:
        gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
        for seq in range(40):
            publisher.publish(gas_topic, gas_json(seq))
        wait_for(service, lambda stats: stats.unacknowledged == capacity)
        time.sleep(SETTLE_S)  # the broker must not push more than the Receive Maximum
        stats = service.stats()
        assert stats.unacknowledged == capacity
        assert stats.queue_overflows == 0
        store.outage.clear()
        stats = wait_for(service, lambda stats: stats.records_written == 40)
        assert stats.queue_overflows == 0
        assert stats.rejected == 0
        assert store.count(site_id=site.id) == 40
    finally:
        service.stop()


def test_queue_overflow_is_dead_lettered_not_dropped(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    # QoS 0 messages are outside the Receive Maximum: with the store down they overflow the queue.
    capacity = 10
    store.outage.set()
    service = start_service(
        mosquitto,
        tmp_path,
        site,
        store,
        queue_capacity_messages=capacity,
        batch_max_messages=4,
        queue_full_wait_s=0.01,
    )
    try:
        gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
        payloads = [gas_json(seq) for seq in range(30)]
        for payload in payloads:
            publisher.publish(gas_topic, payload, qos=0)
        stats = wait_for(service, lambda stats: stats.accepted + stats.queue_overflows == 30)
        assert stats.queue_overflows >= 30 - 2 * capacity  # the queue, and at most one batch
        assert stats.rejected_by_reason == {RejectReason.QUEUE_OVERFLOW: stats.queue_overflows}
        overflowed = service.dead_letters.query(reason=RejectReason.QUEUE_OVERFLOW)
        assert len(overflowed) == stats.queue_overflows
        assert all("ingest queue full (10 messages)" in letter.detail for letter in overflowed)
        store.outage.clear()
        stats = wait_for(service, lambda stats: stats.records_written == stats.accepted)
        # Every message is either stored or kept, raw bytes included, in the dead-letter store.
        kept = {letter.payload for letter in overflowed}
        assert len(kept) + store.count(site_id=site.id) == 30
        assert kept <= set(payloads)
    finally:
        service.stop()


@pytest.mark.parametrize("protocol", [MqttProtocol.V311, MqttProtocol.AUTO])
def test_mqtt_311_with_the_embedded_broker(
    tmp_path: Path, site: Site, store: FaultySQLiteStore, protocol: MqttProtocol
) -> None:
    # amqtt speaks MQTT 3.1.1 only; "auto" gets no CONNACK to its MQTT 5 CONNECT and falls back.
    with EmbeddedBroker() as broker:
        settings = make_settings(broker.url, tmp_path, f"ingest-{site.id}")
        service = IngestService(
            settings=settings, sites=site, store=store, protocol=protocol
        ).start()
        try:
            assert service.wait_connected(WAIT_S), service.stats()
            assert service.stats().protocol == "3.1.1"
            device = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
            device.connect(broker.host, broker.port)
            device.loop_start()
            try:
                topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
                device.publish(topic, gas_json(1), qos=1).wait_for_publish(WAIT_S)
                wait_for(service, lambda stats: stats.records_written == 1)
            finally:
                device.disconnect()
                device.loop_stop()
        finally:
            service.stop()
    assert store.count(site_id=site.id) == 1


def test_service_reconnects_after_the_broker_comes_back(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, site: Site, store: FaultySQLiteStore
) -> None:
    broker = mosquitto_factory()
    service = start_service(broker, tmp_path, site, store)
    try:
        broker.stop()
        wait_for(service, lambda stats: not stats.connected)
        assert service.stats().last_error is not None
        broker.start()
        wait_for(service, lambda stats: stats.connected and stats.connections == 2)
        publisher = Publisher(broker.host, broker.port, f"pub-{site.id}")
        try:
            publisher.publish(device_topic(site.id, MessageKind.GAS, GAS_ID), gas_json(1))
            wait_for(service, lambda stats: stats.records_written == 1)
        finally:
            publisher.close()
    finally:
        service.stop()


def test_alarm_and_incident_messages_are_passed_by_not_rejected(
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
    publisher: Publisher,
) -> None:
    # PipeSentinel publishes its alarms and incidents under the site (issue 3); the ingest service
    # subscribed to the whole subtree must not dead-letter them as bad topics.
    service = start_service(mosquitto, tmp_path, site, store)
    try:
        publisher.publish(f"{TOPIC_ROOT}/{site.id}/alarms", b'{"state": "unacknowledged"}')
        publisher.publish(f"{TOPIC_ROOT}/{site.id}/incidents/I1", b'{"id": "I1"}')
        publisher.publish(device_topic(site.id, MessageKind.GAS, GAS_ID), gas_json(1))
        stats = wait_for(
            service, lambda s: s.records_written == 1 and s.service_messages_passed == 2
        )
        assert stats.rejected == 0
        assert stats.unacknowledged == 0
    finally:
        service.stop()


def test_every_message_received_is_recorded_before_validation(
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
    publisher: Publisher,
) -> None:
    record_path = tmp_path / "recordings" / "ingest.jsonl"
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    thermal_topic = device_topic(site.id, MessageKind.THERMAL, CAMERA_ID)
    status_topic = device_topic(site.id, MessageKind.STATUS, WIND_ID)
    published = [
        (gas_topic, gas_json(1)),  # valid
        (gas_topic, b'{"ts": 1, "seq"'),  # broken JSON: recorded all the same
        (thermal_topic, thermal_envelope(1)),  # binary: recorded as base64
        (device_topic(site.id, MessageKind.GAS, "nobody"), b"\xff\xfe"),  # unknown, binary
        (status_topic, b"online"),  # status
    ]
    service = start_service(mosquitto, tmp_path, site, store, record_path=record_path)
    batches: list[Sequence[Record]] = []
    service.subscribe(batches.append)
    try:
        for topic, payload in published[:2]:
            publisher.publish(topic, payload)
        publisher.publish(f"{TOPIC_ROOT}/{site.id}/alarms", b'{"state": "new"}')  # not recorded
        for topic, payload in published[2:]:
            publisher.publish(topic, payload)
        wait_for(service, lambda s: s.accepted + s.rejected == len(published))
        assert service.wait_idle(WAIT_S)
        stats = service.stats()
        # Flushed per stored batch, before the acknowledgements: all there while running.
        assert [(m.topic, m.payload) for m in read_recording(record_path)] == published
        assert stats.messages_recorded == len(published)
        assert stats.messages_not_recorded == 0
        assert stats.service_messages_passed == 1
    finally:
        service.stop()
    recorded = list(read_recording(record_path))
    assert [(m.topic, m.payload) for m in recorded] == published
    assert [m.line for m in recorded] == [1, 2, 3, 4, 5]
    # The recorded receive time is the one the decoder used: the stored reading carries it.
    readings = [record for batch in batches for record in batch if isinstance(record, GasReading)]
    assert [reading.received_time_s for reading in readings] == [recorded[0].received_time_s]
    assert '"payload_base64"' in record_path.read_text("ascii").splitlines()[2]


def test_a_failing_recording_stops_and_is_reported_but_ingestion_goes_on(
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
    publisher: Publisher,
) -> None:
    # /dev/full: opening and buffering work, every write to the device fails with ENOSPC.
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    service = start_service(mosquitto, tmp_path, site, store, record_path=full)
    topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    try:
        publisher.publish(topic, gas_json(1))
        stats = wait_for(service, lambda s: s.records_written == 1)
        assert service.wait_idle(WAIT_S)  # the flush before the acknowledgement failed
        publisher.publish(topic, gas_json(2))
        stats = wait_for(service, lambda s: s.records_written == 2)
        assert stats.messages_recorded == 1  # handed to the buffer before the failure
        assert stats.messages_not_recorded == 1
        assert stats.last_error is not None
        assert "recording to /dev/full failed" in stats.last_error
        assert stats.rejected == 0
    finally:
        service.stop()


# --- feeds (store=None): the detection process's own subscription ---------------------------------


class BatchSink:
    """A batch subscriber that keeps every record it is given."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[Record]) -> None:
        with self._lock:
            self.records.extend(records)

    def count(self) -> int:
        with self._lock:
            return len(self.records)


def start_feed(
    broker: MosquittoProcess,
    tmp_path: Path,
    site: Site,
    sink: BatchSink,
    *,
    subscription_qos: int = 1,
    protocol: MqttProtocol = MqttProtocol.AUTO,
    **ingest: Any,
) -> IngestService:
    settings = make_settings(broker.url, tmp_path, f"feed-{site.id}", **ingest)
    service = IngestService(
        settings=settings,
        sites=site,
        store=None,
        topic_filters=(f"{TOPIC_ROOT}/{site.id}/#",),
        subscription_qos=subscription_qos,
        protocol=protocol,
    )
    service.subscribe(sink)
    service.start()
    assert service.wait_connected(WAIT_S), service.stats()
    return service


def test_a_feed_refuses_stores_and_says_it_does_not_store(tmp_path: Path, site: Site) -> None:
    settings = make_settings("mqtt://127.0.0.1:1883", tmp_path, "feed")
    with pytest.raises(ValueError, match="stores nothing"):
        IngestService(
            settings=settings,
            sites=site,
            store=None,
            frame_store=FileFrameStore(tmp_path, kept_per_channel=1),
        )
    assert not IngestService(settings=settings, sites=site, store=None).stores


def test_a_feed_hands_records_on_and_stores_and_dead_letters_nothing(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    store: FaultySQLiteStore,
) -> None:
    sink = BatchSink()
    feed = start_feed(mosquitto, tmp_path, site, sink, record_path=tmp_path / "recording.jsonl")
    (tmp_path / "storing").mkdir()
    storing = start_service(mosquitto, tmp_path / "storing", site, store)
    try:
        gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
        for seq in range(10):
            publisher.publish(gas_topic, gas_json(seq))
        publisher.publish(gas_topic, b"{not json")
        stats = wait_for(feed, lambda stats: stats.accepted == 10 and stats.rejected == 1)
        assert stats.rejected_by_reason == {RejectReason.BAD_JSON: 1}
        # A feed acknowledges only what its subscribers have: idle means handed over.
        assert feed.wait_idle(WAIT_S)
        assert sorted(r.seq for r in sink.records if isinstance(r, GasReading)) == list(range(10))
        # Mosquitto fans the same messages out to the storing service, which keeps them all.
        wait_for(storing, lambda stats: stats.records_written == 10 and stats.rejected == 1)
        assert store.count(site_id=site.id) == 10
        assert len(storing.dead_letters.query(reason=RejectReason.BAD_JSON)) == 1
    finally:
        feed.stop()
        storing.stop()
    assert sink.count() == 10
    assert not (tmp_path / "dead_letter.sqlite3").exists()  # the feed's would-be dead letters
    assert not (tmp_path / "recording.jsonl").exists()  # recording is the storing service's


def test_readings_published_while_a_feed_is_down_reach_it_when_it_is_back(
    mosquitto: MosquittoProcess, publisher: Publisher, tmp_path: Path, site: Site
) -> None:
    first_sink, second_sink = BatchSink(), BatchSink()
    start_feed(mosquitto, tmp_path, site, first_sink).stop()
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    for seq in range(20):
        publisher.publish(gas_topic, gas_json(seq))
    feed = start_feed(mosquitto, tmp_path, site, second_sink)
    try:
        stats = wait_for(feed, lambda stats: stats.accepted == 20)
        assert stats.rejected == 0
        assert feed.wait_idle(WAIT_S)
    finally:
        feed.stop()
    assert first_sink.count() == 0
    assert sorted(r.seq for r in second_sink.records if isinstance(r, GasReading)) == list(
        range(20)
    )


def test_a_feed_counts_an_overflow_and_lets_the_message_go(
    mosquitto: MosquittoProcess, publisher: Publisher, tmp_path: Path, site: Site
) -> None:
    # A subscriber that blocks the feed's writer; QoS 0 messages then overflow the small queue.
    release = threading.Event()
    sink = BatchSink()

    def blocking(records: Sequence[Record]) -> None:
        release.wait(WAIT_S)
        sink(records)

    settings = make_settings(
        mosquitto.url,
        tmp_path,
        f"feed-{site.id}",
        queue_capacity_messages=10,
        batch_max_messages=4,
    )
    feed = IngestService(
        settings=settings,
        sites=site,
        store=None,
        topic_filters=(f"{TOPIC_ROOT}/{site.id}/#",),
        queue_full_wait_s=0.01,
    )
    feed.subscribe(blocking)
    feed.start()
    try:
        assert feed.wait_connected(WAIT_S)
        gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
        for seq in range(30):
            publisher.publish(gas_topic, gas_json(seq), qos=0)
        stats = wait_for(feed, lambda stats: stats.accepted + stats.queue_overflows == 30)
        assert stats.queue_overflows > 0
        assert stats.rejected_by_reason == {RejectReason.QUEUE_OVERFLOW: stats.queue_overflows}
        release.set()
        wait_for(feed, lambda stats: stats.unacknowledged == 0)
    finally:
        release.set()
        feed.stop()
    assert sink.count() == 30 - stats.queue_overflows
    assert not (tmp_path / "dead_letter.sqlite3").exists()


def test_only_a_feed_may_subscribe_with_qos_0(tmp_path: Path, site: Site) -> None:
    settings = make_settings("mqtt://127.0.0.1:1883", tmp_path, "storing")
    store = SQLiteStore(tmp_path / "telemetry.sqlite3")
    try:
        with pytest.raises(ValueError, match="QoS 0 would lose readings"):
            IngestService(settings=settings, sites=site, store=store, subscription_qos=0)
    finally:
        store.close()
    with pytest.raises(ValueError, match="must be 0 or 1"):
        IngestService(settings=settings, sites=site, store=None, subscription_qos=2)


@pytest.mark.parametrize("protocol", [MqttProtocol.V311, MqttProtocol.V5])
def test_a_qos_0_feed_acknowledges_nothing_and_keeps_no_session(
    mosquitto: MosquittoProcess,
    publisher: Publisher,
    tmp_path: Path,
    site: Site,
    protocol: MqttProtocol,
) -> None:
    first_sink, second_sink = BatchSink(), BatchSink()
    gas_topic = device_topic(site.id, MessageKind.GAS, GAS_ID)
    feed = start_feed(mosquitto, tmp_path, site, first_sink, subscription_qos=0, protocol=protocol)
    try:
        for seq in range(10):
            publisher.publish(gas_topic, gas_json(seq))  # QoS 1 from the device
        stats = wait_for(feed, lambda stats: stats.accepted == 10)
        assert stats.protocol == protocol.value
        assert feed.wait_idle(WAIT_S)
        assert feed.stats().unacknowledged == 0
    finally:
        feed.stop()
    assert sorted(r.seq for r in first_sink.records if isinstance(r, GasReading)) == list(range(10))
    # The stated loss of a QoS 0 feed: what is published while it is away never reaches it (the
    # storing service's QoS 1 session keeps it); it takes what comes after it is back.
    for seq in range(10, 15):
        publisher.publish(gas_topic, gas_json(seq))
    feed = start_feed(mosquitto, tmp_path, site, second_sink, subscription_qos=0, protocol=protocol)
    try:
        for seq in range(15, 18):
            publisher.publish(gas_topic, gas_json(seq))
        stats = wait_for(feed, lambda stats: stats.accepted == 3)
        assert feed.wait_idle(WAIT_S)
    finally:
        feed.stop()
    assert sorted(r.seq for r in second_sink.records if isinstance(r, GasReading)) == [15, 16, 17]
