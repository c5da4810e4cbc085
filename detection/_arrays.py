"""Array coercion and validation shared by the physics modules (private).

Every public function of :mod:`pipesentinel.detection` converts its inputs here, so that bad input
fails fast with a message naming the parameter and the offending value, instead of propagating
NaNs into a concentration field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

NUMBER_OF_STABILITY_CLASSES = 6  # Pasquill-Gifford A..F, coded 0..5


def _first_bad(values: FloatArray, bad: BoolArray) -> float:
    return float(values[bad].flat[0])


def as_float_array(value: npt.ArrayLike, name: str) -> FloatArray:
    """``value`` as a float64 array; ``ValueError`` naming ``name`` if any element is not finite."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {value!r}") from error
    # One fast reduction first: a NaN or an infinity makes the sum non-finite (a finite overflow
    # of the sum only sends us to the exact elementwise check).
    if not np.isfinite(np.sum(array)) and not np.all(np.isfinite(array)):
        bad = ~np.isfinite(array)
        raise ValueError(
            f"{name} must be finite; {int(bad.sum())} value(s) are not, e.g. "
            f"{_first_bad(array, bad)!r}"
        )
    return array


def as_non_negative(value: npt.ArrayLike, name: str) -> FloatArray:
    """``value`` as a finite float64 array with every element >= 0."""
    array = as_float_array(value, name)
    if np.any(array < 0.0):
        bad = array < 0.0
        raise ValueError(
            f"{name} must be >= 0; {int(bad.sum())} value(s) are negative, e.g. "
            f"{_first_bad(array, bad)!r}"
        )
    return array


def as_positive(value: npt.ArrayLike, name: str) -> FloatArray:
    """``value`` as a finite float64 array with every element > 0."""
    array = as_float_array(value, name)
    if np.any(array <= 0.0):
        bad = array <= 0.0
        raise ValueError(
            f"{name} must be > 0; {int(bad.sum())} value(s) are not, e.g. "
            f"{_first_bad(array, bad)!r}"
        )
    return array


def as_points(value: npt.ArrayLike, name: str, *, above_ground: bool = True) -> FloatArray:
    """``value`` as a float64 array of east/north/up points, shape ``(..., 3)`` [m].

    With ``above_ground`` the up coordinate must be >= 0: the reflection model has no meaning
    below the ground plane (e.g. a detector inside a manhole is not a plume receptor).
    """
    array = as_float_array(value, name)
    if array.ndim == 0 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3) (east, north, up), got {array.shape}")
    if above_ground and array.size and float(np.min(array[..., 2])) < 0.0:
        heights = array[..., 2]
        bad = heights < 0.0
        raise ValueError(
            f"{name}: height (last coordinate) must be >= 0 m (above ground); "
            f"{int(bad.sum())} point(s) are below ground, e.g. {_first_bad(heights, bad)!r} m"
        )
    return array


def as_stability_class(value: npt.ArrayLike, name: str = "stability_class") -> IntArray:
    """``value`` as an int64 array of Pasquill-Gifford class codes 0..5 (A..F)."""
    array = np.asarray(value)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{name} must be integer class codes 0..5 (A..F) or StabilityClass members, "
            f"got dtype {array.dtype}"
        )
    codes = array.astype(np.int64)
    if np.any((codes < 0) | (codes >= NUMBER_OF_STABILITY_CLASSES)):
        bad = (codes < 0) | (codes >= NUMBER_OF_STABILITY_CLASSES)
        raise ValueError(f"{name} must be in 0..5 (A..F), got e.g. {int(codes[bad].flat[0])}")
    return codes


def as_bool_array(value: npt.ArrayLike, name: str) -> BoolArray:
    """``value`` as a boolean array; integers 0/1 are accepted, anything else is refused."""
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.integer) and np.all((array == 0) | (array == 1)):
        return array.astype(np.bool_)
    raise ValueError(f"{name} must be boolean, got dtype {array.dtype} ({value!r:.60})")


def broadcast_shape(*shapes: tuple[int, ...], names: Sequence[str]) -> tuple[int, ...]:
    """The broadcast of ``shapes``; ``ValueError`` naming the inputs when they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError as error:
        described = ", ".join(f"{name} {shape}" for name, shape in zip(names, shapes, strict=True))
        raise ValueError(f"shapes do not broadcast: {described}") from error


# Elements per block in blocked evaluation: small enough that a kernel's temporaries stay in the
# CPU caches and no page faults are taken on fresh multi-megabyte temporaries, large enough that
# the per-block Python overhead (a few tens of numpy calls) is negligible. 2**16 was the fastest of
# 2**13..2**17 for the plume kernel on the development VM (AMD EPYC, 512 KiB L2 per core).
BLOCK_ELEMENTS = 1 << 16


def evaluate_blocked(
    kernel: Callable[..., FloatArray],
    arrays: Sequence[NDArray[Any]],
    shape: tuple[int, ...],
    *,
    block_elements: int = BLOCK_ELEMENTS,
) -> FloatArray:
    """Evaluate an elementwise ``kernel(block_shape, *arrays)`` whose result has ``shape``.

    The arrays broadcast to ``shape``. The work is cut into blocks of about ``block_elements``
    along the longest axis so that temporaries stay in cache; this is cache blocking of one
    vectorized expression, not a loop over receptors or sources. The kernel receives the shape of
    its block first and must return an array of that shape.
    """
    if not shape:  # one point: evaluate as a 1-element block, so that kernels see arrays
        single = kernel((1,), *(np.reshape(array, (1,)) for array in arrays))
        return np.asarray(single, dtype=np.float64).reshape(())
    size = int(np.prod(shape, dtype=np.int64))
    if size <= block_elements:
        return np.broadcast_to(kernel(shape, *arrays), shape).astype(np.float64, copy=False)
    ndim = len(shape)
    aligned = [np.reshape(array, (1,) * (ndim - array.ndim) + array.shape) for array in arrays]
    axis = int(np.argmax(shape))
    per_slice = size // shape[axis]
    step = max(1, block_elements // max(per_slice, 1))
    out = np.empty(shape, dtype=np.float64)
    prefix = (slice(None),) * axis
    for start in range(0, shape[axis], step):
        window = (*prefix, slice(start, start + step))
        parts = [array[window] if array.shape[axis] > 1 else array for array in aligned]
        block_shape = (*shape[:axis], min(step, shape[axis] - start), *shape[axis + 1 :])
        out[window] = kernel(block_shape, *parts)
    return out
