"""The 3D scene of the reference site (issue 5 §5): GLB size, build time, plume time step.

Scenario: a what-if methane leak of 2 kg/s (credible range x/2 .. x2) on Wanli's P1 at chainage
1200 m, wind 2 m/s from 200 deg, class D; the emergency response (zones, isolation, routes) is
computed once with :func:`pipesentinel.plans.response.respond`, the cloud is drawn at
``PLUME_STEPS`` times (30 s .. 300 s). Measured, as medians of ``repeats`` warm runs:

* ``glb``: size of the scene's GLB (goal < 3 MB) and the time to write it, against VTK's own
  ``vtkGLTFExporter`` writing the same meshes (one actor per object, external ``.bin`` buffers;
  it writes positions and indices only: no normals, object names or data) in the same run:
  ``ratio_time`` = VTK / ours, ``ratio_size`` = VTK / ours.
* ``scene``: :func:`~pipesentinel.simulation.scene.build_scene` plus the GLB, from a site and a
  response to the bytes the API serves (goal < 2 s).
* ``plume_step``: one time step of the cloud, both isosurfaces (goal < 300 ms), against the same
  step with the steady field recomputed on the grids by the plume core each time (what the
  factorised Palazzi arrival factor saves): ``ratio`` = recompute / ours.

The machines are shared and noisy: the goals are compared with medians, and the ratios are
measured in the same run. Run with ``python -m bench.scene``; it prints one JSON object.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.library import Severity
from pipesentinel.plans.response import LeakEstimate, ResponseContext, respond
from pipesentinel.simulation import plume3d
from pipesentinel.simulation.gltf import scene_to_glb
from pipesentinel.simulation.plume3d import (
    PlumeModel,
    PlumeRelease,
    plume_data,
    plume_model,
    plume_surfaces,
)
from pipesentinel.simulation.scene import Scene, build_scene, layers_from_response
from pipesentinel.site import Gas
from pipesentinel.site_loader import load_site

SITE_DIR: Final = Path(__file__).resolve().parents[1] / "sites" / "wanli"
GLB_GOAL_BYTES: Final = 3_000_000
SCENE_GOAL_MS: Final = 2000.0
PLUME_STEP_GOAL_MS: Final = 300.0
PLUME_STEPS: Final = 10
PLUME_END_S: Final = 300.0
REPEATS: Final = 5
LEAK_PIPELINE: Final = "P1"
LEAK_CHAINAGE_M: Final = 1200.0
INCIDENT_TIME_S: Final = 1_796_000_000.0  # a fixed epoch (2026-11-28, daytime in Wanli)


def _median_ms(action: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    action()  # warm: imports, caches, VTK pipeline set-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), times


def _vtk_gltf_export(scene: Scene) -> tuple[float, int]:
    """Seconds and bytes of vtkGLTFExporter on the same meshes (one actor per object)."""
    import pyvista as pv  # noqa: PLC0415 - only this baseline needs a VTK render window
    import vtk  # type: ignore[import-untyped]  # noqa: PLC0415 - VTK ships no type hints

    from pipesentinel.simulation.render import _polydata  # noqa: PLC0415

    plotter = pv.Plotter(off_screen=True)
    try:
        for item in scene.objects:
            if item.mesh.triangle_count:
                red, green, blue, alpha = item.colour_rgba
                plotter.add_mesh(_polydata(item.mesh), color=(red, green, blue), opacity=alpha)
        with tempfile.TemporaryDirectory(prefix="pipesentinel-bench-scene-") as folder:
            exporter = vtk.vtkGLTFExporter()
            exporter.SetRenderWindow(plotter.ren_win)
            exporter.SetFileName(str(Path(folder) / "scene.gltf"))
            exporter.InlineDataOff()
            started = time.perf_counter()
            exporter.Write()
            seconds = time.perf_counter() - started
            size = sum(path.stat().st_size for path in Path(folder).iterdir())
    finally:
        plotter.close()
    return seconds, size


def _recomputed_step(model: PlumeModel, time_s: float) -> None:
    """The baseline step: the steady field evaluated again by the plume core on both grids."""
    for grid in model.grids:
        points = model.points_m(grid.level)
        steady = plume3d._steady_mole_fraction(points, model.release, model.release.rate_kg_per_s)
        factor = plume3d.arrival_factor(
            grid.x_m, grid.sigma_x_m, model.transport_speed_m_per_s, time_s
        )
        field = steady * factor[:, np.newaxis, np.newaxis]
        plume3d._isosurface(grid, field, model.release, plume3d.DEFAULT_MAX_TRIANGLES_PER_SURFACE)


def run(repeats: int = REPEATS, steps: int = PLUME_STEPS) -> dict[str, Any]:
    """Measure the scene; return the JSON-ready result."""
    site = load_site(SITE_DIR)
    context = ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)
    estimate = LeakEstimate.what_if(
        site,
        gas=Gas.METHANE,
        rate_kg_per_s=2.0,
        wind_speed_m_per_s=2.0,
        wind_from_deg=200.0,
        stability_class=StabilityClass.D,
        lel_basis=LelBasis.IEC_60079_20_1,
        pipeline_id=LEAK_PIPELINE,
        chainage_m=LEAK_CHAINAGE_M,
        rate_factor=2.0,
    )
    response = respond(
        context,
        incident_id="BENCH-SCENE",
        incident_version=1,
        time_s=INCIDENT_TIME_S,
        severity=Severity.CONFIRMED,
        estimate=estimate,
    )
    started = time.perf_counter()
    model = plume_model(PlumeRelease.from_leak_estimate(estimate))
    model_ms = (time.perf_counter() - started) * 1e3
    times = np.linspace(PLUME_END_S / steps, PLUME_END_S, steps)
    surfaces = plume_surfaces(model, times)
    layers = layers_from_response(response, plume=surfaces, plume_data=plume_data(model), site=site)

    scene_ms, _ = _median_ms(lambda: scene_to_glb(build_scene(site, layers)), repeats)
    build_ms, _ = _median_ms(lambda: build_scene(site, layers), repeats)
    scene = build_scene(site, layers)
    glb_ms, _ = _median_ms(lambda: scene_to_glb(scene), repeats)
    glb = scene_to_glb(scene)
    vtk_s, vtk_bytes = _vtk_gltf_export(scene)

    middle = float(times[len(times) // 2])
    step_ms, step_all = _median_ms(lambda: plume_surfaces(model, [middle]), repeats)
    recompute_ms, _ = _median_ms(lambda: _recomputed_step(model, middle), repeats)
    return {
        "benchmark": "simulation.scene",
        "scenario": {
            "site": site.id,
            "leak": f"{LEAK_PIPELINE} at {LEAK_CHAINAGE_M:g} m, methane 2 kg/s (x/2..x2)",
            "wind": "2 m/s from 200 deg, class D",
            "plume_steps": steps,
            "objects": len(scene.objects),
            "triangles": scene.triangle_count,
        },
        "glb": {
            "bytes": len(glb),
            "goal_bytes": GLB_GOAL_BYTES,
            "within_goal": len(glb) < GLB_GOAL_BYTES,
            "write_median_ms": round(glb_ms, 2),
            "vtk_gltf_exporter_ms": round(vtk_s * 1e3, 2),
            "vtk_gltf_exporter_bytes": vtk_bytes,
            "ratio_time": round(vtk_s * 1e3 / glb_ms, 2),
            "ratio_size": round(vtk_bytes / len(glb), 3),
        },
        "scene": {
            "build_median_ms": round(build_ms, 2),
            "build_and_glb_median_ms": round(scene_ms, 2),
            "goal_ms": SCENE_GOAL_MS,
            "within_goal": scene_ms < SCENE_GOAL_MS,
        },
        "plume_step": {
            "model_setup_ms": round(model_ms, 2),
            "step_median_ms": round(step_ms, 2),
            "step_max_ms": round(max(step_all), 2),
            "goal_ms": PLUME_STEP_GOAL_MS,
            "within_goal": step_ms < PLUME_STEP_GOAL_MS,
            "recompute_median_ms": round(recompute_ms, 2),
            "ratio": round(recompute_ms / step_ms, 2) if step_ms > 0 else math.inf,
            "grid_points_per_level": int(np.prod(plume3d.GRID_SHAPE)),
        },
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
