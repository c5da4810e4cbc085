import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.briggs import (
    SIGMA_Y_COEFFICIENTS,
    SIGMA_Z_COEFFICIENTS,
    distance_for_sigma_m,
    scaled_inverse_sigma_squared,
    sigma_m,
    sigma_squared,
    sigma_y_m,
    sigma_z_m,
    uniform_twice_exponent,
)
from pipesentinel.detection.stability import StabilityClass

# Briggs (1973) formulas of Seinfeld & Pandis Table 18.3 evaluated by hand at x = 1 km,
# e.g. rural C: sigma_y = 0.11 * 1000 / sqrt(1.1) = 104.88 m, sigma_z = 0.08 * 1000 / sqrt(1.2)
# = 73.03 m; rural E: sigma_z = 0.03 * 1000 / 1.3 = 23.08 m; urban A-B: sigma_z = 0.24 * 1000 *
# sqrt(2) = 339.41 m.
RURAL_1KM = {
    StabilityClass.A: (209.7618, 200.0),
    StabilityClass.B: (152.5540, 120.0),
    StabilityClass.C: (104.8809, 73.0297),
    StabilityClass.D: (76.2770, 37.9473),
    StabilityClass.E: (57.2078, 23.0769),
    StabilityClass.F: (38.1385, 12.3077),
}
URBAN_1KM = {
    StabilityClass.A: (270.4494, 339.4113),
    StabilityClass.B: (270.4494, 339.4113),
    StabilityClass.C: (185.9339, 200.0),
    StabilityClass.D: (135.2247, 122.7881),
    StabilityClass.E: (92.9670, 50.5964),
    StabilityClass.F: (92.9670, 50.5964),
}


@pytest.mark.parametrize(("urban", "table"), [(False, RURAL_1KM), (True, URBAN_1KM)])
def test_briggs_sigmas_at_one_kilometre(
    urban: bool, table: dict[StabilityClass, tuple[float, float]]
) -> None:
    classes = np.array(list(table))
    expected = np.array(list(table.values()))
    assert_allclose(sigma_y_m(1000.0, classes, urban=urban), expected[:, 0], rtol=5e-6)
    assert_allclose(sigma_z_m(1000.0, classes, urban=urban), expected[:, 1], rtol=5e-6)


def test_briggs_d_is_close_to_the_pasquill_gifford_curve() -> None:
    # Turner (1970), Workbook, Example 1: Pasquill-Gifford D at 3 km read as sigma_y = 190 m,
    # sigma_z = 65 m. Briggs' open-country D blends PG with other data: 210 m and 77 m.
    assert sigma_y_m(3000.0, StabilityClass.D) == pytest.approx(190.0, rel=0.15)
    assert sigma_z_m(3000.0, StabilityClass.D) == pytest.approx(65.0, rel=0.2)


def test_sigmas_grow_with_distance_and_stability_orders_them() -> None:
    x = np.geomspace(1.0, 20_000.0, 200)[:, np.newaxis]
    classes = np.arange(6)
    for urban in (False, True):
        for vertical in (False, True):
            sigma = sigma_m(x, classes, urban=urban, vertical=vertical)
            assert np.all(np.diff(sigma, axis=0) > 0.0)
            assert np.all(np.diff(sigma, axis=1) <= 0.0)  # A widest ... F narrowest


def test_rural_stable_sigma_z_saturates() -> None:
    # 0.03 x / (1 + 0.0003 x) -> 100 m and 0.016 x / (1 + 0.0003 x) -> 53.3 m.
    far = sigma_z_m(1e9, [StabilityClass.E, StabilityClass.F])
    assert_allclose(far, [100.0, 160.0 / 3.0], rtol=1e-4)
    assert np.isinf(distance_for_sigma_m(120.0, StabilityClass.E, vertical=True))


@given(
    distance=st.floats(min_value=0.0, max_value=50_000.0),
    code=st.integers(min_value=0, max_value=5),
    urban=st.booleans(),
    vertical=st.booleans(),
)
def test_distance_for_sigma_inverts_sigma(
    distance: float, code: int, urban: bool, vertical: bool
) -> None:
    sigma = sigma_m(distance, code, urban=urban, vertical=vertical)
    back = distance_for_sigma_m(sigma, code, urban=urban, vertical=vertical)
    if np.isfinite(back):
        assert_allclose(back, distance, rtol=1e-7, atol=1e-9)
    else:  # only where a saturating curve has (numerically) reached its limit
        assert not urban
        assert vertical
        assert code >= StabilityClass.E


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="distance_m must be >= 0"):
        sigma_y_m(-1.0, StabilityClass.D)
    with pytest.raises(ValueError, match=r"stability_class must be in 0\.\.5"):
        sigma_z_m(10.0, 6)
    with pytest.raises(ValueError, match="stability_class must be integer"):
        sigma_z_m(10.0, 3.0)


@pytest.mark.parametrize("vertical", [False, True])
@pytest.mark.parametrize("urban", [0, 1])
@pytest.mark.parametrize("code", list(StabilityClass))
def test_scaled_inverse_sigma_squared_is_k_over_the_variance(
    vertical: bool, urban: int, code: StabilityClass
) -> None:
    # Every exponent specialisation (2c = 0, -1, -2, +1) against k / sigma^2 from sigma_squared,
    # for the plume's k = -1/2, from 1 nm to 50 km.
    a, b, c = (
        float(table[urban, code])
        for table in (SIGMA_Z_COEFFICIENTS if vertical else SIGMA_Y_COEFFICIENTS)
    )
    x = np.geomspace(1e-9, 5e4, 301)
    k = -0.5
    scaled_a, scaled_ab = np.asarray(k / a**2), np.asarray(k * b / a**2)
    expected = k / sigma_squared(x, np.asarray(a), np.asarray(b), np.asarray(c))
    result = scaled_inverse_sigma_squared(
        x, 1.0 / x, scaled_a, scaled_ab, np.asarray(b), np.asarray(c), 2.0 * c
    )
    assert_allclose(result, expected, rtol=1e-14)
    general = scaled_inverse_sigma_squared(
        x, 1.0 / x, scaled_a, scaled_ab, np.asarray(b), np.asarray(c), None
    )
    assert_allclose(general, expected, rtol=1e-13)


def test_scaled_inverse_sigma_squared_with_mixed_exponents() -> None:
    # One element per class and land use (mixed 2c: the general power) against sigma_squared.
    a, b, c = (table.ravel() for table in SIGMA_Z_COEFFICIENTS)
    assert uniform_twice_exponent(c) is None
    x = np.full(a.shape, 750.0)
    out = np.empty(a.shape)
    result = scaled_inverse_sigma_squared(
        x, 1.0 / x, 2.0 / a**2, 2.0 * b / a**2, b, c, None, out=out
    )
    assert result is out
    assert_allclose(result, 2.0 / sigma_squared(x, a, b, c), rtol=1e-13)
