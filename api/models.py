"""Request bodies of the API: validation lives here, so routes stay thin.

Every model forbids unknown keys and refuses non-finite numbers, so a typo or a NaN is a 422 that
names the field. Limits that are design choices (not physics) say so.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipesentinel.detection.alarms import ShelveMode
from pipesentinel.plans.library import Severity
from pipesentinel.site import Gas

__all__ = [
    "AcknowledgeRequest",
    "CloseIncidentRequest",
    "CommentRequest",
    "ConfirmPlanRequest",
    "ConfirmZoneRequest",
    "OverridePlanRequest",
    "ReleasePlanRequest",
    "ResetRequest",
    "ShelveRequest",
    "WhatIfRequest",
]

TEXT_MAX_CHARS = 2000  # longest comment or reason (design choice)
# What-if validity bounds (design choices, not physics): beyond them the answer means nothing.
WHAT_IF_MAX_RATE_KG_PER_S = 1000.0
WHAT_IF_MAX_WIND_SPEED_M_PER_S = 50.0
WHAT_IF_MAX_OFFSET_M = 100_000.0  # how far from the site origin a what-if point may be
WHAT_IF_MAX_RATE_FACTOR = 100.0
# 2001-09-09 .. 2286-11-20 in epoch seconds: times a what-if may be asked for (design choice).
EARLIEST_TIME_S = 1.0e9
LATEST_TIME_S = 1.0e10

Text = Annotated[str, Field(max_length=TEXT_MAX_CHARS)]
Reason = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_CHARS, pattern=r"\S")]
Coordinate = Annotated[
    float, Field(ge=-WHAT_IF_MAX_OFFSET_M, le=WHAT_IF_MAX_OFFSET_M, allow_inf_nan=False)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcknowledgeRequest(_Body):
    """Acknowledge an alarm, with an optional comment."""

    comment: Text = ""


class ResetRequest(_Body):
    """Reset a latched alarm whose condition has cleared, with an optional comment."""

    comment: Text = ""


class ShelveRequest(_Body):
    """Shelve an alarm: one-shot (until it next returns to normal) or timed (``duration_s``)."""

    reason: Reason
    mode: ShelveMode = ShelveMode.ONE_SHOT
    duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="timed shelve: how long [s] (at most alarms.max_shelve_s)"
    )

    @model_validator(mode="after")
    def _duration_with_timed_only(self) -> ShelveRequest:
        if self.mode is ShelveMode.TIMED and self.duration_s is None:
            raise ValueError("a timed shelve needs duration_s")
        if self.mode is ShelveMode.ONE_SHOT and self.duration_s is not None:
            raise ValueError("a one-shot shelve takes no duration_s (use mode 'timed')")
        return self


class CommentRequest(_Body):
    """An operator's comment on an alarm, journaled."""

    text: Reason


class ConfirmZoneRequest(_Body):
    """Confirm a suspected zone by hand (the operator saw the leak)."""

    reason: Reason


class CloseIncidentRequest(_Body):
    """Close an incident whose zones are back to normal."""

    reason: Reason


class ConfirmPlanRequest(_Body):
    """Confirm the plan in effect for an incident."""

    reason: Text | None = None


class OverridePlanRequest(_Body):
    """Put another plan of the library in effect until released."""

    plan_id: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Reason


class ReleasePlanRequest(_Body):
    """End the active override; the automatic selection applies again."""

    reason: Reason


class WhatIfRequest(_Body):
    """A hypothetical leak: on a pipeline at a chainage, or at a point (site east/north)."""

    gas: Gas = Gas.METHANE
    rate_kg_per_s: Annotated[
        float, Field(gt=0, le=WHAT_IF_MAX_RATE_KG_PER_S, allow_inf_nan=False)
    ] = Field(description="release rate of the gas [kg s-1]")
    wind_speed_m_per_s: Annotated[
        float, Field(gt=0, le=WHAT_IF_MAX_WIND_SPEED_M_PER_S, allow_inf_nan=False)
    ] = Field(description="wind speed at 10 m [m s-1]")
    wind_from_deg: Annotated[float, Field(ge=-360, le=720, allow_inf_nan=False)] = Field(
        description="direction the wind blows from [deg]"
    )
    stability_class: Literal["A", "B", "C", "D", "E", "F"] = Field(
        description="Pasquill-Gifford stability class"
    )
    pipeline_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    chainage_m: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="chainage on pipeline_id [m]"
    )
    position_m: tuple[Coordinate, Coordinate] | None = Field(
        default=None, description="site east, north [m]"
    )
    sigma_theta_deg: Annotated[float, Field(ge=0, le=180, allow_inf_nan=False)] | None = Field(
        default=None, description="wind direction standard deviation [deg]"
    )
    rate_factor: Annotated[float, Field(ge=1, le=WHAT_IF_MAX_RATE_FACTOR, allow_inf_nan=False)] = (
        Field(default=1.0, description="rate range: rate / factor .. rate x factor [1]")
    )
    severity: Severity = Severity.CONFIRMED
    time_s: Annotated[float, Field(ge=EARLIEST_TIME_S, le=LATEST_TIME_S)] | None = Field(
        default=None, description="when (epoch) [s]; default now (occupancy by time of day)"
    )
    underground_zone_ids: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
