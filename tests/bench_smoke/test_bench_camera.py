"""Smoke test of the camera analytics benchmark: a tiny run and its keys (no timing asserted)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHANNEL_KEYS = {
    "analytics_ms",
    "analytics_cpu_ms",
    "decode_ms",
    "decode_cpu_ms",
    "ratio_analytics_to_decode",
}


def test_run_reports_its_keys_and_consistent_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    bench_camera = importlib.import_module("bench.camera")
    result = bench_camera.run(frames=2)
    json.dumps(result)  # serialisable as the runner writes it
    assert result["benchmark"] == "camera"
    assert result["frames"] == 2
    assert set(result["channels"]) == {"thermal", "visible"}
    assert set(result["channels"]["thermal"]) == CHANNEL_KEYS
    assert set(result["channels"]["visible"]) == CHANNEL_KEYS | {
        "mog2_ms",
        "ratio_analytics_to_mog2",
    }
    for figures in result["channels"].values():
        for value in figures.values():
            assert math.isfinite(value)
            assert value > 0
        assert math.isclose(
            figures["ratio_analytics_to_decode"], figures["analytics_ms"] / figures["decode_ms"]
        )
    per_camera = sum(
        c["analytics_cpu_ms"] + c["decode_cpu_ms"] for c in result["channels"].values()
    )
    assert math.isclose(result["per_camera_cpu_ms"], per_camera)
    assert math.isclose(
        result["core_fraction"], result["cameras"] * per_camera * 1e-3 / result["frame_period_s"]
    )
    assert result["cameras"] == 8
    assert result["met"] is (result["core_fraction"] <= result["goal"])
