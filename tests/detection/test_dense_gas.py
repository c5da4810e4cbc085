import numpy as np
import pytest
from numpy.testing import assert_allclose

from pipesentinel.detection.dense_gas import (
    CONTINUOUS_RELEASE_THRESHOLD,
    INSTANTANEOUS_RELEASE_THRESHOLD,
    continuous_release_parameter,
    instantaneous_release_parameter,
    reduced_gravity_m_per_s2,
)
from pipesentinel.site import Gas

AMBIENT = {"temperature_k": 288.15, "pressure_pa": 101_325.0}


def test_reduced_gravity_hand_worked() -> None:
    # Ideal gas at 15 degC: rho_propane = 1.86497, rho_air = 1.22498 kg m-3;
    # g' = 9.80665 * (1.86497 - 1.22498) / 1.22498 = 5.1235 m s-2; methane: -4.3749 m s-2.
    assert_allclose(reduced_gravity_m_per_s2(Gas.PROPANE, **AMBIENT), 5.123535, rtol=1e-5)
    assert_allclose(reduced_gravity_m_per_s2(Gas.METHANE, **AMBIENT), -4.374876, rtol=1e-5)


def test_britter_mcquaid_continuous_hand_worked() -> None:
    # Propane 1 kg/s, U10 = 5 m/s: q0 = 1 / 1.86497 = 0.53620 m3/s, D = (q0 / U10)^0.5 = 0.32748 m,
    # (g' q0 / D)^(1/3) / U10 = (5.12353 * 0.53620 / 0.32748)^(1/3) / 5 = 0.40638 >= 0.15: dense.
    value = continuous_release_parameter(1.0, 5.0, Gas.PROPANE, **AMBIENT)
    assert_allclose(value, 0.406384, rtol=1e-5)
    assert value >= CONTINUOUS_RELEASE_THRESHOLD


def test_methane_is_buoyant_and_never_dense() -> None:
    value = continuous_release_parameter(np.array([1e-4, 1.0, 100.0]), 1.0, Gas.METHANE, **AMBIENT)
    assert np.all(value < 0.0)


def test_propane_leak_stops_being_dense_in_strong_wind() -> None:
    # The parameter falls as U10^(-5/6): a tiny leak in a strong wind is passive.
    winds = np.array([1.0, 3.0, 10.0, 30.0])
    value = continuous_release_parameter(1e-4, winds, Gas.PROPANE, **AMBIENT)
    assert np.all(np.diff(value) < 0.0)
    assert_allclose(value[1:] / value[:-1], (winds[1:] / winds[:-1]) ** (-5.0 / 6.0))
    assert value[0] >= CONTINUOUS_RELEASE_THRESHOLD > value[-1]


def test_cold_release_is_denser() -> None:
    warm = continuous_release_parameter(0.1, 3.0, Gas.PROPANE, **AMBIENT)
    cold = continuous_release_parameter(
        0.1, 3.0, Gas.PROPANE, release_temperature_k=231.0, **AMBIENT
    )
    assert cold > warm
    # Even methane released at its boiling point (112 K) is denser than air.
    assert (
        continuous_release_parameter(0.1, 3.0, Gas.METHANE, release_temperature_k=112.0, **AMBIENT)
        > 0
    )


def test_instantaneous_criterion() -> None:
    # 10 kg propane: V0 = 5.3620 m3, V0^(1/3) = 1.75029 m;
    # (g' V0^(1/3))^(1/2) / U10 = (5.12353 * 1.75029)^0.5 / 2 = 1.49730.
    value = instantaneous_release_parameter(10.0, 2.0, Gas.PROPANE, **AMBIENT)
    assert_allclose(value, 1.497302, rtol=1e-5)
    assert value >= INSTANTANEOUS_RELEASE_THRESHOLD
    assert instantaneous_release_parameter(10.0, 2.0, Gas.METHANE, **AMBIENT) < 0.0


def test_zero_release_and_calm() -> None:
    assert continuous_release_parameter(0.0, 3.0, Gas.PROPANE, **AMBIENT) == 0.0
    assert np.isfinite(continuous_release_parameter(0.01, 0.0, Gas.PROPANE, **AMBIENT))


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="emission_rate_kg_per_s must be >= 0"):
        continuous_release_parameter(-1.0, 3.0, Gas.PROPANE, **AMBIENT)
