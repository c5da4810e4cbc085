"""Load and validate a site description, ``sites/<name>/site.toml``, into a :class:`Site`.

The TOML file is the hand-maintained source of truth; its format is documented in
``docs/site-model.md``. Everything is SI with the unit in the key name (``diameter_m``,
``operating_pressure_pa``, ``heading_deg``), so nothing is converted here except that positions of
gas detectors are derived from their pipeline chainage or their manhole.

Validation collects every problem it finds and raises one :class:`SiteValidationError` whose
message has one line per problem, naming the file and the field path, e.g.::

    sites/wanli/site.toml: gas_detectors[3].pipeline_id: unknown pipeline 'P9' (entry 'GD04')

Array indices in field paths count from 0, in the order the entries appear in the file.
"""

from __future__ import annotations

import math
import re
import tomllib
import zoneinfo
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from pipesentinel.site import (
    DEFAULT_TIME_ZONE,
    AssemblyPoint,
    Building,
    BuildingUse,
    Camera,
    DetectorPlacement,
    FloatArray,
    Gas,
    GasDetector,
    GeoOrigin,
    Manhole,
    MunicipalPipe,
    NetworkKind,
    Pipeline,
    Product,
    Road,
    RoadNode,
    Site,
    UtilityTunnel,
    Valve,
    WindStation,
)

SITE_FILE_NAME = "site.toml"

# How far outside the bounding box of the site's infrastructure (Site.extent_m) a device may sit
# before it is taken for a typo in its coordinates. A design choice: a wind station or a camera
# may legitimately stand a little outside the built-up area.
DEFAULT_DEVICE_MARGIN_M = 200.0

# Ids become MQTT topic levels (``.../{kind}/{device}``) and URL path parts, so they are limited
# to letters, digits, '-' and '_' (no '/', '+', '#', spaces); 64 characters at most.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

# 2ooN voting needs at least two detectors in a zone: a zone of one could never reach two votes.
MIN_DETECTORS_PER_ZONE = 2

# A polygon or polyline needs this many vertices; a footprint with less area is degenerate.
MIN_POLYLINE_VERTICES = 2
MIN_POLYGON_VERTICES = 3
MIN_FOOTPRINT_AREA_M2 = 1.0

# Largest meaningful full scale of a gas detector: 100 %vol [ppm].
MAX_FULL_SCALE_PPM = 1e6

# Ranges of angles and of the geodetic origin [deg].
MAX_LATITUDE_DEG = 90.0
MAX_LONGITUDE_DEG = 180.0
FULL_TURN_DEG = 360.0
MAX_TILT_DEG = 90.0
MAX_FOV_DEG = 180.0

# Sections of the file: top-level arrays of tables, in the order they are read.
ARRAY_SECTIONS: tuple[str, ...] = (
    "pipelines",
    "valves",
    "municipal_pipes",
    "utility_tunnels",
    "manholes",
    "buildings",
    "road_nodes",
    "roads",
    "assembly_points",
    "gas_detectors",
    "wind_stations",
    "cameras",
)
REQUIRED_ARRAY_SECTIONS = frozenset({"pipelines"})
TOP_LEVEL_KEYS: tuple[str, ...] = ("site", "defaults", *ARRAY_SECTIONS)

# The keys each entry of each section may have (``id`` included); ``[defaults.<section>]`` may
# set any of them except ``id``.
SECTION_KEYS: dict[str, frozenset[str]] = {
    "pipelines": frozenset(
        {
            "id",
            "name",
            "product",
            "vertices_m",
            "diameter_m",
            "wall_thickness_m",
            "depth_of_cover_m",
            "operating_pressure_pa",
        }
    ),
    "valves": frozenset({"id", "pipeline_id", "chainage_m", "remotely_operated"}),
    "municipal_pipes": frozenset({"id", "network", "vertices_m", "diameter_m", "depth_m"}),
    "utility_tunnels": frozenset({"id", "vertices_m", "width_m", "height_m", "depth_of_cover_m"}),
    "manholes": frozenset({"id", "network", "position_m", "depth_m", "tunnel_id"}),
    "buildings": frozenset(
        {"id", "name", "use", "footprint_m", "height_m", "occupants_day", "occupants_night"}
    ),
    "road_nodes": frozenset({"id", "position_m"}),
    "roads": frozenset({"id", "name", "from_node", "to_node", "via_m", "lanes"}),
    "assembly_points": frozenset({"id", "name", "position_m", "capacity_persons"}),
    "gas_detectors": frozenset(
        {
            "id",
            "placement",
            "gases",
            "full_scale_ppm",
            "t90_s",
            "sample_period_s",
            "height_m",
            "zone",
            "pipeline_id",
            "chainage_m",
            "lateral_offset_m",
            "manhole_id",
        }
    ),
    "wind_stations": frozenset(
        {"id", "position_m", "mast_height_m", "sample_period_s", "averaging_period_s"}
    ),
    "cameras": frozenset(
        {
            "id",
            "position_m",
            "mounting_height_m",
            "heading_deg",
            "tilt_deg",
            "horizontal_fov_deg",
            "vertical_fov_deg",
            "laser_range_m",
            "frame_period_s",
            "resolution_px",
        }
    ),
}
PIPELINE_DETECTOR_KEYS = frozenset({"pipeline_id", "chainage_m", "lateral_offset_m"})


# --------------------------------------------------------------------------------------------
# Problems and the error that carries them


@dataclass(frozen=True)
class SiteIssue:
    """One problem in a site file: the field path (``gas_detectors[3].pipeline_id``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SiteValidationError(ValueError):
    """A site file is invalid; ``issues`` lists every problem found, not just the first.

    ``str(error)`` has a summary line, then one line per problem: ``<file>: <path>: <message>``.
    """

    def __init__(self, source: Path, issues: Sequence[SiteIssue]) -> None:
        self.source = source
        self.issues: tuple[SiteIssue, ...] = tuple(issues)
        count = len(self.issues)
        summary = f"{source}: {count} problem{'s' if count != 1 else ''} in the site file"
        super().__init__("\n".join([summary, *self.messages]))

    @property
    def messages(self) -> tuple[str, ...]:
        """One line per problem: ``<file>: <field path>: <message>``."""
        return tuple(f"{self.source}: {issue}" for issue in self.issues)


# --------------------------------------------------------------------------------------------
# Typed, path-aware reading of TOML tables


@dataclass(frozen=True)
class _Range:
    """An interval of allowed values; open ends are strict."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


_ANY = _Range()
_POSITIVE = _Range(0.0, low_open=True)
_NON_NEGATIVE = _Range(0.0)
_NEGATIVE = _Range(high=0.0, high_open=True)

EnumT = TypeVar("EnumT", bound=StrEnum)
ObjectT = TypeVar("ObjectT")


def _describe(value: object) -> str:
    """A short description of a TOML value for error messages."""
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }
    kind = names.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, list | dict) else ""
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}".strip()


class _Issues:
    """The growing list of problems of one file."""

    def __init__(self) -> None:
        self.items: list[SiteIssue] = []

    def add(self, path: str, message: str) -> None:
        issue = SiteIssue(path, message)
        if issue not in self.items:  # a bad default is reported once, not once per entry
            self.items.append(issue)


class _Table:
    """One TOML table being read: typed accessors that record problems instead of raising.

    Every accessor returns a placeholder when the value is missing or wrong, and marks the table
    as failed (``ok`` is then false) so that the caller does not build an object from it.
    """

    def __init__(
        self,
        issues: _Issues,
        path: str,
        data: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        defaults_path: str = "",
    ) -> None:
        self._issues = issues
        self.path = path
        self._data = data
        self._defaults = defaults or {}
        self._defaults_path = defaults_path
        self._used: set[str] = set()
        self.ok = True
        self.entry_id: str | None = None

    def _key_path(self, key: str) -> str:
        if key not in self._data and key in self._defaults:
            return f"{self._defaults_path}.{key}"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str) -> None:
        """Record a problem with ``key`` (or with the whole table when ``key`` is None)."""
        self.ok = False
        path = self.path if key is None else self._key_path(key)
        if self.entry_id is not None and not path.startswith(f"{self._defaults_path}."):
            message = f"{message} (entry {self.entry_id!r})"
        self._issues.add(path, message)

    def _raw(self, key: str, *, required: bool) -> tuple[bool, Any]:
        self._used.add(key)
        if key in self._data:
            return True, self._data[key]
        if key in self._defaults:
            return True, self._defaults[key]
        if required:
            self.error(key, "missing required key")
        return False, None

    def subtable(self, key: str) -> Mapping[str, Any] | None:
        """A required sub-table; ``None`` (problem recorded) when missing or not a table."""
        found, value = self._raw(key, required=True)
        if not found:
            return None
        if not isinstance(value, dict):
            self.error(key, f"expected a table, got {_describe(value)}")
            return None
        return value

    def skip_rest(self, keys: frozenset[str]) -> None:
        """Do not report ``keys`` as unknown (used when a problem already stops the entry)."""
        self._used |= keys

    def forbid(self, key: str, reason: str) -> None:
        """Record a problem if the entry itself sets ``key`` (defaults are not blamed)."""
        self._used.add(key)
        if key in self._data:
            self.error(key, f"not allowed {reason}")

    def string(self, key: str) -> str:
        """A required non-empty string."""
        found, value = self._raw(key, required=True)
        return self._check_string(key, value) if found else ""

    def optional_string(self, key: str) -> str | None:
        """An optional non-empty string; ``None`` when absent."""
        found, value = self._raw(key, required=False)
        return self._check_string(key, value) if found else None

    def _check_string(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {_describe(value)}")
            return ""
        if not value.strip():
            self.error(key, "must not be empty")
        return value

    def identifier(self, key: str = "id") -> str:
        """A required id matching :data:`ID_PATTERN`."""
        found, value = self._raw(key, required=True)
        if not found:
            return ""
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {_describe(value)}")
            return ""
        if not ID_PATTERN.fullmatch(value):
            self.error(
                key,
                f"invalid id {value!r}: use 1-64 letters, digits, '-' or '_', "
                "starting with a letter or digit",
            )
        return value

    def number(self, key: str, allowed: _Range = _ANY, *, default: float | None = None) -> float:
        """A finite float (TOML integers are accepted) within ``allowed``.

        Required unless a ``default`` is given.
        """
        found, value = self._raw(key, required=default is None)
        if not found:
            return math.nan if default is None else default
        return self._check_number(key, value, allowed)

    def _check_number(self, key: str, value: object, allowed: _Range) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, f"expected a number, got {_describe(value)}")
            return math.nan
        number = float(value)
        if not math.isfinite(number):
            self.error(key, f"must be finite, got {number}")
        elif not allowed.contains(number):
            self.error(key, f"must be {allowed.describe()}, got {number:g}")
        return number

    def integer(self, key: str, allowed: _Range = _ANY) -> int:
        """A required integer within ``allowed``."""
        found, value = self._raw(key, required=True)
        if not found:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"expected an integer, got {_describe(value)}")
            return 0
        if not allowed.contains(value):
            self.error(key, f"must be {allowed.describe()}, got {value}")
        return value

    def boolean(self, key: str) -> bool:
        """A required boolean."""
        found, value = self._raw(key, required=True)
        if not found:
            return False
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {_describe(value)}")
            return False
        return value

    def choice(self, key: str, enum_type: type[EnumT]) -> EnumT | None:
        """A required member of ``enum_type``, given by its value."""
        found, value = self._raw(key, required=True)
        return self._check_choice(key, value, enum_type) if found else None

    def _check_choice(self, key: str, value: object, enum_type: type[EnumT]) -> EnumT | None:
        known = ", ".join(member.value for member in enum_type)
        if not isinstance(value, str):
            self.error(key, f"expected a string (one of: {known}), got {_describe(value)}")
            return None
        try:
            return enum_type(value)
        except ValueError:
            self.error(key, f"unknown value {value!r} (expected one of: {known})")
            return None

    def choices(self, key: str, enum_type: type[EnumT]) -> tuple[EnumT, ...]:
        """A required non-empty array of distinct members of ``enum_type``."""
        found, value = self._raw(key, required=True)
        if not found:
            return ()
        if not isinstance(value, list) or not value:
            self.error(key, f"expected a non-empty array of strings, got {_describe(value)}")
            return ()
        members = [
            self._check_choice(f"{key}[{index}]", item, enum_type)
            for index, item in enumerate(value)
        ]
        chosen = tuple(member for member in members if member is not None)
        if len(set(chosen)) != len(chosen):
            self.error(key, "lists a value more than once")
        return chosen

    def resolution(self, key: str) -> tuple[int, int]:
        """A required ``[width, height]`` pair of positive integers [px]."""
        found, value = self._raw(key, required=True)
        if not found:
            return (0, 0)
        pair_length = 2
        if (
            not isinstance(value, list)
            or len(value) != pair_length
            or not all(isinstance(item, int) and not isinstance(item, bool) for item in value)
        ):
            self.error(key, f"expected [width, height] in integer pixels, got {value!r}")
            return (0, 0)
        width, height = value
        if width <= 0 or height <= 0:
            self.error(key, f"width and height must be > 0, got {value!r}")
        return (width, height)

    def points(self, key: str, *, min_count: int, required: bool = True) -> FloatArray:
        """An array of ``[east, north]`` pairs, shape (n, 2) [m]; empty (0, 2) when absent."""
        found, value = self._raw(key, required=required)
        empty = np.zeros((0, 2))
        if not found:
            return empty
        if not isinstance(value, list):
            self.error(key, f"expected an array of [east, north] pairs, got {_describe(value)}")
            return empty
        rows: list[tuple[float, float]] = []
        for index, item in enumerate(value):
            point = self._check_pair(f"{key}[{index}]", item)
            if point is not None:
                rows.append(point)
        if len(value) < min_count:
            self.error(key, f"needs at least {min_count} vertices, got {len(value)}")
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def point(self, key: str) -> FloatArray:
        """A required ``[east, north]`` pair, shape (2,) [m]."""
        found, value = self._raw(key, required=True)
        point = self._check_pair(key, value) if found else None
        return np.array(point if point is not None else (math.nan, math.nan))

    def _check_pair(self, key: str, value: object) -> tuple[float, float] | None:
        pair_length = 2
        if not isinstance(value, list) or len(value) != pair_length:
            self.error(key, f"expected an [east, north] pair in metres, got {value!r}")
            return None
        east, north = (self._check_number(key, item, _ANY) for item in value)
        if not (math.isfinite(east) and math.isfinite(north)):
            return None
        return (east, north)

    def finish(self) -> bool:
        """Record every key of the entry that nothing read; return whether the table is valid."""
        for key in self._data:
            if key not in self._used:
                known = ", ".join(sorted(self._used))
                self.error(key, f"unknown key {key!r} (known keys here: {known})")
        return self.ok


# --------------------------------------------------------------------------------------------
# Geometry checks (pure functions over arrays)


def _zero_length_steps(vertices_m: FloatArray) -> list[int]:
    """Indices ``i`` where vertex ``i + 1`` repeats vertex ``i``."""
    steps = np.hypot(*np.diff(vertices_m, axis=0).T)
    return [int(index) for index in np.flatnonzero(steps == 0.0)]


def _polygon_area_m2(vertices_m: FloatArray) -> float:
    """Unsigned area of a simple polygon by the shoelace formula [m2]."""
    east, north = vertices_m.T
    return float(abs(np.dot(east, np.roll(north, -1)) - np.dot(north, np.roll(east, -1))) / 2)


def _self_intersections(vertices_m: FloatArray) -> list[tuple[int, int]]:
    """Pairs of non-adjacent edges of a closed polygon that touch or cross.

    Edge ``i`` runs from vertex ``i`` to vertex ``i + 1`` (the last back to vertex 0). Uses the
    orientation test of Cormen et al., *Introduction to Algorithms*, 3rd ed., section 33.1,
    vectorized over all edge pairs.
    """
    starts = vertices_m
    ends = np.roll(vertices_m, -1, axis=0)
    count = len(vertices_m)

    def orientation(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
        cross = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
            c[..., 0] - a[..., 0]
        )
        return np.sign(cross)

    def on_segment(a: FloatArray, b: FloatArray, c: FloatArray) -> NDArray[np.bool_]:
        """Whether ``c``, known collinear with ``a b``, lies within its bounding box."""
        inside: NDArray[np.bool_] = np.all(
            (c >= np.minimum(a, b)) & (c <= np.maximum(a, b)), axis=-1
        )
        return inside

    p1, p2 = starts[:, np.newaxis], ends[:, np.newaxis]
    q1, q2 = starts[np.newaxis, :], ends[np.newaxis, :]
    d1 = orientation(q1, q2, p1)
    d2 = orientation(q1, q2, p2)
    d3 = orientation(p1, p2, q1)
    d4 = orientation(p1, p2, q2)
    crossing = (d1 * d2 < 0) & (d3 * d4 < 0)
    touching = (
        ((d1 == 0) & on_segment(q1, q2, p1))
        | ((d2 == 0) & on_segment(q1, q2, p2))
        | ((d3 == 0) & on_segment(p1, p2, q1))
        | ((d4 == 0) & on_segment(p1, p2, q2))
    )
    first, second = np.nonzero(crossing | touching)
    pairs = []
    for i, j in zip(first.tolist(), second.tolist(), strict=True):
        adjacent = j == i + 1 or (i == 0 and j == count - 1)
        if i < j and not adjacent:
            pairs.append((i, j))
    return pairs


def _point_to_polyline_distance_m(point_m: FloatArray, vertices_m: FloatArray) -> float:
    """Horizontal distance from a point to a polyline [m]."""
    starts = vertices_m[:-1]
    steps = np.diff(vertices_m, axis=0)
    fraction = np.clip(
        np.sum((point_m - starts) * steps, axis=-1) / np.sum(steps**2, axis=-1), 0, 1
    )
    offsets = point_m - (starts + fraction[:, np.newaxis] * steps)
    return float(np.min(np.hypot(offsets[:, 0], offsets[:, 1])))


# --------------------------------------------------------------------------------------------
# Reading the file


@dataclass
class _RawPipeline:
    """A pipeline's own fields, before its valves are attached."""

    table_path: str
    id: str
    name: str
    product: Product
    vertices_m: FloatArray
    diameter_m: float
    wall_thickness_m: float
    depth_of_cover_m: float
    operating_pressure_pa: float
    valves: list[Valve] = field(default_factory=list)

    @property
    def length_m(self) -> float:
        return float(np.sum(np.hypot(*np.diff(self.vertices_m, axis=0).T)))


@dataclass(frozen=True)
class _Location:
    """Where a gas detector is, as derived from its pipeline chainage or its manhole."""

    placement: DetectorPlacement
    position_m: FloatArray  # (3,) east, north, height above ground
    default_zone: str
    pipeline_id: str | None = None
    chainage_m: float | None = None
    manhole_id: str | None = None


class _SiteReader:
    """Reads one parsed TOML document into site objects, collecting problems."""

    def __init__(self, document: Mapping[str, Any], *, device_margin_m: float) -> None:
        self.document = document
        self.device_margin_m = device_margin_m
        self.issues = _Issues()
        self.ids: dict[str, str] = {}  # id -> path of the entry that defined it first
        self.declared: dict[str, set[str]] = {section: set() for section in ARRAY_SECTIONS}
        self.site_id = ""
        self.site_name = ""
        self.time_zone = DEFAULT_TIME_ZONE
        self.sections_ok: dict[str, bool] = {}
        self.defaults: dict[str, Mapping[str, Any]] = {}

    # ---- helpers

    def register_id(self, table: _Table, entry_id: str) -> None:
        """Record ``entry_id``; a problem if any object (of any kind) already uses it."""
        if not entry_id or not ID_PATTERN.fullmatch(entry_id):
            return
        self.declared[table.path.partition("[")[0]].add(entry_id)
        first = self.ids.get(entry_id)
        if first is not None:
            table.error("id", f"duplicate id {entry_id!r} (first used by {first})")
        else:
            self.ids[entry_id] = table.path
        table.entry_id = entry_id

    def entries(self, section: str) -> Iterator[_Table]:
        """Tables of one array section, with the section's defaults behind them."""
        self.sections_ok[section] = True
        if section not in self.document:
            if section in REQUIRED_ARRAY_SECTIONS:
                self.issues.add(section, f"missing required section [[{section}]]")
                self.sections_ok[section] = False
            return
        value = self.document[section]
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.issues.add(
                section, f"expected an array of tables ([[{section}]]), got {_describe(value)}"
            )
            self.sections_ok[section] = False
            return
        if section in REQUIRED_ARRAY_SECTIONS and not value:
            self.issues.add(section, "needs at least one entry")
            self.sections_ok[section] = False
        for index, item in enumerate(value):
            yield _Table(
                self.issues,
                f"{section}[{index}]",
                item,
                defaults=self.defaults.get(section),
                defaults_path=f"defaults.{section}",
            )

    def finished(self, section: str, table: _Table) -> bool:
        """Finish ``table``; note a failure against its section."""
        ok = table.finish()
        if not ok:
            self.sections_ok[section] = False
        return ok

    # ---- top level

    def read_top_level(self) -> GeoOrigin | None:
        known = ", ".join(TOP_LEVEL_KEYS)
        for key, value in self.document.items():
            if key not in TOP_LEVEL_KEYS:
                hint = f"[[{key}]]" if isinstance(value, list) else key
                self.issues.add(key, f"unknown section or key {hint!r} (known: {known})")
        self.read_defaults()
        return self.read_site_table()

    def read_defaults(self) -> None:
        value = self.document.get("defaults", {})
        if not isinstance(value, dict):
            self.issues.add("defaults", f"expected a table, got {_describe(value)}")
            return
        for section, defaults in value.items():
            path = f"defaults.{section}"
            if section not in SECTION_KEYS:
                sections = ", ".join(ARRAY_SECTIONS)
                self.issues.add(path, f"unknown section {section!r} (known: {sections})")
                continue
            if not isinstance(defaults, dict):
                self.issues.add(path, f"expected a table, got {_describe(defaults)}")
                continue
            allowed = SECTION_KEYS[section] - {"id"}
            for key in defaults:
                if key not in allowed:
                    self.issues.add(
                        f"{path}.{key}",
                        f"unknown key {key!r} (a default may set: {', '.join(sorted(allowed))})",
                    )
            self.defaults[section] = {key: item for key, item in defaults.items() if key in allowed}

    def read_site_table(self) -> GeoOrigin | None:
        value = self.document.get("site")
        if not isinstance(value, dict):
            got = "nothing" if value is None else _describe(value)
            self.issues.add("site", f"expected a [site] table with id, name and origin, got {got}")
            return None
        table = _Table(self.issues, "site", value)
        self.site_id = table.identifier("id")
        self.site_name = table.string("name")
        time_zone = table.optional_string("time_zone")
        if time_zone is not None:
            try:
                zoneinfo.ZoneInfo(time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.issues.add(
                    "site.time_zone",
                    f"unknown IANA time zone {time_zone!r} (e.g. 'Asia/Shanghai', 'UTC')",
                )
            else:
                self.time_zone = time_zone
        origin_value = table.subtable("origin")
        origin: GeoOrigin | None = None
        if origin_value is not None:
            origin_table = _Table(self.issues, "site.origin", origin_value)
            latitude = origin_table.number(
                "latitude_deg", _Range(-MAX_LATITUDE_DEG, MAX_LATITUDE_DEG)
            )
            longitude = origin_table.number(
                "longitude_deg", _Range(-MAX_LONGITUDE_DEG, MAX_LONGITUDE_DEG)
            )
            altitude = origin_table.number("altitude_m")
            if origin_table.finish():
                origin = GeoOrigin(latitude, longitude, altitude)
        return origin if table.finish() else None

    # ---- sections

    def read_pipelines(self) -> list[_RawPipeline]:
        raw: list[_RawPipeline] = []
        for table in self.entries("pipelines"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            name = table.string("name")
            product = table.choice("product", Product)
            vertices = table.points("vertices_m", min_count=MIN_POLYLINE_VERTICES)
            diameter = table.number("diameter_m", _POSITIVE)
            wall = table.number("wall_thickness_m", _POSITIVE)
            cover = table.number("depth_of_cover_m", _POSITIVE)
            pressure = table.number("operating_pressure_pa", _POSITIVE)
            self.check_polyline(table, "vertices_m", vertices)
            if diameter > 0 and wall >= diameter / 2:
                table.error(
                    "wall_thickness_m",
                    f"must be less than half the outside diameter ({diameter / 2:g} m), "
                    f"got {wall:g}",
                )
            if self.finished("pipelines", table) and product is not None:
                raw.append(
                    _RawPipeline(
                        table.path,
                        entry_id,
                        name,
                        product,
                        vertices,
                        diameter,
                        wall,
                        cover,
                        pressure,
                    )
                )
        return raw

    def read_valves(self, raw_pipelines: list[_RawPipeline]) -> None:
        by_id = {pipeline.id: pipeline for pipeline in raw_pipelines}
        chainages: dict[tuple[str, float], str] = {}
        for table in self.entries("valves"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            pipeline = self.resolve(table, "pipeline_id", "pipelines", by_id)
            chainage = table.number("chainage_m")
            remote = table.boolean("remotely_operated")
            if pipeline is not None and math.isfinite(chainage):
                if not 0.0 <= chainage <= pipeline.length_m:
                    table.error(
                        "chainage_m",
                        f"valve not on pipeline {pipeline.id!r}: chainage {chainage:g} m outside "
                        f"0..{pipeline.length_m:.1f} m",
                    )
                elif (pipeline.id, chainage) in chainages:
                    first = chainages[(pipeline.id, chainage)]
                    table.error(
                        "chainage_m",
                        f"another valve ({first}) sits at chainage {chainage:g} m of "
                        f"{pipeline.id!r}",
                    )
                else:
                    chainages[(pipeline.id, chainage)] = table.path
            if self.finished("valves", table) and pipeline is not None:
                pipeline.valves.append(Valve(entry_id, pipeline.id, chainage, remote))

    def build_pipelines(self, raw_pipelines: list[_RawPipeline]) -> list[Pipeline]:
        pipelines = []
        for raw in raw_pipelines:
            pipeline = Pipeline(
                id=raw.id,
                name=raw.name,
                product=raw.product,
                vertices_m=raw.vertices_m,
                diameter_m=raw.diameter_m,
                wall_thickness_m=raw.wall_thickness_m,
                depth_of_cover_m=raw.depth_of_cover_m,
                operating_pressure_pa=raw.operating_pressure_pa,
                valves=tuple(sorted(raw.valves, key=lambda valve: valve.chainage_m)),
            )
            for segment in pipeline.segments:
                first = self.ids.get(segment.id)
                if first is not None:
                    self.issues.add(
                        raw.table_path,
                        f"derived segment id {segment.id!r} is already used by {first}",
                    )
                    self.sections_ok["pipelines"] = False
                else:
                    self.ids[segment.id] = f"{raw.table_path} (segment)"
            pipelines.append(pipeline)
        return pipelines

    def read_municipal_pipes(self) -> list[MunicipalPipe]:
        pipes = []
        for table in self.entries("municipal_pipes"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            network = table.choice("network", NetworkKind)
            vertices = table.points("vertices_m", min_count=MIN_POLYLINE_VERTICES)
            diameter = table.number("diameter_m", _POSITIVE)
            depth = table.number("depth_m", _POSITIVE)
            self.check_polyline(table, "vertices_m", vertices)
            if diameter > 0 and depth > 0 and depth <= diameter / 2:
                table.error(
                    "depth_m",
                    f"the pipe axis must lie deeper than its radius ({diameter / 2:g} m), "
                    f"got {depth:g}",
                )
            if self.finished("municipal_pipes", table) and network is not None:
                pipes.append(MunicipalPipe(entry_id, network, vertices, diameter, depth))
        return pipes

    def read_utility_tunnels(self) -> list[UtilityTunnel]:
        tunnels = []
        for table in self.entries("utility_tunnels"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            vertices = table.points("vertices_m", min_count=MIN_POLYLINE_VERTICES)
            width = table.number("width_m", _POSITIVE)
            height = table.number("height_m", _POSITIVE)
            cover = table.number("depth_of_cover_m", _POSITIVE)
            self.check_polyline(table, "vertices_m", vertices)
            if self.finished("utility_tunnels", table):
                tunnels.append(UtilityTunnel(entry_id, vertices, width, height, cover))
        return tunnels

    def read_manholes(self, tunnels: list[UtilityTunnel]) -> list[Manhole]:
        tunnels_by_id = {tunnel.id: tunnel for tunnel in tunnels}
        manholes = []
        for table in self.entries("manholes"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            network = table.choice("network", NetworkKind)
            position = table.point("position_m")
            depth = table.number("depth_m", _POSITIVE)
            tunnel_id = table.optional_string("tunnel_id")
            tunnel = None
            if tunnel_id:
                tunnel = self.resolve(table, "tunnel_id", "utility_tunnels", tunnels_by_id)
            if tunnel is not None:
                if np.all(np.isfinite(position)):
                    distance = _point_to_polyline_distance_m(position, tunnel.vertices_m)
                    if distance > tunnel.width_m / 2:
                        table.error(
                            "position_m",
                            f"hatch is {distance:.1f} m from the axis of tunnel {tunnel_id!r}, "
                            f"outside its half-width {tunnel.width_m / 2:g} m",
                        )
                if math.isfinite(depth) and depth < tunnel.depth_of_cover_m:
                    table.error(
                        "depth_m",
                        f"a hatch must reach tunnel {tunnel_id!r}, whose roof is "
                        f"{tunnel.depth_of_cover_m:g} m deep; got {depth:g}",
                    )
            if self.finished("manholes", table) and network is not None:
                manholes.append(Manhole(entry_id, network, position, depth, tunnel_id or None))
        return manholes

    def read_buildings(self) -> list[Building]:
        buildings = []
        for table in self.entries("buildings"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            name = table.string("name")
            use = table.choice("use", BuildingUse)
            footprint = table.points("footprint_m", min_count=MIN_POLYGON_VERTICES)
            height = table.number("height_m", _POSITIVE)
            day = table.integer("occupants_day", _NON_NEGATIVE)
            night = table.integer("occupants_night", _NON_NEGATIVE)
            if table.ok:
                self.check_footprint(table, footprint)
            if self.finished("buildings", table) and use is not None:
                buildings.append(Building(entry_id, name, use, footprint, height, day, night))
        return buildings

    def read_road_nodes(self) -> list[RoadNode]:
        nodes = []
        for table in self.entries("road_nodes"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            position = table.point("position_m")
            if self.finished("road_nodes", table):
                nodes.append(RoadNode(entry_id, position))
        return nodes

    def read_roads(self, nodes: list[RoadNode]) -> list[Road]:
        nodes_by_id = {node.id: node for node in nodes}
        roads = []
        for table in self.entries("roads"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            name = table.string("name")
            ends = [
                self.resolve(table, key, "road_nodes", nodes_by_id)
                for key in ("from_node", "to_node")
            ]
            via = table.points("via_m", min_count=0, required=False)
            lanes = table.integer("lanes", _Range(1))
            start, end = ends
            if start is not None and end is not None and table.ok:
                vertices = np.concatenate(
                    (start.position_m[np.newaxis], via, end.position_m[np.newaxis])
                )
                if start.id == end.id:
                    table.error("to_node", f"a road must join two different nodes, got {end.id!r}")
                else:
                    for index in _zero_length_steps(vertices):
                        table.error(
                            "via_m",
                            f"vertex {index + 1} of the road (from_node, via_m..., to_node) "
                            f"repeats vertex {index}",
                        )
                if self.finished("roads", table):
                    roads.append(Road(entry_id, name, start.id, end.id, vertices, lanes))
            else:
                self.finished("roads", table)
        return roads

    def read_assembly_points(self) -> list[AssemblyPoint]:
        points = []
        for table in self.entries("assembly_points"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            name = table.string("name")
            position = table.point("position_m")
            capacity = table.integer("capacity_persons", _Range(1))
            if self.finished("assembly_points", table):
                points.append(AssemblyPoint(entry_id, name, position, capacity))
        return points

    def read_gas_detectors(
        self, pipelines: list[Pipeline], manholes: list[Manhole]
    ) -> list[tuple[str, GasDetector]]:
        pipelines_by_id = {pipeline.id: pipeline for pipeline in pipelines}
        manholes_by_id = {manhole.id: manhole for manhole in manholes}
        detectors = []
        for table in self.entries("gas_detectors"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            placement = table.choice("placement", DetectorPlacement)
            gases = table.choices("gases", Gas)
            full_scale = table.number("full_scale_ppm", _Range(0.0, MAX_FULL_SCALE_PPM, True))
            t90 = table.number("t90_s", _POSITIVE)
            sample_period = table.number("sample_period_s", _POSITIVE)
            zone = table.optional_string("zone")
            located: _Location | None = None
            if placement is DetectorPlacement.PIPELINE:
                located = self.locate_on_pipeline(table, pipelines_by_id)
            elif placement is DetectorPlacement.UNDERGROUND:
                located = self.locate_in_manhole(table, manholes_by_id)
                if zone is None:
                    table.error("zone", "missing required key (underground detectors need a zone)")
            else:
                table.skip_rest(SECTION_KEYS["gas_detectors"])
            if self.finished("gas_detectors", table) and located is not None:
                detector = GasDetector(
                    id=entry_id,
                    placement=located.placement,
                    position_m=located.position_m,
                    gases=gases,
                    full_scale_ppm=full_scale,
                    t90_s=t90,
                    sample_period_s=sample_period,
                    pipeline_id=located.pipeline_id,
                    chainage_m=located.chainage_m,
                    manhole_id=located.manhole_id,
                    zone=zone or located.default_zone,
                )
                detectors.append((table.path, detector))
        return detectors

    def locate_on_pipeline(
        self, table: _Table, pipelines_by_id: Mapping[str, Pipeline]
    ) -> _Location | None:
        """Position of a leak-point detector from its pipeline, chainage and lateral offset."""
        table.forbid("manhole_id", "for placement 'pipeline' (use pipeline_id and chainage_m)")
        pipeline = self.resolve(table, "pipeline_id", "pipelines", pipelines_by_id)
        chainage = table.number("chainage_m")
        offset = table.number("lateral_offset_m", default=0.0)
        height = table.number("height_m", _POSITIVE)
        if pipeline is None or not math.isfinite(chainage):
            return None
        if not 0.0 <= chainage <= pipeline.length_m:
            table.error(
                "chainage_m",
                f"outside pipeline {pipeline.id!r}: {chainage:g} m not in "
                f"0..{pipeline.length_m:.1f} m",
            )
            return None
        ground = pipeline.point_at_chainage(chainage)
        tangent = pipeline.direction_at_chainage(chainage)
        left = np.array([-tangent[1], tangent[0]])
        return _Location(
            placement=DetectorPlacement.PIPELINE,
            position_m=np.append(ground + offset * left, height),
            default_zone=pipeline.segment_at_chainage(chainage).id,
            pipeline_id=pipeline.id,
            chainage_m=chainage,
        )

    def locate_in_manhole(
        self, table: _Table, manholes_by_id: Mapping[str, Manhole]
    ) -> _Location | None:
        """Position of an underground detector from its manhole and (negative) head height."""
        for key in sorted(PIPELINE_DETECTOR_KEYS):
            table.forbid(key, "for placement 'underground' (use manhole_id)")
        manhole = self.resolve(table, "manhole_id", "manholes", manholes_by_id)
        height = table.number("height_m", _NEGATIVE)
        if manhole is None or not math.isfinite(height):
            return None
        if height < -manhole.depth_m:
            table.error(
                "height_m",
                f"{height:g} m is below the bottom of manhole {manhole.id!r} "
                f"({-manhole.depth_m:g} m)",
            )
            return None
        return _Location(
            placement=DetectorPlacement.UNDERGROUND,
            position_m=np.append(manhole.position_m, height),
            default_zone="",
            manhole_id=manhole.id,
        )

    def read_wind_stations(self) -> list[tuple[str, WindStation]]:
        stations = []
        for table in self.entries("wind_stations"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            position = table.point("position_m")
            mast = table.number("mast_height_m", _POSITIVE)
            sample_period = table.number("sample_period_s", _POSITIVE)
            averaging = table.number("averaging_period_s", _POSITIVE)
            if self.finished("wind_stations", table):
                stations.append(
                    (table.path, WindStation(entry_id, position, mast, sample_period, averaging))
                )
        return stations

    def read_cameras(self) -> list[tuple[str, Camera]]:
        cameras = []
        fov = _Range(0.0, MAX_FOV_DEG, low_open=True, high_open=True)
        for table in self.entries("cameras"):
            entry_id = table.identifier()
            self.register_id(table, entry_id)
            camera = Camera(
                id=entry_id,
                position_m=table.point("position_m"),
                mounting_height_m=table.number("mounting_height_m", _POSITIVE),
                heading_deg=table.number("heading_deg", _Range(0.0, FULL_TURN_DEG, high_open=True)),
                tilt_deg=table.number("tilt_deg", _Range(-MAX_TILT_DEG, MAX_TILT_DEG)),
                horizontal_fov_deg=table.number("horizontal_fov_deg", fov),
                vertical_fov_deg=table.number("vertical_fov_deg", fov),
                laser_range_m=table.number("laser_range_m", _POSITIVE),
                frame_period_s=table.number("frame_period_s", _POSITIVE),
                resolution_px=table.resolution("resolution_px"),
            )
            if self.finished("cameras", table):
                cameras.append((table.path, camera))
        return cameras

    # ---- cross-checks

    def resolve(
        self, table: _Table, key: str, section: str, objects: Mapping[str, ObjectT]
    ) -> ObjectT | None:
        """The object that ``table[key]`` refers to, or ``None`` with a problem recorded.

        A reference to an entry that exists in the file but is itself invalid is not reported
        again (that entry's own problems are); the referring entry is just not built.
        """
        reference = table.string(key)
        if not reference:
            return None
        found = objects.get(reference)
        if found is None:
            if reference in self.declared[section]:
                table.ok = False
            else:
                kind = section.removesuffix("s").replace("_", " ")
                table.error(key, f"unknown {kind} {reference!r}")
        return found

    def check_polyline(self, table: _Table, key: str, vertices: FloatArray) -> None:
        for index in _zero_length_steps(vertices):
            table.error(key, f"vertex {index + 1} repeats vertex {index} (zero-length stretch)")

    def check_footprint(self, table: _Table, footprint: FloatArray) -> None:
        if len(footprint) >= MIN_POLYGON_VERTICES and np.array_equal(footprint[0], footprint[-1]):
            table.error(
                "footprint_m",
                "the last vertex repeats the first: list each vertex once (open ring)",
            )
            return
        for index in _zero_length_steps(footprint):
            table.error("footprint_m", f"vertex {index + 1} repeats vertex {index}")
        if not table.ok or len(footprint) < MIN_POLYGON_VERTICES:
            return
        crossings = _self_intersections(footprint)
        if crossings:
            described = ", ".join(f"{i}-{j}" for i, j in crossings)
            table.error(
                "footprint_m",
                f"polygon is self-intersecting: edges {described} cross or touch "
                "(edge i runs from vertex i to vertex i+1)",
            )
        elif _polygon_area_m2(footprint) < MIN_FOOTPRINT_AREA_M2:
            table.error(
                "footprint_m",
                f"zero or negligible area ({_polygon_area_m2(footprint):g} m2 "
                f"< {MIN_FOOTPRINT_AREA_M2:g} m2)",
            )

    def check_road_graph(self, nodes: list[RoadNode], roads: list[Road]) -> None:
        """Every road node must be reachable from every other (an error otherwise)."""
        if not (self.sections_ok["road_nodes"] and self.sections_ok["roads"]) or not nodes:
            return
        neighbours: dict[str, set[str]] = {node.id: set() for node in nodes}
        for road in roads:
            neighbours[road.from_node].add(road.to_node)
            neighbours[road.to_node].add(road.from_node)
        start = nodes[0].id
        reached = {start}
        queue = deque([start])
        while queue:
            for neighbour in neighbours[queue.popleft()] - reached:
                reached.add(neighbour)
                queue.append(neighbour)
        unreached = [node.id for node in nodes if node.id not in reached]
        if unreached:
            self.issues.add(
                "roads",
                f"road graph is not connected: {len(unreached)} node(s) cannot be reached from "
                f"{start!r}: {', '.join(unreached)}",
            )

    def check_devices_in_extent(self, site: Site, devices: list[tuple[str, Any]]) -> None:
        infrastructure = (
            "pipelines",
            "municipal_pipes",
            "utility_tunnels",
            "manholes",
            "buildings",
            "road_nodes",
            "roads",
            "assembly_points",
        )
        if not all(self.sections_ok.get(section, True) for section in infrastructure):
            return
        extent = site.extent_m
        low = extent[0] - self.device_margin_m
        high = extent[1] + self.device_margin_m
        for path, device in devices:
            position = device.position_m[:2]
            if np.any(position < low) or np.any(position > high):
                self.issues.add(
                    path if isinstance(device, GasDetector) else f"{path}.position_m",
                    f"device {device.id!r} at ({position[0]:.1f}, {position[1]:.1f}) m is more "
                    f"than {self.device_margin_m:g} m outside the site extent "
                    f"east {extent[0, 0]:.1f}..{extent[1, 0]:.1f} m, "
                    f"north {extent[0, 1]:.1f}..{extent[1, 1]:.1f} m",
                )

    def check_zones(self, detectors: list[tuple[str, GasDetector]]) -> None:
        if not self.sections_ok["gas_detectors"]:
            return
        members: dict[str, list[tuple[str, GasDetector]]] = {}
        for path, detector in detectors:
            members.setdefault(detector.zone, []).append((path, detector))
        for zone, group in members.items():
            path = group[0][0]
            ids = ", ".join(detector.id for _, detector in group)
            if len(group) < MIN_DETECTORS_PER_ZONE:
                self.issues.add(
                    f"{path}.zone",
                    f"zone {zone!r} has {len(group)} detector ({ids}); 2ooN voting needs at "
                    f"least {MIN_DETECTORS_PER_ZONE}",
                )
            placements = {detector.placement for _, detector in group}
            pipelines = {detector.pipeline_id for _, detector in group}
            if len(placements) > 1 or len(pipelines) > 1:
                self.issues.add(
                    f"{path}.zone",
                    f"zone {zone!r} mixes detectors of different placements or pipelines ({ids})",
                )


# --------------------------------------------------------------------------------------------
# Public entry point


def load_site(site_dir: Path | str, *, device_margin_m: float = DEFAULT_DEVICE_MARGIN_M) -> Site:
    """Read and validate ``site_dir/site.toml``.

    Parameters
    ----------
    site_dir : Path or str
        The site's folder (``sites/<name>``); a path to the TOML file itself is accepted too.
    device_margin_m : float
        How far a device may stand outside the bounding box of the site's infrastructure [m].

    Returns
    -------
    Site
        The validated site.

    Raises
    ------
    FileNotFoundError
        No site file at that path.
    SiteValidationError
        Anything wrong in the file; ``issues`` lists every problem found.
    """
    site_dir = Path(site_dir)
    source = site_dir if site_dir.suffix == ".toml" else site_dir / SITE_FILE_NAME
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no site file (expected {SITE_FILE_NAME} in {site_dir})")
    return parse_site(source.read_bytes(), source=source, device_margin_m=device_margin_m)


def parse_site(
    content: bytes | str,
    *,
    source: Path,
    device_margin_m: float = DEFAULT_DEVICE_MARGIN_M,
) -> Site:
    """Validate the text of a site file; ``source`` names it in error messages.

    See :func:`load_site` for the parameters and exceptions.
    """
    if not (math.isfinite(device_margin_m) and device_margin_m >= 0):
        raise ValueError(f"device_margin_m must be finite and >= 0, got {device_margin_m}")
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        document = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise SiteValidationError(source, [SiteIssue("<file>", f"not UTF-8: {error}")]) from error
    except tomllib.TOMLDecodeError as error:
        raise SiteValidationError(
            source, [SiteIssue("<toml>", f"syntax error: {error}")]
        ) from error
    reader = _SiteReader(document, device_margin_m=device_margin_m)
    origin = reader.read_top_level()
    raw_pipelines = reader.read_pipelines()
    reader.read_valves(raw_pipelines)
    pipelines = reader.build_pipelines(raw_pipelines)
    municipal_pipes = reader.read_municipal_pipes()
    tunnels = reader.read_utility_tunnels()
    manholes = reader.read_manholes(tunnels)
    buildings = reader.read_buildings()
    road_nodes = reader.read_road_nodes()
    roads = reader.read_roads(road_nodes)
    assembly_points = reader.read_assembly_points()
    gas_detectors = reader.read_gas_detectors(pipelines, manholes)
    wind_stations = reader.read_wind_stations()
    cameras = reader.read_cameras()

    site = Site(
        id=reader.site_id,
        name=reader.site_name,
        time_zone=reader.time_zone,
        origin=origin or GeoOrigin(0.0, 0.0, 0.0),
        pipelines=tuple(pipelines),
        municipal_pipes=tuple(municipal_pipes),
        manholes=tuple(manholes),
        utility_tunnels=tuple(tunnels),
        buildings=tuple(buildings),
        road_nodes=tuple(road_nodes),
        roads=tuple(roads),
        assembly_points=tuple(assembly_points),
        gas_detectors=tuple(detector for _, detector in gas_detectors),
        wind_stations=tuple(station for _, station in wind_stations),
        cameras=tuple(camera for _, camera in cameras),
    )
    reader.check_road_graph(road_nodes, roads)
    reader.check_zones(gas_detectors)
    if pipelines:
        reader.check_devices_in_extent(site, [*gas_detectors, *wind_stations, *cameras])
    if reader.issues.items or origin is None:
        raise SiteValidationError(source, reader.issues.items)
    return site
