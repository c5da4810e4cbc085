"""The device fleet end to end: real Mosquitto with the site's passwords and ACL, the ingest
service, the SQLite store. Nothing published may be lost, rejected or stored twice."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipesentinel.hardware.fleet import DeviceFleet, ScenarioClock, run_scenario
from pipesentinel.hardware.scenario import load_scenario, parse_scenario
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.mosquitto_auth import MqttUser, write_auth_files
from pipesentinel.ingest.service import IngestService, MqttProtocol
from pipesentinel.ingest.storage.frames import FileFrameStore
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import MessageKind
from pipesentinel.settings import Settings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

REPO = Path(__file__).resolve().parents[2]
LAKESIDE = REPO / "tests" / "site_fixtures" / "lakeside"
WANLI = REPO / "sites" / "wanli"
SECRET = "fleet-test-secret"
SERVICE = MqttUser("pipesentinel-service", "fleet-test-service-password")
WAIT_S = 60.0  # generous deadline of a wait, never asserted
START_EPOCH_S = 1_717_900_000.0

MosquittoFactory = Callable[..., MosquittoProcess]


def secured_broker(factory: MosquittoFactory, site: Site, directory: Path) -> MosquittoProcess:
    password_file, acl_file = directory / "passwd", directory / "acl"
    write_auth_files(
        site,
        device_secret=SECRET,
        service_user=SERVICE,
        password_file=password_file,
        acl_file=acl_file,
    )
    return factory(password_file=password_file, acl_file=acl_file)


def ingest_for(
    broker: MosquittoProcess, site: Site, directory: Path, clock: ScenarioClock
) -> tuple[IngestService, SQLiteStore]:
    settings = Settings(
        broker={
            "url": broker.url,
            "username": SERVICE.username,
            "password": SERVICE.password,
            "client_id": f"ingest-{site.id}",
        },
        ingest={"dead_letter_path": directory / "dead.sqlite3", "batch_max_wait_s": 0.05},
    )
    store = SQLiteStore(directory / "telemetry.sqlite3")
    service = IngestService(
        settings=settings,
        sites=site,
        store=store,
        frame_store=FileFrameStore(directory / "frames", kept_per_channel=5),
        protocol=MqttProtocol.V5,
        clock=clock.now,
    ).start()
    assert service.wait_connected(WAIT_S)
    return service, store


def play(
    site: Site,
    scenario_data: dict[str, Any] | Path,
    broker: MosquittoProcess,
    tmp: Path,
    *,
    seconds: float,
) -> tuple[Any, Any, SQLiteStore]:
    scenario = (
        load_scenario(scenario_data, site)
        if isinstance(scenario_data, Path)
        else parse_scenario(scenario_data, site, source="fleet-test")
    )
    clock = ScenarioClock(origin_epoch_s=START_EPOCH_S, speed=math.inf)
    service, store = ingest_for(broker, site, tmp, clock)
    fleet = DeviceFleet(site, broker_url=broker.url, device_secret=SECRET).start(timeout_s=WAIT_S)
    try:
        simulation = SiteSimulation(site, scenario, frames=True)
        run_scenario(simulation, fleet, clock, stop=threading.Event(), until_s=seconds)
        fleet_stats = fleet.stats()
    finally:
        fleet.stop()
    deadline = time.monotonic() + WAIT_S
    published = sum(fleet_stats.published_by_kind.values())
    while service.stats().accepted + service.stats().rejected < published:
        assert time.monotonic() < deadline, (service.stats(), fleet_stats)
        time.sleep(0.05)
    assert service.wait_idle(WAIT_S)
    stats = service.stats()
    service.stop()
    return fleet_stats, stats, store


def test_lakeside_fleet_loses_nothing_and_offline_fires_the_will(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    site = load_site(LAKESIDE)
    broker = secured_broker(mosquitto_factory, site, tmp_path)
    scenario = {
        "scenario": {
            "name": "fleet",
            "description": "fleet end to end",
            "site_id": site.id,
            "start_time_utc": "2024-06-09T15:00:00Z",
            "duration_s": 40.0,
            "seed": 3,
        },
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": 3.0,
                "direction_from_deg": 270.0,
                "stability_class": "D",
            }
        ],
        "leaks": [
            {
                "id": "LK",
                "east_m": 60.0,
                "north_m": 0.0,
                "mass_fractions": {"methane": 1.0},
                "emission_rate_kg_per_s": 0.2,
                "start_s": 5.0,
            }
        ],
        "faults": [{"device_id": "D3", "kind": "offline", "start_s": 20.0}],
    }
    fleet_stats, stats, store = play(site, scenario, broker, tmp_path, seconds=40.0)
    try:
        published = sum(fleet_stats.published_by_kind.values())
        assert fleet_stats.publish_errors == 0
        assert stats.rejected == 0, stats.rejected_by_reason
        # Every reading, frame and status message published was stored exactly once.
        status_messages = stats.accepted_by_kind.get(MessageKind.STATUS, 0)
        assert stats.accepted - status_messages == published
        assert store.count(site_id=site.id) == stats.accepted

        # D3's connection dropped at 20 s (the broker published its will, "offline"); the others
        # said "offline" only when the fleet stopped at the end.
        def first_offline_s(device_id: str) -> float:
            changes = store.status_changes(
                site_id=site.id, start_s=0.0, end_s=START_EPOCH_S + 1e6, device_id=device_id
            )
            assert changes[0].online, changes  # the retained "online" of the connection
            return min(c.received_time_s for c in changes if not c.online) - START_EPOCH_S

        assert 20.0 <= first_offline_s("D3") < 40.0
        for device_id in ("D1", "D2", "W1", "C1"):
            assert first_offline_s(device_id) >= 40.0
    finally:
        store.close()


def test_the_reference_site_runs_with_its_generated_acl(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    site = load_site(WANLI)
    broker = secured_broker(mosquitto_factory, site, tmp_path)
    scenario_path = WANLI / "scenarios" / "p1_associated_gas_leak.toml"
    fleet_stats, stats, store = play(site, scenario_path, broker, tmp_path, seconds=15.0)
    try:
        assert fleet_stats.devices == 40
        assert stats.rejected == 0, stats.rejected_by_reason
        states = store.latest_status(site_id=site.id)
        assert {device.id for device in site.devices} <= set(states)
    finally:
        store.close()
