"""Off-screen PNG of a 3D scene (pyvista / VTK), for reports and for a quick look without a browser.

:func:`render_scene_png` draws a :class:`~pipesentinel.simulation.scene.Scene` from a fixed
camera (:func:`site_view` for the whole site, :func:`leak_view` for the neighbourhood of a leak)
and returns PNG bytes; it writes nothing. The plume is drawn at one time step (the last by
default). Translucent objects are sorted by depth peeling.

Headless machines render through EGL (VTK picks ``vtkEGLRenderWindow`` when there is no
display); on Debian that needs ``libegl1 libegl-mesa0 libgl1-mesa-dri`` (``make test`` installs
them when missing, docs/scene.md).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import pyvista as pv
from numpy.typing import ArrayLike, NDArray

from pipesentinel.simulation.scene import Layer, Mesh, Rgba, Scene, SceneObject

FloatArray = NDArray[np.float64]

__all__ = ["CameraView", "leak_view", "render_scene_png", "scene_image", "site_view"]

BACKGROUND_RGB: Final = (0.93, 0.95, 0.97)  # light grey-blue sky (display choice)
DEFAULT_SIZE_PX: Final = (1600, 1000)
SITE_VIEW_AZIMUTH_DEG: Final = 200.0  # camera south-south-west of the site, looking north-east
SITE_VIEW_ELEVATION_DEG: Final = 40.0
SITE_VIEW_DISTANCE_FACTOR: Final = 1.1  # camera distance over the larger horizontal span
LEAK_VIEW_ELEVATION_DEG: Final = 35.0
VIEW_ANGLE_DEG: Final = 30.0  # vertical field of view of the virtual camera (VTK's default)
DEPTH_PEELS: Final = 8
PNG_COMPRESSION: Final = 3  # zlib level (as the 2D map)


@dataclass(frozen=True)
class CameraView:
    """Where the camera looks from: a focus point, a direction and a distance.

    ``azimuth_deg`` is the bearing from the focus to the camera, clockwise from north [deg];
    ``elevation_deg`` its angle above the horizon seen from the focus [deg]; ``distance_m`` [m].
    """

    focus_m: tuple[float, float, float]
    azimuth_deg: float
    elevation_deg: float
    distance_m: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.distance_m) and self.distance_m > 0.0):
            raise ValueError(f"distance_m must be > 0, got {self.distance_m}")
        if not -90.0 < self.elevation_deg < 90.0:
            raise ValueError(f"elevation_deg must be in (-90, 90), got {self.elevation_deg}")

    @property
    def position_m(self) -> FloatArray:
        """Camera position, site east-north-up [m]."""
        azimuth = math.radians(self.azimuth_deg)
        elevation = math.radians(self.elevation_deg)
        direction = np.array(
            [
                math.sin(azimuth) * math.cos(elevation),
                math.cos(azimuth) * math.cos(elevation),
                math.sin(elevation),
            ]
        )
        position: FloatArray = np.asarray(self.focus_m) + self.distance_m * direction
        return position


def site_view(scene: Scene) -> CameraView:
    """The whole site from the south-south-west, 40 degrees above the horizon."""
    bounds = scene.object("ground").mesh.bounds_m if _has(scene, "ground") else scene.bounds_m
    centre = bounds.mean(axis=0)
    span = float(np.max(bounds[1, :2] - bounds[0, :2]))
    return CameraView(
        focus_m=(float(centre[0]), float(centre[1]), 0.0),
        azimuth_deg=SITE_VIEW_AZIMUTH_DEG,
        elevation_deg=SITE_VIEW_ELEVATION_DEG,
        distance_m=SITE_VIEW_DISTANCE_FACTOR * span,
    )


def leak_view(
    leak_position_m: ArrayLike, radius_m: float, *, wind_from_deg: float | None = None
) -> CameraView:
    """A leak and ``radius_m`` [m] around it, seen across the wind when it is given [deg]."""
    leak = np.asarray(leak_position_m, dtype=np.float64).reshape(-1)
    azimuth = SITE_VIEW_AZIMUTH_DEG if wind_from_deg is None else (wind_from_deg + 90.0) % 360.0
    distance = radius_m / math.tan(math.radians(VIEW_ANGLE_DEG / 2.0))
    return CameraView(
        focus_m=(float(leak[0]), float(leak[1]), 0.0),
        azimuth_deg=azimuth,
        elevation_deg=LEAK_VIEW_ELEVATION_DEG,
        distance_m=distance,
    )


def _has(scene: Scene, object_id: str) -> bool:
    return any(item.id == object_id for item in scene.objects)


def _polydata(mesh: Mesh) -> pv.PolyData:
    faces = np.hstack([np.full((mesh.triangle_count, 1), 3), mesh.triangles]).ravel()
    data = pv.PolyData(mesh.positions_m, faces=faces)
    data.point_data["Normals"] = mesh.normals
    data.point_data.active_normals_name = "Normals"
    return data


def _batches(objects: list[SceneObject]) -> list[tuple[Rgba, Mesh]]:
    """Objects merged by colour: one VTK actor per colour draws much faster than one per object."""
    merged: dict[Rgba, list[Mesh]] = {}
    for item in objects:
        merged.setdefault(item.colour_rgba, []).append(item.mesh)
    return [(colour, Mesh.merge(meshes)) for colour, meshes in merged.items()]


def _shown(
    scene: Scene, plume_time_s: float | None, hidden: Collection[Layer]
) -> list[SceneObject]:
    plume = [
        item
        for item in scene.layer(Layer.PLUME)
        if isinstance(item.data.get("time_s"), float | int)
    ]
    times = sorted({float(item.data["time_s"]) for item in plume})  # type: ignore[arg-type]
    chosen = times[-1] if times and plume_time_s is None else plume_time_s
    if chosen is not None and times and chosen not in times:
        raise ValueError(f"no plume step at {chosen} s; steps: {times}")
    return [
        item
        for item in scene.objects
        if item.layer not in hidden
        and item.mesh.triangle_count
        and (item.layer is not Layer.PLUME or item.data.get("time_s") == chosen)
    ]


def scene_image(
    scene: Scene,
    *,
    view: CameraView | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
    plume_time_s: float | None = None,
    hidden_layers: Collection[Layer] = (),
) -> NDArray[np.uint8]:
    """The scene rendered off screen as an RGB image, shape (height, width, 3).

    Parameters
    ----------
    scene
        What to draw.
    view
        The camera; :func:`site_view` by default.
    size_px
        Image (width, height) [px].
    plume_time_s
        Which plume step to draw [s]; the last by default.
    hidden_layers
        Layers not drawn.
    """
    width, height = size_px
    if width < 16 or height < 16:
        raise ValueError(f"image of {width} x {height} px is too small")
    camera = view or site_view(scene)
    plotter = pv.Plotter(off_screen=True, window_size=[width, height])
    try:
        # pyvista 0.49 wraps these two methods in a decorator whose type mypy cannot call.
        plotter.set_background(BACKGROUND_RGB)  # type: ignore[arg-type]
        # Depth peeling sorts the translucent layers; under Mesa's EGL it only works with
        # multisampling off (with it on, every translucent object vanished: measured here).
        if plotter.ren_win is not None:
            plotter.ren_win.SetMultiSamples(0)
        plotter.enable_depth_peeling(number_of_peels=DEPTH_PEELS)  # type: ignore[call-arg]
        for colour, mesh in _batches(_shown(scene, plume_time_s, hidden_layers)):
            red, green, blue, alpha = colour
            plotter.add_mesh(
                _polydata(mesh), color=(red, green, blue), opacity=alpha, smooth_shading=True
            )
        plotter.camera_position = [
            tuple(float(v) for v in camera.position_m),
            camera.focus_m,
            (0.0, 0.0, 1.0),
        ]
        plotter.camera.view_angle = VIEW_ANGLE_DEG
        plotter.renderer.ResetCameraClippingRange()
        image = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    if image is None:
        raise RuntimeError("the off-screen render returned no image")
    return np.asarray(image[..., :3], dtype=np.uint8)


def render_scene_png(
    scene: Scene,
    *,
    view: CameraView | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
    plume_time_s: float | None = None,
    hidden_layers: Collection[Layer] = (),
) -> bytes:
    """The scene as PNG bytes (see :func:`scene_image` for the parameters)."""
    image = scene_image(
        scene,
        view=view,
        size_px=size_px,
        plume_time_s=plume_time_s,
        hidden_layers=hidden_layers,
    )
    ok, encoded = cv2.imencode(
        ".png",
        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION],
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode the rendered image as PNG")
    return bytes(encoded.tobytes())
