"""The emergency plan library: preset response plans as validated TOML files, one per plan.

A site keeps its plans in ``sites/<site>/plans/*.toml``. :func:`load_plan_library` reads every
file, validates it against a strict schema (unknown keys, wrong types and empty checklists are
refused) and cross-checks every id it names against the site model (valves, pipelines, segments,
roads, manholes, utility tunnels, buildings, assembly points, underground detection zones). A bad
file raises :class:`PlanValidationError` naming the file, the plan and the field.

A plan has three parts (the structure follows GB/T 29639-2020: scope of application, response
procedure, resources and responsibilities):

* **applicability** - which situations it is written for: gases, a severity band, pipelines or
  segments, sensitive buildings inside the red/yellow threat zone, wind-from sectors, day or night,
  involvement of the underground municipal networks;
* **actions** - the ordered checklist: close valves (listed, or the computed isolation set), shut
  down pumping, notify units by role, evacuate or shelter a zone, traffic control on named roads,
  remove ignition sources, ventilate and monitor manholes, ...; each with the responsible role and
  an optional target time;
* **resources** and the **responsible roles**.

Exactly one plan per library is *generic*: it has no applicability restriction, so a situation
always has a plan (:mod:`pipesentinel.plans.selection` falls back to it).

The only I/O in ``plans/`` is :func:`load_plan_library` reading the files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from pipesentinel.site import (
    SENSITIVE_USES,
    BuildingUse,
    DetectorPlacement,
    Gas,
    NetworkKind,
    Site,
)

__all__ = [
    "ACTION_KINDS",
    "PLAN_FILE_GLOB",
    "Action",
    "Applicability",
    "Plan",
    "PlanLibrary",
    "PlanValidationError",
    "Resource",
    "ResponderRole",
    "SensitiveCriterion",
    "Severity",
    "TimeOfDay",
    "UndergroundRequirement",
    "ZoneName",
    "load_plan_library",
    "parse_plan",
]

PLAN_FILE_GLOB: Final = "*.toml"
"""Plan files in a site's ``plans/`` directory; one plan per file."""


class Severity(StrEnum):
    """Severity level of an incident, ordered: suspected < confirmed < major < fire.

    * ``suspected`` - one detector or one camera channel sees gas; the zone vote is not confirmed;
    * ``confirmed`` - a confirmed zone vote (2ooN) or a confirmed incident;
    * ``major`` - a large release: several zones, a high estimated rate, or gas in a sensitive or
      confined place (the integrator decides from the localisation and the zones);
    * ``fire`` - ignition: fire or explosion reported or seen by the thermal cameras.
    """

    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    MAJOR = "major"
    FIRE = "fire"

    @property
    def rank(self) -> int:
        """Position in the order suspected (0) < confirmed (1) < major (2) < fire (3)."""
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER: Final = (Severity.SUSPECTED, Severity.CONFIRMED, Severity.MAJOR, Severity.FIRE)


class ZoneName(StrEnum):
    """The zones the zoning module draws (issue 4 section 4); red lies inside yellow.

    ``isolation`` is the minimum isolation radius around the leak (ERG initial isolation), ``red``
    the 60 %LEL threat zone, ``yellow`` the 10 %LEL threat zone (NOAA ALOHA flammable levels of
    concern).
    """

    ISOLATION = "isolation"
    RED = "red"
    YELLOW = "yellow"


class TimeOfDay(StrEnum):
    """When a plan applies: any time, by day (working/school hours) or by night."""

    ANY = "any"
    DAY = "day"
    NIGHT = "night"


class UndergroundRequirement(StrEnum):
    """Whether a plan needs gas in the underground municipal networks, refuses it, or ignores it."""

    ANY = "any"
    REQUIRED = "required"
    EXCLUDED = "excluded"


class ResponderRole(StrEnum):
    """Who does or is told something. Plans name roles, the duty roster names people."""

    DUTY_OFFICER = "duty_officer"  # subdistrict emergency duty officer (runs PipeSentinel)
    INCIDENT_COMMANDER = "incident_commander"  # on-scene commander (pipeline operator first)
    PIPELINE_CONTROL_CENTRE = "pipeline_control_centre"  # operator's SCADA control room
    PIPELINE_FIELD_CREW = "pipeline_field_crew"  # operator's valve and repair crew
    PIPELINE_SAFETY_OFFICER = "pipeline_safety_officer"  # operator's HSE / gas-testing officer
    FIRE_RESCUE = "fire_rescue"  # fire and rescue service (119)
    POLICE = "police"  # public security and traffic police (110 / 122)
    MEDICAL_EMS = "medical_ems"  # emergency medical service (120)
    GAS_UTILITY = "gas_utility"  # city gas company (municipal gas mains)
    DRAINAGE_UTILITY = "drainage_utility"  # storm drain and sewer operator
    TUNNEL_OPERATOR = "tunnel_operator"  # utility tunnel management centre
    WATER_UTILITY = "water_utility"
    POWER_UTILITY = "power_utility"  # isolates power in the tunnel / affected area
    SUBDISTRICT_OFFICE = "subdistrict_office"  # subdistrict government, community grid staff
    SCHOOL_MANAGEMENT = "school_management"  # head teachers of the schools in the area
    HOSPITAL_MANAGEMENT = "hospital_management"  # hospital / clinic management on duty
    EMERGENCY_MANAGEMENT_BUREAU = "emergency_management_bureau"  # district emergency management
    ENVIRONMENT_BUREAU = "environment_bureau"  # ecology and environment (spill to drains, river)
    PUBLIC_INFORMATION = "public_information"  # public warning, media


# ---------------------------------------------------------------------------------------------
# Schema. Scalars are strict (no "3" for 3, no 1 for true); enums accept their string values.

StrictText = Annotated[StrictStr, Field(min_length=1)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Minutes = Annotated[StrictFloat, Field(gt=0.0, le=24 * 60.0)]
Degrees = Annotated[StrictFloat, Field(ge=0.0, le=360.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensitiveCriterion(_Model):
    """Sensitive buildings that must lie inside a threat zone for the plan to apply.

    A building inside the red zone is inside the yellow zone too. At least one of ``uses`` and
    ``buildings`` is given; a building matches when its use is listed or its id is.
    """

    zone: Literal[ZoneName.RED, ZoneName.YELLOW] = ZoneName.YELLOW
    uses: tuple[BuildingUse, ...] = ()
    buildings: tuple[Id, ...] = ()

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.uses and not self.buildings:
            raise ValueError("give 'uses' or 'buildings' (or both)")
        not_sensitive = sorted(set(self.uses) - SENSITIVE_USES)
        if not_sensitive:
            raise ValueError(
                f"uses {not_sensitive} are not sensitive uses ({', '.join(sorted(SENSITIVE_USES))})"
            )
        return self


class Applicability(_Model):
    """Which situations a plan is written for; every given criterion must hold.

    Omitted criteria do not restrict: all gases, every severity, anywhere, any wind, day and night,
    with or without underground involvement.
    """

    gases: tuple[Gas, ...] = ()
    min_severity: Severity = Severity.SUSPECTED
    max_severity: Severity = Severity.FIRE
    pipelines: tuple[Id, ...] = ()
    segments: tuple[Id, ...] = ()
    sensitive: SensitiveCriterion | None = None
    wind_from_sectors_deg: tuple[tuple[Degrees, Degrees], ...] = ()
    time_of_day: TimeOfDay = TimeOfDay.ANY
    underground: UndergroundRequirement = UndergroundRequirement.ANY
    underground_zones: tuple[Id, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_severity.rank < self.min_severity.rank:
            raise ValueError(
                f"max_severity {self.max_severity.value!r} is below min_severity "
                f"{self.min_severity.value!r}"
            )
        for start, end in self.wind_from_sectors_deg:
            if start % 360.0 == end % 360.0:
                raise ValueError(
                    f"wind_from_sectors_deg: sector [{start}, {end}] is empty; omit the key for "
                    "any wind"
                )
        if self.underground_zones and self.underground != UndergroundRequirement.REQUIRED:
            raise ValueError("underground_zones needs underground = 'required'")
        return self

    @property
    def restricted(self) -> bool:
        """Whether any criterion restricts the plan (a generic plan has none)."""
        return self != Applicability()


class _ActionBase(_Model):
    instruction: StrictText  # the checklist line a responder reads
    responsible: ResponderRole
    within_min: Minutes | None = None  # target: done this many minutes after plan activation


class InvestigateAction(_ActionBase):
    """Send people to verify: gas test, look for product, stain, odour, dead vegetation."""

    kind: Literal["investigate"]


class CloseValvesAction(_ActionBase):
    """Close block valves: the listed ones and/or the isolation set computed for the leak."""

    kind: Literal["close_valves"]
    valves: tuple[Id, ...] = ()
    isolation_set: StrictBool = False

    @model_validator(mode="after")
    def _some_valve(self) -> Self:
        if not self.valves and not self.isolation_set:
            raise ValueError("list 'valves' or set 'isolation_set = true'")
        return self


class ShutdownAction(_ActionBase):
    """Stop pumping / reduce pressure on pipelines (empty: the affected pipeline)."""

    kind: Literal["shutdown_pipeline"]
    pipelines: tuple[Id, ...] = ()


class NotifyAction(_ActionBase):
    """Notify units by role."""

    kind: Literal["notify"]
    roles: tuple[ResponderRole, ...] = Field(min_length=1)


class EvacuateAction(_ActionBase):
    """Evacuate a zone, sensitive uses first, to the listed assembly points (empty: computed)."""

    kind: Literal["evacuate"]
    zone: ZoneName
    priority_uses: tuple[BuildingUse, ...] = ()
    assembly_points: tuple[Id, ...] = ()


class ShelterAction(_ActionBase):
    """Shelter in place: close windows, stop ventilation, stay inside."""

    kind: Literal["shelter_in_place"]
    zone: ZoneName


class TrafficControlAction(_ActionBase):
    """Close or divert traffic on roads, named by road id (``R32``) or road name."""

    kind: Literal["traffic_control"]
    roads: tuple[Id, ...] = Field(min_length=1)
    mode: Literal["close", "divert"] = "close"


class IgnitionControlAction(_ActionBase):
    """Remove ignition sources in a zone (no smoking, flames, engines, switching, mobile phones)."""

    kind: Literal["remove_ignition_sources"]
    zone: ZoneName


class ManholeAction(_ActionBase):
    """Ventilate and monitor manholes and tunnels: listed, of networks, or all inside a zone."""

    kind: Literal["ventilate_manholes"]
    manholes: tuple[Id, ...] = ()
    networks: tuple[NetworkKind, ...] = ()
    tunnels: tuple[Id, ...] = ()
    zone: ZoneName | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if not (self.manholes or self.networks or self.tunnels or self.zone):
            raise ValueError("give 'manholes', 'networks', 'tunnels' or 'zone'")
        return self


class MonitorAction(_ActionBase):
    """Monitor gas concentrations (portable detectors) at the edge of a zone."""

    kind: Literal["monitor_gas"]
    zone: ZoneName


class PublicAlertAction(_ActionBase):
    """Issue the public warning (CAP alert) for a zone."""

    kind: Literal["public_alert"]
    zone: ZoneName


class FirefightingAction(_ActionBase):
    """Fire service tasks: cool exposures, protect, let a gas fire burn until isolated."""

    kind: Literal["firefighting"]


class ContainmentAction(_ActionBase):
    """Contain liquid product: booms, dikes, block drain inlets."""

    kind: Literal["contain_spill"]


class OtherAction(_ActionBase):
    """Any other checklist step."""

    kind: Literal["other"]


Action = Annotated[
    InvestigateAction
    | CloseValvesAction
    | ShutdownAction
    | NotifyAction
    | EvacuateAction
    | ShelterAction
    | TrafficControlAction
    | IgnitionControlAction
    | ManholeAction
    | MonitorAction
    | PublicAlertAction
    | FirefightingAction
    | ContainmentAction
    | OtherAction,
    Field(discriminator="kind"),
]

ACTION_KINDS: Final = frozenset(
    {
        "investigate",
        "close_valves",
        "shutdown_pipeline",
        "notify",
        "evacuate",
        "shelter_in_place",
        "traffic_control",
        "remove_ignition_sources",
        "ventilate_manholes",
        "monitor_gas",
        "public_alert",
        "firefighting",
        "contain_spill",
        "other",
    }
)


class Resource(_Model):
    """Equipment or people a plan needs, and who provides them."""

    name: StrictText
    quantity: Annotated[StrictInt, Field(ge=1)]
    provider: ResponderRole


class Plan(_Model):
    """One preset emergency plan (the contents of one plan file)."""

    id: Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    title: StrictText
    version: Annotated[StrictInt, Field(ge=1)]
    description: StrictText
    generic: StrictBool = False
    references: tuple[StrictText, ...] = ()
    responsible_roles: tuple[ResponderRole, ...] = Field(min_length=1)
    applicability: Applicability = Applicability()
    actions: tuple[Action, ...] = Field(min_length=1)
    resources: tuple[Resource, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """The plan as plain JSON types (enums as their values, tuples as lists)."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------------
# Loading and cross-checking


class PlanValidationError(ValueError):
    """A plan file is invalid; the message names the file, the plan and the field.

    Attributes
    ----------
    path
        The plan file [-].
    plan_id
        The plan's id, or None when the file has none (or is not TOML) [-].
    field
        Dotted path of the offending field (``actions[2].valves``), or None for the file [-].
    """

    def __init__(self, path: Path, plan_id: str | None, field: str | None, message: str) -> None:
        self.path = path
        self.plan_id = plan_id
        self.field = field
        where = f"plan {plan_id!r}" if plan_id else "plan <no id>"
        if field:
            where += f", field {field}"
        super().__init__(f"{path}: {where}: {message}")


_GENERIC_RESTRICTED: Final = (
    "a generic plan must have no applicability restriction (it is the fallback that always "
    "applies); remove [applicability] or set generic = false"
)


def _field_path(location: Sequence[int | str]) -> str:
    """``('actions', 2, 'close_valves', 'valves')`` -> ``actions[2].valves``."""
    parts: list[str] = []
    previous: int | str | None = None
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(previous, int) and item in ACTION_KINDS and parts[:1] == ["actions"]:
            pass  # the discriminator tag pydantic inserts after the list index
        else:
            parts.append(f".{item}" if parts else str(item))
        previous = item
    return "".join(parts)


def parse_plan(data: Mapping[str, Any], *, path: Path, site: Site) -> Plan:
    """Validate one plan's table against the schema and the site.

    Parameters
    ----------
    data
        The parsed TOML table of the plan file [-].
    path
        The file, for error messages [-].
    site
        The site the plan is written for; every id the plan names must exist in it [-].

    Raises
    ------
    PlanValidationError
        Naming the file, the plan and the first offending field.
    """
    raw_id = data.get("id")
    plan_id = raw_id if isinstance(raw_id, str) and raw_id else None
    try:
        plan = Plan.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        raise PlanValidationError(
            path, plan_id, _field_path(first["loc"]) or None, first["msg"]
        ) from None
    if plan.generic and plan.applicability.restricted:
        raise PlanValidationError(path, plan.id, "applicability", _GENERIC_RESTRICTED)
    problem = _first_site_problem(plan, site)
    if problem is not None:
        raise PlanValidationError(path, plan.id, problem[0], problem[1])
    return plan


@dataclass(frozen=True)
class _SiteIds:
    """The ids a plan may name, taken from the site."""

    pipelines: frozenset[str]
    valves: frozenset[str]
    segments: frozenset[str]
    roads: frozenset[str]  # ids and names
    manholes: frozenset[str]
    tunnels: frozenset[str]
    buildings: Mapping[str, BuildingUse]
    assembly_points: frozenset[str]
    underground_zones: frozenset[str]

    @classmethod
    def of(cls, site: Site) -> _SiteIds:
        return cls(
            pipelines=frozenset(pipeline.id for pipeline in site.pipelines),
            valves=frozenset(valve.id for pipeline in site.pipelines for valve in pipeline.valves),
            segments=frozenset(segment.id for segment in site.segments),
            roads=frozenset(road.id for road in site.roads) | {road.name for road in site.roads},
            manholes=frozenset(manhole.id for manhole in site.manholes),
            tunnels=frozenset(tunnel.id for tunnel in site.utility_tunnels),
            buildings={building.id: building.use for building in site.buildings},
            assembly_points=frozenset(point.id for point in site.assembly_points),
            underground_zones=frozenset(
                zone
                for zone, detectors in site.zones.items()
                if detectors and detectors[0].placement == DetectorPlacement.UNDERGROUND
            ),
        )


def _unknown(
    field_name: str, values: Iterable[str], known: Iterable[str], what: str
) -> tuple[str, str] | None:
    known_set = set(known)
    for index, value in enumerate(values):
        if value not in known_set:
            return (
                f"{field_name}[{index}]",
                f"unknown {what} {value!r} (site has: {', '.join(sorted(known_set))})",
            )
    return None


def _first_site_problem(plan: Plan, site: Site) -> tuple[str, str] | None:
    """The first (field, message) of the plan that does not match the site, or None."""
    ids = _SiteIds.of(site)
    rules = plan.applicability
    checks: list[tuple[str, Iterable[str], Iterable[str], str]] = [
        ("applicability.pipelines", rules.pipelines, ids.pipelines, "pipeline"),
        ("applicability.segments", rules.segments, ids.segments, "segment"),
        (
            "applicability.underground_zones",
            rules.underground_zones,
            ids.underground_zones,
            "underground detection zone",
        ),
    ]
    if rules.sensitive is not None:
        sensitive_ids = [bid for bid, use in ids.buildings.items() if use in SENSITIVE_USES]
        checks.append(
            (
                "applicability.sensitive.buildings",
                rules.sensitive.buildings,
                sensitive_ids,
                "sensitive building",
            )
        )
    for index, action in enumerate(plan.actions):
        prefix = f"actions[{index}]"
        if isinstance(action, CloseValvesAction):
            checks.append((f"{prefix}.valves", action.valves, ids.valves, "valve"))
        elif isinstance(action, ShutdownAction):
            checks.append((f"{prefix}.pipelines", action.pipelines, ids.pipelines, "pipeline"))
        elif isinstance(action, TrafficControlAction):
            checks.append((f"{prefix}.roads", action.roads, ids.roads, "road id or name"))
        elif isinstance(action, EvacuateAction):
            checks.append(
                (
                    f"{prefix}.assembly_points",
                    action.assembly_points,
                    ids.assembly_points,
                    "assembly point",
                )
            )
        elif isinstance(action, ManholeAction):
            checks.append((f"{prefix}.manholes", action.manholes, ids.manholes, "manhole"))
            checks.append((f"{prefix}.tunnels", action.tunnels, ids.tunnels, "utility tunnel"))
    for field_name, values, known, what in checks:
        problem = _unknown(field_name, values, known, what)
        if problem is not None:
            return problem
    # Segments must belong to the listed pipelines when both are given (else it never applies).
    if rules.pipelines and rules.segments:
        owners = {segment.id: segment.pipeline_id for segment in site.segments}
        for index, segment_id in enumerate(rules.segments):
            if owners[segment_id] not in rules.pipelines:
                return (
                    f"applicability.segments[{index}]",
                    f"segment {segment_id!r} is on pipeline {owners[segment_id]!r}, not on "
                    f"applicability.pipelines {list(rules.pipelines)}",
                )
    return None


@dataclass(frozen=True)
class PlanLibrary:
    """The validated plans of one site, sorted by id, and the site facts selection needs.

    Attributes
    ----------
    site_id
        The site the plans were checked against [-].
    plans
        The plans, sorted by id [-].
    sources
        The file each plan came from, by plan id [-].
    building_uses
        Use of every building of the site, by id (to match sensitive criteria) [-].
    segment_pipelines
        Pipeline of every segment of the site, by segment id [-].
    underground_zones
        The site's underground detection zones [-].
    """

    site_id: str
    plans: tuple[Plan, ...]
    sources: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    building_uses: Mapping[str, BuildingUse] = field(default_factory=lambda: MappingProxyType({}))
    segment_pipelines: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    underground_zones: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        ids = [plan.id for plan in self.plans]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate plan ids in {ids}")
        generic = [plan.id for plan in self.plans if plan.generic]
        if len(generic) != 1:
            raise ValueError(
                f"a plan library needs exactly one generic plan (the fallback), found {generic}"
            )
        for plan in self.plans:
            if plan.generic and plan.applicability.restricted:
                raise ValueError(f"plan {plan.id!r}: {_GENERIC_RESTRICTED}")
        object.__setattr__(self, "plans", tuple(sorted(self.plans, key=lambda plan: plan.id)))

    def plan(self, plan_id: str) -> Plan:
        """The plan with this id; ``KeyError`` naming it otherwise."""
        for plan in self.plans:
            if plan.id == plan_id:
                return plan
        raise KeyError(f"no plan {plan_id!r} in the library of site {self.site_id!r}")

    @property
    def generic_plan(self) -> Plan:
        """The fallback plan that always applies."""
        return next(plan for plan in self.plans if plan.generic)


def load_plan_library(directory: Path, site: Site) -> PlanLibrary:
    """Read and validate every ``*.toml`` plan file in ``directory`` against ``site``.

    Parameters
    ----------
    directory
        The plan directory, e.g. ``sites/wanli/plans`` [-].
    site
        The site model the plans name ids of [-].

    Raises
    ------
    PlanValidationError
        A file that is not TOML, does not match the schema, names an id the site does not have,
        or repeats another file's plan id; or a library without exactly one generic plan.
    """
    files = sorted(directory.glob(PLAN_FILE_GLOB))
    if not files:
        raise PlanValidationError(directory, None, None, "no plan files (*.toml) found")
    plans: list[Plan] = []
    sources: dict[str, Path] = {}
    for path in files:
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise PlanValidationError(path, None, None, f"not valid TOML: {error}") from None
        plan = parse_plan(data, path=path, site=site)
        if plan.id in sources:
            raise PlanValidationError(
                path, plan.id, "id", f"duplicate plan id, already defined in {sources[plan.id]}"
            )
        sources[plan.id] = path
        plans.append(plan)
    generic = [plan.id for plan in plans if plan.generic]
    if len(generic) != 1:
        raise PlanValidationError(
            directory,
            None,
            "generic",
            f"exactly one plan must be generic = true (the fallback), found {generic}",
        )
    ids = _SiteIds.of(site)
    return PlanLibrary(
        site_id=site.id,
        plans=tuple(plans),
        sources=MappingProxyType(sources),
        building_uses=MappingProxyType(dict(ids.buildings)),
        segment_pipelines=MappingProxyType(
            {segment.id: segment.pipeline_id for segment in site.segments}
        ),
        underground_zones=ids.underground_zones,
    )
