"""Incident map (simulation/map2d.py): size, zones, valves, leak, fit to extent, determinism.

Pixel checks decode the PNG and look at the pixel where the map frame projects a site position.
The sample positions are chosen on the reference site (sites/wanli/site.toml) in empty ground: the
test first checks that the pixel there is plain map background without the layer under test, so a
moved building or road makes the test fail loudly instead of passing by accident.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpy.typing import NDArray
from shapely.geometry import Point, box

from pipesentinel.simulation.map2d import (
    MAP_BACKGROUND,
    VALVE_TO_CLOSE,
    MapLayers,
    MapRoute,
    detail_frame,
    map_frame,
    render_incident_map,
)
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"

# Empty ground in the block west of Jianshe Road (x = -900 m) between Zhongxing Street
# (y = 250 m) and Xicheng New Village Block 3 (B11, centroid (-1130, 490) m, about 35 m across).
EMPTY_GROUND_M = (-1100.0, 350.0)
RED_BOX = box(-1160.0, 300.0, -1040.0, 400.0)  # 120 m x 100 m around EMPTY_GROUND_M
OUTSIDE_RED_M = (-600.0, -300.0)  # empty ground south of the pipelines, 500 m from RED_BOX

Pixels = NDArray[np.uint8]


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


def decode(png: bytes) -> Pixels:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the bytes are not a PNG OpenCV can read"
    return np.asarray(image, dtype=np.uint8)


def pixel_at(image: Pixels, site: Site, layers: MapLayers, point_m: tuple[float, float]) -> Pixels:
    """The BGR pixel where the map draws ``point_m`` (on a 1600 x 1200 canvas)."""
    height, width = image.shape[:2]
    frame = map_frame(site, layers, width_px=width, height_px=height)
    column, row = np.round(frame.to_pixel(np.array(point_m))).astype(int)
    return np.asarray(image[row, column], dtype=np.uint8)


def reddish(bgr: Pixels) -> bool:
    blue, green, red = (int(value) for value in bgr)
    return red - max(green, blue) >= 60


def render(site: Site, layers: MapLayers, **size: int) -> Pixels:
    return decode(render_incident_map(site, layers, title="Test incident", **size))


@pytest.mark.parametrize(("width_px", "height_px"), [(1600, 1200), (800, 600), (1280, 720)])
def test_png_decodes_with_requested_size(site: Site, width_px: int, height_px: int) -> None:
    png = render_incident_map(
        site, MapLayers(time_label="10:04"), width_px=width_px, height_px=height_px, title="T"
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode(png).shape == (height_px, width_px, 3)


def test_red_zone_is_drawn_red_inside_only(site: Site) -> None:
    plain = MapLayers()
    with_red = MapLayers(zones_m={"red": RED_BOX})
    before, after = render(site, plain), render(site, with_red)
    inside_before = pixel_at(before, site, plain, EMPTY_GROUND_M)
    assert tuple(inside_before) == MAP_BACKGROUND, "sample point is not empty ground any more"
    assert reddish(pixel_at(after, site, with_red, EMPTY_GROUND_M))
    assert not reddish(pixel_at(after, site, with_red, OUTSIDE_RED_M))
    assert tuple(pixel_at(after, site, with_red, OUTSIDE_RED_M)) == MAP_BACKGROUND


def test_zone_holes_are_not_filled(site: Site) -> None:
    ring = Point(EMPTY_GROUND_M).buffer(90.0).difference(Point(EMPTY_GROUND_M).buffer(40.0))
    layers = MapLayers(zones_m={"red": ring})
    image = render(site, layers)
    assert not reddish(pixel_at(image, site, layers, EMPTY_GROUND_M))  # in the hole
    assert reddish(pixel_at(image, site, layers, (EMPTY_GROUND_M[0] + 65.0, EMPTY_GROUND_M[1])))


def test_valves_to_close_are_marked(site: Site) -> None:
    pipeline = site.pipeline("P1")
    valves = {valve.id: valve for valve in pipeline.valves}
    to_close = MapLayers(valves_to_close=("P1-V2",))
    image = render(site, to_close)
    closed_at = tuple(pipeline.point_at_chainage(valves["P1-V2"].chainage_m))
    other_at = tuple(pipeline.point_at_chainage(valves["P1-V1"].chainage_m))
    assert_allclose(pixel_at(image, site, to_close, closed_at), VALVE_TO_CLOSE, atol=8)
    assert np.abs(pixel_at(image, site, to_close, other_at).astype(int) - VALVE_TO_CLOSE).max() > 60
    plain = MapLayers()
    not_closed = pixel_at(render(site, plain), site, plain, closed_at).astype(int)
    assert np.abs(not_closed - VALVE_TO_CLOSE).max() > 60


def test_leak_marker_at_leak_position(site: Site) -> None:
    leak_m = (-1100.0, 350.0)
    layers = MapLayers(leak_position_m=np.array(leak_m))
    blue, green, red = (int(v) for v in pixel_at(render(site, layers), site, layers, leak_m))
    assert red > 200
    assert max(green, blue) < 60


def test_same_inputs_same_bytes(site: Site) -> None:
    def layers() -> MapLayers:
        pipeline = site.pipeline("P1")
        leak = pipeline.point_at_chainage(1900.0)
        return MapLayers(
            time_label="2026-12-02 10:04",
            leak_position_m=leak,
            leak_credible_m=pipeline.polyline_between(1850.0, 1950.0),
            zones_m={
                "red": Point(leak).buffer(80.0),
                "yellow": Point(leak).buffer(300.0),
                "isolation": Point(leak).buffer(100.0),
            },
            median_zones_m={"yellow": Point(leak).buffer(200.0)},
            valves_to_close=("P1-V2", "P1-V3"),
            building_zones={"B23": "red", "B14": "yellow"},
            usable_assembly_point_ids=("AP1",),
            excluded_assembly_point_ids=("AP2",),
            routes=(MapRoute("B23", "AP1", np.array([[100.0, 110.0], [-250.0, 110.0]])),),
            traffic_control_road_ids=("R13",),
            closed_road_ids=("R13",),
            wind_from_deg=200.0,
            wind_speed_m_per_s=2.0,
            notes=("low confidence",),
        )

    first = render_incident_map(site, layers(), title="Determinism")
    second = render_incident_map(site, layers(), title="Determinism")
    assert first == second
    assert render_incident_map(site, layers(), title="Other title") != first


def test_view_fits_a_zone_beyond_the_site(site: Site) -> None:
    east_max = float(site.extent_m[1, 0])
    beyond = box(east_max - 200.0, -300.0, east_max + 900.0, 300.0)  # 900 m past the site's east
    inside_only = MapLayers()
    with_beyond = MapLayers(zones_m={"yellow": beyond})
    small = map_frame(site, inside_only, width_px=1600, height_px=1200)
    large = map_frame(site, with_beyond, width_px=1600, height_px=1200)
    assert large.px_per_m < small.px_per_m
    left, top, right, bottom = large.area_px
    corners = [
        (beyond.bounds[0], beyond.bounds[1]),
        (beyond.bounds[2], beyond.bounds[3]),
        tuple(site.extent_m[0]),
        tuple(site.extent_m[1]),
    ]
    for column, row in large.to_pixel(np.array(corners)):
        assert left < column < right
        assert top < row < bottom
    far_east_m = (east_max + 700.0, 0.0)  # in the zone, outside the site
    blue, green, red = (
        int(v) for v in pixel_at(render(site, with_beyond), site, with_beyond, far_east_m)
    )
    assert green - blue > 40  # yellow tint
    assert red - blue > 40


def test_frame_is_north_up_and_round_trips(site: Site) -> None:
    frame = map_frame(site, MapLayers(), width_px=1600, height_px=1200)
    origin, east, north = frame.to_pixel(np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]))
    assert_allclose(east - origin, [100.0 * frame.px_per_m, 0.0])
    assert_allclose(north - origin, [0.0, -100.0 * frame.px_per_m])
    points = np.array([[-1234.5, 678.9], [10.0, -20.0]])
    assert_allclose(frame.to_metres(frame.to_pixel(points)), points)


def test_unknown_ids_and_levels_are_rejected(site: Site) -> None:
    with pytest.raises(ValueError, match="P9-V9"):
        render_incident_map(site, MapLayers(valves_to_close=("P9-V9",)), title="T")
    with pytest.raises(ValueError, match="orange"):
        MapLayers(zones_m={"orange": box(0.0, 0.0, 1.0, 1.0)})
    with pytest.raises(ValueError, match="AP9"):
        render_incident_map(site, MapLayers(usable_assembly_point_ids=("AP9",)), title="T")


def leak_pixels_in_panel(image: Pixels, frame_right_px: int) -> int:
    panel = image[:, frame_right_px:].astype(int)
    blue, green, red = panel[..., 0], panel[..., 1], panel[..., 2]
    return int(np.count_nonzero((red > 230) & (green < 30) & (blue < 30)))


def test_detail_view_only_for_a_small_incident(site: Site) -> None:
    leak = site.pipeline("P1").point_at_chainage(1900.0)
    small = MapLayers(leak_position_m=leak, zones_m={"isolation": Point(leak).buffer(100.0)})
    large = MapLayers(leak_position_m=leak, zones_m={"isolation": Point(leak).buffer(600.0)})
    small_frame = map_frame(site, small, width_px=1600, height_px=1200)
    large_frame = map_frame(site, large, width_px=1600, height_px=1200)
    detail = detail_frame(small_frame, small, width_px=350, height_px=300)
    assert detail is not None
    assert detail_frame(large_frame, large, width_px=350, height_px=300) is None
    # The detail view is centred on the incident and shows it larger than the main map does.
    assert_allclose(detail.to_pixel(leak), [175.0, 150.0], atol=1e-9)
    assert detail.px_per_m > 2 * small_frame.px_per_m
    # Both pictures carry the leak symbol in the legend; only the small one a leak marker more.
    with_detail = leak_pixels_in_panel(render(site, small), small_frame.area_px[2])
    without_detail = leak_pixels_in_panel(render(site, large), large_frame.area_px[2])
    assert with_detail > without_detail + 100
