import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.stability import (
    StabilityClass,
    hour_angle_rad,
    is_daytime,
    solar_declination_rad,
    solar_elevation_rad,
    stability_class_from_sigma_theta,
    wind_profile_exponent,
    wind_speed_at_height,
)

A, B, C, D, E, F = StabilityClass


def posix(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# (sigma-theta [deg], 10-m wind speed [m s-1], daytime, class) - EPA-454/R-99-005, Tables 6-7/6-8.
SIGMA_THETA_CASES = [
    # Day: A/B/C become less unstable with wind; D, E, F become D.
    (25.0, 2.0, True, A),
    (22.5, 2.0, True, A),  # the A bound is inclusive
    (25.0, 3.0, True, B),  # 3 <= u < 4
    (25.0, 5.0, True, C),
    (25.0, 6.0, True, D),
    (20.0, 3.9, True, B),
    (20.0, 4.0, True, C),
    (20.0, 6.5, True, D),
    (15.0, 5.9, True, C),
    (15.0, 6.0, True, D),
    (10.0, 1.0, True, D),
    (5.0, 1.0, True, D),
    (2.0, 1.0, True, D),
    # Night: unstable-looking sigma-theta in light wind is a meandering stable plume.
    (25.0, 2.0, False, F),
    (25.0, 2.9, False, E),
    (25.0, 3.6, False, D),
    (20.0, 2.0, False, F),
    (20.0, 2.4, False, E),
    (20.0, 3.0, False, D),
    (15.0, 2.0, False, E),
    (15.0, 2.4, False, D),
    (10.0, 1.0, False, D),
    (5.0, 4.9, False, E),
    (5.0, 5.0, False, D),
    (3.8, 2.0, False, E),  # the E bound is inclusive
    (3.7, 2.0, False, F),
    (2.0, 3.0, False, E),
    (2.0, 5.0, False, D),
]


@pytest.mark.parametrize(("sigma_theta_deg", "speed", "day", "expected"), SIGMA_THETA_CASES)
def test_sigma_theta_method_tables(
    sigma_theta_deg: float, speed: float, day: bool, expected: StabilityClass
) -> None:
    result = stability_class_from_sigma_theta(math.radians(sigma_theta_deg), speed, day)
    assert result.shape == ()
    assert StabilityClass(int(result)) is expected


def test_sigma_theta_method_is_vectorized() -> None:
    sigma, speed, day, expected = zip(*SIGMA_THETA_CASES, strict=True)
    result = stability_class_from_sigma_theta(np.radians(sigma), np.array(speed), np.array(day))
    np.testing.assert_array_equal(result, np.array(expected))
    grid = stability_class_from_sigma_theta(
        np.radians([[25.0], [5.0]]), np.array([1.0, 7.0]), np.array(True)
    )
    np.testing.assert_array_equal(grid, [[A, D], [D, D]])


@given(
    sigma=st.floats(min_value=0.0, max_value=1.5),
    speed=st.floats(min_value=0.0, max_value=30.0),
    day=st.booleans(),
)
def test_day_is_a_to_d_and_night_is_d_to_f(sigma: float, speed: float, day: bool) -> None:
    code = int(stability_class_from_sigma_theta(sigma, speed, day))
    assert (code <= D) if day else (code >= D)


def test_bad_stability_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="sigma_theta_rad must be >= 0"):
        stability_class_from_sigma_theta(-0.1, 3.0, True)
    with pytest.raises(ValueError, match="is_daytime must be boolean"):
        stability_class_from_sigma_theta(0.1, 3.0, 0.5)


def test_declination_at_solstices_and_equinox() -> None:
    # Astronomical values: +23.44 deg (June solstice), -23.44 deg (December), ~0 (equinox).
    # The low-precision formulas are good to about 0.01 deg.
    june = solar_declination_rad(posix(2021, 6, 21, 3, 32))
    december = solar_declination_rad(posix(2021, 12, 21, 15, 59))
    march = solar_declination_rad(posix(2021, 3, 20, 9, 37))
    assert_allclose(np.degrees([june, december, march]), [23.44, -23.44, 0.0], atol=0.02)


def test_solar_noon_and_noon_elevation() -> None:
    # Equation of time is about +16.4 min around 3 November: at Greenwich the sun culminates at
    # about 11:43:36 UTC. Noon elevation = 90 - |latitude - declination|, with the declination
    # about -15.2 deg.
    day_start = posix(2021, 11, 3)
    minutes = day_start + 60.0 * np.arange(24 * 60)
    elevation = solar_elevation_rad(minutes, math.radians(51.48), 0.0)
    culmination_min = float(np.argmax(elevation))
    assert abs(culmination_min - (11 * 60 + 43.6)) <= 1.5
    assert_allclose(np.degrees(elevation.max()), 90.0 - (51.48 + 15.2), atol=0.15)
    angle = hour_angle_rad(day_start + 60.0 * culmination_min, 0.0)
    assert abs(float(angle)) < math.radians(0.5)


def test_elevation_is_vectorized_over_places() -> None:
    latitudes = np.radians([[0.0], [40.0], [-40.0]])
    longitudes = np.radians([0.0, 90.0, -90.0, 180.0])
    result = solar_elevation_rad(posix(2021, 3, 20, 12), latitudes, longitudes)
    assert result.shape == (3, 4)
    # At 12 UTC on the equinox the sun is overhead near longitude 0 and set at +-180 deg.
    assert np.degrees(result[0, 0]) > 85.0
    assert np.degrees(result[0, 3]) < -85.0


def test_daytime_starts_an_hour_after_sunrise() -> None:
    # Equator, equinox, longitude 0: apparent sunrise about 06:04 local mean time
    # (06:00 - 3.3 min refraction and semi-diameter + 7.5 min equation of time).
    day = posix(2021, 3, 20)
    times = day + 3600.0 * np.array([0.0, 6.5, 7.5, 12.0, 17.5, 18.5])
    result = is_daytime(times, 0.0, 0.0)
    np.testing.assert_array_equal(result, [False, False, True, True, False, False])
    plain = is_daytime(times, 0.0, 0.0, margin_s=0.0)
    np.testing.assert_array_equal(plain, [False, True, True, True, True, False])


def test_polar_day_and_night() -> None:
    midnight_june = posix(2021, 6, 21, 0)
    assert bool(is_daytime(midnight_june, math.radians(80.0), 0.0))
    assert not bool(is_daytime(midnight_june + 12 * 3600.0, math.radians(-80.0), 0.0))


def test_latitude_in_degrees_is_refused() -> None:
    with pytest.raises(ValueError, match="latitude_rad must be within"):
        solar_elevation_rad(0.0, 25.0, 121.0)


@pytest.mark.parametrize(
    ("code", "urban", "exponent"),
    [(A, False, 0.07), (D, False, 0.15), (F, False, 0.55), (A, True, 0.15), (F, True, 0.30)],
)
def test_profile_exponents_isc3(code: StabilityClass, urban: bool, exponent: float) -> None:
    assert float(wind_profile_exponent(code, urban=urban)) == exponent


def test_power_law_profile() -> None:
    # Hand-worked: 5 m/s at 10 m, rural D (p = 0.15): 5 * 8**0.15 = 6.8302 m/s at 80 m;
    # urban F (p = 0.30): 5 * 3**0.30 = 6.9519 m/s at 30 m.
    assert_allclose(wind_speed_at_height(5.0, 10.0, 80.0, D), 6.830201, rtol=1e-6)
    assert_allclose(wind_speed_at_height(5.0, 10.0, 30.0, F, urban=True), 6.951946, rtol=1e-6)


def test_profile_is_constant_below_ten_metres() -> None:
    # ISC3: no extrapolation of the power law below 10 m, at either end.
    assert_allclose(wind_speed_at_height(4.0, 2.0, 0.5, F), 4.0)
    assert_allclose(wind_speed_at_height(4.0, 2.0, 10.0, F), 4.0)
    assert_allclose(wind_speed_at_height(4.0, 2.0, 20.0, D), 4.0 * 2.0**0.15)
    assert_allclose(wind_speed_at_height(4.0, 40.0, 0.0, D), 4.0 * 0.25**0.15)


def test_profile_broadcasts() -> None:
    heights = np.array([0.0, 10.0, 50.0, 100.0])
    classes = np.array([[A], [F]])
    result = wind_speed_at_height(3.0, 10.0, heights, classes)
    assert result.shape == (2, 4)
    assert np.all(result[1, 2:] > result[0, 2:])  # stable air has more shear
