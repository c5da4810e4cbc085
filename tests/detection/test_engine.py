"""The detection engine end to end on simulated device streams (no broker)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipesentinel.alarm_config import load_alarm_config
from pipesentinel.detection.alarms import AlarmEvent, EventType, MemoryJournal
from pipesentinel.detection.engine import (
    DetectionEngine,
    EngineOutput,
    alarm_notification,
)
from pipesentinel.detection.gases import DEFAULT_LEL_BASIS
from pipesentinel.detection.incidents import Incident, IncidentError
from pipesentinel.detection.voting import CAMERA_CLOUD_DISTANCE_M
from pipesentinel.hardware.offline import scenario_records
from pipesentinel.hardware.scenario import Scenario, load_scenario, parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.records import (
    DeviceStatus,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
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


# --- Synthetic record streams: the zone vote with cameras (issue 3, the detection gap) ----------

AMBIENT_METHANE = 1.922e-6  # the camera analytics' ambient column basis [mol mol-1]
LEL_METHANE = 0.044  # IEC 60079-20-1 methane LEL, 4.4 %vol, the site's LEL basis [mol mol-1]
NOISE_FRACTION = 0.005  # gas detector white noise, 0.5 % of full scale (hardware/gas_sensor.py)
LASER_NOISE_M = 5e-6  # laser noise, 5 ppm m (the simulated telemeter) [mol mol-1 m]


@dataclasses.dataclass
class _Stream:
    """A hand-made stream of records for the reference site, one batch per second.

    ``gas[id](t)`` adds a methane mole fraction to a detector's reading, ``laser[id](t)`` an
    excess column to a camera's laser reading [mol mol-1 m], ``laser_status[id](t)`` its status.
    Readings carry white noise so that the health checks see live sensors.
    """

    gas: dict[str, Any] = dataclasses.field(default_factory=dict)
    laser: dict[str, Any] = dataclasses.field(default_factory=dict)
    laser_status: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 7

    def run(
        self, engine: DetectionEngine, until_s: float
    ) -> Iterator[tuple[float, list[AlarmEvent], list[Incident]]]:
        site = _site()
        rng = np.random.default_rng(self.seed)
        beams_m = {key: c.beam_length_m for key, c in engine.cameras.cameras.items()}
        seq = 0
        for step in range(1, int(until_s) + 1):
            t = float(step)
            time_s = ORIGIN_EPOCH_S + t
            received_s = time_s + 0.01
            records: list[Record] = []
            for detector in site.gas_detectors:
                if step % round(detector.sample_period_s):
                    continue
                noise = NOISE_FRACTION * detector.full_scale_ppm * 1e-6
                extra = self.gas[detector.id](t) if detector.id in self.gas else 0.0
                methane, propane = rng.normal(0.0, noise, 2)
                seq += 1
                records.append(
                    GasReading(
                        site_id=site.id,
                        device_id=detector.id,
                        time_s=time_s,
                        seq=seq,
                        methane_mole_fraction=AMBIENT_METHANE + extra + float(methane),
                        propane_mole_fraction=float(propane),
                        status=DeviceStatus.OK,
                        fault_code=None,
                        received_time_s=received_s,
                    )
                )
            if step % 10 == 0:
                for station in site.wind_stations:
                    seq += 1
                    records.append(
                        WindReading(
                            site_id=site.id,
                            device_id=station.id,
                            time_s=time_s,
                            seq=seq,
                            speed_m_per_s=3.0 + float(rng.normal(0.0, 0.2)),
                            direction_from_rad=math.radians(80.0 + float(rng.normal(0.0, 3.0))),
                            sigma_theta_rad=math.radians(10.0),
                            temperature_k=None,
                            pressure_pa=None,
                            received_time_s=received_s,
                        )
                    )
            for camera in site.cameras:
                extra = self.laser[camera.id](t) if camera.id in self.laser else 0.0
                status = (
                    self.laser_status[camera.id](t)
                    if camera.id in self.laser_status
                    else DeviceStatus.OK
                )
                seq += 1
                records.append(
                    LaserReading(
                        site_id=site.id,
                        device_id=camera.id,
                        time_s=time_s,
                        seq=seq,
                        path_integral_mole_fraction_m=AMBIENT_METHANE * beams_m[camera.id]
                        + extra
                        + float(rng.normal(0.0, LASER_NOISE_M)),
                        status=status,
                        received_time_s=received_s,
                    )
                )
            first = engine.process(records)
            second = engine.tick(received_s)
            yield (
                t,
                [*first.alarm_events, *second.alarm_events],
                [*first.incidents, *second.incidents],
            )


def _from(start_s: float, value: float) -> Any:
    return lambda t: value if t >= start_s else 0.0


HIGH_METHANE = 0.5 * LEL_METHANE  # 50 %LEL, above the 40 %LEL HIGH set point [mol mol-1]
LASER_GAS_M = 300e-6  # 300 ppm m above ambient, over the 100 ppm m margin [mol mol-1 m]


def _collect(
    stream: _Stream, until_s: float, engine: DetectionEngine | None = None
) -> tuple[DetectionEngine, dict[str, float], dict[str, AlarmEvent], dict[str, Incident]]:
    engine = engine or _engine()
    first_active: dict[str, float] = {}
    first_event: dict[str, AlarmEvent] = {}
    incidents: dict[str, Incident] = {}
    for time_s, events, changed in stream.run(engine, until_s):
        for event in events:
            if event.event is EventType.ACTIVATED and event.alarm_id:
                first_active.setdefault(event.alarm_id, time_s)
                first_event.setdefault(event.alarm_id, event)
        for incident in changed:
            incidents[incident.id] = incident
    return engine, first_active, first_event, incidents


def test_synthetic_quiet_stream_raises_nothing() -> None:
    # The baseline of the synthetic tests below: live, healthy, gas-free devices.
    _, first_active, _, incidents = _collect(_Stream(), 300.0)
    assert first_active == {}
    assert incidents == {}


def test_high_plus_camera_on_the_zones_segment_confirms() -> None:
    # Seed 202 case 12 of the leak-point validation: GD02 (P1-S1, chainage 442 m) at HIGH and
    # CAM1's laser, whose beam crosses P1 at chainage ~290 m in the same segment but 150 m from
    # either detector of the zone, sees gas. CAM1 used to cover no zone at all.
    stream = _Stream(
        gas={"GD02": _from(200.0, HIGH_METHANE)}, laser={"CAM1": _from(240.0, LASER_GAS_M)}
    )
    _, first_active, first_event, incidents = _collect(stream, 300.0)
    assert 200.0 <= first_active["GD02.methane.high"] < 210.0
    assert 240.0 <= first_active["zone.P1-S1.confirmed_leak"] < 245.0
    assert "CAM1 laser sees gas" in first_event["zone.P1-S1.confirmed_leak"].detail
    (incident,) = incidents.values()
    assert incident.zones == ("P1-S1",)
    kinds = {(item.source_id, item.kind) for item in incident.evidence}
    assert {("GD02", "gas.high"), ("CAM1", "camera.laser_gas")} <= kinds


def test_high_plus_camera_gas_on_the_same_cloud_next_door_confirms() -> None:
    # Leak-point validation runs in which GD03 (P1-S2) went to HIGH while the gas reached CAM1's
    # beam, which watches the neighbouring segment P1-S1 ~240 m away: one cloud, two
    # instruments. GD05 (P1-S2 as well, ~1.1 km from that beam) at HIGH with the same laser
    # reading stays suspected.
    stream = _Stream(
        gas={"GD03": _from(200.0, HIGH_METHANE)}, laser={"CAM1": _from(240.0, LASER_GAS_M)}
    )
    _, first_active, first_event, incidents = _collect(stream, 260.0)
    assert 240.0 <= first_active["zone.P1-S2.confirmed_leak"] < 245.0
    detail = first_event["zone.P1-S2.confirmed_leak"].detail
    assert f"within {CAMERA_CLOUD_DISTANCE_M:.0f} m" in detail
    assert "zone.P1-S1.confirmed_leak" not in first_active  # CAM1 alone: P1-S1 suspected
    assert "zone.P1-S1.suspected_leak" in first_active
    assert any("P1-S2" in incident.zones for incident in incidents.values())
    far = _Stream(
        gas={"GD05": _from(200.0, HIGH_METHANE)}, laser={"CAM1": _from(240.0, LASER_GAS_M)}
    )
    _, far_active, _, far_incidents = _collect(far, 260.0)
    assert "GD05.methane.high" in far_active
    assert "zone.P1-S2.confirmed_leak" not in far_active
    assert far_incidents == {}


def test_incident_keeps_the_evidence_seen_before_it_opened() -> None:
    # CAM5's laser (covering P1-S3) sees gas first; GD07 (P1-S3) reaches HIGH 60 s later and
    # confirms. The incident rests on both, though the camera's evidence appeared before there
    # was an incident to attach it to (it used to be dropped).
    stream = _Stream(
        gas={"GD07": _from(260.0, HIGH_METHANE)}, laser={"CAM5": _from(200.0, LASER_GAS_M)}
    )
    _, first_active, _, incidents = _collect(stream, 300.0)
    (incident,) = incidents.values()
    assert incident.zones == ("P1-S3",)
    camera = [item for item in incident.evidence if item.kind == "camera.laser_gas"]
    assert [item.source_id for item in camera] == ["CAM5"]
    assert camera[0].time_s < incident.opened_time_s
    assert {"gas.low", "gas.high"} <= {item.kind for item in incident.evidence}
    assert first_active["zone.P1-S3.suspected_leak"] < first_active["zone.P1-S3.confirmed_leak"]


def test_camera_gas_alone_suspects_its_zones_but_never_confirms() -> None:
    stream = _Stream(laser={"CAM1": _from(200.0, LASER_GAS_M)})
    engine, first_active, first_event, incidents = _collect(stream, 300.0)
    assert 200.0 <= first_active["zone.P1-S1.suspected_leak"] < 205.0
    detail = first_event["zone.P1-S1.suspected_leak"].detail
    assert "CAM1 laser sees gas" in detail
    assert "never confirms" in detail
    assert not [a for a in first_active if a.endswith("confirmed_leak")]
    assert incidents == {}
    # Only the zones CAM1 covers.
    assert {a for a in first_active if a.startswith("zone.")} == {"zone.P1-S1.suspected_leak"}
    assert engine.last_vote is not None
    assert engine.last_vote.suspected.sum() == 1


def test_a_faulted_camera_never_counts() -> None:
    # CAM1's beam is blocked from 200 s to 240 s; it reports gas from 240 s on. The blocked-beam
    # fault clears 5 s after the first good reading (health.DEFAULT_BEAM_CLEAR_DELAY_S): until
    # then its gas is neither a camera alarm nor a vote, even with GD02 at HIGH.
    blocked = {"CAM1": lambda t: DeviceStatus.FAULT if 200.0 <= t < 240.0 else DeviceStatus.OK}
    stream = _Stream(
        gas={"GD02": _from(180.0, HIGH_METHANE)},
        laser={"CAM1": _from(240.0, LASER_GAS_M)},
        laser_status=blocked,
    )
    _, first_active, _, incidents = _collect(stream, 300.0)
    cleared_s = 240.0 + 5.0
    assert 200.0 <= first_active["CAM1.fault.beam_blocked"] < 205.0
    assert first_active["CAM1.camera.laser_gas"] >= cleared_s
    assert first_active["zone.P1-S1.confirmed_leak"] >= cleared_s
    (incident,) = incidents.values()
    assert incident.opened_time_s - ORIGIN_EPOCH_S >= cleared_s


def test_a_blocked_beam_alone_raises_no_gas_alarm() -> None:
    blocked = {"CAM1": lambda t: DeviceStatus.FAULT if t >= 200.0 else DeviceStatus.OK}
    _, first_active, _, incidents = _collect(_Stream(laser_status=blocked), 300.0)
    assert set(first_active) == {"CAM1.fault.beam_blocked"}
    assert incidents == {}


def test_duty_officer_confirms_a_suspected_zone_by_hand() -> None:
    engine = _engine()
    stream = _Stream(laser={"CAM1": lambda t: LASER_GAS_M if 200.0 <= t < 260.0 else 0.0})
    confirmed: list[AlarmEvent] = []
    by_hand: list[EngineOutput] = []
    for time_s, events, _ in stream.run(engine, 300.0):
        confirmed += [e for e in events if e.alarm_id == "zone.P1-S1.confirmed_leak"]
        if time_s == 190.0:
            with pytest.raises(IncidentError, match="not suspected"):
                engine.confirm_zone(
                    "P1-S1", user="duty1", reason="smell", time_s=ORIGIN_EPOCH_S + time_s
                )
        if time_s == 230.0:  # CAM1 alone has made P1-S1 suspected
            with pytest.raises(IncidentError, match="user and a reason"):
                engine.confirm_zone("P1-S1", user="duty1", reason=" ", time_s=ORIGIN_EPOCH_S + 230)
            with pytest.raises(IncidentError, match="no voting zone"):
                engine.confirm_zone("P9-S9", user="duty1", reason="x", time_s=ORIGIN_EPOCH_S + 230)
            by_hand.append(
                engine.confirm_zone(
                    "P1-S1",
                    user="duty1",
                    reason="patrol reports gas smell at the P1-V1 valve pit",
                    time_s=ORIGIN_EPOCH_S + 230.5,
                )
            )
    (output,) = by_hand
    (incident,) = output.incidents
    assert incident.zones == ("P1-S1",)
    assert incident.opened_time_s == ORIGIN_EPOCH_S + 230.5
    kinds = [(item.source_id, item.kind) for item in incident.evidence]
    assert kinds == [("CAM1", "camera.laser_gas"), ("duty1", "operator.confirm")]
    assert "patrol reports gas smell" in incident.evidence[-1].detail
    assert "confirmed by duty1" in incident.timeline[0][1]
    # The zone's confirmed alarm is raised (journaled) and names who confirmed it; it holds
    # while the incident is open, though the camera no longer sees gas.
    (raised,) = [
        e
        for e in output.alarm_events
        if e.alarm_id == "zone.P1-S1.confirmed_leak" and e.event is EventType.ACTIVATED
    ]
    assert "confirmed by duty1" in (raised.detail or "")
    assert engine.alarms.alarm("zone.P1-S1.confirmed_leak").record.active
    assert not [e for e in confirmed if e.event is EventType.ACTIVATED]  # not from the stream
    # The camera's gas has gone: the zone is quiet, the incident can be closed, and closing it
    # clears the hand-made condition.
    (open_incident,) = engine.tracker.open_incidents()
    assert open_incident.active_zones == ()
    engine.close_incident(
        open_incident.id, user="duty1", reason="checked", time_s=ORIGIN_EPOCH_S + 301
    )
    engine.tick(ORIGIN_EPOCH_S + 302)
    assert not engine.alarms.alarm("zone.P1-S1.confirmed_leak").record.active
