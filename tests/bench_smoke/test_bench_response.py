"""Smoke test of the response benchmark: a tiny run and its shape (no timing is asserted)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_response_benchmark_tiny_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/ is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    module = importlib.import_module("bench.response")
    result = module.run(repeats=2)
    json.dumps(result, allow_nan=False)
    assert result["repeats"] == 2
    assert set(result["cases"]) == {case[0] for case in module.CASES}
    for case in result["cases"].values():
        assert set(case["stage_median_ms"]) == {
            "isolation",
            "zones",
            "people",
            "plan",
            "public_alert",
            "geojson",
        }
        assert 0.0 < case["zones_and_plan_median_ms"] <= case["response_median_ms"]
        assert math.isfinite(case["zones_and_plan_in_reference_units"])
        assert case["yellow_extent_m"] >= case["red_extent_m"] > 0.0
    # The large release toward the kindergarten by day selects the kindergarten's plan.
    assert result["cases"]["methane_kindergarten_E"]["plan_id"] == "WL-02"
    assert result["goal_met"] == (result["worst_zones_and_plan_p95_ms"] < result["goal_ms"])
