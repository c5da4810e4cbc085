"""The telemetry-store interface shared by the SQLite and InfluxDB backends.

Stored fields are the SI fields of the records in :mod:`pipesentinel.ingest.records`, named as
there (``methane_mole_fraction``, ``speed_m_per_s``, ...). Camera images are not time series: they
go to a :class:`FrameStore`; the telemetry store keeps their metadata only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from pipesentinel.ingest.records import CameraChannel, CameraFrame, Record


class Aggregate(StrEnum):
    """How a downsampling bucket is reduced."""

    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"


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
        each with ``aggregate``. An unknown field raises ``ValueError`` naming it.
        """
        ...

    def count(self, *, site_id: str, device_id: str | None = None) -> int:
        """Number of stored readings (all kinds) of a site, or of one of its devices."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


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
