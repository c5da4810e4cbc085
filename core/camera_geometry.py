"""Pinhole camera geometry: pose, projection, pixel rays and where they meet the ground.

Pure geometry shared by the camera simulator (:mod:`pipesentinel.hardware.camera_model`) and the
camera analytics (:mod:`pipesentinel.detection.camera_analytics`), so that detection never imports
the simulators. Coordinates are the site's local east-north-up metres.

Camera frame: ``right = (cos h, -sin h, 0)``, ``forward = (sin h cos t, cos h cos t, -sin t)``,
``up = right x forward`` for heading ``h`` (clockwise from north) and downward tilt ``t``; pixel
columns grow to the right, rows grow downward, the principal point is the image centre
``((W - 1) / 2, (H - 1) / 2)`` and the focal lengths follow from the fields of view,
``f_x = (W / 2) / tan(hfov / 2)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from pipesentinel.site import Camera
from pipesentinel.units import DEGREE

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Points closer than this in front of the camera are not projected [m].
NEAR_PLANE_M = 0.5
# Rays whose downward component is smaller than this never reach the ground (at the horizon) [1].
GRAZING_RAY_Z = 1e-9


@dataclass(frozen=True)
class CameraPose:
    """Where a camera is and how it looks.

    Attributes
    ----------
    position_m
        East, north, up of the optical centre, shape (3,) [m].
    heading_rad
        Optical axis azimuth, clockwise from north [rad].
    tilt_rad
        Downward pitch of the optical axis [rad].
    horizontal_fov_rad
        Full horizontal field of view [rad].
    vertical_fov_rad
        Full vertical field of view [rad].
    width_px
        Image width [px].
    height_px
        Image height [px].
    """

    position_m: FloatArray
    heading_rad: float
    tilt_rad: float
    horizontal_fov_rad: float
    vertical_fov_rad: float
    width_px: int
    height_px: int

    def __post_init__(self) -> None:
        position = np.array(self.position_m, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"CameraPose.position_m must be 3 finite numbers, got {position}")
        position.setflags(write=False)
        object.__setattr__(self, "position_m", position)
        for name in ("horizontal_fov_rad", "vertical_fov_rad"):
            value = getattr(self, name)
            if not 0.0 < value < math.pi:
                raise ValueError(f"CameraPose.{name} must be in (0, pi), got {value}")
        if self.width_px < 1 or self.height_px < 1:
            raise ValueError(
                f"CameraPose image size must be positive: {self.width_px}x{self.height_px}"
            )

    @classmethod
    def from_camera(cls, camera: Camera) -> CameraPose:
        """The pose of a site camera (angles converted from degrees once, here)."""
        width, height = camera.resolution_px
        return cls(
            position_m=np.array(
                [camera.position_m[0], camera.position_m[1], camera.mounting_height_m]
            ),
            heading_rad=DEGREE.to_si(camera.heading_deg),
            tilt_rad=DEGREE.to_si(camera.tilt_deg),
            horizontal_fov_rad=DEGREE.to_si(camera.horizontal_fov_deg),
            vertical_fov_rad=DEGREE.to_si(camera.vertical_fov_deg),
            width_px=width,
            height_px=height,
        )

    @cached_property
    def axes(self) -> FloatArray:
        """Rows: right, up, forward unit vectors in ENU, shape (3, 3) [1]."""
        sin_h, cos_h = math.sin(self.heading_rad), math.cos(self.heading_rad)
        sin_t, cos_t = math.sin(self.tilt_rad), math.cos(self.tilt_rad)
        right = np.array([cos_h, -sin_h, 0.0])
        forward = np.array([sin_h * cos_t, cos_h * cos_t, -sin_t])
        up = np.cross(right, forward)
        return np.stack([right, up, forward])

    @property
    def focal_length_px(self) -> tuple[float, float]:
        """Horizontal and vertical focal lengths [px]."""
        return (
            0.5 * self.width_px / math.tan(0.5 * self.horizontal_fov_rad),
            0.5 * self.height_px / math.tan(0.5 * self.vertical_fov_rad),
        )

    @property
    def principal_point_px(self) -> tuple[float, float]:
        """Image centre (column, row) [px]."""
        return (0.5 * (self.width_px - 1), 0.5 * (self.height_px - 1))

    @cached_property
    def pixel_rays(self) -> FloatArray:
        """Unit ENU direction through every pixel centre, shape (height, width, 3) [1]."""
        focal_x, focal_y = self.focal_length_px
        centre_x, centre_y = self.principal_point_px
        x = (np.arange(self.width_px) - centre_x) / focal_x
        y = -(np.arange(self.height_px) - centre_y) / focal_y
        right, up, forward = self.axes
        rays = (
            forward[np.newaxis, np.newaxis, :]
            + x[np.newaxis, :, np.newaxis] * right[np.newaxis, np.newaxis, :]
            + y[:, np.newaxis, np.newaxis] * up[np.newaxis, np.newaxis, :]
        )
        return np.asarray(rays / np.linalg.norm(rays, axis=-1, keepdims=True), dtype=np.float64)


@dataclass(frozen=True)
class Projection:
    """Pixel coordinates of projected points (arrays of the points' leading shape).

    Attributes
    ----------
    column_px
        Column, growing to the right; NaN behind the camera [px].
    row_px
        Row, growing downward; NaN behind the camera [px].
    depth_m
        Distance along the optical axis (negative behind the camera) [m].
    visible
        In front of the near plane and inside the image.
    """

    column_px: FloatArray
    row_px: FloatArray
    depth_m: FloatArray
    visible: BoolArray


def project_points(pose: CameraPose, points_m: FloatArray) -> Projection:
    """Project world ENU points into the image of ``pose``.

    Parameters
    ----------
    pose
        The camera.
    points_m
        East, north, up of the points, shape (..., 3) [m].

    Returns
    -------
    Projection
        Columns and rows [px], depth [m], and whether each point is visible.
    """
    points = np.asarray(points_m, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points_m must have shape (..., 3), got {points.shape}")
    camera_frame = (points - pose.position_m) @ pose.axes.T
    x, y, depth = camera_frame[..., 0], camera_frame[..., 1], camera_frame[..., 2]
    in_front = depth > NEAR_PLANE_M
    safe_depth = np.where(in_front, depth, np.nan)
    focal_x, focal_y = pose.focal_length_px
    centre_x, centre_y = pose.principal_point_px
    column = centre_x + focal_x * x / safe_depth
    row = centre_y - focal_y * y / safe_depth
    with np.errstate(invalid="ignore"):
        inside = (
            (column >= -0.5)
            & (column <= pose.width_px - 0.5)
            & (row >= -0.5)
            & (row <= pose.height_px - 0.5)
        )
    return Projection(column_px=column, row_px=row, depth_m=depth, visible=in_front & inside)


def laser_beam_m(pose: CameraPose, laser_range_m: float) -> tuple[FloatArray, FloatArray]:
    """Start and end (ENU, shape (3,) each) of the beam along the optical axis [m].

    The beam ends at ``laser_range_m`` or where the axis meets the ground, whichever is nearer.
    """
    forward = pose.axes[2]
    length = laser_range_m
    if forward[2] < 0.0:
        length = min(length, float(pose.position_m[2]) / -forward[2])
    return pose.position_m.copy(), pose.position_m + length * forward


@dataclass(frozen=True)
class GroundHits:
    """Where rays meet a horizontal plane (arrays of the rays' leading shape).

    Attributes
    ----------
    east_m, north_m
        Intersection with the plane; NaN where the ray does not reach it [m].
    range_m
        Distance from the optical centre along the ray; ``inf`` where it does not [m].
    hits
        Whether the ray reaches the plane (it points towards it, not along the horizon).
    """

    east_m: FloatArray
    north_m: FloatArray
    range_m: FloatArray
    hits: BoolArray


def ray_plane_hits(pose: CameraPose, rays: FloatArray, height_m: float = 0.0) -> GroundHits:
    """Intersect unit rays from the optical centre with the plane ``z = height_m``.

    Parameters
    ----------
    pose
        The camera (its optical centre is the rays' origin).
    rays
        Unit ENU directions, shape (..., 3) [1].
    height_m
        Height of the horizontal plane above ground [m].

    Returns
    -------
    GroundHits
        Intersection points [m], range [m] and whether each ray reaches the plane.
    """
    rays = np.asarray(rays, dtype=np.float64)
    drop = height_m - float(pose.position_m[2])  # < 0 when the plane is below the camera
    towards = rays[..., 2] * drop > 0.0
    towards &= np.abs(rays[..., 2]) > GRAZING_RAY_Z
    range_m = np.where(towards, drop / np.where(towards, rays[..., 2], 1.0), np.inf)
    finite = np.where(towards, range_m, np.nan)
    return GroundHits(
        east_m=pose.position_m[0] + finite * rays[..., 0],
        north_m=pose.position_m[1] + finite * rays[..., 1],
        range_m=range_m,
        hits=towards,
    )


def pixel_rays_at(pose: CameraPose, column_px: FloatArray, row_px: FloatArray) -> FloatArray:
    """Unit ENU rays through (fractional) pixel positions, shape (..., 3) [1].

    Parameters
    ----------
    pose
        The camera.
    column_px, row_px
        Pixel coordinates (broadcast together) [px].
    """
    focal_x, focal_y = pose.focal_length_px
    centre_x, centre_y = pose.principal_point_px
    x = (np.asarray(column_px, dtype=np.float64) - centre_x) / focal_x
    y = -(np.asarray(row_px, dtype=np.float64) - centre_y) / focal_y
    x, y = np.broadcast_arrays(x, y)
    right, up, forward = pose.axes
    rays = forward + x[..., np.newaxis] * right + y[..., np.newaxis] * up
    return np.asarray(rays / np.linalg.norm(rays, axis=-1, keepdims=True), dtype=np.float64)


def pixels_to_ground_m(
    pose: CameraPose, column_px: FloatArray, row_px: FloatArray, height_m: float = 0.0
) -> GroundHits:
    """Where the rays through pixel positions meet the plane ``z = height_m``.

    Parameters
    ----------
    pose
        The camera.
    column_px, row_px
        Pixel coordinates (broadcast together) [px].
    height_m
        Height of the plane above ground [m].
    """
    return ray_plane_hits(pose, pixel_rays_at(pose, column_px, row_px), height_m)


def pixel_ground_m(pose: CameraPose, height_m: float = 0.0) -> GroundHits:
    """Where every pixel's ray meets the plane ``z = height_m`` (arrays of shape (H, W)).

    Parameters
    ----------
    pose
        The camera.
    height_m
        Height of the plane above ground [m].
    """
    return ray_plane_hits(pose, pose.pixel_rays, height_m)


def pixel_ground_area_m2(pose: CameraPose, height_m: float = 0.0) -> FloatArray:
    """Area each pixel covers on the plane ``z = height_m``, shape (H, W); 0 above the horizon.

    A pixel subtends the solid angle ``cos(theta)**3 / (f_x f_y)`` (``theta`` from the optical
    axis, ``cos(theta) = forward . ray``); seen at range ``r`` on a plane whose normal makes the
    angle ``i`` with the ray, it covers ``Omega r**2 / cos(i)``. With ``r = dz / |ray_z|`` and
    ``cos(i) = |ray_z|`` this is ``Omega dz**2 / |ray_z|**3`` [m2].

    Parameters
    ----------
    pose
        The camera.
    height_m
        Height of the plane above ground [m].
    """
    rays = pose.pixel_rays
    focal_x, focal_y = pose.focal_length_px
    cos_off_axis = rays @ pose.axes[2]
    solid_angle = cos_off_axis**3 / (focal_x * focal_y)
    drop = height_m - float(pose.position_m[2])
    hits = ray_plane_hits(pose, rays, height_m).hits
    ray_z = np.where(hits, np.abs(rays[..., 2]), 1.0)
    return np.asarray(np.where(hits, solid_angle * drop**2 / ray_z**3, 0.0), dtype=np.float64)


def distance_to_polylines_m(
    east_m: FloatArray, north_m: FloatArray, polylines: Sequence[FloatArray]
) -> FloatArray:
    """Horizontal distance from points to the nearest of several polylines [m].

    Loops over polyline segments (tens), vectorized over the points (pixels).
    """
    distance = np.full(east_m.shape, np.inf)
    for vertices in polylines:
        for start, end in itertools.pairwise(vertices):
            step = end - start
            length_sq = float(step @ step)
            if length_sq == 0.0:
                continue
            fraction = np.clip(
                ((east_m - start[0]) * step[0] + (north_m - start[1]) * step[1]) / length_sq,
                0.0,
                1.0,
            )
            gap = np.hypot(
                east_m - (start[0] + fraction * step[0]), north_m - (start[1] + fraction * step[1])
            )
            np.minimum(distance, gap, out=distance)
    return distance
