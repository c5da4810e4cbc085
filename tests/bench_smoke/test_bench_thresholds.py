"""Smoke test of the threshold benchmark: a tiny run, its JSON keys, and agreement.

No timing is asserted (benchmarks report ratios; tests never assert wall-clock times).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_KEYS = {
    "benchmark",
    "baseline",
    "cases",
    "min_ratio",
    "goal",
    "met",
    "headline",
    "headline_met",
    "all_agree",
    "repeats_best_of",
    "clock",
    "numpy",
    "python",
}
CASE_KEYS = {
    "detectors",
    "batch_readings",
    "batches",
    "plume_fraction",
    "readings",
    "transitions",
    "quiet_batches",
    "vectorized_readings_per_s",
    "reference_readings_per_s",
    "ratio",
    "clocks",
    "agree",
}
RATE_KEYS = ("vectorized_readings_per_s", "reference_readings_per_s", "ratio")


@pytest.fixture
def bench_thresholds(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # bench/ is not an installed package
    return importlib.import_module("bench.thresholds")


def test_tiny_run_has_its_keys_and_both_implementations_agree(
    bench_thresholds: ModuleType,
) -> None:
    result = bench_thresholds.run(cases=((4, 8, 40), (20, 100, 3), (4, 8, 10, 0.0)))
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == TOP_LEVEL_KEYS
    assert result["clock"] == "cpu"  # the default
    assert result["goal"] == 50.0
    assert result["all_agree"] is True
    assert len(result["cases"]) == 3
    for case in result["cases"]:
        assert set(case) == CASE_KEYS
        assert case["agree"] is True
        assert case["readings"] == case["batch_readings"] * case["batches"]
        assert 0 <= case["quiet_batches"] <= case["batches"]
        assert set(case["clocks"]) == {"cpu", "wall"}
        for figures in (case, case["clocks"]["cpu"], case["clocks"]["wall"]):
            for key in RATE_KEYS:
                assert math.isfinite(figures[key])
                assert figures[key] > 0
            assert math.isclose(
                figures["ratio"],
                figures["vectorized_readings_per_s"] / figures["reference_readings_per_s"],
            )
        assert {key: case[key] for key in RATE_KEYS} == case["clocks"]["cpu"]
    assert result["met"] is (result["min_ratio"] >= result["goal"])
    assert result["headline"] is None  # the tiny run has no 3000-detector case
    assert result["headline_met"] is None
    *plumed, quiet = result["cases"]
    assert [case["plume_fraction"] for case in plumed] == [0.1, 0.1]  # the default
    # The plume makes alarms happen (on 10 % of the detectors: some rise through LOW).
    assert sum(case["transitions"] for case in plumed) > 0
    # No plume: noise alone (0.57 %LEL methane, 1 sigma) never nears a set point, so every
    # batch takes the quiet path.
    assert quiet["plume_fraction"] == 0.0
    assert quiet["transitions"] == 0
    assert quiet["quiet_batches"] == quiet["batches"]


def test_wall_clock_runs_and_an_unknown_clock_is_refused(bench_thresholds: ModuleType) -> None:
    result = bench_thresholds.run(cases=((4, 8, 10),), clock="wall")
    assert result["clock"] == "wall"
    assert result["all_agree"] is True
    case = result["cases"][0]
    assert case["ratio"] == case["clocks"]["wall"]["ratio"]
    with pytest.raises(ValueError, match="clock must be one of"):
        bench_thresholds.run(cases=((4, 8, 10),), clock="sundial")
