"""Vectorized gas alarm thresholds: LOW, HIGH and RATE_OF_RISE for every detector and gas.

The state of every gas detector x gas (methane, propane) x alarm type lives in numpy arrays, and a
batch of readings is evaluated without a per-reading Python loop. The result is exactly what
processing the readings one at a time in time order gives (:class:`SequentialGasAlarmEvaluator`
is that straightforward per-reading specification; the tests prove the equivalence with
hypothesis, and ``bench/thresholds.py`` uses it as the baseline).

Semantics, per detector ``d`` and gas ``g`` (amounts are mole fractions [mol mol-1] inside;
alarm levels are fractions of the LEL [1] on the evaluator's :class:`LelBasis`):

* **Acceptance**: a reading whose time is not later than the last accepted reading of its
  detector is refused (returned in ``EvaluationResult.out_of_order_index``, never silently).
* **Validity**: a reading is invalid for gas ``g`` when the caller flags it (device status not
  ok, or a health fault as a boolean mask) or when the detector does not monitor ``g``. An
  invalid reading never makes a condition active and does not update the gas state: conditions
  and alarms hold, and the pair is reported as *held by fault*. The next valid reading starts
  its on/off delay afresh (a fault interrupts the evidence).
* **Clipping**: negative readings (noise around zero, under-range) are clipped at 0 for the
  alarm comparison and the statistics; the raw value is kept (:attr:`latest_raw_mole_fraction`)
  for the health checks.
* **Condition** (a Schmitt trigger): for LOW and HIGH the value is ``x / LEL``; it becomes true
  at ``value >= set point`` and false at ``value < set point - deadband``; in between it holds.
  For RATE_OF_RISE the value is the least-squares slope of ``x / LEL`` against time over the
  readings of the last ``rate_of_rise_window_s`` (at most ``capacity`` of them) [s-1]; it is
  undefined (the condition is false) until the window holds ``RATE_OF_RISE_MIN_SAMPLES`` valid
  readings spanning ``RATE_OF_RISE_MIN_SPAN_FRACTION`` of the window.
* **Delays**: the alarm becomes active at a valid reading where the condition has held for at
  least ``on_delay_s`` (since the first valid reading of the current run of the condition), and
  clears at a valid reading where it has been absent for at least ``off_delay_s``.

The batch scheme: readings are laid out as a (detector, k-th reading) matrix (without a sort
when no detector appears twice in the batch, the usual case for a batch shorter than a sample
period); every sequential dependency (running maximum of times, the Schmitt trigger, run starts,
the alarm latch) is a "last decisive event" along the k axis, a running maximum of packed
(position, value) integers (a plain ``where`` when each detector has one reading). The rate of
rise comes from running sums kept per ring slot: each window's start is found by counting the
ring + batch times inside it (a strided view), and its sums are two lookups. Slopes within their
rounding-error bound of a decision are recomputed exactly as the reference does (summed slot by
slot in its order), as are the values reported in rate-of-rise transitions, so decisions and
reported values are the reference's bit for bit.

Fixed cost per batch (small batches, the live service's usual input): per-table constants are
derived once; a *quiet* batch (no condition or alarm set on its detectors, every value below the
lowest clear level of its gas) skips the alarm stage, as nothing in it can change; batches in
time order need no sort, and a batch of every detector in table order reads and writes the
state through slices, not gathers. ``fast_paths=False`` turns these off: the tests check that
the results and the whole state are the same.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from pipesentinel.alarm_config import AlarmConfig, GasSetpoints
from pipesentinel.detection._arrays import BoolArray, FloatArray, IntArray, as_float_array
from pipesentinel.detection.gases import LelBasis, lower_explosive_limit
from pipesentinel.ingest.records import DeviceStatus, GasReading
from pipesentinel.site import Gas, Site
from pipesentinel.units import PPM

__all__ = [
    "ELEVATED_NOISE_SIGMAS",
    "GASES",
    "RATE_OF_RISE_MIN_SAMPLES",
    "RATE_OF_RISE_MIN_SPAN_FRACTION",
    "AlarmTransition",
    "AlarmTransitions",
    "AlarmType",
    "EvaluationResult",
    "GasAlarmEvaluator",
    "RecentGasStatistics",
    "SequentialGasAlarmEvaluator",
    "SetpointTable",
]

GASES: Final[tuple[Gas, ...]] = tuple(Gas)  # gas axis order of every array: methane, propane


class AlarmType(IntEnum):
    """Alarm types; the integer is the index of the last axis of the state arrays."""

    LOW = 0
    HIGH = 1
    RATE_OF_RISE = 2


ALARM_TYPES: Final[tuple[AlarmType, ...]] = tuple(AlarmType)

# The slope needs this many valid readings spanning this fraction of the window before it is
# defined. With 0.5 % FS noise on a 0-5 %vol detector (1.5 %LEL propane, 1 sigma), 3/4 of a 60 s
# window is 23 samples at 2 s (slope sigma 1.4 %LEL min-1, the default set point 10 %LEL min-1 is
# 7 sigma) or 10 samples at 5 s (1.9 %LEL min-1, 5 sigma). A design choice: a shorter span makes
# the slope too noisy right after start-up or a fault.
RATE_OF_RISE_MIN_SAMPLES: Final = 3
RATE_OF_RISE_MIN_SPAN_FRACTION: Final = 0.75
# "Elevated" (a sub-alarm reading the localisation uses): the recent mean is at least this many
# noise standard deviations above the background baseline. Three sigma: a one-sided false rate
# of 0.13 % for a single sample, far less for a mean. Common detection-limit convention (IUPAC
# limit of detection, k = 3).
ELEVATED_NOISE_SIGMAS: Final = 3.0
# Background baseline: detectors are zeroed in ambient air (zero calibration), so ambient methane
# (about 1.9 ppm) and propane read zero. A per-site learnt baseline is not implemented.
BACKGROUND_MOLE_FRACTION: Final = 0.0
# Ring buffer margin: readings per window beyond window / sample period (timestamp jitter, the
# reading at the window's start).
RING_MARGIN_READINGS: Final = 2
# Running sums of the rate of rise: restart them (at the oldest kept reading) once the first
# reading of a batch is this long after their origin. Their rounding error grows with the
# number of terms and the square of the time since the origin; an hour at 2 s keeps it below
# ~1e-7 of a 60 s window's slope, and a restart costs O(capacity) once an hour. A design choice.
REBASE_AFTER_S: Final = 3600.0
# Causal median of 3 before the slope: an isolated spike (a silent spike fault) never reaches
# the rate of rise. The median needs the two readings accepted before the current one.
_MEDIAN_HISTORY: Final = 2
_SUMS: Final = 5  # count, sum of s, of x, of s s, of s x
_EPSILON: Final = float(np.finfo(np.float64).eps)
# Safety margins on the rounding-error bound of the running-sum slope: readings whose slope is
# closer than this to a decision are recomputed exactly as the reference does (few, if any).
_GUARD_ULPS: Final = 8.0
_GUARD_FACTOR: Final = 4.0
_NO_EVENT: Final = -1
_EVERY: Final = slice(None)
ScalarT = TypeVar("ScalarT", bound=np.generic)


def _default_capacity(window_s: FloatArray, sample_period_s: FloatArray) -> int:
    if window_s.size == 0:
        return RING_MARGIN_READINGS + 1
    per_detector = np.max(window_s, axis=1) / sample_period_s
    return math.ceil(float(np.max(per_detector))) + RING_MARGIN_READINGS


# --------------------------------------------------------------------------------------------
# Set points as arrays


@dataclass(frozen=True)
class SetpointTable:
    """Per-detector, per-gas set points as arrays (detector axis first, gas axis in ``GASES``).

    Attributes
    ----------
    detector_ids
        Detector ids, the order of the detector axis.
    lel_basis
        Basis of every fraction of the LEL here.
    lel_mole_fraction
        LEL of each gas on ``lel_basis``, shape (G,) [mol mol-1].
    monitored
        Whether the detector measures the gas, shape (n, G).
    setpoint
        Set points, shape (n, G, 3): LOW and HIGH [1], RATE_OF_RISE [s-1] (fractions of the LEL).
    clear_level
        The condition clears strictly below this, shape (n, G, 3) (set point - deadband).
    on_delay_s, off_delay_s
        Delays, shape (n, G) [s].
    window_s
        Rate-of-rise and recent-mean window, shape (n, G) [s].
    noise_std_mole_fraction
        Detector white noise, 1 sigma, shape (n, G) [mol mol-1].
    sample_period_s
        Nominal sample period, shape (n,) [s]; sizes the ring buffer.
    """

    detector_ids: tuple[str, ...]
    lel_basis: LelBasis
    lel_mole_fraction: FloatArray
    monitored: BoolArray
    setpoint: FloatArray
    clear_level: FloatArray
    on_delay_s: FloatArray
    off_delay_s: FloatArray
    window_s: FloatArray
    noise_std_mole_fraction: FloatArray
    sample_period_s: FloatArray

    def __post_init__(self) -> None:
        for name in (
            "lel_mole_fraction",
            "monitored",
            "setpoint",
            "clear_level",
            "on_delay_s",
            "off_delay_s",
            "window_s",
            "noise_std_mole_fraction",
            "sample_period_s",
        ):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def detector_count(self) -> int:
        """Number of detectors."""
        return len(self.detector_ids)

    @classmethod
    def from_setpoints(
        cls,
        detector_ids: Sequence[str],
        setpoints: Sequence[Mapping[Gas, GasSetpoints]] | GasSetpoints,
        *,
        full_scale_mole_fraction: npt.ArrayLike,
        sample_period_s: npt.ArrayLike,
        basis: LelBasis,
        monitored: npt.ArrayLike | None = None,
    ) -> SetpointTable:
        """Build the arrays from resolved set points.

        Parameters
        ----------
        detector_ids
            Detector ids (unique).
        setpoints
            One mapping gas -> :class:`GasSetpoints` per detector, or one :class:`GasSetpoints`
            for every detector and gas.
        full_scale_mole_fraction
            Full scale of each detector, shape (n,) or scalar [mol mol-1].
        sample_period_s
            Nominal sample period of each detector, shape (n,) or scalar [s].
        basis
            LEL basis of the set points.
        monitored
            Whether each detector measures each gas, shape (n, G); default all.
        """
        ids = tuple(detector_ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f"detector_ids must be unique, got {ids}")
        count = len(ids)
        if isinstance(setpoints, GasSetpoints):
            rows: Sequence[Mapping[Gas, GasSetpoints]] = [dict.fromkeys(GASES, setpoints)] * count
        else:
            rows = setpoints
        if len(rows) != count:
            raise ValueError(f"setpoints has {len(rows)} entries for {count} detectors")

        def field(name: str) -> FloatArray:
            values = [[getattr(row[gas], name) for gas in GASES] for row in rows]
            return np.asarray(values, dtype=np.float64).reshape(count, len(GASES))

        low, high = field("low_fraction_lel"), field("high_fraction_lel")
        deadband = field("deadband_fraction_lel")
        rate = field("rate_of_rise_fraction_lel_per_s")
        rate_deadband = field("rate_of_rise_deadband_fraction_lel_per_s")
        full_scale = np.broadcast_to(
            as_float_array(full_scale_mole_fraction, "full_scale_mole_fraction"), (count,)
        )
        period = np.broadcast_to(as_float_array(sample_period_s, "sample_period_s"), (count,))
        if np.any(period <= 0.0):
            raise ValueError(f"sample_period_s must be > 0, got {period}")
        mask = (
            np.ones((count, len(GASES)), dtype=np.bool_)
            if monitored is None
            else np.broadcast_to(np.asarray(monitored, dtype=np.bool_), (count, len(GASES)))
        )
        return cls(
            detector_ids=ids,
            lel_basis=LelBasis(basis),
            lel_mole_fraction=np.array([lower_explosive_limit(gas, basis=basis) for gas in GASES]),
            monitored=mask,
            setpoint=np.stack([low, high, rate], axis=-1),
            clear_level=np.stack([low - deadband, high - deadband, rate - rate_deadband], axis=-1),
            on_delay_s=field("on_delay_s"),
            off_delay_s=field("off_delay_s"),
            window_s=field("rate_of_rise_window_s"),
            noise_std_mole_fraction=field("noise_std_fraction_of_full_scale")
            * full_scale[:, np.newaxis],
            sample_period_s=period,
        )

    @classmethod
    def for_site(cls, site: Site, config: AlarmConfig, *, basis: LelBasis) -> SetpointTable:
        """The table of every gas detector of ``site`` (site order) from its alarm config.

        ``ValueError`` if the config was resolved for another site or states another LEL basis.
        """
        if config.site_id != site.id:
            raise ValueError(
                f"alarm configuration of site {config.site_id!r} used for site {site.id!r}"
            )
        if config.lel_basis is not None and config.lel_basis != LelBasis(basis):
            raise ValueError(
                f"{config.source}: lel_basis: the set points are on {config.lel_basis.value!r} "
                f"but the evaluator runs on {LelBasis(basis).value!r} (settings.lel_basis)"
            )
        detectors = site.gas_detectors
        return cls.from_setpoints(
            [detector.id for detector in detectors],
            [{gas: config.for_detector(d.id, gas) for gas in GASES} for d in detectors],
            full_scale_mole_fraction=[PPM.to_si(d.full_scale_ppm) for d in detectors],
            sample_period_s=[d.sample_period_s for d in detectors],
            basis=basis,
            monitored=[[gas in d.gases for gas in GASES] for d in detectors],
        )


# --------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class AlarmTransition:
    """One alarm that became active or cleared.

    ``value_fraction_lel`` and ``setpoint_fraction_lel`` are fractions of the LEL [1] for LOW and
    HIGH and fractions of the LEL per second [s-1] for RATE_OF_RISE (``nan`` when a rate-of-rise
    alarm clears because the slope became undefined). ``lel_basis`` says which LEL.
    """

    detector_id: str
    gas: Gas
    alarm: AlarmType
    became_active: bool
    time_s: float
    value_fraction_lel: float
    setpoint_fraction_lel: float
    lel_basis: LelBasis


@dataclass(frozen=True)
class AlarmTransitions:
    """The transitions of one batch as arrays, in reading order, then gas, then alarm type.

    Attributes
    ----------
    lel_basis
        LEL basis of every fraction of the LEL here.
    reading_index
        Index of the reading in the batch that caused each transition.
    detector_index, gas_index, alarm_type
        Which detector (table order), gas (``GASES`` order) and :class:`AlarmType` code.
    became_active
        True: became active; false: cleared.
    time_s
        Time of the reading [s].
    value_fraction_lel, setpoint_fraction_lel
        Value and set point (see :class:`AlarmTransition` for units).
    """

    lel_basis: LelBasis
    reading_index: IntArray
    detector_index: IntArray
    gas_index: IntArray
    alarm_type: IntArray
    became_active: BoolArray
    time_s: FloatArray
    value_fraction_lel: FloatArray
    setpoint_fraction_lel: FloatArray

    def __len__(self) -> int:
        return int(self.reading_index.size)

    def to_list(self, detector_ids: Sequence[str]) -> list[AlarmTransition]:
        """The transitions as objects (a handful per batch), ids from the table's order."""
        return [
            AlarmTransition(
                detector_id=detector_ids[int(detector)],
                gas=GASES[int(gas)],
                alarm=AlarmType(int(alarm)),
                became_active=bool(active),
                time_s=float(time),
                value_fraction_lel=float(value),
                setpoint_fraction_lel=float(setpoint),
                lel_basis=self.lel_basis,
            )
            for detector, gas, alarm, active, time, value, setpoint in zip(
                self.detector_index,
                self.gas_index,
                self.alarm_type,
                self.became_active,
                self.time_s,
                self.value_fraction_lel,
                self.setpoint_fraction_lel,
                strict=True,
            )
        ]

    @classmethod
    def empty(cls, basis: LelBasis) -> AlarmTransitions:
        """No transitions."""
        integers = np.zeros(0, dtype=np.int64)
        floats = np.zeros(0, dtype=np.float64)
        return cls(
            basis,
            integers,
            integers,
            integers,
            integers,
            np.zeros(0, dtype=np.bool_),
            floats,
            floats,
            floats,
        )


@dataclass(frozen=True)
class EvaluationResult:
    """What one batch evaluation produced.

    Attributes
    ----------
    transitions
        Alarms that became active or cleared.
    out_of_order_index
        Batch indices of readings refused because their time was not later than the last
        accepted reading of their detector.
    """

    transitions: AlarmTransitions
    out_of_order_index: IntArray


@dataclass(frozen=True)
class RecentGasStatistics:
    """Recent statistics per detector and gas, for the localisation (arrays (n, G) unless said).

    Attributes
    ----------
    mean_mole_fraction
        Time-weighted mean of the valid readings in the window (each held until the next one or
        ``now``; clipped at 0) [mol mol-1]; ``nan`` without readings.
    sample_count
        Number of valid readings in the window.
    last_time_s
        Time of the latest valid reading [s] (``nan`` if none).
    latest_mole_fraction
        Latest valid reading, clipped at 0 [mol mol-1] (``nan`` if none).
    elevated
        Mean at least ``ELEVATED_NOISE_SIGMAS`` noise sigma above the background but below the
        LOW set point: a sub-alarm signal.
    window_s
        The window used [s].
    """

    mean_mole_fraction: FloatArray
    sample_count: IntArray
    last_time_s: FloatArray
    latest_mole_fraction: FloatArray
    elevated: BoolArray
    window_s: FloatArray


# --------------------------------------------------------------------------------------------
# Input checks shared by both evaluators


def _finite_array(value: npt.ArrayLike, name: str) -> FloatArray:
    """``value`` as a finite float64 array (a batch's times or amounts); else ``ValueError``.

    One elementwise check, without the overflow guard :func:`as_float_array` needs for large
    arrays; a bad input goes to it for the error message naming ``name``.
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return as_float_array(value, name)  # raises, naming the parameter
    if not np.isfinite(array).all():
        return as_float_array(value, name)  # raises, naming the parameter
    return array


def _batch_arrays(
    table: SetpointTable,
    detector_index: npt.ArrayLike,
    time_s: npt.ArrayLike,
    mole_fraction: npt.ArrayLike,
    invalid: npt.ArrayLike | None,
) -> tuple[IntArray, FloatArray, FloatArray, BoolArray]:
    """Checked arrays: detector (N,), time (N,), mole fraction (N, G), valid (N, G)."""
    detectors = np.asarray(detector_index)
    if detectors.dtype.kind not in "iu":  # signed or unsigned integers (not bool: kind "b")
        raise ValueError(f"detector_index must be integers, got dtype {detectors.dtype}")
    detectors = detectors.astype(np.int64, copy=False).reshape(-1)
    count = detectors.size
    if count and (detectors.min() < 0 or detectors.max() >= table.detector_count):
        bad = detectors[(detectors < 0) | (detectors >= table.detector_count)]
        raise ValueError(
            f"detector_index must be in 0..{table.detector_count - 1}, got e.g. {int(bad[0])}"
        )
    times = _finite_array(time_s, "time_s").reshape(-1)
    if times.size != count:
        raise ValueError(f"time_s has {times.size} values for {count} readings")
    amounts = _finite_array(mole_fraction, "mole_fraction")
    if amounts.shape != (count, len(GASES)):
        raise ValueError(
            f"mole_fraction must have shape ({count}, {len(GASES)}) (readings, gases "
            f"{[gas.value for gas in GASES]}), got {amounts.shape}"
        )
    if invalid is None:
        return detectors, times, amounts, table.monitored[detectors]
    raw = np.asarray(invalid)
    if raw.dtype != np.bool_:
        raise ValueError(f"invalid must be a boolean mask, got dtype {raw.dtype}")
    if raw.shape == (count,):
        raw = raw[:, np.newaxis]
    try:
        flagged = np.broadcast_to(raw, (count, len(GASES)))
    except ValueError as error:
        raise ValueError(
            f"invalid must have shape ({count},) or ({count}, {len(GASES)}), got {raw.shape}"
        ) from error
    valid = ~flagged & table.monitored[detectors]
    return detectors, times, amounts, valid


def _readings_arrays(
    table: SetpointTable, readings: Sequence[GasReading], fault: npt.ArrayLike | None
) -> tuple[IntArray, FloatArray, FloatArray, BoolArray]:
    """Arrays from records; a reading whose status is not ok is invalid for every gas."""
    index = {detector_id: position for position, detector_id in enumerate(table.detector_ids)}
    detectors = np.empty(len(readings), dtype=np.int64)
    for position, reading in enumerate(readings):
        found = index.get(reading.device_id)
        if found is None:
            raise ValueError(
                f"gas reading {position} (site {reading.site_id!r}, time {reading.time_s}): "
                f"unknown detector {reading.device_id!r}"
            )
        detectors[position] = found
    times = np.fromiter((reading.time_s for reading in readings), np.float64, len(readings))
    amounts = np.array(
        [(reading.methane_mole_fraction, reading.propane_mole_fraction) for reading in readings],
        dtype=np.float64,
    ).reshape(len(readings), len(GASES))
    status_bad = np.fromiter(
        (reading.status is not DeviceStatus.OK for reading in readings), np.bool_, len(readings)
    )
    invalid = status_bad[:, np.newaxis]
    if fault is not None:
        mask = np.asarray(fault)
        if mask.dtype != np.bool_:
            raise ValueError(f"fault must be a boolean mask, got dtype {mask.dtype}")
        if mask.shape == (len(readings),):
            mask = mask[:, np.newaxis]
        invalid = invalid | mask
    return detectors, times, amounts, np.broadcast_to(invalid, (len(readings), len(GASES)))


# --------------------------------------------------------------------------------------------
# The vectorized evaluator


def _latest_flag(events: BoolArray, flag: BoolArray, initial: BoolArray) -> BoolArray:
    """``flag`` at the latest event at or before each position along axis 1, else ``initial``.

    The position and the flag are packed in one integer (``2 position + flag``), so one running
    maximum finds the latest event and its flag: no gather. ``initial`` lacks axis 1.
    """
    start = initial[:, np.newaxis]
    if events.shape[1] == 1:
        single: BoolArray = np.where(events, flag, start)
        return single
    positions = 2 * np.arange(events.shape[1]).reshape((1, -1) + (1,) * (events.ndim - 2))
    last = np.maximum.accumulate(np.where(events, positions + flag, _NO_EVENT), axis=1)
    latest: BoolArray = np.where(last >= 0, (last & 1) == 1, start)
    return latest


def _latest_time(events: BoolArray, t: FloatArray, initial: FloatArray) -> FloatArray:
    """Time ``t`` (R, K) of the latest event (R, K, G, A) at or before each k, else ``initial``."""
    start = initial[:, np.newaxis]
    t_a = t[:, :, np.newaxis, np.newaxis]
    if events.shape[1] == 1:
        single: FloatArray = np.where(events, t_a, start)
        return single
    positions = np.arange(events.shape[1]).reshape(1, -1, 1, 1)
    last = np.maximum.accumulate(np.where(events, positions, _NO_EVENT), axis=1)
    taken = t[np.arange(t.shape[0]).reshape(-1, 1, 1, 1), last]  # -1: masked below
    latest: FloatArray = np.where(last >= 0, taken, start)
    return latest


def _shifted(values: npt.NDArray[ScalarT], initial: npt.NDArray[ScalarT]) -> npt.NDArray[ScalarT]:
    """``values`` moved one step along axis 1, ``initial`` in front (the previous position)."""
    start = initial[:, np.newaxis]
    if values.shape[1] == 1:
        return start
    return np.concatenate((start, values[:, :-1]), axis=1)


def _take(array: npt.NDArray[ScalarT], rows: IntArray | slice) -> npt.NDArray[ScalarT]:
    """``array[rows]`` along axis 0.

    A view for a slice, else ``take`` (a copy, several times faster than fancy indexing for
    arrays with trailing axes).
    """
    if isinstance(rows, slice):
        return array[rows]
    return array.take(rows, axis=0)


def _wrapped(slot: IntArray, capacity: int) -> IntArray:
    """``slot % capacity`` for 0 <= slot < 2 capacity, without a division."""
    wrapped: IntArray = np.where(slot >= capacity, slot - capacity, slot)
    return wrapped


def _after(values: npt.NDArray[ScalarT], layout: _Layout, length: int) -> npt.NDArray[ScalarT]:
    """Per row, ``length`` positions along axis 1 from its accepted count on (the newest kept).

    ``values`` is (R, length + K, ...): history before the batch, then the batch (padded).
    """
    if layout.uniform:
        return values[:, layout.width :]
    columns = layout.accepted_count[:, np.newaxis] + np.arange(length)
    taken: npt.NDArray[ScalarT] = values[np.arange(columns.shape[0])[:, np.newaxis], columns]
    return taken


def _at_last(values: npt.NDArray[ScalarT], layout: _Layout) -> npt.NDArray[ScalarT]:
    """Per row, the entry (along axis 1) of its latest accepted reading."""
    if layout.uniform:
        return values[:, -1]
    taken: npt.NDArray[ScalarT] = values[np.arange(layout.rows.size), layout.accepted_count - 1]
    return taken


@dataclass(frozen=True)
class _Layout:
    """A batch as a (row, k) matrix: row = a detector with accepted readings, k = its k-th.

    Rows without an accepted reading are left out. ``uniform``: every row has ``width``
    accepted readings (no padding; always so when no detector appears twice in the batch).
    """

    rows: IntArray  # detector index of each row, (R,)
    compact: IntArray  # batch index of the k-th accepted reading of each row, -1 after, (R, K)
    accepted_count: IntArray  # (R,), each >= 1
    out_of_order: IntArray  # batch indices refused (time not later than the detector's last)
    uniform: bool
    in_order: bool = False  # one reading per row, every reading accepted: compact is 0..N-1

    @property
    def width(self) -> int:
        """K, the most accepted readings of one detector."""
        return int(self.compact.shape[1])

    def select(self, detector_count: int) -> IntArray | slice:
        """``rows`` as an index of the state arrays.

        A slice when the rows are every detector in table order (views and plain copies instead
        of gathers and scatters), else ``rows``.
        """
        rows = self.rows
        if rows.size == detector_count and (rows[1:] > rows[:-1]).all():
            return _EVERY  # distinct and increasing, all of them: 0..n-1
        return rows

    @classmethod
    def of(
        cls, detectors: IntArray, times: FloatArray, last_time_s: FloatArray, *, fast: bool = True
    ) -> _Layout:
        """Group by detector (batch order kept), refuse out-of-order, compact left.

        ``fast``: recognise the batches that need no selection (every reading accepted, the
        same number for each detector) and lay them out directly.
        """
        if detectors.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, np.zeros((0, 0), dtype=np.int64), empty, empty, uniform=True)
        if np.bincount(detectors).max() == 1:
            # Each detector at most once (a batch shorter than a sample period): no sort, one
            # reading per row, in batch order.
            accepted = times > last_time_s[detectors]
            if fast and accepted.all():
                ones = np.empty(detectors.size, dtype=np.int64)
                ones.fill(1)
                return cls(
                    rows=detectors,
                    compact=np.arange(detectors.size)[:, np.newaxis],
                    accepted_count=ones,
                    out_of_order=np.zeros(0, dtype=np.int64),
                    uniform=True,
                    in_order=True,
                )
            index = np.flatnonzero(accepted)
            return cls(
                rows=detectors[index],
                compact=index[:, np.newaxis],
                accepted_count=np.ones(index.size, dtype=np.int64),
                out_of_order=np.flatnonzero(~accepted),
                uniform=True,
            )
        order = np.argsort(detectors, kind="stable")
        ordered = detectors[order]
        first = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        rows = ordered[first]
        counts = np.diff(first, append=detectors.size)
        if fast and counts.min() == counts.max():
            # The same number of readings of each detector (round-robin sampling): if all are
            # in time order and after the detector's last, the sorted batch is the layout.
            uniform_layout = order.reshape(rows.size, -1)
            uniform_times = times[uniform_layout]
            if (uniform_times[:, 0] > last_time_s[rows]).all() and (
                uniform_times[:, 1:] > uniform_times[:, :-1]
            ).all():
                return cls(
                    rows=rows,
                    compact=uniform_layout,
                    accepted_count=np.full(rows.size, uniform_layout.shape[1], dtype=np.int64),
                    out_of_order=np.zeros(0, dtype=np.int64),
                    uniform=True,
                )
        row_of = np.repeat(np.arange(rows.size), counts)
        rank = np.arange(detectors.size) - np.repeat(first, counts)
        layout = np.full((rows.size, int(counts.max())), _NO_EVENT, dtype=np.int64)
        layout[row_of, rank] = order
        padded = layout < 0
        batch_times = np.where(padded, -np.inf, times[layout])
        previous = last_time_s[rows]
        before = np.maximum(
            _shifted(np.maximum.accumulate(batch_times, axis=1), previous),
            previous[:, np.newaxis],
        )
        accepted = ~padded & (batch_times > before)
        accepted_count = accepted.sum(axis=1)
        kept = accepted_count > 0
        position = np.cumsum(accepted, axis=1) - 1
        width = int(accepted_count.max())
        compact = np.full((rows.size, width), _NO_EVENT, dtype=np.int64)
        compact[np.nonzero(accepted)[0], position[accepted]] = layout[accepted]
        return cls(
            rows=rows[kept].astype(np.int64),
            compact=compact[kept],
            accepted_count=accepted_count[kept].astype(np.int64),
            out_of_order=np.sort(layout[~padded & ~accepted]).astype(np.int64),
            uniform=bool(np.all(accepted_count[kept] == width)),
        )


@dataclass(frozen=True)
class _Batch:
    """The rate-of-rise inputs of a batch laid out as (R, K, G).

    ``history``/``history_valid`` are the clipped readings and their validity preceded by the
    two accepted before the batch, (R, 2 + K, G); ``prefix`` the running sums (R, K, G, 5) of
    (count, s, x, s s, s x) over the filtered series, s = time - origin [s], x the median.
    """

    filtered: FloatArray
    filtered_valid: BoolArray
    history: FloatArray
    history_valid: BoolArray
    prefix: FloatArray


def _sum_terms(shifted_s: FloatArray, filtered: FloatArray, use: BoolArray) -> FloatArray:
    """Terms (1, s, x, s s, s x) of the running sums where ``use``, else 0, (..., G, 5)."""
    terms = np.empty((*use.shape, _SUMS))
    s = np.where(use, shifted_s[..., np.newaxis], 0.0)
    x = np.where(use, filtered, 0.0)
    terms[..., 0] = use
    terms[..., 1] = s
    terms[..., 2] = x
    np.multiply(s, s, out=terms[..., 3])
    np.multiply(s, x, out=terms[..., 4])
    return terms


@dataclass(frozen=True)
class _Advanced:
    """Alarm state after each reading, (R, K, G, 3), and the set points, (R, 1, G, 3)."""

    condition: BoolArray
    run_start_s: FloatArray
    active: BoolArray
    changed: BoolArray
    setpoint: FloatArray


def _transitions(
    table: SetpointTable,
    layout: _Layout,
    *,
    t: FloatArray,
    value: FloatArray,
    advanced: _Advanced,
) -> AlarmTransitions:
    """The changed entries as arrays, in batch order, then gas, then alarm type."""
    if not advanced.changed.any():
        return AlarmTransitions.empty(table.lel_basis)
    row, k, gas, alarm = np.nonzero(advanced.changed)
    reading = layout.compact[row, k]
    order = np.lexsort((alarm, gas, reading))
    row, k, gas, alarm, reading = row[order], k[order], gas[order], alarm[order], reading[order]
    return AlarmTransitions(
        lel_basis=table.lel_basis,
        reading_index=reading.astype(np.int64),
        detector_index=layout.rows[row],
        gas_index=gas.astype(np.int64),
        alarm_type=alarm.astype(np.int64),
        became_active=advanced.active[row, k, gas, alarm],
        time_s=t[row, k],
        value_fraction_lel=value[row, k, gas, alarm],
        setpoint_fraction_lel=advanced.setpoint[row, 0, gas, alarm],
    )


def _window_slopes(
    time_s: FloatArray,
    filtered: FloatArray,
    filtered_valid: BoolArray,
    *,
    end_s: FloatArray,
    window_s: FloatArray,
) -> FloatArray:
    """Least-squares slope of each reading's window, as the reference computes it, (R, K, G).

    Parameters
    ----------
    time_s
        Window times, (R, K, C) [s] (``nan``: an empty slot).
    filtered, filtered_valid
        Window readings (median of 3) and whether defined, (R, K, G, C) [mol mol-1].
    end_s
        Time of each reading, the window's end, (R, K) [s].
    window_s
        Window length, (R, G) [s].

    The sums run along the window oldest slot first, one slot at a time (not numpy's pairwise
    summation), so they are the reference's bit for bit; skipped readings add exact zeros.
    Returns the slope [mol mol-1 s-1], ``nan`` where not defined.
    """
    tau = (time_s - end_s[..., np.newaxis])[:, :, np.newaxis, :]  # (R, K, 1, C), <= 0
    use = filtered_valid & (tau > -window_s[:, np.newaxis, :, np.newaxis])  # nan: outside
    tau_used = np.where(use, tau, 0.0)
    x_used = np.where(use, filtered, 0.0)
    terms = np.stack((tau_used, x_used, tau_used * tau_used, tau_used * x_used))
    sums = terms[..., 0].copy()
    for slot in range(1, terms.shape[-1]):
        sums += terms[..., slot]
    sum_t, sum_x, sum_tt, sum_tx = sums
    count = use.sum(axis=-1, dtype=np.float64)  # small integers: exact in any order
    earliest = tau_used.min(axis=-1)  # 0 included, as the reference starts from 0
    denominator = count * sum_tt - sum_t * sum_t
    defined = (
        (count >= RATE_OF_RISE_MIN_SAMPLES)
        & (-earliest >= RATE_OF_RISE_MIN_SPAN_FRACTION * window_s[:, np.newaxis, :])
        & (denominator > 0.0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (count * sum_tx - sum_t * sum_x) / denominator
    result: FloatArray = np.where(defined, slope, np.nan)
    return result


class GasAlarmEvaluator:
    """Gas alarm state of every detector x gas x alarm type, evaluated in vectorized batches.

    Parameters
    ----------
    table
        Set points (detector order, LEL basis).
    capacity
        Readings kept per detector for the rate-of-rise window and the recent mean; default:
        enough for the longest window at the nominal sample period plus a margin. A detector
        reporting faster than that has its window shortened to its last ``capacity`` readings.
    fast_paths
        Take the shortcuts that skip work a batch cannot need (on by default): a quiet batch
        (no condition set, every value below the lowest clear level) skips the alarm stage;
        batches in time order of every detector need no sort, gathers or scatters. Off: the
        general path only. The results and the state are identical either way (the tests
        check it); the switch exists for those tests and for measuring.
    """

    def __init__(
        self, table: SetpointTable, *, capacity: int | None = None, fast_paths: bool = True
    ) -> None:
        self.table = table
        self.fast_paths = bool(fast_paths)
        self.quiet_batches = 0  # batches that took the quiet path (a statistic)
        self.capacity = (
            _default_capacity(table.window_s, table.sample_period_s)
            if capacity is None
            else int(capacity)
        )
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        n, g, a = table.detector_count, len(GASES), len(ALARM_TYPES)
        c = self.capacity
        self._last_time_s = np.full(n, -np.inf)
        # Circular ring buffers: slot `_next[d]` is written next; `_filled[d]` slots are used.
        self._next = np.zeros(n, dtype=np.int64)
        self._filled = np.zeros(n, dtype=np.int64)
        # Except the times: oldest first (a shift register), as the window search reads them
        # every batch; nan: no reading yet.
        self._ring_time_s = np.full((n, c), np.nan)
        self._ring_mole_fraction = np.zeros((n, c, g))  # clipped readings (recent statistics)
        self._ring_valid = np.zeros((n, c, g), dtype=np.bool_)
        self._ring_filtered = np.zeros((n, c, g))  # median of 3 (rate of rise)
        self._ring_filtered_valid = np.zeros((n, c, g), dtype=np.bool_)
        # Running sums of the filtered series since `_origin_s`, through each slot. Slot-major
        # (slot, detector, ...): detectors sampling in step read and write neighbouring entries.
        self._ring_prefix = np.zeros((c, n, g, _SUMS))
        self._origin_s = np.full(n, np.nan)
        # The two latest accepted readings (clipped, valid), oldest first: the median's inputs.
        self._previous_mole_fraction = np.zeros((n, _MEDIAN_HISTORY, g))
        self._previous_valid = np.zeros((n, _MEDIAN_HISTORY, g), dtype=np.bool_)
        self._condition = np.zeros((n, g, a), dtype=np.bool_)
        self._run_start_s = np.full((n, g, a), -np.inf)
        self._active = np.zeros((n, g, a), dtype=np.bool_)
        self._broken = np.ones((n, g), dtype=np.bool_)  # no valid reading yet / after a fault
        self._held = np.zeros((n, g), dtype=np.bool_)
        self._latest_raw = np.full((n, g), np.nan)
        self._rate = np.full((n, g), np.nan)
        self._one_window = bool(np.all(table.window_s == table.window_s[:, :1]))
        # Per-table constants, derived once (not per batch).
        reach = table.window_s[:, :1] if self._one_window else table.window_s
        # Window search thresholds on tau, (2, n, G'): the window, and the span the slope needs.
        self._reach = np.stack((-reach, -(RATE_OF_RISE_MIN_SPAN_FRACTION * reach)))
        # Rate-of-rise set point and clear level, (n, 2, G).
        self._rate_levels = np.stack(
            (
                table.setpoint[..., AlarmType.RATE_OF_RISE],
                table.clear_level[..., AlarmType.RATE_OF_RISE],
            ),
            axis=1,
        )
        self._levels = np.stack((table.setpoint, table.clear_level), axis=1)  # (n, 2, G, 3)
        # Delays as (n, 1, G, 1) (on) and the same for off: broadcast against (R, K, G, 3).
        self._on_delay_s = table.on_delay_s[:, np.newaxis, :, np.newaxis]
        self._off_delay_s = table.off_delay_s[:, np.newaxis, :, np.newaxis]
        # The quiet test (see `_quiet`): the lowest clear level of any detector, per gas, for the
        # concentration alarms (LOW, HIGH) and for the rate of rise. Below both, no condition
        # of any detector can become true.
        if table.detector_count:
            self._lowest_clear_level = table.clear_level[..., : AlarmType.RATE_OF_RISE].min(
                axis=(0, 2)
            )
            self._lowest_clear_rate = table.clear_level[..., AlarmType.RATE_OF_RISE].min(axis=0)
        else:
            self._lowest_clear_level = np.full(g, np.inf)
            self._lowest_clear_rate = np.full(g, np.inf)
        self._window_index: dict[int, IntArray] = {}  # readings per row -> (K, C) positions
        self._no_transitions = AlarmTransitions.empty(table.lel_basis)  # size 0: shared
        self._gas_axis = np.arange(g)

    # ---- accessors

    @property
    def lel_basis(self) -> LelBasis:
        """Basis of every fraction of the LEL this evaluator reports."""
        return self.table.lel_basis

    @property
    def active(self) -> BoolArray:
        """Active alarms, shape (n, G, 3) (``AlarmType`` order on the last axis); a copy."""
        return self._active.copy()

    @property
    def held_by_fault(self) -> BoolArray:
        """Detector x gas whose latest reading was invalid (state held), shape (n, G)."""
        return self._held.copy()

    @property
    def active_held_by_fault(self) -> BoolArray:
        """Active alarms whose detector x gas is held by a fault, shape (n, G, 3)."""
        return self._active & self._held[..., np.newaxis]

    @property
    def latest_raw_mole_fraction(self) -> FloatArray:
        """Raw (unclipped) latest accepted reading, valid or not, shape (n, G) [mol mol-1]."""
        return self._latest_raw.copy()

    @property
    def rate_of_rise_fraction_lel_per_s(self) -> FloatArray:
        """Latest rate-of-rise slope, shape (n, G) [s-1] (fraction of the LEL); nan if none.

        Equal to the per-reading reference's slope to rounding (relative ~1e-12); the alarm
        decisions and the values in transitions are the reference's exactly.
        """
        return self._rate.copy()

    def _chronological_slots(self, rows: IntArray | slice = _EVERY) -> IntArray:
        """Ring slot of each position, oldest first, shape (R, C) for ``rows`` (default all)."""
        return _wrapped(self._next[rows, np.newaxis] + np.arange(self.capacity), self.capacity)

    def recent(
        self, *, window_s: npt.ArrayLike | None = None, now_s: npt.ArrayLike | None = None
    ) -> RecentGasStatistics:
        """Recent statistics per detector and gas from the ring buffer.

        Parameters
        ----------
        window_s
            Window length, scalar or (n, G) [s]; default the table's ``window_s``. Only the
            last ``capacity`` readings of a detector are kept.
        now_s
            End of the window, scalar or (n,) [s]; default each detector's latest reading.
        """
        table = self.table
        window = table.window_s if window_s is None else as_float_array(window_s, "window_s")
        window = np.broadcast_to(window, table.window_s.shape)
        now = self._last_time_s if now_s is None else as_float_array(now_s, "now_s")
        now = np.broadcast_to(now, self._last_time_s.shape)[:, np.newaxis, np.newaxis]
        detectors = np.arange(table.detector_count)[:, np.newaxis]
        slots = self._chronological_slots()
        ring_time = self._ring_time_s  # oldest first already
        ring_valid = self._ring_valid[detectors, slots]
        values = self._ring_mole_fraction[detectors, slots]
        times = ring_time[..., np.newaxis]  # (n, C, 1)
        valid = ring_valid & (times <= now)
        inside = valid & (times > now - window[:, np.newaxis, :])
        # Each reading holds until the next valid one of its gas (or now).
        following = np.where(valid, times, np.inf)[:, ::-1]
        following = np.minimum.accumulate(following, axis=1)[:, ::-1]
        following = np.concatenate((following[:, 1:], np.full_like(following[:, :1], np.inf)), 1)
        held_until = np.minimum(following, now)
        weights = np.where(inside, held_until - times, 0.0)
        count = inside.sum(axis=1)
        weight_sum = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            weighted = (weights * values).sum(axis=1) / weight_sum
            plain = np.where(inside, values, 0.0).sum(axis=1) / count
        mean = np.where(weight_sum > 0.0, weighted, plain)
        mean = np.where(count > 0, mean, np.nan)
        last_slot = np.where(ring_valid, np.arange(self.capacity)[:, np.newaxis], -1)
        last_slot = last_slot.max(axis=1)  # (n, G)
        has = last_slot >= 0
        slot = np.maximum(last_slot, 0)
        latest = np.where(has, values[detectors, slot, np.arange(len(GASES))], np.nan)
        last_time = np.where(has, ring_time[detectors, slot], np.nan)
        floor = BACKGROUND_MOLE_FRACTION + ELEVATED_NOISE_SIGMAS * table.noise_std_mole_fraction
        low = table.setpoint[..., AlarmType.LOW] * table.lel_mole_fraction
        elevated = (count > 0) & (mean >= floor) & (mean < low)
        return RecentGasStatistics(
            mean_mole_fraction=mean,
            sample_count=count.astype(np.int64),
            last_time_s=last_time,
            latest_mole_fraction=latest,
            elevated=np.asarray(elevated, dtype=np.bool_),
            window_s=np.array(window),
        )

    # ---- evaluation

    def evaluate_readings(
        self, readings: Sequence[GasReading], *, fault: npt.ArrayLike | None = None
    ) -> EvaluationResult:
        """Evaluate validated gas records (as the ingest hands them on), in time order per device.

        A reading whose ``status`` is not ok is invalid; ``fault`` (shape (N,) or (N, G), bool)
        flags more, e.g. from the health checks.
        """
        detectors, times, amounts, invalid = _readings_arrays(self.table, readings, fault)
        return self.evaluate(detectors, times, amounts, invalid=invalid)

    def evaluate(
        self,
        detector_index: npt.ArrayLike,
        time_s: npt.ArrayLike,
        mole_fraction: npt.ArrayLike,
        *,
        invalid: npt.ArrayLike | None = None,
    ) -> EvaluationResult:
        """Evaluate a batch of readings; the state advances; only transitions are returned.

        Parameters
        ----------
        detector_index
            Detector of each reading (table order), shape (N,).
        time_s
            Time of each reading, shape (N,) [s]; in time order per detector.
        mole_fraction
            Readings, shape (N, G), gases in ``GASES`` order [mol mol-1]; negatives allowed.
        invalid
            Readings not to be trusted (status not ok, health fault), shape (N,) or (N, G).
        """
        table = self.table
        detectors, times, amounts, valid_in = _batch_arrays(
            table, detector_index, time_s, mole_fraction, invalid
        )
        layout = _Layout.of(detectors, times, self._last_time_s, fast=self.fast_paths)
        if layout.rows.size == 0:
            return EvaluationResult(self._no_transitions, layout.out_of_order)
        if layout.in_order:
            t = times[:, np.newaxis]  # (R, 1): views, no gather
            raw = amounts[:, np.newaxis]  # (R, 1, G)
            valid = valid_in[:, np.newaxis]
        elif layout.uniform:
            t = times[layout.compact]  # (R, K)
            raw = amounts[layout.compact]  # (R, K, G)
            valid = valid_in[layout.compact]
        else:
            filled = layout.compact >= 0
            source = np.maximum(layout.compact, 0)
            t = np.where(filled, times[source], np.nan)
            raw = amounts[source]
            valid = filled[..., np.newaxis] & valid_in[source]
        # nan slopes (undefined) and their bands are expected: no warnings, once for the batch.
        with np.errstate(invalid="ignore", divide="ignore"):
            transitions = self._evaluate_layout(layout, t=t, raw=raw, valid=valid)
        return EvaluationResult(transitions, layout.out_of_order)

    def _evaluate_layout(
        self, layout: _Layout, *, t: FloatArray, raw: FloatArray, valid: BoolArray
    ) -> AlarmTransitions:
        """Advance the state over the accepted readings laid out (R, K); the transitions."""
        table = self.table
        rows = layout.rows
        select = layout.select(table.detector_count) if self.fast_paths else rows
        clipped = np.maximum(raw, 0.0)
        lel = table.lel_mole_fraction
        batch = self._filtered(select, clipped, valid)
        self._rebase(rows, t[:, 0])
        batch = self._with_prefix(rows, t, batch)
        # Times of the ring (oldest first) then the batch: positions 0..C-1, C..C+K-1.
        extended_time = np.concatenate((_take(self._ring_time_s, select), t), axis=1)
        slope, uncertain = self._slopes(rows, t, extended_time, batch)
        if uncertain.any():
            row, k, gas = np.nonzero(uncertain)
            slope[row, k, gas] = self._exact_slopes(
                rows, extended_time, batch, row=row, k=k, gas=gas
            )
        slope_fraction = slope / lel
        level = clipped / lel
        if self.fast_paths and self._quiet(select, level, slope_fraction):
            # No condition can become true and none is set: conditions and alarms stay off (no
            # transition); only run starts move (a valid reading after an invalid one).
            self.quiet_batches += 1
            transitions = self._no_transitions
            run_start = self._quiet_run_start(layout, select, t, valid)
            if run_start is not None:
                self._run_start_s[select] = run_start
        else:
            value = np.empty((*level.shape, len(ALARM_TYPES)))  # (R, K, G, 3)
            value[..., AlarmType.LOW] = level
            value[..., AlarmType.HIGH] = level
            value[..., AlarmType.RATE_OF_RISE] = slope_fraction
            advanced = self._advance(select, t, value, valid)
            if advanced.changed.any():
                # Reported rate-of-rise values are the reference's to the bit: recompute the few.
                row, k, gas = np.nonzero(
                    advanced.changed[..., AlarmType.RATE_OF_RISE]
                    & ~uncertain
                    & np.isfinite(value[..., AlarmType.RATE_OF_RISE])
                )
                if row.size:
                    exact = self._exact_slopes(rows, extended_time, batch, row=row, k=k, gas=gas)
                    value[row, k, gas, AlarmType.RATE_OF_RISE] = exact / lel[gas]
                transitions = _transitions(table, layout, t=t, value=value, advanced=advanced)
            else:
                transitions = self._no_transitions
            self._condition[select] = _at_last(advanced.condition, layout)
            self._run_start_s[select] = _at_last(advanced.run_start_s, layout)
            self._active[select] = _at_last(advanced.active, layout)
        self._store(layout, select, t=t, raw=raw, clipped=clipped, valid=valid, batch=batch)
        self._ring_time_s[select] = _after(extended_time, layout, self.capacity)
        last_valid = _at_last(valid, layout)
        self._broken[select] = ~last_valid
        self._held[select] = ~last_valid & _take(table.monitored, select)
        self._rate[select] = np.where(
            last_valid, _at_last(slope_fraction, layout), self._rate[select]
        )
        return transitions

    def _quiet(self, rows: IntArray | slice, level: FloatArray, slope_fraction: FloatArray) -> bool:
        """Whether no condition of the batch can be or become true (the quiet fast path).

        True when no row has a condition or an alarm set, and every value of the batch
        (valid or not) is below the lowest clear level of its gas over the whole table: then
        every valid reading is *below* its own clear level (a nan slope too), the Schmitt
        trigger stays off, no on-delay starts, and an alarm that is off stays off.
        """
        return not (
            _take(self._condition, rows).any()
            or _take(self._active, rows).any()
            or (level >= self._lowest_clear_level).any()
            or (slope_fraction >= self._lowest_clear_rate).any()
        )

    def _quiet_run_start(
        self, layout: _Layout, rows: IntArray | slice, t: FloatArray, valid: BoolArray
    ) -> FloatArray | None:
        """Run starts after a quiet batch, (R, G, 3); ``None`` where none changes.

        With every condition off throughout, a run starts exactly at a valid reading whose
        previous reading (of the detector, the last one before the batch included) was invalid
        or absent: what :meth:`_advance` finds with the condition constant.
        """
        previous_valid = _shifted(valid, ~self._broken[rows])
        new_run = valid & ~previous_valid  # (R, K, G), the same for every alarm type
        if not new_run.any():
            return None
        latest = _latest_time(new_run[..., np.newaxis], t, _take(self._run_start_s, rows))
        return _at_last(latest, layout)

    def _filtered(self, rows: IntArray | slice, clipped: FloatArray, valid: BoolArray) -> _Batch:
        """Causal median of 3 of each reading with the two accepted before it, (R, K, G).

        Defined (``filtered_valid``) only when the three readings are all valid for the gas.
        """
        values = np.concatenate((_take(self._previous_mole_fraction, rows), clipped), axis=1)
        flags = np.concatenate((_take(self._previous_valid, rows), valid), axis=1)
        readings = clipped.shape[1]
        first, second, third = (values[:, shift : shift + readings] for shift in range(3))
        median = np.maximum(np.minimum(first, second), np.minimum(np.maximum(first, second), third))
        median_valid = flags[:, :readings] & flags[:, 1 : 1 + readings] & valid
        return _Batch(median, median_valid, values, flags, np.zeros(0))

    def _rebase(self, rows: IntArray, first_time_s: FloatArray) -> None:
        """Restart the running sums at the oldest kept reading where they have grown old.

        Keeps the running sums small (their rounding error grows with the span since the
        origin); O(capacity) for the rows concerned, once every ``REBASE_AFTER_S``.
        """
        due = ~(first_time_s - self._origin_s[rows] <= REBASE_AFTER_S)  # also a nan origin
        if not due.any():
            return
        chosen = rows[due]
        filled = self._filled[chosen]
        oldest = self._ring_time_s[chosen, np.minimum(self.capacity - filled, self.capacity - 1)]
        origin = np.where(filled > 0, oldest, first_time_s[due])
        self._origin_s[chosen] = origin
        if not (filled > 0).any():
            return
        slots = self._chronological_slots(chosen)  # (M, C)
        column = chosen[:, np.newaxis]
        shifted = self._ring_time_s[chosen] - origin[:, np.newaxis]  # oldest first already
        terms = _sum_terms(
            shifted, self._ring_filtered[column, slots], self._ring_filtered_valid[column, slots]
        )
        self._ring_prefix[slots, column] = np.cumsum(terms, axis=1)

    def _with_prefix(self, rows: IntArray, t: FloatArray, batch: _Batch) -> _Batch:
        """The batch's running sums, continuing those of the ring, (R, K, G, 5)."""
        shifted = t - self._origin_s[rows][:, np.newaxis]
        terms = _sum_terms(shifted, batch.filtered, batch.filtered_valid)
        capacity = self.capacity
        newest = self._next[rows] - 1
        newest[newest < 0] = capacity - 1
        ring_prefix = self._ring_prefix.reshape(-1, *self._ring_prefix.shape[2:])
        base = ring_prefix.take(newest * self.table.detector_count + rows, axis=0)  # (R, G, 5)
        if terms.shape[1] == 1 and self.fast_paths:  # a running sum of one term is the term
            prefix = base[:, np.newaxis] + terms
        else:
            prefix = base[:, np.newaxis] + np.cumsum(terms, axis=1)
        return _Batch(
            batch.filtered, batch.filtered_valid, batch.history, batch.history_valid, prefix
        )

    def _prefix_at(self, rows: IntArray, batch: _Batch, position: IntArray) -> FloatArray:
        """Running sums at extended positions (..., R, K, G) -> (..., R, K, G, 5).

        Extended positions: the ring oldest first at 0..C-1, then the batch. With one reading
        per row every position asked for is in the ring (a window ends at the batch's reading
        and the sums are taken just before its start).
        """
        capacity, gases = self.capacity, len(GASES)
        readings = batch.prefix.shape[1]
        gas = self._gas_axis
        row_axis = rows[:, np.newaxis, np.newaxis]
        in_ring = None if readings == 1 and self.fast_paths else position < capacity
        slot = self._next[row_axis] + (
            position if in_ring is None else np.minimum(position, capacity - 1)
        )
        slot -= np.where(slot >= capacity, capacity, 0)
        ring_index = (slot * self.table.detector_count + row_axis) * gases + gas
        ring: FloatArray = self._ring_prefix.reshape(-1, _SUMS).take(ring_index, axis=0)
        if in_ring is None or (self.fast_paths and in_ring.all()):
            return ring
        batch_index = (
            np.arange(rows.size)[:, np.newaxis, np.newaxis] * readings
            + np.maximum(position - capacity, 0)
        ) * gases + gas
        in_batch = batch.prefix.reshape(-1, _SUMS).take(batch_index, axis=0)
        result: FloatArray = np.where(in_ring[..., np.newaxis], ring, in_batch)
        return result

    def _slopes(
        self, rows: IntArray, t: FloatArray, extended_time: FloatArray, batch: _Batch
    ) -> tuple[FloatArray, BoolArray]:
        """Least-squares slope over each reading's window from running sums, (R, K, G).

        Returns the slope [mol mol-1 s-1] (``nan`` where not defined) and where it is too close
        to a decision (set point, clear level, a zero denominator) for its rounding error: there
        the caller recomputes it as the reference does. The caller silences the floating-point
        warnings (nan where a slope is undefined).
        """
        table = self.table
        capacity = self.capacity
        readings = t.shape[1]
        window = table.window_s.take(rows, axis=0)[:, np.newaxis, :]  # (R, 1, G)
        # The window of the k-th reading is among extended positions k + 1 .. k + C (its end,
        # ``end``). Times increase along them (empty ring slots, nan, come first), so the
        # positions with tau > -reach are a suffix: counting them finds its first position.
        if readings == 1:
            candidates = extended_time[:, np.newaxis, 1:]  # (R, 1, C)
        else:
            candidates = extended_time[:, self._window_positions(readings)]  # (R, K, C)
        tau = (candidates - t[..., np.newaxis])[:, :, np.newaxis, :]  # (R, K, 1, C); nan: false
        # Both searches at once: the window (-reach) and the span the slope needs (-3/4 reach),
        # for one gas axis of length 1 when every gas has the same window (the usual table).
        reach = self._reach.take(rows, axis=1)[:, :, np.newaxis, :, np.newaxis]  # (2, R, 1, G', 1)
        inside = (tau > reach).sum(axis=-1)
        end = (capacity + np.arange(readings)).reshape(1, -1, 1)
        before, span_before = self._prefix_at(rows, batch, np.minimum(end + 1 - inside, end) - 1)
        prefix = batch.prefix
        sums = prefix - before
        count, sum_t, sum_x, sum_tt, sum_tx = (sums[..., index] for index in range(_SUMS))
        early = span_before[..., 0] - before[..., 0]
        count_tt = count * sum_tt
        t_t = sum_t * sum_t
        count_tx = count * sum_tx
        t_x = sum_t * sum_x
        denominator = count_tt - t_t
        slope = (count_tx - t_x) / denominator
        # Rounding error bounds: running sums of non-negative terms (times since the origin,
        # clipped readings) carry at most (terms added) x eps x their value; the reference sums
        # at most `capacity` terms of |tau| <= window.
        accumulated = prefix[..., 0] * _EPSILON
        error = accumulated[..., np.newaxis] * (np.abs(prefix) + np.abs(before))
        err_t, err_x, err_tt, err_tx = (error[..., index] for index in range(1, _SUMS))
        magnitude_n = np.abs(count_tx) + np.abs(t_x)  # count >= 0: |count s| = count |s|
        magnitude_d = count_tt + t_t
        reference_n = self.capacity * _EPSILON * 2.0 * count * window * sum_x
        reference_d = self.capacity * _EPSILON * 2.0 * count * count * window * window
        abs_t = np.abs(sum_t)
        error_n = (
            count * err_tx
            + abs_t * err_x
            + sum_x * err_t
            + _GUARD_ULPS * _EPSILON * magnitude_n
            + reference_n
        )
        error_d = count * err_tt + 2.0 * abs_t * err_t + _GUARD_ULPS * _EPSILON * magnitude_d
        error_d += reference_d
        candidate = (count >= RATE_OF_RISE_MIN_SAMPLES) & (early >= 1.0)
        lel = table.lel_mole_fraction
        band = _GUARD_FACTOR * (error_n + np.abs(slope) * error_d) / denominator / lel
        value = slope / lel
        # Distance to the set point and to the clear level at once, (R, K, 2, G).
        levels = self._rate_levels.take(rows, axis=0)[:, np.newaxis]  # (R, 1, 2, G)
        distance = np.abs(value[:, :, np.newaxis] - levels)
        close = distance <= band[:, :, np.newaxis]
        near = close[:, :, 0] | close[:, :, 1]
        uncertain = candidate & ((denominator <= _GUARD_FACTOR * error_d) | ~(band >= 0.0) | near)
        uncertain &= batch.history_valid[:, 2:]  # only valid readings compare their slope
        slope[~(candidate & (denominator > 0.0))] = np.nan
        return slope, uncertain

    def _window_positions(self, readings: int) -> IntArray:
        """Extended positions of the windows of readings 0..K-1: k + 1 .. k + C, (K, C)."""
        positions = self._window_index.get(readings)
        if positions is None:
            positions = np.arange(readings)[:, np.newaxis] + 1 + np.arange(self.capacity)
            self._window_index[readings] = positions
        return positions

    def _exact_slopes(
        self,
        rows: IntArray,
        extended_time: FloatArray,
        batch: _Batch,
        *,
        row: IntArray,
        k: IntArray,
        gas: IntArray,
    ) -> FloatArray:
        """The reference's slope of the chosen (row, k, gas), bit for bit, (F,).

        Their windows are gathered from ring and batch, and summed as the reference does
        (:func:`_window_slopes`).
        """
        capacity = self.capacity
        position = k[:, np.newaxis] + 1 + np.arange(capacity)  # (F, C) extended positions
        in_ring = position < capacity
        detector = rows[row][:, np.newaxis]
        ring_slot = (self._next[detector] + position) % capacity
        entry = (row[:, np.newaxis], np.maximum(position - capacity, 0), gas[:, np.newaxis])
        ring_entry = (detector, ring_slot, gas[:, np.newaxis])
        x = np.where(in_ring, self._ring_filtered[ring_entry], batch.filtered[entry])
        ok = np.where(in_ring, self._ring_filtered_valid[ring_entry], batch.filtered_valid[entry])
        slope = _window_slopes(
            extended_time[row[:, np.newaxis], position][:, np.newaxis, :],
            x[:, np.newaxis, np.newaxis, :],
            ok[:, np.newaxis, np.newaxis, :],
            end_s=extended_time[row, capacity + k][:, np.newaxis],
            window_s=self.table.window_s[rows[row], gas][:, np.newaxis],
        )
        return slope[:, 0, 0]

    def _advance(
        self, rows: IntArray | slice, t: FloatArray, value: FloatArray, valid: BoolArray
    ) -> _Advanced:
        """Schmitt trigger, run starts and the delayed alarm latch along the reading axis."""
        levels = _take(self._levels, rows)  # (R, 2, G, 3): set point, clear level
        setpoint = levels[:, np.newaxis, 0]  # (R, 1, G, 3)
        clear = levels[:, np.newaxis, 1]
        valid_a = valid[..., np.newaxis]
        above = valid_a & (value >= setpoint)
        below = valid_a & ~(value >= clear)  # includes an undefined (nan) slope
        initial = _take(self._condition, rows)
        condition = _latest_flag(above | below, above, initial)
        previous_valid = _shifted(valid, ~self._broken[rows])[..., np.newaxis]
        new_run = valid_a & ((condition != _shifted(condition, initial)) | ~previous_valid)
        run_start = _latest_time(new_run, t, _take(self._run_start_s, rows))
        elapsed = t[:, :, np.newaxis, np.newaxis] - run_start
        on = valid_a & condition & (elapsed >= _take(self._on_delay_s, rows))
        off = valid_a & ~condition & (elapsed >= _take(self._off_delay_s, rows))
        initial_active = _take(self._active, rows)
        active = _latest_flag(on | off, on, initial_active)
        changed = active != _shifted(active, initial_active)
        return _Advanced(condition, run_start, active, changed, setpoint)

    def _store(
        self,
        layout: _Layout,
        select: IntArray | slice,
        *,
        t: FloatArray,
        raw: FloatArray,
        clipped: FloatArray,
        valid: BoolArray,
        batch: _Batch,
    ) -> None:
        """Write the accepted readings into the circular buffers (the last ``capacity`` only).

        Not the times: the caller shifts them into their register.
        """
        capacity = self.capacity
        rows, accepted_count = layout.rows, layout.accepted_count
        readings = t.shape[1]
        sources = (clipped, valid, batch.filtered, batch.filtered_valid)
        rings = (
            self._ring_mole_fraction,
            self._ring_valid,
            self._ring_filtered,
            self._ring_filtered_valid,
        )
        if layout.uniform and readings <= capacity:
            # Every reading of every row is kept: no selection.
            detector = rows[:, np.newaxis]
            slots = _wrapped(self._next[detector] + np.arange(readings), capacity)
            entry = detector * capacity + slots  # flat (detector, slot): one index, not two
            for ring, values in zip(rings, sources, strict=True):
                ring.reshape(-1, ring.shape[-1])[entry] = values
            self._ring_prefix.reshape(-1, *self._ring_prefix.shape[2:])[
                slots * self.table.detector_count + detector
            ] = batch.prefix
        else:
            k = np.arange(readings)[np.newaxis, :]
            count = accepted_count[:, np.newaxis]
            row, column = np.nonzero((k < count) & (k >= count - capacity))
            slot = (self._next[rows[row]] + column) % capacity
            for ring, values in zip(rings, sources, strict=True):
                ring[rows[row], slot] = values[row, column]
            self._ring_prefix[slot, rows[row]] = batch.prefix[row, column]
        added = layout.width if layout.uniform else accepted_count
        self._next[select] = (self._next[select] + added) % capacity
        self._filled[select] = np.minimum(self._filled[select] + added, capacity)
        # The two latest accepted readings: positions accepted, accepted + 1 of the history.
        self._previous_mole_fraction[select] = _after(batch.history, layout, _MEDIAN_HISTORY)
        self._previous_valid[select] = _after(batch.history_valid, layout, _MEDIAN_HISTORY)
        self._last_time_s[select] = _at_last(t, layout)
        self._latest_raw[select] = _at_last(raw, layout)


# --------------------------------------------------------------------------------------------
# The per-reading specification (tests and the benchmark's baseline)


def _median_of_three(
    previous: deque[tuple[list[float], list[bool]]], clipped: list[float], flags: list[bool]
) -> tuple[list[float], list[bool]]:
    """Per gas: median of the two previous accepted readings and this one, if all are valid."""
    filtered: list[float] = []
    defined: list[bool] = []
    for gas in range(len(GASES)):
        if len(previous) < _MEDIAN_HISTORY or not (
            flags[gas] and all(entry[1][gas] for entry in previous)
        ):
            filtered.append(0.0)
            defined.append(False)
            continue
        first, second, third = previous[0][0][gas], previous[1][0][gas], clipped[gas]
        filtered.append(max(min(first, second), min(max(first, second), third)))
        defined.append(True)
    return filtered, defined


@dataclass
class _PairState:
    condition: list[bool]
    run_start_s: list[float]
    active: list[bool]
    broken: bool = True
    held: bool = False


class SequentialGasAlarmEvaluator:
    """The same alarms, one reading at a time in plain Python: the specification.

    Straightforward and slow; :class:`GasAlarmEvaluator` must give identical transitions (the
    tests check it with hypothesis) and ``bench/thresholds.py`` times it as the baseline.
    """

    def __init__(self, table: SetpointTable, *, capacity: int | None = None) -> None:
        self.table = table
        self.capacity = (
            _default_capacity(table.window_s, table.sample_period_s)
            if capacity is None
            else int(capacity)
        )
        n = table.detector_count
        self._lel = [float(value) for value in table.lel_mole_fraction]
        self._setpoint = table.setpoint.tolist()
        self._clear = table.clear_level.tolist()
        self._on = table.on_delay_s.tolist()
        self._off = table.off_delay_s.tolist()
        self._window = table.window_s.tolist()
        self._monitored = table.monitored.tolist()
        self._last_time = [-math.inf] * n
        self._ring: list[deque[tuple[float, list[float], list[bool]]]] = [
            deque(maxlen=self.capacity) for _ in range(n)
        ]
        # The two latest accepted readings (clipped, valid) of each detector: the median's inputs.
        self._previous: list[deque[tuple[list[float], list[bool]]]] = [
            deque(maxlen=_MEDIAN_HISTORY) for _ in range(n)
        ]
        alarms = len(ALARM_TYPES)
        self._state = [
            [_PairState([False] * alarms, [-math.inf] * alarms, [False] * alarms) for _ in GASES]
            for _ in range(n)
        ]

    @property
    def active(self) -> BoolArray:
        """Active alarms, shape (n, G, 3)."""
        return np.array(
            [[pair.active for pair in detector] for detector in self._state], dtype=np.bool_
        ).reshape(self.table.detector_count, len(GASES), len(ALARM_TYPES))

    @property
    def held_by_fault(self) -> BoolArray:
        """Detector x gas whose latest reading was invalid, shape (n, G)."""
        return np.array(
            [[pair.held for pair in detector] for detector in self._state], dtype=np.bool_
        ).reshape(self.table.detector_count, len(GASES))

    @property
    def active_held_by_fault(self) -> BoolArray:
        """Active alarms whose detector x gas is held by a fault, shape (n, G, 3)."""
        return self.active & self.held_by_fault[..., np.newaxis]

    def evaluate(
        self,
        detector_index: npt.ArrayLike,
        time_s: npt.ArrayLike,
        mole_fraction: npt.ArrayLike,
        *,
        invalid: npt.ArrayLike | None = None,
    ) -> EvaluationResult:
        """Same contract as :meth:`GasAlarmEvaluator.evaluate`."""
        detectors, times, amounts, valid = _batch_arrays(
            self.table, detector_index, time_s, mole_fraction, invalid
        )
        found: list[tuple[int, int, int, int, bool, float, float, float]] = []
        refused: list[int] = []
        for reading, (detector, time, values, flags) in enumerate(
            zip(detectors.tolist(), times.tolist(), amounts.tolist(), valid.tolist(), strict=True)
        ):
            if not time > self._last_time[detector]:
                refused.append(reading)
                continue
            self._last_time[detector] = time
            clipped = [max(value, 0.0) for value in values]
            previous = self._previous[detector]
            filtered, filtered_valid = _median_of_three(previous, clipped, flags)
            previous.append((clipped, flags))
            ring = self._ring[detector]
            ring.append((time, filtered, filtered_valid))
            for gas in range(len(GASES)):
                pair = self._state[detector][gas]
                if not flags[gas]:
                    pair.broken = True
                    pair.held = self._monitored[detector][gas]
                    continue
                pair.held = False
                lel = self._lel[gas]
                level = clipped[gas] / lel
                rate = self._slope(ring, time, gas, self._window[detector][gas]) / lel
                for alarm, value in enumerate((level, level, rate)):
                    setpoint = self._setpoint[detector][gas][alarm]
                    previous = pair.condition[alarm]
                    if value >= setpoint:
                        condition = True
                    elif not value >= self._clear[detector][gas][alarm]:  # nan slope: false
                        condition = False
                    else:
                        condition = previous
                    if condition != previous or pair.broken:
                        pair.run_start_s[alarm] = time
                    pair.condition[alarm] = condition
                    elapsed = time - pair.run_start_s[alarm]
                    active = pair.active[alarm]
                    if condition and elapsed >= self._on[detector][gas]:
                        active = True
                    elif not condition and elapsed >= self._off[detector][gas]:
                        active = False
                    if active != pair.active[alarm]:
                        pair.active[alarm] = active
                        found.append((reading, detector, gas, alarm, active, time, value, setpoint))
                pair.broken = False
        return EvaluationResult(self._as_arrays(found), np.array(refused, dtype=np.int64))

    @staticmethod
    def _slope(
        ring: deque[tuple[float, list[float], list[bool]]], time: float, gas: int, window: float
    ) -> float:
        count = sum_t = sum_x = sum_tt = sum_tx = 0.0
        earliest = 0.0
        for sample_time, values, flags in ring:
            tau = sample_time - time
            if not (flags[gas] and tau > -window):
                continue
            x = values[gas]
            count += 1.0
            sum_t += tau
            sum_x += x
            sum_tt += tau * tau
            sum_tx += tau * x
            earliest = min(earliest, tau)
        denominator = count * sum_tt - sum_t * sum_t
        if (
            count < RATE_OF_RISE_MIN_SAMPLES
            or -earliest < RATE_OF_RISE_MIN_SPAN_FRACTION * window
            or not denominator > 0.0
        ):
            return math.nan
        return (count * sum_tx - sum_t * sum_x) / denominator

    def _as_arrays(
        self, found: list[tuple[int, int, int, int, bool, float, float, float]]
    ) -> AlarmTransitions:
        if not found:
            return AlarmTransitions.empty(self.table.lel_basis)
        reading, detector, gas, alarm, active, time, value, setpoint = zip(*found, strict=True)
        return AlarmTransitions(
            lel_basis=self.table.lel_basis,
            reading_index=np.array(reading, dtype=np.int64),
            detector_index=np.array(detector, dtype=np.int64),
            gas_index=np.array(gas, dtype=np.int64),
            alarm_type=np.array(alarm, dtype=np.int64),
            became_active=np.array(active, dtype=np.bool_),
            time_s=np.array(time, dtype=np.float64),
            value_fraction_lel=np.array(value, dtype=np.float64),
            setpoint_fraction_lel=np.array(setpoint, dtype=np.float64),
        )
