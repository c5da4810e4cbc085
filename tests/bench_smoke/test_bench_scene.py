"""Smoke test of the scene benchmark: its JSON keys, goals and ratios on a short run.

``run(repeats=1, steps=2)`` goes through the same code as ``make bench`` (response, plume, GLB,
VTK's exporter) with the fewest repeats and plume steps. No timing is asserted (benchmarks report
ratios; tests never assert wall-clock times); sizes are deterministic and are checked.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_scene(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.scene")


def test_run_reports_its_keys_and_a_glb_within_the_goal(bench_scene: ModuleType) -> None:
    result = bench_scene.run(repeats=1, steps=2)
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == {
        "benchmark",
        "scenario",
        "glb",
        "scene",
        "plume_step",
        "repeats",
        "python",
        "machine",
    }
    assert result["benchmark"] == "simulation.scene"
    assert result["scenario"]["plume_steps"] == 2
    glb = result["glb"]
    # Two plume steps of a 3 MB budget for ten: well inside the goal, and not empty.
    assert 100_000 < glb["bytes"] < bench_scene.GLB_GOAL_BYTES
    assert glb["within_goal"] is True
    assert glb["vtk_gltf_exporter_bytes"] > 0
    for section, keys in (
        ("glb", ("write_median_ms", "vtk_gltf_exporter_ms", "ratio_time", "ratio_size")),
        ("scene", ("build_median_ms", "build_and_glb_median_ms")),
        ("plume_step", ("model_setup_ms", "step_median_ms", "recompute_median_ms", "ratio")),
    ):
        for key in keys:
            value = result[section][key]
            assert math.isfinite(value)
            assert value > 0.0
    assert result["plume_step"]["ratio"] == pytest.approx(
        result["plume_step"]["recompute_median_ms"] / result["plume_step"]["step_median_ms"],
        rel=0.02,
    )
    assert isinstance(result["scene"]["within_goal"], bool)
    assert isinstance(result["plume_step"]["within_goal"], bool)


def test_bench_is_registered(bench_scene: ModuleType) -> None:
    runner = importlib.import_module("bench.__main__")
    assert "scene" in runner.BENCHMARKS
