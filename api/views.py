"""What the API answers, computed from the stores and the services: plain functions, no HTTP.

Each function takes what it reads (a store, a site, snapshots) as keyword arguments and returns
JSON-ready dicts, or raises an :class:`~pipesentinel.api.errors.ApiError` naming what was wrong.
Values are SI with the unit in the name, as everywhere inside; readings also carry a ``display``
value in the device unit (ppm, ppm m, deg, degC, hPa) converted once, here, through
:data:`DISPLAY_UNITS` (``pipesentinel.units``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np

from pipesentinel.api.errors import BadRequestError, ConflictError, NotFoundError
from pipesentinel.detection.alarms import (
    PRIORITY_RANK,
    UNACKNOWLEDGED_STATES,
    AlarmKind,
    AlarmManager,
    AlarmSnapshot,
    AlarmState,
    MemoryJournal,
    Priority,
)
from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.incidents import Incident, IncidentStatus
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.ingest.storage.base import (
    GAS_FIELDS,
    LASER_FIELDS,
    MAX_TIME_S,
    MIN_TIME_S,
    TIME_RESOLUTION_S,
    WIND_FIELDS,
    Aggregate,
    DeviceState,
    TelemetryStore,
)
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.ingest.storage.plan_decisions import (
    DecisionOutcome,
    PlanDecisionError,
    SqlitePlanDecisionLog,
)
from pipesentinel.ingest.storage.responses import StoredResponse
from pipesentinel.plans.library import PlanLibrary, Severity
from pipesentinel.plans.response import LeakEstimate, ResponseContext, respond
from pipesentinel.site import Device, DeviceKind, Gas, Site
from pipesentinel.units import DEGREE, DEGREE_CELSIUS, HECTOPASCAL, PPM, PPM_M, Conversion

__all__ = [
    "DISPLAY_UNITS",
    "FIELDS_BY_DEVICE_KIND",
    "AlarmReader",
    "alarm_detail",
    "alarm_list",
    "device_list",
    "device_view",
    "history",
    "incident_view",
    "latest_readings",
    "paginate",
    "plan_decision",
    "site_summary",
    "what_if",
]

# Device units shown next to the SI values (the units the devices and people use, docs/mqtt.md).
DISPLAY_UNITS: Final[dict[str, Conversion]] = {
    "methane_mole_fraction": PPM,
    "propane_mole_fraction": PPM,
    "path_integral_mole_fraction_m": PPM_M,
    "direction_from_rad": DEGREE,
    "sigma_theta_rad": DEGREE,
    "temperature_k": DEGREE_CELSIUS,
    "pressure_pa": HECTOPASCAL,
}
FIELDS_BY_DEVICE_KIND: Final[dict[DeviceKind, tuple[str, ...]]] = {
    DeviceKind.GAS: GAS_FIELDS,
    DeviceKind.WIND: WIND_FIELDS,
    DeviceKind.CAMERA: LASER_FIELDS,  # a camera's numeric readings are its laser's
}
EVENTS_IN_DETAIL: Final = 50  # journal entries shown with one alarm (design choice)


# --- paging ------------------------------------------------------------------------------------


def paginate(items: Sequence[Any], *, limit: int, offset: int) -> dict[str, Any]:
    """``{"total", "limit", "offset", "items"}`` for one page of ``items``."""
    return {
        "total": len(items),
        "limit": limit,
        "offset": offset,
        "items": list(items[offset : offset + limit]),
    }


# --- site and devices --------------------------------------------------------------------------


def site_summary(site: Site) -> dict[str, Any]:
    """The site's identity, origin and what it holds."""
    return {
        "id": site.id,
        "name": site.name,
        "time_zone": site.time_zone,
        "origin": {
            "latitude_deg": site.origin.latitude_deg,
            "longitude_deg": site.origin.longitude_deg,
            "altitude_m": site.origin.altitude_m,
        },
        "extent_m": np.asarray(site.extent_m, dtype=float).tolist(),
        "pipelines": [
            {
                "id": pipeline.id,
                "name": pipeline.name,
                "product": pipeline.product.value,
                "length_m": pipeline.length_m,
                "diameter_m": pipeline.diameter_m,
                "depth_of_cover_m": pipeline.depth_of_cover_m,
                "operating_pressure_pa": pipeline.operating_pressure_pa,
                "segments": [segment.id for segment in pipeline.segments],
                "valves": [valve.id for valve in pipeline.valves],
            }
            for pipeline in site.pipelines
        ],
        "counts": {
            "gas_detectors": len(site.gas_detectors),
            "wind_stations": len(site.wind_stations),
            "cameras": len(site.cameras),
            "buildings": len(site.buildings),
            "assembly_points": len(site.assembly_points),
        },
    }


def _device_json(device: Device) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": device.id,
        "kind": device.kind.value,
        "position_m": np.asarray(device.position_m, dtype=float).tolist(),
    }
    if device.kind is DeviceKind.GAS:
        result.update(
            placement=device.placement.value,  # type: ignore[union-attr]  # a GasDetector
            zone=device.zone,  # type: ignore[union-attr]
            gases=[gas.value for gas in device.gases],  # type: ignore[union-attr]
            pipeline_id=device.pipeline_id,  # type: ignore[union-attr]
            chainage_m=device.chainage_m,  # type: ignore[union-attr]
        )
    return result


def _health(
    device_id: str, state: DeviceState | None, alarms: Sequence[AlarmSnapshot]
) -> dict[str, Any]:
    faults = sorted(
        snapshot.alarm_id
        for snapshot in alarms
        if snapshot.definition.device_id == device_id
        and snapshot.definition.kind is AlarmKind.FAULT
        and snapshot.active
    )
    return {
        "online": None if state is None else state.online,
        "online_changed_time_s": None if state is None else state.online_changed_time_s,
        "last_reading_time_s": None if state is None else state.last_reading_time_s,
        "status": None if state is None or state.status is None else state.status.value,
        "status_time_s": None if state is None else state.status_time_s,
        "fault_code": None if state is None else state.fault_code,
        "active_fault_alarms": faults,
    }


def device_list(
    *, site: Site, states: dict[str, DeviceState], alarms: Sequence[AlarmSnapshot]
) -> list[dict[str, Any]]:
    """Every device of the site with its health (store state and active fault alarms)."""
    return [
        {**_device_json(device), "health": _health(device.id, states.get(device.id), alarms)}
        for device in site.devices
    ]


def _device(site: Site, device_id: str) -> Device:
    device = site.device(device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id!r} in site {site.id!r}")
    return device


def device_view(
    *,
    site: Site,
    device_id: str,
    states: dict[str, DeviceState],
    alarms: Sequence[AlarmSnapshot],
) -> dict[str, Any]:
    """One device with its health; :class:`NotFoundError` for an unknown id."""
    device = _device(site, device_id)
    return {**_device_json(device), "health": _health(device.id, states.get(device.id), alarms)}


# --- readings ----------------------------------------------------------------------------------


def _display(field: str, value: float) -> dict[str, Any] | None:
    conversion = DISPLAY_UNITS.get(field)
    if conversion is None:
        return None
    return {"value": conversion.from_si(value), "unit": conversion.unit}


def latest_readings(
    *,
    store: TelemetryStore,
    site: Site,
    states: dict[str, DeviceState],
    lookback_s: float,
    device_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The newest value of each numeric field of each device.

    Values are looked for within ``lookback_s`` [s] of the device's newest reading; devices
    without readings are listed with no values.
    """
    wanted = [device.id for device in site.devices] if device_ids is None else list(device_ids)
    result: list[dict[str, Any]] = []
    for device_id in wanted:
        device = _device(site, device_id)
        state = states.get(device_id)
        newest_s = None if state is None else state.last_reading_time_s
        values: dict[str, Any] = {}
        if newest_s is not None:
            for field in FIELDS_BY_DEVICE_KIND[device.kind]:
                series = store.query(
                    site_id=site.id,
                    device_id=device_id,
                    field=field,
                    start_s=newest_s - lookback_s,
                    end_s=newest_s + TIME_RESOLUTION_S,
                )
                if series.value.size:
                    value = float(series.value[-1])
                    values[field] = {
                        "value": value,
                        "time_s": float(series.time_s[-1]),
                        "display": _display(field, value),
                    }
        result.append(
            {
                "device_id": device_id,
                "kind": device.kind.value,
                "last_reading_time_s": newest_s,
                "values": values,
            }
        )
    return result


def history(
    *,
    store: TelemetryStore,
    site: Site,
    device_id: str,
    field: str,
    start_s: float,
    end_s: float,
    max_points: int,
    max_range_s: float,
) -> dict[str, Any]:
    """``field`` of ``device_id`` in ``[start_s, end_s)`` [s] in at most ``max_points`` buckets.

    The range is cut into equal buckets of a whole number of milliseconds, anchored at
    ``start_s`` (``docs/storage.md``); each bucket holding readings gives its start time, mean,
    min, max and count; empty buckets are left out.
    """
    device = _device(site, device_id)
    allowed = FIELDS_BY_DEVICE_KIND[device.kind]
    if field not in allowed:
        raise BadRequestError(
            f"device {device_id!r} ({device.kind.value}) has no field {field!r}; "
            f"its fields are {', '.join(allowed)}"
        )
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if not (math.isfinite(value) and MIN_TIME_S <= value <= MAX_TIME_S):
            raise BadRequestError(f"{name} must be a time between {MIN_TIME_S} and {MAX_TIME_S} s")
    if end_s <= start_s:
        raise BadRequestError(f"bad time range: end_s ({end_s}) is not after start_s ({start_s})")
    if end_s - start_s > max_range_s:
        raise BadRequestError(
            f"bad time range: {end_s - start_s:.0f} s is longer than the limit of "
            f"{max_range_s:.0f} s"
        )
    if max_points < 1:
        raise BadRequestError(f"max_points must be at least 1, got {max_points}")
    range_ms = max(round(end_s * 1000) - round(start_s * 1000), 1)
    every_ms = max(math.ceil(range_ms / max_points), 1)
    every_s = every_ms * TIME_RESOLUTION_S
    series = {
        aggregate: store.query(
            site_id=site.id,
            device_id=device_id,
            field=field,
            start_s=start_s,
            end_s=end_s,
            every_s=every_s,
            aggregate=aggregate,
        )
        for aggregate in (Aggregate.MEAN, Aggregate.MIN, Aggregate.MAX)
    }
    mean = series[Aggregate.MEAN]
    conversion = DISPLAY_UNITS.get(field)
    return {
        "device_id": device_id,
        "field": field,
        "start_s": start_s,
        "end_s": end_s,
        "bucket_s": every_s,
        "display_unit": None if conversion is None else conversion.unit,
        "points": [
            {
                "time_s": float(time_s),
                "mean": float(value),
                "min": float(low),
                "max": float(high),
                "count": int(count),
            }
            for time_s, value, low, high, count in zip(
                mean.time_s,
                mean.value,
                series[Aggregate.MIN].value,
                series[Aggregate.MAX].value,
                mean.count,
                strict=True,
            )
        ],
    }


# --- alarms ------------------------------------------------------------------------------------


class AlarmReader:
    """Alarm states rebuilt from the journal (the API without a live detection service).

    The journal is replayed into a fresh :class:`AlarmManager` over an in-memory copy, so nothing
    is written; the result is kept until the journal grows.
    """

    def __init__(self, journal: SqliteAlarmJournal) -> None:
        self._journal = journal
        self._lock = threading.Lock()
        self._sequence = -1
        self._snapshots: tuple[AlarmSnapshot, ...] = ()

    def snapshots(self) -> tuple[AlarmSnapshot, ...]:
        """Every alarm's state as of the journal's last entry."""
        with self._lock:
            last = self._journal.last_sequence()
            if last != self._sequence:
                manager = AlarmManager(MemoryJournal(self._journal.events()))
                self._snapshots = manager.alarms()
                self._sequence = last
            return self._snapshots


def _alarm_order(snapshot: AlarmSnapshot) -> tuple[int, int, float, str]:
    unacknowledged = snapshot.state in UNACKNOWLEDGED_STATES
    changed = snapshot.last_change_s if snapshot.last_change_s is not None else -math.inf
    return (
        -PRIORITY_RANK[snapshot.definition.priority],
        0 if unacknowledged else 1,
        -changed,
        snapshot.alarm_id,
    )


def alarm_list(
    snapshots: Iterable[AlarmSnapshot],
    *,
    priorities: Sequence[Priority] = (),
    states: Sequence[AlarmState] = (),
    active: bool | None = None,
) -> list[dict[str, Any]]:
    """Alarms filtered by priority, state and activity.

    Highest priority first, then the unacknowledged, then the most recently changed.
    """
    chosen = [
        snapshot
        for snapshot in snapshots
        if (not priorities or snapshot.definition.priority in priorities)
        and (not states or snapshot.state in states)
        and (active is None or snapshot.active == active)
    ]
    chosen.sort(key=_alarm_order)
    return [{"alarm_id": snapshot.alarm_id, **snapshot.as_dict()} for snapshot in chosen]


def alarm_detail(
    snapshots: Iterable[AlarmSnapshot], *, alarm_id: str, journal: SqliteAlarmJournal
) -> dict[str, Any]:
    """One alarm with its latest journal entries; :class:`NotFoundError` for an unknown id."""
    for snapshot in snapshots:
        if snapshot.alarm_id == alarm_id:
            events = journal.read(alarm_id=alarm_id)[-EVENTS_IN_DETAIL:]
            return {
                "alarm_id": alarm_id,
                **snapshot.as_dict(),
                "events": [
                    {
                        "sequence": event.sequence,
                        "time_s": event.time_s,
                        "event": event.event.value,
                        "from_state": None if event.from_state is None else event.from_state.value,
                        "to_state": None if event.to_state is None else event.to_state.value,
                        "user": event.user,
                        "reason": event.reason,
                        "detail": event.detail,
                    }
                    for event in events
                ],
            }
    raise NotFoundError(f"no alarm {alarm_id!r}")


def require_alarm(snapshots: Iterable[AlarmSnapshot], alarm_id: str) -> AlarmSnapshot:
    """The snapshot of ``alarm_id``; :class:`NotFoundError` naming it otherwise."""
    for snapshot in snapshots:
        if snapshot.alarm_id == alarm_id:
            return snapshot
    raise NotFoundError(f"no alarm {alarm_id!r}")


# --- incidents and plans -----------------------------------------------------------------------


def find_incident(incidents: Iterable[Incident], incident_id: str) -> Incident:
    """The incident with this id; :class:`NotFoundError` naming it otherwise."""
    for incident in incidents:
        if incident.id == incident_id:
            return incident
    raise NotFoundError(f"no incident {incident_id!r}")


def incident_list(
    incidents: Iterable[Incident], *, status: IncidentStatus | None
) -> list[dict[str, Any]]:
    """Latest versions, newest update first, optionally of one status."""
    chosen = [i for i in incidents if status is None or i.status is status]
    chosen.sort(key=lambda incident: (-incident.updated_time_s, incident.id))
    return [incident.to_json() for incident in chosen]


def incident_view(
    incident: Incident,
    *,
    response: StoredResponse | None,
    decisions: SqlitePlanDecisionLog | None,
) -> dict[str, Any]:
    """The incident with its localisation and its latest response.

    The response: plan and checklist, valves (isolation), people, zones as GeoJSON, and the plan
    in effect (officers' decisions).
    """
    current = None if decisions is None else decisions.current(incident.id)
    body = None if response is None else response.body
    return {
        "incident": incident.to_json(),
        "localisation": None if incident.localisation is None else dict(incident.localisation),
        "response": None
        if response is None or body is None
        else {
            "incident_version": response.incident_version,
            "time_s": response.time_s,
            "severity": body.get("severity"),
            "leak": body.get("leak"),
            "plan": body.get("plan"),
            "valves": body.get("isolation"),
            "people": body.get("people"),
            "zones": body.get("zones"),
            "cap_identifier": response.cap_identifier,
        },
        "zones_geojson": None if response is None else response.geojson,
        "plan_in_effect": None if current is None else current.to_json_dict(),
    }


def plan_list(library: PlanLibrary) -> list[dict[str, Any]]:
    """Every plan of the library (as in its file, validated)."""
    return [plan.to_json_dict() for plan in library.plans]


def plan_view(library: PlanLibrary, plan_id: str) -> dict[str, Any]:
    """One plan; :class:`NotFoundError` naming it otherwise."""
    try:
        return library.plan(plan_id).to_json_dict()
    except KeyError:
        raise NotFoundError(
            f"no plan {plan_id!r} in the library of site {library.site_id!r}"
        ) from None


def plan_decision(
    *,
    action: str,
    decisions: SqlitePlanDecisionLog,
    library: PlanLibrary,
    incident_id: str,
    actor: str,
    reason: str | None,
    plan_id: str | None,
    now_s: float,
) -> DecisionOutcome:
    """Journal an officer's ``confirm``, ``override`` or ``release`` of an incident's plan.

    Raises :class:`ConflictError` when the decision is not allowed now (nothing in effect to
    confirm, no override to release), :class:`BadRequestError` for an unknown plan or a missing
    reason.
    """
    try:
        if action == "confirm":
            current = decisions.current(incident_id)
            if current is None or current.plan_id is None or current.plan_version is None:
                raise ConflictError(f"incident {incident_id!r} has no plan in effect to confirm")
            return decisions.confirm(
                incident_id=incident_id,
                plan_id=current.plan_id,
                plan_version=current.plan_version,
                actor=actor,
                time_s=now_s,
                reason=reason,
            )
        if not reason or not reason.strip():
            raise BadRequestError(f"{action}: a reason is required")
        if action == "override":
            if plan_id is None:
                raise BadRequestError("override: plan_id is required")
            try:
                chosen = library.plan(plan_id)
            except KeyError:
                raise BadRequestError(
                    f"override: no plan {plan_id!r} in the library of site {library.site_id!r}"
                ) from None
            return decisions.override(
                incident_id=incident_id,
                plan_id=chosen.id,
                plan_version=chosen.version,
                actor=actor,
                reason=reason,
                time_s=now_s,
            )
        if action == "release":
            return decisions.release(
                incident_id=incident_id, actor=actor, reason=reason, time_s=now_s
            )
    except PlanDecisionError as error:
        raise ConflictError(str(error)) from error
    raise BadRequestError(f"unknown plan decision {action!r}; choose confirm, override or release")


# --- what-if -----------------------------------------------------------------------------------


def what_if(
    context: ResponseContext,
    *,
    gas: Gas,
    rate_kg_per_s: float,
    wind_speed_m_per_s: float,
    wind_from_deg: float,
    stability_class: StabilityClass,
    severity: Severity,
    time_s: float,
    pipeline_id: str | None = None,
    chainage_m: float | None = None,
    position_m: tuple[float, float] | None = None,
    sigma_theta_deg: float | None = None,
    rate_factor: float = 1.0,
    lel_basis: LelBasis,
    underground_zone_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The response to a hypothetical leak: zones, plan, valves, people; nothing is stored.

    Raises :class:`BadRequestError` naming the input that does not fit the site (an unknown
    pipeline, a chainage off the line, a zone that is not underground).
    """
    if (pipeline_id is None) == (position_m is None):
        raise BadRequestError(
            "a what-if needs pipeline_id with chainage_m, or position_m (not both)"
        )
    unknown = sorted(set(underground_zone_ids) - context.underground_zones)
    if unknown:
        raise BadRequestError(
            f"underground_zone_ids: {', '.join(unknown)} are not underground zones of the site"
        )
    try:
        estimate = LeakEstimate.what_if(
            context.site,
            gas=gas,
            rate_kg_per_s=rate_kg_per_s,
            wind_speed_m_per_s=wind_speed_m_per_s,
            wind_from_deg=wind_from_deg,
            stability_class=stability_class,
            lel_basis=lel_basis,
            pipeline_id=pipeline_id,
            chainage_m=chainage_m,
            position_m=position_m,
            sigma_theta_deg=sigma_theta_deg,
            rate_factor=rate_factor,
        )
    except (ValueError, KeyError) as error:
        raise BadRequestError(f"what-if: {error.args[0] if error.args else error}") from error
    try:
        response = respond(
            context,
            incident_id="WHATIF",
            incident_version=1,
            time_s=time_s,
            severity=severity,
            estimate=estimate,
            underground_zone_ids=tuple(sorted(set(underground_zone_ids))),
        )
    except ValueError as error:  # the zone models refuse inputs outside their validity
        raise BadRequestError(f"what-if: {error}") from error
    return {**response.to_json_dict(), "zones_geojson": response.geojson}
