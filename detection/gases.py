"""Properties of the monitored gases as cited data, and the conversions between their amounts.

Amounts of a gas in air are carried as *mole fraction* [mol mol-1] inside the core. This module
converts mole fraction to and from

* mass concentration [kg m-3] at a given temperature [K] and pressure [Pa] (ideal gas), and
* percent of the lower explosive limit (%LEL), which is only meaningful together with the *basis*
  the LEL is taken from: IEC 60079-20-1 (the default in PipeSentinel) or NFPA 497. The basis is
  therefore a required argument of every %LEL conversion, and :func:`format_percent_lel` always
  prints it ("23 %LEL (IEC 60079-20-1)").

ppm and %vol are device/user units converted at the edges with :mod:`pipesentinel.units`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

import numpy.typing as npt

from pipesentinel.detection._arrays import FloatArray, as_non_negative, as_positive
from pipesentinel.detection.constants import (
    MOLAR_GAS_CONSTANT_J_PER_MOL_K,
    MOLAR_MASS_DRY_AIR_KG_PER_MOL,
)
from pipesentinel.site import Gas

__all__ = [
    "DEFAULT_LEL_BASIS",
    "GAS_PROPERTIES",
    "GasProperties",
    "LelBasis",
    "air_density_kg_per_m3",
    "format_percent_lel",
    "gas_density_kg_per_m3",
    "kg_per_m3_to_mole_fraction",
    "lower_explosive_limit",
    "mole_fraction_to_kg_per_m3",
    "mole_fraction_to_percent_lel",
    "percent_lel_to_mole_fraction",
    "upper_explosive_limit",
]

PERCENT = 100.0  # %LEL per unit fraction of the LEL (definition of "percent")


class LelBasis(StrEnum):
    """Which standard the explosive limits are taken from; its value is the printed name."""

    IEC_60079_20_1 = "IEC 60079-20-1"
    NFPA_497 = "NFPA 497"


DEFAULT_LEL_BASIS: Final = LelBasis.IEC_60079_20_1
"""PipeSentinel's default basis (the international standard for hazardous-area classification and
for gas detector calibration in IEC 60079-29-1). Callers still pass the basis explicitly."""


@dataclass(frozen=True)
class GasProperties:
    """Cited properties of one gas. Explosive limits are mole fractions in air [mol mol-1]."""

    gas: Gas
    formula: str
    molar_mass_kg_per_mol: float
    lower_explosive_limit: MappingProxyType[LelBasis, float]
    upper_explosive_limit: MappingProxyType[LelBasis, float]

    @property
    def relative_density(self) -> float:
        """Density relative to dry air at the same temperature and pressure, ideal gas [1]."""
        return self.molar_mass_kg_per_mol / MOLAR_MASS_DRY_AIR_KG_PER_MOL


# Molar masses from the IUPAC standard atomic weights (abridged, CIAAW 2021: C 12.011, H 1.008):
# CH4 = 12.011 + 4 x 1.008 = 16.043 g/mol; C3H8 = 3 x 12.011 + 8 x 1.008 = 44.097 g/mol.
#
# Explosive (flammable) limits in air, volume fraction = mole fraction for ideal gases:
# - IEC 60079-20-1:2010 (Explosive atmospheres - Part 20-1: Material characteristics for gas and
#   vapour classification - Test methods and data), Table B.1: methane LFL 4.4 %, UFL 17.0 %;
#   propane LFL 1.7 %, UFL 10.9 % (determined with the EN 1839 / ISO 10156-type methods, which
#   give lower LFLs than the older US Bureau of Mines tube).
# - NFPA 497 (Recommended Practice for the Classification of Flammable Liquids, Gases, or Vapors
#   and of Hazardous (Classified) Locations, 2021 ed.), Table 4.4.2 / Table B.1 (data after
#   Zabetakis, US Bureau of Mines Bulletin 627, 1965): methane LFL 5.0 %, UFL 15.0 %;
#   propane LFL 2.1 %, UFL 9.5 %.
_PERCENT_VOL = 0.01  # mole fraction per %vol (definition)

GAS_PROPERTIES: Final[MappingProxyType[Gas, GasProperties]] = MappingProxyType(
    {
        Gas.METHANE: GasProperties(
            gas=Gas.METHANE,
            formula="CH4",
            molar_mass_kg_per_mol=16.043e-3,
            lower_explosive_limit=MappingProxyType(
                {LelBasis.IEC_60079_20_1: 4.4 * _PERCENT_VOL, LelBasis.NFPA_497: 5.0 * _PERCENT_VOL}
            ),
            upper_explosive_limit=MappingProxyType(
                {
                    LelBasis.IEC_60079_20_1: 17.0 * _PERCENT_VOL,
                    LelBasis.NFPA_497: 15.0 * _PERCENT_VOL,
                }
            ),
        ),
        Gas.PROPANE: GasProperties(
            gas=Gas.PROPANE,
            formula="C3H8",
            molar_mass_kg_per_mol=44.097e-3,
            lower_explosive_limit=MappingProxyType(
                {LelBasis.IEC_60079_20_1: 1.7 * _PERCENT_VOL, LelBasis.NFPA_497: 2.1 * _PERCENT_VOL}
            ),
            upper_explosive_limit=MappingProxyType(
                {
                    LelBasis.IEC_60079_20_1: 10.9 * _PERCENT_VOL,
                    LelBasis.NFPA_497: 9.5 * _PERCENT_VOL,
                }
            ),
        ),
    }
)


def _properties(gas: Gas) -> GasProperties:
    try:
        return GAS_PROPERTIES[Gas(gas)]
    except ValueError as error:
        known = ", ".join(member.value for member in Gas)
        raise ValueError(f"unknown gas {gas!r}; known: {known}") from error


def _basis(basis: LelBasis) -> LelBasis:
    try:
        return LelBasis(basis)
    except ValueError as error:
        known = ", ".join(repr(member.value) for member in LelBasis)
        raise ValueError(f"unknown LEL basis {basis!r}; known: {known}") from error


def lower_explosive_limit(gas: Gas, *, basis: LelBasis) -> float:
    """Lower explosive limit of ``gas`` in air on ``basis`` [mol mol-1]."""
    return _properties(gas).lower_explosive_limit[_basis(basis)]


def upper_explosive_limit(gas: Gas, *, basis: LelBasis) -> float:
    """Upper explosive limit of ``gas`` in air on ``basis`` [mol mol-1]."""
    return _properties(gas).upper_explosive_limit[_basis(basis)]


def mole_fraction_to_percent_lel(
    mole_fraction: npt.ArrayLike, gas: Gas, *, basis: LelBasis
) -> FloatArray:
    """Percent of the lower explosive limit on ``basis``.

    Parameters
    ----------
    mole_fraction
        Amount of ``gas`` in air [mol mol-1].
    gas
        Which gas.
    basis
        Which standard's LEL the percentage refers to (there is no silent default).

    Returns
    -------
    FloatArray
        ``100 * mole_fraction / LEL`` [%LEL on ``basis``].
    """
    fraction = as_non_negative(mole_fraction, "mole_fraction")
    return PERCENT * fraction / lower_explosive_limit(gas, basis=basis)


def percent_lel_to_mole_fraction(
    percent_lel: npt.ArrayLike, gas: Gas, *, basis: LelBasis
) -> FloatArray:
    """Mole fraction [mol mol-1] from percent of the LEL on ``basis`` [%LEL]."""
    percent = as_non_negative(percent_lel, "percent_lel")
    return percent * lower_explosive_limit(gas, basis=basis) / PERCENT


def format_percent_lel(percent_lel: float, basis: LelBasis, *, decimals: int = 0) -> str:
    """Human-readable %LEL that always names its basis, e.g. ``"23 %LEL (IEC 60079-20-1)"``."""
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    return f"{float(percent_lel):.{decimals}f} %LEL ({_basis(basis).value})"


def mole_fraction_to_kg_per_m3(
    mole_fraction: npt.ArrayLike,
    gas: Gas,
    *,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
) -> FloatArray:
    """Mass concentration of ``gas`` in air from its mole fraction, ideal gas.

    ``c = x p M / (R T)``: the partial pressure ``x p`` of an ideal-gas component times its molar
    mass over ``R T``. Also converts a path integral [mol mol-1 m] to [kg m-2] (linear).

    Parameters
    ----------
    mole_fraction
        Amount of ``gas`` in air [mol mol-1].
    gas
        Which gas.
    temperature_k
        Air temperature [K].
    pressure_pa
        Air pressure [Pa].

    Returns
    -------
    FloatArray
        Mass concentration [kg m-3].
    """
    fraction = as_non_negative(mole_fraction, "mole_fraction")
    molar_concentration = as_positive(pressure_pa, "pressure_pa") / (
        MOLAR_GAS_CONSTANT_J_PER_MOL_K * as_positive(temperature_k, "temperature_k")
    )
    return fraction * molar_concentration * _properties(gas).molar_mass_kg_per_mol


def kg_per_m3_to_mole_fraction(
    concentration_kg_per_m3: npt.ArrayLike,
    gas: Gas,
    *,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
) -> FloatArray:
    """Mole fraction [mol mol-1] of ``gas`` from its mass concentration [kg m-3], ideal gas.

    Inverse of :func:`mole_fraction_to_kg_per_m3`; ``temperature_k`` [K], ``pressure_pa`` [Pa].
    Also converts a path integral [kg m-2] to [mol mol-1 m].
    """
    concentration = as_non_negative(concentration_kg_per_m3, "concentration_kg_per_m3")
    molar_concentration = as_positive(pressure_pa, "pressure_pa") / (
        MOLAR_GAS_CONSTANT_J_PER_MOL_K * as_positive(temperature_k, "temperature_k")
    )
    return concentration / (molar_concentration * _properties(gas).molar_mass_kg_per_mol)


def gas_density_kg_per_m3(
    gas: Gas, *, temperature_k: npt.ArrayLike, pressure_pa: npt.ArrayLike
) -> FloatArray:
    """Density of the pure gas, ideal gas [kg m-3]; ``temperature_k`` [K], ``pressure_pa`` [Pa]."""
    return mole_fraction_to_kg_per_m3(
        1.0, gas, temperature_k=temperature_k, pressure_pa=pressure_pa
    )


def air_density_kg_per_m3(
    *, temperature_k: npt.ArrayLike, pressure_pa: npt.ArrayLike
) -> FloatArray:
    """Density of dry air, ideal gas [kg m-3]; ``temperature_k`` [K], ``pressure_pa`` [Pa]."""
    return (
        as_positive(pressure_pa, "pressure_pa")
        * MOLAR_MASS_DRY_AIR_KG_PER_MOL
        / (MOLAR_GAS_CONSTANT_J_PER_MOL_K * as_positive(temperature_k, "temperature_k"))
    )


def _check_gas_table() -> None:
    """Every :class:`Gas` member has properties on every basis (guards future enum growth)."""
    for gas in Gas:
        properties = GAS_PROPERTIES.get(gas)
        if properties is None:
            raise RuntimeError(f"no properties for gas {gas.value!r} in GAS_PROPERTIES")
        for basis in LelBasis:
            lower = properties.lower_explosive_limit[basis]
            upper = properties.upper_explosive_limit[basis]
            if not 0.0 < lower < upper < 1.0:
                raise RuntimeError(f"inconsistent explosive limits for {gas.value} on {basis}")


_check_gas_table()
