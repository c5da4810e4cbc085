"""Tests of the camera model: pinhole projection, synthetic frames, encoding, laser reading."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from pipesentinel.hardware.camera_model import (
    AMBIENT_METHANE_MOLE_FRACTION,
    LEAK_REFERENCE_LENGTH_M,
    THERMAL_MAX_CENTIKELVIN,
    CameraPose,
    CameraRenderer,
    ColdPlume,
    HotSpot,
    IntrusionKind,
    LaserFaultCode,
    LaserParameters,
    SceneObject,
    beam_blocked_by,
    decode_thermal_png,
    encode_jpeg,
    encode_thermal_png,
    laser_beam_m,
    laser_reading,
    object_corners_m,
    objects_in_view,
    plume_cooling_k,
    plume_length_m,
    project_points,
)
from pipesentinel.ingest.records import DeviceStatus
from pipesentinel.site import Camera

DEG = math.pi / 180.0
WANLI = Path(__file__).resolve().parents[2] / "sites" / "wanli"


def pose(
    heading_deg: float = 0.0,
    tilt_deg: float = 0.0,
    height_m: float = 10.0,
    width_px: int = 640,
    height_px: int = 512,
) -> CameraPose:
    return CameraPose(
        position_m=np.array([100.0, 200.0, height_m]),
        heading_rad=heading_deg * DEG,
        tilt_rad=tilt_deg * DEG,
        horizontal_fov_rad=50.0 * DEG,
        vertical_fov_rad=40.0 * DEG,
        width_px=width_px,
        height_px=height_px,
    )


def point_along(
    camera: CameraPose, azimuth_deg: float, elevation_deg: float, distance_m: float
) -> np.ndarray:
    """A world point seen from the camera at an azimuth (clockwise from north) and elevation."""
    azimuth, elevation = azimuth_deg * DEG, elevation_deg * DEG
    direction = np.array(
        [
            math.sin(azimuth) * math.cos(elevation),
            math.cos(azimuth) * math.cos(elevation),
            math.sin(elevation),
        ]
    )
    return np.asarray(camera.position_m + distance_m * direction)


@pytest.mark.parametrize(("heading_deg", "tilt_deg"), [(0.0, 0.0), (37.0, 8.0), (250.0, 30.0)])
def test_point_on_optical_axis_projects_to_image_centre(
    heading_deg: float, tilt_deg: float
) -> None:
    camera = pose(heading_deg, tilt_deg)
    projection = project_points(camera, point_along(camera, heading_deg, -tilt_deg, 80.0))
    assert_allclose(projection.column_px, 319.5, atol=1e-9)
    assert_allclose(projection.row_px, 255.5, atol=1e-9)
    assert_allclose(projection.depth_m, 80.0, atol=1e-9)
    assert bool(projection.visible)


def test_edge_of_the_field_of_view_projects_to_the_image_edge() -> None:
    # Hand-worked: column = (W - 1) / 2 + f_x tan(hfov / 2) = 319.5 + 320 = 639.5 (the edge).
    camera = pose(90.0)
    edge = point_along(camera, 90.0 + 25.0, 0.0, 50.0)
    # Along the horizontal plane the off-axis angle is exactly the azimuth offset.
    projection = project_points(camera, edge)
    assert_allclose(projection.column_px, 639.5, atol=1e-9)
    assert_allclose(projection.row_px, 255.5, atol=1e-9)


def test_points_outside_the_field_of_view_or_behind_are_not_visible() -> None:
    camera = pose(0.0)
    points = np.stack(
        [
            point_along(camera, 30.0, 0.0, 50.0),  # beyond the 25 deg half-width
            point_along(camera, 0.0, 25.0, 50.0),  # above the 20 deg half-height
            point_along(camera, 180.0, 0.0, 50.0),  # behind
            point_along(camera, 10.0, -5.0, 50.0),  # inside
        ]
    )
    projection = project_points(camera, points)
    assert_array_equal(projection.visible, [False, False, False, True])
    assert np.isnan(projection.column_px[2])
    assert projection.depth_m[2] < 0


@pytest.mark.parametrize("heading_deg", [0.0, 90.0, 180.0, 300.0])
def test_left_and_right_follow_the_heading(heading_deg: float) -> None:
    camera = pose(heading_deg)
    right = point_along(camera, heading_deg + 10.0, 0.0, 60.0)  # clockwise = to the right
    left = point_along(camera, heading_deg - 10.0, 0.0, 60.0)
    projection = project_points(camera, np.stack([right, left]))
    assert projection.column_px[0] > 319.5 > projection.column_px[1]
    assert_allclose(projection.column_px[0] - 319.5, 319.5 - projection.column_px[1])


def test_facing_east_south_is_to_the_right_and_low_points_are_low() -> None:
    camera = pose(90.0, 0.0)
    south = camera.position_m + np.array([50.0, -5.0, 0.0])
    below = camera.position_m + np.array([50.0, 0.0, -5.0])
    projection = project_points(camera, np.stack([south, below]))
    assert projection.column_px[0] > 319.5
    assert projection.row_px[1] > 255.5


def test_projection_is_vectorized_over_leading_axes() -> None:
    camera = pose(45.0, 10.0)
    points = np.random.default_rng(0).uniform(-100.0, 300.0, (4, 5, 3))
    projection = project_points(camera, points)
    assert projection.column_px.shape == (4, 5)
    single = project_points(camera, points[2, 3])
    assert_allclose(single.depth_m, projection.depth_m[2, 3])


def test_pixel_rays_through_projected_points_reach_them() -> None:
    camera = pose(120.0, 15.0, width_px=64, height_px=48)
    rays = camera.pixel_rays
    assert rays.shape == (48, 64, 3)
    assert_allclose(np.linalg.norm(rays, axis=-1), 1.0)
    target = camera.position_m + 40.0 * rays[7, 50]
    projection = project_points(camera, target)
    assert_allclose([projection.column_px, projection.row_px], [50.0, 7.0], atol=1e-9)


def test_pose_from_site_camera_converts_degrees() -> None:
    camera = Camera(
        id="CAM1",
        position_m=np.array([5.0, 6.0]),
        mounting_height_m=12.0,
        heading_deg=90.0,
        tilt_deg=10.0,
        horizontal_fov_deg=50.0,
        vertical_fov_deg=40.0,
        laser_range_m=150.0,
        frame_period_s=5.0,
        resolution_px=(320, 256),
    )
    camera_pose = CameraPose.from_camera(camera)
    assert_allclose(camera_pose.position_m, [5.0, 6.0, 12.0])
    assert_allclose([camera_pose.heading_rad, camera_pose.tilt_rad], [math.pi / 2, 10.0 * DEG])
    assert (camera_pose.width_px, camera_pose.height_px) == (320, 256)


def test_laser_beam_ends_on_the_ground_or_at_its_range() -> None:
    # Tilted 5 deg from 10 m: hits the ground after 10 / sin(5 deg) = 114.74 m.
    start, end = laser_beam_m(pose(0.0, 5.0), 150.0)
    assert_allclose(np.linalg.norm(end - start), 10.0 / math.sin(5.0 * DEG))
    assert_allclose(end[2], 0.0, atol=1e-9)
    start, end = laser_beam_m(pose(0.0, 5.0), 60.0)
    assert_allclose(np.linalg.norm(end - start), 60.0)
    _, level = laser_beam_m(pose(90.0, 0.0), 100.0)
    assert_allclose(level, [200.0, 200.0, 10.0], atol=1e-9)


# -------------------------------------------------------------------------------------------
# Frames


EXCAVATOR_AHEAD = SceneObject(IntrusionKind.EXCAVATOR, np.array([100.0, 260.0]), 90.0 * DEG)
EXCAVATOR_BEHIND = SceneObject(IntrusionKind.EXCAVATOR, np.array([100.0, 140.0]), 0.0)


@pytest.fixture(scope="module")
def renderer() -> CameraRenderer:
    return CameraRenderer(pose(0.0, 10.0))


def yellow_mask(frame: np.ndarray) -> np.ndarray:
    blue, green, red = (frame[..., i].astype(int) for i in range(3))
    return np.asarray((red > 200) & (green > 150) & (blue < 80))


def test_visible_frame_shape_and_determinism(renderer: CameraRenderer) -> None:
    first = renderer.visible_frame(rng=np.random.default_rng(3), timestamp_text="12:00:00Z")
    second = renderer.visible_frame(rng=np.random.default_rng(3), timestamp_text="12:00:00Z")
    assert first.shape == (512, 640, 3)
    assert first.dtype == np.uint8
    assert_array_equal(first, second)
    assert not np.array_equal(first, renderer.visible_frame(rng=np.random.default_rng(4)))


def test_excavator_in_view_is_drawn_where_it_projects(renderer: CameraRenderer) -> None:
    assert_array_equal(
        objects_in_view(renderer.pose, [EXCAVATOR_AHEAD, EXCAVATOR_BEHIND]), [True, False]
    )
    frame = renderer.visible_frame(rng=np.random.default_rng(0), objects=[EXCAVATOR_AHEAD])
    empty = renderer.visible_frame(rng=np.random.default_rng(0))
    mask = yellow_mask(frame)
    assert not yellow_mask(empty).any()
    # A 9.5 x 3 x 3 m box 60 m ahead: tens of pixels across (f_x = 686 px -> 11.4 px per m).
    rows, columns = np.nonzero(mask)
    assert 50 < columns.max() - columns.min() < 200
    corners = project_points(renderer.pose, object_corners_m(EXCAVATOR_AHEAD))
    assert columns.min() >= np.floor(corners.column_px.min()) - 1
    assert columns.max() <= np.ceil(corners.column_px.max()) + 1
    assert rows.min() >= np.floor(corners.row_px.min()) - 1
    # An excavator behind the camera changes nothing.
    behind = renderer.visible_frame(rng=np.random.default_rng(0), objects=[EXCAVATOR_BEHIND])
    assert_array_equal(behind, empty)


def test_jpeg_round_trip(renderer: CameraRenderer) -> None:
    frame = renderer.visible_frame(rng=np.random.default_rng(1), objects=[EXCAVATOR_AHEAD])
    data = encode_jpeg(frame)
    assert data[:2] == b"\xff\xd8"  # JPEG start-of-image marker
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == frame.shape
    assert np.mean(np.abs(decoded.astype(int) - frame.astype(int))) < 4.0


def test_thermal_frame_is_centikelvin_around_ambient(renderer: CameraRenderer) -> None:
    frame = renderer.thermal_frame(ambient_temperature_k=288.15, rng=np.random.default_rng(0))
    assert frame.dtype == np.uint16
    assert frame.shape == (512, 640)
    ground = frame[400:, :]  # looking down 10 deg: the lower image is ground
    # Hand-worked: 288.15 K -> 28815 cK, plus at most 1.5 K of sunlit-ground warming.
    assert 28815 - 20 <= np.median(ground) <= 28815 + 150
    sky = frame[:20, :]
    assert np.median(sky) < 28815 - 1000  # the clear sky is much colder


def test_thermal_png_round_trip_is_lossless(renderer: CameraRenderer) -> None:
    frame = renderer.thermal_frame(ambient_temperature_k=300.0, rng=np.random.default_rng(2))
    data = encode_thermal_png(frame)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert_allclose(decode_thermal_png(data), frame.astype(np.float64) / 100.0)
    with pytest.raises(ValueError, match="uint16"):
        encode_thermal_png(frame.astype(np.int32))
    with pytest.raises(ValueError, match="16-bit"):
        decode_thermal_png(encode_jpeg(np.zeros((8, 8, 3), dtype=np.uint8)))


def test_fire_is_a_hot_spot_and_saturates_at_the_uint16_limit(renderer: CameraRenderer) -> None:
    fire = HotSpot(np.array([100.0, 260.0]), radius_m=2.0, temperature_excess_k=350.0)
    frame = renderer.thermal_frame(
        ambient_temperature_k=288.15, rng=np.random.default_rng(0), hot_spots=[fire]
    )
    assert frame.max() >= round((288.15 + 349.0) * 100)
    too_hot = HotSpot(np.array([100.0, 260.0]), temperature_excess_k=900.0)
    saturated = renderer.thermal_frame(
        ambient_temperature_k=288.15, rng=np.random.default_rng(0), hot_spots=[too_hot]
    )
    assert saturated.max() == THERMAL_MAX_CENTIKELVIN
    visible = renderer.visible_frame(rng=np.random.default_rng(0), hot_spots=[fire])
    assert (visible[..., 2] > 230).sum() > 20  # an orange flame


def test_leak_is_a_cold_plume_a_few_kelvin_below_ambient(renderer: CameraRenderer) -> None:
    plume = ColdPlume(np.array([100.0, 250.0]), 0.2, wind_direction_from_rad=270.0 * DEG)
    rng = np.random.default_rng(0)
    with_leak = renderer.thermal_frame(ambient_temperature_k=288.15, rng=rng, plumes=[plume])
    without = renderer.thermal_frame(ambient_temperature_k=288.15, rng=np.random.default_rng(0))
    difference_k = (with_leak.astype(float) - without.astype(float)) / 100.0
    assert difference_k.min() < -3.5  # close to the 4 K deficit at the source
    assert difference_k.max() < 0.2  # nothing warms
    # Wind from the west: the plume extends east, i.e. to the right of a north-facing camera.
    _, columns = np.nonzero(difference_k < -0.5)
    source = project_points(renderer.pose, np.array([100.0, 250.0, 1.0]))
    assert columns.mean() > source.column_px


def test_plume_length_grows_as_the_square_root_of_the_rate() -> None:
    assert_allclose(plume_length_m(0.1), LEAK_REFERENCE_LENGTH_M)
    assert_allclose(plume_length_m(0.4), 2.0 * LEAK_REFERENCE_LENGTH_M)  # hand-worked: sqrt(4)
    assert plume_length_m(0.0) == 1.0
    assert plume_length_m(1e6) == 120.0


@settings(max_examples=50, deadline=None)
@given(
    along=st.floats(0.0, 50.0),
    across=st.floats(0.0, 20.0),
    direction_deg=st.floats(0.0, 359.9),
    rate=st.floats(0.01, 2.0),
)
def test_plume_cooling_is_bounded_and_symmetric_crosswind(
    along: float, across: float, direction_deg: float, rate: float
) -> None:
    plume = ColdPlume(np.array([0.0, 0.0]), rate, direction_deg * DEG)
    downwind = np.array([-math.sin(direction_deg * DEG), -math.cos(direction_deg * DEG)])
    side = np.array([downwind[1], -downwind[0]])
    points = np.stack([along * downwind + across * side, along * downwind - across * side])
    cooling = plume_cooling_k(plume, points[:, 0], points[:, 1])
    assert np.all((cooling >= 0.0) & (cooling <= plume.cooling_k + 1e-12))
    assert_allclose(cooling[0], cooling[1], rtol=1e-9, atol=1e-12)
    on_axis = np.stack([along * downwind, -along * downwind])
    downwind_cooling, upwind_cooling = plume_cooling_k(plume, on_axis[:, 0], on_axis[:, 1])
    assert upwind_cooling <= downwind_cooling + 1e-12


def test_renders_the_reference_site_when_present() -> None:
    site_loader = pytest.importorskip("pipesentinel.site_loader")
    if not (WANLI / "site.toml").exists():
        pytest.skip("reference site not present")
    site = site_loader.load_site(WANLI)
    camera = site.cameras[0]
    site_renderer = CameraRenderer(CameraPose.from_camera(camera), site)
    frame = site_renderer.visible_frame(rng=np.random.default_rng(0))
    assert frame.shape == (camera.resolution_px[1], camera.resolution_px[0], 3)
    # The right-of-way (light soil colour) is in view of every camera looking at a line.
    blue, green, red = (frame[..., i].astype(int) for i in range(3))
    assert ((red > 160) & (green > 140) & (blue < 140) & (red > green)).sum() > 1000


# -------------------------------------------------------------------------------------------
# Laser


NOISELESS = LaserParameters(noise_std_mole_fraction_m=0.0, resolution_mole_fraction_m=0.0)


def test_laser_reads_plume_plus_ambient_column() -> None:
    # Hand-worked: 500 ppm m of plume + 1.9 ppm x 120 m = 728 ppm m.
    out = laser_reading(
        np.array([500e-6]), np.array([120.0]), np.random.default_rng(0), parameters=NOISELESS
    )
    assert_allclose(
        out.path_integral_mole_fraction_m, [500e-6 + AMBIENT_METHANE_MOLE_FRACTION * 120.0]
    )
    assert_allclose(out.path_integral_mole_fraction_m, [728e-6])
    assert out.status(0) is DeviceStatus.OK
    assert out.fault_code(0) is None


def test_laser_offset_quantisation_and_full_scale() -> None:
    parameters = LaserParameters(
        noise_std_mole_fraction_m=0.0,
        offset_mole_fraction_m=3e-6,
        resolution_mole_fraction_m=1e-6,
        ambient_methane_mole_fraction=0.0,
        full_scale_mole_fraction_m=0.01,
    )
    out = laser_reading(
        np.array([10.4e-6, 1.0]),
        np.array([100.0, 100.0]),
        np.random.default_rng(0),
        parameters=parameters,
    )
    assert_allclose(out.path_integral_mole_fraction_m, [13e-6, 0.01])


def test_blocked_beam_reports_a_fault_and_no_reading() -> None:
    out = laser_reading(
        np.array([100e-6, 100e-6]),
        np.array([100.0, 100.0]),
        np.random.default_rng(0),
        beam_blocked=np.array([True, False]),
    )
    assert out.status(0) is DeviceStatus.FAULT
    assert out.fault_code(0) is LaserFaultCode.BEAM_BLOCKED
    assert out.path_integral_mole_fraction_m[0] == 0.0
    assert out.status(1) is DeviceStatus.OK


def test_laser_noise_is_deterministic_and_of_the_configured_size() -> None:
    plume = np.zeros(20_000)
    length = np.full(20_000, 100.0)
    first = laser_reading(plume, length, np.random.default_rng(9))
    second = laser_reading(plume, length, np.random.default_rng(9))
    assert_array_equal(first.path_integral_mole_fraction_m, second.path_integral_mole_fraction_m)
    # Default 5 ppm m noise around the 190 ppm m ambient column.
    assert_allclose(np.std(first.path_integral_mole_fraction_m), 5e-6, rtol=0.05)
    assert_allclose(np.mean(first.path_integral_mole_fraction_m), 190e-6, rtol=0.01)


def test_objects_in_the_beam_block_it() -> None:
    start, end = np.array([0.0, 0.0, 10.0]), np.array([0.0, 115.0, 0.0])
    # At 100 m the beam is 1.3 m above ground: within an excavator's 3 m height.
    in_beam = SceneObject(IntrusionKind.EXCAVATOR, np.array([1.0, 100.0]))
    aside = SceneObject(IntrusionKind.EXCAVATOR, np.array([20.0, 100.0]))
    # Near the camera the beam passes 8 m up, over a person.
    under = SceneObject(IntrusionKind.PERSON, np.array([0.0, 20.0]))
    assert beam_blocked_by(start, end, [in_beam])
    assert not beam_blocked_by(start, end, [aside, under])
