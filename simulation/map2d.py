"""The responder's incident map: a north-up PNG of the site with zones, valves, routes and wind.

:func:`render_incident_map` draws one picture a responder can read without the code: the whole
relevant area (the site extent united with the threat zones, the leak, its credible range and the
routes, with a margin), the oil pipelines drawn thick and labelled, the block valves to close
marked and labelled, the other valves small, buildings grey with the affected ones coloured by the
most severe zone they touch and the sensitive ones (schools, hospitals) labelled by name, the
translucent red (60 %LEL) and yellow (10 %LEL) zones, the dashed isolation circle, evacuation routes
as arrows to the assembly points, usable (green) and excluded (grey, crossed) assembly points,
roads under traffic control, the leak, a wind arrow with its speed, a north arrow, a scale bar, a
legend, the title and the time. When the incident is small on the site map, a detail view of it is
drawn at the bottom of the side panel (and outlined on the map).

Everything is given in site ENU metres (east, north) in :class:`MapLayers`, plain inputs so that
the map depends on no planning module: the caller copies the zones, valves, buildings, routes and
assembly points from the plans' results. Pure: the function returns PNG bytes (OpenCV
``cv2.imencode``) and writes nothing; the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import cv2
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.geometry.base import BaseGeometry

from pipesentinel.site import NetworkKind, Pipeline, Site

FloatArray = NDArray[np.float64]
Image = NDArray[np.uint8]
Colour = tuple[int, int, int]  # OpenCV order: blue, green, red

ZONE_LEVELS: Final = ("red", "isolation", "yellow")
"""Zone levels the map knows, most severe first: ``red`` (60 %LEL, ALOHA's red flammable level of
concern), ``isolation`` (the minimum isolation circle around the leak), ``yellow`` (10 %LEL)."""

# ---------------------------------------------------------------------------------------------
# Layout and style. Sizes are pixels at the reference canvas of 1600 x 1200 px and scale with the
# canvas (the smaller of the width and height ratios). Design choices, not standards.

REFERENCE_WIDTH_PX: Final = 1600
REFERENCE_HEIGHT_PX: Final = 1200
MARGIN_FRACTION: Final = 0.04  # blank map margin on each side, fraction of the larger span [-]
MINIMUM_SPAN_M: Final = 200.0  # never zoom in closer than this span (a map of a point) [m]
TITLE_BAR_PX: Final = 64
PANEL_WIDTH_PX: Final = 380
PAD_PX: Final = 10
SUBPIXEL_SHIFT: Final = 4  # OpenCV fixed-point bits: coordinates drawn to 1/16 px
SUBPIXEL: Final = 1 << SUBPIXEL_SHIFT
DETAIL_TRIGGER_PX: Final = 160  # a detail view is drawn when the incident is smaller than this
DETAIL_MINIMUM_SPAN_M: Final = 300.0  # the detail view shows at least this much ground [m]
DETAIL_MINIMUM_PX: Final = 180  # no detail view in a smaller space of the side panel
PNG_COMPRESSION: Final = 3  # zlib level: 9 is 8x slower for 7 % smaller files

FONT: Final = cv2.FONT_HERSHEY_SIMPLEX
MINIMUM_FONT_SCALE: Final = 0.33  # about 7 px high capitals: the smallest still readable
TITLE_FONT: Final = cv2.FONT_HERSHEY_DUPLEX

BACKGROUND: Final[Colour] = (255, 255, 255)
MAP_BACKGROUND: Final[Colour] = (242, 245, 245)
TEXT: Final[Colour] = (20, 20, 20)
MUTED_TEXT: Final[Colour] = (90, 90, 90)
ROAD_CASING: Final[Colour] = (175, 175, 175)
ROAD_FILL: Final[Colour] = (255, 255, 255)
TRAFFIC_CONTROL: Final[Colour] = (0, 140, 255)  # orange
ROAD_CLOSED: Final[Colour] = (0, 0, 150)  # dark red
BUILDING_FILL: Final[Colour] = (196, 196, 196)
BUILDING_EDGE: Final[Colour] = (125, 125, 125)
PIPELINE: Final[Colour] = (20, 45, 80)  # dark brown (crude oil)
VALVE: Final[Colour] = (40, 40, 40)
VALVE_TO_CLOSE: Final[Colour] = (220, 90, 0)  # strong blue
CREDIBLE_RANGE: Final[Colour] = (255, 0, 255)  # magenta
CREDIBLE_ALPHA: Final = 0.55
LEAK: Final[Colour] = (0, 0, 255)
ROUTE: Final[Colour] = (0, 130, 0)
ASSEMBLY_USABLE: Final[Colour] = (40, 170, 40)
ASSEMBLY_EXCLUDED: Final[Colour] = (150, 150, 150)
DETECTOR: Final[Colour] = (120, 80, 0)
CAMERA: Final[Colour] = (80, 80, 80)
WIND: Final[Colour] = (140, 60, 0)
NETWORK_COLOURS: Final[Mapping[NetworkKind, Colour]] = {
    NetworkKind.GAS: (0, 190, 230),
    NetworkKind.WATER: (220, 160, 60),
    NetworkKind.DRAINAGE: (170, 140, 100),
    NetworkKind.SEWER: (60, 110, 150),
}


@dataclass(frozen=True)
class ZoneStyle:
    """How one zone level is drawn: translucent fill, outline, dashed or not."""

    label: str
    fill: Colour
    fill_alpha: float  # [-], 0 transparent .. 1 opaque
    edge: Colour
    dashed: bool
    building_fill: Colour  # fill of a building whose most severe zone is this one


ZONE_STYLES: Final[Mapping[str, ZoneStyle]] = {
    "red": ZoneStyle("Red zone: 60 %LEL", (30, 30, 230), 0.45, (0, 0, 180), False, (40, 40, 225)),
    "isolation": ZoneStyle(
        "Isolation circle", (110, 0, 80), 0.10, (110, 0, 80), True, (170, 80, 190)
    ),
    "yellow": ZoneStyle(
        "Yellow zone: 10 %LEL", (0, 215, 255), 0.30, (0, 160, 220), False, (0, 210, 255)
    ),
}

COMPASS_POINTS: Final = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


# ---------------------------------------------------------------------------------------------
# Inputs


def _read_only(values: ArrayLike, shape_tail: tuple[int, ...], what: str) -> FloatArray:
    array = np.array(values, dtype=np.float64, copy=True)
    if array.shape[array.ndim - len(shape_tail) :] != shape_tail or not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite with shape (..., {shape_tail}), got {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class MapRoute:
    """An evacuation route: a polyline (n, 2) [m] from a building to an assembly point."""

    building_id: str
    assembly_point_id: str
    polyline_m: FloatArray

    def __post_init__(self) -> None:
        polyline = _read_only(self.polyline_m, (2,), f"route {self.building_id} polyline_m")
        if polyline.ndim != 2 or len(polyline) < 2:
            raise ValueError(f"route {self.building_id}: polyline_m needs at least 2 points")
        object.__setattr__(self, "polyline_m", polyline)


@dataclass(frozen=True)
class MapLayers:
    """What to draw over the site, all positions in site ENU metres (east, north).

    Attributes
    ----------
    time_label : str
        Time of the picture as the responder should read it (e.g. ``"2026-12-02 10:04 local"``).
    leak_position_m : array (2,) or None
        Estimated leak position [m].
    leak_credible_m : shapely geometry, array (n, 2) or None
        Credible region of the leak: a geometry (a line along the pipe, a polygon, points), or an
        array read as a polyline along the pipe [m].
    zones_m : mapping of level -> shapely geometry
        Threat zones keyed by level, ``"red"``, ``"yellow"`` and ``"isolation"`` (any subset) [m].
    median_zones_m : mapping of level -> shapely geometry
        The same zones at the median rate, drawn as thin dotted outlines [m].
    valves_to_close : tuple of str
        Ids of the block valves to close.
    building_zones : mapping of building id -> level
        Affected buildings with the most severe zone they touch.
    usable_assembly_point_ids, excluded_assembly_point_ids : tuple of str
        Assembly points to use and those not to use.
    routes : tuple of MapRoute
        Evacuation routes.
    traffic_control_road_ids, closed_road_ids : tuple of str
        Roads under traffic control, and those of them closed.
    wind_from_deg : float or None
        Direction the wind comes from, clockwise from north [deg].
    wind_speed_m_per_s : float or None
        Wind speed [m s-1].
    notes : tuple of str
        Short lines printed in the side panel (e.g. low-confidence flags).
    """

    time_label: str = ""
    leak_position_m: FloatArray | None = None
    leak_credible_m: BaseGeometry | FloatArray | None = None
    zones_m: Mapping[str, BaseGeometry] = field(default_factory=dict)
    median_zones_m: Mapping[str, BaseGeometry] = field(default_factory=dict)
    valves_to_close: tuple[str, ...] = ()
    building_zones: Mapping[str, str] = field(default_factory=dict)
    usable_assembly_point_ids: tuple[str, ...] = ()
    excluded_assembly_point_ids: tuple[str, ...] = ()
    routes: tuple[MapRoute, ...] = ()
    traffic_control_road_ids: tuple[str, ...] = ()
    closed_road_ids: tuple[str, ...] = ()
    wind_from_deg: float | None = None
    wind_speed_m_per_s: float | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.leak_position_m is not None:
            leak = _read_only(self.leak_position_m, (2,), "leak_position_m")
            if leak.shape != (2,):
                raise ValueError(f"leak_position_m must have shape (2,), got {leak.shape}")
            object.__setattr__(self, "leak_position_m", leak)
        credible = self.leak_credible_m
        if credible is not None and not isinstance(credible, BaseGeometry):
            points = _read_only(credible, (2,), "leak_credible_m").reshape(-1, 2)
            geometry: BaseGeometry = Point(points[0]) if len(points) == 1 else LineString(points)
            object.__setattr__(self, "leak_credible_m", geometry)
        for name in ("zones_m", "median_zones_m", "building_zones"):
            mapping = {str(key): value for key, value in getattr(self, name).items()}
            levels = mapping.values() if name == "building_zones" else mapping.keys()
            unknown = sorted({str(level) for level in levels} - set(ZONE_LEVELS))
            if unknown:
                raise ValueError(f"{name}: unknown zone level(s) {unknown}; use {ZONE_LEVELS}")
            if name == "building_zones":
                mapping = {key: str(value) for key, value in mapping.items()}
            object.__setattr__(self, name, mapping)
        if not set(self.closed_road_ids) <= set(self.traffic_control_road_ids):
            object.__setattr__(
                self,
                "traffic_control_road_ids",
                tuple(sorted(set(self.traffic_control_road_ids) | set(self.closed_road_ids))),
            )
        if self.wind_speed_m_per_s is not None and not self.wind_speed_m_per_s >= 0.0:
            raise ValueError(f"wind_speed_m_per_s = {self.wind_speed_m_per_s} must be >= 0")

    def incident_geometries_m(self) -> list[BaseGeometry]:
        """The zones, the leak and its credible region (the incident area)."""
        items: list[BaseGeometry] = [*self.zones_m.values(), *self.median_zones_m.values()]
        if self.leak_position_m is not None:
            items.append(Point(self.leak_position_m))
        if isinstance(self.leak_credible_m, BaseGeometry):
            items.append(self.leak_credible_m)
        return [item for item in items if not item.is_empty]

    def geometries_m(self) -> list[BaseGeometry]:
        """Every drawn geometry that is not site infrastructure (for fitting the view)."""
        routes = [LineString(route.polyline_m) for route in self.routes]
        return [*self.incident_geometries_m(), *routes]


def check_layers(site: Site, layers: MapLayers) -> None:
    """Raise ``ValueError`` naming any valve, building, assembly point or road not in ``site``."""
    known = {
        "valve": {valve.id for pipeline in site.pipelines for valve in pipeline.valves},
        "building": {building.id for building in site.buildings},
        "assembly point": {point.id for point in site.assembly_points},
        "road": {road.id for road in site.roads},
    }
    asked = {
        "valve": set(layers.valves_to_close),
        "building": set(layers.building_zones) | {route.building_id for route in layers.routes},
        "assembly point": set(layers.usable_assembly_point_ids)
        | set(layers.excluded_assembly_point_ids)
        | {route.assembly_point_id for route in layers.routes},
        "road": set(layers.traffic_control_road_ids) | set(layers.closed_road_ids),
    }
    for kind, ids in asked.items():
        unknown = sorted(ids - known[kind])
        if unknown:
            raise ValueError(f"map layers name unknown {kind} id(s) {unknown} for site {site.id!r}")


# ---------------------------------------------------------------------------------------------
# Frame: metres to pixels


@dataclass(frozen=True)
class MapFrame:
    """Where the map sits on the canvas and how site metres map to pixels (north up).

    ``area_px`` is (left, top, right, bottom) of the map area in pixels; a point (east, north) [m]
    is drawn at column ``left + (east - east_min_m) * px_per_m`` and row
    ``top + (north_max_m - north) * px_per_m``.
    """

    width_px: int
    height_px: int
    area_px: tuple[int, int, int, int]
    east_min_m: float
    north_max_m: float
    px_per_m: float

    @property
    def ui_scale(self) -> float:
        """Size of the drawing elements relative to the 1600 x 1200 px reference canvas [-]."""
        return min(self.width_px / REFERENCE_WIDTH_PX, self.height_px / REFERENCE_HEIGHT_PX)

    def to_pixel(self, points_m: ArrayLike) -> FloatArray:
        """Pixel (column, row) of points (..., 2) [m], as floats."""
        points = np.asarray(points_m, dtype=np.float64)
        left, top, _, _ = self.area_px
        column = left + (points[..., 0] - self.east_min_m) * self.px_per_m
        row = top + (self.north_max_m - points[..., 1]) * self.px_per_m
        result: FloatArray = np.stack([column, row], axis=-1)
        return result

    def to_metres(self, pixels: ArrayLike) -> FloatArray:
        """Site (east, north) [m] of pixel positions (..., 2) (column, row)."""
        pixel = np.asarray(pixels, dtype=np.float64)
        left, top, _, _ = self.area_px
        east = self.east_min_m + (pixel[..., 0] - left) / self.px_per_m
        north = self.north_max_m - (pixel[..., 1] - top) / self.px_per_m
        result: FloatArray = np.stack([east, north], axis=-1)
        return result


def map_frame(site: Site, layers: MapLayers, *, width_px: int, height_px: int) -> MapFrame:
    """The view that fits the site extent and every layer, with a margin, into the map area."""
    if width_px < 200 or height_px < 150:
        raise ValueError(f"map of {width_px} x {height_px} px is too small (>= 200 x 150 px)")
    ui = min(width_px / REFERENCE_WIDTH_PX, height_px / REFERENCE_HEIGHT_PX)
    pad = max(2, round(PAD_PX * ui))
    area = (
        pad,
        round(TITLE_BAR_PX * ui) + pad,
        width_px - round(PANEL_WIDTH_PX * ui) - pad,
        height_px - pad,
    )
    bounds = [site.extent_m.reshape(4)]
    bounds.extend(np.asarray(item.bounds, dtype=np.float64) for item in layers.geometries_m())
    stacked = np.stack(bounds)
    east_min, north_min = stacked[:, :2].min(axis=0)
    east_max, north_max = stacked[:, 2:].max(axis=0)
    span = max(east_max - east_min, north_max - north_min, MINIMUM_SPAN_M)
    margin = MARGIN_FRACTION * span
    east_span = max(east_max - east_min, MINIMUM_SPAN_M) + 2 * margin
    north_span = max(north_max - north_min, MINIMUM_SPAN_M) + 2 * margin
    area_width, area_height = area[2] - area[0], area[3] - area[1]
    px_per_m = min(area_width / east_span, area_height / north_span)
    centre_east, centre_north = (east_min + east_max) / 2, (north_min + north_max) / 2
    return MapFrame(
        width_px=width_px,
        height_px=height_px,
        area_px=area,
        east_min_m=float(centre_east - area_width / 2 / px_per_m),
        north_max_m=float(centre_north + area_height / 2 / px_per_m),
        px_per_m=float(px_per_m),
    )


# ---------------------------------------------------------------------------------------------
# Drawing primitives (all anti-aliased, sub-pixel)


def _v(east_or_column: float, north_or_row: float) -> FloatArray:
    """A 2-vector (an offset in metres or pixels)."""
    return np.array([east_or_column, north_or_row], dtype=np.float64)


def _fixed(pixels: FloatArray) -> NDArray[np.int32]:
    return np.round(np.asarray(pixels) * SUBPIXEL).astype(np.int32)


def _size(value: float, ui: float, minimum: int = 1) -> int:
    return max(minimum, round(value * ui))


def _polyline(
    image: Image, pixels: FloatArray, colour: Colour, thickness: int, closed: bool = False
) -> None:
    cv2.polylines(image, [_fixed(pixels)], closed, colour, thickness, cv2.LINE_AA, SUBPIXEL_SHIFT)


def _line(image: Image, start: FloatArray, end: FloatArray, colour: Colour, thickness: int) -> None:
    cv2.line(
        image,
        tuple(_fixed(start).tolist()),
        tuple(_fixed(end).tolist()),
        colour,
        thickness,
        cv2.LINE_AA,
        SUBPIXEL_SHIFT,
    )


def _circle(
    image: Image, centre: FloatArray, radius: float, colour: Colour, thickness: int
) -> None:
    cv2.circle(
        image,
        tuple(_fixed(centre).tolist()),
        round(radius * SUBPIXEL),
        colour,
        thickness,
        cv2.LINE_AA,
        SUBPIXEL_SHIFT,
    )


def _fill(image: Image, contours: Sequence[FloatArray], colour: Colour) -> None:
    cv2.fillPoly(image, [_fixed(c) for c in contours], colour, cv2.LINE_AA, SUBPIXEL_SHIFT)


def _knots(pixels: FloatArray) -> FloatArray:
    """Distance along a polyline at each vertex [px]."""
    return np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(pixels, axis=0).T))))


def _along(pixels: FloatArray, knots: FloatArray, distances: FloatArray) -> FloatArray:
    """Points at ``distances`` along a polyline with vertex distances ``knots`` [px]."""
    columns = np.interp(distances, knots, pixels[:, 0])
    rows = np.interp(distances, knots, pixels[:, 1])
    result: FloatArray = np.stack([columns, rows], axis=-1)
    return result


def _dashed(
    image: Image, pixels: FloatArray, colour: Colour, thickness: int, *, dash: float, gap: float
) -> None:
    """A dashed polyline (dash and gap lengths in pixels)."""
    knots = _knots(pixels)
    starts = np.arange(0.0, knots[-1], dash + gap)
    ends = np.minimum(starts + dash, knots[-1])
    firsts = _fixed(_along(pixels, knots, starts))
    lasts = _fixed(_along(pixels, knots, ends))
    inner_from = np.searchsorted(knots, starts, side="right")
    inner_to = np.searchsorted(knots, ends, side="left")
    vertices = _fixed(pixels)
    pieces = [
        np.concatenate((firsts[index : index + 1], vertices[low:high], lasts[index : index + 1]))
        for index, (low, high) in enumerate(zip(inner_from, inner_to, strict=True))
    ]
    if pieces:
        cv2.polylines(image, pieces, False, colour, thickness, cv2.LINE_AA, SUBPIXEL_SHIFT)


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    """The polygons of a geometry, largest first (so that islands in holes are drawn after)."""
    parts = [part for part in shapely.get_parts(geometry) if isinstance(part, Polygon)]
    parts.extend(
        polygon
        for part in shapely.get_parts(geometry)
        if not isinstance(part, Polygon | Point | LineString)
        for polygon in _polygons(part)
    )
    return sorted((part for part in parts if not part.is_empty), key=lambda p: (-p.area, p.bounds))


def _rings(polygon: Polygon) -> tuple[FloatArray, list[FloatArray]]:
    exterior = np.asarray(polygon.exterior.coords, dtype=np.float64)[:, :2]
    holes = [np.asarray(ring.coords, dtype=np.float64)[:, :2] for ring in polygon.interiors]
    return exterior, holes


def _window(
    image: Image, pixels: Sequence[FloatArray], pad: float
) -> tuple[int, int, int, int] | None:
    """Pixel box (left, top, right, bottom) around ``pixels`` plus ``pad``, clipped to ``image``."""
    if not pixels:
        return None
    points = np.concatenate(pixels)
    height, width = image.shape[:2]
    left, top = np.maximum(np.floor(points.min(axis=0) - pad - 1), 0).astype(int)
    right = min(int(np.ceil(points[:, 0].max() + pad + 2)), width)
    bottom = min(int(np.ceil(points[:, 1].max() + pad + 2)), height)
    if right <= left or bottom <= top:
        return None
    return int(left), int(top), right, bottom


def _tint(
    image: Image, window: tuple[int, int, int, int], mask: Image, colour: Colour, alpha: float
) -> None:
    """Blend ``colour`` into ``image`` inside ``window`` with opacity ``alpha * mask / 255``."""
    left, top, right, bottom = window
    weight = mask[..., np.newaxis].astype(np.float32) * np.float32(alpha / 255.0)
    region = image[top:bottom, left:right].astype(np.float32)
    tint = np.asarray(colour, dtype=np.float32)
    image[top:bottom, left:right] = np.round(region + (tint - region) * weight).astype(np.uint8)


def _blend_geometry(
    image: Image, frame: MapFrame, geometry: BaseGeometry, colour: Colour, alpha: float
) -> None:
    """Tint the area of ``geometry`` with ``colour`` at opacity ``alpha`` (anti-aliased edge)."""
    rings = [
        (frame.to_pixel(exterior), [frame.to_pixel(hole) for hole in holes])
        for exterior, holes in map(_rings, _polygons(geometry))
    ]
    window = _window(image, [exterior for exterior, _ in rings], 0.0)
    if window is None:
        return
    origin = np.array(window[:2], dtype=np.float64)
    mask = np.zeros((window[3] - window[1], window[2] - window[0]), dtype=np.uint8)
    for exterior, holes in rings:
        _fill(mask, [exterior - origin], (255, 255, 255))
        if holes:
            _fill(mask, [hole - origin for hole in holes], (0, 0, 0))
    _tint(image, window, mask, colour, alpha)


def _outline(
    image: Image,
    frame: MapFrame,
    geometry: BaseGeometry,
    colour: Colour,
    thickness: int,
    *,
    dash: tuple[float, float] | None = None,
) -> None:
    for polygon in _polygons(geometry):
        exterior, holes = _rings(polygon)
        for ring in (exterior, *holes):
            pixels = frame.to_pixel(ring)
            if dash is None:
                _polyline(image, pixels, colour, thickness, closed=True)
            else:
                _dashed(image, pixels, colour, thickness, dash=dash[0], gap=dash[1])


def _lines_of(geometry: BaseGeometry) -> list[FloatArray]:
    lines: list[FloatArray] = []
    for part in shapely.get_parts(geometry):
        if isinstance(part, LineString):
            lines.append(np.asarray(part.coords, dtype=np.float64)[:, :2])
        elif not isinstance(part, Polygon | Point):
            lines.extend(_lines_of(part))
    return lines


def _points_of(geometry: BaseGeometry) -> list[FloatArray]:
    if isinstance(geometry, Point | MultiPoint):
        return [np.asarray(p.coords, dtype=np.float64)[0, :2] for p in shapely.get_parts(geometry)]
    points: list[FloatArray] = []
    for part in shapely.get_parts(geometry):
        if isinstance(part, Point):
            points.append(np.asarray(part.coords, dtype=np.float64)[0, :2])
        elif not isinstance(part, Polygon | LineString):
            points.extend(_points_of(part))
    return points


def _arrow_head(
    image: Image, tip: FloatArray, direction: FloatArray, size: float, colour: Colour
) -> None:
    """A filled triangular arrow head with its tip at ``tip`` pointing along ``direction``."""
    norm = float(np.hypot(*direction))
    if norm == 0.0:
        return
    along = direction / norm
    across = np.array([-along[1], along[0]])
    base = tip - along * size
    triangle = np.stack([tip, base + across * size * 0.55, base - across * size * 0.55])
    _fill(image, [triangle], colour)


def _font_scale(scale: float) -> float:
    """OpenCV font scale, never below the smallest readable one."""
    return max(scale, MINIMUM_FONT_SCALE)


def _text_box(text: str, scale: float, thickness: int, font: int = FONT) -> tuple[int, int, int]:
    (width, height), baseline = cv2.getTextSize(text, font, _font_scale(scale), thickness)
    return int(width), int(height), int(baseline)


def _text(  # noqa: PLR0917 - the argument order of cv2.putText
    image: Image,
    text: str,
    origin: tuple[float, float],
    scale: float,
    colour: Colour,
    thickness: int,
    *,
    halo: bool = True,
    font: int = FONT,
) -> None:
    """Text with its baseline-left at ``origin`` [px]; a white halo keeps it readable on the map."""
    position = (round(origin[0]), round(origin[1]))
    scale = _font_scale(scale)
    if halo:
        cv2.putText(image, text, position, font, scale, BACKGROUND, thickness + 3, cv2.LINE_AA)
    cv2.putText(image, text, position, font, scale, colour, thickness, cv2.LINE_AA)


_LabelRequest = tuple[str, tuple[float, float], float, float, Colour, int]

# Label priorities: lower numbers are placed first and get the best positions.
LEAK_LABEL, VALVE_LABEL, ASSEMBLY_LABEL, SENSITIVE_LABEL = 0, 1, 2, 3
PIPELINE_LABEL, BUILDING_LABEL, ROAD_LABEL = 4, 5, 6


class _Labeller:
    """Greedy label placement: the first candidate position that overlaps no earlier label."""

    def __init__(self, area: tuple[int, int, int, int]) -> None:
        self.area = area
        self.taken: list[tuple[float, float, float, float]] = []
        self.requests: list[tuple[int, int, _LabelRequest]] = []

    def reserve(self, centre: FloatArray, radius: float) -> None:
        """Keep labels off a marker."""
        x, y = float(centre[0]), float(centre[1])
        self.taken.append((x - radius, y - radius, x + radius, y + radius))

    def _free(self, box: tuple[float, float, float, float]) -> bool:
        left, top, right, bottom = self.area
        if box[0] < left or box[1] < top or box[2] > right or box[3] > bottom:
            return False
        return all(
            box[2] <= other[0] or box[0] >= other[2] or box[3] <= other[1] or box[1] >= other[3]
            for other in self.taken
        )

    def place(  # noqa: PLR0917 - the argument order of cv2.putText
        self,
        text: str,
        anchor: FloatArray,
        offset: float,
        scale: float,
        colour: Colour,
        thickness: int,
        *,
        priority: int,
    ) -> None:
        """Ask for ``text`` beside ``anchor``; labels are placed by :meth:`draw`."""
        request = (text, (float(anchor[0]), float(anchor[1])), offset, scale, colour, thickness)
        self.requests.append((priority, len(self.requests), request))

    def draw(self, image: Image) -> None:
        """Place the labels, most important first, and draw them.

        Each label goes to the first free one of its candidate positions: right, left, above,
        below, then the diagonals of its anchor.
        """
        for _, _, (text, (x, y), offset, scale, colour, thickness) in sorted(
            self.requests, key=lambda item: item[:2]
        ):
            width, height, baseline = _text_box(text, scale, thickness)
            full = height + baseline
            candidates = [
                (x + offset, y - full / 2),
                (x - offset - width, y - full / 2),
                (x - width / 2, y - offset - full),
                (x - width / 2, y + offset),
                (x + offset, y - offset - full),
                (x - offset - width, y - offset - full),
                (x + offset, y + offset),
                (x - offset - width, y + offset),
            ]
            left, top = next(
                (
                    (left, top)
                    for left, top in candidates
                    if self._free((left, top, left + width, top + full))
                ),
                candidates[0],
            )
            self.taken.append((left, top, left + width, top + full))
            _text(image, text, (left, top + height), scale, colour, thickness)
        self.requests.clear()


# ---------------------------------------------------------------------------------------------
# Layers


def _compass(direction_deg: float) -> str:
    return COMPASS_POINTS[round((direction_deg % 360.0) / 45.0) % 8]


def _valve_position(pipeline: Pipeline, chainage_m: float) -> tuple[FloatArray, FloatArray]:
    return pipeline.point_at_chainage(chainage_m), pipeline.direction_at_chainage(chainage_m)


def _draw_roads(image: Image, frame: MapFrame, site: Site, ui: float) -> None:
    casing, fill = _size(9, ui, 3), _size(6, ui, 1)
    pixels = {road.id: frame.to_pixel(road.vertices_m) for road in site.roads}
    for road in site.roads:
        _polyline(image, pixels[road.id], ROAD_CASING, casing)
    for road in site.roads:
        _polyline(image, pixels[road.id], ROAD_FILL, fill)


def _draw_traffic_control(
    image: Image, frame: MapFrame, site: Site, layers: MapLayers, ui: float
) -> None:
    fill = _size(6, ui, 1)
    pixels = {road.id: frame.to_pixel(road.vertices_m) for road in site.roads}
    closed = set(layers.closed_road_ids)
    for road_id in sorted(set(layers.traffic_control_road_ids) - closed):
        _polyline(image, pixels[road_id], TRAFFIC_CONTROL, fill)
    for road_id in sorted(closed):
        _polyline(image, pixels[road_id], ROAD_CLOSED, fill)
        _dashed(image, pixels[road_id], ROAD_FILL, max(1, fill // 3), dash=8 * ui, gap=8 * ui)


def _request_road_names(frame: MapFrame, site: Site, labeller: _Labeller, ui: float) -> None:
    longest: dict[str, tuple[float, FloatArray]] = {}
    for road in site.roads:
        middle = LineString(road.vertices_m).interpolate(0.5, normalized=True)
        candidate = (road.length_m, np.asarray(middle.coords, dtype=np.float64)[0])
        if road.name not in longest or candidate[0] > longest[road.name][0]:
            longest[road.name] = candidate
    for name in sorted(longest):
        anchor = frame.to_pixel(longest[name][1])
        labeller.place(name, anchor, _size(6, ui), 0.42 * ui, MUTED_TEXT, 1, priority=ROAD_LABEL)


def _draw_networks(image: Image, frame: MapFrame, site: Site, ui: float) -> None:
    for pipe in site.municipal_pipes:
        _polyline(image, frame.to_pixel(pipe.vertices_m), NETWORK_COLOURS[pipe.network], 1)
    for tunnel in site.utility_tunnels:
        pixels = frame.to_pixel(tunnel.vertices_m)
        _dashed(image, pixels, MUTED_TEXT, _size(2, ui), dash=6 * ui, gap=4 * ui)


def _draw_buildings(image: Image, frame: MapFrame, site: Site, layers: MapLayers) -> None:
    for building in site.buildings:
        pixels = frame.to_pixel(building.footprint_m)
        level = layers.building_zones.get(building.id)
        fill = BUILDING_FILL if level is None else ZONE_STYLES[level].building_fill
        _fill(image, [pixels], fill)
        edge, thickness = (BUILDING_EDGE, 1) if level is None else (TEXT, 2)
        _polyline(image, pixels, edge, thickness, closed=True)


def _draw_zones(image: Image, frame: MapFrame, layers: MapLayers, ui: float) -> None:
    for level in reversed(ZONE_LEVELS):  # widest first, the red zone on top
        if level in layers.zones_m:
            style = ZONE_STYLES[level]
            _blend_geometry(image, frame, layers.zones_m[level], style.fill, style.fill_alpha)
    for level in reversed(ZONE_LEVELS):
        style = ZONE_STYLES[level]
        if level in layers.median_zones_m:
            _outline(
                image, frame, layers.median_zones_m[level], style.edge, _size(2, ui),
                dash=(2 * ui + 1, 5 * ui),
            )  # fmt: skip
        if level in layers.zones_m:
            dash = (14 * ui, 9 * ui) if style.dashed else None
            _outline(image, frame, layers.zones_m[level], style.edge, _size(3, ui), dash=dash)


def _draw_credible(image: Image, frame: MapFrame, layers: MapLayers, ui: float) -> None:
    credible = layers.leak_credible_m
    if not isinstance(credible, BaseGeometry) or credible.is_empty:
        return
    width, radius = _size(18, ui, 4), 6 * ui + 2
    polygons = [
        (frame.to_pixel(exterior), [frame.to_pixel(hole) for hole in holes])
        for exterior, holes in map(_rings, _polygons(credible))
    ]
    lines = [frame.to_pixel(line) for line in _lines_of(credible)]
    points = [frame.to_pixel(point) for point in _points_of(credible)]
    window = _window(image, [*(p[0] for p in polygons), *lines, *points], max(width, radius))
    if window is None:
        return
    origin = np.array(window[:2], dtype=np.float64)
    mask = np.zeros((window[3] - window[1], window[2] - window[0]), dtype=np.uint8)
    white, black = (255, 255, 255), (0, 0, 0)
    for exterior, holes in polygons:
        _fill(mask, [exterior - origin], white)
        if holes:
            _fill(mask, [hole - origin for hole in holes], black)
    for line in lines:
        _polyline(mask, line - origin, white, width)
    for point in points:
        _circle(mask, point - origin, radius, white, -1)
    _tint(image, window, mask, CREDIBLE_RANGE, CREDIBLE_ALPHA)


def _draw_pipelines(
    image: Image, frame: MapFrame, site: Site, labeller: _Labeller, ui: float
) -> None:
    for pipeline in site.pipelines:
        _polyline(image, frame.to_pixel(pipeline.vertices_m), PIPELINE, _size(5, ui, 2))
    for pipeline in site.pipelines:
        for fraction in (0.04, 0.96):  # a label near each end
            anchor = frame.to_pixel(pipeline.point_at_chainage(fraction * pipeline.length_m))
            labeller.place(
                pipeline.id, anchor, _size(10, ui), 0.7 * ui, PIPELINE, 2, priority=PIPELINE_LABEL
            )


def _draw_devices(image: Image, frame: MapFrame, site: Site, ui: float) -> None:
    for detector in site.gas_detectors:
        _circle(image, frame.to_pixel(detector.position_m[:2]), 2.5 * ui + 0.5, DETECTOR, -1)
    for camera in site.cameras:
        centre = frame.to_pixel(camera.position_m)
        heading = math.radians(camera.heading_deg)
        along = np.array([math.sin(heading), -math.cos(heading)])
        _arrow_head(image, centre + along * 7 * ui, along, 12 * ui + 2, CAMERA)


def _draw_valves(
    image: Image, frame: MapFrame, site: Site, layers: MapLayers, *, labeller: _Labeller, ui: float
) -> None:
    to_close = set(layers.valves_to_close)
    for pipeline in site.pipelines:
        for valve in sorted(pipeline.valves, key=lambda item: item.id):
            position, direction = _valve_position(pipeline, valve.chainage_m)
            centre = frame.to_pixel(position)
            along = np.array([direction[0], -direction[1]])
            across = np.array([-along[1], along[0]])
            if valve.id in to_close:
                radius = 11 * ui + 2
                _circle(image, centre, radius + 2 * ui + 1, BACKGROUND, -1)
                _circle(image, centre, radius, VALVE_TO_CLOSE, -1)
                _circle(image, centre, radius + 2 * ui + 1, TEXT, _size(2, ui))
                labeller.reserve(centre, radius + 3 * ui)
                continue
            size = 6 * ui + 1.5
            tie = np.stack(
                [
                    centre - along * size + across * size * 0.7,
                    centre - along * size - across * size * 0.7,
                    centre + along * size + across * size * 0.7,
                    centre + along * size - across * size * 0.7,
                ]
            )
            _fill(image, [tie[[0, 1, 2, 3]]], BACKGROUND)
            _polyline(image, tie[[0, 1, 2, 3]], VALVE, _size(1.5, ui), closed=True)
    for pipeline in site.pipelines:
        for valve in sorted(pipeline.valves, key=lambda item: item.id):
            if valve.id in to_close:
                anchor = frame.to_pixel(_valve_position(pipeline, valve.chainage_m)[0])
                text = f"CLOSE {valve.id}"
                labeller.place(
                    text,
                    anchor,
                    16 * ui + 3,
                    0.6 * ui,
                    VALVE_TO_CLOSE,
                    _size(2, ui),
                    priority=VALVE_LABEL,
                )


def _draw_routes(image: Image, frame: MapFrame, layers: MapLayers, ui: float) -> None:
    thickness = _size(4, ui, 2)
    head = 16 * ui + 4
    spacing = 220 * ui + 40
    for route in layers.routes:
        pixels = frame.to_pixel(route.polyline_m)
        _polyline(image, pixels, ROUTE, thickness)
        knots = _knots(pixels)
        length = float(knots[-1])
        if length == 0.0:
            continue
        marks = np.append(np.arange(spacing, length - spacing / 2, spacing), length)
        tips = _along(pixels, knots, marks)
        backs = _along(pixels, knots, np.maximum(marks - 1.0, 0.0))
        for tip, back in zip(tips, backs, strict=True):
            _arrow_head(image, tip, tip - back, head, ROUTE)


def _draw_assembly_points(
    image: Image, frame: MapFrame, site: Site, layers: MapLayers, *, labeller: _Labeller, ui: float
) -> None:
    usable, excluded = (
        set(layers.usable_assembly_point_ids),
        set(layers.excluded_assembly_point_ids),
    )
    radius = 12 * ui + 2
    for point in site.assembly_points:
        centre = frame.to_pixel(point.position_m)
        if point.id in usable:
            _circle(image, centre, radius, ASSEMBLY_USABLE, -1)
            _circle(image, centre, radius, TEXT, _size(2, ui))
            _text_centre(image, "A", centre, 0.55 * ui, BACKGROUND, _size(2, ui))
        elif point.id in excluded:
            _circle(image, centre, radius, ASSEMBLY_EXCLUDED, -1)
            corner = np.array([radius, radius]) * 0.62
            _line(image, centre - corner, centre + corner, TEXT, _size(3, ui))
            _line(image, centre + corner * [1, -1], centre - corner * [1, -1], TEXT, _size(3, ui))
        else:
            _circle(image, centre, radius, BACKGROUND, -1)
            _circle(image, centre, radius, ASSEMBLY_USABLE, _size(2, ui))
        labeller.reserve(centre, radius)
    for point in site.assembly_points:
        colour = TEXT if point.id in usable else MUTED_TEXT
        text = f"{point.id} {point.name}" + (" (excluded)" if point.id in excluded else "")
        anchor = frame.to_pixel(point.position_m)
        labeller.place(text, anchor, radius + 4 * ui, 0.5 * ui, colour, 1, priority=ASSEMBLY_LABEL)


def _text_centre(  # noqa: PLR0917 - the argument order of cv2.putText
    image: Image, text: str, centre: FloatArray, scale: float, colour: Colour, thickness: int
) -> None:
    width, height, _ = _text_box(text, scale, thickness)
    origin = (float(centre[0]) - width / 2, float(centre[1]) + height / 2)
    _text(image, text, origin, scale, colour, thickness, halo=False)


def _draw_leak(
    image: Image, frame: MapFrame, layers: MapLayers, labeller: _Labeller, ui: float
) -> None:
    if layers.leak_position_m is None:
        return
    centre = frame.to_pixel(layers.leak_position_m)
    radius = 9 * ui + 2
    _line(image, centre - _v(radius * 2, 0), centre + _v(radius * 2, 0), TEXT, _size(2, ui))
    _line(image, centre - _v(0, radius * 2), centre + _v(0, radius * 2), TEXT, _size(2, ui))
    _circle(image, centre, radius + 4 * ui + 1, BACKGROUND, -1)
    _circle(image, centre, radius, LEAK, -1)
    _circle(image, centre, radius + 4 * ui + 1, TEXT, _size(2, ui))
    labeller.reserve(centre, radius * 2)
    labeller.place(
        "LEAK", centre, radius * 2 + 4, 0.7 * ui, LEAK, _size(2, ui), priority=LEAK_LABEL
    )


def _request_building_labels(
    frame: MapFrame, site: Site, layers: MapLayers, labeller: _Labeller, ui: float
) -> None:
    severity = {level: index for index, level in enumerate(ZONE_LEVELS)}
    ordered = sorted(
        site.buildings,
        key=lambda b: (
            not b.sensitive,
            severity.get(layers.building_zones.get(b.id, ""), len(ZONE_LEVELS)),
            b.id,
        ),
    )
    for building in ordered:
        level = layers.building_zones.get(building.id)
        if not building.sensitive and level is None:
            continue
        text = f"{building.id} {building.name}" if building.sensitive else building.id
        colour = TEXT if level is not None else MUTED_TEXT
        anchor = frame.to_pixel(building.centroid_m)
        half = float(np.ptp(frame.to_pixel(building.footprint_m), axis=0).max()) / 2
        scale = 0.5 * ui if building.sensitive else 0.42 * ui
        thickness = _size(2, ui) if building.sensitive and level is not None else 1
        priority = SENSITIVE_LABEL if building.sensitive else BUILDING_LABEL
        labeller.place(text, anchor, half + 3, scale, colour, thickness, priority=priority)


def _draw_north_arrow(image: Image, frame: MapFrame, ui: float) -> None:
    _, top, right, _ = frame.area_px
    radius = 42 * ui + 6
    centre = np.array([right - radius - 10 * ui - 2, top + radius + 10 * ui + 2])
    _circle(image, centre, radius, BACKGROUND, -1)
    _circle(image, centre, radius, MUTED_TEXT, 1)
    length, half = radius * 0.55, radius * 0.3
    tip = centre + _v(0, -length + 8 * ui)
    base_left = centre + _v(-half, length * 0.8)
    base_right = centre + _v(half, length * 0.8)
    notch = centre + _v(0, length * 0.4)
    _fill(image, [np.stack([tip, base_left, notch])], TEXT)
    _polyline(image, np.stack([tip, base_left, notch, base_right]), TEXT, 1, closed=True)
    _text_centre(image, "N", centre + _v(0, -length - 6 * ui), 0.55 * ui, TEXT, _size(2, ui))


def _nice_length_m(target_m: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target_m`` [m]."""
    exponent = math.floor(math.log10(target_m))
    steps = [step * 10.0**exponent for step in (1.0, 2.0, 5.0, 10.0)]
    return max(step for step in steps if step <= target_m)


def _draw_scale_bar(image: Image, frame: MapFrame, ui: float) -> None:
    left, _, right, bottom = frame.area_px
    length_m = _nice_length_m(0.25 * (right - left) / frame.px_per_m)
    length_px = length_m * frame.px_per_m
    height = 8 * ui + 2
    origin = np.array([left + 20 * ui + 6, bottom - 26 * ui - 8])
    box_top_left = origin - _v(10 * ui + 3, 26 * ui + 6)
    box_bottom_right = origin + _v(length_px + 50 * ui + 10, height + 10 * ui + 3)
    cv2.rectangle(
        image,
        tuple(np.round(box_top_left).astype(int).tolist()),
        tuple(np.round(box_bottom_right).astype(int).tolist()),
        BACKGROUND,
        -1,
    )
    for index in range(4):
        start = origin + _v(index * length_px / 4, 0)
        quad = np.stack(
            [
                start,
                start + _v(length_px / 4, 0),
                start + _v(length_px / 4, height),
                start + _v(0, height),
            ]
        )
        _fill(image, [quad], TEXT if index % 2 == 0 else BACKGROUND)
    _polyline(
        image,
        np.stack(
            [
                origin,
                origin + _v(length_px, 0),
                origin + _v(length_px, height),
                origin + _v(0, height),
            ]
        ),
        TEXT,
        1,
        closed=True,
    )
    scale = 0.45 * ui
    for fraction in (0.0, 0.5, 1.0):
        value = length_m * fraction
        text = f"{value:g} m" if fraction == 1.0 else f"{value:g}"
        width, _, _ = _text_box(text, scale, 1)
        x = origin[0] + fraction * length_px - (0 if fraction == 0.0 else width / 2)
        _text(image, text, (x, origin[1] - 6 * ui - 2), scale, TEXT, 1, halo=False)


# ---------------------------------------------------------------------------------------------
# Title bar and side panel


def _draw_title(image: Image, frame: MapFrame, title: str, layers: MapLayers, ui: float) -> None:
    bar = round(TITLE_BAR_PX * ui)
    cv2.rectangle(image, (0, 0), (frame.width_px - 1, bar), (60, 40, 30), -1)
    scale, thickness = 0.95 * ui, _size(2, ui)
    _, height, _ = _text_box(title, scale, thickness, TITLE_FONT)
    baseline = (bar + height) / 2
    time_scale = 0.7 * ui
    time_width, _, _ = _text_box(layers.time_label, time_scale, thickness)
    room = frame.width_px - time_width - 40 * ui - 20
    while title and _text_box(title, scale, thickness, TITLE_FONT)[0] > room:
        title = title[:-2] + "~"
    left = 16 * ui + 4
    _text(image, title, (left, baseline), scale, BACKGROUND, thickness, halo=False, font=TITLE_FONT)
    _text(
        image,
        layers.time_label,
        (frame.width_px - time_width - 16 * ui - 4, baseline),
        time_scale,
        BACKGROUND,
        thickness,
        halo=False,
    )


@dataclass
class _Panel:
    image: Image
    left: float
    right: float
    y: float
    ui: float

    def heading(self, text: str) -> None:
        self.y += 30 * self.ui
        _text(self.image, text, (self.left, self.y), 0.62 * self.ui, TEXT, _size(2, self.ui))
        self.y += 8 * self.ui

    def line(self, text: str, colour: Colour = TEXT) -> None:
        scale = 0.5 * self.ui
        for piece in _wrap(text, scale, self.right - self.left):
            self.y += 22 * self.ui
            _text(self.image, piece, (self.left, self.y), scale, colour, 1, halo=False)

    def entry(self, text: str, swatch: Colour | None, kind: str) -> None:
        """A legend row: a symbol of ``kind`` then the text."""
        self.y += 26 * self.ui
        centre = np.array([self.left + 18 * self.ui, self.y - 6 * self.ui])
        ui, image = self.ui, self.image
        half = 14 * ui
        colour = swatch if swatch is not None else TEXT
        if kind == "line":
            _line(image, centre - _v(half, 0), centre + _v(half, 0), colour, _size(5, ui, 2))
        elif kind == "road":
            _line(image, centre - _v(half, 0), centre + _v(half, 0), ROAD_CASING, _size(9, ui, 3))
            _line(image, centre - _v(half, 0), centre + _v(half, 0), colour, _size(6, ui, 1))
        elif kind == "dash":
            for offset in (-half, -half / 6, half * 2 / 3):
                start = centre + _v(offset, 0)
                _line(image, start, start + _v(half / 3, 0), colour, _size(3, ui))
        elif kind == "box":
            box = np.stack(
                [centre + _v(-half, -8 * ui), centre + _v(half, -8 * ui), centre + _v(half, 8 * ui),
                 centre + _v(-half, 8 * ui)]
            )  # fmt: skip
            _fill(image, [box], colour)
            _polyline(image, box, TEXT, 1, closed=True)
        elif kind == "disc":
            _circle(image, centre, 8 * ui + 1, colour, -1)
            _circle(image, centre, 8 * ui + 1, TEXT, 1)
        elif kind == "ring":
            _circle(image, centre, 8 * ui + 1, BACKGROUND, -1)
            _circle(image, centre, 8 * ui + 1, colour, _size(2, ui))
        elif kind == "cross":
            _circle(image, centre, 8 * ui + 1, colour, -1)
            corner = np.array([5.0, 5.0]) * ui + 1
            _line(image, centre - corner, centre + corner, TEXT, _size(2, ui))
            _line(image, centre + corner * [1, -1], centre - corner * [1, -1], TEXT, _size(2, ui))
        elif kind == "arrow":
            _line(image, centre - _v(half, 0), centre + _v(half * 0.4, 0), colour, _size(4, ui, 2))
            _arrow_head(image, centre + _v(half, 0), np.array([1.0, 0.0]), 14 * ui + 2, colour)
        _text(image, text, (self.left + 44 * ui, self.y), 0.5 * ui, TEXT, 1, halo=False)


def _wrap(text: str, scale: float, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and _text_box(trial, scale, 1)[0] > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _draw_wind(panel: _Panel, layers: MapLayers) -> None:
    ui, image = panel.ui, panel.image
    panel.heading("Wind")
    radius = 38 * ui + 4
    centre = np.array([panel.left + radius + 6 * ui, panel.y + radius + 12 * ui])
    _circle(image, centre, radius, MUTED_TEXT, 1)
    for index, letter in enumerate(("N", "E", "S", "W")):
        angle = math.radians(90.0 * index)
        spot = centre + np.array([math.sin(angle), -math.cos(angle)]) * (radius + 9 * ui + 2)
        _text_centre(image, letter, spot, 0.4 * ui, MUTED_TEXT, 1)
    text_left = centre[0] + radius + 22 * ui
    if layers.wind_from_deg is None:
        _text(image, "no wind data", (text_left, centre[1]), 0.5 * ui, TEXT, 1, halo=False)
    else:
        to = math.radians(layers.wind_from_deg + 180.0)
        along = np.array([math.sin(to), -math.cos(to)])  # pixel rows grow southward
        tail, tip = centre - along * radius * 0.85, centre + along * radius * 0.85
        _line(image, tail, tip - along * 10 * ui, WIND, _size(4, ui, 2))
        _arrow_head(image, tip, along, 18 * ui + 3, WIND)
        lines = [
            f"from {layers.wind_from_deg % 360.0:.0f} deg ({_compass(layers.wind_from_deg)})",
            "speed "
            + (
                "unknown"
                if layers.wind_speed_m_per_s is None
                else f"{layers.wind_speed_m_per_s:.1f} m/s"
            ),
            "arrow: blows towards",
        ]
        for index, line in enumerate(lines):
            colour = TEXT if index < 2 else MUTED_TEXT
            y = centre[1] - 14 * ui + index * 24 * ui
            _text(image, line, (text_left, y), 0.5 * ui, colour, 1, halo=False)
    panel.y = centre[1] + radius + 14 * ui


def _draw_panel(image: Image, frame: MapFrame, site: Site, layers: MapLayers, ui: float) -> float:
    """Wind, legend, actions and notes; returns the row the panel's text ends at [px]."""
    left = frame.area_px[2] + 14 * ui + 4
    panel = _Panel(image, left, frame.width_px - 12 * ui - 4, frame.area_px[1], ui)
    _draw_wind(panel, layers)
    _draw_legend(panel, site, layers)
    _draw_actions(panel, site, layers)
    return panel.y


def _draw_legend(panel: _Panel, site: Site, layers: MapLayers) -> None:
    panel.heading("Legend")
    listed = {*layers.usable_assembly_point_ids, *layers.excluded_assembly_point_ids}
    unlisted = any(point.id not in listed for point in site.assembly_points)
    present = set(layers.zones_m)
    affected = set(layers.building_zones.values())
    rows: list[tuple[bool, str, Colour, str]] = [
        *(
            (
                level in present,
                ZONE_STYLES[level].label,
                ZONE_STYLES[level].edge
                if ZONE_STYLES[level].dashed
                else _tinted(ZONE_STYLES[level]),
                "dash" if ZONE_STYLES[level].dashed else "box",
            )
            for level in ZONE_LEVELS
        ),
        (bool(layers.median_zones_m), "Zone at median rate (dotted)", MUTED_TEXT, "dash"),
        (layers.leak_position_m is not None, "Estimated leak position", LEAK, "disc"),
        (layers.leak_credible_m is not None, "Credible leak range", CREDIBLE_RANGE, "line"),
        (True, "Oil pipeline", PIPELINE, "line"),
        (bool(layers.valves_to_close), "Block valve to CLOSE", VALVE_TO_CLOSE, "disc"),
        (True, "Other block valve", BACKGROUND, "disc"),
        (True, "Building", BUILDING_FILL, "box"),
        *(
            (
                level in affected,
                f"Building in {level} zone",
                ZONE_STYLES[level].building_fill,
                "box",
            )
            for level in ZONE_LEVELS
        ),
        (bool(layers.routes), "Evacuation route", ROUTE, "arrow"),
        (True, "Assembly point, usable", ASSEMBLY_USABLE, "disc"),
        (unlisted, "Assembly point, status not given", ASSEMBLY_USABLE, "ring"),
        (
            bool(layers.excluded_assembly_point_ids),
            "Assembly point, excluded",
            ASSEMBLY_EXCLUDED,
            "cross",
        ),
        (bool(layers.traffic_control_road_ids), "Road: traffic control", TRAFFIC_CONTROL, "road"),
        (bool(layers.closed_road_ids), "Road: closed", ROAD_CLOSED, "road"),
        (True, "Gas detector / camera", DETECTOR, "disc"),
    ]
    for shown, text, colour, kind in rows:
        if shown:
            panel.entry(text, colour, kind)


def _draw_actions(panel: _Panel, site: Site, layers: MapLayers) -> None:
    panel.heading("Actions")
    valves = ", ".join(sorted(layers.valves_to_close)) or "none"
    panel.line(f"Close valves: {valves}", VALVE_TO_CLOSE if layers.valves_to_close else TEXT)
    names = {point.id: point.name for point in site.assembly_points}
    usable = [f"{pid} {names[pid]}" for pid in layers.usable_assembly_point_ids]
    panel.line("Gather at: " + ("; ".join(usable) or "none given"))
    if layers.excluded_assembly_point_ids:
        panel.line("Do not use: " + ", ".join(sorted(layers.excluded_assembly_point_ids)))
    counts = [
        f"{sum(1 for level in layers.building_zones.values() if level == zone)} {zone}"
        for zone in ZONE_LEVELS
        if zone in layers.building_zones.values()
    ]
    panel.line("Buildings affected: " + (", ".join(counts) or "none"))
    if layers.closed_road_ids:
        road_names = {road.id: road.name for road in site.roads}
        closed = sorted({road_names[road_id] for road_id in layers.closed_road_ids})
        panel.line("Closed: " + ", ".join(closed), ROAD_CLOSED)
    if layers.notes:
        panel.heading("Notes")
        for note in layers.notes:
            panel.line(note)


def _tinted(style: ZoneStyle) -> Colour:
    """The colour a zone's translucent fill gives over the map background."""
    mixed = np.asarray(MAP_BACKGROUND) * (1 - style.fill_alpha) + np.asarray(style.fill) * (
        style.fill_alpha
    )
    blue, green, red = (int(value) for value in np.round(mixed))
    return (blue, green, red)


# ---------------------------------------------------------------------------------------------
# Entry point


def render_incident_map(
    site: Site,
    layers: MapLayers,
    *,
    width_px: int = REFERENCE_WIDTH_PX,
    height_px: int = REFERENCE_HEIGHT_PX,
    title: str,
) -> bytes:
    """Draw the incident map of ``site`` with ``layers`` and return it as PNG bytes.

    Parameters
    ----------
    site : Site
        The site model (pipelines, valves, buildings, roads, assembly points, devices).
    layers : MapLayers
        Zones, leak, valves to close, affected buildings, routes, wind, time [m, deg, m s-1].
    width_px, height_px : int
        Size of the picture [px]; element sizes scale from the 1600 x 1200 px reference.
    title : str
        Title printed in the top bar (shortened with ``~`` when too long).

    Returns
    -------
    bytes
        An RGB PNG of ``width_px`` x ``height_px``; identical inputs give identical bytes.
    """
    check_layers(site, layers)
    frame = map_frame(site, layers, width_px=width_px, height_px=height_px)
    ui = frame.ui_scale
    image: Image = np.full((height_px, width_px, 3), BACKGROUND, dtype=np.uint8)
    left, top, right, bottom = frame.area_px
    image[top:bottom, left:right] = _draw_map(frame, site, layers, ui)
    _draw_north_arrow(image, frame, ui)
    _draw_scale_bar(image, frame, ui)
    cv2.rectangle(image, (left, top), (right - 1, bottom - 1), MUTED_TEXT, 1)
    _draw_title(image, frame, title, layers, ui)
    panel_bottom = _draw_panel(image, frame, site, layers, ui)
    _draw_detail(image, frame, site, layers, panel_bottom)
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - OpenCV failing to encode an 8-bit BGR array
        raise RuntimeError("OpenCV could not encode the incident map as PNG")
    return bytes(encoded.tobytes())


def _draw_map(frame: MapFrame, site: Site, layers: MapLayers, ui: float) -> Image:
    """The map area of ``frame``: every layer, then the labels."""
    left, top, right, bottom = frame.area_px
    # Drawn on a canvas the size of the picture so that pixel coordinates are the frame's; only
    # the map area is kept.
    canvas: Image = np.full((frame.height_px, frame.width_px, 3), MAP_BACKGROUND, dtype=np.uint8)
    labeller = _Labeller(frame.area_px)
    _draw_roads(canvas, frame, site, ui)
    _draw_networks(canvas, frame, site, ui)
    _draw_traffic_control(canvas, frame, site, layers, ui)
    _draw_buildings(canvas, frame, site, layers)
    _draw_zones(canvas, frame, layers, ui)
    _draw_credible(canvas, frame, layers, ui)
    _draw_pipelines(canvas, frame, site, labeller, ui)
    _draw_devices(canvas, frame, site, ui)
    _draw_routes(canvas, frame, layers, ui)
    _draw_valves(canvas, frame, site, layers, labeller=labeller, ui=ui)
    _draw_assembly_points(canvas, frame, site, layers, labeller=labeller, ui=ui)
    _draw_leak(canvas, frame, layers, labeller, ui)
    _request_building_labels(frame, site, layers, labeller, ui)
    _request_road_names(frame, site, labeller, ui)
    labeller.draw(canvas)
    return canvas[top:bottom, left:right]


def detail_frame(
    frame: MapFrame, layers: MapLayers, *, width_px: int, height_px: int
) -> MapFrame | None:
    """The frame of the detail view around the incident, or ``None`` when none is needed.

    A detail view is drawn when the zones, the leak and its credible region span less than
    ``DETAIL_TRIGGER_PX`` on the main map; it shows them with a margin, at least
    ``DETAIL_MINIMUM_SPAN_M`` across, in a ``width_px`` x ``height_px`` box.
    """
    items = layers.incident_geometries_m()
    if not items:
        return None
    stacked = np.stack([np.asarray(item.bounds, dtype=np.float64) for item in items])
    east_min, north_min = stacked[:, :2].min(axis=0)
    east_max, north_max = stacked[:, 2:].max(axis=0)
    span = max(east_max - east_min, north_max - north_min)
    if span * frame.px_per_m >= DETAIL_TRIGGER_PX * frame.ui_scale:
        return None
    span = max(span * (1.0 + 4.0 * MARGIN_FRACTION), DETAIL_MINIMUM_SPAN_M)
    px_per_m = min(width_px, height_px) / span
    return MapFrame(
        width_px=width_px,
        height_px=height_px,
        area_px=(0, 0, width_px, height_px),
        east_min_m=float((east_min + east_max) / 2 - width_px / 2 / px_per_m),
        north_max_m=float((north_min + north_max) / 2 + height_px / 2 / px_per_m),
        px_per_m=float(px_per_m),
    )


def _draw_detail(
    image: Image, frame: MapFrame, site: Site, layers: MapLayers, panel_bottom: float
) -> None:
    """A detail view of the incident area at the bottom of the side panel, when it fits."""
    ui = frame.ui_scale
    left = round(frame.area_px[2] + 14 * ui + 4)
    right = frame.width_px - round(12 * ui + 4)
    heading_top = round(panel_bottom + 12 * ui)
    top = round(heading_top + 34 * ui)
    bottom = frame.height_px - round(PAD_PX * ui)
    size = min(right - left, bottom - top)
    if size < DETAIL_MINIMUM_PX * ui:
        return
    detail = detail_frame(frame, layers, width_px=right - left, height_px=size)
    if detail is None:
        return
    image[top : top + size, left:right] = _draw_map(detail, site, layers, ui)
    view = image[top : top + size, left:right]
    _draw_scale_bar(view, detail, ui)
    cv2.rectangle(image, (left, top), (right - 1, top + size - 1), MUTED_TEXT, 1)
    across = (right - left) / detail.px_per_m
    heading = f"Detail around the leak ({across:.0f} m across)"
    _text(image, heading, (left, top - 10 * ui), 0.62 * ui, TEXT, _size(2, ui), halo=False)
    # Where the detail is on the main map.
    corners = frame.to_pixel(detail.to_metres(np.array([[0.0, 0.0], [right - left, size]])))
    map_left, map_top, map_right, map_bottom = frame.area_px
    first = np.clip(corners[0], [map_left, map_top], [map_right - 1, map_bottom - 1])
    second = np.clip(corners[1], [map_left, map_top], [map_right - 1, map_bottom - 1])
    cv2.rectangle(
        image,
        tuple(np.round(first).astype(int).tolist()),
        tuple(np.round(second).astype(int).tolist()),
        TEXT,
        1,
        cv2.LINE_AA,
    )
