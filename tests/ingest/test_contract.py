"""Offline tests of the MQTT contract: decoding, validation and the sequence tracker (no broker)."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipesentinel.ingest import contract
from pipesentinel.ingest.contract import (
    FRAME_PREFIX,
    GAS_OVER_RANGE_FACTOR,
    SIGMA_THETA_MAX_DEG,
    Decoder,
    ImageFormat,
    SequenceTracker,
    decode,
    encode_frame_envelope,
    image_info,
    message_kind,
)
from pipesentinel.ingest.records import (
    CameraChannel,
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    Rejection,
    RejectReason,
    WindReading,
)
from pipesentinel.ingest.topics import (
    MessageKind,
    TopicError,
    device_topic,
    is_service_output,
    parse_topic,
    service_status_topic,
    subscription_filter,
)
from pipesentinel.settings import IngestSettings
from pipesentinel.site import (
    Camera,
    DetectorPlacement,
    Gas,
    GasDetector,
    GeoOrigin,
    Site,
    WindStation,
)
from pipesentinel.units import PPM

SITE_ID = "testsite"
GAS_ID = "G01"
WIND_ID = "W01"
CAMERA_ID = "C01"
FULL_SCALE_PPM = 10_000.0
LASER_RANGE_M = 150.0
RECEIVED_S = 1_700_000_000.0
TS_MS = 1_700_000_000_000
LIMITS = IngestSettings()

GAS_TOPIC = device_topic(SITE_ID, MessageKind.GAS, GAS_ID)
WIND_TOPIC = device_topic(SITE_ID, MessageKind.WIND, WIND_ID)
LASER_TOPIC = device_topic(SITE_ID, MessageKind.LASER, CAMERA_ID)
VISIBLE_TOPIC = device_topic(SITE_ID, MessageKind.VISIBLE, CAMERA_ID)
THERMAL_TOPIC = device_topic(SITE_ID, MessageKind.THERMAL, CAMERA_ID)
STATUS_TOPIC = device_topic(SITE_ID, MessageKind.STATUS, GAS_ID)


def make_site() -> Site:
    return Site(
        id=SITE_ID,
        name="Test site",
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
                full_scale_ppm=FULL_SCALE_PPM,
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
                laser_range_m=LASER_RANGE_M,
                frame_period_s=1.0,
                resolution_px=(64, 48),
            ),
        ),
    )


SITE = make_site()


def gas_payload(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "ts": TS_MS,
        "seq": 7,
        "ch4_ppm": 2500.0,
        "c3h8_ppm": 0,
        "status": "ok",
    }
    body.update(overrides)
    return json.dumps({key: value for key, value in body.items() if value is not ...}).encode()


def wind_payload(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "ts": TS_MS,
        "seq": 3,
        "speed_m_per_s": 4.5,
        "direction_deg": 270.0,
        "sigma_theta_deg": 15.0,
        "temperature_c": 21.5,
        "pressure_hpa": 1013.25,
    }
    body.update(overrides)
    return json.dumps({key: value for key, value in body.items() if value is not ...}).encode()


def laser_payload(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"ts": TS_MS, "seq": 11, "path_integral_ppm_m": 350.0, "status": "ok"}
    body.update(overrides)
    return json.dumps({key: value for key, value in body.items() if value is not ...}).encode()


def jpeg_image(width: int = 64, height: int = 48) -> bytes:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 1] = np.arange(width, dtype=np.uint8)[np.newaxis, :]
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    return encoded.tobytes()


def thermal_png(width: int = 32, height: int = 24, *, eight_bit: bool = False) -> bytes:
    if eight_bit:
        pixels = np.full((height, width), 200, dtype=np.uint8)
    else:
        pixels = np.full((height, width), 29315, dtype=np.uint16)  # 293.15 K in centi-kelvin
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def frame_payload(
    image: bytes,
    *,
    image_format: ImageFormat,
    width: int,
    height: int,
    ts_ms: int = TS_MS,
    seq: int = 1,
) -> bytes:
    return encode_frame_envelope(
        ts_ms=ts_ms,
        seq=seq,
        width_px=width,
        height_px=height,
        image_format=image_format,
        image=image,
    )


def visible_payload() -> bytes:
    return frame_payload(jpeg_image(), image_format=ImageFormat.JPEG, width=64, height=48)


def thermal_payload() -> bytes:
    return frame_payload(thermal_png(), image_format=ImageFormat.PNG, width=32, height=24)


VISIBLE_PAYLOAD = visible_payload()
THERMAL_PAYLOAD = thermal_payload()


def run(topic: str, payload: bytes, received_s: float = RECEIVED_S) -> Record | Rejection:
    return decode(topic, payload, received_s, sites=SITE, limits=LIMITS)


def rejected(topic: str, payload: bytes) -> Rejection:
    result = run(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.topic == topic
    assert result.payload == payload
    assert result.received_time_s == RECEIVED_S
    return result


# --- topics ---------------------------------------------------------------------------------------


def test_topics_round_trip() -> None:
    for kind in MessageKind:
        topic = device_topic("s1", kind, "D9")
        parsed = parse_topic(topic)
        assert (parsed.site_id, parsed.kind, parsed.device_id) == ("s1", kind, "D9")
    assert VISIBLE_TOPIC == "pipesentinel/v1/testsite/camera/C01/visible"
    assert GAS_TOPIC == "pipesentinel/v1/testsite/gas/G01"
    assert subscription_filter() == "pipesentinel/v1/#"
    assert service_status_topic("ingest-1") == "pipesentinel/service/ingest-1/status"
    assert not service_status_topic("x").startswith("pipesentinel/v1/")


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("other/v1/testsite/gas/G01", "does not start with"),
        ("pipesentinel/v1/testsite/gas", "levels"),
        ("pipesentinel/v1/testsite/gas/G01/extra/more", "levels"),
        ("pipesentinel/v1//gas/G01", "empty site"),
        ("pipesentinel/v1/testsite/gas/", "empty device"),
        ("pipesentinel/v1/testsite/smoke/G01", "unknown message type"),
        ("pipesentinel/v1/testsite/camera/C01/infrared", "unknown message type"),
        ("pipesentinel/v1/testsite/camera/C01", "unknown message type"),
        ("pipesentinel/v1/testsite/gas/G01/visible", "unknown message type"),
        ("pipesentinel/v1/testsite/gas/+", "wildcard"),
    ],
)
def test_bad_topics_name_the_problem(topic: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment):
        parse_topic(topic)
    result = rejected(topic, gas_payload())
    assert result.reason is RejectReason.BAD_TOPIC
    assert fragment in result.detail


# --- valid messages -------------------------------------------------------------------------------


def test_gas_reading_is_converted_to_si() -> None:
    result = run(GAS_TOPIC, gas_payload(fault_code="E12"))
    assert isinstance(result, GasReading)
    # Hand-worked: 2500 ppm = 2500e-6 mol/mol; ts 1 700 000 000 000 ms = 1 700 000 000 s.
    assert result.methane_mole_fraction == pytest.approx(2.5e-3, rel=1e-15)
    assert result.propane_mole_fraction == 0.0
    assert result.time_s == 1_700_000_000.0
    assert (result.site_id, result.device_id, result.seq) == (SITE_ID, GAS_ID, 7)
    assert result.status is DeviceStatus.OK
    assert result.fault_code == "E12"
    assert result.received_time_s == RECEIVED_S
    assert isinstance(run(GAS_TOPIC, gas_payload()), GasReading)


def test_wind_report_is_converted_to_si() -> None:
    result = run(WIND_TOPIC, wind_payload())
    assert isinstance(result, WindReading)
    # Hand-worked: 270 deg = 3 pi / 2 rad; 15 deg = pi / 12; 21.5 degC = 294.65 K; 1013.25 hPa.
    assert result.direction_from_rad == pytest.approx(1.5 * math.pi, rel=1e-15)
    assert result.sigma_theta_rad == pytest.approx(math.pi / 12.0, rel=1e-15)
    assert result.temperature_k == pytest.approx(294.65, rel=1e-15)
    assert result.pressure_pa == pytest.approx(101_325.0, rel=1e-15)
    assert result.speed_m_per_s == 4.5
    bare = run(WIND_TOPIC, wind_payload(temperature_c=..., pressure_hpa=...))
    assert isinstance(bare, WindReading)
    assert bare.temperature_k is None
    assert bare.pressure_pa is None


def test_laser_reading_is_converted_to_si() -> None:
    result = run(LASER_TOPIC, laser_payload(status="warmup"))
    assert isinstance(result, LaserReading)
    assert result.path_integral_mole_fraction_m == pytest.approx(350e-6, rel=1e-15)
    assert result.status is DeviceStatus.WARMUP


def test_visible_and_thermal_frames_are_accepted() -> None:
    image = jpeg_image()
    visible = run(
        VISIBLE_TOPIC, frame_payload(image, image_format=ImageFormat.JPEG, width=64, height=48)
    )
    assert isinstance(visible, CameraFrame)
    assert visible.channel is CameraChannel.VISIBLE
    assert (visible.width_px, visible.height_px, visible.image) == (64, 48, image)
    png = thermal_png()
    thermal = run(
        THERMAL_TOPIC, frame_payload(png, image_format=ImageFormat.PNG, width=32, height=24, seq=9)
    )
    assert isinstance(thermal, CameraFrame)
    assert thermal.channel is CameraChannel.THERMAL
    assert (thermal.width_px, thermal.height_px, thermal.seq) == (32, 24, 9)
    # The stored image decodes back to the centi-kelvin pixels.
    pixels = cv2.imdecode(np.frombuffer(thermal.image, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None
    assert pixels.dtype == np.uint16
    assert int(pixels[0, 0]) == 29315


def test_status_messages() -> None:
    online = run(STATUS_TOPIC, b"online")
    offline = run(device_topic(SITE_ID, MessageKind.STATUS, CAMERA_ID), b"offline")
    assert isinstance(online, DeviceStatusChange)
    assert online.online
    assert isinstance(offline, DeviceStatusChange)
    assert not offline.online
    assert offline.device_id == CAMERA_ID


def test_sites_can_be_a_mapping() -> None:
    result = decode(GAS_TOPIC, gas_payload(), RECEIVED_S, sites={SITE_ID: SITE}, limits=LIMITS)
    assert isinstance(result, GasReading)
    other = decode(
        GAS_TOPIC.replace(SITE_ID, "elsewhere"),
        gas_payload(),
        RECEIVED_S,
        sites={SITE_ID: SITE},
        limits=LIMITS,
    )
    assert isinstance(other, Rejection)
    assert other.reason is RejectReason.UNKNOWN_SITE


def test_image_info_reads_headers_of_real_encoders() -> None:
    jpeg = image_info(jpeg_image(40, 30), ImageFormat.JPEG)
    assert (jpeg.width_px, jpeg.height_px, jpeg.bit_depth, jpeg.grayscale) == (40, 30, 8, False)
    png = image_info(thermal_png(17, 5), ImageFormat.PNG)
    assert (png.width_px, png.height_px, png.bit_depth, png.grayscale) == (17, 5, 16, True)
    with pytest.raises(ValueError, match="PNG signature"):
        image_info(b"not an image", ImageFormat.PNG)


# --- rejections -----------------------------------------------------------------------------------


def _too_big_json() -> bytes:
    return gas_payload(fault_code="x" * LIMITS.max_json_payload_bytes)


def _corrupt_ihdr_crc() -> bytes:
    png = bytearray(thermal_png())
    png[29] ^= 0xFF
    return frame_payload(bytes(png), image_format=ImageFormat.PNG, width=32, height=24)


def _envelope(magic: bytes, version: int, reserved: int, header: bytes, image: bytes) -> bytes:
    return FRAME_PREFIX.pack(magic, version, reserved, len(header)) + header + image


_HEADER = b'{"ts":1700000000000,"seq":1,"width_px":32,"height_px":24,"format":"png"}'

REJECTION_CASES: list[tuple[str, str, bytes, RejectReason, str]] = [
    (
        "unknown site",
        GAS_TOPIC.replace(SITE_ID, "nowhere"),
        gas_payload(),
        RejectReason.UNKNOWN_SITE,
        "nowhere",
    ),
    (
        "unknown device",
        GAS_TOPIC.replace(GAS_ID, "G99"),
        gas_payload(),
        RejectReason.UNKNOWN_DEVICE,
        "G99",
    ),
    (
        "wind id on gas topic",
        device_topic(SITE_ID, MessageKind.GAS, WIND_ID),
        gas_payload(),
        RejectReason.DEVICE_KIND_MISMATCH,
        "wind device",
    ),
    (
        "gas id on camera topic",
        device_topic(SITE_ID, MessageKind.LASER, GAS_ID),
        laser_payload(),
        RejectReason.DEVICE_KIND_MISMATCH,
        "gas device",
    ),
    (
        "oversized json",
        GAS_TOPIC,
        _too_big_json(),
        RejectReason.OVERSIZED,
        "exceeds the limit of 4096",
    ),
    ("bad utf-8", GAS_TOPIC, b'{"ts": "\xff"}', RejectReason.BAD_ENCODING, "UTF-8"),
    ("not json", GAS_TOPIC, b"ch4=5", RejectReason.BAD_JSON, "not valid JSON"),
    ("truncated json", GAS_TOPIC, gas_payload()[:-3], RejectReason.BAD_JSON, "not valid JSON"),
    ("duplicate key", GAS_TOPIC, b'{"ts":1,"ts":2}', RejectReason.BAD_JSON, "duplicate key 'ts'"),
    ("deep nesting", GAS_TOPIC, b"[" * 4000 + b"]" * 4000, RejectReason.OVERSIZED, "exceeds"),
    (
        "deep nesting within size",
        GAS_TOPIC,
        b"[" * 2000 + b"]" * 2000,
        RejectReason.BAD_JSON,
        "nested too deeply",
    ),
    (
        "4000-digit ts",
        GAS_TOPIC,
        gas_payload(ts=10**3999),
        RejectReason.TIMESTAMP_IN_FUTURE,
        "far",
    ),
    ("array", GAS_TOPIC, b"[1, 2]", RejectReason.NOT_AN_OBJECT, "JSON array"),
    ("string", GAS_TOPIC, b'"ok"', RejectReason.NOT_AN_OBJECT, "JSON string"),
    ("missing field", GAS_TOPIC, gas_payload(status=...), RejectReason.MISSING_FIELD, "'status'"),
    ("unknown field", GAS_TOPIC, gas_payload(co_ppm=1), RejectReason.UNKNOWN_FIELD, "'co_ppm'"),
    (
        "bool is not a number",
        GAS_TOPIC,
        gas_payload(ch4_ppm=True),
        RejectReason.WRONG_TYPE,
        "'ch4_ppm': expected a number, got boolean",
    ),
    (
        "string is not a number",
        GAS_TOPIC,
        gas_payload(ch4_ppm="12"),
        RejectReason.WRONG_TYPE,
        "got string '12'",
    ),
    (
        "null is not a number",
        WIND_TOPIC,
        wind_payload(temperature_c=None),
        RejectReason.WRONG_TYPE,
        "'temperature_c'",
    ),
    (
        "float ts",
        GAS_TOPIC,
        gas_payload(ts=1.7e12),
        RejectReason.WRONG_TYPE,
        "'ts': expected an integer",
    ),
    ("bool seq", GAS_TOPIC, gas_payload(seq=False), RejectReason.WRONG_TYPE, "'seq'"),
    (
        "NaN literal",
        GAS_TOPIC,
        gas_payload(ch4_ppm=float("nan")),
        RejectReason.NOT_FINITE,
        "'ch4_ppm': nan",
    ),
    (
        "Infinity literal",
        WIND_TOPIC,
        wind_payload(speed_m_per_s=float("inf")),
        RejectReason.NOT_FINITE,
        "'speed_m_per_s'",
    ),
    (
        "-Infinity literal",
        GAS_TOPIC,
        gas_payload(c3h8_ppm=float("-inf")),
        RejectReason.NOT_FINITE,
        "'c3h8_ppm'",
    ),
    (
        "overflowing float",
        GAS_TOPIC,
        gas_payload().replace(b"2500.0", b"1e999"),
        RejectReason.NOT_FINITE,
        "'ch4_ppm'",
    ),
    (
        "huge int value",
        GAS_TOPIC,
        gas_payload().replace(b"2500.0", b"1" + b"0" * 400),
        RejectReason.OUT_OF_RANGE,
        "too large",
    ),
    (
        "below what a 4-20 mA loop can express",
        GAS_TOPIC,
        gas_payload(ch4_ppm=-2600.0),  # -26 % of the 10 000 ppm full scale; -25 % is the limit
        RejectReason.OUT_OF_RANGE,
        "'ch4_ppm': -2600.0 ppm",
    ),
    (
        "beyond full scale",
        GAS_TOPIC,
        gas_payload(c3h8_ppm=FULL_SCALE_PPM * GAS_OVER_RANGE_FACTOR + 1),
        RejectReason.OUT_OF_RANGE,
        "full scale",
    ),
    ("negative seq", GAS_TOPIC, gas_payload(seq=-1), RejectReason.OUT_OF_RANGE, "'seq'"),
    ("seq beyond int64", GAS_TOPIC, gas_payload(seq=2**63), RejectReason.OUT_OF_RANGE, "'seq'"),
    (
        "wind too fast",
        WIND_TOPIC,
        wind_payload(speed_m_per_s=80.0),
        RejectReason.OUT_OF_RANGE,
        "'speed_m_per_s'",
    ),
    (
        "negative wind",
        WIND_TOPIC,
        wind_payload(speed_m_per_s=-0.1),
        RejectReason.OUT_OF_RANGE,
        "'speed_m_per_s'",
    ),
    (
        "direction 360",
        WIND_TOPIC,
        wind_payload(direction_deg=360.0),
        RejectReason.OUT_OF_RANGE,
        "'direction_deg'",
    ),
    (
        "negative direction",
        WIND_TOPIC,
        wind_payload(direction_deg=-5),
        RejectReason.OUT_OF_RANGE,
        "'direction_deg'",
    ),
    (
        "sigma theta too wide",
        WIND_TOPIC,
        wind_payload(sigma_theta_deg=104.0),
        RejectReason.OUT_OF_RANGE,
        "'sigma_theta_deg'",
    ),
    (
        "too cold",
        WIND_TOPIC,
        wind_payload(temperature_c=-100.0),
        RejectReason.OUT_OF_RANGE,
        "'temperature_c'",
    ),
    (
        "pressure in Pa",
        WIND_TOPIC,
        wind_payload(pressure_hpa=101325.0),
        RejectReason.OUT_OF_RANGE,
        "'pressure_hpa'",
    ),
    (
        "laser beyond pure gas",
        LASER_TOPIC,
        laser_payload(path_integral_ppm_m=1e6 * LASER_RANGE_M * 1.01),
        RejectReason.OUT_OF_RANGE,
        "pure gas",
    ),
    (
        "bad status",
        GAS_TOPIC,
        gas_payload(status="OK"),
        RejectReason.BAD_STATUS,
        "'OK' is not one of",
    ),
    (
        "status not a string",
        LASER_TOPIC,
        laser_payload(status=1),
        RejectReason.WRONG_TYPE,
        "'status'",
    ),
    (
        "fault code too long",
        GAS_TOPIC,
        gas_payload(fault_code="E" * 65),
        RejectReason.BAD_STATUS,
        "'fault_code'",
    ),
    (
        "fault code control char",
        GAS_TOPIC,
        gas_payload(fault_code="E\n1"),
        RejectReason.BAD_STATUS,
        "'fault_code'",
    ),
    (
        "fault code not string",
        GAS_TOPIC,
        gas_payload(fault_code=12),
        RejectReason.WRONG_TYPE,
        "'fault_code'",
    ),
    (
        "ts in seconds",
        GAS_TOPIC,
        gas_payload(ts=TS_MS // 1000),
        RejectReason.TIMESTAMP_TOO_OLD,
        "'ts'",
    ),
    (
        "ts in microseconds",
        GAS_TOPIC,
        gas_payload(ts=TS_MS * 1000),
        RejectReason.TIMESTAMP_IN_FUTURE,
        "'ts'",
    ),
    (
        "ts just too far ahead",
        GAS_TOPIC,
        gas_payload(ts=TS_MS + 300_001),
        RejectReason.TIMESTAMP_IN_FUTURE,
        "+300.001 s",
    ),
    (
        "ts just too old",
        GAS_TOPIC,
        gas_payload(ts=TS_MS - 7 * 86_400_000 - 1),
        RejectReason.TIMESTAMP_TOO_OLD,
        "'ts'",
    ),
    ("huge ts", GAS_TOPIC, gas_payload(ts=10**400), RejectReason.TIMESTAMP_IN_FUTURE, "far"),
    ("status empty", STATUS_TOPIC, b"", RejectReason.BAD_STATUS, "empty payload"),
    ("status json", STATUS_TOPIC, b'{"online": true}', RejectReason.BAD_STATUS, "neither"),
    ("status with newline", STATUS_TOPIC, b"online\n", RejectReason.BAD_STATUS, "neither"),
    ("envelope too short", THERMAL_TOPIC, b"PSIF", RejectReason.BAD_ENVELOPE, "shorter than"),
    (
        "envelope magic",
        THERMAL_TOPIC,
        _envelope(b"PSIX", 1, 0, _HEADER, thermal_png()),
        RejectReason.BAD_ENVELOPE,
        "magic",
    ),
    (
        "envelope version",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 2, 0, _HEADER, thermal_png()),
        RejectReason.BAD_ENVELOPE,
        "version 2",
    ),
    (
        "envelope reserved",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 1, 7, _HEADER, thermal_png()),
        RejectReason.BAD_ENVELOPE,
        "reserved byte 7",
    ),
    (
        "header past end",
        THERMAL_TOPIC,
        struct.pack(">4sBBH", b"PSIF", 1, 0, 900) + _HEADER,
        RejectReason.BAD_ENVELOPE,
        "runs past",
    ),
    (
        "header length 0",
        THERMAL_TOPIC,
        struct.pack(">4sBBH", b"PSIF", 1, 0, 0) + _HEADER,
        RejectReason.BAD_ENVELOPE,
        "header length 0",
    ),
    (
        "header not json",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 1, 0, b"{ts:1}", thermal_png()),
        RejectReason.BAD_ENVELOPE,
        "envelope header is not valid JSON",
    ),
    (
        "header missing field",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 1, 0, b'{"ts":1700000000000,"seq":1}', thermal_png()),
        RejectReason.MISSING_FIELD,
        "envelope header missing",
    ),
    (
        "header float width",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 1, 0, _HEADER.replace(b"32", b"32.0"), thermal_png()),
        RejectReason.WRONG_TYPE,
        "'width_px'",
    ),
    (
        "header zero height",
        THERMAL_TOPIC,
        _envelope(b"PSIF", 1, 0, _HEADER.replace(b"24", b"0"), thermal_png()),
        RejectReason.OUT_OF_RANGE,
        "'height_px'",
    ),
    (
        "jpeg on thermal",
        THERMAL_TOPIC,
        frame_payload(jpeg_image(), image_format=ImageFormat.JPEG, width=64, height=48),
        RejectReason.BAD_ENVELOPE,
        "expected 'png'",
    ),
    (
        "png on visible",
        VISIBLE_TOPIC,
        frame_payload(thermal_png(), image_format=ImageFormat.PNG, width=32, height=24),
        RejectReason.BAD_ENVELOPE,
        "expected 'jpeg'",
    ),
    (
        "jpeg bytes labelled png",
        THERMAL_TOPIC,
        frame_payload(jpeg_image(), image_format=ImageFormat.PNG, width=64, height=48),
        RejectReason.BAD_IMAGE,
        "PNG signature",
    ),
    (
        "truncated png",
        THERMAL_TOPIC,
        frame_payload(thermal_png()[:-20], image_format=ImageFormat.PNG, width=32, height=24),
        RejectReason.BAD_IMAGE,
        "IEND",
    ),
    ("corrupt IHDR", THERMAL_TOPIC, _corrupt_ihdr_crc(), RejectReason.BAD_IMAGE, "CRC"),
    (
        "8-bit thermal",
        THERMAL_TOPIC,
        frame_payload(
            thermal_png(eight_bit=True), image_format=ImageFormat.PNG, width=32, height=24
        ),
        RejectReason.BAD_IMAGE,
        "8-bit grayscale",
    ),
    (
        "size mismatch",
        THERMAL_TOPIC,
        frame_payload(thermal_png(), image_format=ImageFormat.PNG, width=24, height=32),
        RejectReason.BAD_IMAGE,
        "32x24 px but the envelope header says 24x32",
    ),
    (
        "truncated jpeg",
        VISIBLE_TOPIC,
        frame_payload(jpeg_image()[:-100], image_format=ImageFormat.JPEG, width=64, height=48),
        RejectReason.BAD_IMAGE,
        "EOI",
    ),
    (
        "not a jpeg",
        VISIBLE_TOPIC,
        frame_payload(b"GIF89a" + b"\xff\xd9", image_format=ImageFormat.JPEG, width=64, height=48),
        RejectReason.BAD_IMAGE,
        "SOI",
    ),
    (
        "jpeg without SOF",
        VISIBLE_TOPIC,
        frame_payload(
            b"\xff\xd8\xff\xda\x00\x02\xff\xd9", image_format=ImageFormat.JPEG, width=64, height=48
        ),
        RejectReason.BAD_IMAGE,
        "no frame header",
    ),
    (
        "frame too old",
        VISIBLE_TOPIC,
        frame_payload(jpeg_image(), image_format=ImageFormat.JPEG, width=64, height=48, ts_ms=0),
        RejectReason.TIMESTAMP_TOO_OLD,
        "envelope header field 'ts'",
    ),
]


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "fragment"),
    [case[1:] for case in REJECTION_CASES],
    ids=[case[0] for case in REJECTION_CASES],
)
def test_rejections_name_what_was_wrong(
    topic: str, payload: bytes, reason: RejectReason, fragment: str
) -> None:
    result = rejected(topic, payload)
    assert result.reason is reason, result.detail
    assert fragment in result.detail


def test_oversized_image_is_rejected_before_parsing() -> None:
    limits = IngestSettings(max_image_payload_bytes=1024)
    payload = visible_payload() + b"\x00" * 1024
    result = decode(VISIBLE_TOPIC, payload, RECEIVED_S, sites=SITE, limits=limits)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.OVERSIZED
    assert "visible payload" in result.detail


def test_integer_beyond_the_parser_digit_limit_is_bad_json() -> None:
    # CPython refuses to parse integers of more than 4300 digits (sys.int_info); reachable only
    # with a JSON size limit raised above the default 4096 bytes.
    limits = IngestSettings(max_json_payload_bytes=10_000)
    payload = b'{"ts": ' + b"9" * 5000 + b"}"
    result = decode(GAS_TOPIC, payload, RECEIVED_S, sites=SITE, limits=limits)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.BAD_JSON
    assert "not valid JSON" in result.detail


def test_every_decoder_reason_is_exercised() -> None:
    produced_elsewhere = {
        RejectReason.DUPLICATE,  # SequenceTracker
        RejectReason.REPLAYED_SEQ,  # SequenceTracker
        RejectReason.QUEUE_OVERFLOW,  # the ingest service
        RejectReason.DECODER_ERROR,  # the ingest service, when the decoder itself fails
        RejectReason.STORE_REFUSED,  # the ingest service, when a store refuses a record
    }
    exercised = {case[3] for case in REJECTION_CASES} | {RejectReason.BAD_TOPIC}
    assert exercised == set(RejectReason) - produced_elsewhere


def test_limits_at_the_boundaries_are_accepted() -> None:
    edge_cases = [
        (GAS_TOPIC, gas_payload(ts=TS_MS + 300_000)),
        (GAS_TOPIC, gas_payload(ts=TS_MS - 7 * 86_400_000)),
        (GAS_TOPIC, gas_payload(ch4_ppm=FULL_SCALE_PPM * GAS_OVER_RANGE_FACTOR, seq=0)),
        (GAS_TOPIC, gas_payload(seq=2**63 - 1)),
        (WIND_TOPIC, wind_payload(speed_m_per_s=75, direction_deg=359.999)),
        (WIND_TOPIC, wind_payload(sigma_theta_deg=SIGMA_THETA_MAX_DEG, direction_deg=0)),
        (LASER_TOPIC, laser_payload(path_integral_ppm_m=1e6 * LASER_RANGE_M)),
        (GAS_TOPIC, gas_payload(fault_code="~" * 64)),
    ]
    for topic, payload in edge_cases:
        result = run(topic, payload)
        assert not isinstance(result, Rejection), result.detail


# --- properties -----------------------------------------------------------------------------------

topics = st.one_of(
    st.text(max_size=80),
    st.builds(
        "/".join,
        st.lists(
            st.sampled_from(
                ["pipesentinel", "v1", SITE_ID, "gas", "wind", "camera", "status", GAS_ID,
                 WIND_ID, CAMERA_ID, "visible", "thermal", "laser", "", "+", "#"]
            ),
            max_size=7,
        ),
    ),
)  # fmt: skip
valid_topics = st.sampled_from(
    [GAS_TOPIC, WIND_TOPIC, LASER_TOPIC, VISIBLE_TOPIC, THERMAL_TOPIC, STATUS_TOPIC]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=6)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["ts", "seq", "ch4_ppm", "c3h8_ppm", "status", "fault_code", "speed_m_per_s",
     "direction_deg", "sigma_theta_deg", "temperature_c", "pressure_hpa",
     "path_integral_ppm_m", "width_px", "height_px", "format"]
) | st.text(max_size=10)  # fmt: skip


def _assert_record_or_rejection(topic: str, payload: bytes, result: Record | Rejection) -> None:
    if isinstance(result, Rejection):
        assert isinstance(result.reason, RejectReason)
        assert result.detail
        assert result.topic == topic
        assert result.payload == payload
    else:
        assert isinstance(
            result, GasReading | WindReading | LaserReading | CameraFrame | DeviceStatusChange
        )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics | valid_topics, payload=st.binary(max_size=600))
def test_decode_never_raises_on_arbitrary_bytes(topic: str, payload: bytes) -> None:
    _assert_record_or_rejection(topic, payload, run(topic, payload))


# One decoder for every example: its topic cache is reused across them, as in the service.
SHARED_DECODER = Decoder(sites=SITE, limits=LIMITS)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics | valid_topics, payload=st.binary(max_size=600))
def test_decoder_gives_what_decode_gives(topic: str, payload: bytes) -> None:
    expected = run(topic, payload)
    assert SHARED_DECODER(topic, payload, RECEIVED_S) == expected
    assert SHARED_DECODER(topic, payload, RECEIVED_S) == expected  # the topic is cached now


def test_decoder_agrees_with_decode_on_every_case_first_and_cached() -> None:
    decoder = Decoder(sites={SITE_ID: SITE}, limits=LIMITS)
    cases = [(case[1], case[2]) for case in REJECTION_CASES] + [
        (GAS_TOPIC, gas_payload()),
        (WIND_TOPIC, wind_payload()),
        (LASER_TOPIC, laser_payload()),
        (VISIBLE_TOPIC, VISIBLE_PAYLOAD),
        (THERMAL_TOPIC, THERMAL_PAYLOAD),
        (STATUS_TOPIC, b"online"),
    ]
    for _ in range(2):
        for topic, payload in cases:
            assert decoder(topic, payload, RECEIVED_S) == run(topic, payload)
    # Cached: exactly the topics that resolve to a device and kind, whatever their payloads.
    valid = {GAS_TOPIC, WIND_TOPIC, LASER_TOPIC, VISIBLE_TOPIC, THERMAL_TOPIC, STATUS_TOPIC}
    assert {topic for topic, _ in cases if decoder.is_device_topic(topic)} == valid
    assert decoder.cached_topics == len(valid)


def test_decoder_topic_cache_is_bounded() -> None:
    decoder = Decoder(sites=SITE, limits=LIMITS, max_cached_topics=2)
    # Endless distinct topics that are not device topics are never cached.
    for index in range(1000):
        bogus = f"pipesentinel/v1/{SITE_ID}/gas/X{index}"
        assert isinstance(decoder(bogus, gas_payload(), RECEIVED_S), Rejection)
    assert decoder.cached_topics == 0
    # Valid topics beyond the bound clear the cache: never more than the bound.
    for topic in (GAS_TOPIC, WIND_TOPIC, LASER_TOPIC, STATUS_TOPIC):
        decoder(topic, b"online", RECEIVED_S)
        assert 1 <= decoder.cached_topics <= 2
    assert decoder.is_device_topic(STATUS_TOPIC)
    assert not decoder.is_device_topic(GAS_TOPIC)  # cleared when the third topic came
    with pytest.raises(ValueError, match="max_cached_topics"):
        Decoder(sites=SITE, limits=LIMITS, max_cached_topics=0)


def test_decoder_takes_a_copy_of_the_sites_mapping() -> None:
    sites = {SITE_ID: SITE}
    decoder = Decoder(sites=sites, limits=LIMITS)
    sites.clear()  # the caller's mapping changing later does not change the decoder
    assert isinstance(decoder(GAS_TOPIC, gas_payload(), RECEIVED_S), GasReading)


VALID_JSON_BODIES: dict[str, dict[str, Any]] = {
    GAS_TOPIC: json.loads(gas_payload()),
    WIND_TOPIC: json.loads(wind_payload()),
    LASER_TOPIC: json.loads(laser_payload()),
}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from(sorted(VALID_JSON_BODIES)),
    changes=st.dictionaries(field_names, json_values, max_size=3),
    removals=st.sets(field_names, max_size=2),
    received_s=st.floats(min_value=0.0, max_value=4e9),
)
def test_decode_never_raises_on_damaged_json_objects(
    topic: str, changes: dict[str, Any], removals: set[str], received_s: float
) -> None:
    body = {**VALID_JSON_BODIES[topic], **changes}
    for name in removals:
        body.pop(name, None)
    payload = json.dumps(body).encode()
    result = run(topic, payload, received_s)
    _assert_record_or_rejection(topic, payload, result)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=st.sampled_from(["visible", "thermal"]),
    position=st.integers(min_value=0),
    replacement=st.binary(min_size=1, max_size=4),
    cut=st.integers(min_value=0),
)
def test_decode_never_raises_on_damaged_frames(
    channel: str, position: int, replacement: bytes, cut: int
) -> None:
    topic = VISIBLE_TOPIC if channel == "visible" else THERMAL_TOPIC
    original = VISIBLE_PAYLOAD if channel == "visible" else THERMAL_PAYLOAD
    damaged = bytearray(original)
    index = position % len(damaged)
    damaged[index : index + len(replacement)] = replacement
    damaged_bytes = bytes(damaged[: len(damaged) - cut % len(damaged)])
    _assert_record_or_rejection(topic, damaged_bytes, run(topic, damaged_bytes))


@given(
    ch4_ppm=st.floats(min_value=0.0, max_value=FULL_SCALE_PPM * GAS_OVER_RANGE_FACTOR),
    c3h8_ppm=st.integers(min_value=0, max_value=int(FULL_SCALE_PPM)),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    skew_ms=st.integers(min_value=-7 * 86_400_000, max_value=300_000),
)
def test_valid_gas_readings_round_trip_to_ppm(
    ch4_ppm: float, c3h8_ppm: int, seq: int, skew_ms: int
) -> None:
    payload = gas_payload(ch4_ppm=ch4_ppm, c3h8_ppm=c3h8_ppm, seq=seq, ts=TS_MS + skew_ms)
    result = run(GAS_TOPIC, payload)
    assert isinstance(result, GasReading)
    assert PPM.from_si(result.methane_mole_fraction) == pytest.approx(ch4_ppm, rel=1e-12, abs=1e-9)
    assert PPM.from_si(result.propane_mole_fraction) == pytest.approx(c3h8_ppm, rel=1e-12)
    assert result.seq == seq
    assert result.time_s == pytest.approx((TS_MS + skew_ms) / 1000.0, abs=1e-6)


# --- sequence tracking ----------------------------------------------------------------------------


def _gas(seq: int, ts_ms: int, device_id: str = GAS_ID) -> GasReading:
    return GasReading(
        site_id=SITE_ID,
        device_id=device_id,
        time_s=ts_ms / 1000.0,
        seq=seq,
        methane_mole_fraction=0.0,
        propane_mole_fraction=0.0,
        status=DeviceStatus.OK,
        fault_code=None,
        received_time_s=RECEIVED_S,
    )


def _admit(tracker: SequenceTracker, record: Record) -> RejectReason | None:
    rejection = tracker.admit(record, topic=GAS_TOPIC, payload=b"raw")
    if rejection is None:
        return None
    assert rejection.payload == b"raw"
    assert rejection.topic == GAS_TOPIC
    return rejection.reason


def test_tracker_detects_redelivery_replay_and_reboot() -> None:
    tracker = SequenceTracker()
    assert _admit(tracker, _gas(10, TS_MS)) is None
    assert _admit(tracker, _gas(11, TS_MS + 1000)) is None
    assert _admit(tracker, _gas(11, TS_MS + 1000)) is RejectReason.DUPLICATE
    assert _admit(tracker, _gas(10, TS_MS)) is RejectReason.DUPLICATE
    assert _admit(tracker, _gas(9, TS_MS - 1000)) is RejectReason.REPLAYED_SEQ
    assert _admit(tracker, _gas(11, TS_MS + 500)) is RejectReason.REPLAYED_SEQ
    assert tracker.reboots == 0
    # The counter restarts from 0 with a later clock: a reboot, accepted.
    assert _admit(tracker, _gas(0, TS_MS + 5000)) is None
    assert tracker.reboots == 1
    assert tracker.last_reboot is not None
    assert (tracker.last_reboot.previous_seq, tracker.last_reboot.seq) == (11, 0)
    assert _admit(tracker, _gas(1, TS_MS + 6000)) is None
    # A replay of a pre-reboot message is neither new nor later: rejected.
    assert _admit(tracker, _gas(11, TS_MS + 1000)) is RejectReason.DUPLICATE
    assert _admit(tracker, _gas(1, TS_MS + 6000)) is RejectReason.DUPLICATE


def test_tracker_keeps_streams_apart_and_ignores_status() -> None:
    tracker = SequenceTracker()
    assert _admit(tracker, _gas(5, TS_MS)) is None
    assert _admit(tracker, _gas(5, TS_MS, device_id="G02")) is None
    laser = LaserReading(
        site_id=SITE_ID,
        device_id=GAS_ID,
        time_s=TS_MS / 1000.0,
        seq=5,
        path_integral_mole_fraction_m=0.0,
        status=DeviceStatus.OK,
        received_time_s=RECEIVED_S,
    )
    assert _admit(tracker, laser) is None
    status = DeviceStatusChange(
        site_id=SITE_ID, device_id=GAS_ID, online=True, received_time_s=RECEIVED_S
    )
    assert _admit(tracker, status) is None
    assert _admit(tracker, status) is None
    assert len(tracker) == 3


def test_tracker_forgets_beyond_its_window_and_then_calls_it_a_replay() -> None:
    tracker = SequenceTracker(recent_per_stream=4)
    for seq in range(10):
        assert _admit(tracker, _gas(seq, TS_MS + seq)) is None
    assert _admit(tracker, _gas(6, TS_MS + 6)) is RejectReason.DUPLICATE
    assert _admit(tracker, _gas(5, TS_MS + 5)) is RejectReason.REPLAYED_SEQ
    with pytest.raises(ValueError, match="recent_per_stream"):
        SequenceTracker(recent_per_stream=0)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=60))
def test_tracker_never_accepts_the_same_identity_twice_in_its_window(
    messages: list[tuple[int, int]],
) -> None:
    tracker = SequenceTracker(recent_per_stream=1000)
    accepted: set[tuple[int, int]] = set()
    for seq, ts_ms in messages:
        if _admit(tracker, _gas(seq, TS_MS + ts_ms)) is None:
            assert (seq, ts_ms) not in accepted
            accepted.add((seq, ts_ms))


def test_message_kind_of_records() -> None:
    visible = run(VISIBLE_TOPIC, visible_payload())
    thermal = run(THERMAL_TOPIC, thermal_payload())
    wind = run(WIND_TOPIC, wind_payload())
    assert not isinstance(visible, Rejection)
    assert not isinstance(thermal, Rejection)
    assert not isinstance(wind, Rejection)
    assert message_kind(visible) is MessageKind.VISIBLE
    assert message_kind(thermal) is MessageKind.THERMAL
    assert message_kind(wind) is MessageKind.WIND
    assert message_kind(_gas(1, TS_MS)) is MessageKind.GAS


@pytest.mark.parametrize("ch4_ppm", [-1.0, -125.0, -2500.0])
def test_negative_zero_drift_and_under_range_are_kept_for_sensor_health(ch4_ppm: float) -> None:
    # NAMUR NE 43: a transmitter reports below zero (drift, under-range faults) down to 0 mA on a
    # 4-20 mA loop = -25 % of full scale; such readings are evidence, not garbage.
    result = run(GAS_TOPIC, gas_payload(ch4_ppm=ch4_ppm))
    assert isinstance(result, GasReading), result
    assert result.methane_mole_fraction == pytest.approx(ch4_ppm * 1e-6)


def test_service_output_topics_are_recognised() -> None:
    assert is_service_output("pipesentinel/v1/wanli/alarms")
    assert is_service_output("pipesentinel/v1/wanli/incidents/I1")
    assert not is_service_output("pipesentinel/v1/wanli/gas/alarms")
    assert not is_service_output("pipesentinel/v1//alarms")
    assert not is_service_output("other/v1/wanli/alarms")


# The one-pass common case of the gas decoder must agree with the full checks on everything: a
# value either side of every limit, wrong types, extra and missing fields, NaN and infinities.
_GAS_LIMIT_PPM = (-0.25 * FULL_SCALE_PPM, 1.2 * FULL_SCALE_PPM)  # NE 43 floor, 20 % over-range
_gas_numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([*_GAS_LIMIT_PPM, *(math.nextafter(v, 0.0) for v in _GAS_LIMIT_PPM)])
    | st.sampled_from([math.nextafter(v, math.copysign(math.inf, v)) for v in _GAS_LIMIT_PPM])
    | st.booleans()
    | st.text(max_size=3)
    | st.none()
)
_ts_ms = st.integers(TS_MS - 8 * 86_400_000, TS_MS + 400_000) | st.booleans() | st.floats()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    ts=_ts_ms,
    seq=st.integers(-2, 2**64) | st.floats() | st.booleans(),
    ch4=_gas_numbers,
    c3h8=_gas_numbers,
    status=st.sampled_from(["ok", "fault", "warmup", "OK", "", 1]),
    extra=st.sampled_from([{}, {"fault_code": "E1"}, {"x": 1}, {"ts": ...}, {"status": ...}]),
)
def test_the_gas_fast_path_agrees_with_the_full_checks(
    *, ts: object, seq: object, ch4: object, c3h8: object, status: object, extra: dict[str, Any]
) -> None:
    fields = {"ts": ts, "seq": seq, "ch4_ppm": ch4, "c3h8_ppm": c3h8, "status": status} | extra
    payload = gas_payload(**fields)
    detector = SITE.device(GAS_ID)
    assert isinstance(detector, GasDetector)
    try:
        obj = contract._load_object(payload, what="payload", structural=RejectReason.BAD_JSON)
        full: object = contract._checked_gas_reading(SITE_ID, detector, obj, RECEIVED_S, LIMITS)
    except contract._InvalidError as invalid:
        full = (invalid.reason, invalid.detail)
    result = decode(GAS_TOPIC, payload, RECEIVED_S, sites=SITE, limits=LIMITS)
    if isinstance(result, Rejection):
        assert (result.reason, result.detail) == full
    else:
        assert result == full


def test_a_plain_gas_reading_takes_the_fast_path() -> None:
    obj = json.loads(gas_payload())
    detector = SITE.device(GAS_ID)
    assert isinstance(detector, GasDetector)
    fast = contract._plain_gas_reading(SITE_ID, detector, obj, RECEIVED_S, LIMITS)
    # Hand-worked: ts 1.7e12 ms = 1.7e9 s; 2500 ppm = 2.5e-3 mol/mol; 0 ppm propane.
    assert fast == GasReading(
        site_id=SITE_ID,
        device_id=GAS_ID,
        time_s=1_700_000_000.0,
        seq=7,
        methane_mole_fraction=2.5e-3,
        propane_mole_fraction=0.0,
        status=DeviceStatus.OK,
        fault_code=None,
        received_time_s=RECEIVED_S,
    )
    with_fault = json.loads(gas_payload(status="fault", fault_code="E1"))
    assert contract._plain_gas_reading(SITE_ID, detector, with_fault, RECEIVED_S, LIMITS) is None
