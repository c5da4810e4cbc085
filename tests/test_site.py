"""The site model types (core/site.py): geometry helpers on hand-built objects, lookups on sites.

Expected values are hand-worked on an L-shaped pipeline: 300 m east, then 400 m north (700 m).
"""

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.site import (
    Building,
    BuildingUse,
    Pipeline,
    Product,
    Road,
    Site,
    Valve,
)
from pipesentinel.site_loader import load_site

REPO = Path(__file__).resolve().parent.parent
LAKESIDE_DIR = REPO / "tests" / "site_fixtures" / "lakeside"
WANLI_DIR = REPO / "sites" / "wanli"

L_LENGTH_M = 700.0  # 300 + 400


def l_pipeline(valve_chainages_m: tuple[float, ...] = (200.0, 500.0)) -> Pipeline:
    return Pipeline(
        id="L",
        name="L-shaped test line",
        product=Product.CRUDE_OIL,
        vertices_m=np.array([[0.0, 0.0], [300.0, 0.0], [300.0, 400.0]]),
        diameter_m=0.3239,
        wall_thickness_m=0.0064,
        depth_of_cover_m=1.2,
        operating_pressure_pa=3.5e6,
        valves=tuple(
            Valve(
                id=f"L-V{index + 1}", pipeline_id="L", chainage_m=chainage, remotely_operated=True
            )
            for index, chainage in enumerate(valve_chainages_m)
        ),
    )


def test_length_and_vertex_chainages() -> None:
    pipeline = l_pipeline()
    assert pipeline.length_m == pytest.approx(L_LENGTH_M)
    assert_allclose(pipeline.vertex_chainages_m, [0.0, 300.0, 700.0])


def test_point_at_chainage_interpolates_and_clips() -> None:
    pipeline = l_pipeline()
    points = pipeline.point_at_chainage(np.array([0.0, 150.0, 300.0, 450.0, 700.0, -5.0, 800.0]))
    expected = [[0, 0], [150, 0], [300, 0], [300, 150], [300, 400], [0, 0], [300, 400]]
    assert_allclose(points, expected)


def test_direction_at_chainage_takes_the_stretch_starting_at_a_bend() -> None:
    pipeline = l_pipeline()
    directions = pipeline.direction_at_chainage(np.array([0.0, 100.0, 300.0, 650.0, 700.0]))
    assert_allclose(directions, [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])


def test_locate_projects_points_onto_the_centreline() -> None:
    pipeline = l_pipeline()
    points = np.array([[150.0, 20.0], [320.0, 500.0], [-30.0, -40.0], [310.0, 200.0]])
    chainage, distance = pipeline.locate(points)
    # (150, 20): foot (150, 0); (320, 500): nearest the far end (300, 400) at hypot(20, 100);
    # (-30, -40): nearest the start at 50 m; (310, 200): foot (300, 200) at chainage 500.
    assert_allclose(chainage, [150.0, 700.0, 0.0, 500.0])
    assert_allclose(distance, [20.0, np.hypot(20.0, 100.0), 50.0, 10.0])


def test_locate_broadcasts_over_leading_axes() -> None:
    pipeline = l_pipeline()
    points = np.zeros((2, 3, 2))
    points[..., 0] = 100.0
    chainage, distance = pipeline.locate(points)
    assert chainage.shape == (2, 3)
    assert distance.shape == (2, 3)


@given(st.floats(min_value=0.0, max_value=L_LENGTH_M))
def test_locate_inverts_point_at_chainage(chainage_m: float) -> None:
    pipeline = l_pipeline()
    chainage, distance = pipeline.locate(pipeline.point_at_chainage(chainage_m))
    assert float(chainage) == pytest.approx(chainage_m, abs=1e-9)
    assert float(distance) == pytest.approx(0.0, abs=1e-9)


def test_segments_between_valves() -> None:
    segments = l_pipeline().segments
    assert [segment.id for segment in segments] == ["L-S1", "L-S2", "L-S3"]
    assert [(s.start_chainage_m, s.end_chainage_m) for s in segments] == [
        (0.0, 200.0),
        (200.0, 500.0),
        (500.0, 700.0),
    ]
    assert [(s.upstream_valve_id, s.downstream_valve_id) for s in segments] == [
        (None, "L-V1"),
        ("L-V1", "L-V2"),
        ("L-V2", None),
    ]


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=L_LENGTH_M, allow_subnormal=False),
        max_size=5,
        unique=True,
    )
)
def test_segments_partition_the_line(valve_chainages_m: list[float]) -> None:
    pipeline = l_pipeline(tuple(valve_chainages_m))
    segments = pipeline.segments
    assert segments[0].start_chainage_m == 0.0
    assert segments[-1].end_chainage_m == pytest.approx(pipeline.length_m)
    for before, after in pairwise(segments):
        assert before.end_chainage_m == after.start_chainage_m
        assert before.downstream_valve_id == after.upstream_valve_id
    total = sum(segment.end_chainage_m - segment.start_chainage_m for segment in segments)
    assert total == pytest.approx(pipeline.length_m)


def test_valves_at_the_ends_leave_no_empty_segment() -> None:
    segments = l_pipeline((0.0, 350.0, L_LENGTH_M)).segments
    assert [segment.id for segment in segments] == ["L-S1", "L-S2"]
    assert [(s.upstream_valve_id, s.downstream_valve_id) for s in segments] == [
        ("L-V1", "L-V2"),
        ("L-V2", "L-V3"),
    ]


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=L_LENGTH_M, allow_subnormal=False),
        max_size=5,
        unique=True,
    )
)
def test_segment_ids_are_numbered_without_gaps(valve_chainages_m: list[float]) -> None:
    segments = l_pipeline(tuple(valve_chainages_m)).segments
    assert [segment.id for segment in segments] == [f"L-S{n}" for n in range(1, len(segments) + 1)]


def test_segment_at_chainage() -> None:
    pipeline = l_pipeline()
    assert pipeline.segment_at_chainage(0.0).id == "L-S1"
    assert pipeline.segment_at_chainage(199.9).id == "L-S1"
    assert pipeline.segment_at_chainage(200.0).id == "L-S2"  # a valve starts its downstream one
    assert pipeline.segment_at_chainage(700.0).id == "L-S3"  # the far end is in the last one
    with pytest.raises(ValueError, match=r"chainage 700\.5 m outside"):
        pipeline.segment_at_chainage(700.5)


def test_polyline_between_keeps_the_bend() -> None:
    pipeline = l_pipeline()
    assert_allclose(pipeline.polyline_between(100.0, 450.0), [[100, 0], [300, 0], [300, 150]])
    assert_allclose(pipeline.polyline_between(0.0, 700.0), pipeline.vertices_m)
    with pytest.raises(ValueError, match="start chainage"):
        pipeline.polyline_between(400.0, 100.0)


def test_arrays_are_read_only() -> None:
    pipeline = l_pipeline()
    with pytest.raises(ValueError, match="read-only"):
        pipeline.vertices_m[0, 0] = 1.0


def test_building_area_and_centroid_of_an_l_shape() -> None:
    # Hand-worked: a 4 x 1 bar (centroid (2, 0.5)) plus a 1 x 2 arm (centroid (0.5, 2)):
    # area 6, centroid ((4*2 + 2*0.5) / 6, (4*0.5 + 2*2) / 6) = (1.5, 1.0).
    footprint = np.array([[0, 0], [4, 0], [4, 1], [1, 1], [1, 3], [0, 3]], dtype=np.float64)
    for ring in (footprint, footprint[::-1]):  # either orientation
        building = Building("B", "L", BuildingUse.SCHOOL, ring, 10.0, 100, 0)
        assert building.footprint_area_m2 == pytest.approx(6.0)
        assert_allclose(building.centroid_m, [1.5, 1.0])
        assert building.sensitive


def test_road_length() -> None:
    road = Road("R", "Test", "A", "B", np.array([[0.0, 0.0], [30.0, 40.0], [30.0, 50.0]]), 2)
    assert road.length_m == pytest.approx(60.0)  # 50 + 10


@pytest.fixture(scope="module")
def lakeside() -> Site:
    return load_site(LAKESIDE_DIR)


@pytest.fixture(scope="module")
def wanli() -> Site:
    return load_site(WANLI_DIR)


def test_site_lookups(lakeside: Site) -> None:
    assert lakeside.pipeline("L1").length_m == pytest.approx(700.0)
    assert lakeside.segment("L1-S2").start_chainage_m == 300.0
    assert lakeside.road_node("C").position_m.tolist() == [200.0, 300.0]
    assert lakeside.device("C1") is lakeside.cameras[0]
    assert lakeside.device("nope") is None
    for lookup in (lakeside.pipeline, lakeside.segment, lakeside.manhole, lakeside.road_node):
        with pytest.raises(KeyError, match="'nope' in site 'lakeside'"):
            lookup("nope")


def test_site_segments_and_zones(lakeside: Site, wanli: Site) -> None:
    assert [segment.id for segment in lakeside.segments] == ["L1-S1", "L1-S2"]
    assert {zone: [d.id for d in ds] for zone, ds in lakeside.zones.items()} == {
        "L1": ["D1", "D2", "D3"]
    }
    assert len(wanli.segments) == sum(len(p.valves) + 1 for p in wanli.pipelines)
    assert sum(len(detectors) for detectors in wanli.zones.values()) == len(wanli.gas_detectors)


def test_site_extent_covers_infrastructure_not_devices(lakeside: Site) -> None:
    # Pipeline 0..300 x 0..400; the camera at east 350 is a device and does not count.
    assert_allclose(lakeside.extent_m, [[0.0, 0.0], [300.0, 400.0]])


def test_manhole_lookup_and_tunnel_hatches(wanli: Site) -> None:
    hatch = wanli.manhole("UT1-H4")
    assert hatch.tunnel_id == "UT1"
    assert wanli.manhole("MH-D03").tunnel_id is None
