"""Leak incidents: opened by a confirmed zone vote, grown by neighbouring zones, closed by people.

An incident is the unit that later drives plan selection and evacuation (issue 4). It opens when a
zone's vote is *confirmed* (:mod:`pipesentinel.detection.voting`); a zone confirmed later joins an
open incident when it is within :data:`INCIDENT_MERGE_DISTANCE_M` of one of the incident's zones
(one leak whose cloud reaches two zones is one incident, two leaks far apart are two). It keeps the
evidence it was confirmed on (which detector, which camera, what value), every vote reason, the
latest localisation, and a timeline. It never closes by itself: a duty officer closes it, and only
once none of its zones is still suspected.

Pure: no I/O. The engine persists :meth:`Incident.to_json` versions and restores them with
:meth:`IncidentTracker.restore`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.detection.voting import ZoneIndex, ZoneVote
from pipesentinel.site import Site

FloatArray = NDArray[np.float64]

INCIDENT_MERGE_DISTANCE_M: Final = 300.0
"""Zones whose detectors come this close join the same open incident [m]. A design choice: about
the detector spacing along the lines of the reference site, and far below the ~1 km over which a
1 kg/s cloud stays above 10 %LEL in neutral air (so two zones alarming together this close are
almost surely one cloud)."""

MAX_EVIDENCE_PER_INCIDENT: Final = 200
"""Evidence items kept per incident (the first ones and the latest ones are what matter)."""

MAX_TIMELINE_ENTRIES: Final = 500
"""Timeline entries kept per incident."""


class IncidentStatus(StrEnum):
    """Whether an incident is still being handled."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation an incident rests on."""

    time_s: float
    source_id: str  # device id
    kind: str  # e.g. "gas.low", "gas.high", "gas.rate_of_rise", "camera.cold_plume", "laser.gas"
    detail: str  # for people: "GD07 methane 23 %LEL (IEC 60079-20-1)"
    value: float | None = None
    zone: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "time_s": self.time_s,
            "source_id": self.source_id,
            "kind": self.kind,
            "detail": self.detail,
            "value": self.value,
            "zone": self.zone,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        """Inverse of :meth:`to_json`."""
        return cls(
            time_s=float(data["time_s"]),
            source_id=str(data["source_id"]),
            kind=str(data["kind"]),
            detail=str(data["detail"]),
            value=None if data.get("value") is None else float(data["value"]),
            zone=None if data.get("zone") is None else str(data["zone"]),
        )


@dataclass(frozen=True)
class Incident:
    """A confirmed leak being handled."""

    id: str
    site_id: str
    opened_time_s: float
    updated_time_s: float
    version: int
    status: IncidentStatus
    zones: tuple[str, ...]
    gases: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    vote_reasons: Mapping[str, str]  # latest reason per zone
    localisation: Mapping[str, Any] | None = None
    timeline: tuple[tuple[float, str], ...] = ()
    closed_time_s: float | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    active_zones: tuple[str, ...] = field(default=())  # zones still suspected or confirmed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping (the MQTT payload, the journal row, the API body)."""
        return {
            "incident_id": self.id,
            "site_id": self.site_id,
            "opened_time_s": self.opened_time_s,
            "updated_time_s": self.updated_time_s,
            "version": self.version,
            "status": self.status.value,
            "zones": list(self.zones),
            "active_zones": list(self.active_zones),
            "gases": list(self.gases),
            "evidence": [item.to_json() for item in self.evidence],
            "vote_reasons": dict(self.vote_reasons),
            "localisation": None if self.localisation is None else dict(self.localisation),
            "timeline": [{"time_s": time_s, "text": text} for time_s, text in self.timeline],
            "closed_time_s": self.closed_time_s,
            "closed_by": self.closed_by,
            "close_reason": self.close_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Incident:
        """Inverse of :meth:`to_json`."""
        return cls(
            id=str(data["incident_id"]),
            site_id=str(data["site_id"]),
            opened_time_s=float(data["opened_time_s"]),
            updated_time_s=float(data["updated_time_s"]),
            version=int(data["version"]),
            status=IncidentStatus(data["status"]),
            zones=tuple(data["zones"]),
            gases=tuple(data["gases"]),
            evidence=tuple(Evidence.from_json(item) for item in data["evidence"]),
            vote_reasons=dict(data["vote_reasons"]),
            localisation=data.get("localisation"),
            timeline=tuple((float(item["time_s"]), str(item["text"])) for item in data["timeline"]),
            closed_time_s=data.get("closed_time_s"),
            closed_by=data.get("closed_by"),
            close_reason=data.get("close_reason"),
            active_zones=tuple(data.get("active_zones", ())),
        )


class IncidentError(ValueError):
    """An operator action on an incident that is not allowed in its state."""


def _bounded(evidence: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """The first and the latest items, at most :data:`MAX_EVIDENCE_PER_INCIDENT` in all."""
    if len(evidence) <= MAX_EVIDENCE_PER_INCIDENT:
        return evidence
    half = MAX_EVIDENCE_PER_INCIDENT // 2
    return (*evidence[:half], *evidence[-half:])


def _zone_distances_m(site: Site, index: ZoneIndex) -> FloatArray:
    """Smallest horizontal distance between detectors of each pair of zones [m]."""
    positions = np.array([detector.position_m[:2] for detector in site.gas_detectors])
    between = np.linalg.norm(positions[:, np.newaxis, :] - positions[np.newaxis, :, :], axis=-1)
    n = index.n_zones
    distances = np.full((n, n), np.inf)
    zone = index.zone_of_detector
    # Reduce detector pairs to zone pairs: minimum over members (zones are few, detectors ~30).
    np.minimum.at(distances, (zone[:, np.newaxis], zone[np.newaxis, :]), between)
    return distances


class IncidentTracker:
    """Open incidents of one site, fed with zone votes.

    Parameters
    ----------
    site
        The site.
    index
        Its voting zones.
    merge_distance_m
        Zones this close join the same open incident [m].
    """

    def __init__(
        self,
        site: Site,
        index: ZoneIndex,
        *,
        merge_distance_m: float = INCIDENT_MERGE_DISTANCE_M,
    ) -> None:
        self._site_id = site.id
        self._index = index
        self._near = _zone_distances_m(site, index) <= merge_distance_m
        self._incidents: dict[str, Incident] = {}
        self._counter = 0

    @property
    def incidents(self) -> Mapping[str, Incident]:
        """Every incident known, open and closed, by id."""
        return self._incidents

    def open_incidents(self) -> list[Incident]:
        """Incidents still open, oldest first."""
        return [item for item in self._incidents.values() if item.status is IncidentStatus.OPEN]

    def restore(self, incidents: Sequence[Incident]) -> None:
        """Reload the latest version of each incident (after a restart)."""
        for incident in incidents:
            current = self._incidents.get(incident.id)
            if current is None or incident.version > current.version:
                self._incidents[incident.id] = incident
        self._counter = max(
            (int(item.id.rsplit("-", 1)[-1]) for item in self._incidents.values()), default=0
        )

    def _new_id(self, time_s: float) -> str:
        self._counter += 1
        stamp = np.datetime64(round(time_s), "s").astype(str).replace("-", "").replace(":", "")
        return f"INC-{self._site_id}-{stamp}-{self._counter:04d}"

    def _incident_for(self, zone: int) -> Incident | None:
        for incident in self.open_incidents():
            members = [self._index.zone_ids.index(z) for z in incident.zones]
            if any(self._near[zone, member] for member in members):
                return incident
        return None

    def update(
        self,
        time_s: float,
        result: ZoneVote,
        *,
        evidence: Sequence[Evidence] = (),
        gases_by_zone: Mapping[str, Sequence[str]] | None = None,
        standing: Mapping[str, Sequence[Evidence]] | None = None,
    ) -> list[Incident]:
        """Apply a zone vote; returns the incidents opened or changed (new versions).

        Parameters
        ----------
        time_s
            Time of the vote [s].
        result
            The current vote of every zone.
        evidence
            New observations (they are attached to the incident of their zone).
        gases_by_zone
            Gases seen at LOW or above, per zone.
        standing
            Per zone, the evidence of the conditions still active there (a detector at LOW or
            HIGH, a camera seeing gas), whenever it first appeared: attached when the zone opens
            an incident or joins one, so that an incident confirmed after its first evidence
            still rests on it.
        """
        gases_by_zone = gases_by_zone or {}
        standing = standing or {}
        fresh = set(evidence)
        versions_before = {key: item.version for key, item in self._incidents.items()}
        changed: dict[str, Incident] = {}

        for zone in np.flatnonzero(result.confirmed):
            zone_id = self._index.zone_ids[int(zone)]
            incident = self._incident_for(int(zone))
            reason = result.reason(int(zone))
            if incident is None:
                incident = Incident(
                    id=self._new_id(time_s),
                    site_id=self._site_id,
                    opened_time_s=time_s,
                    updated_time_s=time_s,
                    version=1,
                    status=IncidentStatus.OPEN,
                    zones=(zone_id,),
                    gases=tuple(gases_by_zone.get(zone_id, ())),
                    evidence=tuple(e for e in standing.get(zone_id, ()) if e not in fresh),
                    vote_reasons={zone_id: reason},
                    timeline=((time_s, f"opened: {reason}"),),
                    active_zones=(zone_id,),
                )
                self._incidents[incident.id] = incident
                changed[incident.id] = incident
                continue
            if zone_id not in incident.zones:
                held = incident.evidence
                incident = replace(
                    incident,
                    zones=(*incident.zones, zone_id),
                    timeline=(*incident.timeline, (time_s, f"zone joined: {reason}")),
                    evidence=_bounded(
                        (
                            *held,
                            *(
                                e
                                for e in standing.get(zone_id, ())
                                if e not in fresh and e not in held
                            ),
                        )
                    ),
                )
                changed[incident.id] = incident
            self._incidents[incident.id] = incident
        # Vote reasons, gases and the active zones of every open incident follow the vote.
        position = {zone_id: i for i, zone_id in enumerate(self._index.zone_ids)}
        for incident in self.open_incidents():
            active = tuple(z for z in incident.zones if result.suspected[position[z]])
            reasons = {z: result.reason(position[z]) for z in incident.zones}
            gases = tuple(
                dict.fromkeys(
                    (
                        *incident.gases,
                        *(g for z in incident.zones for g in gases_by_zone.get(z, ())),
                    )
                )
            )
            updated = incident
            if active != incident.active_zones:
                text = (
                    f"zones still in alarm: {', '.join(active)}"
                    if active
                    else "all zones back below LOW: the incident can be closed"
                )
                updated = replace(
                    updated, active_zones=active, timeline=(*updated.timeline, (time_s, text))
                )
            if reasons != dict(incident.vote_reasons) or gases != incident.gases:
                updated = replace(updated, vote_reasons=reasons, gases=gases)
            if updated is not incident:
                changed[incident.id] = updated
                self._incidents[incident.id] = updated
        for item in evidence:
            target = next(
                (i for i in self.open_incidents() if item.zone in i.zones),
                None,
            )
            if target is None:
                continue
            target = replace(target, evidence=_bounded((*target.evidence, item)))
            changed[target.id] = target
            self._incidents[target.id] = target
        stamped: list[Incident] = []
        for incident in changed.values():
            before = versions_before.get(incident.id)
            stamped_incident = replace(
                incident,
                updated_time_s=time_s,
                version=1 if before is None else before + 1,
                timeline=incident.timeline[-MAX_TIMELINE_ENTRIES:],
            )
            self._incidents[incident.id] = stamped_incident
            stamped.append(stamped_incident)
        return stamped

    def confirm(
        self,
        zone: str,
        evidence: Evidence,
        *,
        vote_reason: str,
        standing: Sequence[Evidence] = (),
    ) -> Incident:
        """A duty officer confirms a zone by hand: open an incident for it, or join one.

        The zone joins the open incident it already belongs to, else one within the merge
        distance, else a new incident opens. ``evidence`` (kind ``"operator.confirm"``) and the
        zone's ``standing`` evidence are attached; returns the new version.
        """
        if zone not in self._index.zone_ids:
            raise IncidentError(f"no voting zone {zone!r}")
        time_s = evidence.time_s
        text = f"confirmed by {evidence.source_id}: {evidence.detail}"
        incident = next((i for i in self.open_incidents() if zone in i.zones), None)
        if incident is None:
            incident = self._incident_for(self._index.zone_ids.index(zone))
        extra = [e for e in standing if e != evidence]
        if incident is None:
            incident = Incident(
                id=self._new_id(time_s),
                site_id=self._site_id,
                opened_time_s=time_s,
                updated_time_s=time_s,
                version=1,
                status=IncidentStatus.OPEN,
                zones=(zone,),
                gases=(),
                evidence=_bounded((*extra, evidence)),
                vote_reasons={zone: vote_reason},
                timeline=((time_s, f"opened: {text}"),),
                active_zones=(zone,),
            )
        else:
            joined = zone not in incident.zones
            held = incident.evidence
            incident = replace(
                incident,
                zones=incident.zones if not joined else (*incident.zones, zone),
                active_zones=(
                    incident.active_zones
                    if zone in incident.active_zones
                    else (*incident.active_zones, zone)
                ),
                evidence=_bounded((*held, *(e for e in extra if e not in held), evidence)),
                vote_reasons={**incident.vote_reasons, zone: vote_reason},
                updated_time_s=time_s,
                version=incident.version + 1,
                timeline=(
                    *incident.timeline,
                    (time_s, f"zone {zone} joined: {text}" if joined else text),
                )[-MAX_TIMELINE_ENTRIES:],
            )
        self._incidents[incident.id] = incident
        return incident

    def attach_localisation(
        self, incident_id: str, localisation: Mapping[str, Any], time_s: float, summary: str
    ) -> Incident:
        """Record the latest localisation of an open incident; returns its new version."""
        incident = self._open(incident_id)
        updated = replace(
            incident,
            localisation=dict(localisation),
            updated_time_s=time_s,
            version=incident.version + 1,
            timeline=(*incident.timeline, (time_s, f"localised: {summary}"))[
                -MAX_TIMELINE_ENTRIES:
            ],
        )
        self._incidents[incident_id] = updated
        return updated

    def close(self, incident_id: str, *, user: str, reason: str, time_s: float) -> Incident:
        """A duty officer closes an incident whose zones are all back to normal."""
        incident = self._open(incident_id)
        if not user.strip() or not reason.strip():
            raise IncidentError(f"closing incident {incident_id} needs a user and a reason")
        if incident.active_zones:
            raise IncidentError(
                f"incident {incident_id} cannot be closed: zones still in alarm: "
                + ", ".join(incident.active_zones)
            )
        closed = replace(
            incident,
            status=IncidentStatus.CLOSED,
            closed_time_s=time_s,
            closed_by=user,
            close_reason=reason,
            updated_time_s=time_s,
            version=incident.version + 1,
            timeline=(*incident.timeline, (time_s, f"closed by {user}: {reason}")),
        )
        self._incidents[incident_id] = closed
        return closed

    def _open(self, incident_id: str) -> Incident:
        incident = self._incidents.get(incident_id)
        if incident is None:
            raise IncidentError(f"no incident {incident_id!r}")
        if incident.status is not IncidentStatus.OPEN:
            raise IncidentError(f"incident {incident_id} is {incident.status.value}")
        return incident
