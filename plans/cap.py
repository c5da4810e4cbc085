"""Public evacuation alerts in the OASIS Common Alerting Protocol 1.2 (CAP), and their validation.

:func:`cap_alert` writes one CAP 1.2 ``<alert>`` (namespace
``urn:oasis:names:tc:emergency:cap:1.2``) for a pipeline gas leak: one ``<info>`` block per
threat zone (red: evacuate, yellow: be ready), each with the zone's areas as
``<polygon>``/``<circle>`` elements, urgency/severity/certainty mapped from the incident by
:func:`rate_zone`, plain-language instructions, and machine-readable ``<parameter>`` pairs.
Every alert is checked by :func:`validate_cap` before it is returned.

:func:`validate_cap` checks a CAP 1.2 document against the OASIS schema shipped in
``plans/schemas/CAP-v1.2.xsd`` (provenance in that file) and then against the rules of the
specification that the schema cannot express. Each failure names the element's path.

All references to sections are to *Common Alerting Protocol Version 1.2*, OASIS Standard,
1 July 2010 ("CAP 1.2"). Pure: no I/O except reading the schema file shipped with the package.
Inputs are plain values (rings of longitude/latitude, or site ENU metres and the site origin) so
this module does not depend on how the zones were computed. See docs/cap.md.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import shapely
import xmlschema
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import Polygon

from pipesentinel.detection.gases import LelBasis
from pipesentinel.geo import geodetic_to_enu, lon_lat
from pipesentinel.site import Gas, GeoOrigin

FloatArray = NDArray[np.float64]

CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
"""XML namespace of CAP 1.2 (section 3.1)."""

CAP_SCHEMA_PATH: Final = Path(__file__).with_name("schemas") / "CAP-v1.2.xsd"
"""The OASIS CAP 1.2 schema (provenance in the file's header comment)."""

MAX_HEADLINE_CHARS: Final = 160
"""CAP 1.2 section 3.2.2, ``<headline>``: "160 characters MAY be a useful target limit for headline
length" (some displays, e.g. SMS devices, show only the headline). Enforced for our alerts."""

MAX_POLYGON_VERTICES: Final = 100
"""Distinct vertices per ``<polygon>`` that :func:`cap_area` keeps (the closing repeat of the first
pair is extra). CAP 1.2 sets no upper bound; this is a design bound that keeps alerts small for
broadcast gateways. 100 is the polygon limit usually quoted for Wireless Emergency Alert gateways
(from memory, not verified here). Larger rings are simplified *outward* (never shrunk)."""

MIN_POLYGON_PAIRS: Final = 4
"""CAP 1.2 section 3.2.4, ``<polygon>``: "A minimum of 4 coordinate pairs MUST be present and the
first and last pairs of coordinates MUST be the same"."""

COORDINATE_DECIMALS: Final = 6
"""Decimal places of latitude/longitude written [deg]: 1e-6 deg is 0.11 m of latitude."""

DEFAULT_EXPIRES_AFTER_S: Final = 3600.0
"""Default validity of an alert after ``sent`` [s]. A design choice: the response module re-issues
an ``Update`` on every incident change and well before this lapses; CAP 1.2 section 3.2.2 leaves
``<expires>`` to the sender ("if this item is not provided, each recipient is free to set its own
policy")."""

FEET_PER_METRE: Final = 1.0 / 0.3048
"""CAP ``<altitude>``/``<ceiling>`` are in feet above mean sea level (CAP 1.2 section 3.2.4); the
international foot is exactly 0.3048 m (NIST SP 811, 2008, appendix B.8)."""

THREAT_LEVEL_PERCENT_LEL: Final[Mapping[str, int]] = MappingProxyType({"red": 60, "yellow": 10})
"""Flammable levels of concern of the threat zones, %LEL: NOAA ALOHA's defaults, red 60 % and
yellow 10 % of the lower explosive limit (as stated in issue 4; ALOHA's documentation, e.g. NOAA
Technical Memorandum NOS OR&R 43, 2013 - the section was not re-checked here). Used only in texts
and parameters; the zones themselves are computed elsewhere."""

_DATETIME_PATTERN: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d")
"""CAP 1.2 section 3.3.2 "DateTime Data Type": YYYY-MM-DDThh:mm:ssXzh:zm, no fractional seconds,
no letter time zones."""

_RESTRICTED: Final = re.compile(r"[\s,<&]")
"""Characters CAP 1.2 section 3.2.1 forbids in ``<identifier>`` and ``<sender>`` (spaces, commas
and the restricted characters < and &)."""


# --------------------------------------------------------------------------------------------
# Code values (CAP 1.2 section 3.2, value definitions quoted in docs/cap.md)


class CapStatus(StrEnum):
    """``<status>`` (3.2.1): exercises and tests are marked so nobody acts on them."""

    ACTUAL = "Actual"  # actionable by all targeted recipients
    EXERCISE = "Exercise"  # actionable only by designated exercise participants
    TEST = "Test"  # technical testing only, all recipients disregard


class CapMsgType(StrEnum):
    """``<msgType>`` (3.2.1)."""

    ALERT = "Alert"  # initial information requiring attention by targeted recipients
    UPDATE = "Update"  # updates and supersedes the earlier message(s) in <references>
    CANCEL = "Cancel"  # cancels the earlier message(s) identified in <references>


class CapCategory(StrEnum):
    """``<category>`` (3.2.2), the values used here."""

    SAFETY = "Safety"  # general emergency and public safety
    ENV = "Env"  # pollution and other environmental
    FIRE = "Fire"  # fire suppression and rescue


class CapResponseType(StrEnum):
    """``<responseType>`` (3.2.2), the values used here."""

    SHELTER = "Shelter"  # take shelter in place or per <instruction>
    EVACUATE = "Evacuate"  # relocate as instructed in the <instruction>
    PREPARE = "Prepare"  # make preparations per the <instruction>
    AVOID = "Avoid"  # avoid the subject event as per the <instruction>
    ALL_CLEAR = "AllClear"  # the subject event no longer poses a threat or concern


class CapUrgency(StrEnum):
    """``<urgency>`` (3.2.2)."""

    IMMEDIATE = "Immediate"  # responsive action SHOULD be taken immediately
    EXPECTED = "Expected"  # responsive action SHOULD be taken soon (within next hour)
    FUTURE = "Future"  # responsive action SHOULD be taken in the near future
    PAST = "Past"  # responsive action is no longer required
    UNKNOWN = "Unknown"


class CapSeverity(StrEnum):
    """``<severity>`` (3.2.2)."""

    EXTREME = "Extreme"  # extraordinary threat to life or property
    SEVERE = "Severe"  # significant threat to life or property
    MODERATE = "Moderate"  # possible threat to life or property
    MINOR = "Minor"  # minimal to no known threat to life or property
    UNKNOWN = "Unknown"


class CapCertainty(StrEnum):
    """``<certainty>`` (3.2.2)."""

    OBSERVED = "Observed"  # determined to have occurred or to be ongoing
    LIKELY = "Likely"  # likely (p > ~50 %)
    POSSIBLE = "Possible"  # possible but not likely (p <= ~50 %)
    UNLIKELY = "Unlikely"  # not expected to occur (p ~ 0)
    UNKNOWN = "Unknown"


class ThreatLevel(StrEnum):
    """Which threat zone an ``<info>`` block covers."""

    RED = "red"  # >= 60 %LEL, and the minimum isolation radius around the leak: evacuate
    YELLOW = "yellow"  # >= 10 %LEL: be ready to leave, keep out of the red zone


class CapError(ValueError):
    """Inputs from which no valid CAP alert can be written."""


class CapValidationError(ValueError):
    """A CAP document that breaks the schema or a CAP 1.2 rule; ``path`` names the element."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class CapSender:
    """Who issues the alert.

    ``sender_id`` is ``<sender>`` (globally unique, e.g. an e-mail-like address; no spaces, commas,
    < or &), ``name`` is ``<senderName>`` (the agency as the public knows it), ``web`` a URL with
    more information, ``contact`` a phone number or office for follow-up.
    """

    sender_id: str
    name: str
    web: str | None = None
    contact: str | None = None


@dataclass(frozen=True)
class CapReference:
    """An earlier message, written ``sender,identifier,sent`` in ``<references>`` (3.2.1)."""

    sender: str
    identifier: str
    sent: datetime

    def text(self) -> str:
        """The extended message identifier ``sender,identifier,sent``."""
        return f"{self.sender},{self.identifier},{cap_datetime(self.sent)}"


@dataclass(frozen=True)
class CapCircle:
    """A circle: centre on WGS84 [deg] and radius [m] (written in km, rounded up)."""

    latitude_deg: float
    longitude_deg: float
    radius_m: float


@dataclass(frozen=True)
class CapArea:
    """One ``<area>`` block: polygons (open rings of (longitude, latitude) [deg]) and circles.

    Build it with :func:`cap_area` or :func:`cap_area_from_site`, which check and bound the rings.
    ``altitude_msl_m``/``ceiling_msl_m`` are heights above mean sea level [m] (written in feet).
    ``simplified_polygon_count`` says how many rings were simplified outward.
    """

    description: str
    polygons_lon_lat_deg: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[CapCircle, ...] = ()
    altitude_msl_m: float | None = None
    ceiling_msl_m: float | None = None
    simplified_polygon_count: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types; rings as ``[[lon, lat], ...]`` (closed, as in GeoJSON)."""
        return {
            "description": self.description,
            "polygons_lon_lat_deg": [
                [list(point) for point in (*ring, ring[0])] for ring in self.polygons_lon_lat_deg
            ],
            "circles": [
                {
                    "latitude_deg": circle.latitude_deg,
                    "longitude_deg": circle.longitude_deg,
                    "radius_m": circle.radius_m,
                }
                for circle in self.circles
            ],
            "altitude_msl_m": self.altitude_msl_m,
            "ceiling_msl_m": self.ceiling_msl_m,
            "simplified_polygon_count": self.simplified_polygon_count,
        }


@dataclass(frozen=True)
class CapZone:
    """One threat zone: becomes one ``<info>`` block.

    ``occupants`` is the number of people in the zone at the time of day [persons];
    ``response_types`` overrides the mapping of :func:`rate_zone` when not empty.
    """

    threat_level: ThreatLevel
    areas: tuple[CapArea, ...]
    occupants: int = 0
    response_types: tuple[CapResponseType, ...] = ()


@dataclass(frozen=True)
class CapIncident:
    """What the alert says about the leak.

    ``version`` is the incident's version (the identifier is ``{incident_id}.{version}``);
    ``leak_confirmed`` is true once the zone vote confirmed the leak, false while only suspected;
    ``zones_low_confidence`` flags zones drawn where the dispersion model reaches its limits;
    ``emission_rate_kg_per_s`` is the estimated release rate [kg s-1]; ``wind_from_deg`` is the
    direction the wind blows from, clockwise from north [deg].
    """

    incident_id: str
    version: int
    gas: Gas
    leak_confirmed: bool
    location_description: str
    ignition_observed: bool = False
    zones_low_confidence: bool = False
    emission_rate_kg_per_s: float | None = None
    lel_basis: LelBasis | None = None
    wind_from_deg: float | None = None


@dataclass(frozen=True)
class CapRating:
    """Urgency, severity, certainty and response types of one zone, with the reason."""

    urgency: CapUrgency
    severity: CapSeverity
    certainty: CapCertainty
    response_types: tuple[CapResponseType, ...]
    rationale: str

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "urgency": self.urgency.value,
            "severity": self.severity.value,
            "certainty": self.certainty.value,
            "response_types": [response.value for response in self.response_types],
            "rationale": self.rationale,
        }


# --------------------------------------------------------------------------------------------
# Mapping the incident to urgency, severity and certainty


def rate_zone(  # noqa: PLR0911 - one return per row of the documented table
    *,
    threat_level: ThreatLevel,
    leak_confirmed: bool,
    occupants: int,
    ignition_observed: bool = False,
    cancelled: bool = False,
) -> CapRating:
    """CAP urgency/severity/certainty and response types for one zone (table in docs/cap.md).

    ============================  ==========  ========  =========  ===================
    case (first match)            urgency     severity  certainty  responseType
    ============================  ==========  ========  =========  ===================
    cancelled (all clear)         Past        Minor     Observed   AllClear
    confirmed, ignition observed  Immediate   Extreme   Observed   Evacuate
    confirmed, red, occupied      Immediate   Severe    Observed   Evacuate
    confirmed, red, nobody in it  Immediate   Moderate  Observed   Avoid
    confirmed, yellow             Expected    Moderate  Observed   Prepare, Avoid
    suspected, red                Expected    Moderate  Possible   Prepare, Avoid
    suspected, yellow             Expected    Minor     Possible   Prepare
    ============================  ==========  ========  =========  ===================

    Parameters
    ----------
    threat_level : ThreatLevel
        The zone.
    leak_confirmed : bool
        The leak is confirmed (zone vote confirmed), not only suspected.
    occupants : int
        People in the zone at the time of day [persons].
    ignition_observed : bool
        A fire or explosion has been reported.
    cancelled : bool
        The alert is being cancelled (the incident is over).

    Returns
    -------
    CapRating
    """
    red = threat_level is ThreatLevel.RED
    if cancelled:
        return CapRating(
            CapUrgency.PAST,
            CapSeverity.MINOR,
            CapCertainty.OBSERVED,
            (CapResponseType.ALL_CLEAR,),
            "alert cancelled: responsive action is no longer required",
        )
    if leak_confirmed and ignition_observed:
        return CapRating(
            CapUrgency.IMMEDIATE,
            CapSeverity.EXTREME,
            CapCertainty.OBSERVED,
            (CapResponseType.EVACUATE,),
            "confirmed leak with fire or explosion reported: extraordinary threat to life",
        )
    if leak_confirmed and red and occupants > 0:
        return CapRating(
            CapUrgency.IMMEDIATE,
            CapSeverity.SEVERE,
            CapCertainty.OBSERVED,
            (CapResponseType.EVACUATE,),
            f"confirmed leak, {occupants} people inside the red zone: significant threat to life",
        )
    if leak_confirmed and red:
        return CapRating(
            CapUrgency.IMMEDIATE,
            CapSeverity.MODERATE,
            CapCertainty.OBSERVED,
            (CapResponseType.AVOID,),
            "confirmed leak, nobody counted inside the red zone: keep people out",
        )
    if leak_confirmed:
        return CapRating(
            CapUrgency.EXPECTED,
            CapSeverity.MODERATE,
            CapCertainty.OBSERVED,
            (CapResponseType.PREPARE, CapResponseType.AVOID),
            "confirmed leak, yellow zone: possible threat if the cloud grows or the wind shifts",
        )
    if red:
        return CapRating(
            CapUrgency.EXPECTED,
            CapSeverity.MODERATE,
            CapCertainty.POSSIBLE,
            (CapResponseType.PREPARE, CapResponseType.AVOID),
            "suspected leak, not yet confirmed: be ready to leave the red zone",
        )
    return CapRating(
        CapUrgency.EXPECTED,
        CapSeverity.MINOR,
        CapCertainty.POSSIBLE,
        (CapResponseType.PREPARE,),
        "suspected leak, yellow zone: be ready",
    )


# --------------------------------------------------------------------------------------------
# Formats


def cap_datetime(moment: datetime) -> str:
    """A CAP 1.2 dateTime (3.3.2): ``2026-12-03T16:49:00+08:00``, UTC written ``-00:00``.

    Fractional seconds are dropped; the time must carry a time zone whose offset is whole minutes.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise CapError(f"CAP times need a time zone offset, got the naive time {moment!r}")
    if offset.total_seconds() % 60:
        raise CapError(f"CAP time zone offsets are whole minutes, got {offset}")
    text = moment.replace(microsecond=0).isoformat(timespec="seconds")
    if offset == timedelta(0):
        text = text[: -len("+00:00")] + "-00:00"
    return text


def parse_cap_datetime(text: str) -> datetime:
    """Inverse of :func:`cap_datetime`; raises :class:`ValueError` on another format."""
    stripped = text.strip()
    if not _DATETIME_PATTERN.fullmatch(stripped):
        raise ValueError(
            f"{stripped!r} is not a CAP dateTime YYYY-MM-DDThh:mm:ss+hh:mm (CAP 1.2 section 3.3.2)"
        )
    return datetime.fromisoformat(stripped)


def cap_identifier(incident_id: str, version: int) -> str:
    """The alert ``<identifier>``: ``{incident_id}.{version}``, stable for an incident version.

    The pattern follows the example of CAP 1.2 appendix A.3 (``TRI13970876.2``).
    """
    identifier = f"{incident_id}.{version}"
    _check_token("identifier", identifier)
    return identifier


def _check_token(name: str, value: str) -> None:
    if not value or _RESTRICTED.search(value):
        raise CapError(
            f"{name} {value!r} must be non-empty without spaces, commas, < or & "
            "(CAP 1.2 section 3.2.1)"
        )


def parse_cap_polygon(text: str) -> FloatArray:
    """``"lat,lon lat,lon ..."`` to an (n, 2) array of (longitude, latitude) [deg].

    The closing pair is kept. Raises :class:`ValueError` on a malformed pair.
    """
    pairs = text.split()
    points = np.empty((len(pairs), 2))
    for index, pair in enumerate(pairs):
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(f"coordinate pair {index + 1} {pair!r} is not 'lat,lon'")
        points[index] = float(parts[1]), float(parts[0])
    return points


def _format_pair(longitude_deg: float, latitude_deg: float) -> str:
    return f"{latitude_deg:.{COORDINATE_DECIMALS}f},{longitude_deg:.{COORDINATE_DECIMALS}f}"


def _polygon_text(ring: Sequence[tuple[float, float]]) -> str:
    return " ".join(_format_pair(lon, lat) for lon, lat in (*ring, ring[0]))


def _circle_text(circle: CapCircle) -> str:
    # Radius rounded *up* to the metre so the written circle never shrinks.
    radius_km = math.ceil(circle.radius_m) / 1000.0
    return f"{_format_pair(circle.longitude_deg, circle.latitude_deg)} {radius_km:.3f}"


# --------------------------------------------------------------------------------------------
# Areas


def _open_ring(points: FloatArray, what: str) -> FloatArray:
    if points.ndim != 2 or points.shape[1] != 2 or not np.all(np.isfinite(points)):
        raise CapError(f"{what}: expected an (n, 2) array of finite numbers, got {points.shape}")
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    if len(np.unique(points, axis=0)) < MIN_POLYGON_PAIRS - 1:
        raise CapError(f"{what}: a polygon needs at least 3 distinct vertices")
    east, north = points.T
    if np.dot(east, np.roll(north, -1)) == np.dot(north, np.roll(east, -1)):
        raise CapError(f"{what}: the polygon has no area (collinear vertices)")
    if not Polygon(points).is_valid:
        raise CapError(
            f"{what}: the ring crosses itself; pass the parts of a multi-polygon as separate rings"
        )
    return points


def _exterior_coords(geometry: shapely.Geometry) -> FloatArray:
    """Closed exterior ring of a polygon result (hull, envelope) [m]."""
    if not isinstance(geometry, Polygon):  # pragma: no cover - input rings have an area
        raise CapError(f"expected a polygon, got {geometry!r}")
    return np.asarray(geometry.exterior.coords)


def bounded_ring_m(ring_m: ArrayLike, max_vertices: int = MAX_POLYGON_VERTICES) -> FloatArray:
    """An open ring of at most ``max_vertices`` vertices that covers the polygon ``ring_m``.

    Rings within the bound are returned unchanged (open). Larger ones are simplified by
    Douglas-Peucker at a tolerance ``t`` and then buffered outward by ``t`` with mitred corners:
    every point of the original boundary lies within ``t`` of the simplified one, so the buffer
    covers the original (checked); ``t`` doubles from 0.1 % of the polygon's size until the vertex
    count fits; holes the buffer may leave are filled. If nothing fits, the oriented bounding
    rectangle is used. Rings that cross themselves are refused.

    Parameters
    ----------
    ring_m : array_like
        (n, 2) vertices in a local metric frame, open or closed [m].
    max_vertices : int
        Largest number of distinct vertices kept (>= 4).

    Returns
    -------
    (k, 2) array, k <= max_vertices, open ring [m].
    """
    if max_vertices < MIN_POLYGON_PAIRS:
        raise CapError(f"max_vertices must be >= {MIN_POLYGON_PAIRS}, got {max_vertices}")
    points = _open_ring(np.asarray(ring_m, dtype=np.float64), "ring")
    if len(points) <= max_vertices:
        return points
    polygon = Polygon(points)
    minx, miny, maxx, maxy = polygon.bounds
    tolerance_m = 1e-3 * max(maxx - minx, maxy - miny)
    for _ in range(40):
        simplified = polygon.simplify(tolerance_m, preserve_topology=True)
        candidate = simplified.buffer(
            tolerance_m, join_style=shapely.BufferJoinStyle.mitre, mitre_limit=4.0
        )
        if isinstance(candidate, Polygon):
            candidate = Polygon(candidate.exterior)
            vertices = np.asarray(candidate.exterior.coords)[:-1]
            if len(vertices) <= max_vertices and candidate.covers(polygon):
                return vertices
        tolerance_m *= 2.0
    return _exterior_coords(shapely.oriented_envelope(polygon))[:-1]


def _check_lon_lat(points: FloatArray, what: str) -> None:
    if np.any(np.abs(points[:, 0]) > 180.0) or np.any(np.abs(points[:, 1]) > 90.0):
        raise CapError(f"{what}: longitude must lie in [-180, 180] and latitude in [-90, 90] deg")


def _circle_checked(circle: CapCircle, what: str) -> CapCircle:
    _check_lon_lat(np.array([[circle.longitude_deg, circle.latitude_deg]]), what)
    if not (math.isfinite(circle.radius_m) and circle.radius_m >= 0.0):
        raise CapError(f"{what}: radius must be finite and >= 0, got {circle.radius_m} m")
    return circle


def _area(
    description: str,
    *,
    rings: list[tuple[tuple[float, float], ...]],
    circles: Sequence[CapCircle],
    simplified: int,
    altitude_msl_m: float | None,
    ceiling_msl_m: float | None,
) -> CapArea:
    if not description.strip():
        raise CapError("an area needs a description (<areaDesc>)")
    if ceiling_msl_m is not None and altitude_msl_m is None:
        raise CapError("a ceiling needs an altitude (CAP 1.2 section 3.2.4, <ceiling>)")
    checked = tuple(_circle_checked(circle, f"circle {i}") for i, circle in enumerate(circles))
    return CapArea(
        description=description,
        polygons_lon_lat_deg=tuple(rings),
        circles=checked,
        altitude_msl_m=altitude_msl_m,
        ceiling_msl_m=ceiling_msl_m,
        simplified_polygon_count=simplified,
    )


def _as_ring_tuple(points: FloatArray) -> tuple[tuple[float, float], ...]:
    return tuple((float(lon), float(lat)) for lon, lat in points)


def cap_area(
    description: str,
    *,
    polygons_lon_lat_deg: Sequence[ArrayLike] = (),
    circles: Sequence[CapCircle] = (),
    max_polygon_vertices: int = MAX_POLYGON_VERTICES,
    altitude_msl_m: float | None = None,
    ceiling_msl_m: float | None = None,
) -> CapArea:
    """An ``<area>`` from WGS84 rings; a multi-polygon is passed as several rings.

    Parameters
    ----------
    description : str
        ``<areaDesc>``, in words the public knows ("Red zone around Hetang Road").
    polygons_lon_lat_deg : sequence of array_like
        Each an (n, 2) ring of (longitude, latitude) [deg], open or closed (as in GeoJSON).
    circles : sequence of CapCircle
        Circles (e.g. the minimum isolation radius).
    max_polygon_vertices : int
        Rings with more distinct vertices are simplified outward (:func:`bounded_ring_m`).
    altitude_msl_m, ceiling_msl_m : float, optional
        Height range above mean sea level [m].

    Returns
    -------
    CapArea
    """
    rings: list[tuple[tuple[float, float], ...]] = []
    simplified = 0
    for index, ring in enumerate(polygons_lon_lat_deg):
        points = _open_ring(np.asarray(ring, dtype=np.float64), f"polygon {index}")
        _check_lon_lat(points, f"polygon {index}")
        if len(points) > max_polygon_vertices:
            # Simplify in a local tangent plane at the first vertex, then map back.
            origin = GeoOrigin(float(points[0, 1]), float(points[0, 0]), 0.0)
            east_m, north_m, _ = geodetic_to_enu(points[:, 1], points[:, 0], 0.0, origin)
            bounded_m = bounded_ring_m(np.stack([east_m, north_m], axis=-1), max_polygon_vertices)
            points = lon_lat(bounded_m, origin)
            simplified += 1
        rings.append(_as_ring_tuple(points))
    return _area(
        description,
        rings=rings,
        circles=circles,
        simplified=simplified,
        altitude_msl_m=altitude_msl_m,
        ceiling_msl_m=ceiling_msl_m,
    )


def cap_area_from_site(
    description: str,
    origin: GeoOrigin,
    *,
    polygons_m: Sequence[ArrayLike] = (),
    circles_m: Sequence[tuple[ArrayLike, float]] = (),
    max_polygon_vertices: int = MAX_POLYGON_VERTICES,
    altitude_msl_m: float | None = None,
    ceiling_msl_m: float | None = None,
) -> CapArea:
    """An ``<area>`` from rings in site ENU metres (simplified there, then mapped to WGS84).

    Parameters
    ----------
    description : str
        ``<areaDesc>``.
    origin : GeoOrigin
        The site origin (``Site.origin``).
    polygons_m : sequence of array_like
        Each an (n, 2) ring of (east, north) [m], open or closed; e.g. the exterior rings of a
        shapely (Multi)Polygon's parts.
    circles_m : sequence of (centre, radius)
        Centre (east, north) [m] and radius [m].
    max_polygon_vertices : int
        Rings with more distinct vertices are simplified outward (:func:`bounded_ring_m`).
    altitude_msl_m, ceiling_msl_m : float, optional
        Height range above mean sea level [m].

    Returns
    -------
    CapArea
    """
    rings: list[tuple[tuple[float, float], ...]] = []
    simplified = 0
    for index, ring in enumerate(polygons_m):
        points = _open_ring(np.asarray(ring, dtype=np.float64), f"polygon {index}")
        if len(points) > max_polygon_vertices:
            points = bounded_ring_m(points, max_polygon_vertices)
            simplified += 1
        rings.append(_as_ring_tuple(lon_lat(points, origin)))
    circles = []
    for centre_m, radius_m in circles_m:
        longitude, latitude = lon_lat(np.asarray(centre_m, dtype=np.float64)[:2], origin)
        circles.append(CapCircle(float(latitude), float(longitude), float(radius_m)))
    return _area(
        description,
        rings=rings,
        circles=circles,
        simplified=simplified,
        altitude_msl_m=altitude_msl_m,
        ceiling_msl_m=ceiling_msl_m,
    )


# --------------------------------------------------------------------------------------------
# Texts

_GAS_PUBLIC_NAME: Final[Mapping[Gas, str]] = MappingProxyType(
    {Gas.METHANE: "natural gas", Gas.PROPANE: "propane (LPG)"}
)

_EVENT: Final[Mapping[Gas, str]] = MappingProxyType(
    {Gas.METHANE: "Natural gas pipeline leak", Gas.PROPANE: "Propane (LPG) pipeline leak"}
)

_COMPASS: Final = ("north", "north-east", "east", "south-east", "south", "south-west", "west")
_COMPASS_POINTS: Final = (*_COMPASS, "north-west")

_NO_IGNITION: Final = (
    "Do not make any spark or flame: no smoking, lighters or matches, do not switch lights or "
    "appliances on or off, do not start engines, do not use phones until you are out of the zone."
)
"""Ignition sources, after the ERG's first action for flammable gases, "ELIMINATE all ignition
sources (no smoking, flares, sparks or flames)" (Emergency Response Guidebook 2020, guide 115;
quoted from memory)."""


def _compass(direction_deg: float) -> str:
    return _COMPASS_POINTS[round((direction_deg % 360.0) / 45.0) % 8]


def _wind_advice(wind_from_deg: float | None) -> str:
    if wind_from_deg is None:
        return ""
    # Stay upwind (ERG 2020 guide 115, public safety). Walking straight upwind from inside the
    # cloud leads through it towards the leak, so people are sent across the wind first.
    return (
        f" The wind blows from the {_compass(wind_from_deg)}: move across the wind (towards the "
        f"{_compass(wind_from_deg - 90.0)} or the {_compass(wind_from_deg + 90.0)}) and away from "
        f"the leak, never downwind (towards the {_compass(wind_from_deg + 180.0)})."
    )


def _gas_advice(gas: Gas) -> str:
    if gas is Gas.PROPANE:
        # Propane vapour is heavier than air and collects in low places (ERG 2020 guide 115).
        return " Propane is heavier than air: keep out of basements, cellars, trenches and dips."
    return ""


def _where_to_go(assembly_points: Sequence[str]) -> str:
    if not assembly_points:
        return " Follow the directions of responders on site."
    return f" Go to: {'; '.join(assembly_points)}. Follow the directions of responders on site."


def _mark(status: CapStatus) -> str:
    return {CapStatus.ACTUAL: "", CapStatus.EXERCISE: "EXERCISE: ", CapStatus.TEST: "TEST: "}[
        status
    ]


def _headline(status: CapStatus, lead: str, incident: CapIncident, zone_word: str) -> str:
    gas = _GAS_PUBLIC_NAME[incident.gas]
    fixed = f"{_mark(status)}{lead}: {gas} leak at  - {zone_word}"
    room = MAX_HEADLINE_CHARS - len(fixed)
    location = incident.location_description.strip()
    if len(location) > room:
        location = location[: max(room - 1, 0)].rstrip() + "…"
    return f"{_mark(status)}{lead}: {gas} leak at {location} - {zone_word}"


def _texts(
    incident: CapIncident,
    zone: CapZone | None,
    rating: CapRating,
    status: CapStatus,
    assembly_points: Sequence[str],
) -> tuple[str, str, str]:
    """Headline, description and instruction of one <info> block."""
    gas = _GAS_PUBLIC_NAME[incident.gas]
    state = "confirmed" if incident.leak_confirmed else "suspected (not yet confirmed)"
    facts = (
        f"A {state} {gas} leak from a pipeline at {incident.location_description} "
        f"(incident {incident.incident_id}, update {incident.version})."
    )
    if incident.ignition_observed:
        facts += " Fire or explosion has been reported."
    if status is CapStatus.EXERCISE:
        facts = "THIS IS AN EXERCISE. The public need not act. " + facts
    elif status is CapStatus.TEST:
        facts = "THIS IS A TEST. Disregard this message. " + facts
    if zone is None:
        headline = _headline(status, "ALL CLEAR", incident, "alert cancelled")
        instruction = (
            "The danger is over. You may return when responders open the roads. "
            "Report any smell of gas to the emergency number."
        )
        return headline, facts + " The alert is cancelled.", instruction
    red = zone.threat_level is ThreatLevel.RED
    percent = THREAT_LEVEL_PERCENT_LEL[zone.threat_level.value]
    zone_word = f"{zone.threat_level.value} zone"
    basis = f" ({incident.lel_basis.value})" if incident.lel_basis is not None else ""
    if red:
        explanation = (
            f" Red zone: the gas may reach {percent} % of its lower explosive limit{basis}, or "
            "the area lies within the minimum isolation distance around the leak."
        )
    else:
        explanation = (
            f" Yellow zone: the gas may reach {percent} % of its lower explosive limit{basis}."
        )
    description = facts + explanation + f" About {zone.occupants} people are in this zone."
    if incident.zones_low_confidence:
        description += (
            " The zone is uncertain (light wind or very stable air); it may be larger than shown."
        )
    advice = _wind_advice(incident.wind_from_deg) + _gas_advice(incident.gas)
    responses = rating.response_types
    if CapResponseType.EVACUATE in responses:
        headline = _headline(status, "EVACUATE NOW", incident, zone_word)
        instruction = (
            f"Leave the {zone_word} now, on foot." + advice + _where_to_go(assembly_points) + " "
        )
    elif CapResponseType.SHELTER in responses:
        headline = _headline(status, "STAY INDOORS", incident, zone_word)
        instruction = (
            "Stay inside, close windows and doors, and do not go out towards the leak until told."
            + advice
            + " "
        )
    elif red and CapResponseType.PREPARE not in responses:
        headline = _headline(status, "KEEP OUT", incident, zone_word)
        instruction = "Do not enter the red zone." + advice + " "
    else:
        lead = "BE READY TO LEAVE" if CapResponseType.PREPARE in responses else "KEEP AWAY"
        headline = _headline(status, lead, incident, zone_word)
        instruction = (
            f"Stay out of the red zone and be ready to leave the {zone_word} if told to."
            + advice
            + _where_to_go(assembly_points)
            + " "
        )
    instruction += _NO_IGNITION + " Do not go back until the authorities say it is safe."
    return headline, description, instruction


# --------------------------------------------------------------------------------------------
# The alert


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NAMESPACE}}}{name}")
    if text is not None:
        element.text = text
    return element


def _parameters(
    incident: CapIncident, zone: CapZone | None, extra: Mapping[str, str]
) -> list[tuple[str, str]]:
    pairs = [
        ("incident_id", incident.incident_id),
        ("incident_version", str(incident.version)),
        ("gas", incident.gas.value),
        ("leak_confirmed", "true" if incident.leak_confirmed else "false"),
    ]
    if zone is not None:
        pairs += [
            ("threat_level", zone.threat_level.value),
            ("threshold_percent_lel", str(THREAT_LEVEL_PERCENT_LEL[zone.threat_level.value])),
            ("occupants_in_zone", str(zone.occupants)),
            ("zone_confidence", "low" if incident.zones_low_confidence else "normal"),
        ]
    if incident.lel_basis is not None:
        pairs.append(("lel_basis", incident.lel_basis.value))
    if incident.emission_rate_kg_per_s is not None:
        pairs.append(("emission_rate_kg_per_s", f"{incident.emission_rate_kg_per_s:.3g}"))
    if incident.wind_from_deg is not None:
        pairs.append(("wind_from_deg", f"{incident.wind_from_deg % 360.0:.0f}"))
    pairs += sorted(extra.items())
    return pairs


def _write_area(info: ET.Element, area: CapArea) -> None:
    element = _sub(info, "area")
    _sub(element, "areaDesc", area.description)
    for ring in area.polygons_lon_lat_deg:
        _sub(element, "polygon", _polygon_text(ring))
    for circle in area.circles:
        _sub(element, "circle", _circle_text(circle))
    if area.altitude_msl_m is not None:
        _sub(element, "altitude", f"{area.altitude_msl_m * FEET_PER_METRE:.0f}")
    if area.ceiling_msl_m is not None:
        _sub(element, "ceiling", f"{area.ceiling_msl_m * FEET_PER_METRE:.0f}")


def _check_alert_inputs(
    incident: CapIncident,
    zones: Sequence[CapZone],
    *,
    sender: CapSender,
    status: CapStatus,
    msg_type: CapMsgType,
    references: Sequence[CapReference],
    expires_after_s: float,
    note: str | None,
) -> None:
    if not zones and msg_type is not CapMsgType.CANCEL:
        raise CapError("an Alert or Update needs at least one zone")
    if msg_type is not CapMsgType.ALERT and not references:
        raise CapError(f"a {msg_type.value} must reference the earlier alert(s) it replaces")
    if status is CapStatus.EXERCISE and not note:
        raise CapError("an Exercise needs a note naming the exercise (CAP 1.2 section 3.2.1)")
    if not expires_after_s > 0.0:
        raise CapError(f"expires_after_s must be > 0, got {expires_after_s}")
    _check_token("sender", sender.sender_id)
    _check_token("incident_id", incident.incident_id)
    for zone in zones:
        if not zone.areas:
            raise CapError(f"the {zone.threat_level.value} zone has no area")


def _blocks(
    incident: CapIncident, zones: Sequence[CapZone], *, cancelled: bool
) -> list[tuple[CapZone | None, CapRating, tuple[CapArea, ...]]]:
    """The <info> blocks: (zone or None for the all-clear, rating, areas), red zones first."""
    ordered = sorted(zones, key=lambda zone: zone.threat_level is not ThreatLevel.RED)
    if cancelled:
        rating = rate_zone(
            threat_level=ThreatLevel.RED, leak_confirmed=True, occupants=0, cancelled=True
        )
        return [(None, rating, tuple(area for zone in ordered for area in zone.areas))]
    blocks: list[tuple[CapZone | None, CapRating, tuple[CapArea, ...]]] = []
    for zone in ordered:
        rating = rate_zone(
            threat_level=zone.threat_level,
            leak_confirmed=incident.leak_confirmed,
            occupants=zone.occupants,
            ignition_observed=incident.ignition_observed,
        )
        if zone.response_types:
            rating = CapRating(
                rating.urgency,
                rating.severity,
                rating.certainty,
                zone.response_types,
                rating.rationale + " (response types set by the duty officer)",
            )
        blocks.append((zone, rating, zone.areas))
    return blocks


def cap_alert(
    incident: CapIncident,
    zones: Sequence[CapZone],
    *,
    sender: CapSender,
    sent: datetime,
    status: CapStatus = CapStatus.ACTUAL,
    msg_type: CapMsgType = CapMsgType.ALERT,
    references: Sequence[CapReference] = (),
    assembly_points: Sequence[str] = (),
    expires_after_s: float = DEFAULT_EXPIRES_AFTER_S,
    language: str = "en-US",
    note: str | None = None,
    extra_parameters: Mapping[str, str] = MappingProxyType({}),
) -> str:
    """A validated CAP 1.2 evacuation alert (XML text, UTF-8 declaration).

    One ``<info>`` block per zone, red zones first (a later block in the same language may expand
    but not override an earlier one, CAP 1.2 section 3.2.2). A ``Cancel`` carries one all-clear
    block over all the zones' areas (or no area when ``zones`` is empty).

    Parameters
    ----------
    incident : CapIncident
        The leak; its id and version make the ``<identifier>``.
    zones : sequence of CapZone
        The threat zones; at least one unless cancelling.
    sender : CapSender
        The issuing agency.
    sent : datetime
        Time of the message, with its time zone (fractional seconds are dropped).
    status : CapStatus
        ``Exercise`` and ``Test`` are also marked in the headline and description;
        ``Exercise`` requires ``note`` (the exercise identifier, CAP 1.2 section 3.2.1).
    msg_type : CapMsgType
        ``Update`` and ``Cancel`` require ``references`` to the earlier alert(s).
    references : sequence of CapReference
        Earlier messages (see :func:`reference_of`).
    assembly_points : sequence of str
        Where to go, in words ("Wanli Middle School sports ground, Hetang Road").
    expires_after_s : float
        Validity after ``sent`` [s].
    language : str
        RFC 3066 language code of the texts.
    note : str, optional
        ``<note>``.
    extra_parameters : mapping of str to str
        More ``<parameter>`` pairs for every block.

    Returns
    -------
    str
        The alert; already passed :func:`validate_cap`.
    """
    _check_alert_inputs(
        incident,
        zones,
        sender=sender,
        status=status,
        msg_type=msg_type,
        references=references,
        expires_after_s=expires_after_s,
        note=note,
    )
    alert = ET.Element(f"{{{CAP_NAMESPACE}}}alert")
    _sub(alert, "identifier", cap_identifier(incident.incident_id, incident.version))
    _sub(alert, "sender", sender.sender_id)
    _sub(alert, "sent", cap_datetime(sent))
    _sub(alert, "status", status.value)
    _sub(alert, "msgType", msg_type.value)
    _sub(alert, "scope", "Public")
    if note:
        _sub(alert, "note", note)
    if references:
        _sub(alert, "references", " ".join(reference.text() for reference in references))
    _sub(alert, "incidents", incident.incident_id)
    expires = cap_datetime(sent + timedelta(seconds=expires_after_s))
    for zone, rating, areas in _blocks(incident, zones, cancelled=msg_type is CapMsgType.CANCEL):
        headline, description, instruction = _texts(incident, zone, rating, status, assembly_points)
        if len(headline) > MAX_HEADLINE_CHARS:
            raise CapError(f"headline longer than {MAX_HEADLINE_CHARS} characters: {headline!r}")
        info = _sub(alert, "info")
        _sub(info, "language", language)
        _sub(info, "category", CapCategory.SAFETY.value)
        if incident.ignition_observed and msg_type is not CapMsgType.CANCEL:
            _sub(info, "category", CapCategory.FIRE.value)
        _sub(info, "event", _EVENT[incident.gas])
        for response in rating.response_types:
            _sub(info, "responseType", response.value)
        _sub(info, "urgency", rating.urgency.value)
        _sub(info, "severity", rating.severity.value)
        _sub(info, "certainty", rating.certainty.value)
        _sub(info, "expires", expires)
        _sub(info, "senderName", sender.name)
        _sub(info, "headline", headline)
        _sub(info, "description", description)
        _sub(info, "instruction", instruction)
        if sender.web:
            _sub(info, "web", sender.web)
        if sender.contact:
            _sub(info, "contact", sender.contact)
        for name, value in _parameters(incident, zone, extra_parameters):
            parameter = _sub(info, "parameter")
            _sub(parameter, "valueName", name)
            _sub(parameter, "value", value)
        for area in areas:
            _write_area(info, area)

    ET.indent(alert, space="  ")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        alert, encoding="unicode", default_namespace=CAP_NAMESPACE
    )
    validate_cap(text)
    return text + "\n"


def reference_of(xml: str) -> CapReference:
    """The ``sender,identifier,sent`` of an earlier alert, for the ``references`` of the next."""
    root = ET.fromstring(xml)  # noqa: S314 - our own alert, already validated when written
    values = {}
    for name in ("sender", "identifier", "sent"):
        element = root.find(f"{{{CAP_NAMESPACE}}}{name}")
        if element is None or not element.text:
            raise CapError(f"the alert has no <{name}>")
        values[name] = element.text.strip()
    return CapReference(values["sender"], values["identifier"], parse_cap_datetime(values["sent"]))


# --------------------------------------------------------------------------------------------
# Validation


@cache
def _schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(CAP_SCHEMA_PATH))


def _local(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _walk(element: ET.Element, path: str) -> list[tuple[ET.Element, str]]:
    """Elements depth first with XPath-like paths (``/alert/info[1]/area[2]/polygon[1]``)."""
    found = [(element, path)]
    counts: dict[str, int] = {}
    for child in element:
        name = _local(child)
        counts[name] = counts.get(name, 0) + 1
        found += _walk(child, f"{path}/{name}[{counts[name]}]")
    return found


def _check_pairs(points: FloatArray, path: str) -> None:
    if not np.all(np.isfinite(points)):
        raise CapValidationError(path, "coordinates must be finite numbers")
    if np.any(np.abs(points[:, 1]) > 90.0):
        raise CapValidationError(path, "latitude out of range [-90, 90] deg")
    if np.any(np.abs(points[:, 0]) > 180.0):
        raise CapValidationError(path, "longitude out of range [-180, 180] deg")


def _check_polygon(text: str, path: str) -> None:
    try:
        points = parse_cap_polygon(text)
    except ValueError as error:
        raise CapValidationError(path, f"polygon: {error}") from None
    if len(points) < MIN_POLYGON_PAIRS:
        raise CapValidationError(
            path, f"polygon has {len(points)} coordinate pairs, CAP 1.2 section 3.2.4 requires >= 4"
        )
    if not np.array_equal(points[0], points[-1]):
        raise CapValidationError(
            path, "polygon is not closed: the first and last pairs must be the same (3.2.4)"
        )
    _check_pairs(points, path)


def _check_circle(text: str, path: str) -> None:
    parts = text.split()
    try:
        if len(parts) != 2:
            raise ValueError("expected 'lat,lon radius_km'")
        centre = parse_cap_polygon(parts[0])
        radius_km = float(parts[1])
    except ValueError as error:
        raise CapValidationError(path, f"circle: {error}") from None
    _check_pairs(centre, path)
    if not (math.isfinite(radius_km) and radius_km >= 0.0):
        raise CapValidationError(path, "circle radius must be a finite number >= 0 km")


def _check_time(text: str, path: str) -> datetime:
    try:
        moment = parse_cap_datetime(text)
    except ValueError as error:
        raise CapValidationError(path, str(error)) from None
    if text.strip().endswith("+00:00"):
        raise CapValidationError(path, "UTC must be written -00:00 (CAP 1.2 section 3.3.2)")
    return moment


def _check_references(text: str, path: str) -> None:
    for item in text.split():
        parts = item.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise CapValidationError(
                path, f"reference {item!r} is not 'sender,identifier,sent' (3.2.1)"
            )
        _check_time(parts[2], path)
    if not text.split():
        raise CapValidationError(path, "references is empty")


def _text(element: ET.Element | None) -> str:
    return "" if element is None or element.text is None else element.text


def _check_rules(root: ET.Element) -> None:  # noqa: PLR0912 - one rule per branch
    def child(element: ET.Element, name: str) -> ET.Element | None:
        return element.find(f"{{{CAP_NAMESPACE}}}{name}")

    for name in ("identifier", "sender"):
        if _RESTRICTED.search(_text(child(root, name)).strip()):
            raise CapValidationError(
                f"/alert/{name}", "must not contain spaces, commas, < or & (3.2.1)"
            )
    sent = _check_time(_text(child(root, "sent")), "/alert/sent")
    msg_type = _text(child(root, "msgType")).strip()
    references = child(root, "references")
    if msg_type in {"Update", "Cancel"} and references is None:
        raise CapValidationError(
            "/alert/references", f"msgType {msg_type} must reference the earlier message(s) (3.2.1)"
        )
    scope = _text(child(root, "scope")).strip()
    if scope == "Restricted" and child(root, "restriction") is None:
        raise CapValidationError("/alert/restriction", "required when scope is Restricted")
    if scope == "Private" and child(root, "addresses") is None:
        raise CapValidationError("/alert/addresses", "required when scope is Private")
    for element, path in _walk(root, "/alert"):
        name = _local(element)
        if name == "references":
            _check_references(_text(element), path)
        elif name == "polygon":
            _check_polygon(_text(element), path)
        elif name == "circle":
            _check_circle(_text(element), path)
        elif name in {"effective", "onset"}:
            _check_time(_text(element), path)
        elif name == "area":
            if child(element, "ceiling") is not None and child(element, "altitude") is None:
                raise CapValidationError(path, "ceiling is used only with altitude (3.2.4)")
        elif name == "info":
            effective_element = child(element, "effective")
            effective = (
                sent
                if effective_element is None
                else _check_time(_text(effective_element), f"{path}/effective[1]")
            )
            expires_element = child(element, "expires")
            if expires_element is not None:
                expires = _check_time(_text(expires_element), f"{path}/expires[1]")
                if expires <= effective:
                    raise CapValidationError(
                        f"{path}/expires[1]",
                        f"expires {expires.isoformat()} is not after "
                        f"{'sent' if effective_element is None else 'effective'} "
                        f"{effective.isoformat()}",
                    )


def validate_cap(xml: str) -> None:
    """Check a CAP 1.2 document; raise :class:`CapValidationError` naming the failing element.

    First against the OASIS schema (element order, required elements, code values, dateTime
    format), then the rules of CAP 1.2 that the schema cannot express: ``<identifier>`` and
    ``<sender>`` without spaces, commas, < or &; times with a numeric zone, UTC as ``-00:00``;
    ``Update``/``Cancel`` with ``<references>`` made of ``sender,identifier,sent`` triples;
    ``<restriction>``/``<addresses>`` with a Restricted/Private scope; every ``<polygon>`` of
    >= 4 pairs, closed, in range; every ``<circle>`` ``lat,lon radius`` in range;
    ``<ceiling>`` only with ``<altitude>``; ``<expires>`` after ``<effective>`` (or ``<sent>``).
    Entities and DTDs are refused (the document may come from outside).
    """
    try:
        resource = xmlschema.XMLResource(xml, defuse="always")
    except (xmlschema.XMLResourceError, ET.ParseError, ValueError) as error:
        raise CapValidationError("/", f"not well-formed XML: {error}") from None
    for failure in _schema().iter_errors(resource):
        raise CapValidationError(failure.path or "/", str(failure.reason or failure.message))
    root = resource.root
    if not isinstance(root, ET.Element):  # pragma: no cover - xmlschema parses with ElementTree
        raise CapValidationError("/", "unexpected XML tree type")
    _check_rules(root)
