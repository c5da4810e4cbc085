"""The broker-less scenario stream: the same messages the fleet publishes, decodable by ingest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipesentinel.hardware.offline import scenario_messages, scenario_records
from pipesentinel.hardware.scenario import load_scenario, parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.contract import decode
from pipesentinel.ingest.records import (
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    Rejection,
    WindReading,
)
from pipesentinel.settings import IngestSettings
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


def test_records_are_those_of_decode_per_message(site: Site) -> None:
    # scenario_records uses one cached-topic Decoder; the records must be exactly what the pure
    # decode() gives message by message (a leak scenario: gas, wind, laser and status messages).
    scenario = load_scenario(SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml", site)
    limits = IngestSettings()
    expected: list[Record | Rejection] = []
    for step in scenario_messages(
        SiteSimulation(site, scenario, frames=False), origin_epoch_s=ORIGIN_EPOCH_S, until_s=60.0
    ):
        expected.extend(
            decode(m.topic, m.payload, m.time_s, sites=site, limits=limits) for m in step.messages
        )
    actual: list[Record] = []
    for _, records in scenario_records(
        SiteSimulation(site, scenario, frames=False),
        origin_epoch_s=ORIGIN_EPOCH_S,
        limits=limits,
        until_s=60.0,
    ):
        actual.extend(records)
    assert not [r for r in expected if isinstance(r, Rejection)]
    assert actual == expected
    assert {type(r) for r in actual} == {GasReading, WindReading, LaserReading, DeviceStatusChange}


def test_a_rejected_simulated_message_is_an_error_naming_its_topic(site: Site) -> None:
    scenario = load_scenario(SITE_DIR / "scenarios" / "quiet_day.toml", site)
    # Limits no validated settings file could hold (model_construct skips validation): every JSON
    # payload is too large, so the first reading is rejected.
    limits = IngestSettings.model_construct(max_json_payload_bytes=8)
    simulation = SiteSimulation(site, scenario, frames=False)
    with pytest.raises(ValueError, match=r"rejected a simulated message on pipesentinel/v1/"):
        for _ in scenario_records(
            simulation, origin_epoch_s=ORIGIN_EPOCH_S, limits=limits, until_s=10.0
        ):
            pass
