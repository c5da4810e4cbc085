import math
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate

from pipesentinel.detection.briggs import distance_for_sigma_m, sigma_m, sigma_y_m, sigma_z_m
from pipesentinel.detection.gases import kg_per_m3_to_mole_fraction
from pipesentinel.detection.plume import plume_concentration_kg_per_m3
from pipesentinel.detection.puff import (
    Puffs,
    puff_concentration_kg_per_m3,
    puff_path_integral_mole_fraction_m,
    puffs_from_history,
    step_puffs,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.site import Gas

FROM_WEST = 1.5 * math.pi
AIR = {"temperature_k": 288.15, "pressure_pa": 101_325.0}


def steady(steps: int, step_s: float, **overrides: Any) -> Puffs:
    arguments: dict[str, Any] = {
        "sources_m": [0.0, 0.0, 2.0],
        "emission_rate_kg_per_s": np.full(steps, 0.1),
        "step_s": step_s,
        "wind_speed_m_per_s": np.full(steps, 4.0),
        "wind_direction_rad": np.full(steps, FROM_WEST),
        "stability_class": np.full(steps, StabilityClass.D),
    }
    arguments.update(overrides)
    return puffs_from_history(**arguments)


@pytest.mark.parametrize("code", [StabilityClass.B, StabilityClass.D, StabilityClass.F])
@pytest.mark.parametrize("height", [0.0, 2.0])
def test_many_puffs_of_a_steady_release_converge_to_the_plume(
    code: StabilityClass, height: float
) -> None:
    steps = 400  # 400 s at 4 m/s: the release has reached 1.6 km
    puffs = steady(steps, 1.0, stability_class=np.full(steps, code), sources_m=[0.0, 0.0, height])
    receptors = np.array([[x, y, 1.5] for x in (100.0, 200.0, 400.0, 800.0) for y in (0.0, 5.0)])
    expected = plume_concentration_kg_per_m3(
        receptors,
        (0.0, 0.0, height),
        emission_rate_kg_per_s=0.1,
        wind_speed_m_per_s=4.0,
        wind_direction_rad=FROM_WEST,
        stability_class=code,
    )
    assert_allclose(puff_concentration_kg_per_m3(receptors, puffs), expected, rtol=0.01)


def test_puff_carries_the_released_mass() -> None:
    puffs = steady(30, 2.0)
    assert puffs.total_mass_kg == pytest.approx(0.1 * 60.0)
    # Volume integral of the newest puffs' field over z >= 0 equals their mass (reflection).
    single = step_puffs(
        Puffs.empty(),
        sources_m=[0.0, 0.0, 3.0],
        emission_rate_kg_per_s=2.0,
        duration_s=30.0,
        wind_speed_m_per_s=4.0,
        wind_direction_rad=FROM_WEST,
        stability_class=StabilityClass.C,
    )
    centre = single.centre_m[0]
    sy, sz = float(single.sigma_y_m[0]), float(single.sigma_z_m[0])
    x = np.linspace(centre[0] - 7 * sy, centre[0] + 7 * sy, 141)
    y = np.linspace(-7 * sy, 7 * sy, 141)
    z = np.linspace(0.0, 3.0 + 8 * sz, 161)
    grid = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1)
    field = puff_concentration_kg_per_m3(grid, single)
    mass = integrate.trapezoid(integrate.trapezoid(integrate.trapezoid(field, z), y), x)
    assert_allclose(mass, 60.0, rtol=0.01)


def test_new_puff_sits_at_the_centroid_of_its_step() -> None:
    puffs = step_puffs(
        Puffs.empty(),
        sources_m=[10.0, 20.0, 0.0],
        emission_rate_kg_per_s=1.0,
        duration_s=10.0,
        wind_speed_m_per_s=3.0,
        wind_direction_rad=0.0,  # from the north: moves south
        stability_class=StabilityClass.D,
    )
    assert_allclose(puffs.centre_m, [[10.0, 20.0 - 15.0, 0.0]], atol=1e-12)
    assert_allclose(puffs.sigma_y_m, sigma_y_m(15.0, StabilityClass.D))
    assert_allclose(puffs.sigma_z_m, sigma_z_m(15.0, StabilityClass.D))


def test_puffs_follow_a_wind_shift() -> None:
    # 10 steps from the west, then 10 from the south: the first puffs turn north.
    steps = 20
    directions = np.where(np.arange(steps) < 10, FROM_WEST, math.pi)
    puffs = steady(steps, 10.0, wind_direction_rad=directions)
    first = puffs.centre_m[0]
    assert_allclose(first[:2], [4.0 * 95.0, 4.0 * 100.0], atol=1e-9)
    assert_allclose(puffs.travel_distance_m[0], 4.0 * 195.0)


def test_class_change_keeps_the_spread_and_continues_on_the_new_curve() -> None:
    # The first puff travels 380 m in class A (half a step, then 9 steps of 40 m), then 400 m in
    # class E, continuing from the virtual distance where E's curve has A's spread.
    steps = 20
    codes = np.where(np.arange(steps) < 10, StabilityClass.A, StabilityClass.E)
    puffs = steady(steps, 10.0, stability_class=codes)
    for vertical, sigma in ((False, puffs.sigma_y_m[0]), (True, puffs.sigma_z_m[0])):
        spread_in_a = sigma_m(380.0, StabilityClass.A, vertical=vertical)
        virtual = distance_for_sigma_m(spread_in_a, StabilityClass.E, vertical=vertical)
        expected = sigma_m(virtual + 400.0, StabilityClass.E, vertical=vertical)
        assert_allclose(sigma, expected, rtol=1e-9)
        assert sigma > spread_in_a


def test_puff_wider_than_a_saturating_curve_stops_growing_vertically() -> None:
    # Rural E sigma_z never exceeds 100 m; a puff that grew to 156 m in class A keeps that.
    codes = np.where(np.arange(40) < 20, StabilityClass.A, StabilityClass.E)
    puffs = steady(40, 10.0, stability_class=codes)
    spread_in_a = float(sigma_z_m(780.0, StabilityClass.A))
    assert spread_in_a > 100.0
    assert float(puffs.sigma_z_m[0]) == pytest.approx(spread_in_a)
    assert float(puffs.sigma_y_m[0]) > float(sigma_y_m(780.0, StabilityClass.A))


def test_calm_puff_stays_put_but_keeps_diluting() -> None:
    puffs = steady(10, 10.0, wind_speed_m_per_s=np.zeros(10))
    assert_allclose(puffs.centre_m[:, :2], 0.0)
    assert np.all(np.diff(puffs.sigma_y_m) < 0.0)  # older puffs are wider
    assert_allclose(puffs.sigma_y_m[0], sigma_y_m(95.0, StabilityClass.D))  # 1 m/s floor


def test_puffs_beyond_the_range_are_dropped() -> None:
    puffs = steady(100, 10.0, wind_speed_m_per_s=np.full(100, 20.0))
    assert puffs.travel_distance_m.max() <= 10_000.0
    assert len(puffs) < 100
    kept = steady(100, 10.0, wind_speed_m_per_s=np.full(100, 20.0), max_travel_distance_m=None)
    assert len(kept) == 100


def test_zero_rate_sources_release_nothing() -> None:
    puffs = step_puffs(
        Puffs.empty(),
        sources_m=[[0.0, 0.0, 0.0], [5.0, 5.0, 0.0]],
        emission_rate_kg_per_s=[0.0, 0.3],
        duration_s=1.0,
        wind_speed_m_per_s=2.0,
        wind_direction_rad=0.0,
        stability_class=StabilityClass.D,
    )
    assert len(puffs) == 1
    assert puffs.total_mass_kg == pytest.approx(0.3)


def test_puff_field_broadcasts_receptor_grids() -> None:
    puffs = steady(20, 5.0)
    grid = np.zeros((4, 5, 3)) + np.array([200.0, 0.0, 1.0])
    assert puff_concentration_kg_per_m3(grid, puffs).shape == (4, 5)
    assert puff_concentration_kg_per_m3([200.0, 0.0, 1.0], puffs).shape == ()
    assert_allclose(puff_concentration_kg_per_m3(grid, Puffs.empty()), 0.0)


def test_puff_path_integral_matches_brute_force() -> None:
    puffs = puffs_from_history(
        sources_m=[[0.0, 0.0, 2.0], [50.0, 20.0, 0.0]],
        emission_rate_kg_per_s=np.full((60, 2), 0.1),
        step_s=5.0,
        wind_speed_m_per_s=np.full(60, 3.0),
        wind_direction_rad=np.linspace(4.0, 5.0, 60),
        stability_class=np.full(60, StabilityClass.D),
    )
    rng = np.random.default_rng(5)
    starts = np.column_stack([rng.uniform(-300, 300, (8, 2)), rng.uniform(0, 10, 8)])
    ends = np.column_stack([rng.uniform(-300, 300, (8, 2)), rng.uniform(0, 10, 8)])
    result = puff_path_integral_mole_fraction_m(starts, ends, puffs, gas=Gas.PROPANE, **AIR)
    assert result.shape == (8,)
    s = np.linspace(0.0, 1.0, 100_001)
    for start, end, value in zip(starts, ends, result, strict=True):
        field = puff_concentration_kg_per_m3(start + s[:, np.newaxis] * (end - start), puffs)
        column = integrate.trapezoid(field, s) * float(np.linalg.norm(end - start))
        expected = kg_per_m3_to_mole_fraction(column, Gas.PROPANE, **AIR)
        assert_allclose(value, expected, rtol=1e-6, atol=1e-25)


def test_zero_length_beam_reads_zero() -> None:
    puffs = steady(5, 5.0)
    assert (
        puff_path_integral_mole_fraction_m(
            [5.0, 0.0, 1.0], [5.0, 0.0, 1.0], puffs, gas=Gas.METHANE, **AIR
        )
        == 0.0
    )


def test_bad_step_input_is_named() -> None:
    with pytest.raises(ValueError, match="wind_speed_m_per_s must be a scalar"):
        step_puffs(
            Puffs.empty(),
            sources_m=[0.0, 0.0, 0.0],
            emission_rate_kg_per_s=1.0,
            duration_s=1.0,
            wind_speed_m_per_s=np.array([1.0, 2.0]),  # type: ignore[arg-type]
            wind_direction_rad=0.0,
            stability_class=StabilityClass.D,
        )
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        step_puffs(
            Puffs.empty(),
            sources_m=[0.0, 0.0, 0.0],
            emission_rate_kg_per_s=1.0,
            duration_s=0.0,
            wind_speed_m_per_s=1.0,
            wind_direction_rad=0.0,
            stability_class=StabilityClass.D,
        )
    with pytest.raises(ValueError, match=r"Puffs.centre_m must have shape \(P, 3\)"):
        Puffs(
            np.zeros(3),
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
        )
    with pytest.raises(ValueError, match="wind_direction_rad must have shape"):
        steady(5, 1.0, wind_direction_rad=np.zeros(4))
