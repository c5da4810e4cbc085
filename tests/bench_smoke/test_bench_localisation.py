"""Smoke test of the localisation benchmark: a tiny run and its keys (no timing is asserted)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "benchmark",
    "candidates",
    "observations",
    "observations_by_kind",
    "direction_samples",
    "beam_panels",
    "rate_grid",
    "cold_ms",
    "warm_ms",
    "footprint_ms",
    "point_footprint_ms",
    "point_footprint_five_nodes_ms",
    "point_footprint_speedup",
    "goal_ms",
    "cold_met",
    "warm_met",
    "vectorized_candidates_per_s",
    "naive_loop_candidates_per_s",
    "naive_subset_candidates",
    "repeats",
    "ratio",
    "map_chainage_m",
    "true_chainage_m",
    "map_pipeline_id",
    "load_average_1min",
    "cpus",
    "numpy",
    "python",
    "machine",
}


def test_localisation_benchmark_tiny_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/ is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    module = importlib.import_module("bench.localisation")
    result = module.run(repeats=1, naive_subset=3)
    assert set(result) == KEYS
    json.dumps(result)
    assert result["candidates"] > 7000  # both lines of the reference site at ~1 m
    assert result["observations"] == 38
    assert result["observations_by_kind"] == {"point": 20, "underground": 10, "laser": 8}
    assert result["naive_subset_candidates"] == 3
    for key in ("cold_ms", "warm_ms", "footprint_ms", "point_footprint_ms", "ratio"):
        assert math.isfinite(result[key])
        assert result[key] > 0.0
    # The benchmark's synthetic leak is found where it was put (noise-free geometry, noisy data).
    assert result["map_pipeline_id"] == "P1"
    assert abs(result["map_chainage_m"] - result["true_chainage_m"]) < 30.0
