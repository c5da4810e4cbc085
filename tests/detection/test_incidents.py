"""Incidents: opened by a confirmed zone, joined by nearby zones, closed only by a person."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipesentinel.detection.incidents import (
    Evidence,
    Incident,
    IncidentError,
    IncidentStatus,
    IncidentTracker,
)
from pipesentinel.detection.voting import ZoneIndex, ZoneVote, vote
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


def _vote(site: Site, index: ZoneIndex, low_ids: set[str]) -> ZoneVote:
    low = np.array([d.id in low_ids for d in site.gas_detectors])
    none = np.zeros(len(site.gas_detectors), dtype=np.bool_)
    return vote(index, low_active=low, high_active=none, in_fault=none)


def _two_of(site: Site, zone: str) -> set[str]:
    return {d.id for d in site.zones[zone][:2]}


def test_confirmed_zone_opens_one_incident_and_suspected_does_not(site: Site) -> None:
    index = ZoneIndex.for_site(site)
    tracker = IncidentTracker(site, index)
    zone = index.zone_ids[0]
    one = {site.zones[zone][0].id}
    assert tracker.update(100.0, _vote(site, index, one)) == []
    changed = tracker.update(102.0, _vote(site, index, _two_of(site, zone)))
    assert len(changed) == 1
    incident = changed[0]
    assert incident.zones == (zone,)
    assert incident.version == 1
    assert incident.status is IncidentStatus.OPEN
    assert incident.id.startswith(f"INC-{site.id}-")
    # The same vote again changes nothing.
    assert tracker.update(104.0, _vote(site, index, _two_of(site, zone))) == []


def test_far_zones_make_separate_incidents_near_zones_join(site: Site) -> None:
    index = ZoneIndex.for_site(site)
    tracker = IncidentTracker(site, index)
    positions = {
        z: np.array([d.position_m[:2] for d in members]) for z, members in site.zones.items()
    }
    first = index.zone_ids[0]

    def gap(a: str, b: str) -> float:
        return float(
            np.min(np.linalg.norm(positions[a][:, None, :] - positions[b][None, :, :], axis=-1))
        )

    near = min((z for z in index.zone_ids if z != first), key=lambda z: gap(first, z))
    far = max(index.zone_ids, key=lambda z: gap(first, z))
    assert gap(first, near) <= 300.0 < gap(first, far)  # the reference site's layout
    tracker.update(10.0, _vote(site, index, _two_of(site, first)))
    changed = tracker.update(12.0, _vote(site, index, _two_of(site, first) | _two_of(site, near)))
    assert [c.zones for c in changed] == [(first, near)]
    assert changed[0].version == 2
    tracker.update(
        14.0, _vote(site, index, _two_of(site, first) | _two_of(site, near) | _two_of(site, far))
    )
    assert len(tracker.open_incidents()) == 2


def test_close_needs_zones_back_to_normal_and_a_reason(site: Site) -> None:
    index = ZoneIndex.for_site(site)
    tracker = IncidentTracker(site, index)
    zone = index.zone_ids[1]
    (incident,) = tracker.update(5.0, _vote(site, index, _two_of(site, zone)))
    with pytest.raises(IncidentError, match="zones still in alarm"):
        tracker.close(incident.id, user="duty1", reason="repaired", time_s=6.0)
    (quiet,) = tracker.update(60.0, _vote(site, index, set()))
    assert quiet.active_zones == ()
    with pytest.raises(IncidentError, match="user and a reason"):
        tracker.close(incident.id, user="duty1", reason=" ", time_s=61.0)
    closed = tracker.close(incident.id, user="duty1", reason="valve closed, repaired", time_s=61.0)
    assert closed.status is IncidentStatus.CLOSED
    assert closed.closed_by == "duty1"
    with pytest.raises(IncidentError, match="is closed"):
        tracker.close(incident.id, user="duty1", reason="again", time_s=62.0)
    # A new confirmation in the same zone opens a new incident.
    (again,) = tracker.update(70.0, _vote(site, index, _two_of(site, zone)))
    assert again.id != incident.id


def test_evidence_attaches_and_json_round_trips(site: Site) -> None:
    index = ZoneIndex.for_site(site)
    tracker = IncidentTracker(site, index)
    zone = index.zone_ids[2]
    tracker.update(5.0, _vote(site, index, _two_of(site, zone)))
    detector = site.zones[zone][0].id
    evidence = Evidence(5.0, detector, "gas.low", f"{detector} methane 22 %LEL", 0.22, zone)
    (incident,) = tracker.update(6.0, _vote(site, index, _two_of(site, zone)), evidence=[evidence])
    assert incident.evidence == (evidence,)
    text = json.dumps(incident.to_json())
    assert Incident.from_json(json.loads(text)) == incident
    restored = IncidentTracker(site, index)
    restored.restore([incident])
    assert restored.incidents[incident.id] == incident
    others = [z for z in index.zone_ids if z != zone]
    changed = restored.update(
        9.0, _vote(site, index, {d for z in others for d in _two_of(site, z)} | _two_of(site, zone))
    )
    new_ids = sorted(c.id for c in changed if c.id != incident.id)
    assert new_ids
    assert new_ids[0].endswith("-0002")  # numbering continues after the restored incident


def test_standing_evidence_joins_when_the_zone_opens_or_joins(site: Site) -> None:
    index = ZoneIndex.for_site(site)
    tracker = IncidentTracker(site, index)
    zone = index.zone_ids[0]
    near = index.zone_ids[4]  # P2-S1, 85 m from P1-S1 in the reference site: joins
    first, second = _two_of(site, zone)
    earlier = Evidence(3.0, "CAM1", "camera.laser_gas", "CAM1 laser: laser gas", 0.4, zone)
    now = Evidence(10.0, second, "gas.low", f"{second} methane 21 %LEL", 0.21, zone)
    (incident,) = tracker.update(
        10.0,
        _vote(site, index, {first, second}),
        evidence=[now],
        standing={zone: [earlier, now]},
    )
    assert incident.evidence == (earlier, now)  # the earlier one first, the new one once
    old = Evidence(4.0, site.zones[near][0].id, "gas.low", "joins", 0.2, near)
    (joined,) = tracker.update(
        12.0,
        _vote(site, index, {first, second} | _two_of(site, near)),
        standing={zone: [earlier, now], near: [old]},
    )
    assert joined.zones == (zone, near)
    assert joined.evidence == (earlier, now, old)
    # Standing evidence of a zone already in the incident is not attached again.
    assert (
        tracker.update(
            14.0,
            _vote(site, index, {first, second} | _two_of(site, near)),
            standing={zone: [earlier, now], near: [old]},
        )
        == []
    )
