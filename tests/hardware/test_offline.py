"""The broker-less scenario stream: the same messages the fleet publishes, decodable by ingest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipesentinel.hardware.offline import scenario_messages, scenario_records
from pipesentinel.hardware.scenario import load_scenario, parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.records import DeviceStatusChange, GasReading, LaserReading, WindReading
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
ORIGIN_EPOCH_S = 1.8e9


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


def test_every_message_decodes_and_rates_match_the_site(site: Site) -> None:
    scenario = load_scenario(SITE_DIR / "scenarios" / "quiet_day.toml", site)
    simulation = SiteSimulation(site, scenario, frames=False)
    counts: Counter[type] = Counter()
    for _, records in scenario_records(simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=100.0):
        counts.update(type(record) for record in records)
    # 20 detectors every 2 s and 10 every 5 s for 100 s; lasers at 1 Hz; wind per its period.
    assert counts[GasReading] == 20 * 50 + 10 * 20
    assert counts[LaserReading] == len(site.cameras) * 100
    assert counts[DeviceStatusChange] == len(site.devices)  # everyone comes online once
    assert counts[WindReading] == sum(round(100.0 / s.sample_period_s) for s in site.wind_stations)


def test_offline_device_sends_its_will_and_nothing_else(site: Site) -> None:
    scenario = parse_scenario(
        {
            "scenario": {
                "name": "gd03-offline",
                "site_id": site.id,
                "start_time_utc": "2024-04-09T00:00:00Z",
                "duration_s": 60.0,
                "seed": 7,
            },
            "wind": [
                {
                    "time_s": 0.0,
                    "speed_m_per_s": 3.0,
                    "direction_from_deg": 270.0,
                    "stability_class": "D",
                }
            ],
            "faults": [
                {"device_id": "GD03", "kind": "offline", "start_s": 20.0, "duration_s": 20.0}
            ],
        },
        site,
    )
    simulation = SiteSimulation(site, scenario, frames=False)
    statuses: list[tuple[float, bytes]] = []
    gas_times: list[float] = []
    for step in scenario_messages(simulation, origin_epoch_s=ORIGIN_EPOCH_S):
        for message in step.messages:
            if message.topic.endswith("/status/GD03"):
                statuses.append((message.time_s - ORIGIN_EPOCH_S, message.payload))
            elif message.topic.endswith("/gas/GD03"):
                gas_times.append(message.time_s - ORIGIN_EPOCH_S)
    assert [payload for _, payload in statuses] == [b"online", b"offline", b"online"]
    assert statuses[1][0] == pytest.approx(20.0, abs=1.0)
    assert not [t for t in gas_times if 21.0 < t < 40.0]
    assert any(t > 40.0 for t in gas_times)
