"""The detection engine of one site: validated records in, alarm events and incidents out.

One object wires the detection capabilities together, in this order for every batch of records
that the ingest hands on (``docs/detection.md``)::

    records ─▶ health (faults are not gas) ─▶ gas thresholds (faulty readings masked)
            └▶ camera analytics (thermal, visible, laser)
    ─▶ zone vote (1ooN or a camera suspects, 2ooN confirms, camera confirms a HIGH, faults
       degrade; a faulted camera never counts)
    ─▶ alarm conditions (level-based: what should be active now) ─▶ alarm manager (ISA-18.2,
       journaled) ─▶ alarm events
    ─▶ incidents (confirmed zones; evidence; localisation every ``localisation_interval_s``)

Alarm conditions are computed as *levels*: after each batch the engine works out the set of alarm
conditions that should be active and hands the manager only the differences with the previous
set. The same rule reconciles the manager's journaled states after a restart, once every device
has had time to report (:data:`RESTART_SETTLE_S`).

The engine is deterministic: its clock is the receive time of the records it is given (and the
times passed to :meth:`DetectionEngine.tick`), never the wall clock, so a replay of a recording
gives the same result every time. It does no network I/O; its journals (alarm journal, incident
store) are passed in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.camera_geometry import CameraPose, laser_beam_m
from pipesentinel.detection.alarms import (
    AlarmDefinition,
    AlarmEvent,
    AlarmJournal,
    AlarmKind,
    AlarmManager,
    AlarmPolicy,
    Condition,
    Priority,
    ShelveMode,
)
from pipesentinel.detection.camera_analytics import (
    CameraDetection,
    DetectionKind,
    SiteCameraAnalytics,
    segment_distance_m,
    site_camera_coverage,
)
from pipesentinel.detection.gases import PERCENT, LelBasis, mole_fraction_to_percent_lel
from pipesentinel.detection.health import HealthFaultKind, HealthMonitor, HealthParameters
from pipesentinel.detection.incidents import Evidence, Incident, IncidentError, IncidentTracker
from pipesentinel.detection.localisation import (
    LocalisationResult,
    Localiser,
    observations_from_records,
    pipeline_candidates,
    wind_from_records,
)
from pipesentinel.detection.thresholds import (
    GASES,
    AlarmTransition,
    AlarmType,
    GasAlarmEvaluator,
    SetpointTable,
)
from pipesentinel.detection.voting import CAMERA_CLOUD_DISTANCE_M, ZoneIndex, ZoneVote, vote
from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatus,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.settings import AlarmSettings, DetectionSettings
from pipesentinel.site import Gas, Site

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

RESTART_SETTLE_S: Final = 30.0
"""After a (re)start, alarms the journal says are active are reconciled with the engine's own
conditions only once this much time has passed [s]: long enough for every gas detector (5 s
period) and wind station to report a few times and for the 1 s on-delay to pass."""

STARTUP_GRACE_S: Final = 120.0
"""After a (re)start, a device not heard from yet is not alarmed offline (nor counted as a fault
in its zone's vote) for this long [s]: devices reconnect to the broker and report after the
service starts, and power-on warm-up of catalytic and infrared detectors is of this order (the
simulated detectors warm up for 120 s). A design choice; a device heard once is judged at once."""

CAMERA_HOLD_PERIODS: Final = 3.0
"""A camera or laser detection stays an active condition this many frame (or laser) periods
after it was last reported [1]: one missed frame must not clear and re-raise an alarm."""

LASER_PERIOD_S: Final = 1.0
"""Laser reading period of the tri-spectrum cameras [s] (the device contract, docs/mqtt.md)."""

LOCALISATION_WINDOW_MARGIN_S: Final = 60.0
"""Records are kept this much longer than the localiser's window [s]."""

ALARM_TYPE_NAMES: Final = {
    AlarmType.LOW: "low",
    AlarmType.HIGH: "high",
    AlarmType.RATE_OF_RISE: "rate_of_rise",
}

CAMERA_GAS_KINDS: Final = frozenset({DetectionKind.COLD_PLUME, DetectionKind.LASER_GAS})
"""Camera detections that see gas: alone they make a zone they cover suspected, with a HIGH
alarm in it confirmed (:mod:`pipesentinel.detection.voting`)."""

OPERATOR_CONFIRM: Final = "operator.confirm"
"""Evidence kind of a zone confirmed by hand (:meth:`DetectionEngine.confirm_zone`)."""

CAMERA_ALARMS: Final[Mapping[DetectionKind, tuple[AlarmKind, Priority]]] = {
    DetectionKind.COLD_PLUME: (AlarmKind.GAS, Priority.MEDIUM),
    DetectionKind.LASER_GAS: (AlarmKind.GAS, Priority.MEDIUM),
    DetectionKind.HOT_SPOT: (AlarmKind.FIRE, Priority.CRITICAL),
    DetectionKind.INTRUSION: (AlarmKind.INTRUSION, Priority.HIGH),
}
"""Alarms raised by camera detections (a blocked beam is a health fault, not a camera alarm)."""


def gas_alarm_id(detector_id: str, gas: Gas, alarm: AlarmType) -> str:
    """``"GD07.methane.low"``."""
    return f"{detector_id}.{gas.value}.{ALARM_TYPE_NAMES[alarm]}"


def fault_alarm_id(device_id: str, kind: HealthFaultKind) -> str:
    """``"GD07.fault.stuck"``."""
    return f"{device_id}.fault.{kind.value}"


def zone_alarm_id(zone: str, what: str) -> str:
    """``"zone.P1-S3.confirmed_leak"``."""
    return f"zone.{zone}.{what}"


def camera_alarm_id(camera_id: str, kind: DetectionKind) -> str:
    """``"CAM5.camera.cold_plume"``."""
    return f"{camera_id}.camera.{kind.value}"


@dataclass(frozen=True)
class EngineOutput:
    """What one call of the engine produced."""

    alarm_events: list[AlarmEvent] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # new versions
    camera_detections: list[CameraDetection] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alarm_events or self.incidents or self.camera_detections)


@dataclass
class _Wanted:
    """One alarm condition the engine wants active, with what to tell people."""

    value: float | None
    detail: str


class DetectionEngine:
    """Continuous leak detection for one site.

    Parameters
    ----------
    site
        The site.
    alarm_config
        Its set points (``sites/<site>/alarms.toml``).
    lel_basis
        The LEL basis every %LEL is stated on.
    journal
        Where alarm transitions go (append-only); the manager is rebuilt from it.
    alarm_settings, detection_settings
        The ``alarms`` and ``detection`` sections of the settings.
    incidents
        Latest versions of incidents stored before a restart.
    """

    def __init__(
        self,
        site: Site,
        *,
        alarm_config: AlarmConfig,
        lel_basis: LelBasis,
        journal: AlarmJournal,
        alarm_settings: AlarmSettings | None = None,
        detection_settings: DetectionSettings | None = None,
        incidents: Sequence[Incident] = (),
    ) -> None:
        alarm_settings = alarm_settings or AlarmSettings()
        self.settings = detection_settings or DetectionSettings()
        self.site = site
        self.lel_basis = lel_basis
        self.table = SetpointTable.for_site(site, alarm_config, basis=lel_basis)
        if tuple(self.table.detector_ids) != tuple(d.id for d in site.gas_detectors):
            raise ValueError("the set point table must list the site's gas detectors in order")
        self.thresholds = GasAlarmEvaluator(self.table)
        self.health = HealthMonitor(
            site,
            HealthParameters(silence_margin_s=self.settings.offline_margin_s),
            expect_frames=self.settings.camera_analytics and self.settings.expect_frames,
        )
        self.cameras = SiteCameraAnalytics(site)
        self.coverage = site_camera_coverage(site)
        # Where each camera's laser beam runs (ground plane) and where each gas detector stands.
        self._laser_beams: dict[str, FloatArray] = {
            camera.id: np.stack(
                [
                    np.asarray(end[:2], dtype=np.float64)
                    for end in laser_beam_m(CameraPose.from_camera(camera), camera.laser_range_m)
                ]
            )
            for camera in site.cameras
        }
        self._detector_positions_m = np.array(
            [detector.position_m[:2] for detector in site.gas_detectors], dtype=np.float64
        ).reshape(-1, 2)
        self.zones = ZoneIndex.for_site(site)
        self.tracker = IncidentTracker(site, self.zones)
        self.tracker.restore(incidents)
        self.alarms = AlarmManager(
            journal,
            policy=AlarmPolicy(
                max_shelve_s=alarm_settings.max_shelve_s,
                flood_window_s=alarm_settings.flood_window_s,
                flood_start_above_count=alarm_settings.flood_start_above_count,
                flood_end_below_count=alarm_settings.flood_end_below_count,
            ),
        )
        self._localiser: Localiser | None = None
        self._zone_of_detector = {detector.id: detector.zone for detector in site.gas_detectors}
        self._detector_index = {detector.id: i for i, detector in enumerate(site.gas_detectors)}
        self._definitions = self._alarm_definitions()
        # Conditions: what the engine wants active now (level-based), and what it last told the
        # manager. After a restart the manager's own active set is the reference, once settled.
        self._told: set[str] = {
            snapshot.alarm_id
            for snapshot in self.alarms.alarms()
            if snapshot.record.active and snapshot.alarm_id in self._definitions
        }
        self._started_s: float | None = None
        self._now_s = -math.inf
        self._camera_seen: dict[str, tuple[float, float, CameraDetection]] = {}
        # Evidence of the gas and camera conditions still active, by alarm id: what a zone's
        # incident rests on when it opens (or the zone joins) after the evidence first appeared.
        self._standing: dict[str, tuple[Evidence, ...]] = {}
        self._zone_standing: dict[str, list[Evidence]] = {}
        # Zones a duty officer confirmed by hand: their confirmed_leak condition holds while an
        # open incident has them (zone -> what to tell people).
        self._operator_confirmed: dict[str, str] = {
            item.zone: f"zone {item.zone}: confirmed by {item.source_id}: {item.detail}"
            for incident in self.tracker.open_incidents()
            for item in incident.evidence
            if item.kind == OPERATOR_CONFIRM and item.zone is not None
        }
        self._recent: deque[Record] = deque()
        self._last_localised: dict[str, float] = {}
        self._last_vote: ZoneVote | None = None
        self._warming_up: set[str] = set()
        self._heard: set[str] = set()

    # --- definitions -----------------------------------------------------------------------

    def _alarm_definitions(self) -> dict[str, AlarmDefinition]:
        definitions: dict[str, AlarmDefinition] = {}
        site = self.site
        for zone in self.zones.zone_ids:
            for what, kind, priority, latching, text in (
                (
                    "confirmed_leak",
                    AlarmKind.CONFIRMED_LEAK,
                    Priority.CRITICAL,
                    True,
                    "Confirmed leak: 2ooN detectors, or HIGH with a camera",
                ),
                (
                    "suspected_leak",
                    AlarmKind.SUSPECTED_LEAK,
                    Priority.HIGH,
                    False,
                    "Suspected leak: one detector at LOW, or a camera sees gas",
                ),
                (
                    "blind",
                    AlarmKind.FAULT,
                    Priority.HIGH,
                    False,
                    "Every detector of the zone is in fault: no gas detection here",
                ),
                (
                    "vote_degraded",
                    AlarmKind.FAULT,
                    Priority.LOW,
                    False,
                    "A detector of the zone is in fault: 2ooN degraded to 1oo(N-1)",
                ),
            ):
                alarm_id = zone_alarm_id(zone, what)
                definitions[alarm_id] = AlarmDefinition(
                    alarm_id=alarm_id,
                    kind=kind,
                    priority=priority,
                    zone=zone,
                    latching=latching,
                    description=f"zone {zone}: {text}",
                )
        for detector in site.gas_detectors:
            for gas in detector.gases:
                for alarm, kind, priority, latching in (
                    (AlarmType.LOW, AlarmKind.GAS, Priority.MEDIUM, False),
                    (AlarmType.HIGH, AlarmKind.GAS, Priority.HIGH, True),
                    (AlarmType.RATE_OF_RISE, AlarmKind.RATE_OF_RISE, Priority.LOW, False),
                ):
                    alarm_id = gas_alarm_id(detector.id, gas, alarm)
                    definitions[alarm_id] = AlarmDefinition(
                        alarm_id=alarm_id,
                        kind=kind,
                        priority=priority,
                        device_id=detector.id,
                        zone=detector.zone,
                        latching=latching,
                        description=f"{detector.id} {gas.value} {ALARM_TYPE_NAMES[alarm]}",
                    )
        for device in site.devices:
            device_zone = self._zone_of_detector.get(device.id)
            for fault in HealthFaultKind:
                alarm_id = fault_alarm_id(device.id, fault)
                definitions[alarm_id] = AlarmDefinition(
                    alarm_id=alarm_id,
                    kind=AlarmKind.FAULT,
                    priority=Priority.LOW,
                    device_id=device.id,
                    zone=device_zone,
                    description=f"{device.id} fault: {fault.value}",
                )
        for camera in site.cameras:
            for detection_kind, (kind, priority) in CAMERA_ALARMS.items():
                alarm_id = camera_alarm_id(camera.id, detection_kind)
                definitions[alarm_id] = AlarmDefinition(
                    alarm_id=alarm_id,
                    kind=kind,
                    priority=priority,
                    device_id=camera.id,
                    description=f"{camera.id} sees {detection_kind.value.replace('_', ' ')}",
                )
        return definitions

    def definition(self, alarm_id: str) -> AlarmDefinition:
        """Static attributes of an alarm this engine raises; ``KeyError`` otherwise."""
        return self._definitions[alarm_id]

    # --- the data path ---------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """The engine's clock: the latest receive (or tick) time it has seen [s]."""
        return self._now_s

    def _advance(self, time_s: float) -> float:
        self._now_s = max(self._now_s, time_s)
        if self._started_s is None:
            self._started_s = self._now_s
        return self._now_s

    def process(self, records: Sequence[Record]) -> EngineOutput:
        """Evaluate one batch of validated records (as the ingest hands them on)."""
        if not records:
            return EngineOutput()
        now_s = self._advance(max(record.received_time_s for record in records))
        self._heard.update(record.device_id for record in records)
        for record in records:
            if isinstance(record, GasReading | LaserReading):
                if record.status is DeviceStatus.WARMUP:
                    self._warming_up.add(record.device_id)
                elif record.status is not DeviceStatus.OK:
                    self._warming_up.discard(record.device_id)
                # Back to ok: still "warming up" until the health check's self-report clears.
        self.health.update(records, now_s)
        fault_mask = self.health.gas_fault_mask()
        gas = [record for record in records if isinstance(record, GasReading)]
        gas_evidence: list[Evidence] = []
        if gas:
            per_reading = fault_mask[[self._detector_index[r.device_id] for r in gas]]
            result = self.thresholds.evaluate_readings(gas, fault=per_reading)
            for transition in result.transitions.to_list(self.table.detector_ids):
                if not transition.became_active or transition.alarm is AlarmType.RATE_OF_RISE:
                    continue
                item = self._gas_evidence(transition)
                gas_evidence.append(item)
                alarm_id = gas_alarm_id(transition.detector_id, transition.gas, transition.alarm)
                self._standing[alarm_id] = (item,)
        detections: list[CameraDetection] = []
        if self.settings.camera_analytics:
            camera_records = [r for r in records if isinstance(r, CameraFrame | LaserReading)]
        else:
            camera_records = [r for r in records if isinstance(r, LaserReading)]
        for record in camera_records:
            try:
                detections += self.cameras.process(record)
            except ValueError:
                # A frame the contract accepted but the analytics cannot read: the health and
                # ingest layers already count it; it must not stop detection.
                continue
        camera_evidence = self._note_detections(detections, now_s)
        self._remember(records, now_s)
        output = self._conclude(now_s, [*gas_evidence, *camera_evidence])
        return EngineOutput(output.alarm_events, output.incidents, detections)

    def _gas_evidence(self, transition: AlarmTransition) -> Evidence:
        return Evidence(
            time_s=transition.time_s,
            source_id=transition.detector_id,
            kind=f"gas.{ALARM_TYPE_NAMES[transition.alarm]}",
            detail=(
                f"{transition.detector_id} {transition.gas.value} "
                f"{_percent(transition.value_fraction_lel)} %LEL >= "
                f"{_percent(transition.setpoint_fraction_lel)} %LEL ({self.lel_basis.value})"
            ),
            value=transition.value_fraction_lel,
            zone=self._zone_of_detector.get(transition.detector_id),
        )

    def tick(self, now_s: float) -> EngineOutput:
        """Time-driven work: offline devices, camera holds, shelve expiry, localisation."""
        now_s = self._advance(now_s)
        self.health.tick(now_s)
        output = self._conclude(now_s, [])
        events = [*output.alarm_events, *self.alarms.tick(now_s)]
        return EngineOutput(events, output.incidents)

    def _note_detections(
        self, detections: Iterable[CameraDetection], now_s: float
    ) -> list[Evidence]:
        evidence: list[Evidence] = []
        for detection in detections:
            if detection.kind not in CAMERA_ALARMS:
                continue
            period = (
                LASER_PERIOD_S
                if detection.kind is DetectionKind.LASER_GAS
                else self.site.devices_by_id[detection.camera_id].frame_period_s  # type: ignore[union-attr]
            )
            alarm_id = camera_alarm_id(detection.camera_id, detection.kind)
            if alarm_id not in self._camera_seen and detection.kind in CAMERA_GAS_KINDS:
                items = tuple(
                    Evidence(
                        time_s=detection.time_s,
                        source_id=detection.camera_id,
                        kind=f"camera.{detection.kind.value}",
                        detail=_describe_detection(detection),
                        value=detection.confidence,
                        zone=zone,
                    )
                    for zone in self._zones_seen_by(detection)
                )
                evidence.extend(items)
                self._standing[alarm_id] = items
            self._camera_seen[alarm_id] = (now_s, period * CAMERA_HOLD_PERIODS, detection)
        return evidence

    def _zones_seen_by(self, detection: CameraDetection) -> tuple[str, ...]:
        coverage = self.coverage[detection.camera_id]
        laser = detection.kind is DetectionKind.LASER_GAS
        return tuple(coverage.laser_zones if laser else coverage.zones)

    def _remember(self, records: Sequence[Record], now_s: float) -> None:
        for record in records:
            if isinstance(record, GasReading | WindReading | LaserReading):
                self._recent.append(record)
        keep_s = self._localisation_window_s() + LOCALISATION_WINDOW_MARGIN_S
        while self._recent and self._recent[0].received_time_s < now_s - keep_s:
            self._recent.popleft()

    def _localisation_window_s(self) -> float:
        return self._get_localiser().config.window_s

    def _get_localiser(self) -> Localiser:
        if self._localiser is None:
            self._localiser = Localiser(pipeline_candidates(self.site), lel_basis=self.lel_basis)
        return self._localiser

    # --- conditions ------------------------------------------------------------------------

    def _conclude(self, now_s: float, evidence: list[Evidence]) -> EngineOutput:
        """From the current state to alarm conditions, alarm events and incidents."""
        wanted: dict[str, _Wanted] = {}
        faulted_cameras = self._faulted_cameras()
        camera_gas_zones, sightings = self._camera_conditions(now_s, wanted, faulted_cameras)
        # Device faults.
        faults = self.health.faults_by_device()
        self._warming_up = {
            device_id
            for device_id in self._warming_up
            if HealthFaultKind.SELF_REPORTED in faults.get(device_id, frozenset())
        }
        started_s = self._started_s if self._started_s is not None else now_s
        in_grace = now_s - started_s < STARTUP_GRACE_S
        for device_id, kinds in faults.items():
            for kind in kinds:
                if in_grace and kind is HealthFaultKind.OFFLINE and device_id not in self._heard:
                    continue  # not heard from since the start: still reconnecting
                if kind is HealthFaultKind.SELF_REPORTED and device_id in self._warming_up:
                    continue  # warming up after power-on: unavailable, not failed (no alarm)
                wanted[fault_alarm_id(device_id, kind)] = _Wanted(
                    None, f"{device_id}: {kind.value}"
                )
        # Gas conditions (masked by health in the threshold core).
        active = self.thresholds.active
        latest = self.thresholds.latest_raw_mole_fraction
        detectors, gases, types = np.nonzero(active)
        for d, g, t in zip(detectors.tolist(), gases.tolist(), types.tolist(), strict=True):
            detector = self.site.gas_detectors[d]
            gas = GASES[g]
            alarm = AlarmType(t)
            fraction = max(float(latest[d, g]), 0.0)
            percent = float(mole_fraction_to_percent_lel(fraction, gas=gas, basis=self.lel_basis))
            wanted[gas_alarm_id(detector.id, gas, alarm)] = _Wanted(
                percent / PERCENT,
                f"{detector.id} {gas.value} {percent:.0f} %LEL ({self.lel_basis.value})",
            )
        result = self._vote(
            active, camera_gas_zones, wanted, in_grace=in_grace, sightings=sightings
        )
        events = self._tell(wanted, now_s)
        standing = self._standing_by_zone(wanted, faulted_cameras)
        evidence = [item for item in evidence if item.source_id not in faulted_cameras]
        gases_by_zone: dict[str, list[str]] = {}
        for d, g in zip(
            *np.nonzero(active[:, :, AlarmType.LOW] | active[:, :, AlarmType.HIGH]), strict=True
        ):
            zone = self.site.gas_detectors[int(d)].zone
            gases_by_zone.setdefault(zone, []).append(GASES[int(g)].value)
        incidents = self.tracker.update(
            now_s, result, evidence=evidence, gases_by_zone=gases_by_zone, standing=standing
        )
        incidents = self._merge_versions(incidents, self._localise(now_s))
        return EngineOutput(events, incidents)

    def _camera_conditions(
        self, now_s: float, wanted: dict[str, _Wanted], faulted_cameras: frozenset[str]
    ) -> tuple[dict[str, set[str]], FloatArray]:
        """Camera conditions still held, into ``wanted``; zones a healthy camera sees gas in.

        Returns the channels per zone, e.g. ``{"P1-S1": {"CAM1 laser"}}``, and where the healthy
        cameras see gas: segments (n, 2, 2) [m] (a laser's beam; a thermal plume's ground
        position as a segment of zero length).
        """
        camera_gas_zones: dict[str, set[str]] = {}
        sightings: list[FloatArray] = []
        for alarm_id, (seen_s, hold_s, detection) in list(self._camera_seen.items()):
            if now_s - seen_s > hold_s:
                del self._camera_seen[alarm_id]
                continue
            if detection.kind in CAMERA_GAS_KINDS:
                if detection.camera_id in faulted_cameras:
                    continue  # a faulted camera's gas is neither an alarm nor a vote (held)
                source = f"{detection.camera_id} {detection.channel.value}"
                for zone in self._zones_seen_by(detection):
                    camera_gas_zones.setdefault(zone, set()).add(source)
                sighting = self._sighting(detection)
                if sighting is not None:
                    sightings.append(sighting)
            wanted[alarm_id] = _Wanted(detection.confidence, _describe_detection(detection))
        stacked = np.array(sightings, dtype=np.float64).reshape(-1, 2, 2)
        return camera_gas_zones, stacked

    def _sighting(self, detection: CameraDetection) -> FloatArray | None:
        """Where a camera's gas detection lies: a segment (2, 2) [m], or None if unknown."""
        if detection.kind is DetectionKind.LASER_GAS:
            return self._laser_beams.get(detection.camera_id)
        if detection.blob is not None and detection.blob.ground_position_m is not None:
            point = np.asarray(detection.blob.ground_position_m, dtype=np.float64)
            return np.stack([point, point])
        return None

    def _standing_by_zone(
        self, wanted: Mapping[str, _Wanted], faulted_cameras: frozenset[str]
    ) -> dict[str, list[Evidence]]:
        """Evidence of the conditions still active, per zone, oldest first.

        A faulted camera's is not evidence, though it is kept until the camera recovers or its
        hold ends.
        """
        self._standing = {
            key: items
            for key, items in self._standing.items()
            if key in wanted or key in self._camera_seen
        }
        standing: dict[str, list[Evidence]] = {}
        for items in self._standing.values():
            for item in items:
                if item.zone is not None and item.source_id not in faulted_cameras:
                    standing.setdefault(item.zone, []).append(item)
        for zone_items in standing.values():
            zone_items.sort(key=lambda item: item.time_s)
        self._zone_standing = standing
        return standing

    def _faulted_cameras(self) -> frozenset[str]:
        """Cameras with any active fault (blocked beam, offline, self-reported, ...)."""
        mask = self.health.camera_fault_mask()
        return frozenset(
            camera.id for camera, on in zip(self.site.cameras, mask, strict=True) if on
        )

    def _vote(
        self,
        active: BoolArray,
        camera_gas_zones: Mapping[str, set[str]],
        wanted: dict[str, _Wanted],
        *,
        in_grace: bool,
        sightings: FloatArray | None = None,
    ) -> ZoneVote:
        """Vote every zone; add the zone conditions to ``wanted``.

        ``camera_gas_zones`` names, per zone, the healthy camera channels that see gas in it
        (``"CAM1 laser"``); ``sightings`` (n, 2, 2) where they see it [m].
        """
        low: BoolArray = np.any(active[:, :, AlarmType.LOW], axis=1)
        high: BoolArray = np.any(active[:, :, AlarmType.HIGH], axis=1)
        cameras = np.array([zone in camera_gas_zones for zone in self.zones.zone_ids])
        result = vote(
            self.zones,
            low_active=low,
            high_active=high,
            in_fault=self._gas_fault_mask(in_grace=in_grace),
            camera_gas=cameras,
            camera_sources=[
                ", ".join(sorted(camera_gas_zones.get(zone, ()))) for zone in self.zones.zone_ids
            ],
            camera_near=self._near_sightings(sightings),
        )
        self._last_vote = result
        warming = np.array([d.id in self._warming_up for d in self.site.gas_detectors])
        all_warming = self.zones.count(warming) == self.zones.detectors_per_zone
        for z, zone in enumerate(self.zones.zone_ids):
            reason = result.reason(z)
            if all_warming[z]:
                reason += " (all detectors warming up after power-on)"
            for what, flag in (
                ("confirmed_leak", result.confirmed[z]),
                ("suspected_leak", result.suspected[z]),
                ("blind", result.blind[z] and not all_warming[z]),
                ("vote_degraded", result.degraded[z]),
            ):
                if flag:
                    wanted[zone_alarm_id(zone, what)] = _Wanted(None, reason)
        # Zones confirmed by hand stay confirmed while an open incident has them.
        in_incidents = {z for incident in self.tracker.open_incidents() for z in incident.zones}
        for zone in list(self._operator_confirmed):
            if zone not in in_incidents:
                del self._operator_confirmed[zone]
            elif not result.confirmed[self.zones.zone_ids.index(zone)]:
                text = self._operator_confirmed[zone]
                wanted[zone_alarm_id(zone, "confirmed_leak")] = _Wanted(None, text)
        return result

    def _near_sightings(self, sightings: FloatArray | None) -> BoolArray:
        """Per detector: a camera's gas sighting within CAMERA_CLOUD_DISTANCE_M of it."""
        if sightings is None or sightings.shape[0] == 0:
            return np.zeros(len(self.site.gas_detectors), dtype=np.bool_)
        distance_m = segment_distance_m(
            self._detector_positions_m, sightings[:, 0, :], sightings[:, 1, :]
        )
        near: BoolArray = np.any(distance_m <= CAMERA_CLOUD_DISTANCE_M, axis=1)
        return near

    def _gas_fault_mask(self, *, in_grace: bool) -> BoolArray:
        """Detectors in fault; during the start-up grace, not those never heard from yet."""
        mask = self.health.gas_fault_mask()
        if in_grace:
            unheard = np.array([d.id not in self._heard for d in self.site.gas_detectors])
            mask = mask & ~unheard
        return mask

    def _tell(self, wanted: dict[str, _Wanted], now_s: float) -> list[AlarmEvent]:
        """Hand the manager the conditions that changed (zone alarms first).

        While the engine settles after a start (:data:`RESTART_SETTLE_S`), conditions are only
        raised, never cleared: an alarm the journal says is active stays so until the devices
        have had time to report and the engine knows better.
        """
        started_s = self._started_s if self._started_s is not None else now_s
        settling = now_s - started_s < RESTART_SETTLE_S
        conditions = [
            Condition(
                alarm_id=alarm_id,
                active=True,
                time_s=now_s,
                value=item.value,
                detail=item.detail,
                definition=self._definitions.get(alarm_id),
            )
            for alarm_id, item in wanted.items()
            if alarm_id not in self._told
        ]
        if not settling:
            conditions += [
                Condition(
                    alarm_id=alarm_id,
                    active=False,
                    time_s=now_s,
                    definition=self._definitions.get(alarm_id),
                )
                for alarm_id in sorted(self._told - set(wanted))
            ]
        conditions.sort(key=lambda c: (not c.alarm_id.startswith("zone."), c.alarm_id))
        self._told = self._told | set(wanted) if settling else set(wanted)
        return self.alarms.apply(conditions) if conditions else []

    # --- localisation ----------------------------------------------------------------------

    def _localise(self, now_s: float) -> list[Incident]:
        changed: list[Incident] = []
        for incident in self.tracker.open_incidents():
            last = self._last_localised.get(incident.id)
            if last is not None and now_s - last < self.settings.localisation_interval_s:
                continue
            self._last_localised[incident.id] = now_s
            result = self.localise(
                now_s,
                gas=Gas.METHANE
                if "methane" in incident.gases or not incident.gases
                else Gas.PROPANE,
            )
            if result is None:
                continue
            changed.append(
                self.tracker.attach_localisation(
                    incident.id, result.to_json_dict(top_candidates=20), now_s, _summary(result)
                )
            )
        return changed

    def localise(
        self, now_s: float | None = None, *, gas: Gas = Gas.METHANE
    ) -> LocalisationResult | None:
        """The leak's position and rate from the recent readings; ``None`` without wind."""
        end_s = self._now_s if now_s is None else now_s
        localiser = self._get_localiser()
        records = list(self._recent)
        wind = wind_from_records(
            self.site, records, end_time_s=end_s, window_s=localiser.config.window_s
        )
        if wind is None:
            return None
        observations = observations_from_records(
            self.site, records, end_time_s=end_s, gas=gas, config=localiser.config
        )
        if observations.n_points == 0:
            return None
        return localiser.estimate(observations, wind)

    @staticmethod
    def _merge_versions(first: list[Incident], second: list[Incident]) -> list[Incident]:
        latest: dict[str, Incident] = {}
        for incident in [*first, *second]:
            current = latest.get(incident.id)
            if current is None or incident.version > current.version:
                latest[incident.id] = incident
        return list(latest.values())

    # --- operator actions ------------------------------------------------------------------

    def acknowledge(
        self, alarm_id: str, *, user: str, time_s: float, comment: str = ""
    ) -> list[AlarmEvent]:
        """A duty officer acknowledges an alarm (journaled)."""
        return self.alarms.acknowledge(
            alarm_id, user=user, time_s=self._advance(time_s), comment=comment
        )

    def reset(
        self, alarm_id: str, *, user: str, time_s: float, comment: str = ""
    ) -> list[AlarmEvent]:
        """Reset a latched alarm whose condition has cleared."""
        return self.alarms.reset(alarm_id, user=user, time_s=self._advance(time_s), comment=comment)

    def shelve(
        self,
        alarm_id: str,
        *,
        user: str,
        reason: str,
        time_s: float,
        mode: ShelveMode,
        duration_s: float | None = None,
    ) -> list[AlarmEvent]:
        """Shelve an alarm (one-shot or timed, with a reason)."""
        return self.alarms.shelve(
            alarm_id,
            user=user,
            reason=reason,
            time_s=self._advance(time_s),
            mode=mode,
            duration_s=duration_s,
        )

    def comment(self, alarm_id: str, *, user: str, text: str, time_s: float) -> list[AlarmEvent]:
        """A duty officer's comment on an alarm (journaled, no state change)."""
        return self.alarms.comment(alarm_id, user=user, text=text, time_s=self._advance(time_s))

    def unshelve(
        self, alarm_id: str, *, user: str, time_s: float, reason: str = ""
    ) -> list[AlarmEvent]:
        """Take an alarm off the shelf."""
        return self.alarms.unshelve(
            alarm_id, user=user, time_s=self._advance(time_s), reason=reason
        )

    def confirm_zone(self, zone: str, *, user: str, reason: str, time_s: float) -> EngineOutput:
        """A duty officer confirms a suspected zone by hand.

        Opens an incident for the zone (or the zone joins the open incident it belongs to, or
        one nearby), with evidence of kind ``"operator.confirm"`` naming the user and the reason
        besides the zone's standing evidence, and raises the zone's ``confirmed_leak`` alarm
        (journaled; its detail names the user), which holds while the incident is open. Only a
        zone the latest vote holds suspected can be confirmed: ``IncidentError`` otherwise, or
        without a user and a reason.
        """
        if not user.strip() or not reason.strip():
            raise IncidentError(f"confirming zone {zone} needs a user and a reason")
        if zone not in self.zones.zone_ids:
            raise IncidentError(f"no voting zone {zone!r} in site {self.site.id!r}")
        vote_now = self._last_vote
        position = self.zones.zone_ids.index(zone)
        if vote_now is None or not vote_now.suspected[position]:
            raise IncidentError(f"zone {zone} is not suspected: nothing to confirm")
        now_s = self._advance(time_s)
        text = f"confirmed by {user}: {reason}"
        evidence = Evidence(
            time_s=now_s, source_id=user, kind=OPERATOR_CONFIRM, detail=reason, zone=zone
        )
        incident = self.tracker.confirm(
            zone,
            evidence,
            vote_reason=f"{vote_now.reason(position)}; {text}",
            standing=self._zone_standing.get(zone, ()),
        )
        self._operator_confirmed[zone] = f"zone {zone}: {text}"
        output = self._conclude(now_s, [])
        return EngineOutput(output.alarm_events, self._merge_versions([incident], output.incidents))

    def close_incident(
        self, incident_id: str, *, user: str, reason: str, time_s: float
    ) -> Incident:
        """Close an incident whose zones are back to normal."""
        return self.tracker.close(
            incident_id, user=user, reason=reason, time_s=self._advance(time_s)
        )

    @property
    def last_vote(self) -> ZoneVote | None:
        """The latest zone vote."""
        return self._last_vote


def _percent(fraction: float) -> str:
    return "n/a" if not math.isfinite(fraction) else f"{fraction * PERCENT:.0f}"


def _describe_detection(detection: CameraDetection) -> str:
    parts = [
        f"{detection.camera_id} {detection.channel.value}: {detection.kind.value.replace('_', ' ')}"
    ]
    if detection.temperature_difference_k is not None:
        parts.append(f"{detection.temperature_difference_k:+.1f} K")
    if detection.path_integral_excess_mole_fraction_m is not None:
        parts.append(
            f"{detection.path_integral_excess_mole_fraction_m * 1e6:.0f} ppm·m above ambient"
        )
    if detection.location is not None:
        parts.append(
            f"at {detection.location.pipeline_id} chainage {detection.location.chainage_m:.0f} m"
        )
    parts.append(f"confidence {detection.confidence:.2f}")
    return ", ".join(parts)


def _summary(result: LocalisationResult) -> str:
    segment = result.most_probable_segment
    where = (
        f"{result.map_pipeline_id} chainage {result.map_chainage_m:.0f} m"
        if result.map_chainage_m is not None
        else f"({result.map_position_m[0]:.0f}, {result.map_position_m[1]:.0f}) m"
    )
    text = f"most probable at {where}"
    if segment is not None:
        text += f", segment {segment.segment_id} (p = {segment.probability:.2f})"
    rate = result.rate
    text += (
        f", rate {rate.median_kg_per_s:.2g} kg/s "
        f"({rate.lower_kg_per_s:.2g}-{rate.upper_kg_per_s:.2g})"
    )
    if result.flags:
        text += "; flags: " + ", ".join(sorted(flag.value for flag in result.flags))
    return text


def alarm_notification(
    engine: DetectionEngine, alarm_id: str, event: AlarmEvent | None = None
) -> dict[str, Any]:
    """The notifier's JSON for an alarm: its current state, and the event that changed it.

    Without ``event`` (re-publishing states after a start) the event id is derived from the
    manager's journal sequence, so a restart does not resend what was already delivered.
    """
    snapshot = engine.alarms.alarm(alarm_id)
    definition = snapshot.definition
    record = snapshot.record
    sequence = engine.alarms.sequence if event is None else event.sequence
    return {
        "alarm_id": alarm_id,
        "event_id": f"{engine.site.id}:alarm:{alarm_id}:{sequence}",
        "time_s": event.time_s if event is not None else (record.last_change_s or 0.0),
        "event": event.event.value if event is not None else "state",
        "state": snapshot.state.value,
        "priority": definition.priority.value,
        "kind": definition.kind.value,
        "device_id": definition.device_id,
        "zone": definition.zone,
        "latching": definition.latching,
        "active": record.active,
        "acknowledged": record.acknowledged,
        "first_out": record.first_out,
        "value": record.value,
        "detail": record.detail,
        "user": event.user if event is not None else None,
        "reason": event.reason if event is not None else None,
        "unacknowledged_since_s": record.unacknowledged_since_s,
        "lel_basis": engine.lel_basis.value,
        "description": definition.description,
    }


def incident_notification(incident: Incident) -> dict[str, Any]:
    """The notifier's JSON for an incident version."""
    body = incident.to_json()
    body["event_id"] = f"{incident.id}:v{incident.version}"
    body["time_s"] = incident.updated_time_s
    return body
