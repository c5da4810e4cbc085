"""Alarm latency through a real Mosquitto: sensor publish -> alarm state received on MQTT.

Goal (issue 3, section 9): p99 below :data:`SEED_GOAL_P99_S` at seed load (about 40 messages/s:
the reference site's 30 gas detectors, 2 wind stations and 8 lasers) and below
:data:`HUNDREDFOLD_GOAL_P99_S` at 100 times that (about 4000 messages/s).

Method (the live chain of ``tests/ingest/test_detection_service.py``):

1. One real Mosquitto 2.0 (:class:`~pipesentinel.hardware.testbed.MosquittoProcess`) on a loopback
   port and the chain in the process layout of ``pipesentinel ingest``
   (:mod:`pipesentinel.ingest.workers`, ``--layout processes``, the default): the storing
   :class:`~pipesentinel.ingest.service.IngestService` (default ingest settings:
   ``batch_linger_s`` 5 ms, SQLite telemetry store with ``synchronous=FULL`` in a temporary
   directory on the local disk) in a child process of its own; in this process the detection
   feed (an ``IngestService`` with ``store=None`` on its own MQTT session) ``->``
   :class:`~pipesentinel.ingest.detection_service.DetectionService` ``->``
   :class:`~pipesentinel.detection.engine.DetectionEngine` (SQLite alarm journal and incident
   store) ``->`` :class:`~pipesentinel.ingest.notifications.Notifier` publishing each alarm's
   state retained with QoS 1. ``--layout single`` measures the former one-process chain (the
   storing service hands its stored batches to detection) as the same-run baseline. The site is
   ``sites/wanli`` under a site id of this run, camera analytics off (no frames are sent; the
   lasers are analysed).
2. Background load, in a process of its own (its own interpreter, no GIL shared with the
   measured chain): one :class:`~bench.mqtt_load.RawPublisher` (MQTT 3.1.1 on a plain socket,
   up to 4000 QoS 1 PUBLISHes in flight, PUBACKs counted on a reader thread: test equipment that
   costs a few tens of microseconds of CPU per message, where a paho MQTT 5 client held to
   Mosquitto's Receive Maximum of 20 offered only about 2700 of 4000 messages/s) publishing
   pre-encoded valid quiet readings (a pool of 256 per device; ``ts`` and ``seq`` formatted per
   message) round-robin on every device topic of the site except the probe detectors (gas ~2 ppm
   plus the detectors' white noise of 0.5 % FS, quantised to 0.1 % FS; wind with a little noise;
   the laser's ambient
   methane column plus 5 ppm m noise; status ok), timestamped with the wall clock. Its rate is the
   load's total rate minus the probes' own rate. The device rate is scaled to the load (at 100x
   every device reports about 100 times a second): the site is not replicated.
3. Probes, in a third process: one client publishes the readings of the probe detectors (the
   first detector of each of the first ``probes`` zones), one every ``probe_period_s`` per probe,
   staggered; a separate subscriber client (MQTT 5, QoS 1) listens to the site's alarm topics.
   Between measurements a probe sends quiet readings 2 s of device time apart. While measuring,
   each probe repeats a cycle of four readings whose device time ``ts`` runs faster than the
   wall clock (the device clock starts :data:`PROBE_CLOCK_LEAD_S` in the past, inside the
   ingest's 7-day window): gas at :data:`PROBE_FRACTION_LEL` of the LEL (above LOW, below HIGH),
   the same again on-delay + 1 s later (this reading completes the on-delay: the ACTIVATING
   reading), a quiet reading :data:`PROBE_FALL_S` later (a first-order sensor has long settled,
   so the health monitor sees no spike), and another off-delay + 2 s later (the CLEARING
   reading). The wall time just before ``client.publish`` of the activating and the clearing
   readings is recorded (``time.monotonic``), and so is the arrival of the zone's
   ``zone.<Z>.suspected_leak`` state with ``event`` ``activated`` (state ``unack``) and
   ``cleared`` (state ``rtn_unack``) at the subscriber. That alarm is HIGH priority and never
   flood-suppressed (the probes' own MEDIUM gas LOW alarms are, after 10 annunciations in 10
   minutes). Matching is by alarm id and cycle: a probe has at most one activation and one
   clearing outstanding, and its next activation comes two probe periods after its clearing
   reading.
4. The engine raises but never clears alarms during its first 30 s
   (:data:`~pipesentinel.detection.engine.RESTART_SETTLE_S`); the run waits ``settle_s`` with
   the seed background and quiet probes first. Each load then runs ``ramp_s`` before measuring
   and measures until ``samples`` activations are collected (or ``max_measure_s``).

The load asked is reported with what was offered (published by the background and probe
clients) and achieved (acknowledged by the broker); a load offered below
:data:`OFFERED_FRACTION_MIN` of its target is flagged ``offered_short`` and not ``met``. The CPU
time per message of the storing process, the detection process (this process, in the
``processes`` layout), Mosquitto (``/proc``) and the load generator is reported per load: less
sensitive to other work on a shared machine than the wall-clock figures. At the end the
background stops and the run waits until both subscribers have taken every published message;
``balance`` then compares published, received, stored and detected counts (``met`` needs it).

Where the storing ingest runs (``--storage``, JSON ``storage``): ``here`` (the default) is the
layout above, both processes on this host. ``elsewhere`` is the deployment with the storing
ingest on another host (``pipesentinel ingest --role storage`` there, ``--role detection``
here): the bench starts no storing ingest, so the figures (latency, CPU) are those of the
detection host alone (with its Mosquitto, which then fans each message out to one subscriber
instead of two, and the test equipment); the balance covers the feed and detection only (its
storage counts are ``null``). ``python -m bench`` runs both: storage here at seed and 100x, then
a fresh chain with storage elsewhere at 100x only (under ``storage_elsewhere``; about 1.9 + 1.3
min on the 2-core development VM). ``--max-busy-fraction`` and ``--max-batch-records`` override
the detection batching settings (``settings.detection``) to compare them in one session.

``latency`` figures are of the activations (the alarm that matters); ``clear`` those of the
clearings. ``to_ingest`` is the alarm's ``time_s`` (the ingest receive time of the latest record
of the batch that raised it, so an upper bound for the probe reading's) minus the publish wall
time; ``ingest_to_alarm`` is the arrival wall time minus ``time_s``: the split between the
broker-to-ingest leg and storage + detection + notification + broker-to-subscriber.

Run with ``python -m bench alarm_latency`` (both storage layouts) or ``python -m
bench.alarm_latency [--samples N] [--storage here|elsewhere|both] [--loads seed 100x]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import numpy as np
import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bench.mqtt_load import RawPublisher, topic_field
from pipesentinel.alarm_config import DEFAULT_OFF_DELAY_S, DEFAULT_ON_DELAY_S, AlarmConfig
from pipesentinel.camera_geometry import CameraPose, laser_beam_m
from pipesentinel.detection.camera_analytics import AMBIENT_METHANE_MOLE_FRACTION
from pipesentinel.detection.engine import RESTART_SETTLE_S, zone_alarm_id
from pipesentinel.detection.gases import lower_explosive_limit
from pipesentinel.hardware.camera_model import DEFAULT_LASER_NOISE_STD_MOLE_FRACTION_M
from pipesentinel.hardware.gas_sensor import (
    DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE,
    DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE,
    LOWER_SATURATION_FRACTION_OF_FULL_SCALE,
)
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.service import IngestService
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import TOPIC_ROOT, MessageKind, device_topic
from pipesentinel.ingest.workers import (
    PROCESS_CPU_KEY,
    DetectionChain,
    Role,
    ServiceProcess,
    detection_chain,
    detection_counters,
    storage_counters,
)
from pipesentinel.settings import Settings
from pipesentinel.site import Camera, Gas, Site
from pipesentinel.site_loader import load_site
from pipesentinel.units import PPM, PPM_M

SITE_DIR: Final = Path(__file__).resolve().parents[1] / "sites" / "wanli"

# --- loads and goals (issue 3, section 9) -----------------------------------------------------
SEED_RATE_MSG_PER_S: Final = 40.0  # 30 gas detectors + 2 wind stations + 8 lasers, ~1 msg/s each
HUNDREDFOLD: Final = 100.0
SEED_GOAL_P99_S: Final = 0.050
HUNDREDFOLD_GOAL_P99_S: Final = 0.250


class Layout(StrEnum):
    """Process layout of the measured chain."""

    PROCESSES = "processes"  # pipesentinel ingest: storage and detection processes (workers.py)
    SINGLE = "single"  # the former one-process chain, detection on the stored batches


class Storage(StrEnum):
    """Where the storing ingest runs (layout ``processes``)."""

    HERE = "here"  # on this host, beside detection: pipesentinel ingest (both roles)
    # On another host (pipesentinel ingest --role storage there, --role detection here): the
    # bench starts no storing ingest, so the figures are those of the detection host alone.
    ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class Load:
    """A load level: its total message rate [msg s-1] and its p99 goal [s]."""

    name: str
    rate_msg_per_s: float
    goal_p99_s: float


LOADS: Final = (
    Load("seed", SEED_RATE_MSG_PER_S, SEED_GOAL_P99_S),
    Load("100x", HUNDREDFOLD * SEED_RATE_MSG_PER_S, HUNDREDFOLD_GOAL_P99_S),
)
# ``python -m bench`` measures storage elsewhere at 100x only: at seed load the detection host is
# nearly idle either way, and the run stays about a minute shorter.
ELSEWHERE_LOADS: Final = (LOADS[1],)

# --- run shape -----------------------------------------------------------------------------------
DEFAULT_SAMPLES: Final = 100  # activations per load
DEFAULT_PROBES: Final = 6  # probe detectors, one per zone
DEFAULT_PROBE_PERIOD_S: Final = 0.5  # wall time between two readings of one probe [s]
SETTLE_MARGIN_S: Final = 2.0  # waited beyond the engine's RESTART_SETTLE_S [s]
DEFAULT_RAMP_S: Final = 3.0  # each load runs this long before measuring [s]
DEFAULT_MAX_MEASURE_S: Final = 120.0  # a load stops measuring after this, samples or not [s]
DRAIN_GRACE_S: Final = 10.0  # wait for outstanding alarm messages after measuring [s]
CONNECT_TIMEOUT_S: Final = 30.0
COMMAND_TIMEOUT_S: Final = 60.0  # deadline of a child process's answer beyond its own work [s]
RUN_TOKEN_CHARS: Final = 8
MICROSECONDS_PER_SECOND: Final = 1e6
BALANCE_TIMEOUT_S: Final = 600.0  # longest wait for the chain to take every message at the end [s]
BALANCE_STALL_S: Final = 10.0  # ... and the end of that wait when no count moved for this long [s]
BALANCE_PROGRESS_KEYS: Final = ("ingest_records_written", "feed_accepted", "detection_records")
# storage_counters (ingest/workers.py): all 0 with the storing ingest elsewhere.
STORAGE_COUNTER_KEYS: Final = (
    "accepted",
    "rejected",
    "duplicates",
    "queue_overflows",
    "batches_written",
    "records_written",
    "unacknowledged",
)
BALANCE_POLL_S: Final = 0.1
PROC_STAT_UTIME: Final = 11  # utime, field 14 of /proc/<pid>/stat counted from field 3 (proc(5))
PROC_STAT_STIME: Final = 12  # stime, field 15
MILLISECONDS_PER_SECOND: Final = 1000.0
PERCENTILES: Final = (50.0, 90.0, 99.0)
# The chain keeps up with a load when the ingest accepts at least this fraction of the published
# rate over the measurement (a choice: the counters are read a few ms apart from the segment).
KEEP_UP_FRACTION: Final = 0.98

# --- device readings -----------------------------------------------------------------------------
QOS_AT_LEAST_ONCE: Final = 1
PUBLISHER_WINDOW_MESSAGES: Final = 1000  # probes: capped by the broker's Receive Maximum (20)
PUBLISH_CHUNK_MESSAGES: Final = 200  # the background publisher checks for requests between chunks
BACKGROUND_WINDOW_MESSAGES: Final = 4000  # background PUBLISHes in flight at most (MQTT 3.1.1)
BACKGROUND_POOL_PAYLOADS: Final = 256  # pre-encoded quiet readings per device, cycled
PACING_TICK_S: Final = 0.002  # the background publisher sleeps this long when nothing is due [s]
# A load whose offered rate (what the publishers sent) falls short of this fraction of its target
# is reported as short and not met: the figure would not be of the load asked (issue 3 section 9).
OFFERED_FRACTION_MIN: Final = 0.95
BACKGROUND_METHANE_PPM: Final = 2.0  # tropospheric background, about 1.9 ppm (NOAA GML, 2023)
BACKGROUND_PROPANE_PPM: Final = 0.0  # none in clean air (ppb levels, far below the noise)
# Quiet wind: a moderate westerly with a little variation, so the wind-stuck check stays quiet.
WIND_SPEED_M_PER_S: Final = 4.0
WIND_SPEED_NOISE_M_PER_S: Final = 0.3
WIND_DIRECTION_DEG: Final = 270.0
WIND_DIRECTION_NOISE_DEG: Final = 5.0
WIND_SIGMA_THETA_DEG: Final = 15.0
# Probe cycle, in device time. The probe level is between LOW (20 %LEL) and HIGH (40 %LEL), the
# alarm_config defaults; the step after the on-delay and the fall are chosen (see the module).
PROBE_FRACTION_LEL: Final = 0.30
PROBE_STEP_BEYOND_ON_DELAY_S: Final = 1.0
# The fall: several times the pipeline detectors' t90 (10 s), so a first-order sensor has
# settled and the health monitor sees no spike; and shorter than the 60 s STUCK hold
# (detection/health.py), so two readings alone never span it.
PROBE_FALL_S: Final = 30.0
PROBE_STEP_BEYOND_OFF_DELAY_S: Final = 2.0
PROBE_CLOCK_LEAD_S: Final = 2 * 86_400.0  # the probes' device clock starts this far back [s]
QUIET_STEP_S: Final = 2.0  # device time between quiet probe readings: the pipeline period [s]
EVENT_ACTIVATED: Final = "activated"
EVENT_CLEARED: Final = "cleared"

METHOD: Final = (
    "One real Mosquitto; layout 'processes' (pipesentinel ingest): the storing IngestService "
    "(default settings, batch_linger_s 5 ms, SQLite telemetry store synchronous=FULL on local "
    "disk) in a child process, and in the measured process the detection feed (IngestService "
    "store=None, own MQTT session) -> DetectionService (SQLite journal) -> Notifier (retained QoS"
    " 1 alarm states); layout 'single': the storing IngestService hands its stored batches to "
    "DetectionService in one process. Site sites/wanli under a run-unique id, "
    "camera analytics off. Background: a separate process, one raw-socket MQTT 3.1.1 client, QoS 1 "
    "with up to 4000 in flight, pre-encoded valid quiet readings (gas 2 ppm CH4 and 0 ppm C3H8, "
    "both + 0.5 % FS noise; wind; laser ambient column) round-robin on every device topic "
    "except the probes, wall-clock timestamps, at the load's rate minus the probes' (device "
    "rates scaled, site not replicated). Probes: a third process; the first detector of each of "
    "the first N zones publishes every probe_period_s "
    "(staggered), cycling 30 %LEL, 30 %LEL after on-delay + 1 s (activating), quiet 30 s later, "
    "quiet off-delay + 2 s later (clearing), in device time running ahead of the wall clock from 2"
    " days in the past. Latency = arrival at a separate subscriber of zone.<Z>.suspected_leak "
    "(HIGH, never flood-suppressed) with event activated (resp. cleared) minus the wall time just "
    "before publish of the activating (resp. clearing) reading, time.monotonic in one process; "
    "matched by alarm id and cycle. Settle 32 s first (the engine clears nothing in its first 30 "
    "s), ramp 3 s per load, then measure until the samples are in. Percentiles: numpy linear "
    "interpolation."
)


# --- readings ------------------------------------------------------------------------------------


def _gas_noise_ppm(site: Site, device_id: str) -> tuple[float, float, float]:
    """Noise std, resolution and lowest reported value of a gas detector [ppm]."""
    detector = next(d for d in site.gas_detectors if d.id == device_id)
    full_scale_ppm = detector.full_scale_ppm
    return (
        DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE * full_scale_ppm,
        DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE * full_scale_ppm,
        LOWER_SATURATION_FRACTION_OF_FULL_SCALE * full_scale_ppm,
    )


@dataclass(frozen=True)
class DeviceSpec:
    """What the background publisher needs to make one device's quiet readings.

    ``noise`` is the gas noise std [ppm], or the laser's [ppm m]; ``resolution`` the gas output
    resolution [ppm]; ``floor`` the lowest gas value reported [ppm]; ``level`` the laser's
    ambient column [ppm m]. Unused fields are 0.
    """

    topic: str
    kind: MessageKind
    noise: float = 0.0
    resolution: float = 0.0
    floor: float = 0.0
    level: float = 0.0


def background_devices(site: Site, probes: Sequence[str]) -> list[DeviceSpec]:
    """Every gas detector (but the probes), wind station and laser of ``site``."""
    devices = []
    for detector in site.gas_detectors:
        if detector.id in probes:
            continue
        noise, resolution, floor = _gas_noise_ppm(site, detector.id)
        devices.append(
            DeviceSpec(
                device_topic(site.id, MessageKind.GAS, detector.id),
                MessageKind.GAS,
                noise=noise,
                resolution=resolution,
                floor=floor,
            )
        )
    devices += [
        DeviceSpec(device_topic(site.id, MessageKind.WIND, station.id), MessageKind.WIND)
        for station in site.wind_stations
    ]
    devices += [
        DeviceSpec(
            device_topic(site.id, MessageKind.LASER, camera.id),
            MessageKind.LASER,
            noise=PPM_M.from_si(DEFAULT_LASER_NOISE_STD_MOLE_FRACTION_M),
            level=PPM.from_si(AMBIENT_METHANE_MOLE_FRACTION) * beam_length_m(camera),
        )
        for camera in site.cameras
    ]
    return devices


def beam_length_m(camera: Camera) -> float:
    """Length of the camera's laser beam: its range, or less where it meets the ground [m]."""
    start, end = laser_beam_m(CameraPose.from_camera(camera), camera.laser_range_m)
    return float(np.linalg.norm(end - start))


def quiet_gas_ppm(
    rng: np.random.Generator,
    noise_ppm: float,
    resolution_ppm: float,
    floor_ppm: float,
    background_ppm: float = BACKGROUND_METHANE_PPM,
) -> float:
    """A quiet-air reading: background with the detector's white noise, quantised, floored [ppm].

    Both channels of a detector are noisy: an unchanging channel (e.g. propane fixed at 0) is
    taken for a stuck sensor by the health monitor after 60 s (``detection/health.py``).
    """
    raw = background_ppm + noise_ppm * float(rng.standard_normal())
    return max(round(raw / resolution_ppm) * resolution_ppm, floor_ppm)


def background_fields(device: DeviceSpec, rng: np.random.Generator) -> dict[str, object]:
    """The measured fields of one quiet reading of ``device`` (all but ``ts`` and ``seq``)."""
    if device.kind is MessageKind.GAS:
        return {
            "ch4_ppm": quiet_gas_ppm(rng, device.noise, device.resolution, device.floor),
            "c3h8_ppm": quiet_gas_ppm(
                rng, device.noise, device.resolution, device.floor, BACKGROUND_PROPANE_PPM
            ),
            "status": "ok",
        }
    if device.kind is MessageKind.WIND:
        return {
            "speed_m_per_s": round(
                max(WIND_SPEED_M_PER_S + WIND_SPEED_NOISE_M_PER_S * rng.standard_normal(), 0.0),
                3,
            ),
            "direction_deg": round(
                (WIND_DIRECTION_DEG + WIND_DIRECTION_NOISE_DEG * rng.standard_normal()) % 360.0, 2
            ),
            "sigma_theta_deg": WIND_SIGMA_THETA_DEG,
        }
    return {
        "path_integral_ppm_m": round(
            max(device.level + device.noise * rng.standard_normal(), 0.0), 1
        ),
        "status": "ok",
    }


def background_payload(device: DeviceSpec, seq: int, ts_ms: int, rng: np.random.Generator) -> bytes:
    """One valid quiet reading of ``device`` (docs/mqtt.md section 3) as JSON bytes."""
    return json.dumps({"ts": ts_ms, "seq": seq} | background_fields(device, rng)).encode()


def background_tails(device: DeviceSpec, rng: np.random.Generator, count: int) -> list[bytes]:
    """``count`` pre-encoded quiet readings of ``device`` without their ``ts`` and ``seq``.

    ``b'{"ts": %d, "seq": %d, ' % (ts_ms, seq) + tail`` is the same JSON as
    :func:`background_payload` (the load generator formats two integers per message instead of
    drawing noise and encoding JSON).
    """
    return [json.dumps(background_fields(device, rng)).encode()[1:] for _ in range(count)]


def background_head(ts_ms: int, seq: int) -> bytes:
    """The start of a pre-encoded reading, to be followed by a :func:`background_tails` tail."""
    return b'{"ts": %d, "seq": %d, ' % (ts_ms, seq)


@dataclass(frozen=True)
class ProbeStep:
    """One reading of a probe cycle: device time after the previous reading [s], methane [ppm]."""

    advance_s: float
    high: bool
    activates: bool = False
    clears: bool = False


def probe_cycle(
    on_delay_s: float = DEFAULT_ON_DELAY_S, off_delay_s: float = DEFAULT_OFF_DELAY_S
) -> tuple[ProbeStep, ...]:
    """The four readings of a probe cycle (see the module docstring)."""
    return (
        ProbeStep(QUIET_STEP_S, high=True),
        ProbeStep(on_delay_s + PROBE_STEP_BEYOND_ON_DELAY_S, high=True, activates=True),
        ProbeStep(PROBE_FALL_S, high=False),
        ProbeStep(off_delay_s + PROBE_STEP_BEYOND_OFF_DELAY_S, high=False, clears=True),
    )


def probe_level_ppm(settings: Settings) -> float:
    """Methane of a probe's high reading: :data:`PROBE_FRACTION_LEL` on the settings' basis."""
    lel = lower_explosive_limit(Gas.METHANE, basis=settings.lel_basis)
    return float(PPM.from_si(PROBE_FRACTION_LEL * lel))


def percentiles_ms(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p90, p99, max and mean of ``values_s`` [s], in milliseconds."""
    if not values_s:
        return {"samples": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None,
                "mean_ms": None}  # fmt: skip
    values_ms = np.asarray(values_s, dtype=np.float64) * MILLISECONDS_PER_SECOND
    p50, p90, p99 = np.percentile(values_ms, PERCENTILES)
    return {
        "samples": int(values_ms.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(values_ms.max()),
        "mean_ms": float(values_ms.mean()),
    }


# --- child processes -----------------------------------------------------------------------------


class _Publisher:
    """The probes' paho MQTT 5 client keeping its own window of unacknowledged QoS 1 PUBLISHes."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.acknowledged = 0
        self.failures = 0
        self._receive_maximum: list[int] = []
        self._connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(0)  # the window is ours (see bench/ingest.py)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            raise TimeoutError(f"{client_id}: no CONNACK from {host}:{port}")
        self._room = threading.Semaphore(min([PUBLISHER_WINDOW_MESSAGES, *self._receive_maximum]))

    def _on_connect(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002
        flags: mqtt.ConnectFlags,  # noqa: ARG002
        reason_code: ReasonCode,  # noqa: ARG002
        properties: Properties | None,
    ) -> None:
        if properties is not None and hasattr(properties, "ReceiveMaximum"):
            self._receive_maximum.append(int(properties.ReceiveMaximum))
        self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002
        mid: int,  # noqa: ARG002
        reason_code: ReasonCode,
        properties: Properties,  # noqa: ARG002
    ) -> None:
        if reason_code.is_failure:
            self.failures += 1
        self.acknowledged += 1
        self._room.release()

    def publish(self, topic: str, payload: bytes) -> None:
        if not self._room.acquire(timeout=COMMAND_TIMEOUT_S):
            raise TimeoutError(f"no PUBACK within {COMMAND_TIMEOUT_S} s")
        info = self.client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _segment_answer(
    *, sent: int, seconds: float, rate: float, acknowledged: int, cpu_s: float
) -> tuple[str, int, float, int, float, int]:
    """The background publisher's account of a segment (see :func:`_background_main`)."""
    behind = max(int(seconds * rate) - sent, 0)
    return ("segment", sent, seconds, acknowledged, cpu_s, behind)


def _background_main(
    connection: Connection, host: str, port: int, client_id: str, devices: list[DeviceSpec]
) -> None:
    """Background load process: publish at the rate last asked until ``("stop",)``.

    A :class:`~bench.mqtt_load.RawPublisher` (MQTT 3.1.1, QoS 1, PUBACKs pipelined) sends
    pre-encoded readings (:func:`background_tails`) round-robin over ``devices``, in chunks every
    :data:`PACING_TICK_S` at most. Requests: ``("rate", msg_per_s)`` starts a new segment at that
    rate and answers the previous segment's ``("segment", published, seconds, acknowledged,
    cpu_s, behind)`` (``behind``: messages due but not sent when the segment ended, the window
    being full); ``("stop",)`` answers ``("closed", acknowledged, failures)`` and ends.
    """
    try:
        rng = np.random.default_rng()
        tails = [background_tails(device, rng, BACKGROUND_POOL_PAYLOADS) for device in devices]
        topics = [topic_field(device.topic) for device in devices]
        publisher = RawPublisher(host, port, client_id, window=BACKGROUND_WINDOW_MESSAGES)
        seqs = [0] * len(devices)
        last_ms = [0] * len(devices)
        connection.send(("ready",))
        rate = 0.0
        segment_start = time.monotonic()
        segment_cpu_s = time.process_time()
        segment_acknowledged = 0
        segment_sent = 0
        index = 0
        while True:
            if connection.poll(0):
                request = connection.recv()
                if request[0] == "stop":
                    break
                now = time.monotonic()
                cpu_s = time.process_time()
                acknowledged = publisher.acknowledged
                connection.send(
                    _segment_answer(
                        sent=segment_sent,
                        seconds=now - segment_start,
                        rate=rate,
                        acknowledged=acknowledged - segment_acknowledged,
                        cpu_s=cpu_s - segment_cpu_s,
                    )
                )
                rate = float(request[1])
                segment_start, segment_sent = now, 0
                segment_cpu_s, segment_acknowledged = cpu_s, acknowledged
            due = int((time.monotonic() - segment_start) * rate)
            if due <= segment_sent:
                time.sleep(PACING_TICK_S)
                continue
            # In chunks, so that a publisher that cannot reach the rate still answers requests.
            now_ms = round(time.time() * MILLISECONDS_PER_SECOND)
            chunk = []
            for _ in range(min(due - segment_sent, PUBLISH_CHUNK_MESSAGES)):
                seq = seqs[index] + 1
                seqs[index] = seq
                ts_ms = max(now_ms, last_ms[index] + 1)
                last_ms[index] = ts_ms
                pool = tails[index]
                chunk.append((topics[index], background_head(ts_ms, seq) + pool[seq % len(pool)]))
                index = (index + 1) % len(devices)
            publisher.publish(chunk, timeout_s=COMMAND_TIMEOUT_S)
            segment_sent += len(chunk)
        publisher.close()
        failures = 0 if publisher.error is None else 1
        connection.send(("closed", publisher.acknowledged, failures))
    except Exception as error:  # noqa: BLE001 - any failure goes to the parent, which raises it
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


@dataclass
class _ProbeState:
    device_id: str
    topic: str
    alarm_id: str
    noise_ppm: float
    resolution_ppm: float
    floor_ppm: float
    device_time_s: float
    seq: int = 0
    step: int = -1  # index in the cycle; -1: quiet (between measurements)
    cycle: int = 0
    activation_sent: tuple[float, float] | None = None  # (monotonic, wall) [s]
    clear_sent: tuple[float, float] | None = None


class _ProbeRig:
    """The probe publisher and the alarm subscriber (in the probe process)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        token: str,
        site_id: str,
        probes: list[tuple[str, str, float, float, float]],
        level_ppm: float,
        cycle: tuple[ProbeStep, ...],
        period_s: float,
    ) -> None:
        now_s = time.time()
        self._lock = threading.Lock()
        self._probes = [
            _ProbeState(
                device_id=device_id,
                topic=device_topic(site_id, MessageKind.GAS, device_id),
                alarm_id=zone_alarm_id(zone, "suspected_leak"),
                noise_ppm=noise,
                resolution_ppm=resolution,
                floor_ppm=floor,
                device_time_s=now_s - PROBE_CLOCK_LEAD_S,
            )
            for device_id, zone, noise, resolution, floor in probes
        ]
        self._by_alarm = {probe.alarm_id: probe for probe in self._probes}
        self._level_ppm = level_ppm
        self._cycle = cycle
        self._period_s = period_s
        self._rng = np.random.default_rng()
        self._measuring = False
        self.published = 0
        self.samples: list[dict[str, Any]] = []
        self.missed = 0
        self.unmatched = 0
        self.other_alarms: dict[str, int] = {}
        self._alarm_prefix = f"{TOPIC_ROOT}/{site_id}/alarms/"
        self._subscribed = threading.Event()
        self.watcher = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench{token}-watcher",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.watcher.on_message = self._on_message
        self.watcher.on_subscribe = self._on_subscribe
        self.watcher.connect(host, port)
        self.watcher.subscribe(f"{self._alarm_prefix}#", qos=QOS_AT_LEAST_ONCE)
        self.watcher.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            raise TimeoutError("watcher: no SUBACK")
        self.publisher = _Publisher(host, port, f"bench{token}-probes")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="bench-probes", daemon=True)
        self._thread.start()

    def _on_subscribe(self, *args: Any) -> None:  # noqa: ARG002 - paho's callback signature
        self._subscribed.set()

    def _on_message(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002
        message: mqtt.MQTTMessage,
    ) -> None:
        arrived_s, arrived_wall_s = time.monotonic(), time.time()
        alarm_id = message.topic.removeprefix(self._alarm_prefix)
        body = json.loads(message.payload)
        event = body.get("event")
        with self._lock:
            probe = self._by_alarm.get(alarm_id)
            if probe is None:
                self.other_alarms[alarm_id] = self.other_alarms.get(alarm_id, 0) + 1
                return
            if event == EVENT_ACTIVATED:
                sent, probe.activation_sent = probe.activation_sent, None
            elif event == EVENT_CLEARED:
                sent, probe.clear_sent = probe.clear_sent, None
            else:
                return  # e.g. a restate or an escalation: not a transition of a cycle
            if sent is None:
                self.unmatched += 1
                return
            self.samples.append(
                {
                    "event": event,
                    "state": body.get("state"),
                    "probe": probe.device_id,
                    "cycle": probe.cycle,
                    "latency_s": arrived_s - sent[0],
                    "to_ingest_s": float(body["time_s"]) - sent[1],
                    "ingest_to_alarm_s": arrived_wall_s - float(body["time_s"]),
                }
            )

    def _next_reading(self, probe: _ProbeState) -> tuple[bytes, ProbeStep | None]:
        """The probe's next reading; the cycle step it is, or ``None`` for a quiet one."""
        if probe.step < 0 and self._measuring:
            probe.step = 0
        step = self._cycle[probe.step] if probe.step >= 0 else None
        probe.device_time_s += step.advance_s if step is not None else QUIET_STEP_S
        probe.seq += 1
        quiet = quiet_gas_ppm(self._rng, probe.noise_ppm, probe.resolution_ppm, probe.floor_ppm)
        high = self._level_ppm + quiet - BACKGROUND_METHANE_PPM
        body = {
            "ts": round(probe.device_time_s * MILLISECONDS_PER_SECOND),
            "seq": probe.seq,
            "ch4_ppm": high if step is not None and step.high else quiet,
            "c3h8_ppm": quiet_gas_ppm(
                self._rng,
                probe.noise_ppm,
                probe.resolution_ppm,
                probe.floor_ppm,
                BACKGROUND_PROPANE_PPM,
            ),
            "status": "ok",
        }
        return json.dumps(body).encode(), step

    def _main(self) -> None:
        tick_s = self._period_s / len(self._probes)
        next_s = time.monotonic()
        turn = 0
        while not self._stop.is_set():
            probe = self._probes[turn]
            turn = (turn + 1) % len(self._probes)
            with self._lock:
                payload, step = self._next_reading(probe)
                if step is not None:
                    stamp = (time.monotonic(), time.time())
                    if step.activates:
                        if probe.activation_sent is not None:
                            self.missed += 1
                        probe.cycle += 1
                        probe.activation_sent = stamp
                    elif step.clears:
                        if probe.clear_sent is not None:
                            self.missed += 1
                        probe.clear_sent = stamp
                    probe.step += 1
                    if probe.step == len(self._cycle):
                        probe.step = 0 if self._measuring else -1
                self.publisher.publish(probe.topic, payload)
                self.published += 1
            next_s += tick_s
            self._stop.wait(max(next_s - time.monotonic(), 0.0))

    def measure(self, samples: int, max_measure_s: float) -> dict[str, Any]:
        """Cycle until ``samples`` activations are in; then finish the cycles and drain."""
        with self._lock:
            self.samples, self.missed, self.unmatched = [], 0, 0
            published_before = self.published
            self._measuring = True
        started = time.monotonic()
        deadline = started + max_measure_s
        while time.monotonic() < deadline:
            with self._lock:
                if sum(s["event"] == EVENT_ACTIVATED for s in self.samples) >= samples:
                    break
            time.sleep(self._period_s)
        with self._lock:
            self._measuring = False
        grace = time.monotonic() + DRAIN_GRACE_S + self._period_s * len(self._cycle)
        while time.monotonic() < grace:
            with self._lock:
                idle = all(
                    p.step < 0 and p.activation_sent is None and p.clear_sent is None
                    for p in self._probes
                )
            if idle:
                break
            time.sleep(self._period_s)
        with self._lock:
            outstanding = sum(
                (p.activation_sent is not None) + (p.clear_sent is not None) for p in self._probes
            )
            for p in self._probes:
                p.activation_sent = p.clear_sent = None
            return {
                "samples": list(self.samples),
                "missed": self.missed + outstanding,
                "unmatched": self.unmatched,
                "probe_published": self.published - published_before,
                "seconds": time.monotonic() - started,
            }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(COMMAND_TIMEOUT_S)
        self.publisher.close()
        self.watcher.disconnect()
        self.watcher.loop_stop()


def _probe_main(connection: Connection, arguments: dict[str, Any]) -> None:
    """Probe process: quiet probes at once; ``("measure", samples, max_s)``; ``("stop",)``."""
    try:
        rig = _ProbeRig(**arguments)
        connection.send(("ready",))
        while True:
            request = connection.recv()
            if request[0] == "stop":
                break
            connection.send(("measured", rig.measure(request[1], request[2])))
        other = dict(rig.other_alarms)
        rig.close()
        connection.send(("closed", other, rig.published, rig.publisher.acknowledged))
    except Exception as error:  # noqa: BLE001 - any failure goes to the parent, which raises it
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


class _Child:
    """A spawned child process (a fresh interpreter) answering requests over a pipe."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=target, args=(child, *args), name=name, daemon=True)
        self._process.start()
        child.close()
        self.name = name
        self._closed: tuple[Any, ...] | None = None
        self.answer(CONNECT_TIMEOUT_S)

    def answer(self, timeout_s: float) -> tuple[Any, ...]:
        if not self._connection.poll(timeout_s):
            raise TimeoutError(f"{self.name} did not answer within {timeout_s} s")
        answer: tuple[Any, ...] = self._connection.recv()
        if answer[0] == "error":
            raise RuntimeError(f"{self.name}: {answer[1]}")
        return answer

    def ask(self, request: tuple[Any, ...], timeout_s: float) -> tuple[Any, ...]:
        self._connection.send(request)
        return self.answer(timeout_s)

    def close(self, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[Any, ...]:
        """Ask the child to stop; its last answer (``("closed", ...)``). Idempotent."""
        if self._closed is not None:
            return self._closed
        self._closed = ("closed",)
        try:
            self._closed = self.ask(("stop",), timeout_s)
            return self._closed
        finally:
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.kill()
            self._connection.close()


# --- the measured chain --------------------------------------------------------------------------


def _settings(
    broker: MosquittoProcess,
    directory: Path,
    site_id: str,
    layout: Layout,
    detection: dict[str, float | int] | None = None,
) -> Settings:
    # The single-process baseline as it was: every stored batch a step of its own, no rest.
    baseline = {"max_batch_records": 1, "max_busy_fraction": 1.0}
    return Settings(
        site_dir=SITE_DIR,
        broker={"url": broker.url, "client_id": f"ingest-{site_id}"},
        storage={
            "sqlite_path": directory / "telemetry.sqlite3",
            "frames_dir": directory / "frames",
        },
        ingest={"dead_letter_path": directory / "dead_letter.sqlite3"},
        alarms={
            "journal_path": directory / "journal.sqlite3",
            "incidents_path": directory / "incidents.sqlite3",
        },
        detection={"camera_analytics": False, "mqtt_client_id": f"detection-{site_id}"}
        | (baseline if layout is Layout.SINGLE else {})
        | (detection or {}),
        notifications={
            "mqtt_client_id": f"notifier-{site_id}",
            "log_path": directory / "notifications.sqlite3",
        },
    )


@dataclass(frozen=True)
class _Chain:
    """The measured chain in the layout of ``pipesentinel ingest`` (``ingest/workers.py``)."""

    storage: ServiceProcess | None  # the storing ingest in a child process (None: in-process)
    ingest: IngestService | None  # the storing ingest in this process (single-process layout)
    chain: DetectionChain
    # Neither of the two: the storing ingest runs on another host (Storage.ELSEWHERE).

    def counters(self) -> dict[str, int]:
        if self.storage is not None:
            storage = self.storage.counters()
        elif self.ingest is not None:
            storage = storage_counters(self.ingest)
        else:  # storage elsewhere: nothing stored here, no storing process's CPU time
            storage = dict.fromkeys(STORAGE_COUNTER_KEYS, 0)
        detection = detection_counters(self.chain)
        return {
            "ingest_accepted": storage["accepted"],
            "ingest_rejected": storage["rejected"],
            "ingest_duplicates": storage["duplicates"],
            "ingest_queue_overflows": storage["queue_overflows"],
            "ingest_batches": storage["batches_written"],
            "ingest_records_written": storage["records_written"],
            "ingest_unacknowledged": storage["unacknowledged"],
            "feed_accepted": detection["feed_accepted"],
            "feed_rejected": detection["feed_rejected"],
            "feed_duplicates": detection["feed_duplicates"],
            "feed_queue_overflows": detection["feed_queue_overflows"],
            "detection_batches": detection["detection_batches"],
            "detection_records": detection["detection_records"],
            "detection_errors": detection["detection_errors"],
            "alarm_events": detection["alarm_events"],
            # CPU time of the storing process (its own counter; in-process: -1, not separable)
            # and of this process (the detection chain, or the whole chain in 'single') [us].
            "storage_cpu_us": storage.get(PROCESS_CPU_KEY, -1),
            "detection_cpu_us": round(time.process_time() * MICROSECONDS_PER_SECOND),
        }


@contextlib.contextmanager
def _chain(
    broker: MosquittoProcess,
    site: Site,
    settings: Settings,
    *,
    layout: Layout,
    storage_at: Storage = Storage.HERE,
) -> Iterator[_Chain]:
    """The chain; :attr:`Layout.PROCESSES`: storage in a child process (or none), detection here."""
    topic_filters = (f"{TOPIC_ROOT}/{site.id}/#",)
    alarm_config = AlarmConfig.defaults_for(site)
    with contextlib.ExitStack() as stack:
        storage: ServiceProcess | None = None
        ingest: IngestService | None = None
        if layout is Layout.PROCESSES:
            if storage_at is Storage.HERE:
                storage = stack.enter_context(
                    ServiceProcess(
                        Role.STORAGE, settings=settings, site=site, topic_filters=topic_filters
                    )
                )
            chain = stack.enter_context(
                detection_chain(
                    settings=settings,
                    site=site,
                    alarm_config=alarm_config,
                    topic_filters=topic_filters,
                )
            )
            connected = chain.feed.wait_connected(CONNECT_TIMEOUT_S)
        else:  # the single-process baseline: detection takes the stored batches
            store = SQLiteStore(settings.storage.sqlite_path)
            stack.callback(store.close)
            notifier = stack.enter_context(
                Notifier(settings=settings.notifications, site_id=site.id, broker=settings.broker)
            )
            detection = stack.enter_context(
                DetectionService(
                    settings=settings, site=site, notifier=notifier, alarm_config=alarm_config
                )
            )
            ingest = stack.enter_context(
                IngestService(
                    settings=settings, sites=site, store=store, topic_filters=topic_filters
                )
            )
            ingest.subscribe(detection.submit)
            chain = DetectionChain(feed=ingest, detection=detection, notifier=notifier)
            connected = ingest.wait_connected(CONNECT_TIMEOUT_S)
        if not (connected and chain.notifier.wait_connected(CONNECT_TIMEOUT_S)):
            raise TimeoutError(f"the chain did not connect to {broker.url}")
        yield _Chain(storage=storage, ingest=ingest, chain=chain)


def _load_result(
    load: Load,
    *,
    measured: dict[str, Any],
    background: tuple[Any, ...],
    before: dict[str, int],
    after: dict[str, int],
    broker_cpu_s: float | None,
    probe_period_s: float,
    probes: int,
    stored_here: bool = True,
) -> dict[str, object]:
    samples = measured["samples"]
    activations = [s for s in samples if s["event"] == EVENT_ACTIVATED]
    clears = [s for s in samples if s["event"] == EVENT_CLEARED]
    _, background_sent, background_s, background_acked, background_cpu_s, behind = background
    seconds = float(measured["seconds"])
    probe_rate = measured["probe_published"] / seconds
    delta = {key: after[key] - before[key] for key in after}
    latency = percentiles_ms([s["latency_s"] for s in activations])
    p99_ms = latency["p99_ms"]
    offered_rate = background_sent / background_s + probe_rate
    offered_fraction = offered_rate / load.rate_msg_per_s
    # Every message published in the segment is accounted for by the end of the drain check in
    # run(): accepted + rejected (which includes overflows) by each subscriber.
    storage_messages = delta["ingest_accepted"] + delta["ingest_rejected"]
    feed_messages = delta["feed_accepted"] + delta["feed_rejected"]

    def per_message_us(cpu_us: float | None, messages: int) -> float | None:
        return None if cpu_us is None or cpu_us < 0 or messages <= 0 else cpu_us / messages

    result: dict[str, object] = {
        "target_rate_msg_per_s": load.rate_msg_per_s,
        "offered_rate_msg_per_s": offered_rate,
        "offered_fraction_of_target": offered_fraction,
        "offered_short": offered_fraction < OFFERED_FRACTION_MIN,
        "background_rate_msg_per_s": background_sent / background_s,
        "background_behind_messages": behind,
        "probe_rate_msg_per_s": probe_rate,
        "nominal_probe_rate_msg_per_s": probes / probe_period_s,
        "achieved_rate_msg_per_s": background_acked / background_s + probe_rate,
        "ingest_accepted_rate_msg_per_s": delta["ingest_accepted"] / background_s
        if stored_here
        else None,
        "detection_feed_rate_msg_per_s": delta["feed_accepted"] / background_s,
        "measure_s": seconds,
        "latency": latency,
        "clear": percentiles_ms([s["latency_s"] for s in clears]),
        "to_ingest": percentiles_ms([s["to_ingest_s"] for s in activations]),
        "ingest_to_alarm": percentiles_ms([s["ingest_to_alarm_s"] for s in activations]),
        "missed": measured["missed"],
        "unmatched": measured["unmatched"],
        "states": sorted({str(s["state"]) for s in samples}),
        "dropped_or_rejected": {
            "ingest_rejected": delta["ingest_rejected"],
            "ingest_queue_overflows": delta["ingest_queue_overflows"],
            "feed_queue_overflows": delta["feed_queue_overflows"],
            "detection_errors": delta["detection_errors"],
        },
        "cpu_us_per_message": {
            "storage_process": per_message_us(
                None if after["storage_cpu_us"] < 0 else delta["storage_cpu_us"], storage_messages
            ),
            "detection_process": per_message_us(delta["detection_cpu_us"], feed_messages),
            "broker": per_message_us(
                None if broker_cpu_s is None else broker_cpu_s * MICROSECONDS_PER_SECOND,
                background_sent,
            ),
            "load_generator": per_message_us(
                background_cpu_s * MICROSECONDS_PER_SECOND, background_sent
            ),
        },
        "ingest_mean_batch_records": delta["ingest_accepted"] / max(delta["ingest_batches"], 1)
        if stored_here
        else None,
        "detection_mean_batch_records": delta["detection_records"]
        / max(delta["detection_batches"], 1),
        "keeps_up": (
            min(delta["ingest_accepted"], delta["feed_accepted"])
            if stored_here
            else delta["feed_accepted"]
        )
        / background_s
        >= KEEP_UP_FRACTION * offered_rate,
        "goal_p99_ms": load.goal_p99_s * MILLISECONDS_PER_SECOND,
        "met": p99_ms is not None
        and p99_ms < load.goal_p99_s * MILLISECONDS_PER_SECOND
        and offered_fraction >= OFFERED_FRACTION_MIN,
    }
    return result


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` from ``/proc/<pid>/stat`` [s]; ``None`` if unknown.

    Fields 14 and 15 (utime, stime) in clock ticks (proc(5)).
    """
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on
    return (int(fields[PROC_STAT_UTIME]) + int(fields[PROC_STAT_STIME])) / os.sysconf("SC_CLK_TCK")


def _balance(
    chain: _Chain, *, published: int, timeout_s: float, stored_here: bool = True
) -> dict[str, object]:
    """Wait until both subscribers have taken all ``published`` messages; the counts then.

    Balanced when the storing ingest received every message (accepted + rejected, less the
    rejected redelivered copies), stored every accepted one (records written) and has none
    unacknowledged, and the detection feed received every message and detection ran on every
    record the feed accepted; overflows are counted in the rejections (and dead-lettered by the
    storing service), never lost. Waits while the counts move (a backlog is being worked off),
    at most ``timeout_s`` [s]. With ``stored_here`` false (the storing ingest runs on another
    host, :attr:`Storage.ELSEWHERE`) only the feed is checked and the storage counts are ``None``.
    """
    deadline = time.monotonic() + timeout_s
    progress_s = time.monotonic()
    last: dict[str, int] = {}
    while True:
        counts = chain.counters()
        storage_received = (
            counts["ingest_accepted"] + counts["ingest_rejected"] - counts["ingest_duplicates"]
        )
        feed_received = (
            counts["feed_accepted"] + counts["feed_rejected"] - counts["feed_duplicates"]
        )
        balanced = (
            (
                not stored_here
                or (
                    storage_received == published
                    and counts["ingest_records_written"] == counts["ingest_accepted"]
                    and counts["ingest_unacknowledged"] == 0
                )
            )
            and feed_received == published
            and counts["detection_records"] == counts["feed_accepted"]
        )
        now = time.monotonic()
        moved = {key: counts[key] for key in BALANCE_PROGRESS_KEYS} != last
        if moved:
            last = {key: counts[key] for key in BALANCE_PROGRESS_KEYS}
            progress_s = now
        if balanced or now > deadline or now - progress_s > BALANCE_STALL_S:
            break
        time.sleep(BALANCE_POLL_S)
    storage: dict[str, int | None] = {
        "storage_received": storage_received,
        "storage_accepted": counts["ingest_accepted"],
        "storage_records_written": counts["ingest_records_written"],
        "storage_rejected": counts["ingest_rejected"],
        "storage_duplicates": counts["ingest_duplicates"],
        "storage_queue_overflows": counts["ingest_queue_overflows"],
        "storage_unacknowledged": counts["ingest_unacknowledged"],
    }
    return {
        "published_acknowledged_by_broker": published,
        "storage_checked": stored_here,
        **(storage if stored_here else dict.fromkeys(storage)),
        "feed_received": feed_received,
        "feed_accepted": counts["feed_accepted"],
        "feed_rejected": counts["feed_rejected"],
        "feed_duplicates": counts["feed_duplicates"],
        "feed_queue_overflows": counts["feed_queue_overflows"],
        "detection_records": counts["detection_records"],
        "detection_errors": counts["detection_errors"],
        "balanced": balanced,
    }


def _notes(results: dict[str, object]) -> list[str]:
    notes = [
        "Wall-clock latencies on a shared machine; the chain, the publishers and Mosquitto share "
        "its CPUs. p99 of about 100 samples is close to the second largest value.",
        "A probe activation whose alarm has not arrived when the probe's next activation is "
        "published (one cycle, 4 probe periods later) is counted in 'missed', not in the "
        "percentiles; with missed > 0 the percentiles are lower bounds.",
    ]
    for name, figures in results.items():
        if isinstance(figures, dict) and figures["offered_short"]:
            notes.append(
                f"{name}: the load generator offered only "
                f"{figures['offered_rate_msg_per_s']:.0f} of {figures['target_rate_msg_per_s']:.0f}"
                f" msg/s (< {OFFERED_FRACTION_MIN:.0%}): not the load asked, reported as not met."
            )
        if isinstance(figures, dict) and not figures["keeps_up"]:
            accepted = figures["ingest_accepted_rate_msg_per_s"]
            if accepted is None:  # storage elsewhere: the feed is all there is here
                accepted = figures["detection_feed_rate_msg_per_s"]
            notes.append(
                f"{name}: the chain does not keep up (ingest accepted "
                f"{min(accepted, figures['detection_feed_rate_msg_per_s']):.0f} msg/s of "
                f"{figures['offered_rate_msg_per_s']:.0f} published): a backlog builds in the "
                "broker and the latency grows with the measurement's duration (see to_ingest)."
            )
    return notes


def run(
    samples: int = DEFAULT_SAMPLES,
    *,
    loads: Sequence[Load] = LOADS,
    probes: int = DEFAULT_PROBES,
    probe_period_s: float = DEFAULT_PROBE_PERIOD_S,
    settle_s: float = RESTART_SETTLE_S + SETTLE_MARGIN_S,
    ramp_s: float = DEFAULT_RAMP_S,
    max_measure_s: float = DEFAULT_MAX_MEASURE_S,
    broker: MosquittoProcess | None = None,
    layout: Layout | str = Layout.PROCESSES,
    storage: Storage | str | None = None,
    elsewhere_loads: Sequence[Load] = ELSEWHERE_LOADS,
    detection: dict[str, float | int] | None = None,
) -> dict[str, object]:
    """Measure the alarm latency; by default (``python -m bench``) with storage here and elsewhere.

    With ``storage`` ``None`` (layout ``processes`` only): the run with the storing ingest here
    at ``loads``, and under ``"storage_elsewhere"`` a second run (a fresh chain) with it
    elsewhere at ``elsewhere_loads``. Otherwise one run, in the layout given. The other
    parameters are those of :func:`run_one`.
    """
    options: dict[str, Any] = {
        "probes": probes,
        "probe_period_s": probe_period_s,
        "settle_s": settle_s,
        "ramp_s": ramp_s,
        "max_measure_s": max_measure_s,
        "broker": broker,
        "layout": layout,
        "detection": detection,
    }
    if storage is not None or Layout(layout) is Layout.SINGLE:
        return run_one(samples, loads=loads, storage=storage or Storage.HERE, **options)
    result = run_one(samples, loads=loads, storage=Storage.HERE, **options)
    result["storage_elsewhere"] = run_one(
        samples, loads=elsewhere_loads, storage=Storage.ELSEWHERE, **options
    )
    return result


def run_one(
    samples: int = DEFAULT_SAMPLES,
    *,
    loads: Sequence[Load] = LOADS,
    probes: int = DEFAULT_PROBES,
    probe_period_s: float = DEFAULT_PROBE_PERIOD_S,
    settle_s: float = RESTART_SETTLE_S + SETTLE_MARGIN_S,
    ramp_s: float = DEFAULT_RAMP_S,
    max_measure_s: float = DEFAULT_MAX_MEASURE_S,
    broker: MosquittoProcess | None = None,
    layout: Layout | str = Layout.PROCESSES,
    storage: Storage | str = Storage.HERE,
    detection: dict[str, float | int] | None = None,
) -> dict[str, object]:
    """Measure the alarm latency at each load in one layout; see the module docstring.

    Parameters
    ----------
    samples
        Alarm activations measured per load [-].
    loads
        The load levels, measured in this order on one running chain [-].
    probes
        Probe detectors, the first of each of the first ``probes`` zones [-].
    probe_period_s
        Wall time between two readings of one probe [s].
    settle_s
        Time with the first load's background and quiet probes before measuring [s]; the
        engine clears no alarm during its first 30 s.
    ramp_s
        Time each load runs before it is measured [s].
    max_measure_s
        A load's measurement stops after this even with fewer samples [s].
    broker
        A running Mosquitto to use; by default one is started and stopped here.
    layout
        The process layout measured (:class:`Layout`).
    storage
        Where the storing ingest runs (:class:`Storage`); ``elsewhere``: no storing ingest is
        started (layout ``processes`` only) and the balance covers the detection feed only.
    detection
        Overrides of ``settings.detection`` (e.g. ``max_busy_fraction``), on top of the
        layout's.
    """
    if samples < 1 or not loads:
        raise ValueError(f"samples must be >= 1 and loads not empty, got {samples}, {loads!r}")
    storage = Storage(storage)
    if storage is Storage.ELSEWHERE and Layout(layout) is Layout.SINGLE:
        raise ValueError("storage elsewhere needs layout 'processes' (single stores in-process)")
    stored_here = storage is Storage.HERE
    started = time.perf_counter()
    token = uuid.uuid4().hex[:RUN_TOKEN_CHARS]
    site = dataclasses.replace(load_site(SITE_DIR), id=f"bench{token}")
    if not 1 <= probes <= len(site.zones):
        raise ValueError(f"probes must be 1 to {len(site.zones)} (one per zone), got {probes}")
    probe_detectors = [detectors[0] for detectors in list(site.zones.values())[:probes]]
    probe_ids = [d.id for d in probe_detectors]
    devices = background_devices(site, probe_ids)
    probe_rate = probes / probe_period_s
    results: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        directory = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="pipesentinel-bench-alarm-"))
        )
        if broker is None:
            broker = stack.enter_context(MosquittoProcess())
        settings = _settings(broker, directory, site.id, Layout(layout), detection)
        chain = stack.enter_context(
            _chain(broker, site, settings, layout=Layout(layout), storage_at=storage)
        )
        background = _Child(
            "bench-alarm-background",
            _background_main,
            (broker.host, broker.port, f"bench{token}-background", devices),
        )
        stack.callback(background.close)
        background.ask(("rate", max(loads[0].rate_msg_per_s - probe_rate, 0.0)), COMMAND_TIMEOUT_S)
        probe_arguments = {
            "host": broker.host,
            "port": broker.port,
            "token": token,
            "site_id": site.id,
            "probes": [(d.id, d.zone, *_gas_noise_ppm(site, d.id)) for d in probe_detectors],
            "level_ppm": probe_level_ppm(settings),
            "cycle": probe_cycle(),
            "period_s": probe_period_s,
        }
        prober = _Child("bench-alarm-probes", _probe_main, (probe_arguments,))
        stack.callback(prober.close)
        time.sleep(settle_s)
        for load in loads:
            rate = max(load.rate_msg_per_s - probe_rate, 0.0)
            background.ask(("rate", rate), COMMAND_TIMEOUT_S)
            time.sleep(ramp_s)
            background.ask(("rate", rate), COMMAND_TIMEOUT_S)  # a new segment: the measured one
            before = chain.counters()
            broker_cpu_before_s = process_cpu_s(broker.pid)
            _, measured = prober.ask(
                ("measure", samples, max_measure_s),
                max_measure_s + DRAIN_GRACE_S + COMMAND_TIMEOUT_S,
            )
            segment = background.ask(("rate", rate), COMMAND_TIMEOUT_S)
            broker_cpu_after_s = process_cpu_s(broker.pid)
            after = chain.counters()
            results[load.name] = _load_result(
                load,
                measured=measured,
                background=segment,
                before=before,
                after=after,
                broker_cpu_s=None
                if broker_cpu_before_s is None or broker_cpu_after_s is None
                else broker_cpu_after_s - broker_cpu_before_s,
                probe_period_s=probe_period_s,
                probes=probes,
                stored_here=stored_here,
            )
        _, other_alarms, probe_published, probe_acknowledged = prober.close()
        closed = background.close()
        background_acknowledged, background_failures = closed[1], closed[2]
        balance = _balance(
            chain,
            published=background_acknowledged + probe_acknowledged,
            timeout_s=BALANCE_TIMEOUT_S,
            stored_here=stored_here,
        )
        balance["probe_published"] = probe_published
    return {
        "benchmark": "alarm latency: sensor publish -> alarm state on MQTT (real Mosquitto)",
        "loads": results,
        "balance": balance,
        "met": bool(balance["balanced"])
        and all(bool(r["met"]) for r in results.values() if isinstance(r, dict)),
        "samples_per_load": samples,
        "layout": Layout(layout).value,
        "storage": storage.value,
        "probes": probe_ids,
        "probe_alarms": [zone_alarm_id(d.zone, "suspected_leak") for d in probe_detectors],
        "probe_period_s": probe_period_s,
        "probe_level_ppm": probe_level_ppm(settings),
        "background_devices": len(devices),
        "background_acknowledged": background_acknowledged,
        "background_publish_failures": background_failures,
        "other_alarm_messages": other_alarms,
        "settle_s": settle_s,
        "ramp_s": ramp_s,
        "ingest_settings": {
            "batch_linger_s": settings.ingest.batch_linger_s,
            "batch_max_messages": settings.ingest.batch_max_messages,
            "queue_capacity_messages": settings.ingest.queue_capacity_messages,
        },
        "detection_settings": {
            "max_batch_records": settings.detection.max_batch_records,
            "max_busy_fraction": settings.detection.max_busy_fraction,
        },
        "lel_basis": settings.lel_basis.value,
        "method": METHOD,
        "notes": _notes(results),
        "elapsed_s": time.perf_counter() - started,
        "paho_mqtt": paho.mqtt.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.alarm_latency [options]`` (``--help``): print the JSON result."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.alarm_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--probes", type=int, default=DEFAULT_PROBES)
    parser.add_argument("--probe-period-s", type=float, default=DEFAULT_PROBE_PERIOD_S)
    parser.add_argument(
        "--layout", choices=[layout.value for layout in Layout], default=Layout.PROCESSES.value
    )
    parser.add_argument(
        "--storage",
        choices=[*(storage.value for storage in Storage), "both"],
        default=Storage.HERE.value,
        help="where the storing ingest runs: here (default), elsewhere (another host: not "
        "started, the detection host's own figures), both (here, then elsewhere at 100x: what "
        "python -m bench runs)",
    )
    parser.add_argument("--loads", nargs="+", choices=[load.name for load in LOADS], default=None)
    parser.add_argument("--max-busy-fraction", type=float, default=None)
    parser.add_argument("--max-batch-records", type=int, default=None)
    args = parser.parse_args(argv)
    loads = LOADS if args.loads is None else tuple(x for x in LOADS if x.name in args.loads)
    detection: dict[str, float | int] = {}
    if args.max_busy_fraction is not None:
        detection["max_busy_fraction"] = args.max_busy_fraction
    if args.max_batch_records is not None:
        detection["max_batch_records"] = args.max_batch_records
    result = run(
        args.samples,
        loads=loads,
        probes=args.probes,
        probe_period_s=args.probe_period_s,
        layout=args.layout,
        storage=None if args.storage == "both" else args.storage,
        elsewhere_loads=loads if args.loads is not None else ELSEWHERE_LOADS,
        detection=detection or None,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
