"""Gas readings per second through the vectorized alarm core against the per-reading reference.

The baseline is :class:`~pipesentinel.detection.thresholds.SequentialGasAlarmEvaluator`, the
straightforward one-reading-at-a-time specification of the same alarms (plain Python per
reading). Both evaluate the same stream of readings, split into the same batches, in the same
run; the figure of merit is the ratio of their rates, and both must produce the same transitions.
The stream is a fleet of detectors sampling every 2 s: 0.5 % FS white noise around zero, with a
few detectors seeing a rising then falling plume so that LOW, HIGH and RATE_OF_RISE transitions
happen. Both evaluators first run an untimed warm-up of ``WARMUP_S`` of readings, so that the
timed batches see full rate-of-rise windows (steady state), and each timed repeat starts from a
copy of the warmed state. The headline case is a 1 s batch of a 100-site city: 3000 detectors,
3000 readings per batch. Run with ``python -m bench.thresholds``; it prints one JSON object.

Timing is the best of ``REPEATS`` by the wall clock (``time.perf_counter``), the two
implementations' repeats alternating so that both see the same machine load. On a shared,
loaded machine ``--clock cpu`` times this process's CPU time instead (``time.process_time``;
the evaluators are single-threaded), which other processes disturb far less.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from pipesentinel.alarm_config import GasSetpoints
from pipesentinel.detection.gases import DEFAULT_LEL_BASIS
from pipesentinel.detection.thresholds import (
    EvaluationResult,
    GasAlarmEvaluator,
    SequentialGasAlarmEvaluator,
    SetpointTable,
)

GOAL_RATIO = 50.0
REPEATS = 3
SAMPLE_PERIOD_S = 2.0
FULL_SCALE_MOLE_FRACTION = 0.05  # 0-50000 ppm, the reference site's detectors
NOISE_FRACTION_OF_FULL_SCALE = 0.005
PLUME_PEAK_MOLE_FRACTION = 0.03  # 68 %LEL methane at the peak
PLUME_FRACTION_OF_DETECTORS = 0.1
WARMUP_S = 64.0  # longer than the default 60 s rate-of-rise window: full windows when timed
# (detectors, readings per batch, timed batches): a site-sized fleet at several batch sizes, and
# a 100-site city (3000 detectors; 3000 readings = a 1 s batch at a 2 s period: the headline).
CASES: tuple[tuple[int, int, int], ...] = (
    (30, 30, 200),
    (30, 300, 40),
    (30, 3000, 8),
    (3000, 3000, 16),
    (3000, 30000, 2),
)
HEADLINE_CASE: tuple[int, int] = (3000, 3000)

Stream = tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]


def stream(detectors: int, readings: int, rng: np.random.Generator) -> Stream:
    """Round-robin readings of ``detectors`` every 2 s: noise, and a plume on a few of them."""
    index = np.arange(readings)
    detector = (index % detectors).astype(np.int64)
    sample = index // detectors
    time_s = sample * SAMPLE_PERIOD_S + detector * (SAMPLE_PERIOD_S / detectors)
    noise = rng.normal(0.0, NOISE_FRACTION_OF_FULL_SCALE * FULL_SCALE_MOLE_FRACTION, (readings, 2))
    duration_s = max(float(time_s[-1]), SAMPLE_PERIOD_S)
    plumed = rng.random(detectors) < PLUME_FRACTION_OF_DETECTORS
    # A triangular plume over the stream's duration, methane and a tenth of it as propane.
    shape = 1.0 - np.abs(2.0 * time_s / duration_s - 1.0)
    plume = np.where(plumed[detector], PLUME_PEAK_MOLE_FRACTION * shape, 0.0)
    values = noise + np.column_stack([plume, 0.1 * plume])
    return detector, time_s.astype(np.float64), values


def table_of(detectors: int) -> SetpointTable:
    return SetpointTable.from_setpoints(
        [f"GD{index:05d}" for index in range(detectors)],
        GasSetpoints(),
        full_scale_mole_fraction=FULL_SCALE_MOLE_FRACTION,
        sample_period_s=SAMPLE_PERIOD_S,
        basis=DEFAULT_LEL_BASIS,
    )


def _evaluate_all(
    evaluate: Callable[..., EvaluationResult], readings: Stream, batch: int
) -> list[EvaluationResult]:
    detector, time_s, values = readings
    return [
        evaluate(
            detector[start : start + batch],
            time_s[start : start + batch],
            values[start : start + batch],
        )
        for start in range(0, detector.size, batch)
    ]


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _best_seconds(
    actions: Sequence[Callable[[], object]], clock: Callable[[], float]
) -> list[float]:
    """Best time of each action over ``REPEATS`` rounds, the actions alternating in each."""
    best = [math.inf] * len(actions)
    for _ in range(REPEATS):
        for index, action in enumerate(actions):
            start = clock()
            action()
            best[index] = min(best[index], clock() - start)
    return best


def _signature(results: Sequence[EvaluationResult]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for number, result in enumerate(results):
        found = result.transitions
        rows += zip(
            [number] * len(found),
            found.reading_index.tolist(),
            found.detector_index.tolist(),
            found.gas_index.tolist(),
            found.alarm_type.tolist(),
            found.became_active.tolist(),
            found.value_fraction_lel.tolist(),
            strict=True,
        )
    return rows


def case(
    detectors: int,
    batch: int,
    batches: int,
    rng: np.random.Generator,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, object]:
    """Rates of both implementations on the same stream, and whether they agree."""
    warmup = math.ceil(WARMUP_S / SAMPLE_PERIOD_S * detectors / batch) * batch
    detector, time_s, values = stream(detectors, warmup + batch * batches, rng)
    warm_stream: Stream = (detector[:warmup], time_s[:warmup], values[:warmup])
    readings: Stream = (detector[warmup:], time_s[warmup:], values[warmup:])
    table = table_of(detectors)
    warm_vector = GasAlarmEvaluator(table)
    warm_reference = SequentialGasAlarmEvaluator(table)
    _evaluate_all(warm_vector.evaluate, warm_stream, batch)
    _evaluate_all(warm_reference.evaluate, warm_stream, batch)

    def vectorized() -> list[EvaluationResult]:
        return _evaluate_all(copy.deepcopy(warm_vector).evaluate, readings, batch)

    def reference() -> list[EvaluationResult]:
        return _evaluate_all(copy.deepcopy(warm_reference).evaluate, readings, batch)

    vector_results = vectorized()
    reference_results = reference()
    vector_seconds, reference_seconds = _best_seconds((vectorized, reference), clock)
    count = int(readings[0].size)
    vector_rate = count / vector_seconds
    reference_rate = count / reference_seconds
    signature = _signature(vector_results)
    return {
        "detectors": detectors,
        "batch_readings": batch,
        "batches": batches,
        "readings": count,
        "transitions": len(signature),
        "vectorized_readings_per_s": vector_rate,
        "reference_readings_per_s": reference_rate,
        "ratio": vector_rate / reference_rate,
        "agree": signature == _signature(reference_results),
    }


def run(cases: Sequence[tuple[int, int, int]] = CASES, *, clock: str = "wall") -> dict[str, object]:
    """Measure every case; rates [readings s-1] and vectorized/reference ratios.

    ``clock``: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    rng = np.random.default_rng(20240603)
    results = [
        case(detectors, batch, batches, rng, CLOCKS[clock]) for detectors, batch, batches in cases
    ]
    ratios = [result["ratio"] for result in results if isinstance(result["ratio"], float)]
    return {
        "benchmark": "thresholds.GasAlarmEvaluator.evaluate",
        "baseline": "thresholds.SequentialGasAlarmEvaluator.evaluate (per reading, same stream)",
        "cases": results,
        "min_ratio": min(ratios),
        "goal": GOAL_RATIO,
        "met": all(ratio >= GOAL_RATIO for ratio in ratios),
        "headline": next(
            (
                result
                for result in results
                if (result["detectors"], result["batch_readings"]) == HEADLINE_CASE
            ),
            None,
        ),
        "all_agree": all(result["agree"] is True for result in results),
        "repeats_best_of": REPEATS,
        "clock": clock,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    print(json.dumps(run(clock=parser.parse_args().clock), indent=2))
