"""Validated telemetry records: what the MQTT edge hands to storage and detection.

Every record is frozen and in SI units (time in seconds since the Unix epoch, gas amounts as mole
fractions [mol mol-1], angles in radians, temperature in K, pressure in Pa). Conversion from the
device units of the MQTT contract (ppm, degrees, degC, hPa) happens once, in
:mod:`pipesentinel.ingest.contract`, through :mod:`pipesentinel.units`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceStatus(StrEnum):
    """Self-reported state of a gas detector or laser channel."""

    OK = "ok"
    FAULT = "fault"
    WARMUP = "warmup"
    CALIBRATION = "calibration"


class CameraChannel(StrEnum):
    """Image channels of a tri-spectrum camera."""

    VISIBLE = "visible"  # JPEG
    THERMAL = "thermal"  # 16-bit PNG, centi-kelvin per pixel


@dataclass(frozen=True, slots=True)
class GasReading:
    """One reading of a point gas detector."""

    site_id: str
    device_id: str
    time_s: float
    seq: int
    methane_mole_fraction: float
    propane_mole_fraction: float
    status: DeviceStatus
    fault_code: str | None
    received_time_s: float


@dataclass(frozen=True, slots=True)
class WindReading:
    """One averaged report of a wind station; direction is where the wind blows FROM."""

    site_id: str
    device_id: str
    time_s: float
    seq: int
    speed_m_per_s: float
    direction_from_rad: float
    sigma_theta_rad: float
    temperature_k: float | None
    pressure_pa: float | None
    received_time_s: float


@dataclass(frozen=True, slots=True)
class LaserReading:
    """One reading of a camera's laser methane detector: the path integral along its beam."""

    site_id: str
    device_id: str
    time_s: float
    seq: int
    path_integral_mole_fraction_m: float
    status: DeviceStatus
    received_time_s: float


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One encoded camera frame (JPEG for visible, 16-bit PNG in centi-kelvin for thermal)."""

    site_id: str
    device_id: str
    channel: CameraChannel
    time_s: float
    seq: int
    width_px: int
    height_px: int
    image: bytes
    received_time_s: float


@dataclass(frozen=True, slots=True)
class DeviceStatusChange:
    """A device's retained online/offline status (set by its last will when it drops)."""

    site_id: str
    device_id: str
    online: bool
    received_time_s: float


Record = GasReading | WindReading | LaserReading | CameraFrame | DeviceStatusChange


class RejectReason(StrEnum):
    """Why an MQTT message was rejected. Every rejection is counted and dead-lettered."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_KIND_MISMATCH = "device_kind_mismatch"
    OVERSIZED = "oversized"
    BAD_ENCODING = "bad_encoding"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_STATUS = "bad_status"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    DUPLICATE = "duplicate"
    REPLAYED_SEQ = "replayed_seq"
    BAD_ENVELOPE = "bad_envelope"
    BAD_IMAGE = "bad_image"
    QUEUE_OVERFLOW = "queue_overflow"
    # The two below mean a bug, not a bad device: the raw bytes are kept so that the message can
    # be replayed once it is fixed. The decoder raised, or the store refused a validated record.
    DECODER_ERROR = "decoder_error"
    STORE_REFUSED = "store_refused"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message, kept with its raw bytes for inspection."""

    reason: RejectReason
    detail: str  # names what was wrong, e.g. "field 'ch4_ppm': expected a number, got 'abc'"
    topic: str
    payload: bytes
    received_time_s: float
