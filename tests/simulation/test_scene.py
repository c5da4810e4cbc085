"""3D scene (simulation/scene.py): mesh primitives, one object per asset, depths, states, budget.

Volumes are computed with the divergence theorem (sum over triangles of ``v0 . (v1 x v2) / 6``):
positive only when every triangle is wound counter-clockwise seen from outside, so the volume
checks are also winding checks. Expected volumes are hand-worked from the shapes' formulas.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from shapely.geometry import Polygon, box, mapping

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.library import Severity
from pipesentinel.plans.response import LeakEstimate, ResponseContext, respond
from pipesentinel.simulation.map2d import MapRoute
from pipesentinel.simulation.scene import (
    DETECTOR_RGBA,
    NETWORK_RGBA,
    PIPE_STATE_RGBA,
    TRIANGLE_BUDGET,
    VALVE_CLOSED_RGBA,
    DetectorState,
    Layer,
    Mesh,
    PipeState,
    PlumeSurface,
    SceneLayers,
    Wind,
    build_scene,
    frustum_mesh,
    layers_from_response,
    pipe_centre_z_m,
    prism_mesh,
    sphere_mesh,
    tube_mesh,
)
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


def volume_m3(mesh: Mesh) -> float:
    corners = mesh.positions_m[mesh.triangles]
    return float(
        np.sum(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2]))) / 6.0
    )


def face_normals_agree(mesh: Mesh) -> bool:
    """Each triangle's winding normal points the same way as its vertices' normals."""
    corners = mesh.positions_m[mesh.triangles]
    winding = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    vertex = mesh.normals[mesh.triangles].sum(axis=1)
    return bool(np.all(np.einsum("ij,ij->i", winding, vertex) > 0.0))


def regular_polygon_area(radius_m: float, sides: int) -> float:
    return 0.5 * sides * radius_m**2 * math.sin(2.0 * math.pi / sides)


def test_tube_vertices_lie_on_the_radius_with_outward_normals() -> None:
    polyline = np.array([[0.0, 0.0, -2.0], [100.0, 0.0, -2.0], [100.0, 50.0, -2.0]])
    mesh = tube_mesh(polyline, 0.3, sides=12)
    assert mesh.triangle_count == 2 * 12 * 2  # two stretches, two triangles per facet
    first = mesh.positions_m[:24]  # the first stretch: along east at y = 0, z = -2
    assert_allclose(np.hypot(first[:, 1], first[:, 2] + 2.0), 0.3, rtol=1e-12)
    assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, rtol=1e-12)
    radial = first - np.column_stack([first[:, 0], np.zeros(24), np.full(24, -2.0)])
    assert np.all(np.einsum("ij,ij->i", radial, mesh.normals[:24]) > 0.0)
    assert face_normals_agree(mesh)


@pytest.mark.parametrize("direction", [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.3, -0.4, 0.8)])
def test_capped_cylinder_is_closed_with_the_volume_of_its_prism(
    direction: tuple[float, float, float],
) -> None:
    # A capped cylinder of k facets is a prism over a regular k-gon: V = area(k-gon) * length.
    axis = 7.0 * np.asarray(direction) / np.linalg.norm(direction)
    mesh = frustum_mesh(
        [1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0]) + axis, 0.5, 0.5, sides=16, capped=True
    )
    assert_allclose(volume_m3(mesh), regular_polygon_area(0.5, 16) * 7.0, rtol=1e-9)
    assert face_normals_agree(mesh)


def test_cone_has_a_third_of_its_prism_volume() -> None:
    mesh = frustum_mesh([0.0, 0.0, 0.0], [0.0, 0.0, 9.0], 2.0, 0.0, sides=24, capped=True)
    assert_allclose(volume_m3(mesh), regular_polygon_area(2.0, 24) * 9.0 / 3.0, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    width=st.floats(1.0, 200.0),
    depth=st.floats(1.0, 200.0),
    hole=st.floats(0.05, 0.45),
    bottom=st.floats(-20.0, 20.0),
    height=st.floats(0.5, 80.0),
)
def test_prism_volume_is_area_times_height_holes_kept(
    width: float, depth: float, hole: float, bottom: float, height: float
) -> None:
    outer = box(0.0, 0.0, width, depth)
    inner = box(hole * width, hole * depth, (1 - hole) * width, (1 - hole) * depth)
    polygon = Polygon(outer.exterior.coords, [inner.exterior.coords])
    mesh = prism_mesh(polygon, bottom, bottom + height)
    assert_allclose(volume_m3(mesh), polygon.area * height, rtol=1e-9)
    assert face_normals_agree(mesh)


def test_prism_of_a_concave_footprint_has_its_area() -> None:
    ell = Polygon([(0, 0), (30, 0), (30, 10), (10, 10), (10, 40), (0, 40)])  # 30*10 + 10*30 m2
    assert_allclose(volume_m3(prism_mesh(ell, 0.0, 12.0)), 600.0 * 12.0, rtol=1e-12)


def test_sphere_vertices_lie_on_the_radius() -> None:
    mesh = sphere_mesh([5.0, -3.0, 1.0], 2.5)
    assert mesh.triangle_count == 80
    assert_allclose(np.linalg.norm(mesh.positions_m - [5.0, -3.0, 1.0], axis=1), 2.5)
    assert 0.0 < volume_m3(mesh) < 4.0 / 3.0 * math.pi * 2.5**3  # inscribed polyhedron


def test_mesh_rejects_triangles_pointing_past_its_vertices() -> None:
    with pytest.raises(ValueError, match="do not exist"):
        Mesh(np.zeros((3, 3)), np.zeros((3, 3)), np.array([[0, 1, 3]]))


def test_scene_has_one_object_per_asset(site: Site) -> None:
    scene = build_scene(site)
    ids = {item.id for item in scene.objects}
    expected = (
        {segment.id for segment in site.segments}
        | {valve.id for pipeline in site.pipelines for valve in pipeline.valves}
        | {pipe.id for pipe in site.municipal_pipes}
        | {manhole.id for manhole in site.manholes}
        | {tunnel.id for tunnel in site.utility_tunnels}
        | {building.id for building in site.buildings}
        | {road.id for road in site.roads}
        | {point.id for point in site.assembly_points}
        | {device.id for device in site.devices}
        | {f"{camera.id}/fov" for camera in site.cameras}
        | {f"{camera.id}/laser" for camera in site.cameras}
        | {"ground"}
    )
    assert ids == expected
    assert len(scene.objects) == len(ids)
    assert scene.triangle_count <= TRIANGLE_BUDGET


def test_pipelines_lie_at_their_true_depth_with_their_asset_data(site: Site) -> None:
    scene = build_scene(site)
    for pipeline in site.pipelines:
        centre = pipe_centre_z_m(pipeline)
        assert centre == pytest.approx(-(pipeline.depth_of_cover_m + pipeline.diameter_m / 2))
        for segment in pipeline.segments:
            item = scene.object(segment.id)
            z = item.mesh.positions_m[:, 2]
            # The tube spans the pipe: top at the depth of cover, bottom one diameter lower.
            assert z.max() == pytest.approx(-pipeline.depth_of_cover_m, abs=1e-9)
            assert z.min() == pytest.approx(centre - pipeline.diameter_m / 2, abs=1e-9)
            assert item.data["diameter_m"] == pytest.approx(pipeline.diameter_m)
            assert item.data["operating_pressure_pa"] == pytest.approx(
                pipeline.operating_pressure_pa
            )
            assert item.data["product"] == pipeline.product.value
            assert item.data["segment_id"] == segment.id
            assert item.data["valves"] == [valve.id for valve in pipeline.valves]
            assert item.layer is Layer.PIPELINES


def test_states_colour_segments_valves_and_detectors(site: Site) -> None:
    leak, isolated = site.segments[1].id, site.segments[0].id
    detector = site.gas_detectors[3].id
    valve = site.pipelines[0].valves[0].id
    scene = build_scene(
        site,
        SceneLayers(
            segment_states={leak: PipeState.LEAK, isolated: PipeState.ISOLATED},
            closed_valve_ids=frozenset({valve}),
            detector_states={detector: DetectorState.HIGH},
        ),
    )
    assert scene.object(leak).colour_rgba == PIPE_STATE_RGBA[PipeState.LEAK]
    assert scene.object(leak).data["state"] == "leak"
    assert scene.object(isolated).colour_rgba == PIPE_STATE_RGBA[PipeState.ISOLATED]
    assert scene.object(valve).colour_rgba == VALVE_CLOSED_RGBA
    assert scene.object(detector).colour_rgba == DETECTOR_RGBA[DetectorState.HIGH]
    others = [d.id for d in site.gas_detectors if d.id != detector]
    assert {scene.object(d).colour_rgba for d in others} == {DETECTOR_RGBA[DetectorState.NORMAL]}
    for pipe in site.municipal_pipes:
        assert scene.object(pipe.id).colour_rgba == NETWORK_RGBA[pipe.network]


def test_detectors_and_buildings_sit_where_the_site_says(site: Site) -> None:
    scene = build_scene(site)
    for detector in site.gas_detectors:
        assert_allclose(
            scene.object(detector.id).mesh.positions_m.mean(axis=0), detector.position_m, atol=1e-9
        )
    for building in site.buildings:
        mesh = scene.object(building.id).mesh
        assert_allclose(volume_m3(mesh), building.footprint_area_m2 * building.height_m, rtol=1e-9)


def test_camera_fov_points_along_the_heading_and_the_laser_stops_at_its_range(site: Site) -> None:
    scene = build_scene(site)
    for camera in site.cameras:
        fov = scene.object(f"{camera.id}/fov").mesh.positions_m
        centre = fov.mean(axis=0)[:2] - camera.position_m
        bearing = math.degrees(math.atan2(centre[0], centre[1])) % 360.0
        assert bearing == pytest.approx(camera.heading_deg % 360.0, abs=0.5)
        beam = scene.object(f"{camera.id}/laser")
        assert 0.0 < float(beam.data["length_m"]) <= camera.laser_range_m + 0.05  # type: ignore[arg-type]


def test_wind_arrow_points_downwind(site: Site) -> None:
    station = site.wind_stations[0]
    scene = build_scene(site, SceneLayers(wind={station.id: Wind(4.0, 270.0)}))  # from the west
    arrow = scene.object(f"wind/{station.id}").mesh.positions_m
    tip = arrow[np.argmax(arrow[:, 0])]
    assert tip[0] - station.position_m[0] == pytest.approx(60.0, abs=1e-6)  # 15 m per m/s, east
    assert_allclose(arrow[:, 1].mean(), station.position_m[1], atol=1e-6)


def test_zones_from_geometry_or_geojson_give_the_same_volume(site: Site) -> None:
    red = box(-100.0, -50.0, 100.0, 50.0)
    yellow = box(-300.0, -150.0, 300.0, 150.0)
    one = build_scene(site, SceneLayers(zones_m={"red": red, "yellow": yellow}))
    two = build_scene(site, SceneLayers(zones_m={"red": mapping(red), "yellow": mapping(yellow)}))
    for level, area in (("red", red.area), ("yellow", yellow.area)):
        first, second = one.object(f"zone/{level}"), two.object(f"zone/{level}")
        height = float(first.data["drawn_height_m"])  # type: ignore[arg-type]
        assert_allclose(volume_m3(first.mesh), area * height, rtol=1e-9)
        assert_allclose(volume_m3(second.mesh), volume_m3(first.mesh), rtol=1e-12)
        assert first.translucent
    with pytest.raises(ValueError, match="unknown zone level"):
        build_scene(site, SceneLayers(zones_m={"purple": red}))


def test_routes_leak_and_plume_objects_are_named_for_the_viewer(site: Site) -> None:
    building, point = site.buildings[0], site.assembly_points[0]
    route = MapRoute(building.id, point.id, np.vstack([building.centroid_m, point.position_m]))
    surface = PlumeSurface(60.0, "yellow", 10.0, 0.0044, sphere_mesh([0.0, 0.0, 1.0], 5.0))
    empty = PlumeSurface(60.0, "red", 60.0, 0.0264, Mesh.empty())
    scene = build_scene(
        site,
        SceneLayers(routes=(route,), leak_position_m=(10.0, 20.0), plume=(surface, empty)),
    )
    assert scene.object(f"route/{building.id}").data["assembly_point_id"] == point.id
    assert_allclose(
        scene.object("leak").mesh.positions_m.mean(axis=0), [10.0, 20.0, 0.0], atol=1e-9
    )
    assert scene.object("plume/60/yellow").data["time_s"] == 60.0
    assert scene.object("plume/60/red").data["empty"] is True


def test_unknown_assets_and_the_budget_are_refused(site: Site) -> None:
    with pytest.raises(ValueError, match="unknown segment"):
        build_scene(site, SceneLayers(segment_states={"P9-S1": PipeState.LEAK}))
    with pytest.raises(ValueError, match="unknown device"):
        build_scene(site, SceneLayers(detector_states={"nope": DetectorState.LOW}))
    budget = build_scene(site).triangle_count
    build_scene(site, triangle_budget=budget)
    with pytest.raises(ValueError, match="budget"):
        build_scene(site, triangle_budget=budget - 1)


def test_layers_from_a_response_show_its_leak_isolation_zones_and_routes(site: Site) -> None:
    context = ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)
    estimate = LeakEstimate.what_if(
        site,
        gas=Gas.METHANE,
        rate_kg_per_s=5.0,
        wind_speed_m_per_s=1.5,
        wind_from_deg=200.0,
        stability_class=StabilityClass.E,
        lel_basis=LelBasis.IEC_60079_20_1,
        pipeline_id="P1",
        chainage_m=1200.0,
        rate_factor=2.0,
    )
    response = respond(
        context,
        incident_id="INC-SCENE",
        incident_version=1,
        time_s=1_796_000_000.0,
        severity=Severity.CONFIRMED,
        estimate=estimate,
    )
    layers = layers_from_response(response, site=site)
    leak_segment = site.pipeline("P1").segment_at_chainage(1200.0).id
    assert layers.segment_states[leak_segment] is PipeState.LEAK
    isolated = {s for section in response.isolation.sections for s in section.segment_ids}
    assert set(layers.segment_states) == isolated | {leak_segment}
    assert layers.closed_valve_ids == frozenset(response.isolation.valves_to_close)
    assert layers.closed_valve_ids  # a leak on P1 has valves to close
    assert set(layers.wind) == {station.id for station in site.wind_stations}
    scene = build_scene(site, layers)
    for zone in response.zones.zones:
        item = scene.object(f"zone/{zone.level.value}")
        height = float(item.data["drawn_height_m"])  # type: ignore[arg-type]
        assert_allclose(volume_m3(item.mesh), zone.polygon_m.area * height, rtol=1e-6)
    routes = {f"route/{route.building_id}" for route in response.exposure.routes}
    assert routes == {item.id for item in scene.layer(Layer.ROUTES)}
    for valve in response.isolation.valves_to_close:
        assert scene.object(valve).colour_rgba == VALVE_CLOSED_RGBA
    assert_allclose(
        scene.object("leak").mesh.positions_m.mean(axis=0)[:2], estimate.position_m, atol=1e-9
    )
