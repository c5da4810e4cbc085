"""Local east-north-up (ENU) metres <-> WGS84 latitude/longitude, and GeoJSON of a site.

The site frame is the local tangent plane at the site origin on the WGS84 ellipsoid: ``east`` and
``north`` span the plane tangent to the ellipsoid at the origin, ``up`` is the ellipsoid normal
there. Conversions go through Earth-centred, Earth-fixed (ECEF) Cartesian coordinates:

* geodetic -> ECEF with the prime-vertical radius of curvature
  ``N = a / sqrt(1 - e^2 sin^2 lat)`` (NIMA TR8350.2, 3rd ed. 2000, section 4, eq. 4-14/4-15);
* ECEF <-> ENU by the rotation of the origin's latitude and longitude (e.g. Hofmann-Wellenhof,
  Lichtenegger & Wasle, *GNSS*, Springer 2008, section 10.2.2);
* ECEF -> geodetic in closed form, Heikkinen's (1982) solution as given by Zhu, "Conversion of
  Earth-centered Earth-fixed coordinates to geodetic coordinates", IEEE Trans. Aerospace and
  Electronic Systems 30(3), 1994, 957-961.

None of these steps is an approximation, so the round trip is exact to rounding (micrometres),
and horizontal distances in the plane match distances along the ground to well under 0.1 m over
10 km: a plane point at distance d lies d^3 / (3 R^2) closer along the curved surface, 8 mm at
10 km (tests/test_geo.py checks this against Vincenty's geodesic). The plane passes through the
origin at its altitude h, so measured on the ellipsoid itself distances are shorter by a further
d h / R (0.18 m over 10 km for h = 112 m), which is the difference between ground and sea level,
not an error. The site model is flat: ``up = 0`` is the plane of the origin, and heights in the
site model are above that plane.

:func:`site_to_geojson` writes a GeoJSON FeatureCollection (RFC 7946: longitude before latitude,
exterior polygon rings counter-clockwise and closed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipesentinel.site import GeoOrigin, Pipeline, Site

FloatArray = NDArray[np.float64]

# WGS84 defining parameters: NIMA TR8350.2, 3rd ed., amendment 1 (2000), table 3.1.
WGS84_SEMI_MAJOR_AXIS_M = 6378137.0
WGS84_INVERSE_FLATTENING = 298.257223563
# Derived geometric constants (TR8350.2 table 3.3 lists the same values).
WGS84_FLATTENING = 1.0 / WGS84_INVERSE_FLATTENING
WGS84_SEMI_MINOR_AXIS_M = WGS84_SEMI_MAJOR_AXIS_M * (1.0 - WGS84_FLATTENING)  # 6356752.3142 m
WGS84_FIRST_ECCENTRICITY_SQUARED = WGS84_FLATTENING * (2.0 - WGS84_FLATTENING)  # 6.69437999014e-3
WGS84_SECOND_ECCENTRICITY_SQUARED = WGS84_FIRST_ECCENTRICITY_SQUARED / (
    1.0 - WGS84_FIRST_ECCENTRICITY_SQUARED
)  # 6.73949674228e-3

# Decimal places of longitude/latitude written to GeoJSON: 1e-7 deg is about 1 cm. RFC 7946
# section 11.2 notes 6 places (about 10 cm) are usually enough.
GEOJSON_DECIMALS = 7


def _as_float(value: ArrayLike) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def geodetic_to_ecef(
    latitude_deg: ArrayLike, longitude_deg: ArrayLike, altitude_m: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Geodetic WGS84 coordinates to ECEF Cartesian coordinates; inputs broadcast.

    Parameters
    ----------
    latitude_deg : array_like
        Geodetic latitude [deg].
    longitude_deg : array_like
        Longitude, east positive [deg].
    altitude_m : array_like
        Height above the ellipsoid [m].

    Returns
    -------
    x_m, y_m, z_m : arrays
        ECEF coordinates [m].
    """
    latitude = np.radians(_as_float(latitude_deg))
    longitude = np.radians(_as_float(longitude_deg))
    altitude = _as_float(altitude_m)
    sin_latitude = np.sin(latitude)
    prime_vertical_radius = WGS84_SEMI_MAJOR_AXIS_M / np.sqrt(
        1.0 - WGS84_FIRST_ECCENTRICITY_SQUARED * sin_latitude**2
    )
    horizontal = (prime_vertical_radius + altitude) * np.cos(latitude)
    x = horizontal * np.cos(longitude)
    y = horizontal * np.sin(longitude)
    z = (prime_vertical_radius * (1.0 - WGS84_FIRST_ECCENTRICITY_SQUARED) + altitude) * sin_latitude
    return x, y, z


def ecef_to_geodetic(
    x_m: ArrayLike, y_m: ArrayLike, z_m: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ECEF Cartesian coordinates to geodetic WGS84 coordinates (closed form); inputs broadcast.

    Heikkinen's exact solution (Zhu 1994); valid everywhere except within about 43 km of the
    Earth's centre, i.e. for any point near the surface.

    Parameters
    ----------
    x_m, y_m, z_m : array_like
        ECEF coordinates [m].

    Returns
    -------
    latitude_deg, longitude_deg, altitude_m : arrays
        Geodetic latitude [deg], longitude [deg] and height above the ellipsoid [m].
    """
    x, y, z = _as_float(x_m), _as_float(y_m), _as_float(z_m)
    a = WGS84_SEMI_MAJOR_AXIS_M
    b = WGS84_SEMI_MINOR_AXIS_M
    e2 = WGS84_FIRST_ECCENTRICITY_SQUARED
    ep2 = WGS84_SECOND_ECCENTRICITY_SQUARED
    p = np.hypot(x, y)
    f_term = 54.0 * b**2 * z**2
    g = p**2 + (1.0 - e2) * z**2 - e2 * (a**2 - b**2)
    c = e2**2 * f_term * p**2 / g**3
    s = np.cbrt(1.0 + c + np.sqrt(c**2 + 2.0 * c))
    k = s + 1.0 + 1.0 / s
    big_p = f_term / (3.0 * k**2 * g**2)
    q = np.sqrt(1.0 + 2.0 * e2**2 * big_p)
    r0 = -(big_p * e2 * p) / (1.0 + q) + np.sqrt(
        0.5 * a**2 * (1.0 + 1.0 / q)
        - big_p * (1.0 - e2) * z**2 / (q * (1.0 + q))
        - 0.5 * big_p * p**2
    )
    u = np.hypot(p - e2 * r0, z)
    v = np.sqrt((p - e2 * r0) ** 2 + (1.0 - e2) * z**2)
    z0 = b**2 * z / (a * v)
    altitude = u * (1.0 - b**2 / (a * v))
    latitude = np.arctan2(z + ep2 * z0, p)
    longitude = np.arctan2(y, x)
    return np.degrees(latitude), np.degrees(longitude), altitude


def _rotation(origin: GeoOrigin) -> FloatArray:
    """Rows: unit vectors east, north, up of the origin, in ECEF [-]."""
    latitude = np.radians(origin.latitude_deg)
    longitude = np.radians(origin.longitude_deg)
    sin_lat, cos_lat = np.sin(latitude), np.cos(latitude)
    sin_lon, cos_lon = np.sin(longitude), np.cos(longitude)
    return np.array(
        [
            [-sin_lon, cos_lon, 0.0],
            [-sin_lat * cos_lon, -sin_lat * sin_lon, cos_lat],
            [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat],
        ]
    )


def enu_to_geodetic(
    east_m: ArrayLike, north_m: ArrayLike, up_m: ArrayLike, origin: GeoOrigin
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Local ENU coordinates of a site to WGS84; inputs broadcast.

    Parameters
    ----------
    east_m, north_m, up_m : array_like
        Coordinates in the tangent plane at ``origin`` [m].
    origin : GeoOrigin
        The site origin (latitude, longitude [deg], ellipsoidal height [m]).

    Returns
    -------
    latitude_deg, longitude_deg, altitude_m : arrays
        Geodetic latitude [deg], longitude [deg], height above the ellipsoid [m].
    """
    east, north, up = np.broadcast_arrays(_as_float(east_m), _as_float(north_m), _as_float(up_m))
    rotation = _rotation(origin)
    offsets = np.stack([east, north, up], axis=-1) @ rotation  # (..., 3) in ECEF
    x0, y0, z0 = geodetic_to_ecef(origin.latitude_deg, origin.longitude_deg, origin.altitude_m)
    return ecef_to_geodetic(x0 + offsets[..., 0], y0 + offsets[..., 1], z0 + offsets[..., 2])


def geodetic_to_enu(
    latitude_deg: ArrayLike, longitude_deg: ArrayLike, altitude_m: ArrayLike, origin: GeoOrigin
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """WGS84 coordinates to the local ENU coordinates of a site; inputs broadcast.

    Parameters
    ----------
    latitude_deg, longitude_deg : array_like
        Geodetic latitude and longitude [deg].
    altitude_m : array_like
        Height above the ellipsoid [m].
    origin : GeoOrigin
        The site origin.

    Returns
    -------
    east_m, north_m, up_m : arrays
        Coordinates in the tangent plane at ``origin`` [m].
    """
    x, y, z = geodetic_to_ecef(latitude_deg, longitude_deg, altitude_m)
    x0, y0, z0 = geodetic_to_ecef(origin.latitude_deg, origin.longitude_deg, origin.altitude_m)
    offsets = np.stack(np.broadcast_arrays(x - x0, y - y0, z - z0), axis=-1)
    local = offsets @ _rotation(origin).T
    return local[..., 0], local[..., 1], local[..., 2]


def lon_lat(points_m: ArrayLike, origin: GeoOrigin) -> FloatArray:
    """Ground-plane points (..., 2) east/north [m] to (..., 2) longitude, latitude [deg]."""
    points = _as_float(points_m)
    latitude, longitude, _ = enu_to_geodetic(points[..., 0], points[..., 1], 0.0, origin)
    return np.stack([longitude, latitude], axis=-1)


# --------------------------------------------------------------------------------------------
# GeoJSON (RFC 7946)


def _coordinates(points_m: ArrayLike, origin: GeoOrigin) -> list[Any]:
    """GeoJSON positions ``[lon, lat]`` (nested like the input) [deg]."""
    rounded: list[Any] = np.round(lon_lat(points_m, origin), GEOJSON_DECIMALS).tolist()
    return rounded


def _feature(
    layer: str, object_id: str, geometry: dict[str, Any], properties: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": object_id,
        "geometry": geometry,
        "properties": {"layer": layer, "id": object_id, **properties},
    }


def _point(position_m: ArrayLike, origin: GeoOrigin) -> dict[str, Any]:
    return {"type": "Point", "coordinates": _coordinates(_as_float(position_m)[:2], origin)}


def _line(vertices_m: ArrayLike, origin: GeoOrigin) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": _coordinates(vertices_m, origin)}


def _polygon(vertices_m: FloatArray, origin: GeoOrigin) -> dict[str, Any]:
    """A closed, counter-clockwise exterior ring (RFC 7946 section 3.1.6)."""
    east, north = vertices_m.T
    signed_twice_area = np.dot(east, np.roll(north, -1)) - np.dot(north, np.roll(east, -1))
    ring = vertices_m if signed_twice_area > 0 else vertices_m[::-1]
    closed = np.concatenate((ring, ring[:1]))
    return {"type": "Polygon", "coordinates": [_coordinates(closed, origin)]}


def _positions(geometry: dict[str, Any]) -> list[list[float]]:
    """All positions of a Point, LineString or Polygon geometry."""
    coordinates = geometry["coordinates"]
    if geometry["type"] == "Point":
        return [coordinates]
    if geometry["type"] == "LineString":
        return list(coordinates)
    return [position for ring in coordinates for position in ring]


def _pipeline_features(pipeline: Pipeline, origin: GeoOrigin) -> list[dict[str, Any]]:
    features = [
        _feature(
            "pipeline",
            pipeline.id,
            _line(pipeline.vertices_m, origin),
            {
                "name": pipeline.name,
                "product": pipeline.product.value,
                "length_m": pipeline.length_m,
                "diameter_m": pipeline.diameter_m,
                "wall_thickness_m": pipeline.wall_thickness_m,
                "depth_of_cover_m": pipeline.depth_of_cover_m,
                "operating_pressure_pa": pipeline.operating_pressure_pa,
            },
        )
    ]
    features += [
        _feature(
            "segment",
            segment.id,
            _line(
                pipeline.polyline_between(segment.start_chainage_m, segment.end_chainage_m),
                origin,
            ),
            {
                "pipeline_id": pipeline.id,
                "start_chainage_m": segment.start_chainage_m,
                "end_chainage_m": segment.end_chainage_m,
                "upstream_valve_id": segment.upstream_valve_id,
                "downstream_valve_id": segment.downstream_valve_id,
            },
        )
        for segment in pipeline.segments
    ]
    features += [
        _feature(
            "valve",
            valve.id,
            _point(pipeline.point_at_chainage(valve.chainage_m), origin),
            {
                "pipeline_id": pipeline.id,
                "chainage_m": valve.chainage_m,
                "remotely_operated": valve.remotely_operated,
            },
        )
        for valve in pipeline.valves
    ]
    return features


def site_to_geojson(site: Site) -> dict[str, Any]:
    """The site as a GeoJSON FeatureCollection (RFC 7946), ready for ``json.dumps``.

    Every feature has an ``id`` and ``properties`` with ``layer`` (``pipeline``, ``segment``,
    ``valve``, ``municipal_pipe``, ``manhole``, ``utility_tunnel``, ``building``, ``road_node``,
    ``road``, ``assembly_point``, ``gas_detector``, ``wind_station``, ``camera``), ``id`` and the
    object's attributes in SI units with the unit in the name. Positions are ``[lon, lat]`` in
    degrees on WGS84, rounded to :data:`GEOJSON_DECIMALS` places; heights are properties. The
    collection has a ``bbox`` ``[west, south, east, north]`` over all its positions (RFC 7946
    section 5).
    """
    origin = site.origin
    features: list[dict[str, Any]] = []
    for pipeline in site.pipelines:
        features += _pipeline_features(pipeline, origin)
    features += [
        _feature(
            "municipal_pipe",
            pipe.id,
            _line(pipe.vertices_m, origin),
            {"network": pipe.network.value, "diameter_m": pipe.diameter_m, "depth_m": pipe.depth_m},
        )
        for pipe in site.municipal_pipes
    ]
    features += [
        _feature(
            "manhole",
            manhole.id,
            _point(manhole.position_m, origin),
            {
                "network": manhole.network.value,
                "depth_m": manhole.depth_m,
                "tunnel_id": manhole.tunnel_id,
            },
        )
        for manhole in site.manholes
    ]
    features += [
        _feature(
            "utility_tunnel",
            tunnel.id,
            _line(tunnel.vertices_m, origin),
            {
                "width_m": tunnel.width_m,
                "height_m": tunnel.height_m,
                "depth_of_cover_m": tunnel.depth_of_cover_m,
            },
        )
        for tunnel in site.utility_tunnels
    ]
    features += [
        _feature(
            "building",
            building.id,
            _polygon(building.footprint_m, origin),
            {
                "name": building.name,
                "use": building.use.value,
                "sensitive": building.sensitive,
                "height_m": building.height_m,
                "footprint_area_m2": building.footprint_area_m2,
                "occupants_day": building.occupants_day,
                "occupants_night": building.occupants_night,
            },
        )
        for building in site.buildings
    ]
    features += [
        _feature("road_node", node.id, _point(node.position_m, origin), {})
        for node in site.road_nodes
    ]
    features += [
        _feature(
            "road",
            road.id,
            _line(road.vertices_m, origin),
            {
                "name": road.name,
                "from_node": road.from_node,
                "to_node": road.to_node,
                "lanes": road.lanes,
                "length_m": road.length_m,
            },
        )
        for road in site.roads
    ]
    features += [
        _feature(
            "assembly_point",
            point.id,
            _point(point.position_m, origin),
            {"name": point.name, "capacity_persons": point.capacity_persons},
        )
        for point in site.assembly_points
    ]
    features += [
        _feature(
            "gas_detector",
            detector.id,
            _point(detector.position_m, origin),
            {
                "kind": detector.kind.value,
                "placement": detector.placement.value,
                "height_m": float(detector.position_m[2]),
                "gases": [gas.value for gas in detector.gases],
                "full_scale_ppm": detector.full_scale_ppm,
                "t90_s": detector.t90_s,
                "sample_period_s": detector.sample_period_s,
                "pipeline_id": detector.pipeline_id,
                "chainage_m": detector.chainage_m,
                "manhole_id": detector.manhole_id,
                "zone": detector.zone,
            },
        )
        for detector in site.gas_detectors
    ]
    features += [
        _feature(
            "wind_station",
            station.id,
            _point(station.position_m, origin),
            {
                "kind": station.kind.value,
                "mast_height_m": station.mast_height_m,
                "sample_period_s": station.sample_period_s,
                "averaging_period_s": station.averaging_period_s,
            },
        )
        for station in site.wind_stations
    ]
    features += [
        _feature(
            "camera",
            camera.id,
            _point(camera.position_m, origin),
            {
                "kind": camera.kind.value,
                "mounting_height_m": camera.mounting_height_m,
                "heading_deg": camera.heading_deg,
                "tilt_deg": camera.tilt_deg,
                "horizontal_fov_deg": camera.horizontal_fov_deg,
                "vertical_fov_deg": camera.vertical_fov_deg,
                "laser_range_m": camera.laser_range_m,
                "frame_period_s": camera.frame_period_s,
                "resolution_px": list(camera.resolution_px),
            },
        )
        for camera in site.cameras
    ]
    positions = [position for feature in features for position in _positions(feature["geometry"])]
    longitudes = [position[0] for position in positions]
    latitudes = [position[1] for position in positions]
    return {
        "type": "FeatureCollection",
        "bbox": [min(longitudes), min(latitudes), max(longitudes), max(latitudes)],
        "features": features,
    }
