"""Tests of the sensor health monitor: pure checks, the monitor on arrays, and validation runs
with the device simulators (no broker): injected faults are found with the right kind within a
stated delay, a quiet day and a real leak raise none."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.health import (
    FAULT_KINDS,
    STATUSES,
    FaultTransition,
    HealthFaultKind,
    HealthMonitor,
    HealthParameters,
    block_mean_std,
    first_order_decay,
    flatline_ratio,
    hysteresis_step,
    isolated_spike_mask,
    round_index,
)
from pipesentinel.hardware.offline import scenario_records
from pipesentinel.hardware.scenario import load_scenario, parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.records import DeviceStatus, DeviceStatusChange, GasReading
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site
from pipesentinel.units import PPM

REPO = Path(__file__).resolve().parents[2]
SITE_DIR = REPO / "sites" / "wanli"
ORIGIN_EPOCH_S = 1.8e9
FULL_SCALE = PPM.to_si(50_000.0)  # reference site pipeline detectors [mol mol-1]
NOISE = 0.005 * FULL_SCALE

Transitions = list[tuple[float, FaultTransition]]


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


# ---------------------------------------------------------------------------------------------
# Pure checks
# ---------------------------------------------------------------------------------------------


def test_hysteresis_on_and_off_delays() -> None:
    # Hand-worked: on delay 4 s, off delay 10 s, evaluations every 2 s.
    active = np.array([False])
    since = np.array([np.nan])
    raise_at = {0.0: True, 2.0: True, 4.0: True, 6.0: False, 8.0: False, 20.0: False}
    history = []
    for t, condition in raise_at.items():
        cond = np.array([condition])
        active, since, switched = hysteresis_step(
            active=active,
            pending_since_s=since,
            raise_condition=cond,
            clear_condition=~cond,
            time_s=t,
            on_delay_s=4.0,
            off_delay_s=10.0,
        )
        history.append((t, bool(active[0]), bool(switched[0])))
    # raised at 4 s (held 0..4), clear pending from 6 s, cleared at 20 s (>= 16 s).
    assert history == [
        (0.0, False, False),
        (2.0, False, False),
        (4.0, True, True),
        (6.0, True, False),
        (8.0, True, False),
        (20.0, False, True),
    ]


def test_hysteresis_interrupted_condition_restarts_the_delay() -> None:
    active = np.array([False])
    since = np.array([np.nan])
    for t, condition in ((0.0, True), (2.0, False), (4.0, True), (6.0, True)):
        cond = np.array([condition])
        active, since, _ = hysteresis_step(
            active=active,
            pending_since_s=since,
            raise_condition=cond,
            clear_condition=~cond,
            time_s=t,
            on_delay_s=4.0,
            off_delay_s=0.0,
        )
    assert not active[0]  # held only from 4 s to 6 s
    assert since[0] == 4.0


def test_first_order_decay_hand_worked() -> None:
    # t90 = 10 s, dt = 2 s: exp(-2 ln 10 / 10) = 10 ** -0.2 = 0.630957 (hand-worked).
    assert_allclose(first_order_decay(np.array([2.0]), np.array([10.0])), [10**-0.2])
    # t90 = dt: exactly 10 % of the response is left.
    assert_allclose(first_order_decay(np.array([20.0]), np.array([20.0])), [0.1])
    assert first_order_decay(np.array([2.0]), np.array([0.0]))[0] == 0.0


def test_spike_mask_hand_worked() -> None:
    decay = np.array([0.63])
    sigma = np.array([NOISE])

    def spike(before: float, peak: float, after: float) -> bool:
        return bool(
            isolated_spike_mask(
                before_mole_fraction=np.array([before]),
                peak_mole_fraction=np.array([peak]),
                after_mole_fraction=np.array([after]),
                decay=decay,
                noise_std_mole_fraction=sigma,
                min_height_noise_multiple=10.0,
                fall_margin_noise_multiple=5.0,
            )[0]
        )

    assert spike(0.0, 0.5 * FULL_SCALE, 0.0)  # up 50 % FS and straight back
    # Falls only to the first-order floor 0.63 x peak: gas clearing, not a spike.
    assert not spike(0.0, 0.5 * FULL_SCALE, 0.63 * 0.5 * FULL_SCALE)
    assert not spike(0.0, 8 * NOISE, 0.0)  # below the 10-sigma height
    assert not spike(0.4 * FULL_SCALE, 0.5 * FULL_SCALE, 0.45 * FULL_SCALE)


@settings(max_examples=200, deadline=None)
@given(
    inputs=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=40),
    t90_s=st.floats(1.0, 60.0),
    dt_s=st.floats(0.5, 10.0),
)
def test_no_gas_history_is_ever_a_spike(inputs: list[float], t90_s: float, dt_s: float) -> None:
    # Invariant: a first-order sensor driven by ANY non-negative gas history (noise-free) never
    # shows an isolated spike, however wild the gas: real gas cannot raise a SPIKES fault.
    decay = first_order_decay(np.array([dt_s]), np.array([t90_s]))
    response = np.zeros(len(inputs))
    y = 0.0
    for k, u in enumerate(inputs):
        y = u * FULL_SCALE + (y - u * FULL_SCALE) * float(decay[0])
        response[k] = y
    mask = isolated_spike_mask(
        before_mole_fraction=response[:-2],
        peak_mole_fraction=response[1:-1],
        after_mole_fraction=response[2:],
        decay=decay,
        noise_std_mole_fraction=np.array([NOISE]),
        min_height_noise_multiple=10.0,
        fall_margin_noise_multiple=5.0,
    )
    assert not mask.any()


def test_flatline_ratio_of_white_noise_is_one() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, NOISE, 200_000)
    msc = np.mean(np.diff(noise) ** 2)
    assert_allclose(flatline_ratio(np.array([msc]), np.array([NOISE])), [1.0], rtol=0.01)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=50))
def test_block_mean_std_matches_numpy(values: list[float]) -> None:
    array = np.array(values)
    mean, std = block_mean_std(
        np.array([array.sum()]), np.array([(array**2).sum()]), np.array([float(array.size)])
    )
    assert_allclose(mean, [array.mean()], atol=1e-12)
    assert_allclose(std, [array.std()], atol=1e-6)


def test_block_mean_std_empty_block_is_nan() -> None:
    mean, std = block_mean_std(np.zeros(1), np.zeros(1), np.zeros(1))
    assert math.isnan(mean[0])
    assert math.isnan(std[0])


def test_round_index_numbers_each_device_in_time_order() -> None:
    device = np.array([3, 1, 3, 3, 1], dtype=np.intp)
    time_s = np.array([5.0, 2.0, 1.0, 3.0, 1.0])
    order, rank = round_index(device, time_s)
    assert list(device[order]) == [1, 1, 3, 3, 3]
    assert list(time_s[order]) == [1.0, 2.0, 1.0, 3.0, 5.0]
    assert list(rank) == [0, 1, 0, 1, 2]


def test_parameters_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="stuck_hold_s must be >= 0"):
        HealthParameters(stuck_hold_s=-1.0)
    with pytest.raises(ValueError, match="noise_std_fraction_of_full_scale must be > 0"):
        HealthParameters(noise_std_fraction_of_full_scale=0.0)
    with pytest.raises(ValueError, match="flatline_raise_ratio must be below"):
        HealthParameters(flatline_raise_ratio=0.6)
    with pytest.raises(ValueError, match="must be finite"):
        HealthParameters(spike_window_s=math.nan)


# ---------------------------------------------------------------------------------------------
# The monitor on arrays and records
# ---------------------------------------------------------------------------------------------

T0 = ORIGIN_EPOCH_S


def _feed(
    monitor: HealthMonitor,
    detector: int,
    values_mole_fraction: np.ndarray[Any, np.dtype[np.float64]],
    *,
    start_s: float = T0,
    period_s: float = 2.0,
    status: DeviceStatus = DeviceStatus.OK,
) -> list[FaultTransition]:
    """Feed one detector's methane readings (propane: clean-air noise), one batch per sample."""
    out: list[FaultTransition] = []
    propane = _noise(len(values_mole_fraction), seed=int(start_s) % 1000 + 100)
    for k, value in enumerate(values_mole_fraction):
        t = start_s + k * period_s
        monitor.update_gas(
            detector_index=np.array([detector], dtype=np.intp),
            time_s=np.array([t]),
            received_time_s=np.array([t]),
            mole_fraction=np.array([[value, propane[k]]]),
            status_index=np.array([STATUSES.index(status)], dtype=np.intp),
        )
        out += [item for item in monitor.tick(t) if item.device_id == monitor.device_ids[detector]]
    return out


def _noise(n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0.0, NOISE, n) / (0.001 * FULL_SCALE)) * 0.001 * FULL_SCALE


def test_healthy_noise_raises_nothing(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    transitions = _feed(monitor, 0, _noise(900))  # 30 min of clean air
    assert transitions == []
    assert not monitor.gas_fault_mask().any() or monitor.gas_fault_mask()[0] == np.False_


def test_identical_readings_are_stuck_after_the_hold(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    values = np.concatenate([_noise(30), np.full(60, PPM.to_si(150.0))])
    transitions = _feed(monitor, 0, values)
    stuck = [item for item in transitions if item.kind is HealthFaultKind.STUCK]
    assert len(stuck) == 1
    assert stuck[0].active
    # Constant from sample 30 (t = 60 s); the hold of 60 s is met at t = 120 s.
    assert stuck[0].time_s - T0 == pytest.approx(120.0)
    assert stuck[0].detail == "GD01 stuck: CH4 reading unchanged at 150 ppm for 60 s (31 samples)"
    assert stuck[0].alarm_id == "GD01.fault.stuck"
    assert monitor.gas_fault_mask()[0]
    assert monitor.active_faults("GD01") == {HealthFaultKind.STUCK}


def test_reading_saturated_at_full_scale_is_gas_not_a_fault(site: Site) -> None:
    # Real gas above the range clips at full scale: identical readings, but not STUCK, and
    # below the NE 43 failure level, so not OUT_OF_RANGE either.
    monitor = HealthMonitor(site, expect_frames=False)
    values = np.concatenate([_noise(10), np.full(200, FULL_SCALE)])
    assert _feed(monitor, 0, values) == []


def test_over_range_is_excluded_at_once_and_clears_after_the_delay(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    values = np.concatenate([_noise(5), np.full(5, 1.125 * FULL_SCALE), _noise(10, seed=1)])
    transitions = _feed(monitor, 0, values)
    kinds = [(item.kind, item.active, item.time_s - T0) for item in transitions]
    # Raised on the first pegged sample (t = 10 s); cleared 10 s after the first sample back in
    # the band (t = 20 s), at t = 30 s.
    assert kinds == [
        (HealthFaultKind.OUT_OF_RANGE, True, 10.0),
        (HealthFaultKind.OUT_OF_RANGE, False, 30.0),
    ]
    assert "above 106.25 % (NAMUR NE 43)" in transitions[0].detail


def test_under_range_needs_four_seconds(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    values = np.concatenate([_noise(5), np.full(5, -0.03125 * FULL_SCALE)])
    transitions = _feed(monitor, 0, values)
    assert [(item.kind, item.time_s - T0) for item in transitions] == [
        (HealthFaultKind.UNDER_RANGE, 14.0)  # first at 10 s, confirmed 4 s later (NE 43)
    ]


def test_a_single_spike_is_not_a_fault_two_are(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    values = _noise(200)
    values[50] = 0.4 * FULL_SCALE
    first = _feed(monitor, 0, values[:120])
    assert first == []
    values[150] = 0.3 * FULL_SCALE
    second = _feed(monitor, 0, values[120:], start_s=T0 + 240.0)
    assert [(item.kind, item.active) for item in second] == [(HealthFaultKind.SPIKES, True)]
    # Seen one sample after the spike at t = 300 s.
    assert second[0].time_s - T0 == pytest.approx(302.0)
    assert second[0].detail.startswith("GD01 spikes: 2 isolated spikes in 600 s")


def test_drift_ramp_is_drift_but_a_fast_step_is_not(site: Site) -> None:
    p = HealthParameters()
    samples = 900  # 30 min at 2 s
    time_s = np.arange(samples) * 2.0
    ramp = _noise(samples) + 5e-5 * FULL_SCALE * time_s  # 18 % FS per hour
    monitor = HealthMonitor(site, expect_frames=False)
    transitions = _feed(monitor, 0, ramp)
    drift = [item for item in transitions if item.kind is HealthFaultKind.DRIFT]
    assert drift
    assert drift[0].active
    # The ramp crosses 2 % FS at 400 s; the first block whose mean is beyond: 420..480 s.
    assert 400.0 < drift[0].time_s - T0 <= 400.0 + 2 * p.drift_block_s
    assert {item.kind for item in transitions} == {HealthFaultKind.DRIFT}

    # The same level reached in one step (a leak arriving) is not drift.
    step = _noise(samples, seed=3) + np.where(time_s > 300.0, 0.05 * FULL_SCALE, 0.0)
    monitor = HealthMonitor(site, expect_frames=False)
    assert _feed(monitor, 0, step) == []


def test_negative_baseline_is_drift_whatever_its_speed(site: Site) -> None:
    # A limit of 1 % FS keeps a -1.2 % FS zero well clear of the NE 43 failure level (-2.5 %).
    parameters = HealthParameters(drift_limit_fraction_of_full_scale=0.01)
    monitor = HealthMonitor(site, parameters, expect_frames=False)
    transitions = _feed(monitor, 0, _noise(200) - 0.012 * FULL_SCALE)
    assert [item.kind for item in transitions] == [HealthFaultKind.DRIFT]
    assert transitions[0].time_s - T0 == pytest.approx(60.0)  # the first 60-s block
    assert "below zero, which no gas can cause" in transitions[0].detail


def test_elevated_zone_neighbour_vetoes_drift(site: Site) -> None:
    # Two detectors of one zone both creep up slowly: gas about, not a drift of one sensor.
    zone = next(members for members in site.zones.values() if len(members) >= 2)
    index = [detector.id for detector in site.gas_detectors]
    first, second = index.index(zone[0].id), index.index(zone[1].id)
    monitor = HealthMonitor(site, expect_frames=False)
    ramp = _noise(600) + 5e-5 * FULL_SCALE * np.arange(600) * 2.0
    other = _noise(600, seed=7) + 5e-5 * FULL_SCALE * np.arange(600) * 2.0
    propane = np.stack([_noise(600, seed=11), _noise(600, seed=12)])
    raised = []
    for k in range(600):
        t = T0 + 2.0 * k
        monitor.update_gas(
            detector_index=np.array([first, second], dtype=np.intp),
            time_s=np.array([t, t]),
            received_time_s=np.array([t, t]),
            mole_fraction=np.array([[ramp[k], propane[0, k]], [other[k], propane[1, k]]]),
            status_index=np.zeros(2, dtype=np.intp),
        )
        raised += [
            item for item in monitor.tick(t) if item.kind is HealthFaultKind.DRIFT and item.active
        ]
    assert raised == []


def test_silence_and_last_will_mean_offline(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    assert monitor.tick(T0) == []
    # Nothing heard: every device is offline after twice its period (+0.5 s margin).
    transitions = monitor.tick(T0 + 4.6)
    gas_offline = {item.device_id for item in transitions if item.kind is HealthFaultKind.OFFLINE}
    assert {"GD01", "CAM1"} <= gas_offline  # 2 s detectors and the 1 Hz lasers
    assert "WS1" not in gas_offline  # 10 s period: not yet
    gd01 = next(item for item in transitions if item.device_id == "GD01")
    assert gd01.detail == "GD01 offline: no reading for 4.6 s (expected every 2 s)"
    # A last will on GD02 is immediate; data after it brings the device back 10 s later.
    monitor = HealthMonitor(site, expect_frames=False)
    will = DeviceStatusChange("wanli", "GD02", online=False, received_time_s=T0 + 1.0)
    transitions = monitor.update([will], T0 + 1.0)
    assert [(item.device_id, item.kind) for item in transitions] == [
        ("GD02", HealthFaultKind.OFFLINE)
    ]
    assert "retained status 'offline' (last will)" in transitions[0].detail
    cleared = []
    for k in range(10):
        t = T0 + 2.0 + 2.0 * k
        reading = GasReading(
            "wanli", "GD02", t, k + 1, 2e-6, 0.0, DeviceStatus.OK, None, received_time_s=t
        )
        cleared += [item for item in monitor.update([reading], t) if item.device_id == "GD02"]
    assert [(item.active, item.time_s - T0) for item in cleared] == [(False, 12.0)]


def test_bad_records_are_named(site: Site) -> None:
    monitor = HealthMonitor(site)
    stray = GasReading("wanli", "GDX", T0, 1, 0.0, 0.0, DeviceStatus.OK, None, T0)
    with pytest.raises(ValueError, match="unknown device 'GDX' in site 'wanli'"):
        monitor.update([stray], T0)
    other = GasReading("elsewhere", "GD01", T0, 1, 0.0, 0.0, DeviceStatus.OK, None, T0)
    with pytest.raises(ValueError, match="is for site 'elsewhere', not 'wanli'"):
        monitor.update([other], T0)
    wrong = GasReading("wanli", "WS1", T0, 1, 0.0, 0.0, DeviceStatus.OK, None, T0)
    with pytest.raises(ValueError, match="GasReading from 'WS1', a wind device"):
        monitor.update([wrong], T0)
    with pytest.raises(KeyError, match="no device 'GDX'"):
        monitor.active_faults("GDX")


def test_out_of_order_readings_are_counted_not_judged(site: Site) -> None:
    monitor = HealthMonitor(site, expect_frames=False)
    _feed(monitor, 0, _noise(3))
    _feed(monitor, 0, np.array([0.9 * FULL_SCALE]), start_s=T0)  # stale time
    assert monitor.out_of_order_count == 1


# ---------------------------------------------------------------------------------------------
# Validation with the simulators (no broker)
# ---------------------------------------------------------------------------------------------


def _run(
    site: Site, scenario_data: dict[str, Any] | Path, until_s: float
) -> Iterator[tuple[float, list[FaultTransition], HealthMonitor]]:
    if isinstance(scenario_data, Path):
        scenario = load_scenario(scenario_data, site)
    else:
        scenario = parse_scenario(scenario_data, site)
    monitor = HealthMonitor(site, expect_frames=False)
    simulation = SiteSimulation(site, scenario, frames=False)
    for step, records in scenario_records(
        simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=until_s
    ):
        yield step.time_s - ORIGIN_EPOCH_S, monitor.update(records, step.time_s), monitor


def _collect(
    site: Site, scenario_data: dict[str, Any] | Path, until_s: float
) -> list[FaultTransition]:
    out: list[FaultTransition] = []
    for _, transitions, _ in _run(site, scenario_data, until_s):
        out += transitions
    return out


def _is_warmup(item: FaultTransition) -> bool:
    # Every gas detector reports 'warmup' for 120 s after power-on: a SELF_REPORTED fault that is
    # raised at the start and cleared 10 s after the first 'ok'.
    return (
        item.kind is HealthFaultKind.SELF_REPORTED
        and ("warmup" in item.detail or "'ok' again" in item.detail)
        and item.time_s - ORIGIN_EPOCH_S <= 140.0
    )


def _scenario(faults: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    return {
        "scenario": {
            "name": "health-faults",
            "site_id": "wanli",
            "start_time_utc": "2024-04-09T00:00:00Z",
            "duration_s": duration_s,
            "seed": 7,
        },
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": 3.0,
                "direction_from_deg": 85.0,
                "stability_class": "D",
            }
        ],
        "faults": faults,
    }


FAULT_START_S = 200.0
# (device, scenario fault, parameters) -> (expected kinds, the delay within which the first
# expected kind is raised after the fault starts [s], the reason for that bound).
INJECTED: list[tuple[str, str, dict[str, Any], set[HealthFaultKind], float]] = [
    ("GD01", "stuck", {"self_reported": False}, {HealthFaultKind.STUCK}, 62.0),  # hold 60 s
    ("GD02", "offline", {}, {HealthFaultKind.OFFLINE}, 1.0),  # last will at once
    # p = 0.05 per 2-s sample: 2 spikes expected in 80 s; P(< 2 in 300 s) = 0.5 %.
    (
        "GD03",
        "spikes",
        {"spike_probability": 0.05, "self_reported": False},
        {HealthFaultKind.SPIKES},
        300.0,
    ),
    ("GD04", "under_range", {}, {HealthFaultKind.UNDER_RANGE, HealthFaultKind.SELF_REPORTED}, 2.0),
    (
        "GD05",
        "out_of_range",
        {},
        {HealthFaultKind.OUT_OF_RANGE, HealthFaultKind.SELF_REPORTED},
        2.0,
    ),
    # Default 18 % FS per hour: 2 % FS at 400 s, seen by the next 60-s block.
    ("GD06", "drift", {"self_reported": False}, {HealthFaultKind.DRIFT}, 400.0 + 120.0),
    ("GD09", "calibration", {}, {HealthFaultKind.SELF_REPORTED}, 2.0),
    (
        "GD10",
        "stuck",
        {"self_reported": True},
        {HealthFaultKind.STUCK, HealthFaultKind.SELF_REPORTED},
        2.0,
    ),
    ("UD01", "stuck", {"self_reported": False}, {HealthFaultKind.STUCK}, 65.0),  # 5-s samples
    ("WS1", "stuck", {}, {HealthFaultKind.STUCK}, 130.0),  # hold 120 s + one 10-s report
    ("WS2", "offline", {}, {HealthFaultKind.OFFLINE}, 1.0),
    ("CAM1", "beam_blocked", {}, {HealthFaultKind.BEAM_BLOCKED}, 1.0),
    ("CAM2", "offline", {}, {HealthFaultKind.OFFLINE}, 1.0),
]


@pytest.fixture(scope="module")
def injected_run(site: Site) -> tuple[list[FaultTransition], dict[str, np.ndarray[Any, Any]]]:
    faults = [
        {"device_id": device, "kind": kind, "start_s": FAULT_START_S, "duration_s": 600.0, **params}
        for device, kind, params, _, _ in INJECTED
    ]
    masks: dict[str, np.ndarray[Any, Any]] = {}
    transitions: list[FaultTransition] = []
    for time_s, batch, monitor in _run(site, _scenario(faults, 1100.0), 1100.0):
        transitions += batch
        if time_s == pytest.approx(790.0):
            masks["gas"] = monitor.gas_fault_mask()
            masks["wind"] = monitor.wind_fault_mask()
            masks["camera"] = monitor.camera_fault_mask()
    return transitions, masks


@pytest.mark.parametrize("case", INJECTED, ids=[f"{case[0]}-{case[1]}" for case in INJECTED])
def test_injected_fault_is_found_in_time(
    injected_run: tuple[list[FaultTransition], dict[str, Any]],
    case: tuple[str, str, dict[str, Any], set[HealthFaultKind], float],
) -> None:
    device, kind, _, expected, within_s = case
    transitions, _ = injected_run
    raised = [
        item
        for item in transitions
        if item.device_id == device and item.active and not _is_warmup(item)
    ]
    assert raised, f"{device} {kind}: no fault raised"
    assert {item.kind for item in raised} == expected, [item.detail for item in raised]
    delay = raised[0].time_s - ORIGIN_EPOCH_S - FAULT_START_S
    assert 0.0 <= delay <= within_s, f"{device} {kind}: first raised after {delay:.0f} s"


def test_injected_faults_clear_after_the_fault_ends(
    injected_run: tuple[list[FaultTransition], dict[str, Any]],
) -> None:
    transitions, _ = injected_run
    end_s = FAULT_START_S + 600.0
    for device, kind, _, expected, _ in INJECTED:
        if kind in {"drift", "spikes"}:
            continue  # drift stays until a calibration; spikes clear 600 s after the last one
        last = {}
        for item in transitions:
            if item.device_id == device:
                last[item.kind] = item
        for fault_kind in expected:
            item = last[fault_kind]
            assert not item.active, f"{device} {fault_kind} still active: {item.detail}"
            # Clear delays 10 s (wind STUCK 30 s) after the evidence of health; a stuck detector
            # needs a few samples (5 s apart underground) to show its noise again.
            assert item.time_s - ORIGIN_EPOCH_S - end_s <= 60.0, item.detail


def test_no_fault_on_healthy_devices_and_masks(
    site: Site, injected_run: tuple[list[FaultTransition], dict[str, Any]]
) -> None:
    transitions, masks = injected_run
    faulty = {device for device, *_ in INJECTED}
    stray = [
        item.detail for item in transitions if item.device_id not in faulty and not _is_warmup(item)
    ]
    assert stray == []
    gas_ids = [detector.id for detector in site.gas_detectors]
    in_fault_at_790 = {gas_ids[i] for i in np.flatnonzero(masks["gas"])}
    # At 790 s every injected fault is active (drift since 662 s, GD09 still calibrating).
    assert in_fault_at_790 == {
        "GD01",
        "GD02",
        "GD03",
        "GD04",
        "GD05",
        "GD06",
        "GD09",
        "GD10",
        "UD01",
    }
    assert list(masks["wind"]) == [True, True]
    assert list(masks["camera"][:2]) == [True, True]
    assert not masks["camera"][2:].any()


def test_quiet_day_raises_no_fault_but_the_silent_spikes(site: Site) -> None:
    # quiet_day: clean air; GD12 has silent spikes from 600 s for 20 min. Simulated to 1200 s
    # (the whole hour was checked by hand: the spikes clear at 2388 s, nothing else; docs).
    transitions = _collect(site, SITE_DIR / "scenarios" / "quiet_day.toml", 1200.0)
    warmup = [item for item in transitions if _is_warmup(item)]
    assert len(warmup) == 2 * 30  # raised and cleared on every gas detector
    others = [item for item in transitions if not _is_warmup(item)]
    assert [(item.device_id, item.kind, item.active) for item in others] == [
        ("GD12", HealthFaultKind.SPIKES, True)
    ]
    assert 600.0 <= others[0].time_s - ORIGIN_EPOCH_S <= 900.0


def test_real_leak_raises_no_fault_on_the_detectors_that_see_gas(site: Site) -> None:
    # p1_associated_gas_leak: 1 kg/s from 300 s, 16 m from GD07, which reads ~2.6 %vol
    # (more than half its range). No fault at all (beyond warm-up) on any device.
    path = SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml"
    peak: dict[str, float] = {}
    transitions: list[FaultTransition] = []
    scenario = load_scenario(path, site)
    monitor = HealthMonitor(site, expect_frames=False)
    simulation = SiteSimulation(site, scenario, frames=False)
    for step, records in scenario_records(simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=700.0):
        transitions += monitor.update(records, step.time_s)
        for record in records:
            if isinstance(record, GasReading):
                value = record.methane_mole_fraction
                peak[record.device_id] = max(peak.get(record.device_id, -1.0), value)
    assert peak["GD07"] > 0.4 * FULL_SCALE  # it does see the gas
    assert [item.detail for item in transitions if not _is_warmup(item)] == []


@pytest.mark.parametrize("emission_rate_kg_per_s", [0.1])  # 0.3 kg/s: same result (docs)
def test_small_leak_is_not_mistaken_for_drift(site: Site, emission_rate_kg_per_s: float) -> None:
    # A smaller leak holds GD07 at 2-6 % of its range, a smooth level beyond the drift limit:
    # the fast onset tells it from a drifting zero.
    data = tomllib.loads((SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml").read_text())
    data["leaks"][0]["emission_rate_kg_per_s"] = emission_rate_kg_per_s
    transitions = _collect(site, data, 800.0)
    assert [item.detail for item in transitions if not _is_warmup(item)] == []


def test_fault_kinds_are_stable_alarm_names() -> None:
    assert [kind.value for kind in FAULT_KINDS] == [
        "offline",
        "self_reported",
        "stuck",
        "drift",
        "under_range",
        "out_of_range",
        "spikes",
        "beam_blocked",
    ]
