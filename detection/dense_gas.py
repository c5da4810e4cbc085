"""Where a passive (neutrally buoyant) plume is not valid because the gas is denser than air.

Britter & McQuaid (1988), *Workbook on the Dispersion of Dense Gases*, HSE Contract Research Report
17/1988, sec. 3, give the criteria for dense-gas effects to matter (also reproduced in CCPS,
*Guidelines for Consequence Analysis of Chemical Releases*, 1999, sec. 2.3):

* continuous release: ``(g0' q0 / D)^(1/3) / U10 >= 0.15`` with ``D = (q0 / U10)^(1/2)``,
* instantaneous release: ``(g0' V0^(1/3))^(1/2) / U10 >= 0.20``,

where ``g0' = g (rho0 - rho_a) / rho_a`` is the reduced gravity of the released gas, ``q0`` its
volume flow rate and ``V0`` its volume at the source, and ``U10`` the wind speed at 10 m. The
continuous-release parameter is the cube root of the bulk Richardson number
``Ri = g0' D / U10^2`` of the release. Propane (about 1.5 times as dense as air) is dense by this
criterion for all but tiny leaks in strong wind; methane (0.55) has ``g0' < 0``: it is buoyant,
which the passive model also ignores (no plume rise), but is not flagged here.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from pipesentinel.detection._arrays import FloatArray, as_non_negative, as_positive
from pipesentinel.detection.constants import STANDARD_GRAVITY_M_PER_S2
from pipesentinel.detection.gases import air_density_kg_per_m3, gas_density_kg_per_m3
from pipesentinel.site import Gas

__all__ = [
    "CONTINUOUS_RELEASE_THRESHOLD",
    "INSTANTANEOUS_RELEASE_THRESHOLD",
    "continuous_release_parameter",
    "instantaneous_release_parameter",
    "reduced_gravity_m_per_s2",
]

CONTINUOUS_RELEASE_THRESHOLD: Final = 0.15
"""Britter & McQuaid (1988): dense-gas effects are important for a continuous release when
``(g0' q0 / D)^(1/3) / U10`` is at least 0.15 [1]."""

INSTANTANEOUS_RELEASE_THRESHOLD: Final = 0.20
"""Britter & McQuaid (1988): dense-gas effects are important for an instantaneous release when
``(g0' V0^(1/3))^(1/2) / U10`` is at least 0.20 [1]."""

_SMALLEST_WIND_M_PER_S = 1e-3  # guards the division for a calm; a calm is dense for any leak


def reduced_gravity_m_per_s2(
    gas: Gas,
    *,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
    release_temperature_k: npt.ArrayLike | None = None,
) -> FloatArray:
    """``g (rho0 - rho_a) / rho_a`` of the pure gas released into dry air [m s-2].

    Parameters
    ----------
    gas
        Released gas.
    temperature_k
        Ambient air temperature [K].
    pressure_pa
        Ambient pressure [Pa].
    release_temperature_k
        Temperature of the gas as released [K]; ambient if None. A flashing propane release
        is much colder than ambient, hence denser.

    Returns
    -------
    FloatArray
        Reduced gravity, negative for a buoyant gas [m s-2].
    """
    source_temperature = temperature_k if release_temperature_k is None else release_temperature_k
    gas_density = gas_density_kg_per_m3(
        gas, temperature_k=source_temperature, pressure_pa=pressure_pa
    )
    air_density = air_density_kg_per_m3(temperature_k=temperature_k, pressure_pa=pressure_pa)
    return STANDARD_GRAVITY_M_PER_S2 * (gas_density - air_density) / air_density


def continuous_release_parameter(
    emission_rate_kg_per_s: npt.ArrayLike,
    wind_speed_10m_m_per_s: npt.ArrayLike,
    gas: Gas,
    *,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
    release_temperature_k: npt.ArrayLike | None = None,
) -> FloatArray:
    """Britter & McQuaid continuous-release parameter ``(g0' q0 / D)^(1/3) / U10`` [1].

    Dense-gas effects matter where it is >= :data:`CONTINUOUS_RELEASE_THRESHOLD`; it is negative for
    a buoyant gas. ``emission_rate_kg_per_s`` [kg s-1]; ``wind_speed_10m_m_per_s`` [m s-1];
    ``temperature_k`` [K] and ``pressure_pa`` [Pa] of the air; ``release_temperature_k`` [K] of the
    gas (ambient if None).
    """
    rate = as_non_negative(emission_rate_kg_per_s, "emission_rate_kg_per_s")
    wind = np.maximum(
        as_non_negative(wind_speed_10m_m_per_s, "wind_speed_10m_m_per_s"), _SMALLEST_WIND_M_PER_S
    )
    source_temperature = temperature_k if release_temperature_k is None else release_temperature_k
    density = gas_density_kg_per_m3(gas, temperature_k=source_temperature, pressure_pa=pressure_pa)
    reduced_gravity = reduced_gravity_m_per_s2(
        gas,
        temperature_k=temperature_k,
        pressure_pa=pressure_pa,
        release_temperature_k=release_temperature_k,
    )
    volume_flow = rate / density
    # q0 / D with D = (q0 / U10)^(1/2) is (q0 U10)^(1/2); written so that q0 = 0 gives 0.
    flow_per_source_size = np.sqrt(volume_flow * wind)
    return np.cbrt(reduced_gravity * flow_per_source_size) / wind


def instantaneous_release_parameter(
    released_mass_kg: npt.ArrayLike,
    wind_speed_10m_m_per_s: npt.ArrayLike,
    gas: Gas,
    *,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
    release_temperature_k: npt.ArrayLike | None = None,
) -> FloatArray:
    """Britter & McQuaid instantaneous-release parameter ``(g0' V0^(1/3))^(1/2) / U10`` [1].

    Dense-gas effects matter where it is >= :data:`INSTANTANEOUS_RELEASE_THRESHOLD`; it is negative
    (sign carried) for a buoyant gas. ``released_mass_kg`` [kg]; other parameters as in
    :func:`continuous_release_parameter`.
    """
    mass = as_non_negative(released_mass_kg, "released_mass_kg")
    wind = np.maximum(
        as_non_negative(wind_speed_10m_m_per_s, "wind_speed_10m_m_per_s"), _SMALLEST_WIND_M_PER_S
    )
    source_temperature = temperature_k if release_temperature_k is None else release_temperature_k
    density = as_positive(
        gas_density_kg_per_m3(gas, temperature_k=source_temperature, pressure_pa=pressure_pa),
        "gas density",
    )
    reduced_gravity = reduced_gravity_m_per_s2(
        gas,
        temperature_k=temperature_k,
        pressure_pa=pressure_pa,
        release_temperature_k=release_temperature_k,
    )
    product = reduced_gravity * np.cbrt(mass / density)
    return np.sign(product) * np.sqrt(np.abs(product)) / wind
