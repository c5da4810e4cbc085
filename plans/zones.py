"""Threat zones of a flammable gas release: 60 % and 10 % LEL footprints and an isolation circle.

The zones follow NOAA ALOHA's flammable levels of concern (red: ground-level concentration at or
above 60 % of the LEL; yellow: 10 % of the LEL) and the initial isolation distance of the Emergency
Response Guidebook (ERG), but know the site: the polygons are in site east-north metres, ready to be
intersected with buildings and roads, and as WGS84 GeoJSON.

How a zone is drawn (docs/zones.md has the details and the sources):

1. The steady Gaussian plume of :mod:`pipesentinel.detection.plume` (Briggs sigmas, ISC3 wind
   profile, 1 m s-1 floor) is evaluated once for a unit release rate on a polar grid around the
   source in the wind frame; concentration is linear in the rate, so every rate and level is a
   threshold on the same field. The field is symmetric about the plume axis and zero upwind, so
   only the downwind quarter on one side is evaluated, out to the farthest zone.
2. For each radius, the zone's half-angle about the axis is where the concentration falls to the
   level (interpolated in log concentration between grid angles); the on-axis end of the zone is
   found by root finding and added to the radii, so the downwind extent is exact to about 1e-6.
3. Dense gas: where Britter & McQuaid's continuous-release criterion holds
   (:mod:`pipesentinel.detection.dense_gas`), the zone is the union of the Gaussian zone and the
   dense plume's outline (upwind extent, crosswind half-width) up to the distance at which the
   Britter & McQuaid (1988) continuous-release correlation reaches the level.
4. Uncertainty: the zone for each rate is widened by the spread of the wind direction
   (+/- ``direction_spread_sigmas`` sigma-theta, a continuous rotation, not samples) and the
   union is taken over the low, median and high rates. A calm (transport wind below 1 m s-1) has no
   meaningful direction: the zone is then drawn in all directions. The median-rate zone at the mean
   wind direction is kept for display.
5. Each bearing keeps the farthest radius inside the zone: the polygons are star-shaped around
   the source (any hole is filled, which only errs towards a larger zone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from pipesentinel.detection.constants import (
    BRIGGS_MAXIMUM_DISTANCE_M,
    BRIGGS_MINIMUM_DISTANCE_M,
    LOW_WIND_SPEED_M_PER_S,
    MINIMUM_WIND_SPEED_M_PER_S,
    STANDARD_ANEMOMETER_HEIGHT_M,
)
from pipesentinel.detection.dense_gas import (
    CONTINUOUS_RELEASE_THRESHOLD,
    continuous_release_parameter,
    reduced_gravity_m_per_s2,
)
from pipesentinel.detection.gases import (
    LelBasis,
    gas_density_kg_per_m3,
    lower_explosive_limit,
    mole_fraction_to_kg_per_m3,
)
from pipesentinel.detection.plume import (
    plume_concentration_kg_per_m3,
    transport_wind_speed_m_per_s,
)
from pipesentinel.detection.stability import StabilityClass, wind_speed_at_height
from pipesentinel.geo import GEOJSON_DECIMALS, lon_lat
from pipesentinel.site import Gas, Product

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from pipesentinel.detection.localisation import LocalisationResult
    from pipesentinel.site import Site

    FloatArray = NDArray[np.float64]
    BoolArray = NDArray[np.bool_]

__all__ = [
    "DEFAULT_MAX_DISTANCE_M",
    "ERG_INITIAL_ISOLATION_M",
    "LEVELS_OF_CONCERN_PERCENT_LEL",
    "ThreatZone",
    "ThreatZones",
    "ZoneFlag",
    "ZoneLevel",
    "dense_gas_distance_m",
    "threat_zones",
    "threat_zones_for_localisation",
    "zones_to_geojson",
]


class ZoneLevel(StrEnum):
    """Which zone: ALOHA's red and yellow flammable levels, or the ERG isolation circle."""

    RED = "red"
    YELLOW = "yellow"
    ISOLATION = "isolation"


class ZoneFlag(StrEnum):
    """Why a zone is of low confidence (the model's documented limits are reached)."""

    CALM = "calm"  # transport wind < 1 m/s: direction undefined, zone drawn in all directions
    LOW_WIND = "low_wind"  # transport wind < 3 mph = 1.34 m/s (NOAA "ALOHA's Limitations")
    VERY_STABLE = "very_stable"  # class F (NOAA ALOHA)
    NEAR_SOURCE = "near_source"  # zone ends < 100 m from the source: Briggs curves extrapolated
    BEYOND_RANGE = "beyond_range"  # zone reaches > 10 km: beyond the Briggs curves (and ALOHA)
    TRUNCATED = "truncated"  # zone reaches the edge of the computed domain: it is larger
    DENSE_GAS = "dense_gas"  # Britter & McQuaid criterion met at some rate of the range
    DENSE_GAS_APPROXIMATE = "dense_gas_approximate"  # correlation extrapolated beyond its range
    RATE_AT_PRIOR_BOUND = "rate_at_prior_bound"  # the rate estimate piles up at a prior bound
    WIDE_RATE_INTERVAL = "wide_rate_interval"  # high/low rate ratio above the set limit


LEVELS_OF_CONCERN_PERCENT_LEL: Final = {ZoneLevel.RED: 60.0, ZoneLevel.YELLOW: 10.0}
"""Flammable levels of concern [%LEL]: ALOHA's default red threat zone is 60 % of the LEL (flame
pockets can occur where the *average* concentration is well below the LEL, because concentrations
fluctuate) and its default yellow zone 10 % of the LEL (a common responder action level). NOAA
Office of Response and Restoration, ALOHA help "Flammable levels of concern" / ALOHA Technical
Documentation (Jones et al. 2013, NOAA Tech. Memo. NOS OR&R 43). As in ALOHA, the levels are
compared with the model's *mean* concentration; no separate peak-to-mean factor is applied."""

ERG_INITIAL_ISOLATION_M: Final = {"115": 100.0, "128": 50.0}
"""Initial isolation distance "in all directions" by ERG guide [m]. Emergency Response Guidebook
2020 (US DOT PHMSA, Transport Canada, SCT Mexico), Public Safety section: Guide 115 (Gases -
Flammable, including refrigerated liquids; methane UN1971, natural gas, propane UN1978): "isolate
spill or leak area for at least 100 meters (330 feet) in all directions"; Guide 128 (Flammable
liquids, non-polar; petroleum crude oil UN1267): at least 50 meters (150 feet). The 2024 edition
is believed to keep these values (not checked against its print)."""

_GAS_GUIDE: Final = {Gas.METHANE: "115", Gas.PROPANE: "115"}
"""ERG guide of each released gas (ERG 2020 yellow pages: UN1971 methane and UN1978 propane)."""
_PRODUCT_GUIDE: Final = {Product.CRUDE_OIL: "128", Product.NATURAL_GAS: "115"}
"""ERG guide of a pipeline's product (UN1267 petroleum crude oil: Guide 128)."""

DEFAULT_MAX_DISTANCE_M: Final = 2.0 * BRIGGS_MAXIMUM_DISTANCE_M
"""Radius of the computed domain [m]: twice the 10 km upper range of the Briggs curves, so that a
zone flagged ``beyond_range`` still has a drawn (if unreliable) outer edge."""

DEFAULT_DIRECTION_SPREAD_SIGMAS: Final = 2.0
"""Half-width of the wind-direction sector the zones are widened by, in sigma-theta [1]. A
PipeSentinel choice (+/- 2 sigma covers 95 % of a normal direction distribution); the Briggs
sigmas already contain the meander within their averaging time, so this is deliberately
conservative: it covers a shift of the mean direction while the incident lasts."""

DEFAULT_WIDE_RATE_RATIO: Final = 10.0
"""A rate interval whose high/low ratio exceeds this is flagged ``wide_rate_interval`` [1]
(a PipeSentinel choice: an order of magnitude)."""

# --- Britter & McQuaid (1988) continuous-release correlation -----------------------------------
#
# Britter, R.E., McQuaid, J. (1988) Workbook on the Dispersion of Dense Gases, HSE CRR 17/1988,
# correlation for continuous ground-level releases (figure of the workbook's sec. 4): the
# centre-line concentration ratio Cm/C0 as a function of
#     alpha = (1/5) log10(g0'^2 q0 / U10^5)    and    beta = log10(x / (q0 / U10)^(1/2)).
# The piecewise-linear fits below are the digitisation used by US EPA's TSCREEN (as reproduced in
# Crowl & Louvar, Chemical Process Safety, 2nd ed. 2002, and in the GasDispersion.jl package);
# each row is (Cm/C0, [(upper alpha bound, slope, intercept), ...]), beta = slope alpha +
# intercept on alpha <= bound. The fits are continuous at every break point (tested); they are
# stated for alpha up to 1. The exact figure/table numbers of the printed sources were not
# checked.
_BM_CURVES: Final = (
    (0.10, ((-0.55, 0.0, 1.75), (-0.14, 0.24, 1.88), (math.inf, -0.50, 1.78))),
    (0.05, ((-0.68, 0.0, 1.92), (-0.29, 0.36, 2.16), (-0.18, 0.0, 2.06), (math.inf, -0.56, 1.96))),
    (0.02, ((-0.69, 0.0, 2.08), (-0.31, 0.45, 2.39), (-0.16, 0.0, 2.25), (math.inf, -0.54, 2.16))),
    (0.01, ((-0.70, 0.0, 2.25), (-0.29, 0.49, 2.59), (-0.20, 0.0, 2.45), (math.inf, -0.52, 2.35))),
    (0.005, ((-0.67, 0.0, 2.40), (-0.28, 0.59, 2.80), (-0.15, 0.0, 2.63), (math.inf, -0.48, 2.56))),
    (0.002, ((-0.69, 0.0, 2.60), (-0.25, 0.39, 2.87), (-0.13, 0.0, 2.77), (math.inf, -0.50, 2.71))),
)
_BM_ALPHA_MAX: Final = 1.0
"""Upper end of alpha covered by the correlation [1]; beyond it the last line is extrapolated."""
_BM_UPWIND_D: Final = 0.5
_BM_UPWIND_LB: Final = 2.0
"""Upwind extent of a continuous dense plume L_U = D/2 + 2 l_b, l_b = g0' q0 / U^3 (Britter &
McQuaid 1988, sec. 4; also CCPS 1999 sec. 2.3). Together with the crosswind half-width below these
outline constants are quoted from memory of those sources and cross-checked with GasDispersion.jl;
treat the outline as approximate (the zone is flagged ``dense_gas``)."""
_BM_WIDTH_D: Final = 1.0
_BM_WIDTH_LB: Final = 8.0
_BM_WIDTH_GROWTH: Final = 2.5
"""Crosswind half-width L_H = D + 8 l_b + 2.5 l_b^(1/3) x^(2/3) (same sources) [m]."""

# --- Numerical grid (not physics) -------------------------------------------------------------

_SMALLEST_RADIUS_M: Final = 0.5  # innermost grid radius [m]
_RADIUS_COUNT: Final = 800  # log-spaced radii: neighbours differ by 1.3 % over 0.5 m - 20 km
_ANGLE_COUNT: Final = 241  # angles from the axis over [0, pi], quadratically graded (fine near 0)
_BEARING_COUNT: Final = 721  # bearings over [0, pi] of each half of a zone's outline (0.25 deg)
_EDGE_POINTS: Final = 1024  # points along the dense outline's edge (log-spaced in x)
_EDGE_START: Final = 1e-4  # first edge point, as a fraction of the outline's length [1]
_REFINEMENTS: Final = 1  # log-log secant refinements of the on-axis end of a zone
_CIRCLE_VERTICES: Final = 128  # vertices of the isolation circle (circumscribed polygon)
_JSON_SIMPLIFY_M: Final = 0.5  # outline simplification tolerance in to_json_dict [m]
_JSON_DECIMALS: Final = 1  # decimals of ENU coordinates in to_json_dict [m]
_JSON_MARGIN_M: Final = 0.6  # the simplified outline is grown by this to contain the zone [m]
_STANDARD_TEMPERATURE_K: Final = 288.15  # ISO 2533 standard atmosphere, sea level [K]
_STANDARD_PRESSURE_PA: Final = 101_325.0  # ISO 2533 standard atmosphere, sea level [Pa]
_PERCENT: Final = 100.0


# --- Results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreatZone:
    """One zone: the uncertainty envelope and the median-rate zone at the mean wind direction.

    Attributes
    ----------
    level
        Red (60 % LEL), yellow (10 % LEL) or the ERG isolation circle.
    percent_lel, mole_fraction
        The level of concern [%LEL on the result's basis] and as a mole fraction [mol mol-1]
        (None for the isolation circle).
    polygon_m
        The envelope: union over the wind-direction spread and the rate range, site east/north
        [m]. Empty if the level is reached nowhere.
    median_polygon_m
        The zone for the median rate at the mean wind direction (for display) [m].
    area_m2, median_area_m2
        Their areas [m2].
    max_downwind_extent_m, median_max_downwind_extent_m
        Largest distance from the source to the zone's edge [m] (for a plume: its downwind end).
    rate_kg_per_s
        The rate the envelope's extent is reached at (the high end unless dense-gas effects
        change the order) [kg s-1]; the isolation circle gives 0.
    dense_gas
        The dense-gas outline contributed at some rate.
    flags
        Low-confidence flags of this zone.
    basis
        Where the zone comes from (model or guide, in words).
    """

    level: ZoneLevel
    percent_lel: float | None
    mole_fraction: float | None
    polygon_m: Polygon | MultiPolygon
    median_polygon_m: Polygon | MultiPolygon
    area_m2: float
    median_area_m2: float
    max_downwind_extent_m: float
    median_max_downwind_extent_m: float
    rate_kg_per_s: float
    dense_gas: bool
    flags: frozenset[ZoneFlag]
    basis: str

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types; outlines simplified to 1 m and rounded to 0.1 m (site ENU)."""
        return {
            "level": self.level.value,
            "percent_lel": self.percent_lel,
            "mole_fraction": self.mole_fraction,
            "area_m2": self.area_m2,
            "median_area_m2": self.median_area_m2,
            "max_downwind_extent_m": self.max_downwind_extent_m,
            "median_max_downwind_extent_m": self.median_max_downwind_extent_m,
            "rate_kg_per_s": self.rate_kg_per_s,
            "dense_gas": self.dense_gas,
            "flags": sorted(flag.value for flag in self.flags),
            "basis": self.basis,
            "outline_m": _outline_json(self.polygon_m),
            "median_outline_m": _outline_json(self.median_polygon_m),
        }


@dataclass(frozen=True)
class ThreatZones:
    """Threat zones of one release at one wind state, with what they rest on.

    Attributes
    ----------
    gas, lel_basis
        Released gas and the LEL basis of the levels.
    source_m
        Release point (east, north, height) [m].
    rate_low_kg_per_s, rate_median_kg_per_s, rate_high_kg_per_s
        Rate range used [kg s-1].
    wind_speed_m_per_s, wind_from_deg, sigma_theta_deg
        Wind at the anemometer [m s-1], direction it blows from (clockwise from north) [deg],
        standard deviation of the direction [deg].
    direction_spread_deg
        Half-width of the direction sector the envelopes cover [deg] (180 in a calm).
    stability_class, urban
        Pasquill-Gifford class and land use of the dispersion curves.
    transport_wind_m_per_s
        Wind at the release height before the 1 m s-1 floor [m s-1].
    dense_gas_parameter
        Britter & McQuaid continuous-release parameter at the low, median and high rate [1]
        (dense where >= 0.15).
    isolation_guide
        ERG guide number(s) the isolation circle comes from.
    zones
        Red, yellow, isolation, in that order.
    flags
        Union of the zones' flags.
    """

    gas: Gas
    lel_basis: LelBasis
    source_m: tuple[float, float, float]
    rate_low_kg_per_s: float
    rate_median_kg_per_s: float
    rate_high_kg_per_s: float
    wind_speed_m_per_s: float
    wind_from_deg: float
    sigma_theta_deg: float
    direction_spread_deg: float
    stability_class: StabilityClass
    urban: bool
    transport_wind_m_per_s: float
    dense_gas_parameter: tuple[float, float, float]
    isolation_guide: tuple[str, ...]
    zones: tuple[ThreatZone, ...]
    flags: frozenset[ZoneFlag]

    def zone(self, level: ZoneLevel) -> ThreatZone:
        """The zone of ``level``."""
        for zone in self.zones:
            if zone.level == level:
                return zone
        raise KeyError(f"no {level.value} zone")

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types for report.json (areas in m2, distances in m)."""
        return {
            "gas": self.gas.value,
            "lel_basis": self.lel_basis.value,
            "source_m": list(self.source_m),
            "rate_kg_per_s": {
                "low": self.rate_low_kg_per_s,
                "median": self.rate_median_kg_per_s,
                "high": self.rate_high_kg_per_s,
            },
            "wind": {
                "speed_m_per_s": self.wind_speed_m_per_s,
                "from_deg": self.wind_from_deg,
                "sigma_theta_deg": self.sigma_theta_deg,
                "direction_spread_deg": self.direction_spread_deg,
                "stability_class": self.stability_class.name,
                "urban": self.urban,
                "transport_wind_m_per_s": self.transport_wind_m_per_s,
            },
            "dense_gas_parameter": list(self.dense_gas_parameter),
            "isolation_guide": [f"ERG 2020 Guide {guide}" for guide in self.isolation_guide],
            "flags": sorted(flag.value for flag in self.flags),
            "zones": [zone.to_json_dict() for zone in self.zones],
        }


def _outline_json(geometry: Polygon | MultiPolygon) -> list[list[list[float]]]:
    """Exterior rings of the geometry's polygons as [[east, north], ...] [m], for reading.

    Simplified (Douglas-Peucker, 0.5 m) and then grown by 0.6 m with mitred corners: every point
    of the zone lies within the tolerance of the simplified ring, so the grown ring still contains
    the whole zone (plus the 0.05 m rounding of the coordinates) - a written outline never cuts
    a corner off a zone.
    """
    rings: list[list[list[float]]] = []
    simplified = geometry.simplify(_JSON_SIMPLIFY_M)
    grown = (
        simplified.buffer(_JSON_MARGIN_M, join_style="mitre")
        if not geometry.is_empty
        else simplified
    )
    for polygon in _polygons(grown):
        coordinates = np.round(np.asarray(polygon.exterior.coords), _JSON_DECIMALS)
        rings.append(coordinates.tolist())
    return rings


def _polygons(geometry: shapely.Geometry) -> list[Polygon]:
    """The non-empty polygons of a (multi)polygon or collection."""
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    parts = getattr(geometry, "geoms", ())
    return [part for item in parts for part in _polygons(item)]


# --- Britter & McQuaid distance ------------------------------------------------------------


def _bm_beta(alpha: float) -> list[float]:
    """Beta of every curve of :data:`_BM_CURVES` at ``alpha`` [1]."""
    betas = []
    for _, pieces in _BM_CURVES:
        for bound, slope, intercept in pieces:
            if alpha <= bound:
                betas.append(slope * alpha + intercept)
                break
    return betas


def dense_gas_distance_m(
    *,
    emission_rate_kg_per_s: float,
    wind_speed_10m_m_per_s: float,
    gas: Gas,
    mole_fraction: float,
    temperature_k: float = _STANDARD_TEMPERATURE_K,
    pressure_pa: float = _STANDARD_PRESSURE_PA,
) -> tuple[float, bool]:
    """Downwind distance to a centre-line concentration, Britter & McQuaid continuous release.

    ``beta`` is interpolated linearly in ``log10(Cm/C0)`` between the curves of the correlation
    (C0 = 1: the pure gas at ambient temperature, so ``Cm/C0`` is the mole fraction).

    Parameters
    ----------
    emission_rate_kg_per_s
        Continuous release rate [kg s-1].
    wind_speed_10m_m_per_s
        Wind at 10 m, > 0 [m s-1].
    gas
        Released gas (must be denser than air).
    mole_fraction
        Concentration of interest [mol mol-1].
    temperature_k, pressure_pa
        Ambient air (the gas is taken at ambient temperature) [K], [Pa].

    Returns
    -------
    tuple[float, bool]
        The distance [m], and whether the correlation was extrapolated (concentration outside
        0.002-0.1 or alpha above 1).
    """
    if not (emission_rate_kg_per_s > 0.0 and wind_speed_10m_m_per_s > 0.0):
        raise ValueError("emission_rate_kg_per_s and wind_speed_10m_m_per_s must be > 0")
    if not 0.0 < mole_fraction < 1.0:
        raise ValueError(f"mole_fraction must be in (0, 1), got {mole_fraction!r}")
    density = float(
        gas_density_kg_per_m3(gas, temperature_k=temperature_k, pressure_pa=pressure_pa)
    )
    reduced_gravity = float(
        reduced_gravity_m_per_s2(gas, temperature_k=temperature_k, pressure_pa=pressure_pa)
    )
    if reduced_gravity <= 0.0:
        raise ValueError(f"{gas.value} is not denser than air: no dense-gas correlation")
    volume_flow = emission_rate_kg_per_s / density
    wind = wind_speed_10m_m_per_s
    alpha = 0.2 * math.log10(reduced_gravity**2 * volume_flow / wind**5)
    length = math.sqrt(volume_flow / wind)
    levels = np.log10([level for level, _ in _BM_CURVES])  # decreasing
    betas = np.asarray(_bm_beta(alpha))
    target = math.log10(mole_fraction)
    # np.interp needs increasing abscissae: reverse both; extrapolate linearly at the ends.
    x_values, y_values = levels[::-1], betas[::-1]
    if target < x_values[0]:
        beta = y_values[0] + (target - x_values[0]) * (y_values[1] - y_values[0]) / (
            x_values[1] - x_values[0]
        )
    elif target > x_values[-1]:
        beta = y_values[-1] + (target - x_values[-1]) * (y_values[-1] - y_values[-2]) / (
            x_values[-1] - x_values[-2]
        )
    else:
        beta = float(np.interp(target, x_values, y_values))
    extrapolated = bool(target < x_values[0] or target > x_values[-1] or alpha > _BM_ALPHA_MAX)
    return length * 10.0**beta, extrapolated


@dataclass(frozen=True)
class _DenseOutline:
    """The dense plume's outline up to the level's distance, in the wind frame [m]."""

    distance_m: float  # downwind end of the zone (B&M distance of the level)
    upwind_m: float  # L_U
    half_width_m: float  # L_H0
    width_growth_m: float  # 2.5 l_b^(1/3) [m^(1/3)]
    extrapolated: bool

    @property
    def reach_m(self) -> float:
        """Farthest distance of the outline from the source [m]."""
        half_width = self.half_width_m + self.width_growth_m * self.distance_m ** (2.0 / 3.0)
        return math.hypot(max(self.distance_m, self.upwind_m), half_width)

    def half_angles(self, radii: FloatArray) -> FloatArray:
        """Largest angle from the axis inside the outline at each radius [rad] (-inf: none).

        Per radius ``r``: downwind of the source (angle <= pi/2) the crosswind condition
        ``r sin(a) <= L_H(r cos(a))`` holds up to the angle where the circle meets the outline's
        edge (interpolated along 1024 points of the edge); upwind the half-width is L_H0 and the
        largest angle is where the outline's upwind end ``x = -L_U`` cuts the circle.
        ``radii`` [m].
        """
        result: FloatArray = np.full(radii.size, -np.inf)
        rows = int(np.searchsorted(radii, self.reach_m, side="right"))
        r = radii[:rows]
        quarter = 0.5 * math.pi
        downwind_from = np.arccos(np.clip(self.distance_m / r, -1.0, 1.0))  # x <= distance
        upwind_to = np.arccos(np.clip(-self.upwind_m / r, -1.0, 1.0))  # x >= -L_U, >= pi/2
        side_from = math.pi - np.arcsin(np.clip(self.half_width_m / r, 0.0, 1.0))
        upwind = upwind_to >= np.maximum(np.maximum(side_from, downwind_from), quarter)
        # Downwind, the crosswind edge (x, L_H(x)) is at radius hypot(x, L_H), increasing in x,
        # and angle atan2(L_H, x): the edge's angle at radius r by interpolation along it.
        x = np.concatenate(
            ([0.0], np.geomspace(_EDGE_START * self.distance_m, self.distance_m, _EDGE_POINTS))
        )
        edge = self.half_width_m + self.width_growth_m * np.cbrt(x * x)
        crosswind_to = np.where(
            r <= self.half_width_m, quarter, np.interp(r, np.hypot(x, edge), np.arctan2(edge, x))
        )
        downwind = crosswind_to >= downwind_from
        result[:rows] = np.where(upwind, upwind_to, np.where(downwind, crosswind_to, -np.inf))
        return result


def _dense_outline(
    *,
    rate: float,
    wind_10m: float,
    gas: Gas,
    mole_fraction: float,
    temperature: float,
    pressure: float,
) -> _DenseOutline:
    distance, extrapolated = dense_gas_distance_m(
        emission_rate_kg_per_s=rate,
        wind_speed_10m_m_per_s=wind_10m,
        gas=gas,
        mole_fraction=mole_fraction,
        temperature_k=temperature,
        pressure_pa=pressure,
    )
    density = float(gas_density_kg_per_m3(gas, temperature_k=temperature, pressure_pa=pressure))
    reduced_gravity = float(
        reduced_gravity_m_per_s2(gas, temperature_k=temperature, pressure_pa=pressure)
    )
    volume_flow = rate / density
    length = math.sqrt(volume_flow / wind_10m)
    buoyancy_length = reduced_gravity * volume_flow / wind_10m**3
    return _DenseOutline(
        distance_m=distance,
        upwind_m=_BM_UPWIND_D * length + _BM_UPWIND_LB * buoyancy_length,
        half_width_m=_BM_WIDTH_D * length + _BM_WIDTH_LB * buoyancy_length,
        width_growth_m=_BM_WIDTH_GROWTH * math.cbrt(buoyancy_length),
        extrapolated=extrapolated,
    )


# --- Geometry on the polar grid -----------------------------------------------------------


def _angles() -> FloatArray:
    """Angles from the plume axis over [0, pi], quadratically graded (fine near the axis) [rad]."""
    fraction = np.linspace(0.0, 1.0, _ANGLE_COUNT)
    return np.pi * fraction * fraction


def _axis_ends(
    radii: FloatArray,
    axis_unit: FloatArray,
    thresholds: FloatArray,
    evaluate: Callable[[FloatArray], FloatArray],
) -> FloatArray:
    """Largest radius where the on-axis unit-rate field reaches each threshold [m].

    ``axis_unit`` is the field on the axis at ``radii`` [kg m-3 per kg s-1]; ``thresholds`` the
    levels per unit rate. Log-log interpolation between grid radii, then secant refinements with
    fresh evaluations. NaN where the level is reached nowhere; the last radius where it is reached
    beyond the grid.
    """
    ends = np.full(thresholds.shape, np.nan)
    above = axis_unit[np.newaxis, :] >= thresholds[:, np.newaxis]
    reached = np.any(above, axis=1)
    last = np.where(reached, radii.size - 1 - np.argmax(above[:, ::-1], axis=1), -1)
    at_edge = reached & (last == radii.size - 1)
    ends[at_edge] = radii[-1]
    inner = reached & ~at_edge
    if not np.any(inner):
        return ends
    index = last[inner]
    low_r, high_r = radii[index], radii[index + 1]
    low_c, high_c = axis_unit[index], axis_unit[index + 1]
    target = thresholds[inner]
    for step in range(_REFINEMENTS + 1):
        high_log = np.log(np.maximum(high_c, np.finfo(np.float64).tiny))
        slope = (np.log(target) - np.log(low_c)) / (high_log - np.log(low_c))
        estimate = np.exp(np.log(low_r) + np.clip(slope, 0.0, 1.0) * np.log(high_r / low_r))
        if step == _REFINEMENTS:
            break
        value = evaluate(estimate)
        outside = value < target
        high_r = np.where(outside, estimate, high_r)
        high_c = np.where(outside, value, high_c)
        low_r = np.where(outside, low_r, estimate)
        low_c = np.where(outside, low_c, value)
    ends[inner] = estimate
    return ends


def _half_angles(field: FloatArray, angles: FloatArray, threshold: float) -> FloatArray:
    """Half-angle of the zone about the axis at each radius [rad]; -inf where it is empty.

    ``field`` (radii, angles) unit-rate field [kg m-3 per kg s-1]; ``threshold`` the level per
    unit rate. The boundary is interpolated in log concentration between the last angle inside
    and the next.
    """
    mask = field >= threshold
    any_inside = np.any(mask, axis=1)
    last = angles.size - 1 - np.argmax(mask[:, ::-1], axis=1)
    result = np.where(any_inside, angles[last], -np.inf)
    rows = np.flatnonzero(any_inside & (last < angles.size - 1))
    column = last[rows]
    here = field[rows, column]
    after = field[rows, column + 1]
    usable = after > 0.0
    rows, column, here, after = rows[usable], column[usable], here[usable], after[usable]
    fraction = np.log(here / threshold) / np.log(here / after)
    result[rows] = angles[column] + fraction * (angles[column + 1] - angles[column])
    return result


def _bearing_radii(radii: FloatArray, half_angles: FloatArray, spread: float) -> FloatArray:
    """Farthest radius of the zone at each bearing from the axis over [0, pi] [m] (0 if none).

    The zone at radius r covers bearings |b| <= half_angle(r) + spread: the union of its copies
    rotated continuously over [-spread, spread].
    """
    widened = np.where(np.isfinite(half_angles), np.minimum(half_angles + spread, np.pi), -np.inf)
    bearings = np.linspace(0.0, np.pi, _BEARING_COUNT)
    # The last radius covering bearing b is the last where the running maximum from outside in
    # (non-increasing) is still >= b: a binary search instead of a (bearings x radii) table.
    outer_maximum = np.maximum.accumulate(widened[::-1])[::-1]
    count = np.searchsorted(-outer_maximum, -bearings, side="right")
    any_covered = count > 0
    last = np.maximum(count - 1, 0)
    result = np.where(any_covered, radii[last], 0.0)
    inner = any_covered & (last < radii.size - 1)
    index = np.flatnonzero(inner)
    row = last[index]
    this, after = widened[row], widened[row + 1]
    usable = np.isfinite(after) & (this > after)
    index, row, this, after = index[usable], row[usable], this[usable], after[usable]
    fraction = (this - bearings[index]) / (this - after)
    result[index] = radii[row] + np.clip(fraction, 0.0, 1.0) * (radii[row + 1] - radii[row])
    return result


def _outline_polygon(
    source: FloatArray, downwind_bearing: float, bearing_radii: FloatArray
) -> Polygon | MultiPolygon:
    """Star-shaped polygon around ``source`` from radii at bearings about the downwind axis."""
    if not np.any(bearing_radii > 0.0):
        return Polygon()
    half = np.linspace(0.0, np.pi, _BEARING_COUNT)
    bearings = np.concatenate((-half[:0:-1], half[:-1]))  # (-pi, pi), pi once
    radius = np.concatenate((bearing_radii[:0:-1], bearing_radii[:-1]))
    compass = downwind_bearing + bearings
    east = source[0] + radius * np.sin(compass)
    north = source[1] + radius * np.cos(compass)
    ring: shapely.Geometry = shapely.remove_repeated_points(Polygon(np.column_stack((east, north))))
    if not shapely.is_valid(ring):
        ring = shapely.make_valid(ring)
    polygons = _polygons(ring)
    if not polygons:
        return Polygon()
    merged = shapely.unary_union(polygons) if len(polygons) > 1 else polygons[0]
    return merged if isinstance(merged, Polygon | MultiPolygon) else Polygon()


def _extent(source: FloatArray, geometry: Polygon | MultiPolygon) -> float:
    """Largest distance from the source to a vertex of the geometry [m]."""
    if geometry.is_empty:
        return 0.0
    points = np.concatenate(
        [np.asarray(polygon.exterior.coords) for polygon in _polygons(geometry)]
    )
    return float(np.max(np.hypot(points[:, 0] - source[0], points[:, 1] - source[1])))


def _circle(source: FloatArray, radius: float) -> Polygon:
    """Polygon circumscribing the circle (never smaller than it)."""
    angle = np.linspace(0.0, 2.0 * np.pi, _CIRCLE_VERTICES, endpoint=False)
    outer = radius / math.cos(math.pi / _CIRCLE_VERTICES)
    return Polygon(
        np.column_stack((source[0] + outer * np.sin(angle), source[1] + outer * np.cos(angle)))
    )


# --- Main ----------------------------------------------------------------------------------


def _check_inputs(values: dict[str, float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    low, median, high = (
        values["rate_low_kg_per_s"],
        values["rate_median_kg_per_s"],
        values["rate_high_kg_per_s"],
    )
    if not 0.0 < low <= median <= high:
        raise ValueError(
            f"rates must satisfy 0 < low <= median <= high, got {low!r}, {median!r}, {high!r}"
        )
    for name in ("wind_speed_m_per_s", "sigma_theta_deg", "direction_spread_sigmas"):
        if values[name] < 0.0:
            raise ValueError(f"{name} must be >= 0, got {values[name]!r}")
    if values["max_distance_m"] <= _SMALLEST_RADIUS_M:
        raise ValueError(f"max_distance_m must be > {_SMALLEST_RADIUS_M}")


def threat_zones(  # noqa: PLR0912, PLR0915 - one pipeline of steps, kept together for reading
    *,
    source_m: npt.ArrayLike,
    gas: Gas,
    rate_low_kg_per_s: float,
    rate_median_kg_per_s: float,
    rate_high_kg_per_s: float,
    wind_speed_m_per_s: float,
    wind_from_deg: float,
    sigma_theta_deg: float,
    stability_class: int,
    lel_basis: LelBasis,
    urban: bool = False,
    anemometer_height_m: float = STANDARD_ANEMOMETER_HEIGHT_M,
    temperature_k: float = _STANDARD_TEMPERATURE_K,
    pressure_pa: float = _STANDARD_PRESSURE_PA,
    initial_sigma_m: float = 0.0,
    product: Product | None = None,
    rate_at_prior_bound: bool = False,
    direction_spread_sigmas: float = DEFAULT_DIRECTION_SPREAD_SIGMAS,
    wide_rate_ratio: float = DEFAULT_WIDE_RATE_RATIO,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
) -> ThreatZones:
    """Red (60 % LEL), yellow (10 % LEL) and ERG isolation zones of a continuous release.

    Parameters
    ----------
    source_m
        Release point (east, north) or (east, north, height >= 0) in site coordinates [m].
    gas
        Released gas.
    rate_low_kg_per_s, rate_median_kg_per_s, rate_high_kg_per_s
        Credible range and median of the release rate, 0 < low <= median <= high [kg s-1].
    wind_speed_m_per_s
        Mean wind speed at ``anemometer_height_m`` [m s-1].
    wind_from_deg
        Direction the wind blows from, clockwise from north [deg].
    sigma_theta_deg
        Standard deviation of the wind direction [deg].
    stability_class
        Pasquill-Gifford class code 0..5 (A..F) [1].
    lel_basis
        Basis of the LEL the levels refer to.
    urban
        Urban Briggs curves and profile exponents [1].
    anemometer_height_m
        Height of the wind measurement [m].
    temperature_k, pressure_pa
        Ambient air [K], [Pa] (concentration units and the dense-gas criterion).
    initial_sigma_m
        Initial spread of the source (crater, vent), horizontal and vertical [m].
    product
        The pipeline's product, for its ERG guide (crude oil: Guide 128); the isolation radius is
        the larger of the gas's and the product's.
    rate_at_prior_bound
        The rate estimate piles up at a bound of its prior (flagged) [1].
    direction_spread_sigmas
        Half-width of the direction sector, in sigma-theta [1].
    wide_rate_ratio
        High/low rate ratio above which ``wide_rate_interval`` is flagged [1].
    max_distance_m
        Radius of the computed domain [m]; zones reaching it are flagged ``truncated``.

    Returns
    -------
    ThreatZones
        The zones (red, yellow, isolation) and the inputs they rest on.
    """
    source = np.zeros(3)
    given = np.asarray(source_m, dtype=np.float64)
    if given.shape not in {(2,), (3,)} or not np.all(np.isfinite(given)):
        raise ValueError(f"source_m must be 2 or 3 finite numbers, got {source_m!r}")
    source[: given.size] = given
    if source[2] < 0.0:
        raise ValueError(f"source height must be >= 0, got {source[2]!r}")
    _check_inputs(
        {
            "rate_low_kg_per_s": rate_low_kg_per_s,
            "rate_median_kg_per_s": rate_median_kg_per_s,
            "rate_high_kg_per_s": rate_high_kg_per_s,
            "wind_speed_m_per_s": wind_speed_m_per_s,
            "wind_from_deg": wind_from_deg,
            "sigma_theta_deg": sigma_theta_deg,
            "direction_spread_sigmas": direction_spread_sigmas,
            "max_distance_m": max_distance_m,
        }
    )
    code = StabilityClass(int(stability_class))
    rates = np.array([rate_low_kg_per_s, rate_median_kg_per_s, rate_high_kg_per_s])
    basis = LelBasis(lel_basis)
    lel = lower_explosive_limit(gas, basis=basis)
    levels = (ZoneLevel.RED, ZoneLevel.YELLOW)
    fractions = np.array(
        [LEVELS_OF_CONCERN_PERCENT_LEL[level] / _PERCENT * lel for level in levels]
    )
    thresholds_kg_per_m3 = mole_fraction_to_kg_per_m3(
        fractions, gas, temperature_k=temperature_k, pressure_pa=pressure_pa
    )

    transport = float(
        transport_wind_speed_m_per_s(
            wind_speed_m_per_s,
            source[2],
            code,
            urban=urban,
            anemometer_height_m=anemometer_height_m,
        )
    )
    calm = transport < MINIMUM_WIND_SPEED_M_PER_S
    spread = (
        math.pi if calm else min(math.radians(sigma_theta_deg) * direction_spread_sigmas, math.pi)
    )
    display_spread = math.pi if calm else 0.0
    wind_10m = max(
        float(
            wind_speed_at_height(
                wind_speed_m_per_s,
                anemometer_height_m,
                STANDARD_ANEMOMETER_HEIGHT_M,
                code,
                urban=urban,
            )
        ),
        MINIMUM_WIND_SPEED_M_PER_S,
    )
    dense_parameter = continuous_release_parameter(
        rates, wind_10m, gas, temperature_k=temperature_k, pressure_pa=pressure_pa
    )
    dense = dense_parameter >= CONTINUOUS_RELEASE_THRESHOLD

    # Wind frame: the wind blows from the south, so the plume axis is +north and a receptor at
    # angle phi from the axis and radius r is at (r sin phi, r cos phi).
    local_source = np.array([0.0, 0.0, source[2]])

    def unit_field(receptors: FloatArray) -> FloatArray:
        return plume_concentration_kg_per_m3(
            receptors,
            local_source,
            emission_rate_kg_per_s=1.0,
            wind_speed_m_per_s=wind_speed_m_per_s,
            wind_direction_rad=math.pi,
            stability_class=code,
            urban=urban,
            anemometer_height_m=anemometer_height_m,
            initial_sigma_y_m=initial_sigma_m,
            initial_sigma_z_m=initial_sigma_m,
        )

    def on_axis(radius: FloatArray) -> FloatArray:
        points = np.zeros((radius.size, 3))
        points[:, 1] = radius
        return unit_field(points)

    grid = np.geomspace(_SMALLEST_RADIUS_M, max_distance_m, _RADIUS_COUNT)
    # Per-unit-rate thresholds, (level, rate) flattened: index = level * 3 + rate.
    per_unit = (thresholds_kg_per_m3[:, np.newaxis] / rates[np.newaxis, :]).ravel()
    axis_ends = _axis_ends(grid, on_axis(grid), per_unit, on_axis)
    outlines: dict[int, _DenseOutline] = {}
    for flat_index in range(per_unit.size):
        level_index, rate_index = divmod(flat_index, rates.size)
        if dense[rate_index]:
            outlines[flat_index] = _dense_outline(
                rate=float(rates[rate_index]),
                wind_10m=wind_10m,
                gas=gas,
                mole_fraction=float(fractions[level_index]),
                temperature=temperature_k,
                pressure=pressure_pa,
            )
    # Rows beyond the farthest on-axis end or dense outline hold no zone (for the Gaussian plume
    # the on-axis point is the farthest of every zone; see docs/zones.md): they are not computed.
    ends = [end for end in axis_ends if math.isfinite(end)]
    reach = max([*ends, *(outline.reach_m for outline in outlines.values()), 0.0])
    beyond = grid[grid > reach]
    kept = grid[grid <= reach] if beyond.size == 0 else np.append(grid[grid <= reach], beyond[0])
    extra = [end for end in ends if end < max_distance_m]
    extra += [min(outline.distance_m, max_distance_m) for outline in outlines.values()]
    radii = np.unique(np.concatenate((kept, np.asarray(extra, dtype=np.float64))))
    angles = _angles()
    downwind = int(np.count_nonzero(angles < 0.5 * math.pi))  # the plume is 0 upwind
    receptors = np.zeros((radii.size, downwind, 3))
    receptors[..., 0] = radii[:, np.newaxis] * np.sin(angles[:downwind])
    receptors[..., 1] = radii[:, np.newaxis] * np.cos(angles[:downwind])
    field = unit_field(receptors)  # (radii, downwind angles); zero at every upwind angle

    downwind_bearing = math.radians(wind_from_deg) + math.pi
    shared_flags: set[ZoneFlag] = set()
    if calm:
        shared_flags.add(ZoneFlag.CALM)
    if transport < LOW_WIND_SPEED_M_PER_S:
        shared_flags.add(ZoneFlag.LOW_WIND)
    if code == StabilityClass.F:
        shared_flags.add(ZoneFlag.VERY_STABLE)
    if rate_at_prior_bound:
        shared_flags.add(ZoneFlag.RATE_AT_PRIOR_BOUND)
    if rate_high_kg_per_s > wide_rate_ratio * rate_low_kg_per_s:
        shared_flags.add(ZoneFlag.WIDE_RATE_INTERVAL)

    zones: list[ThreatZone] = []
    # Levels from the highest concentration down; each zone's radii are at least the previous
    # one's at every bearing, so that red lies inside yellow (star polygons on the same bearings)
    # whatever the interpolation round-off.
    envelope = np.zeros(_BEARING_COUNT)
    median_radii = np.zeros(_BEARING_COUNT)
    for level_index, level in enumerate(levels):
        rate_used = float(rates[-1])
        best_extent = -1.0
        flags = set(shared_flags)
        zone_dense = False
        for rate_index in range(rates.size):
            flat_index = level_index * rates.size + rate_index
            threshold = float(per_unit[flat_index])
            half_angles = _half_angles(field, angles[:downwind], threshold)
            end = axis_ends[flat_index]
            if math.isfinite(end):  # the on-axis end, exactly on the level
                row = int(np.searchsorted(radii, min(end, radii[-1])))
                half_angles[row] = max(half_angles[row], 0.0)
            outline = outlines.get(flat_index)
            if outline is not None:
                half_angles = np.maximum(half_angles, outline.half_angles(radii))
                zone_dense = True
                flags.add(ZoneFlag.DENSE_GAS)
                if outline.extrapolated:
                    flags.add(ZoneFlag.DENSE_GAS_APPROXIMATE)
            bearing_radii = _bearing_radii(radii, half_angles, spread)
            extent = float(np.max(bearing_radii))
            if extent > best_extent:
                best_extent, rate_used = extent, float(rates[rate_index])
            envelope = np.maximum(envelope, bearing_radii)
            if rate_index == 1:
                median_radii = np.maximum(
                    median_radii, _bearing_radii(radii, half_angles, display_spread)
                )
        polygon = _outline_polygon(source, downwind_bearing, envelope)
        median_polygon = _outline_polygon(source, downwind_bearing, median_radii)
        extent = _extent(source, polygon)
        if 0.0 < extent < BRIGGS_MINIMUM_DISTANCE_M:
            flags.add(ZoneFlag.NEAR_SOURCE)
        if extent > BRIGGS_MAXIMUM_DISTANCE_M:
            flags.add(ZoneFlag.BEYOND_RANGE)
        if float(np.max(envelope)) >= radii[-1]:
            flags.add(ZoneFlag.TRUNCATED)
        percent = LEVELS_OF_CONCERN_PERCENT_LEL[level]
        zones.append(
            ThreatZone(
                level=level,
                percent_lel=percent,
                mole_fraction=float(fractions[level_index]),
                polygon_m=polygon,
                median_polygon_m=median_polygon,
                area_m2=float(polygon.area),
                median_area_m2=float(median_polygon.area),
                max_downwind_extent_m=extent,
                median_max_downwind_extent_m=_extent(source, median_polygon),
                rate_kg_per_s=rate_used,
                dense_gas=zone_dense,
                flags=frozenset(flags),
                basis=(
                    f"ground-level mean concentration >= {percent:g} %LEL ({basis.value}), "
                    "Gaussian plume (Briggs 1973)"
                    + (" with Britter & McQuaid (1988) dense-gas outline" if zone_dense else "")
                    + "; NOAA ALOHA flammable level of concern"
                ),
            )
        )

    guides = sorted(
        {_GAS_GUIDE[gas]} | ({_PRODUCT_GUIDE[product]} if product in _PRODUCT_GUIDE else set())
    )
    isolation_radius = max(ERG_INITIAL_ISOLATION_M[guide] for guide in guides)
    circle = _circle(source, isolation_radius)
    zones.append(
        ThreatZone(
            level=ZoneLevel.ISOLATION,
            percent_lel=None,
            mole_fraction=None,
            polygon_m=circle,
            median_polygon_m=circle,
            area_m2=float(circle.area),
            median_area_m2=float(circle.area),
            max_downwind_extent_m=isolation_radius,
            median_max_downwind_extent_m=isolation_radius,
            rate_kg_per_s=0.0,
            dense_gas=False,
            flags=frozenset(),
            basis="initial isolation distance in all directions, "
            + ", ".join(
                f"ERG 2020 Guide {guide} ({ERG_INITIAL_ISOLATION_M[guide]:g} m)" for guide in guides
            ),
        )
    )
    all_flags = frozenset(flag for zone in zones for flag in zone.flags)
    return ThreatZones(
        gas=gas,
        lel_basis=basis,
        source_m=(float(source[0]), float(source[1]), float(source[2])),
        rate_low_kg_per_s=float(rates[0]),
        rate_median_kg_per_s=float(rates[1]),
        rate_high_kg_per_s=float(rates[2]),
        wind_speed_m_per_s=float(wind_speed_m_per_s),
        wind_from_deg=float(wind_from_deg),
        sigma_theta_deg=float(sigma_theta_deg),
        direction_spread_deg=math.degrees(spread),
        stability_class=code,
        urban=bool(urban),
        transport_wind_m_per_s=transport,
        dense_gas_parameter=(
            float(dense_parameter[0]),
            float(dense_parameter[1]),
            float(dense_parameter[2]),
        ),
        isolation_guide=tuple(guides),
        zones=tuple(zones),
        flags=all_flags,
    )


def threat_zones_for_localisation(
    result: LocalisationResult,
    *,
    urban: bool = False,
    product: Product | None = None,
    source_height_m: float = 0.0,
    initial_sigma_m: float = 0.0,
) -> ThreatZones:
    """Threat zones at a localisation's most probable point, rate interval and wind.

    ``urban`` [1], ``product`` (ERG guide of the pipeline), ``source_height_m`` [m] and
    ``initial_sigma_m`` [m] as in :func:`threat_zones`. ``ValueError`` if the result has no wind.
    """
    if result.wind is None:
        raise ValueError("the localisation has no wind state: no threat zones")
    wind = result.wind
    position = np.asarray(result.map_position_m, dtype=np.float64)
    return threat_zones(
        source_m=(float(position[0]), float(position[1]), source_height_m),
        gas=result.gas,
        rate_low_kg_per_s=result.rate.lower_kg_per_s,
        rate_median_kg_per_s=result.rate.median_kg_per_s,
        rate_high_kg_per_s=result.rate.upper_kg_per_s,
        wind_speed_m_per_s=wind.speed_m_per_s,
        wind_from_deg=math.degrees(wind.direction_from_rad),
        sigma_theta_deg=math.degrees(wind.sigma_theta_rad),
        stability_class=wind.stability_class,
        lel_basis=result.lel_basis,
        urban=urban,
        anemometer_height_m=wind.anemometer_height_m,
        temperature_k=wind.temperature_k,
        pressure_pa=wind.pressure_pa,
        initial_sigma_m=initial_sigma_m,
        product=product,
        rate_at_prior_bound=result.rate.at_prior_bound,
    )


# --- GeoJSON -------------------------------------------------------------------------------


def _geojson_geometry(geometry: Polygon | MultiPolygon, site: Site) -> dict[str, Any] | None:
    """RFC 7946 (Multi)Polygon: exterior rings counter-clockwise, holes clockwise, closed."""
    polygons = [orient(polygon, sign=1.0) for polygon in _polygons(geometry)]
    if not polygons:
        return None

    def rings(polygon: Polygon) -> list[Any]:
        result: list[Any] = []
        for ring in (polygon.exterior, *polygon.interiors):
            coordinates = np.round(lon_lat(np.asarray(ring.coords), site.origin), GEOJSON_DECIMALS)
            result.append(coordinates.tolist())
        return result

    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": rings(polygons[0])}
    return {"type": "MultiPolygon", "coordinates": [rings(polygon) for polygon in polygons]}


def zones_to_geojson(site: Site, zones: ThreatZones) -> dict[str, Any]:
    """The zones as a GeoJSON FeatureCollection on WGS84 (RFC 7946), ready for ``json.dumps``.

    One feature per zone and variant (``envelope``: union over the uncertainty; ``median``: the
    median rate at the mean wind direction), largest first so that a map draws red on top; empty
    zones are left out. Properties: ``layer`` ("threat_zone"), ``level``, ``variant``,
    ``percent_lel``, ``lel_basis``, ``gas``, ``flags``, ``rate_kg_per_s``, the wind used,
    ``area_m2``, ``max_downwind_extent_m`` and ``basis``.
    """
    wind = {
        "wind_speed_m_per_s": zones.wind_speed_m_per_s,
        "wind_from_deg": zones.wind_from_deg,
        "sigma_theta_deg": zones.sigma_theta_deg,
        "direction_spread_deg": zones.direction_spread_deg,
        "stability_class": zones.stability_class.name,
    }
    features: list[dict[str, Any]] = []
    for zone in zones.zones:
        variants = [
            (
                "envelope",
                zone.polygon_m,
                zone.rate_kg_per_s,
                zone.area_m2,
                zone.max_downwind_extent_m,
            )
        ]
        if zone.level != ZoneLevel.ISOLATION:
            variants.append(
                (
                    "median",
                    zone.median_polygon_m,
                    zones.rate_median_kg_per_s,
                    zone.median_area_m2,
                    zone.median_max_downwind_extent_m,
                )
            )
        for variant, geometry, rate, area, extent in variants:
            shape = _geojson_geometry(geometry, site)
            if shape is None:
                continue
            feature_id = f"{zone.level.value}-{variant}"
            features.append(
                {
                    "type": "Feature",
                    "id": feature_id,
                    "geometry": shape,
                    "properties": {
                        "layer": "threat_zone",
                        "id": feature_id,
                        "level": zone.level.value,
                        "variant": variant,
                        "percent_lel": zone.percent_lel,
                        "lel_basis": zones.lel_basis.value,
                        "gas": zones.gas.value,
                        "flags": sorted(flag.value for flag in zone.flags),
                        "rate_kg_per_s": rate,
                        **wind,
                        "area_m2": area,
                        "max_downwind_extent_m": extent,
                        "basis": zone.basis,
                    },
                }
            )
    features.sort(key=lambda feature: -float(feature["properties"]["area_m2"]))
    positions = [
        position
        for feature in features
        for polygon in (
            [feature["geometry"]["coordinates"]]
            if feature["geometry"]["type"] == "Polygon"
            else feature["geometry"]["coordinates"]
        )
        for ring in polygon
        for position in ring
    ]
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if positions:
        longitudes = [position[0] for position in positions]
        latitudes = [position[1] for position in positions]
        collection["bbox"] = [min(longitudes), min(latitudes), max(longitudes), max(latitudes)]
    return collection
