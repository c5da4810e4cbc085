"""Point gas detector physics for all detectors of a site at once.

The model takes the TRUE mole fraction of each monitored gas at each sensing head (computed by the
dispersion physics in :mod:`pipesentinel.detection`) and returns what the devices report. It is
vectorized: state arrays of shape ``(n_detectors, n_gases)`` and one :meth:`GasSensorArray.step`
per sample tick, with no Python loop over detectors. Randomness comes only from the
:class:`numpy.random.Generator` passed to :meth:`GasSensorArray.step`, and every step draws the
same number of variates whatever the faults, so a seed gives identical outputs.

Per step, for every detector and channel:

1. **First-order response** with time constant ``tau = t90 / ln(10)``, updated exactly for an
   input held over the step (zero-order hold): ``y <- u + (y - u) exp(-dt / tau)``.
2. **Zero drift**: a random walk of the zero point plus an optional linear drift rate.
3. **Noise**: Gaussian white noise (configurable per gas, as a fraction of full scale).
4. **Quantisation** to the output resolution and **clipping** to the valid signal band (NAMUR
   NE 43 lower saturation .. full scale).
5. **Injected faults** (:class:`GasFaultKind`) and the **self-reported status** of the MQTT
   contract (:class:`~pipesentinel.ingest.records.DeviceStatus`: ok / fault / warmup /
   calibration) with a fault code (:class:`GasFaultCode`).

Everything is SI: mole fractions [mol mol-1], seconds. The MQTT edge converts to ppm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
from numpy.typing import NDArray

from pipesentinel.ingest.records import DeviceStatus
from pipesentinel.site import Gas, Site
from pipesentinel.units import PPM

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Int8Array = NDArray[np.int8]

# Channel order of every (n_detectors, n_gases) array: methane, then propane.
GASES: tuple[Gas, ...] = tuple(Gas)

# A first-order system reaches 90 % of a step after t90 = tau * ln(10), since
# 1 - exp(-t90 / tau) = 0.9 (e.g. Franklin, Powell & Workman, "Digital Control of Dynamic
# Systems", 3rd ed., 1998, ch. 4: exact zero-order-hold discretisation exp(-dt / tau)). t(90) is
# the response time tested by EN/IEC 60079-29-1.
T90_PER_TIME_CONSTANT = math.log(10.0)

# NAMUR NE 43 signal levels of a 4-20 mA transmitter, here expressed as fractions of the measuring
# range (4 mA = 0, 20 mA = 1, span 16 mA): readings down to 3.8 mA are an under-range saturation of
# a valid measurement, below 3.6 mA the transmitter signals a failure, above 21 mA likewise.
_NAMUR_ZERO_MA = 4.0
_NAMUR_SPAN_MA = 16.0


def _namur_fraction(current_ma: float) -> float:
    """A NAMUR NE 43 loop current as a fraction of the measuring range [1]."""
    return (current_ma - _NAMUR_ZERO_MA) / _NAMUR_SPAN_MA


LOWER_SATURATION_FRACTION_OF_FULL_SCALE = _namur_fraction(3.8)  # -0.0125, NE 43
FAULT_LOW_THRESHOLD_FRACTION_OF_FULL_SCALE = _namur_fraction(3.6)  # -0.025, NE 43 failure limit
FAULT_LOW_LEVEL_FRACTION_OF_FULL_SCALE = _namur_fraction(3.5)  # reported while under range
FAULT_HIGH_LEVEL_FRACTION_OF_FULL_SCALE = _namur_fraction(22.0)  # 1.125, pegged over range

# Datasheet class of an infrared point detector for methane and propane, 0-100 %LEL, measuring
# error to EN 60079-29-1 (Sewerin EX-TEC PM 400 operating manual, appendix 9.2.1 "Infrared
# sensors"): short-term stability +-1 % of range, long-term stability +-2 % of range, t90 < 25 s,
# warm-up < 120 s. We read the +-1 % short-term band as 2 sigma of white noise, and the +-2 %
# long-term band as 2 sigma of the zero random walk after 90 days.
DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE = 0.005
_LONG_TERM_STABILITY_FRACTION_OF_FULL_SCALE = 0.01  # 1 sigma, half of the +-2 % band
_LONG_TERM_STABILITY_PERIOD_S = 90 * 86400.0
DEFAULT_ZERO_RANDOM_WALK_FRACTION_OF_FULL_SCALE_PER_SQRT_S = (
    _LONG_TERM_STABILITY_FRACTION_OF_FULL_SCALE / math.sqrt(_LONG_TERM_STABILITY_PERIOD_S)
)
DEFAULT_WARMUP_S = 120.0
# The digital output resolves 0.1 % of range; a design choice, finer than the 1 %LEL display
# resolution of the cited datasheet (a 16-bit digital output resolves far more).
DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE = 0.001

# Default parameters of injected faults (illustrative, chosen to be clearly visible).
DEFAULT_SPIKE_PROBABILITY = 0.02  # per sample
DEFAULT_SPIKE_AMPLITUDE_FRACTION_OF_FULL_SCALE = 0.5
# Each spike is the amplitude times a uniform factor in [SPIKE_FACTOR_MIN, SPIKE_FACTOR_MIN + 1).
SPIKE_FACTOR_MIN = 0.5
DEFAULT_UNDER_RANGE_OFFSET_FRACTION_OF_FULL_SCALE = -0.05  # below the NE 43 failure limit
DEFAULT_DRIFT_RATE_FRACTION_OF_FULL_SCALE_PER_S = 5e-5  # 18 % of range per hour
# Test gas of the cited datasheet: CH4 2.2 %vol on a 4.4 %vol range, i.e. 50 % of range.
DEFAULT_SPAN_GAS_FRACTION_OF_FULL_SCALE = 0.5


class GasFaultKind(IntEnum):
    """A fault injected into one detector (integer codes for the state arrays)."""

    NONE = 0
    STUCK = 1  # flatline: reports the value it had when the fault began
    OFFLINE = 2  # publishes nothing
    SPIKES = 3  # isolated large positive spikes with a probability per sample
    UNDER_RANGE = 4  # negative zero offset beyond the NE 43 failure limit
    OUT_OF_RANGE = 5  # output pegged above full scale
    DRIFT = 6  # strong linear zero drift (accumulates; cleared by a calibration)
    CALIBRATION = 7  # span gas applied by a technician; the zero is re-adjusted


class GasFaultCode(StrEnum):
    """Fault code a detector reports with ``status = fault`` (MQTT ``fault_code``)."""

    UNDER_RANGE = "under_range"
    OVER_RANGE = "over_range"
    STUCK = "stuck"
    SPIKES = "spikes"
    DRIFT = "drift"


# Index tables of the integer arrays in GasSensorOutput.
STATUSES: tuple[DeviceStatus, ...] = tuple(DeviceStatus)
FAULT_CODES: tuple[GasFaultCode | None, ...] = (None, *GasFaultCode)
_STATUS_INDEX = {status: np.int8(index) for index, status in enumerate(STATUSES)}
_FAULT_CODE_INDEX = {code: np.int8(index) for index, code in enumerate(FAULT_CODES)}
_SELF_REPORTABLE_CODES = {
    GasFaultKind.STUCK: GasFaultCode.STUCK,
    GasFaultKind.SPIKES: GasFaultCode.SPIKES,
    GasFaultKind.DRIFT: GasFaultCode.DRIFT,
}


def time_constant_s(t90_s: FloatArray | float) -> FloatArray:
    """Time constant of a first-order sensor with the given t90 [s]."""
    return np.asarray(t90_s, dtype=np.float64) / T90_PER_TIME_CONSTANT


def first_order_response(
    response: FloatArray, target: FloatArray, dt_s: float, t90_s: FloatArray
) -> FloatArray:
    """Exact first-order update over ``dt_s`` for an input held constant over the step.

    Parameters
    ----------
    response
        Current sensor response, any shape [mol mol-1].
    target
        Input (true mole fraction) during the step, broadcastable to ``response`` [mol mol-1].
    dt_s
        Step [s].
    t90_s
        90 % response time, broadcastable to ``response``; 0 means instantaneous [s].

    Returns
    -------
    FloatArray
        Response at the end of the step [mol mol-1].
    """
    t90 = np.asarray(t90_s, dtype=np.float64)
    with np.errstate(divide="ignore"):
        decay = np.where(t90 > 0.0, np.exp(-dt_s * T90_PER_TIME_CONSTANT / np.maximum(t90, 0)), 0.0)
    return target + (response - target) * decay


def quantise(value: FloatArray, resolution: FloatArray) -> FloatArray:
    """Round to the nearest multiple of ``resolution`` (unchanged where it is 0) [input unit]."""
    safe = np.where(resolution > 0.0, resolution, 1.0)
    return np.where(resolution > 0.0, np.round(value / safe) * safe, value)


@dataclass(frozen=True)
class GasChannelParameters:
    """Sensor figures of one gas channel, as fractions of each detector's full scale.

    Attributes
    ----------
    noise_std_fraction_of_full_scale
        Standard deviation of the white noise [1].
    resolution_fraction_of_full_scale
        Output resolution; 0 disables quantisation [1].
    zero_random_walk_fraction_of_full_scale_per_sqrt_s
        Random-walk intensity of the zero point: its standard deviation grows as this times
        ``sqrt(t)`` [s-1/2].
    zero_drift_rate_fraction_of_full_scale_per_s
        Deterministic linear drift of the zero point [s-1].
    """

    noise_std_fraction_of_full_scale: float = DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE
    resolution_fraction_of_full_scale: float = DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE
    zero_random_walk_fraction_of_full_scale_per_sqrt_s: float = (
        DEFAULT_ZERO_RANDOM_WALK_FRACTION_OF_FULL_SCALE_PER_SQRT_S
    )
    zero_drift_rate_fraction_of_full_scale_per_s: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "noise_std_fraction_of_full_scale",
            "resolution_fraction_of_full_scale",
            "zero_random_walk_fraction_of_full_scale_per_sqrt_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"GasChannelParameters.{name} must be finite and >= 0, got {value}"
                )
        if not math.isfinite(self.zero_drift_rate_fraction_of_full_scale_per_s):
            raise ValueError("GasChannelParameters.zero_drift_rate_fraction_of_full_scale_per_s")


def _default_channels() -> dict[Gas, GasChannelParameters]:
    return {gas: GasChannelParameters() for gas in GASES}


@dataclass(frozen=True)
class GasSensorParameters:
    """Sensor figures shared by the detectors of a site.

    Attributes
    ----------
    channels
        Figures per gas; a gas missing here gets the defaults.
    warmup_s
        Time after power-on during which detectors report ``warmup`` [s].
    report_negative_readings
        Whether readings below zero are reported as such (true to the transmitter: zero noise and
        negative drift down to the NE 43 saturation, and the under-range fault level) or floored
        at 0 (a zero-suppressed output; the under-range fault is then only in the status).
    """

    channels: Mapping[Gas, GasChannelParameters] = field(default_factory=_default_channels)
    warmup_s: float = DEFAULT_WARMUP_S
    report_negative_readings: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0.0):
            raise ValueError(f"GasSensorParameters.warmup_s must be >= 0, got {self.warmup_s}")

    def channel(self, gas: Gas) -> GasChannelParameters:
        """Figures of one gas channel."""
        return self.channels.get(gas, GasChannelParameters())


@dataclass(frozen=True)
class GasFault:
    """One fault of one detector with its parameters (the defaults are the module constants).

    Attributes
    ----------
    kind
        What goes wrong.
    spike_probability
        SPIKES: probability of a spike per sample [1].
    spike_amplitude_fraction_of_full_scale
        SPIKES: spike height; each spike is this times a uniform factor in [0.5, 1.5) [1].
    offset_fraction_of_full_scale
        UNDER_RANGE: zero offset added while the fault lasts, negative [1].
    level_fraction_of_full_scale
        OUT_OF_RANGE: the level the output is pegged at, above 1 [1].
    drift_rate_fraction_of_full_scale_per_s
        DRIFT: zero drift rate added while the fault lasts; the offset stays afterwards [s-1].
    span_fraction_of_full_scale
        CALIBRATION: span gas applied to every channel [1].
    self_reported
        STUCK, SPIKES, DRIFT: whether the detector notices and reports ``fault`` (default: a
        silent fault that only plausibility checks downstream can catch).
    """

    kind: GasFaultKind
    spike_probability: float = DEFAULT_SPIKE_PROBABILITY
    spike_amplitude_fraction_of_full_scale: float = DEFAULT_SPIKE_AMPLITUDE_FRACTION_OF_FULL_SCALE
    offset_fraction_of_full_scale: float = DEFAULT_UNDER_RANGE_OFFSET_FRACTION_OF_FULL_SCALE
    level_fraction_of_full_scale: float = FAULT_HIGH_LEVEL_FRACTION_OF_FULL_SCALE
    drift_rate_fraction_of_full_scale_per_s: float = DEFAULT_DRIFT_RATE_FRACTION_OF_FULL_SCALE_PER_S
    span_fraction_of_full_scale: float = DEFAULT_SPAN_GAS_FRACTION_OF_FULL_SCALE
    self_reported: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.spike_probability <= 1.0:
            problems.append(f"spike_probability must be in [0, 1], got {self.spike_probability}")
        if not self.spike_amplitude_fraction_of_full_scale >= 0.0:
            problems.append("spike_amplitude_fraction_of_full_scale must be >= 0")
        if not self.offset_fraction_of_full_scale < 0.0:
            problems.append(
                "offset_fraction_of_full_scale must be < 0, got "
                f"{self.offset_fraction_of_full_scale}"
            )
        if not self.level_fraction_of_full_scale > 1.0:
            problems.append(
                f"level_fraction_of_full_scale must be > 1, got {self.level_fraction_of_full_scale}"
            )
        if not math.isfinite(self.drift_rate_fraction_of_full_scale_per_s):
            problems.append("drift_rate_fraction_of_full_scale_per_s must be finite")
        if not 0.0 <= self.span_fraction_of_full_scale <= 1.0:
            problems.append(
                f"span_fraction_of_full_scale must be in [0, 1], got "
                f"{self.span_fraction_of_full_scale}"
            )
        if problems:
            raise ValueError(f"GasFault({self.kind.name}): " + "; ".join(problems))


@dataclass(frozen=True)
class GasFaultTable:
    """The faults active on every detector during one step, as arrays of shape (n_detectors,).

    Build it with :meth:`none` or :meth:`from_faults`, or from a schedule with
    :meth:`GasFaultSchedule.at`.
    """

    kind: Int8Array
    spike_probability: FloatArray
    spike_amplitude_fraction_of_full_scale: FloatArray
    offset_fraction_of_full_scale: FloatArray
    level_fraction_of_full_scale: FloatArray
    drift_rate_fraction_of_full_scale_per_s: FloatArray
    span_fraction_of_full_scale: FloatArray
    self_reported: BoolArray

    @classmethod
    def none(cls, n_detectors: int) -> GasFaultTable:
        """No fault on any of ``n_detectors`` detectors."""
        return cls.from_faults(n_detectors, {})

    @classmethod
    def from_faults(cls, n_detectors: int, faults: Mapping[int, GasFault]) -> GasFaultTable:
        """Table with ``faults[i]`` on detector index ``i`` and no fault elsewhere."""
        default = GasFault(GasFaultKind.NONE)
        rows = [faults.get(index, default) for index in range(n_detectors)]
        bad = [index for index in faults if not 0 <= index < n_detectors]
        if bad:
            raise ValueError(f"fault detector indices {bad} outside 0..{n_detectors - 1}")

        def column(name: str) -> FloatArray:
            return np.array([getattr(row, name) for row in rows], dtype=np.float64)

        return cls(
            kind=np.array([row.kind for row in rows], dtype=np.int8),
            spike_probability=column("spike_probability"),
            spike_amplitude_fraction_of_full_scale=column("spike_amplitude_fraction_of_full_scale"),
            offset_fraction_of_full_scale=column("offset_fraction_of_full_scale"),
            level_fraction_of_full_scale=column("level_fraction_of_full_scale"),
            drift_rate_fraction_of_full_scale_per_s=column(
                "drift_rate_fraction_of_full_scale_per_s"
            ),
            span_fraction_of_full_scale=column("span_fraction_of_full_scale"),
            self_reported=np.array([row.self_reported for row in rows], dtype=np.bool_),
        )


_TABLE_FIELDS: tuple[str, ...] = (
    "kind",
    "spike_probability",
    "spike_amplitude_fraction_of_full_scale",
    "offset_fraction_of_full_scale",
    "level_fraction_of_full_scale",
    "drift_rate_fraction_of_full_scale_per_s",
    "span_fraction_of_full_scale",
    "self_reported",
)


@dataclass(frozen=True)
class GasFaultSchedule:
    """Faults over time: rows of (detector index, start, end, fault), evaluated vectorized.

    A fault is active on ``[start_s, end_s)``. Rows of one detector must not overlap in time
    (the scenario loader checks this; here the later row wins).
    """

    n_detectors: int
    detector_index: NDArray[np.intp]
    start_s: FloatArray
    end_s: FloatArray
    faults: tuple[GasFault, ...]
    _rows: GasFaultTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_rows = len(self.faults)
        shapes = {self.detector_index.shape, self.start_s.shape, self.end_s.shape}
        if shapes != {(n_rows,)}:
            raise ValueError("GasFaultSchedule: detector_index, start_s, end_s and faults differ")
        if np.any(self.end_s <= self.start_s):
            raise ValueError("GasFaultSchedule: a fault ends before it starts")
        if np.any((self.detector_index < 0) | (self.detector_index >= self.n_detectors)):
            raise ValueError(f"GasFaultSchedule: detector index outside 0..{self.n_detectors - 1}")
        rows = GasFaultTable.from_faults(n_rows, dict(enumerate(self.faults)))
        object.__setattr__(self, "_rows", rows)

    @classmethod
    def empty(cls, n_detectors: int) -> GasFaultSchedule:
        """A schedule without faults."""
        return cls(
            n_detectors=n_detectors,
            detector_index=np.zeros(0, dtype=np.intp),
            start_s=np.zeros(0),
            end_s=np.zeros(0),
            faults=(),
        )

    def at(self, time_s: float) -> GasFaultTable:
        """Faults active at ``time_s`` [s]."""
        rows = np.flatnonzero((self.start_s <= time_s) & (time_s < self.end_s))
        out = GasFaultTable.none(self.n_detectors)
        target = self.detector_index[rows]
        for name in _TABLE_FIELDS:
            getattr(out, name)[target] = getattr(self._rows, name)[rows]
        return out


@dataclass(frozen=True)
class GasSensorOutput:
    """What the detectors report after one step.

    Attributes
    ----------
    mole_fraction
        Reported reading per detector and gas, shape (n_detectors, n_gases) in the order of
        :data:`GASES`; NaN where a detector has no such channel [mol mol-1].
    publish
        Whether each detector publishes this sample (False while OFFLINE), shape (n_detectors,).
    status_index
        Index into :data:`STATUSES` per detector.
    fault_code_index
        Index into :data:`FAULT_CODES` per detector (0: no fault code).
    """

    mole_fraction: FloatArray
    publish: BoolArray
    status_index: Int8Array
    fault_code_index: Int8Array

    def status(self, detector_index: int) -> DeviceStatus:
        """Self-reported status of one detector."""
        return STATUSES[int(self.status_index[detector_index])]

    def fault_code(self, detector_index: int) -> GasFaultCode | None:
        """Fault code of one detector, ``None`` unless its status is ``fault``."""
        return FAULT_CODES[int(self.fault_code_index[detector_index])]

    def reading_ppm(self, detector_index: int) -> dict[Gas, float]:
        """Readings of one detector's channels in ppm, for the MQTT edge [ppm]."""
        row = self.mole_fraction[detector_index]
        return {
            gas: float(PPM.from_si(float(value)))
            for gas, value in zip(GASES, row, strict=True)
            if not math.isnan(value)
        }


def self_reported_status(
    *, kind: Int8Array, self_reported: BoolArray, under_range: BoolArray, warming_up: bool
) -> tuple[Int8Array, Int8Array]:
    """Status and fault code each detector reports, as indices into the lookup tables.

    Later rules take precedence: OK; a self-reported STUCK / SPIKES / DRIFT fault; UNDER_RANGE
    (a reading below the NE 43 failure limit); OUT_OF_RANGE; CALIBRATION; WARMUP (every
    detector while ``warming_up``).

    Parameters
    ----------
    kind
        Active :class:`GasFaultKind` per detector, shape (n,).
    self_reported
        Whether a STUCK / SPIKES / DRIFT fault is noticed by the detector, shape (n,).
    under_range
        Whether any channel of the detector is below the failure limit, shape (n,).
    warming_up
        Whether the detectors are still warming up after power-on.

    Returns
    -------
    tuple of Int8Array
        Indices into :data:`STATUSES` and :data:`FAULT_CODES`, shape (n,) each.
    """
    n = kind.shape[0]
    status = np.full(n, _STATUS_INDEX[DeviceStatus.OK], dtype=np.int8)
    code = np.zeros(n, dtype=np.int8)
    rules: list[tuple[BoolArray, DeviceStatus, GasFaultCode | None]] = [
        ((kind == fault_kind) & self_reported, DeviceStatus.FAULT, fault_code)
        for fault_kind, fault_code in _SELF_REPORTABLE_CODES.items()
    ]
    rules += [
        (under_range, DeviceStatus.FAULT, GasFaultCode.UNDER_RANGE),
        (kind == GasFaultKind.OUT_OF_RANGE, DeviceStatus.FAULT, GasFaultCode.OVER_RANGE),
        (kind == GasFaultKind.CALIBRATION, DeviceStatus.CALIBRATION, None),
        (np.full(n, warming_up), DeviceStatus.WARMUP, None),
    ]
    for mask, reported_status, fault_code in rules:
        status[mask] = _STATUS_INDEX[reported_status]
        code[mask] = _FAULT_CODE_INDEX[fault_code]
    return status, code


class GasSensorArray:
    """All point gas detectors of a site, stepped together.

    Parameters
    ----------
    detector_ids
        Ids in the order of the state arrays.
    t90_s
        90 % response time per detector, shape (n,) [s].
    full_scale_mole_fraction
        Measuring range (full scale) per detector, shape (n,) [mol mol-1].
    channel_present
        Which gases each detector measures, shape (n, n_gases) bool in the order of
        :data:`GASES`.
    parameters
        Sensor figures.
    """

    def __init__(
        self,
        *,
        detector_ids: Sequence[str],
        t90_s: FloatArray,
        full_scale_mole_fraction: FloatArray,
        channel_present: BoolArray,
        parameters: GasSensorParameters | None = None,
    ) -> None:
        n = len(detector_ids)
        self.detector_ids: tuple[str, ...] = tuple(detector_ids)
        self.t90_s = np.array(t90_s, dtype=np.float64)
        self.full_scale_mole_fraction = np.array(full_scale_mole_fraction, dtype=np.float64)
        self.channel_present = np.array(channel_present, dtype=np.bool_)
        if self.t90_s.shape != (n,) or self.full_scale_mole_fraction.shape != (n,):
            raise ValueError(f"t90_s and full_scale_mole_fraction must have shape ({n},)")
        if self.channel_present.shape != (n, len(GASES)):
            raise ValueError(f"channel_present must have shape ({n}, {len(GASES)})")
        if np.any(~np.isfinite(self.t90_s) | (self.t90_s < 0.0)):
            raise ValueError("t90_s must be finite and >= 0")
        if np.any(
            ~np.isfinite(self.full_scale_mole_fraction) | (self.full_scale_mole_fraction <= 0)
        ):
            raise ValueError("full_scale_mole_fraction must be finite and > 0")
        self.parameters = parameters if parameters is not None else GasSensorParameters()
        channels = [self.parameters.channel(gas) for gas in GASES]
        full_scale = self.full_scale_mole_fraction[:, np.newaxis]

        def per_channel(name: str) -> FloatArray:
            fractions = np.array([getattr(channel, name) for channel in channels])
            return np.asarray(full_scale * fractions[np.newaxis, :], dtype=np.float64)

        self._noise_std = per_channel("noise_std_fraction_of_full_scale")
        self._resolution = per_channel("resolution_fraction_of_full_scale")
        self._zero_random_walk = per_channel("zero_random_walk_fraction_of_full_scale_per_sqrt_s")
        self._zero_drift_rate = per_channel("zero_drift_rate_fraction_of_full_scale_per_s")
        self.reset()

    @classmethod
    def from_site(cls, site: Site, parameters: GasSensorParameters | None = None) -> GasSensorArray:
        """All gas detectors of ``site``, in the order of ``site.gas_detectors``."""
        detectors = site.gas_detectors
        return cls(
            detector_ids=[detector.id for detector in detectors],
            t90_s=np.array([detector.t90_s for detector in detectors], dtype=np.float64),
            full_scale_mole_fraction=np.array(
                [PPM.to_si(detector.full_scale_ppm) for detector in detectors], dtype=np.float64
            ),
            channel_present=np.array(
                [[gas in detector.gases for gas in GASES] for detector in detectors],
                dtype=np.bool_,
            ).reshape(len(detectors), len(GASES)),
            parameters=parameters,
        )

    @property
    def n_detectors(self) -> int:
        """Number of detectors."""
        return len(self.detector_ids)

    @property
    def elapsed_s(self) -> float:
        """Time since power-on [s]."""
        return self._elapsed_s

    @property
    def zero_offset_mole_fraction(self) -> FloatArray:
        """Current zero offset (drift) per detector and gas, a copy [mol mol-1]."""
        return self._zero_offset.copy()

    def reset(self) -> None:
        """Power-on state: clean-air response, zero offset, warm-up starts."""
        shape = (self.n_detectors, len(GASES))
        self._response = np.zeros(shape)
        self._zero_offset = np.zeros(shape)
        self._held = np.zeros(shape)
        self._elapsed_s = 0.0

    def step(
        self,
        true_mole_fraction: FloatArray,
        dt_s: float,
        rng: np.random.Generator,
        faults: GasFaultTable | None = None,
    ) -> GasSensorOutput:
        """Advance all detectors by ``dt_s`` and return what they report at the end of it.

        Parameters
        ----------
        true_mole_fraction
            True mole fraction at each sensing head during the step, shape (n_detectors,
            n_gases) in the order of :data:`GASES` [mol mol-1].
        dt_s
            Sample period [s].
        rng
            The only source of randomness; each call draws the same number of variates.
        faults
            Faults active during the step; ``None`` for none.

        Returns
        -------
        GasSensorOutput
            Readings [mol mol-1], publish mask, status and fault code per detector.
        """
        n, n_gases = self.n_detectors, len(GASES)
        true = np.asarray(true_mole_fraction, dtype=np.float64)
        if true.shape != (n, n_gases):
            raise ValueError(
                f"true_mole_fraction must have shape ({n}, {n_gases}), got {true.shape}"
            )
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be finite and > 0, got {dt_s}")
        table = faults if faults is not None else GasFaultTable.none(n)
        if table.kind.shape != (n,):
            raise ValueError(f"fault table is for {table.kind.shape[0]} detectors, not {n}")

        # Fixed draw pattern: identical random streams whatever the faults.
        noise = rng.standard_normal((n, n_gases))
        walk = rng.standard_normal((n, n_gases))
        spike_draw = rng.random(n)
        spike_size = rng.random(n)

        kind = table.kind
        full_scale = self.full_scale_mole_fraction
        full_scale_column = full_scale[:, np.newaxis]
        calibrating = kind == GasFaultKind.CALIBRATION

        # 1. First-order response to the gas at the head (span gas while calibrating).
        span = (table.span_fraction_of_full_scale * full_scale)[:, np.newaxis]
        target = np.where(calibrating[:, np.newaxis], span, np.maximum(true, 0.0))
        self._response = first_order_response(
            self._response, target, dt_s, self.t90_s[:, np.newaxis]
        )

        # 2. Zero drift: random walk, linear rate, DRIFT fault; a calibration re-zeroes.
        drift_fault = np.where(
            kind == GasFaultKind.DRIFT,
            table.drift_rate_fraction_of_full_scale_per_s * full_scale,
            0,
        )
        self._zero_offset = (
            self._zero_offset
            + self._zero_random_walk * math.sqrt(dt_s) * walk
            + (self._zero_drift_rate + drift_fault[:, np.newaxis]) * dt_s
        )
        self._zero_offset[calibrating] = 0.0

        # 3. Raw signal: response + zero + noise + spikes + UNDER_RANGE offset.
        spiking = (kind == GasFaultKind.SPIKES) & (spike_draw < table.spike_probability)
        spike = np.where(
            spiking,
            table.spike_amplitude_fraction_of_full_scale
            * full_scale
            * (SPIKE_FACTOR_MIN + spike_size),
            0.0,
        )
        under_offset = np.where(
            kind == GasFaultKind.UNDER_RANGE, table.offset_fraction_of_full_scale * full_scale, 0.0
        )
        raw = (
            self._response
            + self._zero_offset
            + self._noise_std * noise
            + (spike + under_offset)[:, np.newaxis]
        )

        # 4. Quantise, clip to the valid band; below the NE 43 failure limit: fault level.
        reading = np.clip(
            quantise(raw, self._resolution),
            LOWER_SATURATION_FRACTION_OF_FULL_SCALE * full_scale_column,
            full_scale_column,
        )
        under_range = raw < FAULT_LOW_THRESHOLD_FRACTION_OF_FULL_SCALE * full_scale_column
        reading = np.where(
            under_range, FAULT_LOW_LEVEL_FRACTION_OF_FULL_SCALE * full_scale_column, reading
        )
        over_range = kind == GasFaultKind.OUT_OF_RANGE
        reading = np.where(
            over_range[:, np.newaxis],
            (table.level_fraction_of_full_scale * full_scale)[:, np.newaxis],
            reading,
        )
        stuck = kind == GasFaultKind.STUCK
        reading = np.where(stuck[:, np.newaxis], self._held, reading)
        if not self.parameters.report_negative_readings:
            reading = np.maximum(reading, 0.0)
        reading = np.where(self.channel_present, reading, np.nan)
        self._held = np.where(stuck[:, np.newaxis], self._held, reading)
        self._elapsed_s += dt_s

        # 5. Self-reported status and fault code.
        under_any = np.any(under_range & self.channel_present, axis=1) & ~stuck
        status, code = self_reported_status(
            kind=kind,
            self_reported=table.self_reported,
            under_range=under_any,
            warming_up=self._elapsed_s < self.parameters.warmup_s,
        )
        return GasSensorOutput(
            mole_fraction=reading,
            publish=kind != GasFaultKind.OFFLINE,
            status_index=status,
            fault_code_index=code,
        )
