"""Receptor evaluations per second of the vectorized Gaussian plume against a per-point loop.

The baseline is a straightforward pure-Python implementation of the same model (``math`` module,
one receptor-source pair at a time, same profile, floor, Briggs curves and reflection), timed on a
subset of the same pairs in the same run; the figure of merit is the ratio of the two rates.
The vectorized side runs with its default thread count (every CPU the process may use; numpy
releases the GIL in its loops), recorded as ``threads``; the Python baseline is one thread, as a
straightforward implementation would be. Run with ``python -m bench.dispersion``; it prints one
JSON object.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable

import numpy as np

from pipesentinel.detection._arrays import BLOCK_ELEMENTS, available_threads
from pipesentinel.detection.briggs import SIGMA_Y_COEFFICIENTS, SIGMA_Z_COEFFICIENTS
from pipesentinel.detection.constants import MINIMUM_WIND_SPEED_M_PER_S, PROFILE_MINIMUM_HEIGHT_M
from pipesentinel.detection.plume import plume_concentration_kg_per_m3
from pipesentinel.detection.stability import WIND_PROFILE_EXPONENTS, StabilityClass

WIND_SPEED_M_PER_S = 3.0
WIND_DIRECTION_RAD = 0.3
STABILITY = int(StabilityClass.D)
URBAN = False
ANEMOMETER_HEIGHT_M = 10.0
EMISSION_RATE_KG_PER_S = 0.01
DOMAIN_HALF_WIDTH_M = 1000.0
PYTHON_SUBSET_PAIRS = 20_000
REPEATS = 3


# The baseline's constants, as plain Python floats (a pure-Python implementation keeps its tables
# as Python numbers; indexing numpy arrays per point would slow the baseline artificially).
_PROFILE_EXPONENT = float(WIND_PROFILE_EXPONENTS[int(URBAN), STABILITY])
_AY, _BY, _CY = (float(table[int(URBAN), STABILITY]) for table in SIGMA_Y_COEFFICIENTS)
_AZ, _BZ, _CZ = (float(table[int(URBAN), STABILITY]) for table in SIGMA_Z_COEFFICIENTS)


def _python_plume(
    receptor: tuple[float, float, float], source: tuple[float, float, float]
) -> float:
    """One receptor-source pair, the textbook way (the baseline) [kg m-3]."""
    release_height = max(source[2], PROFILE_MINIMUM_HEIGHT_M)
    reference_height = max(ANEMOMETER_HEIGHT_M, PROFILE_MINIMUM_HEIGHT_M)
    speed = WIND_SPEED_M_PER_S * math.pow(release_height / reference_height, _PROFILE_EXPONENT)
    speed = max(speed, MINIMUM_WIND_SPEED_M_PER_S)
    east = receptor[0] - source[0]
    north = receptor[1] - source[1]
    downwind_east = -math.sin(WIND_DIRECTION_RAD)
    downwind_north = -math.cos(WIND_DIRECTION_RAD)
    x = east * downwind_east + north * downwind_north
    if x <= 0.0:
        return 0.0
    y = north * downwind_east - east * downwind_north
    sigma_y = _AY * x * math.pow(1.0 + _BY * x, _CY)
    sigma_z = _AZ * x * math.pow(1.0 + _BZ * x, _CZ)
    z, h = receptor[2], source[2]
    vertical = math.exp(-((z - h) ** 2) / (2.0 * sigma_z**2)) + math.exp(
        -((z + h) ** 2) / (2.0 * sigma_z**2)
    )
    return (
        EMISSION_RATE_KG_PER_S
        / (2.0 * math.pi * speed * sigma_y * sigma_z)
        * math.exp(-(y**2) / (2.0 * sigma_y**2))
        * vertical
    )


def _best_seconds(action: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def _case(
    receptors: np.ndarray, sources: np.ndarray, rng: np.random.Generator
) -> dict[str, object]:
    """Rates for all receptors x sources, vectorized, and for a random subset of pairs in Python."""
    grid = receptors[:, np.newaxis, :] if sources.shape[0] > 1 else receptors

    def vectorized() -> np.ndarray:
        return plume_concentration_kg_per_m3(
            grid,
            sources if sources.shape[0] > 1 else sources[0],
            emission_rate_kg_per_s=EMISSION_RATE_KG_PER_S,
            wind_speed_m_per_s=WIND_SPEED_M_PER_S,
            wind_direction_rad=WIND_DIRECTION_RAD,
            stability_class=STABILITY,
            urban=URBAN,
            anemometer_height_m=ANEMOMETER_HEIGHT_M,
        )

    pairs = receptors.shape[0] * sources.shape[0]
    field = vectorized().reshape(receptors.shape[0], sources.shape[0])
    vector_seconds = _best_seconds(vectorized)

    receptor_index = rng.integers(0, receptors.shape[0], PYTHON_SUBSET_PAIRS)
    source_index = rng.integers(0, sources.shape[0], PYTHON_SUBSET_PAIRS)

    def point(row: np.ndarray) -> tuple[float, float, float]:
        return float(row[0]), float(row[1]), float(row[2])

    chosen = [
        (point(receptors[i]), point(sources[j]))
        for i, j in zip(receptor_index, source_index, strict=True)
    ]
    results: list[float] = []

    def loop() -> None:
        results.clear()
        results.extend(_python_plume(r, s) for r, s in chosen)

    python_seconds = _best_seconds(loop)
    expected = field[receptor_index, source_index]
    scale = float(np.max(np.abs(expected))) or 1.0
    difference = float(np.max(np.abs(np.asarray(results) - expected))) / scale
    vector_rate = pairs / vector_seconds
    python_rate = PYTHON_SUBSET_PAIRS / python_seconds
    return {
        "receptors": int(receptors.shape[0]),
        "sources": int(sources.shape[0]),
        "vectorized_evaluations_per_s": vector_rate,
        "python_evaluations_per_s": python_rate,
        "python_subset_pairs": PYTHON_SUBSET_PAIRS,
        "ratio": vector_rate / python_rate,
        "max_difference_relative_to_peak": difference,
    }


def _points(rng: np.random.Generator, count: int, height_m: float) -> np.ndarray:
    east, north = rng.uniform(-DOMAIN_HALF_WIDTH_M, DOMAIN_HALF_WIDTH_M, (2, count))
    return np.column_stack([east, north, rng.uniform(0.0, height_m, count)])


def run() -> dict[str, object]:
    """Measure both cases; return rates [evaluations s-1] and vectorized/Python ratios."""
    rng = np.random.default_rng(20240601)
    single = _case(_points(rng, 1_000_000, 3.0), _points(rng, 1, 2.0), rng)
    many = _case(_points(rng, 10_000, 3.0), _points(rng, 100, 2.0), rng)
    return {
        "benchmark": "dispersion.plume_concentration_kg_per_m3",
        "receptors_1e6_x_sources_1": single,
        "receptors_1e4_x_sources_100": many,
        "threads": available_threads(),
        "block_elements": BLOCK_ELEMENTS,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
