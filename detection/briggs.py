"""Briggs (1973) dispersion coefficients sigma_y(x), sigma_z(x) for open country and urban areas.

Every formula has the form ``sigma = a x (1 + b x)^c`` with ``x`` the downwind travel distance [m]:

Open country (Briggs 1973, as tabulated in Hanna, Briggs & Hosker 1982, Handbook on Atmospheric
Diffusion, DOE/TIC-11223, Table 4.5; Seinfeld & Pandis, Atmospheric Chemistry and Physics, 2nd ed.
2006, Table 18.3)::

    class  sigma_y                        sigma_z
    A      0.22 x (1 + 0.0001 x)^-1/2     0.20 x
    B      0.16 x (1 + 0.0001 x)^-1/2     0.12 x
    C      0.11 x (1 + 0.0001 x)^-1/2     0.08 x (1 + 0.0002 x)^-1/2
    D      0.08 x (1 + 0.0001 x)^-1/2     0.06 x (1 + 0.0015 x)^-1/2
    E      0.06 x (1 + 0.0001 x)^-1/2     0.03 x (1 + 0.0003 x)^-1
    F      0.04 x (1 + 0.0001 x)^-1/2     0.016 x (1 + 0.0003 x)^-1

Urban (Briggs 1973 fit to the St. Louis data of McElroy & Pooler 1968; same tables)::

    A-B    0.32 x (1 + 0.0004 x)^-1/2     0.24 x (1 + 0.001 x)^+1/2
    C      0.22 x (1 + 0.0004 x)^-1/2     0.20 x
    D      0.16 x (1 + 0.0004 x)^-1/2     0.14 x (1 + 0.0003 x)^-1/2
    E-F    0.11 x (1 + 0.0004 x)^-1/2     0.08 x (1 + 0.0015 x)^-1/2

They are fits for 100 m < x < 10 km and about 10-minute to 1-hour averages; closer in they are
extrapolated linearly in x (see :mod:`pipesentinel.detection.constants` and docs/physics.md).
Arrays are indexed ``[urban, stability_class]`` with ``urban`` 0 (open country) or 1.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from pipesentinel.detection._arrays import (
    FloatArray,
    as_bool_array,
    as_non_negative,
    as_stability_class,
)

__all__ = [
    "SIGMA_Y_COEFFICIENTS",
    "SIGMA_Z_COEFFICIENTS",
    "distance_for_sigma",
    "distance_for_sigma_m",
    "scaled_inverse_sigma_squared",
    "sigma_m",
    "sigma_squared",
    "sigma_squared_with",
    "sigma_y_m",
    "sigma_z_m",
    "uniform_twice_exponent",
]


def _table(rows: list[list[float]]) -> FloatArray:
    array = np.array(rows, dtype=np.float64)
    array.setflags(write=False)
    return array


# Rows: open country, urban. Columns: classes A, B, C, D, E, F.
_SIGMA_Y_A = _table([[0.22, 0.16, 0.11, 0.08, 0.06, 0.04], [0.32, 0.32, 0.22, 0.16, 0.11, 0.11]])
_SIGMA_Y_B = _table([[1e-4] * 6, [4e-4] * 6])
_SIGMA_Y_C = _table([[-0.5] * 6, [-0.5] * 6])
_SIGMA_Z_A = _table([[0.20, 0.12, 0.08, 0.06, 0.03, 0.016], [0.24, 0.24, 0.20, 0.14, 0.08, 0.08]])
_SIGMA_Z_B = _table([[0.0, 0.0, 2e-4, 1.5e-3, 3e-4, 3e-4], [1e-3, 1e-3, 0.0, 3e-4, 1.5e-3, 1.5e-3]])
_SIGMA_Z_C = _table([[0.0, 0.0, -0.5, -0.5, -1.0, -1.0], [0.5, 0.5, 0.0, -0.5, -0.5, -0.5]])

SIGMA_Y_COEFFICIENTS: Final = (_SIGMA_Y_A, _SIGMA_Y_B, _SIGMA_Y_C)
"""(a [1], b [m-1], c [1]) of sigma_y, each indexed [urban, class]."""
SIGMA_Z_COEFFICIENTS: Final = (_SIGMA_Z_A, _SIGMA_Z_B, _SIGMA_Z_C)
"""(a [1], b [m-1], c [1]) of sigma_z, each indexed [urban, class]."""

_NEWTON_ITERATIONS = 60  # the cubic below converges monotonically; 60 is far beyond need
_NEWTON_TOLERANCE = 1e-14  # relative step at which Newton's method has converged


def uniform_twice_exponent(c: npt.ArrayLike) -> float | None:
    """``2 c`` if every exponent in ``c`` is the same, else None (mixed classes or land use)."""
    twice = 2.0 * np.asarray(c, dtype=np.float64)
    if twice.size == 0:
        return 0.0
    first = float(twice.flat[0])
    return first if bool(np.all(twice == first)) else None


def sigma_squared(
    distance_m: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray
) -> FloatArray:
    """``(a x (1 + b x)^c)^2`` for ``x >= 0`` [m2]; see :func:`sigma_squared_with`."""
    return sigma_squared_with(distance_m, a, b, c, uniform_twice_exponent(c))


def sigma_squared_with(
    distance_m: FloatArray,
    a: FloatArray,
    b: FloatArray,
    c: FloatArray,
    twice_exponent: float | None,
) -> FloatArray:
    """``(a x (1 + b x)^c)^2`` [m2] with ``twice_exponent = 2 c`` known in advance (or None).

    Every exponent in the tables is a multiple of 1/2, so ``(1 + b x)^(2c)`` is an integer power
    and needs no general ``pow`` when all elements share it (one class and land use per call).
    """
    x = distance_m
    squared = np.empty(np.broadcast_shapes(np.shape(x), np.shape(a), np.shape(b)))
    np.multiply(a, x, out=squared)
    squared *= squared
    if twice_exponent == 0.0:
        return squared
    stretch = b * x
    stretch += 1.0
    if twice_exponent == -1.0:
        squared /= stretch
        return squared
    if twice_exponent == -2.0:
        stretch *= stretch
        squared /= stretch
        return squared
    if twice_exponent == 1.0:
        squared *= stretch
        return squared
    result: FloatArray = squared * np.power(stretch, 2.0 * np.asarray(c))
    return result


def scaled_inverse_sigma_squared(  # noqa: PLR0917 - mirrors sigma_squared_with's positional form
    distance_m: FloatArray,
    inverse_distance_per_m: FloatArray,
    scaled_a: FloatArray,
    scaled_ab: FloatArray,
    b: FloatArray,
    c: FloatArray,
    twice_exponent: float | None,
    *,
    out: FloatArray | None = None,
) -> FloatArray:
    """``k / (a x (1 + b x)^c)^2`` for x > 0, given ``k / a^2`` and ``k b / a^2`` [unit of k m-2].

    The plume needs ``-1 / (2 sigma^2)`` (``k = -1/2``) rather than sigma^2; written with
    ``r = 1/x`` the specialisations of :func:`sigma_squared_with` need no division by the variance::

        2c =  0:  (k/a^2) r^2
        2c = -1:  (k/a^2) (1 + b x) r^2 = ((k/a^2) r + k b/a^2) r
        2c = -2:  (k/a^2) (r + b)^2
        2c = +1:  (k/a^2) r^2 / (1 + b x)

    and the general power otherwise.

    Parameters
    ----------
    distance_m
        Downwind distance x, > 0 [m].
    inverse_distance_per_m
        Its reciprocal 1/x [m-1].
    scaled_a, scaled_ab
        ``k / a^2`` [unit of k] and ``k b / a^2`` [unit of k m-1] for the Briggs ``a`` [1] and
        ``b`` [m-1] of each element.
    b, c
        The Briggs ``b`` [m-1] and exponent ``c`` [1] of each element.
    twice_exponent
        ``2 c`` if shared by all elements (see :func:`uniform_twice_exponent`), else None [1].
        Only the coefficients its case needs are read: ``scaled_ab`` for 2c = -1, ``b`` for
        2c = -2 and +1, ``b`` and ``c`` otherwise.
    out
        Optional array for the result; it must not be one of the inputs.

    Returns
    -------
    FloatArray
        ``k / sigma^2`` [unit of k m-2].
    """
    x, r = distance_m, inverse_distance_per_m
    # Only the operands a case uses are touched (the others may be left unbroadcast by a caller
    # that selected elements); r has the full shape, so the first operation sizes the result.
    if twice_exponent == -1.0:
        result: FloatArray = np.multiply(scaled_a, r, out=out)
        result += scaled_ab
        result *= r
        return result
    if twice_exponent == -2.0:
        result = np.add(r, b, out=out)
        result *= result
        result *= scaled_a
        return result
    result = np.multiply(r, r, out=out)
    result *= scaled_a
    if twice_exponent == 0.0:
        return result
    stretch = b * x
    stretch += 1.0
    if twice_exponent == 1.0:
        result /= stretch
        return result
    result *= np.power(stretch, -2.0 * np.asarray(c))
    return result


def sigma_m(
    distance_m: npt.ArrayLike,
    stability_class: npt.ArrayLike,
    *,
    urban: npt.ArrayLike = False,
    vertical: bool,
) -> FloatArray:
    """Briggs sigma_y (``vertical=False``) or sigma_z (``vertical=True``) [m].

    Parameters
    ----------
    distance_m
        Downwind travel distance, >= 0 [m].
    stability_class
        Pasquill-Gifford class codes 0..5 (A..F) [1].
    urban
        True for the urban curves, False for open country [1].
    vertical
        Which sigma.

    Returns
    -------
    FloatArray
        The standard deviation of the plume in that direction [m].
    """
    x = as_non_negative(distance_m, "distance_m")
    codes = as_stability_class(stability_class)
    land = as_bool_array(urban, "urban").astype(np.int64)
    a_table, b_table, c_table = SIGMA_Z_COEFFICIENTS if vertical else SIGMA_Y_COEFFICIENTS
    squared = sigma_squared(x, a_table[land, codes], b_table[land, codes], c_table[land, codes])
    return np.sqrt(squared)


def sigma_y_m(
    distance_m: npt.ArrayLike, stability_class: npt.ArrayLike, *, urban: npt.ArrayLike = False
) -> FloatArray:
    """Briggs (1973) lateral sigma_y at ``distance_m`` downwind [m]; see :func:`sigma_m`."""
    return sigma_m(distance_m, stability_class, urban=urban, vertical=False)


def sigma_z_m(
    distance_m: npt.ArrayLike, stability_class: npt.ArrayLike, *, urban: npt.ArrayLike = False
) -> FloatArray:
    """Briggs (1973) vertical sigma_z at ``distance_m`` downwind [m]; see :func:`sigma_m`."""
    return sigma_m(distance_m, stability_class, urban=urban, vertical=True)


def distance_for_sigma(
    sigma: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray
) -> FloatArray:
    """Inverse of ``sigma = a x (1 + b x)^c`` on ``x >= 0`` [m]; ``inf`` where sigma is unreachable.

    Closed forms for c = 0, -1/2 and -1 (the last saturates at ``a / b``: sigma_z of rural E and F
    never exceeds 100 m and 53 m); Newton's method on the cubic ``a^2 b x^3 + a^2 x^2 - sigma^2``
    for c = +1/2 (urban A-B sigma_z), started right of the root so that it converges monotonically.
    ``a``, ``b``, ``c`` are the coefficients of :data:`SIGMA_Y_COEFFICIENTS` or
    :data:`SIGMA_Z_COEFFICIENTS` for each element; ``sigma`` [m].
    """
    sigma, a, b, c = np.broadcast_arrays(sigma, a, b, c)
    out = np.zeros(sigma.shape, dtype=np.float64)
    positive = sigma > 0.0
    flat = (c == 0.0) | (b == 0.0)

    mask = positive & flat
    if np.any(mask):
        out[mask] = sigma[mask] / a[mask]

    mask = positive & (c == -0.5) & ~flat  # a^2 x^2 = s^2 (1 + b x)
    if np.any(mask):
        s2, aa, bb = sigma[mask] ** 2, a[mask] ** 2, b[mask]
        out[mask] = (s2 * bb + np.sqrt(s2 * s2 * bb * bb + 4.0 * aa * s2)) / (2.0 * aa)

    mask = positive & (c == -1.0) & ~flat  # a x = s (1 + b x)
    if np.any(mask):
        headroom = a[mask] - b[mask] * sigma[mask]
        reachable = headroom > 0.0
        out[mask] = np.where(reachable, sigma[mask] / np.where(reachable, headroom, 1.0), np.inf)

    mask = positive & (c == 0.5) & ~flat  # a^2 x^2 (1 + b x) = s^2
    if np.any(mask):
        s2, aa, bb = sigma[mask] ** 2, a[mask] ** 2, b[mask]
        x = sigma[mask] / a[mask]  # f(s/a) >= 0 and f is convex increasing on x > 0
        for _ in range(_NEWTON_ITERATIONS):
            value = aa * bb * x**3 + aa * x * x - s2
            slope = 3.0 * aa * bb * x * x + 2.0 * aa * x
            step = value / slope
            x = x - step
            if bool(np.all(np.abs(step) <= _NEWTON_TOLERANCE * x)):
                break
        out[mask] = x
    return out


def distance_for_sigma_m(
    sigma: npt.ArrayLike,
    stability_class: npt.ArrayLike,
    *,
    urban: npt.ArrayLike = False,
    vertical: bool,
) -> FloatArray:
    """Travel distance at which the Briggs sigma of a class reaches ``sigma`` [m].

    Used for the *virtual distance* of a puff whose stability class changes (its spread is kept and
    it continues to grow along the new class's curve) [m]. ``inf`` where the curve never reaches
    ``sigma`` (rural E/F sigma_z saturate); such puffs stop growing vertically.
    """
    s = as_non_negative(sigma, "sigma")
    codes = as_stability_class(stability_class)
    land = as_bool_array(urban, "urban").astype(np.int64)
    a_table, b_table, c_table = SIGMA_Z_COEFFICIENTS if vertical else SIGMA_Y_COEFFICIENTS
    return distance_for_sigma(s, a_table[land, codes], b_table[land, codes], c_table[land, codes])
