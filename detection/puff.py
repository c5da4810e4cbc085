"""Gaussian puffs: transient releases and changing wind.

A release is discretised into puffs, one per source and time step, each carrying the mass released
during its step. All puffs move with the current (spatially uniform) wind at their height and grow
with their travel distance along the Briggs (1973) curves of the current stability class. When the
class changes, a puff keeps its spread and continues along the new class's curve from the *virtual
distance* at which that curve has the same sigma (the virtual-source technique of ISC3 and
CALPUFF). Each puff is a Gaussian with ``sigma_x = sigma_y`` (as in CALPUFF) and total reflection
at the ground::

    C = M / ((2 pi)^(3/2) sigma_y^2 sigma_z) exp(-r^2 / (2 sigma_y^2))
        [exp(-(z - h)^2 / (2 sigma_z^2)) + exp(-(z + h)^2 / (2 sigma_z^2))]

with ``r`` the horizontal distance to the puff centre. A steady release as many closely spaced
puffs converges to the steady plume (tested). The puff's spread grows with
``max(u, 1 m s-1) * dt`` so that it keeps diluting in a calm, where a distance-based sigma
would otherwise freeze (the calm floor of the steady model, EPA-454/R-99-005 sec. 6.9); the centre
moves with the real wind.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from pipesentinel.detection._arrays import (
    FloatArray,
    as_bool_array,
    as_float_array,
    as_non_negative,
    as_points,
    as_positive,
    as_stability_class,
)
from pipesentinel.detection.briggs import distance_for_sigma_m, sigma_m
from pipesentinel.detection.constants import (
    BRIGGS_MAXIMUM_DISTANCE_M,
    MINIMUM_WIND_SPEED_M_PER_S,
    STANDARD_ANEMOMETER_HEIGHT_M,
)
from pipesentinel.detection.gases import kg_per_m3_to_mole_fraction
from pipesentinel.detection.stability import wind_speed_at_height
from pipesentinel.site import Gas

__all__ = [
    "Puffs",
    "puff_concentration_kg_per_m3",
    "puff_path_integral_mole_fraction_m",
    "puffs_from_history",
    "step_puffs",
]

_NORMALISATION: Final = (2.0 * math.pi) ** 1.5
_SMALLEST_SIGMA_M: Final = 1e-6  # a puff is never a point: keeps the density finite [m]
_EXPONENT_FLOOR: Final = -500.0  # exp(-500) = 7e-218: contributes exactly 0 (as in the plume)
_BLOCK_PAIRS: Final = 1 << 15  # receptor-puff pairs per evaluation block (cache blocking)
_FIELD_NAMES: Final = (
    "centre_m",
    "mass_kg",
    "travel_distance_m",
    "turbulent_sigma_y_m",
    "turbulent_sigma_z_m",
    "initial_sigma_y_m",
    "initial_sigma_z_m",
)


def _read_only(array: FloatArray) -> FloatArray:
    out = np.array(array, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Puffs:
    """State of a set of P Gaussian puffs (arrays are read-only copies).

    Attributes
    ----------
    centre_m
        Puff centres (east, north, height), shape (P, 3) [m].
    mass_kg
        Mass carried by each puff, shape (P,) [kg].
    travel_distance_m
        Distance each puff has travelled, shape (P,) [m].
    turbulent_sigma_y_m, turbulent_sigma_z_m
        Spread grown along the Briggs curves, shape (P,) [m].
    initial_sigma_y_m, initial_sigma_z_m
        Initial spread of the source, added in quadrature, shape (P,) [m].
    """

    centre_m: FloatArray
    mass_kg: FloatArray
    travel_distance_m: FloatArray
    turbulent_sigma_y_m: FloatArray
    turbulent_sigma_z_m: FloatArray
    initial_sigma_y_m: FloatArray
    initial_sigma_z_m: FloatArray

    def __post_init__(self) -> None:
        centre = _read_only(self.centre_m)
        if centre.ndim != 2 or centre.shape[1] != 3:
            raise ValueError(f"Puffs.centre_m must have shape (P, 3), got {centre.shape}")
        object.__setattr__(self, "centre_m", centre)
        count = centre.shape[0]
        for name in (
            "mass_kg",
            "travel_distance_m",
            "turbulent_sigma_y_m",
            "turbulent_sigma_z_m",
            "initial_sigma_y_m",
            "initial_sigma_z_m",
        ):
            value = _read_only(as_non_negative(getattr(self, name), f"Puffs.{name}"))
            if value.shape != (count,):
                raise ValueError(f"Puffs.{name} must have shape ({count},), got {value.shape}")
            object.__setattr__(self, name, value)

    @classmethod
    def _trusted(cls, *arrays: FloatArray) -> Puffs:
        """Build from arrays produced by this module (already checked): no validation, no copy."""
        puffs = object.__new__(cls)
        for name, array in zip(_FIELD_NAMES, arrays, strict=True):
            array.setflags(write=False)
            object.__setattr__(puffs, name, array)
        return puffs

    @classmethod
    def empty(cls) -> Puffs:
        """No puffs."""
        none = np.zeros(0)
        return cls(np.zeros((0, 3)), none, none, none, none, none, none)

    def __len__(self) -> int:
        return int(self.mass_kg.shape[0])

    @property
    def sigma_y_m(self) -> FloatArray:
        """Total lateral (and along-wind) spread, shape (P,) [m]."""
        return np.maximum(
            np.hypot(self.turbulent_sigma_y_m, self.initial_sigma_y_m), _SMALLEST_SIGMA_M
        )

    @property
    def sigma_z_m(self) -> FloatArray:
        """Total vertical spread, shape (P,) [m]."""
        return np.maximum(
            np.hypot(self.turbulent_sigma_z_m, self.initial_sigma_z_m), _SMALLEST_SIGMA_M
        )

    @property
    def total_mass_kg(self) -> float:
        """Mass in all puffs [kg]."""
        return float(np.sum(self.mass_kg))


def _scalar(value: npt.ArrayLike, name: str) -> float:
    array = as_float_array(value, name)
    if array.ndim != 0:
        raise ValueError(
            f"{name} must be a scalar (one uniform wind per step), got shape {array.shape}"
        )
    return float(array)


def _grow(
    sigma: FloatArray, distance: FloatArray, stability_class: int, urban: bool, *, vertical: bool
) -> FloatArray:
    """Sigma after a further ``distance`` along the class's curve from the virtual distance [m]."""
    virtual = distance_for_sigma_m(sigma, stability_class, urban=urban, vertical=vertical)
    reachable = np.isfinite(virtual)
    grown = sigma_m(
        np.where(reachable, virtual, 0.0) + distance,
        stability_class,
        urban=urban,
        vertical=vertical,
    )
    return np.where(reachable, np.maximum(grown, sigma), sigma)


def step_puffs(
    puffs: Puffs,
    *,
    sources_m: npt.ArrayLike,
    emission_rate_kg_per_s: npt.ArrayLike,
    duration_s: float,
    wind_speed_m_per_s: float,
    wind_direction_rad: float,
    stability_class: int,
    urban: bool = False,
    anemometer_height_m: float = STANDARD_ANEMOMETER_HEIGHT_M,
    initial_sigma_y_m: npt.ArrayLike = 0.0,
    initial_sigma_z_m: npt.ArrayLike = 0.0,
    max_travel_distance_m: float | None = BRIGGS_MAXIMUM_DISTANCE_M,
) -> Puffs:
    """Advance the puffs by one time step and release the step's mass as new puffs.

    Existing puffs move ``u(h) dt`` downwind and grow. Each source with a positive rate releases
    ``Q dt`` as one new puff, placed at the centroid of what it released during the step (half a
    step downwind) with the spread of that half step.

    Parameters
    ----------
    puffs
        State at the start of the step.
    sources_m
        Release points (east, north, height >= 0), shape (3,) or (S, 3) [m].
    emission_rate_kg_per_s
        Release rate of each source during the step, scalar or (S,) [kg s-1].
    duration_s
        Length of the step, > 0 [s].
    wind_speed_m_per_s
        Wind speed at ``anemometer_height_m`` during the step [m s-1].
    wind_direction_rad
        Direction the wind blows FROM, clockwise from north [rad].
    stability_class
        Class code 0..5 (A..F) during the step [1].
    urban
        Urban Briggs curves and profile exponents [1].
    anemometer_height_m
        Height of the wind measurement [m].
    initial_sigma_y_m, initial_sigma_z_m
        Initial spread of the new puffs, scalar or (S,) [m].
    max_travel_distance_m
        Puffs that have travelled farther are dropped (their mass leaves the domain) [m];
        None keeps all. The default is the range of the Briggs curves.

    Returns
    -------
    Puffs
        State at the end of the step: the advected puffs followed by the new ones.
    """
    step = float(as_positive(duration_s, "duration_s"))
    speed = _scalar(as_non_negative(wind_speed_m_per_s, "wind_speed_m_per_s"), "wind_speed_m_per_s")
    direction = _scalar(wind_direction_rad, "wind_direction_rad")
    code = int(as_stability_class(stability_class).reshape(()))
    land = bool(as_bool_array(urban, "urban").reshape(()))
    anemometer = float(as_positive(anemometer_height_m, "anemometer_height_m"))
    sources = np.atleast_2d(as_points(sources_m, "sources_m"))
    if sources.ndim != 2:
        raise ValueError(f"sources_m must have shape (3,) or (S, 3), got {sources.shape}")
    count = sources.shape[0]

    def per_source(value: npt.ArrayLike, name: str) -> FloatArray:
        array = as_non_negative(value, name)
        try:
            return np.broadcast_to(array, (count,)).astype(np.float64)
        except ValueError as error:
            raise ValueError(
                f"{name} must be scalar or shape ({count},), got {array.shape}"
            ) from error

    rate = per_source(emission_rate_kg_per_s, "emission_rate_kg_per_s")
    spread_y = per_source(initial_sigma_y_m, "initial_sigma_y_m")
    spread_z = per_source(initial_sigma_z_m, "initial_sigma_z_m")
    downwind = np.array([-math.sin(direction), -math.cos(direction), 0.0])

    def advance(state: Puffs, duration: float) -> Puffs:
        if len(state) == 0:
            return state
        transport = wind_speed_at_height(speed, anemometer, state.centre_m[:, 2], code, urban=land)
        moved = transport * duration
        growth = np.maximum(transport, MINIMUM_WIND_SPEED_M_PER_S) * duration
        return Puffs._trusted(
            state.centre_m + moved[:, np.newaxis] * downwind,
            state.mass_kg,
            state.travel_distance_m + moved,
            _grow(state.turbulent_sigma_y_m, growth, code, land, vertical=False),
            _grow(state.turbulent_sigma_z_m, growth, code, land, vertical=True),
            state.initial_sigma_y_m,
            state.initial_sigma_z_m,
        )

    releasing = rate > 0.0
    zeros = np.zeros(int(np.sum(releasing)))
    new = advance(
        Puffs(
            centre_m=sources[releasing],
            mass_kg=rate[releasing] * step,
            travel_distance_m=zeros,
            turbulent_sigma_y_m=zeros,
            turbulent_sigma_z_m=zeros,
            initial_sigma_y_m=spread_y[releasing],
            initial_sigma_z_m=spread_z[releasing],
        ),
        0.5 * step,
    )
    old = advance(puffs, step)
    merged = _concatenate(old, new)
    if max_travel_distance_m is None:
        return merged
    keep = merged.travel_distance_m <= float(max_travel_distance_m)
    return merged if bool(np.all(keep)) else _select(merged, keep)


def _fields(puffs: Puffs) -> Iterator[FloatArray]:
    yield puffs.centre_m
    yield puffs.mass_kg
    yield puffs.travel_distance_m
    yield puffs.turbulent_sigma_y_m
    yield puffs.turbulent_sigma_z_m
    yield puffs.initial_sigma_y_m
    yield puffs.initial_sigma_z_m


def _concatenate(first: Puffs, second: Puffs) -> Puffs:
    return Puffs._trusted(
        *(np.concatenate([a, b]) for a, b in zip(_fields(first), _fields(second), strict=True))
    )


def _select(puffs: Puffs, keep: npt.NDArray[np.bool_]) -> Puffs:
    return Puffs._trusted(*(array[keep] for array in _fields(puffs)))


def puffs_from_history(
    *,
    sources_m: npt.ArrayLike,
    emission_rate_kg_per_s: npt.ArrayLike,
    step_s: float,
    wind_speed_m_per_s: npt.ArrayLike,
    wind_direction_rad: npt.ArrayLike,
    stability_class: npt.ArrayLike,
    urban: bool = False,
    anemometer_height_m: float = STANDARD_ANEMOMETER_HEIGHT_M,
    initial_sigma_y_m: npt.ArrayLike = 0.0,
    initial_sigma_z_m: npt.ArrayLike = 0.0,
    max_travel_distance_m: float | None = BRIGGS_MAXIMUM_DISTANCE_M,
) -> Puffs:
    """Puffs at the end of K steps of ``step_s`` seconds of a release history.

    ``emission_rate_kg_per_s`` has shape (K,) or (K, S) [kg s-1]; the wind speed [m s-1], the
    direction it blows from [rad] and the class codes have shape (K,). Other parameters as in
    :func:`step_puffs`. The loop is over time steps (a sequential process); each step is vectorized
    over puffs and sources.
    """
    rates = as_non_negative(emission_rate_kg_per_s, "emission_rate_kg_per_s")
    speeds = as_non_negative(wind_speed_m_per_s, "wind_speed_m_per_s")
    directions = as_float_array(wind_direction_rad, "wind_direction_rad")
    codes = as_stability_class(stability_class)
    steps = rates.shape[0] if rates.ndim else 0
    for name, array in (
        ("wind_speed_m_per_s", speeds),
        ("wind_direction_rad", directions),
        ("stability_class", codes),
    ):
        if array.shape != (steps,):
            raise ValueError(
                f"{name} must have shape ({steps},) (one value per step of "
                f"emission_rate_kg_per_s), got {array.shape}"
            )
    puffs = Puffs.empty()
    for k in range(steps):
        puffs = step_puffs(
            puffs,
            sources_m=sources_m,
            emission_rate_kg_per_s=rates[k],
            duration_s=step_s,
            wind_speed_m_per_s=float(speeds[k]),
            wind_direction_rad=float(directions[k]),
            stability_class=int(codes[k]),
            urban=urban,
            anemometer_height_m=anemometer_height_m,
            initial_sigma_y_m=initial_sigma_y_m,
            initial_sigma_z_m=initial_sigma_z_m,
            max_travel_distance_m=max_travel_distance_m,
        )
    return puffs


def _blocks(count: int, puff_count: int) -> Iterator[slice]:
    step = max(1, _BLOCK_PAIRS // max(puff_count, 1))
    for start in range(0, count, step):
        yield slice(start, start + step)


def puff_concentration_kg_per_m3(receptors_m: npt.ArrayLike, puffs: Puffs) -> FloatArray:
    """Concentration of all puffs summed at receptors [kg m-3].

    Parameters
    ----------
    receptors_m
        Receptor positions (east, north, height >= 0), shape (..., 3) [m].
    puffs
        The puff state.

    Returns
    -------
    FloatArray
        Concentration, shape receptors_m.shape[:-1] [kg m-3].
    """
    receptors = as_points(receptors_m, "receptors_m")
    flat = receptors.reshape(-1, 3)
    out = np.zeros(flat.shape[0])
    if len(puffs) == 0:
        return out.reshape(receptors.shape[:-1])
    centre = puffs.centre_m
    variance_y = puffs.sigma_y_m**2
    variance_z = puffs.sigma_z_m**2
    amplitude = puffs.mass_kg / (_NORMALISATION * variance_y * np.sqrt(variance_z))
    inverse_y = -0.5 / variance_y
    inverse_z = -0.5 / variance_z
    image = -2.0 * centre[:, 2] / variance_z
    reflect = bool(np.any(centre[:, 2] > 0.0))
    if not reflect:
        amplitude = 2.0 * amplitude  # both reflection terms are 1 for puffs at z = 0
    for block in _blocks(flat.shape[0], len(puffs)):
        east = flat[block, 0:1] - centre[:, 0]
        north = flat[block, 1:2] - centre[:, 1]
        up = flat[block, 2:3]
        dz = up - centre[:, 2]
        exponent = (east * east + north * north) * inverse_y + dz * dz * inverse_z
        significant = exponent > _EXPONENT_FLOOR
        np.maximum(exponent, _EXPONENT_FLOOR, out=exponent)  # keeps exp() off its slow path
        contribution = amplitude * np.exp(exponent, out=exponent)
        if reflect:
            reflection = np.maximum(up * image, _EXPONENT_FLOOR)
            contribution *= 1.0 + np.exp(reflection)
        contribution *= significant
        out[block] = contribution.sum(axis=1)
    return out.reshape(receptors.shape[:-1])


def _erf_difference(low: FloatArray, high: FloatArray) -> FloatArray:
    """``erf(high) - erf(low)`` for ``low <= high`` without cancellation in the tails."""
    upper_tail = special.erfc(np.maximum(low, 0.0)) - special.erfc(np.maximum(high, 0.0))
    lower_tail = special.erfc(np.maximum(-high, 0.0)) - special.erfc(np.maximum(-low, 0.0))
    middle = special.erf(high) - special.erf(low)
    result: FloatArray = np.where(low >= 0.0, upper_tail, np.where(high <= 0.0, lower_tail, middle))
    return result


def puff_path_integral_mole_fraction_m(
    beam_start_m: npt.ArrayLike,
    beam_end_m: npt.ArrayLike,
    puffs: Puffs,
    *,
    gas: Gas,
    temperature_k: npt.ArrayLike,
    pressure_pa: npt.ArrayLike,
) -> FloatArray:
    """Line integral of all puffs' mole fraction along laser beam segments [mol mol-1 m].

    Exact (closed form with error functions): along a line the exponent of a Gaussian puff is a
    quadratic in the path length, so each puff and its ground image integrate to
    ``exp(-(C - B^2/A)/2) sqrt(pi/(2A)) [erf(.) - erf(.)]``.

    Parameters
    ----------
    beam_start_m, beam_end_m
        Beam ends (east, north, height >= 0), shape (..., 3) [m]; one-way path.
    puffs
        The puff state.
    gas
        Released gas.
    temperature_k, pressure_pa
        Air temperature [K] and pressure [Pa].

    Returns
    -------
    FloatArray
        Path integral, shape of the beams' leading dimensions [mol mol-1 m].
    """
    start = as_points(beam_start_m, "beam_start_m")
    end = as_points(beam_end_m, "beam_end_m")
    start, end = np.broadcast_arrays(start, end)
    flat_start = start.reshape(-1, 3)
    flat_delta = end.reshape(-1, 3) - flat_start
    length = np.sqrt(np.sum(flat_delta * flat_delta, axis=1))
    direction = np.where(
        (length > 0.0)[:, np.newaxis],
        flat_delta / np.where(length > 0.0, length, 1.0)[:, np.newaxis],
        np.array([1.0, 0.0, 0.0]),  # any unit vector: a zero-length beam integrates to 0
    )
    column = np.zeros(flat_start.shape[0])
    if len(puffs) > 0:
        inverse_y = 1.0 / puffs.sigma_y_m**2
        inverse_z = 1.0 / puffs.sigma_z_m**2
        amplitude = puffs.mass_kg * inverse_y * np.sqrt(inverse_z) / _NORMALISATION
        for block in _blocks(flat_start.shape[0], len(puffs)):
            d = direction[block, np.newaxis, :]
            quadratic = (d[..., 0] ** 2 + d[..., 1] ** 2) * inverse_y + d[..., 2] ** 2 * inverse_z
            total = np.zeros(quadratic.shape)
            for image_sign in (1.0, -1.0):
                offset = flat_start[block, np.newaxis, :] - puffs.centre_m * np.array(
                    [1.0, 1.0, image_sign]
                )
                linear = (
                    offset[..., 0] * d[..., 0] + offset[..., 1] * d[..., 1]
                ) * inverse_y + offset[..., 2] * d[..., 2] * inverse_z
                constant = (offset[..., 0] ** 2 + offset[..., 1] ** 2) * inverse_y + offset[
                    ..., 2
                ] ** 2 * inverse_z
                minimum = np.maximum(constant - linear * linear / quadratic, 0.0)
                scale = np.sqrt(0.5 * quadratic)
                low = linear / quadratic * scale
                high = (length[block, np.newaxis] + linear / quadratic) * scale
                total += (
                    np.exp(-0.5 * minimum)
                    * np.sqrt(np.pi / (2.0 * quadratic))
                    * _erf_difference(low, high)
                )
            column[block] = np.sum(amplitude * total, axis=1)
        column = np.where(length > 0.0, column, 0.0)
    return kg_per_m3_to_mole_fraction(
        column.reshape(start.shape[:-1]), gas, temperature_k=temperature_k, pressure_pa=pressure_pa
    )
