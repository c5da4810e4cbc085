"""Scenario files that drive the device simulators: ``sites/<site>/scenarios/*.toml``.

A scenario says what happens at a site over a period: the mean wind and its stability (a
piecewise-linear schedule), gas leaks, device faults, intrusions on the right-of-way and fires.
Keys carry their unit in the name; directions in the file are in degrees (``_deg``) and are
converted to radians once, here, through :data:`pipesentinel.units.DEGREE`. The format is
documented key by key in ``docs/simulators.md``.

:func:`load_scenario` validates a file against a :class:`~pipesentinel.site.Site` (pipelines,
chainages, device ids, fault kinds per device kind) and raises one :class:`ScenarioError` that
lists every problem, each naming the file and the field, e.g.::

    sites/wanli/scenarios/x.toml: leaks[0].chainage_m: 4000 m is beyond pipeline 'P1' (0..3525.9 m)

Gas released by a crude-oil line: the lines carry crude with dissolved associated (solution)
gas. A leak releases the liquid, from which this gas flashes off; PipeSentinel monitors methane
and propane, so a leak's gas is given as methane and/or propane mass fractions (ethane and
heavier ends lumped into propane, the denser case). The liquid pool, its evaporation and the
oil's own vapours are not modelled; ``emission_rate_kg_per_s`` is the gas released.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from pipesentinel.hardware.camera_model import (
    DEFAULT_FIRE_RADIUS_M,
    DEFAULT_FIRE_TEMPERATURE_EXCESS_K,
    HotSpot,
    IntrusionKind,
    SceneObject,
)
from pipesentinel.hardware.gas_sensor import GASES, GasFault, GasFaultKind, GasFaultSchedule
from pipesentinel.hardware.wind_model import StabilityClass, WindSchedule
from pipesentinel.site import DeviceKind, Gas, Site
from pipesentinel.units import DEGREE

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

SCENARIO_DIR_NAME = "scenarios"

# Defaults of optional scenario keys.
DEFAULT_TIME_STEP_S = 1.0
DEFAULT_AMBIENT_TEMPERATURE_K = 288.15  # ISO 2533 standard atmosphere at sea level, 15 degC
DEFAULT_AMBIENT_PRESSURE_PA = 101_325.0  # ISO 2533 standard atmosphere at sea level
DEFAULT_RELEASE_HEIGHT_M = 0.0  # a buried line leaks at the ground surface
# Positions may lie this far outside the bounding box of the site's infrastructure before they
# are taken for a typo (as for devices in the site loader).
POSITION_MARGIN_M = 200.0
# Mass fractions of a leak's gas must sum to 1 within this tolerance.
MASS_FRACTION_SUM_TOLERANCE = 1e-6
# Relative tolerance when counting whole steps in a duration.
_STEP_ROUNDING = 1e-9
# Step used to take the pipeline's direction at a chainage by central difference [m].
_TANGENT_STEP_M = 0.5
# Ambient temperatures outside this band are taken for a unit error (degC written as K).
AMBIENT_TEMPERATURE_RANGE_K = (200.0, 340.0)
AMBIENT_PRESSURE_RANGE_PA = (50_000.0, 110_000.0)

# Names of the independent random streams of a scenario, in spawn order (never reorder).
RANDOM_STREAMS: tuple[str, ...] = ("gas", "wind", "camera", "laser", "spare")

# The largest sigma-theta any direction distribution has: uniform directions, 180 / sqrt(3) deg.
MAX_SIGMA_THETA_DEG = 180.0 / math.sqrt(3.0)

EnumT = TypeVar("EnumT", bound=StrEnum)


class FaultKind(StrEnum):
    """A fault injected into one device, as written in scenario files."""

    STUCK = "stuck"
    OFFLINE = "offline"
    SPIKES = "spikes"
    UNDER_RANGE = "under_range"
    OUT_OF_RANGE = "out_of_range"
    DRIFT = "drift"
    CALIBRATION = "calibration"
    BEAM_BLOCKED = "beam_blocked"


# Which faults each kind of device can have.
ALLOWED_FAULTS: dict[DeviceKind, frozenset[FaultKind]] = {
    DeviceKind.GAS: frozenset(
        {
            FaultKind.STUCK,
            FaultKind.OFFLINE,
            FaultKind.SPIKES,
            FaultKind.UNDER_RANGE,
            FaultKind.OUT_OF_RANGE,
            FaultKind.DRIFT,
            FaultKind.CALIBRATION,
        }
    ),
    DeviceKind.WIND: frozenset({FaultKind.STUCK, FaultKind.OFFLINE}),
    DeviceKind.CAMERA: frozenset({FaultKind.OFFLINE, FaultKind.BEAM_BLOCKED}),
}

# Parameters each fault kind accepts (names of GasFault fields), with their allowed types.
FAULT_PARAMETERS: dict[FaultKind, frozenset[str]] = {
    FaultKind.STUCK: frozenset({"self_reported"}),
    FaultKind.OFFLINE: frozenset(),
    FaultKind.SPIKES: frozenset(
        {"spike_probability", "spike_amplitude_fraction_of_full_scale", "self_reported"}
    ),
    FaultKind.UNDER_RANGE: frozenset({"offset_fraction_of_full_scale"}),
    FaultKind.OUT_OF_RANGE: frozenset({"level_fraction_of_full_scale"}),
    FaultKind.DRIFT: frozenset({"drift_rate_fraction_of_full_scale_per_s", "self_reported"}),
    FaultKind.CALIBRATION: frozenset({"span_fraction_of_full_scale"}),
    FaultKind.BEAM_BLOCKED: frozenset(),
}
_BOOLEAN_PARAMETERS = frozenset({"self_reported"})
_ALL_FAULT_PARAMETERS = frozenset().union(*FAULT_PARAMETERS.values())


# ---------------------------------------------------------------------------------------------
# Scenario objects
# ---------------------------------------------------------------------------------------------


def _active(start_s: float, end_s: float, time_s: float) -> bool:
    return start_s <= time_s < end_s


@dataclass(frozen=True)
class Leak:
    """A gas release.

    Attributes
    ----------
    id
        Name of the leak, unique in the scenario.
    position_m
        East, north, height of the release point, shape (3,) [m].
    mass_fraction_by_gas
        Mass fraction of each gas in the released gas, summing to 1 [1].
    emission_rate_kg_per_s
        Total gas mass release rate [kg s-1].
    start_s, end_s
        Active on ``[start_s, end_s)`` from the scenario start [s].
    pipeline_id, chainage_m
        Where on a pipeline, when given so [m].
    """

    id: str
    position_m: FloatArray
    mass_fraction_by_gas: Mapping[Gas, float]
    emission_rate_kg_per_s: float
    start_s: float
    end_s: float
    pipeline_id: str | None = None
    chainage_m: float | None = None

    @property
    def emission_rate_kg_per_s_by_gas(self) -> FloatArray:
        """Release rate of each gas in the order of :data:`~.gas_sensor.GASES` [kg s-1]."""
        return np.array(
            [self.emission_rate_kg_per_s * self.mass_fraction_by_gas.get(gas, 0.0) for gas in GASES]
        )

    def active(self, time_s: float) -> bool:
        """Whether the leak releases gas at ``time_s`` [s]."""
        return _active(self.start_s, self.end_s, time_s)


@dataclass(frozen=True)
class DeviceFault:
    """A fault of one device over a period, with its parameters as written in the file."""

    device_id: str
    device_kind: DeviceKind
    kind: FaultKind
    start_s: float
    end_s: float
    parameters: Mapping[str, float | bool] = field(default_factory=dict)

    def active(self, time_s: float) -> bool:
        """Whether the fault is in effect at ``time_s`` [s]."""
        return _active(self.start_s, self.end_s, time_s)

    def gas_fault(self) -> GasFault:
        """The fault as the gas sensor model takes it (gas detectors only)."""
        if self.device_kind is not DeviceKind.GAS:
            raise ValueError(f"{self.device_id}: a {self.device_kind} device has no gas fault")
        return GasFault(GasFaultKind[self.kind.name], **self.parameters)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Intrusion:
    """Something entering the right-of-way (an excavator, a person, a vehicle).

    Attributes
    ----------
    id
        Name, unique in the scenario.
    kind
        What it is; sets its size in the camera model.
    position_m
        East, north on the ground, shape (2,) [m].
    heading_rad
        Direction of its long side, clockwise from north [rad].
    start_s, end_s
        Present on ``[start_s, end_s)`` [s].
    pipeline_id, chainage_m
        Nearest pipeline and chainage, when placed so [m].
    """

    id: str
    kind: IntrusionKind
    position_m: FloatArray
    heading_rad: float
    start_s: float
    end_s: float
    pipeline_id: str | None = None
    chainage_m: float | None = None

    def active(self, time_s: float) -> bool:
        """Whether it is there at ``time_s`` [s]."""
        return _active(self.start_s, self.end_s, time_s)

    def scene_object(self) -> SceneObject:
        """The object the camera model draws."""
        return SceneObject(kind=self.kind, position_m=self.position_m, heading_rad=self.heading_rad)


@dataclass(frozen=True)
class Fire:
    """A fire on the ground (seen as a hot spot by the thermal channel).

    Attributes
    ----------
    id
        Name, unique in the scenario.
    position_m
        East, north, shape (2,) [m].
    radius_m
        Radius of the burning area [m].
    temperature_excess_k
        Apparent temperature above ambient [K].
    start_s, end_s
        Burning on ``[start_s, end_s)`` [s].
    """

    id: str
    position_m: FloatArray
    radius_m: float
    temperature_excess_k: float
    start_s: float
    end_s: float

    def active(self, time_s: float) -> bool:
        """Whether it burns at ``time_s`` [s]."""
        return _active(self.start_s, self.end_s, time_s)

    def hot_spot(self) -> HotSpot:
        """The hot spot the camera model draws."""
        return HotSpot(
            position_m=self.position_m,
            radius_m=self.radius_m,
            temperature_excess_k=self.temperature_excess_k,
        )


def spawn_generators(seed: int) -> dict[str, np.random.Generator]:
    """Independent random generators, one per stream of :data:`RANDOM_STREAMS`.

    Streams are spawned from ``numpy.random.SeedSequence(seed)`` in a fixed order, so each
    simulator's randomness is reproducible and independent of the others' use of theirs.
    """
    children = np.random.SeedSequence(seed).spawn(len(RANDOM_STREAMS))
    return {
        name: np.random.Generator(np.random.PCG64(child))
        for name, child in zip(RANDOM_STREAMS, children, strict=True)
    }


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Times are seconds from ``start_time_utc``.

    Attributes
    ----------
    source
        File it came from (for messages).
    name, description
        Free text.
    site_id
        The site it is written for.
    start_time_utc
        Wall-clock time of ``t = 0``, timezone-aware UTC.
    duration_s
        Length of the scenario [s].
    seed
        Seed of every random stream (:meth:`generators`).
    time_step_s
        Simulation step [s].
    ambient_temperature_k
        Air temperature [K].
    ambient_pressure_pa
        Air pressure [Pa].
    wind
        Mean wind schedule (directions in rad).
    leaks, faults, intrusions, fires
        Events, each with its period.
    """

    source: str
    name: str
    description: str
    site_id: str
    start_time_utc: datetime
    duration_s: float
    seed: int
    time_step_s: float
    ambient_temperature_k: float
    ambient_pressure_pa: float
    wind: WindSchedule
    leaks: tuple[Leak, ...] = ()
    faults: tuple[DeviceFault, ...] = ()
    intrusions: tuple[Intrusion, ...] = ()
    fires: tuple[Fire, ...] = ()

    @property
    def start_time_s(self) -> float:
        """``start_time_utc`` in seconds since the Unix epoch [s]."""
        return self.start_time_utc.timestamp()

    @property
    def n_steps(self) -> int:
        """Number of simulation steps in the scenario."""
        return math.ceil(self.duration_s / self.time_step_s - _STEP_ROUNDING)

    def generators(self) -> dict[str, np.random.Generator]:
        """Fresh random generators of the scenario's seed (:func:`spawn_generators`)."""
        return spawn_generators(self.seed)

    # -- leaks, vectorized for the dispersion physics --------------------------------------

    @property
    def leak_positions_m(self) -> FloatArray:
        """Release points of all leaks, shape (n_leaks, 3) [m]."""
        return np.array([leak.position_m for leak in self.leaks], dtype=np.float64).reshape(-1, 3)

    def emission_rates_kg_per_s(self, time_s: float) -> FloatArray:
        """Release rate of every leak and gas at ``time_s`` (0 when inactive) [kg s-1].

        Shape (n_leaks, n_gases), gases in the order of :data:`~.gas_sensor.GASES`.
        """
        if not self.leaks:
            return np.zeros((0, len(GASES)))
        start = np.array([leak.start_s for leak in self.leaks])
        end = np.array([leak.end_s for leak in self.leaks])
        rates = np.array([leak.emission_rate_kg_per_s_by_gas for leak in self.leaks])
        active = (start <= time_s) & (time_s < end)
        return np.where(active[:, np.newaxis], rates, 0.0)

    # -- events at a time --------------------------------------------------------------------

    def active_leaks(self, time_s: float) -> tuple[Leak, ...]:
        """Leaks releasing at ``time_s`` [s]."""
        return tuple(leak for leak in self.leaks if leak.active(time_s))

    def active_intrusions(self, time_s: float) -> tuple[Intrusion, ...]:
        """Intrusions present at ``time_s`` [s]."""
        return tuple(item for item in self.intrusions if item.active(time_s))

    def active_fires(self, time_s: float) -> tuple[Fire, ...]:
        """Fires burning at ``time_s`` [s]."""
        return tuple(fire for fire in self.fires if fire.active(time_s))

    def active_faults(self, time_s: float) -> dict[str, DeviceFault]:
        """Faults in effect at ``time_s``, keyed by device id (at most one per device) [s]."""
        return {fault.device_id: fault for fault in self.faults if fault.active(time_s)}

    def fault_mask(self, time_s: float, device_ids: Sequence[str], kind: FaultKind) -> BoolArray:
        """Which of ``device_ids`` have a fault of ``kind`` at ``time_s``, shape (n,)."""
        active = self.active_faults(time_s)
        return np.array(
            [device in active and active[device].kind is kind for device in device_ids],
            dtype=np.bool_,
        )

    def gas_fault_schedule(self, site: Site) -> GasFaultSchedule:
        """The gas detectors' faults, indexed in the order of ``site.gas_detectors``."""
        index = {detector.id: i for i, detector in enumerate(site.gas_detectors)}
        gas_faults = [fault for fault in self.faults if fault.device_kind is DeviceKind.GAS]
        return GasFaultSchedule(
            n_detectors=len(site.gas_detectors),
            detector_index=np.array([index[f.device_id] for f in gas_faults], dtype=np.intp),
            start_s=np.array([f.start_s for f in gas_faults], dtype=np.float64),
            end_s=np.array([f.end_s for f in gas_faults], dtype=np.float64),
            faults=tuple(f.gas_fault() for f in gas_faults),
        )


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A scenario file is invalid; ``problems`` lists every problem found.

    Each problem reads ``<file>: <field path>: <message>``; ``str(error)`` starts with a summary
    line followed by one line per problem.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(f"{source}: {problem}" for problem in problems)
        count = len(self.problems)
        summary = f"{source}: {count} problem{'s' if count != 1 else ''} in the scenario"
        super().__init__("\n".join([summary, *self.problems]))


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    """Path-aware typed access to one TOML table; problems are collected, never raised."""

    def __init__(self, problems: list[str], path: str, data: Mapping[str, Any]) -> None:
        self.problems = problems
        self.path = path
        self.data = data
        self.used: set[str] = set()
        self.ok = True

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str) -> None:
        self.ok = False
        self.problems.append(f"{self.path if key is None else self.key_path(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, *, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                self.error(key, "missing required key")
            return None
        return self.data[key]

    def number(
        self,
        key: str,
        *,
        required: bool = True,
        default: float = math.nan,
        minimum: float = -math.inf,
        maximum: float = math.inf,
        strict_minimum: bool = False,
        strict_maximum: bool = False,
        unit: str = "",
    ) -> float:
        value = self.raw(key, required=required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, f"expected a number, got {_describe(value)}")
            return default
        number = float(value)
        suffix = f" {unit}" if unit else ""
        if not math.isfinite(number):
            self.error(key, f"must be finite, got {number}")
            return default
        below = number <= minimum if strict_minimum else number < minimum
        above = number >= maximum if strict_maximum else number > maximum
        if below:
            relation = ">" if strict_minimum else ">="
            self.error(key, f"must be {relation} {minimum:g}{suffix}, got {number:g}{suffix}")
            return default
        if above:
            relation = "<" if strict_maximum else "<="
            self.error(key, f"must be {relation} {maximum:g}{suffix}, got {number:g}{suffix}")
            return default
        return number

    def integer(self, key: str) -> int:
        value = self.raw(key, required=True)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"expected an integer, got {_describe(value)}")
            return 0
        if value < 0:
            self.error(key, f"must be >= 0, got {value}")
            return 0
        return value

    def string(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self.raw(key, required=required)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {_describe(value)}")
            return default
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key, required=True)
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {_describe(value)}")
            return False
        return value

    def choice(self, key: str, enum: type[EnumT]) -> EnumT | None:
        value = self.raw(key, required=True)
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in enum)
            self.error(key, f"unknown value {_describe(value)}; expected one of {allowed}")
            return None

    def finish(self) -> None:
        """Report keys that were never read (typos, misplaced keys)."""
        for key in self.data:
            if key not in self.used:
                self.error(key, "unknown key")


def _tables(
    problems: list[str], data: Mapping[str, Any], key: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """The entries of an array of tables ``[[key]]`` with their paths; problems otherwise."""
    value = data.get(key, [])
    if not isinstance(value, list):
        problems.append(f"{key}: expected an array of tables ([[{key}]]), got {_describe(value)}")
        return []
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for index, entry in enumerate(value):
        if isinstance(entry, dict):
            entries.append((f"{key}[{index}]", entry))
        else:
            problems.append(f"{key}[{index}]: expected a table, got {_describe(entry)}")
    return entries


@dataclass(frozen=True)
class _Place:
    """A validated position: east/north, and the pipeline location when given so."""

    position_m: FloatArray
    pipeline_id: str | None = None
    chainage_m: float | None = None
    tangent: FloatArray | None = None  # unit direction of increasing chainage (east, north)


class _ScenarioReader:
    """Reads and validates one scenario against a site."""

    def __init__(self, site: Site, data: Mapping[str, Any]) -> None:
        self.site = site
        self.data = data
        self.problems: list[str] = []
        extent = site.extent_m if _has_infrastructure(site) else np.zeros((2, 2))
        self.bounds = (extent[0] - POSITION_MARGIN_M, extent[1] + POSITION_MARGIN_M)
        self.duration_s = math.inf

    def read(self, source: str) -> Scenario:
        for key in self.data:
            if key not in {"scenario", "wind", "leaks", "faults", "intrusions", "fires"}:
                self.problems.append(f"{key}: unknown table")
        meta = self._metadata()
        wind = self._wind()
        leaks = self._leaks()
        faults = self._faults()
        intrusions = self._intrusions()
        fires = self._fires()
        if self.problems or meta is None or wind is None:
            raise ScenarioError(source, self.problems or ["invalid scenario"])
        return Scenario(
            source=source,
            wind=wind,
            leaks=leaks,
            faults=faults,
            intrusions=intrusions,
            fires=fires,
            **meta,
        )

    # -- [scenario] --------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any] | None:
        table = self.data.get("scenario")
        if not isinstance(table, dict):
            self.problems.append("scenario: missing [scenario] table")
            return None
        r = _Reader(self.problems, "scenario", table)
        name = r.string("name")
        description = r.string("description", required=False)
        site_id = r.string("site_id")
        if site_id and site_id != self.site.id:
            r.error("site_id", f"scenario is for site {site_id!r}, not {self.site.id!r}")
        start = self._start_time(r)
        duration_s = r.number("duration_s", minimum=0.0, strict_minimum=True, unit="s")
        self.duration_s = duration_s if math.isfinite(duration_s) else math.inf
        seed = r.integer("seed")
        time_step_s = r.number(
            "time_step_s",
            required=False,
            default=DEFAULT_TIME_STEP_S,
            minimum=0.0,
            strict_minimum=True,
            unit="s",
        )
        if math.isfinite(duration_s) and time_step_s > duration_s:
            r.error("time_step_s", f"{time_step_s:g} s is longer than duration_s {duration_s:g} s")
        temperature = r.number(
            "ambient_temperature_k",
            required=False,
            default=DEFAULT_AMBIENT_TEMPERATURE_K,
            minimum=AMBIENT_TEMPERATURE_RANGE_K[0],
            maximum=AMBIENT_TEMPERATURE_RANGE_K[1],
            unit="K",
        )
        pressure = r.number(
            "ambient_pressure_pa",
            required=False,
            default=DEFAULT_AMBIENT_PRESSURE_PA,
            minimum=AMBIENT_PRESSURE_RANGE_PA[0],
            maximum=AMBIENT_PRESSURE_RANGE_PA[1],
            unit="Pa",
        )
        r.finish()
        if not r.ok or start is None:
            return None
        return {
            "name": name,
            "description": description,
            "site_id": site_id,
            "start_time_utc": start,
            "duration_s": duration_s,
            "seed": seed,
            "time_step_s": time_step_s,
            "ambient_temperature_k": temperature,
            "ambient_pressure_pa": pressure,
        }

    @staticmethod
    def _start_time(r: _Reader) -> datetime | None:
        value = r.raw("start_time_utc", required=True)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                r.error("start_time_utc", f"not an ISO 8601 date-time: {_describe(value)}")
                return None
        if not isinstance(value, datetime):
            r.error("start_time_utc", f"expected a date-time, got {_describe(value)}")
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            r.error("start_time_utc", "needs a UTC offset, e.g. 2024-05-14T08:00:00Z")
            return None
        return value.astimezone(UTC)

    # -- shared pieces ------------------------------------------------------------------------

    def _period(self, r: _Reader) -> tuple[float, float]:
        """``start_s`` and the end from the optional ``duration_s`` (default: open-ended)."""
        start = r.number("start_s", minimum=0.0, unit="s")
        if math.isfinite(start) and start >= self.duration_s:
            r.error(
                "start_s", f"{start:g} s is not before the scenario's end ({self.duration_s:g} s)"
            )
        duration = r.number(
            "duration_s",
            required=False,
            default=math.inf,
            minimum=0.0,
            strict_minimum=True,
            unit="s",
        )
        return start, start + duration

    def _position(self, r: _Reader, *, allow_offset: bool) -> _Place | None:
        """Where an entry is; ``None`` (problem recorded) when missing or invalid.

        Either ``pipeline_id`` + ``chainage_m`` (+ ``offset_m`` where allowed), or ``east_m`` +
        ``north_m``.
        """
        on_line = r.has("pipeline_id") or r.has("chainage_m")
        by_coordinates = r.has("east_m") or r.has("north_m")
        if on_line and by_coordinates:
            r.error(None, "give either pipeline_id + chainage_m or east_m + north_m, not both")
            r.used.update({"pipeline_id", "chainage_m", "east_m", "north_m", "offset_m"})
            return None
        if by_coordinates:
            return self._position_by_coordinates(r)
        if not on_line:
            r.error(None, "missing a position: pipeline_id + chainage_m, or east_m + north_m")
            return None
        return self._position_on_pipeline(r, allow_offset=allow_offset)

    def _position_by_coordinates(self, r: _Reader) -> _Place | None:
        east = r.number("east_m", unit="m")
        north = r.number("north_m", unit="m")
        if r.has("offset_m"):
            r.raw("offset_m", required=False)
            r.error("offset_m", "offset_m only applies with pipeline_id + chainage_m")
        if not (math.isfinite(east) and math.isfinite(north)):
            return None
        position = np.array([east, north])
        low, high = self.bounds
        if np.any(position < low) or np.any(position > high):
            r.error(
                None,
                f"position ({east:g}, {north:g}) m is more than {POSITION_MARGIN_M:g} m outside "
                f"the site (east {low[0]:g}..{high[0]:g}, north {low[1]:g}..{high[1]:g})",
            )
            return None
        return _Place(position)

    def _position_on_pipeline(self, r: _Reader, *, allow_offset: bool) -> _Place | None:
        pipeline_id = r.string("pipeline_id")
        chainage = r.number("chainage_m", minimum=0.0, unit="m")
        offset = r.number("offset_m", required=False, default=0.0) if allow_offset else 0.0
        pipelines = {pipeline.id: pipeline for pipeline in self.site.pipelines}
        if pipeline_id not in pipelines:
            if pipeline_id:
                known = ", ".join(sorted(pipelines)) or "none"
                r.error("pipeline_id", f"unknown pipeline {pipeline_id!r} (site has: {known})")
            return None
        pipeline = pipelines[pipeline_id]
        if not math.isfinite(chainage):
            return None
        if chainage > pipeline.length_m:
            r.error(
                "chainage_m",
                f"{chainage:g} m is beyond pipeline {pipeline_id!r} (0..{pipeline.length_m:.1f} m)",
            )
            return None
        ahead = pipeline.point_at_chainage(min(chainage + _TANGENT_STEP_M, pipeline.length_m))
        behind = pipeline.point_at_chainage(max(chainage - _TANGENT_STEP_M, 0.0))
        tangent = (ahead - behind) / np.linalg.norm(ahead - behind)
        left = np.array([-tangent[1], tangent[0]])
        position = pipeline.point_at_chainage(chainage) + offset * left
        return _Place(position, pipeline_id, chainage, tangent)

    def _unique(self, ids: list[tuple[str, str]]) -> None:
        seen: dict[str, str] = {}
        for path, entry_id in ids:
            if entry_id in seen:
                self.problems.append(
                    f"{path}.id: duplicate id {entry_id!r} (also {seen[entry_id]})"
                )
            else:
                seen[entry_id] = path

    # -- [[wind]] -----------------------------------------------------------------------------

    def _wind(self) -> WindSchedule | None:
        entries = _tables(self.problems, self.data, "wind")
        if not entries and "wind" not in self.data:
            self.problems.append("wind: missing wind schedule ([[wind]] entries)")
            return None
        times, speeds, directions, classes, sigmas, intensities = [], [], [], [], [], []
        ok = bool(entries)
        for path, entry in entries:
            r = _Reader(self.problems, path, entry)
            time_s = r.number("time_s", minimum=0.0, unit="s")
            if math.isfinite(time_s) and time_s >= self.duration_s:
                r.error("time_s", f"{time_s:g} s is not before the scenario's end")
            speed = r.number("speed_m_per_s", minimum=0.0, strict_minimum=True, unit="m s-1")
            direction = r.number(
                "direction_from_deg", minimum=0.0, maximum=360.0, strict_maximum=True, unit="deg"
            )
            stability = r.choice("stability_class", StabilityClass)
            sigma = r.number(
                "sigma_theta_deg",
                required=False,
                minimum=0.0,
                maximum=MAX_SIGMA_THETA_DEG,
                unit="deg",
            )
            intensity = r.number("turbulence_intensity", required=False, minimum=0.0, maximum=1.0)
            r.finish()
            ok = ok and r.ok
            times.append(time_s)
            speeds.append(speed)
            directions.append(DEGREE.to_si(direction))
            classes.append(stability or StabilityClass.D)
            sigmas.append(DEGREE.to_si(sigma))
            intensities.append(intensity)
        if not ok:
            return None
        if times[0] != 0.0:
            self.problems.append(
                f"wind[0].time_s: the schedule must start at 0 s, got {times[0]:g}"
            )
            ok = False
        for index in range(1, len(times)):
            if times[index] <= times[index - 1]:
                self.problems.append(
                    f"wind[{index}].time_s: {times[index]:g} s is not after wind[{index - 1}] "
                    f"({times[index - 1]:g} s); breakpoints must be sorted and distinct"
                )
                ok = False
        if not ok:
            return None
        return WindSchedule(
            time_s=np.array(times),
            speed_m_per_s=np.array(speeds),
            direction_from_rad=np.array(directions),
            stability_class=tuple(classes),
            sigma_theta_rad=np.array(sigmas),
            turbulence_intensity=np.array(intensities),
        )

    # -- [[leaks]] ----------------------------------------------------------------------------

    def _mass_fractions(self, r: _Reader) -> dict[Gas, float] | None:
        if r.has("gas") and r.has("mass_fractions"):
            r.used.update({"gas", "mass_fractions"})
            r.error(None, "give either gas or mass_fractions, not both")
            return None
        if r.has("gas"):
            gas = r.choice("gas", Gas)
            return None if gas is None else {gas: 1.0}
        table = r.raw("mass_fractions", required=False)
        if table is None:
            r.error(None, 'missing the released gas: gas = "methane" or mass_fractions = {...}')
            return None
        if not isinstance(table, dict) or not table:
            r.error("mass_fractions", f"expected a table of gas = fraction, got {_describe(table)}")
            return None
        return self._fraction_table(r, table)

    def _fraction_table(self, r: _Reader, table: Mapping[str, Any]) -> dict[Gas, float] | None:
        sub = _Reader(self.problems, r.key_path("mass_fractions"), table)
        fractions = {
            Gas(key): sub.number(key, minimum=0.0, maximum=1.0)
            for key in table
            if key in set(Gas)  # other keys are reported as unknown by finish()
        }
        sub.finish()
        if not sub.ok:
            r.ok = False
            return None
        total = sum(fractions.values())
        if abs(total - 1.0) > MASS_FRACTION_SUM_TOLERANCE:
            r.error("mass_fractions", f"fractions must sum to 1, got {total:g}")
            return None
        return fractions

    def _leaks(self) -> tuple[Leak, ...]:
        leaks = []
        ids = []
        for path, entry in _tables(self.problems, self.data, "leaks"):
            r = _Reader(self.problems, path, entry)
            leak_id = r.string("id")
            ids.append((path, leak_id))
            place = self._position(r, allow_offset=False)
            fractions = self._mass_fractions(r)
            rate = r.number(
                "emission_rate_kg_per_s", minimum=0.0, strict_minimum=True, unit="kg s-1"
            )
            start, end = self._period(r)
            height = r.number(
                "release_height_m", required=False, default=DEFAULT_RELEASE_HEIGHT_M, minimum=0.0
            )
            r.finish()
            if r.ok and place is not None and fractions is not None:
                leaks.append(
                    Leak(
                        id=leak_id,
                        position_m=np.append(place.position_m, height),
                        mass_fraction_by_gas=fractions,
                        emission_rate_kg_per_s=rate,
                        start_s=start,
                        end_s=end,
                        pipeline_id=place.pipeline_id,
                        chainage_m=place.chainage_m,
                    )
                )
        self._unique(ids)
        return tuple(leaks)

    # -- [[faults]] ---------------------------------------------------------------------------

    def _faults(self) -> tuple[DeviceFault, ...]:
        faults: list[tuple[str, DeviceFault]] = []
        for path, entry in _tables(self.problems, self.data, "faults"):
            fault = self._fault(path, entry)
            if fault is not None:
                faults.append((path, fault))
        for index, (path, fault) in enumerate(faults):
            for other_path, other in faults[:index]:
                if other.device_id == fault.device_id and (
                    fault.start_s < other.end_s and other.start_s < fault.end_s
                ):
                    self.problems.append(
                        f"{path}: fault on {fault.device_id!r} overlaps {other_path} in time "
                        "(one fault per device at a time)"
                    )
        return tuple(fault for _, fault in faults)

    def _fault(self, path: str, entry: Mapping[str, Any]) -> DeviceFault | None:
        r = _Reader(self.problems, path, entry)
        device_id = r.string("device_id")
        device = self.site.device(device_id) if device_id else None
        if device_id and device is None:
            r.error("device_id", f"unknown device {device_id!r} in site {self.site.id!r}")
        kind = r.choice("kind", FaultKind)
        start, end = self._period(r)
        parameters: dict[str, float | bool] = {}
        if kind is not None:
            for key in entry:
                if key in FAULT_PARAMETERS[kind]:
                    parameters[key] = (
                        r.boolean(key) if key in _BOOLEAN_PARAMETERS else r.number(key)
                    )
                elif key in _ALL_FAULT_PARAMETERS:
                    r.raw(key, required=False)
                    r.error(key, f"does not apply to a {kind} fault")
        if device is not None and kind is not None and kind not in ALLOWED_FAULTS[device.kind]:
            allowed = ", ".join(sorted(k.value for k in ALLOWED_FAULTS[device.kind]))
            r.error("kind", f"a {device.kind} device cannot have a {kind} fault ({allowed})")
        r.finish()
        if not r.ok or device is None or kind is None:
            return None
        fault = DeviceFault(device_id, device.kind, kind, start, end, parameters)
        if device.kind is DeviceKind.GAS:
            try:
                fault.gas_fault()
            except ValueError as error:
                self.problems.append(f"{path}: {error}")
                return None
        return fault

    # -- [[intrusions]] and [[fires]] ---------------------------------------------------------

    def _intrusions(self) -> tuple[Intrusion, ...]:
        intrusions = []
        ids = []
        for path, entry in _tables(self.problems, self.data, "intrusions"):
            r = _Reader(self.problems, path, entry)
            intrusion_id = r.string("id")
            ids.append((path, intrusion_id))
            kind = r.choice("kind", IntrusionKind)
            place = self._position(r, allow_offset=True)
            if r.has("heading_deg"):
                heading = DEGREE.to_si(
                    r.number("heading_deg", minimum=0.0, maximum=360.0, strict_maximum=True)
                )
            elif place is not None and place.tangent is not None:
                # Along the line by default.
                heading = math.atan2(place.tangent[0], place.tangent[1]) % (2.0 * math.pi)
            else:
                heading = 0.0
            start, end = self._period(r)
            r.finish()
            if r.ok and place is not None and kind is not None:
                intrusions.append(
                    Intrusion(
                        id=intrusion_id,
                        kind=kind,
                        position_m=place.position_m,
                        heading_rad=heading,
                        start_s=start,
                        end_s=end,
                        pipeline_id=place.pipeline_id,
                        chainage_m=place.chainage_m,
                    )
                )
        self._unique(ids)
        return tuple(intrusions)

    def _fires(self) -> tuple[Fire, ...]:
        fires = []
        ids = []
        for path, entry in _tables(self.problems, self.data, "fires"):
            r = _Reader(self.problems, path, entry)
            fire_id = r.string("id")
            ids.append((path, fire_id))
            place = self._position(r, allow_offset=True)
            radius = r.number(
                "radius_m",
                required=False,
                default=DEFAULT_FIRE_RADIUS_M,
                minimum=0.0,
                strict_minimum=True,
            )
            excess = r.number(
                "temperature_excess_k",
                required=False,
                default=DEFAULT_FIRE_TEMPERATURE_EXCESS_K,
                minimum=0.0,
                strict_minimum=True,
            )
            start, end = self._period(r)
            r.finish()
            if r.ok and place is not None:
                fires.append(Fire(fire_id, place.position_m, radius, excess, start, end))
        self._unique(ids)
        return tuple(fires)


def _has_infrastructure(site: Site) -> bool:
    return bool(
        site.pipelines
        or site.municipal_pipes
        or site.utility_tunnels
        or site.buildings
        or site.roads
        or site.manholes
        or site.road_nodes
        or site.assembly_points
    )


def parse_scenario(data: Mapping[str, Any], site: Site, *, source: str = "<scenario>") -> Scenario:
    """Validate parsed TOML ``data`` against ``site`` into a :class:`Scenario`.

    Raises
    ------
    ScenarioError
        Listing every problem, each naming ``source`` and the field.
    """
    return _ScenarioReader(site, data).read(source)


def load_scenario(path: Path | str, site: Site) -> Scenario:
    """Read and validate a scenario file against ``site``.

    Raises
    ------
    ScenarioError
        When the file cannot be read, is not TOML, or has problems (all of them listed).
    """
    source = str(path)
    try:
        with Path(path).open("rb") as stream:
            data = tomllib.load(stream)
    except OSError as error:
        raise ScenarioError(source, [f"cannot read the file: {error.strerror or error}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(source, [f"not valid TOML: {error}"]) from error
    return parse_scenario(data, site, source=source)


def scenario_paths(site_dir: Path) -> list[Path]:
    """The scenario files of a site directory (``<site_dir>/scenarios/*.toml``), sorted."""
    return sorted((site_dir / SCENARIO_DIR_NAME).glob("*.toml"))
