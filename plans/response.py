"""From an incident update to the emergency response: isolation, zones, people, plan and alert.

On every incident update (a new localisation, a wind shift, an escalation) :func:`respond` turns
the leak estimate into what responders act on, in this order:

1. **valve isolation** of the credible segments (:mod:`pipesentinel.plans.isolation`);
2. **threat zones** at 60 % and 10 % LEL and the ERG isolation circle, over the wind spread and
   the rate range (:mod:`pipesentinel.plans.zones`);
3. **people**: buildings and occupants in each zone at the site's local time, usable assembly
   points, evacuation routes that never cross the red zone, roads to control
   (:mod:`pipesentinel.plans.exposure`);
4. **plan selection** among the site's preset plans, with why and why not
   (:mod:`pipesentinel.plans.selection`);
5. the **public alert** (CAP 1.2, :mod:`pipesentinel.plans.cap`) and the zones as GeoJSON.

The leak estimate is a :class:`LeakEstimate`: read from the localisation the engine attaches to
the incident (its JSON, so a stored incident can be answered again), or a hypothetical leak for a
what-if. Everything here is a pure function of its inputs; publishing and journaling happen at the
edges (``ingest/``, the CLI).
"""

from __future__ import annotations

import datetime as dt
import math
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.incidents import Incident
from pipesentinel.detection.localisation import ChainageInterval
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.geo import lon_lat
from pipesentinel.plans.cap import (
    CapIncident,
    CapMsgType,
    CapReference,
    CapSender,
    CapStatus,
    CapZone,
    ThreatLevel,
    cap_alert,
    cap_area_from_site,
    cap_identifier,
)
from pipesentinel.plans.exposure import (
    EvacuationNetwork,
    ExposureAssessment,
    ExposureSettings,
    Occupancy,
    Zone,
    assess_exposure,
    occupancy_at,
)
from pipesentinel.plans.isolation import (
    IsolationPlan,
    PipelineGraph,
    isolation_plan,
    isolation_plan_for_intervals,
    isolation_plan_for_segments,
    pipeline_graph,
)
from pipesentinel.plans.library import (
    CloseValvesAction,
    EvacuateAction,
    Plan,
    PlanLibrary,
    PublicAlertAction,
    Severity,
    TrafficControlAction,
    ZoneName,
    load_plan_library,
)
from pipesentinel.plans.selection import PlanSelection, PlanSituation, select_plan
from pipesentinel.plans.zones import ThreatZones, ZoneLevel, threat_zones, zones_to_geojson
from pipesentinel.site import BuildingUse, DetectorPlacement, Gas, Site

__all__ = [
    "WHAT_IF_SIGMA_THETA_DEG",
    "EmergencyResponse",
    "LeakEstimate",
    "ResponseContext",
    "ResponsePolicy",
    "incident_severity",
    "plan_checklist",
    "respond",
    "respond_to_incident",
]

WHAT_IF_SIGMA_THETA_DEG: Final = {
    StabilityClass.A: 25.0,
    StabilityClass.B: 20.0,
    StabilityClass.C: 15.0,
    StabilityClass.D: 10.0,
    StabilityClass.E: 5.65,
    StabilityClass.F: 1.9,
}
"""Wind-direction standard deviation a what-if assumes for a class when none is given [deg]: the
middle of the class's sigma-theta range in EPA-454/R-99-005 Table 6-7 (A >= 22.5, B 17.5-22.5,
C 12.5-17.5, D 7.5-12.5, E 3.8-7.5, F < 3.8 deg); the open-ended A and F take their bound plus
or minus half the width of the neighbouring class."""

FIRE_EVIDENCE_KINDS: Final = frozenset({"camera.hot_spot"})
"""Evidence kinds that mean ignition (a thermal hot spot seen by a camera)."""


@dataclass(frozen=True)
class ResponsePolicy:
    """The operator's policy for escalation: when a confirmed incident counts as *major*.

    These are site policy, not physics: the defaults are stated choices an operator should set
    from its own risk assessment (docs/response.md).

    Attributes
    ----------
    major_rate_kg_per_s
        A median estimated gas release at or above this is a major release [kg s-1] (default
        3 kg/s: the upper end of the leak sizes the detection network is validated on,
        docs/validation.md).
    major_active_zones
        This many or more detection zones reading gas at once is a major release [1].
    """

    major_rate_kg_per_s: float = 3.0
    major_active_zones: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.major_rate_kg_per_s) and self.major_rate_kg_per_s > 0.0):
            raise ValueError(f"major_rate_kg_per_s must be > 0, got {self.major_rate_kg_per_s}")
        if self.major_active_zones < 1:
            raise ValueError(f"major_active_zones must be >= 1, got {self.major_active_zones}")


@dataclass(frozen=True)
class LeakEstimate:
    """Where the leak is, how large, and the wind: the input of the response.

    Attributes
    ----------
    gas
        The gas the zones are drawn for.
    position_m
        Most probable release point, site east/north [m].
    pipeline_id, chainage_m
        Most probable pipeline and chainage [m] (None off the modelled lines).
    rate_low_kg_per_s, rate_median_kg_per_s, rate_high_kg_per_s
        Release rate of ``gas``: credible interval and median [kg s-1].
    rate_at_prior_bound
        The rate estimate piles up at a bound of its prior [1].
    segment_probabilities
        Posterior probability of each block-valve segment [1].
    credible_intervals
        Credible chainage intervals of the position.
    wind_speed_m_per_s, wind_from_deg, sigma_theta_deg
        Mean wind [m s-1], direction it blows from [deg], direction standard deviation [deg].
    stability_class
        Pasquill-Gifford class.
    lel_basis
        Basis of the %LEL levels.
    origin
        ``"localisation"`` (measured) or ``"what_if"`` (hypothetical).
    flags
        The localisation's flags (e.g. ``single_wind_station``).
    """

    gas: Gas
    position_m: tuple[float, float]
    pipeline_id: str | None
    chainage_m: float | None
    rate_low_kg_per_s: float
    rate_median_kg_per_s: float
    rate_high_kg_per_s: float
    rate_at_prior_bound: bool
    segment_probabilities: Mapping[str, float]
    credible_intervals: tuple[ChainageInterval, ...]
    wind_speed_m_per_s: float
    wind_from_deg: float
    sigma_theta_deg: float
    stability_class: StabilityClass
    lel_basis: LelBasis
    origin: str
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rates = (self.rate_low_kg_per_s, self.rate_median_kg_per_s, self.rate_high_kg_per_s)
        if not all(math.isfinite(r) and r > 0.0 for r in rates) or not (
            rates[0] <= rates[1] <= rates[2]
        ):
            raise ValueError(f"rates must be 0 < low <= median <= high [kg s-1], got {rates}")
        if not (math.isfinite(self.wind_speed_m_per_s) and self.wind_speed_m_per_s >= 0.0):
            raise ValueError(f"wind_speed_m_per_s must be >= 0, got {self.wind_speed_m_per_s}")
        if not (math.isfinite(self.sigma_theta_deg) and self.sigma_theta_deg >= 0.0):
            raise ValueError(f"sigma_theta_deg must be >= 0, got {self.sigma_theta_deg}")
        if not all(math.isfinite(v) for v in (*self.position_m, self.wind_from_deg)):
            raise ValueError("position_m and wind_from_deg must be finite")

    @classmethod
    def from_localisation(cls, data: Mapping[str, Any]) -> LeakEstimate | None:
        """From ``LocalisationResult.to_json_dict()`` (as kept with the incident).

        ``None`` when the localisation has no wind (no zones can be drawn without it).
        """
        wind = data.get("wind")
        if not wind:
            return None
        rate = data["rate"]
        position = data["map_position_m"]
        return cls(
            gas=Gas(data["gas"]),
            position_m=(float(position[0]), float(position[1])),
            pipeline_id=data.get("map_pipeline_id"),
            chainage_m=None
            if data.get("map_chainage_m") is None
            else float(data["map_chainage_m"]),
            rate_low_kg_per_s=float(rate["lower_kg_per_s"]),
            rate_median_kg_per_s=float(rate["median_kg_per_s"]),
            rate_high_kg_per_s=float(rate["upper_kg_per_s"]),
            rate_at_prior_bound=bool(rate.get("at_prior_bound", False)),
            segment_probabilities={
                str(s["segment_id"]): float(s["probability"]) for s in data.get("segments", ())
            },
            credible_intervals=tuple(
                ChainageInterval(
                    pipeline_id=str(i["pipeline_id"]),
                    start_chainage_m=float(i["start_chainage_m"]),
                    end_chainage_m=float(i["end_chainage_m"]),
                    probability=float(i["probability"]),
                )
                for i in data.get("credible_intervals", ())
            ),
            wind_speed_m_per_s=float(wind["speed_m_per_s"]),
            wind_from_deg=math.degrees(float(wind["direction_from_rad"])) % 360.0,
            sigma_theta_deg=math.degrees(float(wind["sigma_theta_rad"])),
            stability_class=StabilityClass[str(wind["stability_class"])],
            lel_basis=LelBasis(data["lel_basis"]),
            origin="localisation",
            flags=tuple(str(flag) for flag in data.get("flags", ())),
        )

    @classmethod
    def what_if(
        cls,
        site: Site,
        *,
        gas: Gas,
        rate_kg_per_s: float,
        wind_speed_m_per_s: float,
        wind_from_deg: float,
        stability_class: StabilityClass,
        lel_basis: LelBasis,
        pipeline_id: str | None = None,
        chainage_m: float | None = None,
        position_m: tuple[float, float] | None = None,
        sigma_theta_deg: float | None = None,
        rate_factor: float = 1.0,
    ) -> LeakEstimate:
        """A hypothetical leak: on a pipeline at a chainage [m], or at a point [m].

        Without ``sigma_theta_deg`` [deg], the class's typical value
        (:data:`WHAT_IF_SIGMA_THETA_DEG`) is used.

        ``rate_factor`` >= 1 widens the rate into [rate / factor, rate * factor] [1].
        """
        if rate_factor < 1.0:
            raise ValueError(f"rate_factor must be >= 1, got {rate_factor}")
        segments: dict[str, float] = {}
        intervals: tuple[ChainageInterval, ...] = ()
        if pipeline_id is not None:
            pipeline = site.pipeline(pipeline_id)
            if chainage_m is None or not 0.0 <= chainage_m <= pipeline.length_m:
                raise ValueError(
                    f"chainage_m must be in [0, {pipeline.length_m:.0f}] m on {pipeline_id}, "
                    f"got {chainage_m}"
                )
            point = pipeline.point_at_chainage(chainage_m)
            position_m = (float(point[0]), float(point[1]))
            segments = {pipeline.segment_at_chainage(chainage_m).id: 1.0}
            intervals = (ChainageInterval(pipeline_id, chainage_m, chainage_m, 1.0),)
        elif position_m is None:
            raise ValueError("a what-if needs pipeline_id and chainage_m, or position_m")
        return cls(
            gas=gas,
            position_m=(float(position_m[0]), float(position_m[1])),
            pipeline_id=pipeline_id,
            chainage_m=chainage_m,
            rate_low_kg_per_s=rate_kg_per_s / rate_factor,
            rate_median_kg_per_s=rate_kg_per_s,
            rate_high_kg_per_s=rate_kg_per_s * rate_factor,
            rate_at_prior_bound=False,
            segment_probabilities=segments,
            credible_intervals=intervals,
            wind_speed_m_per_s=wind_speed_m_per_s,
            wind_from_deg=wind_from_deg % 360.0,
            sigma_theta_deg=(
                WHAT_IF_SIGMA_THETA_DEG[stability_class]
                if sigma_theta_deg is None
                else sigma_theta_deg
            ),
            stability_class=stability_class,
            lel_basis=lel_basis,
            origin="what_if",
        )

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "origin": self.origin,
            "gas": self.gas.value,
            "lel_basis": self.lel_basis.value,
            "position_m": [round(v, 1) for v in self.position_m],
            "pipeline_id": self.pipeline_id,
            "chainage_m": None if self.chainage_m is None else round(self.chainage_m, 1),
            "rate_kg_per_s": {
                "low": self.rate_low_kg_per_s,
                "median": self.rate_median_kg_per_s,
                "high": self.rate_high_kg_per_s,
                "at_prior_bound": self.rate_at_prior_bound,
            },
            "segment_probabilities": dict(sorted(self.segment_probabilities.items())),
            "credible_intervals": [
                {
                    "pipeline_id": i.pipeline_id,
                    "start_chainage_m": i.start_chainage_m,
                    "end_chainage_m": i.end_chainage_m,
                    "probability": i.probability,
                }
                for i in self.credible_intervals
            ],
            "wind": {
                "speed_m_per_s": self.wind_speed_m_per_s,
                "from_deg": round(self.wind_from_deg, 1),
                "sigma_theta_deg": round(self.sigma_theta_deg, 1),
                "stability_class": self.stability_class.name,
            },
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class ResponseContext:
    """What the response needs about a site, built once: graphs, plans, the alert's sender."""

    site: Site
    graph: PipelineGraph
    network: EvacuationNetwork
    library: PlanLibrary
    sender: CapSender
    time_zone: dt.tzinfo
    policy: ResponsePolicy = field(default_factory=ResponsePolicy)
    exposure_settings: ExposureSettings = field(default_factory=ExposureSettings)
    cap_status: CapStatus = CapStatus.ACTUAL
    urban: bool = True  # Briggs urban curves, as the localiser and the simulator use

    @classmethod
    def for_site(
        cls,
        site: Site,
        site_dir: Path,
        *,
        sender: CapSender | None = None,
        policy: ResponsePolicy | None = None,
        cap_status: CapStatus = CapStatus.ACTUAL,
    ) -> ResponseContext:
        """Build the graphs and load ``site_dir``/plans (a bad plan file names itself)."""
        return cls(
            site=site,
            graph=pipeline_graph(site),
            network=EvacuationNetwork.from_site(site),
            library=load_plan_library(site_dir / "plans", site),
            sender=sender
            or CapSender(
                sender_id=f"pipesentinel@{site.id}.invalid",
                name=f"{site.name} pipeline safety duty office",
            ),
            time_zone=zoneinfo.ZoneInfo(site.time_zone),
            policy=policy or ResponsePolicy(),
            cap_status=cap_status,
        )

    @property
    def underground_zones(self) -> frozenset[str]:
        """Detection zones of the detectors in the underground municipal networks."""
        return frozenset(
            d.zone for d in self.site.gas_detectors if d.placement is DetectorPlacement.UNDERGROUND
        )


@dataclass(frozen=True)
class EmergencyResponse:
    """Everything computed for one incident update."""

    incident_id: str
    incident_version: int
    time_s: float
    local_time: dt.datetime
    severity: Severity
    estimate: LeakEstimate
    isolation: IsolationPlan
    zones: ThreatZones
    exposure: ExposureAssessment
    situation: PlanSituation
    selection: PlanSelection
    checklist: tuple[dict[str, object], ...]
    cap_xml: str
    cap_identifier: str
    geojson: dict[str, Any]
    compute_time_s: Mapping[str, float] = field(default_factory=dict, compare=False)

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON for report.json, the MQTT payload and the incident's record.

        The compute times are left out (they differ between runs; the bench reports them).
        """
        return {
            "incident_id": self.incident_id,
            "incident_version": self.incident_version,
            "time_s": self.time_s,
            "local_time": self.local_time.isoformat(),
            "severity": self.severity.value,
            "leak": self.estimate.to_json_dict(),
            "isolation": self.isolation.to_json_dict(),
            "zones": self.zones.to_json_dict(),
            "people": self.exposure.to_json_dict(),
            "plan": {
                "situation": self.situation.to_json_dict(),
                **self.selection.to_json_dict(),
                "checklist": list(self.checklist),
            },
            "public_alert": {"cap_identifier": self.cap_identifier},
        }


def incident_severity(
    incident: Incident, estimate: LeakEstimate | None, policy: ResponsePolicy
) -> Severity:
    """Severity of an open incident.

    Fire if a camera sees a hot spot; major if the estimated rate or the number of zones reading
    gas reaches the policy's bounds; else confirmed (incidents open on a confirmed vote).
    """
    if any(item.kind in FIRE_EVIDENCE_KINDS for item in incident.evidence):
        return Severity.FIRE
    if len(incident.active_zones) >= policy.major_active_zones:
        return Severity.MAJOR
    if estimate is not None and estimate.rate_median_kg_per_s >= policy.major_rate_kg_per_s:
        return Severity.MAJOR
    return Severity.CONFIRMED


def _isolation(context: ResponseContext, estimate: LeakEstimate) -> IsolationPlan:
    if estimate.credible_intervals:
        return isolation_plan_for_intervals(context.graph, estimate.credible_intervals)
    if estimate.segment_probabilities:
        return isolation_plan_for_segments(context.graph, estimate.segment_probabilities)
    if estimate.pipeline_id is not None and estimate.chainage_m is not None:
        return isolation_plan(context.graph, estimate.pipeline_id, estimate.chainage_m)
    # Off the modelled lines: isolate the nearest point of the nearest line (stated in notes).
    nearest = min(
        context.site.pipelines,
        key=lambda p: float(p.locate(np.asarray([estimate.position_m]))[1][0]),
    )
    chainage = float(nearest.locate(np.asarray([estimate.position_m]))[0][0])
    return isolation_plan(context.graph, nearest.id, chainage)


def _zones(context: ResponseContext, estimate: LeakEstimate) -> ThreatZones:
    product = context.site.pipeline(estimate.pipeline_id).product if estimate.pipeline_id else None
    return threat_zones(
        source_m=(*estimate.position_m, 0.0),
        gas=estimate.gas,
        rate_low_kg_per_s=estimate.rate_low_kg_per_s,
        rate_median_kg_per_s=estimate.rate_median_kg_per_s,
        rate_high_kg_per_s=estimate.rate_high_kg_per_s,
        wind_speed_m_per_s=estimate.wind_speed_m_per_s,
        wind_from_deg=estimate.wind_from_deg,
        sigma_theta_deg=estimate.sigma_theta_deg,
        stability_class=int(estimate.stability_class),
        lel_basis=estimate.lel_basis,
        urban=context.urban,
        product=product,
        rate_at_prior_bound=estimate.rate_at_prior_bound,
    )


def _sensitive_in(exposure: ExposureAssessment, zones: Sequence[Zone]) -> tuple[str, ...]:
    return tuple(
        sorted(
            b.building_id
            for b in exposure.buildings
            if b.sensitive and any(zone in b.zones for zone in zones)
        )
    )


def _cap_zones(
    context: ResponseContext, zones: ThreatZones, exposure: ExposureAssessment
) -> list[CapZone]:
    occupants = {totals.zone: totals.occupants for totals in exposure.zone_totals}
    origin = context.site.origin
    red = zones.zone(ZoneLevel.RED)
    isolation = zones.zone(ZoneLevel.ISOLATION)
    yellow = zones.zone(ZoneLevel.YELLOW)
    result: list[CapZone] = []
    red_polygons = [np.asarray(p.exterior.coords) for p in _polygon_parts(red.polygon_m)]
    isolation_polygons = [
        np.asarray(p.exterior.coords) for p in _polygon_parts(isolation.polygon_m)
    ]
    result.append(
        CapZone(
            threat_level=ThreatLevel.RED,
            areas=(
                cap_area_from_site(
                    f"Red zone: gas above {red.percent_lel:.0f} %LEL and the "
                    f"{isolation.max_downwind_extent_m:.0f} m isolation area around the leak",
                    origin,
                    polygons_m=[*red_polygons, *isolation_polygons],
                ),
            ),
            occupants=occupants.get(Zone.RED.value, 0) + occupants.get(Zone.ISOLATION.value, 0),
        )
    )
    yellow_polygons = [np.asarray(p.exterior.coords) for p in _polygon_parts(yellow.polygon_m)]
    if yellow_polygons:
        result.append(
            CapZone(
                threat_level=ThreatLevel.YELLOW,
                areas=(
                    cap_area_from_site(
                        f"Yellow zone: gas above {yellow.percent_lel:.0f} %LEL possible",
                        origin,
                        polygons_m=yellow_polygons,
                    ),
                ),
                occupants=occupants.get(Zone.YELLOW.value, 0),
            )
        )
    return result


def _polygon_parts(geometry: Any) -> list[Any]:
    if geometry.is_empty:
        return []
    return list(getattr(geometry, "geoms", [geometry]))


def _response_geojson(
    context: ResponseContext,
    zones: ThreatZones,
    exposure: ExposureAssessment,
    isolation: IsolationPlan,
    estimate: LeakEstimate,
) -> dict[str, Any]:
    collection = zones_to_geojson(context.site, zones)
    origin = context.site.origin
    features: list[dict[str, Any]] = list(collection["features"])

    def point(position: npt.ArrayLike, properties: dict[str, Any]) -> None:
        lon, lat = (float(v) for v in lon_lat(np.asarray(position)[:2], origin)[:2])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
                "properties": properties,
            }
        )

    point(estimate.position_m, {"layer": "leak", **estimate.to_json_dict()})
    for closure in isolation.closures:
        point(closure.position_m, {"layer": "valve_to_close", **closure.to_json_dict()})
    for status in exposure.assembly_points:
        point(status.position_m, {"layer": "assembly_point", **status.to_json_dict()})
    for route in exposure.routes:
        coordinates = lon_lat(np.asarray(route.polyline_m), origin)
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [
                        [round(float(c[0]), 7), round(float(c[1]), 7)] for c in coordinates
                    ],
                },
                "properties": {
                    "layer": "evacuation_route",
                    **_without(route.to_json_dict(), "polyline_m"),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _without(data: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in data.items() if k != key}


_ZONES_OF: Final = {
    "isolation": (Zone.ISOLATION,),
    "red": (Zone.RED, Zone.ISOLATION),
    "yellow": (Zone.RED, Zone.ISOLATION, Zone.YELLOW),
}
"""Which exposure zones a plan's zone name covers: yellow (10 %LEL) includes red and the
isolation circle, red includes the isolation circle."""


def plan_checklist(
    plan: Plan, isolation: IsolationPlan, exposure: ExposureAssessment, cap_identifier: str
) -> list[dict[str, object]]:
    """The chosen plan's actions as a checklist, each resolved against this incident.

    ``close_valves`` with the isolation set gets the valves to close (in order, remote or manual);
    zone actions get the buildings in that zone (priority uses first) and their occupants;
    evacuations get the usable assembly points; traffic control the road names; the public alert
    its CAP identifier.
    """
    usable = [a.assembly_point_id for a in exposure.assembly_points if a.usable]
    items: list[dict[str, object]] = []
    for step, action in enumerate(plan.actions, start=1):
        item: dict[str, object] = {
            "step": step,
            "kind": action.kind,
            "instruction": action.instruction,
            "responsible": action.responsible.value,
            "within_min": action.within_min,
            "done": False,
        }
        if isinstance(action, CloseValvesAction):
            closures = (
                [c.to_json_dict() for c in isolation.closures] if action.isolation_set else []
            )
            listed = [v for v in action.valves if v not in isolation.valves_to_close]
            item["valves"] = (
                [*isolation.valves_to_close, *listed]
                if action.isolation_set
                else list(action.valves)
            )
            item["closures"] = closures
        zone: ZoneName | None = getattr(action, "zone", None)
        if zone is not None:
            covered = _ZONES_OF[zone.value]
            priority = tuple(getattr(action, "priority_uses", ()))
            inside = [b for b in exposure.buildings if any(z in b.zones for z in covered)]
            inside.sort(key=lambda b: (b.use not in priority, not b.sensitive))
            item["zone"] = zone.value
            item["buildings"] = [
                {"building_id": b.building_id, "name": b.name, "occupants": b.occupants}
                for b in inside
            ]
            item["occupants"] = sum(b.occupants for b in inside)
        if isinstance(action, EvacuateAction):
            item["assembly_points"] = list(action.assembly_points) or usable
        if isinstance(action, TrafficControlAction):
            item["roads"] = list(action.roads)
            item["mode"] = action.mode
        if isinstance(action, PublicAlertAction):
            item["cap_identifier"] = cap_identifier
        items.append(item)
    return items


def respond(
    context: ResponseContext,
    *,
    incident_id: str,
    incident_version: int,
    time_s: float,
    severity: Severity,
    estimate: LeakEstimate,
    underground_zone_ids: Sequence[str] = (),
    msg_type: CapMsgType = CapMsgType.ALERT,
    references: Sequence[CapReference] = (),
    ignition_observed: bool = False,
    leak_confirmed: bool = True,
) -> EmergencyResponse:
    """The response to one incident update at epoch ``time_s`` [s]; deterministic."""
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[name] = now - started
        started = now

    local_time = dt.datetime.fromtimestamp(time_s, tz=dt.UTC).astimezone(context.time_zone)
    isolation = _isolation(context, estimate)
    lap("isolation")
    zones = _zones(context, estimate)
    lap("zones")
    exposure = assess_exposure(
        context.network,
        red=zones.zone(ZoneLevel.RED).polygon_m,
        yellow=zones.zone(ZoneLevel.YELLOW).polygon_m,
        isolation=zones.zone(ZoneLevel.ISOLATION).polygon_m,
        leak_position_m=np.asarray(estimate.position_m),
        wind_direction_from_rad=math.radians(estimate.wind_from_deg),
        wind_direction_half_spread_rad=math.radians(zones.direction_spread_deg),
        local_time=local_time.replace(tzinfo=None),
        settings=context.exposure_settings,
    )
    lap("people")
    is_night = (
        occupancy_at(
            BuildingUse.RESIDENTIAL,
            local_time.replace(tzinfo=None),
            context.exposure_settings.day_hours,
        )
        is Occupancy.NIGHT
    )
    segments = sorted(estimate.segment_probabilities.items())
    situation = PlanSituation(
        incident_id=incident_id,
        gas=estimate.gas,
        severity=severity,
        pipeline_id=estimate.pipeline_id,
        segment_ids=tuple(s for s, _ in segments),
        segment_probabilities=tuple(min(1.0, p) for _, p in segments),
        red_zone_sensitive_building_ids=_sensitive_in(exposure, (Zone.RED, Zone.ISOLATION)),
        yellow_zone_sensitive_building_ids=_sensitive_in(exposure, (Zone.YELLOW,)),
        underground_involved=bool(underground_zone_ids),
        underground_zone_ids=tuple(sorted(underground_zone_ids)),
        wind_from_deg=estimate.wind_from_deg,
        wind_speed_m_per_s=estimate.wind_speed_m_per_s,
        is_night=is_night,
    )
    selection = select_plan(context.library, situation)
    lap("plan")
    sent = dt.datetime.fromtimestamp(math.floor(time_s), tz=dt.UTC).astimezone(context.time_zone)
    location = (
        f"pipeline {estimate.pipeline_id} near chainage {estimate.chainage_m:.0f} m"
        if estimate.pipeline_id is not None and estimate.chainage_m is not None
        else "off the modelled pipelines"
    )
    cap_incident = CapIncident(
        incident_id=incident_id,
        version=incident_version,
        gas=estimate.gas,
        leak_confirmed=leak_confirmed,
        location_description=f"{context.site.name}: {location}",
        ignition_observed=ignition_observed,
        zones_low_confidence=bool(zones.flags),
        emission_rate_kg_per_s=estimate.rate_median_kg_per_s,
        lel_basis=estimate.lel_basis,
        wind_from_deg=estimate.wind_from_deg,
    )
    usable = {a.id: a.name for a in context.site.assembly_points}
    cap_xml = cap_alert(
        cap_incident,
        _cap_zones(context, zones, exposure),
        sender=context.sender,
        sent=sent,
        status=context.cap_status,
        msg_type=msg_type,
        references=references,
        assembly_points=[usable[a.assembly_point_id] for a in exposure.assembly_points if a.usable],
        note="What-if simulation" if context.cap_status is CapStatus.EXERCISE else None,
    )
    lap("public_alert")
    geojson = _response_geojson(context, zones, exposure, isolation, estimate)
    lap("geojson")
    return EmergencyResponse(
        incident_id=incident_id,
        incident_version=incident_version,
        time_s=time_s,
        local_time=local_time,
        severity=severity,
        estimate=estimate,
        isolation=isolation,
        zones=zones,
        exposure=exposure,
        situation=situation,
        selection=selection,
        checklist=tuple(
            plan_checklist(
                context.library.plan(selection.plan_id),
                isolation,
                exposure,
                cap_identifier(incident_id, incident_version),
            )
        ),
        cap_xml=cap_xml,
        cap_identifier=cap_identifier(incident_id, incident_version),
        geojson=geojson,
        compute_time_s=timings,
    )


def respond_to_incident(
    context: ResponseContext,
    incident: Incident,
    *,
    references: Sequence[CapReference] = (),
) -> EmergencyResponse | None:
    """The response to an incident version; ``None`` until it has a localisation with wind."""
    if incident.localisation is None:
        return None
    estimate = LeakEstimate.from_localisation(incident.localisation)
    if estimate is None:
        return None
    severity = incident_severity(incident, estimate, context.policy)
    underground = sorted(set(incident.active_zones or incident.zones) & context.underground_zones)
    return respond(
        context,
        incident_id=incident.id,
        incident_version=incident.version,
        time_s=incident.updated_time_s,
        severity=severity,
        estimate=estimate,
        underground_zone_ids=underground,
        msg_type=CapMsgType.UPDATE if references else CapMsgType.ALERT,
        references=references,
        ignition_observed=severity is Severity.FIRE,
    )
