"""Off-screen rendering (simulation/render.py): real VTK renders through EGL, checked by pixels.

Each render is a real off-screen VTK render (a few seconds on the 2-core VM with Mesa's software
EGL). The checks are pixel statistics: the picture is not blank, the red zone and the leak show
up as red pixels where they are drawn and not when their layers are hidden.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpy.typing import NDArray
from shapely.geometry import box

from pipesentinel.simulation.render import (
    CameraView,
    leak_view,
    render_scene_png,
    scene_image,
    site_view,
)
from pipesentinel.simulation.scene import Layer, PipeState, Scene, SceneLayers, build_scene
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
SIZE_PX = (320, 240)
LEAK_CHAINAGE_M = 1200.0


@pytest.fixture(scope="module")
def leak_scene() -> tuple[Scene, NDArray[np.float64]]:
    site = load_site(SITE_DIR)
    pipeline = site.pipelines[0]
    leak = pipeline.point_at_chainage(LEAK_CHAINAGE_M)
    scene = build_scene(
        site,
        SceneLayers(
            segment_states={pipeline.segment_at_chainage(LEAK_CHAINAGE_M).id: PipeState.LEAK},
            zones_m={"red": box(*(leak - 40.0), *(leak + 40.0))},
            leak_position_m=(float(leak[0]), float(leak[1])),
        ),
    )
    return scene, leak


def red_fraction(image: NDArray[np.uint8]) -> float:
    red, green, blue = (image[..., i].astype(int) for i in range(3))
    return float(np.mean((red > 150) & (red - green > 60) & (red - blue > 60)))


def test_site_png_is_a_picture_of_the_right_size(
    leak_scene: tuple[Scene, NDArray[np.float64]],
) -> None:
    scene, _ = leak_scene
    png = render_scene_png(scene, size_px=SIZE_PX)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the bytes are not a PNG OpenCV can read"
    assert image.shape == (SIZE_PX[1], SIZE_PX[0], 3)
    # Not blank: the ground, buildings and roads give many colours and contrast.
    assert float(image.std()) > 10.0
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_leak_view_shows_the_red_zone_and_hiding_it_removes_it(
    leak_scene: tuple[Scene, NDArray[np.float64]],
) -> None:
    scene, leak = leak_scene
    view = leak_view(leak, 80.0, wind_from_deg=200.0)
    shown = scene_image(scene, view=view, size_px=SIZE_PX)
    hidden = scene_image(
        scene,
        view=view,
        size_px=SIZE_PX,
        hidden_layers={Layer.ZONES, Layer.LEAK, Layer.PIPELINES},
    )
    assert red_fraction(shown) > 0.05  # an 80 m red box in a 160 m wide view
    assert red_fraction(hidden) < 0.01
    # The zone is centred on the leak, which the camera looks at: the image centre is red.
    height, width = shown.shape[:2]
    centre = shown[height // 2 - 5 : height // 2 + 5, width // 2 - 5 : width // 2 + 5]
    assert red_fraction(centre) > 0.5


def test_camera_views() -> None:
    view = CameraView(
        focus_m=(10.0, 20.0, 0.0), azimuth_deg=180.0, elevation_deg=0.0, distance_m=50.0
    )
    assert_allclose(view.position_m, [10.0, -30.0, 0.0], atol=1e-12)  # due south, level
    above = CameraView(
        focus_m=(0.0, 0.0, 0.0), azimuth_deg=90.0, elevation_deg=30.0, distance_m=2.0
    )
    assert_allclose(above.position_m, [np.sqrt(3.0), 0.0, 1.0], atol=1e-12)
    with pytest.raises(ValueError, match="distance_m"):
        CameraView(focus_m=(0.0, 0.0, 0.0), azimuth_deg=0.0, elevation_deg=10.0, distance_m=0.0)
    # Across the wind: a wind from the north is looked at from the east.
    assert leak_view((0.0, 0.0), 100.0, wind_from_deg=0.0).azimuth_deg == 90.0


def test_site_view_looks_at_the_middle_of_the_ground(
    leak_scene: tuple[Scene, NDArray[np.float64]],
) -> None:
    scene, _ = leak_scene
    ground = scene.object("ground").mesh.bounds_m
    view = site_view(scene)
    assert_allclose(view.focus_m[:2], ground.mean(axis=0)[:2])
    assert view.distance_m > float(np.max(ground[1] - ground[0]))


def test_unknown_plume_step_is_refused(leak_scene: tuple[Scene, NDArray[np.float64]]) -> None:
    scene, _ = leak_scene
    assert not scene.layer(Layer.PLUME)
    scene_image(scene, size_px=(32, 32), plume_time_s=None)  # no plume: nothing to choose
    with pytest.raises(ValueError, match="too small"):
        scene_image(scene, size_px=(8, 8))
