import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.gases import (
    DEFAULT_LEL_BASIS,
    GAS_PROPERTIES,
    LelBasis,
    air_density_kg_per_m3,
    format_percent_lel,
    gas_density_kg_per_m3,
    kg_per_m3_to_mole_fraction,
    lower_explosive_limit,
    mole_fraction_to_kg_per_m3,
    mole_fraction_to_percent_lel,
    percent_lel_to_mole_fraction,
    upper_explosive_limit,
)
from pipesentinel.site import Gas

STANDARD_PRESSURE_PA = 101_325.0


@pytest.mark.parametrize(
    ("gas", "basis", "lower", "upper"),
    [
        # IEC 60079-20-1:2010 Table B.1 and NFPA 497 Table 4.4.2 (volume % in air).
        (Gas.METHANE, LelBasis.IEC_60079_20_1, 4.4, 17.0),
        (Gas.METHANE, LelBasis.NFPA_497, 5.0, 15.0),
        (Gas.PROPANE, LelBasis.IEC_60079_20_1, 1.7, 10.9),
        (Gas.PROPANE, LelBasis.NFPA_497, 2.1, 9.5),
    ],
)
def test_explosive_limits_are_the_cited_values(
    gas: Gas, basis: LelBasis, lower: float, upper: float
) -> None:
    assert lower_explosive_limit(gas, basis=basis) == pytest.approx(lower / 100.0)
    assert upper_explosive_limit(gas, basis=basis) == pytest.approx(upper / 100.0)


def test_default_basis_is_iec() -> None:
    assert DEFAULT_LEL_BASIS is LelBasis.IEC_60079_20_1


@pytest.mark.parametrize(
    ("gas", "basis", "percent_lel_at_one_percent_vol"),
    [
        # Hand-worked: 1 %vol / LEL: 1/4.4 = 22.73, 1/5.0 = 20, 1/1.7 = 58.82, 1/2.1 = 47.62.
        (Gas.METHANE, LelBasis.IEC_60079_20_1, 100.0 / 4.4),
        (Gas.METHANE, LelBasis.NFPA_497, 20.0),
        (Gas.PROPANE, LelBasis.IEC_60079_20_1, 100.0 / 1.7),
        (Gas.PROPANE, LelBasis.NFPA_497, 100.0 / 2.1),
    ],
)
def test_percent_lel_of_one_percent_by_volume(
    gas: Gas, basis: LelBasis, percent_lel_at_one_percent_vol: float
) -> None:
    assert_allclose(
        mole_fraction_to_percent_lel(0.01, gas, basis=basis), percent_lel_at_one_percent_vol
    )


def test_percent_lel_depends_on_the_basis_by_the_ratio_of_the_limits() -> None:
    iec = mole_fraction_to_percent_lel(0.02, Gas.METHANE, basis=LelBasis.IEC_60079_20_1)
    nfpa = mole_fraction_to_percent_lel(0.02, Gas.METHANE, basis=LelBasis.NFPA_497)
    assert_allclose(iec / nfpa, 5.0 / 4.4)


def test_formatting_always_names_the_basis() -> None:
    assert format_percent_lel(23.4, LelBasis.IEC_60079_20_1) == "23 %LEL (IEC 60079-20-1)"
    assert format_percent_lel(23.45, LelBasis.NFPA_497, decimals=1) == "23.4 %LEL (NFPA 497)"


def test_basis_accepts_its_printed_name_and_refuses_unknown_ones() -> None:
    assert lower_explosive_limit(Gas.PROPANE, basis=LelBasis("NFPA 497")) == pytest.approx(0.021)
    with pytest.raises(ValueError, match="unknown LEL basis"):
        lower_explosive_limit(Gas.PROPANE, basis="ISO 10156")  # type: ignore[arg-type]


def test_propane_ppm_to_mg_per_m3_matches_niosh() -> None:
    # NIOSH Pocket Guide to Chemical Hazards, propane: "1 ppm = 1.80 mg/m3" (25 degC, 1 atm).
    concentration = mole_fraction_to_kg_per_m3(
        1e-6, Gas.PROPANE, temperature_k=298.15, pressure_pa=STANDARD_PRESSURE_PA
    )
    assert_allclose(concentration * 1e6, 1.80, rtol=0.005)


def test_methane_ppm_to_mg_per_m3_hand_worked() -> None:
    # Hand-worked: 1e-6 * 101325 Pa * 16.043e-3 kg/mol / (8.314462618 * 298.15) = 0.65574 mg/m3
    # (the usual "ppm x M / 24.45" rule gives 0.656).
    concentration = mole_fraction_to_kg_per_m3(
        1e-6, Gas.METHANE, temperature_k=298.15, pressure_pa=STANDARD_PRESSURE_PA
    )
    assert_allclose(concentration * 1e6, 0.6557423, rtol=1e-6)


def test_densities_ideal_gas() -> None:
    # ISA sea level (ICAO Doc 7488): 1.2250 kg m-3 at 15 degC, 101325 Pa.
    assert_allclose(
        air_density_kg_per_m3(temperature_k=288.15, pressure_pa=STANDARD_PRESSURE_PA),
        1.2250,
        rtol=1e-4,
    )
    # Hand-worked ideal gas 0.71576 kg m-3 at 0 degC; the real gas (Z = 0.998) is 0.717 kg m-3.
    methane = gas_density_kg_per_m3(
        Gas.METHANE, temperature_k=273.15, pressure_pa=STANDARD_PRESSURE_PA
    )
    assert_allclose(methane, 0.7157590, rtol=1e-6)
    assert_allclose(methane, 0.717, rtol=0.005)


def test_relative_densities() -> None:
    # M / M_air: 16.043 / 28.9644 and 44.097 / 28.9644 (IEC 60079-20-1 lists 0.55 and 1.56).
    assert GAS_PROPERTIES[Gas.METHANE].relative_density == pytest.approx(0.55389, rel=1e-4)
    assert GAS_PROPERTIES[Gas.PROPANE].relative_density == pytest.approx(1.52246, rel=1e-4)


def test_conversions_broadcast() -> None:
    fractions = np.array([[1e-6], [1e-3]])
    temperatures = np.array([273.15, 293.15, 313.15])
    result = mole_fraction_to_kg_per_m3(
        fractions, Gas.METHANE, temperature_k=temperatures, pressure_pa=STANDARD_PRESSURE_PA
    )
    assert result.shape == (2, 3)
    assert np.all(np.diff(result, axis=1) < 0.0)  # warmer air is less dense


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: mole_fraction_to_percent_lel(-0.1, Gas.METHANE, basis=LelBasis.NFPA_497),
            "mole_fraction must be >= 0",
        ),
        (
            lambda: mole_fraction_to_kg_per_m3(
                1e-6, Gas.METHANE, temperature_k=0.0, pressure_pa=1e5
            ),
            "temperature_k must be > 0",
        ),
        (
            lambda: kg_per_m3_to_mole_fraction(
                float("nan"), Gas.PROPANE, temperature_k=290.0, pressure_pa=1e5
            ),
            "concentration_kg_per_m3 must be finite",
        ),
        (
            lambda: mole_fraction_to_percent_lel(0.01, "butane", basis=LelBasis.NFPA_497),  # type: ignore[arg-type]
            "unknown gas 'butane'",
        ),
    ],
)
def test_bad_input_is_named(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
gases = st.sampled_from(list(Gas))
bases = st.sampled_from(list(LelBasis))


@given(
    fraction=fractions,
    gas=gases,
    temperature=st.floats(min_value=200.0, max_value=350.0),
    pressure=st.floats(min_value=5e4, max_value=1.1e5),
)
def test_mole_fraction_kg_per_m3_round_trip(
    fraction: float, gas: Gas, temperature: float, pressure: float
) -> None:
    mass = mole_fraction_to_kg_per_m3(
        fraction, gas, temperature_k=temperature, pressure_pa=pressure
    )
    back = kg_per_m3_to_mole_fraction(mass, gas, temperature_k=temperature, pressure_pa=pressure)
    assert_allclose(back, fraction, rtol=1e-12, atol=1e-300)


@given(fraction=fractions, gas=gases, basis=bases)
def test_mole_fraction_percent_lel_round_trip(fraction: float, gas: Gas, basis: LelBasis) -> None:
    percent = mole_fraction_to_percent_lel(fraction, gas, basis=basis)
    assert percent >= 0.0
    back = percent_lel_to_mole_fraction(percent, gas, basis=basis)
    assert_allclose(back, fraction, rtol=1e-12, atol=1e-300)
