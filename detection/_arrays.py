"""Array coercion and validation shared by the physics modules (private).

Every public function of :mod:`pipesentinel.detection` converts its inputs here, so that bad input
fails fast with a message naming the parameter and the offending value, instead of propagating
NaNs into a concentration field.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue
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
    with np.errstate(over="ignore"):
        total = np.sum(array)
    if not np.isfinite(total) and not np.all(np.isfinite(array)):
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


def as_points(
    value: npt.ArrayLike, name: str, *, above_ground: bool = True, check_values: bool = True
) -> FloatArray:
    """``value`` as a float64 array of east/north/up points, shape ``(..., 3)`` [m].

    With ``above_ground`` the up coordinate must be >= 0: the reflection model has no meaning
    below the ground plane (e.g. a detector inside a manhole is not a plume receptor). With
    ``check_values=False`` only the type and shape are checked here: the caller checks the values
    (finite, above ground) itself, e.g. block by block while the data are in cache, and calls this
    again with the check on to raise the error.
    """
    if not check_values:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be numeric, got {value!r:.60}") from error
    else:
        array = as_float_array(value, name)
    if array.ndim == 0 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3) (east, north, up), got {array.shape}")
    if check_values and above_ground and array.size and float(np.min(array[..., 2])) < 0.0:
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


# Elements per block in blocked evaluation: small enough that a kernel's temporaries stay mostly in
# the CPU caches and no page faults are taken on fresh multi-megabyte temporaries, large enough that
# the per-block Python overhead (a few tens of numpy calls, run with the GIL held) is negligible
# and that a 1e6-element field still gives each thread several blocks. Measured for the plume
# kernel on the development VM (AMD EPYC, 2 vCPUs, AVX2, 512 KiB L2 per core), 2 threads, best of
# 9: 2**14 / 2**15 / 2**16 / 2**17 / 2**18 took 21.5 / 16.1 / 13.6 / 13.4 / 15.9 ms for 1e6
# receptors x 1 source and 20.0 / 13.0 / 10.1 / 8.8 / 9.0 ms for 1e4 receptors x 100 sources.
BLOCK_ELEMENTS = 1 << 17


def available_threads() -> int:
    """Number of CPUs this process may run on (its affinity mask), at least 1 [1]."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def as_thread_count(threads: int | None) -> int:
    """``threads`` validated as a count >= 1, or :func:`available_threads` for None [1]."""
    if threads is None:
        return available_threads()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    return int(threads)


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist here, so start afresh."""
    global _pool_lock  # noqa: PLW0603 - the lock itself must be replaced after a fork
    _pool_lock = threading.Lock()
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool with ``workers`` threads, created on first use and then reused.

    numpy releases the GIL inside its ufunc loops, so threads evaluating different blocks of one
    field run in parallel. The pools are caches of OS threads, not state: every result is
    computed block by block in the same way whichever thread takes a block.
    """
    with _pool_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipesentinel-block")
            _pools[workers] = pool
        return pool


def evaluate_blocked(
    kernel: Callable[..., None],
    arrays: Sequence[NDArray[Any]],
    shape: tuple[int, ...],
    *,
    block_elements: int = BLOCK_ELEMENTS,
    threads: int | None = None,
) -> FloatArray:
    """Evaluate an elementwise ``kernel(out, *arrays)`` into a new float64 array of ``shape``.

    The arrays broadcast to ``shape``. The work is cut into blocks of about ``block_elements``
    along the longest axis so that temporaries stay in cache; this is cache blocking of one
    vectorized expression, not a loop over receptors or sources. The kernel receives the block of
    the output (a view, not necessarily contiguous) and the matching parts of ``arrays``, and
    must fill every element of ``out``.

    With ``threads`` > 1 (default: :func:`available_threads`) the blocks are shared out among the
    calling thread and ``threads - 1`` pool threads, each taking the next block until none are
    left. A block is computed identically whichever thread takes it, so the result does not
    depend on the thread count (bit for bit). An exception in any block is re-raised here.
    """
    workers = as_thread_count(threads)
    if not shape:  # one point: evaluate as a 1-element block, so that kernels see arrays
        single = np.empty((1,), dtype=np.float64)
        kernel(single, *(np.reshape(array, (1,)) for array in arrays))
        return single.reshape(())
    out = np.empty(shape, dtype=np.float64)
    size = out.size
    if size <= block_elements:
        kernel(out, *arrays)
        return out
    ndim = len(shape)
    aligned = [  # 0-d arrays (shared by every element) are passed on as they are
        array if array.ndim == 0 else np.reshape(array, (1,) * (ndim - array.ndim) + array.shape)
        for array in arrays
    ]
    axis = int(np.argmax(shape))
    per_slice = size // shape[axis]
    step = max(1, block_elements // max(per_slice, 1))
    prefix = (slice(None),) * axis
    starts: SimpleQueue[int] = SimpleQueue()
    for start in range(0, shape[axis], step):
        starts.put(start)
    failed = threading.Event()

    def drain() -> None:
        while not failed.is_set():
            try:
                start = starts.get_nowait()
            except Empty:
                return
            window = (*prefix, slice(start, start + step))
            parts = [
                array[window] if array.ndim and array.shape[axis] > 1 else array
                for array in aligned
            ]
            try:
                kernel(out[window], *parts)
            except BaseException:
                failed.set()
                raise

    blocks = -(-shape[axis] // step)
    helpers = min(workers, blocks) - 1
    futures = [_pool(workers - 1).submit(drain) for _ in range(helpers)] if helpers > 0 else []
    try:
        drain()
    finally:
        # Helpers that have not started (a pool busy with other callers) are not waited for: the
        # blocks are all done. The others are, so that no thread still writes to ``out``.
        for future in futures:
            future.cancel()
        errors = [future.exception() for future in futures if not future.cancelled()]
    for error in errors:
        if error is not None:
            raise error
    return out
