"""The telemetry-store interface shared by the SQLite and InfluxDB backends.

Stored fields are the SI fields of the records in :mod:`pipesentinel.ingest.records`, named as
there (``methane_mole_fraction``, ``speed_m_per_s``, ...). Camera images are not time series: they
go to a :class:`FrameStore`; the telemetry store keeps their metadata only.

Both backends keep times to the millisecond (:data:`TIME_RESOLUTION_S`): a record's identity is
(site, device[, camera channel], time in ms), and writing the same identity again replaces it, so
a retried batch is idempotent. Downsampling buckets start at ``start_s`` (rounded to the ms), not
at epoch multiples of ``every_s``; see ``docs/storage.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from pipesentinel.ingest.records import (
    CameraChannel,
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)


class Aggregate(StrEnum):
    """How a downsampling bucket is reduced."""

    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"


TIME_RESOLUTION_S = 1e-3  # times are stored as integer milliseconds since the Unix epoch
MILLISECONDS_PER_SECOND = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# InfluxDB keeps int64 nanoseconds: 1677-09-21 .. 2262-04-11 ("Line protocol" reference,
# timestamp range). Both backends accept the same range, so they store the same records.
MIN_TIME_S = INT64_MIN / 1e9
MAX_TIME_S = INT64_MAX / 1e9


def time_to_ms(time_s: float) -> int:
    """``time_s`` [s] as the integer milliseconds the stores keep (round half to even) [ms]."""
    return round(time_s * MILLISECONDS_PER_SECOND)


# Numeric fields by record kind, as stored and queried.
GAS_FIELDS = ("methane_mole_fraction", "propane_mole_fraction")
WIND_FIELDS = (
    "speed_m_per_s",
    "direction_from_rad",
    "sigma_theta_rad",
    "temperature_k",
    "pressure_pa",
)
LASER_FIELDS = ("path_integral_mole_fraction_m",)
NUMERIC_FIELDS = GAS_FIELDS + WIND_FIELDS + LASER_FIELDS


class RecordKind(StrEnum):
    """What a stored record is; the SQLite table and the InfluxDB measurement bear this name."""

    GAS = "gas"
    WIND = "wind"
    LASER = "laser"
    CAMERA_FRAME = "camera_frame"
    DEVICE_STATUS = "device_status"


FIELDS_BY_KIND: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.GAS: GAS_FIELDS,
    RecordKind.WIND: WIND_FIELDS,
    RecordKind.LASER: LASER_FIELDS,
}
KIND_OF_FIELD: dict[str, RecordKind] = {
    field: kind for kind, fields in FIELDS_BY_KIND.items() for field in fields
}


_KIND_OF_TYPE: dict[type, RecordKind] = {
    GasReading: RecordKind.GAS,
    WindReading: RecordKind.WIND,
    LaserReading: RecordKind.LASER,
    CameraFrame: RecordKind.CAMERA_FRAME,
    DeviceStatusChange: RecordKind.DEVICE_STATUS,
}


def record_kind(record: Record) -> RecordKind:
    """The kind of ``record``; ``TypeError`` naming the type for anything else."""
    kind = _KIND_OF_TYPE.get(type(record))
    if kind is None:
        raise TypeError(f"not a telemetry record: {type(record).__name__}")
    return kind


def numeric_values(record: GasReading | WindReading | LaserReading) -> dict[str, float | None]:
    """The stored numeric fields of a reading as floats (``None`` where the device sent none).

    Raises ``ValueError`` naming the device and field for a value that is not finite: records are
    validated at the MQTT edge, so this is a bug upstream, and a store never drops it silently
    (SQLite would turn NaN into NULL, InfluxDB's line protocol would omit it).
    """
    values: dict[str, float | None] = {}
    for field in FIELDS_BY_KIND[record_kind(record)]:
        raw = getattr(record, field)
        if raw is None:
            values[field] = None
            continue
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(
                f"{record.site_id}/{record.device_id} at {record.time_s}: field {field!r} "
                f"is not finite ({raw!r})"
            )
        values[field] = value
    return values


def check_storable(record: Record) -> RecordKind:
    """The kind of ``record`` once its times and counters fit both backends.

    ``TypeError`` for something that is not a record; ``ValueError`` naming the device for a time
    that is not finite or outside :data:`MIN_TIME_S` .. :data:`MAX_TIME_S`, or a ``seq`` that
    is not a 64-bit integer. Numeric fields are checked by :func:`numeric_values`.
    """
    kind = record_kind(record)
    times = {"received_time_s": record.received_time_s}
    if not isinstance(record, DeviceStatusChange):
        times["time_s"] = record.time_s
        if not INT64_MIN <= record.seq <= INT64_MAX:
            raise ValueError(f"{record.site_id}/{record.device_id}: seq {record.seq} out of range")
    for name, time_s in times.items():
        if not (math.isfinite(time_s) and MIN_TIME_S <= time_s <= MAX_TIME_S):
            raise ValueError(
                f"{record.site_id}/{record.device_id}: {name} {time_s!r} is not a time between "
                f"{MIN_TIME_S} and {MAX_TIME_S} s"
            )
    return kind


def resolve_range(*, start_s: float, end_s: float) -> tuple[int, int]:
    """The half-open range ``[start_s, end_s)`` [s] in integer milliseconds [ms].

    ``ValueError`` naming the bound when one is not finite or ``end_s < start_s``.
    """
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if end_s < start_s:
        raise ValueError(f"end_s ({end_s}) is before start_s ({start_s})")
    return time_to_ms(start_s), time_to_ms(end_s)


@dataclass(frozen=True)
class ResolvedQuery:
    """A :meth:`TelemetryStore.query` checked and converted to the stores' integer milliseconds."""

    kind: RecordKind
    field: str
    start_ms: int
    end_ms: int
    every_ms: int | None
    aggregate: Aggregate

    @property
    def offset_ms(self) -> int:
        """Where bucket boundaries fall modulo ``every_ms``: ``start_ms mod every_ms`` [ms]."""
        return 0 if self.every_ms is None else self.start_ms % self.every_ms


def resolve_query(
    *,
    field: str,
    start_s: float,
    end_s: float,
    every_s: float | None,
    aggregate: Aggregate | str,
) -> ResolvedQuery:
    """Check the arguments of a query and convert its times to milliseconds.

    Parameters
    ----------
    field
        A name from :data:`NUMERIC_FIELDS`; ``ValueError`` naming it otherwise.
    start_s, end_s
        Half-open time range, seconds since the Unix epoch [s]; ``end_s < start_s`` is an error.
    every_s
        Bucket length [s], at least :data:`TIME_RESOLUTION_S`, or ``None`` for raw readings.
    aggregate
        An :class:`Aggregate` or its value (``"mean"``, ...).
    """
    kind = KIND_OF_FIELD.get(field)
    if kind is None:
        raise ValueError(f"unknown field {field!r}; stored fields are {', '.join(NUMERIC_FIELDS)}")
    start_ms, end_ms = resolve_range(start_s=start_s, end_s=end_s)
    try:
        reduce = Aggregate(aggregate)
    except ValueError:
        choices = ", ".join(member.value for member in Aggregate)
        raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {choices}") from None
    every_ms: int | None = None
    if every_s is not None:
        if not math.isfinite(every_s) or every_s < TIME_RESOLUTION_S:
            raise ValueError(f"every_s must be at least {TIME_RESOLUTION_S} s, got {every_s!r}")
        every_ms = time_to_ms(every_s)
    return ResolvedQuery(
        kind=kind,
        field=field,
        start_ms=start_ms,
        end_ms=end_ms,
        every_ms=every_ms,
        aggregate=reduce,
    )


@dataclass(frozen=True)
class Series:
    """Values of one field of one device, ordered by time.

    With downsampling, ``time_s`` is the start of each bucket that holds data and ``count`` is how
    many readings each bucket reduced; without it, ``count`` is all ones.
    """

    device_id: str
    field: str
    time_s: NDArray[np.float64]
    value: NDArray[np.float64]
    count: NDArray[np.int64]


@dataclass(frozen=True)
class DeviceState:
    """What the store knows of one device's health: the basis of device-fault alarms.

    ``online`` is the device's latest retained status message (``None``: never received);
    ``status`` and ``fault_code`` are the self-reported state in its newest gas or laser reading
    (``None``: no such reading). Times are seconds since the Unix epoch [s].
    """

    device_id: str
    online: bool | None
    online_changed_time_s: float | None
    last_reading_time_s: float | None
    status: DeviceStatus | None
    status_time_s: float | None
    fault_code: str | None


class TelemetryStore(Protocol):
    """Durable store of validated readings.

    ``write`` returns only once the batch is durable (committed or acknowledged by the server);
    it raises :class:`StorageError` otherwise, so the caller can keep and retry the batch.
    """

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch of records durably."""
        ...

    def query(
        self,
        *,
        site_id: str,
        device_id: str,
        field: str,
        start_s: float,
        end_s: float,
        every_s: float | None = None,
        aggregate: Aggregate = Aggregate.MEAN,
    ) -> Series:
        """Readings of ``field`` of ``device_id`` with ``start_s <= time < end_s`` [s].

        ``every_s`` buckets the range from ``start_s`` into windows of that length [s] and reduces
        each with ``aggregate``; only buckets holding data are returned. Missing values (a wind
        station without a thermometer) are not readings: they are neither returned nor counted.
        An unknown field raises ``ValueError`` naming it; a store that cannot be read raises
        :class:`StorageError`.
        """
        ...

    def count(self, *, site_id: str, device_id: str | None = None) -> int:
        """Number of stored records (all kinds) of a site, or of one of its devices.

        Gas, wind and laser readings, camera frame metadata and online/offline changes all count.
        """
        ...

    def latest_status(self, *, site_id: str) -> dict[str, DeviceState]:
        """The latest known state of every device of ``site_id`` that has stored records."""
        ...

    def status_changes(
        self, *, site_id: str, start_s: float, end_s: float, device_id: str | None = None
    ) -> tuple[DeviceStatusChange, ...]:
        """Online/offline changes with ``start_s <= received_time < end_s`` [s], oldest first."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def device_states(
    *,
    online: Mapping[str, tuple[bool, float]],
    reported: Mapping[str, tuple[int, DeviceStatus, str | None]],
    last_reading_ms: Mapping[str, int],
) -> dict[str, DeviceState]:
    """Assemble :class:`DeviceState` per device from what a backend queried.

    ``online``: device -> (online, received time [s]) of its latest status message;
    ``reported``: device -> (time [ms], status, fault code) of its newest gas or laser reading;
    ``last_reading_ms``: device -> time of its newest reading of any kind [ms].
    """
    states: dict[str, DeviceState] = {}
    for device in sorted(online.keys() | reported.keys() | last_reading_ms.keys()):
        is_online = online.get(device)
        status = reported.get(device)
        last_ms = last_reading_ms.get(device)
        states[device] = DeviceState(
            device_id=device,
            online=None if is_online is None else is_online[0],
            online_changed_time_s=None if is_online is None else is_online[1],
            last_reading_time_s=None if last_ms is None else last_ms / MILLISECONDS_PER_SECOND,
            status=None if status is None else status[1],
            status_time_s=None if status is None else status[0] / MILLISECONDS_PER_SECOND,
            fault_code=None if status is None else status[2],
        )
    return states


class FrameStore(Protocol):
    """Keeps the most recent camera frames of each camera and channel."""

    def put(self, frame: CameraFrame) -> None:
        """Keep ``frame`` (older frames beyond the retention are removed)."""
        ...

    def latest(self, *, site_id: str, device_id: str, channel: CameraChannel) -> CameraFrame | None:
        """The newest frame of that camera channel, or ``None``."""
        ...


class StorageError(RuntimeError):
    """A batch could not be made durable; it was not (fully) stored and may be retried."""
