"""Automatic best-plan selection: which preset plan fits the incident now, and why.

On every incident update the integrator builds a :class:`PlanSituation` (gas, severity, credible
segments with their probabilities, sensitive buildings inside the red/yellow zones, underground
involvement, wind, day/night) and calls :func:`select_plan`. The selection is deterministic:

1. **Applicability.** A plan applies when every criterion it states holds (see
   :class:`~pipesentinel.plans.library.Applicability`). Segment criteria hold when the plan's
   segments carry at least :data:`MIN_SEGMENT_COVERAGE` of the credible probability mass. A
   wind-sector criterion needs a known wind direction. The generic plan states none, so it always
   applies: there is always a plan.
2. **Ranking** of the applicable plans, lexicographically:

   a. the plan written for the highest severity (its ``min_severity``) first - a plan written for
      a major release outranks one written for a confirmed leak once the incident is major;
   b. then the higher **specificity score**: points for each stated criterion that holds
      (:data:`POINTS`; the segment points are scaled by the covered probability mass);
   c. then non-generic before generic, then plan id (alphabetical) - a stable tie-break.

The result, :class:`PlanSelection`, keeps every plan's assessment: for the chosen one why it was
chosen (criteria and points), for each other plan either the criteria that failed or by how much
and on what it ranked lower.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from pipesentinel.plans.library import (
    Plan,
    PlanLibrary,
    Severity,
    TimeOfDay,
    UndergroundRequirement,
    ZoneName,
)
from pipesentinel.site import Gas

__all__ = [
    "MIN_SEGMENT_COVERAGE",
    "POINTS",
    "Criterion",
    "PlanAssessment",
    "PlanSelection",
    "PlanSituation",
    "select_plan",
]

MIN_SEGMENT_COVERAGE: Final = 0.2
"""A segment criterion holds when the plan's segments carry at least this share of the credible
segment probability mass [-]. A design choice: a plan for a neighbouring segment that holds only a
sliver of the localisation's probability should not take over; 20 % keeps a plan in play while
the localisation is still ambiguous between two or three segments."""

PROBABILITY_TOLERANCE: Final = 1e-6  # slack on probabilities summing to 1 [-]


class Criterion:
    """Names of the applicability criteria, as they appear in explanations."""

    GAS = "gas"
    SEVERITY = "severity"
    PIPELINE = "pipeline"
    SEGMENTS = "segments"
    SENSITIVE = "sensitive buildings"
    WIND = "wind sector"
    TIME = "time of day"
    UNDERGROUND = "underground"
    UNDERGROUND_ZONES = "underground zones"


POINTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        Criterion.SEGMENTS: 30.0,  # times the covered probability mass
        Criterion.PIPELINE: 10.0,
        Criterion.SENSITIVE: 20.0,  # yellow-zone criterion; red-zone criterion adds RED_BONUS
        Criterion.UNDERGROUND: 25.0,  # underground = "required"
        Criterion.UNDERGROUND_ZONES: 5.0,
        Criterion.WIND: 10.0,
        Criterion.GAS: 5.0,  # the plan is written for a subset of the gases
        Criterion.TIME: 5.0,  # day or night only
        Criterion.SEVERITY: 5.0,  # the plan has an upper severity bound below "fire"
    }
)
"""Specificity points per stated criterion that holds. A design choice, in order of how much the
criterion changes what responders must do: where the leak is (segments), who is exposed
(sensitive buildings), whether the gas is underground, then wind, gas, time and severity band.
Unstated criteria score nothing, so the generic plan scores 0."""

RED_BONUS: Final = 5.0
"""Extra points for a sensitive-building criterion on the red (60 %LEL) zone [-]."""


def _sector_contains(start_deg: float, end_deg: float, direction_deg: float) -> bool:
    """Whether ``direction_deg`` lies in the clockwise sector from ``start_deg`` to ``end_deg``."""
    width = (end_deg - start_deg) % 360.0
    return (direction_deg - start_deg) % 360.0 <= width


@dataclass(frozen=True)
class PlanSituation:
    """What plan selection needs to know about an incident at one update.

    Attributes
    ----------
    incident_id
        The incident [-].
    gas
        The gas detected (the one driving the zones) [-].
    severity
        Severity level of the incident [-].
    pipeline_id
        The most probable pipeline, or None when not localised [-].
    segment_ids
        The credible segments, in any order [-].
    segment_probabilities
        Probability of each of ``segment_ids``, same order; sum <= 1 [-].
    red_zone_sensitive_building_ids
        Sensitive buildings (schools, hospitals) inside the red (60 %LEL) zone [-].
    yellow_zone_sensitive_building_ids
        Sensitive buildings inside the yellow (10 %LEL) zone; the red ones count as yellow too [-].
    underground_involved
        Whether gas is in (or predicted in) the underground municipal networks [-].
    underground_zone_ids
        The underground detection zones that read gas (e.g. ``UT1-X``) [-].
    wind_from_deg
        Wind direction, from where it blows, clockwise from north, or None if unknown [deg].
    wind_speed_m_per_s
        Wind speed, or None if unknown [m s-1].
    is_night
        Whether the night occupancy applies [-].
    """

    incident_id: str
    gas: Gas
    severity: Severity
    pipeline_id: str | None = None
    segment_ids: tuple[str, ...] = ()
    segment_probabilities: tuple[float, ...] = ()
    red_zone_sensitive_building_ids: tuple[str, ...] = ()
    yellow_zone_sensitive_building_ids: tuple[str, ...] = ()
    underground_involved: bool = False
    underground_zone_ids: tuple[str, ...] = ()
    wind_from_deg: float | None = None
    wind_speed_m_per_s: float | None = None
    is_night: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "gas", Gas(self.gas))
        object.__setattr__(self, "severity", Severity(self.severity))
        if len(self.segment_ids) != len(self.segment_probabilities):
            raise ValueError(
                f"segment_ids ({len(self.segment_ids)}) and segment_probabilities "
                f"({len(self.segment_probabilities)}) differ in length"
            )
        if len(set(self.segment_ids)) != len(self.segment_ids):
            raise ValueError(f"segment_ids repeat a segment: {self.segment_ids}")
        for segment_id, probability in zip(
            self.segment_ids, self.segment_probabilities, strict=True
        ):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability of {segment_id!r} is {probability}, not in [0, 1]")
        if sum(self.segment_probabilities) > 1.0 + PROBABILITY_TOLERANCE:
            raise ValueError(f"segment probabilities sum to {sum(self.segment_probabilities)} > 1")
        if self.underground_zone_ids and not self.underground_involved:
            raise ValueError("underground_zone_ids given but underground_involved is False")
        if self.wind_from_deg is not None:
            if not math.isfinite(self.wind_from_deg):
                raise ValueError(f"wind_from_deg={self.wind_from_deg} is not finite")
            object.__setattr__(self, "wind_from_deg", float(self.wind_from_deg) % 360.0)
        if self.wind_speed_m_per_s is not None and not (
            math.isfinite(self.wind_speed_m_per_s) and self.wind_speed_m_per_s >= 0.0
        ):
            raise ValueError(f"wind_speed_m_per_s={self.wind_speed_m_per_s} is not >= 0")

    @property
    def segment_probability(self) -> Mapping[str, float]:
        """Probability of each credible segment, by id [-]."""
        return dict(zip(self.segment_ids, self.segment_probabilities, strict=True))

    def sensitive_in(self, zone: ZoneName) -> tuple[str, ...]:
        """Sensitive building ids inside ``zone`` (red, or yellow including red), sorted."""
        ids = set(self.red_zone_sensitive_building_ids)
        if zone == ZoneName.YELLOW:
            ids |= set(self.yellow_zone_sensitive_building_ids)
        return tuple(sorted(ids))

    def to_json_dict(self) -> dict[str, Any]:
        """The situation as plain JSON types."""
        return {
            "incident_id": self.incident_id,
            "gas": self.gas.value,
            "severity": self.severity.value,
            "pipeline_id": self.pipeline_id,
            "segment_probabilities": dict(sorted(self.segment_probability.items())),
            "red_zone_sensitive_building_ids": sorted(self.red_zone_sensitive_building_ids),
            "yellow_zone_sensitive_building_ids": sorted(self.yellow_zone_sensitive_building_ids),
            "underground_involved": self.underground_involved,
            "underground_zone_ids": sorted(self.underground_zone_ids),
            "wind_from_deg": self.wind_from_deg,
            "wind_speed_m_per_s": self.wind_speed_m_per_s,
            "is_night": self.is_night,
        }


@dataclass(frozen=True)
class CriterionResult:
    """One stated criterion of one plan against the situation."""

    criterion: str
    holds: bool
    points: float  # specificity points earned (0 when it fails)
    reason: str  # for people: what was required and what the situation has

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "criterion": self.criterion,
            "holds": self.holds,
            "points": round(self.points, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PlanAssessment:
    """How one plan fares against the situation."""

    plan_id: str
    plan_version: int
    title: str
    generic: bool
    applicable: bool
    severity_written_for: Severity  # the plan's min_severity: the first ranking key
    score: float  # sum of the points of the stated criteria that hold
    criteria: tuple[CriterionResult, ...]
    rank: int | None  # 1 = chosen; None when not applicable
    explanation: str

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        """The stated criteria that do not hold."""
        return tuple(result for result in self.criteria if not result.holds)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "plan_id": self.plan_id,
            "plan_version": self.plan_version,
            "title": self.title,
            "generic": self.generic,
            "applicable": self.applicable,
            "severity_written_for": self.severity_written_for.value,
            "score": round(self.score, 3),
            "rank": self.rank,
            "criteria": [result.to_json_dict() for result in self.criteria],
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class PlanSelection:
    """The chosen plan and the assessment of every plan of the library.

    ``assessments`` lists the chosen plan first, then the other applicable plans in rank order,
    then the plans that do not apply, by id.
    """

    incident_id: str
    situation: PlanSituation
    plan_id: str
    plan_version: int
    title: str
    fallback: bool  # the generic plan was chosen because no specific plan applies
    explanation: str
    assessments: tuple[PlanAssessment, ...]

    @property
    def chosen(self) -> PlanAssessment:
        """The assessment of the chosen plan."""
        return self.assessments[0]

    def assessment(self, plan_id: str) -> PlanAssessment:
        """The assessment of one plan; ``KeyError`` otherwise."""
        for assessment in self.assessments:
            if assessment.plan_id == plan_id:
                return assessment
        raise KeyError(f"no plan {plan_id!r} was assessed")

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types, for report.json and the decision journal."""
        return {
            "incident_id": self.incident_id,
            "plan_id": self.plan_id,
            "plan_version": self.plan_version,
            "title": self.title,
            "fallback": self.fallback,
            "explanation": self.explanation,
            "situation": self.situation.to_json_dict(),
            "assessments": [assessment.to_json_dict() for assessment in self.assessments],
        }


def _percent(probability: float) -> str:
    return f"{100.0 * probability:.0f} %"


def _credible_text(situation: PlanSituation) -> str:
    if not situation.segment_ids:
        return "no credible segment"
    pairs = sorted(situation.segment_probability.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{segment} {_percent(probability)}" for segment, probability in pairs)


def _assess_criteria(
    plan: Plan, situation: PlanSituation, library: PlanLibrary
) -> tuple[CriterionResult, ...]:
    """Every criterion the plan states, evaluated on the situation, in a fixed order."""
    rules = plan.applicability
    results: list[CriterionResult] = []
    # Severity band (always checked; points only for an upper bound below "fire").
    in_band = rules.min_severity.rank <= situation.severity.rank <= rules.max_severity.rank
    band = (
        rules.min_severity.value
        if rules.min_severity == rules.max_severity
        else f"{rules.min_severity.value}..{rules.max_severity.value}"
    )
    if rules.min_severity != Severity.SUSPECTED or rules.max_severity != Severity.FIRE:
        bounded = rules.max_severity != Severity.FIRE
        results.append(
            CriterionResult(
                Criterion.SEVERITY,
                in_band,
                POINTS[Criterion.SEVERITY] if in_band and bounded else 0.0,
                f"written for {band}; incident is {situation.severity.value}",
            )
        )
    if rules.gases:
        holds = situation.gas in rules.gases
        gases = ", ".join(gas.value for gas in rules.gases)
        results.append(
            CriterionResult(
                Criterion.GAS,
                holds,
                POINTS[Criterion.GAS] if holds else 0.0,
                f"written for {gases}; gas is {situation.gas.value}",
            )
        )
    if rules.pipelines:
        holds = situation.pipeline_id in rules.pipelines
        results.append(
            CriterionResult(
                Criterion.PIPELINE,
                holds,
                POINTS[Criterion.PIPELINE] if holds else 0.0,
                f"written for {', '.join(rules.pipelines)}; "
                f"pipeline is {situation.pipeline_id or 'not localised'}",
            )
        )
    if rules.segments:
        probabilities = situation.segment_probability
        coverage = sum(probabilities.get(segment, 0.0) for segment in rules.segments)
        holds = coverage >= MIN_SEGMENT_COVERAGE
        results.append(
            CriterionResult(
                Criterion.SEGMENTS,
                holds,
                POINTS[Criterion.SEGMENTS] * coverage if holds else 0.0,
                f"written for {', '.join(rules.segments)}, which hold {_percent(coverage)} of the "
                f"credible mass (needs {_percent(MIN_SEGMENT_COVERAGE)}); credible: "
                f"{_credible_text(situation)}",
            )
        )
    if rules.sensitive is not None:
        inside = situation.sensitive_in(rules.sensitive.zone)
        matching = [
            building
            for building in inside
            if building in rules.sensitive.buildings
            or library.building_uses.get(building) in rules.sensitive.uses
        ]
        holds = bool(matching)
        wanted = [use.value for use in rules.sensitive.uses] + list(rules.sensitive.buildings)
        points = POINTS[Criterion.SENSITIVE] + (
            RED_BONUS if rules.sensitive.zone == ZoneName.RED else 0.0
        )
        found = ", ".join(
            f"{building} ({library.building_uses[building].value})" for building in inside
        )
        results.append(
            CriterionResult(
                Criterion.SENSITIVE,
                holds,
                points if holds else 0.0,
                f"needs {' or '.join(wanted)} in the {rules.sensitive.zone.value} zone; "
                f"sensitive buildings in it: {found or 'none'}",
            )
        )
    if rules.wind_from_sectors_deg:
        sectors = ", ".join(f"{start:g}-{end:g} deg" for start, end in rules.wind_from_sectors_deg)
        if situation.wind_from_deg is None:
            holds, now = False, "wind direction unknown"
        else:
            direction = situation.wind_from_deg
            holds = any(
                _sector_contains(start, end, direction)
                for start, end in rules.wind_from_sectors_deg
            )
            now = f"wind from {direction:.0f} deg"
        results.append(
            CriterionResult(
                Criterion.WIND,
                holds,
                POINTS[Criterion.WIND] if holds else 0.0,
                f"written for wind from {sectors}; {now}",
            )
        )
    if rules.time_of_day != TimeOfDay.ANY:
        now_text = "night" if situation.is_night else "day"
        holds = now_text == rules.time_of_day.value
        results.append(
            CriterionResult(
                Criterion.TIME,
                holds,
                POINTS[Criterion.TIME] if holds else 0.0,
                f"written for {rules.time_of_day.value}; it is {now_text}",
            )
        )
    if rules.underground != UndergroundRequirement.ANY:
        required = rules.underground == UndergroundRequirement.REQUIRED
        holds = situation.underground_involved == required
        involvement = "involved" if situation.underground_involved else "not involved"
        results.append(
            CriterionResult(
                Criterion.UNDERGROUND,
                holds,
                POINTS[Criterion.UNDERGROUND] if holds and required else 0.0,
                f"{'needs' if required else 'excludes'} gas in the underground networks; "
                f"underground {involvement}",
            )
        )
    if rules.underground_zones:
        reading = sorted(set(rules.underground_zones) & set(situation.underground_zone_ids))
        holds = bool(reading)
        results.append(
            CriterionResult(
                Criterion.UNDERGROUND_ZONES,
                holds,
                POINTS[Criterion.UNDERGROUND_ZONES] if holds else 0.0,
                f"written for {', '.join(rules.underground_zones)}; zones reading gas: "
                f"{', '.join(sorted(situation.underground_zone_ids)) or 'none'}",
            )
        )
    return tuple(results)


def _check_situation(library: PlanLibrary, situation: PlanSituation) -> None:
    """``ValueError`` for ids the library's site does not know."""
    unknown_segments = sorted(set(situation.segment_ids) - set(library.segment_pipelines))
    if unknown_segments:
        raise ValueError(f"situation names unknown segments {unknown_segments}")
    buildings = set(situation.red_zone_sensitive_building_ids) | set(
        situation.yellow_zone_sensitive_building_ids
    )
    unknown_buildings = sorted(buildings - set(library.building_uses))
    if unknown_buildings:
        raise ValueError(f"situation names unknown buildings {unknown_buildings}")
    unknown_zones = sorted(set(situation.underground_zone_ids) - library.underground_zones)
    if unknown_zones:
        raise ValueError(f"situation names unknown underground zones {unknown_zones}")


SCORE_DECIMALS: Final = 6
"""Scores are rounded to this many decimals, so that equal sums made in a different order tie."""


def _score(criteria: tuple[CriterionResult, ...]) -> float:
    """Specificity score: the points of the criteria, rounded to :data:`SCORE_DECIMALS`."""
    return round(sum(result.points for result in criteria), SCORE_DECIMALS)


def _rank_key(plan: Plan, score: float) -> tuple[int, float, bool, str]:
    """Sort key: highest severity written for, highest score, specific before generic, id."""
    return (-plan.applicability.min_severity.rank, -score, plan.generic, plan.id)


def _why_chosen(plan: Plan, criteria: tuple[CriterionResult, ...], fallback: bool) -> str:
    head = f"{plan.id} v{plan.version} chosen"
    if fallback:
        return f"{head}: no specific plan applies, so the generic plan is used."
    earned = [
        f"{result.criterion} +{result.points:g} ({result.reason})"
        for result in criteria
        if result.points > 0.0
    ]
    also = [f"{result.criterion} ({result.reason})" for result in criteria if result.points == 0.0]
    score = _score(criteria)
    return (
        f"{head}: written for severity {plan.applicability.min_severity.value} and up; "
        f"every stated criterion holds; specificity {score:g}"
        + (f" = {'; '.join(earned)}" if earned else "")
        + (f"; also holds: {'; '.join(also)}" if also else "")
        + "."
    )


def _why_lower(
    plan: Plan,
    criteria: tuple[CriterionResult, ...],
    chosen: Plan,
    chosen_criteria: tuple[CriterionResult, ...],
) -> str:
    score = _score(criteria)
    chosen_score = _score(chosen_criteria)
    severity = plan.applicability.min_severity
    chosen_severity = chosen.applicability.min_severity
    if severity.rank < chosen_severity.rank:
        return (
            f"applies, but is written for severity {severity.value} and up, below "
            f"{chosen.id} (written for {chosen_severity.value}); severity is ranked first"
        )
    if score != chosen_score:
        mine = {result.criterion: result.points for result in criteria}
        theirs = {result.criterion: result.points for result in chosen_criteria}
        differences = []
        for criterion in POINTS:
            delta = mine.get(criterion, 0.0) - theirs.get(criterion, 0.0)
            if abs(delta) > 1e-9:
                differences.append(f"{criterion} {delta:+g}")
        return (
            f"applies, but scores {score:g}, {chosen_score - score:g} below {chosen.id} "
            f"({chosen_score:g}); points this plan gains (+) or lacks (-) against it: "
            f"{', '.join(differences)}"
        )
    if plan.generic and not chosen.generic:
        return f"applies with the same score as {chosen.id}; specific plans go before the generic"
    return f"applies with the same score as {chosen.id}; ranked after it by plan id"


def select_plan(library: PlanLibrary, situation: PlanSituation) -> PlanSelection:
    """Choose the best applicable plan for ``situation`` and explain the choice.

    Parameters
    ----------
    library
        The validated plan library of the site [-].
    situation
        The incident as plan selection sees it [-].

    Returns
    -------
    PlanSelection
        The chosen plan (the generic one when nothing specific applies) and every plan's
        assessment with its explanation.

    Raises
    ------
    ValueError
        When the situation names segments, buildings or underground zones the site lacks.
    """
    _check_situation(library, situation)
    evaluated = [(plan, _assess_criteria(plan, situation, library)) for plan in library.plans]
    applicable = [
        (plan, criteria) for plan, criteria in evaluated if all(result.holds for result in criteria)
    ]
    applicable.sort(key=lambda item: _rank_key(item[0], _score(item[1])))
    # The generic plan has no criteria, so `applicable` is never empty.
    chosen, chosen_criteria = applicable[0]
    fallback = chosen.generic
    assessments: list[PlanAssessment] = []
    for rank, (plan, criteria) in enumerate(applicable, start=1):
        explanation = (
            _why_chosen(plan, criteria, fallback)
            if rank == 1
            else _why_lower(plan, criteria, chosen, chosen_criteria)
        )
        assessments.append(
            PlanAssessment(
                plan_id=plan.id,
                plan_version=plan.version,
                title=plan.title,
                generic=plan.generic,
                applicable=True,
                severity_written_for=plan.applicability.min_severity,
                score=_score(criteria),
                criteria=criteria,
                rank=rank,
                explanation=explanation,
            )
        )
    applicable_ids = {plan.id for plan, _ in applicable}
    for plan, criteria in evaluated:
        if plan.id in applicable_ids:
            continue
        failed = "; ".join(
            f"{result.criterion}: {result.reason}" for result in criteria if not result.holds
        )
        assessments.append(
            PlanAssessment(
                plan_id=plan.id,
                plan_version=plan.version,
                title=plan.title,
                generic=plan.generic,
                applicable=False,
                severity_written_for=plan.applicability.min_severity,
                score=0.0,
                criteria=criteria,
                rank=None,
                explanation=f"not applicable: {failed}",
            )
        )
    return PlanSelection(
        incident_id=situation.incident_id,
        situation=situation,
        plan_id=chosen.id,
        plan_version=chosen.version,
        title=chosen.title,
        fallback=fallback,
        explanation=assessments[0].explanation,
        assessments=tuple(assessments),
    )
