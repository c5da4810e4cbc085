"""Smoke test of the dispersion benchmark: a tiny case, its JSON keys and its agreement.

bench/dispersion.py has no size parameter on ``run()`` (its full run takes tens of seconds), so
this calls its ``_case`` with small arrays and a small Python subset. No timing is asserted
(benchmarks report ratios; tests never assert wall-clock times).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE_KEYS = {
    "receptors",
    "sources",
    "vectorized_evaluations_per_s",
    "python_evaluations_per_s",
    "python_subset_pairs",
    "ratio",
    "max_difference_relative_to_peak",
}
SUBSET_PAIRS = 300
# The vectorized kernel evaluates its exponentials in float32 where that is exact enough: the
# measured bound of the reflection factor's error is 1.7e-7 and of float32 exp 2.1e-7
# (docs/physics.md, "Numerical details"); 1e-5 of the peak leaves a wide margin and still fails on
# any real disagreement of the two implementations.
AGREEMENT_RELATIVE_TO_PEAK = 1e-5


@pytest.fixture
def bench_dispersion(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    module = importlib.import_module("bench.dispersion")
    monkeypatch.setattr(module, "PYTHON_SUBSET_PAIRS", SUBSET_PAIRS)
    monkeypatch.setattr(module, "REPEATS", 1)
    return module


@pytest.mark.parametrize(("receptors", "sources"), [(2000, 1), (200, 5)])
def test_case_reports_its_keys_and_agrees_with_the_python_loop(
    bench_dispersion: ModuleType, receptors: int, sources: int
) -> None:
    rng = np.random.default_rng(7)
    result = bench_dispersion._case(
        bench_dispersion._points(rng, receptors, 3.0),
        bench_dispersion._points(rng, sources, 2.0),
        rng,
    )
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == CASE_KEYS
    assert result["receptors"] == receptors
    assert result["sources"] == sources
    assert result["python_subset_pairs"] == SUBSET_PAIRS
    for key in ("vectorized_evaluations_per_s", "python_evaluations_per_s", "ratio"):
        assert math.isfinite(result[key])
        assert result[key] > 0.0
    assert math.isclose(
        result["ratio"],
        result["vectorized_evaluations_per_s"] / result["python_evaluations_per_s"],
    )
    assert 0.0 <= result["max_difference_relative_to_peak"] < AGREEMENT_RELATIVE_TO_PEAK


def test_points_lie_in_the_domain(bench_dispersion: ModuleType) -> None:
    points = bench_dispersion._points(np.random.default_rng(1), 500, 3.0)
    assert points.shape == (500, 3)
    half_width = bench_dispersion.DOMAIN_HALF_WIDTH_M
    assert np.all(np.abs(points[:, :2]) <= half_width)
    assert np.all((points[:, 2] >= 0.0) & (points[:, 2] <= 3.0))


def test_run_reports_its_keys(
    bench_dispersion: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() with every point set capped at 1000 points: the same code path, tiny arrays.
    full_points = bench_dispersion._points

    def few_points(rng: np.random.Generator, count: int, height_m: float) -> object:
        return full_points(rng, min(count, 1000), height_m)

    monkeypatch.setattr(bench_dispersion, "_points", few_points)
    result = bench_dispersion.run()
    json.dumps(result)
    assert set(result) == {
        "benchmark",
        "receptors_1e6_x_sources_1",
        "receptors_1e4_x_sources_100",
        "threads",
        "block_elements",
        "numpy",
        "python",
        "machine",
    }
    assert result["benchmark"] == "dispersion.plume_concentration_kg_per_m3"
    assert set(result["receptors_1e6_x_sources_1"]) == CASE_KEYS
    assert set(result["receptors_1e4_x_sources_100"]) == CASE_KEYS
    assert result["receptors_1e4_x_sources_100"]["sources"] == 100
    assert result["threads"] >= 1
    assert result["block_elements"] == 2**17  # docs/physics.md, "Numerical details"
