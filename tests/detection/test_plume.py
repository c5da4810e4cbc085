import math
import multiprocessing
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy import integrate

from pipesentinel.detection._arrays import evaluate_blocked
from pipesentinel.detection.briggs import sigma_y_m, sigma_z_m
from pipesentinel.detection.gases import kg_per_m3_to_mole_fraction
from pipesentinel.detection.plume import (
    gaussian_plume_kg_per_m3,
    plume_concentration_kg_per_m3,
    plume_path_integral_mole_fraction_m,
    plume_validity,
    transport_wind_speed_m_per_s,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.site import Gas

FROM_WEST = 1.5 * math.pi  # wind blowing from the west carries the plume east (+x)
FROM_NORTH = 0.0
AIR = {"temperature_k": 288.15, "pressure_pa": 101_325.0}


def east_of(distance_m: Any, crosswind_m: Any = 0.0, height_m: Any = 0.0) -> np.ndarray:
    """Receptors downwind of a source at the origin when the wind is from the west."""
    x, y, z = np.broadcast_arrays(
        np.asarray(distance_m, float), np.asarray(crosswind_m, float), np.asarray(height_m, float)
    )
    return np.stack([x, y, z], axis=-1)


def plume(receptors: Any, source: Any = (0.0, 0.0, 0.0), **overrides: Any) -> np.ndarray:
    arguments: dict[str, Any] = {
        "emission_rate_kg_per_s": 1.0,
        "wind_speed_m_per_s": 5.0,
        "wind_direction_rad": FROM_WEST,
        "stability_class": StabilityClass.D,
    }
    arguments.update(overrides)
    return plume_concentration_kg_per_m3(receptors, source, **arguments)


# --- Worked values -------------------------------------------------------------------------------


def test_turner_workbook_example() -> None:
    # Turner (1970), Workbook of Atmospheric Dispersion Estimates, Example 1 (ch. 3): a burning
    # dump emits 3 g/s NOx; ground-level source, receptor 3 km downwind on the ground, overcast
    # night, 7 m/s -> class D, sigma_y = 190 m, sigma_z = 65 m; chi = Q / (pi sigma_y sigma_z u)
    # = 1.1e-5 g m-3.
    chi = gaussian_plume_kg_per_m3(
        emission_rate_kg_per_s=3e-3,
        wind_speed_m_per_s=7.0,
        crosswind_m=0.0,
        height_m=0.0,
        release_height_m=0.0,
        sigma_y_m=190.0,
        sigma_z_m=65.0,
    )
    assert_allclose(chi * 1e3, 1.1e-5, rtol=0.01)
    # The same release with Briggs' open-country D curves (210 m, 77 m at 3 km): 8.4e-6 g m-3.
    briggs = plume(east_of(3000.0), emission_rate_kg_per_s=3e-3, wind_speed_m_per_s=7.0)
    assert_allclose(briggs * 1e3, 3.0 / (math.pi * 210.4826 * 76.7580 * 7.0), rtol=1e-4)


def test_elevated_release_hand_worked() -> None:
    # Hand-worked: Q = 0.1 kg/s, h = 20 m, u = 4 m/s (anemometer at 20 m), class C, x = 500 m:
    # sigma_y = 0.11*500/sqrt(1.05) = 53.67 m, sigma_z = 0.08*500/sqrt(1.1) = 38.14 m;
    # ground level on the axis: C = Q/(pi u sy sz) exp(-h^2/(2 sz^2)) = 3.388e-6 kg m-3; at
    # y = 30 m, z = 10 m: Q/(2 pi u sy sz) exp(-y^2/2sy^2) [exp(-(z-h)^2/2sz^2)
    # + exp(-(z+h)^2/2sz^2)] = 2.827e-6 kg m-3.
    sy, sz = 0.11 * 500.0 / math.sqrt(1.05), 0.08 * 500.0 / math.sqrt(1.1)
    q, u, h = 0.1, 4.0, 20.0
    on_axis = q / (math.pi * u * sy * sz) * math.exp(-(h**2) / (2 * sz**2))
    off_axis = (
        q
        / (2 * math.pi * u * sy * sz)
        * math.exp(-(30.0**2) / (2 * sy**2))
        * (math.exp(-((10.0 - h) ** 2) / (2 * sz**2)) + math.exp(-((10.0 + h) ** 2) / (2 * sz**2)))
    )
    result = plume(
        east_of(500.0, [0.0, 30.0], [0.0, 10.0]),
        (0.0, 0.0, h),
        emission_rate_kg_per_s=q,
        wind_speed_m_per_s=u,
        anemometer_height_m=h,
        stability_class=StabilityClass.C,
    )
    assert_allclose(result, [on_axis, off_axis], rtol=1e-6)


# --- Invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(StabilityClass))
@pytest.mark.parametrize("urban", [False, True])
@pytest.mark.parametrize("distance", [30.0, 500.0, 5000.0])
def test_crosswind_integrated_flux_equals_emission(
    code: StabilityClass, urban: bool, distance: float
) -> None:
    # Elevated release with reflection: integral over y and z >= 0 of C u equals Q.
    height, speed, rate = 15.0, 4.0, 2.0
    sy = float(sigma_y_m(distance, code, urban=urban))
    sz = float(sigma_z_m(distance, code, urban=urban))
    y = np.linspace(-8.0 * sy, 8.0 * sy, 801)
    z = np.linspace(0.0, height + 9.0 * sz, 1201)
    grid = east_of(distance, y[:, np.newaxis], z)
    concentration = plume(
        grid,
        (0.0, 0.0, height),
        emission_rate_kg_per_s=rate,
        wind_speed_m_per_s=speed,
        anemometer_height_m=height,
        stability_class=code,
        urban=urban,
    )
    flux = speed * integrate.trapezoid(integrate.trapezoid(concentration, z, axis=1), y)
    assert_allclose(flux, rate, rtol=0.01)


def test_upwind_and_source_plane_are_exactly_zero() -> None:
    receptors = east_of([-100.0, -1e-9, 0.0, 1e-6], 0.0, 0.0)
    result = plume(receptors)
    np.testing.assert_array_equal(result[:3], 0.0)
    assert result[3] > 0.0


def test_wind_direction_is_where_the_wind_comes_from() -> None:
    # A north wind (from 0 rad) carries the gas south.
    south, north = plume([[0.0, -200.0, 0.0], [0.0, 200.0, 0.0]], wind_direction_rad=FROM_NORTH)
    assert south > 0.0
    assert north == 0.0
    # A north-east wind (from pi/4) carries it south-west.
    diagonal = plume([-100.0, -100.0, 0.0], wind_direction_rad=math.pi / 4)
    assert_allclose(diagonal, plume(east_of(100.0 * math.sqrt(2.0))), rtol=1e-12)


def test_ground_level_centreline_decreases_downwind() -> None:
    x = np.geomspace(1.0, 20_000.0, 400)
    for urban in (False, True):
        result = plume(east_of(x), stability_class=np.arange(6)[:, np.newaxis], urban=urban)
        assert np.all(np.diff(result, axis=1) < 0.0)


def test_elevated_release_peaks_then_decreases() -> None:
    x = np.geomspace(10.0, 20_000.0, 600)
    result = plume(east_of(x), (0.0, 0.0, 30.0))
    peak = int(np.argmax(result))
    assert 0 < peak < x.size - 1
    assert np.all(np.diff(result[peak:]) < 0.0)
    rising = result[: peak + 1]
    assert np.all(np.diff(rising) >= 0.0)  # exactly 0 where exp() is below its floor
    assert np.all(np.diff(rising[rising > 0.0]) > 0.0)


def test_initial_spread_lowers_the_near_field_only() -> None:
    near, far = east_of([5.0, 3000.0])
    point = plume(np.stack([near, far]))
    spread = plume(np.stack([near, far]), initial_sigma_y_m=2.0, initial_sigma_z_m=1.0)
    assert spread[0] < 0.2 * point[0]
    assert_allclose(spread[1], point[1], rtol=0.01)


def test_wind_below_one_metre_per_second_is_floored() -> None:
    calm = plume(east_of(200.0), wind_speed_m_per_s=0.2)
    one = plume(east_of(200.0), wind_speed_m_per_s=1.0)
    assert_allclose(calm, one)


def test_transport_wind_uses_the_profile_above_ten_metres() -> None:
    # 3 m/s at 10 m, release at 40 m, rural E (p = 0.35): u = 3 * 4**0.35.
    speed = transport_wind_speed_m_per_s(3.0, 40.0, StabilityClass.E)
    assert_allclose(speed, 3.0 * 4.0**0.35)
    low = plume(
        east_of(300.0, 0.0, 40.0),
        (0.0, 0.0, 40.0),
        stability_class=StabilityClass.E,
        wind_speed_m_per_s=3.0,
    )
    reference = plume(
        east_of(300.0, 0.0, 40.0),
        (0.0, 0.0, 40.0),
        stability_class=StabilityClass.E,
        wind_speed_m_per_s=float(speed),
        anemometer_height_m=40.0,
    )
    assert_allclose(low, reference, rtol=1e-12)


def test_matches_bare_formula_with_briggs_sigmas() -> None:
    # Elevated source and receptors: checks the float32 image factor to its stated bound.
    rng = np.random.default_rng(7)
    x = rng.uniform(1.0, 3000.0, 500)
    y = rng.normal(0.0, 0.5, 500) * sigma_y_m(x, StabilityClass.B)
    z = rng.uniform(0.0, 40.0, 500)
    result = plume(
        east_of(x, y, z),
        (0.0, 0.0, 12.0),
        stability_class=StabilityClass.B,
        anemometer_height_m=12.0,
    )
    expected = gaussian_plume_kg_per_m3(
        emission_rate_kg_per_s=1.0,
        wind_speed_m_per_s=5.0,
        crosswind_m=y,
        height_m=z,
        release_height_m=12.0,
        sigma_y_m=sigma_y_m(x, StabilityClass.B),
        sigma_z_m=sigma_z_m(x, StabilityClass.B),
    )
    assert_allclose(result, expected, rtol=2e-7)


# --- Broadcasting -------------------------------------------------------------------------------


def test_receptors_by_sources_matrix() -> None:
    rng = np.random.default_rng(1)
    receptors = np.column_stack([rng.uniform(-500, 500, (40, 2)), rng.uniform(0, 3, 40)])
    sources = np.column_stack([rng.uniform(-200, 200, (7, 2)), rng.uniform(0, 2, 7)])
    rates = rng.uniform(0.01, 1.0, 7)
    classes = rng.integers(0, 6, 7)
    matrix = plume(
        receptors[:, np.newaxis, :], sources, emission_rate_kg_per_s=rates, stability_class=classes
    )
    assert matrix.shape == (40, 7)
    for j in range(7):
        column = plume(
            receptors, sources[j], emission_rate_kg_per_s=rates[j], stability_class=classes[j]
        )
        assert_allclose(matrix[:, j], column, rtol=1e-12)


@pytest.mark.parametrize(
    ("receptor_shape", "source_shape", "parameter_shape", "expected"),
    [
        ((3,), (3,), (), ()),
        ((5, 3), (3,), (), (5,)),
        ((4, 6, 3), (3,), (), (4, 6)),
        ((5, 1, 3), (2, 3), (2,), (5, 2)),
        ((5, 1, 3), (3,), (4,), (5, 4)),  # one source, four wind speeds
        ((3,), (8, 3), (8,), (8,)),
    ],
)
def test_output_shapes(
    receptor_shape: tuple[int, ...],
    source_shape: tuple[int, ...],
    parameter_shape: tuple[int, ...],
    expected: tuple[int, ...],
) -> None:
    receptors = np.full(receptor_shape, 1.0) * np.array([100.0, 5.0, 1.0])
    sources = np.zeros(source_shape)
    speeds = np.full(parameter_shape, 3.0)
    assert plume(receptors, sources, wind_speed_m_per_s=speeds).shape == expected


def test_blocked_evaluation_equals_small_evaluations() -> None:
    rng = np.random.default_rng(3)
    receptors = np.column_stack(
        [rng.uniform(-2000, 2000, (300_000, 2)), rng.uniform(0, 5, 300_000)]
    )
    big = plume(receptors, (10.0, -20.0, 1.0))
    pieces = np.concatenate(
        [plume(part, (10.0, -20.0, 1.0)) for part in np.array_split(receptors, 97)]
    )
    np.testing.assert_array_equal(big, pieces)


def test_superposition_of_sources() -> None:
    receptors = east_of(np.linspace(10.0, 2000.0, 50), 3.0, 1.0)
    sources = np.array([[0.0, 0.0, 0.0], [-50.0, 10.0, 2.0]])
    matrix = plume(receptors[:, np.newaxis, :], sources)
    total = plume(receptors, sources[0]) + plume(receptors, sources[1])
    assert_allclose(matrix.sum(axis=1), total, rtol=1e-12)


# --- Fast path against the textbook formula, threads, blocks -----------------------------------


def textbook_field(
    receptors: np.ndarray,
    sources: np.ndarray,
    *,
    direction: float,
    codes: np.ndarray,
    urban: np.ndarray,
    spread_y: float,
    spread_z: float,
) -> np.ndarray:
    """The float64 reference: rotation, Briggs sigmas, floor and the bare formula with two exps."""
    east = receptors[..., 0] - sources[..., 0]
    north = receptors[..., 1] - sources[..., 1]
    x = -east * math.sin(direction) - north * math.cos(direction)
    y = -north * math.sin(direction) + east * math.cos(direction)
    downwind = x > 0.0
    x = np.where(downwind, x, 1.0)
    sy = np.sqrt(sigma_y_m(x, codes, urban=urban) ** 2 + spread_y**2)
    sz = np.sqrt(sigma_z_m(x, codes, urban=urban) ** 2 + spread_z**2)
    speed = np.maximum(transport_wind_speed_m_per_s(4.0, sources[..., 2], codes, urban=urban), 1.0)
    chi = gaussian_plume_kg_per_m3(
        emission_rate_kg_per_s=0.3,
        wind_speed_m_per_s=speed,
        crosswind_m=y,
        height_m=receptors[..., 2],
        release_height_m=sources[..., 2],
        sigma_y_m=sy,
        sigma_z_m=sz,
    )
    return np.where(downwind, chi, 0.0)


@pytest.mark.parametrize("spread", [(0.0, 0.0), (1.5, 0.7)])
@pytest.mark.parametrize("release_height", [0.0, 6.0])
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("upwind_limit", [-200.0, -1500.0])
def test_fast_path_equals_float64_reference(
    spread: tuple[float, float], release_height: float, mixed: bool, upwind_limit: float
) -> None:
    # 2000 receptors (a ninth or a half of them upwind: every pair computed, or only the
    # downwind ones) x 12 sources covering every class and land use: mixed=False evaluates one
    # class per call (the 2c = 0, -1, -2, +1 specialisations), mixed=True all of them in one
    # call (the general power). The float32 image factor bounds the relative error at 1.7e-7
    # (docs/physics.md); everything else is float64.
    rng = np.random.default_rng(5)
    receptors = np.column_stack(
        [
            rng.uniform(upwind_limit, 1500.0, 2000),
            rng.normal(0.0, 150.0, 2000),
            rng.uniform(0, 20, 2000),
        ]
    )
    codes = np.tile(np.arange(6), 2)
    urban = np.repeat([False, True], 6)
    sources = np.column_stack([rng.uniform(-20, 20, (12, 2)), np.full(12, release_height)])
    direction = FROM_WEST + 0.1
    arguments: dict[str, Any] = {
        "emission_rate_kg_per_s": 0.3,
        "wind_speed_m_per_s": 4.0,
        "wind_direction_rad": direction,
        "initial_sigma_y_m": spread[0],
        "initial_sigma_z_m": spread[1],
    }
    if mixed:
        result = plume_concentration_kg_per_m3(
            receptors[:, np.newaxis, :], sources, stability_class=codes, urban=urban, **arguments
        )
    else:
        result = np.column_stack(
            [
                plume_concentration_kg_per_m3(
                    receptors, sources[j], stability_class=codes[j], urban=urban[j], **arguments
                )
                for j in range(12)
            ]
        )
    expected = textbook_field(
        receptors[:, np.newaxis, :],
        sources,
        direction=direction,
        codes=codes,
        urban=urban,
        spread_y=spread[0],
        spread_z=spread[1],
    )
    peak = float(expected.max())
    significant = expected > 1e-6 * peak
    assert np.count_nonzero(significant) > 3000
    relative = np.abs(result[significant] / expected[significant] - 1.0)
    assert float(relative.max()) < (2e-7 if release_height > 0.0 else 1e-13)
    # Below 1e-6 of the peak: the same to 2e-7 too, except exponents under -500 (exactly 0 here).
    assert_allclose(result[~significant], expected[~significant], rtol=2e-7, atol=1e-200)
    np.testing.assert_array_equal(result[expected == 0.0], 0.0)


def test_result_does_not_depend_on_thread_count() -> None:
    # Blocks are computed identically whichever thread takes them: equal bit for bit.
    rng = np.random.default_rng(9)
    receptors = np.column_stack(
        [rng.uniform(-2000, 2000, (300_000, 2)), rng.uniform(0, 5, 300_000)]
    )
    sources = np.column_stack([rng.uniform(-300, 300, (40, 2)), rng.uniform(0, 4, 40)])
    classes = rng.integers(0, 6, 40)
    single = [plume(receptors, (10.0, -20.0, 1.0), threads=threads) for threads in (1, 2, 3, None)]
    matrix = [
        plume(receptors[:5000, np.newaxis, :], sources, stability_class=classes, threads=threads)
        for threads in (1, 2, 3, None)
    ]
    for result in single[1:]:
        np.testing.assert_array_equal(result, single[0])
    for result in matrix[1:]:
        np.testing.assert_array_equal(result, matrix[0])


def test_compressed_blocks_equal_full_blocks() -> None:
    # Downwind receptors alone (every pair computed) and interleaved with as many upwind ones
    # (only the downwind pairs computed, then scattered): the same values.
    x = np.geomspace(1.0, 5000.0, 4000)
    spread = np.linspace(-1.0, 1.0, 4000)
    downwind = east_of(x, 0.05 * x * spread, 2.0 + 0.02 * x * np.abs(spread))
    mixed = np.empty((8000, 3))
    mixed[0::2] = downwind
    mixed[1::2] = downwind * np.array([-1.0, 1.0, 1.0])
    source = (0.0, 0.0, 2.0)
    alone = plume(downwind, source)
    interleaved = plume(mixed, source)
    assert np.all(alone > 0.0)
    assert_allclose(interleaved[0::2], alone, rtol=1e-15, atol=0.0)
    np.testing.assert_array_equal(interleaved[1::2], 0.0)


def _child_evaluates(receptors: np.ndarray, expected: np.ndarray) -> None:
    result = plume(receptors, (10.0, -20.0, 1.0), threads=2)
    raise SystemExit(0 if np.array_equal(result, expected) else 3)


def test_forked_child_evaluates_with_threads() -> None:
    # The parent's pool threads do not exist in a forked child (e.g. a pre-forking server): the
    # child must neither wait for them forever nor compute anything differently.
    receptors = np.column_stack(
        [np.linspace(-2000, 2000, 400_000), np.linspace(-50, 50, 400_000), np.ones(400_000)]
    )
    expected = plume(receptors, (10.0, -20.0, 1.0), threads=2)  # the parent's pool exists now
    child = multiprocessing.get_context("fork").Process(
        target=_child_evaluates, args=(receptors, expected)
    )
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's thread pool")
    assert child.exitcode == 0


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (0, float("nan"), r"receptors_m must be finite; 1 value\(s\) are not, e\.g\. nan"),
        (1, -float("inf"), r"receptors_m must be finite; 1 value\(s\) are not, e\.g\. -inf"),
        (2, float("inf"), r"receptors_m must be finite; 1 value\(s\) are not, e\.g\. inf"),
        (2, float("nan"), r"receptors_m must be finite"),
        (2, -0.5, r"receptors_m: height .* 1 point\(s\) are below ground, e\.g\. -0\.5 m"),
    ],
)
@pytest.mark.parametrize("row", [3, 250_123])
def test_bad_receptor_in_any_block_is_named(
    column: int, value: float, message: str, row: int
) -> None:
    # Large fields are checked block by block (in the threads): a bad value anywhere, upwind or
    # down, is still found and named, with the count of bad values in the whole array.
    rng = np.random.default_rng(4)
    receptors = np.column_stack([rng.uniform(-900, 900, (300_000, 2)), rng.uniform(0, 4, 300_000)])
    receptors[row, column] = value
    with pytest.raises(ValueError, match=message):
        plume(receptors, (0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=message):  # the matrix form checks receptors up front
        plume(
            receptors[:2000, np.newaxis, :] if row < 2000 else receptors[row:, np.newaxis, :],
            np.zeros((3, 3)),
        )


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")
def test_overflowing_block_check_is_not_an_error() -> None:
    # Finite coordinates so large that a block's check sum overflows: checked exactly, accepted.
    receptors = np.array([[1.5e308, 0.0, 1.0], [1.5e308, 0.0, 2.0], [100.0, 0.0, 1.0]])
    result = plume(receptors)
    assert np.all(np.isfinite(result))
    assert_allclose(result[2], plume(receptors[2]), rtol=0.0)


@pytest.mark.parametrize("threads", [0, -2, 1.5, True, "2"])
def test_bad_thread_count_is_named(threads: Any) -> None:
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        plume(east_of(100.0), threads=threads)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        beam([-500.0, -100.0, 1.0], [-10.0, 100.0, 1.0], threads=threads)


def test_blocked_evaluation_reraises_an_error_from_any_thread() -> None:
    values = np.arange(200_000, dtype=np.float64)

    def kernel(out: np.ndarray, array: np.ndarray) -> None:
        if np.any(array == 150_000.0):
            raise ArithmeticError("bad block")
        out[...] = 2.0 * array

    doubled = evaluate_blocked(kernel, [values[:100_000]], (100_000,), threads=2)
    np.testing.assert_array_equal(doubled, 2.0 * values[:100_000])
    for threads in (1, 2, 4):
        with pytest.raises(ArithmeticError, match="bad block"):
            evaluate_blocked(kernel, [values], (200_000,), block_elements=1000, threads=threads)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"receptors": [0.0, 0.0, -1.0]}, "receptors_m: height .* below ground"),
        ({"receptors": [0.0, 0.0]}, r"receptors_m must have shape \(\.\.\., 3\)"),
        ({"source": [0.0, 0.0, -2.0]}, "sources_m: height"),
        ({"stability_class": 7}, "stability_class must be in 0..5"),
        ({"emission_rate_kg_per_s": -1.0}, "emission_rate_kg_per_s must be >= 0"),
        ({"wind_speed_m_per_s": float("nan")}, "wind_speed_m_per_s must be finite"),
        ({"anemometer_height_m": 0.0}, "anemometer_height_m must be > 0"),
        ({"source": np.zeros((4, 3)), "wind_speed_m_per_s": np.ones(3)}, "shapes do not broadcast"),
    ],
)
def test_bad_input_is_named(overrides: dict[str, Any], message: str) -> None:
    receptors = overrides.pop("receptors", [100.0, 0.0, 0.0])
    source = overrides.pop("source", [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=message):
        plume(receptors, source, **overrides)


# --- Properties ---------------------------------------------------------------------------------

coordinates = st.floats(min_value=-5000.0, max_value=5000.0)
heights = st.floats(min_value=0.0, max_value=100.0)
classes = st.integers(min_value=0, max_value=5)


@given(
    x=coordinates,
    y=coordinates,
    z=heights,
    h=heights,
    code=classes,
    urban=st.booleans(),
    direction=st.floats(min_value=0.0, max_value=2.0 * math.pi),
    speed=st.floats(min_value=0.0, max_value=30.0),
)
def test_concentration_is_non_negative_and_finite(
    *,
    x: float,
    y: float,
    z: float,
    h: float,
    code: int,
    urban: bool,
    direction: float,
    speed: float,
) -> None:
    result = plume(
        [x, y, z],
        [0.0, 0.0, h],
        stability_class=code,
        urban=urban,
        wind_direction_rad=direction,
        wind_speed_m_per_s=speed,
    )
    assert np.isfinite(result)
    assert result >= 0.0


@given(
    x=st.floats(min_value=0.1, max_value=5000.0),
    y=st.floats(min_value=0.0, max_value=2000.0),
    z=heights,
    h=heights,
    code=classes,
    urban=st.booleans(),
)
def test_crosswind_symmetry(
    *, x: float, y: float, z: float, h: float, code: int, urban: bool
) -> None:
    # Wind from the north: the plume frame is exact in floating point (x south, y east).
    left, right = plume(
        [[y, -x, z], [-y, -x, z]],
        (0.0, 0.0, h),
        stability_class=code,
        urban=urban,
        wind_direction_rad=FROM_NORTH,
    )
    assert left == right


@given(
    x=st.floats(min_value=-5000.0, max_value=0.0),
    y=coordinates,
    z=heights,
    code=classes,
    direction=st.floats(min_value=0.0, max_value=2.0 * math.pi),
)
def test_upwind_is_zero(x: float, y: float, z: float, code: int, direction: float) -> None:
    # Place the receptor at or behind the source's crosswind plane in the plume's own frame.
    downwind = np.array([-math.sin(direction), -math.cos(direction)])
    crosswind = np.array([-downwind[1], downwind[0]])
    east, north = x * downwind + y * crosswind
    if east * downwind[0] + north * downwind[1] > 0.0:  # rounding put it a hair downwind
        return
    assert plume([east, north, z], stability_class=code, wind_direction_rad=direction) == 0.0


# --- Validity flags -----------------------------------------------------------------------------


def validity(receptors: Any, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "emission_rate_kg_per_s": 0.001,
        "wind_speed_m_per_s": 5.0,
        "wind_direction_rad": FROM_WEST,
        "stability_class": StabilityClass.D,
        "gas": Gas.METHANE,
        **AIR,
    }
    arguments.update(overrides)
    return plume_validity(receptors, (0.0, 0.0, 0.0), **arguments)


def test_validity_flags_distance_limits() -> None:
    flags = validity(east_of([-50.0, 50.0, 500.0, 20_000.0]))
    np.testing.assert_array_equal(flags.near_source, [False, True, False, False])
    np.testing.assert_array_equal(flags.beyond_range, [False, False, False, True])
    np.testing.assert_array_equal(flags.valid, [True, False, True, False])


def test_validity_flags_wind_and_stability() -> None:
    receptors = east_of(500.0)
    assert bool(validity(receptors, wind_speed_m_per_s=0.5).wind_speed_floored)
    low = validity(receptors, wind_speed_m_per_s=1.2)
    assert bool(low.low_wind)
    assert not bool(low.wind_speed_floored)
    assert not bool(validity(receptors, wind_speed_m_per_s=1.4).low_wind)  # 3 mph = 1.341 m/s
    assert bool(validity(receptors, stability_class=StabilityClass.F).very_stable)
    assert not bool(validity(receptors, stability_class=StabilityClass.E).very_stable)


def test_validity_flags_dense_propane_not_methane() -> None:
    receptors = east_of([500.0, 800.0])
    propane = validity(receptors, gas=Gas.PROPANE, emission_rate_kg_per_s=0.5)
    methane = validity(receptors, gas=Gas.METHANE, emission_rate_kg_per_s=0.5)
    np.testing.assert_array_equal(propane.dense_gas, [True, True])
    np.testing.assert_array_equal(methane.dense_gas, [False, False])
    assert not np.any(propane.valid)


def test_validity_broadcasts_like_the_concentration() -> None:
    receptors = np.zeros((6, 1, 3)) + np.array([300.0, 0.0, 1.0])
    sources = np.zeros((4, 3))
    # Propane at 10 m/s: 1e-5 kg/s gives (g' q0 / D)^(1/3) / U10 = 0.034 (passive), 1 kg/s 0.23.
    flags = plume_validity(
        receptors,
        sources,
        emission_rate_kg_per_s=np.array([1e-5, 1e-5, 1.0, 1.0]),
        wind_speed_m_per_s=10.0,
        wind_direction_rad=FROM_WEST,
        stability_class=StabilityClass.D,
        gas=Gas.PROPANE,
        **AIR,
    )
    assert flags.dense_gas.shape == flags.near_source.shape == (6, 4)
    np.testing.assert_array_equal(flags.dense_gas[0], [False, False, True, True])


# --- Path integral ------------------------------------------------------------------------------


def brute_force_path_integral(
    start: np.ndarray, end: np.ndarray, samples: int, **kwargs: Any
) -> float:
    s = np.linspace(0.0, 1.0, samples)
    concentration = plume(start + s[:, np.newaxis] * (end - start), **kwargs)
    column = integrate.trapezoid(concentration, s) * float(np.linalg.norm(end - start))
    return float(kg_per_m3_to_mole_fraction(column, Gas.METHANE, **AIR))


def beam(start: Any, end: Any, **overrides: Any) -> np.ndarray:
    arguments: dict[str, Any] = {
        "emission_rate_kg_per_s": 1.0,
        "wind_speed_m_per_s": 5.0,
        "wind_direction_rad": FROM_WEST,
        "stability_class": StabilityClass.D,
        "gas": Gas.METHANE,
        **AIR,
    }
    source = overrides.pop("source", (0.0, 0.0, 0.0))
    arguments.update(overrides)
    return plume_path_integral_mole_fraction_m(start, end, source, **arguments)


def test_crosswind_beam_equals_crosswind_integral() -> None:
    # A horizontal beam across the plume at ground level, 400 m downwind: the integral over y of
    # C is Q / (sqrt(2 pi) u sigma_z) * 2 exp(0) / 2 ... = 2 Q / (sqrt(2 pi) u sigma_z) for h = 0.
    sz = float(sigma_z_m(400.0, StabilityClass.D))
    expected_kg_per_m2 = 2.0 / (math.sqrt(2.0 * math.pi) * 5.0 * sz)
    result = beam([400.0, -2000.0, 0.0], [400.0, 2000.0, 0.0])
    expected = kg_per_m3_to_mole_fraction(expected_kg_per_m2, Gas.METHANE, **AIR)
    assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_path_integral_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    start = np.array([*rng.uniform(-300.0, 300.0, 2), rng.uniform(0.0, 15.0)])
    end = np.array([*rng.uniform(-300.0, 300.0, 2), rng.uniform(0.0, 15.0)])
    kwargs: dict[str, Any] = {
        "wind_direction_rad": rng.uniform(0.0, 2.0 * math.pi),
        "stability_class": int(rng.integers(0, 6)),
        "source": (0.0, 0.0, float(rng.choice([0.0, 2.0]))),
    }
    result = float(beam(start, end, **kwargs))
    source = kwargs.pop("source")
    expected = brute_force_path_integral(start, end, 400_001, source=source, **kwargs)
    assert_allclose(result, expected, rtol=1e-4, atol=1e-18)


def test_path_integral_beam_grazing_the_source() -> None:
    # A beam passing 1.5 m downwind of a ground-level source, where the plume is ~10 cm wide,
    # against adaptive quadrature (QUADPACK) told where the peak is.
    start, end = np.array([1.5, -100.0, 0.3]), np.array([1.5, 100.0, 0.0])
    result = float(beam(start, end, stability_class=StabilityClass.F))
    length = float(np.linalg.norm(end - start))

    def concentration(s: float) -> float:
        return float(plume(start + s * (end - start), stability_class=StabilityClass.F))

    column, _ = integrate.quad(concentration, 0.0, 1.0, points=[0.5], limit=500, epsabs=0.0)
    expected = float(kg_per_m3_to_mole_fraction(column * length, Gas.METHANE, **AIR))
    assert_allclose(result, expected, rtol=1e-6)


def test_path_integral_along_the_plume_axis() -> None:
    # A beam along the axis, starting 2 m downwind: dominated by the near field.
    start, end = np.array([2.0, 0.0, 1.0]), np.array([600.0, 0.0, 1.0])
    result = float(beam(start, end, source=(0.0, 0.0, 1.0)))

    def concentration(s: float) -> float:
        return float(plume(start + s * (end - start), (0.0, 0.0, 1.0)))

    column, _ = integrate.quad(concentration, 0.0, 1.0, limit=500, epsabs=0.0)
    expected = float(kg_per_m3_to_mole_fraction(column * 598.0, Gas.METHANE, **AIR))
    assert_allclose(result, expected, rtol=1e-6)


def test_path_integral_broadcasts_beams_by_sources() -> None:
    rng = np.random.default_rng(11)
    starts = np.column_stack([rng.uniform(-300, 300, (5, 2)), np.full(5, 8.0)])
    ends = np.column_stack([rng.uniform(-300, 300, (5, 2)), np.zeros(5)])
    sources = np.column_stack([rng.uniform(-100, 100, (3, 2)), np.zeros(3)])
    rates = np.array([0.1, 0.2, 0.3])
    matrix = beam(
        starts[:, np.newaxis, :],
        ends[:, np.newaxis, :],
        source=sources,
        emission_rate_kg_per_s=rates,
    )
    assert matrix.shape == (5, 3)
    for j in range(3):
        column = beam(starts, ends, source=sources[j], emission_rate_kg_per_s=rates[j])
        assert_allclose(matrix[:, j], column, rtol=1e-12)


def test_upwind_beam_reads_zero() -> None:
    assert beam([-500.0, -100.0, 1.0], [-10.0, 100.0, 1.0]) == 0.0


@settings(max_examples=30, deadline=None)
@given(
    x0=st.floats(min_value=-400.0, max_value=400.0),
    y0=st.floats(min_value=-400.0, max_value=400.0),
    x1=st.floats(min_value=-400.0, max_value=400.0),
    y1=st.floats(min_value=-400.0, max_value=400.0),
    code=classes,
)
def test_path_integral_is_non_negative_and_reversible(
    x0: float, y0: float, x1: float, y1: float, code: int
) -> None:
    forward = beam([x0, y0, 5.0], [x1, y1, 0.5], stability_class=code)
    backward = beam([x1, y1, 0.5], [x0, y0, 5.0], stability_class=code)
    assert forward >= 0.0
    assert_allclose(forward, backward, rtol=1e-6, atol=1e-30)
