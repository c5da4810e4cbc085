"""ENU <-> WGS84 conversions and GeoJSON of a site (core/geo.py)."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.geo import (
    WGS84_FIRST_ECCENTRICITY_SQUARED,
    WGS84_SEMI_MAJOR_AXIS_M,
    WGS84_SEMI_MINOR_AXIS_M,
    ecef_to_geodetic,
    enu_to_geodetic,
    geodetic_to_ecef,
    geodetic_to_enu,
    lon_lat,
    site_to_geojson,
)
from pipesentinel.site import GeoOrigin, Site
from pipesentinel.site_loader import load_site

REPO = Path(__file__).resolve().parent.parent
WANLI = load_site(REPO / "sites" / "wanli")
LAKESIDE = load_site(REPO / "tests" / "site_fixtures" / "lakeside")


def vincenty_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Geodesic distance on WGS84 by Vincenty's inverse formula, an independent reference.

    T. Vincenty, "Direct and inverse solutions of geodesics on the ellipsoid with application of
    nested equations", Survey Review 23(176), 1975, 88-93; accurate to about 0.5 mm.
    """
    a = 6378137.0
    f = 1 / 298.257223563
    b = a * (1 - f)
    big_l = math.radians(lon2 - lon1)
    u1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    sin_u1, cos_u1, sin_u2, cos_u2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha**2
        cos_2sm = cos_sigma - 2 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
        c = f / 16 * cos2_alpha * (4 + f * (4 - 3 * cos2_alpha))
        previous = lam
        lam = big_l + (1 - c) * f * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2))
        )
        if abs(lam - previous) < 1e-13:
            break
    u_sq = cos2_alpha * (a**2 - b**2) / b**2
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sm
            + big_b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm**2)
                - big_b / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    return b * big_a * (sigma - delta_sigma)


def test_wgs84_derived_constants() -> None:
    # NIMA TR8350.2 table 3.3: b = 6356752.3142 m, e^2 = 6.69437999014e-3.
    assert abs(WGS84_SEMI_MINOR_AXIS_M - 6356752.3142) < 1e-4
    assert abs(WGS84_FIRST_ECCENTRICITY_SQUARED - 6.69437999014e-3) < 1e-14


def test_ecef_of_known_points() -> None:
    # On the equator at the prime meridian x = a; at the pole z = b (definitions of a and b).
    assert_allclose(geodetic_to_ecef(0.0, 0.0, 0.0), (WGS84_SEMI_MAJOR_AXIS_M, 0.0, 0.0))
    assert_allclose(
        geodetic_to_ecef(90.0, 0.0, 100.0), (0.0, 0.0, WGS84_SEMI_MINOR_AXIS_M + 100.0), atol=1e-6
    )
    latitude, longitude, altitude = ecef_to_geodetic(0.0, WGS84_SEMI_MAJOR_AXIS_M + 10.0, 0.0)
    assert_allclose((latitude, longitude, altitude), (0.0, 90.0, 10.0), atol=1e-9)


def test_one_arc_minute_of_latitude() -> None:
    # Length of a degree of latitude on WGS84, 111132.954 - 559.822 cos 2p + 1.175 cos 4p m
    # (the standard series, e.g. Osborne, "The Mercator Projections", 2013, ch. 5), evaluated at
    # the middle of the minute: 1852.199 m, close to the nautical mile (1852 m) that it defined.
    origin = GeoOrigin(45.0, 10.0, 0.0)
    middle = math.radians(45.0 + 0.5 / 60)
    expected_m = (111132.954 - 559.822 * math.cos(2 * middle) + 1.175 * math.cos(4 * middle)) / 60
    east, north, _ = geodetic_to_enu(45.0 + 1 / 60, 10.0, 0.0, origin)
    assert float(north) == pytest.approx(expected_m, abs=0.005)
    assert float(north) == pytest.approx(1852.0, abs=0.5)
    assert float(east) == pytest.approx(0.0, abs=1e-6)


def test_one_arc_minute_of_longitude_on_the_equator() -> None:
    # An arc of the equator: a * pi / 10800 = 1855.3248 m; the tangent-plane east coordinate is
    # a sin(1') (shorter by a^3 t^3 / 6 a^2, about 8 micrometres).
    origin = GeoOrigin(0.0, 0.0, 0.0)
    east, north, _ = geodetic_to_enu(0.0, 1 / 60, 0.0, origin)
    assert float(east) == pytest.approx(WGS84_SEMI_MAJOR_AXIS_M * math.pi / 10800, abs=1e-3)
    assert float(east) == pytest.approx(1855.3248, abs=1e-4)
    assert float(north) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("bearing_deg", np.arange(0.0, 360.0, 22.5).tolist())
def test_ground_distance_within_a_decimetre_over_10_km(bearing_deg: float) -> None:
    # A point of the tangent plane 10 km away lies, measured along the ellipsoid, d^3 / (3 R^2)
    # ~ 8 mm closer; the claim is < 0.1 m. Reference: Vincenty's inverse formula. The origin is
    # on the ellipsoid here (altitude 0) so that the two measure on the same surface.
    origin = GeoOrigin(WANLI.origin.latitude_deg, WANLI.origin.longitude_deg, 0.0)
    distance_m = 10_000.0
    bearing = math.radians(bearing_deg)
    latitude, longitude, _ = enu_to_geodetic(
        distance_m * math.sin(bearing), distance_m * math.cos(bearing), 0.0, origin
    )
    geodesic_m = vincenty_distance_m(
        origin.latitude_deg, origin.longitude_deg, float(latitude), float(longitude)
    )
    assert geodesic_m == pytest.approx(distance_m, abs=0.1)
    assert geodesic_m == pytest.approx(distance_m - distance_m**3 / (3 * 6.371e6**2), abs=0.002)


def test_site_plane_distances_are_at_the_origin_altitude() -> None:
    # Wanli's plane is 112 m above the ellipsoid; on the ellipsoid, 10 km there shrink by
    # d h / R = 1e4 * 112 / 6.371e6 = 0.176 m (plus the 8 mm above): the site frame measures
    # at ground level, as it should, not on the ellipsoid.
    origin = WANLI.origin
    latitude, longitude, _ = enu_to_geodetic(10_000.0, 0.0, 0.0, origin)
    geodesic_m = vincenty_distance_m(
        origin.latitude_deg, origin.longitude_deg, float(latitude), float(longitude)
    )
    shrink_m = 1e4 * origin.altitude_m / 6.371e6 + 1e12 / (3 * 6.371e6**2)
    assert 10_000.0 - geodesic_m == pytest.approx(shrink_m, abs=0.005)


def test_the_tangent_plane_rises_above_the_ellipsoid() -> None:
    # Height of the plane 10 km out: about d^2 / (2 R) = 1e8 / (2 * 6.37e6) = 7.85 m.
    origin = WANLI.origin
    _, _, altitude = enu_to_geodetic(0.0, 10_000.0, 0.0, origin)
    assert float(altitude) - origin.altitude_m == pytest.approx(7.85, abs=0.05)


def test_east_is_east_and_north_is_north() -> None:
    origin = WANLI.origin
    latitude, longitude, _ = enu_to_geodetic(
        np.array([1000.0, 0.0]), np.array([0.0, 1000.0]), 0.0, origin
    )
    assert longitude[0] > origin.longitude_deg
    assert latitude[0] == pytest.approx(origin.latitude_deg, abs=1e-4)
    assert latitude[1] > origin.latitude_deg
    assert longitude[1] == pytest.approx(origin.longitude_deg, abs=1e-12)


def test_origin_maps_to_itself() -> None:
    origin = LAKESIDE.origin
    assert_allclose(lon_lat([0.0, 0.0], origin), [origin.longitude_deg, origin.latitude_deg])
    east, north, up = geodetic_to_enu(
        origin.latitude_deg, origin.longitude_deg, origin.altitude_m, origin
    )
    assert_allclose([east, north, up], [0.0, 0.0, 0.0], atol=1e-8)


def test_conversions_broadcast() -> None:
    east = np.linspace(-5000.0, 5000.0, 12).reshape(3, 4)
    latitude, longitude, altitude = enu_to_geodetic(east, 0.0, 0.0, WANLI.origin)
    assert latitude.shape == longitude.shape == altitude.shape == (3, 4)
    points = np.stack([east, east], axis=-1)
    assert lon_lat(points, WANLI.origin).shape == (3, 4, 2)


@settings(max_examples=200, deadline=None)
@given(
    latitude_deg=st.floats(-85.0, 85.0),
    longitude_deg=st.floats(-180.0, 180.0),
    altitude_m=st.floats(-100.0, 5000.0),
    east_m=st.floats(-10_000.0, 10_000.0),
    north_m=st.floats(-10_000.0, 10_000.0),
    up_m=st.floats(-100.0, 1000.0),
)
def test_round_trip(
    *,
    latitude_deg: float,
    longitude_deg: float,
    altitude_m: float,
    east_m: float,
    north_m: float,
    up_m: float,
) -> None:
    origin = GeoOrigin(latitude_deg, longitude_deg, altitude_m)
    latitude, longitude, altitude = enu_to_geodetic(east_m, north_m, up_m, origin)
    back = geodetic_to_enu(latitude, longitude, altitude, origin)
    assert_allclose(back, (east_m, north_m, up_m), atol=1e-6)  # a micrometre


# --------------------------------------------------------------------------------------------
# GeoJSON


def positions(geometry: dict[str, Any]) -> list[list[float]]:
    coordinates = geometry["coordinates"]
    if geometry["type"] == "Point":
        return [coordinates]
    if geometry["type"] == "LineString":
        return list(coordinates)
    assert geometry["type"] == "Polygon"
    return [position for ring in coordinates for position in ring]


def _geojson(site: Site) -> dict[str, Any]:
    document = site_to_geojson(site)
    result: dict[str, Any] = json.loads(json.dumps(document))  # serialisable, plain JSON
    return result


def test_geojson_structure_and_counts() -> None:
    document = _geojson(WANLI)
    assert document["type"] == "FeatureCollection"
    features = document["features"]
    assert all(feature["type"] == "Feature" for feature in features)
    assert all(feature["id"] == feature["properties"]["id"] for feature in features)
    layers = [feature["properties"]["layer"] for feature in features]
    expected = {
        "pipeline": 2,
        "segment": len(WANLI.segments),
        "valve": sum(len(pipeline.valves) for pipeline in WANLI.pipelines),
        "municipal_pipe": len(WANLI.municipal_pipes),
        "manhole": len(WANLI.manholes),
        "utility_tunnel": 1,
        "building": len(WANLI.buildings),
        "road_node": len(WANLI.road_nodes),
        "road": len(WANLI.roads),
        "assembly_point": len(WANLI.assembly_points),
        "gas_detector": 30,
        "wind_station": 2,
        "camera": 8,
    }
    assert {layer: layers.count(layer) for layer in set(layers)} == expected
    ids = [feature["id"] for feature in features]
    assert len(ids) == len(set(ids))
    geometry_type = {
        "pipeline": "LineString",
        "segment": "LineString",
        "municipal_pipe": "LineString",
        "utility_tunnel": "LineString",
        "road": "LineString",
        "building": "Polygon",
    }
    for feature in features:
        layer = feature["properties"]["layer"]
        assert feature["geometry"]["type"] == geometry_type.get(layer, "Point")


def test_geojson_positions_are_lon_lat_inside_the_bbox() -> None:
    document = _geojson(WANLI)
    west, south, east, north = document["bbox"]
    for feature in document["features"]:
        for longitude, latitude in positions(feature["geometry"]):
            # Wanli's origin is 113.548 E, 34.752 N: longitude first (RFC 7946 section 3.1.1).
            assert abs(longitude - 113.548) < 0.05
            assert abs(latitude - 34.752) < 0.05
            assert west <= longitude <= east
            assert south <= latitude <= north
    # The bbox is tight: some position lies on each of its sides.
    every = [p for feature in document["features"] for p in positions(feature["geometry"])]
    assert min(p[0] for p in every) == west
    assert max(p[1] for p in every) == north


def test_geojson_polygons_are_closed_and_counter_clockwise() -> None:
    for site, centre in ((WANLI, (113.548, 34.752)), (LAKESIDE, (-48.6, -27.5))):
        buildings = [
            feature
            for feature in _geojson(site)["features"]
            if feature["properties"]["layer"] == "building"
        ]
        for feature in buildings:
            (ring,) = feature["geometry"]["coordinates"]
            assert ring[0] == ring[-1]
            longitudes = np.array([position[0] for position in ring]) - centre[0]
            latitudes = np.array([position[1] for position in ring]) - centre[1]
            signed_area = np.sum(longitudes[:-1] * latitudes[1:] - longitudes[1:] * latitudes[:-1])
            assert signed_area > 0  # RFC 7946 section 3.1.6: exterior rings counter-clockwise


def test_geojson_properties_of_a_valve_and_a_detector() -> None:
    features = {feature["id"]: feature for feature in _geojson(LAKESIDE)["features"]}
    valve = features["L1-V1"]
    assert valve["properties"] == {
        "layer": "valve",
        "id": "L1-V1",
        "pipeline_id": "L1",
        "chainage_m": 300.0,
        "remotely_operated": True,
    }
    expected = lon_lat(LAKESIDE.pipeline("L1").point_at_chainage(300.0), LAKESIDE.origin)
    assert_allclose(valve["geometry"]["coordinates"], expected, atol=1e-7)
    detector = features["D2"]["properties"]
    assert detector["kind"] == "gas"
    assert detector["zone"] == "L1"
    assert detector["height_m"] == 0.5
    assert detector["gases"] == ["methane"]
    assert features["S1"]["properties"]["sensitive"] is True
    assert features["L1-S2"]["properties"]["upstream_valve_id"] == "L1-V1"
    # Southern and western hemisphere: both coordinates negative, longitude first.
    longitude, latitude = features["AP1"]["geometry"]["coordinates"]
    assert longitude < -48.0
    assert latitude < -27.0
