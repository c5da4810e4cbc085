"""Time of a full leak-localisation posterior over the reference site's pipelines.

The product: :func:`pipesentinel.detection.localisation.localise` over every ~1 m candidate of
both pipelines (~7000) with every device of the site as an observation (20 + 10 detectors, 8
laser beams), the point detectors averaged over the wind direction analytically and the rate on
its log grid. Measured cold (footprint computed) and warm (footprint cached by
:class:`Localiser`, the case of re-estimating on each batch while the wind state holds). The
likelihood trims the candidates that cannot explain the detections before any (candidate x rate)
array is built (:func:`~pipesentinel.detection.localisation.log_likelihood`), so a warm estimate
of a well-seen leak costs little more than the footprint's lookup.

Also timed in the same run: the point detectors' footprint with the analytic direction average
(the default) against the 5-node Gauss-Hermite average it replaced.

The baseline, in the same run: a naive per-candidate Python loop over the same candidates (one
call of the same footprint functions and of the same likelihood per candidate), timed on a
subset and reported per candidate; the figure of merit is the ratio of candidates per second.
The goal of issue 3 is a full posterior under 100 ms. Run with ``python -m bench.localisation``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.localisation import (
    MODEL_LOG_SIGMA,
    Candidates,
    LocalisationConfig,
    LocalisationMode,
    Localiser,
    ObservationKind,
    Observations,
    WindState,
    footprint,
    laser_beam_from_camera,
    localise,
    log_likelihood,
    pipeline_candidates,
    point_footprint_mole_fraction,
)
from pipesentinel.site import DetectorPlacement, Gas, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parent.parent / "sites" / "wanli"
GOAL_MS = 100.0
REPEATS = 5
NAIVE_SUBSET = 200
LEAK_PIPELINE_ID = "P1"
LEAK_CHAINAGE_M = 2236.0  # the reference scenario's leak
LEAK_RATE_KG_PER_S = 0.75
DETECTOR_FLOOR_MOLE_FRACTION = 250e-6  # 0.5 % of a 0-50000 ppm range
LASER_FLOOR_MOLE_FRACTION_M = 35e-6
INGRESS_FRACTION = 0.316
PREVIOUS_DIRECTION_SAMPLES = 5  # the Gauss-Hermite average the analytic one replaced
NOISE_LOG_SIGMA = 0.3  # multiplicative noise put on the synthetic readings
WIND = WindState(
    speed_m_per_s=3.5,
    direction_from_rad=math.radians(80.0),
    sigma_theta_rad=math.radians(8.0),
    stability_class=3,
    station_count=2,
)
BASIS = LelBasis.IEC_60079_20_1


def _observations(site: Site, rng: np.random.Generator) -> Observations:
    """Every device of the site, readings from the model for the reference leak with noise."""
    receptors, ids, kinds = [], [], []
    for detector in site.gas_detectors:
        below = detector.placement is DetectorPlacement.UNDERGROUND
        position = np.array(detector.position_m)
        position[2] = max(position[2], 0.0)
        receptors.append(position)
        ids.append(detector.id)
        kinds.append(ObservationKind.UNDERGROUND if below else ObservationKind.POINT)
    beams = [laser_beam_from_camera(camera) for camera in site.cameras]
    ids += [camera.id for camera in site.cameras]
    kinds += [ObservationKind.LASER] * len(beams)
    laser = np.array([kind is ObservationKind.LASER for kind in kinds])
    underground = np.array([kind is ObservationKind.UNDERGROUND for kind in kinds])
    skeleton = {
        "gas": Gas.METHANE,
        "device_ids": tuple(ids),
        "kinds": tuple(kinds),
        "floor": np.where(laser, LASER_FLOOR_MOLE_FRACTION_M, DETECTOR_FLOOR_MOLE_FRACTION),
        "log_sigma": np.full(len(ids), MODEL_LOG_SIGMA),
        "factor": np.where(underground, INGRESS_FRACTION, 1.0),
        "receptor_m": np.array(receptors),
        "beam_start_m": np.array([start for start, _ in beams]),
        "beam_end_m": np.array([end for _, end in beams]),
        "sample_count": np.full(len(ids), 100),
    }
    empty = Observations(excess=np.zeros(len(ids)), **skeleton)  # type: ignore[arg-type]
    pipeline = site.pipeline(LEAK_PIPELINE_ID)
    source = pipeline.point_at_chainage(LEAK_CHAINAGE_M)[np.newaxis]
    single = Candidates(mode=LocalisationMode.GRID, position_m=source, spacing_m=1.0)
    truth = footprint(single, empty, WIND)[0] * LEAK_RATE_KG_PER_S
    noisy = truth * np.exp(NOISE_LOG_SIGMA * rng.standard_normal(truth.shape))
    return Observations(excess=noisy, **skeleton)  # type: ignore[arg-type]


def _best_seconds(action: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def run(*, repeats: int = REPEATS, naive_subset: int = NAIVE_SUBSET) -> dict[str, object]:
    """Cold and warm posterior times [ms] and the vectorized / per-candidate-loop ratio.

    ``repeats``: timings are the best of this many runs; ``naive_subset``: candidates timed in
    the per-candidate loop (small values for smoke tests).
    """
    rng = np.random.default_rng(20240612)
    site = load_site(SITE_DIR)
    candidates = pipeline_candidates(site)
    observations = _observations(site, rng)
    config = LocalisationConfig()
    rates = config.rates_kg_per_s

    def cold() -> object:
        return localise(candidates, observations, WIND, config=config, lel_basis=BASIS)

    localiser = Localiser(candidates, lel_basis=BASIS, config=config)
    localiser.estimate(observations, WIND)

    def warm() -> object:
        return localiser.estimate(observations, WIND)

    cold_s = _best_seconds(cold, repeats)
    warm_s = _best_seconds(warm, repeats)
    footprint_s = _best_seconds(
        lambda: footprint(candidates, observations, WIND, config=config), repeats
    )
    result = localise(candidates, observations, WIND, config=config, lel_basis=BASIS)
    sources = candidates.sources_m
    point_s = _best_seconds(
        lambda: point_footprint_mole_fraction(
            sources, observations.receptor_m, WIND, gas=Gas.METHANE, urban=config.urban
        ),
        repeats,
    )
    five_nodes_s = _best_seconds(
        lambda: point_footprint_mole_fraction(
            sources,
            observations.receptor_m,
            WIND,
            gas=Gas.METHANE,
            urban=config.urban,
            direction_samples=PREVIOUS_DIRECTION_SAMPLES,
        ),
        repeats,
    )

    # Baseline: the same model, one candidate per iteration of a Python loop.
    chosen = rng.choice(candidates.count, naive_subset, replace=False)

    def naive() -> None:
        for index in chosen:
            one = Candidates(
                mode=LocalisationMode.GRID,
                position_m=candidates.position_m[index : index + 1],
                spacing_m=candidates.spacing_m,
            )
            matrix = footprint(one, observations, WIND, config=config)
            log_likelihood(
                matrix, observations.excess, observations.floor, observations.log_sigma, rates
            )

    naive_s = _best_seconds(naive, min(repeats, 2))
    vector_rate = candidates.count / cold_s
    naive_rate = naive_subset / naive_s
    return {
        "benchmark": "detection.localisation.localise (reference site, both pipelines)",
        "candidates": candidates.count,
        "observations": len(observations.device_ids),
        "observations_by_kind": {
            kind.value: sum(1 for k in observations.kinds if k is kind) for kind in ObservationKind
        },
        "direction_samples": config.direction_samples,
        "beam_panels": config.beam_panels,
        "rate_grid": len(rates),
        "cold_ms": 1e3 * cold_s,
        "warm_ms": 1e3 * warm_s,
        "footprint_ms": 1e3 * footprint_s,
        "point_footprint_ms": 1e3 * point_s,
        "point_footprint_five_nodes_ms": 1e3 * five_nodes_s,
        "point_footprint_speedup": five_nodes_s / point_s,
        "goal_ms": GOAL_MS,
        "cold_met": 1e3 * cold_s < GOAL_MS,
        "warm_met": 1e3 * warm_s < GOAL_MS,
        "vectorized_candidates_per_s": vector_rate,
        "naive_loop_candidates_per_s": naive_rate,
        "naive_subset_candidates": naive_subset,
        "repeats": repeats,
        "ratio": vector_rate / naive_rate,
        "map_chainage_m": result.map_chainage_m,
        "true_chainage_m": LEAK_CHAINAGE_M,
        "map_pipeline_id": result.map_pipeline_id,
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
