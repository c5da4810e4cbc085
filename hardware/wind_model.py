"""Wind station model: mean wind schedule, gusts, meander, and averaged reports.

The true wind at the site follows a piecewise-linear mean schedule (speed, direction the wind
blows FROM, clockwise from north, in rad) with two stochastic parts, both Ornstein-Uhlenbeck (OU)
processes advanced with the exact update of Gillespie (1996):

* **gusts** on the along-wind speed, with turbulence intensity ``sigma_u / U`` set by the
  stability class; the speed is ``U * exp(s x - s**2 / 2)`` with ``x`` a unit OU process and
  ``s**2 = ln(1 + I**2)``, a lognormal OU that keeps the speed positive with mean exactly ``U``
  and standard deviation exactly ``I U``;
* **meander** of the direction, ``theta = theta_mean + sigma_d x``, with ``sigma_d`` chosen so
  that the sigma-theta expected over a 15-minute average equals the class value.

The process is sampled at a fast internal rate (1 Hz by default) at a site reference point (the
"true" wind for the plume physics) and at every station. Each OU process is the sum of a
site-wide part and an independent local part, so every point sees the same statistics and
points are correlated by a set fraction. Stations report averages over their averaging period:
scalar and vector mean speed, unit-vector mean direction (correct across north) and sigma-theta
by Yamartino (1984).

References
----------
Gillespie, D. T. (1996). Exact numerical simulation of the Ornstein-Uhlenbeck process and its
integral. Phys. Rev. E 54, 2084-2091.
Yamartino, R. J. (1984). A comparison of several "single-pass" estimators of the standard
deviation of wind direction. J. Climate Appl. Meteor. 23, 1362-1366.
US EPA (2000). Meteorological Monitoring Guidance for Regulatory Modeling Applications,
EPA-454/R-99-005: section 6.2.2 (unit-vector mean direction), 6.1 and 6.9 (15-minute sub-hourly
averages), 6.4.4 (sigma-A criteria for the Pasquill-Gifford stability categories).
Panofsky, H. A. and Dutton, J. A. (1984). Atmospheric Turbulence. Wiley: neutral surface layer
``sigma_u ~ 2.4 u*``, ``sigma_v ~ 1.9 u*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from pipesentinel.site import Site
from pipesentinel.units import DEGREE

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

FULL_CIRCLE_RAD = 2.0 * math.pi


class StabilityClass(StrEnum):
    """Pasquill-Gifford stability class, A (very unstable) to F (moderately stable)."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"
    F = "F"


# Representative sigma-theta per class, inside the sigma-A ranges of EPA-454/R-99-005 section
# 6.4.4 (A >= 22.5 deg, B 17.5-22.5, C 12.5-17.5, D 7.5-12.5, E 3.8-7.5, F < 3.8): mid-range
# values, and 25 deg / 2.5 deg for the open-ended A and F ranges. They refer to 15-minute to
# 1-hour averages.
SIGMA_THETA_BY_STABILITY_RAD: dict[StabilityClass, float] = {
    stability: DEGREE.to_si(degrees)
    for stability, degrees in (
        (StabilityClass.A, 25.0),
        (StabilityClass.B, 20.0),
        (StabilityClass.C, 15.0),
        (StabilityClass.D, 10.0),
        (StabilityClass.E, 5.65),
        (StabilityClass.F, 2.5),
    )
}
SIGMA_THETA_REFERENCE_AVERAGING_S = 900.0  # EPA-454/R-99-005 6.9: 15-minute sub-hourly averages

# sigma_u / sigma_v in the neutral surface layer (Panofsky & Dutton 1984): 2.4 / 1.9. With
# sigma_theta ~ sigma_v / U (small angles) the along-wind turbulence intensity is this ratio
# times sigma-theta in radians, e.g. 0.22 for class D.
ALONG_TO_LATERAL_STD_RATIO = 2.4 / 1.9

# Yamartino (1984), eq. (9): sigma = arcsin(eps) * (1 + (2 / sqrt(3) - 1) * eps**3).
YAMARTINO_COEFFICIENT = 2.0 / math.sqrt(3.0) - 1.0

# Internal sampling: EPA-454/R-99-005 6.2.1 asks for samples at once per second or faster.
DEFAULT_INTERNAL_STEP_S = 1.0
# Integral time scales and spatial correlations of the fluctuations: illustrative values of the
# right order for a 10 m mast (gusts: an integral length of ~100 m at a few m/s; meander:
# minutes), not fitted to data.
DEFAULT_GUST_TIME_SCALE_S = 20.0
DEFAULT_MEANDER_TIME_SCALE_S = 120.0
DEFAULT_GUST_SPATIAL_CORRELATION = 0.3
DEFAULT_MEANDER_SPATIAL_CORRELATION = 0.8
# The vectorized OU recursion runs in blocks over which the growth factor a**-k stays below
# exp(_OU_BLOCK_LOG_GROWTH), far from float64 overflow (exp(709)).
_OU_BLOCK_LOG_GROWTH = 30.0
# Relative tolerance when converting a time to a whole number of internal steps.
_STEP_ROUNDING = 1e-9


def turbulence_intensity_for(stability: StabilityClass) -> float:
    """Default along-wind turbulence intensity ``sigma_u / U`` of a stability class [1]."""
    return ALONG_TO_LATERAL_STD_RATIO * SIGMA_THETA_BY_STABILITY_RAD[stability]


def wrap_angle(angle_rad: FloatArray | float) -> FloatArray:
    """Angle wrapped into [0, 2 pi) [rad]."""
    wrapped = np.mod(np.asarray(angle_rad, dtype=np.float64), FULL_CIRCLE_RAD)
    # np.mod of a tiny negative angle rounds to exactly 2 pi.
    return np.where(wrapped >= FULL_CIRCLE_RAD, 0.0, wrapped)


def _weighted_mean(values: FloatArray, weights: FloatArray | None, axis: int) -> FloatArray:
    if weights is None:
        return np.asarray(np.mean(values, axis=axis), dtype=np.float64)
    weights = np.broadcast_to(weights, values.shape)
    total = np.sum(weights, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.sum(values * weights, axis=axis) / total, dtype=np.float64)


def unit_vector_mean_direction(
    direction_rad: FloatArray, weights: FloatArray | None = None, axis: int = -1
) -> FloatArray:
    """Unit-vector mean of directions, correct across north (EPA-454/R-99-005 eq. 6.2.17).

    Parameters
    ----------
    direction_rad
        Directions, clockwise from north [rad].
    weights
        Optional sample weights broadcastable to ``direction_rad`` (e.g. a 0/1 window mask) [1].
    axis
        Axis to average over.

    Returns
    -------
    FloatArray
        Mean direction in [0, 2 pi) [rad].
    """
    direction = np.asarray(direction_rad, dtype=np.float64)
    mean_sin = _weighted_mean(np.sin(direction), weights, axis)
    mean_cos = _weighted_mean(np.cos(direction), weights, axis)
    return wrap_angle(np.arctan2(mean_sin, mean_cos))


def mean_resultant_length(
    direction_rad: FloatArray, weights: FloatArray | None = None, axis: int = -1
) -> FloatArray:
    """Length ``R`` of the mean unit vector, in [0, 1] [1]."""
    direction = np.asarray(direction_rad, dtype=np.float64)
    mean_sin = _weighted_mean(np.sin(direction), weights, axis)
    mean_cos = _weighted_mean(np.cos(direction), weights, axis)
    return np.asarray(np.minimum(np.hypot(mean_sin, mean_cos), 1.0), dtype=np.float64)


def yamartino_sigma_theta(
    direction_rad: FloatArray, weights: FloatArray | None = None, axis: int = -1
) -> FloatArray:
    """Standard deviation of wind direction by the single-pass method of Yamartino (1984).

    ``eps = sqrt(1 - R**2)`` with ``R`` the mean resultant length of the unit vectors, and
    ``sigma = arcsin(eps) * (1 + (2 / sqrt(3) - 1) * eps**3)``.

    Parameters
    ----------
    direction_rad
        Directions [rad].
    weights
        Optional sample weights broadcastable to ``direction_rad`` [1].
    axis
        Axis to reduce.

    Returns
    -------
    FloatArray
        sigma-theta [rad].
    """
    resultant = mean_resultant_length(direction_rad, weights, axis)
    epsilon = np.sqrt(np.maximum(1.0 - resultant**2, 0.0))
    return np.asarray(
        np.arcsin(epsilon) * (1.0 + YAMARTINO_COEFFICIENT * epsilon**3), dtype=np.float64
    )


def circular_std(
    direction_rad: FloatArray, weights: FloatArray | None = None, axis: int = -1
) -> FloatArray:
    """Circular standard deviation ``sqrt(-2 ln R)`` (Mardia & Jupp 2000, eq. 2.3.11) [rad].

    Exact for wrapped-normal data: it returns the sigma of the generating normal distribution.
    """
    resultant = mean_resultant_length(direction_rad, weights, axis)
    with np.errstate(divide="ignore"):
        return np.asarray(np.sqrt(-2.0 * np.log(resultant)), dtype=np.float64)


@dataclass(frozen=True)
class WindAverage:
    """Statistics of wind samples over an averaging period (arrays over the reduced axis).

    Attributes
    ----------
    scalar_mean_speed_m_per_s
        Mean of the speeds [m s-1].
    vector_mean_speed_m_per_s
        Speed of the mean wind vector, <= the scalar mean [m s-1].
    direction_from_rad
        Unit-vector mean direction the wind blows from, clockwise from north [rad].
    sigma_theta_rad
        Yamartino standard deviation of the direction [rad].
    """

    scalar_mean_speed_m_per_s: FloatArray
    vector_mean_speed_m_per_s: FloatArray
    direction_from_rad: FloatArray
    sigma_theta_rad: FloatArray


def average_wind(
    speed_m_per_s: FloatArray,
    direction_from_rad: FloatArray,
    weights: FloatArray | None = None,
    axis: int = -1,
) -> WindAverage:
    """Average wind samples as a wind station does (EPA-454/R-99-005 section 6.2).

    Parameters
    ----------
    speed_m_per_s
        Sample speeds [m s-1].
    direction_from_rad
        Sample directions the wind blows from, clockwise from north [rad].
    weights
        Optional sample weights (0/1 window mask) broadcastable to the samples [1].
    axis
        Axis of the samples.

    Returns
    -------
    WindAverage
        Scalar and vector mean speed, unit-vector mean direction and Yamartino sigma-theta.
    """
    speed = np.asarray(speed_m_per_s, dtype=np.float64)
    direction = np.asarray(direction_from_rad, dtype=np.float64)
    # The wind vector points downwind; the mean "from" direction is opposite to it.
    east = _weighted_mean(speed * np.sin(direction), weights, axis)
    north = _weighted_mean(speed * np.cos(direction), weights, axis)
    return WindAverage(
        scalar_mean_speed_m_per_s=_weighted_mean(speed, weights, axis),
        vector_mean_speed_m_per_s=np.asarray(np.hypot(east, north), dtype=np.float64),
        direction_from_rad=unit_vector_mean_direction(direction, weights, axis),
        sigma_theta_rad=yamartino_sigma_theta(direction, weights, axis),
    )


def ornstein_uhlenbeck_step(
    value: FloatArray, dt_s: float, time_scale_s: float, standard_normal: FloatArray
) -> FloatArray:
    """Exact update of a unit-variance OU process (Gillespie 1996, eq. 1.9 with sigma = 1).

    ``x(t + dt) = x(t) a + sqrt(1 - a**2) n`` with ``a = exp(-dt / T)`` and ``n ~ N(0, 1)``.

    Parameters
    ----------
    value
        Current value [1].
    dt_s
        Step [s].
    time_scale_s
        Integral (relaxation) time scale ``T`` [s].
    standard_normal
        Standard normal draws, same shape as ``value`` [1].

    Returns
    -------
    FloatArray
        Value after the step [1].
    """
    decay = math.exp(-dt_s / time_scale_s)
    return np.asarray(
        value * decay + math.sqrt(1.0 - decay * decay) * standard_normal, dtype=np.float64
    )


def ornstein_uhlenbeck_path(
    initial: FloatArray, dt_s: float, time_scale_s: FloatArray, standard_normal: FloatArray
) -> FloatArray:
    """Many exact steps of independent unit-variance OU processes at once.

    Step ``k`` applies :func:`ornstein_uhlenbeck_step` with the draws ``standard_normal[k]``;
    the recursion runs as a linear filter over the time axis (no Python loop over steps).

    Parameters
    ----------
    initial
        Values before the first step, shape (m,) [1].
    dt_s
        Step [s].
    time_scale_s
        Time scale of each process, shape (m,) [s].
    standard_normal
        Draws, shape (k, m) [1].

    Returns
    -------
    FloatArray
        Values after each step, shape (k, m) [1].
    """
    decay = np.exp(-dt_s / np.asarray(time_scale_s, dtype=np.float64))
    gain = np.sqrt(1.0 - decay**2)
    draws = np.asarray(standard_normal, dtype=np.float64)
    steps = draws.shape[0]
    # x_k = a x_{k-1} + b n_k, so x_k = a**k (x_0 + sum_{j<=k} b n_j a**-j): a cumulative sum
    # per block of steps, short enough that a**-j cannot overflow.
    out = np.empty_like(draws)
    previous = np.asarray(initial, dtype=np.float64).copy()
    scaled = draws * gain
    block_steps = max(1, math.floor(_OU_BLOCK_LOG_GROWTH / float(np.max(-np.log(decay)))))
    for block_start in range(0, steps, block_steps):
        block = scaled[block_start : block_start + block_steps]
        powers = decay[np.newaxis, :] ** np.arange(1, block.shape[0] + 1)[:, np.newaxis]
        out[block_start : block_start + block.shape[0]] = powers * (
            previous + np.cumsum(block / powers, axis=0)
        )
        previous = out[block_start + block.shape[0] - 1]
    return out


def window_variance_fraction(averaging_s: float, time_scale_s: float) -> float:
    """Expected fraction of an OU process's variance seen within one averaging window [1].

    For a stationary OU process of time scale ``T`` the variance of a window mean of length
    ``A`` is ``2 (T/A)**2 (A/T - 1 + exp(-A/T))`` times the process variance, and the expected
    within-window variance is the rest.
    """
    ratio = averaging_s / time_scale_s
    variance_of_mean = 2.0 * (ratio - 1.0 + math.exp(-ratio)) / ratio**2
    return 1.0 - variance_of_mean


@dataclass(frozen=True)
class MeanWind:
    """The scheduled mean wind at one or more times (arrays of the query's shape).

    Attributes
    ----------
    speed_m_per_s
        Mean speed [m s-1].
    direction_from_rad
        Mean direction the wind blows from, clockwise from north [rad].
    stability_class_index
        Index into ``tuple(StabilityClass)`` of the class in force [1].
    sigma_theta_rad
        Target sigma-theta over 15-minute averages [rad].
    turbulence_intensity
        Along-wind ``sigma_u / U`` [1].
    """

    speed_m_per_s: FloatArray
    direction_from_rad: FloatArray
    stability_class_index: NDArray[np.intp]
    sigma_theta_rad: FloatArray
    turbulence_intensity: FloatArray

    def stability_class(self) -> StabilityClass:
        """The class in force (for a scalar query)."""
        return tuple(StabilityClass)[int(self.stability_class_index)]


@dataclass(frozen=True)
class WindSchedule:
    """Piecewise-linear mean wind: values at breakpoints, linear in between, held outside.

    Directions interpolate along the shorter arc. The stability class is the one of the latest
    breakpoint at or before the time.

    Attributes
    ----------
    time_s
        Breakpoint times, strictly increasing, from the scenario start [s].
    speed_m_per_s
        Mean speed at each breakpoint, > 0 [m s-1].
    direction_from_rad
        Mean direction the wind blows from, clockwise from north [rad].
    stability_class
        Pasquill-Gifford class from each breakpoint on.
    sigma_theta_rad
        Target sigma-theta over 15-minute averages; NaN entries take the class value [rad].
    turbulence_intensity
        Along-wind ``sigma_u / U``; NaN entries take the class value [1].
    """

    time_s: FloatArray
    speed_m_per_s: FloatArray
    direction_from_rad: FloatArray
    stability_class: tuple[StabilityClass, ...]
    sigma_theta_rad: FloatArray = field(default_factory=lambda: np.zeros(0))
    turbulence_intensity: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n = len(self.stability_class)
        defaults_sigma = np.array([SIGMA_THETA_BY_STABILITY_RAD[c] for c in self.stability_class])
        defaults_ti = np.array([turbulence_intensity_for(c) for c in self.stability_class])
        sigma = np.asarray(self.sigma_theta_rad, dtype=np.float64)
        intensity = np.asarray(self.turbulence_intensity, dtype=np.float64)
        sigma = (
            defaults_sigma if sigma.size == 0 else np.where(np.isnan(sigma), defaults_sigma, sigma)
        )
        intensity = (
            defaults_ti
            if intensity.size == 0
            else np.where(np.isnan(intensity), defaults_ti, intensity)
        )
        arrays = {
            "time_s": np.asarray(self.time_s, dtype=np.float64),
            "speed_m_per_s": np.asarray(self.speed_m_per_s, dtype=np.float64),
            "direction_from_rad": np.asarray(self.direction_from_rad, dtype=np.float64),
            "sigma_theta_rad": sigma,
            "turbulence_intensity": intensity,
        }
        for name, array in arrays.items():
            if array.shape != (n,):
                raise ValueError(f"WindSchedule.{name} has shape {array.shape}, expected ({n},)")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"WindSchedule.{name} has non-finite values")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if n == 0:
            raise ValueError("WindSchedule needs at least one breakpoint")
        if np.any(np.diff(arrays["time_s"]) <= 0.0):
            raise ValueError("WindSchedule.time_s must be strictly increasing")
        if np.any(arrays["speed_m_per_s"] <= 0.0):
            raise ValueError("WindSchedule.speed_m_per_s must be > 0")
        if np.any(sigma < 0.0) or np.any(intensity < 0.0):
            raise ValueError("WindSchedule sigma_theta_rad and turbulence_intensity must be >= 0")

    @classmethod
    def constant(
        cls,
        speed_m_per_s: float,
        direction_from_rad: float,
        stability_class: StabilityClass = StabilityClass.D,
    ) -> WindSchedule:
        """A steady mean wind."""
        return cls(
            time_s=np.array([0.0]),
            speed_m_per_s=np.array([speed_m_per_s]),
            direction_from_rad=np.array([direction_from_rad]),
            stability_class=(stability_class,),
        )

    def at(self, time_s: FloatArray | float) -> MeanWind:
        """The mean wind at ``time_s`` (any shape) [s]."""
        time = np.asarray(time_s, dtype=np.float64)
        unwrapped = np.unwrap(self.direction_from_rad)
        classes = np.array([tuple(StabilityClass).index(c) for c in self.stability_class])
        breakpoint_index = np.clip(
            np.searchsorted(self.time_s, time, side="right") - 1, 0, len(self.time_s) - 1
        )
        return MeanWind(
            speed_m_per_s=np.interp(time, self.time_s, self.speed_m_per_s),
            direction_from_rad=wrap_angle(np.interp(time, self.time_s, unwrapped)),
            stability_class_index=np.asarray(classes[breakpoint_index], dtype=np.intp),
            sigma_theta_rad=np.interp(time, self.time_s, self.sigma_theta_rad),
            turbulence_intensity=np.interp(time, self.time_s, self.turbulence_intensity),
        )


@dataclass(frozen=True)
class WindModelParameters:
    """Stochastic parameters of the wind model.

    Attributes
    ----------
    internal_step_s
        Internal sampling step [s].
    gust_time_scale_s
        Integral time scale of the along-wind gusts [s].
    meander_time_scale_s
        Integral time scale of the direction meander [s].
    gust_spatial_correlation
        Correlation of gusts between any two points of the site [1].
    meander_spatial_correlation
        Correlation of meander between any two points of the site [1].
    """

    internal_step_s: float = DEFAULT_INTERNAL_STEP_S
    gust_time_scale_s: float = DEFAULT_GUST_TIME_SCALE_S
    meander_time_scale_s: float = DEFAULT_MEANDER_TIME_SCALE_S
    gust_spatial_correlation: float = DEFAULT_GUST_SPATIAL_CORRELATION
    meander_spatial_correlation: float = DEFAULT_MEANDER_SPATIAL_CORRELATION

    def __post_init__(self) -> None:
        for name in ("internal_step_s", "gust_time_scale_s", "meander_time_scale_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"WindModelParameters.{name} must be > 0, got {value}")
        for name in ("gust_spatial_correlation", "meander_spatial_correlation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"WindModelParameters.{name} must be in [0, 1], got {value}")

    @property
    def meander_std_factor(self) -> float:
        """Ratio of the meander process std to the 15-minute sigma-theta it produces [1]."""
        fraction = window_variance_fraction(
            SIGMA_THETA_REFERENCE_AVERAGING_S, self.meander_time_scale_s
        )
        return 1.0 / math.sqrt(fraction)


@dataclass(frozen=True)
class InstantaneousWind:
    """Instantaneous wind at one or more points.

    Attributes
    ----------
    speed_m_per_s
        Speed [m s-1].
    direction_from_rad
        Direction the wind blows from, clockwise from north [rad].
    """

    speed_m_per_s: FloatArray
    direction_from_rad: FloatArray

    @property
    def velocity_m_per_s(self) -> FloatArray:
        """Wind vector (east, north), pointing downwind, shape (..., 2) [m s-1]."""
        return np.stack(
            [
                -self.speed_m_per_s * np.sin(self.direction_from_rad),
                -self.speed_m_per_s * np.cos(self.direction_from_rad),
            ],
            axis=-1,
        )


@dataclass(frozen=True)
class WindReport:
    """What the stations report (arrays of shape (n_stations,)).

    Attributes
    ----------
    speed_m_per_s
        Scalar mean speed over the averaging period [m s-1].
    vector_mean_speed_m_per_s
        Vector mean speed over the averaging period [m s-1].
    direction_from_rad
        Unit-vector mean direction the wind blows from [rad].
    sigma_theta_rad
        Yamartino sigma-theta [rad].
    publish
        Whether each station publishes (False while OFFLINE).
    """

    speed_m_per_s: FloatArray
    vector_mean_speed_m_per_s: FloatArray
    direction_from_rad: FloatArray
    sigma_theta_rad: FloatArray
    publish: BoolArray


class WindModel:
    """True wind at the site and at every wind station, sampled at the internal rate.

    Point 0 is the site reference (the true wind for the plume physics); points 1.. are the
    stations. Time starts at 0 at construction, when the processes are drawn from their
    stationary distribution and the first sample is taken.

    Parameters
    ----------
    schedule
        Mean wind over time.
    averaging_period_s
        Averaging period of each station, shape (n_stations,) [s].
    rng
        The only source of randomness; a seed gives identical outputs.
    parameters
        Stochastic parameters.
    station_ids
        Optional ids, in the order of ``averaging_period_s``.
    """

    def __init__(
        self,
        schedule: WindSchedule,
        *,
        averaging_period_s: FloatArray | Sequence[float],
        rng: np.random.Generator,
        parameters: WindModelParameters | None = None,
        station_ids: Sequence[str] = (),
    ) -> None:
        self.schedule = schedule
        self.parameters = parameters if parameters is not None else WindModelParameters()
        self._rng = rng
        averaging = np.asarray(averaging_period_s, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(averaging) | (averaging <= 0.0)):
            raise ValueError("averaging_period_s must be finite and > 0")
        self.station_ids = tuple(station_ids) or tuple(
            f"station-{i}" for i in range(averaging.size)
        )
        if len(self.station_ids) != averaging.size:
            raise ValueError("station_ids and averaging_period_s differ in length")
        step = self.parameters.internal_step_s
        self._window_samples = np.maximum(np.round(averaging / step).astype(np.intp), 1)
        self._buffer_length = int(self._window_samples.max(initial=1))
        self._n_points = averaging.size + 1
        # Station samples, oldest first, newest in the last column.
        self._speed_buffer = np.zeros((averaging.size, 0))
        self._direction_buffer = np.zeros((averaging.size, 0))
        self._count = 0
        self._step_index = 0
        # Stationary start of the unit OU processes, columns: gust common, meander common,
        # gust local per point, meander local per point.
        self._processes = rng.standard_normal(2 * self._n_points + 2)
        self._last_report: WindReport | None = None
        self._current = self._winds(np.array([0.0]), self._processes[np.newaxis, :])
        self._record(self._current)
        self._count = 1

    @classmethod
    def from_site(
        cls,
        site: Site,
        schedule: WindSchedule,
        *,
        rng: np.random.Generator,
        parameters: WindModelParameters | None = None,
    ) -> WindModel:
        """A model for the wind stations of ``site``, in the order of ``site.wind_stations``."""
        return cls(
            schedule,
            averaging_period_s=[station.averaging_period_s for station in site.wind_stations],
            rng=rng,
            parameters=parameters,
            station_ids=[station.id for station in site.wind_stations],
        )

    @property
    def time_s(self) -> float:
        """Model time since the start [s]."""
        return self._step_index * self.parameters.internal_step_s

    @property
    def n_stations(self) -> int:
        """Number of stations."""
        return self._n_points - 1

    def _winds(self, time_s: FloatArray, processes: FloatArray) -> InstantaneousWind:
        """Winds at all points for times (k,) and unit processes (k, 2 n + 2) -> (k, n)."""
        p = self.parameters
        n = self._n_points
        gust = (
            math.sqrt(p.gust_spatial_correlation) * processes[:, 0:1]
            + math.sqrt(1.0 - p.gust_spatial_correlation) * processes[:, 2 : 2 + n]
        )
        meander = (
            math.sqrt(p.meander_spatial_correlation) * processes[:, 1:2]
            + math.sqrt(1.0 - p.meander_spatial_correlation) * processes[:, 2 + n :]
        )
        mean = self.schedule.at(time_s)
        log_std = np.sqrt(np.log1p(mean.turbulence_intensity**2))[:, np.newaxis]
        speed = mean.speed_m_per_s[:, np.newaxis] * np.exp(log_std * gust - 0.5 * log_std**2)
        meander_std = (mean.sigma_theta_rad * p.meander_std_factor)[:, np.newaxis]
        direction = wrap_angle(mean.direction_from_rad[:, np.newaxis] + meander_std * meander)
        return InstantaneousWind(speed_m_per_s=speed, direction_from_rad=direction)

    def _record(self, winds: InstantaneousWind) -> None:
        """Append samples (k, n_points) to the station buffers, keeping the longest window."""
        length = self._buffer_length
        self._speed_buffer = np.concatenate(
            [self._speed_buffer, winds.speed_m_per_s[:, 1:].T], axis=1
        )[:, -length:]
        self._direction_buffer = np.concatenate(
            [self._direction_buffer, winds.direction_from_rad[:, 1:].T], axis=1
        )[:, -length:]

    def advance_to(self, time_s: float) -> None:
        """Advance in internal steps up to ``time_s`` (the last step not after it) [s].

        All steps of one call are computed at once; the random stream does not depend on how
        the time is split into calls.
        """
        p = self.parameters
        target = math.floor(time_s / p.internal_step_s + _STEP_ROUNDING)
        steps = target - self._step_index
        if steps <= 0:
            return
        n = self._n_points
        draws = self._rng.standard_normal((steps, 2 * n + 2))
        time_scales = np.concatenate(
            [
                [p.gust_time_scale_s, p.meander_time_scale_s],
                np.full(n, p.gust_time_scale_s),
                np.full(n, p.meander_time_scale_s),
            ]
        )
        processes = ornstein_uhlenbeck_path(self._processes, p.internal_step_s, time_scales, draws)
        self._processes = processes[-1]
        times = np.arange(self._step_index + 1, target + 1, dtype=np.float64) * p.internal_step_s
        self._step_index = target
        winds = self._winds(times, processes)
        keep = slice(max(steps - self._buffer_length, 0), steps)
        self._record(
            InstantaneousWind(
                speed_m_per_s=winds.speed_m_per_s[keep],
                direction_from_rad=winds.direction_from_rad[keep],
            )
        )
        self._count = self._step_index + 1
        self._current = InstantaneousWind(
            speed_m_per_s=winds.speed_m_per_s[-1:], direction_from_rad=winds.direction_from_rad[-1:]
        )

    def true_wind(self) -> InstantaneousWind:
        """Instantaneous true wind at the site reference point now (scalar arrays)."""
        return InstantaneousWind(
            speed_m_per_s=self._current.speed_m_per_s[0, 0],
            direction_from_rad=self._current.direction_from_rad[0, 0],
        )

    def station_wind(self) -> InstantaneousWind:
        """Instantaneous wind at every station now, shape (n_stations,)."""
        return InstantaneousWind(
            speed_m_per_s=self._current.speed_m_per_s[0, 1:],
            direction_from_rad=self._current.direction_from_rad[0, 1:],
        )

    def mean_wind(self) -> MeanWind:
        """The scheduled mean wind now."""
        return self.schedule.at(self.time_s)

    def window_weights(self) -> FloatArray:
        """0/1 weights of the sample buffer for each station's window, shape (n_st, L)."""
        columns = self._speed_buffer.shape[1]
        age = columns - 1 - np.arange(columns)  # 0 for the newest sample
        window = np.minimum(self._window_samples, self._count)[:, np.newaxis]
        return (age[np.newaxis, :] < window).astype(np.float64)

    def report(
        self, *, offline: BoolArray | None = None, stuck: BoolArray | None = None
    ) -> WindReport:
        """Averages every station reports now over its averaging period.

        Parameters
        ----------
        offline
            Stations that publish nothing, shape (n_stations,).
        stuck
            Stations whose vane is stuck: the direction freezes at its last report and
            sigma-theta reads 0; the speed goes on. Shape (n_stations,).

        Returns
        -------
        WindReport
            Scalar mean speed [m s-1], vector mean speed [m s-1], unit-vector mean direction
            [rad], Yamartino sigma-theta [rad], publish mask.
        """
        n = self.n_stations
        offline_mask = np.zeros(n, dtype=np.bool_) if offline is None else np.asarray(offline)
        stuck_mask = np.zeros(n, dtype=np.bool_) if stuck is None else np.asarray(stuck)
        averages = average_wind(
            self._speed_buffer, self._direction_buffer, self.window_weights(), axis=-1
        )
        report = WindReport(
            speed_m_per_s=averages.scalar_mean_speed_m_per_s,
            vector_mean_speed_m_per_s=averages.vector_mean_speed_m_per_s,
            direction_from_rad=averages.direction_from_rad,
            sigma_theta_rad=averages.sigma_theta_rad,
            publish=~offline_mask,
        )
        previous = self._last_report
        if previous is not None and np.any(stuck_mask):
            # A stuck vane: the direction freezes, so its fluctuation vanishes; speed goes on.
            report = WindReport(
                speed_m_per_s=report.speed_m_per_s,
                vector_mean_speed_m_per_s=report.vector_mean_speed_m_per_s,
                direction_from_rad=np.where(
                    stuck_mask, previous.direction_from_rad, report.direction_from_rad
                ),
                sigma_theta_rad=np.where(stuck_mask, 0.0, report.sigma_theta_rad),
                publish=report.publish,
            )
        self._last_report = report
        return report
