"""Ingest throughput through a real Mosquitto: the ingest service against a bare paho subscriber.

Goal (issue): the ingest service with validation and storage on reaches at least
:data:`GOAL_RATIO` of the message rate of a bare paho subscriber that does nothing, measured in
the same run.

Method (a *drain* measurement, the same for both subscribers):

1. One real Mosquitto 2.0 (:class:`~pipesentinel.hardware.testbed.MosquittoProcess`, anonymous,
   ``max_queued_messages`` one million) on a loopback port.
2. Per repetition, a synthetic site of :data:`DETECTORS` gas detectors. Both subscribers first
   create a persistent MQTT 5 session subscribed with QoS 1 to ``pipesentinel/v1/{site}/#`` and
   disconnect: the bare one with its own client id, the ingest service by starting and stopping
   once (it always uses ``clean_start=False``).
3. A publisher in a separate process (its own interpreter, so it shares no GIL with the measured
   process) publishes N valid gas readings with QoS 1, pre-encoded before timing, one MQTT 5
   client keeping a window of unacknowledged PUBLISHes; it reports its own rate (first PUBLISH to
   last PUBACK). The broker now holds the same N messages queued for both sessions.
4. Each subscriber reconnects to its session in turn and drains the queue (the order alternates
   between repetitions):

   * bare: paho MQTT 5, auto-acknowledge, ``on_message`` only counts; the time is from the first
     message received to the N-th.
   * ingest: :class:`~pipesentinel.ingest.service.IngestService` with its default settings
     (queue 2000, batches of up to 500 or 0.2 s), decoding and validation, the sequence tracker,
     the SQLite telemetry store (WAL, ``synchronous=FULL``) and the dead-letter store (opened; it
     stays empty as every message is valid), acknowledging each message after its batch is
     committed; the time is from the first message received to the moment all N are durably
     stored (the batch subscriber callback).

   Both connect with the same MQTT 5 Receive Maximum (the service's queue capacity), so the broker
   applies the same flow control to both.

   With ``--record`` a third subscriber drains a third session in each repetition: the ingest
   service as above with ``settings.ingest.record_path`` set (every message also appended to a
   JSON-lines recording, :mod:`pipesentinel.ingest.recording`); ``recording_ratio`` is its rate
   over the plain ingest rate of the same repetition (median), and the recording is read back and
   must hold all N messages.

Draining a queue measures how fast a subscriber can take messages, independently of how fast the
publisher can produce them (one paho publisher reaches about the bare subscriber's rate: measured
live, the bare rate would be the publisher's and the ratio would be flattered). ``ratio`` is the
median over the repetitions of ingest rate / bare rate of the same repetition. The measured
process's CPU time per message is reported as well (less sensitive to other load on a shared
machine than wall-clock rates), and so is ``cpu_ratio``, bare / ingest CPU time per message.

Run with ``python -m bench ingest`` or ``python -m bench.ingest [--messages N] [--record]
[--batch-linger-s S]`` (the last overrides ``settings.ingest.batch_linger_s``, to compare).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import numpy as np
import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.recording import read_recording
from pipesentinel.ingest.records import Record
from pipesentinel.ingest.service import IngestService
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import (
    TOPIC_ROOT,
    MessageKind,
    device_topic,
    service_status_topic,
)
from pipesentinel.settings import Settings
from pipesentinel.site import DetectorPlacement, Gas, GasDetector, GeoOrigin, Site

GOAL_RATIO: Final = 0.7  # the issue: ingest >= 0.7 of the bare subscriber's rate
DEFAULT_MESSAGES: Final = 20_000
DEFAULT_REPETITIONS: Final = 3
# A first, unreported repetition of this many messages (or fewer) warms up both paths.
WARMUP_MESSAGES: Final = 2000
DETECTORS: Final = 30  # the site's 20 leak-point + 10 underground-network detectors

# Publisher: at most this many unacknowledged QoS 1 PUBLISHes in flight (fewer if the broker's
# Receive Maximum is smaller; Mosquitto 2.0 announces 20). The window is kept by the benchmark, with
# paho's own limit off, because paho 2.2's queue beyond max_inflight_messages rescans every queued
# message on each PUBACK (Client._update_inflight), which is quadratic in the messages queued.
PUBLISHER_WINDOW_MESSAGES: Final = 1000
QOS_AT_LEAST_ONCE: Final = 1
SESSION_EXPIRY_S: Final = 3600  # bare session between its creation and its drain (expiry 0) [s]
CONNECT_TIMEOUT_S: Final = 30.0
# Deadline of one publish or drain step [s]: generous, a failure, never a measurement.
STEP_TIMEOUT_FLOOR_S: Final = 60.0
STEP_TIMEOUT_PER_MESSAGE_S: Final = 5e-3
SERVICE_STOP_TIMEOUT_S: Final = 30.0

# Synthetic readings: background methane with a small deterministic variation, no propane.
READING_AGE_S: Final = 600.0  # readings are timestamped from this long before now [s]
BACKGROUND_METHANE_PPM: Final = 2.0  # tropospheric background, about 1.9 ppm (NOAA GML, 2023)
METHANE_VARIATION_STEPS: Final = 50
METHANE_VARIATION_PPM: Final = 0.1
FULL_SCALE_PPM: Final = 10_000.0  # 1 vol-%, the detector range of tests/ingest/test_service.py
T90_S: Final = 30.0
SAMPLE_PERIOD_S: Final = 1.0
DETECTOR_SPACING_M: Final = 25.0
DETECTOR_HEIGHT_M: Final = 0.5
ORIGIN_LATITUDE_DEG: Final = 30.0
ORIGIN_LONGITUDE_DEG: Final = 120.0
ORIGIN_ALTITUDE_M: Final = 10.0
MILLISECONDS_PER_SECOND: Final = 1000
MICROSECONDS_PER_SECOND: Final = 1e6
RUN_TOKEN_CHARS: Final = 8  # client ids and site ids of one run carry this many hex digits

METHOD: Final = (
    "Per repetition both subscribers hold a persistent MQTT 5 session (QoS 1, the same Receive "
    "Maximum) on one real Mosquitto; a publisher process publishes the same N valid gas readings "
    "(QoS 1) while both are away, then each drains its queue in turn, the order alternating. "
    "Bare: paho, auto-ack, on_message counts; rate = N / (first received to N-th received). "
    "Ingest: IngestService with validation, SQLite (synchronous=FULL) and the dead-letter store, "
    "acknowledging after commit; rate = N / (first received to all N durably stored); "
    "ingest_receive_rate stops at the N-th receipt instead. ratio = median over repetitions of "
    "ingest/bare within a repetition; cpu_ratio likewise with bare/ingest CPU time per message "
    "(process time of the measured process over the drain, all its threads). Publisher rate: "
    "first PUBLISH to last PUBACK, for context (a drain does not depend on it). With recording "
    "on, a third session is drained in each repetition by the same ingest service recording every "
    "message to a JSON-lines file; recording_ratio = median of its rate / the ingest rate."
)


def _step_timeout_s(messages: int) -> float:
    return STEP_TIMEOUT_FLOOR_S + STEP_TIMEOUT_PER_MESSAGE_S * messages


def detector_ids(count: int = DETECTORS) -> list[str]:
    """Ids ``G01`` ... of the synthetic site's gas detectors."""
    return [f"G{number:02d}" for number in range(1, count + 1)]


def bench_site(site_id: str, detectors: Sequence[str]) -> Site:
    """A site with only gas detectors, in a row along the east axis."""
    return Site(
        id=site_id,
        name="Ingest benchmark site",
        origin=GeoOrigin(
            latitude_deg=ORIGIN_LATITUDE_DEG,
            longitude_deg=ORIGIN_LONGITUDE_DEG,
            altitude_m=ORIGIN_ALTITUDE_M,
        ),
        pipelines=(),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=tuple(
            GasDetector(
                id=detector,
                placement=DetectorPlacement.PIPELINE,
                position_m=np.array([DETECTOR_SPACING_M * index, 0.0, DETECTOR_HEIGHT_M]),
                gases=(Gas.METHANE, Gas.PROPANE),
                full_scale_ppm=FULL_SCALE_PPM,
                t90_s=T90_S,
                sample_period_s=SAMPLE_PERIOD_S,
            )
            for index, detector in enumerate(detectors)
        ),
        wind_stations=(),
        cameras=(),
    )


def gas_messages(
    site_id: str, detectors: Sequence[str], count: int, *, start_ms: int
) -> list[tuple[str, bytes]]:
    """``count`` valid gas readings round-robin over ``detectors``, as (topic, payload).

    Each detector's ``seq`` counts up from 1 and its ``ts`` is ``start_ms + seq`` [ms], so every
    reading has its own (device, ms) identity, as the stores require.
    """
    topics = [device_topic(site_id, MessageKind.GAS, detector) for detector in detectors]
    messages = []
    for index in range(count):
        seq = index // len(detectors) + 1
        body = {
            "ts": start_ms + seq,
            "seq": seq,
            "ch4_ppm": BACKGROUND_METHANE_PPM
            + METHANE_VARIATION_PPM * (index % METHANE_VARIATION_STEPS),
            "c3h8_ppm": 0.0,
            "status": "ok",
        }
        messages.append((topics[index % len(detectors)], json.dumps(body).encode()))
    return messages


# --- the publisher process ------------------------------------------------------------------------


def _publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]], window: int) -> float:
    """Publish with QoS 1, ``window`` in flight; seconds from first PUBLISH to last PUBACK."""
    room = threading.Semaphore(window)
    done = threading.Event()
    acknowledged = 0
    failures: list[str] = []

    def on_publish(
        client: mqtt.Client,  # noqa: ARG001 - paho's callback signature
        userdata: Any,  # noqa: ARG001
        mid: int,  # noqa: ARG001
        reason_code: ReasonCode,
        properties: Properties,  # noqa: ARG001
    ) -> None:
        nonlocal acknowledged
        if reason_code.is_failure:
            failures.append(reason_code.getName())
        acknowledged += 1
        room.release()
        if acknowledged == len(messages):
            done.set()

    client.on_publish = on_publish
    timeout_s = _step_timeout_s(len(messages))
    start = time.perf_counter()
    for topic, payload in messages:
        if not room.acquire(timeout=timeout_s):
            raise TimeoutError(f"publisher: no PUBACK within {timeout_s} s")
        info = client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publisher: publish failed: {mqtt.error_string(info.rc)}")
    if not done.wait(timeout_s):
        raise TimeoutError(f"publisher: {acknowledged} of {len(messages)} acknowledged")
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"publisher: {len(failures)} PUBLISHes refused, e.g. {failures[0]}")
    return seconds


def _publisher_main(
    connection: Connection, host: str, port: int, client_id: str, window: int
) -> None:
    """Publisher process: connect, then serve ``("publish", ...)`` requests until ``("stop",)``.

    The window is ``window`` or the broker's Receive Maximum from the CONNACK, if smaller (MQTT 5
    section 3.3.4: no more unacknowledged QoS 1 PUBLISHes than that).
    """
    try:
        connected = threading.Event()
        receive_maximum: list[int] = []

        def on_connect(
            client: mqtt.Client,  # noqa: ARG001 - paho's callback signature
            userdata: Any,  # noqa: ARG001
            flags: mqtt.ConnectFlags,  # noqa: ARG001
            reason_code: ReasonCode,  # noqa: ARG001
            properties: Properties | None,
        ) -> None:
            if properties is not None and hasattr(properties, "ReceiveMaximum"):
                receive_maximum.append(int(properties.ReceiveMaximum))
            connected.set()

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.max_inflight_messages_set(0)  # unlimited in paho: the window is ours
        client.max_queued_messages_set(0)
        client.on_connect = on_connect
        client.connect(host, port)
        client.loop_start()
        if not connected.wait(CONNECT_TIMEOUT_S):
            raise TimeoutError(f"publisher: no CONNACK from {host}:{port}")
        window = min([window, *receive_maximum])
        connection.send(("ready", window))
        while True:
            request = connection.recv()
            if request[0] == "stop":
                break
            _, site_id, detectors, count, start_ms = request
            messages = gas_messages(site_id, detectors, count, start_ms=start_ms)
            seconds = _publish_all(client, messages, window)
            connection.send(("published", count, seconds))
        client.disconnect()
        client.loop_stop()
    except Exception as error:  # noqa: BLE001 - any failure goes to the parent, which raises it
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


class PublisherProcess:
    """The load generator in its own process (spawned: a fresh interpreter, no shared GIL)."""

    def __init__(
        self,
        broker: MosquittoProcess,
        client_id: str,
        *,
        window: int = PUBLISHER_WINDOW_MESSAGES,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_publisher_main,
            args=(child, broker.host, broker.port, client_id, window),
            name="bench-ingest-publisher",
            daemon=True,
        )
        self._process.start()
        child.close()
        self.window: int = self._answer(CONNECT_TIMEOUT_S)[1]
        """Unacknowledged PUBLISHes the publisher keeps in flight [-]."""

    def _answer(self, timeout_s: float) -> tuple[Any, ...]:
        try:
            if not self._connection.poll(timeout_s):
                raise TimeoutError(f"the publisher process did not answer within {timeout_s} s")
            answer: tuple[Any, ...] = self._connection.recv()
        except EOFError:
            self._process.join(CONNECT_TIMEOUT_S)
            raise RuntimeError(
                f"the publisher process ended (exit code {self._process.exitcode})"
            ) from None
        if answer[0] == "error":
            raise RuntimeError(answer[1])
        return answer

    def publish(self, site_id: str, detectors: Sequence[str], count: int) -> float:
        """Publish ``count`` readings for the site and wait for every PUBACK; seconds taken."""
        start_ms = round((time.time() - READING_AGE_S) * MILLISECONDS_PER_SECOND)
        self._connection.send(("publish", site_id, list(detectors), count, start_ms))
        answer = self._answer(_step_timeout_s(count) * 2)
        return float(answer[2])

    def close(self) -> None:
        """Ask the publisher to disconnect and wait for it; kill it if it does not end."""
        with contextlib.suppress(OSError):
            self._connection.send(("stop",))
        self._process.join(CONNECT_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()

    def __enter__(self) -> PublisherProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the two subscribers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Drain:
    """One subscriber draining its session queue, with what it counted."""

    messages: int  # messages the drain waited for
    received: int  # messages the subscriber received (bare) or accepted (ingest)
    stored: int  # records durably stored (ingest; 0 for the bare subscriber)
    rejected: int  # messages rejected by validation (ingest; 0 for the bare subscriber)
    seconds: float  # first message received to the last received (bare) or stored (ingest) [s]
    receive_seconds: float  # first message received to the last received [s]
    cpu_seconds: float  # CPU time of this process over the drain, all threads [s]
    batches: int = 0  # storage batches written (ingest)

    @property
    def rate_msg_per_s(self) -> float:
        """Messages per second [s-1]."""
        return self.messages / self.seconds

    @property
    def receive_rate_msg_per_s(self) -> float:
        """Messages received per second, storage not waited for [s-1]."""
        return self.messages / self.receive_seconds

    @property
    def cpu_us_per_message(self) -> float:
        """CPU time of the measured process per message [us]."""
        return self.cpu_seconds / self.messages * MICROSECONDS_PER_SECOND


class BareSubscriber:
    """A paho MQTT 5 subscriber with a persistent session whose ``on_message`` only counts."""

    def __init__(
        self, broker: MosquittoProcess, client_id: str, topic_filter: str, receive_maximum: int
    ) -> None:
        self._broker = broker
        self._client_id = client_id
        self._topic_filter = topic_filter
        self._receive_maximum = receive_maximum

    def _client(self) -> tuple[mqtt.Client, threading.Event]:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        connected = threading.Event()
        client.on_connect = lambda *_: connected.set()
        return client, connected

    def _connect(self, client: mqtt.Client, *, clean_start: bool, session_expiry_s: int) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho 2.2 leaves it untyped
        properties.SessionExpiryInterval = session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum
        client.connect(
            self._broker.host, self._broker.port, clean_start=clean_start, properties=properties
        )

    def create_session(self) -> None:
        """Connect, subscribe with QoS 1 and disconnect, leaving the session in the broker."""
        client, connected = self._client()
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        self._connect(client, clean_start=True, session_expiry_s=SESSION_EXPIRY_S)
        client.loop_start()
        try:
            if not connected.wait(CONNECT_TIMEOUT_S):
                raise TimeoutError(f"bare subscriber: no CONNACK from {self._broker.url}")
            client.subscribe(self._topic_filter, qos=QOS_AT_LEAST_ONCE)
            if not subscribed.wait(CONNECT_TIMEOUT_S):
                raise TimeoutError(f"bare subscriber: no SUBACK from {self._broker.url}")
        finally:
            client.disconnect()
            client.loop_stop()

    def drain(self, expected: int) -> Drain:
        """Reconnect to the session and take ``expected`` queued messages.

        The session expires when this connection closes (expiry 0 on this CONNECT), so nothing
        of the benchmark is left in a shared broker.
        """
        client, _ = self._client()
        received = 0
        first_s = last_s = math.nan
        done = threading.Event()

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:  # noqa: ARG001 - paho's callback signature
            nonlocal received, first_s, last_s
            received += 1
            if received == 1:
                first_s = time.perf_counter()
            if received == expected:
                last_s = time.perf_counter()
                done.set()

        client.on_message = on_message
        cpu_start_s = time.process_time()
        self._connect(client, clean_start=False, session_expiry_s=0)
        client.loop_start()
        try:
            timeout_s = _step_timeout_s(expected)
            if not done.wait(timeout_s):
                raise TimeoutError(f"bare subscriber: {received} of {expected} in {timeout_s} s")
            cpu_seconds = time.process_time() - cpu_start_s
        finally:
            client.disconnect()
            client.loop_stop()
        return Drain(
            messages=expected,
            received=received,
            stored=0,
            rejected=0,
            seconds=last_s - first_s,
            receive_seconds=last_s - first_s,
            cpu_seconds=cpu_seconds,
        )


class _ReceiptClock:
    """The wall clock given to the ingest service, which reads it once per message on receipt.

    Remembers the first and the latest reading on the performance counter [s]; the extra cost is
    one ``perf_counter`` call per message (about 0.1 us, against some 200 us per message).
    """

    def __init__(self) -> None:
        self.first_perf_s = math.nan
        self.last_perf_s = math.nan

    def __call__(self) -> float:
        self.last_perf_s = time.perf_counter()
        if math.isnan(self.first_perf_s):
            self.first_perf_s = self.last_perf_s
        return time.time()


class IngestSubscriber:
    """The ingest service on a site with its own SQLite store and dead-letter store.

    ``ingest`` overrides fields of ``settings.ingest`` (``batch_linger_s``, ``record_path``).
    """

    def __init__(
        self,
        broker: MosquittoProcess,
        directory: Path,
        client_id: str,
        site: Site,
        ingest: dict[str, object] | None = None,
    ) -> None:
        self.settings = Settings(
            broker={"url": broker.url, "client_id": client_id},
            ingest={"dead_letter_path": directory / "dead_letter.sqlite3", **(ingest or {})},
        )
        self._site = site
        self._host = broker.host
        self._port = broker.port
        self._topic_filter = f"{TOPIC_ROOT}/{site.id}/#"
        self.store = SQLiteStore(directory / "telemetry.sqlite3")

    def _service(self, clock: Callable[[], float] = time.time) -> IngestService:
        return IngestService(
            settings=self.settings,
            sites=self._site,
            store=self.store,
            topic_filters=[self._topic_filter],
            clock=clock,
        )

    def create_session(self) -> None:
        """Start the service once (it subscribes with a persistent session) and stop it."""
        service = self._service().start()
        try:
            if not service.wait_connected(CONNECT_TIMEOUT_S):
                raise TimeoutError(f"ingest service did not connect: {service.stats()}")
        finally:
            service.stop(timeout_s=SERVICE_STOP_TIMEOUT_S)

    def drain(self, expected: int) -> Drain:
        """Start the service on its session; time until ``expected`` records are stored."""
        clock = _ReceiptClock()
        service = self._service(clock)
        stored = 0
        last_s = math.nan
        done = threading.Event()

        def on_batch(records: Sequence[Record]) -> None:
            nonlocal stored, last_s
            stored += len(records)
            if stored >= expected and not done.is_set():
                last_s = time.perf_counter()
                done.set()

        service.subscribe(on_batch)
        cpu_start_s = time.process_time()
        service.start()
        try:
            timeout_s = _step_timeout_s(expected)
            if not done.wait(timeout_s):
                raise TimeoutError(
                    f"ingest service: {stored} of {expected} stored in {timeout_s} s; "
                    f"{service.stats()}"
                )
            cpu_seconds = time.process_time() - cpu_start_s
        finally:
            service.stop(timeout_s=SERVICE_STOP_TIMEOUT_S)
        stats = service.stats()
        return Drain(
            messages=expected,
            received=stats.accepted + stats.rejected,
            stored=self.store.count(site_id=self._site.id),
            rejected=stats.rejected,
            seconds=last_s - clock.first_perf_s,
            receive_seconds=clock.last_perf_s - clock.first_perf_s,
            cpu_seconds=cpu_seconds,
            batches=stats.batches_written,
        )

    def forget(self) -> None:
        """Remove the service's persistent session and its retained status from the broker."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.settings.broker.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        connected = threading.Event()
        client.on_connect = lambda *_: connected.set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho 2.2 leaves it untyped
        properties.SessionExpiryInterval = 0
        client.connect(self._host, self._port, clean_start=True, properties=properties)
        client.loop_start()
        try:
            if not connected.wait(CONNECT_TIMEOUT_S):
                raise TimeoutError(f"no CONNACK from {self._host}:{self._port}")
            status_topic = service_status_topic(self.settings.broker.client_id)
            info = client.publish(status_topic, b"", qos=QOS_AT_LEAST_ONCE, retain=True)
            info.wait_for_publish(CONNECT_TIMEOUT_S)
        finally:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        """Close the telemetry store."""
        self.store.close()


def _check_counts(drain: Drain, who: str) -> None:
    """Every message was received once and, by the ingest service, stored; else raise."""
    if drain.received != drain.messages or drain.rejected:
        raise RuntimeError(
            f"{who}: received {drain.received} of {drain.messages} messages, "
            f"{drain.rejected} rejected"
        )
    if who == "ingest" and drain.stored != drain.messages:
        raise RuntimeError(f"ingest: {drain.stored} of {drain.messages} records in the store")


# --- the benchmark --------------------------------------------------------------------------------


def _recorded_messages(path: Path) -> int:
    """Messages in a recording; a malformed line is an error of the benchmark."""
    return sum(1 for _ in read_recording(path))


def _repetition(
    broker: MosquittoProcess,
    publisher: PublisherProcess,
    directory: Path,
    name: str,
    messages: int,
    *,
    bare_first: bool,
    record: bool = False,
    ingest_overrides: dict[str, object] | None = None,
) -> dict[str, object]:
    site = bench_site(name, detector_ids())
    detectors = [detector.id for detector in site.gas_detectors]
    overrides = dict(ingest_overrides or {})
    ingest = IngestSubscriber(broker, directory / name, f"{name}-ingest", site, overrides)
    record_path = directory / f"{name}-recorded" / "recording.jsonl"
    recorded = (
        IngestSubscriber(
            broker,
            directory / f"{name}-recorded",
            f"{name}-ingest-recorded",
            site,
            {**overrides, "record_path": record_path},
        )
        if record
        else None
    )
    drains: dict[str, Drain] = {}
    try:
        bare = BareSubscriber(
            broker,
            f"{name}-bare",
            f"{TOPIC_ROOT}/{site.id}/#",
            receive_maximum=ingest.settings.ingest.queue_capacity_messages,
        )
        subscribers: dict[str, BareSubscriber | IngestSubscriber] = {"bare": bare, "ingest": ingest}
        if recorded is not None:
            subscribers["recorded"] = recorded
        for subscriber in subscribers.values():
            subscriber.create_session()
        publish_seconds = publisher.publish(site.id, detectors, messages)
        order = list(subscribers) if bare_first else list(reversed(subscribers))
        for who in order:
            drains[who] = subscribers[who].drain(messages)
        ingest.forget()
        if recorded is not None:
            recorded.forget()
    finally:
        ingest.close()
        if recorded is not None:
            recorded.close()
    bare_drain, ingest_drain = drains["bare"], drains["ingest"]
    _check_counts(bare_drain, "bare")
    _check_counts(ingest_drain, "ingest")
    result: dict[str, object] = {
        "order": ", ".join(order),
        "published": messages,
        "bare_received": bare_drain.received,
        "ingest_received": ingest_drain.received,
        "ingest_rejected": ingest_drain.rejected,
        "ingest_stored": ingest_drain.stored,
        "ingest_batches": ingest_drain.batches,
        "ingest_mean_batch_messages": ingest_drain.stored / ingest_drain.batches,
        "publisher_rate_msg_per_s": messages / publish_seconds,
        "bare_rate_msg_per_s": bare_drain.rate_msg_per_s,
        "ingest_rate_msg_per_s": ingest_drain.rate_msg_per_s,
        "ingest_receive_rate_msg_per_s": ingest_drain.receive_rate_msg_per_s,
        "ratio": ingest_drain.rate_msg_per_s / bare_drain.rate_msg_per_s,
        "bare_cpu_us_per_message": bare_drain.cpu_us_per_message,
        "ingest_cpu_us_per_message": ingest_drain.cpu_us_per_message,
        "cpu_ratio": bare_drain.cpu_us_per_message / ingest_drain.cpu_us_per_message,
    }
    if record:
        recorded_drain = drains["recorded"]
        _check_counts(recorded_drain, "ingest")
        in_recording = _recorded_messages(record_path)
        if in_recording != messages:
            raise RuntimeError(f"recording: {in_recording} of {messages} messages recorded")
        result |= {
            "recorded_messages": in_recording,
            "recording_bytes": record_path.stat().st_size,
            "recorded_rate_msg_per_s": recorded_drain.rate_msg_per_s,
            "recorded_cpu_us_per_message": recorded_drain.cpu_us_per_message,
            "recording_ratio": recorded_drain.rate_msg_per_s / ingest_drain.rate_msg_per_s,
            "recorded_ratio": recorded_drain.rate_msg_per_s / bare_drain.rate_msg_per_s,
        }
    return result


def _median(runs: list[dict[str, object]], key: str) -> float:
    values = [run[key] for run in runs]
    return statistics.median(value for value in values if isinstance(value, int | float))


def _notes(publisher_rate: float, bare_rate: float, ingest_rate: float) -> list[str]:
    notes = [
        "Rates are wall-clock on a shared machine and vary between runs; the ratio within a "
        "repetition and the CPU time per message are the steadier figures.",
        "The dead-letter store is open but receives nothing: every message is valid.",
    ]
    if publisher_rate < max(bare_rate, ingest_rate):
        notes.append(
            f"The publisher ({publisher_rate:.0f} msg/s) is slower than the fastest subscriber: "
            "measured live, that subscriber would run at the publisher's rate; the queue drain "
            "does not depend on it."
        )
    return notes


def run(
    messages: int = DEFAULT_MESSAGES,
    repetitions: int = DEFAULT_REPETITIONS,
    *,
    broker: MosquittoProcess | None = None,
    record: bool = False,
    batch_linger_s: float | None = None,
) -> dict[str, object]:
    """Measure both subscribers ``repetitions`` times on ``messages`` messages; see the module.

    Parameters
    ----------
    messages
        Messages per repetition [-].
    repetitions
        Repetitions; the subscriber that drains first alternates [-]. One unreported warm-up
        repetition of at most :data:`WARMUP_MESSAGES` messages runs first.
    broker
        A running Mosquitto to use (its ``max_queued_messages`` must hold ``messages``); by
        default one is started and stopped here. Client ids and topics carry a token of this
        run, and the sessions expire when drained, so a shared broker is left as it was.
    record
        Also drain with the recording on, each repetition (see the module docstring).
    batch_linger_s
        Overrides ``settings.ingest.batch_linger_s`` for the ingest service [s].
    """
    if messages < 1 or repetitions < 1:
        raise ValueError(f"messages and repetitions must be >= 1, got {messages} and {repetitions}")
    started = time.perf_counter()
    overrides: dict[str, object] = {}
    if batch_linger_s is not None:
        overrides["batch_linger_s"] = batch_linger_s
    settings = Settings(ingest=overrides).ingest
    token = uuid.uuid4().hex[:RUN_TOKEN_CHARS]
    runs: list[dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        directory = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="pipesentinel-bench-ingest-"))
        )
        if broker is None:
            broker = stack.enter_context(MosquittoProcess())
        publisher = stack.enter_context(PublisherProcess(broker, f"bench{token}-publisher"))
        publisher_window = publisher.window
        _repetition(
            broker,
            publisher,
            directory,
            f"bench{token}warmup",
            min(messages, WARMUP_MESSAGES),
            bare_first=True,
            record=record,
            ingest_overrides=overrides,
        )
        runs.extend(
            _repetition(
                broker,
                publisher,
                directory,
                f"bench{token}r{index}",
                messages,
                bare_first=index % 2 == 0,
                record=record,
                ingest_overrides=overrides,
            )
            for index in range(repetitions)
        )
    ratio = _median(runs, "ratio")
    publisher_rate = _median(runs, "publisher_rate_msg_per_s")
    bare_rate = _median(runs, "bare_rate_msg_per_s")
    ingest_rate = _median(runs, "ingest_rate_msg_per_s")
    result: dict[str, object] = {
        "benchmark": "ingest throughput: IngestService vs a bare paho subscriber (queue drain)",
        "messages": messages,
        "repetitions": repetitions,
        "warmup_messages": min(messages, WARMUP_MESSAGES),
        "detectors": DETECTORS,
        "publisher_rate_msg_per_s": publisher_rate,
        "publisher_window_messages": publisher_window,
        "bare_rate_msg_per_s": bare_rate,
        "ingest_rate_msg_per_s": ingest_rate,
        "ingest_receive_rate_msg_per_s": _median(runs, "ingest_receive_rate_msg_per_s"),
        "bare_cpu_us_per_message": _median(runs, "bare_cpu_us_per_message"),
        "ingest_cpu_us_per_message": _median(runs, "ingest_cpu_us_per_message"),
        "ratio": ratio,
        "cpu_ratio": _median(runs, "cpu_ratio"),
        "goal": GOAL_RATIO,
        "met": ratio >= GOAL_RATIO,
        "runs": runs,
        "ingest_settings": {
            "queue_capacity_messages": settings.queue_capacity_messages,
            "batch_max_messages": settings.batch_max_messages,
            "batch_max_wait_s": settings.batch_max_wait_s,
            "batch_linger_s": settings.batch_linger_s,
        },
        "ingest_mean_batch_messages": _median(runs, "ingest_mean_batch_messages"),
        "recording": record,
        "method": METHOD,
        "notes": _notes(publisher_rate, bare_rate, ingest_rate),
        "elapsed_s": time.perf_counter() - started,
        "paho_mqtt": paho.mqtt.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if record:
        result |= {
            "recorded_rate_msg_per_s": _median(runs, "recorded_rate_msg_per_s"),
            "recorded_cpu_us_per_message": _median(runs, "recorded_cpu_us_per_message"),
            "recording_ratio": _median(runs, "recording_ratio"),
            "recorded_ratio": _median(runs, "recorded_ratio"),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.ingest [options]`` (``--help``): print the JSON result."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS)
    parser.add_argument(
        "--record", action="store_true", help="also drain with the recording on, and compare"
    )
    parser.add_argument(
        "--batch-linger-s", type=float, default=None, help="override ingest.batch_linger_s [s]"
    )
    args = parser.parse_args(argv)
    result = run(
        args.messages, args.repetitions, record=args.record, batch_linger_s=args.batch_linger_s
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
