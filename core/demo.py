"""``pipesentinel demo``: the whole chain in one process on embedded defaults.

An embedded MQTT broker (unless ``broker.url`` is set), the ingest service with the configured
store (SQLite by default), and the simulated devices of the site playing a scenario on an
accelerated clock, with a live terminal status. The devices' timestamps and the ingest service
share the scenario clock, so validation (``ts`` too far in the future or past) holds at any speed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipesentinel.detection.gases import (
    LelBasis,
    format_percent_lel,
    mole_fraction_to_percent_lel,
)
from pipesentinel.hardware.fleet import DeviceFleet, ScenarioClock, run_scenario
from pipesentinel.hardware.scenario import Scenario, load_scenario, scenario_paths
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.embedded_broker import EmbeddedBroker
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.ingest.response_service import (
    ResponseService,
    attach_response,
    response_context,
)
from pipesentinel.ingest.service import IngestService, IngestStats, MqttProtocol
from pipesentinel.ingest.storage.factory import open_frame_store, open_telemetry_store
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.settings import Settings
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site
from pipesentinel.units import DEGREE, PPM, PPM_M

logger = logging.getLogger(__name__)

DEFAULT_SCENARIO = "p1_associated_gas_leak"
DEFAULT_SPEED = 10.0  # scenario seconds per wall second: the P1 leak starts ~30 s into the demo
DEFAULT_DURATION_S = 900.0  # scenario seconds (90 s of wall time at the default speed)
REFRESH_PER_S = 4
ROWS_SHOWN = 14  # the gas detectors with the highest readings
DEMO_OFFLINE_MARGIN_WALL_S = 3.0  # wall-clock stalls tolerated (GC, frames, a loaded machine)
ALARM_ROWS_SHOWN = 12  # alarms not normal, highest priority first


def resolve_scenario(site_dir: Path, name: str) -> Path:
    """A scenario path from a file path or a name among the site's scenarios."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    for path in scenario_paths(site_dir):
        if path.stem == name or path.stem == name.replace("-", "_"):
            return path
    known = ", ".join(path.stem for path in scenario_paths(site_dir))
    raise ValueError(f"no scenario {name!r} in {site_dir / 'scenarios'} (known: {known})")


@dataclass
class LatestReadings:
    """The newest validated record of each device, fed by the ingest service's batches."""

    gas: dict[str, GasReading] = field(default_factory=dict)
    wind: dict[str, WindReading] = field(default_factory=dict)
    laser: dict[str, LaserReading] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    online: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, records: Sequence[Record]) -> None:
        """Ingest-service subscriber: remember the newest record of each device."""
        with self.lock:
            for record in records:
                if isinstance(record, GasReading):
                    self.gas[record.device_id] = record
                elif isinstance(record, WindReading):
                    self.wind[record.device_id] = record
                elif isinstance(record, LaserReading):
                    self.laser[record.device_id] = record
                elif isinstance(record, CameraFrame):
                    self.frames[record.device_id] = self.frames.get(record.device_id, 0) + 1
                elif isinstance(record, DeviceStatusChange):
                    self.online[record.device_id] = record.online


def _percent_lel(mole_fraction: float, gas: Gas, basis: LelBasis) -> float:
    return float(mole_fraction_to_percent_lel(max(mole_fraction, 0.0), gas, basis=basis))


def status_view(
    *,
    site: Site,
    scenario: Scenario,
    simulation: SiteSimulation,
    latest: LatestReadings,
    stats: IngestStats,
    basis: LelBasis,
    broker_url: str,
    store_name: str,
    until_s: float,
    detection: DetectionService | None = None,
    responder: ResponseService | None = None,
) -> Group:
    """The live terminal status: scenario, ingest, detectors, wind, lasers, alarms, response."""
    header = Text.assemble(
        ("PipeSentinel demo  ", "bold"),
        f"site {site.id}  scenario {scenario.name}  t = {simulation.time_s:6.0f} s "
        f"of {min(until_s, scenario.duration_s):.0f} s  broker {broker_url}  store {store_name}\n",
        f"ingest: {stats.accepted} accepted, {stats.rejected} rejected "
        f"({', '.join(f'{k.value} {v}' for k, v in stats.rejected_by_reason.items()) or 'none'}), "
        f"{stats.records_written} stored, queue {stats.queue_depth}/{stats.queue_capacity}, "
        f"{'connected' if stats.connected else 'DISCONNECTED'}",
    )
    with latest.lock:
        gas = dict(latest.gas)
        wind = dict(latest.wind)
        laser = dict(latest.laser)
        frames = dict(latest.frames)
        online = dict(latest.online)
    detectors = Table(title=f"Gas detectors (highest methane first; %LEL on {basis.value})")
    for column in ("detector", "zone", "online", "status", "CH4 ppm", "CH4 %LEL", "C3H8 ppm"):
        detectors.add_column(
            column, justify="right" if "ppm" in column or "%" in column else "left"
        )
    ranked = sorted(gas.values(), key=lambda r: r.methane_mole_fraction, reverse=True)
    zones = {detector.id: detector.zone for detector in site.gas_detectors}
    for reading in ranked[:ROWS_SHOWN]:
        percent = _percent_lel(reading.methane_mole_fraction, Gas.METHANE, basis)
        style = "bold red" if percent >= 20.0 else ("yellow" if percent >= 1.0 else "")
        detectors.add_row(
            reading.device_id,
            zones.get(reading.device_id, ""),
            "yes" if online.get(reading.device_id, False) else "NO",
            reading.status.value + (f" ({reading.fault_code})" if reading.fault_code else ""),
            f"{PPM.from_si(reading.methane_mole_fraction):,.0f}",
            format_percent_lel(percent, basis, decimals=1).split(" (")[0],
            f"{PPM.from_si(reading.propane_mole_fraction):,.0f}",
            style=style,
        )
    silent = [d.id for d in site.gas_detectors if not online.get(d.id, False)]
    others = Table(title="Wind stations and cameras")
    for column in ("device", "reading"):
        others.add_column(column)
    for device_id, w in sorted(wind.items()):
        others.add_row(
            device_id,
            f"{w.speed_m_per_s:.1f} m/s from {DEGREE.from_si(w.direction_from_rad):.0f} deg, "
            f"sigma-theta {DEGREE.from_si(w.sigma_theta_rad):.1f} deg",
        )
    for camera in site.cameras:
        beam = laser.get(camera.id)
        text = (
            "no laser reading yet"
            if beam is None
            else (
                f"laser {PPM_M.from_si(beam.path_integral_mole_fraction_m):,.0f} ppm.m "
                f"({beam.status.value})"
            )
        )
        others.add_row(camera.id, f"{text}, {frames.get(camera.id, 0)} frames stored")
    truth = simulation.truth
    footer = Text(
        f"offline gas detectors: {', '.join(silent) or 'none'}\n"
        + (
            ""
            if truth is None
            else f"truth: wind {truth.wind_speed_m_per_s:.1f} m/s from "
            f"{np.degrees(truth.wind_direction_from_rad):.0f} deg, {truth.puff_count} puffs "
            f"in flight; leaks active: "
            f"{', '.join(leak.id for leak in scenario.active_leaks(simulation.time_s)) or 'none'}"
        )
        + "\nCtrl-C stops cleanly."
    )
    parts: list[Table | Text] = [header, detectors, others]
    if detection is not None:
        parts += _alarm_views(detection, responder)
    return Group(*parts, footer)


_PRIORITY_ORDER: Final = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _alarm_views(
    detection: DetectionService, responder: ResponseService | None = None
) -> list[Table | Text]:
    """Alarms not normal (highest priority first), open incidents and their response."""
    snapshots = detection.alarm_snapshots()
    shown = [s for s in snapshots if s.state.value != "normal"]
    shown.sort(key=lambda s: (_PRIORITY_ORDER[s.definition.priority.value], s.alarm_id))
    alarms = Table(title=f"Alarms not normal: {len(shown)} (ISA-18.2 states)")
    for column in ("priority", "alarm", "state", "first out", "detail"):
        alarms.add_column(column)
    for snapshot in shown[:ALARM_ROWS_SHOWN]:
        priority = snapshot.definition.priority.value
        alarms.add_row(
            priority,
            snapshot.alarm_id,
            snapshot.state.value,
            "yes" if snapshot.record.first_out else "",
            snapshot.record.detail[:70],
            style="bold red" if priority in {"critical", "high"} else "",
        )
    lines = []
    for incident in detection.open_incidents():
        last = incident.timeline[-1][1] if incident.timeline else ""
        lines.append(f"INCIDENT {incident.id} zones {', '.join(incident.zones)}: {last}"[:160])
        response = None if responder is None else responder.latest.get(incident.id)
        if response is not None:
            lines.append(
                f"  RESPONSE v{response.incident_version} ({response.severity.value}): plan "
                f"{response.selection.plan_id} {response.selection.title!r}; close "
                f"{', '.join(response.isolation.valves_to_close) or 'no valve'}; evacuate "
                f"{response.exposure.persons_to_evacuate} people"[:160]
            )
    return [alarms, Text("\n".join(lines) or "no open incident", style="bold")]


def _play(
    simulation: SiteSimulation,
    fleet: DeviceFleet,
    clock: ScenarioClock,
    *,
    until_s: float,
    live: bool,
    console: Console,
    view: Callable[[], Group],
) -> None:
    """Play the scenario in a thread while the live view refreshes; Ctrl-C stops it cleanly."""
    stop = threading.Event()
    player = threading.Thread(
        target=run_scenario,
        args=(simulation, fleet, clock),
        kwargs={"stop": stop, "until_s": until_s},
        name="scenario",
        daemon=True,
    )
    player.start()
    try:
        if live:
            with Live(view(), console=console, refresh_per_second=REFRESH_PER_S) as screen:
                while player.is_alive():
                    player.join(1.0 / REFRESH_PER_S)
                    screen.update(view())
        else:
            player.join()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stop.set()
        player.join()


def _demo_detection_settings(settings: Settings, speed: float) -> Settings:
    """Fresh journals and an offline margin for an accelerated clock."""
    for path in (
        settings.alarms.journal_path,
        settings.alarms.incidents_path,
        settings.response.responses_path,
        settings.response.plan_decisions_path,
    ):
        # A demo starts afresh: its scenario clock begins now, so yesterday's journal would be
        # in its future (the journal refuses time going back).
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    # Silence is judged in scenario seconds; network and scheduling jitter is in wall seconds.
    margin_s = DEMO_OFFLINE_MARGIN_WALL_S * max(speed, 1.0)
    return settings.model_copy(
        update={
            "detection": settings.detection.model_copy(
                # The demo renders a frame every frame_period_s x speed (frame_period_factor).
                update={"offline_margin_s": margin_s, "expect_frames": speed <= 1.0}
            )
        }
    )


class _DemoResponse:
    """The emergency response of the demo, on its own stores."""

    def __init__(self, settings: Settings, site: Site, notifier: Notifier) -> None:
        self.store = ResponseStore(settings.response.responses_path)
        self.decisions = SqlitePlanDecisionLog(settings.response.plan_decisions_path)
        self.service = ResponseService(
            context=response_context(settings, site),
            store=self.store,
            decisions=self.decisions,
            notifier=notifier,
        )

    def start(self, detection: DetectionService) -> None:
        self.service.start()
        attach_response(detection, self.service)

    def stop(self) -> None:
        self.service.stop()
        self.store.close()
        self.decisions.close()


def _demo_broker(
    settings: Settings,
) -> tuple[Settings, EmbeddedBroker | None, MqttProtocol]:
    """The configured broker, or an embedded one (started) when none is configured."""
    if settings.broker.url is not None:
        return settings, None, MqttProtocol.V5
    broker = EmbeddedBroker().start()
    settings = settings.model_copy(
        update={"broker": settings.broker.model_copy(update={"url": broker.url})}
    )
    return settings, broker, MqttProtocol.V311  # amqtt speaks MQTT 3.1.1


def run_demo(
    settings: Settings,
    *,
    scenario_name: str = DEFAULT_SCENARIO,
    duration_s: float = DEFAULT_DURATION_S,
    speed: float = DEFAULT_SPEED,
    console: Console | None = None,
    live: bool = True,
) -> IngestStats:
    """Run the demo until ``duration_s`` of scenario time or Ctrl-C; returns the ingest stats."""
    console = console or Console()
    site = load_site(settings.site_dir)
    scenario = load_scenario(resolve_scenario(settings.site_dir, scenario_name), site)
    settings, broker, protocol = _demo_broker(settings)
    broker_url = settings.broker.url or ""
    for path in (settings.storage.sqlite_path, settings.ingest.dead_letter_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    clock = ScenarioClock(origin_epoch_s=time.time(), speed=speed)
    settings = _demo_detection_settings(settings, speed)
    simulation = SiteSimulation(site, scenario, frame_period_factor=max(speed, 1.0))
    latest = LatestReadings()
    store = open_telemetry_store(settings.storage)
    service = IngestService(
        settings=settings,
        sites=site,
        store=store,
        frame_store=open_frame_store(settings.storage),
        protocol=protocol,
        clock=clock.now,
    )
    service.subscribe(latest.update)
    notifier = Notifier(
        settings=settings.notifications,
        site_id=site.id,
        broker=settings.broker,
        protocol=protocol,
        clock=clock.now,
    )
    detection = DetectionService(settings=settings, site=site, notifier=notifier, clock=clock.now)
    service.subscribe(detection.submit)
    response = _DemoResponse(settings, site, notifier)
    fleet = DeviceFleet(
        site,
        broker_url=broker_url,
        device_secret=settings.device_secret.get_secret_value(),
        protocol=protocol,
    )
    store_name = (
        str(settings.storage.sqlite_path)
        if settings.storage.backend == "sqlite"
        else settings.storage.influx_url
    )

    def view() -> Group:
        return status_view(
            site=site,
            scenario=scenario,
            simulation=simulation,
            latest=latest,
            stats=service.stats(),
            basis=settings.lel_basis,
            broker_url=broker_url,
            store_name=store_name,
            until_s=duration_s,
            detection=detection,
            responder=response.service,
        )

    final_view: Group | str = ""
    try:
        notifier.start()
        detection.start()
        response.start(detection)
        service.start()
        if not service.wait_connected(30.0):
            raise RuntimeError(f"the ingest service could not connect to {broker_url}")
        fleet.start()
        _play(simulation, fleet, clock, until_s=duration_s, live=live, console=console, view=view)
        final_view = view()  # before the devices say "offline" on the way out
    finally:
        fleet.stop()
        service.wait_idle(10.0)
        service.stop()
        detection.stop()
        response.stop()
        notifier.stop()
        stats = service.stats()
        store.close()
        if broker is not None:
            broker.stop()
    if not live:
        console.print(final_view)
    console.print(
        f"demo finished at t = {simulation.time_s:.0f} s: {stats.accepted} messages accepted, "
        f"{stats.rejected} rejected, {stats.records_written} records stored in {store_name}; "
        f"dead letters in {settings.ingest.dead_letter_path}"
    )
    return stats
