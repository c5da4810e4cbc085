"""Pasquill-Gifford stability from what a wind station gives, day/night, and the wind profile.

* :func:`stability_class_from_sigma_theta` - the sigma-theta (sigma_A) method of US EPA,
  *Meteorological Monitoring Guidance for Regulatory Modeling Applications*, EPA-454/R-99-005
  (2000), sec. 6.4.4 (after Irwin 1980): an initial class from the standard deviation of the wind
  direction (Table 6-7), then the day/night wind-speed adjustment with the 10-m wind speed
  (Table 6-8).
* :func:`solar_elevation_rad` and :func:`is_daytime` - sun position from time and place with the
  Astronomical Almanac's low-precision formulas, and the day/night split used with the tables.
* :func:`wind_speed_at_height` - the power-law profile with the ISC3 exponents by class, rural and
  urban.

Classes are integer codes 0..5 for A..F in arrays; :class:`StabilityClass` names them.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from pipesentinel.detection._arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    as_bool_array,
    as_float_array,
    as_non_negative,
    as_positive,
    as_stability_class,
)
from pipesentinel.detection.constants import PROFILE_MINIMUM_HEIGHT_M

__all__ = [
    "DAYTIME_MARGIN_S",
    "SIGMA_THETA_CLASS_LOWER_BOUNDS_RAD",
    "WIND_PROFILE_EXPONENTS",
    "StabilityClass",
    "hour_angle_rad",
    "is_daytime",
    "solar_declination_rad",
    "solar_elevation_rad",
    "stability_class_from_sigma_theta",
    "sunrise_hour_angle_rad",
    "wind_profile_exponent",
    "wind_speed_at_height",
]


class StabilityClass(IntEnum):
    """Pasquill-Gifford stability class; the value is the integer code used in arrays."""

    A = 0  # extremely unstable
    B = 1  # moderately unstable
    C = 2  # slightly unstable
    D = 3  # neutral
    E = 4  # slightly stable
    F = 5  # moderately stable


_A, _B, _C, _D, _E, _F = (int(member) for member in StabilityClass)
_DEG = math.pi / 180.0  # rad per degree (definition)

# --- sigma-theta method, EPA-454/R-99-005 sec. 6.4.4 ---------------------------------------------

SIGMA_THETA_CLASS_LOWER_BOUNDS_RAD: Final = tuple(
    bound * _DEG for bound in (22.5, 17.5, 12.5, 7.5, 3.8)
)
"""Table 6-7, initial class from sigma_A (sigma-theta) [rad]: A if >= 22.5 deg, B 17.5-22.5,
C 12.5-17.5, D 7.5-12.5, E 3.8-7.5, F below 3.8 deg. Stated for a 10 m measurement height over level
terrain with a roughness length of about 15 cm."""

_INF = math.inf
# Table 6-8: for each initial class, (10-m wind speed upper bounds [m s-1], final class) pairs in
# increasing speed; the final class is the one of the first bound the speed is below.
_DAYTIME_ADJUSTMENT: Final = {
    _A: ((3.0, _A), (4.0, _B), (6.0, _C), (_INF, _D)),
    _B: ((4.0, _B), (6.0, _C), (_INF, _D)),
    _C: ((6.0, _C), (_INF, _D)),
    _D: ((_INF, _D),),
    _E: ((_INF, _D),),
    _F: ((_INF, _D),),
}
_NIGHTTIME_ADJUSTMENT: Final = {
    _A: ((2.9, _F), (3.6, _E), (_INF, _D)),
    _B: ((2.4, _F), (3.0, _E), (_INF, _D)),
    _C: ((2.4, _E), (_INF, _D)),
    _D: ((_INF, _D),),
    _E: ((5.0, _E), (_INF, _D)),
    _F: ((3.0, _F), (5.0, _E), (_INF, _D)),
}


def _adjustment_arrays() -> tuple[FloatArray, IntArray]:
    """Table 6-8 as padded arrays ``bounds[night, initial, k]``, ``classes[night, initial, k]``."""
    width = max(
        len(rule)
        for table in (_DAYTIME_ADJUSTMENT, _NIGHTTIME_ADJUSTMENT)
        for rule in table.values()
    )
    bounds = np.full((2, 6, width), _INF)
    classes = np.full((2, 6, width), _D, dtype=np.int64)
    for night, table in enumerate((_DAYTIME_ADJUSTMENT, _NIGHTTIME_ADJUSTMENT)):
        for initial, rule in table.items():
            for k, (bound, final) in enumerate(rule):
                bounds[night, initial, k] = bound
                classes[night, initial, k] = final
            classes[night, initial, len(rule) :] = rule[-1][1]
    bounds.setflags(write=False)
    classes.setflags(write=False)
    return bounds, classes


_ADJUSTMENT_BOUNDS, _ADJUSTMENT_CLASSES = _adjustment_arrays()


def stability_class_from_sigma_theta(
    sigma_theta_rad: npt.ArrayLike,
    wind_speed_10m_m_per_s: npt.ArrayLike,
    is_daytime: npt.ArrayLike,
) -> IntArray:
    """Pasquill-Gifford class by the sigma-theta method (EPA-454/R-99-005, sec. 6.4.4).

    The initial class comes from sigma-theta (Table 6-7); the 10-m wind speed then moves it
    towards neutral (Table 6-8): by day A/B/C become less unstable in stronger wind and D/E/F
    become D; by night unstable-looking sigma-theta with light wind means a meandering stable
    plume (A -> F below 2.9 m s-1) and stable classes become D in wind of 5 m s-1 and more.

    Parameters
    ----------
    sigma_theta_rad
        Standard deviation of the horizontal wind direction over the averaging period [rad].
    wind_speed_10m_m_per_s
        Scalar mean wind speed at 10 m [m s-1]; convert other anemometer heights with
        :func:`wind_speed_at_height` first.
    is_daytime
        True by day, False by night (see :func:`is_daytime`) [1].

    Returns
    -------
    IntArray
        Class codes 0..5 (A..F), broadcast shape of the inputs [1].
    """
    sigma_theta = as_non_negative(sigma_theta_rad, "sigma_theta_rad")
    speed = as_non_negative(wind_speed_10m_m_per_s, "wind_speed_10m_m_per_s")
    night = (~as_bool_array(is_daytime, "is_daytime")).astype(np.int64)
    # Number of Table 6-7 lower bounds the value is below: 0 -> A ... 5 -> F.
    bounds = np.asarray(SIGMA_THETA_CLASS_LOWER_BOUNDS_RAD)
    initial = np.sum(sigma_theta[..., np.newaxis] < bounds, axis=-1)
    night, initial, speed = np.broadcast_arrays(night, initial, speed)
    passed = np.sum(speed[..., np.newaxis] >= _ADJUSTMENT_BOUNDS[night, initial], axis=-1)
    final: IntArray = np.take_along_axis(
        _ADJUSTMENT_CLASSES[night, initial], passed[..., np.newaxis], axis=-1
    )[..., 0].astype(np.int64)
    return final


# --- Solar position (Astronomical Almanac low-precision formulas) ------------------------------
#
# The Astronomical Almanac, section C, "Low precision formulas for the Sun", as published by the
# US Naval Observatory ("Approximate Solar Coordinates"): right ascension and declination to about
# 0.01 deg between 1950 and 2050, and Greenwich mean sidereal time (USNO, "Computing Greenwich
# Apparent Sidereal Time"). n is the number of days from J2000.0 (JD 2451545.0); angles in degrees.

_SECONDS_PER_DAY = 86_400.0
_SECONDS_PER_HOUR = 3_600.0
_HOURS_PER_DAY = 24.0
_EARTH_ROTATION_RAD_PER_HOUR = 2.0 * math.pi / _HOURS_PER_DAY  # 15 deg of hour angle per hour
_UNIX_EPOCH_JULIAN_DATE = 2_440_587.5  # JD of 1970-01-01T00:00:00Z (definition of JD)
_J2000_JULIAN_DATE = 2_451_545.0  # JD of J2000.0 (2000-01-01T12:00 TT)
_MEAN_LONGITUDE_DEG = (280.460, 0.9856474)  # L = 280.460 + 0.9856474 n
_MEAN_ANOMALY_DEG = (357.528, 0.9856003)  # g = 357.528 + 0.9856003 n
_EQUATION_OF_CENTRE_DEG = (1.915, 0.020)  # lambda = L + 1.915 sin g + 0.020 sin 2g
_OBLIQUITY_DEG = (23.439, -0.0000004)  # epsilon = 23.439 - 0.0000004 n
_SIDEREAL_TIME_HOURS = (18.697374558, 24.06570982441908)  # GMST = 18.697... + 24.0657... n
_SUNRISE_ZENITH_RAD = 90.833 * _DEG
"""Zenith angle of the sun's centre at apparent sunrise/sunset: 90 deg + 0.833 deg for refraction
(about 34') and the solar semi-diameter (about 16'); NOAA, "General Solar Position Calculations"."""

DAYTIME_MARGIN_S: Final = 3_600.0
"""Day is from one hour after sunrise to one hour before sunset [s]: the definition of night "from
one hour before sunset to one hour after sunrise" in Turner's method (EPA-454/R-99-005 sec. 6.4.1,
after Turner 1964), applied here to the day/night columns of the sigma-theta method's Table 6-8."""


def _days_since_j2000(timestamp_s: npt.ArrayLike) -> FloatArray:
    """Days from J2000.0 for POSIX timestamps (UTC; the 69 s TT-UTC difference is negligible)."""
    seconds = as_float_array(timestamp_s, "timestamp_s")
    return seconds / _SECONDS_PER_DAY + (_UNIX_EPOCH_JULIAN_DATE - _J2000_JULIAN_DATE)


def _sun_equatorial(days: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Apparent right ascension and declination of the sun [rad] (low-precision formulas)."""
    mean_longitude = _MEAN_LONGITUDE_DEG[0] + _MEAN_LONGITUDE_DEG[1] * days
    mean_anomaly = np.radians(_MEAN_ANOMALY_DEG[0] + _MEAN_ANOMALY_DEG[1] * days)
    longitude = np.radians(
        mean_longitude
        + _EQUATION_OF_CENTRE_DEG[0] * np.sin(mean_anomaly)
        + _EQUATION_OF_CENTRE_DEG[1] * np.sin(2.0 * mean_anomaly)
    )
    obliquity = np.radians(_OBLIQUITY_DEG[0] + _OBLIQUITY_DEG[1] * days)
    right_ascension = np.arctan2(np.cos(obliquity) * np.sin(longitude), np.cos(longitude))
    declination = np.arcsin(np.sin(obliquity) * np.sin(longitude))
    return right_ascension, declination


def solar_declination_rad(timestamp_s: npt.ArrayLike) -> FloatArray:
    """Declination of the sun at POSIX time ``timestamp_s`` (UTC seconds) [rad]."""
    _, declination = _sun_equatorial(_days_since_j2000(timestamp_s))
    return declination


def hour_angle_rad(timestamp_s: npt.ArrayLike, longitude_rad: npt.ArrayLike) -> FloatArray:
    """Local hour angle of the sun, 0 at solar noon, negative before, in [-pi, pi) [rad].

    ``timestamp_s`` is POSIX time (UTC seconds); ``longitude_rad`` is east-positive [rad].
    """
    days = _days_since_j2000(timestamp_s)
    right_ascension, _ = _sun_equatorial(days)
    sidereal_hours = _SIDEREAL_TIME_HOURS[0] + _SIDEREAL_TIME_HOURS[1] * days
    sidereal = np.mod(sidereal_hours, _HOURS_PER_DAY) * _EARTH_ROTATION_RAD_PER_HOUR
    longitude = as_float_array(longitude_rad, "longitude_rad")
    angle = sidereal + longitude - right_ascension
    wrapped: FloatArray = np.mod(angle + math.pi, 2.0 * math.pi) - math.pi
    return wrapped


def _latitude(latitude_rad: npt.ArrayLike) -> FloatArray:
    latitude = as_float_array(latitude_rad, "latitude_rad")
    if np.any(np.abs(latitude) > math.pi / 2.0):
        raise ValueError(
            f"latitude_rad must be within [-pi/2, pi/2], got e.g. "
            f"{float(latitude[np.abs(latitude) > math.pi / 2.0].flat[0])!r} (degrees given?)"
        )
    return latitude


def solar_elevation_rad(
    timestamp_s: npt.ArrayLike, latitude_rad: npt.ArrayLike, longitude_rad: npt.ArrayLike
) -> FloatArray:
    """Elevation of the sun's centre above the horizon, without refraction [rad].

    Parameters
    ----------
    timestamp_s
        POSIX time, seconds since 1970-01-01T00:00:00Z [s].
    latitude_rad
        Geodetic latitude, north positive [rad].
    longitude_rad
        Longitude, east positive [rad].

    Returns
    -------
    FloatArray
        ``asin(sin(lat) sin(dec) + cos(lat) cos(dec) cos(hour angle))`` [rad].
    """
    latitude = _latitude(latitude_rad)
    declination = solar_declination_rad(timestamp_s)
    angle = hour_angle_rad(timestamp_s, longitude_rad)
    sine = np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(declination) * np.cos(
        angle
    )
    elevation: FloatArray = np.arcsin(np.clip(sine, -1.0, 1.0))
    return elevation


def sunrise_hour_angle_rad(timestamp_s: npt.ArrayLike, latitude_rad: npt.ArrayLike) -> FloatArray:
    """Hour angle of apparent sunset (sunrise is its negative) on that day [rad].

    ``pi`` during polar day and 0 during polar night. ``timestamp_s`` POSIX [s], ``latitude_rad``
    north positive [rad].
    """
    latitude = _latitude(latitude_rad)
    declination = solar_declination_rad(timestamp_s)
    cosine = (math.cos(_SUNRISE_ZENITH_RAD) - np.sin(latitude) * np.sin(declination)) / (
        np.cos(latitude) * np.cos(declination)
    )
    half_day: FloatArray = np.arccos(np.clip(cosine, -1.0, 1.0))
    return half_day


def is_daytime(
    timestamp_s: npt.ArrayLike,
    latitude_rad: npt.ArrayLike,
    longitude_rad: npt.ArrayLike,
    *,
    margin_s: float = DAYTIME_MARGIN_S,
) -> BoolArray:
    """True from ``margin_s`` after sunrise to ``margin_s`` before sunset [1].

    With the default one-hour margin this is the day of the EPA stability methods; pass
    ``margin_s=0`` for plain sun-above-horizon. ``timestamp_s`` POSIX [s]; latitude and longitude
    [rad] (east positive). During polar day it is always day, during polar night always night.
    """
    half_day = sunrise_hour_angle_rad(timestamp_s, latitude_rad)
    margin = float(margin_s) / _SECONDS_PER_HOUR * _EARTH_ROTATION_RAD_PER_HOUR
    angle = hour_angle_rad(timestamp_s, longitude_rad)
    polar_day = half_day >= math.pi
    return polar_day | (np.abs(angle) <= half_day - margin)


# --- Wind profile ---------------------------------------------------------------------------

WIND_PROFILE_EXPONENTS: Final = np.array(
    [[0.07, 0.07, 0.10, 0.15, 0.35, 0.55], [0.15, 0.15, 0.20, 0.25, 0.30, 0.30]]
)
"""Power-law exponents p by [urban, class A..F]: rural 0.07, 0.07, 0.10, 0.15, 0.35, 0.55; urban
0.15, 0.15, 0.20, 0.25, 0.30, 0.30. US EPA, User's Guide for the Industrial Source Complex (ISC3)
Dispersion Models, Vol. II, EPA-454/B-95-003b (1995), sec. 1.1.5 (after Irwin 1979)."""
WIND_PROFILE_EXPONENTS.setflags(write=False)


def wind_profile_exponent(
    stability_class: npt.ArrayLike, *, urban: npt.ArrayLike = False
) -> FloatArray:
    """ISC3 power-law exponent for the class (codes 0..5) and land use [1]."""
    codes = as_stability_class(stability_class)
    land = as_bool_array(urban, "urban").astype(np.int64)
    exponent: FloatArray = WIND_PROFILE_EXPONENTS[land, codes]
    return exponent


def wind_speed_at_height(
    wind_speed_m_per_s: npt.ArrayLike,
    reference_height_m: npt.ArrayLike,
    height_m: npt.ArrayLike,
    stability_class: npt.ArrayLike,
    *,
    urban: npt.ArrayLike = False,
) -> FloatArray:
    """Power-law wind profile ``u(z) = u_ref (z / z_ref)^p``, heights clamped to >= 10 m.

    Both heights are clamped to :data:`~pipesentinel.detection.constants.PROFILE_MINIMUM_HEIGHT_M`
    (10 m): the wind speed is held constant below 10 m as in ISC3, so a 2-m anemometer's wind is
    used as the 10-m wind and as the wind at a ground-level release. This avoids extrapolating
    the power law into the surface layer, at the price of underestimating the 10-m wind from a low
    anemometer (typically by 20-50 %, more in stable air).

    Parameters
    ----------
    wind_speed_m_per_s
        Measured wind speed [m s-1].
    reference_height_m
        Height of the measurement above ground, > 0 [m].
    height_m
        Height where the wind is wanted, >= 0 [m].
    stability_class
        Class codes 0..5 (A..F) selecting the exponent [1].
    urban
        True for the urban exponents [1].

    Returns
    -------
    FloatArray
        Wind speed at ``height_m`` [m s-1].
    """
    speed = as_non_negative(wind_speed_m_per_s, "wind_speed_m_per_s")
    reference = np.maximum(
        as_positive(reference_height_m, "reference_height_m"), PROFILE_MINIMUM_HEIGHT_M
    )
    height = np.maximum(as_non_negative(height_m, "height_m"), PROFILE_MINIMUM_HEIGHT_M)
    exponent = wind_profile_exponent(stability_class, urban=urban)
    return speed * (height / reference) ** exponent
