"""Leak localisation: a posterior over where a leak is and how large, from gas, laser and wind.

Bayesian source-term estimation on a fixed set of candidate release points (e.g. Senocak et al.
2008, "Stochastic event reconstruction of atmospheric contaminant dispersion using Bayesian
inference", Atmos. Environ. 42, 7718-7727, whose likelihood also treats zero sensor readings as
censored; Keats, Yee & Lien 2007, Atmos. Environ. 41, 465-479, for the source-receptor
"footprint" formulation):

* **candidates** are points every ~1 m of chainage along every pipeline
  (:func:`pipeline_candidates`; the answer names pipeline, chainage and block-valve segment), or
  a 2-D grid over an area
  (:func:`grid_candidates`, a leak off the modelled lines). Releases are at ground level (a buried
  line vents at the surface).
* the **forward model** is the steady Gaussian plume of :mod:`pipesentinel.detection.plume`. The
  concentration is linear in the release rate, so a unit-rate *footprint* ``F`` (candidates x
  observations) is computed once per wind state (:func:`footprint`) and the rate ``q`` is
  marginalised on a log grid: the prediction for candidate ``n`` and observation ``i`` is
  ``q F[n, i]``. Point detectors use the plume of :func:`~pipesentinel.detection.plume.
  plume_concentration_kg_per_m3` averaged over the wind-direction distribution analytically in
  angle (:func:`point_footprint_mole_fraction`; Gauss-Hermite nodes on request); laser beams use
  a panel-wise analytic line integral of the same plume (:func:`beam_footprint_mole_fraction_m`)
  whose direction average is the meander term ``(r sigma_theta)^2`` added to ``sigma_y^2``, with
  ``r`` the range (both are compared with dense direction quadrature, and the beam integral with
  the core's exact quadrature, in the tests).
* the **error model** (:func:`log_likelihood`) is multiplicative: ``ln(measured / predicted)`` is
  normal with ``MODEL_LOG_SIGMA`` (Gaussian-plume models are good to about a factor of 2), widened
  for underground detectors by the uncertain ingress fraction. A measurement at or below its floor
  (noise floor of the detector, background uncertainty of the laser) is a *censored* observation:
  its likelihood is the probability that the prediction lies below the floor. A detector that
  sees nothing is therefore information too. A detector at its full scale (a window holding a
  sample at the range of ``site.gas_detectors[...].full_scale_ppm``) is *right-censored*: the
  window mean is only a lower bound, and its likelihood is the probability that the prediction
  lies above it (the survival function of the same error model), not the density at it.

Inputs are arrays and records only (no MQTT, no JSON); :func:`observations_from_records` and
:func:`wind_from_records` turn validated :mod:`pipesentinel.ingest.records` into window means,
and :class:`Localiser` caches the footprint per wind state so that re-estimating on every batch
is cheap. Everything is in SI: mole fractions [mol mol-1], path integrals [mol mol-1 m], rates
[kg s-1] of the gas named in the result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.special import erfc, log_ndtr

from pipesentinel.detection._arrays import FloatArray, IntArray
from pipesentinel.detection.briggs import SIGMA_Y_COEFFICIENTS, SIGMA_Z_COEFFICIENTS, sigma_squared
from pipesentinel.detection.constants import (
    LOW_WIND_SPEED_M_PER_S,
    MINIMUM_WIND_SPEED_M_PER_S,
    STANDARD_ANEMOMETER_HEIGHT_M,
)
from pipesentinel.detection.gases import (
    LelBasis,
    kg_per_m3_to_mole_fraction,
    lower_explosive_limit,
)
from pipesentinel.detection.plume import plume_concentration_kg_per_m3
from pipesentinel.detection.stability import (
    StabilityClass,
    is_daytime,
    stability_class_from_sigma_theta,
    wind_speed_at_height,
)
from pipesentinel.ingest.records import DeviceStatus, GasReading, LaserReading, Record, WindReading
from pipesentinel.site import Camera, DetectorPlacement, Gas, Site
from pipesentinel.units import PPM

__all__ = [
    "AMBIENT_METHANE_MOLE_FRACTION",
    "MODEL_LOG_SIGMA",
    "SATURATION_TOLERANCE_FRACTION_OF_FULL_SCALE",
    "Candidates",
    "ChainageInterval",
    "LocalisationConfig",
    "LocalisationFlag",
    "LocalisationMode",
    "LocalisationResult",
    "Localiser",
    "ObservationKind",
    "Observations",
    "RateEstimate",
    "SegmentProbability",
    "WindState",
    "beam_footprint_mole_fraction_m",
    "footprint",
    "grid_candidates",
    "laser_beam_from_camera",
    "localise",
    "log_likelihood",
    "observations_from_records",
    "pipeline_candidates",
    "point_footprint_mole_fraction",
    "wind_from_records",
]

BoolArray = NDArray[np.bool_]

# --- Cited figures and documented assumptions ---------------------------------------------------

MODEL_LOG_SIGMA: Final = math.log(2.0) / 0.9154
"""Standard deviation of ``ln(observed / predicted)`` for the Gaussian plume [1] (= 0.757).

From the fraction of predictions within a factor of two of observations, FAC2 = 0.64: the
score of this repository's plume on Project Prairie Grass (``docs/physics.md``, scores after
Chang & Hanna 2004, Meteorol. Atmos. Phys. 87, 167-196) and typical of Gaussian models in the
evaluation of Hanna, Chang & Strimaitis (1993), Atmos. Environ. 27A, 2265-2285. For a log-normal
error ``P(|ln ratio| < ln 2) = 0.64`` gives ``ln 2 / sigma = z_0.82 = 0.9154``. (The same check's
geometric variance VG = 2.25 would give sqrt(ln 2.25) = 0.90, bias included.)"""

AMBIENT_METHANE_MOLE_FRACTION: Final = 1.9e-6
"""Background methane in clean air [mol mol-1]: NOAA Global Monitoring Laboratory, global mean
marine surface CH4 about 1.9 ppm in 2021-2023 (gml.noaa.gov/ccgg/trends_ch4). Subtracted from
point readings and, times the beam length, from laser columns."""

AMBIENT_METHANE_UNCERTAINTY_MOLE_FRACTION: Final = 0.1e-6
"""Uncertainty of the local methane background [mol mol-1]: an ASSUMPTION (urban air is commonly
a few tenths of a ppm above the global mean, varying with time of day); it sets the laser floor."""

DETECTOR_NOISE_FLOOR_FRACTION_OF_FULL_SCALE: Final = 0.005
"""Noise floor of a point detector, as a fraction of its full scale [1]: +-1 % of range
short-term stability (2 sigma) of an infrared detector to EN 60079-29-1 (Sewerin EX-TEC PM 400
manual, appendix 9.2.1), i.e. 250 ppm on a 0-50000 ppm range. A window mean at or below it is a
non-detection (censored); zero drift makes smaller excesses untrustworthy."""

LASER_NOISE_STD_MOLE_FRACTION_M: Final = 5e-6
"""Noise of one laser methane reading [mol mol-1 m] (5 ppm m): the detection sensitivity class
of hand-held and pole-mounted TDLAS detectors (e.g. Heath RMLD, "5 ppm-m at 0-30 m")."""

LASER_DETECTION_SIGMAS: Final = 3.0
"""A laser column counts as a detection above this many standard deviations of its noise and
background uncertainty [1] (a one-sided 3-sigma test: 0.13 % false detections per beam)."""

UNDERGROUND_INGRESS_FRACTION: Final = math.sqrt(0.1 * 1.0)
"""Fraction of the ground-level concentration over a hatch that reaches a detector inside it [1].

An ASSUMPTION: ingress through covers and vents is not measured at the site; we take it
log-uniform between 0.1 and 1 and use its geometric mean (0.316) as the nominal factor, with
the log-uniform standard deviation :data:`UNDERGROUND_INGRESS_LOG_SIGMA` added to the model
error. (The simulator uses its own fixed 0.3; the localiser does not read it.)"""

UNDERGROUND_INGRESS_LOG_SIGMA: Final = math.log(1.0 / 0.1) / math.sqrt(12.0)
"""Standard deviation of ln(ingress) for a log-uniform ingress on [0.1, 1] [1] (= 0.665)."""

DEFAULT_RATE_RANGE_KG_PER_S: Final = (1e-3, 1e2)
"""Log-uniform prior on the release rate [kg s-1]: from a pinhole (1 g/s, seen by lasers only)
to a large rupture of a line carrying associated gas (100 kg/s)."""

DEFAULT_RATE_COUNT: Final = 41
"""Points of the log rate grid (a factor 1.33 between neighbours)."""

DEFAULT_DIRECTION_SAMPLES: Final = 0
"""How point detectors average the plume over the wind-direction distribution [1]: 0, the
default, is the analytic angular average of :func:`point_footprint_mole_fraction` (one plume
evaluation); ``n >= 1`` takes ``n`` Gauss-Hermite nodes of the full plume. With a narrow plume
and a wide meander (stable air, sigma-theta 20-30 degrees) 5 nodes miss the plume between them
(median |ln error| up to 0.9 against 64 nodes, measured in the tests); the angular average stays
within ~0.05 in median there and costs a fifth."""

DEFAULT_BEAM_PANELS: Final = 6
"""Panels per beam, graded geometrically in downwind distance, for the beam line integral."""

DEFAULT_CREDIBLE_MASS: Final = 0.9
"""Posterior mass of the reported highest-posterior-density region [1]."""

DEFAULT_WINDOW_S: Final = 300.0
"""Window of the means [s]: ten times the slowest detector's t90 (20-30 s), so the lag after a
change costs at most ~10 % of the mean, and long enough to average plume meander (~2 min)."""

MINIMUM_SAMPLES: Final = 3
"""A device needs this many good readings in the window to be used [1]."""

WIND_DISAGREEMENT_RAD: Final = math.radians(30.0)
"""Two stations whose mean directions differ by more than this are flagged [rad]."""

POOR_FIT_CHI_SQUARED: Final = 4.0
"""Mean squared standardised log residual of the detections at the best fit above which the fit
is flagged as poor [1] (twice the 95 % point of chi-squared with 1 degree of freedom)."""

SATURATION_TOLERANCE_FRACTION_OF_FULL_SCALE: Final = 0.0005
"""A detector sample within this fraction of its full scale is taken as AT full scale [1].

Half of one output step of 0.1 % of range: the resolution of the simulated detector
(``hardware/gas_sensor.py``, ``DEFAULT_RESOLUTION_FRACTION_OF_FULL_SCALE``, itself a design
choice, finer than the 1 %LEL display step of the Sewerin EX-TEC PM 400 manual), so a quantised
reading that high can only come from the clip at full scale. The site model gives the range
(``full_scale_ppm``) but no resolution: for real devices this tolerance is an ASSUMPTION."""

_TINY_FOOTPRINT: Final = 1e-300
"""Footprints are floored here before the log [same unit as the footprint]."""
_NEGLIGIBLE_CENSORED_SIGMAS: Final = 6.0
"""A censored term whose standardised margin exceeds this is ~0 (log_ndtr(6) = -1e-9) [1]."""
_PRUNE_LOG_LIKELIHOOD: Final = 50.0
"""Candidates whose likelihood upper bound is this far below the best are not refined [1]
(exp(-50) = 2e-22 of the best: far below anything reported)."""
_THRESHOLD_STEP: Final = 0.05
"""Table step of the censored terms in ln(rate) [1]; linear interpolation between rows errs by
under step^2 / 8 / sigma^2 = 5e-4 in the log-likelihood per term."""
_RULED_OUT_SIGMAS: Final = 40.0
"""Censored margins below -40 sigma are clamped there: log Phi(-40) = -804, ruled out [1]."""
_SMALLEST_DISTANCE_M: Final = 0.5
"""Beam panels are graded from this downwind distance at least (below, the plume is thinner than
a detector head) [m]."""
_SMALLEST_STEP: Final = 1e-12
"""Direction cosines below this are treated as zero in the beam integral [1]."""
_BEAM_SIGMA_PASSES: Final = 2
"""Passes of the beam integral's sigmas: at the panel's mid distance, then at its peak [1]."""
_CROSS_CHECKED_STATIONS: Final = 2
"""With fewer wind stations than this, nothing checks the one in use [1]."""
_EXPONENT_FLOOR: Final = -500.0
"""Gaussian exponents are floored here (exp(-500) = 7e-218: nothing measurable) [1]."""
_SQRT_HALF_PI: Final = math.sqrt(math.pi / 2.0)
"""sqrt(pi / 2), from the Gaussian integral [1]."""
_WIND_KEY_DECIMALS: Final = 3
"""Wind states are cached by their values rounded to this many decimals (SI units)."""


class LocalisationMode(StrEnum):
    """Where the candidates lie."""

    PIPELINES = "pipelines"
    GRID = "grid"


class ObservationKind(StrEnum):
    """Kind of observation used by the localiser."""

    POINT = "point"  # a pipeline (surface) point detector
    UNDERGROUND = "underground"  # a detector in a manhole or tunnel, behind an ingress factor
    LASER = "laser"  # a camera's laser path integral


class LocalisationFlag(StrEnum):
    """Caveats of an estimate."""

    NO_OBSERVATIONS = "no_observations"  # no device gave enough good readings in the window
    NO_WIND = "no_wind"  # no wind report in the window: no estimate
    NO_DETECTION = "no_detection"  # nothing above its floor: only "where a leak could hide"
    LOW_WIND = "low_wind"  # below 3 mph: the plume model may underpredict (NOAA ALOHA)
    VERY_STABLE = "very_stable"  # class F: meandering, decoupled flow
    SINGLE_WIND_STATION = "single_wind_station"
    WIND_STATIONS_DISAGREE = "wind_stations_disagree"
    RATE_AT_PRIOR_BOUND = "rate_at_prior_bound"  # the rate posterior piles up at a grid end
    POOR_FIT = "poor_fit"  # the best candidate does not explain the detections well


# --- Inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindState:
    """The wind the footprint is computed for.

    Attributes
    ----------
    speed_m_per_s
        Mean wind speed at the anemometer [m s-1].
    direction_from_rad
        Mean direction the wind blows from, clockwise from north [rad].
    sigma_theta_rad
        Standard deviation of the direction over the window (meander and between stations) [rad].
    stability_class
        Pasquill-Gifford class code 0..5 (A..F) [1].
    anemometer_height_m
        Height of the measurement [m].
    temperature_k, pressure_pa
        Air temperature [K] and pressure [Pa] (gas conversion).
    station_count
        Stations that reported in the window [1].
    station_spread_rad
        Largest difference between the stations' mean directions [rad].
    """

    speed_m_per_s: float
    direction_from_rad: float
    sigma_theta_rad: float
    stability_class: int
    anemometer_height_m: float = STANDARD_ANEMOMETER_HEIGHT_M
    temperature_k: float = 288.15  # ISO 2533 standard atmosphere, sea level
    pressure_pa: float = 101_325.0  # ISO 2533 standard atmosphere, sea level
    station_count: int = 1
    station_spread_rad: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "speed_m_per_s": self.speed_m_per_s >= 0.0,
            "sigma_theta_rad": self.sigma_theta_rad >= 0.0,
            "anemometer_height_m": self.anemometer_height_m > 0.0,
            "temperature_k": self.temperature_k > 0.0,
            "pressure_pa": self.pressure_pa > 0.0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and ok):
                raise ValueError(f"WindState.{name}: invalid value {value!r}")
        if not math.isfinite(self.direction_from_rad):
            raise ValueError(
                f"WindState.direction_from_rad must be finite, got {self.direction_from_rad!r}"
            )
        if self.stability_class not in range(len(StabilityClass)):
            raise ValueError(
                f"WindState.stability_class must be 0..5, got {self.stability_class!r}"
            )

    def key(self) -> tuple[float, ...]:
        """The values the footprint depends on, rounded (cache key)."""
        return tuple(
            round(value, _WIND_KEY_DECIMALS)
            for value in (
                self.speed_m_per_s,
                math.remainder(self.direction_from_rad, math.tau),
                self.sigma_theta_rad,
                float(self.stability_class),
                self.anemometer_height_m,
                self.temperature_k,
                self.pressure_pa,
            )
        )


@dataclass(frozen=True)
class Observations:
    """Window means of the devices, as excesses over background, with their error model.

    Point observations (surface and underground detectors) come first, then beams. Arrays have
    one entry per observation unless said otherwise.

    Attributes
    ----------
    gas
        The gas the amounts are of (the rate estimate is of this gas).
    device_ids, kinds
        Which device, what kind.
    excess
        Measured mean minus background: [mol mol-1] for points, [mol mol-1 m] for beams.
    floor
        Detection floor; ``excess <= floor`` is a non-detection (censored) [same unit].
    log_sigma
        Standard deviation of ``ln(measured / predicted)`` [1].
    factor
        Multiplier of the modelled ground-level value (underground ingress; 1 otherwise) [1].
    receptor_m
        Receptor points (east, north, height >= 0) of the point observations, shape (P, 3) [m];
        underground detectors sample the air at their hatch (height 0).
    beam_start_m, beam_end_m
        Beam ends of the laser observations, shape (B, 3) [m].
    sample_count
        Readings averaged [1].
    end_time_s, window_s
        The window ``(end_time_s - window_s, end_time_s]`` [s].
    saturated
        The device was at its full scale in the window (right-censored): ``excess`` is then a
        lower bound on the true excess, "at least this" [1]. Empty (the default): none is.
    """

    gas: Gas
    device_ids: tuple[str, ...]
    kinds: tuple[ObservationKind, ...]
    excess: FloatArray
    floor: FloatArray
    log_sigma: FloatArray
    factor: FloatArray
    receptor_m: FloatArray
    beam_start_m: FloatArray
    beam_end_m: FloatArray
    sample_count: IntArray
    end_time_s: float = 0.0
    window_s: float = DEFAULT_WINDOW_S
    saturated: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))

    def __post_init__(self) -> None:
        count = len(self.device_ids)
        saturated = np.asarray(self.saturated, dtype=np.bool_)
        if saturated.size == 0:
            saturated = np.zeros(count, dtype=np.bool_)
        if saturated.shape != (count,):
            raise ValueError(
                f"Observations.saturated has shape {saturated.shape}, expected ({count},)"
            )
        object.__setattr__(self, "saturated", saturated)
        if len(self.kinds) != count:
            raise ValueError(f"Observations: {len(self.kinds)} kinds for {count} devices")
        for name in ("excess", "floor", "log_sigma", "factor", "sample_count"):
            array = np.asarray(getattr(self, name))
            if array.shape != (count,):
                raise ValueError(
                    f"Observations.{name} has shape {array.shape}, expected ({count},)"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"Observations.{name} has non-finite values")
        if np.any(np.asarray(self.floor) <= 0.0) or np.any(np.asarray(self.log_sigma) <= 0.0):
            raise ValueError("Observations: floor and log_sigma must be > 0")
        if np.any(saturated & ~(np.asarray(self.excess) > np.asarray(self.floor))):
            raise ValueError("Observations: a saturated observation must be above its floor")
        n_points = sum(kind is not ObservationKind.LASER for kind in self.kinds)
        if list(self.kinds) != sorted(self.kinds, key=lambda kind: kind is ObservationKind.LASER):
            raise ValueError("Observations: point observations must come before beams")
        shapes = {
            "receptor_m": (np.shape(self.receptor_m), (n_points, 3)),
            "beam_start_m": (np.shape(self.beam_start_m), (count - n_points, 3)),
            "beam_end_m": (np.shape(self.beam_end_m), (count - n_points, 3)),
        }
        for name, (actual, expected) in shapes.items():
            if actual != expected:
                raise ValueError(f"Observations.{name} has shape {actual}, expected {expected}")

    @property
    def n_points(self) -> int:
        """Number of point observations [1]."""
        return int(np.shape(self.receptor_m)[0])

    @property
    def detected(self) -> BoolArray:
        """Which observations are above their floor (saturated ones included)."""
        return np.asarray(self.excess > self.floor)

    @property
    def measured(self) -> BoolArray:
        """Detections taken at their value: above the floor and not saturated."""
        return np.asarray((self.excess > self.floor) & ~self.saturated)

    def key(self) -> tuple[str, ...]:
        """Devices and kinds (with the wind key, the footprint's cache key)."""
        return (self.gas.value, *self.device_ids, *(kind.value for kind in self.kinds))


@dataclass(frozen=True)
class Candidates:
    """Candidate release points.

    Attributes
    ----------
    mode
        Pipelines or grid.
    position_m
        East, north of each candidate, shape (N, 2) [m].
    spacing_m
        Chainage step or grid step [m]; each candidate stands for this length (or its square).
    pipeline_ids, segment_ids
        Names indexed by ``pipeline_index`` and ``segment_index`` (pipeline mode; empty for grid).
    segment_pipeline_ids
        Pipeline of each segment.
    pipeline_index, segment_index
        Per candidate, shape (N,) (-1 for grid) [1].
    chainage_m
        Chainage per candidate (NaN for grid) [m].
    segment_valves
        Upstream and downstream valve ids of each segment.
    grid_shape
        (rows, columns) of a grid, north by east; (0, 0) for pipelines.
    """

    mode: LocalisationMode
    position_m: FloatArray
    spacing_m: float
    pipeline_ids: tuple[str, ...] = ()
    segment_ids: tuple[str, ...] = ()
    segment_pipeline_ids: tuple[str, ...] = ()
    segment_valves: tuple[tuple[str | None, str | None], ...] = ()
    pipeline_index: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    segment_index: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chainage_m: FloatArray = field(default_factory=lambda: np.zeros(0))
    grid_shape: tuple[int, int] = (0, 0)

    @property
    def count(self) -> int:
        """Number of candidates [1]."""
        return int(self.position_m.shape[0])

    @property
    def sources_m(self) -> FloatArray:
        """Release points (east, north, 0), shape (N, 3) [m]."""
        return np.column_stack([self.position_m, np.zeros(self.count)])


def pipeline_candidates(site: Site, *, spacing_m: float = 1.0) -> Candidates:
    """Candidates every ``spacing_m`` of chainage along every pipeline of ``site`` [m].

    Each pipeline gets points at the centres of ``ceil(length / spacing_m)`` equal steps, so
    every candidate stands for the same length of line and the ends are covered.
    """
    if not (math.isfinite(spacing_m) and spacing_m > 0.0):
        raise ValueError(f"spacing_m must be finite and > 0, got {spacing_m!r}")
    if not site.pipelines:
        raise ValueError(f"site {site.id!r} has no pipelines: use grid_candidates")
    positions, pipeline_index, segment_index, chainages = [], [], [], []
    segment_ids: list[str] = []
    valves: list[tuple[str | None, str | None]] = []
    for index, pipeline in enumerate(site.pipelines):
        steps = max(1, math.ceil(pipeline.length_m / spacing_m))
        step = pipeline.length_m / steps
        chainage: FloatArray = (np.arange(steps, dtype=np.float64) + 0.5) * step
        segments = pipeline.segments
        starts = np.array([segment.start_chainage_m for segment in segments])
        local = np.clip(np.searchsorted(starts, chainage, side="right") - 1, 0, len(segments) - 1)
        segment_index.append(local + len(segment_ids))
        segment_ids += [segment.id for segment in segments]
        valves += [(s.upstream_valve_id, s.downstream_valve_id) for s in segments]
        positions.append(pipeline.point_at_chainage(chainage))
        pipeline_index.append(np.full(steps, index, dtype=np.int64))
        chainages.append(chainage)
    return Candidates(
        mode=LocalisationMode.PIPELINES,
        position_m=np.concatenate(positions),
        spacing_m=float(spacing_m),
        pipeline_ids=tuple(pipeline.id for pipeline in site.pipelines),
        segment_ids=tuple(segment_ids),
        segment_pipeline_ids=tuple(segment.pipeline_id for segment in site.segments),
        segment_valves=tuple(valves),
        pipeline_index=np.concatenate(pipeline_index),
        segment_index=np.concatenate(segment_index).astype(np.int64),
        chainage_m=np.concatenate(chainages),
    )


def grid_candidates(extent_m: FloatArray, *, spacing_m: float = 10.0) -> Candidates:
    """A square grid of candidates over ``extent_m`` [m].

    ``extent_m`` is ``[[east_min, north_min], [east_max, north_max]]``.

    Cell centres every ``spacing_m`` [m]; the grid covers the extent.
    """
    extent = np.asarray(extent_m, dtype=np.float64)
    if extent.shape != (2, 2) or not np.all(np.isfinite(extent)):
        raise ValueError(f"extent_m must be finite with shape (2, 2), got {extent!r}")
    if not np.all(extent[1] > extent[0]):
        raise ValueError(f"extent_m: maximum {extent[1]} must exceed minimum {extent[0]}")
    if not (math.isfinite(spacing_m) and spacing_m > 0.0):
        raise ValueError(f"spacing_m must be finite and > 0, got {spacing_m!r}")
    counts = np.maximum(np.ceil((extent[1] - extent[0]) / spacing_m), 1).astype(np.int64)
    east = extent[0, 0] + (np.arange(counts[0]) + 0.5) * spacing_m
    north = extent[0, 1] + (np.arange(counts[1]) + 0.5) * spacing_m
    grid_east, grid_north = np.meshgrid(east, north)
    return Candidates(
        mode=LocalisationMode.GRID,
        position_m=np.column_stack([grid_east.ravel(), grid_north.ravel()]),
        spacing_m=float(spacing_m),
        pipeline_index=np.full(grid_east.size, -1, dtype=np.int64),
        segment_index=np.full(grid_east.size, -1, dtype=np.int64),
        chainage_m=np.full(grid_east.size, np.nan),
        grid_shape=(int(counts[1]), int(counts[0])),
    )


@dataclass(frozen=True)
class LocalisationConfig:
    """Parameters of the localiser (defaults are the cited figures above).

    Attributes
    ----------
    urban
        Briggs urban (True) or open-country curves [1]; a built-up site is urban.
    model_log_sigma
        Multiplicative model error, sd of ln(observed/predicted) [1].
    underground_ingress_fraction, underground_ingress_log_sigma
        Nominal ingress factor and sd of its log [1].
    rate_range_kg_per_s, rate_count
        Log-uniform rate prior bounds [kg s-1] and grid size [1].
    direction_samples
        Direction average of the point detectors [1]: 0 analytic (angular), n >= 1 Gauss-Hermite
        nodes.
    beam_panels
        Panels of the beam integral [1].
    credible_mass
        Mass of the reported credible region and rate interval [1].
    window_s
        Averaging window of the observations [s].
    """

    urban: bool = True
    model_log_sigma: float = MODEL_LOG_SIGMA
    underground_ingress_fraction: float = UNDERGROUND_INGRESS_FRACTION
    underground_ingress_log_sigma: float = UNDERGROUND_INGRESS_LOG_SIGMA
    rate_range_kg_per_s: tuple[float, float] = DEFAULT_RATE_RANGE_KG_PER_S
    rate_count: int = DEFAULT_RATE_COUNT
    direction_samples: int = DEFAULT_DIRECTION_SAMPLES
    beam_panels: int = DEFAULT_BEAM_PANELS
    credible_mass: float = DEFAULT_CREDIBLE_MASS
    window_s: float = DEFAULT_WINDOW_S

    def __post_init__(self) -> None:
        low, high = self.rate_range_kg_per_s
        problems = {
            "model_log_sigma": self.model_log_sigma > 0.0,
            "underground_ingress_fraction": 0.0 < self.underground_ingress_fraction <= 1.0,
            "underground_ingress_log_sigma": self.underground_ingress_log_sigma >= 0.0,
            "rate_range_kg_per_s": 0.0 < low < high,
            "rate_count": self.rate_count >= 2,
            "direction_samples": self.direction_samples >= 0,
            "beam_panels": self.beam_panels >= 1,
            "credible_mass": 0.0 < self.credible_mass < 1.0,
            "window_s": self.window_s > 0.0,
        }
        for name, ok in problems.items():
            if not ok:
                raise ValueError(
                    f"LocalisationConfig.{name}: invalid value {getattr(self, name)!r}"
                )

    @property
    def rates_kg_per_s(self) -> FloatArray:
        """The rate grid, log-spaced [kg s-1]."""
        low, high = self.rate_range_kg_per_s
        return np.geomspace(low, high, self.rate_count)


# --- Records -> observations and wind --------------------------------------------------------


def laser_beam_from_camera(camera: Camera) -> tuple[FloatArray, FloatArray]:
    """Start (the camera) and end of a camera's laser beam, (3,) each, ENU [m].

    The beam runs along the optical axis (heading clockwise from north, tilted down by
    ``tilt_deg``) up to ``laser_range_m`` or to the ground, whichever is nearer.
    """
    heading = math.radians(camera.heading_deg)
    tilt = math.radians(camera.tilt_deg)
    forward = np.array(
        [math.sin(heading) * math.cos(tilt), math.cos(heading) * math.cos(tilt), -math.sin(tilt)]
    )
    start = np.array([camera.position_m[0], camera.position_m[1], camera.mounting_height_m])
    length = camera.laser_range_m
    if forward[2] < 0.0:
        length = min(length, camera.mounting_height_m / -forward[2])
    return start, start + length * forward


def _in_window(time_s: float, end_time_s: float, window_s: float) -> bool:
    return end_time_s - window_s < time_s <= end_time_s


class _WindowMeans(NamedTuple):
    """Per device: mean, count and largest of the good readings in the window [reading unit]."""

    means: dict[str, float]
    counts: dict[str, int]
    maxima: dict[str, float]


def _window_means(
    site_id: str, records: Iterable[Record], gas: Gas, end_time_s: float, window_s: float
) -> _WindowMeans:
    """Mean reading, count and largest reading per device of the good readings in the window."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    maxima: dict[str, float] = {}
    for record in records:
        if not isinstance(record, GasReading | LaserReading) or record.site_id != site_id:
            continue
        if record.status is not DeviceStatus.OK:
            continue
        if not _in_window(record.time_s, end_time_s, window_s):
            continue
        if isinstance(record, LaserReading):
            value = record.path_integral_mole_fraction_m
        elif gas is Gas.METHANE:
            value = record.methane_mole_fraction
        else:
            value = record.propane_mole_fraction
        sums[record.device_id] = sums.get(record.device_id, 0.0) + value
        counts[record.device_id] = counts.get(record.device_id, 0) + 1
        maxima[record.device_id] = max(maxima.get(record.device_id, -math.inf), value)
    means = {device: total / counts[device] for device, total in sums.items()}
    return _WindowMeans(means=means, counts=counts, maxima=maxima)


def observations_from_records(
    site: Site,
    records: Iterable[Record],
    *,
    end_time_s: float,
    gas: Gas = Gas.METHANE,
    config: LocalisationConfig | None = None,
) -> Observations:
    """Window means of the gas detectors and laser beams of ``site`` as localiser observations.

    Only readings with status ``ok`` inside ``(end_time_s - window_s, end_time_s]`` count; a
    device with fewer than :data:`MINIMUM_SAMPLES` of them is left out (offline, faulty, warming
    up). Records of other sites or unknown devices are ignored. Laser beams are used for methane
    only (the lasers measure methane).

    A detector with any good sample of the window within
    :data:`SATURATION_TOLERANCE_FRACTION_OF_FULL_SCALE` of its full scale (the site model's
    ``full_scale_ppm``) is *saturated*: its observation is the window mean of the reported,
    clipped samples, marked right-censored. Every clipped sample is at most the true value, so
    that mean is a lower bound on the true window mean however many samples were clipped (the
    mean of the saturated samples alone, or the full scale, would not be: the others may be
    lower). A window whose mean stays below the floor despite a sample at full scale (a single
    spike) remains a non-detection. Lasers are never marked: the site model gives no ppm m range
    for them.

    Parameters
    ----------
    site
        The site (device positions, full scales, beams).
    records
        Validated telemetry records, any order.
    end_time_s
        End of the window, epoch [s].
    gas
        Which channel of the point detectors.
    config
        Window length and error model.

    Returns
    -------
    Observations
    """
    config = config or LocalisationConfig()
    window = config.window_s
    means, counts, maxima = _window_means(site.id, records, gas, end_time_s, window)
    background = AMBIENT_METHANE_MOLE_FRACTION if gas is Gas.METHANE else 0.0
    ids: list[str] = []
    kinds: list[ObservationKind] = []
    excess, floor, log_sigma, factor, samples = [], [], [], [], []
    saturated: list[bool] = []
    receptors: list[FloatArray] = []
    for detector in site.gas_detectors:
        n = counts.get(detector.id, 0)
        if n < MINIMUM_SAMPLES or gas not in detector.gases:
            continue
        underground = detector.placement is DetectorPlacement.UNDERGROUND
        ids.append(detector.id)
        kinds.append(ObservationKind.UNDERGROUND if underground else ObservationKind.POINT)
        full_scale = PPM.to_si(detector.full_scale_ppm)
        excess.append(means[detector.id] - background)
        floor.append(DETECTOR_NOISE_FLOOR_FRACTION_OF_FULL_SCALE * full_scale)
        saturated.append(
            maxima[detector.id] >= (1.0 - SATURATION_TOLERANCE_FRACTION_OF_FULL_SCALE) * full_scale
            and excess[-1] > floor[-1]
        )
        log_sigma.append(
            math.hypot(config.model_log_sigma, config.underground_ingress_log_sigma)
            if underground
            else config.model_log_sigma
        )
        factor.append(config.underground_ingress_fraction if underground else 1.0)
        position = np.array(detector.position_m, dtype=np.float64)
        position[2] = max(position[2], 0.0)  # underground: the air at the hatch
        receptors.append(position)
        samples.append(n)
    starts: list[FloatArray] = []
    ends: list[FloatArray] = []
    if gas is Gas.METHANE:
        for camera in site.cameras:
            n = counts.get(camera.id, 0)
            if n < MINIMUM_SAMPLES:
                continue
            start, end = laser_beam_from_camera(camera)
            length = float(np.linalg.norm(end - start))
            ids.append(camera.id)
            kinds.append(ObservationKind.LASER)
            excess.append(means[camera.id] - AMBIENT_METHANE_MOLE_FRACTION * length)
            noise = math.hypot(
                LASER_NOISE_STD_MOLE_FRACTION_M / math.sqrt(n),
                AMBIENT_METHANE_UNCERTAINTY_MOLE_FRACTION * length,
            )
            floor.append(LASER_DETECTION_SIGMAS * noise)
            log_sigma.append(config.model_log_sigma)
            factor.append(1.0)
            starts.append(start)
            ends.append(end)
            samples.append(n)
            saturated.append(False)
    return Observations(
        gas=gas,
        device_ids=tuple(ids),
        kinds=tuple(kinds),
        excess=np.array(excess, dtype=np.float64),
        floor=np.array(floor, dtype=np.float64),
        log_sigma=np.array(log_sigma, dtype=np.float64),
        factor=np.array(factor, dtype=np.float64),
        receptor_m=np.array(receptors, dtype=np.float64).reshape(-1, 3),
        beam_start_m=np.array(starts, dtype=np.float64).reshape(-1, 3),
        beam_end_m=np.array(ends, dtype=np.float64).reshape(-1, 3),
        sample_count=np.array(samples, dtype=np.int64),
        end_time_s=float(end_time_s),
        window_s=window,
        saturated=np.array(saturated, dtype=np.bool_),
    )


def _circular_mean(angles_rad: FloatArray) -> tuple[float, float]:
    """Unit-vector mean direction [rad] and circular standard deviation [rad] of ``angles_rad``."""
    east = float(np.mean(np.sin(angles_rad)))
    north = float(np.mean(np.cos(angles_rad)))
    length = min(math.hypot(east, north), 1.0)
    spread = math.sqrt(-2.0 * math.log(length)) if length > 0.0 else math.pi
    return math.atan2(east, north) % math.tau, spread


def wind_from_records(
    site: Site,
    records: Iterable[Record],
    *,
    end_time_s: float,
    window_s: float = DEFAULT_WINDOW_S,
    stability_class: int | None = None,
    exclude_station_ids: Sequence[str] = (),
) -> WindState | None:
    """The wind over the window from the stations' reports; ``None`` if no station reported.

    Speed: mean of the reported scalar speeds. Direction: unit-vector mean of all reports.
    ``sigma_theta``: the pooled spread, ``sqrt(mean(sigma_theta_report^2) + s^2)`` with ``s`` the
    circular standard deviation of the reported mean directions (the meander between reports and
    the difference between stations). Stability: the given class, or the sigma-theta method
    (EPA-454/R-99-005 sec. 6.4.4) with the pooled sigma-theta, the 10-m wind and day/night at the
    site. Temperature and pressure: means of the reports that carry them, else ISO 2533.

    Parameters
    ----------
    site
        The site (station heights, location for day/night).
    records
        Validated records, any order; only :class:`WindReading` of this site are used.
    end_time_s, window_s
        The window ``(end_time_s - window_s, end_time_s]`` [s].
    stability_class
        Force this class code 0..5 (e.g. from a separate measurement); ``None``: estimate.
    exclude_station_ids
        Stations to ignore (known bad).
    """
    heights = {station.id: station.mast_height_m for station in site.wind_stations}
    readings = [
        record
        for record in records
        if isinstance(record, WindReading)
        and record.site_id == site.id
        and record.device_id in heights
        and record.device_id not in exclude_station_ids
        and _in_window(record.time_s, end_time_s, window_s)
    ]
    if not readings:
        return None
    speed = float(np.mean([reading.speed_m_per_s for reading in readings]))
    directions = np.array([reading.direction_from_rad for reading in readings])
    direction, between = _circular_mean(directions)
    within = float(np.mean([reading.sigma_theta_rad**2 for reading in readings]))
    sigma_theta = math.sqrt(within + between**2)
    stations = sorted({reading.device_id for reading in readings})
    station_means = [
        _circular_mean(np.array([r.direction_from_rad for r in readings if r.device_id == s]))[0]
        for s in stations
    ]
    spread = max(
        (abs(math.remainder(a - b, math.tau)) for a in station_means for b in station_means),
        default=0.0,
    )
    height = float(np.mean([heights[reading.device_id] for reading in readings]))
    temperatures = [r.temperature_k for r in readings if r.temperature_k is not None]
    pressures = [r.pressure_pa for r in readings if r.pressure_pa is not None]
    temperature = float(np.mean(temperatures)) if temperatures else 288.15  # ISO 2533
    pressure = float(np.mean(pressures)) if pressures else 101_325.0  # ISO 2533
    if stability_class is None:
        # The class tables want the 10-m wind; the profile exponent is that of neutral air.
        speed_10m = float(
            wind_speed_at_height(speed, height, STANDARD_ANEMOMETER_HEIGHT_M, int(StabilityClass.D))
        )
        day = bool(
            is_daytime(
                end_time_s,
                math.radians(site.origin.latitude_deg),
                math.radians(site.origin.longitude_deg),
            )
        )
        stability_class = int(stability_class_from_sigma_theta(sigma_theta, speed_10m, day))
    return WindState(
        speed_m_per_s=speed,
        direction_from_rad=direction,
        sigma_theta_rad=sigma_theta,
        stability_class=int(stability_class),
        anemometer_height_m=height,
        temperature_k=temperature,
        pressure_pa=pressure,
        station_count=len(stations),
        station_spread_rad=spread,
    )


# --- Forward model: the unit-rate footprint ----------------------------------------------------


def point_footprint_mole_fraction(
    sources_m: FloatArray,
    receptors_m: FloatArray,
    wind: WindState,
    *,
    gas: Gas,
    urban: bool,
    direction_samples: int = DEFAULT_DIRECTION_SAMPLES,
) -> FloatArray:
    """Mole fraction at each receptor for a 1 kg/s release at each source, direction-averaged.

    The plume of :func:`~pipesentinel.detection.plume.plume_concentration_kg_per_m3` is averaged
    over a normal distribution of the wind direction (mean ``wind.direction_from_rad``, sd
    ``wind.sigma_theta_rad``).

    With ``direction_samples = 0`` (the default) the average is analytic in polar coordinates
    about the source: at range ``r`` and angle ``phi`` off the mean downwind axis the plume is a
    Gaussian in angle of variance ``s_a^2 = sigma_y(r)^2 / r^2``, and its average over a normal
    direction of variance ``sigma_theta^2`` is the same Gaussian of variance
    ``s_a^2 + sigma_theta^2`` scaled by ``s_a / sqrt(s_a^2 + sigma_theta^2)``; the vertical
    term and ``1 / (pi u sigma_y sigma_z)`` are taken at ``r`` (ground-level release, total
    reflection). Unlike the broadening ``sigma_y^2 + (x sigma_theta)^2`` it stays right at large
    angles, and unlike a few quadrature nodes it does not miss a plume narrower than the node
    spacing. With ``sigma_theta = 0`` it differs from the core plume by ``phi`` against
    ``sin(phi)`` and ``r`` against ``x``: a few per cent where the plume matters (tested).

    ``direction_samples = n >= 1`` averages the core plume over ``n`` Gauss-Hermite nodes
    instead (1: the mean direction only, exactly the core plume).

    Parameters
    ----------
    sources_m
        Release points, shape (N, 3) [m] (the analytic average takes them at ground level).
    receptors_m
        Receptors, shape (M, 3), heights >= 0 [m].
    wind
        The wind state.
    gas
        Released gas (mass to mole fraction).
    urban
        Urban dispersion curves [1].
    direction_samples
        0: analytic angular average; n >= 1: Gauss-Hermite nodes [1].

    Returns
    -------
    FloatArray
        Shape (N, M) [mol mol-1 per kg s-1].
    """
    sources = np.asarray(sources_m, dtype=np.float64).reshape(-1, 3)
    receptors = np.asarray(receptors_m, dtype=np.float64).reshape(-1, 3)
    if receptors.shape[0] == 0 or sources.shape[0] == 0:
        return np.zeros((sources.shape[0], receptors.shape[0]))
    if direction_samples == 0:
        mean = _angular_plume_kg_per_m3(sources, receptors, wind, urban=urban)
    else:
        directions, weights = _direction_nodes(wind, direction_samples)
        mean = np.zeros((sources.shape[0], receptors.shape[0]))
        # A loop over the few direction nodes; each call is vectorized over sources x receptors.
        for direction, weight in zip(directions, weights, strict=True):
            mean += weight * plume_concentration_kg_per_m3(
                receptors,
                sources[:, np.newaxis, :],
                emission_rate_kg_per_s=1.0,
                wind_speed_m_per_s=wind.speed_m_per_s,
                wind_direction_rad=float(direction),
                stability_class=wind.stability_class,
                urban=urban,
                anemometer_height_m=wind.anemometer_height_m,
            )
    return kg_per_m3_to_mole_fraction(
        mean, gas, temperature_k=wind.temperature_k, pressure_pa=wind.pressure_pa
    )


def _transport_speed(wind: WindState, *, urban: bool) -> float:
    """Wind at a ground-level release (ISC3 profile, 1 m s-1 floor), as the core plume [m s-1]."""
    transport = float(
        wind_speed_at_height(
            wind.speed_m_per_s, wind.anemometer_height_m, 0.0, wind.stability_class, urban=urban
        )
    )
    return max(transport, MINIMUM_WIND_SPEED_M_PER_S)


def _angular_plume_kg_per_m3(
    sources: FloatArray, receptors: FloatArray, wind: WindState, *, urban: bool
) -> FloatArray:
    """Direction-averaged ground-level plume, (N, M) [kg m-3 per kg s-1]; see the caller."""
    land = int(bool(urban))
    code = wind.stability_class
    ay, by, cy = (table[land, code] for table in SIGMA_Y_COEFFICIENTS)
    az, bz, cz = (table[land, code] for table in SIGMA_Z_COEFFICIENTS)
    theta = wind.direction_from_rad
    ex, ey = -math.sin(theta), -math.cos(theta)  # where the air goes
    # Wind-frame coordinates of receptors and sources separately, then their differences.
    x = (receptors[:, 0] * ex + receptors[:, 1] * ey) - (sources[:, 0] * ex + sources[:, 1] * ey)[
        :, np.newaxis
    ]
    y = (receptors[:, 1] * ex - receptors[:, 0] * ey) - (sources[:, 1] * ex - sources[:, 0] * ey)[
        :, np.newaxis
    ]
    angle = np.arctan2(y, x)
    r = np.hypot(x, y, out=x)
    np.maximum(r, _SMALLEST_DISTANCE_M, out=r)
    variance_y = sigma_squared(r, ay, by, cy)
    variance_z = sigma_squared(r, az, bz, cz)
    angular = variance_y / (r * r)
    total = angular + wind.sigma_theta_rad**2
    exponent = np.square(angle, out=angle)
    exponent /= total
    exponent += np.square(receptors[:, 2]) / variance_z
    exponent *= -0.5
    np.maximum(exponent, _EXPONENT_FLOOR, out=exponent)
    result = np.exp(exponent, out=exponent)
    angular /= total
    angular /= variance_y
    angular /= variance_z
    result *= np.sqrt(angular, out=angular)
    result *= 1.0 / (math.pi * _transport_speed(wind, urban=urban))
    return result


def _direction_nodes(wind: WindState, samples: int) -> tuple[FloatArray, FloatArray]:
    """Gauss-Hermite directions [rad] and weights (summing to 1) for the wind's distribution."""
    if samples <= 1 or wind.sigma_theta_rad == 0.0:
        return np.array([wind.direction_from_rad]), np.array([1.0])
    nodes, weights = np.polynomial.hermite.hermgauss(samples)
    directions = wind.direction_from_rad + math.sqrt(2.0) * wind.sigma_theta_rad * nodes
    return directions, weights / math.sqrt(math.pi)


class _BeamPairs(NamedTuple):
    """Source-beam pairs in plume coordinates (1-D over pairs; panel bounds (pairs, P))."""

    x0: FloatArray  # downwind distance of the beam start [m]
    y0: FloatArray  # crosswind offset of the beam start [m]
    z0: FloatArray  # height of the beam start [m]
    along: FloatArray  # dx/ds along the beam (0 for a crosswind beam) [1]
    dy: FloatArray  # dy/ds [1]
    dz: FloatArray  # dz/ds [1]
    s1: FloatArray  # panel starts, beam parameter [m]
    s2: FloatArray  # panel ends [m]


def _panel_integrals(
    pairs: _BeamPairs, x_ref: FloatArray, wind: WindState, *, urban: bool
) -> FloatArray:
    """Sum over panels of ``integral exp(-(y^2/sy^2 + z^2/sz^2)/2) ds / (sy sz)`` [m-1].

    Per pair; the sigmas of a panel are those at ``x_ref`` (pairs, P), re-taken once at the
    panel's peak, with the meander broadening of ``wind.sigma_theta_rad``.
    """
    land = int(bool(urban))
    code = wind.stability_class
    ay, by, cy = (table[land, code] for table in SIGMA_Y_COEFFICIENTS)
    az, bz, cz = (table[land, code] for table in SIGMA_Z_COEFFICIENTS)
    y0p, z0p = pairs.y0[:, np.newaxis], pairs.z0[:, np.newaxis]
    dyp, dzp = pairs.dy[:, np.newaxis], pairs.dz[:, np.newaxis]
    along = pairs.along[:, np.newaxis]  # 0 for a crosswind beam: it keeps its x
    x_start = pairs.x0[:, np.newaxis]
    s1, s2 = pairs.s1, pairs.s2
    y_ref = y0p + 0.5 * (s1 + s2) * dyp
    for _ in range(_BEAM_SIGMA_PASSES):
        # Sigmas at the reference distance; the second pass takes them where the panel's
        # Gaussian peaks (its closest approach to the plume axis, clipped to the panel). The
        # meander term is (r sigma_theta)^2 with r the range of that point, not its downwind
        # distance x: a direction change moves the plume by r times the angle, so off-axis
        # points (x << r) are not cut off as the broadening (x sigma_theta)^2 would.
        variance_y = sigma_squared(x_ref, ay, by, cy)
        variance_y += (x_ref * x_ref + y_ref * y_ref) * wind.sigma_theta_rad**2
        inv_y = 1.0 / variance_y
        inv_z = 1.0 / sigma_squared(x_ref, az, bz, cz)
        # Exponent along the panel: -(a s^2 + 2 b s + c) / 2, minimum at s = -b / a.
        a = dyp * dyp * inv_y + dzp * dzp * inv_z
        b = y0p * dyp * inv_y + z0p * dzp * inv_z
        c = y0p * y0p * inv_y + z0p * z0p * inv_z
        curved = a > _SMALLEST_STEP * (inv_y + inv_z)
        safe_a = np.where(curved, a, 1.0)
        centre = -b / safe_a
        peak = np.where(curved, np.clip(centre, s1, s2), 0.5 * (s1 + s2))
        x_ref = np.maximum(x_start + peak * along, _SMALLEST_DISTANCE_M)
        y_ref = y0p + peak * dyp
    minimum = np.maximum(c + b * centre, 0.0)
    scale = np.sqrt(0.5 * safe_a)
    u1, u2 = scale * (s1 - centre), scale * (s2 - centre)
    # erf(u2) - erf(u1) without cancellation in the tails.
    tail = np.where(u1 >= 0.0, erfc(u1) - erfc(u2), erfc(-u2) - erfc(-u1))
    gaussian_integral = np.where(
        curved,
        np.exp(-0.5 * minimum) * (_SQRT_HALF_PI / np.sqrt(safe_a)) * tail,
        np.exp(-0.5 * c) * (s2 - s1),
    )
    integrand = gaussian_integral * np.sqrt(inv_y * inv_z)
    summed: FloatArray = np.sum(integrand, axis=-1)
    return summed


def beam_footprint_mole_fraction_m(
    sources_m: FloatArray,
    beam_start_m: FloatArray,
    beam_end_m: FloatArray,
    wind: WindState,
    *,
    gas: Gas,
    urban: bool,
    panels: int = DEFAULT_BEAM_PANELS,
) -> FloatArray:
    """Path integral along each beam for a 1 kg/s ground-level release at each source.

    The same plume as :func:`~pipesentinel.detection.plume.plume_concentration_kg_per_m3`
    (Briggs sigmas, ISC3 wind profile with the 1 m s-1 floor, total ground reflection of a
    release at height 0), integrated analytically: the downwind part of the beam is cut into
    ``panels`` pieces graded geometrically in downwind distance ``x``; on each the sigmas are
    held at the geometric-mean ``x`` and the Gaussian, whose exponent is quadratic in the beam
    parameter, is integrated exactly with ``erfc``. The average over the wind direction is the
    meander term ``(r sigma_theta)^2`` added to ``sigma_y^2``, ``r`` the range of the panel's
    peak (a small normal rotation moves the plume by ``r`` times the angle; with the downwind
    distance ``x`` in its place, pairs far off the axis were cut off by factors up to e^17 at
    sigma-theta 20-30 degrees, see ``docs/validation.md``). Vectorized over sources x beams x
    panels.

    Parameters
    ----------
    sources_m
        Release points at ground level, shape (N, 3); heights are taken as 0 [m].
    beam_start_m, beam_end_m
        Beam ends, shape (B, 3), heights >= 0 [m].
    wind
        The wind state.
    gas
        Released gas.
    urban
        Urban dispersion curves [1].
    panels
        Panels per beam [1].

    Returns
    -------
    FloatArray
        Shape (N, B) [mol mol-1 m per kg s-1].
    """
    sources = np.asarray(sources_m, dtype=np.float64).reshape(-1, 3)
    start = np.asarray(beam_start_m, dtype=np.float64).reshape(-1, 3)
    end = np.asarray(beam_end_m, dtype=np.float64).reshape(-1, 3)
    if start.shape[0] == 0 or sources.shape[0] == 0:
        return np.zeros((sources.shape[0], start.shape[0]))
    theta = wind.direction_from_rad
    ex, ey = -math.sin(theta), -math.cos(theta)  # where the air goes
    delta = end - start
    length = np.linalg.norm(delta, axis=-1)  # (B,)
    unit = delta / np.maximum(length, _SMALLEST_STEP)[:, np.newaxis]
    # Plume coordinates of the beam start relative to each source, (N, B); steps per metre (B,).
    rel_e = start[np.newaxis, :, 0] - sources[:, np.newaxis, 0]
    rel_n = start[np.newaxis, :, 1] - sources[:, np.newaxis, 1]
    x0 = rel_e * ex + rel_n * ey
    y0 = rel_n * ex - rel_e * ey
    z0 = np.broadcast_to(start[np.newaxis, :, 2], x0.shape)
    dx = unit[:, 0] * ex + unit[:, 1] * ey
    dy = unit[:, 1] * ex - unit[:, 0] * ey
    dz = unit[:, 2]
    # Downwind part of each beam, as beam parameters [s_low, s_high] (N, B).
    x1 = x0 + length * dx
    flat = np.abs(dx) < _SMALLEST_STEP
    safe_dx = np.where(flat, 1.0, dx)
    crossing = np.clip(-x0 / safe_dx, 0.0, length)
    s_low = np.where(flat, 0.0, np.where(dx > 0.0, crossing, 0.0))
    s_high = np.where(flat, length, np.where(dx > 0.0, length, crossing))
    downwind = np.where(flat, x0 > 0.0, np.maximum(x0, x1) > 0.0) & (s_high > s_low)
    # The rest is done on the source-beam pairs with a downwind part only (1-D over pairs).
    rows, beams = np.nonzero(downwind)
    column = np.zeros(x0.shape)
    if rows.size == 0:
        return column
    x0, x1, y0 = x0[rows, beams], x1[rows, beams], y0[rows, beams]
    z0 = start[beams, 2]
    dx, dy, dz = safe_dx[beams], dy[beams], dz[beams]
    flat, s_low, s_high = flat[beams], s_low[rows, beams], s_high[rows, beams]
    # Panels graded geometrically in x from the nearer end, mapped to beam parameters.
    x_near = np.maximum(np.minimum(np.maximum(x0, 0.0), np.maximum(x1, 0.0)), _SMALLEST_DISTANCE_M)
    x_far = np.maximum(np.maximum(x0, x1), x_near)
    fractions = np.linspace(0.0, 1.0, panels + 1)
    x_edges = x_near[:, np.newaxis] * (x_far / x_near)[:, np.newaxis] ** fractions  # (K, P+1)
    s_edges = np.where(
        flat[:, np.newaxis],
        s_low[:, np.newaxis] + (s_high - s_low)[:, np.newaxis] * fractions,
        (x_edges - x0[:, np.newaxis]) / dx[:, np.newaxis],
    )
    s_edges = np.clip(s_edges, s_low[:, np.newaxis], s_high[:, np.newaxis])
    s1 = np.minimum(s_edges[:, :-1], s_edges[:, 1:])
    s2 = np.maximum(s_edges[:, :-1], s_edges[:, 1:])
    x_ref = np.where(
        flat[:, np.newaxis],
        np.maximum(x0, _SMALLEST_DISTANCE_M)[:, np.newaxis],
        np.sqrt(x_edges[:, :-1] * x_edges[:, 1:]),
    )
    pairs = _BeamPairs(
        x0=x0, y0=y0, z0=z0, along=np.where(flat, 0.0, dx), dy=dy, dz=dz, s1=s1, s2=s2
    )
    unit_column = _panel_integrals(pairs, x_ref, wind, urban=urban)
    speed = _transport_speed(wind, urban=urban)
    # Ground-level release: both reflection terms are equal, Q / (pi u sigma_y sigma_z).
    column[rows, beams] = unit_column / (math.pi * speed)
    return kg_per_m3_to_mole_fraction(
        column, gas, temperature_k=wind.temperature_k, pressure_pa=wind.pressure_pa
    )


def footprint(
    candidates: Candidates,
    observations: Observations,
    wind: WindState,
    *,
    config: LocalisationConfig | None = None,
) -> FloatArray:
    """Predicted excess of every observation for 1 kg/s at every candidate, shape (N, M).

    Points: [mol mol-1 per kg s-1], times the ingress factor for underground detectors; beams:
    [mol mol-1 m per kg s-1].
    """
    config = config or LocalisationConfig()
    sources = candidates.sources_m
    points = point_footprint_mole_fraction(
        sources,
        observations.receptor_m,
        wind,
        gas=observations.gas,
        urban=config.urban,
        direction_samples=config.direction_samples,
    )
    beams = beam_footprint_mole_fraction_m(
        sources,
        observations.beam_start_m,
        observations.beam_end_m,
        wind,
        gas=observations.gas,
        urban=config.urban,
        panels=config.beam_panels,
    )
    return np.concatenate([points, beams], axis=1) * observations.factor


# --- Likelihood and posterior ------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _censored_table(sigma: float, log_rate: tuple[float, ...]) -> FloatArray:
    """``log Phi((t - ln q) / sigma)`` on the threshold grid of :func:`_censored_sums` x rates.

    Depends only on ``sigma`` and the rate grid, so it is built once per error level and grid
    (the few distinct values of a site) and kept, read-only.
    """
    low = log_rate[0] - _RULED_OUT_SIGMAS * sigma
    high = log_rate[-1] + _NEGLIGIBLE_CENSORED_SIGMAS * sigma
    size = math.ceil((high - low) / _THRESHOLD_STEP) + 2
    thresholds = low + _THRESHOLD_STEP * np.arange(size)
    table: FloatArray = log_ndtr((thresholds[:, np.newaxis] - np.array(log_rate)) / sigma)
    table.flags.writeable = False
    return table


def _censored_sums(threshold: FloatArray, sigma: FloatArray, log_rate: FloatArray) -> FloatArray:
    """Sum over non-detections of ``log Phi((threshold - ln q) / sigma)``, shape (R, J).

    ``threshold`` (R, C) is ln of the rate at which each prediction's median reaches its floor.
    The term depends on the pair only through its threshold, so for each distinct ``sigma`` it is
    tabulated once on a fine grid of thresholds (step ``_THRESHOLD_STEP``) x rates, and each
    pair contributes the linear interpolation between its two neighbouring table rows: a sparse
    (R x table) matrix times the (table x J) table. Pairs whose term is ~0 over the whole rate
    grid are skipped; thresholds far below the grid (the candidate is ruled out at every rate)
    are clamped where the term is below ``log Phi(-_RULED_OUT_SIGMAS)``.
    """
    count = threshold.shape[0]
    result = np.zeros((count, log_rate.size))
    for value in np.unique(sigma):  # a loop over the few distinct error levels
        columns = np.flatnonzero(sigma == value)
        low = float(log_rate[0]) - _RULED_OUT_SIGMAS * value
        high = float(log_rate[-1]) + _NEGLIGIBLE_CENSORED_SIGMAS * value
        block = threshold[:, columns]
        rows, pairs = np.nonzero(block < high)
        if rows.size == 0:
            continue
        position = (np.maximum(block[rows, pairs], low) - low) / _THRESHOLD_STEP
        left = np.floor(position).astype(np.int64)
        fraction = position - left
        table = _censored_table(float(value), tuple(float(v) for v in log_rate))
        size = table.shape[0]
        weights = sparse.csr_matrix(
            (
                np.concatenate([1.0 - fraction, fraction]),
                (np.concatenate([rows, rows]), np.concatenate([left, left + 1])),
            ),
            shape=(count, size),
        )
        result += weights @ table
    return result


def _right_censored_sums(
    threshold: FloatArray, sigma: FloatArray, log_rate: FloatArray
) -> FloatArray:
    """Sum over saturated observations of ``log Phi((ln q - threshold) / sigma)``, shape (R, J).

    ``threshold`` (R, C) is ln of the rate at which each prediction's median reaches its lower
    bound. By symmetry it is :func:`_censored_sums` in ``-ln q``: with ``t' = -threshold`` and
    the rate grid mirrored, ``(t' - (-ln q)) / sigma = (ln q - threshold) / sigma``.
    """
    mirrored: FloatArray = -log_rate[::-1]
    sums: FloatArray = _censored_sums(-threshold, sigma, mirrored)[:, ::-1]
    return sums


def log_likelihood(
    footprint_matrix: FloatArray,
    excess: FloatArray,
    floor: FloatArray,
    log_sigma: FloatArray,
    rates_kg_per_s: FloatArray,
    *,
    saturated: BoolArray | None = None,
) -> FloatArray:
    """Log-likelihood of every (candidate, rate) pair, up to a constant, shape (N, J).

    Detections (``excess > floor``, not saturated): ``ln excess ~ Normal(ln(q F),
    log_sigma^2)``; their sum is a quadratic in ``ln q`` per candidate, computed from three
    moments. Non-detections: ``log P(q F e^eta <= floor) = log Phi((ln floor - ln q F) /
    log_sigma)`` (left-censored). Saturated observations (``excess`` only a lower bound):
    ``log P(q F e^eta >= excess) = log Phi((ln q F - ln excess) / log_sigma)`` (right-censored:
    the survival function of the same error model). Both censored kinds are <= 0 and evaluated
    only where they are not ~0.

    With detections, only the candidates whose detection-only likelihood (an upper bound: the
    censored terms are all <= 0) comes within ``_PRUNE_LOG_LIKELIHOOD`` of the best exact value
    are evaluated on the rate grid; the others get that bound, constant in rate, which leaves
    them below ``exp(-_PRUNE_LOG_LIKELIHOOD)`` of the best (negligible). Without any detection
    taken at its value every candidate is evaluated. The censored terms are tabulated
    (:func:`_censored_sums`), so their cost is that of a sparse matrix product.

    Parameters
    ----------
    footprint_matrix
        Unit-rate predictions, shape (N, M) [observation unit per kg s-1].
    excess, floor, log_sigma
        Per observation, shape (M,) [observation unit], [observation unit], [1].
    rates_kg_per_s
        Rate grid, increasing, shape (J,) [kg s-1].
    saturated
        Per observation, shape (M,): ``excess`` is a lower bound (the device at its full scale)
        [1]; ``None``: none is. A saturated observation must be above its floor.

    Returns
    -------
    FloatArray
        Shape (N, J) [1].
    """
    log_rate = np.log(np.asarray(rates_kg_per_s, dtype=np.float64))
    right = (
        np.zeros(excess.shape, dtype=np.bool_)
        if saturated is None
        else np.asarray(saturated, dtype=np.bool_)
    )
    rows, values, bound = _likely_rows(
        footprint_matrix, excess, floor, log_sigma, log_rate, saturated=right
    )
    if rows.size == footprint_matrix.shape[0]:
        return values
    result = np.repeat(bound[:, np.newaxis], log_rate.size, axis=1)
    result[rows] = values
    return result


def _likely_rows(
    footprint_matrix: FloatArray,
    excess: FloatArray,
    floor: FloatArray,
    log_sigma: FloatArray,
    log_rate: FloatArray,
    *,
    saturated: BoolArray,
) -> tuple[IntArray, FloatArray, FloatArray]:
    """The candidates that matter, their exact log-likelihood (R, J), and a bound for all (N,).

    With detections, the detection-only log-likelihood of a candidate is a quadratic in
    ``ln q``; its largest value on the rate range (at ``s1 / s0``, clipped) bounds the exact
    one from above, since every censored term is <= 0. Candidates whose bound is more than
    ``_PRUNE_LOG_LIKELIHOOD`` below the exact best are trimmed before any (candidate x rate)
    array is built: they hold less than ``exp(-_PRUNE_LOG_LIKELIHOOD)`` of the best cell each.
    Without detections every candidate is kept (only the censored terms, nothing to bound).
    """
    count, n_rates = footprint_matrix.shape[0], log_rate.size
    right = saturated
    if np.any(right & ~(excess > floor)):
        raise ValueError("log_likelihood: a saturated observation must be above its floor")
    detected = (excess > floor) & ~right
    left = ~(excess > floor)
    every: IntArray = np.arange(count, dtype=np.int64)
    log_left_floor = np.log(floor[left])
    log_right_bound = np.log(excess[right])

    def censored(rows: IntArray) -> FloatArray:
        # ln of the rate at which each prediction's median reaches the floor (left-censored)
        # or the lower bound (right-censored), (R, C) each, for these candidates only.
        log_footprint = np.log(np.maximum(footprint_matrix[rows], _TINY_FOOTPRINT))
        return _censored_sums(
            log_left_floor - log_footprint[:, left], log_sigma[left], log_rate
        ) + _right_censored_sums(
            log_right_bound - log_footprint[:, right], log_sigma[right], log_rate
        )

    if not np.any(detected) or count == 0:
        values = censored(every)
        return every, values, values.max(axis=1, initial=-np.inf)
    # ln q that fits each detection, (N, D).
    residual = np.log(excess[detected]) - np.log(
        np.maximum(footprint_matrix[:, detected], _TINY_FOOTPRINT)
    )
    weight = 1.0 / log_sigma[detected] ** 2
    s0 = float(np.sum(weight))
    s1 = residual @ weight
    s2 = (residual * residual) @ weight

    def quadratic(rows: IntArray) -> FloatArray:
        values: FloatArray = -0.5 * (
            s2[rows, np.newaxis] - 2.0 * s1[rows, np.newaxis] * log_rate + s0 * log_rate * log_rate
        )
        return values

    fitted = np.clip(s1 / s0, log_rate[0], log_rate[-1])
    bound: FloatArray = -0.5 * (s2 - 2.0 * s1 * fitted + s0 * fitted * fitted)
    best = np.array([int(np.argmax(bound))])
    exact_best = quadratic(best) + censored(best)
    rows = np.flatnonzero(bound > float(np.max(exact_best)) - _PRUNE_LOG_LIKELIHOOD)
    values = quadratic(rows) + censored(rows) if rows.size else np.zeros((0, n_rates))
    return rows.astype(np.int64), values, bound


@dataclass(frozen=True)
class RateEstimate:
    """Posterior of the release rate of the result's gas.

    Attributes
    ----------
    median_kg_per_s, lower_kg_per_s, upper_kg_per_s
        Median and equal-tailed credible interval [kg s-1].
    credible_mass
        Mass of the interval [1].
    at_prior_bound
        The posterior piles up at an end of the prior range [1].
    """

    median_kg_per_s: float
    lower_kg_per_s: float
    upper_kg_per_s: float
    credible_mass: float
    at_prior_bound: bool


@dataclass(frozen=True)
class ChainageInterval:
    """A stretch of a pipeline in the credible region, with its posterior mass."""

    pipeline_id: str
    start_chainage_m: float
    end_chainage_m: float
    probability: float


@dataclass(frozen=True)
class SegmentProbability:
    """Posterior mass of one block-valve segment."""

    segment_id: str
    pipeline_id: str
    probability: float
    upstream_valve_id: str | None
    downstream_valve_id: str | None


@dataclass(frozen=True)
class LocalisationResult:
    """The posterior over release point and rate, with what it rests on.

    Attributes
    ----------
    mode, gas, lel_basis
        Candidate mode; the gas the rate is of; the LEL basis of ``peak_fraction_of_lel``.
    time_s
        End of the observation window, epoch [s].
    candidates_m, probability
        Candidate points (N, 2) [m] and their normalised posterior (N,) [1].
    map_position_m, mean_position_m
        Most probable candidate and posterior mean position, (2,) [m] (the mean of a bimodal
        posterior over two lines lies between them: read it with the pipeline probabilities).
    map_pipeline_id, map_chainage_m
        Pipeline and chainage of the most probable candidate [m] (pipelines mode).
    pipeline_probabilities
        Posterior mass per pipeline [1].
    segments
        Posterior mass per segment, most probable first.
    credible_mass, credible_intervals, credible_area_m2
        The highest-posterior-density region holding ``credible_mass``: chainage intervals
        (pipelines) and its size (area for a grid, length x spacing for pipelines) [m2].
    credible_length_m
        Total length of the credible intervals (pipelines) [m].
    rate
        Release rate posterior.
    observations_used, detections
        Observations used and those above their floor, by kind.
    saturated
        Detections at their device's full scale (right-censored), by kind; empty if not given.
    peak_fraction_of_lel
        Largest point-detector excess as a fraction of the LEL on ``lel_basis`` [1] (at least
        this where that detector is saturated).
    wind
        The wind state used.
    flags
        Caveats.
    """

    mode: LocalisationMode
    gas: Gas
    lel_basis: LelBasis
    time_s: float
    candidates_m: FloatArray
    probability: FloatArray
    map_position_m: FloatArray
    mean_position_m: FloatArray
    map_pipeline_id: str | None
    map_chainage_m: float | None
    pipeline_probabilities: Mapping[str, float]
    segments: tuple[SegmentProbability, ...]
    credible_mass: float
    credible_intervals: tuple[ChainageInterval, ...]
    credible_area_m2: float
    credible_length_m: float
    rate: RateEstimate
    observations_used: Mapping[str, int]
    detections: Mapping[str, int]
    peak_fraction_of_lel: float
    wind: WindState | None
    flags: frozenset[LocalisationFlag]
    saturated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def most_probable_segment(self) -> SegmentProbability | None:
        """The segment with the largest posterior mass (pipelines mode)."""
        return self.segments[0] if self.segments else None

    def to_json_dict(self, *, top_candidates: int = 0) -> dict[str, object]:
        """A JSON-serialisable summary; ``top_candidates`` most probable points are included."""
        wind: dict[str, object] | None = None
        if self.wind is not None:
            wind = {
                "speed_m_per_s": self.wind.speed_m_per_s,
                "direction_from_rad": self.wind.direction_from_rad,
                "sigma_theta_rad": self.wind.sigma_theta_rad,
                "stability_class": StabilityClass(self.wind.stability_class).name,
                "station_count": self.wind.station_count,
                "station_spread_rad": self.wind.station_spread_rad,
            }
        order = np.argsort(self.probability)[::-1][: max(top_candidates, 0)]
        return {
            "mode": self.mode.value,
            "gas": self.gas.value,
            "lel_basis": self.lel_basis.value,
            "time_s": self.time_s,
            "map_position_m": [float(v) for v in self.map_position_m],
            "mean_position_m": [float(v) for v in self.mean_position_m],
            "map_pipeline_id": self.map_pipeline_id,
            "map_chainage_m": self.map_chainage_m,
            "pipeline_probabilities": dict(self.pipeline_probabilities),
            "segments": [
                {
                    "segment_id": s.segment_id,
                    "pipeline_id": s.pipeline_id,
                    "probability": s.probability,
                    "upstream_valve_id": s.upstream_valve_id,
                    "downstream_valve_id": s.downstream_valve_id,
                }
                for s in self.segments
            ],
            "credible_mass": self.credible_mass,
            "credible_intervals": [
                {
                    "pipeline_id": i.pipeline_id,
                    "start_chainage_m": i.start_chainage_m,
                    "end_chainage_m": i.end_chainage_m,
                    "probability": i.probability,
                }
                for i in self.credible_intervals
            ],
            "credible_area_m2": self.credible_area_m2,
            "credible_length_m": self.credible_length_m,
            "rate": {
                "median_kg_per_s": self.rate.median_kg_per_s,
                "lower_kg_per_s": self.rate.lower_kg_per_s,
                "upper_kg_per_s": self.rate.upper_kg_per_s,
                "credible_mass": self.rate.credible_mass,
                "at_prior_bound": self.rate.at_prior_bound,
            },
            "observations_used": dict(self.observations_used),
            "detections": dict(self.detections),
            "saturated": dict(self.saturated),
            "peak_fraction_of_lel": self.peak_fraction_of_lel,
            "wind": wind,
            "flags": sorted(flag.value for flag in self.flags),
            "top_candidates": [
                {
                    "position_m": [float(v) for v in self.candidates_m[k]],
                    "probability": float(self.probability[k]),
                }
                for k in order
            ],
        }


def _rate_estimate(rate_probability: FloatArray, rates: FloatArray, mass: float) -> RateEstimate:
    """Quantiles of the rate posterior on its log grid (piecewise-linear CDF in ln q)."""
    log_rate = np.log(rates)
    half = 0.5 * np.diff(log_rate)
    edges = np.concatenate(
        ([log_rate[0] - half[0]], log_rate[:-1] + half, [log_rate[-1] + half[-1]])
    )
    cdf = np.concatenate(([0.0], np.cumsum(rate_probability)))
    cdf /= cdf[-1]
    tail = 0.5 * (1.0 - mass)
    low, median, high = np.exp(np.interp([tail, 0.5, 1.0 - tail], cdf, edges))
    low_bound, high_bound = rates[0], rates[-1]
    at_bound = bool(rate_probability[0] > tail or rate_probability[-1] > tail)
    return RateEstimate(
        median_kg_per_s=float(np.clip(median, low_bound, high_bound)),
        lower_kg_per_s=float(np.clip(low, low_bound, high_bound)),
        upper_kg_per_s=float(np.clip(high, low_bound, high_bound)),
        credible_mass=mass,
        at_prior_bound=at_bound,
    )


def _credible_region(
    candidates: Candidates, probability: FloatArray, mass: float
) -> tuple[BoolArray, tuple[ChainageInterval, ...]]:
    """Highest-posterior-density set holding ``mass``, and its chainage intervals."""
    order = np.argsort(probability)[::-1]
    cumulative = np.cumsum(probability[order])
    keep = int(np.searchsorted(cumulative, mass, side="left")) + 1
    inside = np.zeros(probability.size, dtype=np.bool_)
    inside[order[:keep]] = True
    if candidates.mode is not LocalisationMode.PIPELINES:
        return inside, ()
    # Runs of consecutive candidates inside the region, broken where the pipeline changes.
    same = candidates.pipeline_index[1:] == candidates.pipeline_index[:-1]
    joined_before = np.concatenate(([False], inside[:-1] & same))
    joined_after = np.concatenate((inside[1:] & same, [False]))
    starts = np.flatnonzero(inside & ~joined_before)
    ends = np.flatnonzero(inside & ~joined_after) + 1
    half = 0.5 * candidates.spacing_m
    intervals = []
    sums = np.concatenate(([0.0], np.cumsum(probability)))
    for first, stop in zip(starts, ends, strict=True):
        pipeline = int(candidates.pipeline_index[first])
        intervals.append(
            ChainageInterval(
                pipeline_id=candidates.pipeline_ids[pipeline],
                start_chainage_m=float(max(candidates.chainage_m[first] - half, 0.0)),
                end_chainage_m=float(candidates.chainage_m[stop - 1] + half),
                probability=float(sums[stop] - sums[first]),
            )
        )
    intervals.sort(key=lambda interval: interval.probability, reverse=True)
    return inside, tuple(intervals)


def _count_by_kind(kinds: Sequence[ObservationKind], mask: BoolArray) -> dict[str, int]:
    return {
        kind.value: int(sum(1 for k, m in zip(kinds, mask, strict=True) if m and k is kind))
        for kind in ObservationKind
    }


def _input_flags(observations: Observations, wind: WindState | None) -> set[LocalisationFlag]:
    """Caveats known before the posterior: missing inputs and wind conditions."""
    flags: set[LocalisationFlag] = set()
    if not observations.device_ids:
        flags.add(LocalisationFlag.NO_OBSERVATIONS)
    if not np.any(observations.detected):
        flags.add(LocalisationFlag.NO_DETECTION)
    if wind is None:
        flags.add(LocalisationFlag.NO_WIND)
        return flags
    if wind.speed_m_per_s < LOW_WIND_SPEED_M_PER_S:
        flags.add(LocalisationFlag.LOW_WIND)
    if wind.stability_class == StabilityClass.F:
        flags.add(LocalisationFlag.VERY_STABLE)
    if wind.station_count < _CROSS_CHECKED_STATIONS:
        flags.add(LocalisationFlag.SINGLE_WIND_STATION)
    if wind.station_spread_rad > WIND_DISAGREEMENT_RAD:
        flags.add(LocalisationFlag.WIND_STATIONS_DISAGREE)
    return flags


def _pipeline_summary(
    candidates: Candidates, probability: FloatArray, map_index: int
) -> tuple[dict[str, float], list[SegmentProbability], str | None, float | None]:
    """Mass per pipeline and per segment (most probable first), MAP pipeline and chainage."""
    if candidates.mode is not LocalisationMode.PIPELINES:
        return {}, [], None, None
    by_pipeline = np.bincount(
        candidates.pipeline_index, weights=probability, minlength=len(candidates.pipeline_ids)
    )
    pipelines = {pid: float(p) for pid, p in zip(candidates.pipeline_ids, by_pipeline, strict=True)}
    by_segment = np.bincount(
        candidates.segment_index, weights=probability, minlength=len(candidates.segment_ids)
    )
    segments = [
        SegmentProbability(
            segment_id=segment_id,
            pipeline_id=pipeline_id,
            probability=float(mass),
            upstream_valve_id=valves[0],
            downstream_valve_id=valves[1],
        )
        for segment_id, pipeline_id, mass, valves in zip(
            candidates.segment_ids,
            candidates.segment_pipeline_ids,
            by_segment,
            candidates.segment_valves,
            strict=True,
        )
    ]
    segments.sort(key=lambda segment: segment.probability, reverse=True)
    map_pipeline = candidates.pipeline_ids[int(candidates.pipeline_index[map_index])]
    return pipelines, segments, map_pipeline, float(candidates.chainage_m[map_index])


def localise(
    candidates: Candidates,
    observations: Observations,
    wind: WindState | None,
    *,
    config: LocalisationConfig | None = None,
    lel_basis: LelBasis,
    footprint_matrix: FloatArray | None = None,
) -> LocalisationResult:
    """The posterior over candidates and rate for the current observations.

    Parameters
    ----------
    candidates
        Where the leak may be (:func:`pipeline_candidates`, :func:`grid_candidates`).
    observations
        Window means (:func:`observations_from_records`).
    wind
        Wind state (:func:`wind_from_records`); ``None``: no estimate, flagged ``no_wind``.
    config
        Error model and grids.
    lel_basis
        Basis of the LEL fraction reported (stated in the result).
    footprint_matrix
        A precomputed :func:`footprint` for these candidates, observations and wind (cache).

    Returns
    -------
    LocalisationResult
        Uniform over candidates (with flags) when there is no wind or no observation.
    """
    config = config or LocalisationConfig()
    rates = config.rates_kg_per_s
    detected = observations.detected
    used = _count_by_kind(observations.kinds, np.ones(len(observations.kinds), dtype=np.bool_))
    seen = _count_by_kind(observations.kinds, detected)
    at_full_scale = _count_by_kind(observations.kinds, observations.saturated)
    flags = _input_flags(observations, wind)
    points = np.array([kind is not ObservationKind.LASER for kind in observations.kinds])
    point_excess = observations.excess[points] / observations.factor[points]
    lel = lower_explosive_limit(observations.gas, basis=lel_basis)
    peak = float(np.max(point_excess, initial=0.0)) / lel
    if wind is None or not observations.device_ids:
        rows = np.arange(candidates.count, dtype=np.int64)
        joint = np.zeros((candidates.count, rates.size))
    else:
        matrix = (
            footprint(candidates, observations, wind, config=config)
            if footprint_matrix is None
            else footprint_matrix
        )
        if matrix.shape != (candidates.count, len(observations.device_ids)):
            raise ValueError(
                f"footprint_matrix has shape {matrix.shape}, expected "
                f"({candidates.count}, {len(observations.device_ids)})"
            )
        rows, joint, _ = _likely_rows(
            matrix,
            observations.excess,
            observations.floor,
            observations.log_sigma,
            np.log(rates),
            saturated=observations.saturated,
        )
    # Uniform prior per candidate (equal length or area) and per log-rate cell; the trimmed
    # candidates (below exp(-_PRUNE_LOG_LIKELIHOOD) of the best) get 0.
    best = np.unravel_index(int(np.argmax(joint)), joint.shape)
    weights = np.exp(joint - joint[best])
    candidate_probability = np.zeros(candidates.count)
    candidate_probability[rows] = weights.sum(axis=1)
    candidate_probability /= candidate_probability.sum()
    rate_probability = weights.sum(axis=0)
    rate = _rate_estimate(rate_probability / rate_probability.sum(), rates, config.credible_mass)
    if rate.at_prior_bound and LocalisationFlag.NO_DETECTION not in flags:
        flags.add(LocalisationFlag.RATE_AT_PRIOR_BOUND)
    if wind is not None and np.any(detected) and observations.device_ids:
        fit = _best_fit_chi_squared(matrix[rows[best[0]]], observations, float(rates[best[1]]))
        if fit > POOR_FIT_CHI_SQUARED:
            flags.add(LocalisationFlag.POOR_FIT)
    map_index = int(np.argmax(candidate_probability))
    inside, intervals = _credible_region(candidates, candidate_probability, config.credible_mass)
    cell = candidates.spacing_m**2
    pipelines, segments, map_pipeline, map_chainage = _pipeline_summary(
        candidates, candidate_probability, map_index
    )
    return LocalisationResult(
        mode=candidates.mode,
        gas=observations.gas,
        lel_basis=lel_basis,
        time_s=observations.end_time_s,
        candidates_m=candidates.position_m,
        probability=candidate_probability,
        map_position_m=candidates.position_m[map_index].copy(),
        mean_position_m=candidate_probability @ candidates.position_m,
        map_pipeline_id=map_pipeline,
        map_chainage_m=map_chainage,
        pipeline_probabilities=MappingProxyType(pipelines),
        segments=tuple(segments),
        credible_mass=config.credible_mass,
        credible_intervals=intervals,
        credible_area_m2=float(np.count_nonzero(inside)) * cell,
        credible_length_m=float(np.count_nonzero(inside)) * candidates.spacing_m
        if candidates.mode is LocalisationMode.PIPELINES
        else 0.0,
        rate=rate,
        observations_used=MappingProxyType(used),
        detections=MappingProxyType(seen),
        saturated=MappingProxyType(at_full_scale),
        peak_fraction_of_lel=peak,
        wind=wind,
        flags=frozenset(flags),
    )


def _best_fit_chi_squared(
    predicted_unit: FloatArray, observations: Observations, rate_kg_per_s: float
) -> float:
    """Mean squared standardised log residual of the detections at one candidate and rate [1].

    A saturated detection counts only by how far the prediction falls short of its lower bound
    (0 at or above it).
    """
    detected = observations.detected
    predicted = np.maximum(predicted_unit[detected] * rate_kg_per_s, _TINY_FOOTPRINT)
    residual = np.log(observations.excess[detected]) - np.log(predicted)
    residual = np.where(observations.saturated[detected], np.maximum(residual, 0.0), residual)
    residual /= observations.log_sigma[detected]
    return float(np.mean(residual * residual))


class Localiser:
    """Re-estimable localisation for one site: caches the footprint per wind state.

    Call :meth:`estimate` with the current observations and wind on every batch (or every N
    seconds); the footprint is recomputed only when the wind state (rounded) or the set of
    observations changes.

    Parameters
    ----------
    candidates
        Candidate points.
    lel_basis
        LEL basis stated in every result.
    config
        Error model and grids.
    cache_size
        Footprints kept (least recently used dropped) [1].
    """

    def __init__(
        self,
        candidates: Candidates,
        *,
        lel_basis: LelBasis,
        config: LocalisationConfig | None = None,
        cache_size: int = 8,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.candidates = candidates
        self.lel_basis = lel_basis
        self.config = config or LocalisationConfig()
        self._cache: dict[tuple[object, ...], FloatArray] = {}
        self._cache_size = cache_size
        self.footprints_computed = 0

    def footprint_for(self, observations: Observations, wind: WindState) -> FloatArray:
        """The (cached) footprint for these observations and wind."""
        key = (wind.key(), observations.key())
        matrix = self._cache.pop(key, None)
        if matrix is None:
            matrix = footprint(self.candidates, observations, wind, config=self.config)
            self.footprints_computed += 1
        self._cache[key] = matrix
        while len(self._cache) > self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        return matrix

    def estimate(self, observations: Observations, wind: WindState | None) -> LocalisationResult:
        """The posterior for the current observations and wind."""
        matrix = (
            self.footprint_for(observations, wind)
            if wind is not None and observations.device_ids
            else None
        )
        return localise(
            self.candidates,
            observations,
            wind,
            config=self.config,
            lel_basis=self.lel_basis,
            footprint_matrix=matrix,
        )
