"""The site model: pipelines, municipal networks, buildings, roads and devices of one site.

Coordinates are local east-north-up metres (``x`` east, ``y`` north, ``z`` up, ``z = 0`` at ground
level) from a WGS84 origin, so that GeoJSON can be produced at the edge. Every object is a frozen
dataclass; arrays are float64 numpy arrays that are made read-only on construction.

The data lives in ``sites/<name>/site.toml``; :func:`load_site` reads and validates it and raises
:class:`SiteValidationError` naming the file and the field on anything wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def _frozen(array: FloatArray) -> FloatArray:
    """Return ``array`` as a read-only float64 array (a copy when needed)."""
    out = np.array(array, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


class Product(StrEnum):
    """What a pipe carries."""

    CRUDE_OIL = "crude_oil"
    NATURAL_GAS = "natural_gas"
    WATER = "water"
    SEWAGE = "sewage"
    STORMWATER = "stormwater"


class NetworkKind(StrEnum):
    """Kind of municipal network."""

    GAS = "gas"
    WATER = "water"
    DRAINAGE = "drainage"
    SEWER = "sewer"


class BuildingUse(StrEnum):
    """Use of a building; schools and hospitals are the sensitive ones."""

    RESIDENTIAL = "residential"
    SCHOOL = "school"
    HOSPITAL = "hospital"
    COMMERCIAL = "commercial"
    INDUSTRIAL = "industrial"


SENSITIVE_USES: frozenset[BuildingUse] = frozenset({BuildingUse.SCHOOL, BuildingUse.HOSPITAL})


class DeviceKind(StrEnum):
    """Kind of device, as it appears in MQTT topics (``.../{kind}/{device}``)."""

    GAS = "gas"
    WIND = "wind"
    CAMERA = "camera"


class DetectorPlacement(StrEnum):
    """Where a gas detector sits."""

    PIPELINE = "pipeline"  # leak-point detector along an oil line
    UNDERGROUND = "underground"  # in a manhole or the utility tunnel of the municipal network


class Gas(StrEnum):
    """Gases the system monitors; properties are in :mod:`pipesentinel.detection.gases`."""

    METHANE = "methane"
    PROPANE = "propane"


@dataclass(frozen=True)
class GeoOrigin:
    """WGS84 position of the local ENU origin."""

    latitude_deg: float
    longitude_deg: float
    altitude_m: float


@dataclass(frozen=True)
class Valve:
    """A block valve on a pipeline, located by chainage along it."""

    id: str
    pipeline_id: str
    chainage_m: float
    remotely_operated: bool


@dataclass(frozen=True)
class Segment:
    """The stretch of a pipeline between two consecutive block valves (or a pipeline end)."""

    id: str
    pipeline_id: str
    start_chainage_m: float
    end_chainage_m: float
    upstream_valve_id: str | None
    downstream_valve_id: str | None


@dataclass(frozen=True)
class Pipeline:
    """An oil pipeline: a buried polyline with its asset data and block valves.

    ``vertices_m`` has shape (n, 2): ground-plane east/north of the centreline. The pipe's centre
    is at ``z = -(depth_of_cover_m + diameter_m / 2)``. Chainage runs from the first vertex.
    """

    id: str
    name: str
    product: Product
    vertices_m: FloatArray
    diameter_m: float
    wall_thickness_m: float
    depth_of_cover_m: float
    operating_pressure_pa: float
    valves: tuple[Valve, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices_m", _frozen(self.vertices_m))

    @cached_property
    def vertex_chainages_m(self) -> FloatArray:
        """Chainage of each vertex [m]."""
        steps = np.hypot(*np.diff(self.vertices_m, axis=0).T)
        return np.concatenate(([0.0], np.cumsum(steps)))

    @property
    def length_m(self) -> float:
        """Length along the centreline [m]."""
        return float(self.vertex_chainages_m[-1])

    def point_at_chainage(self, chainage_m: FloatArray | float) -> FloatArray:
        """East/north of the centreline at the given chainages, shape (..., 2) [m]."""
        chainage = np.clip(np.asarray(chainage_m, dtype=np.float64), 0.0, self.length_m)
        knots = self.vertex_chainages_m
        east = np.interp(chainage, knots, self.vertices_m[:, 0])
        north = np.interp(chainage, knots, self.vertices_m[:, 1])
        return np.stack([east, north], axis=-1)

    @cached_property
    def _stretch_directions(self) -> FloatArray:
        """Unit vector (east, north) of each straight stretch between vertices, shape (n - 1, 2)."""
        steps = np.diff(self.vertices_m, axis=0)
        return steps / np.diff(self.vertex_chainages_m)[:, np.newaxis]

    def direction_at_chainage(self, chainage_m: FloatArray | float) -> FloatArray:
        """Unit tangent (east, north) of the centreline at the given chainages, shape (..., 2) [-].

        At a bend vertex the direction of the stretch that starts there is returned (at the far
        end, that of the last stretch). Chainages are clipped to ``[0, length_m]``.
        """
        chainage = np.clip(np.asarray(chainage_m, dtype=np.float64), 0.0, self.length_m)
        last_stretch = len(self.vertices_m) - 2
        stretch = np.searchsorted(self.vertex_chainages_m, chainage, side="right") - 1
        return self._stretch_directions[np.clip(stretch, 0, last_stretch)]

    def locate(self, points_m: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Project ground-plane points onto the centreline.

        Parameters
        ----------
        points_m : array (..., 2)
            East, north of the points [m].

        Returns
        -------
        chainage_m : array (...)
            Chainage of the nearest centreline point [m].
        distance_m : array (...)
            Horizontal distance from each point to the centreline [m].
        """
        points = np.asarray(points_m, dtype=np.float64)[..., np.newaxis, :]
        starts = self.vertices_m[:-1]
        steps = np.diff(self.vertices_m, axis=0)
        step_lengths = np.diff(self.vertex_chainages_m)
        fraction = np.sum((points - starts) * steps, axis=-1) / step_lengths**2
        fraction = np.clip(fraction, 0.0, 1.0)
        offsets = points - (starts + fraction[..., np.newaxis] * steps)
        distances = np.hypot(offsets[..., 0], offsets[..., 1])
        nearest = np.argmin(distances, axis=-1)[..., np.newaxis]
        chainage = (
            self.vertex_chainages_m[:-1][nearest]
            + np.take_along_axis(fraction, nearest, axis=-1) * step_lengths[nearest]
        )
        return chainage[..., 0], np.take_along_axis(distances, nearest, axis=-1)[..., 0]

    def polyline_between(self, start_chainage_m: float, end_chainage_m: float) -> FloatArray:
        """Centreline vertices (m, 2) from ``start_chainage_m`` to ``end_chainage_m`` [m].

        The ends are interpolated; bend vertices strictly between them are kept. Chainages are
        clipped to ``[0, length_m]``; ``start_chainage_m`` must not exceed ``end_chainage_m``.
        """
        start = min(max(start_chainage_m, 0.0), self.length_m)
        end = min(max(end_chainage_m, 0.0), self.length_m)
        if end < start:
            raise ValueError(f"pipeline {self.id!r}: start chainage {start} > end chainage {end}")
        knots = self.vertex_chainages_m
        inside = (knots > start) & (knots < end)
        return np.concatenate(
            (
                self.point_at_chainage(start)[np.newaxis],
                self.vertices_m[inside],
                self.point_at_chainage(end)[np.newaxis],
            )
        )

    def segment_at_chainage(self, chainage_m: float) -> Segment:
        """The segment containing ``chainage_m`` [m].

        A chainage exactly at a block valve belongs to the segment downstream of it (the one the
        valve starts); the pipeline's far end belongs to the last segment. ``ValueError`` outside
        ``[0, length_m]``.
        """
        if not 0.0 <= chainage_m <= self.length_m:
            raise ValueError(
                f"pipeline {self.id!r}: chainage {chainage_m} m outside 0..{self.length_m:.3f} m"
            )
        segments = self.segments
        for segment in segments:
            if segment.start_chainage_m <= chainage_m < segment.end_chainage_m:
                return segment
        return segments[-1]

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Segments between consecutive block valves, in chainage order."""
        valves = sorted(self.valves, key=lambda valve: valve.chainage_m)
        bounds: list[tuple[float, str | None]] = [(0.0, None)]
        bounds += [(valve.chainage_m, valve.id) for valve in valves]
        bounds.append((self.length_m, None))
        # Numbered after dropping empty stretches (a valve at either end), so ids run S1, S2, ...
        stretches = [(first, second) for first, second in pairwise(bounds) if second[0] > first[0]]
        return tuple(
            Segment(
                id=f"{self.id}-S{index + 1}",
                pipeline_id=self.id,
                start_chainage_m=start,
                end_chainage_m=end,
                upstream_valve_id=upstream,
                downstream_valve_id=downstream,
            )
            for index, ((start, upstream), (end, downstream)) in enumerate(stretches)
        )


@dataclass(frozen=True)
class MunicipalPipe:
    """A pipe of a municipal network (gas, water, drainage, sewer), buried at ``depth_m``."""

    id: str
    network: NetworkKind
    vertices_m: FloatArray
    diameter_m: float
    depth_m: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices_m", _frozen(self.vertices_m))


@dataclass(frozen=True)
class Manhole:
    """An access shaft into a municipal network."""

    id: str
    network: NetworkKind
    position_m: FloatArray  # (2,) east, north
    depth_m: float
    tunnel_id: str | None = None  # set when the shaft is a hatch into this utility tunnel

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


@dataclass(frozen=True)
class UtilityTunnel:
    """A walkable utility tunnel carrying several networks."""

    id: str
    vertices_m: FloatArray
    width_m: float
    height_m: float
    depth_of_cover_m: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices_m", _frozen(self.vertices_m))


@dataclass(frozen=True)
class Building:
    """A key building: footprint polygon (n, 2), height and occupants by day and by night."""

    id: str
    name: str
    use: BuildingUse
    footprint_m: FloatArray
    height_m: float
    occupants_day: int
    occupants_night: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "footprint_m", _frozen(self.footprint_m))

    @property
    def sensitive(self) -> bool:
        """Whether the building is a school or a hospital."""
        return self.use in SENSITIVE_USES

    @property
    def footprint_area_m2(self) -> float:
        """Area of the footprint polygon (shoelace formula) [m2]."""
        east, north = self.footprint_m.T
        return float(abs(np.dot(east, np.roll(north, -1)) - np.dot(north, np.roll(east, -1))) / 2)

    @property
    def centroid_m(self) -> FloatArray:
        """Area centroid (east, north) of the footprint polygon, shape (2,) [m]."""
        east, north = self.footprint_m.T
        cross = east * np.roll(north, -1) - np.roll(east, -1) * north
        twice_area = float(np.sum(cross))
        moments = np.array(
            [
                np.sum((east + np.roll(east, -1)) * cross),
                np.sum((north + np.roll(north, -1)) * cross),
            ],
            dtype=np.float64,
        )
        centroid: FloatArray = moments / (3.0 * twice_area)
        return centroid


@dataclass(frozen=True)
class RoadNode:
    """A junction or end of the road graph."""

    id: str
    position_m: FloatArray  # (2,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


@dataclass(frozen=True)
class Road:
    """A road edge between two nodes; ``vertices_m`` (n, 2) runs ``from_node`` -> ``to_node``."""

    id: str
    name: str
    from_node: str
    to_node: str
    vertices_m: FloatArray
    lanes: int  # traffic lanes, both directions together

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices_m", _frozen(self.vertices_m))

    @property
    def length_m(self) -> float:
        """Length along the polyline [m]."""
        return float(np.sum(np.hypot(*np.diff(self.vertices_m, axis=0).T)))


@dataclass(frozen=True)
class AssemblyPoint:
    """A place people gather during an evacuation."""

    id: str
    name: str
    position_m: FloatArray  # (2,)
    capacity_persons: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


@dataclass(frozen=True)
class GasDetector:
    """A point gas detector (methane and propane channels).

    ``position_m`` is (3,) east, north, height of the sensing head relative to ground [m]
    (negative inside a manhole or the tunnel).
    """

    id: str
    placement: DetectorPlacement
    position_m: FloatArray
    gases: tuple[Gas, ...]
    full_scale_ppm: float
    t90_s: float
    sample_period_s: float
    pipeline_id: str | None = None
    chainage_m: float | None = None
    manhole_id: str | None = None
    zone: str = ""
    kind: DeviceKind = field(default=DeviceKind.GAS, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


@dataclass(frozen=True)
class WindStation:
    """A wind station; ``position_m`` is (2,), the anemometer is at ``mast_height_m``."""

    id: str
    position_m: FloatArray
    mast_height_m: float
    sample_period_s: float
    averaging_period_s: float
    kind: DeviceKind = field(default=DeviceKind.WIND, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


@dataclass(frozen=True)
class Camera:
    """A tri-spectrum camera (visible, thermal infrared, laser methane detector) on a pole.

    ``heading_deg`` is the optical axis, clockwise from north; ``tilt_deg`` is downward pitch.
    The laser beam runs along the optical axis up to ``laser_range_m`` (or to its reflector).
    """

    id: str
    position_m: FloatArray  # (2,)
    mounting_height_m: float
    heading_deg: float
    tilt_deg: float
    horizontal_fov_deg: float
    vertical_fov_deg: float
    laser_range_m: float
    frame_period_s: float
    resolution_px: tuple[int, int]  # (width, height)
    kind: DeviceKind = field(default=DeviceKind.CAMERA, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _frozen(self.position_m))


Device = GasDetector | WindStation | Camera

DEFAULT_TIME_ZONE = "UTC"
"""Time zone of a site that does not name one (IANA name)."""


@dataclass(frozen=True)
class Site:
    """Everything PipeSentinel knows about one site."""

    id: str
    name: str
    origin: GeoOrigin
    pipelines: tuple[Pipeline, ...]
    municipal_pipes: tuple[MunicipalPipe, ...]
    manholes: tuple[Manhole, ...]
    utility_tunnels: tuple[UtilityTunnel, ...]
    buildings: tuple[Building, ...]
    road_nodes: tuple[RoadNode, ...]
    roads: tuple[Road, ...]
    assembly_points: tuple[AssemblyPoint, ...]
    gas_detectors: tuple[GasDetector, ...]
    wind_stations: tuple[WindStation, ...]
    cameras: tuple[Camera, ...]
    time_zone: str = DEFAULT_TIME_ZONE  # IANA name of the site's wall clock (occupancy, day/night)

    @cached_property
    def devices(self) -> tuple[Device, ...]:
        """All devices, gas detectors first, then wind stations, then cameras."""
        return (*self.gas_detectors, *self.wind_stations, *self.cameras)

    def device(self, device_id: str) -> Device | None:
        """The device with this id, or ``None``."""
        return self.devices_by_id.get(device_id)

    @cached_property
    def devices_by_id(self) -> dict[str, Device]:
        """Devices keyed by id."""
        return {device.id: device for device in self.devices}

    def pipeline(self, pipeline_id: str) -> Pipeline:
        """The pipeline with this id; ``KeyError`` naming it otherwise."""
        for pipeline in self.pipelines:
            if pipeline.id == pipeline_id:
                return pipeline
        raise KeyError(f"no pipeline {pipeline_id!r} in site {self.id!r}")

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        """Segments of all pipelines, pipeline by pipeline, in chainage order."""
        return tuple(segment for pipeline in self.pipelines for segment in pipeline.segments)

    def segment(self, segment_id: str) -> Segment:
        """The pipeline segment with this id (``"<pipeline>-S<n>"``); ``KeyError`` otherwise."""
        for segment in self.segments:
            if segment.id == segment_id:
                return segment
        raise KeyError(f"no segment {segment_id!r} in site {self.id!r}")

    def manhole(self, manhole_id: str) -> Manhole:
        """The manhole with this id; ``KeyError`` naming it otherwise."""
        for manhole in self.manholes:
            if manhole.id == manhole_id:
                return manhole
        raise KeyError(f"no manhole {manhole_id!r} in site {self.id!r}")

    def road_node(self, node_id: str) -> RoadNode:
        """The road node with this id; ``KeyError`` naming it otherwise."""
        for node in self.road_nodes:
            if node.id == node_id:
                return node
        raise KeyError(f"no road node {node_id!r} in site {self.id!r}")

    @cached_property
    def zones(self) -> dict[str, tuple[GasDetector, ...]]:
        """Gas detectors grouped by voting zone, zones in order of first appearance."""
        grouped: dict[str, list[GasDetector]] = {}
        for detector in self.gas_detectors:
            grouped.setdefault(detector.zone, []).append(detector)
        return {zone: tuple(detectors) for zone, detectors in grouped.items()}

    @cached_property
    def extent_m(self) -> FloatArray:
        """Bounding box of the site's infrastructure, shape (2, 2) [m].

        Rows are ``[east_min, north_min]`` and ``[east_max, north_max]``. Pipelines, municipal
        pipes, manholes, utility tunnels, building footprints, roads, road nodes and assembly
        points count; devices do not (the loader checks them against it).
        """
        groups: list[FloatArray] = [
            *(pipeline.vertices_m for pipeline in self.pipelines),
            *(pipe.vertices_m for pipe in self.municipal_pipes),
            *(tunnel.vertices_m for tunnel in self.utility_tunnels),
            *(building.footprint_m for building in self.buildings),
            *(road.vertices_m for road in self.roads),
            *(manhole.position_m[np.newaxis] for manhole in self.manholes),
            *(node.position_m[np.newaxis] for node in self.road_nodes),
            *(point.position_m[np.newaxis] for point in self.assembly_points),
        ]
        if not groups:
            raise ValueError(f"site {self.id!r} has no infrastructure to take an extent from")
        points = np.concatenate(groups)
        return _frozen(np.stack([points.min(axis=0), points.max(axis=0)]))
