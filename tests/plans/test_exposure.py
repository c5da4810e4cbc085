"""Exposure (plans/exposure.py): buildings, occupants, assembly points, routes, traffic control.

All zones are hand-made shapely polygons on the reference site (sites/wanli). The expected sets
are hand-worked from the footprints and positions in sites/wanli/site.toml; each test says how.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from shapely import make_valid
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from pipesentinel.plans.exposure import (
    Advice,
    DayHours,
    EvacuationNetwork,
    ExposureAssessment,
    ExposureSettings,
    Occupancy,
    WindSector,
    Zone,
    assess_exposure,
    occupancy_at,
)
from pipesentinel.site import BuildingUse, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"

WEDNESDAY_10H = dt.datetime(2026, 12, 2, 10, 0)  # a Wednesday (checked below)
WEDNESDAY_23H = dt.datetime(2026, 12, 2, 23, 0)
SATURDAY_10H = dt.datetime(2026, 12, 5, 10, 0)

# Base scenario: leak at (100, 0) m, wind from the south (blowing north).
LEAK_M = np.array([100.0, 0.0])
WIND_FROM_SOUTH_RAD = math.pi
# Red box: holds Huaxin Apartments B23 (60..140 x 101..119); B28 (y <= -157) and the hospital B14
# (y >= 420) are outside it.
RED = box(-50.0, -50.0, 200.0, 300.0)
# Yellow box: holds B23 and the hospital B14 (20..180 x 420..530) and cuts the school B05
# (0..160 x 820..950); B13 (x <= -370) and B22 (x <= -405) lie west of it.
YELLOW = box(-100.0, -60.0, 300.0, 900.0)
# Isolation circle of 100 m: the nearest point of B23, (100, 101), is 101 m away, so no building.
ISOLATION = Point(LEAK_M).buffer(100.0, quad_segs=32)


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def network(site: Site) -> EvacuationNetwork:
    return EvacuationNetwork.from_site(site)


def _assess(
    network: EvacuationNetwork,
    *,
    red: BaseGeometry = RED,
    yellow: BaseGeometry = YELLOW,
    isolation: BaseGeometry = ISOLATION,
    leak_m: np.ndarray = LEAK_M,
    wind_from_rad: float | None = WIND_FROM_SOUTH_RAD,
    local_time: dt.datetime = WEDNESDAY_10H,
    exposure_settings: ExposureSettings | None = None,
) -> ExposureAssessment:
    return assess_exposure(
        network,
        red=red,
        yellow=yellow,
        isolation=isolation,
        leak_position_m=leak_m,
        wind_direction_from_rad=wind_from_rad,
        local_time=local_time,
        settings=exposure_settings,
    )


def _check_routes_avoid_exclusion(
    network: EvacuationNetwork, result: ExposureAssessment, exclusion: BaseGeometry
) -> None:
    """Every route stays out of red and the isolation circle once on the roads; invariants."""
    site = network.site
    buildings = {b.id: b for b in site.buildings}
    points = {p.id: p for p in site.assembly_points}
    exposed = {b.building_id: b for b in result.buildings}
    usable = {p.assembly_point_id for p in result.assembly_points if p.usable}
    for route in result.routes:
        building = buildings[route.building_id]
        polyline = route.polyline_m
        assert_allclose(polyline[0], building.centroid_m)
        assert_allclose(polyline[-1], points[route.assembly_point_id].position_m)
        assert route.assembly_point_id in usable
        on_roads = LineString(polyline[1:]) if len(polyline) > 2 else Point(polyline[-1])
        assert not on_roads.intersects(exclusion), route.building_id
        starts_inside = Zone.RED in exposed[route.building_id].zones or (
            Zone.ISOLATION in exposed[route.building_id].zones
        )
        if starts_inside:
            # the access leg heads away from the leak: the start node is no closer to it
            leak = result.leak_position_m
            assert np.hypot(*(polyline[1] - leak)) >= np.hypot(*(polyline[0] - leak))
        if not Point(polyline[0]).intersects(exclusion):
            assert not LineString(polyline).intersects(exclusion), route.building_id
        steps = np.hypot(*np.diff(polyline, axis=0).T)
        assert route.length_m == pytest.approx(float(steps.sum()))
        assert route.walking_time_s == pytest.approx(route.length_m / (3.5 * 0.3048))


# -------------------------------------------------------------------------------------------
# Buildings and occupants


def test_buildings_in_each_zone_found_with_day_occupants(network: EvacuationNetwork) -> None:
    assert WEDNESDAY_10H.weekday() == 2
    result = _assess(network)
    zones = {b.building_id: b.zones for b in result.buildings}
    assert zones == {
        "B05": (Zone.YELLOW,),
        "B14": (Zone.YELLOW,),
        "B23": (Zone.RED, Zone.YELLOW),
    }
    site_buildings = {b.id: b for b in network.site.buildings}
    for exposed in result.buildings:
        assert exposed.occupancy is Occupancy.DAY
        assert exposed.occupants == site_buildings[exposed.building_id].occupants_day
    # sensitive first (school 1650 before hospital 950 by occupants), then the red-zone flat
    assert [b.building_id for b in result.buildings] == ["B05", "B14", "B23"]
    totals = {t.zone: t for t in result.zone_totals}
    day = {key: b.occupants_day for key, b in site_buildings.items()}
    assert totals["red"].occupants == day["B23"]
    assert totals["isolation"].building_count == 0
    assert totals["yellow"].occupants == day["B05"] + day["B14"] + day["B23"]
    assert totals["yellow"].sensitive_occupants == day["B05"] + day["B14"]
    assert totals["any"].occupants == result.persons_to_evacuate


@pytest.mark.parametrize(("north_edge_m", "school_in"), [(821.0, True), (819.0, False)])
def test_any_part_of_the_footprint_counts(
    network: EvacuationNetwork, north_edge_m: float, school_in: bool
) -> None:
    # the school B05 starts at y = 820: a yellow box to 821 cuts its south edge, one to 819 misses
    result = _assess(network, yellow=box(-100.0, -60.0, 300.0, north_edge_m))
    assert ("B05" in {b.building_id for b in result.buildings}) is school_in


def test_occupants_switch_between_day_and_night(network: EvacuationNetwork) -> None:
    site_buildings = {b.id: b for b in network.site.buildings}
    night = {b.building_id: b for b in _assess(network, local_time=WEDNESDAY_23H).buildings}
    for building_id, exposed in night.items():
        assert exposed.occupancy is Occupancy.NIGHT
        assert exposed.occupants == site_buildings[building_id].occupants_night
    # at night the hospital's in-patients (420) outnumber the school's caretakers (3)
    assert [b.building_id for b in _assess(network, local_time=WEDNESDAY_23H).buildings] == [
        "B14",
        "B05",
        "B23",
    ]
    # Saturday morning: the school is empty (night count), the hospital is in its day hours
    saturday = {b.building_id: b for b in _assess(network, local_time=SATURDAY_10H).buildings}
    assert saturday["B05"].occupancy is Occupancy.NIGHT
    assert saturday["B14"].occupancy is Occupancy.DAY
    assert saturday["B23"].occupancy is Occupancy.NIGHT  # residents at home on the weekend


def test_day_hours_window_over_midnight() -> None:
    night_shift = DayHours(start_s=22 * 3600.0, end_s=6 * 3600.0, days=frozenset({0}))  # Monday
    monday = dt.datetime(2026, 11, 30, 23, 0)
    assert monday.weekday() == 0
    assert night_shift.contains(monday)
    assert night_shift.contains(monday + dt.timedelta(hours=6, minutes=59))  # Tuesday 05:59
    assert not night_shift.contains(monday + dt.timedelta(hours=7))  # Tuesday 06:00
    assert not night_shift.contains(monday - dt.timedelta(hours=2))  # Monday 21:00
    assert not night_shift.contains(monday + dt.timedelta(days=1))  # Tuesday 23:00
    hours = dict.fromkeys(BuildingUse, night_shift)
    assert occupancy_at(BuildingUse.SCHOOL, monday, hours) is Occupancy.DAY


def test_school_hours_default() -> None:
    hours = ExposureSettings().day_hours
    assert occupancy_at(BuildingUse.SCHOOL, dt.datetime(2026, 12, 2, 7, 29), hours) is (
        Occupancy.NIGHT
    )
    assert occupancy_at(BuildingUse.SCHOOL, dt.datetime(2026, 12, 2, 7, 30), hours) is (
        Occupancy.DAY
    )
    assert occupancy_at(BuildingUse.SCHOOL, dt.datetime(2026, 12, 2, 17, 30), hours) is (
        Occupancy.NIGHT
    )


# -------------------------------------------------------------------------------------------
# Assembly points


def test_downwind_assembly_points_are_not_used(network: EvacuationNetwork) -> None:
    result = _assess(network)
    by_id = {p.assembly_point_id: p for p in result.assembly_points}
    # Bearings from the leak (100, 0): AP1 (-620, 930) 322 deg and AP2 (780, 1000) 34 deg are
    # within 45 deg of north (downwind); AP3 (-600, -880) 218.5 deg is within 45 deg of south
    # (upwind); AP4 (1400, -880) 124 deg is crosswind.
    assert by_id["AP1"].wind_sector is WindSector.DOWNWIND
    assert by_id["AP2"].wind_sector is WindSector.DOWNWIND
    assert by_id["AP3"].wind_sector is WindSector.UPWIND
    assert by_id["AP4"].wind_sector is WindSector.CROSSWIND
    assert not by_id["AP1"].usable
    assert not by_id["AP2"].usable
    assert any("downwind" in reason for reason in by_id["AP1"].reasons)
    assert [p.assembly_point_id for p in result.assembly_points if p.usable] == ["AP3", "AP4"]
    assert [p.rank for p in result.assembly_points] == [1, 2, None, None]
    assert result.usable_capacity_persons == (
        by_id["AP3"].capacity_persons + by_id["AP4"].capacity_persons
    )


@pytest.mark.parametrize("wind_from_deg", [0.0, 45.0, 90.0, 135.0, 200.0, 270.0, 330.0])
def test_no_usable_point_in_the_downwind_sector(
    network: EvacuationNetwork, wind_from_deg: float
) -> None:
    result = _assess(network, wind_from_rad=math.radians(wind_from_deg))
    downwind_deg = (wind_from_deg + 180.0) % 360.0
    for point in result.assembly_points:
        offset = point.position_m - LEAK_M
        bearing_deg = math.degrees(math.atan2(offset[0], offset[1])) % 360.0
        off_deg = abs((bearing_deg - downwind_deg + 180.0) % 360.0 - 180.0)
        assert point.angle_from_downwind_rad == pytest.approx(math.radians(off_deg))
        if off_deg <= 45.0:
            assert not point.usable
        if point.usable:
            assert point.clearance_from_zones_m >= 100.0


def test_assembly_point_near_a_zone_is_not_used(network: EvacuationNetwork) -> None:
    # a yellow lobe reaching to 60 m north of AP3 (-600, -880): inside the 100 m margin
    lobe = box(-700.0, -820.0, -500.0, -700.0)
    result = _assess(network, yellow=YELLOW.union(lobe))
    ap3 = next(p for p in result.assembly_points if p.assembly_point_id == "AP3")
    assert not ap3.usable
    assert ap3.clearance_from_zones_m == pytest.approx(60.0)
    assert any("margin" in reason for reason in ap3.reasons)


def test_unknown_wind_excludes_no_sector_and_warns(network: EvacuationNetwork) -> None:
    result = _assess(network, wind_from_rad=None)
    assert all(p.wind_sector is WindSector.UNKNOWN for p in result.assembly_points)
    assert all(p.usable for p in result.assembly_points)  # all are > 100 m from the boxes
    assert any("wind direction unknown" in warning for warning in result.warnings)


def test_wide_direction_spread_widens_the_sector_and_calm_excludes_none(
    network: EvacuationNetwork,
) -> None:
    # AP4 is 124 deg off downwind: crosswind at +-45 deg, downwind once the spread reaches 130 deg
    wide = assess_exposure(
        network,
        red=RED,
        yellow=YELLOW,
        isolation=ISOLATION,
        leak_position_m=LEAK_M,
        wind_direction_from_rad=WIND_FROM_SOUTH_RAD,
        local_time=WEDNESDAY_10H,
        wind_direction_half_spread_rad=math.radians(130.0),
    )
    usable = {p.assembly_point_id for p in wide.assembly_points if p.usable}
    assert usable == {"AP3"}  # 141.5 deg off downwind
    calm = assess_exposure(
        network,
        red=RED,
        yellow=YELLOW,
        isolation=ISOLATION,
        leak_position_m=LEAK_M,
        wind_direction_from_rad=WIND_FROM_SOUTH_RAD,
        local_time=WEDNESDAY_10H,
        wind_direction_half_spread_rad=math.pi,
    )
    assert all(p.usable for p in calm.assembly_points)
    assert any("calm" in warning for warning in calm.warnings)


# -------------------------------------------------------------------------------------------
# Routes


def test_routes_never_cross_red_and_reach_a_usable_point(network: EvacuationNetwork) -> None:
    result = _assess(network)
    assert {r.building_id for r in result.routes} == {"B05", "B14", "B23"}
    assert not result.unrouted
    _check_routes_avoid_exclusion(network, result, RED.union(ISOLATION))
    for route in result.routes:
        assert route.road_names  # every route here uses at least one named road
        assert route.slow_walking_time_s > route.walking_time_s


@settings(max_examples=60, deadline=None)
@given(
    chainage_fraction=st.floats(0.05, 0.95),
    wind_from_deg=st.floats(0.0, 360.0),
    red_radius_m=st.floats(60.0, 400.0),
    isolation_radius_m=st.floats(50.0, 300.0),
)
def test_routes_never_cross_red_for_random_plumes(
    network: EvacuationNetwork,
    chainage_fraction: float,
    wind_from_deg: float,
    red_radius_m: float,
    isolation_radius_m: float,
) -> None:
    pipeline = network.site.pipeline("P1")
    leak = pipeline.point_at_chainage(chainage_fraction * pipeline.length_m)
    downwind = math.radians(wind_from_deg + 180.0)
    unit = np.array([math.sin(downwind), math.cos(downwind)])
    red = Point(leak + 0.5 * red_radius_m * unit).buffer(red_radius_m)
    yellow = Point(leak + 1.5 * red_radius_m * unit).buffer(2.5 * red_radius_m)
    isolation = Point(leak).buffer(isolation_radius_m)
    result = _assess(
        network,
        red=red,
        yellow=yellow,
        isolation=isolation,
        leak_m=leak,
        wind_from_rad=math.radians(wind_from_deg),
    )
    _check_routes_avoid_exclusion(network, result, red.union(isolation))
    routed = {r.building_id for r in result.routes} | {b.building_id for b in result.unrouted}
    assert routed == {b.building_id for b in result.buildings}  # each building once, one way
    assert len(result.routes) + len(result.unrouted) == len(result.buildings)


def test_building_in_red_starts_away_from_the_leak(network: EvacuationNetwork) -> None:
    result = _assess(network)
    route = next(r for r in result.routes if r.building_id == "B23")
    centroid = route.polyline_m[0]
    start = route.polyline_m[1]
    # heading away: the access leg's direction has a non-negative component along leak->building
    assert float(np.dot(start - centroid, centroid - LEAK_M)) >= 0.0
    assert not Point(start).intersects(RED)


def test_building_cut_off_by_red_gets_shelter_or_escort(network: EvacuationNetwork) -> None:
    # A red ring 200..600 m around Huaxin Apartments B23 (centroid (100, 110)): its nearest road
    # nodes are 377 m away (inside the ring), every other leg crosses the ring.
    centre = Point(100.0, 110.0)
    ring = centre.buffer(600.0).difference(centre.buffer(200.0))
    result = _assess(network, red=ring, yellow=centre.buffer(700.0), leak_m=np.array([100.0, 0.0]))
    unrouted = {b.building_id: b for b in result.unrouted}
    assert "B23" in unrouted
    assert unrouted["B23"].advice is Advice.SHELTER_IN_PLACE_OR_ESCORT
    assert "B23" not in {r.building_id for r in result.routes}
    assert any("shelter in place or escort" in warning for warning in result.warnings)


def test_building_in_red_with_no_node_away_from_the_leak(network: EvacuationNetwork) -> None:
    # Red covers everything north of y = 100 m; the leak (100, 105) is just south of B23
    # (101..119): nodes away from the leak lie north (y >= 110), all inside red.
    red = box(-3000.0, 100.0, 3000.0, 3000.0)
    leak = np.array([100.0, 105.0])
    result = _assess(network, red=red, yellow=red, isolation=Point(leak).buffer(50.0), leak_m=leak)
    unrouted = {b.building_id: b for b in result.unrouted}
    assert "away from the leak" in unrouted["B23"].reason


def test_no_usable_assembly_point_leaves_everyone_unrouted(network: EvacuationNetwork) -> None:
    everything = Point(LEAK_M).buffer(5000.0)
    result = _assess(network, isolation=everything)
    assert len(result.buildings) == len(network.site.buildings)
    assert not result.routes
    assert all(not p.usable for p in result.assembly_points)
    assert all(b.reason == "no usable assembly point" for b in result.unrouted)
    assert all(road.closed for road in result.traffic_control)


def test_yellow_penalty_never_increases_yellow_walking(network: EvacuationNetwork) -> None:
    # Exchange argument: the route minimising length + (k - 1) * yellow has no more yellow metres
    # than the shortest route from the same start node.
    plain = _assess(network, exposure_settings=ExposureSettings(yellow_penalty=1.0))
    penalised = _assess(network, exposure_settings=ExposureSettings(yellow_penalty=10.0))
    plain_yellow = {r.building_id: r.length_in_yellow_m for r in plain.routes}
    for route in penalised.routes:
        assert route.length_in_yellow_m <= plain_yellow[route.building_id] + 1e-6
    assert any(r.crosses_yellow for r in penalised.routes)  # these buildings sit in yellow
    assert any("cross the yellow zone" in warning for warning in penalised.warnings)


def test_assembly_points_fill_by_capacity(network: EvacuationNetwork, site: Site) -> None:
    # AP3 holds 1000: the school (1650) cannot go there, the hospital (950) and B23 (65) can't
    # both; the school goes on to AP4, the next usable point with room.
    small_ap3 = tuple(
        dataclasses.replace(p, capacity_persons=1000) if p.id == "AP3" else p
        for p in site.assembly_points
    )
    small = EvacuationNetwork.from_site(dataclasses.replace(site, assembly_points=small_ap3))
    result = _assess(small)
    destination = {r.building_id: r.assembly_point_id for r in result.routes}
    assert destination["B05"] == "AP4"
    assigned = {p.assembly_point_id: p.assigned_persons for p in result.assembly_points}
    capacity = {p.assembly_point_id: p.capacity_persons for p in result.assembly_points}
    assert assigned["AP3"] <= capacity["AP3"]
    assert sum(assigned.values()) == result.persons_to_evacuate
    assert not any(r.over_capacity for r in result.routes)


def test_over_capacity_is_flagged(network: EvacuationNetwork, site: Site) -> None:
    tiny = tuple(dataclasses.replace(p, capacity_persons=10) for p in site.assembly_points)
    result = _assess(EvacuationNetwork.from_site(dataclasses.replace(site, assembly_points=tiny)))
    assert all(r.over_capacity for r in result.routes)
    assert result.capacity_shortfall_persons == result.persons_to_evacuate - 20  # AP3 + AP4
    assert any("fewer than" in warning for warning in result.warnings)


# -------------------------------------------------------------------------------------------
# Traffic control, output


def test_roads_through_red_are_closed_and_yellow_roads_controlled(
    network: EvacuationNetwork,
) -> None:
    result = _assess(network)
    roads = {r.road_id: r for r in result.traffic_control}
    # Zhongxing Street R13 runs along y = 250 from x = -250 to 450: through the red box.
    assert roads["R13"].closed
    assert roads["R13"].zones[0] is Zone.RED
    assert roads["R13"].length_in_zones_m == pytest.approx(400.0)  # x = -100..300 in yellow
    # Wanli Avenue R08 (y = 700, x = -250..450) is in yellow only: controlled, not closed.
    assert roads["R08"].zones == (Zone.YELLOW,)
    assert not roads["R08"].closed
    closed_ids = {r.road_id for r in result.traffic_control if r.closed}
    for route in result.routes:
        assert not closed_ids & set(route.road_ids)
    assert "Zhongxing Street" in result.traffic_control_road_names
    flags = [r.closed for r in result.traffic_control]
    assert flags == sorted(flags, reverse=True)  # closed roads listed first


def test_json_is_plain_and_deterministic(network: EvacuationNetwork) -> None:
    first = json.dumps(_assess(network).to_json_dict(), sort_keys=False)
    second = json.dumps(_assess(network).to_json_dict(), sort_keys=False)
    assert first == second
    decoded = json.loads(first)
    assert decoded["settings"]["walking_speed_m_per_s"] == pytest.approx(3.5 * 0.3048)
    assert decoded["routes"][0]["building_id"] == decoded["buildings"][0]["building_id"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"walking_speed_m_per_s": 0.0}, "walking_speed_m_per_s"),
        ({"slow_walking_speed_m_per_s": -1.0}, "slow_walking_speed_m_per_s"),
        ({"assembly_margin_m": -1.0}, "assembly_margin_m"),
        ({"downwind_half_angle_rad": 2.0}, "downwind_half_angle_rad"),
        ({"yellow_penalty": 0.5}, "yellow_penalty"),
        ({"day_hours": {BuildingUse.SCHOOL: DayHours(0.0, 3600.0)}}, "residential"),
    ],
)
def test_nonsense_settings_fail_fast(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExposureSettings(**bad)  # type: ignore[arg-type]


def test_nonsense_day_hours_fail_fast() -> None:
    with pytest.raises(ValueError, match="end_s"):
        DayHours(0.0, 90_000.0)
    with pytest.raises(ValueError, match="weekday"):
        DayHours(0.0, 3600.0, frozenset({7}))


def test_bad_leak_position_fails(network: EvacuationNetwork) -> None:
    with pytest.raises(ValueError, match="leak_position_m"):
        _assess(network, leak_m=np.array([1.0, 2.0, 3.0]))


def test_invalid_zone_outline_is_repaired(network: EvacuationNetwork) -> None:
    # a bow-tie (self-crossing) version of the red box: shapely reports it invalid
    bow_tie = Polygon([(-50.0, -50.0), (200.0, 300.0), (200.0, -50.0), (-50.0, 300.0)])
    assert not bow_tie.is_valid
    result = _assess(network, red=bow_tie)
    _check_routes_avoid_exclusion(network, result, make_valid(bow_tie).union(ISOLATION))
    assert "B23" in {b.building_id for b in result.buildings if Zone.RED in b.zones}
