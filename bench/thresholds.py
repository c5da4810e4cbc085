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

Timing is the best of ``REPEATS``, the two implementations' repeats alternating so that both
see the same machine load, on two clocks at once: this process's CPU time
(``time.process_time``; the evaluators are single-threaded) and the wall clock
(``time.perf_counter``). The figures of merit (``ratio``, ``min_ratio``, ``met``) use ``--clock``,
CPU time by default: on a shared, loaded machine the wall clock also counts the time other
processes hold the core, which swung the headline by a third between runs, while the CPU time
is what the evaluator itself costs. Both clocks are in the JSON (``clocks`` of each case).

A case may name the fraction of detectors under the plume (default
``PLUME_FRACTION_OF_DETECTORS``); ``0`` is a quiet fleet, the live service's usual input, where
the core takes its quiet path (``quiet_batches`` counts those batches).
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
REPEATS = 5
SAMPLE_PERIOD_S = 2.0
FULL_SCALE_MOLE_FRACTION = 0.05  # 0-50000 ppm, the reference site's detectors
NOISE_FRACTION_OF_FULL_SCALE = 0.005
PLUME_PEAK_MOLE_FRACTION = 0.03  # 68 %LEL methane at the peak
PLUME_FRACTION_OF_DETECTORS = 0.1
WARMUP_S = 64.0  # longer than the default 60 s rate-of-rise window: full windows when timed
# (detectors, readings per batch, timed batches[, plume fraction]): a site-sized fleet at several
# batch sizes, quiet and with a plume, and a 100-site city (3000 detectors; 3000 readings = a 1 s
# batch at a 2 s period: the headline).
Case = tuple[int, int, int] | tuple[int, int, int, float]
CASES: tuple[Case, ...] = (
    (30, 30, 200, 0.0),
    (30, 30, 200),
    (30, 300, 40),
    (30, 3000, 8),
    (3000, 3000, 16),
    (3000, 30000, 2),
)
HEADLINE_CASE: tuple[int, int, float] = (3000, 3000, PLUME_FRACTION_OF_DETECTORS)

Stream = tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]


def stream(
    detectors: int,
    readings: int,
    rng: np.random.Generator,
    plume_fraction: float = PLUME_FRACTION_OF_DETECTORS,
) -> Stream:
    """Round-robin readings of ``detectors`` every 2 s: noise, and a plume on a few of them."""
    index = np.arange(readings)
    detector = (index % detectors).astype(np.int64)
    sample = index // detectors
    time_s = sample * SAMPLE_PERIOD_S + detector * (SAMPLE_PERIOD_S / detectors)
    noise = rng.normal(0.0, NOISE_FRACTION_OF_FULL_SCALE * FULL_SCALE_MOLE_FRACTION, (readings, 2))
    duration_s = max(float(time_s[-1]), SAMPLE_PERIOD_S)
    plumed = rng.random(detectors) < plume_fraction
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


def _best_seconds(actions: Sequence[Callable[[], object]]) -> dict[str, list[float]]:
    """Best time of each action on each clock over ``REPEATS`` rounds, alternating in each."""
    best = {name: [math.inf] * len(actions) for name in CLOCKS}
    for _ in range(REPEATS):
        for index, action in enumerate(actions):
            start = {name: clock() for name, clock in CLOCKS.items()}
            action()
            for name, clock in CLOCKS.items():
                best[name][index] = min(best[name][index], clock() - start[name])
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
    *,
    clock: str = "cpu",
    plume_fraction: float = PLUME_FRACTION_OF_DETECTORS,
) -> dict[str, object]:
    """Rates of both implementations on the same stream, and whether they agree.

    ``clock`` (``"cpu"`` or ``"wall"``) gives the top-level rates and ratio; ``clocks`` has both.
    """
    warmup = math.ceil(WARMUP_S / SAMPLE_PERIOD_S * detectors / batch) * batch
    detector, time_s, values = stream(detectors, warmup + batch * batches, rng, plume_fraction)
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

    checked = copy.deepcopy(warm_vector)
    vector_results = _evaluate_all(checked.evaluate, readings, batch)
    reference_results = reference()
    best = _best_seconds((vectorized, reference))
    count = int(readings[0].size)
    clocks = {
        name: {
            "vectorized_readings_per_s": count / vector_seconds,
            "reference_readings_per_s": count / reference_seconds,
            "ratio": reference_seconds / vector_seconds,
        }
        for name, (vector_seconds, reference_seconds) in best.items()
    }
    signature = _signature(vector_results)
    return {
        "detectors": detectors,
        "batch_readings": batch,
        "batches": batches,
        "plume_fraction": plume_fraction,
        "readings": count,
        "transitions": len(signature),
        "quiet_batches": checked.quiet_batches - warm_vector.quiet_batches,
        **clocks[clock],
        "clocks": clocks,
        "agree": signature == _signature(reference_results),
    }


def run(cases: Sequence[Case] = CASES, *, clock: str = "cpu") -> dict[str, object]:
    """Measure every case; rates [readings s-1] and vectorized/reference ratios.

    ``clock``: ``"cpu"`` (this process's CPU time, the default) or ``"wall"`` (elapsed time)
    for the figures of merit; each case reports both.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    rng = np.random.default_rng(20240603)
    results = [
        case(
            detectors,
            batch,
            batches,
            rng,
            clock=clock,
            plume_fraction=float(rest[0]) if rest else PLUME_FRACTION_OF_DETECTORS,
        )
        for detectors, batch, batches, *rest in cases
    ]
    ratios = [result["ratio"] for result in results if isinstance(result["ratio"], float)]
    headline = next(
        (
            result
            for result in results
            if (result["detectors"], result["batch_readings"], result["plume_fraction"])
            == HEADLINE_CASE
        ),
        None,
    )
    headline_ratio = None if headline is None else headline["ratio"]
    return {
        "benchmark": "thresholds.GasAlarmEvaluator.evaluate",
        "baseline": "thresholds.SequentialGasAlarmEvaluator.evaluate (per reading, same stream)",
        "cases": results,
        "min_ratio": min(ratios),
        "goal": GOAL_RATIO,
        "met": all(ratio >= GOAL_RATIO for ratio in ratios),
        "headline": headline,
        "headline_met": (
            None if not isinstance(headline_ratio, float) else bool(headline_ratio >= GOAL_RATIO)
        ),
        "all_agree": all(result["agree"] is True for result in results),
        "repeats_best_of": REPEATS,
        "clock": clock,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    print(json.dumps(run(clock=parser.parse_args().clock), indent=2))
