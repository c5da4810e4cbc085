"""Tests of the wind station model: averaging, Yamartino sigma-theta, OU processes, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from pipesentinel.hardware.wind_model import (
    SIGMA_THETA_BY_STABILITY_RAD,
    YAMARTINO_COEFFICIENT,
    InstantaneousWind,
    StabilityClass,
    WindModel,
    WindModelParameters,
    WindSchedule,
    average_wind,
    circular_std,
    ornstein_uhlenbeck_path,
    ornstein_uhlenbeck_step,
    turbulence_intensity_for,
    unit_vector_mean_direction,
    window_variance_fraction,
    wrap_angle,
    yamartino_sigma_theta,
)

DEG = math.pi / 180.0


def angular_rms_about_mean(direction_rad: np.ndarray) -> float:
    """The exact (two-pass) standard deviation of directions: RMS of the wrapped deviations."""
    deviation = angle_between(direction_rad, unit_vector_mean_direction(direction_rad))
    return float(np.sqrt(np.mean(deviation**2)))


def test_yamartino_hand_worked_two_directions_across_north() -> None:
    # 350 and 10 deg: mean 0, R = cos(10 deg), eps = sin(10 deg), arcsin(eps) = 10 deg;
    # sigma = 10 deg * (1 + 0.1547 * sin(10 deg)**3) = 10.00810 deg (exact std: 10 deg).
    directions = np.array([350.0, 10.0]) * DEG
    expected = 10.0 * DEG * (1.0 + YAMARTINO_COEFFICIENT * math.sin(10.0 * DEG) ** 3)
    assert_allclose(yamartino_sigma_theta(directions), expected, rtol=1e-12)
    assert_allclose(expected / DEG, 10.00810, atol=1e-5)
    assert_allclose(YAMARTINO_COEFFICIENT, 0.1547005, atol=1e-7)


@pytest.mark.parametrize("sigma_deg", [2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0])
def test_yamartino_matches_the_exact_std_of_generated_directions(sigma_deg: float) -> None:
    rng = np.random.default_rng(int(sigma_deg))
    directions = wrap_angle(355.0 * DEG + rng.normal(0.0, sigma_deg * DEG, 100_000))
    exact = angular_rms_about_mean(directions)
    # Yamartino (1984) reports errors within ~2 % over this range; measured here <= 1.1 %.
    assert_allclose(yamartino_sigma_theta(directions), exact, rtol=0.015)
    # For wrapped-normal data the circular std returns the generating sigma.
    assert_allclose(circular_std(directions), sigma_deg * DEG, rtol=0.01)


def angle_between(first: np.ndarray | float, second: np.ndarray | float) -> np.ndarray:
    """Signed smallest difference of two angles [rad]."""
    return np.asarray(np.angle(np.exp(1j * (np.asarray(first) - np.asarray(second)))))


def test_unit_vector_mean_is_correct_across_north() -> None:
    for directions_deg, expected_deg in (
        ([350.0, 10.0], 0.0),
        ([355.0, 5.0, 15.0], 5.0),
        ([359.0, 1.0], 0.0),  # an arithmetic mean would say 180 deg
        ([340.0, 350.0], 345.0),
    ):
        mean = unit_vector_mean_direction(np.array(directions_deg) * DEG)
        assert 0.0 <= mean < 2.0 * math.pi
        assert_allclose(angle_between(mean, expected_deg * DEG), 0.0, atol=1e-12)


def test_wrap_angle_stays_below_a_full_circle() -> None:
    wrapped = wrap_angle(np.array([-1e-17, -math.pi, 2.0 * math.pi, 7.0]))
    assert np.all((wrapped >= 0.0) & (wrapped < 2.0 * math.pi))
    assert_allclose(wrapped, [0.0, math.pi, 0.0, 7.0 - 2.0 * math.pi], atol=1e-15)


def test_weights_select_the_averaging_window() -> None:
    directions = np.array([[10.0, 20.0, 200.0, 30.0]]) * DEG
    weights = np.array([[1.0, 1.0, 0.0, 1.0]])
    assert_allclose(unit_vector_mean_direction(directions, weights), [20.0 * DEG], atol=1e-12)


def test_scalar_and_vector_mean_speed() -> None:
    speed = np.array([2.0, 4.0])
    # Opposite directions: the vector mean cancels, the scalar mean does not.
    opposite = average_wind(speed, np.array([0.0, 180.0]) * DEG)
    assert_allclose(opposite.scalar_mean_speed_m_per_s, 3.0)
    assert_allclose(opposite.vector_mean_speed_m_per_s, 1.0, atol=1e-12)
    steady = average_wind(speed, np.array([270.0, 270.0]) * DEG)
    assert_allclose(steady.vector_mean_speed_m_per_s, steady.scalar_mean_speed_m_per_s)
    assert_allclose(steady.direction_from_rad, 270.0 * DEG)
    assert_allclose(steady.sigma_theta_rad, 0.0, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(
    speeds=st.lists(st.floats(0.1, 30.0), min_size=2, max_size=30),
    seed=st.integers(0, 1000),
)
def test_vector_mean_never_exceeds_scalar_mean(speeds: list[float], seed: int) -> None:
    directions = np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi, len(speeds))
    averages = average_wind(np.array(speeds), directions)
    assert averages.vector_mean_speed_m_per_s <= averages.scalar_mean_speed_m_per_s * (1 + 1e-12)
    assert 0.0 <= averages.direction_from_rad < 2.0 * math.pi
    # sigma-theta of any distribution is at most that of uniform directions, 103.9 deg.
    assert averages.sigma_theta_rad <= 180.0 / math.sqrt(3.0) * DEG + 1e-9


def test_ou_path_equals_repeated_exact_steps() -> None:
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((300, 3))
    initial = np.array([0.5, -1.0, 2.0])
    time_scales = np.array([20.0, 0.3, 150.0])  # 0.3 s: many blocks, no overflow
    path = ornstein_uhlenbeck_path(initial, 1.0, time_scales, draws)
    value = initial.copy()
    expected = []
    for draw in draws:
        value = np.array(
            [
                ornstein_uhlenbeck_step(
                    value[i : i + 1], 1.0, float(time_scales[i]), draw[i : i + 1]
                )[0]
                for i in range(3)
            ]
        )
        expected.append(value)
    assert_allclose(path, np.array(expected), rtol=1e-9, atol=1e-12)


def test_ou_is_stationary_with_the_exact_autocorrelation() -> None:
    rng = np.random.default_rng(1)
    n_paths, n_steps, time_scale = 2000, 200, 10.0
    path = ornstein_uhlenbeck_path(
        rng.standard_normal(n_paths),
        1.0,
        np.full(n_paths, time_scale),
        rng.standard_normal((n_steps, n_paths)),
    )
    assert_allclose(path.var(), 1.0, rtol=0.03)
    lag_one = np.mean(path[1:] * path[:-1])
    assert_allclose(lag_one, math.exp(-1.0 / time_scale), atol=0.02)


def test_window_variance_fraction_hand_worked() -> None:
    # A = T: 1 - 2 (1 - 1 + e**-1) = 1 - 2/e = 0.26424.
    assert_allclose(window_variance_fraction(10.0, 10.0), 1.0 - 2.0 / math.e, rtol=1e-12)
    assert window_variance_fraction(1e-3, 10.0) < 1e-3
    assert window_variance_fraction(1e6, 10.0) > 0.9999


def test_schedule_interpolates_direction_across_north_and_steps_stability() -> None:
    schedule = WindSchedule(
        time_s=np.array([0.0, 100.0]),
        speed_m_per_s=np.array([2.0, 4.0]),
        direction_from_rad=np.array([350.0, 10.0]) * DEG,
        stability_class=(StabilityClass.D, StabilityClass.F),
    )
    mean = schedule.at(np.array([0.0, 50.0, 99.0, 100.0, 500.0]))
    assert_allclose(mean.speed_m_per_s, [2.0, 3.0, 3.98, 4.0, 4.0])
    assert_allclose(
        angle_between(mean.direction_from_rad, 0.0) / DEG, [-10.0, 0.0, 9.8, 10.0, 10.0], atol=1e-9
    )
    classes = [tuple(StabilityClass)[i] for i in mean.stability_class_index]
    assert classes == [
        StabilityClass.D,
        StabilityClass.D,
        StabilityClass.D,
        StabilityClass.F,
        StabilityClass.F,
    ]
    assert_allclose(mean.sigma_theta_rad[0], SIGMA_THETA_BY_STABILITY_RAD[StabilityClass.D])
    assert_allclose(mean.turbulence_intensity[-1], turbulence_intensity_for(StabilityClass.F))


def test_schedule_rejects_bad_breakpoints() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        WindSchedule(
            time_s=np.array([0.0, 0.0]),
            speed_m_per_s=np.array([1.0, 1.0]),
            direction_from_rad=np.zeros(2),
            stability_class=(StabilityClass.D, StabilityClass.D),
        )
    with pytest.raises(ValueError, match="speed_m_per_s must be > 0"):
        WindSchedule.constant(0.0, 0.0)


def test_turbulence_intensity_of_neutral_class_is_plausible() -> None:
    # 2.4 / 1.9 * 10 deg in rad = 0.2205 (neutral surface layer, Panofsky & Dutton 1984).
    assert_allclose(turbulence_intensity_for(StabilityClass.D), 2.4 / 1.9 * 10.0 * DEG)


def run_model(
    sigma_theta_deg: float,
    *,
    seed: int = 5,
    duration_s: float = 900.0 * 24,
    averaging_s: float = 900.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    schedule = WindSchedule(
        time_s=np.array([0.0]),
        speed_m_per_s=np.array([4.0]),
        direction_from_rad=np.array([355.0 * DEG]),
        stability_class=(StabilityClass.D,),
        sigma_theta_rad=np.array([sigma_theta_deg * DEG]),
    )
    model = WindModel(
        schedule, averaging_period_s=[averaging_s, averaging_s], rng=np.random.default_rng(seed)
    )
    speeds, directions, sigmas = [], [], []
    for end in np.arange(averaging_s, duration_s + 1.0, averaging_s):
        model.advance_to(float(end))
        report = model.report()
        speeds.append(report.speed_m_per_s)
        directions.append(report.direction_from_rad)
        sigmas.append(report.sigma_theta_rad)
    return np.array(speeds), np.array(directions), np.array(sigmas)


def test_sigma_theta_grows_with_meander_amplitude_and_matches_its_target() -> None:
    means = []
    for target in (3.0, 8.0, 15.0, 25.0):
        _, _, sigmas = run_model(target)
        mean_sigma = float(np.mean(sigmas)) / DEG
        # The meander std is scaled so that the expected 15-minute sigma-theta is the target.
        assert_allclose(mean_sigma, target, rtol=0.1)
        means.append(mean_sigma)
    assert means == sorted(means)


def test_mean_speed_and_direction_follow_the_schedule() -> None:
    speeds, directions, _ = run_model(10.0)
    assert_allclose(np.mean(speeds), 4.0, rtol=0.03)  # lognormal gusts keep the mean exactly
    mean_direction = unit_vector_mean_direction(directions.ravel())
    assert abs(angle_between(mean_direction, 355.0 * DEG)) < 3.0 * DEG


def test_shorter_averaging_sees_less_meander() -> None:
    _, _, long_window = run_model(15.0, averaging_s=900.0, duration_s=900.0 * 8)
    _, _, short_window = run_model(15.0, averaging_s=60.0, duration_s=900.0 * 8)
    assert np.mean(short_window) < 0.6 * np.mean(long_window)


def make_model(seed: int) -> WindModel:
    schedule = WindSchedule(
        time_s=np.array([0.0, 600.0]),
        speed_m_per_s=np.array([3.0, 5.0]),
        direction_from_rad=np.array([80.0, 165.0]) * DEG,
        stability_class=(StabilityClass.C, StabilityClass.D),
    )
    return WindModel(
        schedule,
        averaging_period_s=[60.0, 600.0],
        rng=np.random.default_rng(seed),
        station_ids=["WS1", "WS2"],
    )


def test_same_seed_identical_whatever_the_advance_steps() -> None:
    one_go, stepped = make_model(11), make_model(11)
    one_go.advance_to(900.0)
    for end in range(10, 901, 10):
        stepped.advance_to(float(end))
    first, second = one_go.report(), stepped.report()
    assert_array_equal(first.speed_m_per_s, second.speed_m_per_s)
    assert_array_equal(first.direction_from_rad, second.direction_from_rad)
    assert_array_equal(first.sigma_theta_rad, second.sigma_theta_rad)
    assert_array_equal(one_go.true_wind().speed_m_per_s, stepped.true_wind().speed_m_per_s)
    other = make_model(12)
    other.advance_to(900.0)
    assert not np.array_equal(other.report().speed_m_per_s, first.speed_m_per_s)


def test_stations_see_correlated_but_distinct_winds() -> None:
    model = make_model(3)
    model.advance_to(300.0)
    stations = model.station_wind()
    assert stations.speed_m_per_s.shape == (2,)
    assert stations.speed_m_per_s[0] != stations.speed_m_per_s[1]
    true = model.true_wind()
    assert np.ndim(true.speed_m_per_s) == 0
    assert model.time_s == 300.0


def test_offline_and_stuck_stations() -> None:
    model = make_model(4)
    model.advance_to(100.0)
    first = model.report()
    assert first.publish.all()
    model.advance_to(800.0)  # the wind has veered by now
    stuck = model.report(offline=np.array([True, False]), stuck=np.array([False, True]))
    assert_array_equal(stuck.publish, [False, True])
    assert stuck.direction_from_rad[1] == first.direction_from_rad[1]
    assert stuck.sigma_theta_rad[1] == 0.0
    assert stuck.speed_m_per_s[1] != first.speed_m_per_s[1]


def test_velocity_points_downwind() -> None:
    wind = InstantaneousWind(
        speed_m_per_s=np.array([2.0, 3.0]), direction_from_rad=np.array([0.0, 90.0 * DEG])
    )
    # From the north: blows south; from the east: blows west.
    assert_allclose(wind.velocity_m_per_s, [[0.0, -2.0], [-3.0, 0.0]], atol=1e-12)


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="gust_spatial_correlation"):
        WindModelParameters(gust_spatial_correlation=1.5)
    with pytest.raises(ValueError, match="internal_step_s"):
        WindModelParameters(internal_step_s=0.0)
    with pytest.raises(ValueError, match="averaging_period_s"):
        WindModel(
            WindSchedule.constant(3.0, 0.0),
            averaging_period_s=[0.0],
            rng=np.random.default_rng(0),
        )
