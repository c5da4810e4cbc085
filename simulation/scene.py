"""The 3D model of a site: one triangle mesh per asset, with its id and its data.

Pure functions turn the site model (:mod:`pipesentinel.site`) and the state of an incident
(:class:`SceneLayers`: segment and detector states, wind, threat zones, routes, the plume's
isosurfaces) into a :class:`Scene`: a tuple of :class:`SceneObject`, each a triangle mesh in site
east-north-up metres (``z = 0`` at ground level, negative below), an sRGB colour with opacity, a
layer and a JSON-ready data dict. :mod:`pipesentinel.simulation.gltf` writes it as GLB for the
browser and :mod:`pipesentinel.simulation.render` draws it off screen (docs/scene.md).

What is drawn, and where:

* oil pipelines: one tube per block-valve segment, centre at ``z = -(depth_of_cover + D / 2)``,
  coloured by segment, or by state (leak red, isolated grey); block valves as short vertical
  stems from the pipe to just above ground (closed valves blue);
* municipal pipes as tubes at their axis depth coloured by network (APWA uniform colour code),
  manholes as vertical shafts, utility tunnels as boxes;
* buildings extruded from their footprints (schools and hospitals in a colour of their own),
  roads as flat ribbons, assembly points as discs, a translucent ground plane;
* gas detectors as spheres coloured by state, wind stations as masts with an arrow downwind,
  cameras as poles with a translucent field-of-view pyramid and the laser beam;
* threat zones as translucent extruded volumes, evacuation routes as tubes, the leak as a marker,
  the plume's isosurfaces per time step (from :mod:`pipesentinel.simulation.plume3d`).

Sizes of markers (spheres, stems, arrow lengths, route heights) are display choices, not
engineering data; they are grouped below and say so. The triangle count of a scene is bounded by
:data:`TRIANGLE_BUDGET` (the GLB of the reference site stays under 3 MB).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from pipesentinel.camera_geometry import CameraPose, laser_beam_m
from pipesentinel.simulation.map2d import MapRoute

if TYPE_CHECKING:
    from pipesentinel.plans.response import EmergencyResponse
from pipesentinel.site import (
    BuildingUse,
    NetworkKind,
    Pipeline,
    Site,
)

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.int64]
Rgba = tuple[float, float, float, float]  # sRGB components and opacity, each 0..1
JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

__all__ = [
    "TRIANGLE_BUDGET",
    "DetectorState",
    "Layer",
    "Mesh",
    "PipeState",
    "PlumeSurface",
    "Scene",
    "SceneLayers",
    "SceneObject",
    "Wind",
    "build_scene",
    "device_objects",
    "frustum_mesh",
    "layers_from_response",
    "municipal_objects",
    "pipe_centre_z_m",
    "pipeline_objects",
    "plume_objects",
    "prism_mesh",
    "route_objects",
    "sphere_mesh",
    "surface_objects",
    "tube_mesh",
    "zone_objects",
]

TRIANGLE_BUDGET: Final = 120_000
"""Most triangles a scene may hold, plume included. With float32 positions and normals (24 bytes
a vertex) and uint32 indices (12 bytes a triangle) at most about two vertices a triangle, this
keeps the GLB under about 7 MB in the worst case and, measured on the reference site with a
ten-step plume (bench/scene.py), well under the 3 MB goal of issue 5."""

# ---------------------------------------------------------------------------------------------
# Display choices (not engineering data): sizes chosen so that objects are visible and clickable
# on a site a few kilometres across.

PIPE_SIDES: Final = 16  # facets around an oil pipeline tube
SMALL_TUBE_SIDES: Final = 8  # facets around municipal pipes, poles, stems, beams, routes
SPHERE_SUBDIVISIONS: Final = 1  # icosphere level: 80 triangles
GROUND_MARGIN_FRACTION: Final = 0.05  # ground plane beyond the site extent, of the larger span
GROUND_RGBA: Final[Rgba] = (0.55, 0.60, 0.50, 0.35)
VALVE_STEM_RADIUS_M: Final = 0.4
VALVE_STEM_ABOVE_GROUND_M: Final = 1.5
DETECTOR_MARKER_RADIUS_M: Final = 2.0
LEAK_MARKER_RADIUS_M: Final = 4.0
POLE_RADIUS_M: Final = 0.2
LASER_BEAM_RADIUS_M: Final = 0.15
ROAD_LANE_WIDTH_M: Final = 3.5  # drawn width per lane (a usual urban lane width; display only)
ROAD_HEIGHT_M: Final = 0.05  # ribbons drawn just above the ground plane (no z-fighting)
ROAD_THICKNESS_M: Final = 0.05
ASSEMBLY_POINT_RADIUS_M: Final = 12.0
ASSEMBLY_POINT_HEIGHT_M: Final = 0.3
WIND_ARROW_M_PER_M_PER_S: Final = 15.0  # arrow length per unit wind speed [m / (m s-1)]
WIND_ARROW_MINIMUM_M: Final = 10.0
WIND_ARROW_RADIUS_M: Final = 0.6
ZONE_HEIGHT_M: Final = 20.0  # height of the translucent threat-zone volumes
ZONE_LEVEL_OFFSET_M: Final = 0.5  # yellow below red below isolation: nested volumes stay visible
ROUTE_HEIGHT_M: Final = 2.0
ROUTE_RADIUS_M: Final = 1.0
FOV_OPACITY: Final = 0.18
MANHOLE_RADIUS_M: Final = 0.6  # shaft of about DN 1200 (display; no site data on shaft size)

SEGMENT_PALETTE: Final[tuple[Rgba, ...]] = (
    (0.90, 0.60, 0.10, 1.0),
    (0.55, 0.35, 0.15, 1.0),
    (0.95, 0.80, 0.25, 1.0),
    (0.70, 0.45, 0.05, 1.0),
)
"""Colours of consecutive segments of a pipeline (oil: yellow-browns; APWA yellow is oil/gas)."""

NETWORK_RGBA: Final[Mapping[NetworkKind, Rgba]] = {
    NetworkKind.GAS: (1.00, 0.85, 0.00, 1.0),  # APWA yellow: gas, oil, steam
    NetworkKind.WATER: (0.10, 0.35, 0.90, 1.0),  # APWA blue: potable water
    NetworkKind.DRAINAGE: (0.20, 0.60, 0.25, 1.0),  # APWA green: sewers and drain lines
    NetworkKind.SEWER: (0.10, 0.45, 0.15, 1.0),  # APWA green (darker, to tell them apart)
}
"""Municipal networks in the APWA Uniform Color Code for marking buried utilities (American
Public Works Association, also ANSI Z535.1 safety colours): yellow gas, blue water, green sewers
and drains."""


class Layer(StrEnum):
    """Group of objects the viewer switches on and off together."""

    GROUND = "ground"
    PIPELINES = "pipelines"
    VALVES = "valves"
    MUNICIPAL = "municipal"
    MANHOLES = "manholes"
    TUNNELS = "tunnels"
    BUILDINGS = "buildings"
    ROADS = "roads"
    ASSEMBLY_POINTS = "assembly_points"
    DETECTORS = "detectors"
    WIND = "wind"
    CAMERAS = "cameras"
    ZONES = "zones"
    ROUTES = "routes"
    LEAK = "leak"
    PLUME = "plume"


class PipeState(StrEnum):
    """State of a pipeline segment."""

    NORMAL = "normal"
    LEAK = "leak"
    ISOLATED = "isolated"


class DetectorState(StrEnum):
    """State of a gas detector, as the console shows it."""

    NORMAL = "normal"
    LOW = "low"
    HIGH = "high"
    FAULT = "fault"


PIPE_STATE_RGBA: Final[Mapping[PipeState, Rgba]] = {
    PipeState.LEAK: (0.90, 0.05, 0.05, 1.0),
    PipeState.ISOLATED: (0.45, 0.45, 0.50, 1.0),
}
DETECTOR_RGBA: Final[Mapping[DetectorState, Rgba]] = {
    DetectorState.NORMAL: (0.15, 0.70, 0.25, 1.0),
    DetectorState.LOW: (1.00, 0.75, 0.00, 1.0),
    DetectorState.HIGH: (0.90, 0.05, 0.05, 1.0),
    DetectorState.FAULT: (0.55, 0.25, 0.70, 1.0),
}
ZONE_RGBA: Final[Mapping[str, Rgba]] = {
    "red": (0.90, 0.10, 0.10, 0.35),  # 60 %LEL
    "yellow": (1.00, 0.85, 0.00, 0.25),  # 10 %LEL
    "isolation": (0.55, 0.10, 0.45, 0.12),  # ERG initial isolation circle
}
ZONE_ORDER: Final = ("yellow", "red", "isolation")  # bottom to top of the stacked volumes
PLUME_RGBA: Final[Mapping[str, Rgba]] = {
    "red": (0.85, 0.05, 0.05, 0.55),
    "yellow": (1.00, 0.80, 0.00, 0.30),
}
VALVE_RGBA: Final = (0.20, 0.20, 0.22, 1.0)
VALVE_CLOSED_RGBA: Final = (0.05, 0.35, 0.95, 1.0)
MANHOLE_RGBA: Final = (0.35, 0.35, 0.35, 1.0)
TUNNEL_RGBA: Final = (0.60, 0.60, 0.65, 0.6)
BUILDING_RGBA: Final = (0.80, 0.80, 0.78, 1.0)
SENSITIVE_BUILDING_RGBA: Final = (0.95, 0.55, 0.55, 1.0)
ROAD_RGBA: Final = (0.30, 0.30, 0.32, 1.0)
ASSEMBLY_POINT_RGBA: Final = (0.15, 0.75, 0.30, 1.0)
WIND_RGBA: Final = (0.10, 0.45, 0.85, 1.0)
CAMERA_RGBA: Final = (0.25, 0.25, 0.25, 1.0)
FOV_RGBA: Final = (0.30, 0.75, 1.00, FOV_OPACITY)
LASER_RGBA: Final = (1.00, 0.10, 0.60, 1.0)
ROUTE_RGBA: Final = (0.10, 0.70, 0.20, 1.0)
LEAK_RGBA: Final = (1.00, 0.00, 0.00, 1.0)

_UP: Final = np.array([0.0, 0.0, 1.0])
_EAST: Final = np.array([1.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Meshes


def _read_only(array: ArrayLike, dtype: type[np.generic]) -> Any:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)  # arrays: compare meshes by identity, not elementwise
class Mesh:
    """A triangle mesh in site east-north-up metres.

    Attributes
    ----------
    positions_m
        Vertex positions (east, north, up), shape (V, 3) [m].
    normals
        Unit vertex normals, shape (V, 3) [1].
    triangles
        Vertex indices of each triangle, counter-clockwise seen from outside, shape (T, 3) [1].
    """

    positions_m: FloatArray
    normals: FloatArray
    triangles: IndexArray

    def __post_init__(self) -> None:
        positions = _read_only(self.positions_m, np.float64).reshape(-1, 3)
        normals = _read_only(self.normals, np.float64).reshape(-1, 3)
        triangles = _read_only(self.triangles, np.int64).reshape(-1, 3)
        if normals.shape != positions.shape:
            raise ValueError(f"normals {normals.shape} do not match positions {positions.shape}")
        if not np.all(np.isfinite(positions)) or not np.all(np.isfinite(normals)):
            raise ValueError("mesh positions and normals must be finite")
        if triangles.size and (triangles.min() < 0 or triangles.max() >= len(positions)):
            raise ValueError("mesh triangles index vertices that do not exist")
        object.__setattr__(self, "positions_m", positions)
        object.__setattr__(self, "normals", normals)
        object.__setattr__(self, "triangles", triangles)

    @classmethod
    def empty(cls) -> Mesh:
        """A mesh without triangles."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))

    @property
    def triangle_count(self) -> int:
        """Number of triangles [1]."""
        return int(self.triangles.shape[0])

    @property
    def vertex_count(self) -> int:
        """Number of vertices [1]."""
        return int(self.positions_m.shape[0])

    @property
    def bounds_m(self) -> FloatArray:
        """Rows ``[east, north, up]`` minimum and maximum, shape (2, 3) [m]."""
        if self.vertex_count == 0:
            return np.zeros((2, 3))
        return np.stack([self.positions_m.min(axis=0), self.positions_m.max(axis=0)])

    @classmethod
    def merge(cls, meshes: Iterable[Mesh]) -> Mesh:
        """One mesh holding all the given meshes' triangles."""
        parts = [mesh for mesh in meshes if mesh.vertex_count]
        if not parts:
            return cls.empty()
        offsets = np.cumsum([0] + [mesh.vertex_count for mesh in parts[:-1]])
        return cls(
            np.concatenate([mesh.positions_m for mesh in parts]),
            np.concatenate([mesh.normals for mesh in parts]),
            np.concatenate(
                [mesh.triangles + offset for mesh, offset in zip(parts, offsets, strict=True)]
            ),
        )


def _unit(vectors: FloatArray) -> FloatArray:
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    result: FloatArray = vectors / np.where(length > 0.0, length, 1.0)
    return result


def frustum_mesh(
    starts_m: ArrayLike,
    ends_m: ArrayLike,
    start_radius_m: ArrayLike,
    end_radius_m: ArrayLike,
    *,
    sides: int = SMALL_TUBE_SIDES,
    capped: bool = False,
) -> Mesh:
    """Cylinders or cone frustums from ``starts_m`` to ``ends_m``, all at once.

    Parameters
    ----------
    starts_m, ends_m
        Axis end points, shape (S, 3) or (3,) [m].
    start_radius_m, end_radius_m
        Radii at the two ends, scalar or (S,) [m]; an end radius of 0 makes a cone.
    sides
        Facets around the axis [1].
    capped
        Close both ends with flat discs [1].
    """
    starts = np.atleast_2d(np.asarray(starts_m, dtype=np.float64))
    ends = np.atleast_2d(np.asarray(ends_m, dtype=np.float64))
    count = starts.shape[0]
    radius_0 = np.broadcast_to(np.asarray(start_radius_m, dtype=np.float64), (count,))
    radius_1 = np.broadcast_to(np.asarray(end_radius_m, dtype=np.float64), (count,))
    axis = ends - starts
    length = np.linalg.norm(axis, axis=1)
    keep = length > 0.0
    starts, ends, axis, length = starts[keep], ends[keep], axis[keep], length[keep]
    radius_0, radius_1 = radius_0[keep], radius_1[keep]
    count = starts.shape[0]
    if count == 0:
        return Mesh.empty()
    direction = axis / length[:, np.newaxis]
    across = np.cross(direction, _UP)
    vertical = np.linalg.norm(across, axis=1) < 1e-9
    across[vertical] = np.cross(direction[vertical], _EAST)
    across = _unit(across)
    other = np.cross(direction, across)  # (across, other, direction) is right-handed
    angle = 2.0 * math.pi * np.arange(sides) / sides
    ring = (
        np.cos(angle)[np.newaxis, :, np.newaxis] * across[:, np.newaxis, :]
        + np.sin(angle)[np.newaxis, :, np.newaxis] * other[:, np.newaxis, :]
    )  # (S, k, 3)
    bottom = starts[:, np.newaxis, :] + radius_0[:, np.newaxis, np.newaxis] * ring
    top = ends[:, np.newaxis, :] + radius_1[:, np.newaxis, np.newaxis] * ring
    slope = ((radius_0 - radius_1) / length)[:, np.newaxis, np.newaxis]
    normal = _unit(ring + slope * direction[:, np.newaxis, :])
    positions = np.concatenate([bottom, top], axis=1).reshape(-1, 3)
    normals = np.concatenate([normal, normal], axis=1).reshape(-1, 3)
    base = (2 * sides * np.arange(count))[:, np.newaxis]
    j = np.arange(sides)[np.newaxis, :]
    a, b = base + j, base + (j + 1) % sides
    c, d = a + sides, b + sides
    triangles = np.concatenate(
        [np.stack([a, b, c], axis=-1), np.stack([b, d, c], axis=-1)], axis=1
    ).reshape(-1, 3)
    mesh = Mesh(positions, normals, triangles)
    if not capped:
        return mesh
    caps = [mesh]
    for centres, radius, at_end in ((starts, radius_0, False), (ends, radius_1, True)):
        outward = direction if at_end else -direction
        rim = centres[:, np.newaxis, :] + radius[:, np.newaxis, np.newaxis] * ring
        points = np.concatenate([centres[:, np.newaxis, :], rim], axis=1).reshape(-1, 3)
        cap_normals = np.repeat(outward, sides + 1, axis=0)
        cap_base = ((sides + 1) * np.arange(count))[:, np.newaxis]
        first, second = cap_base + 1 + j, cap_base + 1 + (j + 1) % sides
        centre = np.broadcast_to(cap_base, first.shape)
        # Counter-clockwise about ``outward``: the rim runs counter-clockwise about +direction.
        order = (centre, first, second) if at_end else (centre, second, first)
        caps.append(Mesh(points, cap_normals, np.stack(order, axis=-1).reshape(-1, 3)))
    return Mesh.merge(caps)


def tube_mesh(polyline_m: ArrayLike, radius_m: float, *, sides: int = SMALL_TUBE_SIDES) -> Mesh:
    """A tube of ``radius_m`` [m] along a polyline (n, 3) [m]: one cylinder per straight stretch."""
    points = np.asarray(polyline_m, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
        raise ValueError(f"a tube needs a polyline of shape (n >= 2, 3), got {points.shape}")
    return frustum_mesh(points[:-1], points[1:], radius_m, radius_m, sides=sides)


def _icosphere(subdivisions: int) -> tuple[FloatArray, IndexArray]:
    golden = (1.0 + math.sqrt(5.0)) / 2.0
    vertices = _unit(
        np.array(
            [
                [-1, golden, 0],
                [1, golden, 0],
                [-1, -golden, 0],
                [1, -golden, 0],
                [0, -1, golden],
                [0, 1, golden],
                [0, -1, -golden],
                [0, 1, -golden],
                [golden, 0, -1],
                [golden, 0, 1],
                [-golden, 0, -1],
                [-golden, 0, 1],
            ],
            dtype=np.float64,
        )
    )
    faces = np.array(
        [
            [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
            [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
            [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
            [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
        ],
        dtype=np.int64,
    )  # fmt: skip
    for _ in range(subdivisions):
        # Split every triangle in four; midpoints of shared edges are merged by np.unique.
        a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
        edges = np.stack([np.stack([a, b], 1), np.stack([b, c], 1), np.stack([c, a], 1)], 1)
        edges = np.sort(edges.reshape(-1, 2), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        midpoints = _unit(vertices[unique[:, 0]] + vertices[unique[:, 1]])
        mid = (inverse.reshape(-1, 3) + len(vertices)).astype(np.int64)
        ab, bc, ca = mid[:, 0], mid[:, 1], mid[:, 2]
        vertices = np.concatenate([vertices, midpoints])
        faces = np.concatenate(
            [
                np.stack([a, ab, ca], 1),
                np.stack([b, bc, ab], 1),
                np.stack([c, ca, bc], 1),
                np.stack([ab, bc, ca], 1),
            ]
        )
    return vertices, faces


_SPHERE_VERTICES, _SPHERE_FACES = _icosphere(SPHERE_SUBDIVISIONS)


def sphere_mesh(centre_m: ArrayLike, radius_m: float) -> Mesh:
    """An icosphere of ``radius_m`` [m] around ``centre_m`` (3,) [m]."""
    centre = np.asarray(centre_m, dtype=np.float64).reshape(3)
    return Mesh(centre + radius_m * _SPHERE_VERTICES, _SPHERE_VERTICES, _SPHERE_FACES)


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    if isinstance(geometry, MultiPolygon):
        return [part for part in geometry.geoms if not part.is_empty]
    parts = getattr(geometry, "geoms", ())
    return [polygon for part in parts for polygon in _polygons(part)]


def _cap(polygon: Polygon, height_m: float, *, upward: bool) -> Mesh:
    """The polygon triangulated (constrained Delaunay, holes kept) at ``height_m`` [m]."""
    triangles = shapely.constrained_delaunay_triangles(polygon)
    corners = shapely.get_coordinates(shapely.get_parts(triangles)).reshape(-1, 4, 2)[:, :3]
    if len(corners) == 0:
        return Mesh.empty()
    first, second, third = corners[:, 0], corners[:, 1], corners[:, 2]
    cross = (second[:, 0] - first[:, 0]) * (third[:, 1] - first[:, 1]) - (
        second[:, 1] - first[:, 1]
    ) * (third[:, 0] - first[:, 0])
    keep = np.abs(cross) > 0.0
    flip = (cross < 0.0) == upward
    corners = np.where(flip[:, np.newaxis, np.newaxis], corners[:, ::-1], corners)[keep]
    unique, inverse = np.unique(corners.reshape(-1, 2), axis=0, return_inverse=True)
    positions = np.column_stack([unique, np.full(len(unique), height_m)])
    normals = np.tile(_UP if upward else -_UP, (len(unique), 1))
    return Mesh(positions, normals, inverse.reshape(-1, 3))


def _walls(polygon: Polygon, bottom_m: float, top_m: float) -> Mesh:
    """Flat-shaded side walls of a prism over the polygon's rings (outward normals)."""
    rings = [np.asarray(polygon.exterior.coords)] + [
        np.asarray(ring.coords) for ring in polygon.interiors
    ]
    starts = np.concatenate([ring[:-1] for ring in rings])
    ends = np.concatenate([ring[1:] for ring in rings])
    step = ends - starts
    keep = np.hypot(step[:, 0], step[:, 1]) > 0.0
    starts, ends, step = starts[keep], ends[keep], step[keep]
    count = len(starts)
    outward = _unit(np.column_stack([step[:, 1], -step[:, 0], np.zeros(count)]))
    low, high = np.full((count, 1), bottom_m), np.full((count, 1), top_m)
    quad = np.stack(
        [
            np.hstack([starts, low]),
            np.hstack([ends, low]),
            np.hstack([ends, high]),
            np.hstack([starts, high]),
        ],
        axis=1,
    )
    base = (4 * np.arange(count))[:, np.newaxis]
    triangles = np.concatenate(
        [base + np.array([0, 1, 2]), base + np.array([0, 2, 3])], axis=1
    ).reshape(-1, 3)
    return Mesh(quad.reshape(-1, 3), np.repeat(outward, 4, axis=0), triangles)


def prism_mesh(geometry: BaseGeometry, bottom_m: float, top_m: float) -> Mesh:
    """A (multi)polygon [m] extruded from ``bottom_m`` to ``top_m`` [m], holes kept."""
    if top_m <= bottom_m:
        raise ValueError(f"prism top {top_m} m must be above its bottom {bottom_m} m")
    parts: list[Mesh] = []
    for polygon in _polygons(geometry):
        oriented = orient(polygon, sign=1.0)  # exterior counter-clockwise, holes clockwise
        parts += [
            _cap(oriented, top_m, upward=True),
            _cap(oriented, bottom_m, upward=False),
            _walls(oriented, bottom_m, top_m),
        ]
    return Mesh.merge(parts)


# ---------------------------------------------------------------------------------------------
# Scene objects


@dataclass(frozen=True)
class SceneObject:
    """One object of the scene: a mesh, its colour, its layer and its data.

    ``id`` is the asset id for site assets (a segment id like ``P1-S2`` for pipeline tubes) and a
    ``<kind>/<name>`` path for everything else (``zone/red``, ``route/B12``, ``CAM3/fov``,
    ``plume/60/yellow``); it becomes the glTF node's name. ``data`` is plain JSON (SI values with
    the unit in the key) and becomes the node's ``extras``.
    """

    id: str
    layer: Layer
    mesh: Mesh
    colour_rgba: Rgba
    data: Mapping[str, JsonValue] = field(default_factory=dict)

    @property
    def translucent(self) -> bool:
        """Whether the object is drawn with opacity below 1."""
        return self.colour_rgba[3] < 1.0


@dataclass(frozen=True)
class PlumeSurface:
    """One isosurface of the gas cloud at one time.

    ``level`` is ``"yellow"`` (10 %LEL) or ``"red"`` (60 %LEL); ``time_s`` counts from the start
    of the release [s]; ``mole_fraction`` is the concentration of the surface [1].
    """

    time_s: float
    level: str
    percent_lel: float
    mole_fraction: float
    mesh: Mesh


@dataclass(frozen=True)
class Wind:
    """Wind at a station: speed [m s-1], direction it blows from (clockwise from north) [deg]."""

    speed_m_per_s: float
    from_deg: float


@dataclass(frozen=True)
class SceneLayers:
    """The state drawn over the site; every field is optional.

    Attributes
    ----------
    segment_states
        State of pipeline segments by segment id (others are normal).
    closed_valve_ids
        Block valves closed or ordered closed.
    detector_states
        State of gas detectors by id (others are normal).
    wind
        Wind by wind-station id (stations without one get no arrow).
    zones_m
        Threat zones by level (``red``, ``yellow``, ``isolation``): shapely geometries or
        GeoJSON-like geometry mappings, in site east-north metres [m].
    routes
        Evacuation routes (site east-north metres).
    leak_position_m
        Estimated leak (east, north) or (east, north, up) [m].
    plume
        Isosurfaces of the gas cloud (:func:`pipesentinel.simulation.plume3d.plume_surfaces`).
    plume_data
        Data of the plume as a whole (gas, rate, wind), put on each plume object's data.
    """

    segment_states: Mapping[str, PipeState] = field(default_factory=dict)
    closed_valve_ids: frozenset[str] = frozenset()
    detector_states: Mapping[str, DetectorState] = field(default_factory=dict)
    wind: Mapping[str, Wind] = field(default_factory=dict)
    zones_m: Mapping[str, BaseGeometry | Mapping[str, Any]] = field(default_factory=dict)
    routes: tuple[MapRoute, ...] = ()
    leak_position_m: tuple[float, ...] | None = None
    plume: tuple[PlumeSurface, ...] = ()
    plume_data: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Scene:
    """The 3D model of a site: its objects in drawing order and where its origin is."""

    site_id: str
    site_name: str
    origin: tuple[float, float, float]  # WGS84 latitude [deg], longitude [deg], altitude [m]
    objects: tuple[SceneObject, ...]

    @property
    def triangle_count(self) -> int:
        """Triangles of all objects [1]."""
        return sum(item.mesh.triangle_count for item in self.objects)

    def object(self, object_id: str) -> SceneObject:
        """The object with this id; ``KeyError`` naming it otherwise."""
        for item in self.objects:
            if item.id == object_id:
                return item
        raise KeyError(f"no object {object_id!r} in the scene of site {self.site_id!r}")

    def layer(self, layer: Layer) -> tuple[SceneObject, ...]:
        """The objects of one layer, in order."""
        return tuple(item for item in self.objects if item.layer is layer)

    @property
    def bounds_m(self) -> FloatArray:
        """Bounding box (2, 3) of every object [m]."""
        boxes = [item.mesh.bounds_m for item in self.objects if item.mesh.vertex_count]
        if not boxes:
            return np.zeros((2, 3))
        stacked = np.stack(boxes)
        return np.stack([stacked[:, 0].min(axis=0), stacked[:, 1].max(axis=0)])


def _round(value: float, decimals: int = 3) -> float:
    return round(float(value), decimals)


def _point_json(point: FloatArray, decimals: int = 2) -> list[JsonValue]:
    return [round(float(v), decimals) for v in point]


def _points_json(points: FloatArray, decimals: int = 2) -> list[JsonValue]:
    return [_point_json(point, decimals) for point in points]


def pipe_centre_z_m(pipeline: Pipeline) -> float:
    """Height of a pipeline's axis: ``-(depth_of_cover + D / 2)`` [m]."""
    return -(pipeline.depth_of_cover_m + pipeline.diameter_m / 2.0)


def pipeline_objects(
    site: Site,
    states: Mapping[str, PipeState] | None = None,
    closed_valve_ids: frozenset[str] = frozenset(),
) -> list[SceneObject]:
    """Pipeline segments as tubes at their true depth, and block valves as stems."""
    states = states or {}
    known = {segment.id for segment in site.segments}
    unknown = sorted(set(states) - known)
    if unknown:
        raise ValueError(f"segment_states names unknown segment(s) {unknown} of site {site.id!r}")
    objects: list[SceneObject] = []
    for pipeline in site.pipelines:
        z = pipe_centre_z_m(pipeline)
        valve_ids: list[JsonValue] = [valve.id for valve in pipeline.valves]
        for index, segment in enumerate(pipeline.segments):
            state = PipeState(states.get(segment.id, PipeState.NORMAL))
            line = pipeline.polyline_between(segment.start_chainage_m, segment.end_chainage_m)
            points = np.column_stack([line, np.full(len(line), z)])
            colour = PIPE_STATE_RGBA.get(state, SEGMENT_PALETTE[index % len(SEGMENT_PALETTE)])
            objects.append(
                SceneObject(
                    id=segment.id,
                    layer=Layer.PIPELINES,
                    mesh=tube_mesh(points, pipeline.diameter_m / 2.0, sides=PIPE_SIDES),
                    colour_rgba=colour,
                    data={
                        "kind": "pipeline_segment",
                        "segment_id": segment.id,
                        "pipeline_id": pipeline.id,
                        "pipeline_name": pipeline.name,
                        "product": pipeline.product.value,
                        "diameter_m": _round(pipeline.diameter_m, 4),
                        "wall_thickness_m": _round(pipeline.wall_thickness_m, 4),
                        "depth_of_cover_m": _round(pipeline.depth_of_cover_m),
                        "centre_depth_m": _round(-z),
                        "operating_pressure_pa": _round(pipeline.operating_pressure_pa, 0),
                        "start_chainage_m": _round(segment.start_chainage_m, 1),
                        "end_chainage_m": _round(segment.end_chainage_m, 1),
                        "upstream_valve_id": segment.upstream_valve_id,
                        "downstream_valve_id": segment.downstream_valve_id,
                        "valves": valve_ids,
                        "state": state.value,
                    },
                )
            )
        for valve in pipeline.valves:
            east, north = pipeline.point_at_chainage(valve.chainage_m)
            closed = valve.id in closed_valve_ids
            objects.append(
                SceneObject(
                    id=valve.id,
                    layer=Layer.VALVES,
                    mesh=frustum_mesh(
                        [east, north, z],
                        [east, north, VALVE_STEM_ABOVE_GROUND_M],
                        VALVE_STEM_RADIUS_M,
                        VALVE_STEM_RADIUS_M,
                        capped=True,
                    ),
                    colour_rgba=VALVE_CLOSED_RGBA if closed else VALVE_RGBA,
                    data={
                        "kind": "valve",
                        "valve_id": valve.id,
                        "pipeline_id": pipeline.id,
                        "chainage_m": _round(valve.chainage_m, 1),
                        "remotely_operated": valve.remotely_operated,
                        "segment_id": pipeline.segment_at_chainage(valve.chainage_m).id,
                        "state": "closed" if closed else "open",
                    },
                )
            )
    return objects


def municipal_objects(site: Site) -> list[SceneObject]:
    """Municipal pipes at their axis depth, manholes as shafts, utility tunnels as boxes."""
    objects: list[SceneObject] = []
    for pipe in site.municipal_pipes:
        points = np.column_stack([pipe.vertices_m, np.full(len(pipe.vertices_m), -pipe.depth_m)])
        objects.append(
            SceneObject(
                id=pipe.id,
                layer=Layer.MUNICIPAL,
                mesh=tube_mesh(points, pipe.diameter_m / 2.0),
                colour_rgba=NETWORK_RGBA[pipe.network],
                data={
                    "kind": "municipal_pipe",
                    "network": pipe.network.value,
                    "diameter_m": _round(pipe.diameter_m, 4),
                    "depth_m": _round(pipe.depth_m),
                },
            )
        )
    for manhole in site.manholes:
        east, north = manhole.position_m
        objects.append(
            SceneObject(
                id=manhole.id,
                layer=Layer.MANHOLES,
                mesh=frustum_mesh(
                    [east, north, -manhole.depth_m],
                    [east, north, ROAD_HEIGHT_M],
                    MANHOLE_RADIUS_M,
                    MANHOLE_RADIUS_M,
                    capped=True,
                ),
                colour_rgba=MANHOLE_RGBA,
                data={
                    "kind": "manhole",
                    "network": manhole.network.value,
                    "depth_m": _round(manhole.depth_m),
                    "tunnel_id": manhole.tunnel_id,
                    "position_m": _point_json(manhole.position_m),
                },
            )
        )
    for tunnel in site.utility_tunnels:
        outline = LineString(tunnel.vertices_m).buffer(
            tunnel.width_m / 2.0, cap_style="flat", join_style="mitre"
        )
        roof = -tunnel.depth_of_cover_m
        objects.append(
            SceneObject(
                id=tunnel.id,
                layer=Layer.TUNNELS,
                mesh=prism_mesh(outline, roof - tunnel.height_m, roof),
                colour_rgba=TUNNEL_RGBA,
                data={
                    "kind": "utility_tunnel",
                    "width_m": _round(tunnel.width_m),
                    "height_m": _round(tunnel.height_m),
                    "depth_of_cover_m": _round(tunnel.depth_of_cover_m),
                },
            )
        )
    return objects


def surface_objects(site: Site) -> list[SceneObject]:
    """The translucent ground, buildings, roads and assembly points."""
    extent = site.extent_m
    margin = GROUND_MARGIN_FRACTION * float(np.max(extent[1] - extent[0]))
    (east_min, north_min), (east_max, north_max) = extent[0] - margin, extent[1] + margin
    ground = Mesh(
        np.array(
            [
                [east_min, north_min, 0.0],
                [east_max, north_min, 0.0],
                [east_max, north_max, 0.0],
                [east_min, north_max, 0.0],
            ]
        ),
        np.tile(_UP, (4, 1)),
        np.array([[0, 1, 2], [0, 2, 3]]),
    )
    objects = [
        SceneObject(
            id="ground",
            layer=Layer.GROUND,
            mesh=ground,
            colour_rgba=GROUND_RGBA,
            data={"kind": "ground", "extent_m": _points_json(extent)},
        )
    ]
    for building in site.buildings:
        sensitive = building.use in {BuildingUse.SCHOOL, BuildingUse.HOSPITAL}
        objects.append(
            SceneObject(
                id=building.id,
                layer=Layer.BUILDINGS,
                mesh=prism_mesh(Polygon(building.footprint_m), 0.0, building.height_m),
                colour_rgba=SENSITIVE_BUILDING_RGBA if sensitive else BUILDING_RGBA,
                data={
                    "kind": "building",
                    "name": building.name,
                    "use": building.use.value,
                    "sensitive": sensitive,
                    "height_m": _round(building.height_m),
                    "footprint_area_m2": _round(building.footprint_area_m2, 1),
                    "occupants_day": building.occupants_day,
                    "occupants_night": building.occupants_night,
                },
            )
        )
    for road in site.roads:
        ribbon = LineString(road.vertices_m).buffer(
            road.lanes * ROAD_LANE_WIDTH_M / 2.0, cap_style="flat", join_style="mitre"
        )
        objects.append(
            SceneObject(
                id=road.id,
                layer=Layer.ROADS,
                mesh=prism_mesh(ribbon, ROAD_HEIGHT_M - ROAD_THICKNESS_M, ROAD_HEIGHT_M),
                colour_rgba=ROAD_RGBA,
                data={
                    "kind": "road",
                    "name": road.name,
                    "lanes": road.lanes,
                    "length_m": _round(road.length_m, 1),
                    "from_node": road.from_node,
                    "to_node": road.to_node,
                },
            )
        )
    for point in site.assembly_points:
        east, north = point.position_m
        objects.append(
            SceneObject(
                id=point.id,
                layer=Layer.ASSEMBLY_POINTS,
                mesh=frustum_mesh(
                    [east, north, 0.0],
                    [east, north, ASSEMBLY_POINT_HEIGHT_M],
                    ASSEMBLY_POINT_RADIUS_M,
                    ASSEMBLY_POINT_RADIUS_M,
                    sides=PIPE_SIDES,
                    capped=True,
                ),
                colour_rgba=ASSEMBLY_POINT_RGBA,
                data={
                    "kind": "assembly_point",
                    "name": point.name,
                    "capacity_persons": point.capacity_persons,
                },
            )
        )
    return objects


def device_objects(
    site: Site,
    detector_states: Mapping[str, DetectorState] | None = None,
    wind: Mapping[str, Wind] | None = None,
) -> list[SceneObject]:
    """Gas detectors by state, wind stations with their arrows, cameras with FOV and laser."""
    detector_states = detector_states or {}
    wind = wind or {}
    for name, ids, known in (
        ("detector_states", detector_states, {d.id for d in site.gas_detectors}),
        ("wind", wind, {s.id for s in site.wind_stations}),
    ):
        unknown = sorted(set(ids) - known)
        if unknown:
            raise ValueError(f"{name} names unknown device(s) {unknown} of site {site.id!r}")
    objects: list[SceneObject] = []
    for detector in site.gas_detectors:
        state = DetectorState(detector_states.get(detector.id, DetectorState.NORMAL))
        objects.append(
            SceneObject(
                id=detector.id,
                layer=Layer.DETECTORS,
                mesh=sphere_mesh(detector.position_m, DETECTOR_MARKER_RADIUS_M),
                colour_rgba=DETECTOR_RGBA[state],
                data={
                    "kind": "gas_detector",
                    "placement": detector.placement.value,
                    "gases": [gas.value for gas in detector.gases],
                    "zone": detector.zone,
                    "pipeline_id": detector.pipeline_id,
                    "chainage_m": detector.chainage_m,
                    "manhole_id": detector.manhole_id,
                    "full_scale_ppm": detector.full_scale_ppm,
                    "position_m": _point_json(detector.position_m),
                    "state": state.value,
                },
            )
        )
    for station in site.wind_stations:
        east, north = station.position_m
        data: dict[str, JsonValue] = {
            "kind": "wind_station",
            "mast_height_m": _round(station.mast_height_m),
        }
        objects.append(
            SceneObject(
                id=station.id,
                layer=Layer.WIND,
                mesh=frustum_mesh(
                    [east, north, 0.0],
                    [east, north, station.mast_height_m],
                    POLE_RADIUS_M,
                    POLE_RADIUS_M,
                    capped=True,
                ),
                colour_rgba=CAMERA_RGBA,
                data=data,
            )
        )
        if station.id in wind:
            objects.append(
                _wind_arrow(station.id, station.position_m, station.mast_height_m, wind[station.id])
            )
    for camera in site.cameras:
        objects += _camera_objects(
            camera_id=camera.id,
            pose=CameraPose.from_camera(camera),
            laser_range_m=camera.laser_range_m,
            data={
                "kind": "camera",
                "heading_deg": camera.heading_deg,
                "tilt_deg": camera.tilt_deg,
                "horizontal_fov_deg": camera.horizontal_fov_deg,
                "vertical_fov_deg": camera.vertical_fov_deg,
                "mounting_height_m": camera.mounting_height_m,
                "laser_range_m": camera.laser_range_m,
                "resolution_px": list(camera.resolution_px),
            },
        )
    return objects


def _wind_arrow(
    station_id: str, position_m: FloatArray, height_m: float, wind: Wind
) -> SceneObject:
    """An arrow pointing downwind at mast height, its length growing with the speed."""
    if not (math.isfinite(wind.speed_m_per_s) and wind.speed_m_per_s >= 0.0):
        raise ValueError(f"wind at {station_id}: speed must be >= 0, got {wind.speed_m_per_s}")
    towards = math.radians(wind.from_deg + 180.0)
    direction = np.array([math.sin(towards), math.cos(towards), 0.0])
    length = max(WIND_ARROW_MINIMUM_M, WIND_ARROW_M_PER_M_PER_S * wind.speed_m_per_s)
    start = np.array([position_m[0], position_m[1], height_m])
    neck = start + 0.75 * length * direction
    tip = start + length * direction
    mesh = Mesh.merge(
        [
            frustum_mesh(start, neck, WIND_ARROW_RADIUS_M, WIND_ARROW_RADIUS_M),
            frustum_mesh(neck, tip, 3.0 * WIND_ARROW_RADIUS_M, 0.0, capped=True),
        ]
    )
    return SceneObject(
        id=f"wind/{station_id}",
        layer=Layer.WIND,
        mesh=mesh,
        colour_rgba=WIND_RGBA,
        data={
            "kind": "wind_arrow",
            "station_id": station_id,
            "speed_m_per_s": _round(wind.speed_m_per_s, 2),
            "from_deg": _round(wind.from_deg % 360.0, 1),
        },
    )


def _camera_objects(
    *, camera_id: str, pose: CameraPose, laser_range_m: float, data: dict[str, JsonValue]
) -> list[SceneObject]:
    """Pole, field-of-view pyramid (drawn to the laser range) and laser beam of one camera."""
    east, north, _ = pose.position_m
    pole = frustum_mesh(
        [east, north, 0.0], pose.position_m, POLE_RADIUS_M, POLE_RADIUS_M, capped=True
    )
    right, up, forward = pose.axes
    half_width = math.tan(0.5 * pose.horizontal_fov_rad)
    half_height = math.tan(0.5 * pose.vertical_fov_rad)
    corners = pose.position_m + laser_range_m * (
        forward
        + np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
        @ np.stack([half_width * right, half_height * up])
    )
    apex = pose.position_m
    sides = [np.stack([apex, corners[i], corners[(i + 1) % 4]]) for i in range(4)]
    far = [corners[[0, 1, 2]], corners[[0, 2, 3]]]
    triangles = np.stack(sides + far)  # (6, 3 corners, 3)
    normal = _unit(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]))
    centre = np.mean(np.vstack([apex[np.newaxis], corners]), axis=0)
    inward = np.sum(normal * (triangles.mean(axis=1) - centre), axis=1) < 0.0
    triangles[inward] = triangles[inward][:, ::-1]
    normal[inward] = -normal[inward]
    fov = Mesh(
        triangles.reshape(-1, 3),
        np.repeat(normal, 3, axis=0),
        np.arange(3 * len(triangles)).reshape(-1, 3),
    )
    beam_start, beam_end = laser_beam_m(pose, laser_range_m)
    beam = frustum_mesh(beam_start, beam_end, LASER_BEAM_RADIUS_M, LASER_BEAM_RADIUS_M)
    part = {"camera_id": camera_id}
    return [
        SceneObject(camera_id, Layer.CAMERAS, pole, CAMERA_RGBA, data),
        SceneObject(
            f"{camera_id}/fov", Layer.CAMERAS, fov, FOV_RGBA, {"kind": "camera_fov", **part}
        ),
        SceneObject(
            f"{camera_id}/laser",
            Layer.CAMERAS,
            beam,
            LASER_RGBA,
            {
                "kind": "laser_beam",
                **part,
                "length_m": _round(float(np.linalg.norm(beam_end - beam_start)), 1),
            },
        ),
    ]


def _geometry(value: BaseGeometry | Mapping[str, Any], level: str) -> BaseGeometry:
    if isinstance(value, BaseGeometry):
        return value
    try:
        return shapely.geometry.shape(dict(value))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"zone {level!r}: not a GeoJSON-like geometry ({error})") from error


def zone_objects(zones_m: Mapping[str, BaseGeometry | Mapping[str, Any]]) -> list[SceneObject]:
    """Threat zones as translucent volumes from the ground up, yellow below red below isolation."""
    unknown = sorted(set(zones_m) - set(ZONE_ORDER))
    if unknown:
        raise ValueError(f"zones_m: unknown zone level(s) {unknown}; use {ZONE_ORDER}")
    objects: list[SceneObject] = []
    for order, level in enumerate(ZONE_ORDER):
        if level not in zones_m:
            continue
        geometry = _geometry(zones_m[level], level)
        if geometry.is_empty:
            continue
        height = ZONE_HEIGHT_M + order * ZONE_LEVEL_OFFSET_M
        objects.append(
            SceneObject(
                id=f"zone/{level}",
                layer=Layer.ZONES,
                mesh=prism_mesh(geometry, 0.0, height),
                colour_rgba=ZONE_RGBA[level],
                data={
                    "kind": "threat_zone",
                    "level": level,
                    "area_m2": _round(geometry.area, 0),
                    "drawn_height_m": height,
                },
            )
        )
    return objects


def route_objects(routes: Sequence[MapRoute]) -> list[SceneObject]:
    """Evacuation routes as tubes just above the ground, one per building."""
    objects: list[SceneObject] = []
    for route in routes:
        line = np.asarray(route.polyline_m, dtype=np.float64)
        points = np.column_stack([line, np.full(len(line), ROUTE_HEIGHT_M)])
        objects.append(
            SceneObject(
                id=f"route/{route.building_id}",
                layer=Layer.ROUTES,
                mesh=tube_mesh(points, ROUTE_RADIUS_M),
                colour_rgba=ROUTE_RGBA,
                data={
                    "kind": "evacuation_route",
                    "building_id": route.building_id,
                    "assembly_point_id": route.assembly_point_id,
                    "length_m": _round(LineString(line).length, 1),
                },
            )
        )
    return objects


def plume_objects(
    surfaces: Sequence[PlumeSurface], data: Mapping[str, JsonValue] | None = None
) -> list[SceneObject]:
    """One object per isosurface and time step, ``plume/<time_s>/<level>``."""
    unknown = sorted({surface.level for surface in surfaces} - set(PLUME_RGBA))
    if unknown:
        raise ValueError(f"plume: unknown level(s) {unknown}; use {sorted(PLUME_RGBA)}")
    shared = dict(data or {})
    times = sorted({surface.time_s for surface in surfaces})
    return [
        SceneObject(
            id=f"plume/{surface.time_s:g}/{surface.level}",
            layer=Layer.PLUME,
            mesh=surface.mesh,
            colour_rgba=PLUME_RGBA[surface.level],
            data={
                **shared,
                "kind": "plume_isosurface",
                "time_s": surface.time_s,
                "step": times.index(surface.time_s),
                "level": surface.level,
                "percent_lel": surface.percent_lel,
                "mole_fraction": surface.mole_fraction,
                "empty": surface.mesh.triangle_count == 0,
            },
        )
        for surface in surfaces
    ]


def build_scene(
    site: Site,
    layers: SceneLayers | None = None,
    *,
    triangle_budget: int = TRIANGLE_BUDGET,
) -> Scene:
    """The 3D model of ``site`` with the state in ``layers``.

    Raises ``ValueError`` when a layer names an asset the site does not have, when two objects
    share an id, or when the scene has more than ``triangle_budget`` triangles.
    """
    layers = layers or SceneLayers()
    objects = surface_objects(site)
    objects += pipeline_objects(site, layers.segment_states, layers.closed_valve_ids)
    objects += municipal_objects(site)
    objects += device_objects(site, layers.detector_states, layers.wind)
    objects += zone_objects(layers.zones_m)
    objects += route_objects(layers.routes)
    if layers.leak_position_m is not None:
        leak = np.asarray(layers.leak_position_m, dtype=np.float64)
        if leak.shape not in {(2,), (3,)} or not np.all(np.isfinite(leak)):
            raise ValueError(f"leak_position_m must be 2 or 3 finite numbers, got {leak}")
        centre = np.append(leak, 0.0) if leak.shape == (2,) else leak
        objects.append(
            SceneObject(
                id="leak",
                layer=Layer.LEAK,
                mesh=sphere_mesh(centre, LEAK_MARKER_RADIUS_M),
                colour_rgba=LEAK_RGBA,
                data={"kind": "leak", "position_m": _point_json(centre)},
            )
        )
    objects += plume_objects(layers.plume, layers.plume_data)
    ids = [item.id for item in objects]
    duplicates = sorted({item for item in ids if ids.count(item) > 1})
    if duplicates:
        raise ValueError(f"scene object ids must be unique; repeated: {duplicates}")
    scene = Scene(
        site_id=site.id,
        site_name=site.name,
        origin=(site.origin.latitude_deg, site.origin.longitude_deg, site.origin.altitude_m),
        objects=tuple(objects),
    )
    if scene.triangle_count > triangle_budget:
        raise ValueError(
            f"scene has {scene.triangle_count} triangles, more than the budget of "
            f"{triangle_budget}; coarsen the plume (plume3d max_triangles_per_surface)"
        )
    return scene


def layers_from_response(
    response: EmergencyResponse,
    *,
    plume: tuple[PlumeSurface, ...] = (),
    plume_data: Mapping[str, JsonValue] | None = None,
    detector_states: Mapping[str, DetectorState] | None = None,
    wind: Mapping[str, Wind] | None = None,
    site: Site | None = None,
) -> SceneLayers:
    """The scene state of an emergency response (:func:`pipesentinel.plans.response.respond`).

    The most probable segment is the leak, the other segments of the isolated sections are
    isolated, the valves to close are closed; the red, yellow and isolation zones, the routes and
    the leak come from the response. Without ``wind``, every wind station of ``site`` (when
    given) shows the estimate's wind.
    """
    estimate = response.estimate
    states: dict[str, PipeState] = {
        segment: PipeState.ISOLATED
        for section in response.isolation.sections
        for segment in section.segment_ids
    }
    if estimate.segment_probabilities:
        likely = max(sorted(estimate.segment_probabilities.items()), key=lambda item: item[1])
        states[likely[0]] = PipeState.LEAK
    if wind is None:
        stations = site.wind_stations if site is not None else ()
        shared = Wind(estimate.wind_speed_m_per_s, estimate.wind_from_deg)
        wind = {station.id: shared for station in stations}
    return SceneLayers(
        segment_states=states,
        closed_valve_ids=frozenset(response.isolation.valves_to_close),
        detector_states=dict(detector_states or {}),
        wind=wind,
        zones_m={zone.level.value: zone.polygon_m for zone in response.zones.zones},
        routes=tuple(
            MapRoute(route.building_id, route.assembly_point_id, route.polyline_m)
            for route in response.exposure.routes
        ),
        leak_position_m=(float(estimate.position_m[0]), float(estimate.position_m[1])),
        plume=plume,
        plume_data=dict(plume_data or {}),
    )
