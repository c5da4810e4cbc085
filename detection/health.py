"""Sensor health: faults are not gas.

A vectorized health monitor for every device of a site (point gas detectors, wind stations, the
cameras' laser channel and their frames). It consumes the validated records of
:mod:`pipesentinel.ingest.records` (or the same data as arrays) and a clock, and reports FAULT
conditions per device and fault kind (:class:`HealthFaultKind`), each with on/off hysteresis so
that it does not chatter. Its outputs are

* the transitions of each batch or tick (:class:`FaultTransition`: device, kind, raised or
  cleared, time and a detail text naming the evidence), and
* masks of the devices in fault, in the order of ``site.gas_detectors`` (and of the wind
  stations and cameras), which the threshold core and the voting use to EXCLUDE faulty
  detectors: a faulty detector must never cause a gas alarm. Call :meth:`HealthMonitor.update`
  with a batch BEFORE the threshold core sees the same batch.

State lives in numpy arrays, one row per device; a batch is processed in "rounds", round ``r``
taking the ``r``-th reading of each device in the batch, so that every round is one vectorized
update over the devices that have a reading in it (a batch from the ingest queue rarely holds
more than one or two readings per device). The checks themselves are pure functions over arrays
(:func:`hysteresis_step`, :func:`isolated_spike_mask`, :func:`first_order_decay`, ...).

Everything is SI inside: mole fractions [mol mol-1], seconds, m s-1, rad. Detail texts are for
people and quote ppm and seconds. The rules, their parameters and how they were validated are
documented in ``docs/health.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.site import DeviceKind, Gas, Site
from pipesentinel.units import DEGREE, PPM

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]

# Channel order of the gas arrays (n_detectors, n_gases): methane, then propane, as in the
# records (``methane_mole_fraction``, ``propane_mole_fraction``).
GAS_CHANNELS: Final[tuple[Gas, ...]] = (Gas.METHANE, Gas.PROPANE)
_GAS_LABEL: Final = {Gas.METHANE: "CH4", Gas.PROPANE: "C3H8"}

# Index of each self-reported status in the status arrays (order of DeviceStatus).
STATUSES: Final[tuple[DeviceStatus, ...]] = tuple(DeviceStatus)
_STATUS_INDEX: Final = {status: index for index, status in enumerate(STATUSES)}
_OK: Final = _STATUS_INDEX[DeviceStatus.OK]
_FAULT: Final = _STATUS_INDEX[DeviceStatus.FAULT]

# A first-order sensor reaches 90 % of a step after t90 = tau ln(10) (1 - exp(-t90/tau) = 0.9);
# the EN/IEC 60079-29-1 response time t90. Same relation as the device simulator uses.
T90_PER_TIME_CONSTANT: Final = math.log(10.0)


# --- Default parameters, each with its justification (see docs/health.md) ---------------------

# Silence: a device is offline when nothing arrived for more than twice its expected period
# (issue 3, sec. 3), plus a margin for network and batching latency.
DEFAULT_SILENCE_FACTOR: Final = 2.0
DEFAULT_SILENCE_MARGIN_S: Final = 0.5
# The laser methane detector reports at 1 Hz (docs/mqtt.md, sec. 3.3; hardware/world.py).
DEFAULT_LASER_SAMPLE_PERIOD_S: Final = 1.0

# Noise of an infrared point detector: +-1 % of range short-term stability (Sewerin EX-TEC PM 400
# operating manual, appendix 9.2.1, to EN 60079-29-1), read as 2 sigma of white noise: 0.5 % FS.
DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE: Final = 0.005

# NAMUR NE 43 (2003/2021) signal levels of a 4-20 mA transmitter, as fractions of the range
# (4 mA = 0, 16 mA span): measurement band 3.8 .. 20.5 mA, failure <= 3.6 mA or >= 21 mA.
_NAMUR_ZERO_MA: Final = 4.0
_NAMUR_SPAN_MA: Final = 16.0


def _namur_fraction(current_ma: float) -> float:
    return (current_ma - _NAMUR_ZERO_MA) / _NAMUR_SPAN_MA


NAMUR_FAILURE_LOW_FRACTION_OF_FULL_SCALE: Final = _namur_fraction(3.6)  # -0.025
NAMUR_SATURATION_LOW_FRACTION_OF_FULL_SCALE: Final = _namur_fraction(3.8)  # -0.0125
NAMUR_SATURATION_HIGH_FRACTION_OF_FULL_SCALE: Final = _namur_fraction(20.5)  # 1.03125
NAMUR_FAILURE_HIGH_FRACTION_OF_FULL_SCALE: Final = _namur_fraction(21.0)  # 1.0625
# NE 43: a failure level must persist 4 s before it is taken as a sensor fault (filters loop
# transients). Applied to UNDER_RANGE only: an over-range level is excluded at once (see docs).
NAMUR_FAILURE_CONFIRMATION_S: Final = 4.0
# Readings at least this close to full scale are the saturated top of the range (real gas),
# never evidence of a stuck sensor: 0.1 % of range, the output resolution of the reference
# detectors (hardware/gas_sensor.py, DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE).
DEFAULT_SATURATION_FRACTION_OF_FULL_SCALE: Final = 0.999

# STUCK: identical readings for 60 s (30 samples at 2 s, 12 at 5 s). With noise sigma 0.5 % FS
# and resolution 0.1 % FS, two healthy samples coincide with probability ~0.08; 12 in a row
# ~1e-12. FLATLINE: the exponentially weighted rms of sample-to-sample changes (expected
# sqrt(2) sigma for white noise) below 0.2 of that; time constant 60 s (>= 12 samples, so a
# healthy chi-square with >= 24 degrees of freedom never gets there); cleared above 0.3.
DEFAULT_STUCK_HOLD_S: Final = 60.0
DEFAULT_FLATLINE_TIME_CONSTANT_S: Final = 60.0
DEFAULT_FLATLINE_RAISE_RATIO: Final = 0.2
DEFAULT_FLATLINE_CLEAR_RATIO: Final = 0.3

# SPIKES: a rise of more than 10 sigma (5 % FS) in one sample followed by a fall faster than the
# sensor's own first-order response allows (by more than 5 sigma): no gas can do that. Two in
# 10 minutes raise the fault (one alone may be an EMI transient); it clears when the window
# holds none.
DEFAULT_SPIKE_MIN_HEIGHT_NOISE_MULTIPLE: Final = 10.0
DEFAULT_SPIKE_FALL_MARGIN_NOISE_MULTIPLE: Final = 5.0
DEFAULT_SPIKE_WINDOW_S: Final = 600.0
DEFAULT_SPIKE_RAISE_COUNT: Final = 2

# DRIFT: 60-s block statistics of the quiet-air reading. The datasheet's long-term stability is
# +-2 % of range (Sewerin EX-TEC PM 400, appendix 9.2.1): a baseline beyond it is out of
# specification. A positive excursion is drift only if it is smooth (block std <= 2 sigma: no
# plume turbulence), arrived slowly (no block-to-block step above 1 % FS, i.e. slower than
# 60 % FS per hour, since the baseline was last in band) and no healthy zone neighbour reads
# above 1 % FS. Below -2 % FS no gas can explain it.
DEFAULT_DRIFT_BLOCK_S: Final = 60.0
DEFAULT_DRIFT_LIMIT_FRACTION_OF_FULL_SCALE: Final = 0.02
DEFAULT_DRIFT_CLEAR_FRACTION_OF_LIMIT: Final = 0.5
DEFAULT_DRIFT_MAX_BLOCK_STEP_FRACTION_OF_FULL_SCALE: Final = 0.01
DEFAULT_DRIFT_SMOOTH_NOISE_MULTIPLE: Final = 2.0
DEFAULT_DRIFT_NEIGHBOUR_FRACTION_OF_FULL_SCALE: Final = 0.01
DEFAULT_DRIFT_MIN_BLOCK_FILL: Final = 0.5

# Wind STUCK: direction (0.01 deg resolution) unchanged or sigma-theta 0, or speed (1 mm/s)
# unchanged, for 2 minutes (12 reports at 10 s) while the wind is above the 0.5 m/s starting
# threshold recommended for vanes and cups (WMO-No. 8, Part I, ch. 5; US EPA-454/R-99-005,
# sec. 2.2.1): below it a healthy vane may rest.
DEFAULT_WIND_STUCK_HOLD_S: Final = 120.0
DEFAULT_WIND_CALM_SPEED_M_PER_S: Final = 0.5

# Clearing delays: the evidence of health must persist this long (hysteresis in time).
DEFAULT_OFFLINE_CLEAR_DELAY_S: Final = 10.0
DEFAULT_SELF_REPORTED_CLEAR_DELAY_S: Final = 10.0
DEFAULT_STUCK_CLEAR_DELAY_S: Final = 10.0
DEFAULT_RANGE_CLEAR_DELAY_S: Final = 10.0
DEFAULT_BEAM_CLEAR_DELAY_S: Final = 5.0
DEFAULT_WIND_CLEAR_DELAY_S: Final = 30.0


class HealthFaultKind(StrEnum):
    """Kinds of fault alarm; each is an alarm of its own, distinct from gas."""

    OFFLINE = "offline"
    SELF_REPORTED = "self_reported"
    STUCK = "stuck"
    DRIFT = "drift"
    UNDER_RANGE = "under_range"
    OUT_OF_RANGE = "out_of_range"
    SPIKES = "spikes"
    BEAM_BLOCKED = "beam_blocked"


FAULT_KINDS: Final[tuple[HealthFaultKind, ...]] = tuple(HealthFaultKind)
_KIND_INDEX: Final = {kind: index for index, kind in enumerate(FAULT_KINDS)}


@dataclass(frozen=True, slots=True)
class FaultTransition:
    """A fault raised (``active``) or cleared on one device.

    ``time_s`` is the reading's time for checks on readings, the monitor's clock for OFFLINE
    [s since the Unix epoch]. ``detail`` names the evidence, e.g.
    ``"GD19 stuck: CH4 reading unchanged at 12.5 ppm for 62 s (31 samples)"``.
    """

    device_id: str
    kind: HealthFaultKind
    active: bool
    time_s: float
    detail: str

    @property
    def alarm_id(self) -> str:
        """Stable alarm id, ``"<device>.fault.<kind>"``."""
        return f"{self.device_id}.fault.{self.kind.value}"


@dataclass(frozen=True)
class HealthParameters:
    """Parameters of the health checks (defaults: the module constants, justified there).

    Durations in [s], levels as fractions of each detector's full scale [1], multiples and
    ratios of the detector noise standard deviation [1], speeds [m s-1].
    """

    silence_factor: float = DEFAULT_SILENCE_FACTOR
    silence_margin_s: float = DEFAULT_SILENCE_MARGIN_S
    laser_sample_period_s: float = DEFAULT_LASER_SAMPLE_PERIOD_S
    noise_std_fraction_of_full_scale: float = DEFAULT_NOISE_STD_FRACTION_OF_FULL_SCALE
    under_range_fraction_of_full_scale: float = NAMUR_FAILURE_LOW_FRACTION_OF_FULL_SCALE
    under_range_clear_fraction_of_full_scale: float = NAMUR_SATURATION_LOW_FRACTION_OF_FULL_SCALE
    under_range_on_delay_s: float = NAMUR_FAILURE_CONFIRMATION_S
    out_of_range_fraction_of_full_scale: float = NAMUR_FAILURE_HIGH_FRACTION_OF_FULL_SCALE
    out_of_range_clear_fraction_of_full_scale: float = NAMUR_SATURATION_HIGH_FRACTION_OF_FULL_SCALE
    saturation_fraction_of_full_scale: float = DEFAULT_SATURATION_FRACTION_OF_FULL_SCALE
    stuck_hold_s: float = DEFAULT_STUCK_HOLD_S
    flatline_time_constant_s: float = DEFAULT_FLATLINE_TIME_CONSTANT_S
    flatline_raise_ratio: float = DEFAULT_FLATLINE_RAISE_RATIO
    flatline_clear_ratio: float = DEFAULT_FLATLINE_CLEAR_RATIO
    spike_min_height_noise_multiple: float = DEFAULT_SPIKE_MIN_HEIGHT_NOISE_MULTIPLE
    spike_fall_margin_noise_multiple: float = DEFAULT_SPIKE_FALL_MARGIN_NOISE_MULTIPLE
    spike_window_s: float = DEFAULT_SPIKE_WINDOW_S
    spike_raise_count: int = DEFAULT_SPIKE_RAISE_COUNT
    drift_block_s: float = DEFAULT_DRIFT_BLOCK_S
    drift_limit_fraction_of_full_scale: float = DEFAULT_DRIFT_LIMIT_FRACTION_OF_FULL_SCALE
    drift_clear_fraction_of_limit: float = DEFAULT_DRIFT_CLEAR_FRACTION_OF_LIMIT
    drift_max_block_step_fraction_of_full_scale: float = (
        DEFAULT_DRIFT_MAX_BLOCK_STEP_FRACTION_OF_FULL_SCALE
    )
    drift_smooth_noise_multiple: float = DEFAULT_DRIFT_SMOOTH_NOISE_MULTIPLE
    drift_neighbour_fraction_of_full_scale: float = DEFAULT_DRIFT_NEIGHBOUR_FRACTION_OF_FULL_SCALE
    drift_min_block_fill: float = DEFAULT_DRIFT_MIN_BLOCK_FILL
    wind_stuck_hold_s: float = DEFAULT_WIND_STUCK_HOLD_S
    wind_calm_speed_m_per_s: float = DEFAULT_WIND_CALM_SPEED_M_PER_S
    offline_clear_delay_s: float = DEFAULT_OFFLINE_CLEAR_DELAY_S
    self_reported_clear_delay_s: float = DEFAULT_SELF_REPORTED_CLEAR_DELAY_S
    stuck_clear_delay_s: float = DEFAULT_STUCK_CLEAR_DELAY_S
    range_clear_delay_s: float = DEFAULT_RANGE_CLEAR_DELAY_S
    beam_clear_delay_s: float = DEFAULT_BEAM_CLEAR_DELAY_S
    wind_clear_delay_s: float = DEFAULT_WIND_CLEAR_DELAY_S

    def __post_init__(self) -> None:
        problems = []
        for item in fields(self):
            value = getattr(self, item.name)
            if not math.isfinite(value):
                problems.append(f"{item.name} must be finite, got {value!r}")
        signed = {
            "under_range_fraction_of_full_scale",
            "under_range_clear_fraction_of_full_scale",
        }
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name not in signed and math.isfinite(value) and value < 0.0:
                problems.append(f"{item.name} must be >= 0, got {value!r}")
        positive = (
            "silence_factor",
            "laser_sample_period_s",
            "noise_std_fraction_of_full_scale",
            "flatline_time_constant_s",
            "spike_window_s",
            "drift_block_s",
        )
        problems += [
            f"{name} must be > 0, got {getattr(self, name)!r}"
            for name in positive
            if not getattr(self, name) > 0.0
        ]
        if self.spike_raise_count < 1:
            problems.append(f"spike_raise_count must be >= 1, got {self.spike_raise_count!r}")
        if (
            not self.under_range_fraction_of_full_scale
            < self.under_range_clear_fraction_of_full_scale
        ):
            problems.append("under_range_fraction_of_full_scale must be below its clear level")
        if not (
            self.out_of_range_clear_fraction_of_full_scale
            < self.out_of_range_fraction_of_full_scale
        ):
            problems.append("out_of_range_fraction_of_full_scale must be above its clear level")
        if not self.flatline_raise_ratio < self.flatline_clear_ratio:
            problems.append("flatline_raise_ratio must be below flatline_clear_ratio")
        if not 0.0 < self.drift_clear_fraction_of_limit < 1.0:
            problems.append("drift_clear_fraction_of_limit must be in (0, 1)")
        if problems:
            raise ValueError("HealthParameters: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Pure, vectorized checks
# ---------------------------------------------------------------------------------------------


def hysteresis_step(
    *,
    active: BoolArray,
    pending_since_s: FloatArray,
    raise_condition: BoolArray,
    clear_condition: BoolArray,
    time_s: FloatArray | float,
    on_delay_s: FloatArray | float,
    off_delay_s: FloatArray | float,
) -> tuple[BoolArray, FloatArray, BoolArray]:
    """One evaluation of debounced on/off conditions.

    An inactive condition becomes active once ``raise_condition`` has held at every evaluation
    for ``on_delay_s``; an active one clears once ``clear_condition`` has held for
    ``off_delay_s``. Distinct raise and clear conditions give hysteresis in value, the delays
    give it in time.

    Parameters
    ----------
    active
        Current state, shape (n,).
    pending_since_s
        Time since which the condition for a change has held, NaN when it does not, shape (n,)
        [s].
    raise_condition, clear_condition
        Evidence at this evaluation, shape (n,).
    time_s
        Time of this evaluation, broadcastable to (n,) [s].
    on_delay_s, off_delay_s
        Delays, broadcastable to (n,) [s].

    Returns
    -------
    tuple
        New state, new pending-since times [s] and the mask of switched entries.
    """
    wants_change = np.where(active, clear_condition, raise_condition)
    since = np.where(
        wants_change, np.where(np.isnan(pending_since_s), time_s, pending_since_s), np.nan
    )
    delay = np.where(active, off_delay_s, on_delay_s)
    switched = wants_change & (np.asarray(time_s) - since >= delay)
    new_active = np.asarray(active ^ switched, dtype=np.bool_)
    since = np.where(switched, np.nan, since)
    return new_active, np.asarray(since, dtype=np.float64), np.asarray(switched, dtype=np.bool_)


def first_order_decay(dt_s: FloatArray, t90_s: FloatArray) -> FloatArray:
    """Fraction of a first-order sensor's response left after ``dt_s`` with no input [1].

    ``exp(-dt ln(10) / t90)``; 0 for an instantaneous sensor (``t90 = 0``).

    Parameters
    ----------
    dt_s
        Time between samples [s].
    t90_s
        90 % response time [s].
    """
    t90 = np.asarray(t90_s, dtype=np.float64)
    safe = np.where(t90 > 0.0, t90, 1.0)
    decay = np.exp(-np.asarray(dt_s, dtype=np.float64) * T90_PER_TIME_CONSTANT / safe)
    return np.asarray(np.where(t90 > 0.0, decay, 0.0), dtype=np.float64)


def isolated_spike_mask(
    *,
    before_mole_fraction: FloatArray,
    peak_mole_fraction: FloatArray,
    after_mole_fraction: FloatArray,
    decay: FloatArray,
    noise_std_mole_fraction: FloatArray,
    min_height_noise_multiple: float,
    fall_margin_noise_multiple: float,
) -> BoolArray:
    """Which middle samples of three are isolated spikes (up, then straight back down).

    A spike rises by more than ``min_height`` noise sigmas in one sample and then falls faster
    than the sensor's first-order response can: after a sample ``y`` a sensor with decay factor
    ``d`` (:func:`first_order_decay`) reads at least ``d y`` whatever the gas does (gas is never
    negative), so a next reading below ``d y`` minus the noise margin is not gas.

    Parameters
    ----------
    before_mole_fraction, peak_mole_fraction, after_mole_fraction
        Three consecutive readings, same shape [mol mol-1].
    decay
        Response decay between the peak and the next sample, broadcastable [1].
    noise_std_mole_fraction
        Noise standard deviation, broadcastable [mol mol-1].
    min_height_noise_multiple, fall_margin_noise_multiple
        Thresholds in noise sigmas [1].
    """
    sigma = np.asarray(noise_std_mole_fraction, dtype=np.float64)
    rise = peak_mole_fraction - before_mole_fraction
    # Noise of the difference after - decay * peak: sigma sqrt(1 + decay^2).
    margin = fall_margin_noise_multiple * sigma * np.sqrt(1.0 + decay * decay)
    fast_fall = after_mole_fraction < decay * peak_mole_fraction - margin
    return np.asarray((rise > min_height_noise_multiple * sigma) & fast_fall, dtype=np.bool_)


def flatline_ratio(mean_square_change: FloatArray, noise_std: FloatArray) -> FloatArray:
    """Rms sample-to-sample change relative to that of white noise, ``sqrt(msc / 2) / sigma`` [1].

    Parameters
    ----------
    mean_square_change
        Mean of squared differences of consecutive readings [(mol mol-1)2].
    noise_std
        Noise standard deviation [mol mol-1].
    """
    return np.asarray(
        np.sqrt(np.maximum(mean_square_change, 0.0) / 2.0) / noise_std, dtype=np.float64
    )


def block_mean_std(
    total: FloatArray, total_square: FloatArray, count: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Mean and (population) standard deviation from running sums; NaN where ``count`` is 0.

    Parameters
    ----------
    total, total_square
        Sum and sum of squares of the samples [unit], [unit2].
    count
        Number of samples, broadcastable [1].
    """
    safe = np.where(count > 0, count, 1.0)
    mean = np.where(count > 0, total / safe, np.nan)
    variance = np.maximum(total_square / safe - np.square(np.where(count > 0, mean, 0.0)), 0.0)
    return np.asarray(mean, dtype=np.float64), np.asarray(
        np.where(count > 0, np.sqrt(variance), np.nan), dtype=np.float64
    )


def round_index(device_index: IntArray, time_s: FloatArray) -> tuple[IntArray, IntArray]:
    """Order a batch by device then time, and number each device's readings 0, 1, 2, ...

    Returns the sort order and the rank of each sorted reading within its device: round ``r``
    of a batch is ``order[rank == r]``, at most one reading per device.
    """
    order = np.lexsort((time_s, device_index))
    sorted_device = device_index[order]
    n = sorted_device.size
    starts = np.flatnonzero(np.r_[True, sorted_device[1:] != sorted_device[:-1]]) if n else order
    first = np.repeat(starts, np.diff(np.r_[starts, n])) if n else order
    rank = np.arange(n, dtype=np.intp) - first
    return np.asarray(order, dtype=np.intp), np.asarray(rank, dtype=np.intp)


# ---------------------------------------------------------------------------------------------
# The monitor
# ---------------------------------------------------------------------------------------------


def _ppm(value_mole_fraction: float) -> str:
    return f"{PPM.from_si(value_mole_fraction):.0f} ppm"


@dataclass(frozen=True)
class _GasRound:
    """One reading per detector of ``rows`` with the state it is judged against (internal)."""

    rows: IntArray
    time_s: FloatArray  # (m,) [s]
    value: FloatArray  # (m, n_channels) [mol mol-1]
    status: IntArray  # (m,) index into STATUSES
    present: BoolArray  # (m, n_channels)
    full_scale: FloatArray  # (m, 1) [mol mol-1]
    noise: FloatArray  # (m, 1) [mol mol-1]
    last: FloatArray  # previous reading (m, n_channels) [mol mol-1]
    last_time_s: FloatArray  # (m,) [s]
    previous: FloatArray  # the one before (m, n_channels) [mol mol-1]
    seen: BoolArray  # a previous reading exists
    has_two: BoolArray  # two previous readings exist
    dt_s: FloatArray  # time since the previous reading, 0 for the first [s]


class HealthMonitor:
    """Health of all devices of one site, updated by batches of records and by a clock.

    Parameters
    ----------
    site
        The site; devices are indexed as in ``site.devices`` (gas detectors, wind stations,
        cameras), gas masks as in ``site.gas_detectors``.
    parameters
        Check parameters; ``None`` for the defaults.
    expect_frames
        Whether cameras must publish frames (their silence beyond twice ``frame_period_s``
        means OFFLINE). False when frames are not produced (e.g. a simulation without frames).
    """

    def __init__(
        self,
        site: Site,
        parameters: HealthParameters | None = None,
        *,
        expect_frames: bool = True,
    ) -> None:
        self.site = site
        self.parameters = p = parameters if parameters is not None else HealthParameters()
        self.expect_frames = expect_frames
        self.device_ids: tuple[str, ...] = tuple(device.id for device in site.devices)
        self._index = {device_id: i for i, device_id in enumerate(self.device_ids)}
        gas, wind, cameras = site.gas_detectors, site.wind_stations, site.cameras
        self.n_gas, self.n_wind, self.n_cameras = len(gas), len(wind), len(cameras)
        self._wind_offset = self.n_gas
        self._camera_offset = self.n_gas + self.n_wind
        n_devices = len(self.device_ids)
        n_kinds = len(FAULT_KINDS)

        # Per device: expected period of its reading stream [s], liveness, status.
        self._period_s = np.array(
            [d.sample_period_s for d in gas]
            + [s.sample_period_s for s in wind]
            + [p.laser_sample_period_s] * self.n_cameras,
            dtype=np.float64,
        )
        self._frame_period_s = np.array([c.frame_period_s for c in cameras], dtype=np.float64)
        self._started_s = math.nan
        self._last_data_s = np.full(n_devices, np.nan)
        self._last_frame_s = np.full(self.n_cameras, np.nan)
        self._status_offline = np.zeros(n_devices, dtype=np.bool_)
        self._status_change_s = np.full(n_devices, -np.inf)

        # Fault state.
        self._active = np.zeros((n_devices, n_kinds), dtype=np.bool_)
        self._pending_since_s = np.full((n_devices, n_kinds), np.nan)
        self._on_delay_s = np.zeros(n_kinds)
        self._off_delay_s = np.zeros(n_kinds)
        for kind, on_s, off_s in (
            (HealthFaultKind.OFFLINE, 0.0, p.offline_clear_delay_s),
            (HealthFaultKind.SELF_REPORTED, 0.0, p.self_reported_clear_delay_s),
            (HealthFaultKind.STUCK, 0.0, p.stuck_clear_delay_s),
            (HealthFaultKind.DRIFT, 0.0, 0.0),  # block-based: a block is already 60 s
            (HealthFaultKind.UNDER_RANGE, p.under_range_on_delay_s, p.range_clear_delay_s),
            (HealthFaultKind.OUT_OF_RANGE, 0.0, p.range_clear_delay_s),
            (HealthFaultKind.SPIKES, 0.0, 0.0),  # windowed count: the window is the delay
            (HealthFaultKind.BEAM_BLOCKED, 0.0, p.beam_clear_delay_s),
        ):
            self._on_delay_s[_KIND_INDEX[kind]] = on_s
            self._off_delay_s[_KIND_INDEX[kind]] = off_s
        self._wind_stuck_off_delay_s = p.wind_clear_delay_s

        self._init_gas_state()

        # Wind station state.
        self._wind_count = np.zeros(self.n_wind, dtype=np.int64)
        self._wind_speed = np.zeros(self.n_wind)
        self._wind_direction = np.zeros(self.n_wind)
        self._vane_live_since_s = np.full(self.n_wind, np.nan)
        self._cups_live_since_s = np.full(self.n_wind, np.nan)

        self.out_of_order_count = 0  # readings older than the device's last one: liveness only
        self._transitions: list[FaultTransition] = []

    def _init_gas_state(self) -> None:
        """Gas detector state, shape (n_gas,) or (n_gas, n_channels)."""
        p = self.parameters
        gas = self.site.gas_detectors
        n_channels = len(GAS_CHANNELS)
        shape = (self.n_gas, n_channels)
        self._full_scale = np.array([PPM.to_si(d.full_scale_ppm) for d in gas], dtype=np.float64)
        self._noise = self._full_scale * p.noise_std_fraction_of_full_scale
        self._t90_s = np.array([d.t90_s for d in gas], dtype=np.float64)
        self._present = np.array(
            [[channel in d.gases for channel in GAS_CHANNELS] for d in gas], dtype=np.bool_
        ).reshape(shape)
        self._count = np.zeros(self.n_gas, dtype=np.int64)
        self._last = np.zeros(shape)
        self._last_time_s = np.full(self.n_gas, np.nan)
        self._previous = np.zeros(shape)
        self._status = np.full(self.n_gas, _OK, dtype=np.intp)
        self._fault_code: list[str | None] = [None] * self.n_gas
        self._unchanged_since_s = np.full(shape, np.nan)
        self._mean_square_change = np.broadcast_to(
            (2.0 * self._noise**2)[:, np.newaxis], shape
        ).copy()
        self._spike_times_s = np.full((self.n_gas, p.spike_raise_count), -np.inf)
        self._spike_height = np.zeros(self.n_gas)
        self._spike_total = np.zeros(self.n_gas, dtype=np.int64)
        self._block_start_s = np.full(self.n_gas, np.nan)
        self._block_count = np.zeros(self.n_gas)
        self._block_sum = np.zeros(shape)
        self._block_square = np.zeros(shape)
        self._baseline = np.full(shape, np.nan)  # mean of the last complete block
        self._baseline_std = np.full(shape, np.nan)
        self._fast_onset = np.zeros(shape, dtype=np.bool_)
        self._last_in_block = np.zeros(self.n_gas, dtype=np.bool_)
        zone_of = [d.zone for d in gas]
        same_zone = np.array([[a == b for b in zone_of] for a in zone_of], dtype=np.bool_)
        self._zone_neighbours = same_zone.reshape(self.n_gas, self.n_gas) & ~np.eye(
            self.n_gas, dtype=np.bool_
        )

    # -- accessors -------------------------------------------------------------------------

    @property
    def active(self) -> BoolArray:
        """Active faults, shape (n_devices, n_kinds) in ``site.devices`` x :data:`FAULT_KINDS`."""
        return self._active.copy()

    def gas_fault_mask(self) -> BoolArray:
        """Whether each gas detector has any active fault, in ``site.gas_detectors`` order."""
        return np.asarray(self._active[: self.n_gas].any(axis=1), dtype=np.bool_)

    def wind_fault_mask(self) -> BoolArray:
        """Whether each wind station has any active fault, in ``site.wind_stations`` order."""
        return np.asarray(
            self._active[self._wind_offset : self._camera_offset].any(axis=1), dtype=np.bool_
        )

    def camera_fault_mask(self, kinds: Iterable[HealthFaultKind] | None = None) -> BoolArray:
        """Whether each camera has an active fault (of ``kinds``; all when ``None``)."""
        columns = [_KIND_INDEX[kind] for kind in (kinds if kinds is not None else FAULT_KINDS)]
        return np.asarray(
            self._active[self._camera_offset :][:, columns].any(axis=1), dtype=np.bool_
        )

    def active_faults(self, device_id: str) -> frozenset[HealthFaultKind]:
        """Active fault kinds of one device; ``KeyError`` naming an unknown device."""
        if device_id not in self._index:
            raise KeyError(f"no device {device_id!r} in site {self.site.id!r}")
        row = self._active[self._index[device_id]]
        return frozenset(kind for kind, on in zip(FAULT_KINDS, row, strict=True) if on)

    def faults_by_device(self) -> dict[str, frozenset[HealthFaultKind]]:
        """Active fault kinds of every device that has any."""
        rows = np.flatnonzero(self._active.any(axis=1))
        return {self.device_ids[i]: self.active_faults(self.device_ids[i]) for i in rows}

    def baseline_mole_fraction(self) -> FloatArray:
        """Mean reading of each detector's last complete drift block, (n_gas, n_gases) [mol mol-1].

        NaN before the first block. Channels in the order of :data:`GAS_CHANNELS`.
        """
        return self._baseline.copy()

    # -- entry points ----------------------------------------------------------------------

    def update(self, records: Sequence[Record], now_s: float) -> list[FaultTransition]:
        """Take a batch of validated records and evaluate every check at ``now_s``.

        Parameters
        ----------
        records
            Records of this site, in any order.
        now_s
            The monitor's clock (the ingest clock that stamps ``received_time_s``) [s].

        Returns
        -------
        list of FaultTransition
            Faults raised and cleared by this batch and at ``now_s``, in time order.

        Raises
        ------
        ValueError
            Naming records of another site, or devices unknown to the site or of the wrong kind.
        """
        self._start(now_s)
        gas: list[GasReading] = []
        wind: list[WindReading] = []
        laser: list[LaserReading] = []
        frames: list[CameraFrame] = []
        statuses: list[DeviceStatusChange] = []
        for record in records:
            if isinstance(record, GasReading):
                gas.append(record)
            elif isinstance(record, WindReading):
                wind.append(record)
            elif isinstance(record, LaserReading):
                laser.append(record)
            elif isinstance(record, CameraFrame):
                frames.append(record)
            else:
                statuses.append(record)
        self._check_records([*gas, *wind, *laser, *frames, *statuses])
        for change in sorted(statuses, key=lambda item: item.received_time_s):
            index = self._index[change.device_id]
            self._status_offline[index] = not change.online
            self._status_change_s[index] = change.received_time_s
        if gas:
            self.update_gas(
                detector_index=np.array([self._index[r.device_id] for r in gas], dtype=np.intp),
                time_s=np.array([r.time_s for r in gas]),
                received_time_s=np.array([r.received_time_s for r in gas]),
                mole_fraction=np.array(
                    [(r.methane_mole_fraction, r.propane_mole_fraction) for r in gas]
                ),
                status_index=np.array([_STATUS_INDEX[r.status] for r in gas], dtype=np.intp),
                fault_code=[r.fault_code for r in gas],
            )
        if wind:
            self.update_wind(
                station_index=np.array(
                    [self._index[r.device_id] - self._wind_offset for r in wind], dtype=np.intp
                ),
                time_s=np.array([r.time_s for r in wind]),
                received_time_s=np.array([r.received_time_s for r in wind]),
                speed_m_per_s=np.array([r.speed_m_per_s for r in wind]),
                direction_from_rad=np.array([r.direction_from_rad for r in wind]),
                sigma_theta_rad=np.array([r.sigma_theta_rad for r in wind]),
            )
        if laser:
            self.update_laser(
                camera_index=np.array(
                    [self._index[r.device_id] - self._camera_offset for r in laser],
                    dtype=np.intp,
                ),
                time_s=np.array([r.time_s for r in laser]),
                received_time_s=np.array([r.received_time_s for r in laser]),
                status_index=np.array([_STATUS_INDEX[r.status] for r in laser], dtype=np.intp),
            )
        if frames:
            camera = np.array(
                [self._index[r.device_id] - self._camera_offset for r in frames], dtype=np.intp
            )
            np.fmax.at(self._last_frame_s, camera, np.array([r.received_time_s for r in frames]))
        return self.tick(now_s)

    def tick(self, now_s: float) -> list[FaultTransition]:
        """Evaluate the clock-driven checks (OFFLINE) at ``now_s`` and hand over transitions.

        Parameters
        ----------
        now_s
            The monitor's clock [s].

        Returns
        -------
        list of FaultTransition
            Every transition since the last call, in time order.
        """
        if not math.isfinite(now_s):
            raise ValueError(f"now_s must be finite, got {now_s!r}")
        self._start(now_s)
        self._evaluate_offline(now_s)
        out = sorted(self._transitions, key=lambda item: item.time_s)
        self._transitions = []
        return out

    def update_gas(
        self,
        *,
        detector_index: IntArray,
        time_s: FloatArray,
        received_time_s: FloatArray,
        mole_fraction: FloatArray,
        status_index: IntArray,
        fault_code: Sequence[str | None] | None = None,
    ) -> None:
        """Take gas readings as arrays (``update`` does this for records); call ``tick`` next.

        Parameters
        ----------
        detector_index
            Index in ``site.gas_detectors`` per reading, shape (m,).
        time_s
            Sample time per reading [s].
        received_time_s
            Time each reading was received, on the monitor's clock [s].
        mole_fraction
            Readings, shape (m, 2): methane, propane [mol mol-1].
        status_index
            Index into :data:`STATUSES` per reading, shape (m,).
        fault_code
            Fault code per reading, or ``None``.
        """
        index = np.asarray(detector_index, dtype=np.intp)
        m = index.size
        values = np.asarray(mole_fraction, dtype=np.float64).reshape(m, len(GAS_CHANNELS))
        times = np.asarray(time_s, dtype=np.float64)
        received = np.asarray(received_time_s, dtype=np.float64)
        status = np.asarray(status_index, dtype=np.intp)
        codes = list(fault_code) if fault_code is not None else [None] * m
        if np.any((index < 0) | (index >= self.n_gas)):
            raise ValueError(f"detector_index outside 0..{self.n_gas - 1}")
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(times))):
            raise ValueError("gas readings and times must be finite")
        if times.shape != (m,) or received.shape != (m,) or status.shape != (m,) or len(codes) != m:
            raise ValueError("gas reading arrays differ in length")
        self._start(float(np.min(received)) if m else math.nan)
        self._note_data(index, received)
        order, rank = round_index(index, times)
        for r in range(int(rank.max(initial=-1)) + 1):
            pick = order[rank == r]
            self._gas_round(
                index[pick], times[pick], values[pick], status[pick], [codes[i] for i in pick]
            )

    def update_wind(
        self,
        *,
        station_index: IntArray,
        time_s: FloatArray,
        received_time_s: FloatArray,
        speed_m_per_s: FloatArray,
        direction_from_rad: FloatArray,
        sigma_theta_rad: FloatArray,
    ) -> None:
        """Take wind reports as arrays (index in ``site.wind_stations``) [s], [m s-1], [rad]."""
        index = np.asarray(station_index, dtype=np.intp)
        if np.any((index < 0) | (index >= self.n_wind)):
            raise ValueError(f"station_index outside 0..{self.n_wind - 1}")
        times = np.asarray(time_s, dtype=np.float64)
        received = np.asarray(received_time_s, dtype=np.float64)
        speed = np.asarray(speed_m_per_s, dtype=np.float64)
        direction = np.asarray(direction_from_rad, dtype=np.float64)
        sigma = np.asarray(sigma_theta_rad, dtype=np.float64)
        self._start(float(np.min(received)) if index.size else math.nan)
        self._note_data(index + self._wind_offset, received)
        order, rank = round_index(index, times)
        for r in range(int(rank.max(initial=-1)) + 1):
            pick = order[rank == r]
            self._wind_round(index[pick], times[pick], speed[pick], direction[pick], sigma[pick])

    def update_laser(
        self,
        *,
        camera_index: IntArray,
        time_s: FloatArray,
        received_time_s: FloatArray,
        status_index: IntArray,
    ) -> None:
        """Take laser readings as arrays (index in ``site.cameras``, status indices) [s]."""
        index = np.asarray(camera_index, dtype=np.intp)
        if np.any((index < 0) | (index >= self.n_cameras)):
            raise ValueError(f"camera_index outside 0..{self.n_cameras - 1}")
        times = np.asarray(time_s, dtype=np.float64)
        received = np.asarray(received_time_s, dtype=np.float64)
        status = np.asarray(status_index, dtype=np.intp)
        self._start(float(np.min(received)) if index.size else math.nan)
        self._note_data(index + self._camera_offset, received)
        order, rank = round_index(index, times)
        for r in range(int(rank.max(initial=-1)) + 1):
            pick = order[rank == r]
            self._laser_round(index[pick] + self._camera_offset, times[pick], status[pick])

    def _laser_round(self, rows: IntArray, t: FloatArray, state: IntArray) -> None:
        """BEAM_BLOCKED (status fault) and SELF_REPORTED (warm-up, calibration) of lasers."""
        blocked = state == _FAULT
        self_reported = (state != _OK) & ~blocked

        def blocked_detail(i: int, on: bool) -> str:
            if on:
                return "laser status 'fault': beam blocked, no methane column measured"
            return f"laser status '{STATUSES[int(state[i])].value}' again"

        def self_detail(i: int, on: bool) -> str:
            label = STATUSES[int(state[i])].value
            return f"laser status '{label}'" + ("" if on else " again")

        self._apply(
            HealthFaultKind.BEAM_BLOCKED,
            rows,
            raise_condition=blocked,
            clear_condition=~blocked,
            time_s=t,
            detail=blocked_detail,
        )
        self._apply(
            HealthFaultKind.SELF_REPORTED,
            rows,
            raise_condition=self_reported,
            clear_condition=~self_reported,
            time_s=t,
            detail=self_detail,
        )

    # -- internals -------------------------------------------------------------------------

    def _start(self, now_s: float) -> None:
        if math.isnan(self._started_s) and math.isfinite(now_s):
            self._started_s = now_s
            self._last_data_s[np.isnan(self._last_data_s)] = now_s
            self._last_frame_s[np.isnan(self._last_frame_s)] = now_s

    def _check_records(self, records: Sequence[Record]) -> None:
        expected_kind = {
            GasReading: DeviceKind.GAS,
            WindReading: DeviceKind.WIND,
            LaserReading: DeviceKind.CAMERA,
            CameraFrame: DeviceKind.CAMERA,
        }
        problems = []
        for record in records:
            if record.site_id != self.site.id:
                problems.append(
                    f"{type(record).__name__} of {record.device_id!r} is for site "
                    f"{record.site_id!r}, not {self.site.id!r}"
                )
                continue
            device = self.site.device(record.device_id)
            if device is None:
                problems.append(f"unknown device {record.device_id!r} in site {self.site.id!r}")
                continue
            kind = expected_kind.get(type(record))
            if kind is not None and device.kind is not kind:
                problems.append(
                    f"{type(record).__name__} from {record.device_id!r}, a {device.kind} device"
                )
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(f"HealthMonitor.update: {shown}{more}")

    def _note_data(self, rows: IntArray, received_s: FloatArray) -> None:
        np.fmax.at(self._last_data_s, rows, received_s)
        # Fresh data after an 'offline' status: the device is evidently back.
        back = self._last_data_s > self._status_change_s
        self._status_offline &= ~back

    def _apply(
        self,
        kind: HealthFaultKind,
        rows: IntArray,
        *,
        raise_condition: BoolArray,
        clear_condition: BoolArray,
        time_s: FloatArray | float,
        detail: Callable[[int, bool], str],
        off_delay_s: float | None = None,
    ) -> None:
        """Debounce one kind on ``rows`` and record the transitions with their detail text."""
        if rows.size == 0:
            return
        column = _KIND_INDEX[kind]
        times = np.broadcast_to(np.asarray(time_s, dtype=np.float64), rows.shape)
        active, since, switched = hysteresis_step(
            active=self._active[rows, column],
            pending_since_s=self._pending_since_s[rows, column],
            raise_condition=np.asarray(raise_condition, dtype=np.bool_),
            clear_condition=np.asarray(clear_condition, dtype=np.bool_),
            time_s=times,
            on_delay_s=self._on_delay_s[column],
            off_delay_s=self._off_delay_s[column] if off_delay_s is None else off_delay_s,
        )
        self._active[rows, column] = active
        self._pending_since_s[rows, column] = since
        for i in np.flatnonzero(switched):
            device_id = self.device_ids[int(rows[i])]
            on = bool(active[i])
            verb = kind.value.replace("_", " ")
            text = detail(int(i), on)
            prefix = f"{device_id} {verb}" if on else f"{device_id} {verb} cleared"
            self._transitions.append(
                FaultTransition(device_id, kind, on, float(times[i]), f"{prefix}: {text}")
            )

    def _gas_round(
        self,
        rows: IntArray,
        t: FloatArray,
        x: FloatArray,
        status: IntArray,
        codes: list[str | None],
    ) -> None:
        """One reading per detector of ``rows``: every gas check, vectorized."""
        seen = self._count[rows] >= 1
        stale = seen & (t <= self._last_time_s[rows])
        if np.any(stale):  # out of order or repeated: counted for liveness only
            self.out_of_order_count += int(stale.sum())
            keep = ~stale
            rows, t, x, status = rows[keep], t[keep], x[keep], status[keep]
            codes = [code for code, k in zip(codes, keep, strict=True) if k]
            seen = seen[keep]
        if rows.size == 0:
            return
        last_time = self._last_time_s[rows]
        batch = _GasRound(
            rows=rows,
            time_s=t,
            value=x,
            status=status,
            present=self._present[rows],
            full_scale=self._full_scale[rows][:, np.newaxis],
            noise=self._noise[rows][:, np.newaxis],
            last=self._last[rows],
            last_time_s=last_time,
            previous=self._previous[rows],
            seen=seen,
            has_two=self._count[rows] >= 2,
            dt_s=np.where(seen, t - np.where(seen, last_time, t), 0.0),
        )
        self._status[rows] = status
        for row, code in zip(rows, codes, strict=True):
            self._fault_code[int(row)] = code
        self._gas_self_reported(batch)
        out_of_band = self._gas_range(batch)
        self._gas_stuck(batch, out_of_band)
        self._gas_spikes(batch)
        self._drift_blocks(batch, out_of_band)
        # Shift the sample history.
        self._previous[rows] = np.where(seen[:, np.newaxis], batch.last, x)
        self._last[rows] = x
        self._last_time_s[rows] = t
        self._count[rows] += 1

    def _gas_self_reported(self, batch: _GasRound) -> None:
        """SELF_REPORTED: a status other than ok, with its fault code."""
        not_ok = batch.status != _OK

        def detail(i: int, on: bool) -> str:
            if not on:
                return "status 'ok' again"
            code = self._fault_code[int(batch.rows[i])]
            state = STATUSES[int(batch.status[i])].value
            return f"status '{state}'" + (f", fault code '{code}'" if code else "")

        self._apply(
            HealthFaultKind.SELF_REPORTED,
            batch.rows,
            raise_condition=not_ok,
            clear_condition=~not_ok,
            time_s=batch.time_s,
            detail=detail,
        )

    def _gas_range(self, batch: _GasRound) -> BoolArray:
        """UNDER_RANGE / OUT_OF_RANGE at the NAMUR NE 43 failure levels; returns either mask."""
        p = self.parameters
        x, present, full_scale = batch.value, batch.present, batch.full_scale
        under = np.any(present & (x < p.under_range_fraction_of_full_scale * full_scale), axis=1)
        under_clear = np.all(
            ~present | (x >= p.under_range_clear_fraction_of_full_scale * full_scale), axis=1
        )
        over = np.any(present & (x > p.out_of_range_fraction_of_full_scale * full_scale), axis=1)
        over_clear = np.all(
            ~present | (x <= p.out_of_range_clear_fraction_of_full_scale * full_scale), axis=1
        )

        def describe(i: int, below: bool, limit: float, relation: str) -> str:
            channel = int(np.argmin(x[i]) if below else np.argmax(x[i]))
            value = float(x[i, channel])
            share = value / float(full_scale[i, 0]) * 100.0
            return (
                f"{_GAS_LABEL[GAS_CHANNELS[channel]]} reads {_ppm(value)} ({share:.1f} % of "
                f"full scale), {relation} {limit * 100.0:.2f} % (NAMUR NE 43)"
            )

        def under_detail(i: int, on: bool) -> str:
            if on:
                return describe(i, True, p.under_range_fraction_of_full_scale, "below")
            return describe(i, True, p.under_range_clear_fraction_of_full_scale, "above")

        def over_detail(i: int, on: bool) -> str:
            if on:
                return describe(i, False, p.out_of_range_fraction_of_full_scale, "above")
            return describe(i, False, p.out_of_range_clear_fraction_of_full_scale, "below")

        self._apply(
            HealthFaultKind.UNDER_RANGE,
            batch.rows,
            raise_condition=under,
            clear_condition=under_clear,
            time_s=batch.time_s,
            detail=under_detail,
        )
        self._apply(
            HealthFaultKind.OUT_OF_RANGE,
            batch.rows,
            raise_condition=over,
            clear_condition=over_clear,
            time_s=batch.time_s,
            detail=over_detail,
        )
        return np.asarray(under | over, dtype=np.bool_)

    def _gas_stuck(self, batch: _GasRound, out_of_band: BoolArray) -> None:
        """STUCK: identical readings for ``stuck_hold_s``, or rms change far below the noise."""
        p = self.parameters
        rows, t, x, present = batch.rows, batch.time_s, batch.value, batch.present
        changed = ~batch.seen[:, np.newaxis] | (x != batch.last)
        since = np.where(changed, t[:, np.newaxis], self._unchanged_since_s[rows])
        self._unchanged_since_s[rows] = since
        # Each sample weighs at most one sample period: after a gap (offline) the first change
        # must not replace the whole history.
        step_s = np.minimum(batch.dt_s, self._period_s[rows])
        alpha = (1.0 - np.exp(-step_s / p.flatline_time_constant_s))[:, np.newaxis]
        square_change = np.where(present, (x - batch.last) ** 2, 0.0)
        old = self._mean_square_change[rows]
        msc = np.where(batch.seen[:, np.newaxis], old + alpha * (square_change - old), old)
        self._mean_square_change[rows] = msc
        ratio = flatline_ratio(msc, batch.noise)
        unchanged_s = t[:, np.newaxis] - since
        identical = present & (unchanged_s >= p.stuck_hold_s)
        flat = present & (ratio < p.flatline_raise_ratio)
        # A reading pegged at full scale is real gas saturating the range, and one at a NAMUR
        # failure level is a range fault: neither is evidence of a stuck sensor.
        saturated = np.any(
            present & (x >= p.saturation_fraction_of_full_scale * batch.full_scale), axis=1
        )
        stuck = ~saturated & ~out_of_band & np.any(identical | flat, axis=1)
        alive = np.all(
            ~present | ((unchanged_s < p.stuck_hold_s) & (ratio > p.flatline_clear_ratio)), axis=1
        )
        count = self._count[rows]

        def detail(i: int, on: bool) -> str:
            if not on:
                rms = float(np.sqrt(np.max(msc[i]) / 2.0))
                return f"readings vary again (rms change {_ppm(rms)} per sample)"
            channel = int(np.argmax(np.where(present[i], unchanged_s[i], -np.inf)))
            if identical[i, channel]:
                duration = float(unchanged_s[i, channel])
                period = float(self._period_s[int(rows[i])])
                samples = min(round(duration / period) + 1, int(count[i]) + 1)
                return (
                    f"{_GAS_LABEL[GAS_CHANNELS[channel]]} reading unchanged at "
                    f"{_ppm(float(x[i, channel]))} for {duration:.0f} s ({samples} samples)"
                )
            channel = int(np.argmin(np.where(present[i], ratio[i], np.inf)))
            rms = float(np.sqrt(msc[i, channel] / 2.0))
            return (
                f"flatline, {_GAS_LABEL[GAS_CHANNELS[channel]]} rms change {_ppm(rms)} per "
                f"sample is {float(ratio[i, channel]):.2f} x the noise "
                f"{_ppm(float(batch.noise[i, 0]))}"
            )

        self._apply(
            HealthFaultKind.STUCK,
            rows,
            raise_condition=stuck,
            clear_condition=alive,
            time_s=t,
            detail=detail,
        )

    def _gas_spikes(self, batch: _GasRound) -> None:
        """SPIKES: the previous sample rose and fell back faster than the sensor can."""
        p = self.parameters
        rows, t = batch.rows, batch.time_s
        decay = first_order_decay(batch.dt_s, self._t90_s[rows])[:, np.newaxis]
        spike_channels = batch.present & isolated_spike_mask(
            before_mole_fraction=batch.previous,
            peak_mole_fraction=batch.last,
            after_mole_fraction=batch.value,
            decay=decay,
            noise_std_mole_fraction=batch.noise,
            min_height_noise_multiple=p.spike_min_height_noise_multiple,
            fall_margin_noise_multiple=p.spike_fall_margin_noise_multiple,
        )
        spike = batch.has_two & np.any(spike_channels, axis=1)
        spiking = rows[spike]
        if spiking.size:
            self._spike_times_s[spiking] = np.column_stack(
                (self._spike_times_s[spiking, 1:], batch.last_time_s[spike])
            )
            heights = np.where(spike_channels, batch.last - batch.previous, -np.inf).max(axis=1)
            self._spike_height[spiking] = heights[spike]
            self._spike_total[spiking] += 1
            # The spike sample is no quiet-air reading: take it out of the drift block it is in.
            in_block = (
                spike & self._last_in_block[rows] & (batch.last_time_s >= self._block_start_s[rows])
            )
            back = rows[in_block]
            self._last_in_block[back] = False
            sample = np.where(self._present[back], self._last[back], 0.0)
            self._block_sum[back] -= sample
            self._block_square[back] -= sample**2
            self._block_count[back] -= 1.0
        in_window = self._spike_times_s[rows] > (t - p.spike_window_s)[:, np.newaxis]
        totals = self._spike_total[rows]

        def detail(i: int, on: bool) -> str:
            window = p.spike_window_s
            if not on:
                return f"no spike in the last {window:.0f} s"
            height = float(self._spike_height[int(rows[i])])
            return (
                f"{int(in_window[i].sum())} isolated spikes in {window:.0f} s (last +"
                f"{_ppm(height)}, back down within {float(batch.dt_s[i]):.0f} s; "
                f"{int(totals[i])} since start)"
            )

        self._apply(
            HealthFaultKind.SPIKES,
            rows,
            raise_condition=np.all(in_window, axis=1),
            clear_condition=~np.any(in_window, axis=1),
            time_s=t,
            detail=detail,
        )

    def _drift_blocks(self, batch: _GasRound, out_of_band: BoolArray) -> None:
        """DRIFT: close each detector's block when due and judge it; add the new sample."""
        p = self.parameters
        rows, t = batch.rows, batch.time_s
        start = self._block_start_s[rows]
        new_block = np.isnan(start)
        closing = ~new_block & (t - start >= p.drift_block_s)
        closed = rows[closing]
        if closed.size:
            self._judge_blocks(closed, t[closing])
        restart = new_block | closing
        self._block_start_s[rows[restart]] = t[restart]
        usable = (batch.status == _OK) & ~out_of_band
        add = rows[usable]
        sample = np.where(batch.present[usable], batch.value[usable], 0.0)
        self._block_sum[add] += sample
        self._block_square[add] += sample**2
        self._block_count[add] += 1.0
        self._last_in_block[rows] = usable

    def _judge_blocks(self, closed: IntArray, time_s: FloatArray) -> None:
        p = self.parameters
        count = self._block_count[closed]
        filled = (count >= p.drift_min_block_fill * p.drift_block_s / self._period_s[closed])[
            :, np.newaxis
        ]
        mean, std = block_mean_std(
            self._block_sum[closed], self._block_square[closed], count[:, np.newaxis]
        )
        mean = np.where(filled, mean, np.nan)
        std = np.where(filled, std, np.nan)
        fs = self._full_scale[closed][:, np.newaxis]
        previous = self._baseline[closed]
        jump = filled & (
            np.abs(mean - previous) > p.drift_max_block_step_fraction_of_full_scale * fs
        )
        limit = p.drift_limit_fraction_of_full_scale * fs
        in_band = np.abs(mean) < p.drift_clear_fraction_of_limit * limit
        fast = (self._fast_onset[closed] & ~in_band) | jump
        self._fast_onset[closed] = fast
        self._baseline[closed] = np.where(filled, mean, previous)
        self._baseline_std[closed] = std
        present = self._present[closed]
        # Healthy zone neighbours reading above the neighbour level: gas about, not drift.
        neighbour_level = p.drift_neighbour_fraction_of_full_scale * self._full_scale
        elevated = ~self.gas_fault_mask() & np.any(
            self._present
            & (np.nan_to_num(self._baseline, nan=0.0) > neighbour_level[:, np.newaxis]),
            axis=1,
        )
        neighbour = (self._zone_neighbours[closed] & elevated[np.newaxis, :]).any(axis=1)
        smooth = std <= p.drift_smooth_noise_multiple * self._noise[closed][:, np.newaxis]
        positive = present & (mean > limit) & smooth & ~fast & ~neighbour[:, np.newaxis]
        negative = present & (mean < -limit)
        drift = filled[:, 0] & np.any(positive | negative, axis=1)
        settled = filled[:, 0] & np.all(~present | in_band, axis=1)

        def detail(i: int, on: bool) -> str:
            magnitude = np.where(present[i], np.abs(np.nan_to_num(mean[i])), -1.0)
            channel = int(np.argmax(magnitude))
            gas = _GAS_LABEL[GAS_CHANNELS[channel]]
            level = float(mean[i, channel])
            share = level / float(fs[i, 0]) * 100.0
            if not on:
                return f"{gas} baseline back to {_ppm(level)} ({share:.2f} % of full scale)"
            if level < 0.0:
                why = "below zero, which no gas can cause"
            else:
                why = (
                    f"smooth (std {_ppm(float(std[i, channel]))} vs noise "
                    f"{_ppm(float(self._noise[closed[i]]))}), no step over "
                    f"{p.drift_max_block_step_fraction_of_full_scale * 100.0:g} % of full scale "
                    "per block since it left the band, no healthy zone neighbour elevated"
                )
            return (
                f"{gas} quiet-air baseline {_ppm(level)} ({share:.2f} % of full scale) over "
                f"{p.drift_block_s:.0f} s, beyond +-{p.drift_limit_fraction_of_full_scale:.0%}; "
                f"{why}"
            )

        self._apply(
            HealthFaultKind.DRIFT,
            closed,
            raise_condition=drift,
            clear_condition=settled,
            time_s=time_s,
            detail=detail,
        )
        self._block_sum[closed] = 0.0
        self._block_square[closed] = 0.0
        self._block_count[closed] = 0.0

    def _wind_round(
        self,
        stations: IntArray,
        t: FloatArray,
        speed: FloatArray,
        direction: FloatArray,
        sigma: FloatArray,
    ) -> None:
        p = self.parameters
        seen = self._wind_count[stations] >= 1
        vane_live = ~seen | ((direction != self._wind_direction[stations]) & (sigma > 0.0))
        cups_live = ~seen | (speed != self._wind_speed[stations])
        vane_since = np.where(vane_live, t, self._vane_live_since_s[stations])
        cups_since = np.where(cups_live, t, self._cups_live_since_s[stations])
        self._vane_live_since_s[stations] = vane_since
        self._cups_live_since_s[stations] = cups_since
        windy = speed > p.wind_calm_speed_m_per_s
        vane_stuck = windy & (t - vane_since >= p.wind_stuck_hold_s)
        cups_stuck = windy & (t - cups_since >= p.wind_stuck_hold_s)

        def wind_detail(i: int, on: bool) -> str:
            if not on:
                return "direction, sigma-theta and speed vary again"
            parts = []
            if vane_stuck[i]:
                parts.append(
                    f"direction stuck at {float(DEGREE.from_si(float(direction[i]))):.2f} deg "
                    f"(sigma-theta {float(DEGREE.from_si(float(sigma[i]))):.3f} deg) for "
                    f"{float(t[i] - vane_since[i]):.0f} s"
                )
            if cups_stuck[i]:
                duration = float(t[i] - cups_since[i])
                parts.append(f"speed stuck at {float(speed[i]):.3f} m/s for {duration:.0f} s")
            return "; ".join(parts) + f", in a wind above {p.wind_calm_speed_m_per_s:g} m/s"

        self._apply(
            HealthFaultKind.STUCK,
            stations + self._wind_offset,
            raise_condition=vane_stuck | cups_stuck,
            clear_condition=vane_live & cups_live,
            time_s=t,
            detail=wind_detail,
            off_delay_s=self._wind_stuck_off_delay_s,
        )
        self._wind_speed[stations] = speed
        self._wind_direction[stations] = direction
        self._wind_count[stations] += 1

    def _evaluate_offline(self, now_s: float) -> None:
        p = self.parameters
        silence_s = now_s - self._last_data_s
        limit_s = p.silence_factor * self._period_s + p.silence_margin_s
        silent = silence_s > limit_s
        frame_silent = np.zeros(len(self.device_ids), dtype=np.bool_)
        frame_silence_s = now_s - self._last_frame_s
        frame_limit_s = p.silence_factor * self._frame_period_s + p.silence_margin_s
        if self.expect_frames:
            frame_silent[self._camera_offset :] = frame_silence_s > frame_limit_s
        offline = self._status_offline | silent | frame_silent
        rows = np.arange(len(self.device_ids), dtype=np.intp)
        status_offline = self._status_offline.copy()
        camera_offset = self._camera_offset

        def offline_detail(i: int, on: bool) -> str:
            if not on:
                return "publishing again"
            reasons = []
            if status_offline[i]:
                reasons.append("retained status 'offline' (last will)")
            if silent[i]:
                what = "laser reading" if i >= camera_offset else "reading"
                reasons.append(
                    f"no {what} for {float(silence_s[i]):.1f} s (expected every "
                    f"{float(self._period_s[i]):g} s)"
                )
            if frame_silent[i]:
                j = i - camera_offset
                reasons.append(
                    f"no frame for {float(frame_silence_s[j]):.1f} s (expected every "
                    f"{float(self._frame_period_s[j]):g} s)"
                )
            return "; ".join(reasons)

        self._apply(
            HealthFaultKind.OFFLINE,
            rows,
            raise_condition=offline,
            clear_condition=~offline,
            time_s=now_s,
            detail=offline_detail,
        )
