"""Tests of the pure pinhole geometry shared by the camera simulator and the camera analytics."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.camera_geometry import (
    CameraPose,
    distance_to_polylines_m,
    pixel_ground_area_m2,
    pixel_ground_m,
    pixels_to_ground_m,
    project_points,
)

DEG = math.pi / 180.0


def pose(heading_deg: float = 0.0, tilt_deg: float = 10.0, height_m: float = 10.0) -> CameraPose:
    return CameraPose(
        position_m=np.array([100.0, 200.0, height_m]),
        heading_rad=heading_deg * DEG,
        tilt_rad=tilt_deg * DEG,
        horizontal_fov_rad=50.0 * DEG,
        vertical_fov_rad=40.0 * DEG,
        width_px=64,
        height_px=48,
    )


def test_nadir_pixel_area_is_range_over_focal_length_squared() -> None:
    # Hand-worked: looking straight down from 10 m, the centre pixel covers (h / f_x)(h / f_y).
    camera = pose(tilt_deg=90.0)
    area = pixel_ground_area_m2(camera)
    focal_x, focal_y = camera.focal_length_px
    centre = area[23:25, 31:33].mean()  # the principal point is between the four centre pixels
    assert_allclose(centre, (10.0 / focal_x) * (10.0 / focal_y), rtol=2e-3)
    # The whole image covers the footprint 2 h tan(hfov / 2) x 2 h tan(vfov / 2) (hand-worked).
    footprint = (2 * 10.0 * math.tan(25.0 * DEG)) * (2 * 10.0 * math.tan(20.0 * DEG))
    assert_allclose(area.sum(), footprint, rtol=2e-3)


def test_pixels_above_the_horizon_do_not_reach_the_ground() -> None:
    camera = pose(tilt_deg=0.0)
    hits = pixel_ground_m(camera)
    assert not hits.hits[:24].any()  # the upper half looks above the horizon
    assert hits.hits[24:].all()
    assert np.isnan(hits.east_m[0, 0])
    assert np.isinf(hits.range_m[0, 0])
    assert (pixel_ground_area_m2(camera)[:24] == 0.0).all()


@settings(max_examples=50, deadline=None)
@given(
    heading_deg=st.floats(0.0, 359.0),
    tilt_deg=st.floats(5.0, 60.0),
    column=st.floats(0.0, 63.0),
    row=st.floats(30.0, 47.0),
    height_m=st.floats(0.0, 2.0),
)
def test_ground_point_projects_back_to_its_pixel(
    heading_deg: float, tilt_deg: float, column: float, row: float, height_m: float
) -> None:
    camera = pose(heading_deg, tilt_deg)
    hits = pixels_to_ground_m(camera, np.array([column]), np.array([row]), height_m)
    if not hits.hits[0]:
        return
    point = np.array([[hits.east_m[0], hits.north_m[0], height_m]])
    projection = project_points(camera, point)
    assert_allclose([projection.column_px[0], projection.row_px[0]], [column, row], atol=1e-6)


def test_distance_to_polylines_is_the_nearest_segment_distance() -> None:
    # Hand-worked: an L-shaped line (0,0)-(10,0)-(10,10).
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    east = np.array([5.0, 13.0, -3.0, 10.0])
    north = np.array([2.0, 5.0, -4.0, 0.0])
    assert_allclose(distance_to_polylines_m(east, north, [line]), [2.0, 3.0, 5.0, 0.0])
