"""The emergency response to an incident update: isolation, zones, people, plan, alert."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.incidents import Evidence, Incident, IncidentStatus
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.cap import CapMsgType, CapStatus, reference_of, validate_cap
from pipesentinel.plans.library import Severity
from pipesentinel.plans.response import (
    WHAT_IF_SIGMA_THETA_DEG,
    EmergencyResponse,
    LeakEstimate,
    ResponseContext,
    ResponsePolicy,
    incident_severity,
    respond,
    respond_to_incident,
)
from pipesentinel.plans.zones import ZoneLevel
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
BASIS = LelBasis.IEC_60079_20_1
KINDERGARTEN = "B20"
LEAK_CHAINAGE_M = 690.0  # on P1-S2, 140 m south-east of the kindergarten
DAY = dt.datetime(2024, 6, 12, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))  # Wednesday
NIGHT = dt.datetime(2024, 6, 12, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def context(site: Site) -> ResponseContext:
    return ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)


def _toward_kindergarten(site: Site) -> float:
    """Wind from-direction that carries gas from the leak to the kindergarten [deg]."""
    leak = site.pipeline("P1").point_at_chainage(LEAK_CHAINAGE_M)[:2]
    building = next(b for b in site.buildings if b.id == KINDERGARTEN)
    east, north = building.footprint_m.mean(axis=0) - leak
    return (math.degrees(math.atan2(east, north)) + 180.0) % 360.0


def _what_if(
    site: Site, *, rate_kg_per_s: float = 5.0, wind_from_deg: float | None = None
) -> LeakEstimate:
    return LeakEstimate.what_if(
        site,
        gas=Gas.METHANE,
        rate_kg_per_s=rate_kg_per_s,
        wind_speed_m_per_s=1.5,
        wind_from_deg=_toward_kindergarten(site) if wind_from_deg is None else wind_from_deg,
        stability_class=StabilityClass.E,
        lel_basis=BASIS,
        pipeline_id="P1",
        chainage_m=LEAK_CHAINAGE_M,
        rate_factor=2.0,
    )


def _respond(
    context: ResponseContext, estimate: LeakEstimate, when: dt.datetime
) -> EmergencyResponse:
    return respond(
        context,
        incident_id="INC-T",
        incident_version=3,
        time_s=when.timestamp(),
        severity=Severity.CONFIRMED,
        estimate=estimate,
    )


def test_kindergarten_by_day_selects_its_plan_and_not_at_night(
    site: Site, context: ResponseContext
) -> None:
    by_day = _respond(context, _what_if(site), DAY)
    by_night = _respond(context, _what_if(site), NIGHT)
    assert KINDERGARTEN in by_day.situation.yellow_zone_sensitive_building_ids
    assert by_day.selection.plan_id == "WL-02"
    assert not by_day.situation.is_night
    assert by_night.situation.is_night
    assert by_night.selection.plan_id != "WL-02"
    why_not = by_night.selection.assessment("WL-02")
    assert not why_not.applicable
    # The kindergarten's day occupants count by day only (site data: 260 by day, 1 at night).
    day_people = {b.building_id: b.occupants for b in by_day.exposure.buildings}
    night_people = {b.building_id: b.occupants for b in by_night.exposure.buildings}
    assert (day_people[KINDERGARTEN], night_people[KINDERGARTEN]) == (260, 1)


def test_the_response_is_consistent_and_deterministic(site: Site, context: ResponseContext) -> None:
    first = _respond(context, _what_if(site, rate_kg_per_s=10.0), DAY)
    second = _respond(context, _what_if(site, rate_kg_per_s=10.0), DAY)
    assert json.dumps(first.to_json_dict(), sort_keys=True) == json.dumps(
        second.to_json_dict(), sort_keys=True
    )
    assert first.cap_xml == second.cap_xml
    red = first.zones.zone(ZoneLevel.RED).polygon_m
    yellow = first.zones.zone(ZoneLevel.YELLOW).polygon_m
    assert red.area > 0.0
    assert yellow.buffer(1e-6).contains(red)
    # The isolation closes valves on both sides of the leak's segment (P1-S2: P1-V1 .. P1-V2).
    assert set(first.isolation.valves_to_close) == {"P1-V1", "P1-V2"}
    # No evacuation route runs through the red zone: past the access leg from a building (which
    # starts inside red when the building is in it), the roads stay out of red.
    for route in first.exposure.routes:
        assert not shapely.LineString(route.polyline_m[1:]).intersects(red)
    validate_cap(first.cap_xml)
    layers = {f["properties"]["layer"] for f in first.geojson["features"]}
    assert {"threat_zone", "leak", "valve_to_close", "assembly_point"} <= layers
    json.dumps(first.to_json_dict(), allow_nan=False)


def test_severity_from_evidence_rate_and_zones(site: Site) -> None:
    estimate = _what_if(site, rate_kg_per_s=1.0)
    policy = ResponsePolicy(major_rate_kg_per_s=3.0, major_active_zones=3)

    def incident(kinds: tuple[str, ...], zones: tuple[str, ...] = ("P1-S2",)) -> Incident:
        return Incident(
            id="INC-S",
            site_id=site.id,
            opened_time_s=0.0,
            updated_time_s=10.0,
            version=1,
            status=IncidentStatus.OPEN,
            zones=zones,
            gases=("methane",),
            evidence=tuple(Evidence(1.0, "GD04", kind, "") for kind in kinds),
            vote_reasons={},
            active_zones=zones,
        )

    assert incident_severity(incident(("gas.low",)), estimate, policy) is Severity.CONFIRMED
    assert incident_severity(incident(("camera.hot_spot",)), estimate, policy) is Severity.FIRE
    large = _what_if(site, rate_kg_per_s=3.0)
    assert incident_severity(incident(("gas.high",)), large, policy) is Severity.MAJOR
    many = incident(("gas.low",), zones=("P1-S1", "P1-S2", "P2-S2"))
    assert incident_severity(many, estimate, policy) is Severity.MAJOR
    with pytest.raises(ValueError, match="major_rate_kg_per_s"):
        ResponsePolicy(major_rate_kg_per_s=0.0)


def test_a_major_release_selects_the_major_plan(site: Site, context: ResponseContext) -> None:
    response = respond(
        context,
        incident_id="INC-M",
        incident_version=1,
        time_s=DAY.timestamp(),
        severity=Severity.MAJOR,
        estimate=_what_if(site),
    )
    assert response.selection.plan_id == "WL-07"


def test_response_to_an_incident_reads_its_localisation(
    site: Site, context: ResponseContext
) -> None:
    """The incident carries the localiser's JSON; the response reads it back (keys as emitted)."""
    localisation = {
        "gas": "methane",
        "lel_basis": BASIS.value,
        "map_position_m": [*site.pipeline("P1").point_at_chainage(2236.0)[:2].tolist()],
        "map_pipeline_id": "P1",
        "map_chainage_m": 2236.0,
        "segments": [
            {"segment_id": "P1-S3", "pipeline_id": "P1", "probability": 0.9},
            {"segment_id": "P2-S3", "pipeline_id": "P2", "probability": 0.1},
        ],
        "credible_intervals": [
            {
                "pipeline_id": "P1",
                "start_chainage_m": 2200.0,
                "end_chainage_m": 2260.0,
                "probability": 0.9,
            }
        ],
        "rate": {
            "median_kg_per_s": 0.7,
            "lower_kg_per_s": 0.3,
            "upper_kg_per_s": 1.5,
            "at_prior_bound": False,
        },
        "wind": {
            "speed_m_per_s": 3.5,
            "direction_from_rad": math.radians(80.0),
            "sigma_theta_rad": math.radians(9.0),
            "stability_class": "D",
        },
        "flags": [],
    }
    incident = Incident(
        id="INC-L",
        site_id=site.id,
        opened_time_s=DAY.timestamp() - 60.0,
        updated_time_s=DAY.timestamp(),
        version=4,
        status=IncidentStatus.OPEN,
        zones=("P1-S3", "UT1-X"),
        gases=("methane",),
        evidence=(),
        vote_reasons={},
        localisation=localisation,
        active_zones=("P1-S3", "UT1-X"),
    )
    first = respond_to_incident(context, incident)
    assert first is not None
    assert first.estimate.wind_from_deg == pytest.approx(80.0)
    assert first.estimate.stability_class is StabilityClass.D
    assert first.situation.underground_zone_ids == ("UT1-X",)
    assert first.selection.plan_id == "WL-04"  # gas in the utility tunnel: the underground plan
    assert set(first.isolation.valves_to_close) == {"P1-V2", "P1-V3"}
    update = respond_to_incident(context, incident, references=[reference_of(first.cap_xml)])
    assert update is not None
    assert f"<msgType>{CapMsgType.UPDATE.value}</msgType>" in update.cap_xml
    no_wind = Incident(**{**incident.__dict__, "localisation": {**localisation, "wind": None}})
    assert respond_to_incident(context, no_wind) is None


def test_what_if_checks_its_inputs(site: Site) -> None:
    with pytest.raises(ValueError, match="chainage_m must be in"):
        LeakEstimate.what_if(
            site,
            gas=Gas.METHANE,
            rate_kg_per_s=1.0,
            wind_speed_m_per_s=2.0,
            wind_from_deg=0.0,
            stability_class=StabilityClass.D,
            lel_basis=BASIS,
            pipeline_id="P1",
            chainage_m=1e6,
        )
    with pytest.raises(ValueError, match="rates must be"):
        _what_if(site, rate_kg_per_s=-1.0)
    estimate = _what_if(site)
    assert estimate.sigma_theta_deg == WHAT_IF_SIGMA_THETA_DEG[StabilityClass.E]
    assert estimate.segment_probabilities == {"P1-S2": 1.0}
    np.testing.assert_allclose(
        estimate.position_m, site.pipeline("P1").point_at_chainage(LEAK_CHAINAGE_M)[:2]
    )


def test_the_plan_checklist_is_resolved_for_the_incident(
    site: Site, context: ResponseContext
) -> None:
    response = _respond(context, _what_if(site), DAY)
    assert response.selection.plan_id == "WL-02"
    checklist = response.checklist
    assert [item["step"] for item in checklist] == list(range(1, len(checklist) + 1))
    plan = context.library.plan("WL-02")
    assert [item["instruction"] for item in checklist] == [a.instruction for a in plan.actions]
    valves = [item for item in checklist if item["kind"] == "close_valves"]
    assert valves
    assert all(set(response.isolation.valves_to_close) <= set(item["valves"]) for item in valves)  # type: ignore[call-overload]
    evacuations = [item for item in checklist if item["kind"] == "evacuate"]
    assert evacuations
    for item in evacuations:
        names = [b["building_id"] for b in item["buildings"]]  # type: ignore[attr-defined]
        assert KINDERGARTEN in names
        assert item["occupants"] >= 260  # type: ignore[operator]
        assert item["assembly_points"]
    assert all(item["done"] is False for item in checklist)
    json.dumps(response.to_json_dict()["plan"], allow_nan=False)
