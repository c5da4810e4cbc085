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
    "readings",
    "transitions",
    "vectorized_readings_per_s",
    "reference_readings_per_s",
    "ratio",
    "agree",
}


@pytest.fixture
def bench_thresholds(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # bench/ is not an installed package
    return importlib.import_module("bench.thresholds")


def test_tiny_run_has_its_keys_and_both_implementations_agree(
    bench_thresholds: ModuleType,
) -> None:
    result = bench_thresholds.run(cases=((4, 8, 40), (20, 100, 3)))
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == TOP_LEVEL_KEYS
    assert result["clock"] == "wall"
    assert result["goal"] == 50.0
    assert result["all_agree"] is True
    assert len(result["cases"]) == 2
    for case in result["cases"]:
        assert set(case) == CASE_KEYS
        assert case["agree"] is True
        assert case["readings"] == case["batch_readings"] * case["batches"]
        for key in ("vectorized_readings_per_s", "reference_readings_per_s", "ratio"):
            assert math.isfinite(case[key])
            assert case[key] > 0
        assert math.isclose(
            case["ratio"], case["vectorized_readings_per_s"] / case["reference_readings_per_s"]
        )
    assert result["met"] is (result["min_ratio"] >= result["goal"])
    assert result["headline"] is None  # the tiny run has no 3000-detector case
    # The plume makes alarms happen (4 detectors x 160 s: at least one rises through LOW).
    assert sum(case["transitions"] for case in result["cases"]) > 0


def test_cpu_clock_runs_and_an_unknown_clock_is_refused(bench_thresholds: ModuleType) -> None:
    result = bench_thresholds.run(cases=((4, 8, 10),), clock="cpu")
    assert result["clock"] == "cpu"
    assert result["all_agree"] is True
    with pytest.raises(ValueError, match="clock must be one of"):
        bench_thresholds.run(cases=((4, 8, 10),), clock="sundial")
