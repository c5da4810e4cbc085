"""The detection engine end to end on simulated device streams (no broker)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipesentinel.alarm_config import load_alarm_config
from pipesentinel.detection.alarms import AlarmEvent, EventType, MemoryJournal
from pipesentinel.detection.engine import DetectionEngine, alarm_notification
from pipesentinel.detection.gases import DEFAULT_LEL_BASIS
from pipesentinel.detection.incidents import Incident
from pipesentinel.hardware.offline import scenario_records
from pipesentinel.hardware.scenario import Scenario, load_scenario, parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.storage.incidents import IncidentStore
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.settings import DetectionSettings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
ORIGIN_EPOCH_S = 1.8e9
NO_FRAMES = DetectionSettings(camera_analytics=False)


@functools.cache
def _site() -> Site:
    return load_site(SITE_DIR)


def _engine(journal: Any = None, incidents: tuple[Incident, ...] = ()) -> DetectionEngine:
    site = _site()
    return DetectionEngine(
        site,
        alarm_config=load_alarm_config(SITE_DIR, site),
        lel_basis=DEFAULT_LEL_BASIS,
        journal=journal if journal is not None else MemoryJournal(),
        detection_settings=NO_FRAMES,
        incidents=incidents,
    )


def _scenario(name: str, duration_s: float, **extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "scenario": {
            "name": name,
            "site_id": "wanli",
            "start_time_utc": "2024-06-12T02:00:00Z",
            "duration_s": duration_s,
            "seed": 11,
        },
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": 3.5,
                "direction_from_deg": 80.0,
                "stability_class": "D",
            }
        ],
    }
    data.update(extra)
    return parse_scenario(data, _site())


def _run(
    engine: DetectionEngine, scenario: Scenario, until_s: float | None = None
) -> Iterator[tuple[float, list[AlarmEvent], list[Incident]]]:
    simulation = SiteSimulation(_site(), scenario, frames=False)
    for step, records in scenario_records(
        simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=until_s
    ):
        first = engine.process(records)
        second = engine.tick(step.time_s)
        yield (
            step.time_s - ORIGIN_EPOCH_S,
            [*first.alarm_events, *second.alarm_events],
            [*first.incidents, *second.incidents],
        )


def _activations(events: list[AlarmEvent]) -> list[str]:
    return [e.alarm_id for e in events if e.event is EventType.ACTIVATED and e.alarm_id]


def test_clean_air_raises_nothing_not_even_during_warm_up() -> None:
    engine = _engine()
    activated: list[str] = []
    for _, events, incidents in _run(engine, _scenario("clean", 400.0)):
        activated += _activations(events)
        assert not incidents
    # Power-on warm-up (the first 120 s) makes detectors unavailable, not failed: no alarm.
    assert activated == []


def test_leak_suspected_within_seconds_then_incident_localised_on_its_segment() -> None:
    engine = _engine()
    scenario = load_scenario(SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml", _site())
    first_seen: dict[str, float] = {}
    incidents: dict[str, Incident] = {}
    confirmed: list[AlarmEvent] = []
    for time_s, events, changed in _run(engine, scenario, until_s=600.0):
        confirmed += [e for e in events if e.alarm_id == "zone.P1-S3.confirmed_leak"]
        for alarm_id in _activations(events):
            first_seen.setdefault(alarm_id, time_s)
        for incident in changed:
            incidents[incident.id] = incident
    # The leak starts at 300 s, 16 m from GD07 (zone P1-S3), T90 of the detector ~ 30 s.
    assert 300.0 < first_seen["zone.P1-S3.suspected_leak"] < 330.0
    assert 300.0 < first_seen["GD07.methane.low"] < 330.0
    assert not [a for a in first_seen if ".fault." in a]  # real gas is never taken for a fault
    assert "zone.P1-S3.confirmed_leak" in first_seen  # GD07 HIGH + CAM laser (see the scenario)
    (incident,) = incidents.values()
    assert incident.zones[0] == "P1-S3"
    assert incident.localisation is not None
    assert incident.localisation["segments"][0]["segment_id"] == "P1-S3"
    assert any(item.kind == "gas.low" and item.source_id == "GD07" for item in incident.evidence)
    notification = alarm_notification(engine, "zone.P1-S3.confirmed_leak", confirmed[0])
    assert notification["priority"] == "critical"
    assert notification["zone"] == "P1-S3"
    assert notification["lel_basis"] == DEFAULT_LEL_BASIS.value


def test_faulty_detector_never_raises_a_gas_alarm() -> None:
    engine = _engine()
    scenario = _scenario(
        "gd07-pegged-high",
        500.0,
        faults=[{"device_id": "GD07", "kind": "out_of_range", "start_s": 200.0}],
    )
    activated: list[str] = []
    for _, events, incidents in _run(engine, scenario):
        activated += _activations(events)
        assert not incidents
    assert "GD07.fault.out_of_range" in activated
    assert not [
        a
        for a in activated
        if a.startswith("GD07.methane") or (a.startswith("zone.") and "leak" in a)
    ]
    assert "zone.P1-S3.vote_degraded" in activated  # the zone says its vote is degraded


def test_restart_from_the_journal_keeps_alarm_states(tmp_path: Path) -> None:
    scenario = load_scenario(SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml", _site())
    journal_path = tmp_path / "journal.sqlite3"
    with (
        SqliteAlarmJournal(journal_path) as journal,
        IncidentStore(tmp_path / "incidents.sqlite3") as store,
    ):
        engine = _engine(journal)
        for _, _, incidents in _run(engine, scenario, until_s=480.0):
            store.append(incidents)
        before = engine.alarms.snapshot()
        stored = store.latest()
    assert [s.alarm_id for s in before.alarms if s.record.active]
    with SqliteAlarmJournal(journal_path) as journal:
        restarted = _engine(journal, tuple(stored))
        after = restarted.alarms.snapshot()
        # Everything journaled comes back exactly (the manager's clock is that of its last
        # journaled entry, not of the last quiet tick).
        assert dataclasses.replace(after, time_s=before.time_s) == before
        assert [i.id for i in restarted.tracker.open_incidents()] == [i.id for i in stored]
