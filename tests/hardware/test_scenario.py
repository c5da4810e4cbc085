"""Tests of the scenario format: loading, validation messages, shipped scenarios, determinism."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from pipesentinel.hardware.camera_model import IntrusionKind
from pipesentinel.hardware.gas_sensor import GasFaultKind, GasSensorArray
from pipesentinel.hardware.scenario import (
    FaultKind,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_paths,
    spawn_generators,
)
from pipesentinel.hardware.wind_model import StabilityClass, WindModel
from pipesentinel.site import (
    Camera,
    DetectorPlacement,
    Gas,
    GasDetector,
    GeoOrigin,
    Pipeline,
    Product,
    Site,
    WindStation,
)

WANLI = Path(__file__).resolve().parents[2] / "sites" / "wanli"


def small_site() -> Site:
    """One straight 1000 m line P1 along +east, two detectors, a wind station, a camera."""
    line = Pipeline(
        id="P1",
        name="line",
        product=Product.CRUDE_OIL,
        vertices_m=np.array([[0.0, 0.0], [1000.0, 0.0]]),
        diameter_m=0.4,
        wall_thickness_m=0.007,
        depth_of_cover_m=1.5,
        operating_pressure_pa=4e6,
        valves=(),
    )
    detectors = tuple(
        GasDetector(
            id=f"GD0{i}",
            placement=DetectorPlacement.PIPELINE,
            position_m=np.array([100.0 * i, 0.0, 0.4]),
            gases=(Gas.METHANE, Gas.PROPANE),
            full_scale_ppm=50_000.0,
            t90_s=10.0,
            sample_period_s=2.0,
            pipeline_id="P1",
            chainage_m=100.0 * i,
        )
        for i in (1, 2)
    )
    return Site(
        id="test",
        name="test",
        origin=GeoOrigin(0.0, 0.0, 0.0),
        pipelines=(line,),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=detectors,
        wind_stations=(
            WindStation(
                id="WS1",
                position_m=np.array([500.0, 50.0]),
                mast_height_m=10.0,
                sample_period_s=10.0,
                averaging_period_s=60.0,
            ),
        ),
        cameras=(
            Camera(
                id="CAM1",
                position_m=np.array([300.0, -50.0]),
                mounting_height_m=10.0,
                heading_deg=0.0,
                tilt_deg=5.0,
                horizontal_fov_deg=23.0,
                vertical_fov_deg=18.0,
                laser_range_m=150.0,
                frame_period_s=5.0,
                resolution_px=(640, 512),
            ),
        ),
    )


def valid() -> dict[str, Any]:
    return {
        "scenario": {
            "name": "t",
            "description": "d",
            "site_id": "test",
            "start_time_utc": datetime(2024, 5, 14, 8, tzinfo=UTC),
            "duration_s": 600.0,
            "seed": 7,
        },
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": 3.0,
                "direction_from_deg": 90.0,
                "stability_class": "D",
            },
            {
                "time_s": 300.0,
                "speed_m_per_s": 4.0,
                "direction_from_deg": 350.0,
                "stability_class": "E",
                "sigma_theta_deg": 6.0,
            },
        ],
        "leaks": [
            {
                "id": "L1",
                "pipeline_id": "P1",
                "chainage_m": 250.0,
                "mass_fractions": {"methane": 0.75, "propane": 0.25},
                "emission_rate_kg_per_s": 0.1,
                "start_s": 60.0,
                "duration_s": 300.0,
            }
        ],
        "faults": [
            {"device_id": "GD01", "kind": "stuck", "start_s": 100.0, "duration_s": 50.0},
            {"device_id": "GD01", "kind": "spikes", "start_s": 150.0, "spike_probability": 0.1},
            {"device_id": "WS1", "kind": "offline", "start_s": 0.0, "duration_s": 10.0},
            {"device_id": "CAM1", "kind": "beam_blocked", "start_s": 20.0},
        ],
        "intrusions": [
            {
                "id": "X1",
                "kind": "excavator",
                "pipeline_id": "P1",
                "chainage_m": 300.0,
                "offset_m": 5.0,
                "start_s": 0.0,
            }
        ],
        "fires": [{"id": "F1", "east_m": 400.0, "north_m": 10.0, "start_s": 30.0}],
    }


def problems_of(data: dict[str, Any], site: Site | None = None) -> tuple[str, ...]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, site or small_site(), source="x.toml")
    return caught.value.problems


def test_valid_scenario_is_parsed_in_si() -> None:
    scenario = parse_scenario(valid(), small_site(), source="x.toml")
    assert scenario.start_time_s == datetime(2024, 5, 14, 8, tzinfo=UTC).timestamp()
    assert scenario.time_step_s == 1.0  # default
    assert scenario.n_steps == 600
    assert_allclose(scenario.wind.direction_from_rad, [math.pi / 2, 350.0 * math.pi / 180.0])
    assert scenario.wind.stability_class == (StabilityClass.D, StabilityClass.E)
    assert_allclose(scenario.wind.sigma_theta_rad[1], 6.0 * math.pi / 180.0)
    leak = scenario.leaks[0]
    assert_allclose(leak.position_m, [250.0, 0.0, 0.0])
    assert (leak.start_s, leak.end_s) == (60.0, 360.0)
    assert_allclose(leak.emission_rate_kg_per_s_by_gas, [0.075, 0.025])
    # offset_m is to the left of increasing chainage: the line runs east, so left is north.
    assert_allclose(scenario.intrusions[0].position_m, [300.0, 5.0])
    assert_allclose(scenario.intrusions[0].heading_rad, math.pi / 2)  # along the line
    assert scenario.intrusions[0].kind is IntrusionKind.EXCAVATOR
    assert math.isinf(scenario.faults[1].end_s)  # open-ended
    assert scenario.fires[0].hot_spot().temperature_excess_k > 100.0


def test_events_at_a_time() -> None:
    scenario = parse_scenario(valid(), small_site())
    assert_allclose(scenario.emission_rates_kg_per_s(30.0), [[0.0, 0.0]])
    assert_allclose(scenario.emission_rates_kg_per_s(60.0), [[0.075, 0.025]])
    assert_allclose(scenario.emission_rates_kg_per_s(360.0), [[0.0, 0.0]])
    assert scenario.leak_positions_m.shape == (1, 3)
    assert [leak.id for leak in scenario.active_leaks(100.0)] == ["L1"]
    assert scenario.active_fires(10.0) == ()
    assert set(scenario.active_faults(120.0)) == {"GD01", "CAM1"}
    assert_array_equal(scenario.fault_mask(5.0, ["WS1"], FaultKind.OFFLINE), [True])
    assert_array_equal(
        scenario.fault_mask(25.0, ["CAM1", "WS1"], FaultKind.BEAM_BLOCKED), [True, False]
    )


def test_gas_fault_schedule_follows_the_site_order() -> None:
    site = small_site()
    schedule = parse_scenario(valid(), site).gas_fault_schedule(site)
    assert_array_equal(schedule.at(120.0).kind, [GasFaultKind.STUCK, 0])
    table = schedule.at(500.0)
    assert_array_equal(table.kind, [GasFaultKind.SPIKES, 0])
    assert_allclose(table.spike_probability[0], 0.1)


def test_every_problem_is_listed_with_file_and_field() -> None:
    data = valid()
    data["scenario"]["site_id"] = "elsewhere"
    data["leaks"][0]["pipeline_id"] = "P9"
    data["leaks"].append(
        {
            "id": "L2",
            "pipeline_id": "P1",
            "chainage_m": 4000.0,
            "gas": "propane",
            "emission_rate_kg_per_s": -1.0,
            "start_s": 0.0,
        }
    )
    data["faults"].append({"device_id": "GD77", "kind": "stuck", "start_s": 0.0})
    data["wind"][1]["time_s"] = 0.0
    problems = problems_of(data)
    expected = [
        "x.toml: scenario.site_id: scenario is for site 'elsewhere', not 'test'",
        "x.toml: leaks[0].pipeline_id: unknown pipeline 'P9' (site has: P1)",
        "x.toml: leaks[1].chainage_m: 4000 m is beyond pipeline 'P1' (0..1000.0 m)",
        "x.toml: leaks[1].emission_rate_kg_per_s: must be > 0 kg s-1, got -1 kg s-1",
        "x.toml: faults[4].device_id: unknown device 'GD77' in site 'test'",
        "x.toml: wind[1].time_s: 0 s is not after wind[0] (0 s); "
        "breakpoints must be sorted and distinct",
    ]
    for line in expected:
        assert line in problems, f"{line!r} not in {problems}"
    with pytest.raises(ScenarioError, match="problems in the scenario") as caught:
        parse_scenario(data, small_site(), source="x.toml")
    assert str(caught.value).count("\n") == len(problems)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["wind"].reverse(), "wind[0].time_s: the schedule must start at 0 s, got 300"),
        (lambda d: d["wind"][0].update(speed_m_per_s=0.0), "wind[0].speed_m_per_s: must be > 0"),
        (
            lambda d: d["wind"][0].update(direction_from_deg=360.0),
            "wind[0].direction_from_deg: must be < 360",
        ),
        (
            lambda d: d["wind"][0].update(stability_class="G"),
            "wind[0].stability_class: unknown value 'G'",
        ),
        (lambda d: d["wind"][0].update(speed_kmh=3.0), "wind[0].speed_kmh: unknown key"),
        (lambda d: d.pop("wind"), "wind: missing wind schedule"),
        (lambda d: d["scenario"].update(start_time_utc=datetime(2024, 1, 1)), "needs a UTC offset"),
        (lambda d: d["scenario"].update(seed=-1), "scenario.seed: must be >= 0"),
        (
            lambda d: d["scenario"].update(ambient_temperature_k=15.0),
            "ambient_temperature_k: must be >= 200",
        ),
        (lambda d: d.update(leak=[]), "leak: unknown table"),
        (
            lambda d: d["leaks"][0].update(mass_fractions={"methane": 0.5, "propane": 0.4}),
            "leaks[0].mass_fractions: fractions must sum to 1, got 0.9",
        ),
        (
            lambda d: d["leaks"][0].update(mass_fractions={"butane": 1.0}),
            "leaks[0].mass_fractions.butane: unknown key",
        ),
        (
            lambda d: d["leaks"][0].update(gas="methane"),
            "give either gas or mass_fractions, not both",
        ),
        (lambda d: d["leaks"][0].update(east_m=1.0, north_m=2.0), "not both"),
        (
            lambda d: d["leaks"][0].update(release_height_m=-1.0),
            "leaks[0].release_height_m: must be >= 0",
        ),
        (
            lambda d: d["leaks"][0].update(start_s=600.0),
            "leaks[0].start_s: 600 s is not before the scenario's end",
        ),
        (lambda d: d["leaks"].append(dict(d["leaks"][0])), "leaks[1].id: duplicate id 'L1'"),
        (
            lambda d: d["faults"][2].update(kind="spikes"),
            "a wind device cannot have a spikes fault",
        ),
        (
            lambda d: d["faults"][3].update(kind="drift"),
            "a camera device cannot have a drift fault",
        ),
        (
            lambda d: d["faults"][0].update(duration_s=100.0),
            "faults[1]: fault on 'GD01' overlaps faults[0] in time",
        ),
        (
            lambda d: d["faults"][1].update(spike_probability=2.0),
            "faults[1]: GasFault(SPIKES): spike_probability must be in [0, 1], got 2.0",
        ),
        (
            lambda d: d["faults"][0].update(spike_probability=0.5),
            "faults[0].spike_probability: does not apply to a stuck fault",
        ),
        (lambda d: d["faults"][0].update(kind="melted"), "faults[0].kind: unknown value 'melted'"),
        (
            lambda d: d["intrusions"][0].update(kind="tank"),
            "intrusions[0].kind: unknown value 'tank'",
        ),
        (
            lambda d: d["fires"][0].update(east_m=1e5),
            "fires[0]: position (100000, 10) m is more than 200 m outside the site",
        ),
        (
            lambda d: d["fires"][0].update(offset_m=3.0),
            "fires[0].offset_m: offset_m only applies with",
        ),
        (lambda d: d["fires"][0].pop("east_m"), "fires[0].east_m: missing required key"),
        (
            lambda d: d["intrusions"][0].pop("pipeline_id"),
            "intrusions[0].pipeline_id: missing required key",
        ),
    ],
)
def test_invalid_fields_are_named(edit: Any, message: str) -> None:
    data = valid()
    edit(data)
    problems = problems_of(data)
    assert any(message in problem for problem in problems), problems
    assert all(problem.startswith("x.toml: ") for problem in problems)


def test_load_scenario_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError, match=r"missing\.toml: cannot read the file"):
        load_scenario(missing, small_site())
    broken = tmp_path / "broken.toml"
    broken.write_text("[scenario\nname = 1\n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken, small_site())


def test_load_scenario_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(
        """
[scenario]
name = "ok"
site_id = "test"
start_time_utc = 2024-05-14T10:00:00+02:00
duration_s = 60.0
seed = 1

[[wind]]
time_s = 0.0
speed_m_per_s = 2.0
direction_from_deg = 0.0
stability_class = "F"
"""
    )
    scenario = load_scenario(path, small_site())
    assert scenario.start_time_utc == datetime(2024, 5, 14, 8, tzinfo=UTC)
    assert scenario.source == str(path)
    assert scenario.leaks == ()


def test_generators_are_reproducible_and_independent() -> None:
    first, second = spawn_generators(5), spawn_generators(5)
    assert_array_equal(first["gas"].standard_normal(5), second["gas"].standard_normal(5))
    assert not np.array_equal(
        spawn_generators(5)["gas"].random(5), spawn_generators(5)["wind"].random(5)
    )
    assert not np.array_equal(
        spawn_generators(5)["gas"].random(5), spawn_generators(6)["gas"].random(5)
    )


def simulate(scenario: Scenario, site: Site, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A small closed loop: gas sensors (constant true gas) and wind stations under faults."""
    generators = scenario.generators()
    sensors = GasSensorArray.from_site(site)
    wind = WindModel.from_site(site, scenario.wind, rng=generators["wind"])
    faults = scenario.gas_fault_schedule(site)
    station_ids = [station.id for station in site.wind_stations]
    true = np.full((len(site.gas_detectors), 2), 1e-3)
    readings, winds = [], []
    for step in range(steps):
        time_s = (step + 1) * scenario.time_step_s
        out = sensors.step(true, scenario.time_step_s, generators["gas"], faults.at(time_s))
        readings.append(np.where(out.publish[:, np.newaxis], out.mole_fraction, -1.0))
        wind.advance_to(time_s)
        report = wind.report(
            offline=scenario.fault_mask(time_s, station_ids, FaultKind.OFFLINE),
            stuck=scenario.fault_mask(time_s, station_ids, FaultKind.STUCK),
        )
        winds.append(np.concatenate([report.speed_m_per_s, report.direction_from_rad]))
    return np.array(readings), np.array(winds)


def test_same_seed_same_simulation() -> None:
    site = small_site()
    scenario = parse_scenario(valid(), site)
    first = simulate(scenario, site, 200)
    second = simulate(scenario, site, 200)
    assert_array_equal(first[0], second[0])
    assert_array_equal(first[1], second[1])
    data = valid()
    data["scenario"]["seed"] = 8
    other = simulate(parse_scenario(data, site), site, 200)
    assert not np.array_equal(first[0], other[0])


# -------------------------------------------------------------------------------------------
# The shipped scenarios of the reference site


def shipped() -> list[Path]:
    return scenario_paths(WANLI)


@pytest.fixture(scope="module")
def wanli() -> Site:
    site_loader = pytest.importorskip("pipesentinel.site_loader")
    return site_loader.load_site(WANLI)  # type: ignore[no-any-return]


def test_at_least_four_scenarios_are_shipped() -> None:
    names = {path.stem for path in shipped()}
    assert len(names) >= 4
    assert {
        "quiet_day",
        "p1_associated_gas_leak",
        "propane_night_school",
        "excavation_intrusion",
    } <= names


@pytest.mark.parametrize("path", shipped(), ids=lambda path: path.stem)
def test_shipped_scenario_loads_against_the_reference_site(path: Path, wanli: Site) -> None:
    scenario = load_scenario(path, wanli)
    assert scenario.site_id == wanli.id
    assert scenario.wind.time_s[0] == 0.0
    with path.open("rb") as stream:
        raw = tomllib.load(stream)
    assert raw["scenario"]["name"] == scenario.name


def test_shipped_scenarios_have_the_promised_content(wanli: Site) -> None:
    scenarios = {path.stem: load_scenario(path, wanli) for path in shipped()}
    quiet = scenarios["quiet_day"]
    assert quiet.leaks == ()
    assert len(quiet.faults) == 1

    leak = scenarios["p1_associated_gas_leak"]
    assert leak.leaks[0].pipeline_id == "P1"
    assert leak.leaks[0].mass_fraction_by_gas[Gas.METHANE] > 0.5
    directions = leak.wind.direction_from_rad
    assert np.ptp(directions) > math.radians(45.0)  # a wind shift

    propane = scenarios["propane_night_school"]
    assert propane.leaks[0].mass_fraction_by_gas[Gas.PROPANE] > 0.5
    assert set(propane.wind.stability_class) <= {StabilityClass.E, StabilityClass.F}
    local_hour = (propane.start_time_utc.hour + 8) % 24  # the site is at UTC+8
    assert local_hour >= 20 or local_hour < 5
    schools = [b for b in wanli.buildings if b.use.value == "school"]
    distance = min(np.hypot(*(b.centroid_m - propane.leaks[0].position_m[:2])) for b in schools)
    assert distance < 300.0

    excavation = scenarios["excavation_intrusion"]
    assert IntrusionKind.EXCAVATOR in {i.kind for i in excavation.intrusions}
    assert {f.kind for f in excavation.faults} >= {FaultKind.OFFLINE, FaultKind.STUCK}


def test_shipped_scenarios_run_deterministically(wanli: Site) -> None:
    for path in shipped():
        scenario = load_scenario(path, wanli)
        first = simulate(scenario, wanli, 30)
        second = simulate(scenario, wanli, 30)
        assert_array_equal(first[0], second[0])
        assert_array_equal(first[1], second[1])
