"""The simulated world: determinism, physics wiring, schedules, and contract conformance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipesentinel.hardware.fleet import encode_output
from pipesentinel.hardware.scenario import Scenario, parse_scenario
from pipesentinel.hardware.world import (
    BACKGROUND_METHANE_MOLE_FRACTION,
    DeviceOutput,
    SiteSimulation,
)
from pipesentinel.ingest.contract import decode
from pipesentinel.ingest.records import Rejection
from pipesentinel.ingest.topics import MessageKind, device_topic
from pipesentinel.settings import IngestSettings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

LAKESIDE = Path(__file__).resolve().parents[1] / "site_fixtures" / "lakeside"
START_EPOCH_S = 1_717_900_000.0  # 2024-06-09T02:26:40Z, 00:26 local at Lakeside (night)


@pytest.fixture(scope="module")
def lakeside() -> Site:
    return load_site(LAKESIDE)


def scenario(site: Site, **extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "scenario": {
            "name": "world-test",
            "description": "test",
            "site_id": site.id,
            "start_time_utc": "2024-06-09T15:00:00Z",
            "duration_s": 120.0,
            "seed": 7,
        },
        # Wind from the west (270 deg): the plume goes east.
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": 3.0,
                "direction_from_deg": 270.0,
                "stability_class": "D",
            }
        ],
    }
    data.update(extra)
    return parse_scenario(data, site, source="world-test")


# D1 at chainage 100 m = (100, 0); D2 at 250 m (+2 m north); D3 at 500 m = (300, 200).
LEAK_WEST_OF_D1 = {
    "leaks": [
        {
            "id": "LK",
            "east_m": 60.0,
            "north_m": 0.0,
            "mass_fractions": {"methane": 1.0},
            "emission_rate_kg_per_s": 0.2,
            "start_s": 10.0,
        }
    ]
}


def run(simulation: SiteSimulation, steps: int) -> list[DeviceOutput]:
    outputs: list[DeviceOutput] = []
    for _ in range(steps):
        outputs += simulation.step()
    return outputs


def test_same_seed_same_outputs(lakeside: Site) -> None:
    first = run(SiteSimulation(lakeside, scenario(lakeside, **LEAK_WEST_OF_D1), frames=True), 30)
    second = run(SiteSimulation(lakeside, scenario(lakeside, **LEAK_WEST_OF_D1), frames=True), 30)
    assert first == second


def test_clean_air_is_background_methane(lakeside: Site) -> None:
    simulation = SiteSimulation(lakeside, scenario(lakeside), frames=False)
    run(simulation, 5)
    assert simulation.truth is not None
    np.testing.assert_allclose(
        simulation.truth.detector_mole_fraction[:, 0], BACKGROUND_METHANE_MOLE_FRACTION
    )
    assert simulation.truth.puff_count == 0


def test_a_leak_reaches_the_downwind_detector_and_not_the_upwind_one(lakeside: Site) -> None:
    simulation = SiteSimulation(lakeside, scenario(lakeside, **LEAK_WEST_OF_D1), frames=False)
    run(simulation, 90)
    assert simulation.truth is not None
    excess = simulation.truth.detector_mole_fraction[:, 0] - BACKGROUND_METHANE_MOLE_FRACTION
    ids = [detector.id for detector in lakeside.gas_detectors]
    # Hand-worked: D1 is 40 m straight downwind of a 0.2 kg/s ground release, urban Briggs class D
    # sigma_y = 0.16 x / sqrt(1 + 0.0004 x) = 6.35 m, sigma_z = 0.14 x / sqrt(1 + 0.0003 x) = 5.57;
    # steady plume at the ground C = Q / (pi sigma_y sigma_z u) = 6.0e-4 kg m-3 at u = 3 m/s, i.e.
    # 8.8e-4 mol/mol with methane at 0.68 kg m-3. The puffs, the slower wind near the ground and
    # the T90-free truth may differ from this by a small factor, not by ten.
    d1 = excess[ids.index("D1")]
    assert 8.8e-4 / 3 < d1 < 8.8e-4 * 3
    # D3 is 400 m east and 200 m north: out of a westerly plume; nothing upwind either.
    assert excess[ids.index("D3")] < 1e-3 * d1


def test_reading_schedules_follow_the_site_periods(lakeside: Site) -> None:
    simulation = SiteSimulation(lakeside, scenario(lakeside), frames=True)
    outputs = run(simulation, 60)
    counts: dict[tuple[MessageKind, str], int] = {}
    for output in outputs:
        counts[output.kind, output.device_id] = counts.get((output.kind, output.device_id), 0) + 1
    for detector in lakeside.gas_detectors:  # 1 s period, warm-up included (status warmup)
        assert counts[MessageKind.GAS, detector.id] == 60
    (station,) = lakeside.wind_stations
    assert counts[MessageKind.WIND, station.id] == math.floor(60 / station.sample_period_s)
    (camera,) = lakeside.cameras
    assert counts[MessageKind.LASER, camera.id] == 60
    assert counts[MessageKind.VISIBLE, camera.id] == math.floor(60 / camera.frame_period_s)
    assert counts[MessageKind.THERMAL, camera.id] == counts[MessageKind.VISIBLE, camera.id]


def test_offline_devices_send_nothing(lakeside: Site) -> None:
    faults = {
        "faults": [{"device_id": "D2", "kind": "offline", "start_s": 10.0, "duration_s": 20.0}]
    }
    simulation = SiteSimulation(lakeside, scenario(lakeside, **faults), frames=False)
    times = [o.time_s for o in run(simulation, 40) if o.device_id == "D2"]
    assert times == [t for t in range(1, 41) if not 10 <= t < 30]


def test_every_output_is_valid_under_the_mqtt_contract(lakeside: Site) -> None:
    simulation = SiteSimulation(lakeside, scenario(lakeside, **LEAK_WEST_OF_D1), frames=True)
    outputs = run(simulation, 40)
    assert {o.kind for o in outputs} == {
        MessageKind.GAS,
        MessageKind.WIND,
        MessageKind.LASER,
        MessageKind.VISIBLE,
        MessageKind.THERMAL,
    }
    limits = IngestSettings()
    for seq, output in enumerate(outputs, start=1):
        ts_ms = round((START_EPOCH_S + output.time_s) * 1000)
        payload = encode_output(output, ts_ms=ts_ms, seq=seq)
        topic = device_topic(lakeside.id, output.kind, output.device_id)
        result = decode(topic, payload, ts_ms / 1000, sites=lakeside, limits=limits)
        assert not isinstance(result, Rejection), (output, result)


def test_wrong_site_is_refused(lakeside: Site) -> None:
    wanli = load_site(Path(__file__).resolve().parents[2] / "sites" / "wanli")
    with pytest.raises(ValueError, match="is for site 'lakeside'"):
        SiteSimulation(wanli, scenario(lakeside))
