"""Plan selection: hand-worked choices on the reference plans, explanations, invariants."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesentinel.plans.library import Plan, PlanLibrary, Severity, load_plan_library
from pipesentinel.plans.selection import (
    MIN_SEGMENT_COVERAGE,
    POINTS,
    PlanSelection,
    PlanSituation,
    select_plan,
)
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def library(site: Site) -> PlanLibrary:
    return load_plan_library(SITE_DIR / "plans", site)


def situation(**changes: object) -> PlanSituation:
    """A confirmed methane leak on P1-S2 (80 %) / P1-S3 (15 %) by day, calm unknown wind."""
    base = PlanSituation(
        incident_id="INC-1",
        gas=Gas.METHANE,
        severity=Severity.CONFIRMED,
        pipeline_id="P1",
        segment_ids=("P1-S2", "P1-S3"),
        segment_probabilities=(0.8, 0.15),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def plan(
    plan_id: str, *, generic: bool = False, applicability: Mapping[str, object] | None = None
) -> Plan:
    return Plan.model_validate(
        {
            "id": plan_id,
            "title": plan_id,
            "version": 1,
            "description": "test",
            "generic": generic,
            "responsible_roles": ["duty_officer"],
            "applicability": dict(applicability or {}),
            "actions": [{"kind": "other", "instruction": "do it", "responsible": "duty_officer"}],
        }
    )


def small_library(library: PlanLibrary, *plans: Plan) -> PlanLibrary:
    return replace(library, plans=(plan("GEN", generic=True), *plans))


# --- hand-worked choices on the reference site ----------------------------------------------------


def test_kindergarten_by_day(library: PlanLibrary) -> None:
    chosen = select_plan(library, situation(yellow_zone_sensitive_building_ids=("B20",)))
    assert chosen.plan_id == "WL-02"
    assert not chosen.fallback
    # segments: 30 x 0.80 (P1-S2 of P1-S1, P1-S2, P2-S2) + school in yellow 20 + day 5
    assert chosen.chosen.score == pytest.approx(30.0 * 0.8 + 20.0 + 5.0)
    assert "B20 (school)" in chosen.explanation
    # WL-00 (generic) applies but ranks lower; WL-03 (night) does not apply.
    assert chosen.assessment("WL-00").applicable
    assert "written for severity suspected" in chosen.assessment("WL-00").explanation
    assert not chosen.assessment("WL-03").applicable
    assert "time of day: written for night; it is day" in chosen.assessment("WL-03").explanation


def test_same_leak_at_night_goes_to_the_residential_plan(library: PlanLibrary) -> None:
    chosen = select_plan(
        library, situation(is_night=True, yellow_zone_sensitive_building_ids=("B20",))
    )
    assert chosen.plan_id == "WL-03"
    # segments P1-S2 and P1-S3 both in WL-03: 30 x 0.95 + night 5
    assert chosen.chosen.score == pytest.approx(30.0 * 0.95 + 5.0)
    assert "it is night" in chosen.assessment("WL-02").explanation


def test_south_wind_toward_the_hospital_outranks_the_night_plan(library: PlanLibrary) -> None:
    chosen = select_plan(library, situation(is_night=True, wind_from_deg=190.0))
    assert chosen.plan_id == "WL-06"
    assert chosen.chosen.score == pytest.approx(30.0 * 0.95 + 10.0)  # segments + wind sector
    lower = chosen.assessment("WL-03")
    assert lower.rank == 2
    assert "scores 33.5, 5 below WL-06 (38.5)" in lower.explanation
    assert "wind sector -10" in lower.explanation
    assert "time of day +5" in lower.explanation
    # A north wind: the hospital plan no longer applies.
    north = select_plan(library, situation(is_night=True, wind_from_deg=10.0))
    assert north.plan_id == "WL-03"
    assert "wind from 10 deg" in north.assessment("WL-06").explanation


def test_unknown_wind_fails_a_wind_sector_plan(library: PlanLibrary) -> None:
    chosen = select_plan(library, situation())
    assert not chosen.assessment("WL-06").applicable
    assert "wind direction unknown" in chosen.assessment("WL-06").explanation


def test_gas_underground_selects_the_underground_plan(library: PlanLibrary) -> None:
    chosen = select_plan(
        library,
        situation(
            segment_ids=("P1-S3",),
            segment_probabilities=(0.9,),
            underground_involved=True,
            underground_zone_ids=("UT1-X",),
        ),
    )
    assert chosen.plan_id == "WL-04"
    assert chosen.chosen.score == pytest.approx(POINTS["underground"])


def test_propane_cloud_toward_a_hospital(library: PlanLibrary) -> None:
    chosen = select_plan(
        library,
        situation(
            gas=Gas.PROPANE,
            pipeline_id="P2",
            segment_ids=("P2-S5",),
            segment_probabilities=(0.9,),
            red_zone_sensitive_building_ids=("B27",),
        ),
    )
    assert chosen.plan_id == "WL-05"
    assert chosen.chosen.score == pytest.approx(5.0 + 20.0)  # gas + hospital (red counts)
    methane = select_plan(library, replace(chosen.situation, gas=Gas.METHANE))
    assert methane.plan_id == "WL-00"
    assert methane.fallback


@pytest.mark.parametrize("severity", [Severity.MAJOR, Severity.FIRE])
def test_major_or_fire_outranks_more_specific_plans(
    library: PlanLibrary, severity: Severity
) -> None:
    chosen = select_plan(
        library, situation(severity=severity, yellow_zone_sensitive_building_ids=("B20",))
    )
    assert chosen.plan_id == "WL-07"
    kindergarten = chosen.assessment("WL-02")
    assert kindergarten.applicable
    assert kindergarten.score > chosen.chosen.score  # more specific, yet ranked below
    assert "severity is ranked first" in kindergarten.explanation


def test_suspected_selects_verification(library: PlanLibrary) -> None:
    chosen = select_plan(library, situation(severity=Severity.SUSPECTED))
    assert chosen.plan_id == "WL-01"
    assert chosen.chosen.score == pytest.approx(POINTS["severity"])


def test_nothing_specific_falls_back_to_the_generic_plan(library: PlanLibrary) -> None:
    chosen = select_plan(
        library,
        situation(pipeline_id="P2", segment_ids=("P2-S5",), segment_probabilities=(1.0,)),
    )
    assert chosen.plan_id == library.generic_plan.id
    assert chosen.fallback
    assert "no specific plan applies" in chosen.explanation
    not_applicable = [item for item in chosen.assessments if not item.applicable]
    assert len(not_applicable) == len(library.plans) - 1
    assert all(item.explanation.startswith("not applicable: ") for item in not_applicable)


# --- rules on small libraries ---------------------------------------------------------------------


def test_segment_coverage_threshold(library: PlanLibrary) -> None:
    small = small_library(library, plan("SEG", applicability={"segments": ["P1-S3"]}))
    below = situation(segment_probabilities=(0.8, MIN_SEGMENT_COVERAGE - 0.01))
    at = situation(segment_probabilities=(0.8 - 0.01, MIN_SEGMENT_COVERAGE))
    assert select_plan(small, below).plan_id == "GEN"
    assert "which hold 19 % of the credible mass (needs 20 %)" in (
        select_plan(small, below).assessment("SEG").explanation
    )
    assert select_plan(small, at).plan_id == "SEG"
    assert select_plan(small, at).chosen.score == pytest.approx(30.0 * MIN_SEGMENT_COVERAGE)


@pytest.mark.parametrize(
    ("wind_from_deg", "applies"),
    [
        (315.0, True),
        (350.0, True),
        (0.0, True),
        (360.0, True),
        (45.0, True),
        (46.0, False),
        (180.0, False),
        (314.0, False),
    ],
)
def test_wind_sector_wraps_through_north(
    library: PlanLibrary, wind_from_deg: float, applies: bool
) -> None:
    small = small_library(
        library, plan("NORTH", applicability={"wind_from_sectors_deg": [[315.0, 45.0]]})
    )
    chosen = select_plan(small, situation(wind_from_deg=wind_from_deg))
    assert (chosen.plan_id == "NORTH") is applies


def test_ties_break_by_plan_id_and_input_order_does_not_matter(library: PlanLibrary) -> None:
    rules = {"gases": ["methane"]}
    small = small_library(
        library, plan("B-PLAN", applicability=rules), plan("A-PLAN", applicability=rules)
    )
    reversed_order = replace(small, plans=tuple(reversed(small.plans)))
    first = select_plan(small, situation())
    second = select_plan(reversed_order, situation())
    assert first.plan_id == second.plan_id == "A-PLAN"
    assert first.to_json_dict() == second.to_json_dict()
    assert "ranked after it by plan id" in first.assessment("B-PLAN").explanation


def test_red_zone_criterion_needs_a_red_zone_building(library: PlanLibrary) -> None:
    small = small_library(
        library, plan("RED", applicability={"sensitive": {"zone": "red", "uses": ["school"]}})
    )
    assert select_plan(small, situation(yellow_zone_sensitive_building_ids=("B20",))).plan_id == (
        "GEN"
    )
    red = select_plan(small, situation(red_zone_sensitive_building_ids=("B20",)))
    assert red.plan_id == "RED"
    assert red.chosen.score == pytest.approx(25.0)


def test_underground_excluded(library: PlanLibrary) -> None:
    small = small_library(library, plan("DRY", applicability={"underground": "excluded"}))
    assert select_plan(small, situation()).plan_id == "DRY"
    wet = select_plan(small, situation(underground_involved=True))
    assert wet.plan_id == "GEN"
    assert "excludes gas in the underground networks" in wet.assessment("DRY").explanation


# --- the situation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"segment_probabilities": (0.5,)}, "differ in length"),
        ({"segment_probabilities": (0.8, 0.3)}, "sum to"),
        ({"segment_probabilities": (1.2, -0.2)}, "not in"),
        ({"segment_ids": ("P1-S2", "P1-S2")}, "repeat"),
        ({"underground_zone_ids": ("UT1-X",)}, "underground_involved is False"),
        ({"wind_speed_m_per_s": -1.0}, ">= 0"),
        ({"wind_from_deg": float("nan")}, "not finite"),
    ],
)
def test_situation_refuses_nonsense(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        situation(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"segment_ids": ("P9-S1", "P1-S3")}, "unknown segments"),
        ({"yellow_zone_sensitive_building_ids": ("B99",)}, "unknown buildings"),
        (
            {"underground_involved": True, "underground_zone_ids": ("P1-S2",)},
            "unknown underground zones",
        ),
    ],
)
def test_selection_refuses_ids_the_site_lacks(
    library: PlanLibrary, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        select_plan(library, situation(**changes))


def test_wind_direction_is_normalised() -> None:
    assert situation(wind_from_deg=-90.0).wind_from_deg == pytest.approx(270.0)


# --- invariants over random situations ------------------------------------------------------------

SEGMENTS = ("P1-S1", "P1-S2", "P1-S3", "P1-S4", "P2-S1", "P2-S2", "P2-S3", "P2-S4", "P2-S5")
SENSITIVE = ("B05", "B12", "B14", "B20", "B27")


@st.composite
def situations(draw: st.DrawFn) -> PlanSituation:
    segments = draw(st.lists(st.sampled_from(SEGMENTS), unique=True, max_size=4))
    weights = draw(st.lists(st.floats(0.01, 1.0), min_size=len(segments), max_size=len(segments)))
    total = sum(weights) / draw(st.floats(0.5, 1.0)) if weights else 1.0
    underground = draw(st.lists(st.sampled_from(("UT1-X", "DRN1-X", "SEW1-X")), unique=True))
    return PlanSituation(
        incident_id="INC-H",
        gas=draw(st.sampled_from(list(Gas))),
        severity=draw(st.sampled_from(list(Severity))),
        pipeline_id=segments[0][:2] if segments else None,
        segment_ids=tuple(segments),
        segment_probabilities=tuple(weight / total for weight in weights),
        red_zone_sensitive_building_ids=tuple(
            draw(st.lists(st.sampled_from(SENSITIVE), unique=True, max_size=2))
        ),
        yellow_zone_sensitive_building_ids=tuple(
            draw(st.lists(st.sampled_from(SENSITIVE), unique=True, max_size=3))
        ),
        underground_involved=bool(underground) or draw(st.booleans()),
        underground_zone_ids=tuple(underground),
        wind_from_deg=draw(st.none() | st.floats(0.0, 359.9)),
        wind_speed_m_per_s=draw(st.none() | st.floats(0.0, 20.0)),
        is_night=draw(st.booleans()),
    )


def rank_key(selection: PlanSelection, plan_id: str, library: PlanLibrary) -> tuple[int, float]:
    item = selection.assessment(plan_id)
    return (library.plan(plan_id).applicability.min_severity.rank, item.score)


@settings(max_examples=200, deadline=None)
@given(situations())
def test_selection_invariants(library: PlanLibrary, current: PlanSituation) -> None:
    selection = select_plan(library, current)
    assert selection.to_json_dict() == json.loads(json.dumps(selection.to_json_dict()))
    assert {item.plan_id for item in selection.assessments} == {p.id for p in library.plans}
    chosen = selection.chosen
    assert chosen.plan_id == selection.plan_id
    assert chosen.applicable
    assert chosen.rank == 1
    assert all(result.holds for result in chosen.criteria)
    assert selection.assessment(library.generic_plan.id).applicable  # the fallback always applies
    assert selection.fallback == (selection.plan_id == library.generic_plan.id)
    best = rank_key(selection, chosen.plan_id, library)
    for item in selection.assessments[1:]:
        assert item.explanation
        if item.applicable:
            assert rank_key(selection, item.plan_id, library) <= best
            assert all(result.holds for result in item.criteria)
        else:
            assert item.rank is None
            assert any(not result.holds for result in item.criteria)
    ranks = [item.rank for item in selection.assessments if item.applicable]
    assert ranks == list(range(1, len(ranks) + 1))
    assert select_plan(library, current) == selection  # deterministic
