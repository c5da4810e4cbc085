"""Who is exposed, where they gather and how they get there (issue 4, section 4, second half).

Given the threat zones of an incident as shapely geometries in site ENU metres (``red``: 60 %LEL,
``yellow``: 10 %LEL, ``isolation``: the minimum isolation circle around the leak; built by
:mod:`pipesentinel.plans.zones`), the leak position, the wind from-direction and the local time,
:func:`assess_exposure` answers four questions for the responders:

1. **Which buildings, how many people.** A building is *in* a zone when any part of its footprint
   intersects the zone (shapely ``intersects``: touching counts). Its occupants are
   ``occupants_day`` inside the day hours of its use (:class:`DayHours`, configurable defaults in
   :data:`DEFAULT_DAY_HOURS`) and ``occupants_night`` outside them. Buildings are listed sensitive
   sites first (schools and kindergartens, hospitals and clinics:
   :data:`pipesentinel.site.SENSITIVE_USES`), then by the most severe zone they touch (red,
   isolation, yellow), then by occupants.
2. **Where to gather.** An assembly point is usable when it lies at least
   ``ExposureSettings.assembly_margin_m`` outside every zone, is not in the downwind sector
   (``+-ExposureSettings.downwind_half_angle_rad`` around the direction the wind blows to, widened
   to the wind-direction spread the zones were built over) and can be reached from the road graph
   without crossing the red zone or the isolation circle. Usable points are ranked upwind before
   crosswind, then by clearance from the zones.
3. **How to get there.** Shortest walking routes on the road graph (networkx) from which every
   road whose polyline intersects the red zone or the isolation circle is removed, so that a route
   never crosses them. Yellow-zone metres cost ``ExposureSettings.yellow_penalty`` times their
   length (crossing is allowed, minimised and flagged). A building starts at its nearest road node
   (from the footprint centroid, in a straight access leg) whose leg stays out of the red zone and
   the isolation circle and from which a usable assembly point can be reached; a building that
   touches them starts at its nearest such node outside them that lies *away from the leak* (the
   leg never gets closer to the source; when the centroid itself is inside, the leg necessarily
   starts in the zone). Without such a node the building is flagged
   ``shelter_in_place_or_escort``.
4. **Which roads to control.** Every road whose polyline intersects a zone, with its name; roads
   through the red zone or the isolation circle are closed (they are the ones removed from the
   route graph).

Pure: no I/O. Build :class:`EvacuationNetwork` once per site; each incident update is one call of
:func:`assess_exposure` (a few milliseconds on the reference site).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby, pairwise
from typing import Any, Final

import networkx as nx
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from pipesentinel.site import BuildingUse, Site

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# Cited constants and stated defaults

FOOT_M: Final = 0.3048
"""The international foot [m] (exact by definition, 1959 international yard and pound
agreement)."""

WALKING_SPEED_M_PER_S: Final = 3.5 * FOOT_M
"""Design walking speed, 3.5 ft/s = 1.07 m/s [m s-1]: the speed the US Manual on Uniform Traffic
Control Devices (MUTCD, 2009 edition, section 4E.06 paragraph 07) prescribes for pedestrian
clearance times (lowered from 4.0 ft/s in the 2003 edition to cover older pedestrians)."""

SLOW_WALKING_SPEED_M_PER_S: Final = 3.0 * FOOT_M
"""Walking speed of slower pedestrians, 3.0 ft/s = 0.91 m/s [m s-1]: MUTCD 2009, section 4E.06
paragraph 14 (the cross-check for slower pedestrians such as wheelchair users). Reported beside the
design walking time because schools, kindergartens and hospitals evacuate at the pace of their
slowest people."""

ASSEMBLY_MARGIN_M: Final = 100.0
"""Default clearance an assembly point must keep from every zone [m]. A stated design default, not
from a standard: it covers a wind shift of some tens of metres at the edge of a zone and the
spread of a crowd around the point. Adjust per site in :class:`ExposureSettings`."""

DOWNWIND_HALF_ANGLE_RAD: Final = math.radians(45.0)
"""Default half-width of the downwind sector in which assembly points are not used [rad]
(+-45 deg). A stated design default, not from a standard; it is widened to the wind-direction
spread the zones were unioned over when that is larger."""

UPWIND_HALF_ANGLE_RAD: Final = math.radians(45.0)
"""Half-width of the upwind sector [rad] (+-45 deg around the direction the wind comes from);
usable assembly points inside it rank before crosswind ones. A stated design default."""

YELLOW_PENALTY: Final = 10.0
"""Cost factor of a metre walked inside the yellow zone relative to one outside it [-]. A stated
design default: large enough that a route detours up to nine times the yellow length it avoids."""


def _clock_s(hours: int, minutes: int = 0) -> float:
    """Seconds after local midnight [s]."""
    return float(hours * 3600 + minutes * 60)


WEEKDAYS: Final = frozenset(range(5))
"""Monday (0) to Friday (4), as :meth:`datetime.date.weekday` numbers them."""

ALL_DAYS: Final = frozenset(range(7))


@dataclass(frozen=True)
class DayHours:
    """When a building use counts its day occupants; the rest of the week counts the night ones.

    ``start_s`` and ``end_s`` are local clock times in seconds after midnight; when ``end_s`` is
    before ``start_s`` the window runs over midnight (and belongs to the day it starts on).
    ``days`` are the weekdays (Monday 0 to Sunday 6) on which the window applies.
    """

    start_s: float
    end_s: float
    days: frozenset[int] = ALL_DAYS

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s"):
            value = getattr(self, name)
            if not 0.0 <= value <= 86_400.0:
                raise ValueError(f"DayHours.{name} = {value} s is outside 0..86400 s")
        if not self.days <= ALL_DAYS:
            raise ValueError(f"DayHours.days {sorted(self.days)} must be weekday numbers 0..6")

    def contains(self, local_time: dt.datetime) -> bool:
        """Whether ``local_time`` (read as the site's wall clock) falls in the day hours."""
        clock_s = local_time.hour * 3600.0 + local_time.minute * 60.0 + local_time.second
        weekday = local_time.weekday()
        if self.start_s <= self.end_s:
            return weekday in self.days and self.start_s <= clock_s < self.end_s
        if clock_s >= self.start_s:  # evening part of a window over midnight
            return weekday in self.days
        return clock_s < self.end_s and (weekday - 1) % 7 in self.days

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON: ``{"start": "HH:MM", "end": "HH:MM", "days": [0..6]}``."""
        return {
            "start": _hh_mm(self.start_s),
            "end": _hh_mm(self.end_s),
            "days": sorted(self.days),
        }


def _hh_mm(clock_s: float) -> str:
    minutes = round(clock_s / 60.0)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


DEFAULT_DAY_HOURS: Final[Mapping[BuildingUse, DayHours]] = {
    # Residents are out at work or school on weekdays: day counts from 08:00 to 18:00 (the site
    # data give fewer residents by day than by night).
    BuildingUse.RESIDENTIAL: DayHours(_clock_s(8), _clock_s(18), WEEKDAYS),
    # Chinese primary and middle schools and kindergartens keep pupils from about 07:30 to 17:30,
    # Monday to Friday; on weekends and holidays only caretakers remain (the night count).
    BuildingUse.SCHOOL: DayHours(_clock_s(7, 30), _clock_s(17, 30), WEEKDAYS),
    # Outpatient hours 08:00-18:00 every day; in-patients and night staff otherwise.
    BuildingUse.HOSPITAL: DayHours(_clock_s(8), _clock_s(18), ALL_DAYS),
    # Shops, markets and malls open 09:00-21:00 every day.
    BuildingUse.COMMERCIAL: DayHours(_clock_s(9), _clock_s(21), ALL_DAYS),
    # One day shift, 08:00-18:00, Monday to Friday.
    BuildingUse.INDUSTRIAL: DayHours(_clock_s(8), _clock_s(18), WEEKDAYS),
}
"""Default day hours per building use. Stated assumptions about a typical Chinese city district,
not from a standard: check them against the site (school timetables, shift patterns) and override
them in :class:`ExposureSettings`. Holidays are not modelled; pass a weekend time for one."""


@dataclass(frozen=True)
class ExposureSettings:
    """Parameters of :func:`assess_exposure`; every default is cited or stated above."""

    walking_speed_m_per_s: float = WALKING_SPEED_M_PER_S
    slow_walking_speed_m_per_s: float = SLOW_WALKING_SPEED_M_PER_S
    assembly_margin_m: float = ASSEMBLY_MARGIN_M
    downwind_half_angle_rad: float = DOWNWIND_HALF_ANGLE_RAD
    upwind_half_angle_rad: float = UPWIND_HALF_ANGLE_RAD
    yellow_penalty: float = YELLOW_PENALTY
    day_hours: Mapping[BuildingUse, DayHours] = field(
        default_factory=lambda: dict(DEFAULT_DAY_HOURS)
    )

    def __post_init__(self) -> None:
        for name in ("walking_speed_m_per_s", "slow_walking_speed_m_per_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} = {getattr(self, name)} must be positive [m s-1]")
        if not self.assembly_margin_m >= 0.0:
            raise ValueError(f"assembly_margin_m = {self.assembly_margin_m} must be >= 0 m")
        for name in ("downwind_half_angle_rad", "upwind_half_angle_rad"):
            value = getattr(self, name)
            if not 0.0 <= value <= math.pi / 2:
                raise ValueError(f"{name} = {value} must be within 0..pi/2 rad")
        if not self.yellow_penalty >= 1.0:
            raise ValueError(f"yellow_penalty = {self.yellow_penalty} must be >= 1")
        missing = [use.value for use in BuildingUse if use not in self.day_hours]
        if missing:
            raise ValueError(f"day_hours has no entry for building uses {missing}")

    def to_json_dict(self) -> dict[str, object]:
        """The settings in plain JSON (angles in degrees, as in files)."""
        return {
            "walking_speed_m_per_s": self.walking_speed_m_per_s,
            "walking_speed_source": "MUTCD 2009 section 4E.06 par. 07 (3.5 ft/s)",
            "slow_walking_speed_m_per_s": self.slow_walking_speed_m_per_s,
            "slow_walking_speed_source": "MUTCD 2009 section 4E.06 par. 14 (3.0 ft/s)",
            "assembly_margin_m": self.assembly_margin_m,
            "downwind_half_angle_deg": math.degrees(self.downwind_half_angle_rad),
            "upwind_half_angle_deg": math.degrees(self.upwind_half_angle_rad),
            "yellow_penalty": self.yellow_penalty,
            "building_rule": "in a zone when any part of the footprint intersects it",
            "day_hours": {
                use.value: self.day_hours[use].to_json_dict()
                for use in sorted(self.day_hours, key=lambda use: use.value)
            },
        }


# ---------------------------------------------------------------------------------------------
# Result types


class Zone(StrEnum):
    """A threat zone; :data:`ZONE_SEVERITY` orders them."""

    RED = "red"  # 60 % LEL (ALOHA's red flammable level of concern)
    ISOLATION = "isolation"  # minimum isolation circle around the leak
    YELLOW = "yellow"  # 10 % LEL (ALOHA's yellow flammable level of concern)


ZONE_SEVERITY: Final = (Zone.RED, Zone.ISOLATION, Zone.YELLOW)
"""Zones from the most severe: inside red the cloud can burn; the isolation circle is cleared
whatever the wind; yellow is where the cloud may still reach 10 % LEL."""


class Occupancy(StrEnum):
    """Which occupant count of a building applies."""

    DAY = "day"
    NIGHT = "night"


class WindSector(StrEnum):
    """Where an assembly point lies relative to the wind, seen from the leak."""

    UPWIND = "upwind"
    CROSSWIND = "crosswind"
    DOWNWIND = "downwind"
    UNKNOWN = "unknown"  # no wind direction given (calm or no valid wind reading)


class Advice(StrEnum):
    """What the plan tells the occupants of an exposed building."""

    EVACUATE = "evacuate"
    SHELTER_IN_PLACE_OR_ESCORT = "shelter_in_place_or_escort"


def _point_json(point_m: FloatArray) -> list[float]:
    return [round(float(value), 2) for value in point_m]


def _read_only(array: ArrayLike) -> FloatArray:
    out = np.array(array, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class ExposedBuilding:
    """A building that touches at least one zone, with its occupants at the assessed time."""

    building_id: str
    name: str
    use: BuildingUse
    sensitive: bool
    zones: tuple[Zone, ...]  # most severe first
    occupancy: Occupancy
    occupants: int
    distance_from_leak_m: float  # nearest footprint point to the leak

    @property
    def worst_zone(self) -> Zone:
        """The most severe zone the footprint touches."""
        return self.zones[0]

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "building_id": self.building_id,
            "name": self.name,
            "use": self.use.value,
            "sensitive": self.sensitive,
            "zones": [zone.value for zone in self.zones],
            "worst_zone": self.worst_zone.value,
            "occupancy": self.occupancy.value,
            "occupants": self.occupants,
            "distance_from_leak_m": round(self.distance_from_leak_m, 1),
        }


@dataclass(frozen=True)
class ZoneTotals:
    """Buildings and people touching one zone (``zone`` is ``"any"`` for the union)."""

    zone: str
    building_count: int
    occupants: int
    sensitive_building_count: int
    sensitive_occupants: int

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "zone": self.zone,
            "building_count": self.building_count,
            "occupants": self.occupants,
            "sensitive_building_count": self.sensitive_building_count,
            "sensitive_occupants": self.sensitive_occupants,
        }


@dataclass(frozen=True)
class AssemblyPointStatus:
    """One assembly point of the site judged for this incident."""

    assembly_point_id: str
    name: str
    position_m: FloatArray  # (2,)
    capacity_persons: int
    usable: bool
    rank: int | None  # 1 = best usable point; None when not usable
    wind_sector: WindSector
    bearing_from_leak_rad: float  # clockwise from north
    angle_from_downwind_rad: float  # 0 = straight downwind, pi = straight upwind
    distance_from_leak_m: float
    clearance_from_zones_m: float  # inf when there are no zones
    access_node_id: str | None  # road node people arrive from
    reasons: tuple[str, ...]  # why not usable (empty when usable)
    assigned_persons: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _read_only(self.position_m))

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON (angles in degrees; an infinite clearance is ``null``)."""
        clearance = self.clearance_from_zones_m
        return {
            "assembly_point_id": self.assembly_point_id,
            "name": self.name,
            "position_m": _point_json(self.position_m),
            "capacity_persons": self.capacity_persons,
            "usable": self.usable,
            "rank": self.rank,
            "wind_sector": self.wind_sector.value,
            "bearing_from_leak_deg": round(math.degrees(self.bearing_from_leak_rad), 1),
            "angle_from_downwind_deg": round(math.degrees(self.angle_from_downwind_rad), 1),
            "distance_from_leak_m": round(self.distance_from_leak_m, 1),
            "clearance_from_zones_m": round(clearance, 1) if math.isfinite(clearance) else None,
            "access_node_id": self.access_node_id,
            "reasons": list(self.reasons),
            "assigned_persons": self.assigned_persons,
        }


@dataclass(frozen=True)
class EvacuationRoute:
    """The walking route of one building's occupants to an assembly point.

    ``polyline_m`` (m, 2) runs from the footprint centroid along the access leg to
    ``start_node_id``, along the roads to the assembly point's access node, then to the point.
    """

    building_id: str
    assembly_point_id: str
    occupants: int
    start_node_id: str
    node_ids: tuple[str, ...]
    road_ids: tuple[str, ...]
    road_names: tuple[str, ...]  # in walking order, consecutive repeats merged
    polyline_m: FloatArray
    length_m: float
    access_leg_m: float  # centroid to the first road node, off the road graph
    length_in_yellow_m: float
    walking_time_s: float  # at ExposureSettings.walking_speed_m_per_s
    slow_walking_time_s: float  # at ExposureSettings.slow_walking_speed_m_per_s
    over_capacity: bool  # no reachable usable point had room left; sent to the nearest

    def __post_init__(self) -> None:
        object.__setattr__(self, "polyline_m", _read_only(self.polyline_m))

    @property
    def crosses_yellow(self) -> bool:
        """Whether part of the route lies inside the yellow zone."""
        return self.length_in_yellow_m > 0.0

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON (coordinates rounded to 1 cm)."""
        return {
            "building_id": self.building_id,
            "assembly_point_id": self.assembly_point_id,
            "occupants": self.occupants,
            "start_node_id": self.start_node_id,
            "node_ids": list(self.node_ids),
            "road_ids": list(self.road_ids),
            "road_names": list(self.road_names),
            "polyline_m": [_point_json(point) for point in self.polyline_m],
            "length_m": round(self.length_m, 1),
            "access_leg_m": round(self.access_leg_m, 1),
            "length_in_yellow_m": round(self.length_in_yellow_m, 1),
            "crosses_yellow": self.crosses_yellow,
            "walking_time_s": round(self.walking_time_s),
            "slow_walking_time_s": round(self.slow_walking_time_s),
            "over_capacity": self.over_capacity,
        }


@dataclass(frozen=True)
class UnroutedBuilding:
    """An exposed building without a safe walking route: shelter in place or send an escort."""

    building_id: str
    occupants: int
    reason: str
    advice: Advice = Advice.SHELTER_IN_PLACE_OR_ESCORT

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "building_id": self.building_id,
            "occupants": self.occupants,
            "advice": self.advice.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TrafficControlRoad:
    """A road that intersects a zone; ``closed`` when it crosses red or the isolation circle."""

    road_id: str
    name: str
    zones: tuple[Zone, ...]  # most severe first
    closed: bool
    length_in_zones_m: float

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "road_id": self.road_id,
            "name": self.name,
            "zones": [zone.value for zone in self.zones],
            "closed": self.closed,
            "length_in_zones_m": round(self.length_in_zones_m, 1),
        }


@dataclass(frozen=True)
class ExposureAssessment:
    """People, assembly points, routes and roads for one incident update."""

    local_time: dt.datetime
    leak_position_m: FloatArray
    wind_direction_from_rad: float | None
    downwind_half_angle_rad: float  # the sector actually excluded
    buildings: tuple[ExposedBuilding, ...]  # sensitive first, then severity, then occupants
    zone_totals: tuple[ZoneTotals, ...]  # red, isolation, yellow, any
    assembly_points: tuple[AssemblyPointStatus, ...]  # usable by rank, then unusable by id
    routes: tuple[EvacuationRoute, ...]  # in building order
    unrouted: tuple[UnroutedBuilding, ...]  # in building order
    traffic_control: tuple[TrafficControlRoad, ...]  # closed first, then severity, name, id
    persons_to_evacuate: int
    usable_capacity_persons: int
    warnings: tuple[str, ...]
    settings: ExposureSettings

    def __post_init__(self) -> None:
        object.__setattr__(self, "leak_position_m", _read_only(self.leak_position_m))

    @property
    def capacity_shortfall_persons(self) -> int:
        """People to evacuate beyond the capacity of the usable assembly points."""
        return max(0, self.persons_to_evacuate - self.usable_capacity_persons)

    @property
    def traffic_control_road_names(self) -> tuple[str, ...]:
        """Names of the roads to control, closed ones first, each once."""
        return tuple(dict.fromkeys(road.name for road in self.traffic_control))

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON for report.json."""
        wind = self.wind_direction_from_rad
        return {
            "local_time": self.local_time.isoformat(),
            "leak_position_m": _point_json(self.leak_position_m),
            "wind_direction_from_deg": None if wind is None else round(math.degrees(wind), 1),
            "downwind_half_angle_deg": round(math.degrees(self.downwind_half_angle_rad), 1),
            "persons_to_evacuate": self.persons_to_evacuate,
            "usable_capacity_persons": self.usable_capacity_persons,
            "capacity_shortfall_persons": self.capacity_shortfall_persons,
            "zone_totals": [totals.to_json_dict() for totals in self.zone_totals],
            "buildings": [building.to_json_dict() for building in self.buildings],
            "assembly_points": [point.to_json_dict() for point in self.assembly_points],
            "routes": [route.to_json_dict() for route in self.routes],
            "unrouted": [building.to_json_dict() for building in self.unrouted],
            "traffic_control": [road.to_json_dict() for road in self.traffic_control],
            "traffic_control_road_names": list(self.traffic_control_road_names),
            "warnings": list(self.warnings),
            "settings": self.settings.to_json_dict(),
        }


# ---------------------------------------------------------------------------------------------
# The site's geometry, built once


@dataclass(frozen=True)
class EvacuationNetwork:
    """Shapely geometry and the road graph of a site, built once and reused by every update."""

    site: Site
    building_polygons: NDArray[np.object_]  # shapely Polygons, site order
    building_centroids_m: FloatArray  # (n_buildings, 2)
    road_lines: NDArray[np.object_]  # shapely LineStrings, site order
    road_lengths_m: FloatArray  # (n_roads,)
    node_ids: tuple[str, ...]  # site order
    node_positions_m: FloatArray  # (n_nodes, 2)
    node_points: NDArray[np.object_]  # shapely Points, site order

    @classmethod
    def from_site(cls, site: Site) -> EvacuationNetwork:
        """Build the geometry of ``site`` (buildings, roads, road nodes)."""
        polygons = np.array([Polygon(b.footprint_m) for b in site.buildings] or [], dtype=object)
        lines = np.array([LineString(r.vertices_m) for r in site.roads], dtype=object)
        centroids = np.array([b.centroid_m for b in site.buildings], dtype=np.float64)
        positions = np.array([n.position_m for n in site.road_nodes], dtype=np.float64)
        return cls(
            site=site,
            building_polygons=polygons,
            building_centroids_m=_read_only(centroids.reshape(-1, 2)),
            road_lines=lines,
            road_lengths_m=_read_only([road.length_m for road in site.roads]),
            node_ids=tuple(node.id for node in site.road_nodes),
            node_positions_m=_read_only(positions.reshape(-1, 2)),
            node_points=np.asarray(shapely.points(positions.reshape(-1, 2)), dtype=object),
        )


# ---------------------------------------------------------------------------------------------
# Pieces


def occupancy_at(
    use: BuildingUse, local_time: dt.datetime, day_hours: Mapping[BuildingUse, DayHours]
) -> Occupancy:
    """Day or night occupancy of a building use at ``local_time`` (the site's wall clock)."""
    return Occupancy.DAY if day_hours[use].contains(local_time) else Occupancy.NIGHT


def _bearing_rad(from_m: FloatArray, to_m: FloatArray) -> float:
    """Bearing clockwise from north of ``to_m`` seen from ``from_m`` [rad], in [0, 2 pi)."""
    east, north = (to_m - from_m).tolist()
    return math.atan2(east, north) % (2.0 * math.pi)


def _angle_between_rad(a_rad: float, b_rad: float) -> float:
    """Absolute difference of two directions [rad], in [0, pi]."""
    return abs((a_rad - b_rad + math.pi) % (2.0 * math.pi) - math.pi)


def _length_inside(lines: NDArray[np.object_], area: BaseGeometry) -> FloatArray:
    """Length of each line inside ``area`` [m] (vectorized)."""
    lengths = np.zeros(lines.shape, dtype=np.float64)
    if area.is_empty or lines.size == 0:
        return lengths
    hits = np.asarray(shapely.intersects(lines, area), dtype=bool)  # cheap on a prepared area
    if hits.any():
        lengths[hits] = shapely.length(shapely.intersection(lines[hits], area))
    return lengths


def _sector(
    angle_from_downwind_rad: float,
    wind_known: bool,
    downwind_half_rad: float,
    upwind_half_rad: float,
) -> WindSector:
    if not wind_known:
        return WindSector.UNKNOWN
    if angle_from_downwind_rad <= downwind_half_rad:
        return WindSector.DOWNWIND
    if angle_from_downwind_rad >= math.pi - upwind_half_rad:
        return WindSector.UPWIND
    return WindSector.CROSSWIND


_SECTOR_ORDER: Final = {WindSector.UPWIND: 0, WindSector.CROSSWIND: 1, WindSector.UNKNOWN: 2}


@dataclass(frozen=True)
class _Candidate:
    """A usable assembly point while routing."""

    index: int  # into site.assembly_points
    node_index: int
    leg_m: float
    leg_yellow_m: float
    distances: Mapping[int, float]  # weighted cost from the access node to each graph node
    paths: Mapping[int, list[int]]  # node path from the access node to each graph node


def _valid_node_orders(
    origins_m: FloatArray,
    starts_inside: NDArray[np.bool_],
    *,
    node_positions_m: FloatArray,
    node_allowed: NDArray[np.bool_],
    exclusion: BaseGeometry,
    leak_m: FloatArray,
) -> list[list[int]]:
    """For each origin, the node indices its straight leg may go to, nearest first.

    A leg is allowed when its node is allowed (outside ``exclusion``) and:

    - from an origin whose building does not touch the exclusion area (``starts_inside`` false):
      the leg does not intersect ``exclusion``;
    - from one whose building touches it: the leg heads away from the leak (the distance to the
      leak never decreases along a straight leg whose direction has a non-negative component
      along leak -> origin) and, unless the origin point itself lies inside ``exclusion``, the
      leg does not intersect ``exclusion`` either.

    Ties in leg length go to the lower node index. All legs are tested in one vectorized call.
    """
    n_origins, n_nodes = len(origins_m), len(node_positions_m)
    if n_origins == 0 or n_nodes == 0:
        return [[] for _ in range(n_origins)]
    offsets = node_positions_m[np.newaxis, :, :] - origins_m[:, np.newaxis, :]  # (k, n, 2)
    leg_lengths = np.hypot(offsets[..., 0], offsets[..., 1])
    allowed = np.broadcast_to(node_allowed, (n_origins, n_nodes)).copy()
    if not exclusion.is_empty:
        starts = np.broadcast_to(origins_m[:, np.newaxis, :], offsets.shape)
        ends = np.broadcast_to(node_positions_m[np.newaxis], offsets.shape)
        legs = shapely.linestrings(np.stack([starts, ends], axis=2).reshape(-1, 2, 2))
        clear = ~np.asarray(shapely.intersects(legs, exclusion), dtype=bool).reshape(
            n_origins, n_nodes
        )
        away = np.einsum("knd,kd->kn", offsets, origins_m - leak_m) >= 0.0
        origin_in = np.asarray(shapely.intersects(shapely.points(origins_m), exclusion), dtype=bool)
        allowed &= np.where(
            starts_inside[:, np.newaxis], away & (clear | origin_in[:, np.newaxis]), clear
        )
    node_order = np.arange(n_nodes)
    orders = []
    for row in range(n_origins):
        order = np.lexsort((node_order, leg_lengths[row]))
        orders.append([int(index) for index in order if allowed[row, index]])
    return orders


def _legs_in_yellow_m(
    starts_m: Sequence[FloatArray], ends_m: Sequence[FloatArray], yellow: BaseGeometry
) -> FloatArray:
    """Length of each straight leg inside ``yellow`` [m] (one vectorized call)."""
    if not starts_m:
        return np.zeros(0, dtype=np.float64)
    legs = shapely.linestrings(np.stack([np.array(starts_m), np.array(ends_m)], axis=1))
    return _length_inside(np.asarray(legs, dtype=object), yellow)


def _polyline_of_path(
    site: Site, graph: nx.Graph[int], path: Sequence[int]
) -> tuple[list[FloatArray], list[int]]:
    """Vertices (one array per road, oriented along the path) and road indices of a node path."""
    pieces: list[FloatArray] = []
    road_indices: list[int] = []
    for first, second in pairwise(path):
        edge = graph.edges[first, second]
        road_index = int(edge["road"])
        vertices = site.roads[road_index].vertices_m
        pieces.append(vertices if edge["from_node"] == first else vertices[::-1])
        road_indices.append(road_index)
    return pieces, road_indices


def _join(points: list[FloatArray]) -> FloatArray:
    """Concatenate polyline pieces, dropping consecutive repeated vertices."""
    joined = np.concatenate([np.atleast_2d(piece) for piece in points])
    keep = np.ones(len(joined), dtype=bool)
    keep[1:] = np.any(np.diff(joined, axis=0) != 0.0, axis=1)
    return joined[keep]


# ---------------------------------------------------------------------------------------------
# The update


def assess_exposure(  # noqa: PLR0912, PLR0915 - one readable pass over the four questions
    network: EvacuationNetwork,
    *,
    red: BaseGeometry,
    yellow: BaseGeometry,
    isolation: BaseGeometry,
    leak_position_m: ArrayLike,
    wind_direction_from_rad: float | None,
    local_time: dt.datetime,
    wind_direction_half_spread_rad: float = 0.0,
    settings: ExposureSettings | None = None,
) -> ExposureAssessment:
    """Exposed buildings, usable assembly points, evacuation routes and roads to control.

    Parameters
    ----------
    network : EvacuationNetwork
        The site's geometry (:meth:`EvacuationNetwork.from_site`).
    red, yellow, isolation : shapely geometry
        The 60 %LEL zone, the 10 %LEL zone and the minimum isolation circle, site ENU [m]
        (Polygon or MultiPolygon; an empty geometry is no zone).
    leak_position_m : array_like (2,)
        East, north of the leak [m].
    wind_direction_from_rad : float or None
        Where the wind blows from, clockwise from north [rad]; ``None`` when unknown (calm): no
        downwind sector is excluded and a warning says so.
    local_time : datetime.datetime
        The site's local wall-clock time; its hour, minute and weekday pick day or night
        occupants (a timezone, if any, is not converted: convert to the site's zone first).
    wind_direction_half_spread_rad : float
        Half-width of the wind directions the zones were unioned over [rad]
        (``ThreatZones.direction_spread_deg`` in radians); the downwind sector excluded for
        assembly points is the wider of this and the settings' half-angle. A spread of pi (calm)
        excludes no sector, as an unknown direction does.
    settings : ExposureSettings, optional
        Speeds, margins, sectors and day hours; the stated defaults when omitted.

    Returns
    -------
    ExposureAssessment
    """
    settings = settings if settings is not None else ExposureSettings()
    site = network.site
    leak = np.asarray(leak_position_m, dtype=np.float64)
    if leak.shape != (2,):
        raise ValueError(f"leak_position_m must be (east, north), got shape {leak.shape}")
    if not wind_direction_half_spread_rad >= 0.0:
        raise ValueError("wind_direction_half_spread_rad must be >= 0 rad")
    # An invalid outline (a self-touching ring from a union, say) is repaired, not trusted.
    red, yellow, isolation = (
        geometry if shapely.is_valid(geometry) else shapely.make_valid(geometry)
        for geometry in (red, yellow, isolation)
    )
    zones = {Zone.RED: red, Zone.ISOLATION: isolation, Zone.YELLOW: yellow}
    exclusion = shapely.union(red, isolation)  # never crossed by a route
    hazard = shapely.union_all([red, isolation, yellow])
    # Prepared geometries answer the many point/line tests fast; preparing caches an index on the
    # geometry object and changes nothing else (the callers' zones included).
    shapely.prepare([red, yellow, isolation, exclusion, hazard])
    warnings: list[str] = []

    # 1. Buildings and occupants --------------------------------------------------------------
    building_in_zone = {
        zone: (
            np.zeros(len(site.buildings), dtype=bool)
            if geometry.is_empty or not site.buildings
            else np.asarray(shapely.intersects(network.building_polygons, geometry))
        )
        for zone, geometry in zones.items()
    }
    in_exclusion = building_in_zone[Zone.RED] | building_in_zone[Zone.ISOLATION]
    building_distances_m = (
        np.asarray(shapely.distance(network.building_polygons, Point(leak)), dtype=np.float64)
        if site.buildings
        else np.zeros(0)
    )
    exposed: list[tuple[int, ExposedBuilding]] = []
    for index, building in enumerate(site.buildings):
        touched = tuple(zone for zone in ZONE_SEVERITY if building_in_zone[zone][index])
        if not touched:
            continue
        occupancy = occupancy_at(building.use, local_time, settings.day_hours)
        occupants = (
            building.occupants_day if occupancy is Occupancy.DAY else building.occupants_night
        )
        exposed.append(
            (
                index,
                ExposedBuilding(
                    building_id=building.id,
                    name=building.name,
                    use=building.use,
                    sensitive=building.sensitive,
                    zones=touched,
                    occupancy=occupancy,
                    occupants=occupants,
                    distance_from_leak_m=float(building_distances_m[index]),
                ),
            )
        )
    exposed.sort(
        key=lambda item: (
            not item[1].sensitive,
            ZONE_SEVERITY.index(item[1].worst_zone),
            -item[1].occupants,
            item[1].building_id,
        )
    )
    zone_totals = (
        *(
            _totals(zone.value, [b for _, b in exposed if zone in b.zones])
            for zone in ZONE_SEVERITY
        ),
        _totals("any", [b for _, b in exposed]),
    )
    persons_to_evacuate = sum(b.occupants for _, b in exposed)

    # 2. Route graph without the red zone and the isolation circle ----------------------------
    roads_blocked = (
        np.zeros(len(site.roads), dtype=bool)
        if exclusion.is_empty or not site.roads
        else np.asarray(shapely.intersects(network.road_lines, exclusion))
    )
    road_yellow_m = _length_inside(network.road_lines, yellow)
    node_index = {node_id: i for i, node_id in enumerate(network.node_ids)}
    node_allowed = (
        np.ones(len(network.node_ids), dtype=bool)
        if exclusion.is_empty
        else ~np.asarray(shapely.intersects(network.node_points, exclusion), dtype=bool)
    )
    graph: nx.Graph[int] = nx.Graph()
    graph.add_nodes_from(range(len(network.node_ids)))
    penalty_extra = settings.yellow_penalty - 1.0
    for road_index, road in enumerate(site.roads):
        if roads_blocked[road_index]:
            continue
        first, second = node_index[road.from_node], node_index[road.to_node]
        weight = float(
            network.road_lengths_m[road_index] + penalty_extra * road_yellow_m[road_index]
        )
        if graph.has_edge(first, second) and graph.edges[first, second]["weight"] <= weight:
            continue  # a parallel road that is no shorter
        graph.add_edge(first, second, weight=weight, road=road_index, from_node=first)

    # 3. Assembly points ----------------------------------------------------------------------
    downwind_rad = ((wind_direction_from_rad or 0.0) + math.pi) % (2.0 * math.pi)
    downwind_half_rad = min(
        math.pi, max(settings.downwind_half_angle_rad, wind_direction_half_spread_rad)
    )
    # A sector over every direction (a calm: the zones are already drawn all round) would exclude
    # every point; the zones and the margin then decide alone, as with an unknown direction.
    wind_known = wind_direction_from_rad is not None and downwind_half_rad < math.pi
    if wind_direction_from_rad is None:
        warnings.append(
            "wind direction unknown: no downwind sector excluded for assembly points; "
            "choose them by the observed cloud"
        )
    elif not wind_known:
        warnings.append(
            "wind direction spread covers every direction (calm): no downwind sector excluded "
            "for assembly points; choose them by the observed cloud"
        )
    n_points = len(site.assembly_points)
    point_positions = np.array(
        [point.position_m for point in site.assembly_points], dtype=np.float64
    ).reshape(-1, 2)
    point_geometries = shapely.points(point_positions)
    clearances = (
        np.full(n_points, math.inf)
        if hazard.is_empty
        else np.asarray(shapely.distance(point_geometries, hazard), dtype=np.float64)
    )
    point_in_zone = {
        zone: (
            np.zeros(n_points, dtype=bool)
            if geometry.is_empty or n_points == 0
            else np.asarray(shapely.intersects(point_geometries, geometry), dtype=bool)
        )
        for zone, geometry in zones.items()
    }
    point_orders = _valid_node_orders(
        point_positions,
        np.zeros(n_points, dtype=bool),
        node_positions_m=network.node_positions_m,
        node_allowed=node_allowed,
        exclusion=exclusion,
        leak_m=leak,
    )
    point_facts: list[dict[str, Any]] = []
    for ap_index in range(n_points):
        bearing = _bearing_rad(leak, point_positions[ap_index])
        angle = _angle_between_rad(bearing, downwind_rad) if wind_known else math.pi
        sector = _sector(angle, wind_known, downwind_half_rad, settings.upwind_half_angle_rad)
        clearance = float(clearances[ap_index])
        reasons: list[str] = []
        inside = [zone.value for zone in ZONE_SEVERITY if point_in_zone[zone][ap_index]]
        if inside:
            reasons.append(f"inside the {', '.join(inside)} zone")
        elif clearance < settings.assembly_margin_m:
            reasons.append(
                f"{clearance:.0f} m from the zones, closer than the "
                f"{settings.assembly_margin_m:.0f} m margin"
            )
        if sector is WindSector.DOWNWIND:
            reasons.append(
                f"downwind: {math.degrees(angle):.0f} deg off the downwind direction, inside "
                f"+-{math.degrees(downwind_half_rad):.0f} deg"
            )
        # the nearest node with an allowed leg that still has a road
        access_node = next((n for n in point_orders[ap_index] if graph.degree(n) > 0), None)
        if access_node is None:
            reasons.append("no road access outside the red zone and the isolation circle")
        point_facts.append(
            {
                "bearing": bearing,
                "angle": angle,
                "sector": sector,
                "clearance": clearance,
                "reasons": tuple(reasons),
                "access_node": access_node,
            }
        )
    usable_points = [i for i in range(n_points) if not point_facts[i]["reasons"]]
    usable_nodes = [int(point_facts[i]["access_node"]) for i in usable_points]
    point_leg_yellow_m = _legs_in_yellow_m(
        [point_positions[i] for i in usable_points],
        [network.node_positions_m[n] for n in usable_nodes],
        yellow,
    )
    candidates: list[_Candidate] = []
    for ap_index, access_node, leg_yellow_m in zip(
        usable_points, usable_nodes, point_leg_yellow_m, strict=True
    ):
        distances, paths = nx.single_source_dijkstra(graph, access_node, weight="weight")
        if not (isinstance(distances, dict) and isinstance(paths, dict)):  # pragma: no cover
            raise TypeError("networkx returned a single path without a target")
        candidates.append(
            _Candidate(
                index=ap_index,
                node_index=access_node,
                leg_m=float(
                    np.hypot(*(point_positions[ap_index] - network.node_positions_m[access_node]))
                ),
                leg_yellow_m=float(leg_yellow_m),
                distances=distances,
                paths=paths,
            )
        )
    usable_order = sorted(
        (c.index for c in candidates),
        key=lambda i: (
            _SECTOR_ORDER[point_facts[i]["sector"]],
            -point_facts[i]["clearance"],
            site.assembly_points[i].id,
        ),
    )
    rank_of = {ap_index: rank + 1 for rank, ap_index in enumerate(usable_order)}
    candidates.sort(key=lambda c: rank_of[c.index])
    usable_capacity = sum(site.assembly_points[c.index].capacity_persons for c in candidates)
    if not candidates:
        warnings.append("no usable assembly point: every one is in, near or downwind of a zone")

    # 4. Routes, in building priority order, filling assembly points by capacity -------------
    exposed_rows = np.array([index for index, _ in exposed], dtype=np.intp)
    centroids = network.building_centroids_m[exposed_rows].reshape(-1, 2)
    starts_inside = in_exclusion[exposed_rows]
    building_orders = _valid_node_orders(
        centroids,
        starts_inside,
        node_positions_m=network.node_positions_m,
        node_allowed=node_allowed,
        exclusion=exclusion,
        leak_m=leak,
    )
    # each building starts at its nearest allowed node from which a usable point is reachable
    start_nodes = [
        next((n for n in order if any(n in c.distances for c in candidates)), None)
        for order in building_orders
    ]
    routed_rows = [row for row, node in enumerate(start_nodes) if node is not None]
    access_yellow_m = dict(
        zip(
            routed_rows,
            _legs_in_yellow_m(
                [centroids[row] for row in routed_rows],
                [network.node_positions_m[start_nodes[row]] for row in routed_rows],
                yellow,
            ).tolist(),
            strict=True,
        )
    )
    remaining = {c.index: site.assembly_points[c.index].capacity_persons for c in candidates}
    assigned = dict.fromkeys(range(n_points), 0)
    routes: list[EvacuationRoute] = []
    unrouted: list[UnroutedBuilding] = []
    for row, (_, exposed_building) in enumerate(exposed):
        start = start_nodes[row]
        if start is None:
            inside_exclusion = bool(starts_inside[row])
            reason = (
                "no usable assembly point"
                if not candidates
                else (
                    "no road node reachable "
                    + ("away from the leak " if inside_exclusion else "")
                    + "without crossing the red zone or the isolation circle (building "
                    + ("inside them)" if inside_exclusion else "outside them)")
                )
            )
            unrouted.append(
                UnroutedBuilding(exposed_building.building_id, exposed_building.occupants, reason)
            )
            continue
        centroid = centroids[row]
        # Every candidate reaching the start node, cheapest first (ties: the better-ranked point).
        reachable = sorted(
            (c for c in candidates if start in c.distances),
            key=lambda c: (
                c.distances[start] + c.leg_m + penalty_extra * c.leg_yellow_m,
                rank_of[c.index],
            ),
        )
        occupants = exposed_building.occupants
        roomy = [c for c in reachable if remaining[c.index] >= occupants]
        over_capacity = not roomy
        chosen = (roomy or reachable)[0]
        remaining[chosen.index] -= occupants
        assigned[chosen.index] += occupants
        path = list(reversed(chosen.paths[start]))  # building side -> assembly point side
        pieces, road_indices = _polyline_of_path(site, graph, path)
        polyline = _join(
            [
                centroid,
                network.node_positions_m[start],
                *pieces,
                point_positions[chosen.index],
            ]
        )
        length_m = float(np.sum(np.hypot(*np.diff(polyline, axis=0).T)))
        yellow_m = (
            access_yellow_m[row] + float(np.sum(road_yellow_m[road_indices])) + chosen.leg_yellow_m
        )
        roads = [site.roads[index] for index in road_indices]
        routes.append(
            EvacuationRoute(
                building_id=exposed_building.building_id,
                assembly_point_id=site.assembly_points[chosen.index].id,
                occupants=occupants,
                start_node_id=network.node_ids[start],
                node_ids=tuple(network.node_ids[n] for n in path),
                road_ids=tuple(road.id for road in roads),
                road_names=tuple(name for name, _ in groupby(road.name for road in roads)),
                polyline_m=polyline,
                length_m=length_m,
                access_leg_m=float(np.hypot(*(network.node_positions_m[start] - centroid))),
                length_in_yellow_m=yellow_m,
                walking_time_s=length_m / settings.walking_speed_m_per_s,
                slow_walking_time_s=length_m / settings.slow_walking_speed_m_per_s,
                over_capacity=over_capacity,
            )
        )
    if unrouted:
        warnings.append(
            f"{len(unrouted)} building(s), {sum(b.occupants for b in unrouted)} people, without a "
            "safe walking route: shelter in place or escort"
        )
    if persons_to_evacuate > usable_capacity and candidates:
        warnings.append(
            f"usable assembly points hold {usable_capacity} people, "
            f"{persons_to_evacuate - usable_capacity} fewer than the {persons_to_evacuate} to "
            "evacuate"
        )
    crossing = [route.building_id for route in routes if route.crosses_yellow]
    if crossing:
        warnings.append(f"routes from {', '.join(crossing)} cross the yellow zone")

    statuses = tuple(
        AssemblyPointStatus(
            assembly_point_id=point.id,
            name=point.name,
            position_m=point.position_m,
            capacity_persons=point.capacity_persons,
            usable=i in rank_of,
            rank=rank_of.get(i),
            wind_sector=point_facts[i]["sector"],
            bearing_from_leak_rad=point_facts[i]["bearing"],
            angle_from_downwind_rad=point_facts[i]["angle"],
            distance_from_leak_m=float(np.hypot(*(point.position_m - leak))),
            clearance_from_zones_m=point_facts[i]["clearance"],
            access_node_id=(
                None
                if point_facts[i]["access_node"] is None
                else network.node_ids[point_facts[i]["access_node"]]
            ),
            reasons=point_facts[i]["reasons"],
            assigned_persons=assigned[i],
        )
        for i, point in enumerate(site.assembly_points)
    )
    statuses = tuple(
        sorted(
            statuses,
            key=lambda s: (s.rank is None, s.rank or 0, s.assembly_point_id),
        )
    )

    # 5. Roads for traffic control ------------------------------------------------------------
    road_zones = {
        zone: (
            np.zeros(len(site.roads), dtype=bool)
            if geometry.is_empty or not site.roads
            else np.asarray(shapely.intersects(network.road_lines, geometry))
        )
        for zone, geometry in zones.items()
    }
    road_hazard_m = _length_inside(network.road_lines, hazard)
    controlled = [
        TrafficControlRoad(
            road_id=road.id,
            name=road.name,
            zones=tuple(zone for zone in ZONE_SEVERITY if road_zones[zone][i]),
            closed=bool(roads_blocked[i]),
            length_in_zones_m=float(road_hazard_m[i]),
        )
        for i, road in enumerate(site.roads)
        if any(road_zones[zone][i] for zone in ZONE_SEVERITY)
    ]
    controlled.sort(
        key=lambda r: (not r.closed, ZONE_SEVERITY.index(r.zones[0]), r.name, r.road_id)
    )

    return ExposureAssessment(
        local_time=local_time,
        leak_position_m=leak,
        wind_direction_from_rad=wind_direction_from_rad,
        downwind_half_angle_rad=downwind_half_rad,
        buildings=tuple(b for _, b in exposed),
        zone_totals=zone_totals,
        assembly_points=statuses,
        routes=tuple(routes),
        unrouted=tuple(unrouted),
        traffic_control=tuple(controlled),
        persons_to_evacuate=persons_to_evacuate,
        usable_capacity_persons=usable_capacity,
        warnings=tuple(warnings),
        settings=settings,
    )


def _totals(zone: str, buildings: Sequence[ExposedBuilding]) -> ZoneTotals:
    sensitive = [b for b in buildings if b.sensitive]
    return ZoneTotals(
        zone=zone,
        building_count=len(buildings),
        occupants=sum(b.occupants for b in buildings),
        sensitive_building_count=len(sensitive),
        sensitive_occupants=sum(b.occupants for b in sensitive),
    )
